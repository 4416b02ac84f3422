#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The agent's VM routes (docs/protocol.md, "Virtual machines") on a software node: a real swtpm
# plays the host TPM, trustcloud-agent runs one swtpm per VM, curl plays the coordinator.
# Checked: the identity chain (EK certificate issued by the vTPM CA key, which the host AK
# certifies over the nonce; the same certificate in the vTPM's NV), credential activation in
# the vTPM, stop/start through the state guard, a rolled-back state refused, a state key from
# another host refused, deletion, limits, identities and hostile ids; the agent keeps serving.
. "$TC_SRC/tests/lib/common.sh"
. "$TC_SRC/tests/lib/agent_alone.sh"
agent_bin="$TC_BUILD/trustcloud-agent"
[ -x "$agent_bin" ] || tc_skip "trustcloud-agent not built"
for t in curl openssl python3 tpm2_nvread tpm2_nvdefine swtpm; do
    command -v "$t" >/dev/null || tc_skip "$t not installed"
done
python3 -c 'import cryptography' 2>/dev/null || tc_skip "python3-cryptography not installed"
cd "$TC_TMP"

# A test CA: the agents' server certificates, the coordinator's client certificate, another
# node's.
agent_alone_ca
issue coord coordinator
issue other node:other

declare -A AGENT_PID=() AGENT_URL=()
# node_prepare NAME: a host TPM, an enrolled-looking state dir (TLS key + certificate, AK).
node_prepare() {
    local n=$1 port
    tc_start_swtpm "$n"
    local tcti_var="TC_TCTI_$n"
    issue "$n" "node:$n" IP:127.0.0.1
    agent_alone_state "$n" "$n" "${!tcti_var}" "$n.akpub"
    port=$(tc_free_port_pair)
    cat >"$n.conf" <<EOF
[agent]
node_id = $n
tcti = ${!tcti_var}
state_dir = $n
listen_address = 127.0.0.1
listen_port = $port
coordinator_url = https://127.0.0.1:1
ca_file = ca.pem
eventlog_path = /nonexistent
ima_path = /nonexistent
log_level = debug
max_vms = 3
EOF
    AGENT_URL[$n]=https://127.0.0.1:$port
}
node_start() {
    local n=$1
    # A fresh log: the previous one could otherwise answer the "listening" check below.
    if [ -f "$n.log" ]; then cat "$n.log" >>"$n.log.old" && rm -f "$n.log"; fi
    "$agent_bin" -c "$n.conf" >"$n.log" 2>&1 &
    AGENT_PID[$n]=$!
    TC_PIDS+=("${AGENT_PID[$n]}")
    for _ in $(seq 200); do
        grep -q "listening on port" "$n.log" 2>/dev/null && return 0
        kill -0 "${AGENT_PID[$n]}" 2>/dev/null || { cat "$n.log"; tc_fail "agent $n exited"; }
        sleep 0.05
    done
    cat "$n.log"
    tc_fail "agent $n did not start"
}
node_stop() {
    kill "${AGENT_PID[$1]}"
    wait "${AGENT_PID[$1]}" || { tail -40 "$1.log"; tc_fail "agent $1 did not exit cleanly"; }
    sanitizer_check "$1.log"
}
sanitizer_check() {
    if grep -q -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$1"; then
        grep -A20 -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$1" | head -60
        tc_fail "sanitizer report in $1"
    fi
}
# vTPMs left running at the end (the agent does not stop them when it exits).
kill_vtpms() {
    local f
    for f in "$TC_TMP"/*/vms/*/swtpm.pid; do
        [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
    done
    return 0
}
trap 'kill_vtpms; tc_cleanup' EXIT

# call NODE WHO METHOD PATH [BODY]: prints the HTTP status; the answer goes to out.json.
call() {
    local n=$1 who=$2 method=$3 path=$4 body=${5-}
    local auth=() data=()
    [ "$who" = none ] || auth=(--cert "$who.pem" --key "$who.key")
    if [ -n "$body" ]; then
        printf '%s' "$body" >body.json
        data=(-H 'Content-Type: application/json' --data-binary @body.json)
    fi
    curl -sS --path-as-is --max-time 60 --cacert ca.pem "${auth[@]}" -X "$method" -o out.json \
        -w '%{http_code}' "${data[@]}" "${AGENT_URL[$n]}$path" 2>curl.err || echo "curl-failed"
}
expect() { # STATUS CHECK(or -) NODE WHO METHOD PATH [BODY]
    local want=$1 check=$2
    shift 2
    st=$(call "$@")
    [ "$st" = "$want" ] || { cat out.json curl.err 2>/dev/null; tc_fail "$3 $4 $5: HTTP $st, expected $want"; }
    if [ "$check" != - ]; then
        python3 -c 'import json,sys; c=json.load(open("out.json")).get("check"); sys.exit(c!=sys.argv[1])' \
            "$check" || { cat out.json; tc_fail "$3 $4 $5: check is not $check"; }
    fi
}
field() { python3 -c 'import json,sys; print(json.load(open("out.json"))[sys.argv[1]])' "$1"; }
vm_tcti() { cat "$1/vms/$2/tcti"; }

node_prepare h1
node_start h1

# ---- creation: the identity chain -------------------------------------------------------
nonce=$(openssl rand -hex 32)
t0=$(date +%s%N)
expect 201 - h1 coord POST /v1/vms "{\"vm_id\": \"vm1\", \"nonce\": \"$nonce\", \"mode\": \"tcp\"}"
t1=$(date +%s%N)
echo "create (tcp, first: vTPM CA key and certificate made too): $(((t1 - t0) / 1000000)) ms"
cp out.json create1.json
python3 - "$nonce" h1.akpub <<'PY'
import base64, hashlib, json, struct, sys
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives import hashes
a = json.load(open("create1.json"))
nonce = bytes.fromhex(sys.argv[1])
assert a["vm_id"] == "vm1" and a["mode"] == "tcp", a
assert "ctrl_path" not in a
b = lambda k, o=a: base64.b64decode(o[k], validate=True)
ca = a["vtpm_ca"]
open("ek.der", "wb").write(b("ek_cert"))
open("vtpmca.der", "wb").write(b("cert", ca))
open("vm1.ekpub", "wb").write(b("ek_pub"))
open("vm1.akpub", "wb").write(b("ak_pub"))

def tpm2b(buf, off):
    (n,) = struct.unpack_from(">H", buf, off)
    return buf[off + 2:off + 2 + n], off + 2 + n

def ecc_point(tpm2b_public):
    pub, end = tpm2b(tpm2b_public, 0)
    assert end == len(tpm2b_public)
    typ, name_alg, attrs = struct.unpack_from(">HHI", pub, 0)
    assert typ == 0x0023, hex(typ)
    off = 8
    _, off = tpm2b(pub, off)                       # authPolicy
    (sym,) = struct.unpack_from(">H", pub, off); off += 2
    if sym != 0x0010: off += 4
    (scheme,) = struct.unpack_from(">H", pub, off); off += 2
    if scheme != 0x0010: off += 2
    curve, kdf = struct.unpack_from(">HH", pub, off); off += 4
    if kdf != 0x0010: off += 2
    x, off = tpm2b(pub, off)
    y, off = tpm2b(pub, off)
    assert off == len(pub) and curve == 0x0003
    return pub, attrs, ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()).public_key()

