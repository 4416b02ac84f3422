#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Batch attestation ("deep quote", docs/protocol.md) on one real node: trustcloud-agent on a host
# swtpm creates VMs through its own route (POST /v1/vms: vTPMs with EK certificates and AKs), the
# lab boots a simulated guest on each vTPM (UEFI log replayed, an IMA list that really extends
# PCR 10), and curl plays the coordinator. Every answer is checked from the outside:
#  - the host quote verifies with qualifyingData = SHA-256("trustcloud-batch-v1" || nonce || root)
#    (and not with the bare nonce), and the host TPM quoted exactly once per round (its swtpm
#    command log);
#  - every VM quote verifies with that VM's AK and the nonce, its guest IMA list (and boot log)
#    replays to the quoted PCRs (`trustcloud appraise`), its proof leads to the root (recomputed
#    here in Python from the protocol text, not with the C code);
#  - unknown and stopped VMs are error entries; the guest IMA list continues from ima_from; a
#    guest tampering is caught by a runtime policy; without "vms" nothing changed.
# TC_BATCH_VMS=N (default 3) runs it with more VMs, to measure the parallel vTPM quotes.
. "$TC_SRC/tests/lib/lab.sh"
. "$TC_SRC/tests/lib/agent_alone.sh"
command -v curl >/dev/null || tc_skip "curl not installed"
command -v swtpm >/dev/null || tc_skip "swtpm not installed"
[ -x "$LAB_AGENT_BIN" ] || tc_fail "trustcloud-agent not built ($LAB_AGENT_BIN)"
[ -f "$LAB_BOOTLOG" ] || tc_skip "fixtures not available"
nvms=${TC_BATCH_VMS:-3}
[ "$nvms" -ge 3 ] || tc_fail "TC_BATCH_VMS must be at least 3"
node=n1
d=$LAB_DIR/$node
mkdir -p "$d/host-tpm" "$d/state"
chmod 700 "$d/state"
cd "$d"
sel=sha256:0,1,2,3,4,5,6,7,8,9,10
vmsel=sha256:0,1,2,3,4,5,6,7,10

# The host TPM, logging every command it receives (to count the host's TPM work per round).
for _ in 1 2 3 4 5; do
    port=$(lab_free_port 2)
    rm -f host-tpm/pid
    if swtpm socket --tpm2 --server "type=tcp,port=$port,bindaddr=127.0.0.1" \
        --ctrl "type=tcp,port=$((port + 1)),bindaddr=127.0.0.1" --tpmstate "dir=$d/host-tpm" \
        --flags not-need-init,startup-clear --pid "file=$d/host-tpm/pid" \
        --log "file=$d/host-tpm/commands.log,level=20" -d 2>host-tpm/err; then
        for _ in $(seq 100); do [ -s host-tpm/pid ] && break; sleep 0.02; done
        TC_PIDS+=("$(cat host-tpm/pid)")
        echo "$(cat host-tpm/pid)" >>"$LAB_PIDFILE"
        break
    fi
    port=
done
[ -n "$port" ] || tc_fail "could not start the host swtpm"
tcti=swtpm:host=127.0.0.1,port=$port
# host_tpm_commands CC: how many commands with this command code the host TPM received so far.
host_tpm_commands() {
    python3 - "$1" host-tpm/commands.log <<'PY'
import sys
want, n, lines = int(sys.argv[1], 16), 0, open(sys.argv[2]).read().splitlines()
for i, l in enumerate(lines):
    if "SWTPM_IO_Read:" in l and i + 1 < len(lines):
        b = lines[i + 1].split()
        if len(b) >= 10 and (want == 0 or int("".join(b[6:10]), 16) == want):
            n += 1
print(n)
PY
}

# The node: boot log in the PCRs and a short IMA list.
cp "$LAB_BOOTLOG" eventlog.bin
"$TC_BIN" lab boot --tcti "$tcti" --eventlog eventlog.bin >/dev/null
"$TC_BIN" lab ima-start --tcti "$tcti" --log ima.log
for f in "${LAB_WORKLOAD[@]}"; do
    "$TC_BIN" lab measure --tcti "$tcti" --log ima.log --path "$f" --content "contents of $f"
