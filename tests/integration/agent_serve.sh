#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# trustcloud-agent serving quotes on a software node with real evidence (a captured UEFI log
# replayed into swtpm, an IMA list grown the kernel's way). The agent's certificate comes from
# a test CA (as if enrolled); curl plays the coordinator. Every answer is verified with
# `trustcloud quote verify` / `trustcloud appraise`; identities, hostile requests, a failing
# TPM and a restart are checked, and the agent keeps serving after each.
. "$TC_SRC/tests/lib/common.sh"
. "$TC_SRC/tests/lib/agent_alone.sh"
agent_bin="$TC_BUILD/trustcloud-agent"
[ -x "$agent_bin" ] || tc_skip "trustcloud-agent not built"
command -v curl >/dev/null || tc_skip "curl not installed"
cd "$TC_TMP"
tc_start_swtpm node
tcti=$TC_TCTI_node
boot=$TC_FIXTURES/eventlog/event-gce-ubuntu-2104-log.bin
[ -f "$boot" ] || tc_skip "fixtures not available"
sel=sha256:0,1,2,3,4,5,6,7,8,9,10

# The node: boot log in the PCRs, an IMA list (ASCII, as the lab writes it) with 10 entries.
"$TC_BIN" lab boot --tcti "$tcti" --eventlog "$boot" >/dev/null
"$TC_BIN" lab ima-start --tcti "$tcti" --log ima.log
for i in $(seq 1 9); do
    "$TC_BIN" lab measure --tcti "$tcti" --log ima.log --path "/usr/bin/tool$i" --content "tool $i"
done
cp "$boot" eventlog.bin

# A test CA: the agent's server certificate (as enrollment would issue it), the coordinator's
# client certificate, and another node's.
agent_alone_ca
issue coord coordinator
issue other node:other
issue agent node:n1 IP:127.0.0.1
# With the AK the node would have created at enrollment, in the agent's context format.
agent_alone_state state agent "$tcti" ak.pub

port=$(tc_free_port_pair)
cat >agent.conf <<EOF
[agent]
node_id = n1
tcti = $tcti
state_dir = state
listen_address = 127.0.0.1
listen_port = $port
coordinator_url = https://127.0.0.1:1
ca_file = ca.pem
eventlog_path = eventlog.bin
ima_path = ima.log
log_level = debug
EOF

start_agent() {
    [ -f agent.log ] && mv agent.log agent.log.old
    "$agent_bin" -c agent.conf >agent.log 2>&1 &
    agent_pid=$!
    TC_PIDS+=("$agent_pid")
    for _ in $(seq 100); do
        grep -q "listening on port" agent.log 2>/dev/null && return 0
        kill -0 "$agent_pid" 2>/dev/null || { cat agent.log; tc_fail "agent exited"; }
        sleep 0.05
    done
    cat agent.log
    tc_fail "agent did not start"
}
stop_agent() {
    kill "$agent_pid"
    wait "$agent_pid" || { tail -40 agent.log; tc_fail "agent did not exit cleanly on SIGTERM"; }
}
url=https://127.0.0.1:$port
# call NAME METHOD PATH [BODYFILE]: prints the HTTP status, the body goes to out.json.
call() {
    local who=$1 method=$2 path=$3 body=${4:-}
    local auth=()
    [ "$who" = none ] || auth=(--cert "$who.pem" --key "$who.key")
    curl -sS --max-time 20 --cacert ca.pem "${auth[@]}" -X "$method" -o out.json \
        -w '%{http_code}' ${body:+-H 'Content-Type: application/json' --data-binary "@$body"} \
        "$url$path" 2>curl.err || echo "curl-failed"
}
request() { # NONCE IMA_FROM WANT_EVENTLOG
    printf '{"nonce": "%s", "pcr_selection": "%s", "ima_from": %s, "want_eventlog": %s}' \
        "$1" "$sel" "$2" "$3" >req.json
}
# Splits out.json into the files the CLI verifies.
split_answer() {
    python3 - <<'PY'
import base64, json
a = json.load(open("out.json"))
open("q.msg", "wb").write(base64.b64decode(a["attest"], validate=True))
open("q.sig", "wb").write(base64.b64decode(a["signature"], validate=True))
json.dump(a["pcrs"], open("q.pcrs", "w"))
open("ima.bin", "wb").write(base64.b64decode(a["ima"]["list"], validate=True))
open("ima.first", "w").write(str(a["ima"]["first"]))
if "eventlog" in a:
    open("q.evlog", "wb").write(base64.b64decode(a["eventlog"], validate=True))
PY
}
good_quote() { # [IMA_FROM]: a full quote that must verify
    local n
    n=$(openssl rand -hex 32)
    request "$n" "${1:-0}" false
    st=$(call coord POST /v1/quote req.json)
    [ "$st" = 200 ] || { cat out.json curl.err; tc_fail "quote: HTTP $st"; }
    split_answer
    "$TC_BIN" quote verify --ak ak.pub --message q.msg --signature q.sig --pcrs q.pcrs \
        --nonce "$n" --pcr-list "$sel" >/dev/null || tc_fail "quote does not verify"
}

