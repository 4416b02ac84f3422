#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Attacks on the coordinator's front door, each refused with a clear reason and no state
# corrupted: an EK certificate from an unknown CA; an AK that never passed credential activation
# (wrong secret, enrollment replayed); clients without a certificate or with another node's
# certificate on operator routes; hostile node ids (SQL metacharacters, path separators, 1 MB
# strings) through the API and the CLI; oversized, deep, duplicate-key and malformed JSON.
# After all of it the legitimate node is still trusted and the coordinator still serves.
. "$TC_SRC/tests/lib/lab.sh"
command -v curl >/dev/null || tc_skip "curl not installed"
command -v tpm2_createek >/dev/null || tc_skip "tpm2-tools not installed"
cd "$LAB_DIR"
T=$TC_BIN

lab_coordinator_start interval=500ms
lab_node_prepare good
lab_policies_from good
lab_node_run good
lab_node_wait good trusted 30 || tc_fail "good node not trusted"
snapshot() { $T node list --json | lab_json - 'sorted((n["id"], n["state"], n["group"]) for n in j["nodes"])'; }
snap=$(snapshot)

# api METHOD PATH [BODYFILE] [curl options...]: status to stdout, body in api.out
api() {
    local m=$1 p=$2 b=${3:-}
    shift 3 2>/dev/null || shift $#
    curl -sS --max-time 20 --cacert "$TC_CA" -X "$m" -o api.out -w '%{http_code}' \
        ${b:+-H 'Content-Type: application/json' --data-binary "@$b"} "$@" \
        "$TC_COORDINATOR$p" 2>api.err || echo "000"
}
check_of() { lab_json api.out 'j.get("check", "")' 2>/dev/null || echo "(no json)"; }
expect_4xx() { # WHAT STATUS
    case "$2" in 4??) ;; *) cat api.out api.err >&2; tc_fail "$1: HTTP $2, expected a 4xx" ;; esac
}

# --- EK certificate from a manufacturer CA the coordinator does not trust.
LAB_MFR_CA=$LAB_DIR/rogue-ca lab_node_prepare rogue
lab_node_run rogue
for _ in $(seq 100); do kill -0 "${LAB_AGENT_PID[rogue]}" 2>/dev/null || break; sleep 0.1; done
rc=0; wait "${LAB_AGENT_PID[rogue]}" || rc=$?
LAB_AGENT_PID[rogue]=
[ $rc = 3 ] || { tail rogue/agent.log; tc_fail "rogue agent exit $rc, expected 3 (refused)"; }
grep -qE "pki.chain|enroll.ek_cert" rogue/agent.log || { tail rogue/agent.log; tc_fail "rogue refusal reason"; }
rc=0; $T node show rogue >/dev/null 2>&1 || rc=$?; [ $rc = 1 ] || tc_fail "rogue node exists"
tc_pass "EK certificate from an unknown CA refused (pki.chain: unable to get local issuer), node not created"

# --- An AK that never passed activation: a real TPM's EK and certificate, a real AK, but the
# credential is never activated; the secret sent back is made up.
mkdir fake && cd fake
lab_node_prepare fakeak >/dev/null
tcti=$(lab_tcti fakeak)
tpm2_createek -T "$tcti" -c ek.ctx -G rsa -u ek.pub >/dev/null
tpm2_nvread -T "$tcti" 0x01c00002 -o ek.der 2>/dev/null
"$T" tpm ak create --tcti "$tcti" --ctx ak.ctx --alg ecc --ek-alg rsa --out-tpm2b ak.pub >/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out tls.key 2>/dev/null
openssl req -new -key tls.key -subj /CN=fakeak -out tls.csr 2>/dev/null
enroll_body() { # NODE_ID > file (NODE_ID "@FILE": the id is FILE's content)
    python3 - "$1" <<'PY'
import base64, json, sys
b = lambda f: base64.b64encode(open(f, "rb").read()).decode()
nid = sys.argv[1]
if nid.startswith("@"):
    nid = open(nid[1:]).read()
print(json.dumps({"node_id": nid, "ek_pub": b("ek.pub"), "ek_cert": b("ek.der"),
                  "ak_pub": b("ak.pub"), "csr": open("tls.csr").read(),
                  "agent_url": "https://127.0.0.1:9", "group": "default"}))
PY
}
cd ..
(cd fake && enroll_body fakeak) >enroll.json
st=$(api POST /v1/enroll enroll.json)
[ "$st" = 200 ] || { cat api.out; tc_fail "enrollment start: HTTP $st"; }
eid=$(lab_json api.out 'j["enrollment_id"]')
python3 -c 'import base64, json, os
print(json.dumps({"secret": base64.b64encode(os.urandom(32)).decode(),
  "quote": {"attest": base64.b64encode(os.urandom(100)).decode(),
            "signature": base64.b64encode(os.urandom(72)).decode(),
            "pcrs": {"sha256": {"0": "00" * 32}}}}))' >activate.json
st=$(api POST "/v1/enroll/$eid/activate" activate.json)
expect_4xx "activation with a made-up secret" "$st"
echo "   refused: HTTP $st $(check_of)"
st=$(api POST "/v1/enroll/$eid/activate" activate.json)
expect_4xx "second activation attempt" "$st"
rc=0; $T node show fakeak >/dev/null 2>&1 || rc=$?; [ $rc = 1 ] || tc_fail "unactivated AK became a node"
st=$(api POST "/v1/enroll/$(printf '%064x' 1)/activate" activate.json)
expect_4xx "activation of an unknown enrollment" "$st"
tc_pass "AK without credential activation refused; no node created"

