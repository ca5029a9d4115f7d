#!/bin/sh
# make bench: svemig's benchmarks, each against baselines measured in the same run.
#   bench/run.sh BUILD_DIR [WORKDIR]
# Not tests: they print figures and ratios, and fail only if something breaks.
set -eu
build=${1:-build}
work=${2:-$build/bench}
here=$(cd "$(dirname "$0")" && pwd)
memimage="$here/../../shared/bench/hpc-memimage"
mkdir -p "$work"

if [ ! -s "$work/hpc-1024.img" ]; then
        [ -x "$memimage" ] || { echo "bench: $memimage not found (../shared/bench beside the checkout)" >&2; exit 1; }
        echo "bench: writing the 1 GiB image (hpc-memimage 1024)"
        "$memimage" 1024 > "$work/hpc-1024.img"
fi

qemu_args=""
if command -v qemu-system-aarch64 >/dev/null; then
        echo "bench: QEMU 7.2 save/restore of the same image (bench/qemu-baseline.py)"
        q=$(python3 "$here/qemu-baseline.py" "$work/hpc-1024.img" "$work")
        echo "  $q"
        qemu_args=$(echo "$q" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("--qemu-save", d["save"]["wall_s"], "--qemu-restore", d["restore"]["wall_s"])')
else
        echo "bench: qemu-system-aarch64 not installed; no QEMU baseline (scripts/install-deps.sh rig)"
fi

echo
echo "== snapshot and restore (bench/snapshot-bench.c)"
# shellcheck disable=SC2086
"$build/bench/snapshot-bench" "$work/hpc-1024.img" "$work" $qemu_args

echo
echo "== live migration between two svemigd on loopback, QEMU multifd beside it (bench/migrate-bench.py)"
python3 "$here/migrate-bench.py" "$build" "$work/hpc-1024.img" "$work"

echo
echo "== stream memory encoding and decoding (bench/stream-bench.c)"
"$build/bench/stream-bench" "$work/hpc-1024.img" "$work"

echo
echo "== the cluster view over 5,000 hosts in etcd, beside 50 static peers (bench/membership-bench.py)"
python3 "$here/membership-bench.py" "$build"

echo "== peer TLS on one connection: plaintext against a session carried on in another process (bench/tls-bench.c)"
"$here/../scripts/make-test-ca.sh" "$work/tls" a b
"$build/bench/tls-bench" "$work/tls" 512
echo "== a checkpoint to S3 and a restore from it, radosgw on loopback (bench/store-bench.py)"
python3 "$here/store-bench.py" "$build" "$work/hpc-1024.img" "$work"
