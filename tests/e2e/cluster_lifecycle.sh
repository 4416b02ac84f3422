#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Three simulated nodes under one coordinator, driven only through the operator CLI: policies
# (add, list, show, assign, update), enrollment to trusted, growth that stays trusted, a tamper
# that turns one node untrusted with the reason while the others stay trusted, the signed
# webhook and the event stream (also --follow), history, an agent restart that keeps its
# identity, an agent that stops answering (unreachable, never trusted), manual approval, node and
# subscriber deletion, and the CLI's exit codes.
. "$TC_SRC/tests/lib/lab.sh"
cd "$LAB_DIR"
T=$TC_BIN

lab_coordinator_start interval=500ms unreachable_after=2 request_timeout=1s
lab_webhook_start
secret=lifecycle-webhook-secret-0123456789
$T subscriber add --url "$LAB_WEBHOOK_URL" --secret "$secret" --json >sub.json
sub_id=$(lab_json sub.json 'j["id"]')

for n in n1 n2 n3; do lab_node_prepare "$n"; done
lab_policies_from n1
$T policy list --json >pol.json
lab_json pol.json 'sorted((p["name"], p["kind"], p["version"]) for p in j["policies"])' >pol.txt
grep -q "lab-boot.*measured_boot.*1" pol.txt && grep -q "lab-runtime.*runtime.*1" pol.txt ||
    { cat pol.txt; tc_fail "policy list"; }
$T policy show lab-runtime --json | lab_json - 'j["kind"] == "runtime" and "digests" in j["body"]' |
    grep -qx True || tc_fail "policy show"
tc_pass "policies added, listed and shown"

# Events from now on, followed in the background (it must see every state change, in order).
$T events --follow --json --since 0 --count 7 --timeout 60 >follow.jsonl 2>follow.err &
follow_pid=$!

for n in n1 n2 n3; do lab_node_run "$n"; done
for n in n1 n2 n3; do lab_node_wait "$n" trusted 30 || tc_fail "$n not trusted"; done
tc_pass "three nodes enrolled and trusted"

pin_before=$(lab_node_field n2 'j["tls_pin_sha256"] + " " + str(j["created"])')
for n in n1 n2 n3; do lab_node_grow "$n"; lab_node_grow "$n"; done
sleep 1.5
$T node list --json | lab_json - '[n["state"] for n in j["nodes"]]' | grep -qx '\["trusted", "trusted", "trusted"\]' ||
    tc_fail "allowed growth changed a state"
[ "$(lab_node_field n1 'j["ima_entries"]')" -ge 8 ] || tc_fail "IMA growth not appraised"
tc_pass "allowed IMA growth appraised, nodes stay trusted"

# A policy update (new version, same kind) re-evaluated by the next round: still trusted.
lab_node_grow n1
$T policy create runtime --from-ima-log n1/ima.log -o rt2.json
$T policy update lab-runtime --file rt2.json --json | lab_json - 'j["version"]' | grep -qx 2 ||
    tc_fail "policy update did not make version 2"
sleep 1
lab_node_wait n1 trusted 5 || tc_fail "n1 not trusted after the policy update"
tc_pass "policy update to version 2"

lab_node_tamper n2 /opt/evil/rootkit
lab_node_wait n2 untrusted 10 || tc_fail "tampered n2 not untrusted"
$T node show --json n2 >n2.json
lab_json n2.json 'j["reason"]["check"]' | grep -qx ima.policy.not_in_policy || { cat n2.json; tc_fail "reason check"; }
lab_json n2.json 'j["reason"]["detail"]' | grep -q /opt/evil/rootkit || tc_fail "reason detail"
sleep 1
for n in n1 n3; do [ "$(lab_node_field $n 'j["state"]')" = trusted ] || tc_fail "$n left trusted"; done
tc_pass "tampered node untrusted with the reason, the others stay trusted"

# Text output carries the same facts.
$T node list | grep -E '^n2 +untrusted .*ima.policy.not_in_policy' >/dev/null || tc_fail "node list text"
$T node history n2 --limit 50 --json >hist.json
lab_json hist.json '[r["state"] for r in j["results"] if r["changed"]][:2]' |
    grep -qx '\["untrusted", "trusted"\]' || { cat hist.json; tc_fail "history"; }
lab_json hist.json '[r["id"] for r in j["results"]] == sorted((r["id"] for r in j["results"]), reverse=True)' |
    grep -qx True || tc_fail "history not newest first"
tc_pass "node list and history"

lab_webhook_wait 4 10 || tc_fail "webhook deliveries missing"
python3 - "$LAB_WEBHOOK_LOG" "$secret" <<'PY' || tc_fail "webhook content"
import hashlib, hmac, json, sys
secret = sys.argv[2].encode()
recs = [json.loads(l) for l in open(sys.argv[1])]
bad = [r for r in recs if r["headers"].get("X-Trustcloud-Signature") !=
       "sha256=" + hmac.new(secret, r["body"].encode(), hashlib.sha256).hexdigest()]
