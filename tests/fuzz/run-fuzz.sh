#!/bin/sh
# The bounded fuzz run of `make test`:
#   run-fuzz.sh FUZZER WORK_DIR SEED_DIR [RUNS]
# Seeds from SEED_DIR (the golden streams, read only); new inputs go to
# WORK_DIR/corpus and crashes to WORK_DIR/crash-*. A fixed -seed keeps the
# run repeatable; -max_total_time only bounds it on a slow machine.
set -eu
fuzzer="$1"
work="$2"
seeds="$3"
runs="${4:-20000}"
mkdir -p "$work/corpus"
exec "$fuzzer" -runs="$runs" -seed=1 -max_total_time=120 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$work/" "$work/corpus" "$seeds"