done

# A test CA: the agent's server certificate (as enrollment would issue it) and the coordinator's.
agent_alone_ca
issue coord coordinator
issue agent "node:$node" IP:127.0.0.1
agent_alone_state state agent "$tcti" ak.pub

aport=$(lab_free_port)
cat >agent.conf <<EOF
[agent]
node_id = $node
tcti = $tcti
state_dir = state
listen_address = 127.0.0.1
listen_port = $aport
coordinator_url = https://127.0.0.1:1
ca_file = ca.pem
eventlog_path = eventlog.bin
ima_path = ima.log
ek_alg = ecc
log_level = debug
EOF
LAB_LOG=$d/agent.log
lab_spawn "$LAB_AGENT_BIN" -c agent.conf
agent_pid=$LAB_LAST_PID
for _ in $(seq 200); do
    grep -q "listening on port\|serving on" agent.log 2>/dev/null && break
    kill -0 "$agent_pid" 2>/dev/null || { cat agent.log; tc_fail "agent exited"; }
    sleep 0.05
done
url=https://127.0.0.1:$aport

# call METHOD PATH [BODYFILE]: as the coordinator; prints the HTTP status, the body in out.json.
call() {
    curl -sS --max-time 60 --cacert ca.pem --cert coord.pem --key coord.key -X "$1" -o out.json \
        -w '%{http_code}' ${3:+-H 'Content-Type: application/json' --data-binary "@$3"} \
        "$url$2" 2>curl.err || echo "curl-failed"
}

# The VMs: vTPMs created by the agent, each with an AK (tcp mode); a guest booted on each (vm1
# with a UEFI log, the others without), running the guest workload.
vms=()
for i in $(seq 1 "$nvms"); do
    vm=vm$i
    printf '{"vm_id": "%s", "nonce": "%s", "mode": "tcp"}' "$vm" "$(openssl rand -hex 32)" >vm.json
    st=$(call POST /v1/vms vm.json)
    [ "$st" = 201 ] || { cat out.json curl.err; tail -20 agent.log; tc_fail "create $vm: HTTP $st"; }
    lab_json out.json 'j["ak_pub"]' | base64 -d >"$vm.ak"
    [ -s "$vm.ak" ] || tc_fail "$vm: no AK in the creation answer"
    if [ "$i" = 1 ]; then
        lab_vm_guest_start "$node" "$vm"
    else
        LAB_GUEST_BOOTLOG=none lab_vm_guest_start "$node" "$vm"
    fi
    vms+=("$vm")
done
[ -f "$(lab_vm_dir "$node" vm1)/guest_eventlog" ] || tc_fail "vm1's guest has no boot log"
[ ! -f "$(lab_vm_dir "$node" vm2)/guest_eventlog" ] || tc_fail "vm2's guest should have none"
# vm2's known-good guest list makes a tenant's runtime policy.
"$TC_BIN" policy create runtime --from-ima-log "$(lab_vm_dir "$node" vm2)/guest_ima" \
    -o guest-policy.json >/dev/null
tc_pass "$nvms VMs created through the agent, guests booted on their vTPMs"

# request NONCE VMS_JSON: a batch challenge (VMS_JSON "" for none).
request() {
    if [ -n "$2" ]; then
        printf '{"nonce": "%s", "pcr_selection": "%s", "ima_from": 0, "want_eventlog": false, "vms": %s, "vm_pcr_selection": "%s"}' \
            "$1" "$sel" "$2" "$vmsel" >req.json
    else
        printf '{"nonce": "%s", "pcr_selection": "%s", "ima_from": 0, "want_eventlog": false}' \
            "$1" "$sel" >req.json
    fi
}
# vms_json [ID:IMA_FROM:WANT_EVENTLOG...]
vms_json() {
    python3 -c 'import json, sys
print(json.dumps([{"id": a.split(":")[0], "ima_from": int(a.split(":")[1]),
                   "want_eventlog": a.split(":")[2] == "1"} for a in sys.argv[1:]]))' "$@"
}

