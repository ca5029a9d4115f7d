#!/bin/sh
# The arm64 rig: runs svemig against the real Linux KVM, SVE included, on
# emulated arm64 hosts (QEMU TCG at EL2 booting Debian's arm64 kernel; see
# shared/ARM64-RIG.md). In order, it
#   1. installs what it needs (scripts/install-deps.sh rig);
#   2. fetches Debian's arm64 kernel and busybox-static into the cache
#      (tests/arm64/fetch-host.sh);
#   3. cross-builds svemig's test programs for aarch64
#      (tests/arm64/aarch64-cross.ini);
#   4. builds the initramfs of round 1 (tests/arm64/mkinitramfs.sh,
#      tests/arm64/init) holding the programs and the cases below;
#   5. boots the hosts of round 1, two at a time (tests/arm64/boot-host.sh),
#      and collects the files their cases left (snapshots made on A);
#   6. builds the initramfs of round 2 with those files under /rig/in/HOST/
#      and boots the hosts of round 2 (B), which restore or refuse them
#      (each with its own case list, /rig/cases-HOST);
#   7. the live round: boots A-live (VLS 0xb) and B-live (VLS 0x3) at once,
#      both VHE, joined by a QEMU socket netdev on a free loopback port
#      (virtio-net; the kernel's modules go into the initramfs), each running
#      svemigd with the kvm backend (tests/arm64/live-migrate.sh): A migrates
#      a running SVE payload guest to B, which sees it finish with the
#      model's result, and B refuses a 512-bit guest;
#   8. the linux round: boots A-linux (VLS 0xb, VHE), where svemigd boots
#      Debian's arm64 kernel as a guest in svemig-vmm with the initramfs of
#      tests/arm64/linux/ (busybox, sve-vl) and checks its console
#      (tests/arm64/linux-guest.sh): /init ran, the guest's vector lengths
#      are its --vl, the SVE checksum is right, and the power-off ended it;
#   9. reads each host's result block, prints a summary and exits non-zero
#      on any failure.
#
#   tests/arm64/run-rig.sh
# Environment: RIG_CACHE (default tests/arm64/cache), RIG_JOBS (hosts booted
# at once, default 2), RIG_HOSTS (names from the matrix to boot, default all),
# RIG_CASES (names of the cases to run, default all: a quicker run while
# working on one), RIG_SERIES (the Debian kernel series every host boots: 6.1, the default, or 6.12),
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

# The host matrix: NAME SVE-OPTIONS MODE VLS ROUND. VLS is what KVM must
# report for those QEMU options (shared/ARM64-RIG.md); the cases check it.
# Round 2 boots once round 1 is done, with the files round 1 made.
SVE_A="sve=on,sve128=on,sve256=on,sve512=on"
SVE_B="sve=on,sve128=on,sve256=on"
MATRIX="A-vhe $SVE_A vhe 0xb 1
A-nvhe $SVE_A nvhe 0xb 1
C-nosve sve=off vhe 0x0 1
B-vhe $SVE_B vhe 0x3 2
B-nvhe $SVE_B nvhe 0x3 2
A-live $SVE_A vhe 0xb live
B-live $SVE_B vhe 0x3 live
A-linux $SVE_A vhe 0xb linux"

