#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# kill -9 of the coordinator in the middle of attestation rounds, twice, and restarts: every node
# is attested again within two intervals in the state it had, nobody enrolls again (same node
# records, same key pins), a change that happened while the coordinator was down is caught after
# the restart, and the event stream and histories have no lost or duplicated rows; every event
# reaches the webhook (the outbox survives the crash).
. "$TC_SRC/tests/lib/lab.sh"
cd "$LAB_DIR"
T=$TC_BIN
interval_ms=500

lab_coordinator_start interval=${interval_ms}ms unreachable_after=3 request_timeout=1s
lab_webhook_start
$T subscriber add --url "$LAB_WEBHOOK_URL" --secret crash-test-webhook-secret-42 >/dev/null
for n in c1 c2 c3; do lab_node_prepare "$n"; done
lab_policies_from c1
for n in c1 c2 c3; do lab_node_run "$n"; done
for n in c1 c2 c3; do lab_node_wait "$n" trusted 30 || tc_fail "$n not trusted"; done
lab_node_tamper c3
lab_node_wait c3 untrusted 10 || tc_fail "c3 not untrusted"

identity() { $T node list --json | lab_json - 'sorted((n["id"], n["state"]) for n in j["nodes"])'; }
pins() {
    for n in c1 c2 c3; do lab_node_field $n 'j["tls_pin_sha256"] + " " + str(j["created"])'; done
}
max_round() { lab_node_field "$1" 'j["last_round"]'; }
pins_before=$(pins)

for cycle in 1 2; do
    # Let rounds run, then kill at an arbitrary point inside one.
    for n in c1 c2; do lab_node_grow "$n"; done
    sleep 0.$((RANDOM % 9 + 1))
    before=$(identity)
    declare -A r0=()
    for n in c1 c2 c3; do r0[$n]=$(max_round $n); done
    lab_coordinator_kill9
    if [ $cycle = 2 ]; then
        # A change while nobody watches must still be caught after the restart.
        lab_node_tamper c2 /usr/local/bin/implant
    fi
    sleep 0.5
    lab_coordinator_start
    # Every node is challenged again within two intervals of the coordinator listening: the
    # first new history row of each node, by the coordinator's own clock.
    t_listen=$(grep "\[coordinator\] listening on" coordinator/coordinator.log | tail -1 | cut -d' ' -f1)
    sleep $((3 * interval_ms / 1000)).$((3 * interval_ms % 1000))
    dt=0
    for n in c1 c2 c3; do
        d=$($T node history $n --json --limit 50 | python3 -c '
import datetime, json, sys
t0 = datetime.datetime.strptime(sys.argv[2], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
new = [r["ts"] for r in json.load(sys.stdin)["results"] if r["round"] > int(sys.argv[1])]
print(int(min(new) - t0.timestamp() * 1000) if new else 999999)' "${r0[$n]}" "$t_listen")
        [ "$d" -gt "$dt" ] && dt=$d
    done
    if [ $dt -gt $((2 * interval_ms)) ]; then
        tail -20 coordinator/coordinator.log >&2
        tc_fail "cycle $cycle: rounds resumed $dt ms after the restart"
    fi
    if [ $cycle = 1 ]; then
        [ "$(identity)" = "$before" ] || { echo "$before"; $T node list; tc_fail "states changed by a crash"; }
    else
        lab_node_wait c2 untrusted $((2 * interval_ms / 1000 + 3)) ||
            tc_fail "c2 tampered while the coordinator was down: not untrusted after restart"
        lab_node_field c2 'j["reason"]["detail"]' | grep -q implant || tc_fail "c2 reason"
        [ "$(lab_node_field c1 'j["state"]')" = trusted ] || tc_fail "c1 not trusted after restart"
    fi
    [ "$(pins)" = "$pins_before" ] || tc_fail "cycle $cycle: node identities changed"
    tc_pass "kill -9 #$cycle: rounds resumed $dt ms after the restart, states kept, no re-enrollment"
done
n_enroll=$(grep -c "enrollment .* started for node" coordinator/coordinator.log || true)
[ "$n_enroll" = 3 ] || tc_fail "$n_enroll enrollments for 3 nodes"
tc_pass "3 enrollments in all"

sleep 1
$T events --since 0 --json >events.json
for n in c1 c2 c3; do $T node history $n --limit 1000 --json >hist-$n.json; done
python3 - events.json hist-c1.json hist-c2.json hist-c3.json <<'PY' || tc_fail "rows lost or duplicated"
import json, sys
evs = json.load(open(sys.argv[1]))["events"]
seqs = [e["seq"] for e in evs]
assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), ("gap or duplicate in seqs", seqs)
last = {}
for e in evs:
    n = e["node_id"]
    if n in last:
        assert e["old_state"] == last[n], ("event chain broken", e, last[n])
    assert e["old_state"] != e["new_state"], ("non-change event", e)
    last[n] = e["new_state"]
assert last == {"c1": "trusted", "c2": "untrusted", "c3": "untrusted"}, last
for path in sys.argv[2:]:
    h = json.load(open(path))
    rows = h["results"]
    ids = [r["id"] for r in rows]
    rounds = [r["round"] for r in rows]
    assert len(set(ids)) == len(ids) and ids == sorted(ids, reverse=True), (path, ids)
    assert len(set(rounds)) == len(rounds) and rounds == sorted(rounds, reverse=True), (path, rounds)
    changes = [r["state"] for r in reversed(rows) if r["changed"]]
    mine = [e["new_state"] for e in evs if e["node_id"] == h["node"]]
    assert changes == mine, (path, changes, mine)
print("events", len(evs), "rows", sum(len(json.load(open(p))["results"]) for p in sys.argv[2:]))
PY
tc_pass "event stream contiguous and consistent with every node's history"

lab_webhook_wait "$(lab_json events.json 'len(j["events"])')" 15 || true
python3 - events.json "$LAB_WEBHOOK_LOG" <<'PY' || tc_fail "webhook lost an event"
import json, sys
want = {e["seq"] for e in json.load(open(sys.argv[1]))["events"]}
got = [json.loads(json.loads(l)["body"])["seq"] for l in open(sys.argv[2])]
missing = want - set(got)
assert not missing, ("never delivered", sorted(missing))
print("webhook: %d events, %d deliveries (%d repeated after crashes)" % (len(want), len(got), len(got) - len(set(got))))
PY
tc_pass "every event delivered to the webhook across crashes"
