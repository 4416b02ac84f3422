#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# A software node with real evidence (captured UEFI log replayed into swtpm, IMA list grown
# the kernel's way), appraised end to end; then every way of lying about it is rejected with
# the right check.
. "$TC_SRC/tests/lib/common.sh"
cd "$TC_TMP"
tc_start_swtpm node
export TC_TCTI=$TC_TCTI_node
boot=$TC_FIXTURES/eventlog/event-gce-ubuntu-2104-log.bin
other=$TC_FIXTURES/eventlog/event-arch-linux.bin
sel=sha256:0,1,2,3,4,5,6,7,8,9,10

"$TC_BIN" tpm ak create --ctx ak.ctx --alg ecc --out-tpm2b ak.pub >/dev/null
"$TC_BIN" lab boot --eventlog "$boot" >/dev/null
"$TC_BIN" lab ima-start --log ima.log
for i in $(seq 1 20); do
    "$TC_BIN" lab measure --log ima.log --path "/usr/bin/tool$i" --content "tool $i"
done
"$TC_BIN" policy create measured-boot --from-eventlog "$boot" -o mb.json
"$TC_BIN" policy create runtime --from-ima-log ima.log -o rt.json

quote() { # NONCE
    "$TC_BIN" tpm quote --tcti "$TC_TCTI" --ak-ctx ak.ctx --ek-alg ecc --nonce "$1" \
        --pcr-list $sel --message q.msg --signature q.sig --pcrs q.pcrs >/dev/null
}
# expect EXIT CHECK [appraise args...]
expect() {
    local want=$1 check=$2 rc=0
    shift 2
    "$TC_BIN" appraise --ak ak.pub --message q.msg --signature q.sig --pcrs q.pcrs \
        --pcr-list $sel --json "$@" > out.json || rc=$?
    [ "$rc" = "$want" ] || { cat out.json; tc_fail "expected exit $want, got $rc ($*)"; }
    if [ -n "$check" ]; then
        got=$(python3 -c 'import json,sys; print(json.load(open("out.json"))["error"]["check"])')
        [ "$got" = "$check" ] || { cat out.json; tc_fail "expected check $check, got $got"; }
    fi
}

n=$(openssl rand -hex 32)
quote "$n"
expect 0 "" --nonce "$n" --eventlog "$boot" --mb-policy mb.json --ima-log ima.log --runtime-policy rt.json
python3 -c 'import json; j=json.load(open("out.json")); p=j["properties"]
assert p=={"quote":"pass","boot":"pass","pcrs":"not_checked","runtime":"pass"}, p
assert j["ima_entries"]==21, j'
tc_pass "genuine evidence valid (quote, boot, runtime)"

expect 1 quote.nonce --nonce "$(openssl rand -hex 32)" --eventlog "$boot"
tc_pass "stale/foreign nonce rejected"

expect 1 boot.pcr_mismatch --nonce "$n" --eventlog "$other"
tc_pass "boot log of another machine rejected"

head -n 15 ima.log > short.log
expect 1 ima.pcr_mismatch --nonce "$n" --ima-log short.log --runtime-policy rt.json
tc_pass "truncated IMA list rejected"

{ head -n 1 ima.log; sed -n 3p ima.log; sed -n 2p ima.log; tail -n +4 ima.log; } > reordered.log
expect 1 ima.pcr_mismatch --nonce "$n" --ima-log reordered.log
tc_pass "reordered IMA list rejected"

sed '5s/ima-ng sha256:[0-9a-f]*/ima-ng sha256:'"$(printf x | sha256sum | cut -c1-64)"'/' ima.log > forged.log
expect 1 ima.template_hash --nonce "$n" --ima-log forged.log
tc_pass "rewritten IMA entry rejected"

# A measurement outside the policy, genuinely extended: evidence is consistent but not allowed.
"$TC_BIN" lab measure --log ima.log --path /tmp/backdoor --content evil
n=$(openssl rand -hex 32)
quote "$n"
expect 1 ima.policy.not_in_policy --nonce "$n" --ima-log ima.log --runtime-policy rt.json
python3 -c 'import json; e=json.load(open("out.json"))["error"]; assert e["entry"]==21, e'
tc_pass "measurement outside the runtime policy rejected at entry 21"

# Entries appended after the quote are left for the next round, not a failure.
"$TC_BIN" lab measure --log ima.log --path /usr/bin/tool1 --content "tool 1"
cp ima.log later.log
"$TC_BIN" policy create runtime --from-ima-log ima.log -o rt2.json
expect 0 "" --nonce "$n" --ima-log later.log --runtime-policy rt2.json
python3 -c 'import json; j=json.load(open("out.json")); assert j["ima_entries"]==22, j'
tc_pass "entries newer than the quote are deferred"

# Tampered signature / message.
cp q.msg q.msg.orig
printf '\x01' | dd of=q.msg bs=1 seek=40 conv=notrunc 2>/dev/null
expect 1 "" --nonce "$n"
cp q.msg.orig q.msg
tc_pass "altered quote rejected"
