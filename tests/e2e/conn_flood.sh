#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Connection floods do not starve anyone. 1,200 connections (more than the coordinator's 1,024
# slots) from 127.0.0.2..127.0.0.9 that never finish a request (a third idle before the TLS
# handshake, the others trickling a request head one byte a second, each reopened a second after
# the server closes it), for 25 s:
#  1. against the coordinator: operators (127.0.0.1, client certificate) keep getting answers,
#     a new node enrolls (anonymous routes) and becomes trusted, the attested node misses no round;
#  2. against an agent (all 1,200 idle: no TLS handshake ever starts, the agent's 64 slots are
#     what they compete for): the coordinator keeps attesting it on time, also after a restart of
#     the coordinator mid-flood (a new connection to the agent), operators are still served.
# The flood's counts show the limits at work (at most 16 unauthenticated connections held longer
# than a second per address, refusals at once, closes at the deadlines). Operator latency
# (`trustcloud node list`, process start included) is printed without and with the flood.
. "$TC_SRC/tests/lib/lab.sh"
cd "$LAB_DIR"
T=$TC_BIN
FLOOD=$TC_SRC/tests/lib/conn_flood.py
FLOOD_SECONDS=25

python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.9", 0))' 2>/dev/null ||
    tc_skip "cannot bind 127.0.0.9 (loopback is not 127.0.0.0/8 here)"

lab_coordinator_start interval=1s
lab_node_start f1
lab_policies_from f1
lab_node_wait f1 trusted 30 || tc_fail "f1 not trusted"
lab_node_prepare f2 # TPM provisioned now, the agent enrolls during the flood

# op_latency N OUT: N operator requests, one per 0.2 s; each one's milliseconds in OUT.
op_latency() {
    local i t0 t1
    : >"$2"
    for i in $(seq "$1"); do
        t0=$(date +%s%N)
        $T node list >/dev/null || { echo "node list failed (request $i)" >&2; return 1; }
        t1=$(date +%s%N)
        echo $(((t1 - t0) / 1000000)) >>"$2"
        sleep 0.2
    done
}
summary() { sort -n "$1" | awk '{a[NR] = $1} END {printf "p50 %d ms, p90 %d ms, max %d ms (n=%d)",
    a[int((NR + 1) / 2)], a[int(NR * 0.9 + 0.5)], a[NR], NR}'; }

# flood_start PORT NAME MODE: the flood in the background, waits until every connection was tried.
flood_start() {
    rm -f "$2.ready"
    python3 "$FLOOD" --port "$1" --sources 127.0.0.2-127.0.0.9 --count 1200 \
        --seconds "$FLOOD_SECONDS" --mode "$3" --ready "$2.ready" >"$2.json" 2>"$2.err" &
    FLOOD_PID=$!
    TC_PIDS+=("$FLOOD_PID")
    for _ in $(seq 150); do [ -s "$2.ready" ] && break; sleep 0.1; done
    [ -s "$2.ready" ] || { cat "$2.err" >&2; tc_fail "flood $2 did not start"; }
    FLOOD_T0=$(date +%s%3N)
}
flood_wait() { # NAME: until the flood ended by itself; prints its counts
    wait "$FLOOD_PID" || { cat "$1.err" >&2; tc_fail "flood $1 failed"; }
    FLOOD_T1=$(date +%s%3N)
    [ -s "$1.json" ] || tc_fail "flood $1 printed no counts"
    echo "flood $1: $(cat "$1.json")"
}

# rounds_on_time NODE FROM_MS TO_MS: every round of NODE in the window trusted, none missed
# (consecutive rounds at most 2.5 intervals apart, as many as the window holds).
rounds_on_time() {
    $T node history "$1" --limit 200 --json >"hist-$1.json"
    python3 - "hist-$1.json" "$2" "$3" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
lo, hi = int(sys.argv[2]), int(sys.argv[3])
rows = sorted((r for r in j["results"] if lo <= r["ts"] <= hi), key=lambda r: r["ts"])
bad = [r for r in rows if r["state"] != "trusted" or r["reason"]]
ts = [r["ts"] for r in rows]
gap = max([b - a for a, b in zip(ts, ts[1:])] or [hi - lo])
need = (hi - lo) / 1000.0 * 0.8 - 1  # interval 1 s
print("%d rounds in %.1f s, largest gap %d ms, %d not trusted" % (len(rows), (hi - lo) / 1000.0,
                                                                 gap, len(bad)))
sys.exit(0 if not bad and gap <= 2500 and len(rows) >= need else 1)
PY
}

op_latency 20 lat-quiet.txt || tc_fail "operator requests failed without a flood"
echo "operator latency, no flood: $(summary lat-quiet.txt)"

# ---- 1. the coordinator ----
cport=${TC_COORDINATOR##*:}
flood_start "$cport" coord mixed
op_latency 20 lat-coord.txt || tc_fail "operator requests failed during the coordinator flood"
echo "operator latency, 1,200-connection flood on the coordinator: $(summary lat-coord.txt)"
t_enroll=$(date +%s%N)
lab_node_run f2
lab_node_wait f2 trusted 20 || { tail -20 f2/agent.log >&2; tc_fail "f2 did not enroll during the flood"; }
echo "f2 enrolled and trusted during the flood in $((($(date +%s%N) - t_enroll) / 1000000)) ms"
flood_wait coord
rounds_on_time f1 "$FLOOD_T0" "$FLOOD_T1" || tc_fail "f1 missed rounds during the coordinator flood"
lab_json coord.json 'j["peak_held"] <= 8 * 16 and j["refused_fast"] > 0 and j["closed_later"] > 0' |
    grep -qx True || tc_fail "the flood was not limited as expected: $(cat coord.json)"
grep -q "connection limits since the last report" coordinator/coordinator.log ||
    tc_fail "the coordinator logged no refusals"
tc_pass "coordinator under a 1,200-connection flood: operators served, f2 enrolled, f1 on time"

# ---- 2. an agent ----
aport=$(sed -n 's/^listen_port = //p' f1/agent.conf)
flood_start "$aport" agent idle
op_latency 10 lat-agent.txt || tc_fail "operator requests failed during the agent flood"
# A restarted coordinator has no connection to the agent yet: it must get one through the flood.
lab_coordinator_restart
t_restart=$(date +%s%3N)
op_latency 5 lat-agent2.txt || tc_fail "operator requests failed after the restart"
cat lat-agent2.txt >>lat-agent.txt
flood_wait agent
rounds_on_time f1 "$FLOOD_T0" "$t_restart" || tc_fail "f1 missed rounds during the flood on its agent"
rounds_on_time f1 $((t_restart + 3000)) "$FLOOD_T1" ||
    tc_fail "the restarted coordinator did not attest f1 on time through the flood"
[ "$(lab_node_field f1 'j["state"]')" = trusted ] || tc_fail "f1 not trusted after the flood"
lab_json agent.json 'j["peak_held"] <= 8 * 16 and j["refused_fast"] > 0' | grep -qx True ||
    tc_fail "the agent's flood was not limited as expected: $(cat agent.json)"
echo "operator latency, flood on an agent: $(summary lat-agent.txt)"
tc_pass "agent under a 1,200-connection flood: attested on time"
