#!/usr/bin/env bash
# Build the C library in the `dist` profile (release + fat LTO, one codegen unit) and install it
# for C users:
#   scripts/install_capi.sh PREFIX [TARGET]
#     PREFIX/include/temper.h
#     PREFIX/lib/libtemper_capi.a        debug sections stripped (they come with std's objects)
#     PREFIX/lib/libtemper_capi.so       symbols stripped by the profile
#     PREFIX/lib/pkgconfig/temper.pc     `pkg-config --cflags --libs temper` (shared library);
#                                        static: `pkg-config --static --libs temper` with the
#                                        archive, e.g. `-l:libtemper_capi.a` for -ltemper_capi
# TARGET: a Rust target triple to cross-build (aarch64-unknown-linux-gnu, …); STRIP overrides
# the strip tool (default: strip, or TRIPLE-strip for the cross targets of .cargo/config.toml).
# The library is built as staticlib + cdylib only (`cargo rustc --crate-type`): cargo applies
# no LTO to a library that is also an rlib, and LTO is what drops the unused standard library.
set -euo pipefail
prefix=${1:?usage: scripts/install_capi.sh PREFIX [TARGET]}
target=${2:-}
cd "$(dirname "$0")/.."
mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
args=(--profile dist -p temper-capi --lib --crate-type staticlib,cdylib)
out=target/dist
strip_tool=strip
if [ -n "$target" ]; then
  args+=(--target "$target")
  out=target/$target/dist
  case $target in
    aarch64-unknown-linux-gnu) strip_tool=aarch64-linux-gnu-strip ;;
    armv7-unknown-linux-gnueabihf) strip_tool=arm-linux-gnueabihf-strip ;;
  esac
fi
strip_tool=${STRIP:-$strip_tool}
cargo rustc "${args[@]}"

install -d "$prefix/include" "$prefix/lib/pkgconfig"
install -m 644 targets/capi/include/temper.h "$prefix/include/temper.h"
"$strip_tool" --strip-debug -o "$prefix/lib/libtemper_capi.a" "$out/libtemper_capi.a"
chmod 644 "$prefix/lib/libtemper_capi.a"
install -m 755 "$out/libtemper_capi.so" "$prefix/lib/libtemper_capi.so"
cat >"$prefix/lib/pkgconfig/temper.pc" <<EOF
prefix=$prefix
exec_prefix=\${prefix}
libdir=\${exec_prefix}/lib
includedir=\${prefix}/include

Name: temper
Description: temper INT8 inference runtime, C API: load .tmf models, run them in a caller-given arena
URL: https://github.com/temper-edge/temper
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -ltemper_capi
Libs.private: -lpthread -ldl -lm
EOF
echo "installed temper $version into $prefix:"
for f in include/temper.h lib/libtemper_capi.a lib/libtemper_capi.so lib/pkgconfig/temper.pc; do
  printf '  %-26s %9d bytes\n' "$f" "$(stat -c %s "$prefix/$f")"
done
