#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Detection latency: a lab node (real trustcloud-agent on its own swtpm, real boot log, IMA list)
# under a real coordinator; something outside the runtime policy runs (an IMA measurement really
# extended into PCR 10: lab_node_tamper); measured from the moment that measurement is complete
# (appended to the list and extended) until
#   - state: the coordinator's event stream reports the node untrusted (a GET /v1/events
#     long-poll opened before the tamper returns), and
#   - webhook: the signed webhook of that event reaches a local receiver (its arrival time).
# Then the operator accepts the new measurement (runtime policy updated from the node's list),
# the node is trusted again, and the next repeat starts at a random point of the interval.
# Goal: at most one interval + 50 ms. A benchmark, not a test: it prints numbers.
# Usage: bench/detect.sh BUILD_DIR [REPEATS] [INTERVAL_MS]
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
repeats=${2:-10}
interval_ms=${3:-2000}
root=$(cd "$(dirname "$0")/.." && pwd)
export TC_SRC=$root TC_BUILD=$build TC_BIN=$build/trustcloud
export TC_FIXTURES=${TC_FIXTURES:-$root/../shared/fixtures}
# The lab prints per-step PASS lines and logs; this script prints its own summary.
. "$root/tests/lib/lab.sh"
cd "$LAB_DIR"
T=$TC_BIN
now() { date +%s.%N; }

LAB_COORD_LOG_LEVEL=warn lab_coordinator_start interval=${interval_ms}ms unreachable_after=3 \
    request_timeout=2s
lab_webhook_start
$T subscriber add --url "$LAB_WEBHOOK_URL" --secret detect-bench-webhook-secret-0123 >/dev/null
lab_node_prepare d1
lab_policies_from d1
lab_node_run d1
lab_node_wait d1 trusted 60 || tc_fail "d1 never became trusted"

events() { # SINCE WAIT_S: one long-poll of the event stream
    curl -sS --max-time $(($2 + 5)) --cacert "$TC_CA" --cert "$TC_CERT" --key "$TC_KEY" \
        "$TC_COORDINATOR/v1/events?since=$1&wait=$2"
}
last=$(events 0 0 | lab_json - 'j["last"]')
: >detect.tsv
for i in $(seq "$repeats"); do
    # A random point of the node's interval, so the figures cover the whole range.
    sleep "$(python3 -c "import random; print(random.uniform(0.5, 0.5 + $interval_ms / 1000))")"
    hooks_before=$(wc -l <"$LAB_WEBHOOK_LOG")
    (events "$last" 30 >"ev.$i.json"; now >"ev.$i.t") &
    poller=$!
    sleep 0.2 # the long-poll is registered before the tamper
    lab_node_tamper d1 "/tmp/.detect/payload-$i" >/dev/null
    t0=$(now)
    wait "$poller" || tc_fail "event stream request failed"
    state=$(lab_json "ev.$i.json" '[e["new_state"] for e in j["events"] if e["node_id"] == "d1"][:1]')
    [ "$state" = '["untrusted"]' ] || tc_fail "repeat $i: unexpected events $(cat "ev.$i.json")"
    last=$(lab_json "ev.$i.json" 'j["last"]')
    lab_webhook_wait $((hooks_before + 1)) 30 || tc_fail "repeat $i: no webhook"
    t_hook=$(tail -n 1 "$LAB_WEBHOOK_LOG" | lab_json - 'j["t"]')
    python3 -c "print('%.1f\t%.1f' % (($(cat "ev.$i.t") - $t0) * 1e3, ($t_hook - $t0) * 1e3))" \
        >>detect.tsv
    printf 'repeat %2d: untrusted after %7.1f ms, webhook after %7.1f ms\n' "$i" \
        $(tail -n 1 detect.tsv)
    # The operator accepts the new measurement: trusted again at the next round.
    $T policy create runtime --from-ima-log d1/ima.log -o rt.json >/dev/null
    $T policy update lab-runtime --file rt.json >/dev/null
    lab_node_wait d1 trusted 30 || tc_fail "repeat $i: d1 not trusted again"
    last=$(events "$last" 0 | lab_json - 'j["last"]')
done

python3 - "$interval_ms" detect.tsv <<'PY'
import statistics, sys
interval = float(sys.argv[1])
rows = [tuple(map(float, l.split())) for l in open(sys.argv[2]) if l.strip()]
goal = interval + 50
print("\ndetection latency over %d tampers, interval %.0f ms (goal <= %.0f ms):" % (len(rows), interval, goal))
for k, name in ((0, "tamper -> untrusted (event)"), (1, "tamper -> webhook received")):
    v = sorted(r[k] for r in rows)
    print("  %-30s min %7.1f  median %7.1f  max %7.1f ms   %s" % (
        name, v[0], statistics.median(v), v[-1],
        "goal met" if v[-1] <= goal else "goal MISSED by %.1f ms (max)" % (v[-1] - goal)))
PY
