#!/bin/sh
# Fails, listing the files, when a tracked C source or header does not obey .clang-format.
set -eu
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || { echo "clang-format is not installed" >&2; exit 1; }
bad=$(git ls-files '*.c' '*.h' ':!:src/uapi/*' | while read -r f; do
        clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || echo "$f"
done)
if [ -n "$bad" ]; then
        echo "Not formatted by .clang-format (run 'make format'):"
        echo "$bad"
        exit 1
fi
echo "$(git ls-files '*.c' '*.h' ':!:src/uapi/*' | wc -l) files obey .clang-format"
