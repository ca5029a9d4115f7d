#!/bin/sh
# The arm64 rig's linux round (issue 16): inside an emulated host (A, VLS
# 0xb), svemigd with the kvm backend boots Debian's arm64 kernel as a guest
# in svemig-vmm, with the initramfs of tests/arm64/linux/ (busybox, sve-vl):
#
#   linux-guest KERNEL INITRD VL CHECKSUM
#
# It creates the guest with svemigctl (--vl VL, 2 vcpus, console on the
# PL011), waits for the guest to power itself off, and checks from its
# console (DIR/console.log) that /init ran, that the vector lengths the
# guest sees are VL, that the SVE loop's checksum is CHECKSUM, and that the
# VMM recorded the power-off. Prints PASS/FAIL lines and RIG-INFO timings;
# exits 1 on any failure. The bounds are on hangs only.
set -u

kernel=${1:?usage: linux-guest KERNEL INITRD VL CHECKSUM}
initrd=${2:?}
vl=${3:?}
checksum=${4:?}
dir=/tmp/svemig
sock=$dir/svemigd.sock
WAIT=1200

fails=0 passes=0
check() { # check NAME CONDITION...
        name=$1
        shift
        if "$@"; then
                echo "PASS $name"
                passes=$((passes + 1))
        else
                echo "FAIL $name"
                fails=$((fails + 1))
        fi
}
finish() {
        [ -n "${daemon:-}" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
        if [ "$fails" -ne 0 ] || [ "$passes" -eq 0 ]; then
                echo "--- svemigd's log:"
                tail -n 40 "$dir/svemigd.log" 2>/dev/null
        fi
        echo "--- the guest's console:"
        cat "$console" 2>/dev/null | tail -n 60
        echo "$passes passed, $fails failed"
        [ "$fails" -eq 0 ] && [ "$passes" -gt 0 ]
        exit $?
}
die() {
        echo "FAIL $1"
        fails=$((fails + 1))
        finish
}
ctl() { svemigctl --socket "$sock" "$@"; }
# Centiseconds since this host booted.
now_cs() { sed 's/^\([0-9]*\)\.\([0-9][0-9]\).*/\1\2/' /proc/uptime; }
secs() { echo "$(($1 / 100)).$(printf '%02d' $(($1 % 100)))"; }
# wait_for SECONDS COMMAND...: polls COMMAND until it succeeds.
wait_for() {
        deadline=$(($(date +%s) + $1))
        shift
        while ! "$@" >/dev/null 2>&1; do
                [ "$(date +%s)" -lt "$deadline" ] || return 1
                sleep 1 # each check is a process: the guest needs the CPU more
        done
}

mkdir -p "$dir/state"
console=$dir/state/guests/lx/console.log
cat >"$dir/migrate.conf" <<EOF2
[daemon]
host-name = ${RIG_HOST%%-*}
state-directory = $dir/state
socket = $sock
socket-group = 0
[hypervisor]
backend = kvm
EOF2
svemigd --config "$dir/migrate.conf" --foreground >"$dir/svemigd.log" 2>&1 &
daemon=$!
wait_for 60 test -S "$sock" || die "svemigd-up (no control socket)"

t0=$(now_cs)
out=$(ctl guest create lx --kernel "$kernel" --initrd "$initrd" \
        --cmdline "${LINUX_CMDLINE:-console=ttyAMA0 rdinit=/init panic=-1 loglevel=3}" \
        --vcpus 2 --memory 256M --vl "$vl" --start 2>&1)
rc=$?
t1=$(now_cs)
echo "$out"
check create-and-start [ "$rc" -eq 0 ]
[ "$rc" -eq 0 ] || finish
ran() { grep -q '^GUEST-INIT ran' "$console"; }
wait_for $WAIT ran
t2=$(now_cs)
check init-ran ran
if ! ran; then
        # Why: a vcpu that failed says so when paused; the VMM's files; the console's first lines.
        echo "--- guest pause: $(ctl guest pause lx 2>&1)"
        ls -la "$dir/state/guests/lx"
        ps | grep -v grep | grep svemig
        echo "--- the console's first lines:"
        head -c 4000 "$console"
        finish
fi
done_() { grep -q '^GUEST-DONE' "$console"; }
wait_for $WAIT done_
t3=$(now_cs)
check guest-done done_
sed -n 's/^\(GUEST-\|SVE \)/&/p' "$console" | tr -d '\r'

line() { tr -d '\r' <"$console" | sed -n "s/^$1 //p" | head -n 1; }
vls=$(line 'SVE vls-bits')
check "vls-are-$vl" [ "$vls" = "$vl" ]
max=${vl##*,}
check "default-vl-$max" [ "$(line 'SVE default-bytes')" = "$((max / 8))" ]
check "task-vl-$max" [ "$(line 'SVE vl-bits')" = "$max" ]
check progress-printed grep -q '^SVE progress 8/8' "$console"
check "checksum-$checksum" [ "$(line 'SVE checksum')" = "$checksum" ]
check sve-matches-scalar grep -q '^SVE OK' "$console"
check guest-exit-0 grep -q '^GUEST-DONE rc=0' "$console"
# The guest powered itself off: its VMM ends and says so.
off() { [ "$(cat "$dir/state/guests/lx/last-event" 2>/dev/null)" = poweroff ]; }
wait_for 60 off
check power-off-recorded off
gone() { ! ctl guest show lx | grep -q '^state: *running'; }
wait_for 60 gone
check vmm-ended gone
ctl guest show lx | sed -n 's/^state: */state: /p'

echo "RIG-INFO linux-create $(secs $((t1 - t0))) s (svemigctl guest create --start, kernel and initrd loaded)"
echo "RIG-INFO linux-boot-to-init $(secs $((t2 - t0))) s (to the console's GUEST-INIT line; polled every 1 s)"
echo "RIG-INFO linux-guest-uptime-at-init $(tr -d '\r' <"$console" | sed -n 's/^GUEST-INIT ran, uptime \([0-9.]*\) s.*/\1/p') s (the guest kernel's own clock)"
echo "RIG-INFO linux-run-to-poweroff $(secs $((t3 - t0))) s"
finish
