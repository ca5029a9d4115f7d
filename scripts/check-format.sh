#!/bin/sh
# Fails, listing the files, when a tracked C source or header does not obey .clang-format.
set -eu
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || { echo "clang-format is not installed" >&2; exit 1; }
files=$(git ls-files '*.c' '*.h' ':!:src/uapi/*')
# One clang-format for every file: it names each file that would change in its warnings.
# shellcheck disable=SC2086
bad=$(clang-format --dry-run -Werror $files 2>&1 | sed -n 's/^\([^:]*\):[0-9]*:[0-9]*: error:.*/\1/p' | sort -u)
if [ -n "$bad" ]; then
        echo "Not formatted by .clang-format (run 'make format'):"
        echo "$bad"
        exit 1
fi
echo "$(echo "$files" | wc -l) files obey .clang-format"
