#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs the built svemigctl's `negotiate` and checks its exit codes, its JSON
# and its human output.
#   test-ctl-negotiate.sh PATH/TO/svemigctl
set -eu

CTL=${1:?usage: $0 PATH/TO/svemigctl}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
failures=0

fail() {
        echo "FAIL: $*" >&2
        failures=$((failures + 1))
}

# run EXPECTED_RC ARGS...: runs svemigctl, keeps stdout/stderr in $TMP.
run() {
        want=$1
        shift
        rc=0
        "$CTL" "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
        if [ "$rc" -ne "$want" ]; then
                fail "svemigctl $*: exit $rc, expected $want"
                sed 's/^/  stdout: /' "$TMP/out" >&2
                sed 's/^/  stderr: /' "$TMP/err" >&2
                return 1
        fi
        return 0
}

# json_check ARGS-DESCRIPTION PYTHON-EXPR: evaluates EXPR with `j` the parsed stdout.
json_check() {
        what=$1
        expr=$2
        if ! python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
ok = eval(sys.argv[2])
if not ok:
    print(json.dumps(j), file=sys.stderr)
sys.exit(0 if ok else 1)
' "$TMP/out" "$expr"; then
                fail "$what: JSON does not satisfy: $expr"
        fi
}

contains() {
        file=$1
        text=$2
        what=$3
        grep -qF -- "$text" "$TMP/$file" || {
                fail "$what: $file lacks \"$text\""
                sed 's/^/  /' "$TMP/$file" >&2
        }
}

keys='set(j) >= {"guest_bits", "max_bits", "limiting", "hosts"}'

# The DESIGN.md examples, one per row.
if run 0 --json negotiate 128,256,512 128,256; then
        json_check "row 1" "$keys and j['guest_bits'] == [128, 256] and j['max_bits'] == 256 and j['limiting'] == [1]"
        json_check "row 1 hosts" "[h['index'] for h in j['hosts']] == [0, 1] and j['hosts'][0]['bits'] == [128, 256, 512] \
and j['hosts'][1]['bits'] == [128, 256] and all(h['can_present'] is True and h['reason'] is None for h in j['hosts'])"
fi
if run 0 --json negotiate 128-512 128,256,512; then
        json_check "row 2" "j['guest_bits'] == [128, 256] and j['max_bits'] == 256 and j['limiting'] == [1]"
fi
if run 0 --json negotiate vq1,vq2,vq4,vq8 vq1,vq2,vq4,vq6,vq8; then
        json_check "row 3 (round-down)" "j['guest_bits'] == [128, 256, 512] and j['max_bits'] == 512 and j['limiting'] == [0]"
fi
if run 3 --json negotiate 0xb none; then
        json_check "row 4 (no SVE)" "j['guest_bits'] == [] and j['max_bits'] == 0 and j['limiting'] == [1] \
and j['hosts'][1]['bits'] == [] and all(h['can_present'] for h in j['hosts'])"
fi

# --json after the command, and between the SETs.
if run 0 negotiate --json 0xb 0xb; then
        json_check "--json after the command" "j['guest_bits'] == [128, 256, 512] and j['limiting'] == []"
fi
if run 0 negotiate 0xb -j 0x3; then
        json_check "-j between SETs" "j['guest_bits'] == [128, 256] and j['limiting'] == [1]"
fi

# 2048-bit hosts, all alike: nobody limits.
if run 0 --json negotiate 128-2048 vq1-vq16 0xffff; then
        json_check "2048-bit hosts" "j['guest_bits'] == list(range(128, 2049, 128)) and j['max_bits'] == 2048 \
and j['limiting'] == [] and j.get('without_limiting') is None"
fi

# The demo's cluster: two hosts lack 384 bits; leaving both out gains 384 and 512.
if run 0 --json negotiate 128,256,512 128,256 128,256,384,512; then
        json_check "demo cluster" "j['guest_bits'] == [128, 256] and j['limiting'] == [0, 1] \
and j['without_limiting']['guest_bits'] == [128, 256, 384, 512] and j['without_limiting']['max_bits'] == 512"
fi

# One host: its own set.
if run 0 --json negotiate 'vq1, vq2, vq4'; then
        json_check "one host" "j['guest_bits'] == [128, 256, 512] and j['limiting'] == []"
fi

# No host has SVE.
if run 3 --json negotiate none NONE 0x0; then
        json_check "no SVE anywhere" "j['guest_bits'] == [] and j['max_bits'] == 0 and j['limiting'] == [] \
and len(j['hosts']) == 3"
fi

# Human output.
if run 0 negotiate 128,256,512 128,256 128,256,384,512; then
        contains out "guest set: 128,256 bits (maximum 256 bits)" "human"
        contains out "limiting:  hosts 0, 1 (lacking 384 bits, which another host offers)" "human"
        contains out "host 2: 128,256,384,512: yes" "human"
        contains out "without hosts 0, 1: 128,256,384,512 bits (maximum 512 bits)" "human"