start_agent
"$TC_BIN" policy create runtime --from-ima-log ima.log -o rt.json
"$TC_BIN" policy create measured-boot --from-eventlog "$boot" -o mb.json

n=$(openssl rand -hex 32)
request "$n" 0 true
st=$(call coord POST /v1/quote req.json)
[ "$st" = 200 ] || { cat out.json curl.err agent.log; tc_fail "quote: HTTP $st"; }
split_answer
[ "$(cat ima.first)" = 0 ] || tc_fail "ima.first should be 0"
cmp -s q.evlog "$boot" || tc_fail "event log bytes differ from the node's"
"$TC_BIN" appraise --ak ak.pub --message q.msg --signature q.sig --pcrs q.pcrs --nonce "$n" \
    --pcr-list "$sel" --eventlog q.evlog --mb-policy mb.json --ima-log ima.bin \
    --runtime-policy rt.json --json >appraise.json || { cat appraise.json; tc_fail "appraise"; }
python3 -c 'import json; j=json.load(open("appraise.json")); p=j["properties"]
assert p["quote"]=="pass" and p["boot"]=="pass" and p["runtime"]=="pass", p
assert j["ima_entries"]==10, j'
cp ima.bin ima-full.bin
tc_pass "quote with boot log and full IMA list (binary) appraises: quote, boot, runtime"

# The TPM is not held between quotes: the node can extend PCR 10 meanwhile (swtpm serves one
# client at a time, so this would hang if the agent kept its connection).
timeout 20 "$TC_BIN" lab measure --tcti "$tcti" --log ima.log --path /usr/bin/late --content late ||
    tc_fail "the agent holds the TPM between operations"
good_quote 10
[ "$(cat ima.first)" = 10 ] || tc_fail "ima.first should be 10"
"$TC_BIN" ima show --json ima.bin >show.json
grep -q /usr/bin/late show.json || tc_fail "delta does not carry the new entry"
grep -q /usr/bin/tool1 show.json && tc_fail "delta carries old entries"
good_quote 1000
[ "$(cat ima.first)" = 0 ] || tc_fail "ima_from beyond the list must restart at 0"
[ "$(stat -c %s ima.bin)" -gt "$(stat -c %s ima-full.bin)" ] || tc_fail "full list expected"
python3 -c 'import json,sys; sys.exit("eventlog" in json.load(open("out.json")))' ||
    tc_fail "event log sent without being asked"
tc_pass "IMA from ima_from (delta), from 0 when the list is shorter, no boot log unless asked"

# Identities: only CN=coordinator may ask; no certificate at all is refused at the handshake.
request "$(openssl rand -hex 32)" 0 false
st=$(call other POST /v1/quote req.json)
[ "$st" = 403 ] || tc_fail "CN node:other got HTTP $st on /v1/quote"
st=$(call none POST /v1/quote req.json)
[ "$st" = 200 ] || [ "$st" = 403 ] && tc_fail "no client certificate got HTTP $st"
good_quote
tc_pass "node:other gets 403, no client certificate refused; still serving"

