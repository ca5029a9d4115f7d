#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# What a stream's writer says reaches neither a terminal nor JSON as it is:
# a producer named with an escape sequence, a newline and a byte that is not
# UTF-8 is shown escaped by `svemigctl inspect`, and `inspect --json` stays
# valid JSON.
#   test-ctl-escape.sh PATH/TO/svemigctl PATH/TO/make-golden
set -eu

CTL=${1:?usage: $0 PATH/TO/svemigctl PATH/TO/make-golden}
GOLDEN=${2:?usage: $0 PATH/TO/svemigctl PATH/TO/make-golden}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

"$GOLDEN" --producer "$(printf 'evil\033[2J\nforged\377')" "$TMP/s.svemig"

"$CTL" inspect --summary "$TMP/s.svemig" >"$TMP/out"
if LC_ALL=C grep -q "$(printf '[\033\377]')" "$TMP/out"; then
        echo "FAIL: inspect printed the producer's raw bytes:" >&2
        od -c "$TMP/out" | head -5 >&2
        exit 1
fi
grep -qF 'producer      evil\x1b[2J\x0aforged\xff' "$TMP/out" || {
        echo "FAIL: inspect does not show the producer escaped:" >&2
        cat "$TMP/out" >&2
        exit 1
}

"$CTL" --json inspect --summary "$TMP/s.svemig" >"$TMP/json"
python3 - "$TMP/json" <<'PY'
import json, sys
with open(sys.argv[1], "rb") as f:
    raw = f.read()
doc = json.loads(raw.decode("utf-8"))  # fails on bytes that are not UTF-8
name = doc["header"]["producer"]["name"]
assert name == "evil\\x1b[2J\\x0aforged\\xff", repr(name)
PY
echo "ok"
