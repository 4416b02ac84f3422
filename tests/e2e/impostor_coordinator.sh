#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Identities that cannot be borrowed. One CA signs every trustcloud certificate, so a chain check
# alone lets any enrolled node pose as the coordinator. Here a server holding an enrolled node's
# key (tests/lib/tls_impostor.py, it answers "all trusted") takes the coordinator's address with
#   real:   the certificate enrollment issued (CN node:good, SAN good.node.invalid, node EKU),
#   legacy: a node certificate for the same key naming the coordinator's address (SAN
#           127.0.0.1, what enrollment used to issue from agent_url), chain and host both valid,
#   nameonly: a CA leaf with CN "coordinator" and the address but without the coordinator EKU,
# and is refused, before any request is sent, by the CLI (node list, node show, subscriber add
# with its secret, node wait, events --follow, a tenant's vm list and vm evidence: exit 2, "not
# the coordinator" once, no polling on),
# by an enrolling agent, and by webhook
# delivery (the legacy node certificate on a subscriber URL). An agent refuses notices from
# anything but the coordinator role. Enrollment refuses an agent_url naming the coordinator,
# and a deleted node's certificate is refused by the coordinator, also after a restart.
. "$TC_SRC/tests/lib/lab.sh"
command -v curl >/dev/null || tc_skip "curl not installed"
cd "$LAB_DIR"
T=$TC_BIN
OID=2.25.277910308806770239075478762848318813545
CA_DIR=$LAB_DIR/coordinator/ca

lab_coordinator_start interval=500ms
lab_node_prepare good
lab_policies_from good
lab_node_run good
lab_node_wait good trusted 30 || tc_fail "good node not trusted"
openssl x509 -in "$CA_DIR/coordinator.pem" -noout -ext extendedKeyUsage | grep -q "$OID.1" ||
    tc_fail "ca init: no coordinator EKU"
