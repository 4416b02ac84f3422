#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Enrollment against the real daemon with a real (software) TPM driven by tpm2-tools, as an
# agent would do it: EK + AK, POST /v1/enroll, TPM2_ActivateCredential of the coordinator's
# credential, a quote over SHA-256(nonce || SHA-256(CSR key)), POST .../activate -> a node
# certificate (CN node:ID, the node EKU, SAN ID.node.invalid: never the address the node chose).
# Refusals: an agent_url naming the coordinator, no EK certificate without
# allow_ek_without_cert, wrong secret, replayed activation, quote not bound to the CSR key.
# Then the engine challenges the (absent) agent and the node becomes unreachable; once the
# node is deleted its certificate is refused, also after a restart.
. "$TC_SRC/tests/lib/common.sh"
COORD="$TC_BUILD/trustcloud-coordinator"
[ -x "$COORD" ] || tc_skip "trustcloud-coordinator not built"
command -v tpm2_activatecredential >/dev/null || tc_skip "tpm2-tools not installed"
command -v curl >/dev/null || tc_skip "curl not installed"
cd "$TC_TMP"
tc_start_swtpm enr
export TPM2TOOLS_TCTI=$TC_TCTI_enr

"$TC_BIN" ca init --dir ca --san DNS:coord.example >/dev/null
"$TC_BIN" ca issue --dir ca --operator op --out-cert op.pem --out-key op.key >/dev/null

start_coord() { # extra config lines on stdin
    { printf '[coordinator]\nport = 0\ndb = sqlite:%s/c.db\nca_dir = ca\n' "$TC_TMP"
      printf 'interval = 300ms\nrequest_timeout = 500ms\nunreachable_after = 2\n'; cat; } >c.conf
    : >coord.log # exists before the background job opens it (the loop below reads it at once)
    "$COORD" -c c.conf 2>coord.log &
    COORD_PID=$!
    TC_PIDS+=("$COORD_PID")
    PORT=
    for _ in $(seq 100); do
        PORT=$(sed -n 's/^trustcloud-coordinator: listening on 127.0.0.1:\([0-9]*\)$/\1/p' coord.log)
        [ -n "$PORT" ] && break
        sleep 0.05
    done
    [ -n "$PORT" ] || { cat coord.log; tc_fail "coordinator did not start"; }
}
stop_coord() { kill -TERM "$COORD_PID"; wait "$COORD_PID" || { cat coord.log; tc_fail "coordinator exit status"; }; }
post() { # PATH JSONFILE -> prints code, body in resp.json
    curl -sS --cacert ca/ca.pem -H 'Content-Type: application/json' --data-binary @"$2" \
        -o resp.json -w '%{http_code}' "https://127.0.0.1:$PORT$1"
}
opget() {
    curl -sS --cacert ca/ca.pem --cert op.pem --key op.key "https://127.0.0.1:$PORT$1"
}

tpm2_createek -c ek.ctx -G rsa -u ek.pub >/dev/null
tpm2_createak -C ek.ctx -c ak.ctx -G ecc -g sha256 -s ecdsa -u ak.pub -n ak.name >/dev/null
tpm2_flushcontext -t >/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout agent.key \
    -subj /CN=n1 -out agent.csr 2>/dev/null
openssl pkey -in agent.key -pubout -outform DER -out agent.spki

mkreq() { # NODE_ID [AGENT_URL] -> enroll.json
    python3 - "$1" "${2:-https://127.0.0.1:9}" <<'PY'
import base64, json, sys
b = lambda f: base64.b64encode(open(f, "rb").read()).decode()
json.dump({"node_id": sys.argv[1], "ek_pub": b("ek.pub"), "ek_cert": None, "ak_pub": b("ak.pub"),
           "csr": open("agent.csr").read(), "agent_url": sys.argv[2], "group": "lab"},
          open("enroll.json", "w"))
PY
}

# Default configuration: an EK without a manufacturer certificate is refused.
start_coord </dev/null
mkreq n1
code=$(post /v1/enroll enroll.json)
[ "$code" = 403 ] && grep -q enroll.ek_cert resp.json || tc_fail "EK without certificate: $code $(cat resp.json)"
stop_coord

start_coord <<<"allow_ek_without_cert = true"
# The coordinator's own names and its address (a loopback one with its port) are not an agent's.
for u in "https://127.0.0.1:$PORT" "https://coord.example:8443" "https://COORD.example.:1" \
    "https://coordinator:443"; do
    mkreq n1 "$u"
    code=$(post /v1/enroll enroll.json)
    [ "$code" = 403 ] && grep -q '"check":"enroll.agent_url_coordinator"' resp.json ||
        tc_fail "agent_url $u: $code $(cat resp.json)"
done
tc_pass "an agent_url naming the coordinator is refused (enroll.agent_url_coordinator)"
mkreq n1
code=$(post /v1/enroll enroll.json)
[ "$code" = 200 ] || tc_fail "enroll: $code $(cat resp.json)"

# The agent's side: activate the credential, quote over the binding nonce.
python3 - <<'PY'
import base64, hashlib, json, struct
r = json.load(open("resp.json"))
open("eid", "w").write(r["enrollment_id"])
cred = struct.pack(">II", 0xBADCC0DE, 1) + base64.b64decode(r["id_object"]) + base64.b64decode(r["encrypted_secret"])
open("cred.bin", "wb").write(cred)
qd = hashlib.sha256(bytes.fromhex(r["nonce"]) + hashlib.sha256(open("agent.spki", "rb").read()).digest()).hexdigest()
open("qd", "w").write(qd)
# A quote bound to another key, to be refused.
open("qd_other", "w").write(hashlib.sha256(bytes.fromhex(r["nonce"]) + b"\0" * 32).hexdigest())
PY
tpm2_startauthsession --policy-session -S session.ctx >/dev/null
tpm2_policysecret -S session.ctx -c e >/dev/null
tpm2_activatecredential -c ak.ctx -C ek.ctx -i cred.bin -o secret.bin -P session:session.ctx >/dev/null
tpm2_flushcontext session.ctx >/dev/null
tpm2_flushcontext -t >/dev/null

