#!/bin/sh
# Measures the kernel facts the sim reproduces, on the real arm64 KVM: boots
# Debian's newest 6.1 (bookworm) and 6.12 (bookworm-security) cloud arm64
# kernels as emulated hosts (shared/ARM64-RIG.md), each in VHE and in nVHE
# mode (kvm-arm.mode=nvhe), and runs tests/arm64/kernel-facts.c in each: the
# register lists and reset values of an SVE and a non-SVE vcpu, the writable
# masks of the feature ID registers, and which ID register field writes the
# kernel accepts or refuses with which errno, before and after a KVM_RUN.
#   tests/arm64/capture-facts.sh [OUT_DIR]
# Writes OUT_DIR/kvm-facts-RELEASE-MODE.txt (default src/sim/kernel-facts/),
# one file per kernel and mode, replacing older captures of the same series.
# Environment: RIG_CACHE (default tests/arm64/cache), RIG_SERIES (default
# "6.1 6.12"), RIG_MODES (default "vhe nvhe").
set -eu

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
cache=${RIG_CACHE:-$here/cache}
outdir=${1:-$src/src/sim/kernel-facts}
series_list=${RIG_SERIES:-6.1 6.12}
modes=${RIG_MODES:-vhe nvhe}
mkdir -p "$cache/logs" "$outdir"
cache=$(cd "$cache" && pwd)
outdir=$(cd "$outdir" && pwd)

say() { echo "capture-facts: $*" >&2; }

# The host every capture runs on: QEMU's 'max' CPU with three vector lengths.
SVE="sve=on,sve128=on,sve256=on,sve512=on"
VLS=0xb

for tool in qemu-system-aarch64 aarch64-linux-gnu-gcc aarch64-linux-gnu-readelf cpio; do
        command -v "$tool" >/dev/null || { say "$tool is missing: run scripts/install-deps.sh rig"; exit 1; }
done

# The probe, against the cross toolchain's arm64 uapi (what src/kvm-arm64.h takes on aarch64).
stage=$cache/facts-stage
rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/rig"
aarch64-linux-gnu-gcc -std=gnu11 -O2 -Wall -Wextra -Wno-unused-parameter -Werror -D_GNU_SOURCE \
        -I"$src/src" -o "$stage/bin/kernel-facts" "$here/kernel-facts.c"
# Run by tests/arm64/init in /rig/out, which ships the file out on the console.
cat >"$stage/rig/cases" <<EOF
kernel-facts kernel-facts "kvm-facts-\$(uname -r)-\$RIG_MODE.txt" "Host: QEMU \$(cat /rig/qemu-version) -cpu max,$SVE,pauth-impdef=on -smp 2 (VLS $VLS), KVM mode \$RIG_MODE: \$(dmesg | grep -m 1 -E 'kvm \\[[0-9]+\\]: (VHE|Hyp|nVHE|Protected)' | sed 's/^\\[[^]]*\\] //')." "Made by tests/arm64/capture-facts.sh; do not edit."
EOF
qemu-system-aarch64 --version | sed -n '1s/.*version \([^ ]*\).*/\1/p' >"$stage/rig/qemu-version"

rm -f "$cache/facts-initrd.gz"
failed=0
for series in $series_list; do
        "$here/fetch-host.sh" "$cache" "$series" >"$cache/parts-$series" 2>"$cache/logs/fetch-$series.log" || {
                say "fetching Debian's $series arm64 kernel failed: $(tail -n 3 "$cache/logs/fetch-$series.log")"
                exit 1
        }
        kernel=$(sed -n 's/^kernel //p' "$cache/parts-$series")
        busybox=$(sed -n 's/^busybox //p' "$cache/parts-$series")
        [ -f "$cache/facts-initrd.gz" ] || "$here/mkinitramfs.sh" "$cache/facts-initrd.gz" "$stage" "$busybox"

        # The modes of a series boot at once: two QEMUs on the machine's two cores.
        for mode in $modes; do
                (
                        rc=0
                        "$here/boot-host.sh" "facts-$series-$mode" "$SVE" "$mode" "$VLS" "$kernel" \
                                "$cache/facts-initrd.gz" "$cache/logs/facts-$series-$mode.log" || rc=$?
                        echo "$rc" >"$cache/logs/facts-$series-$mode.rc"
                ) &
        done
        wait

        for mode in $modes; do
                name=facts-$series-$mode
                log=$cache/logs/$name.log
                if ! tr -d '\r' <"$log" | grep -q '^case kernel-facts PASS'; then
                        say "$name: the probe did not pass (QEMU exit $(cat "$cache/logs/$name.rc")); console in $log:"
                        tr -d '\r' <"$log" | grep -E '^\[kernel-facts\]|^case ' | tail -n 20 >&2
                        failed=1
                        continue
                fi
                files=$("$here/collect-files.sh" "$log" "$cache/facts-out/$name")
                for f in $files; do
                        # A newer capture of the same series and mode replaces the older.
                        case $f in
                        kvm-facts-6.1.0-*) old="$outdir/kvm-facts-6.1.0-*-$mode.txt" ;;
                        kvm-facts-6.12.*) old="$outdir/kvm-facts-6.12.*-$mode.txt" ;;
                        *) old= ;;
                        esac
                        # shellcheck disable=SC2086
                        [ -z "$old" ] || rm -f $old
                        cp "$cache/facts-out/$name/$f" "$outdir/$f"
                        say "$name: $outdir/$f"
                done
        done
done
rm -f "$cache/facts-initrd.gz"
exit "$failed"
