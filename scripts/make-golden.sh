#!/bin/sh
# Writes the golden stream of the format version this tree writes,
# tests/data/stream-v1.<minor>.svemig, from the deterministic content in
# tests/stream-content.c.
#   scripts/make-golden.sh [BUILD_DIR]
# A released golden file is never regenerated: a new format version adds a
# new file and keeps reading the old ones (tests/data/stream-v1.svemig is
# v1.0, stream-v1.1.svemig v1.1, ...), so this refuses to overwrite one.
set -eu
cd "$(dirname "$0")/.."
build="${1:-build}"
minor=$(sed -n 's/^#define SVEMIG_STREAM_MINOR \([0-9]*\)u.*/\1/p' include/svemig/stream.h)
[ -n "$minor" ] || { echo "make-golden: no SVEMIG_STREAM_MINOR in include/svemig/stream.h" >&2; exit 1; }
out="tests/data/stream-v1.$minor.svemig"
if [ -e "$out" ]; then
        echo "make-golden: $out exists; a released golden file is never regenerated" >&2
        exit 1
fi
[ -f "$build/build.ninja" ] || meson setup "$build"
meson compile -C "$build" tests/make-golden
"$build/tests/make-golden" "$out"
ls -l "$out"
