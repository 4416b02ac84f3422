#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# VMs end to end, through the operator and tenant CLIs: two simulated nodes host three VMs of
# two tenants, each VM a vTPM run by the node's agent (EK certificate from the vTPM CA key in the
# host's TPM, AK activated by the coordinator), each guest a simulated workload measured into
# its vTPM. All VMs are attested in their host's round by one batch deep quote and turn trusted
# under their tenant's policies; a tenant sees only its VMs; a tampered guest turns only its VM
# untrusted; a tampered host turns all of its VMs untrusted (host.untrusted) while the other
# host's VM stays trusted; stop/start/delete go through the host's agent; a VM cannot be created
# on an untrusted node, twice, or by a tenant.
. "$TC_SRC/tests/lib/lab.sh"
cd "$LAB_DIR"
T=$TC_BIN

lab_coordinator_start interval=500ms unreachable_after=3 request_timeout=5s
for n in n1 n2; do lab_node_prepare "$n"; done
lab_policies_from n1
for n in n1 n2; do lab_node_run "$n"; done
for n in n1 n2; do lab_node_wait "$n" trusted 30 || tc_fail "$n not trusted"; done
tc_pass "two nodes trusted"

# Tenant certificates.
for t in acme beta; do
    $T ca issue --dir "$LAB_DIR/coordinator/ca" --tenant $t --out-cert $t.crt --out-key $t.key >/dev/null ||
        tc_fail "ca issue --tenant $t"
done
as_tenant() { # TENANT trustcloud-args...
    local t=$1
    shift
    TC_CERT=$LAB_DIR/$t.crt TC_KEY=$LAB_DIR/$t.key "$T" "$@"
}

t0=$(date +%s%N)
$T vm create vm-a1 --node n1 --tenant acme --json >a1.json || { cat a1.json; tc_fail "vm create vm-a1"; }
t1=$(date +%s%N)
$T vm create vm-b1 --node n1 --tenant beta >/dev/null || tc_fail "vm create vm-b1"
$T vm create vm-a2 --node n2 --tenant acme >/dev/null || tc_fail "vm create vm-a2"
lab_json a1.json 'j["state"] + " " + j["node"] + " " + j["tenant"]' | grep -qx "enrolled n1 acme" ||
    { cat a1.json; tc_fail "vm create answer"; }
tc_pass "three VMs created and enrolled (vTPM, EK chain to the host TPM, AK activation: $(((t1 - t0) / 1000000)) ms)"

# The guest's EK certificate is in its vTPM, where a guest looks for it, and chains to the
# host's vTPM CA certificate.
tcti=$(lab_vm_tcti n1 vm-a1)
if command -v tpm2_nvread >/dev/null; then
    tpm2_nvread -T "$tcti" -C o 0x01c0000a -o ekcert.der 2>/dev/null ||
        tpm2_nvread --tcti "$tcti" 0x01c0000a -o ekcert.der || tc_fail "tpm2_nvread of the vTPM EK cert"
    openssl x509 -inform DER -in ekcert.der -out ekcert.pem
    openssl x509 -inform DER -in n1/state/vtpm_ca.crt -out vtpmca.pem 2>/dev/null ||
        tc_fail "the host's vTPM CA certificate is missing"
    openssl verify -CAfile vtpmca.pem ekcert.pem >/dev/null || tc_fail "EK cert does not chain"
    $T vm show vm-a1 --json | lab_json - 'j["ek_cert"]' | base64 -d | cmp -s - ekcert.der ||
        tc_fail "the coordinator's record of the EK certificate differs from the vTPM's"
    tc_pass "the vTPM's EK certificate (NV 0x01c0000a) chains to the host's vTPM CA"
fi

# Guests boot and run their workload; tenant policies come from a known-good guest.
for v in "n1 vm-a1" "n1 vm-b1" "n2 vm-a2"; do lab_vm_guest_start $v; done
$T policy create runtime --from-ima-log "$(lab_vm_dir n1 vm-a1)/guest_ima" -o guest-rt.json
$T policy add --name guest-runtime --kind runtime --file guest-rt.json >/dev/null
$T policy assign guest-runtime --tenant acme >/dev/null || tc_fail "policy assign --tenant"
$T policy assign guest-runtime --tenant beta >/dev/null
for v in vm-a1 vm-b1 vm-a2; do
    $T vm wait $v --state trusted --timeout 30 >/dev/null || { $T vm show $v; tc_fail "$v not trusted"; }
