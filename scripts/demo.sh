#!/bin/sh
# make demo: svemig's tour on the embedded sim backend: offline first, then
# with svemigd on a temporary socket (guests in their VMMs, a snapshot, a restore),
# then three svemigd peers on Debian's 6.1 and 6.12 kernels (simulated as the
# arm64 rig measured them): the cluster view with its CPU baseline, a live
# migration 6.1 -> 6.12 and back, a refused one; then, as root, real libvirtd
# beside svemigd (scripts/demo-libvirt.py): a domain refused at start, one
# pinned, started and live-migrated.
#   scripts/demo.sh BUILD_DIR
set -eu
build=${1:-build}
ctl="$build/daemon/svemigctl"
demo="$build/daemon/svemig-demo"

step() { printf '\n\033[1m### %s\033[0m\n$ %s\n' "$1" "$2"; }

step "Which vector lengths can a cluster of three hosts all present?" \
        "svemigctl negotiate 128,256,512 128,256 128,256,384,512"
"$ctl" negotiate 128,256,512 128,256 128,256,384,512

step "The same as JSON, for scripts" "svemigctl --json negotiate 128,256,512 128,256"
"$ctl" --json negotiate 128,256,512 128,256

step "A cluster with a host without SVE: FPSIMD only (exit code 3)" "svemigctl negotiate 128,256 none"
rc=0
"$ctl" negotiate 128,256 none || rc=$?
echo "exit code: $rc"

work=$(mktemp -d)
daemon_pid=
cluster_pids=
cleanup() {
        # The cluster's daemons: every guest they hold is stopped first (VMMs outlive svemigd).
        for h in a b c; do
                [ -S "$work/$h/svemigd.sock" ] || continue
                for g in $("$ctl" --socket "$work/$h/svemigd.sock" --json guest list 2>/dev/null |
                        python3 -c 'import json, sys; print(" ".join(g["name"] for g in json.load(sys.stdin)["guests"]))' 2>/dev/null); do
                        "$ctl" --socket "$work/$h/svemigd.sock" --quiet guest stop "$g" >/dev/null 2>&1 || true
                done
        done
        for pid in $cluster_pids; do
                kill -TERM "$pid" 2>/dev/null || true
                wait "$pid" 2>/dev/null || true
        done
        # Guests live in their own VMM processes, which outlive svemigd by design: stop them first.
        if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
                for g in vm1 vm2; do
                        "$ctl" --socket "$work/svemigd.sock" --quiet guest stop "$g" >/dev/null 2>&1 || true
                done
                kill -TERM "$daemon_pid" 2>/dev/null || true
                wait "$daemon_pid" 2>/dev/null || true
        fi
        rm -rf "$work"
}
trap cleanup EXIT

step "A guest moved between the hosts through a snapshot file, checked against an unbroken run" \
        "svemig-demo --dir $work"
"$demo" --dir "$work"

step "The snapshot file, for a person (crit-style)" "svemigctl inspect --summary $work/guest.svemig"
"$ctl" inspect --summary "$work/guest.svemig"

step "Every register by name: vcpu 0's core, FP and first Z registers" \
        "svemigctl inspect $work/guest.svemig | sed -n '/^vcpu 0/,/z3\\[0\\]/p'"
"$ctl" inspect "$work/guest.svemig" | sed -n '/^vcpu 0/,/z3\[0\]/p'

step "Checksums and digest" "svemigctl verify $work/guest.svemig"
"$ctl" verify "$work/guest.svemig"

step "One flipped byte is found (exit code 5)" "svemigctl verify corrupt.svemig"
cp "$work/guest.svemig" "$work/corrupt.svemig"
python3 -c 'import sys; f = open(sys.argv[1], "r+b"); f.seek(600000); b = f.read(1); f.seek(600000); f.write(bytes([b[0] ^ 0x10]))' "$work/corrupt.svemig"
rc=0
"$ctl" verify "$work/corrupt.svemig" || rc=$?
echo "exit code: $rc"

# ---- The daemon: guests in their own VMMs, a snapshot with progress, a restore ----

cat >"$work/migrate.conf" <<EOF
[daemon]
host-name = demo
state-directory = $work/state
socket = $work/svemigd.sock
socket-group = $(id -g)
[hypervisor]
backend = sim
[sim]
vq-map = 128-512
EOF
step "svemigd in the foreground on a temporary socket, with the sim backend" \
        "svemigd --config $work/migrate.conf --foreground 2>svemigd.log &"