# The host AK signed the certify attestation.
_, _, ak = ecc_point(open(sys.argv[2], "rb").read())
attest, sig = b("attest", ca), b("signature", ca)
alg, h = struct.unpack_from(">HH", sig, 0)
assert alg == 0x0018 and h == 0x000b, (hex(alg), hex(h))
r, off = tpm2b(sig, 4)
s, off = tpm2b(sig, off)
assert off == len(sig)
ak.verify(utils.encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big")),
          attest, ec.ECDSA(hashes.SHA256()))
# TPMS_ATTEST: magic, type certify, extraData = nonce, attested name = the CA key's name.
magic, typ = struct.unpack_from(">IH", attest, 0)
assert magic == 0xff544347 and typ == 0x8017, (hex(magic), hex(typ))
_, off = tpm2b(attest, 6)                          # qualifiedSigner
extra, off = tpm2b(attest, off)
assert extra == nonce, "certify extraData is not the nonce"
off += 17 + 8                                      # clockInfo, firmwareVersion
name, off = tpm2b(attest, off)
capub, caattrs, cakey = ecc_point(b("public", ca))
assert name == b"\x00\x0b" + hashlib.sha256(capub).digest(), "certified name is not the CA key's"
# fixedTPM | fixedParent | sensitiveDataOrigin | sign, not restricted
assert caattrs & 0x72 == 0x72 and caattrs & 0x40000 and not caattrs & 0x10000, hex(caattrs)
# The CA certificate is for that key.
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
cert = x509.load_der_x509_certificate(b("cert", ca))
spki = lambda k: k.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
assert spki(cert.public_key()) == spki(cakey), "CA certificate is not for the certified key"
ek = x509.load_der_x509_certificate(b("ek_cert"))
assert ek.subject.rfc4514_string() == "CN=vm1", ek.subject
_, _, ekkey = ecc_point(b("ek_pub"))
assert spki(ek.public_key()) == spki(ekkey), "EK certificate is not for ek_pub"
PY
cmp -s vtpmca.der h1/vtpm_ca.crt || tc_fail "vtpm_ca.cert differs from state_dir/vtpm_ca.crt"
openssl x509 -inform DER -in vtpmca.der -out vtpmca.pem
openssl x509 -inform DER -in ek.der -out ek.pem
openssl verify -CAfile vtpmca.pem ek.pem >/dev/null || tc_fail "openssl does not verify the EK certificate"
tc_pass "create: EK certificate verifies with openssl under the vTPM CA; the host AK certified the CA key over the nonce"