port=${TC_COORDINATOR##*:}
gport=$(sed -n 's/^listen_port = //p' good/agent.conf)

# The impostor certificates, all for the enrolled node's own key, all from the real CA.
cp good/state/tls.crt real.pem
resign() { # NAME CN EKU SAN: NAME.pem for good's key, signed by the coordinator's CA
    openssl x509 -in good/state/tls.crt -noout -pubkey >good.pub
    printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\nsubjectAltName=%s\n' \
        "$3" "$4" >"$1.ext"
    openssl x509 -new -force_pubkey good.pub -subj "/CN=$2" -CA "$CA_DIR/ca.pem" \
        -CAkey "$CA_DIR/ca.key" -days 1 -extfile "$1.ext" -out "$1.pem" 2>/dev/null ||
        tc_fail "cannot make $1.pem"
    openssl verify -CAfile "$CA_DIR/ca.pem" "$1.pem" >/dev/null || tc_fail "$1.pem does not chain"
}
resign legacy node:good "serverAuth,clientAuth,$OID.2" "IP:127.0.0.1,DNS:good"
resign nameonly coordinator serverAuth,clientAuth "IP:127.0.0.1"

IMP_PID=
impostor_start() { # CERT PORT LOG: the impostor with good's key; IMP_PORT
    : >"$3"
    LAB_LOG=$3.out
    : >"$LAB_LOG"
    lab_spawn python3 -u "$TC_SRC/tests/lib/tls_impostor.py" "$2" "$1" good/state/tls.key \
        "$CA_DIR/ca.pem" "$3"
    IMP_PID=$LAB_LAST_PID
    for _ in $(seq 100); do grep -q '^port ' "$LAB_LOG" && break; sleep 0.05; done
    IMP_PORT=$(sed -n 's/^port //p' "$LAB_LOG")
    [ -n "$IMP_PORT" ] || { cat "$LAB_LOG"; tc_fail "impostor did not start"; }
}
impostor_stop() {
    kill -TERM -- "-$IMP_PID" 2>/dev/null || true
    wait "$IMP_PID" 2>/dev/null || true
}

"$T" ca issue --dir "$CA_DIR" --tenant acme --out-cert acme.pem --out-key acme.key >/dev/null

# ---- the coordinator is down; the impostor answers at its address -----------------------------
lab_coordinator_stop
SECRET=impostor-must-not-see-this-0123456789
for kind in real legacy nameonly; do
    impostor_start $kind.pem "$port" imp-$kind.log
    # The attack works at the TLS level without the role check: curl (chain and host only) gets
    # the forged answer from the legacy certificate.
    if [ $kind = legacy ]; then
        curl -sS --max-time 10 --cacert "$TC_CA" --cert "$TC_CERT" --key "$TC_KEY" \
            "$TC_COORDINATOR/v1/nodes" | grep -q '"trusted"' || tc_fail "legacy impostor not reachable"
        : >imp-$kind.log
    fi
    for cmd in "node list" "node show good" \
        "subscriber add --url https://127.0.0.1:9/hook --secret $SECRET" \
        "node wait good --state untrusted --timeout 20" "events --follow --timeout 20" \
        "vm list --cert acme.pem --key acme.key" \
        "vm evidence vm1 --cert acme.pem --key acme.key"; do
        rc=0
        # shellcheck disable=SC2086
        $T $cmd >cli.out 2>cli.err || rc=$?
        [ $rc = 2 ] || { cat cli.out cli.err; tc_fail "$kind: trustcloud $cmd exit $rc, expected 2"; }
        # Once: the commands that poll or follow stop at the first refusal.
        [ "$(grep -c "nothing was sent" cli.err)" = 1 ] || { cat cli.err; tc_fail "$kind: $cmd: no clear message"; }
        if [ $kind != real ]; then # the real certificate already fails the host name check
            grep -q "not the coordinator" cli.err || { cat cli.err; tc_fail "$kind: $cmd: message"; }
        fi
        grep -q trusted cli.out && tc_fail "$kind: forged answer printed"
    done
    [ -s imp-$kind.log ] && { cat imp-$kind.log; tc_fail "$kind: the CLI sent requests to the impostor"; }
    impostor_stop
done
tc_pass "CLI: node list, node show, subscriber add, node wait, events --follow, tenant vm list/evidence refuse an impostor (real, legacy node, CN-only certificates), exit 2, nothing sent"
echo "example: $(cat cli.err)"

# An agent enrolling meanwhile refuses the impostor (legacy: chain and host valid).
impostor_start legacy.pem "$port" imp-agent.log
lab_node_prepare late
lab_node_run late
rc=0
for _ in $(seq 200); do kill -0 "${LAB_AGENT_PID[late]}" 2>/dev/null || break; sleep 0.1; done
wait "${LAB_AGENT_PID[late]}" || rc=$?
LAB_AGENT_PID[late]=
[ $rc != 0 ] || tc_fail "late agent enrolled with the impostor"
grep -q "not the coordinator" late/agent.log || { tail late/agent.log; tc_fail "agent: no reason"; }
[ -s imp-agent.log ] && { cat imp-agent.log; tc_fail "the agent sent its enrollment to the impostor"; }
[ -f late/state/tls.crt ] && tc_fail "late agent stored a certificate"
impostor_stop
tc_pass "agent: enrollment refuses the impostor before sending (exit $rc)"

# Notices (and quote requests) reach an agent only from the coordinator role.
for kind in legacy nameonly; do
    code=$(curl -s -o notice.out -w '%{http_code}' --max-time 10 --cacert "$TC_CA" \
        --cert $kind.pem --key good/state/tls.key --resolve "good.node.invalid:$gport:127.0.0.1" \
        -H 'Content-Type: application/json' --data '{"node_id":"x","state":"untrusted"}' \
        "https://good.node.invalid:$gport/v1/notice")
    [ "$code" = 403 ] && grep -q agent.forbidden notice.out ||
        tc_fail "$kind certificate sending a notice: $code $(cat notice.out)"
done
tc_pass "agent: notices from a node certificate or a CN-only \"coordinator\" are refused (403)"

# ---- the real coordinator again --------------------------------------------------------------
lab_coordinator_start
# Enrollment refuses an agent_url naming the coordinator (its address and port).
lab_node_prepare self
echo "agent_url = $TC_COORDINATOR" >>self/agent.conf
lab_node_run self
rc=0
for _ in $(seq 200); do kill -0 "${LAB_AGENT_PID[self]}" 2>/dev/null || break; sleep 0.1; done
wait "${LAB_AGENT_PID[self]}" || rc=$?
LAB_AGENT_PID[self]=
[ $rc = 3 ] || { tail self/agent.log; tc_fail "agent_url = coordinator: exit $rc, expected 3"; }
grep -q enroll.agent_url_coordinator self/agent.log || { tail self/agent.log; tc_fail "check name"; }
tc_pass "enrollment with agent_url naming the coordinator refused (enroll.agent_url_coordinator)"

# Webhooks over https: a receiver with a node certificate gets nothing, a receiver with a
# server leaf of no trustcloud role gets the signed event.
"$T" ca issue --dir "$CA_DIR" --cn hooks --server --san IP:127.0.0.1 --out-cert hook.pem \
    --out-key hook.key >/dev/null
impostor_start legacy.pem 0 hook-node.log
node_hook=https://127.0.0.1:$IMP_PORT/hook
NODE_HOOK_PID=$IMP_PID
# The same server with a certificate of no trustcloud role: the control.
LAB_LOG=hook-ok.log.out
: >hook-ok.log
: >"$LAB_LOG"
lab_spawn python3 -u "$TC_SRC/tests/lib/tls_impostor.py" 0 hook.pem hook.key "$CA_DIR/ca.pem" hook-ok.log
OK_HOOK_PID=$LAB_LAST_PID
for _ in $(seq 100); do grep -q '^port ' hook-ok.log.out && break; sleep 0.05; done
ok_hook=https://127.0.0.1:$(sed -n 's/^port //p' hook-ok.log.out)/hook
"$T" subscriber add --url "$node_hook" --secret "$SECRET" >/dev/null || tc_fail "subscriber add (node)"
"$T" subscriber add --url "$ok_hook" --secret "$SECRET" >/dev/null || tc_fail "subscriber add (ok)"
lab_node_tamper good
lab_node_wait good untrusted 30 || tc_fail "good not untrusted"
for _ in $(seq 100); do grep -q 'node_id.*good' hook-ok.log && break; sleep 0.1; done
grep -q 'node_id.*good' hook-ok.log || { cat hook-ok.log; tc_fail "the legitimate receiver got no event"; }
sleep 1
[ -s hook-node.log ] && { cat hook-node.log; tc_fail "a webhook was delivered to a node certificate"; }
grep -q "refused before sending: the server presents a node certificate" "$LAB_DIR/coordinator/coordinator.log" ||
    tc_fail "coordinator did not log the webhook refusal"
IMP_PID=$NODE_HOOK_PID impostor_stop
IMP_PID=$OK_HOOK_PID impostor_stop
tc_pass "webhook over https: a node certificate receiver is refused before sending, a plain server leaf gets the event"

# A deleted node's certificate stops working, also after a restart.
events() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 10 --cacert "$TC_CA" --cert real.pem \
        --key good/state/tls.key "$TC_COORDINATOR/v1/events?since=0"
}
[ "$(events)" = 200 ] || tc_fail "enrolled node following events: $(events)"
"$T" node delete good >/dev/null || tc_fail "node delete"
[ "$(events)" = 403 ] || tc_fail "deleted node's certificate: $(events)"
lab_coordinator_restart
[ "$(events)" = 403 ] || tc_fail "deleted node's certificate after a restart: $(events)"
tc_pass "a deleted node's certificate is refused by the coordinator, also after a restart"