mkact() { # QDFILE SECRETFILE -> act.json
    tpm2_quote -c ak.ctx -l sha256:0 -q "$(cat "$1")" -m attest.bin -s sig.bin -o pcrs.bin -g sha256 >/dev/null
    tpm2_flushcontext -t >/dev/null
    pcr0=$(tpm2_pcrread sha256:0 | sed -n 's/.*0 *: 0x\([0-9A-Fa-f]*\).*/\1/p' | tr A-F a-f)
    python3 - "$pcr0" "$2" <<'PY'
import base64, json, sys
b = lambda f: base64.b64encode(open(f, "rb").read()).decode()
json.dump({"secret": b(sys.argv[2]), "quote": {"attest": b("attest.bin"), "signature": b("sig.bin"),
           "pcrs": {"sha256": {"0": sys.argv[1]}}}}, open("act.json", "w"))
PY
}
EID=$(cat eid)
head -c 32 /dev/urandom >wrong.bin
mkact qd wrong.bin
code=$(post "/v1/enroll/$EID/activate" act.json)
[ "$code" = 403 ] && grep -q enroll.secret resp.json || tc_fail "wrong secret: $code $(cat resp.json)"
mkact qd_other secret.bin
code=$(post "/v1/enroll/$EID/activate" act.json)
[ "$code" = 403 ] && grep -q quote.nonce resp.json || tc_fail "unbound quote: $code $(cat resp.json)"
mkact qd secret.bin
code=$(post "/v1/enroll/$EID/activate" act.json)
[ "$code" = 200 ] || tc_fail "activate: $code $(cat resp.json)"
python3 -c 'import json; r = json.load(open("resp.json")); open("node.pem", "w").write(r["certificate"]); assert r["state"] == "enrolled", r["state"]; assert r["node_id"] == "n1"'
openssl x509 -in node.pem -noout -subject | grep -q 'CN *= *node:n1' || tc_fail "certificate CN"
san=$(openssl x509 -in node.pem -noout -ext subjectAltName)
echo "$san" | grep -q 'DNS:n1.node.invalid' || tc_fail "certificate SAN: $san"
echo "$san" | grep -q '127.0.0.1' && tc_fail "the node's own address in its certificate: $san"
eku=$(openssl x509 -in node.pem -noout -ext extendedKeyUsage)
echo "$eku" | grep -q '2\.25\.277910308806770239075478762848318813545\.2' || tc_fail "node EKU: $eku"
echo "$eku" | grep -q '2\.25\.277910308806770239075478762848318813545\.1' && tc_fail "coordinator EKU: $eku"
openssl verify -CAfile ca/ca.pem node.pem >/dev/null || tc_fail "certificate does not chain"
[ "$(openssl x509 -in node.pem -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum)" = \
  "$(sha256sum <agent.spki)" ] || tc_fail "certificate is not for the CSR key"
code=$(post "/v1/enroll/$EID/activate" act.json)
[ "$code" = 404 ] || tc_fail "replayed activation: $code"
code=$(post /v1/enroll enroll.json)
[ "$code" = 409 ] || tc_fail "second enrollment of n1: $code"
tc_pass "enrollment with credential activation and CSR-bound quote"

# The node certificate is not an operator's.
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert ca/ca.pem --cert node.pem --key agent.key \
    "https://127.0.0.1:$PORT/v1/nodes")
[ "$code" = 403 ] || tc_fail "node certificate on an operator route: $code"
nodeget() {
    curl -s -o /dev/null -w '%{http_code}' --cacert ca/ca.pem --cert node.pem --key agent.key \
        "https://127.0.0.1:$PORT$1"
}
code=$(nodeget '/v1/events?since=0')
[ "$code" = 200 ] || tc_fail "enrolled node following events: $code"

# Nobody answers at the agent's address: unreachable after unreachable_after misses.
for _ in $(seq 50); do
    opget /v1/nodes/n1 | grep -q '"state":"unreachable"' && break
    sleep 0.1
done
opget /v1/nodes/n1 | grep -q '"state":"unreachable"' || tc_fail "not unreachable: $(opget /v1/nodes/n1)"
opget /v1/nodes/n1 | grep -q 'agent.unreachable' || tc_fail "reason"
tc_pass "enrolled node challenged, unreachable when its agent is absent"

# Deleted: its certificate (valid by date and chain) no longer works, also after a restart.
curl -sS --cacert ca/ca.pem --cert op.pem --key op.key -X DELETE -o /dev/null \
    "https://127.0.0.1:$PORT/v1/nodes/n1" || tc_fail "delete n1"
code=$(nodeget '/v1/events?since=0')
[ "$code" = 403 ] || tc_fail "deleted node's certificate: $code"
grep -q 'refused the certificate of node:n1: no such node' coord.log || tc_fail "no log of the refusal"
stop_coord
start_coord <<<"allow_ek_without_cert = true"
code=$(nodeget '/v1/events?since=0')
[ "$code" = 403 ] || tc_fail "deleted node's certificate after a restart: $code"
stop_coord
tc_pass "a deleted node's certificate is refused, also after a restart"