# The guest finds the same certificate in the vTPM's NV, and the EK persistent at 0x81010002.
tcti1=$(vm_tcti h1 vm1)
tpm2_nvread -T "$tcti1" -C o -o nv.der 0x01c0000a 2>/dev/null || tc_fail "tpm2_nvread of the vTPM"
cmp -s nv.der ek.der || tc_fail "NV 0x01c0000a differs from the answer's ek_cert"
[ -f h1/vms/vm1/ak.ctx ] && [ -f h1/vms/vm1/state.seal ] || tc_fail "ak.ctx / state.seal missing"
tc_pass "tpm2_nvread on the vTPM ($tcti1) reads the same EK certificate"

# ---- credential activation in the vTPM ----------------------------------------------------
tpm_name() { # TPM2B_PUBLIC_FILE NAME_FILE
    python3 -c '
import hashlib,struct,sys
p=open(sys.argv[1],"rb").read(); (n,)=struct.unpack_from(">H",p,0)
open(sys.argv[2],"wb").write(b"\x00\x0b"+hashlib.sha256(p[2:2+n]).digest())' "$1" "$2"
}
tpm_name vm1.akpub vm1.akname
tpm_name h1.akpub h1.akname
secret=$(openssl rand -hex 32)
"$TC_BIN" credential make --ek-pub vm1.ekpub --name vm1.akname --secret "$secret" --out cred.bin
cred_body() {
    python3 - "$1" <<'PY'
import base64, json, struct, sys
c = open(sys.argv[1], "rb").read()[8:]
(n,) = struct.unpack_from(">H", c, 0)
print(json.dumps({"id_object": base64.b64encode(c[:2 + n]).decode(),
                  "encrypted_secret": base64.b64encode(c[2 + n:]).decode()}))
PY
}
expect 200 - h1 coord POST /v1/vms/vm1/activate "$(cred_body cred.bin)"
got=$(python3 -c 'import base64,json; print(base64.b64decode(json.load(open("out.json"))["secret"]).hex())')
[ "$got" = "$secret" ] || tc_fail "activation returned another secret"
# A credential for another TPM's EK (the host's) is refused by the vTPM.
"$TC_BIN" credential make --ek-pub vm1.ekpub --name h1.akname --secret "$secret" --out bad.bin
expect 403 vtpm.activate h1 coord POST /v1/vms/vm1/activate "$(cred_body bad.bin)"
expect 400 request.credential h1 coord POST /v1/vms/vm1/activate '{"id_object": "AAAA", "encrypted_secret": "!!"}'
tc_pass "activation in the vTPM returns the secret; a credential for another AK name is refused"