"$build/daemon/svemigd" --config "$work/migrate.conf" --foreground 2>"$work/svemigd.log" &
daemon_pid=$!
sctl() { "$ctl" --socket "$work/svemigd.sock" "$@"; }
tries=0
until sctl host-info >/dev/null 2>&1; do
        tries=$((tries + 1))
        if [ $tries -gt 200 ] || ! kill -0 "$daemon_pid" 2>/dev/null; then
                echo "svemigd did not start:" >&2
                cat "$work/svemigd.log" >&2
                exit 1
        fi
        sleep 0.05
done
sctl host-info

step "A guest: 4 vcpus, 256 MiB, the cluster's vector lengths, 8 dirty pages per step" \
        "svemigctl guest create vm1 --vcpus 4 --memory 256M --vl cluster --dirty-rate 8"
sctl guest create vm1 --vcpus 4 --memory 256M --vl cluster --dirty-rate 8

step "It runs in its own process (svemig-vmm): exactly 20000 steps per vcpu, then it pauses" \
        "svemigctl guest run vm1 --steps 20000"
sctl guest run vm1 --steps 20000

step "A snapshot, with its progress" "svemigctl snapshot vm1 $work/vm1.svemig"
sctl snapshot vm1 "$work/vm1.svemig"

step "Restored as a second guest, in a second VMM" "svemigctl restore $work/vm1.svemig --name vm2"
sctl restore "$work/vm1.svemig" --name vm2

step "Both run 5000 more steps per vcpu" \
        "svemigctl guest run vm1 --steps 5000; svemigctl guest run vm2 --steps 5000"
sctl --quiet guest run vm1 --steps 5000 >/dev/null
sctl --quiet guest run vm2 --steps 5000 >/dev/null
sctl guest list

step "Identical: the same steps and the same digest of every register and page" \
        "svemigctl guest show vm1 --digest; svemigctl guest show vm2 --digest"
sctl guest show vm1 --digest
echo
sctl guest show vm2 --digest
summary='import json, sys; g = json.load(sys.stdin); print(g["steps"], "steps, digest", g["digest"])'
d1=$(sctl --json guest show vm1 --digest | python3 -c "$summary")
d2=$(sctl --json guest show vm2 --digest | python3 -c "$summary")
if [ "$d1" != "$d2" ]; then
        echo "vm1 ($d1) and vm2 ($d2) differ" >&2
        exit 1
fi
echo
echo "vm1 and vm2 are identical: $d1"

step "The guests stop when asked; svemigd stops cleanly on SIGTERM" \
        "svemigctl guest stop vm1; svemigctl guest stop vm2; kill -TERM \$svemigd_pid"
sctl --quiet guest stop vm1 >/dev/null
sctl --quiet guest stop vm2 >/dev/null
kill -TERM "$daemon_pid"
rc=0
wait "$daemon_pid" || rc=$?
daemon_pid=
echo "svemigd exit code: $rc"
tail -n 2 "$work/svemigd.log"
[ "$rc" -eq 0 ]

# ---- Three daemons as peers: the cluster view, a live migration, a refused one ----

# Three free TCP ports on loopback, one per host.
set -- $(python3 -c 'import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')
port_a=$1 port_b=$2 port_c=$3
# Peer TLS is on by default: the tour makes its own CA and a certificate per host.
step "A CA for the tour, and a certificate for each host (peer TLS: mutual, on every connection)" \
        "scripts/make-test-ca.sh pki a b c"
