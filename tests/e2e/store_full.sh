#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The coordinator's database on a small tmpfs that fills up while nodes are attested:
# - a node tampered with while nothing can be recorded is reported untrusted at once (API, CLI),
#   with the reason naming the file, and every node whose verdicts are not durable is reported
#   not trusted ("store.unrecorded"); the outage itself is visible (GET /v1/status, the CLI's
#   warning, error lines in the log);
# - a webhook delivered while the disk is full (so its "done" mark cannot be written) is not sent
#   again and again: deliveries per event stay within a small bound;
# - when space returns, the recorded history catches up: every node's rounds are consecutive,
#   none missing, none twice, and the transitions seen during the outage are in it and their
#   events reach the webhook.
. "$TC_SRC/tests/lib/lab.sh"
[ "$(id -u)" = 0 ] || tc_skip "mounting a tmpfs needs root"
command -v curl >/dev/null || tc_skip "curl not installed"
cd "$LAB_DIR"
T=$TC_BIN
interval_ms=500
DBFS=$LAB_DIR/dbfs
mkdir -p "$DBFS"
mount -t tmpfs -o size=24m,mode=0700 trustcloud-test "$DBFS" || tc_skip "cannot mount a tmpfs here"
# The coordinator holds the database open: stop it before the file system goes.
trap 'rc=$?; set +e; lab_coordinator_stop; umount -l "$DBFS"; (exit $rc); lab_cleanup' EXIT

lab_coordinator_start interval=${interval_ms}ms db=sqlite:$DBFS/coordinator.db webhook_max_backoff=2s \
    webhook_timeout=10s
lab_webhook_start
$T subscriber add --url "$LAB_WEBHOOK_URL" --secret store-full-test-secret-0123 >/dev/null
for n in f1 f2 f3; do lab_node_prepare "$n"; done
lab_policies_from f1
for n in f1 f2 f3; do lab_node_run "$n"; done
for n in f1 f2 f3; do lab_node_wait "$n" trusted 30 || tc_fail "$n not trusted"; done

status() { curl -sf --cacert "$TC_CA" --cert "$TC_CERT" --key "$TC_KEY" "$TC_COORDINATOR/v1/status"; }
[ "$(status | lab_json - 'j["store"]["healthy"]')" = True ] || tc_fail "store not healthy at start"

fill() { # the file system full. The WAL is emptied first (by a second connection, as SQLite
    # allows): SQLite reuses the space of a WAL it has checkpointed, so a full disk only stops
    # writes that need new frames.
    python3 -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute("PRAGMA wal_checkpoint(TRUNCATE)")' \
        "$DBFS/coordinator.db"
    dd if=/dev/zero of="$DBFS/fill" bs=64k status=none 2>/dev/null || true
    dd if=/dev/zero of="$DBFS/fill2" bs=512 status=none 2>/dev/null || true
}

# 1. A delivery in flight when the disk fills: the subscriber holds its answer (200) until the
#    disk is full, so the coordinator cannot write that the delivery is done.
: >"$LAB_WEBHOOK_LOG.hold"
lab_node_tamper f2 /opt/.cache/miner-f2
for _ in $(seq 100); do
    grep -q '\\"node_id\\":\\"f2\\",\\"old_state\\":\\"trusted\\"' "$LAB_WEBHOOK_LOG" && break
    sleep 0.1
done
grep -q '\\"node_id\\":\\"f2\\",\\"old_state\\":\\"trusted\\"' "$LAB_WEBHOOK_LOG" ||
    tc_fail "no delivery for f2's transition"
fill
rm -f "$LAB_WEBHOOK_LOG.hold"

# 2. While nothing can be recorded, f1 is tampered with: it must show untrusted with its own
#    reason within two intervals, not its last recorded "trusted".
t0=$(date +%s%N)
lab_node_tamper f1 /tmp/.x/implant-f1
seen=
for _ in $(seq 40); do
    j=$($T node show f1 --json 2>/dev/null) || { sleep 0.1; continue; }
    if [ "$(lab_json - 'j["appraised_state"] if "appraised_state" in j else ""' <<<"$j")" = untrusted ]; then
        seen=$j
        break
    fi
    sleep 0.1
done
dt=$((($(date +%s%N) - t0) / 1000000))
[ -n "$seen" ] || { $T node show f1; tail -20 coordinator/coordinator.log >&2; tc_fail "f1 not reported untrusted while the disk is full"; }
[ "$(lab_json - 'j["state"]' <<<"$seen")" = untrusted ] || tc_fail "f1 state: $seen"
[ "$(lab_json - 'j["recorded"]' <<<"$seen")" = False ] || tc_fail "f1 not marked unrecorded: $seen"
lab_json - 'j["reason"]["detail"]' <<<"$seen" | grep -q implant-f1 || tc_fail "f1 reason: $seen"
[ "$dt" -le $((2 * interval_ms + 1500)) ] || tc_fail "f1 untrusted only after $dt ms"
tc_pass "tampered f1 reported untrusted $dt ms after the tamper while the disk is full"