# Hostile requests: 400 with the failed check, 413 above the body cap.
hostile() { # EXPECTED_STATUS EXPECTED_CHECK BODY
    printf '%s' "$3" >bad.json
    st=$(call coord POST /v1/quote bad.json)
    [ "$st" = "$1" ] || { cat out.json; tc_fail "hostile $3: HTTP $st, expected $1"; }
    if [ -n "$2" ]; then
        python3 -c 'import json,sys; c=json.load(open("out.json"))["check"]; sys.exit(c!=sys.argv[1])' "$2" ||
            { cat out.json; tc_fail "hostile $3: wrong check"; }
    fi
}
hostile 400 request.json 'not json'
hostile 400 request.json '[1,2]'
hostile 400 request.nonce '{"nonce": 5, "pcr_selection": "sha256:0"}'
hostile 400 request.nonce '{"nonce": "zz", "pcr_selection": "sha256:0"}'
hostile 400 request.nonce "{\"nonce\": \"$(openssl rand -hex 65)\", \"pcr_selection\": \"sha256:0\"}"
hostile 400 request.pcr_selection '{"nonce": "00", "pcr_selection": "sha256:24"}'
hostile 400 request.pcr_selection '{"nonce": "00", "pcr_selection": "md5:0"}'
hostile 400 request.ima_from '{"nonce": "00", "pcr_selection": "sha256:0", "ima_from": -1}'
hostile 400 request.want_eventlog '{"nonce": "00", "pcr_selection": "sha256:0", "want_eventlog": "yes"}'
python3 -c 'print("{\"nonce\": \"" + "a" * 2000000 + "\"}")' >huge.json
st=$(call coord POST /v1/quote huge.json)
[ "$st" = 413 ] || tc_fail "oversized body: HTTP $st"
st=$(call coord GET /v1/quote)
[ "$st" = 405 ] || tc_fail "GET /v1/quote: HTTP $st"
good_quote
tc_pass "hostile requests refused (400 with the check, 413, 405); still serving"

# A failing TPM operation is a 500 with a JSON error, and the next quote works again.
mv state/ak.ctx ak.ctx.away
request "$(openssl rand -hex 32)" 0 false
st=$(call coord POST /v1/quote req.json)
[ "$st" = 500 ] || tc_fail "quote without an AK: HTTP $st"
python3 -c 'import json; assert json.load(open("out.json"))["check"]=="agent.tpm"' ||
    tc_fail "500 without the agent.tpm check"
mv ak.ctx.away state/ak.ctx
good_quote
tc_pass "a failing TPM operation gives 500 agent.tpm; the agent keeps serving"

# Concurrent requests are serialised on the TPM and all answered.
pids=()
for i in $(seq 1 8); do
    (
        n=$(openssl rand -hex 32)
        printf '{"nonce": "%s", "pcr_selection": "%s", "ima_from": 0}' "$n" "$sel" >"req$i.json"
        st=$(curl -sS --max-time 30 --cacert ca.pem --cert coord.pem --key coord.key \
            -H 'Content-Type: application/json' --data-binary "@req$i.json" -o "out$i.json" \
            -w '%{http_code}' "$url/v1/quote")
        [ "$st" = 200 ] && echo "$n" >"nonce$i"
    ) &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || tc_fail "a concurrent quote failed"; done
for i in $(seq 1 8); do
    cp "out$i.json" out.json
    split_answer
    "$TC_BIN" quote verify --ak ak.pub --message q.msg --signature q.sig --pcrs q.pcrs \
        --nonce "$(cat "nonce$i")" --pcr-list "$sel" >/dev/null || tc_fail "concurrent quote $i"
done
tc_pass "8 concurrent quotes answered and verified"

# Revocation notices: recorded from the coordinator only, listed by /v1/peers.
printf '{"seq": 7, "ts": "2024-01-01T00:00:00Z", "node_id": "n2", "old_state": "trusted", "new_state": "untrusted", "reason": {"check": "ima.policy.not_in_policy", "entry": 21, "detail": "x"}}' >notice.json
st=$(call other POST /v1/notice notice.json)
[ "$st" = 403 ] || tc_fail "notice from node:other: HTTP $st"
st=$(call coord POST /v1/notice notice.json)
[ "$st" = 200 ] || { cat out.json; tc_fail "notice: HTTP $st"; }
printf '{"node_id": "../../etc", "new_state": "untrusted"}' >bad.json
st=$(call coord POST /v1/notice bad.json)
[ "$st" = 400 ] || tc_fail "notice with a bad node id: HTTP $st"
st=$(call other GET /v1/peers)
[ "$st" = 200 ] || tc_fail "peers: HTTP $st"
python3 -c 'import json; r=json.load(open("out.json"))["revoked"]
assert r==[{"node_id":"n2","state":"untrusted","seq":7}], r' || tc_fail "revoked set"
tc_pass "notice recorded (coordinator only), bad notice refused, /v1/peers lists n2"

# A restart keeps the identity: same AK, same certificate, no enrollment attempted (the
# configured coordinator URL leads nowhere).
stop_agent
start_agent
good_quote
grep -q "already enrolled" agent.log || tc_fail "restart did not recognise its certificate"
tc_pass "restarted agent keeps its identity and serves without re-enrolling"
stop_agent
