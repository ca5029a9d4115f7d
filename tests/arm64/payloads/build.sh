#!/bin/sh
# Builds the bare aarch64 payloads into raw images (loaded at IPA 0).
#   tests/arm64/payloads/build.sh OUTDIR
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: $0 OUTDIR}
mkdir -p "$out"
for s in "$here"/*.S; do
        n=$(basename "$s" .S)
        aarch64-linux-gnu-gcc -c -march=armv8.2-a+sve -I"$here" -o "$out/$n.o" "$s"
        aarch64-linux-gnu-ld -Ttext=0 -e 0x800 --build-id=none -o "$out/$n.elf" "$out/$n.o"
        aarch64-linux-gnu-objcopy -O binary "$out/$n.elf" "$out/$n.bin"
done