done
# The guest's measurements reach the coordinator with the next rounds.
for _ in $(seq 50); do
    [ "$($T vm show vm-a1 --json | lab_json - 'j["ima_entries"]')" -ge 4 ] && break
    sleep 0.2
done
[ "$($T vm show vm-a1 --json | lab_json - 'j["ima_entries"]')" -ge 4 ] || tc_fail "guest IMA not appraised"
[ "$($T vm show vm-a1 --json | lab_json - 'j["state"]')" = trusted ] || tc_fail "vm-a1 with its guest IMA"
tc_pass "all VMs trusted (vTPM quote + guest IMA, batch deep quote with the host)"

# Tenant acme also pins its guests' firmware: the measured-boot policy made from the lab's boot
# log (which the guests boot). A VM that boots other firmware is untrusted for it; the others,
# whose guest boot logs replay into their vTPMs and match, stay trusted.
$T policy assign lab-boot --tenant acme >/dev/null || tc_fail "assign a measured-boot policy to a tenant"
$T vm create vm-fw --node n1 --tenant acme >/dev/null || tc_fail "vm create vm-fw"
LAB_GUEST_BOOTLOG=$TC_FIXTURES/eventlog/event-arch-linux.bin lab_vm_guest_start n1 vm-fw
# (Before its guest booted the VM is already untrusted for lack of an IMA list: wait for the
# firmware verdict itself.)
for _ in $(seq 75); do
    $T vm show vm-fw --json | lab_json - 'j["state"] + " " + (j["reason"] or {}).get("check", "")' |
        grep -q '^untrusted mb\.' && break
    sleep 0.2
done
$T vm show vm-fw --json | lab_json - 'j["state"] + " " + (j["reason"] or {}).get("check", "")' |
    grep -q '^untrusted mb\.' || { $T vm show vm-fw; tc_fail "a guest with other firmware"; }
sleep 1.2
for v in vm-a1 vm-a2; do
    [ "$($T vm show $v --json | lab_json - 'j["state"]')" = trusted ] || tc_fail "$v under the boot policy"
done
$T vm delete vm-fw >/dev/null || tc_fail "vm delete vm-fw"
tc_pass "guest boot logs appraised against the tenant's measured-boot policy (other firmware refused)"

lab_vm_grow n1 vm-a1
sleep 1.5
[ "$($T vm show vm-a1 --json | lab_json - 'j["state"]')" = trusted ] || tc_fail "allowed guest growth"

# Tenants see their own VMs only.
as_tenant acme vm list --json >acme.json 2>&1
lab_json acme.json 'sorted(v["id"] for v in j["vms"])' | grep -qx '\["vm-a1", "vm-a2"\]' ||
    { cat acme.json; tc_fail "tenant acme's list"; }
as_tenant beta vm list --json | lab_json - '[v["id"] for v in j["vms"]]' | grep -qx '\["vm-b1"\]' ||
    tc_fail "tenant beta's list"
as_tenant beta vm show vm-a1 >/dev/null 2>&1 && tc_fail "beta sees acme's VM"
as_tenant beta vm history vm-a1 >/dev/null 2>&1 && tc_fail "beta reads acme's history"
as_tenant acme vm create vm-x --node n1 --tenant acme >/dev/null 2>&1 && tc_fail "a tenant created a VM"
as_tenant acme node list >/dev/null 2>&1 && tc_fail "a tenant listed nodes"
as_tenant acme vm show vm-a1 --json | lab_json - 'j["state"]' | grep -qx trusted || tc_fail "tenant show"
tc_pass "tenants see and read only their own VMs, and cannot create VMs or see nodes"

# A tenant checks its VM's round itself: the VM quote, its inclusion proof and the host quote
# over the root, verified offline without trusting the coordinator's verdict.
as_tenant acme vm evidence vm-a1 -o ev.json || tc_fail "vm evidence"
$T vm check ev.json >check.txt || { cat check.txt; tc_fail "evidence of a trusted VM does not verify"; }
grep -q '^valid: VM vm-a1 ' check.txt || tc_fail "vm check output"
grep -q '(host PCR values withheld)' check.txt || { cat check.txt; tc_fail "tenant evidence holds host PCR values"; }
grep -q '^the host quote also shows: TPM clock [0-9]* ms, reset count [0-9]*, restart count [0-9]*, firmware 0x[0-9a-f]*, PCR digest [0-9a-f]\{64\}$' check.txt ||
    { cat check.txt; tc_fail "vm check does not say what the host quote shows"; }
