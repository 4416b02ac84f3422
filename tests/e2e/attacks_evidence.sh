#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Lying evidence, at the protocol level: a malicious agent (tests/lib/evil_agent.py) holds an
# enrolled node's real TLS identity and relays the coordinator's challenges to the node's real
# agent and swtpm, then alters the real answer. Each lie must turn the node untrusted with the
# failed check named, and once the answers are honest again the node must be trusted again (the
# lie corrupted no state: IMA replay point, boot log, counters). Also: another node's TPM
# answering (relay), a replayed quote, a wrong nonce, PCRs that do not match the boot log or the
# quote, truncated / reordered / rolled-back IMA lists, an unknown hash algorithm, and garbage
# or oversized answers.
. "$TC_SRC/tests/lib/lab.sh"
cd "$LAB_DIR"
T=$TC_BIN
other_log=$TC_FIXTURES/eventlog/event-arch-linux.bin
[ -f "$other_log" ] || tc_skip "fixtures not available"

lab_coordinator_start interval=500ms unreachable_after=3 request_timeout=2s
lab_node_prepare v
lab_node_prepare o
lab_policies_from v
# The coordinator will call the malicious agent's port; the real agent listens elsewhere.
evil_port=$(lab_free_port)
echo "agent_url = https://127.0.0.1:$evil_port" >>v/agent.conf
echo evlog >mode
lab_node_run v
lab_node_run o
for _ in $(seq 100); do [ -s v/state/tls.crt ] && break; sleep 0.05; done
[ -s v/state/tls.crt ] || tc_fail "v did not enroll"
lab_node_wait o trusted 20 || tc_fail "o not trusted"
real_v=https://127.0.0.1:$(sed -n 's/^listen_port = //p' v/agent.conf)
real_o=https://127.0.0.1:$(sed -n 's/^listen_port = //p' o/agent.conf)
ca=coordinator/ca
LAB_LOG=$LAB_DIR/evil.log
lab_spawn python3 -u "$TC_SRC/tests/lib/evil_agent.py" "$evil_port" v/state/tls.crt \
    v/state/tls.key "$ca/ca.pem" "$ca/coordinator.pem" "$ca/coordinator.key" "$real_v" "$real_o" \
    "$LAB_DIR/mode" "$other_log"
for _ in $(seq 100); do grep -q '^port ' evil.log && break; sleep 0.05; done
grep -q '^port ' evil.log || { cat evil.log; tc_fail "malicious agent did not start"; }

reason() { lab_node_field v 'j["reason"]["check"] if j["reason"] else ""'; }
# attack MODE CHECK_REGEX WHAT [STATES]: the lie must make v untrusted (or one of STATES) with
# CHECK_REGEX; honest answers afterwards must make it trusted again. With GROW=N, N new IMA
# entries are measured once the lie is on (an IMA lie needs entries the coordinator has not seen:
# grown before, an honest round could take them first).
attack() {
    local m=$1 want=$2 what=$3 states=${4:-untrusted} got st detail
    echo "$m" >mode
    for _ in $(seq "${GROW:-0}"); do lab_node_grow v; done
    lab_node_wait v "$states" 6 || { tail -3 evil.log; tc_fail "$what: v not untrusted ($(reason))"; }
    got=$(reason)
    [[ $got =~ ^($want)$ ]] || { lab_node_field v 'j["reason"]'; tc_fail "$what: check $got, expected $want"; }
    detail=$(lab_node_field v 'j["reason"]["detail"]')
    st=$(lab_node_field v 'j["state"]')
    echo pass >mode
    lab_node_wait v trusted 6 || { lab_node_field v 'j["reason"]'; tc_fail "$what: v not trusted again after honest answers"; }
    tc_pass "$what: $st ($got: ${detail:0:90}), trusted again when honest"
}

# 1. From the first challenge on, the boot log of another machine: it cannot match the PCRs.
lab_node_wait v untrusted 10 || tc_fail "foreign boot log not rejected"
got=$(reason)
[[ $got =~ ^boot\. ]] || tc_fail "foreign boot log: check $got"
tc_pass "PCRs that do not match the (foreign) boot log: untrusted ($got)"
echo pass >mode
lab_node_wait v trusted 10 || tc_fail "v not trusted with its real evidence"
tc_pass "v trusted with its real evidence through the relay"

sleep 0.6 # let `pass` remember a real answer
attack replay 'quote\.nonce|quote\.(clock|counter|replay).*' "replayed quote"
attack nonce 'quote\.nonce' "quote over another nonce"
attack relay 'quote\.(signature|ak|key).*' "quote signed by another node's TPM"
attack pcrs 'quote\.pcr.*' "PCR values that do not match the quote"
GROW=3 attack truncate 'ima\..*' "truncated IMA list"
GROW=4 attack reorder 'ima\..*' "reordered IMA list"
lab_node_grow v
attack rollback 'ima\..*|quote\..*' "IMA list rolled back to an older, shorter one"
attack alg '(quote|agent|pcrs?)\..*' "unknown hash algorithm"
attack garbage 'agent\..*' "answer that is not JSON"
# Above the answer cap the coordinator drops the connection: a miss, so unreachable (not trusted).
attack huge 'agent\..*' "40 MiB answer" untrusted,unreachable

# No state was corrupted: everything the node really measured is accounted for.
sleep 0.6
entries=$(wc -l <v/ima.log)
[ "$(lab_node_field v 'j["ima_entries"]')" = "$entries" ] || tc_fail "IMA replay point is off"
[ "$(lab_node_field o 'j["state"]')" = trusted ] || tc_fail "o was affected"
kill -0 "$LAB_COORD_PID" || tc_fail "coordinator died"
$T node history v --limit 200 --json | lab_json - '[r["state"] for r in j["results"] if r["changed"]].count("untrusted")' >n_untrusted
[ "$(cat n_untrusted)" -ge 10 ] || tc_fail "history lost state changes ($(cat n_untrusted))"
tc_pass "IMA replay point = $entries entries, other node untouched, $(cat n_untrusted) untrusted periods in the history"