# check_answer NONCE: splits out.json into files and checks the batch from the protocol text:
# leaves, proofs and root recomputed here; writes host.qd (the expected host qualifyingData),
# host.{msg,sig,pcrs} and per quoted VM ID.{msg,sig,pcrs,ima,evlog}; prints "ID index" lines for
# quote entries and "ID error CHECK" for error entries into entries.txt.
check_answer() {
    python3 - "$1" <<'PY' >entries.txt
import base64, hashlib, json, sys
nonce = bytes.fromhex(sys.argv[1])
a = json.load(open("out.json"))
b64 = lambda s: base64.b64decode(s, validate=True)
H = lambda *p: hashlib.sha256(b"".join(p)).digest()
open("host.msg", "wb").write(b64(a["attest"]))
open("host.sig", "wb").write(b64(a["signature"]))
json.dump(a["pcrs"], open("host.pcrs", "w"))
vms = a.get("vms")
batch = a.get("batch")
quoted = [v for v in (vms or []) if "error" not in v]
if batch is None:
    assert not quoted, "quote entries without a batch"
    open("host.qd", "w").write(nonce.hex())
else:
    root, count = bytes.fromhex(batch["root"]), batch["count"]
    assert count == len(quoted) and count >= 1, (count, len(quoted))
    open("host.qd", "w").write(H(b"trustcloud-batch-v1", nonce, root).hex())
for k, v in enumerate(quoted):
    assert v["index"] == k, ("index", v["id"], v["index"], k)
    att, sig = b64(v["attest"]), b64(v["signature"])
    vid = v["id"].encode()
    h = H(b"\x00", bytes([len(vid)]), vid, H(att), H(sig))
    # Up the tree: at each level the sibling when there is one, else the node moves up.
    i, n, proof = k, count, [bytes.fromhex(p) for p in v["proof"]]
    while n > 1:
        if i % 2 == 1:
            h = H(b"\x01", proof.pop(0), h)
        elif i + 1 < n:
            h = H(b"\x01", h, proof.pop(0))
        i, n = i // 2, (n + 1) // 2
    assert not proof and h == root, ("proof", v["id"])
    open(v["id"] + ".msg", "wb").write(att)
    open(v["id"] + ".sig", "wb").write(sig)
    json.dump(v["pcrs"], open(v["id"] + ".pcrs", "w"))
    open(v["id"] + ".ima", "wb").write(b64(v["ima"]["list"]))
    if "eventlog" in v:
        open(v["id"] + ".evlog", "wb").write(b64(v["eventlog"]))
    print(v["id"], "index", v["index"], v["ima"]["first"], "eventlog" if "eventlog" in v else "-")
for v in vms or []:
    if "error" in v:
        assert set(v) == {"id", "error", "check"}, v
        print(v["id"], "error", v["check"])
PY
}
# verify_vm ID NONCE [APPRAISE ARGS...]: the VM's quote with its AK and the nonce, its guest IMA
# list replayed against the quoted PCR 10 (and its boot log when it sent one).
verify_vm() {
    local id=$1 n=$2
    shift 2
    local ev=()
    [ -f "$id.evlog" ] && ev=(--eventlog "$id.evlog")
    "$TC_BIN" appraise --ak "$id.ak" --message "$id.msg" --signature "$id.sig" --pcrs "$id.pcrs" \
        --nonce "$n" --pcr-list "$vmsel" --ima-log "$id.ima" "${ev[@]}" "$@" --json >"$id.appraise"
}
entry() { awk -v id="$1" '$1 == id' entries.txt; }