# ---- list, stop, start, rollback ----------------------------------------------------------
expect 200 - h1 coord GET /v1/vms
python3 -c 'import json; v=json.load(open("out.json"))["vms"]
assert v==[{"id":"vm1","running":True,"mode":"tcp"}], v'
expect 409 vm.exists h1 coord POST /v1/vms "{\"vm_id\": \"vm1\", \"nonce\": \"$nonce\"}"
# The guest changes its TPM (an NV index): a state that differs from the first stop's.
expect 200 - h1 coord POST /v1/vms/vm1/stop '{}'
[ "$(field running)" = False ] || tc_fail "stop: still running"
[ -f h1/vms/vm1/tcti ] && tc_fail "tcti file left after stop"
cp -a h1/vms/vm1/state old-state
expect 200 - h1 coord POST /v1/vms/vm1/start '{}'
[ "$(field running)" = True ] || tc_fail "start: not running"
tcti1=$(vm_tcti h1 vm1)
tpm2_nvdefine -T "$tcti1" -C o -s 8 0x01500001 >/dev/null 2>&1 || tc_fail "nvdefine in the vTPM"
tpm2_nvread -T "$tcti1" -C o -o nv2.der 0x01c0000a 2>/dev/null && cmp -s nv2.der ek.der ||
    tc_fail "EK certificate lost across stop/start"
expect 200 - h1 coord POST /v1/vms/vm1/stop ''
cp -a h1/vms/vm1/state new-state
rm -rf h1/vms/vm1/state && cp -a old-state h1/vms/vm1/state
expect 409 vtpm.rollback h1 coord POST /v1/vms/vm1/start '{}'
rm -rf h1/vms/vm1/state && cp -a new-state h1/vms/vm1/state
expect 200 - h1 coord POST /v1/vms/vm1/start '{}'
tpm2_nvreadpublic -T "$(vm_tcti h1 vm1)" 0x01500001 >/dev/null 2>&1 ||
    tc_fail "the guest's NV index is missing after the restart"
tc_pass "stop/start through the guard; an older copy of the state is refused (409 vtpm.rollback)"

# ---- restarts of the agent ----------------------------------------------------------------
# SIGTERM: the vTPM keeps running (the guest must not notice) and the new agent adopts it.
pid_before=$(cat h1/vms/vm1/swtpm.pid)
node_stop h1
kill -0 "$pid_before" || tc_fail "the vTPM died with the agent"
node_start h1
expect 200 - h1 coord GET /v1/vms
python3 -c 'import json; v=json.load(open("out.json"))["vms"]; assert v==[{"id":"vm1","running":True,"mode":"tcp"}], v'
[ "$(cat h1/vms/vm1/swtpm.pid)" = "$pid_before" ] || tc_fail "adopted vTPM has another pid"
# The agent and its vTPM die (a host crash): the state was never recorded at a stop, so the
# restart through the guard refuses it until the operator forces it.
kill -9 "${AGENT_PID[h1]}"
wait "${AGENT_PID[h1]}" 2>/dev/null || true
kill -9 "$pid_before"
for _ in $(seq 50); do kill -0 "$pid_before" 2>/dev/null || break; sleep 0.05; done
node_start h1
for _ in $(seq 100); do grep -q "cannot be restarted" h1.log && break; sleep 0.05; done
grep -q "vtpm.unclean" h1.log || { tail h1.log; tc_fail "restart after a crash: no vtpm.unclean"; }
expect 200 - h1 coord GET /v1/vms
python3 -c 'import json; v=json.load(open("out.json"))["vms"]; assert v==[{"id":"vm1","running":False,"mode":"tcp"}], v'
expect 409 vtpm.unclean h1 coord POST /v1/vms/vm1/start '{}'
expect 200 - h1 coord POST /v1/vms/vm1/start '{"force": true}'
[ "$(field running)" = True ] || tc_fail "forced start: not running"
# A clean stop, then the agent restarts: a VM whose swtpm died with a pid file left behind
# (the host rebooted after a clean stop is not that case) ... here: stopped stays stopped.
expect 200 - h1 coord POST /v1/vms/vm1/stop '{}'
node_stop h1
node_start h1
expect 200 - h1 coord GET /v1/vms
python3 -c 'import json; v=json.load(open("out.json"))["vms"]; assert v==[{"id":"vm1","running":False,"mode":"tcp"}], v'
expect 200 - h1 coord POST /v1/vms/vm1/start '{}'
tc_pass "agent restarts: running vTPM adopted; after a crash 409 vtpm.unclean until forced; stopped stays stopped"