# The operator's view holds the host's PCR values, checked against the host quote's digest; the
# tenant's has only the signed host quote (docs/protocol.md, "VM evidence").
$T vm evidence vm-a1 -o ev-op.json || tc_fail "operator vm evidence"
python3 - ev.json ev-op.json <<'PY' || tc_fail "evidence views"
import json, sys
t, o = (json.load(open(f)) for f in sys.argv[1:3])
assert sorted(t["host"]) == ["ak_pub", "attest", "id", "signature"], sorted(t["host"])
assert sorted(o["host"]) == ["ak_pub", "attest", "id", "pcrs", "signature"], sorted(o["host"])
assert sorted(o["host"]["pcrs"]["sha256"], key=int) == [str(i) for i in range(11)], o["host"]["pcrs"]
o["host"]["pcrs"]["sha256"]["0"] = "00" * 32
json.dump(o, open("ev-op-pcr.json", "w"))
PY
$T vm check ev-op.json | grep -q '(host PCR values checked)' || tc_fail "operator evidence check"
$T vm check ev-op-pcr.json >check-op.txt && tc_fail "operator evidence with a changed host PCR verified"
grep -q 'quote.pcr_digest' check-op.txt || { cat check-op.txt; tc_fail "changed host PCR reason"; }
tc_pass "evidence views: a tenant's withholds the host PCR values (the check says what the host quote still shows), an operator's has them, checked against the host quote"
vm_ak=$($T vm check ev.json --json | lab_json - 'j["valid"]')
[ "$vm_ak" = True ] || tc_fail "vm check --json"
python3 - ev.json <<'PY'
import json, sys
ev = json.load(open(sys.argv[1]))
ev["vm"]["pcrs"]["sha256"]["10"] = "00" * 32     # claim another PCR 10 than the vTPM quoted
json.dump(ev, open("ev-pcr.json", "w"))
ev = json.load(open(sys.argv[1]))
ev["batch"]["index"] = (ev["batch"]["index"] + 1) % max(ev["batch"]["count"], 2)
json.dump(ev, open("ev-index.json", "w"))
PY
$T vm check ev-pcr.json >check.txt && tc_fail "evidence with a changed PCR verified"
grep -q 'quote.pcr_digest' check.txt || { cat check.txt; tc_fail "changed PCR reason"; }
$T vm check ev-index.json >/dev/null && tc_fail "evidence with another index verified"
as_tenant beta vm evidence vm-a1 >/dev/null 2>&1 && tc_fail "beta read acme's evidence"
tc_pass "a tenant verifies its VM's evidence offline (VM quote, proof, host quote); tampering refused"

# Refusals.
$T vm create vm-a1 --node n2 --tenant acme >/dev/null 2>&1 && tc_fail "duplicate VM id"
$T vm create n2 --node n1 --tenant acme >/dev/null 2>&1 && tc_fail "VM id of a node"
$T vm create vm-z --node nope --tenant acme >/dev/null 2>&1 && tc_fail "unknown node"
$T vm create 'vm/../x' --node n1 --tenant acme >/dev/null 2>&1 && tc_fail "hostile VM id"
$T node delete vm-a1 >/dev/null 2>&1 && tc_fail "node delete of a VM"
$T node delete n1 >/dev/null 2>&1 && tc_fail "node delete of a host with VMs"
tc_pass "duplicate, hostile and misplaced VM requests refused"

# Tenants follow the event stream: each sees only its VMs' changes (docs/protocol.md, "Events").
seq0=$($T events --json | lab_json - 'j["last"]')
as_tenant acme events --follow --json --since "$seq0" --count 2 --timeout 60 >acme-follow.jsonl 2>acme-follow.err &
acme_follow=$!
as_tenant beta events --follow --json --since "$seq0" --count 1 --timeout 90 >beta-follow.jsonl 2>beta-follow.err &
beta_follow=$!
TC_PIDS+=("$acme_follow" "$beta_follow")