# ---- round 1: every VM, one unknown; vm1 with its boot log ------------------------------------
quotes_before=$(host_tpm_commands 158)
cmds_before=$(host_tpm_commands 0)
n=$(openssl rand -hex 32)
args=(vm1:0:1)
for vm in "${vms[@]:1}"; do args+=("$vm:0:0"); done
args+=(ghost:0:0)
request "$n" "$(vms_json "${args[@]}")"
st=$(call POST /v1/quote req.json)
[ "$st" = 200 ] || { cat out.json curl.err; tail -20 agent.log; tc_fail "batch quote: HTTP $st"; }
rm -f ./*.evlog
check_answer "$n" || { head -c 2000 out.json; tc_fail "batch answer does not follow the protocol"; }
quotes=$(($(host_tpm_commands 158) - quotes_before))
cmds=$(($(host_tpm_commands 0) - cmds_before))
[ "$quotes" = 1 ] || tc_fail "the host TPM quoted $quotes times in one round (expected 1)"
"$TC_BIN" quote verify --ak ak.pub --message host.msg --signature host.sig --pcrs host.pcrs \
    --nonce "$(cat host.qd)" --pcr-list "$sel" >/dev/null ||
    tc_fail "host quote does not verify against SHA-256(label || nonce || root)"
"$TC_BIN" quote verify --ak ak.pub --message host.msg --signature host.sig --pcrs host.pcrs \
    --nonce "$n" --pcr-list "$sel" >/dev/null 2>&1 &&
    tc_fail "host quote verifies against the bare nonce in a batch round"
[ "$(lab_json out.json 'j["batch"]["count"]')" = "$nvms" ] || tc_fail "batch count"
[ "$(entry ghost)" = "ghost error vm.unknown" ] || tc_fail "unknown VM: $(entry ghost)"
for vm in "${vms[@]}"; do
    entry "$vm" | grep -q " index " || tc_fail "$vm was not quoted: $(entry "$vm")"
    verify_vm "$vm" "$n" || { cat "$vm.appraise"; tc_fail "$vm's evidence does not verify"; }
done
[ -f vm1.evlog ] && [ ! -f vm2.evlog ] || tc_fail "guest boot log: only vm1 asked for it"
cmp -s vm1.evlog "$LAB_BOOTLOG" || tc_fail "vm1's boot log differs from its guest's"
lab_json vm1.appraise 'j["properties"]["boot"]' | grep -qx pass || tc_fail "vm1 boot replay"
# The host's own evidence is still complete (IMA list from ima_from, verified by appraise).
lab_json out.json 'j["ima"]["list"]' | base64 -d >host.ima
"$TC_BIN" appraise --ak ak.pub --message host.msg --signature host.sig --pcrs host.pcrs \
    --nonce "$(cat host.qd)" --pcr-list "$sel" --ima-log host.ima >/dev/null ||
    tc_fail "host IMA list does not replay to the host quote"
tc_pass "round 1: host quoted once ($cmds host TPM commands) over the batch root, $nvms VM quotes with proofs, guest logs replay, unknown VM reported"
grep "batch: " agent.log | tail -1 | sed 's/.*batch: /  agent: batch: /'

# ---- round 2: the guests grew, lists continue from ima_from; one VM stopped ------------------
imacount() { "$TC_BIN" ima show --json "$1" | lab_json - 'len(j["entries"]) if isinstance(j, dict) else len(j)'; }
n1=$(imacount vm1.ima)
lab_vm_grow "$node" vm1
lab_vm_grow "$node" vm1
st=$(call POST /v1/vms/vm3/stop /dev/null)
[ "$st" = 200 ] || { cat out.json; tc_fail "stop vm3: HTTP $st"; }
n=$(openssl rand -hex 32)
args=("vm1:$n1:0")
for vm in "${vms[@]:1}"; do args+=("$vm:0:0"); done
request "$n" "$(vms_json "${args[@]}")"
st=$(call POST /v1/quote req.json)
[ "$st" = 200 ] || { cat out.json; tc_fail "round 2: HTTP $st"; }
rm -f ./*.evlog
check_answer "$n" || tc_fail "round 2 answer does not follow the protocol"
[ "$(entry vm3)" = "vm3 error vm.not_running" ] || tc_fail "stopped VM: $(entry vm3)"
[ "$(lab_json out.json 'j["batch"]["count"]')" = $((nvms - 1)) ] || tc_fail "round 2 count"
[ "$(entry vm1 | awk '{print $4}')" = "$n1" ] || tc_fail "vm1's list does not start at ima_from"
[ "$(imacount vm1.ima)" = 2 ] || tc_fail "vm1's delta should hold the 2 new entries"
[ ! -f vm1.evlog ] || tc_fail "vm1 sent a boot log nobody asked for"
"$TC_BIN" quote verify --ak ak.pub --message host.msg --signature host.sig --pcrs host.pcrs \
    --nonce "$(cat host.qd)" --pcr-list "$sel" >/dev/null || tc_fail "round 2 host quote"
"$TC_BIN" quote verify --ak vm1.ak --message vm1.msg --signature vm1.sig --pcrs vm1.pcrs \
    --nonce "$n" --pcr-list "$vmsel" >/dev/null || tc_fail "round 2 vm1 quote"
verify_vm vm2 "$n" --runtime-policy guest-policy.json || { cat vm2.appraise; tc_fail "vm2"; }
tc_pass "round 2: guest IMA lists continue from ima_from, a stopped VM is an error entry"

# ---- round 3: a guest runs something outside its policy -------------------------------------
lab_vm_tamper "$node" vm2
n=$(openssl rand -hex 32)
request "$n" "$(vms_json vm2:0:0)"
st=$(call POST /v1/quote req.json)
[ "$st" = 200 ] || tc_fail "round 3: HTTP $st"
check_answer "$n" || tc_fail "round 3 answer"
[ "$(lab_json out.json 'j["batch"]["count"]')" = 1 ] || tc_fail "one VM, one leaf"
[ "$(lab_json out.json 'j["vms"][0]["proof"]')" = "[]" ] || tc_fail "a single leaf has no proof"
verify_vm vm2 "$n" || { cat vm2.appraise; tc_fail "tampered vm2's evidence is still consistent"; }
if verify_vm vm2 "$n" --runtime-policy guest-policy.json; then
    tc_fail "the guest's tampering passed its runtime policy"
fi
grep -q guest-miner vm2.appraise || { cat vm2.appraise; tc_fail "the failure should name the file"; }
tc_pass "round 3: a guest measurement outside the policy is in the quoted evidence and caught"

# ---- no quotable VM, and no "vms" at all: the host quote uses the nonce itself ---------------
n=$(openssl rand -hex 32)
request "$n" "$(vms_json vm3:0:0 ghost:0:1)"
st=$(call POST /v1/quote req.json)
[ "$st" = 200 ] || tc_fail "all-error batch: HTTP $st"
check_answer "$n" || tc_fail "all-error answer"
lab_json out.json '"batch" in j' | grep -qx False || tc_fail "a batch without a quoted VM"
"$TC_BIN" quote verify --ak ak.pub --message host.msg --signature host.sig --pcrs host.pcrs \
    --nonce "$n" --pcr-list "$sel" >/dev/null || tc_fail "host quote without quoted VMs"
request "$n" "[]"
st=$(call POST /v1/quote req.json)
[ "$st" = 200 ] || tc_fail "empty batch: HTTP $st"
lab_json out.json '"batch" not in j and j["vms"] == []' | grep -qx True || tc_fail "empty batch"
check_answer "$n" || tc_fail "empty batch answer"
"$TC_BIN" quote verify --ak ak.pub --message host.msg --signature host.sig --pcrs host.pcrs \
    --nonce "$n" --pcr-list "$sel" >/dev/null || tc_fail "host quote of an empty batch"
request "$n" ""
st=$(call POST /v1/quote req.json)
[ "$st" = 200 ] || tc_fail "plain quote: HTTP $st"
lab_json out.json '"batch" in j or "vms" in j' | grep -qx False || tc_fail "plain answer changed"
check_answer "$n" || tc_fail "plain answer"
"$TC_BIN" quote verify --ak ak.pub --message host.msg --signature host.sig --pcrs host.pcrs \
    --nonce "$n" --pcr-list "$sel" >/dev/null || tc_fail "plain host quote"
# Hostile VM lists are refused with their check, and the agent keeps serving.
printf '{"nonce": "%s", "pcr_selection": "%s", "vms": [{"id": "a"}, {"id": "a"}]}' "$n" "$sel" \
    >req.json
st=$(call POST /v1/quote req.json)
[ "$st" = 400 ] && grep -q request.vms.id out.json || tc_fail "duplicate VM ids: HTTP $st"
tc_pass "no quotable VM / no vms: host quote over the nonce; hostile VM lists refused"

kill -TERM "$agent_pid"
for _ in $(seq 100); do kill -0 "$agent_pid" 2>/dev/null || break; sleep 0.05; done
kill -0 "$agent_pid" 2>/dev/null && tc_fail "agent did not stop on SIGTERM"
exit 0
