#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The integration suite (and the live-migration unit test) run RUNS times in
# a row while every CPU is kept busy, as on a loaded CI machine: a test that
# waits for time instead of events fails here. One busy loop per CPU, started
# here and killed on any exit.
#
#   scripts/test-stress.sh [BUILD_DIR] [RUNS]     (make test-stress RUNS=5)
#
# Prints each run's result and the failed tests' names, then "N passed,
# N failed"; exits 1 when any run failed. Each run's meson log is kept as
# BUILD_DIR/meson-logs/stress-<run>.txt.
set -u

build=${1:-build}
runs=${2:-20}
case $runs in
'' | *[!0-9]* | 0)
        echo "test-stress: RUNS must be a positive number, not '$runs'" >&2
        exit 2
        ;;
esac
if [ ! -f "$build/build.ninja" ]; then
        echo "test-stress: $build is not a meson build directory; run 'make build' first" >&2
        exit 2
fi

# The suite's tests, by name: every integration test and the unit test of live migration.
mapfile -t tests < <(meson test -C "$build" --list 2>/dev/null |
        sed -n -e 's#^[^:]*:integration / ##p' -e 's#^[^:]*:unit / \(migrate\)$#\1#p')
if [ ${#tests[@]} -eq 0 ]; then
        echo "test-stress: meson lists no integration test in $build" >&2
        exit 2
fi

loaders=()
stop_load() {
        for pid in "${loaders[@]}"; do
                kill "$pid" 2>/dev/null
        done
        for pid in "${loaders[@]}"; do
                wait "$pid" 2>/dev/null
        done
        loaders=()
}
trap stop_load EXIT
trap 'exit 130' INT TERM

cpus=$(nproc)
for _ in $(seq "$cpus"); do
        (while :; do :; done) &
        loaders+=($!)
done
echo "test-stress: $runs runs of ${#tests[@]} tests, with $cpus busy loops (pids ${loaders[*]})"

meson compile -C "$build" >/dev/null || {
        echo "test-stress: the build failed" >&2
        exit 1
}

passed=0
failed=0
for run in $(seq "$runs"); do
        start=$(date +%s)
        out=$(meson test -C "$build" --no-rebuild --print-errorlogs --logbase "stress-$run" "${tests[@]}" 2>&1)
        rc=$?
        secs=$(($(date +%s) - start))
        if [ $rc -eq 0 ]; then
                passed=$((passed + 1))
                echo "run $run/$runs: passed (${secs} s)"
        else
                failed=$((failed + 1))
                bad=$(printf '%s\n' "$out" | sed -n 's#^ *[0-9]*/[0-9]* [^ ]* / \([^ ]*\) *\(FAIL\|TIMEOUT\|ERROR\).*#\1 (\2)#p' |
                        sort -u | tr '\n' ' ')
                echo "run $run/$runs: FAILED (${secs} s): ${bad:-see the log}; log: $build/meson-logs/stress-$run.txt"
        fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