# A tampered guest: only that VM.
lab_vm_tamper n1 vm-a1 /tmp/.x/guest-miner
$T vm wait vm-a1 --state untrusted --timeout 10 >/dev/null || tc_fail "tampered guest not untrusted"
$T vm show vm-a1 --json >a1.json
lab_json a1.json 'j["reason"]["check"]' | grep -qx ima.policy.not_in_policy || { cat a1.json; tc_fail "guest reason"; }
lab_json a1.json 'j["reason"]["detail"]' | grep -q /tmp/.x/guest-miner || tc_fail "guest reason detail"
sleep 1
for v in vm-b1 vm-a2; do
    [ "$($T vm show $v --json | lab_json - 'j["state"]')" = trusted ] || tc_fail "$v left trusted"
done
[ "$(lab_node_field n1 'j["state"]')" = trusted ] || tc_fail "the host of a tampered guest left trusted"
tc_pass "a tampered guest turns only its VM untrusted (host and other VMs stay trusted)"

# A tampered host: all its VMs.
lab_node_tamper n2 /opt/evil/host-rootkit
lab_node_wait n2 untrusted 10 || tc_fail "tampered host not untrusted"
$T vm wait vm-a2 --state untrusted --timeout 10 >/dev/null || tc_fail "VM of a tampered host"
$T vm show vm-a2 --json | lab_json - 'j["reason"]["check"]' | grep -qx host.untrusted ||
    tc_fail "VM reason for an untrusted host"
[ "$($T vm show vm-b1 --json | lab_json - 'j["state"]')" = trusted ] || tc_fail "vm-b1 on n1 left trusted"
$T vm create vm-late --node n2 --tenant acme >/dev/null 2>&1 && tc_fail "VM created on an untrusted node"
tc_pass "a tampered host turns its VMs untrusted (host.untrusted); no new VM lands on it"
wait "$acme_follow" || { cat acme-follow.err; tc_fail "acme's events --follow did not see its 2 VMs' events"; }
python3 - acme-follow.jsonl <<'PY' || { cat acme-follow.jsonl; tc_fail "acme's followed events"; }
import json, sys
evs = [json.loads(l) for l in open(sys.argv[1])]
assert [e["node_id"] for e in evs] == ["vm-a1", "vm-a2"], evs
assert all(e["new_state"] == "untrusted" for e in evs), evs
PY

# Stop, start, delete through the host's agent.
$T vm stop vm-b1 >/dev/null || tc_fail "vm stop"
$T vm show vm-b1 --json | lab_json - 'j["state"] + " " + j["reason"]["check"]' |
    grep -qx "unreachable vm.stopped" || tc_fail "stopped VM state"
# beta's follower saw nothing of the tampering above (acme's VMs, the hosts): its first event is
# its own VM's stop.
wait "$beta_follow" || { cat beta-follow.err; tc_fail "beta's events --follow"; }
lab_json beta-follow.jsonl 'j["node_id"] + " " + j["new_state"]' | grep -qx "vm-b1 unreachable" ||
    { cat beta-follow.jsonl; tc_fail "beta's followed events"; }
tc_pass "tenants follow events (trustcloud events --follow): acme saw exactly its two VMs turn untrusted, beta none of it, then its own VM's stop"
sleep 1.2
$T vm show vm-b1 --json | lab_json - 'j["state"]' | grep -qx unreachable || tc_fail "stopped VM was attested"
$T vm start vm-b1 >/dev/null || tc_fail "vm start"
lab_vm_guest_start n1 vm-b1 # the VM boots again: a fresh guest IMA list on the resumed vTPM
$T vm wait vm-b1 --state trusted --timeout 15 >/dev/null || tc_fail "restarted VM not trusted"
tc_pass "stop (not attested, unreachable: vm.stopped) and start (sealed state reopened, trusted again)"

$T vm delete vm-b1 >/dev/null || tc_fail "vm delete"
$T vm show vm-b1 >/dev/null 2>&1 && tc_fail "deleted VM still shown"
[ -e "$(lab_vm_dir n1 vm-b1)" ] && tc_fail "deleted VM's directory remains on the host"
$T vm list --json | lab_json - 'sorted(v["id"] for v in j["vms"])' | grep -qx '\["vm-a1", "vm-a2"\]' ||
    tc_fail "vm list after delete"
$T vm history vm-a1 --limit 100 --json | lab_json - '[r["state"] for r in j["results"] if r["changed"]][:2]' |
    grep -qx '\["untrusted", "trusted"\]' || tc_fail "VM history"
tc_pass "delete removes the vTPM and its state; history kept for the others"