fi
if run 3 negotiate 128-512 none; then
        contains out "guest set: no common SVE; FPSIMD only" "human, no SVE"
        contains out "limiting:  host 1" "human, no SVE"
        contains out "host 1 (limiting): no SVE: yes (FPSIMD only)" "human, no SVE"
        contains out "without host 1: 128,256,384,512 bits (maximum 512 bits)" "human, no SVE"
fi

# Bad input: exit 2, the parse error naming the bad token on stderr, nothing on stdout.
# An empty SET is a mistake (an unset variable), not a host without SVE.
for bad in 100 vq0 vq513 0xg 128, 128,vq2 abc 512-128 "" " "; do
        if run 2 --json negotiate 128,256 "$bad"; then
                contains err "host 1: invalid vector-length set" "bad SET '$bad'"
                contains err "\"$bad\"" "bad SET '$bad'"
                contains err "accepted forms" "bad SET '$bad'"
                [ -s "$TMP/out" ] && fail "bad SET '$bad': something on stdout"
        fi
done
if run 2 negotiate; then
        contains err "give one SET or host-info file per host" "no SET"
fi
if run 2 negotiate --frobnicate 128; then
        contains err "unknown option '--frobnicate'" "unknown option"
fi
run 0 negotiate --help && contains out "Usage: svemigctl [--json] negotiate HOST HOST..." "--help"

# The CPU baseline, from host-info --json files with the values and writable
# masks the arm64 rig measured on Debian's kernels (tests/data/hosts/).
HOSTS=$(dirname "$0")/data/hosts
if run 0 negotiate "$HOSTS/debian-6.12-vhe.json" "$HOSTS/debian-6.12-debugver8.json"; then
        contains out "CPU baseline: 3 ID registers every host can present" "6.12 pair"
        contains out "holds ID_AA64DFR0_EL1.DebugVer at 8 (9 without it)" "6.12 pair's limit"
fi
if run 0 --json negotiate "$HOSTS/debian-6.12-vhe.json" "$HOSTS/debian-6.12-debugver8.json"; then
        json_check "6.12 pair JSON" "j['cpu']['conflicts'] == [] and j['cpu']['baseline']['0x603000000013c028'] == '0x0000000010305008' and [h['writes_id_regs'] for h in j['cpu']['hosts']] == [True, False] and j['cpu']['limits'][0]['field'] == 'ID_AA64DFR0_EL1.DebugVer' and j['cpu']['limits'][0]['pinned'] is False"
fi
# 6.12 cannot lower HCX (the rig: EINVAL) and 6.1 cannot write at all, but HCX
# is EL2-only: not compared (docs/cpu-baseline.md). The baseline is 6.1's.
if run 0 negotiate "$HOSTS/debian-6.1-vhe.json" "$HOSTS/debian-6.12-vhe.json"; then
        contains out "CPU baseline: 3 ID registers every host can present" "6.1 and 6.12"
        contains out "EL2-only, not compared: ID_AA64MMFR1_EL1.HCX (0 on host 0" "6.1 and 6.12's HCX"
        contains out "holds ID_AA64DFR0_EL1.DebugVer at 6 (9 without it; its kernel cannot write the field)" "6.1 and 6.12's limit"
fi
if run 0 --json negotiate "$HOSTS/debian-6.1-vhe.json" "$HOSTS/debian-6.12-vhe.json"; then
        json_check "6.1 and 6.12 JSON" "j['guest_bits'] == [128, 256] and j['cpu']['conflicts'] == [] \
and j['cpu']['el2_only_not_compared'] == [{'field': 'ID_AA64MMFR1_EL1.HCX', 'hosts': [0, 1], 'values': [0, 1]}] \
and j['cpu']['baseline']['0x603000000013c028'] == '0x0000000010305006' \
and j['cpu']['baseline']['0x603000000013c801'] == '0x0000000002000023' \
and [h['writes_id_regs'] for h in j['cpu']['hosts']] == [False, True]"
fi
# A 6.1 host that cannot present DebugVer 8 (it shows 6 and writes nothing) beside one that shows 8 and cannot write:
sed 's/"0x0000000010305006"/"0x0000000010305007"/' "$HOSTS/debian-6.1-vhe.json" >"$TMP/debugver7.json"
if run 4 negotiate "$HOSTS/debian-6.1-vhe.json" "$TMP/debugver7.json"; then
        contains out "CPU baseline: none" "6.1 pair with different DebugVer"
        contains out "ID_AA64DFR0_EL1.DebugVer: 6 on host 0" "the conflict names the field"
fi
# Sets alone give no CPU facts: the baseline is not negotiated, and says how to get it.
if run 0 --json negotiate 128,256 "$HOSTS/debian-6.12-vhe.json"; then
        json_check "a set and a file" "j['cpu'] is None and j['guest_bits'] == [128, 256]"
fi
printf '{"vl_bits": [128]}' >"$TMP/bad.json"
if run 2 negotiate "$TMP/bad.json" 128; then
        contains err "not what 'svemigctl host-info --json' writes" "a file without id_regs"
fi
if run 2 negotiate "$TMP/missing.json" 128; then
        contains err "missing.json" "a missing file"
fi

if [ "$failures" -ne 0 ]; then
        echo "$failures check(s) failed" >&2
        exit 1
fi
echo "all svemigctl negotiate checks passed"
