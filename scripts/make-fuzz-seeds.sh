#!/bin/sh
# Rewrites tests/fuzz/corpus/ with fuzz-seeds (tests/fuzz/fuzz-seeds.c):
#   scripts/make-fuzz-seeds.sh PATH/TO/fuzz-seeds
# Run it when an input format changes, and commit the result.
set -eu
seeds="$1"
top="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$seeds" "$tmp/corpus"
rm -rf "$top/tests/fuzz/corpus"
mv "$tmp/corpus" "$top/tests/fuzz/corpus"
du -sh "$top/tests/fuzz/corpus"/*
