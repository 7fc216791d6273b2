#!/usr/bin/env bash
# Install everything temper's build, tests and main job need on a fresh machine that has only
# rustup's stable toolchain, gcc and python3 (cross linkers and libcs for aarch64 and armv7,
# qemu-user, Fashion-MNIST, the Rust targets). Idempotent; quiet when all is present.
set -euo pipefail
need_apt=()
command -v aarch64-linux-gnu-gcc >/dev/null || need_apt+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
{ command -v arm-linux-gnueabihf-gcc >/dev/null && [ -f /usr/arm-linux-gnueabihf/include/stdio.h ]; } || need_apt+=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross)
command -v qemu-aarch64 >/dev/null || need_apt+=(qemu-user)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
[ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] || need_apt+=(dataset-fashion-mnist)
# fonts for the text pages and lines scripts/corpus.sh renders for the PP-OCR models
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need_apt+=(fonts-dejavu-core)
[ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || need_apt+=(fonts-wqy-microhei)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "== apt-get install ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
targets=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf thumbv7em-none-eabihf aarch64-unknown-none)
installed=$(rustup target list --installed)
for t in "${targets[@]}"; do
  grep -qx "$t" <<<"$installed" || rustup target add "$t"
done
rustup component list --installed | grep -q '^clippy' || rustup component add clippy
rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
