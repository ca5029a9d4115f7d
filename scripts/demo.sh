#!/bin/sh
# make demo: svemig's tour on the embedded sim backend, no daemon needed.
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
trap 'rm -rf "$work"' EXIT

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
