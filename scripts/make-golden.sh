#!/bin/sh
# Regenerates tests/data/stream-v1.svemig, the v1 golden stream, from the
# deterministic content in tests/stream-content.c.
#   scripts/make-golden.sh [BUILD_DIR]
# A released golden file is never regenerated: a new format version adds a
# new file (stream-v1.1.svemig, ...) and keeps reading the old ones.
set -eu
cd "$(dirname "$0")/.."
build="${1:-build}"
[ -f "$build/build.ninja" ] || meson setup "$build"
meson compile -C "$build" tests/make-golden
"$build/tests/make-golden" tests/data/stream-v1.svemig
ls -l tests/data/stream-v1.svemig