# ---- qemu mode and the VM limit -----------------------------------------------------------
expect 201 - h1 coord POST /v1/vms "{\"vm_id\": \"vmq\", \"nonce\": \"$(openssl rand -hex 32)\", \"mode\": \"qemu\"}"
python3 -c 'import json,os,stat; a=json.load(open("out.json"))
assert a["mode"]=="qemu" and "ak_pub" not in a, a
assert stat.S_ISSOCK(os.stat(a["ctrl_path"]).st_mode), a["ctrl_path"]'
[ -f h1/vms/vmq/tcti ] && tc_fail "qemu mode has no TCP TPM port"
expect 409 vm.mode h1 coord POST /v1/vms/vmq/activate "$(cred_body cred.bin)"
expect 201 - h1 coord POST /v1/vms "{\"vm_id\": \"vm3\", \"nonce\": \"$(openssl rand -hex 32)\"}"
expect 503 vm.limit h1 coord POST /v1/vms "{\"vm_id\": \"vm4\", \"nonce\": \"$(openssl rand -hex 32)\"}"
[ -e h1/vms/vm4 ] && tc_fail "a refused VM left a directory"
tc_pass "qemu mode: control socket, no AK, activation refused; max_vms = 3 refuses a fourth VM"

# ---- identities and hostile ids -------------------------------------------------------------
expect 403 agent.forbidden h1 other GET /v1/vms
expect 403 agent.forbidden h1 other POST /v1/vms "{\"vm_id\": \"vmx\", \"nonce\": \"$nonce\"}"
expect 403 agent.forbidden h1 other POST /v1/vms/vm1/stop '{}'
expect 403 agent.forbidden h1 other DELETE /v1/vms/vm1
st=$(call h1 none GET /v1/vms)
[ "$st" = 200 ] && tc_fail "no client certificate got HTTP 200"
for id in '../x' 'a/b' '..' '.' '' 'vm 1' "$(printf 'a%.0s' $(seq 65))"; do
    expect 400 request.vm_id h1 coord POST /v1/vms "{\"vm_id\": \"$id\", \"nonce\": \"$nonce\"}"
done
expect 400 request.nonce h1 coord POST /v1/vms '{"vm_id": "vmx", "nonce": "00"}'
expect 400 request.mode h1 coord POST /v1/vms "{\"vm_id\": \"vmx\", \"nonce\": \"$nonce\", \"mode\": \"kvm\"}"
expect 400 request.json h1 coord POST /v1/vms 'not json'
expect 400 request.vm_id h1 coord POST '/v1/vms/..%2F..%2Fetc/start' '{}'
expect 400 request.vm_id h1 coord POST '/v1/vms/../start' '{}'
expect 404 vm.unknown h1 coord POST /v1/vms/nosuch/start '{}'
expect 404 vm.unknown h1 coord DELETE /v1/vms/nosuch
expect 405 - h1 coord GET /v1/vms/vm1/start
python3 -c 'import json; print(json.dumps({"vm_id": "v" * (1 << 20), "nonce": "00"}))' >big.json
st=$(curl -sS --max-time 60 --cacert ca.pem --cert coord.pem --key coord.key -o out.json \
    -w '%{http_code}' -H 'Content-Type: application/json' --data-binary @big.json \
    "${AGENT_URL[h1]}/v1/vms" 2>curl.err || echo failed)
