#!/bin/sh
# The arm64 rig: runs svemig against the real Linux KVM, SVE included, on
# emulated arm64 hosts (QEMU TCG at EL2 booting Debian's arm64 kernel; see
# shared/ARM64-RIG.md). In order, it
#   1. installs what it needs (scripts/install-deps.sh rig);
#   2. fetches Debian's arm64 kernel and busybox-static into the cache
#      (tests/arm64/fetch-host.sh);
#   3. cross-builds svemig's test programs for aarch64
#      (tests/arm64/aarch64-cross.ini);
#   4. builds one initramfs (tests/arm64/mkinitramfs.sh, tests/arm64/init)
#      holding the programs and the cases below;
#   5. boots every host of the matrix below, two at a time
#      (tests/arm64/boot-host.sh), and reads each host's result block;
#   6. prints a summary and exits non-zero on any failure.
#
#   tests/arm64/run-rig.sh
# Environment: RIG_CACHE (default tests/arm64/cache), RIG_JOBS (hosts booted
# at once, default 2), RIG_HOSTS (names from the matrix to boot, default all),
# CI (when "true", a rig that cannot run is a failure, not a skip).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
cache=${RIG_CACHE:-$here/cache}
jobs=${RIG_JOBS:-2}
start=$(date +%s)
mkdir -p "$cache/logs"
cache=$(cd "$cache" && pwd)

say() { echo "rig: $*"; }

# A rig that cannot run must not pass silently: in CI it fails.
cannot_run() {
        echo "" >&2
        echo "#####################################################################" >&2
        echo "rig: THE ARM64 KVM RIG CANNOT RUN: $*" >&2
        echo "rig: nothing was tested against the real Linux KVM." >&2
        echo "#####################################################################" >&2
        [ "${CI:-}" = true ] && exit 1
        exit 77 # meson: skipped
}

# The host matrix: NAME SVE-OPTIONS MODE VLS. VLS is what KVM must report for
# those QEMU options (shared/ARM64-RIG.md); the cases check it.
SVE_A="sve=on,sve128=on,sve256=on,sve512=on"
SVE_B="sve=on,sve128=on,sve256=on"
MATRIX="A-vhe $SVE_A vhe 0xb
A-nvhe $SVE_A nvhe 0xb
B-vhe $SVE_B vhe 0x3
B-nvhe $SVE_B nvhe 0x3
C-nosve sve=off vhe 0x0"

# The cases every host runs (tests/arm64/init runs them with RIG_* set; a
# case that does not apply to a host, such as an SVE payload on C, skips).
CASES='conformance conformance --backend kvm --expect-vls "$RIG_VLS"
payload-rdvl payload-run rdvl /payloads/rdvl.bin
payload-workload payload-run workload /payloads/workload.bin'
# The cross-built programs the cases need, as meson targets.
TARGETS="tests/conformance/conformance tests/arm64/payload-run"

# 1. Tools.
"$src/scripts/install-deps.sh" rig >"$cache/logs/install-deps.log" 2>&1 || true
for tool in qemu-system-aarch64 aarch64-linux-gnu-gcc aarch64-linux-gnu-readelf cpio meson; do
        command -v "$tool" >/dev/null ||
                cannot_run "$tool is missing and scripts/install-deps.sh rig could not install it (see $cache/logs/install-deps.log)"
done

# 2. Kernel and busybox.
"$here/fetch-host.sh" "$cache" >"$cache/parts" 2>"$cache/logs/fetch.log" ||
        cannot_run "fetching Debian's arm64 kernel and busybox failed: $(tail -n 3 "$cache/logs/fetch.log")"
kernel=$(sed -n 's/^kernel //p' "$cache/parts")
busybox=$(sed -n 's/^busybox //p' "$cache/parts")

# 3. The aarch64 build. A build failure is a test failure, never a skip.
xbuild=$cache/build-aarch64
# --reconfigure: meson resolves target names before it would notice new ones.
reconf=
[ -f "$xbuild/build.ninja" ] && reconf=--reconfigure
[ -n "$reconf" ] || rm -rf "$xbuild"
meson setup $reconf --cross-file "$here/aarch64-cross.ini" -Dtests=enabled -Dbuildtype=debugoptimized \
        "$xbuild" "$src" >"$cache/logs/cross-setup.log" 2>&1 || {
        cat "$cache/logs/cross-setup.log"
        say "FAIL: meson setup of the aarch64 cross build"
        exit 1
}
# shellcheck disable=SC2086
meson compile -C "$xbuild" $TARGETS >"$cache/logs/cross-build.log" 2>&1 || {
        tail -n 40 "$cache/logs/cross-build.log"
        say "FAIL: the aarch64 cross build"
        exit 1
}

