#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The whole chain with real daemons: a coordinator and two agents on swtpm nodes provisioned
# like real TPMs (EK certificates from a manufacturer CA via swtpm_setup), each node carrying a
# real boot log and an IMA list. Both enroll (one starts before the coordinator and retries)
# and become trusted; a restarted agent keeps its identity; a second TPM claiming an enrolled
# node id is refused (exit 3); a measurement outside the runtime policy makes one node
# untrusted and the other agent receives the revocation notice.
. "$TC_SRC/tests/lib/common.sh"
. "$TC_SRC/tests/lib/swtpm_setup.sh"
COORD="$TC_BUILD/trustcloud-coordinator"
AGENT="$TC_BUILD/trustcloud-agent"
[ -x "$COORD" ] || tc_skip "trustcloud-coordinator not built"
[ -x "$AGENT" ] || tc_skip "trustcloud-agent not built"
command -v swtpm_setup >/dev/null || tc_skip "swtpm_setup not installed"
command -v curl >/dev/null || tc_skip "curl not installed"
boot=$TC_FIXTURES/eventlog/event-gce-ubuntu-2104-log.bin
[ -f "$boot" ] || tc_skip "fixtures not available"
cd "$TC_TMP"

# Manufacturer CAs: every node's swtpm_setup has its own local CA (root + intermediate).
mkdir ekca
for n in a b c; do
    tc_start_swtpm_setup "$n"
    cp "$TC_SWTPM_CA_DIR/issuercert.pem" "ekca/$n-issuer.pem"
    cp "$TC_SWTPM_CA_DIR/swtpm-localca-rootca-cert.pem" "ekca/$n-root.pem"
done
# Node c's manufacturer is unknown to the coordinator.
rm ekca/c-*

# Each node: the boot log replayed into its PCRs, an IMA list of 5 measurements.
for n in a b c; do
    var=TC_TCTI_$n
    tcti=${!var}
    mkdir "node-$n"
    cp "$boot" "node-$n/eventlog.bin"
    "$TC_BIN" lab boot --tcti "$tcti" --eventlog "$boot" >/dev/null
    "$TC_BIN" lab ima-start --tcti "$tcti" --log "node-$n/ima.log"
    for i in 1 2 3 4; do
        "$TC_BIN" lab measure --tcti "$tcti" --log "node-$n/ima.log" --path "/usr/bin/tool$i" \
            --content "tool $i"
    done
done

"$TC_BIN" ca init --dir ca >/dev/null
"$TC_BIN" ca issue --dir ca --operator alice --out-cert op.pem --out-key op.key >/dev/null
cport=$(tc_free_port_pair)
cat >coord.conf <<EOF
[coordinator]
listen = 127.0.0.1
port = $cport
db = sqlite:$TC_TMP/coord.db
ca_dir = ca
ek_ca_bundle = ekca
interval = 500ms
unreachable_after = 3
log_level = info
EOF
op=(--coordinator "https://127.0.0.1:$cport" --cert op.pem --key op.key --ca ca/ca.pem)

agent_conf() { # NODE_LETTER NODE_ID
    local var=TC_TCTI_$1
    local port
    port=$(tc_free_port_pair)
    cat >"agent-$2.conf" <<EOF
[agent]
node_id = $2
tcti = ${!var}
state_dir = node-$1/state
listen_address = 127.0.0.1
listen_port = $port
coordinator_url = https://127.0.0.1:$cport
ca_file = ca/ca.pem
eventlog_path = node-$1/eventlog.bin
ima_path = node-$1/ima.log
ek_alg = rsa
enroll_backoff_max = 1s
log_level = info
EOF
}
start_agent() { # NODE_ID: background, pid in agent_pid_<ID>
    "$AGENT" -c "agent-$1.conf" >>"agent-$1.log" 2>&1 &
    TC_PIDS+=($!)
    printf -v "agent_pid_$1" '%s' $!
}
start_coord() {
    "$COORD" -c coord.conf 2>>coord.log &
    coord_pid=$!
    TC_PIDS+=("$coord_pid")
    for _ in $(seq 200); do
        grep -q "listening on" coord.log 2>/dev/null && return 0
        kill -0 "$coord_pid" 2>/dev/null || { cat coord.log; tc_fail "coordinator exited"; }
        sleep 0.05
    done
    cat coord.log
    tc_fail "coordinator did not start"
}
state_of() { # NODE_ID
    "$TC_BIN" node show "$1" --json "${op[@]}" 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin).get("state",""))' 2>/dev/null || true
}
wait_state() { # NODE_ID STATE [SECONDS]
    local s=""
    for _ in $(seq $((${3:-30} * 5))); do
        s=$(state_of "$1")
        [ "$s" = "$2" ] && return 0
        sleep 0.2
    done
    "$TC_BIN" node show "$1" --json "${op[@]}" || true
    tail -20 coord.log "agent-$1.log"
    tc_fail "node $1 is '$s', expected $2"
}

