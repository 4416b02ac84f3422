#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Enrollment floods cannot keep honest nodes out (docs/protocol.md, "Enrollment limits"). The
# EK public key, its certificate and an AK public key are public data; a flood replays them
# under made-up node ids and never activates. Each phase runs the flood (bounded, loopback)
# while a real agent on its own swtpm enrolls, and the agent must become trusted during it:
#  1. one TPM's public data under 4,200 made-up ids from one address (the honest node's own
#     address, 127.0.0.1), half of them with the EK's public area varied outside its key: one
#     pending enrollment for that EK, the rest `enroll.ek_pending`;
#  2. five real TPMs' public data from 127.0.0.2: at most enroll_per_address (4 here) pending,
#     the rest `enroll.address_busy` / `enroll.ek_pending`;
#  3. the honest node's own EK replayed from 127.0.0.3 before and while it enrolls: the
#     replayed enrollment is held for enroll_ek_hold, then the honest node's replaces it, and
#     the flood cannot evict the honest node's enrollment while it activates.
. "$TC_SRC/tests/lib/lab.sh"
command -v tpm2_createek >/dev/null || tc_skip "tpm2-tools not installed"
python3 -c 'import ssl, http.client' 2>/dev/null || tc_skip "python3 ssl missing"
python3 - <<'PY' || tc_skip "cannot bind 127.0.0.2/127.0.0.3"
import socket
for ip in ("127.0.0.2", "127.0.0.3"):
    s = socket.socket(); s.bind((ip, 0)); s.close()
PY
cd "$LAB_DIR"
T=$TC_BIN
FLOOD=$TC_SRC/tests/lib/enroll_flood.py

lab_coordinator_start interval=500ms enroll_per_address=4 enroll_ek_hold=3s

# export_tpm DIR NAME: the public data of node NAME's (already started) swtpm into DIR.
export_tpm() {
    local dir=$1 tcti
    tcti=$(lab_tcti "$2")
    mkdir -p "$dir"
    (
        cd "$dir"
        tpm2_createek -T "$tcti" -c ek.ctx -G rsa -u ek.pub >/dev/null
        tpm2_nvread -T "$tcti" 0x01c00002 -o ek.der 2>/dev/null
        "$T" tpm ak create --tcti "$tcti" --ctx ak.ctx --alg ecc --ek-alg rsa \
            --out-tpm2b ak.pub >/dev/null
        openssl ecparam -name prime256v1 -genkey -noout -out tls.key 2>/dev/null
        openssl req -new -key tls.key -subj "/CN=flood" -out tls.csr 2>/dev/null
    ) || tc_fail "cannot export the public data of $2"
}
# A TPM that is only a source of public data (no agent).
source_tpm() { # NAME
    mkdir -p "$LAB_DIR/$1"
    lab_tpm_provision "$1" >/dev/null
    lab_tpm_start "$1"
    export_tpm "$LAB_DIR/pub-$1" "$1"
}
flood_start() { # OUT SOURCE_IP [flood options] TPM_DIR...
    local out=$1 src=$2
    shift 2
    rm -f "$out" "$out.stop"
    python3 "$FLOOD" "$TC_COORDINATOR" "$TC_CA" "$src" "$out" --stop-file "$out.stop" "$@" &
    FLOOD_PID=$!
    TC_PIDS+=("$FLOOD_PID")
}
flood_stop() { # OUT: stops the flood (if still running), prints its summary
    local running=0
    kill -0 "$FLOOD_PID" 2>/dev/null && running=1
    touch "$1.stop"
    wait "$FLOOD_PID" || tc_fail "flood failed"
    FLOOD_RUNNING=$running
    cat "$1"
    echo
}
flood_finish() { # OUT: lets the flood end by itself (its --count and --min-seconds)
    local running=0
    kill -0 "$FLOOD_PID" 2>/dev/null && running=1
    wait "$FLOOD_PID" || tc_fail "flood failed"
    FLOOD_RUNNING=$running
    cat "$1"
    echo
}
count() { lab_json "$1" "sum(v for k, v in j['by_status'].items() if k.startswith('$2'))"; }
others() { # OUT ALLOWED_PREFIX...: requests answered otherwise
    python3 - "$@" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
print(sum(v for k, v in j["by_status"].items() if not any(k.startswith(p) for p in sys.argv[2:])))
PY
}