sh "$(dirname "$0")/make-test-ca.sh" "$work/pki" a b c
ls "$work/pki"
host_conf() { # NAME VQ-MAP KERNEL PORT, then the peers as NAME PORT pairs
        name=$1 map=$2 kernel=$3 port=$4
        shift 4
        mkdir -p "$work/$name"
        {
                printf '[daemon]\nhost-name = %s\nstate-directory = %s/state\nsocket = %s/svemigd.sock\nsocket-group = %s\n' \
                        "$name" "$work/$name" "$work/$name" "$(id -g)"
                printf '[hypervisor]\nbackend = sim\n[sim]\nvq-map = %s\nkernel = %s\n' "$map" "$kernel"
                printf '[cluster]\nlisten = 127.0.0.1:%s\nrefresh-interval = 500ms\n' "$port"
                printf 'tls-ca = %s/pki/ca.pem\ntls-cert = %s/pki/%s.pem\ntls-key = %s/pki/%s-key.pem\n' \
                        "$work" "$work" "$name" "$work" "$name"
                while [ $# -gt 0 ]; do
                        printf '[peer %s]\naddress = 127.0.0.1:%s\n' "$1" "$2"
                        shift 2
                done
        } >"$work/$name/migrate.conf"
}
host_conf a 128,256,512 6.1 "$port_a" b "$port_b" c "$port_c"
host_conf b 128,256 6.12 "$port_b" a "$port_a" c "$port_c"
host_conf c 128,256,384,512 6.12 "$port_c" a "$port_a" b "$port_b"

step "Three hosts, each with its svemigd: a {128,256,512} on Debian's 6.1 kernel, b {128,256} and c {128,256,384,512} on 6.12" \
        "svemigd --config a/migrate.conf & svemigd --config b/migrate.conf & svemigd --config c/migrate.conf &"
for h in a b c; do
        "$build/daemon/svemigd" --config "$work/$h/migrate.conf" --foreground 2>"$work/$h/svemigd.log" &
        cluster_pids="$cluster_pids $!"
done
actl() { "$ctl" --socket "$work/a/svemigd.sock" "$@"; }
bctl() { "$ctl" --socket "$work/b/svemigd.sock" "$@"; }
ups='import json, sys; print(sum(h["state"] == "up" for h in json.load(sys.stdin)["hosts"]))'
tries=0
until [ "$(actl --json cluster 2>/dev/null | python3 -c "$ups" 2>/dev/null)" = 3 ] &&
        [ "$(bctl --json cluster 2>/dev/null | python3 -c "$ups" 2>/dev/null)" = 3 ]; do
        tries=$((tries + 1))
        if [ $tries -gt 400 ]; then
                echo "the three daemons never saw each other:" >&2
                cat "$work"/?/svemigd.log >&2
                exit 1
        fi
        sleep 0.05
done

step "a's live view of its cluster: the VL set, then the CPU baseline (6.1 pins it; 6.12 writes it)" \
        "svemigctl cluster"
actl cluster

step "A running guest on a (6.1) at the cluster's set and CPU baseline, 32 MiB, dirtying memory as it runs" \
        "svemigctl guest create web --vcpus 2 --memory 32M --vl cluster --dirty-rate 4 --start"
actl guest create web --vcpus 2 --memory 32M --vl cluster --dirty-rate 4 --start
sleep 0.3

step "Pre-flight: can b take it?" "svemigctl migrate web b --check"
actl migrate web b --check

step "Live migration a (6.1) -> b (6.12) while it runs: progress, then the report" "svemigctl migrate web b"
actl migrate web b

step "It runs on b now, in a new VMM there; a no longer holds it" \
        "svemigctl --socket b/svemigd.sock guest show web; svemigctl guest list"
running='import json, sys; print(json.load(sys.stdin)["state"])'
tries=0
# b registers the guest once its new VMM reports in, just after the handoff.
until [ "$(bctl --json guest show web 2>/dev/null | python3 -c "$running" 2>/dev/null)" = running ]; do
        tries=$((tries + 1))
        [ $tries -le 200 ] || { echo "web never ran on b" >&2; cat "$work/b/svemigd.log" >&2; exit 1; }
        sleep 0.05
done
bctl guest show web
echo
actl guest list

step "And back, b (6.12) -> a (6.1), still running" "svemigctl --socket b/svemigd.sock migrate web a"
bctl migrate web a
tries=0
until [ "$(actl --json guest show web 2>/dev/null | python3 -c "$running" 2>/dev/null)" = running ]; do
        tries=$((tries + 1))
        [ $tries -le 200 ] || { echo "web never ran on a again" >&2; cat "$work/a/svemigd.log" >&2; exit 1; }
        sleep 0.05
done
actl guest show web

step "A guest at 512 bits on a" "svemigctl guest create wide --vcpus 1 --memory 32M --vl 128,256,512 --start"
actl guest create wide --vcpus 1 --memory 32M --vl 128,256,512 --start

step "b cannot present 512-bit vectors: refused before anything moves (exit code 4)" \
        "svemigctl migrate wide b"
rc=0
actl migrate wide b || rc=$?
echo "exit code: $rc"
[ "$rc" -eq 4 ]

step "The refused guest runs on, on a" "svemigctl guest show wide"
actl guest show wide

step "Everything torn down: guests stopped, the three daemons stopped on SIGTERM" "..."
for g in wide web; do actl --quiet guest stop "$g" >/dev/null; done
for pid in $cluster_pids; do
        kill -TERM "$pid"
        rc=0
        wait "$pid" || rc=$?
        [ "$rc" -eq 0 ] || { echo "a cluster daemon exited $rc" >&2; exit 1; }
done
cluster_pids=
echo "all stopped"

# ---- Real libvirt: a domain refused, one pinned and migrated (scripts/demo-libvirt.py) ----

if [ "$(id -u)" -eq 0 ]; then
        # libvirtd, its QEMU driver, virsh, QEMU for aarch64 guests, the cross compiler for their probe.
        scripts/install-deps.sh libvirt
fi
python3 scripts/demo-libvirt.py "$build"