# --- Who may call what.
st=$(api GET /v1/nodes "")
case "$st" in 000 | 4??) ;; *) tc_fail "no client certificate: HTTP $st" ;; esac
st=$(api DELETE /v1/nodes/good "")
case "$st" in 000 | 4??) ;; *) tc_fail "no client certificate, delete: HTTP $st" ;; esac
nodecert=(--cert good/state/tls.crt --key good/state/tls.key)
for r in "GET /v1/nodes" "DELETE /v1/nodes/good" "POST /v1/nodes/good/approve" "GET /v1/subscribers" \
    "GET /v1/policies"; do
    st=$(api ${r% *} ${r#* } "" "${nodecert[@]}")
    [ "$st" = 403 ] || [ "$st" = 401 ] || { cat api.out; tc_fail "node certificate on $r: HTTP $st"; }
done
echo '{"name": "evil", "kind": "runtime", "body": {}}' >pol.json
st=$(api POST /v1/policies pol.json "${nodecert[@]}")
[ "$st" = 403 ] || [ "$st" = 401 ] || tc_fail "node certificate may add policies: HTTP $st"
# The CLI with a node's certificate: refused (exit 1), not a crash or a usage error.
rc=0; TC_CERT=good/state/tls.crt TC_KEY=good/state/tls.key $T node list >/dev/null 2>&1 || rc=$?
[ $rc = 1 ] || tc_fail "CLI with a node certificate: exit $rc"
[ "$(snapshot)" = "$snap" ] || tc_fail "state changed by unauthorized calls"
tc_pass "no certificate / another node's certificate refused on operator routes"

# --- Hostile node ids, through enrollment and through the operator API/CLI.
# 1 MB through the API (a file: argv cannot carry it), 100 kB through the CLI's argv.
head -c 1048576 /dev/zero | tr '\0' a >fake/big.id
big=$(head -c 100000 /dev/zero | tr '\0' a)
for id in "x'; DROP TABLE nodes;--" "../../etc/passwd" "a/b" "good/../good" "%2e%2e" "" "$big" "@big.id" \
    "n1\" OR \"1\"=\"1" "$(printf 'nul\001ctl')" "ünïcode"; do
    (cd fake && enroll_body "$id") >hostile.json
    st=$(api POST /v1/enroll hostile.json)
    [ "$st" = 400 ] || [ "$st" = 413 ] || { head -c 300 api.out; tc_fail "hostile id ${id:0:30}: HTTP $st"; }
    [ "$id" = @big.id ] && continue
    rc=0; $T node show "$id" >/dev/null 2>&1 || rc=$?
    [ $rc = 1 ] || [ $rc = 2 ] || tc_fail "CLI show of hostile id ${id:0:30}: exit $rc"
    rc=0; $T node delete "$id" >/dev/null 2>&1 || rc=$?
    [ $rc = 1 ] || [ $rc = 2 ] || tc_fail "CLI delete of hostile id ${id:0:30}: exit $rc"
done
st=$(api GET "/v1/nodes/$(printf '%.0sa' $(seq 5000))" "" --cert "$TC_CERT" --key "$TC_KEY")
expect_4xx "5000-character id in the path" "$st"
st=$(api GET "/v1/nodes/..%2F..%2Fetc%2Fpasswd" "" --cert "$TC_CERT" --key "$TC_KEY")
expect_4xx "encoded path separators" "$st"
[ "$(snapshot)" = "$snap" ] || { snapshot; tc_fail "state changed by hostile ids"; }
tc_pass "hostile node ids refused (SQL metacharacters, separators, control bytes, 1 MB)"

# --- Malformed and oversized JSON.
head -c 3000000 /dev/zero | tr '\0' ' ' | sed 's/^/{"node_id": "x", "pad": "/; s/$/"}/' >big.json
python3 -c 'print("[" * 100000 + "]" * 100000)' >deep.json
echo '{"node_id": "a", "node_id": "b"}' >dup.json
printf '{"node_id": "abc", "ek_pub": ' >trunc.json
printf '\xff\xfe{}' >binary.json
echo '{"node_id": 42, "ek_pub": [], "ak_pub": {}, "csr": null}' >types.json
echo '"just a string"' >scalar.json
for f in big deep dup trunc binary types scalar; do
    st=$(api POST /v1/enroll $f.json)
    expect_4xx "$f JSON on /v1/enroll" "$st"
    st=$(api POST /v1/policies $f.json --cert "$TC_CERT" --key "$TC_KEY")
    expect_4xx "$f JSON on /v1/policies" "$st"
    st=$(api POST /v1/subscribers $f.json --cert "$TC_CERT" --key "$TC_KEY")
    expect_4xx "$f JSON on /v1/subscribers" "$st"
done
rc=0; printf '{"digests": ' >badpol.json
$T policy add --name broken --kind runtime --file badpol.json >/dev/null 2>&1 || rc=$?
[ $rc = 2 ] || tc_fail "CLI accepted a malformed policy file: exit $rc"
tc_pass "oversized, deeply nested, duplicate-key, truncated, non-UTF-8, mistyped JSON refused"

sleep 1
kill -0 "$LAB_COORD_PID" || tc_fail "coordinator died"
[ "$(snapshot)" = "$snap" ] || { snapshot; tc_fail "state changed"; }
lab_node_grow good
sleep 1.2
[ "$(lab_node_field good 'j["state"]')" = trusted ] || tc_fail "good node no longer trusted"
tc_pass "coordinator alive, legitimate node still trusted, no state changed"
