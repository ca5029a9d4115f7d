#!/bin/sh
# Fails when any process of a sanitizer tier left a report in DIR
# (ASAN_OPTIONS/UBSAN_OPTIONS/TSAN_OPTIONS log_path=DIR/...), and shows it.
set -eu
dir="$1"
found=0
for f in "$dir"/*; do
        [ -e "$f" ] || continue
        found=1
        echo "=== sanitizer report: $f"
        cat "$f"
done
if [ "$found" = 1 ]; then
        echo "sanitizer reports above (in $dir): fix them, or document a false positive in tests/tsan.supp" >&2
        exit 1
fi
echo "no sanitizer reports in $dir"
