#!/bin/sh
# The bounded fuzz run of `make test`, one target:
#   run-fuzz.sh FUZZER WORK_DIR RUNS SEED_DIR...
# Seeds from the SEED_DIRs (committed, read only: tests/fuzz/corpus/<target>/
# and, for the stream, tests/data); new inputs go to WORK_DIR/corpus and
# crashes to WORK_DIR/crash-*. The bound is a count of executions from a
# fixed -seed, so the run is repeatable and does the same work on a slow
# machine; -max_total_time is only a backstop. UBSan is built not to
# recover (-fno-sanitize-recover), so any report fails the run.
set -eu
fuzzer="$1"
work="$2"
runs="$3"
shift 3
mkdir -p "$work/corpus"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1}"
exec "$fuzzer" -runs="$runs" -seed=1 -max_total_time=240 -timeout=20 -rss_limit_mb=2048 \
        -artifact_prefix="$work/" "$work/corpus" "$@"