# Nothing may show trusted while its verdicts are not durable (f3 is healthy, but unrecorded).
sleep 1
st=$($T node list --json | lab_json - 'sorted((n["id"], n["state"], (n["reason"] or {}).get("check")) for n in j["nodes"])')
case $st in *trusted\",\ null*) echo "$st"; tc_fail "a node shown trusted while the store fails" ;; esac
echo "$st" | grep -q '"f3", "untrusted", "store.unrecorded"' || tc_fail "f3 not failed closed: $st"
$T node list 2>warn.txt >/dev/null
grep -q "WARNING: the coordinator cannot record verdicts" warn.txt || tc_fail "CLI shows no warning"
s=$(status)
[ "$(lab_json - 'j["store"]["healthy"]' <<<"$s")" = False ] || tc_fail "status healthy: $s"
[ "$(lab_json - 'j["store"]["unrecorded_rounds"] > 0' <<<"$s")" = True ] || tc_fail "status: $s"
grep -q "error \[engine\] store outage: cannot record verdicts" coordinator/coordinator.log ||
    tc_fail "no error line for the outage"
tc_pass "outage visible: status $(lab_json - 'j["store"]' <<<"$s")"

# Let the outage last a few more intervals (webhook retries, backlog growing).
sleep 3
[ "$(status | lab_json - 'j["store"]["webhook_outcomes_unrecorded"]')" = 1 ] ||
    tc_fail "the delivery done during the outage is not kept as unrecorded: $(status)"
per_event() {
    python3 - "$LAB_WEBHOOK_LOG" <<'PY'
import collections, json, sys
c = collections.Counter(json.loads(l)["headers"].get("X-Trustcloud-Event") for l in open(sys.argv[1]))
print(json.dumps(dict(c), separators=(",", ":")), max(c.values()) if c else 0)
PY
}
read -r counts worst <<<"$(per_event)"
[ "$worst" -le 2 ] || tc_fail "webhook storm while the disk is full: deliveries per event $counts"
tc_pass "deliveries per event while full: $counts"

# 3. Space returns: the history catches up.
rm -f "$DBFS/fill" "$DBFS/fill2"
for _ in $(seq 100); do
    [ "$(status | lab_json - 'j["store"]["healthy"]')" = True ] && break
    sleep 0.1
done
s=$(status)
[ "$(lab_json - 'j["store"]["healthy"]' <<<"$s")" = True ] || tc_fail "store did not recover: $s"
grep -q "store recovered after" coordinator/coordinator.log || tc_fail "no recovery line"
[ "$(lab_json - 'j["store"]["late_rounds"] > 0 and j["store"]["dropped_rounds"] == 0' <<<"$s")" = True ] ||
    tc_fail "catch-up counters: $s"
lab_node_wait f3 trusted 5 || tc_fail "f3 not trusted again once recorded"
[ "$($T node show f1 --json | lab_json - 'j["state"]')" = untrusted ] || tc_fail "f1 lost its verdict"
for n in f1 f2 f3; do $T node history $n --limit 1000 --json >hist-$n.json; done
$T events --since 0 --json >events.json
python3 - events.json hist-f1.json hist-f2.json hist-f3.json <<'PY' || tc_fail "history has gaps or duplicates"
import json, sys
for path in sys.argv[2:]:
    rounds = sorted(r["round"] for r in json.load(open(path))["results"])
    assert rounds == list(range(rounds[0], rounds[0] + len(rounds))), (path, "gap or duplicate", rounds)
evs = json.load(open(sys.argv[1]))["events"]
f1 = [e for e in evs if e["node_id"] == "f1"]
assert f1 and f1[-1]["new_state"] == "untrusted" and "implant-f1" in f1[-1]["reason"]["detail"], f1
print("rounds per node:", [len(json.load(open(p))["results"]) for p in sys.argv[2:]])
PY
tc_pass "history caught up: consecutive rounds, f1's transition recorded"

# Every event reaches the webhook, and none was sent more than twice.
want=$(lab_json events.json 'len(j["events"])')
for _ in $(seq 100); do
    got=$(python3 -c 'import json,sys; print(len({json.loads(l)["headers"].get("X-Trustcloud-Event") for l in open(sys.argv[1])}))' "$LAB_WEBHOOK_LOG")
    [ "$got" -ge "$want" ] && break
    sleep 0.1
done
[ "$got" -ge "$want" ] || tc_fail "$got of $want events delivered"
read -r counts worst <<<"$(per_event)"
[ "$worst" -le 2 ] || tc_fail "deliveries per event: $counts"
tc_pass "all $want events delivered, at most $worst times each: $counts"