# 4. The initramfs.
stage=$cache/stage
rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/rig"
for t in $TARGETS; do
        cp "$xbuild/$t" "$stage/bin/"
done
echo "$CASES" >"$stage/rig/cases"
"$here/payloads/build.sh" "$cache/payloads" >"$cache/logs/payloads.log" 2>&1 || {
        cat "$cache/logs/payloads.log"
        say "FAIL: building the aarch64 payloads"
        exit 1
}
mkdir -p "$stage/payloads"
cp "$cache/payloads"/*.bin "$stage/payloads/"
"$here/mkinitramfs.sh" "$cache/initrd.gz" "$stage" "$busybox"

# 5. Boot the hosts, RIG_JOBS at a time.
boot() {
        rc=0
        "$here/boot-host.sh" "$1" "$2" "$3" "$4" "$kernel" "$cache/initrd.gz" "$cache/logs/host-$1.log" || rc=$?
        echo "$rc" >"$cache/logs/host-$1.rc"
}
hosts=""
running=0
echo "$MATRIX" >"$cache/matrix"
while read -r name sve mode vls; do
        if [ -n "${RIG_HOSTS:-}" ]; then
                case " $RIG_HOSTS " in *" $name "*) ;; *) continue ;; esac
        fi
        hosts="$hosts $name"
        rm -f "$cache/logs/host-$name.rc"
        boot "$name" "$sve" "$mode" "$vls" &
        running=$((running + 1))
        if [ "$running" -ge "$jobs" ]; then
                wait
                running=0
        fi
done <"$cache/matrix"
wait

# 6. Results.
passed=0 failed=0 skipped=0
kver=""
for name in $hosts; do
        log=$cache/logs/host-$name.log
        rc=$(cat "$cache/logs/host-$name.rc" 2>/dev/null || echo '?')
        block=$(tr -d '\r' <"$log" | sed -n '/^=== RIG-RESULT BEGIN/,/^=== RIG-RESULT END/p')
        vls=$(awk -v n="$name" '$1 == n {print $4}' "$cache/matrix")
        mode=$(awk -v n="$name" '$1 == n {print $3}' "$cache/matrix")
        if [ -z "$block" ] || ! echo "$block" | grep -q '^=== RIG-RESULT END'; then
                say "host $name: FAIL: no result block (QEMU exit $rc); the console is in $log:"
                tr -d '\r' <"$log" | tail -n 25 | sed 's/^/    /'
                failed=$((failed + 1))
                continue
        fi
        kver=$(echo "$block" | sed -n 's/^kernel //p')
        kvm=$(echo "$block" | sed -n 's/^kvm kvm \[[0-9]*\]: //p')
        say "host $name: VLS $vls, mode $mode ($kvm), QEMU exit $rc"
        echo "$block" | sed -n 's/^info \([^ ]*\) /\1: /p' | sed 's/^/    /'
        cases=$(echo "$block" | grep '^case ' || true)
        if [ -z "$cases" ]; then
                say "host $name: FAIL: ran no case"
                failed=$((failed + 1))
        fi
        while read -r _ cname verdict crc; do
                [ -n "$cname" ] || continue
                echo "    $verdict $cname ($crc)"
                if [ "$verdict" = PASS ]; then
                        passed=$((passed + 1))
                elif [ "$verdict" = SKIP ]; then
                        skipped=$((skipped + 1))
                else
                        failed=$((failed + 1))
                        tr -d '\r' <"$log" | grep "^\[$cname\] " | grep -v -E '^\[[^]]*\] (PASS|SKIP) ' | tail -n 30 | sed 's/^/      /'
                fi
        done <<EOF
$cases
EOF
done
say "kernel $kver ($(basename "$(dirname "$(dirname "$kernel")")")), $(qemu-system-aarch64 --version | head -n 1)"
say "wall time $(($(date +%s) - start)) s; console logs in $cache/logs/"
[ "$skipped" -eq 0 ] || say "$skipped case(s) skipped: they do not apply to their host"
echo "rig: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