# The cases every host runs (tests/arm64/init runs them with RIG_* set; a
# case that does not apply to a host, such as an SVE payload on C, skips).
CASES='conformance conformance --backend kvm --expect-vls "$RIG_VLS"
payload-rdvl payload-run rdvl /payloads/rdvl.bin
payload-workload payload-run workload /payloads/workload.bin
snapshot-roundtrip snapshot-run roundtrip /payloads/workload.bin
devstate-roundtrip devstate-run roundtrip'
# Round 1 also snapshots the workload mid-loop into /rig/out, which init
# ships out: once at the cluster set {128,256} (B restores it), once at A's
# full 512 bits (B refuses it).
SAVE_CASES='snapshot-save-cluster snapshot-run save /payloads/workload.bin cluster.svemig --vls 128,256
snapshot-save-full snapshot-run save /payloads/workload.bin full.svemig
devstate-save devstate-run save devstate.svemig'
# restore_cases SOURCE: what a round-2 host, in either KVM mode, does with
# the files SOURCE saved in round 1 (its vGIC and timers too). The 512-bit
# guest is refused for vq 4. The {128,256} guest is restored and
# continued from a host in either mode: the guest sees ID_AA64MMFR1_EL1.VH set
# under VHE and clear under nVHE, which KVM 6.1 lets no VMM write, but VH only
# says what EL2 may use, so it is not compared (docs/cpu-baseline.md) and the
# destination keeps its own.
restore_cases() {
        echo "restore-cluster-from-$1 snapshot-run restore /rig/in/$1/cluster.svemig --expect-vl 256 --image /payloads/workload.bin"
        echo "devstate-restore-from-$1 devstate-run restore /rig/in/$1/devstate.svemig"
        echo "refuse-full-from-$1 snapshot-run refuse /rig/in/$1/full.svemig --expect-vq 4"
}
# The cross-built programs the cases need, as meson targets; the live round
# also gets the daemon, its VMM and the CLI.
TARGETS="tests/conformance/conformance tests/arm64/payload-run tests/arm64/snapshot-run tests/arm64/devstate-run"
LIVE_TARGETS="daemon/svemigd daemon/svemig-vmm daemon/svemigctl"
# The live round's pair: NAME IP PEER-NAME PEER-IP ROLE MAC. Both VHE (KVM 6.1
# refuses a guest across modes for ID_AA64MMFR1_EL1.VH, see restore_cases).
LIVE="A-live 169.254.0.1 B 169.254.0.2 source 52:54:00:00:00:0a
B-live 169.254.0.2 A 169.254.0.1 dest 52:54:00:00:00:0b"
# The kernel modules of its link, with what they need (from their .modinfo).
LIVE_MODULES="virtio_mmio virtio_net"

# 1. Tools.
"$src/scripts/install-deps.sh" rig >"$cache/logs/install-deps.log" 2>&1 || true
for tool in qemu-system-aarch64 aarch64-linux-gnu-gcc aarch64-linux-gnu-readelf cpio meson; do
        command -v "$tool" >/dev/null ||
                cannot_run "$tool is missing and scripts/install-deps.sh rig could not install it (see $cache/logs/install-deps.log)"
done

# 2. Kernel and busybox.
"$here/fetch-host.sh" "$cache" "${RIG_SERIES:-6.1}" >"$cache/parts" 2>"$cache/logs/fetch.log" ||
        cannot_run "fetching Debian's arm64 kernel and busybox failed: $(tail -n 3 "$cache/logs/fetch.log")"
kernel=$(sed -n 's/^kernel //p' "$cache/parts")
busybox=$(sed -n 's/^busybox //p' "$cache/parts")

# 3. The aarch64 build. A build failure is a test failure, never a skip.
xbuild=$cache/build-aarch64
# --reconfigure: meson resolves target names before it would notice new ones.
reconf=
[ -f "$xbuild/build.ninja" ] && reconf=--reconfigure
[ -n "$reconf" ] || rm -rf "$xbuild"
meson setup $reconf --cross-file "$here/aarch64-cross.ini" -Dtests=enabled -Dlibvirt=disabled -Dbuildtype=debugoptimized \
        "$xbuild" "$src" >"$cache/logs/cross-setup.log" 2>&1 || {
        cat "$cache/logs/cross-setup.log"
        say "FAIL: meson setup of the aarch64 cross build"
        exit 1
}
# shellcheck disable=SC2086
meson compile -C "$xbuild" $TARGETS $LIVE_TARGETS >"$cache/logs/cross-build.log" 2>&1 || {
        tail -n 40 "$cache/logs/cross-build.log"
        say "FAIL: the aarch64 cross build"
        exit 1
}

