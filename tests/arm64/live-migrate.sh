#!/bin/sh
# A real live migration between two emulated arm64 hosts, each running
# svemigd with the kvm backend: the rig's live round (tests/arm64/run-rig.sh
# boots A, VLS 0xb, and B, VLS 0x3, at once, both VHE, joined by a QEMU
# socket netdev). Runs inside each host as a case of tests/arm64/init:
#
#   live-migrate source PEER   (on A) brings up the link and svemigd, waits
#       for PEER; a guest at A's full 512 bits, which PEER refuses (check
#       and migrate: exit 4, the reason names vq 4), runs on here; then
#       payloads/countdown.S as a guest at --vl cluster ({128,256}) is
#       migrated to PEER while it runs, last: A needs PEER no more after it.
#   live-migrate dest PEER     (on B) brings up the link and svemigd, waits
#       for the guest to arrive and finish, checks that what it reported is
#       the model's result at 256 bits (payload-run result 2), that the
#       refused guest never came.
#
# The link: the kernel's virtio-net/virtio-mmio modules from /rig/modules
# (loaded in the order of /rig/modules/order), eth0 at the link-local
# address rig.ip= of the kernel command line; the peer's from rig.peer-ip=.
# svemigd runs in the foreground of a background job (no systemd here), its
# state and socket under /tmp/svemig. Prints PASS/FAIL lines; exits 1 on any
# failure.
set -u

role=${1:?usage: live-migrate source|dest PEER}
peer=${2:?usage: live-migrate source|dest PEER}
dir=/tmp/svemig
sock=$dir/svemigd.sock
port=7070
# Bounds on hangs only: nothing asserts a duration.
WAIT=400

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
contains() { echo "$1" | grep -q -- "$2"; } # contains TEXT REGEX
# wait_for SECONDS COMMAND...: polls COMMAND until it succeeds (by the clock:
# a svemigctl call alone takes a while under TCG).
wait_for() {
        deadline=$(($(date +%s) + $1))
        shift
        while ! "$@" >/dev/null 2>&1; do
                [ "$(date +%s)" -lt "$deadline" ] || return 1
                sleep 0.2
        done
}

