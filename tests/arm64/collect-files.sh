#!/bin/sh
# Unpacks the files a rig host's /init printed on its console (=== RIG-FILE
# NAME, base64, === RIG-FILE-END; see tests/arm64/init) into a directory, and
# prints their names. A block cut short is dropped.
#   tests/arm64/collect-files.sh CONSOLE_LOG DIR
set -eu

log=${1:?usage: $0 CONSOLE_LOG DIR}
dir=${2:?usage: $0 CONSOLE_LOG DIR}
rm -rf "$dir"
mkdir -p "$dir"
tr -d '\r' <"$log" | awk -v dir="$dir" '
        /^=== RIG-FILE-END$/ { if (name != "") { close(out); print name } name = ""; next }
        /^=== RIG-FILE / { name = $3; if (name !~ /^[A-Za-z0-9._+-]+$/) { name = ""; next }
                           out = dir "/" name ".b64"; printf "" > out; next }
        name != "" { print > out }' |
        while read -r f; do
                if base64 -d <"$dir/$f.b64" >"$dir/$f"; then
                        echo "$f"
                else
                        rm -f "$dir/$f"
                fi
                rm -f "$dir/$f.b64"
        done
rm -f "$dir"/*.b64