assert not bad, bad
evs = [json.loads(r["body"]) for r in recs]
u = [e for e in evs if e["new_state"] == "untrusted"]
assert len(u) == 1 and u[0]["node_id"] == "n2" and u[0]["old_state"] == "trusted", evs
assert u[0]["reason"]["check"] == "ima.policy.not_in_policy", u
seqs = [e["seq"] for e in evs]
assert len(seqs) == len(set(seqs)), seqs
for r in recs:
    assert r["headers"]["X-Trustcloud-Event"] == str(json.loads(r["body"])["seq"]), r
PY
tc_pass "webhook deliveries signed (HMAC-SHA256), one per event, revocation with its reason"

# An agent restart keeps its identity: no new enrollment, same key pin, back to trusted.
lab_node_restart n3
sleep 1
lab_node_wait n3 trusted 10 || tc_fail "n3 not trusted after restart"
grep -c "enrollment .* started for node n3" coordinator/coordinator.log | grep -qx 1 ||
    tc_fail "n3 enrolled again after a restart"
lab_node_restart n2
sleep 1.5
[ "$(lab_node_field n2 'j["tls_pin_sha256"] + " " + str(j["created"])')" = "$pin_before" ] ||
    tc_fail "n2 identity changed across a restart"
[ "$(lab_node_field n2 'j["state"]')" = untrusted ] || tc_fail "restart laundered untrusted n2"
tc_pass "agent restarts keep identity; an untrusted node stays untrusted"

# An agent that stops answering (process frozen, socket still accepting) becomes unreachable.
lab_node_pause n1
lab_node_wait n1 unreachable 10 || tc_fail "frozen n1 not unreachable"
for _ in 1 2 3 4 5; do
    [ "$(lab_node_field n1 'j["state"]')" = unreachable ] || tc_fail "frozen n1 left unreachable"
    sleep 0.3
done
lab_node_resume n1
lab_node_wait n1 trusted 10 || tc_fail "n1 not trusted again after answering"
lab_node_kill n3
lab_node_wait n3 unreachable 10 || tc_fail "killed n3 not unreachable"
tc_pass "silent agents become unreachable (frozen and killed), recover when they answer"

wait $follow_pid || { cat follow.err; tc_fail "events --follow did not see 7 events"; }
python3 - follow.jsonl <<'PY' || tc_fail "followed events"
import json, sys
evs = [json.loads(l) for l in open(sys.argv[1])]
seqs = [e["seq"] for e in evs]
assert seqs == sorted(seqs) and len(set(seqs)) == 7, seqs
assert [e["new_state"] for e in evs].count("trusted") >= 3, evs
PY
$T events --since 0 --node n2 | grep -q 'trusted -> untrusted  ima.policy.not_in_policy' ||
    tc_fail "events text"
tc_pass "events --follow saw every change in order; events text"

# Exit codes: 0 ok, 1 refused by the coordinator, 2 usage / no answer.
rc=0; $T node show no-such-node >/dev/null 2>&1 || rc=$?; [ $rc = 1 ] || tc_fail "unknown node exit $rc"
rc=0; $T node show --json no-such-node >nf.json 2>/dev/null || rc=$?
[ $rc = 1 ] && [ "$(lab_json nf.json 'j["http_status"]')" = 404 ] || tc_fail "unknown node --json"
rc=0; $T node show >/dev/null 2>&1 || rc=$?; [ $rc = 2 ] || tc_fail "usage exit $rc"
rc=0; TC_COORDINATOR=https://127.0.0.1:1 $T node list >/dev/null 2>&1 || rc=$?
[ $rc = 2 ] || tc_fail "unreachable coordinator exit $rc"
rc=0; TC_CA=$LAB_DIR/mfr-ca/bundle.pem $T node list >/dev/null 2>&1 || rc=$?
[ $rc = 2 ] || tc_fail "untrusted server certificate exit $rc"
rc=0; $T policy assign no-such-policy --group default >/dev/null 2>&1 || rc=$?
[ $rc = 1 ] || tc_fail "assign unknown policy exit $rc"
rc=0; $T node wait n2 --state trusted --timeout 1 >/dev/null 2>&1 || rc=$?
[ $rc = 1 ] || tc_fail "node wait timeout exit $rc"
$T node list --coordinator "$TC_COORDINATOR" --cert "$TC_CERT" --key "$TC_KEY" --ca "$TC_CA" >/dev/null ||
    tc_fail "explicit connection options"
tc_pass "exit codes (0 ok, 1 refused/not found/timeout, 2 usage/unreachable/untrusted server)"

# Deletion: the node disappears (history too); the subscriber stops receiving.
$T node delete n3 >/dev/null
rc=0; $T node show n3 >/dev/null 2>&1 || rc=$?; [ $rc = 1 ] || tc_fail "deleted node still shown"
rc=0; $T node history n3 --json >h3.json 2>/dev/null || rc=$?
[ $rc = 1 ] || [ "$(lab_json h3.json 'len(j["results"])')" = 0 ] || tc_fail "deleted node kept history"
$T subscriber list --json | lab_json - '[s["url"] for s in j["subscribers"]]' | grep -q "$LAB_WEBHOOK_URL" ||
    tc_fail "subscriber list"
$T subscriber list --json | grep -q "$secret" && tc_fail "subscriber list shows the secret"
$T subscriber delete "$sub_id" >/dev/null
[ "$($T subscriber list --json | lab_json - 'len(j["subscribers"])')" = 0 ] || tc_fail "subscriber delete"
tc_pass "node and subscriber deletion"