ip_self= ip_peer=
for w in $(cat /proc/cmdline); do
        case $w in
        rig.ip=*) ip_self=${w#rig.ip=} ;;
        rig.peer-ip=*) ip_peer=${w#rig.peer-ip=} ;;
        esac
done
[ -n "$ip_self" ] && [ -n "$ip_peer" ] || die "link-config (rig.ip= and rig.peer-ip= on the kernel command line)"
self=${RIG_HOST%%-*} # A-live -> A: svemig's name for this host

# The link.
for m in $(cat /rig/modules/order); do
        insmod "/rig/modules/$m.ko" || die "insmod-$m"
done
wait_for 10 test -e /sys/class/net/eth0 || die "link-eth0 (no virtio-net device appeared)"
ip link set lo up
ip link set eth0 up && ip addr add "$ip_self/16" dev eth0 || die "link-address $ip_self"
check link-up true

# The daemon.
mkdir -p "$dir/state"
cat >"$dir/migrate.conf" <<EOF
[daemon]
host-name = $self
state-directory = $dir/state
socket = $sock
socket-group = 0
[hypervisor]
backend = kvm
[cluster]
listen = $ip_self:$port
refresh-interval = 300ms
peer-timeout = 20s
# The rig's emulated hosts carry no CA: the lab mode (peer TLS is tested by tests/daemon/test-peer-tls.py).
peer-tls = no
[peer $peer]
address = $ip_peer:$port
EOF
svemigd --config "$dir/migrate.conf" --foreground >"$dir/svemigd.log" 2>&1 &
daemon=$!
wait_for 30 test -S "$sock" || die "svemigd-up (no control socket)"
# Both hosts boot at once, but not at the same pace.
up() { ctl cluster | grep -q "^hosts: *2, 2 up;"; }
wait_for $WAIT up || die "peer-$peer-up (svemigctl cluster: $(ctl cluster | head -n 1))"
check "peer-$peer-up" true
echo "RIG-INFO cluster $(ctl cluster | sed -n 's/^guest set: *//p')"

shown() { ctl guest show "$1" 2>&1; }
field() { shown "$1" | sed -n "s/^$2: *//p"; }

source_side() {
        check cluster-set-128-256 sh -c "svemigctl --socket $sock cluster | grep -q '^guest set: *128,256 bits'"

        # A guest at A's full 512 bits: B (128,256) must refuse it, and it runs on here.
        ctl guest create wide --vcpus 1 --memory 64K --vl 128,256,512 --payload /payloads/workload.bin --start ||
                die "create-512-bit-guest"
        out=$(ctl migrate wide "$peer" --check 2>&1)
        rc=$?
        echo "$out"
        check refuse-512-check-exit-4 [ "$rc" -eq 4 ]
        check refuse-512-check-names-vq-4 contains "$out" 'vq 4 (512-bit)'
        out=$(ctl migrate wide "$peer" 2>&1)
        rc=$?
        echo "$out"
        check refuse-512-migrate-exit-4 [ "$rc" -eq 4 ]
        check refuse-512-migrate-names-vq-4 contains "$out" 'vq 4 (512-bit)'
        check refused-guest-runs-on sh -c "svemigctl --socket $sock guest show wide | grep -q '^state: *running'"
        # It spins forever: its vcpu would slow the next guest down.
        ctl guest stop wide >/dev/null

        # The SVE payload at the cluster set, migrated while it runs.
        t0=$(date +%s)
        ctl guest create sve --vcpus 1 --memory 64K --vl cluster --payload /payloads/countdown.bin --start ||
                die "create-payload-guest"
        check payload-guest-vl-cluster sh -c "svemigctl --socket $sock guest show sve | grep -q '^vector lengths: 128,256 bits (cluster)'"
        # Some progress reported, not finished: the migration lands mid-run.
        wait_for 60 sh -c "svemigctl --socket $sock guest show sve | grep -q '^reported: .* at 0x10000'" ||
                die "payload-reports-progress ($(field sve reported))"
        echo "RIG-INFO before-migrate $(field sve reported) (after $(($(date +%s) - t0)) s)"
        check running-when-migrate-starts sh -c "svemigctl --socket $sock guest show sve | grep -q '^state: *running' &&
                svemigctl --socket $sock guest show sve | grep -q '^finished: *no'"
        out=$(ctl migrate sve "$peer" 2>&1)
        rc=$?
        echo "$out"
        check migrate-to-$peer-succeeds [ "$rc" -eq 0 ]
        passes_n=$(echo "$out" | sed -n 's/^ *passes *\([0-9]*\).*/\1/p')
        echo "RIG-INFO migrate $(echo "$out" | sed -n 's/^ *\(total time\|downtime\|passes\) *//p' | tr '\n' ' ')"
        check live-pre-copy-then-stop-copy [ "${passes_n:-0}" -ge 2 ]
        check gone-from-$self sh -c "! svemigctl --socket $sock guest show sve >/dev/null 2>&1"
}

dest_side() {
        want=$(payload-run result 2)
        t0=$(date +%s)
        wait_for $WAIT sh -c "svemigctl --socket $sock guest show sve | grep -q '^finished: *yes'" ||
                die "payload-finished-on-$self ($(shown sve | tr '\n' ';'))"
        shown sve
        reported=$(field sve reported)
        echo "RIG-INFO result $reported (model at 256 bits: $want; waited $(($(date +%s) - t0)) s)"
        check payload-finished-on-$self true
        check result-equals-model-256-bit contains "$reported" "^$want (0x[0-9a-f]*) at 0x10008,"
        check payload-config-travelled sh -c "svemigctl --socket $sock guest show sve | grep -q '^payload: *\/payloads\/countdown.bin'"
        check refused-guest-never-came sh -c "! svemigctl --socket $sock guest show wide >/dev/null 2>&1"
}

case $role in
source) source_side ;;
dest) dest_side ;;
*) die "role $role (source or dest)" ;;
esac
finish