agent_conf a n1
agent_conf b n2
agent_conf c n3
# n2 starts first: the coordinator is not there yet, the agent retries with backoff.
start_agent n2
sleep 1.5
grep -q "unreachable" agent-n2.log || { cat agent-n2.log; tc_fail "n2 did not notice the coordinator is down"; }
start_coord
start_agent n1
wait_state n1 trusted
wait_state n2 trusted
tc_pass "two swtpm nodes with manufacturer EK certificates enroll (one after retrying) and become trusted"

# The TPM's identity survives a restart: no new enrollment, still trusted.
kill "$agent_pid_n1"
wait "$agent_pid_n1" || tc_fail "n1 did not stop cleanly"
start_agent n1
for _ in $(seq 100); do grep -q "already enrolled" agent-n1.log && break; sleep 0.05; done
grep -q "already enrolled" agent-n1.log || tc_fail "restarted n1 did not reuse its certificate"
sleep 1.5
wait_state n1 trusted
tc_pass "restarted agent keeps its identity and stays trusted"

# Another TPM claiming n1: refused, with exit status 3.
sed 's/^node_id = n3/node_id = n1/' agent-n3.conf >agent-n1-impostor.conf
rc=0
"$AGENT" -c agent-n1-impostor.conf --enroll-only >impostor.log 2>&1 || rc=$?
[ "$rc" = 3 ] || { cat impostor.log; tc_fail "impostor for n1: exit $rc, expected 3"; }
grep -q "refused.*already enrolled" impostor.log || { cat impostor.log; tc_fail "refusal reason not reported"; }
# A TPM from a manufacturer the coordinator does not know: refused as well.
rc=0
"$AGENT" -c agent-n3.conf --enroll-only >n3.log 2>&1 || rc=$?
[ "$rc" = 3 ] || { cat n3.log; tc_fail "unknown manufacturer: exit $rc, expected 3"; }
grep -q "refused.*pki.chain" n3.log || { cat n3.log; tc_fail "EK chain refusal not reported"; }
tc_pass "a second TPM claiming n1 and an EK from an unknown manufacturer are refused (exit 3)"

# A runtime policy from n1's known-good list; then a measurement outside it.
"$TC_BIN" policy create runtime --from-ima-log node-a/ima.log -o rt.json
"$TC_BIN" policy add --name rt-n1 --kind runtime --file rt.json "${op[@]}" >/dev/null
"$TC_BIN" policy assign rt-n1 --node n1 "${op[@]}" >/dev/null
sleep 1.5
wait_state n1 trusted
"$TC_BIN" lab measure --tcti "$TC_TCTI_a" --log node-a/ima.log --path /tmp/backdoor --content evil
wait_state n1 untrusted
wait_state n2 trusted
# The node's certificate names the node (n2.node.invalid), not the address it listens on.
n2_port=$(sed -n 's/^listen_port = //p' agent-n2.conf)
n2_url="https://n2.node.invalid:$n2_port"
for _ in $(seq 50); do
    peers=$(curl -sS --max-time 10 --cacert ca/ca.pem --cert op.pem --key op.key \
        --resolve "n2.node.invalid:$n2_port:127.0.0.1" "$n2_url/v1/peers")
    echo "$peers" | grep -q '"n1"' && break
    sleep 0.2
done
echo "$peers" | python3 -c 'import json,sys; r=json.load(sys.stdin)["revoked"]
assert any(e["node_id"]=="n1" and e["state"]=="untrusted" for e in r), r' ||
    { echo "$peers"; tail -20 agent-n2.log coord.log; tc_fail "n2 was not told that n1 is untrusted"; }
tc_pass "out-of-policy measurement: n1 untrusted, n2 still trusted and notified"