# ---- 1. one TPM's public data, 4,200 made-up ids, one address --------------------------------
source_tpm src1
# The same EK key in a public area varied where the EK certificate does not look (one byte of
# authPolicy): still the same EK, one pending enrollment for both.
cp -r "$LAB_DIR/pub-src1" "$LAB_DIR/pub-src1-var"
python3 - "$LAB_DIR/pub-src1-var/ek.pub" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
# TPM2B_PUBLIC: size, type, nameAlg, objectAttributes (4), authPolicy size (2) and bytes
b[12] ^= 0x01
open(sys.argv[1], "wb").write(b)
PY
lab_node_prepare honest1
lab_policies_from honest1
flood_start f1.json 127.0.0.1 --count 4200 --min-seconds 8 "$LAB_DIR/pub-src1" "$LAB_DIR/pub-src1-var"
sleep 1
lab_node_run honest1
lab_node_wait honest1 trusted 60 || { tail honest1/agent.log; cat f1.json 2>/dev/null; tc_fail "honest1 not trusted during the flood"; }
# The flood runs its course (4,200 requests and 8 s at least), however fast honest1 was.
flood_finish f1.json
[ "$FLOOD_RUNNING" = 1 ] || tc_fail "the flood ended before honest1 was trusted"
sent=$(lab_json f1.json 'j["sent"]')
[ "$sent" -ge 1000 ] || tc_fail "flood 1 sent only $sent requests"
[ "$(count f1.json 200)" -le 1 ] || tc_fail "flood 1: more than one pending enrollment for one EK (public area varied or not)"
[ "$(others f1.json 200 '503 enroll.ek_pending')" = 0 ] || tc_fail "flood 1: other answers"
tc_pass "flood 1: $sent enrollments replaying one TPM (half with a varied EK public area) under made-up ids from 127.0.0.1 in $(lab_json f1.json 'j["seconds"]') s: $(count f1.json 200) pending, $(count f1.json '503 enroll.ek_pending') enroll.ek_pending; honest1 (same address) enrolled and trusted meanwhile"

# ---- 2. several real TPMs' public data from one address ---------------------------------------
dirs=()
for i in 1 2 3 4 5; do
    source_tpm "src2-$i"
    dirs+=("$LAB_DIR/pub-src2-$i")
done
lab_node_prepare honest2
flood_start f2.json 127.0.0.2 --count 3000 --min-seconds 6 "${dirs[@]}"
sleep 1
lab_node_run honest2
lab_node_wait honest2 trusted 60 || { tail honest2/agent.log; tc_fail "honest2 not trusted during the flood"; }
flood_stop f2.json
[ "$FLOOD_RUNNING" = 1 ] || tc_fail "flood 2 ended before honest2 was trusted"
ok=$(count f2.json 200)
[ "$ok" -le 4 ] || tc_fail "flood 2: $ok pending enrollments from one address (limit 4)"
[ "$(count f2.json '503 enroll.address_busy')" -gt 0 ] || tc_fail "flood 2: the address limit never applied"
[ "$(others f2.json 200 '503 enroll.address_busy' '503 enroll.ek_pending')" = 0 ] || tc_fail "flood 2: other answers"
tc_pass "flood 2: $(lab_json f2.json 'j["sent"]') enrollments of 5 real TPMs from 127.0.0.2: $ok pending (enroll_per_address = 4), $(count f2.json '503 enroll.address_busy') enroll.address_busy; honest2 trusted meanwhile"

# ---- 3. the honest node's own EK replayed from another address ---------------------------------
lab_node_prepare honest3
export_tpm "$LAB_DIR/pub-honest3" honest3
flood_start f3.json 127.0.0.3 --count 100000 --max-seconds 40 "$LAB_DIR/pub-honest3"
sleep 1
t0=$(date +%s.%N)
lab_node_run honest3
lab_node_wait honest3 trusted 40 || { tail honest3/agent.log; tc_fail "honest3 not trusted while its EK is replayed"; }
t1=$(date +%s.%N)
flood_stop f3.json
[ "$FLOOD_RUNNING" = 1 ] || tc_fail "flood 3 ended before honest3 was trusted"
[ "$(count f3.json 200)" -le 2 ] || tc_fail "flood 3: the replay renewed its pending enrollment"
[ "$(others f3.json 200 '503 enroll.ek_pending')" = 0 ] || tc_fail "flood 3: other answers"
grep -q "enroll.ek_pending" honest3/agent.log || grep -q "HTTP 503" honest3/agent.log ||
    tc_fail "honest3 was never held back by the replayed enrollment (the test proves nothing)"
if grep -q "enroll.unknown" honest3/agent.log; then tc_fail "honest3's enrollment was evicted"; fi
tc_pass "flood 3: honest3's own EK replayed $(lab_json f3.json 'j["sent"]') times from 127.0.0.3: honest3 held back for the 3 s hold, then enrolled and trusted after $(python3 -c "print(round($t1 - $t0, 1))") s; its enrollment was never evicted"

# The coordinator still serves and knows exactly the honest nodes.
[ "$($T node list --json | lab_json - '" ".join(sorted(n["id"] for n in j["nodes"]))')" = "honest1 honest2 honest3" ] ||
    tc_fail "nodes: $($T node list)"
tc_pass "after three floods the coordinator serves and holds exactly the three honest nodes"
