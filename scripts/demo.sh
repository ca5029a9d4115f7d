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

step "A guest moved between the hosts, checked against an unbroken run" "svemig-demo"
"$demo"
