#!/usr/bin/env bash
# Code size and memory footprint of the controller firmware (thumbv7em-none-eabihf, Cortex-M4F).
#
#   targets/controller/size.sh                         # the embedded defect model
#   targets/controller/size.sh out/student_kd.tmf      # another model (e.g. the Fashion-MNIST student)
#   OPT=z targets/controller/size.sh                   # opt-level z instead of s
#
# Builds controller-fw with a size profile (opt-level s, fat LTO, one codegen unit, panic=abort;
# defined here on the command line, as the workspace manifest has no firmware profile) and
# prints the ELF sections (llvm-size, else GNU size), the flash and RAM totals, and the code
# per crate (llvm-nm; symbols kept: strip=false overrides the release profile's strip).
set -euo pipefail
cd "$(dirname "$0")/../.."
opt=${OPT:-s}
profile=fw-$opt
model=${1:-}
env=()
if [ -n "$model" ]; then
  env=(TEMPER_CONTROLLER_MODEL="$(realpath "$model")")
fi
env "${env[@]}" cargo build -q -p temper-controller --features firmware --bin controller-fw \
  --target thumbv7em-none-eabihf --profile "$profile" \
  --config "profile.$profile.inherits=\"release\"" --config "profile.$profile.opt-level=\"$opt\"" \
  --config "profile.$profile.lto=\"fat\"" --config "profile.$profile.codegen-units=1" \
  --config "profile.$profile.debug=0" --config "profile.$profile.panic=\"abort\"" \
  --config "profile.$profile.strip=false" --config "profile.$profile.incremental=false"
elf=${CARGO_TARGET_DIR:-target}/thumbv7em-none-eabihf/$profile/controller-fw

if command -v llvm-size >/dev/null; then size_tool=llvm-size; else size_tool=size; fi
echo "== $elf (opt-level $opt, model ${model:-targets/controller/model/defect8x8.tmf})"
$size_tool -A "$elf" | grep -E '^(section|\.vector_table|\.text|\.rodata|\.ARM\.exidx|\.data|\.bss)'

sec() { $size_tool -A "$elf" | awk -v s="$1" '$1 == s { print $2 }'; }
text=$(sec .text); rodata=$(sec .rodata); data=$(sec .data); bss=$(sec .bss)
vt=$(sec .vector_table); exidx=$(sec .ARM.exidx)
model_bytes=$(wc -c <"${model:-targets/controller/model/defect8x8.tmf}")
# The arena and the frame buffer are the firmware's stack locals; their sizes come from the model.
read -r arena frame < <(env "${env[@]}" cargo test -q -p temper-controller --test model_file -- --ignored print_sizes --nocapture 2>/dev/null | awk '/^SIZES/ { print $2, $3 }')
flash=$((vt + text + rodata + exidx + data))
echo "model         $model_bytes bytes (in .rodata)"
echo "code          $((vt + text + exidx)) bytes (.vector_table + .text + .ARM.exidx)"
echo "other consts  $((rodata - model_bytes)) bytes (.rodata without the model)"
echo "flash total   $flash bytes"
echo "arena         $arena bytes, frame $frame bytes (stack)"
echo "RAM           $((data + bss)) bytes static (.data + .bss) + $((arena + frame)) bytes arena and frame + call stack"

if command -v llvm-nm >/dev/null; then
  echo "-- .text by crate (llvm-nm --size-sort, demangled)"
  llvm-nm --size-sort --print-size --demangle --radix=d "$elf" | awk '$3 ~ /^[tTwW]$/ {
      name = ""; for (i = 4; i <= NF; i++) name = name " " $i
      crate = "other"
      if (name ~ /temper_runtime/) crate = "temper_runtime"
      else if (name ~ /temper_kernels/) crate = "temper_kernels"
      else if (name ~ /temper_controller|controller_fw/) crate = "temper_controller + controller-fw"
      else if (name ~ /compiler_builtins|__aeabi|__udiv|__div|__mul|__aeabi_/) crate = "compiler_builtins"
      else if (name ~ /core::|<core|_ZN4core/) crate = "core"
      else if (name ~ /bytemuck|log::/) crate = "bytemuck, log"
      size[crate] += $2 } END { for (c in size) printf "  %-36s %7d\n", c, size[c] }' | sort -k2 -n -r
fi