# Keeps only the cases RIG_CASES names in case list $1 (all without it).
pick_cases() {
        [ -n "${RIG_CASES:-}" ] || return 0
        awk -v keep=" $RIG_CASES " 'index(keep, " " $1 " ")' "$1" >"$1.picked"
        mv "$1.picked" "$1"
}
# 4. The initramfs of round 1.
stage=$cache/stage
rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/rig"
for t in $TARGETS; do
        cp "$xbuild/$t" "$stage/bin/"
done
printf '%s\n%s\n' "$CASES" "$SAVE_CASES" >"$stage/rig/cases"
pick_cases "$stage/rig/cases"
"$here/payloads/build.sh" "$cache/payloads" >"$cache/logs/payloads.log" 2>&1 || {
        cat "$cache/logs/payloads.log"
        say "FAIL: building the aarch64 payloads"
        exit 1
}
mkdir -p "$stage/payloads"
cp "$cache/payloads"/*.bin "$stage/payloads/"
"$here/mkinitramfs.sh" "$cache/initrd-1.gz" "$stage" "$busybox"

# 5. Boot a round's hosts, RIG_JOBS at a time.
boot() {
        rc=0
        "$here/boot-host.sh" "$1" "$2" "$3" "$4" "$kernel" "$5" "$cache/logs/host-$1.log" || rc=$?
        echo "$rc" >"$cache/logs/host-$1.rc"
}
hosts=""
echo "$MATRIX" >"$cache/matrix"
# boot_round ROUND INITRD: boots the matrix's hosts of that round; adds them to $hosts.
boot_round() {
        running=0
        while read -r name sve mode vls round; do
                [ "$round" = "$1" ] || continue
                if [ -n "${RIG_HOSTS:-}" ]; then
                        case " $RIG_HOSTS " in *" $name "*) ;; *) continue ;; esac
                fi
                hosts="$hosts $name"
                rm -f "$cache/logs/host-$name.rc"
                boot "$name" "$sve" "$mode" "$vls" "$2" &
                running=$((running + 1))
                if [ "$running" -ge "$jobs" ]; then
                        wait
                        running=0
                fi
        done <"$cache/matrix"
        wait
}

# Unpacks the files host $1's init printed into directory $2.
collect_files() {
        "$here/collect-files.sh" "$cache/logs/host-$1.log" "$2" >/dev/null
}

t1=$(date +%s)
boot_round 1 "$cache/initrd-1.gz"
t2=$(date +%s)

# 6. Round 2: what round 1's SVE hosts saved, restored (or refused) elsewhere.
rm -rf "$stage/rig/in" "$stage"/rig/cases-*
printf '%s\n' "$CASES" >"$stage/rig/cases"
sources=""
for name in $hosts; do
        vls=$(awk -v n="$name" '$1 == n {print $4}' "$cache/matrix")
        [ "$vls" != 0x0 ] || continue
        collect_files "$name" "$stage/rig/in/$name"
        sources="$sources $name"
done
while read -r name _ _ _ round; do
        [ "$round" = 2 ] || continue
        printf '%s\n' "$CASES" >"$stage/rig/cases-$name"
        for src_host in $sources; do
                restore_cases "$src_host" >>"$stage/rig/cases-$name"
        done
done <"$cache/matrix"
for f in "$stage"/rig/cases*; do
        pick_cases "$f"
done
"$here/mkinitramfs.sh" "$cache/initrd-2.gz" "$stage" "$busybox"
t3=$(date +%s)
boot_round 2 "$cache/initrd-2.gz"
t4=$(date +%s)

# 7. The live round: two hosts at once, joined by a link.
live_wanted() {
        [ -z "${RIG_HOSTS:-}" ] && return 0
        case " $RIG_HOSTS " in *" A-live "* | *" B-live "*) return 0 ;; esac
        return 1
}

# Copies module $1 of the kernel package and those it depends on into $2,
# appending each to $2/order after its dependencies.
copy_module() {
        grep -qx "$1" "$2/order" && return 0
        ko=$(find "$moddir" -name "$1.ko" | head -n 1)
        [ -n "$ko" ] || { say "FAIL: the kernel package has no module $1"; exit 1; }
        deps=$(aarch64-linux-gnu-objcopy -O binary -j .modinfo "$ko" /dev/stdout | tr '\0' '\n' |
                sed -n 's/^depends=//p' | tr ',' ' ')
        for dep in $deps; do
                copy_module "$dep" "$2"
        done
        # sh has no local variables: the recursion reused $ko.
        cp "$(find "$moddir" -name "$1.ko" | head -n 1)" "$2/$1.ko"
        echo "$1" >>"$2/order"
}

# A TCP port on 127.0.0.1 nobody uses now (the kernel's pick).
free_port() {
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' ||
                echo $((20000 + $(od -An -N2 -tu2 /dev/urandom) % 40000))
}

# Whether something listens on 127.0.0.1:$1 (/proc/net/tcp, state 0A).
listening() {
        grep -q "^ *[0-9]*: 0100007F:$(printf '%04X' "$1") [0-9A-F:]* 0A" /proc/net/tcp
}

t5=$(date +%s)
t6=$t5
if live_wanted; then
        moddir=$(dirname "$(dirname "$kernel")")/lib/modules
        rm -rf "$stage/rig/modules" "$stage"/rig/cases-*
        mkdir -p "$stage/rig/modules"
        : >"$stage/rig/modules/order"
        for m in $LIVE_MODULES; do
                copy_module "$m" "$stage/rig/modules"
        done
        for t in $LIVE_TARGETS; do
                cp "$xbuild/$t" "$stage/bin/"
        done
        cp "$here/live-migrate.sh" "$stage/bin/live-migrate"
        echo "$LIVE" | while read -r name _ peer _ role _; do
                echo "live-migrate-$role live-migrate $role $peer" >"$stage/rig/cases-$name"
        done
        "$here/mkinitramfs.sh" "$cache/initrd-live.gz" "$stage" "$busybox"
        port=$(free_port)
        t5=$(date +%s)
        first=1
        while read -r name ip peer peer_ip role mac; do
                sve=$(awk -v n="$name" '$1 == n {print $2}' "$cache/matrix")
                vls=$(awk -v n="$name" '$1 == n {print $4}' "$cache/matrix")
                hosts="$hosts $name"
                rm -f "$cache/logs/host-$name.rc"
                # The first listens; the second connects once it does.
                if [ "$first" = 1 ]; then
                        netdev="socket,listen=127.0.0.1:$port"
                else
                        netdev="socket,connect=127.0.0.1:$port"
                        n=50
                        while ! listening "$port" && [ "$n" -gt 0 ]; do
                                sleep 0.2
                                n=$((n - 1))
                        done
                fi
                first=0
                (
                        export RIG_NETDEV="$netdev" RIG_MAC="$mac" RIG_APPEND="rig.ip=$ip rig.peer-ip=$peer_ip"
                        boot "$name" "$sve" vhe "$vls" "$cache/initrd-live.gz"
                ) &
        done <<EOF
$LIVE
EOF
        wait
        t6=$(date +%s)
fi

# 8. The linux round: a Linux guest in svemig-vmm inside A-linux.
linux_wanted() {
        [ -z "${RIG_HOSTS:-}" ] && return 0
        case " $RIG_HOSTS " in *" A-linux "*) return 0 ;; esac
        return 1
}
# The guest's SVE loop: 1<<24 iterations; its checksum, computed here.
LINUX_ITERATIONS=16777216
LINUX_VL=128,256,512
t7=$(date +%s)
t8=$t7
if linux_wanted; then
        lstage=$cache/stage-linux
        gstage=$cache/stage-linux-guest
        rm -rf "$lstage" "$gstage"
        mkdir -p "$lstage/bin" "$lstage/rig/linux" "$gstage/bin"
        aarch64-linux-gnu-gcc -static -O2 -march=armv8.2-a+sve -o "$gstage/bin/sve-vl" "$here/linux/sve-vl.c" \
                >"$cache/logs/sve-vl.log" 2>&1 || {
                cat "$cache/logs/sve-vl.log"
                say "FAIL: building tests/arm64/linux/sve-vl.c"
                exit 1
        }
        "$here/mkinitramfs.sh" "$lstage/rig/linux/guest.gz" "$gstage" "$busybox" "$here/linux/init"
        cp "$kernel" "$lstage/rig/linux/vmlinuz"
        for t in $LIVE_TARGETS; do
                cp "$xbuild/$t" "$lstage/bin/"
        done
        cp "$here/linux-guest.sh" "$lstage/bin/linux-guest"
        sum=$(python3 -c "n = $LINUX_ITERATIONS; print('0x%016x' % (sum((i * i) ^ (i >> 3) for i in range(n)) % 2**64))")
        echo "linux-boot ${RIG_LINUX_CMDLINE:+LINUX_CMDLINE=\"$RIG_LINUX_CMDLINE\" }linux-guest /rig/linux/vmlinuz /rig/linux/guest.gz $LINUX_VL $sum" >"$lstage/rig/cases"
        "$here/mkinitramfs.sh" "$cache/initrd-linux.gz" "$lstage" "$busybox"
        t7=$(date +%s)
        hosts="$hosts A-linux"
        rm -f "$cache/logs/host-A-linux.rc"
        # A nested guest on a loaded machine is slow: its bounds are wider (hangs only).
        (
                export RIG_APPEND="rig.case-timeout=1500" RIG_BOOT_TIMEOUT=1800
                boot A-linux "$SVE_A" vhe 0xb "$cache/initrd-linux.gz"
        )
        t8=$(date +%s)
fi

# 9. Results.
passed=0 failed=0 skipped=0
kver=""
for name in $hosts; do
        log=$cache/logs/host-$name.log
        rc=$(cat "$cache/logs/host-$name.rc" 2>/dev/null || echo '?')
        block=$(tr -d '\r' <"$log" | sed -n '/^=== RIG-RESULT BEGIN/,/^=== RIG-RESULT END/p')
        vls=$(awk -v n="$name" '$1 == n {print $4}' "$cache/matrix")
        mode=$(awk -v n="$name" '$1 == n {print $3}' "$cache/matrix")
        round=$(awk -v n="$name" '$1 == n {print $5}' "$cache/matrix")
        if [ -z "$block" ] || ! echo "$block" | grep -q '^=== RIG-RESULT END'; then
                say "host $name: FAIL: no result block (QEMU exit $rc); the console is in $log:"
                tr -d '\r' <"$log" | tail -n 25 | sed 's/^/    /'
                failed=$((failed + 1))
                continue
        fi
        kver=$(echo "$block" | sed -n 's/^kernel //p')
        kvm=$(echo "$block" | sed -n 's/^kvm kvm \[[0-9]*\]: //p')
        say "host $name (round $round): kernel $kver, VLS $vls, mode $mode ($kvm), QEMU exit $rc"
        echo "$block" | sed -n 's/^info \([^ ]*\) /\1: /p' | sed 's/^/    /'
        if [ -d "$stage/rig/in/$name" ]; then
                for f in "$stage/rig/in/$name"/*; do
                        [ -f "$f" ] && echo "    file ${f##*/} ($(wc -c <"$f") bytes) handed to round 2"
                done
        fi
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
say "wall time $(($(date +%s) - start)) s (boots: round 1 $((t2 - t1)) s, round 2 $((t4 - t3)) s, live round $((t6 - t5)) s, linux round $((t8 - t7)) s); console logs in $cache/logs/"
[ "$skipped" -eq 0 ] || say "$skipped case(s) skipped: they do not apply to their host"
echo "rig: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
