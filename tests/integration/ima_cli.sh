# SPDX-License-Identifier: Apache-2.0
# The ima and policy runtime commands end to end: replay of real lists (values computed
# independently), format conversion, policy creation and checking, exit codes, rejections.
. "$TC_SRC/tests/lib/common.sh"

F="$TC_FIXTURES/ima"
D="$TC_TEST_DATA/ima"
T="$TC_TMP"

# expect RC CMD...: runs CMD, fails unless it exits with RC.
expect() {
    local want=$1 rc=0
    shift
    "$@" >"$T/out" 2>"$T/err" || rc=$?
    [ "$rc" -eq "$want" ] || { cat "$T/out" "$T/err" >&2; tc_fail "exit $rc, wanted $want: $*"; }
}

# Replay: sha1/sha256 PCR 10 of the Keylime sha1 list (computed with Python hashlib).
expect 0 "$TC_BIN" ima replay --json "$F/ima-log-sha1"
python3 - "$T/out" <<'PY' || tc_fail "replay values"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["sha1"]["10"] == "62e5bdf4783228f7deec959f0a89a4739af79ac5", j
assert j["sha256"]["10"] == "37c153b0a390c91993992d79eb0b9b05b5cb9085c6179528e1b71694ed19896c", j
PY
expect 0 "$TC_BIN" ima replay --bank sm3_256 "$F/ima-log-sm3_256"
grep -q 9e6066a7981769154d79a1ce330020099eba2683e55729413b536a27bf517d81 "$T/out" ||
    tc_fail "sm3 replay"
expect 1 "$TC_BIN" ima replay "$F/ima-log-unknown"
grep -q "ima.parse \[entry 0\].*'unknown'" "$T/err" || tc_fail "unknown algorithm reason"
tc_pass "replay"

# ASCII -> binary -> ASCII is the identity, and both replay to the same PCRs.
for f in "$D/generated-300.ascii" "$D/evmctl-signed.ascii" "$D/ima-template.ascii"; do
    expect 0 "$TC_BIN" ima convert --to binary -o "$T/l.bin" "$f"
    expect 0 "$TC_BIN" ima convert --to ascii -o "$T/l.ascii" "$T/l.bin"
    cmp -s "$f" "$T/l.ascii" || tc_fail "round trip of $f"
    expect 0 "$TC_BIN" ima replay --json "$f"
    cp "$T/out" "$T/a.json"
    expect 0 "$TC_BIN" ima replay --json --format binary "$T/l.bin"
    cmp -s "$T/a.json" "$T/out" || tc_fail "replay differs between formats for $f"
done
expect 0 "$TC_BIN" ima show --json "$D/generated-300.bin"
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert len(j["entries"])==300' \
    "$T/out" || tc_fail "show --json"
tc_pass "convert"

# A tampered template hash is found, with its entry index.
sed '3s/^10 ./10 0/;3s/^10 00/10 11/' "$D/generated-300.ascii" >"$T/bad.ascii"
expect 1 "$TC_BIN" ima replay --json "$T/bad.ascii"
python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; assert e["check"]=="ima.template_hash" and e["entry"]==2, e' \
    "$T/out" || tc_fail "tamper reason"
tc_pass "template hash"

# Policies: created from a known-good list, the list complies; violations need a flag.
expect 0 "$TC_BIN" policy create runtime --from-ima-log "$D/generated-300.bin" -o "$T/p.json"
expect 1 "$TC_BIN" policy check runtime --policy "$T/p.json" --ima-log "$D/generated-300.bin" --json
grep -q '"ima.policy.violation"' "$T/out" || tc_fail "violation not reported"
expect 0 "$TC_BIN" policy check runtime --policy "$T/p.json" --ima-log "$D/generated-300.ascii" \
    --allow-violations
for pol in evmctl-policy.json evmctl-policy-keylime.json; do
    expect 0 "$TC_BIN" policy check runtime --policy "$D/$pol" --ima-log "$D/evmctl-signed.bin"
done
# The same list against a policy without keys: the signed files are not in its digests.
expect 0 "$TC_BIN" policy create runtime --from-ima-log "$D/generated-300.ascii" -o "$T/nokeys.json"
expect 1 "$TC_BIN" policy check runtime --policy "$T/nokeys.json" --ima-log "$D/evmctl-signed.bin"
# A list with an extra file fails on that entry.
head -n 1 "$D/generated-300.ascii" >"$T/short.ascii"
expect 0 "$TC_BIN" policy create runtime --from-ima-log "$T/short.ascii" -o "$T/p1.json"
expect 1 "$TC_BIN" policy check runtime --policy "$T/p1.json" --ima-log "$D/generated-300.ascii" \
    --json --allow-violations
python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["error"]; assert e["check"]=="ima.policy.not_in_policy" and e["entry"]==1, e' \
    "$T/out" || tc_fail "not_in_policy reason"
# Keylime's allowlist for the sha256 sample lists "data", not "/data".
expect 1 "$TC_BIN" policy check runtime --policy "$F/allowlist-sha256" --ima-log "$F/ima-log-sha256"
tc_pass "policy"

# Usage and I/O errors exit 2.
expect 2 "$TC_BIN" ima replay
expect 2 "$TC_BIN" ima replay --bank md5 "$F/ima-log-sha1"
expect 2 "$TC_BIN" ima replay "$T/does-not-exist"
expect 2 "$TC_BIN" policy check runtime --policy "$T/p.json"
expect 2 "$TC_BIN" policy create runtime
expect 0 "$TC_BIN" ima --help
expect 0 "$TC_BIN" ima show --help
expect 0 "$TC_BIN" policy check runtime --help
tc_pass "usage"