[ "$st" = 413 ] || tc_fail "1 MB vm_id: HTTP $st"
python3 -c 'import json; print(json.dumps({"vm_id": "v" * 100000, "nonce": "00"}))' >big.json
st=$(curl -sS --max-time 60 --cacert ca.pem --cert coord.pem --key coord.key -o out.json \
    -w '%{http_code}' -H 'Content-Type: application/json' --data-binary @big.json \
    "${AGENT_URL[h1]}/v1/vms" 2>curl.err || echo failed)
[ "$st" = 400 ] || tc_fail "100 kB vm_id: HTTP $st"
long=$(python3 -c 'print("v" * (1 << 20))')
st=$(curl -sS --max-time 60 --cacert ca.pem --cert coord.pem --key coord.key -o out.json \
    -w '%{http_code}' -X POST "${AGENT_URL[h1]}/v1/vms/$long/start" 2>curl.err || echo failed)
case "$st" in 2*) tc_fail "1 MB id in the path: HTTP $st" ;; esac
expect 200 - h1 coord GET /v1/vms
[ -e "$TC_TMP/etc" ] || [ -e h1/etc ] && tc_fail "a path escaped vm_dir"
tc_pass "non-coordinator refused (403); bad ids, path separators, 1 MB ids refused; still serving"

# ---- another host -------------------------------------------------------------------------
node_prepare h2
node_start h2
# vm1's directory copied to h2 (stopped first, so its state is complete): h2's registry does
# not know it, and its sealed key is for h1's TPM.
expect 200 - h1 coord POST /v1/vms/vm1/stop '{}'
mkdir -p h2/vms && cp -a h1/vms/vm1 h2/vms/vm1
node_stop h2
node_start h2
expect 409 vtpm.unknown h2 coord POST /v1/vms/vm1/start '{}'
# A VM h2 created itself, whose sealed key is replaced by h1's (same state, so the hash check
# passes and only the seal can refuse it).
expect 201 - h2 coord POST /v1/vms "{\"vm_id\": \"vm9\", \"nonce\": \"$(openssl rand -hex 32)\"}"
expect 200 - h2 coord POST /v1/vms/vm9/stop '{}'
cp h1/vms/vm1/state.seal h2/vms/vm9/state.seal
expect 403 vtpm.unseal h2 coord POST /v1/vms/vm9/start '{}'
expect 200 - h1 coord POST /v1/vms/vm1/start '{}'
tc_pass "a VM directory copied to another host is refused (vtpm.unknown), a key sealed by another host too (403 vtpm.unseal)"

# ---- deletion -------------------------------------------------------------------------------
pid=$(cat h1/vms/vm1/swtpm.pid)
expect 200 - h1 coord DELETE /v1/vms/vm1
python3 -c 'import json; a=json.load(open("out.json")); assert a=={"vm_id":"vm1","deleted":True}, a'
[ -e h1/vms/vm1 ] && tc_fail "vm1's directory is left"
for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
kill -0 "$pid" 2>/dev/null && tc_fail "vm1's swtpm still runs"
for v in vmq vm3; do expect 200 - h1 coord DELETE "/v1/vms/$v"; done
expect 200 - h1 coord GET /v1/vms
python3 -c 'import json; v=json.load(open("out.json"))["vms"]; assert v==[], v'
expect 404 vm.unknown h1 coord POST /v1/vms/vm1/start '{}'
# The id can be used again; the registry forgot it.
t0=$(date +%s%N)
expect 201 - h1 coord POST /v1/vms "{\"vm_id\": \"vm1\", \"nonce\": \"$(openssl rand -hex 32)\"}"
t1=$(date +%s%N)
echo "create (tcp, CA known): $(((t1 - t0) / 1000000)) ms"
expect 200 - h1 coord DELETE /v1/vms/vm1
[ -z "$(ls h1/vms)" ] || tc_fail "vm_dir not empty: $(ls h1/vms)"
tc_pass "delete stops the vTPM and removes its directory and registry entry; the id is free again"

node_stop h1
node_stop h2
kill_vtpms
