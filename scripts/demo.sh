#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The platform demo (`make demo`): a coordinator on SQLite and three simulated nodes, each a real
# trustcloud-agent on its own software TPM (EK certificate from a private manufacturer CA, a real
# machine's UEFI boot log replayed into its PCRs, a workload measured by IMA into PCR 10). All
# enroll by credential activation and become trusted. Each node then hosts two tenants' VMs, each
# with a vTPM whose EK certificate comes from a key inside the host's TPM; the VMs are attested in
# their host's round (one host quote over a Merkle tree of the vTPM quotes). A tampered guest
# turns only its VM untrusted; a node that runs a program outside the policy turns untrusted with
# the reason, its VMs with it, the webhook fires, and the others stay trusted. Nothing is left
# running afterwards. The evidence-core demo (one TPM, no daemons) is scripts/demo-evidence.sh.
# Usage: scripts/demo.sh [PATH/TO/trustcloud]  (trustcloud-coordinator and trustcloud-agent are
# expected next to it)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
TC_BIN=${1:-$root/build/trustcloud}
TC_BIN=$(cd "$(dirname "$TC_BIN")" && pwd)/$(basename "$TC_BIN")
export TC_SRC=$root TC_BIN TC_BUILD=$(dirname "$TC_BIN")
export TC_FIXTURES=${TC_FIXTURES:-$root/../shared/fixtures}
[ -f "$TC_FIXTURES/eventlog/event-gce-ubuntu-2104-log.bin" ] ||
    { echo "demo: fixtures not found at $TC_FIXTURES (set TC_FIXTURES)" >&2; exit 2; }
command -v swtpm >/dev/null || { echo "demo: swtpm is not installed (make deps)" >&2; exit 2; }
for b in trustcloud-coordinator trustcloud-agent; do
    [ -x "$TC_BUILD/$b" ] || { echo "demo: $TC_BUILD/$b not built" >&2; exit 2; }
done
start=$(date +%s)
. "$root/tests/lib/lab.sh"
# tc_skip would exit 77 in a test; in the demo a missing tool is an error.
tc_skip() { echo "demo: $*" >&2; exit 2; }
cd "$LAB_DIR"

bold=$'\033[1m' red=$'\033[31m' green=$'\033[32m' off=$'\033[0m'
[ -t 1 ] || bold='' red='' green='' off=''
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$off"; }
say() { printf '   %s\n' "$*"; }
# Shows a trustcloud command as an operator would type it, then runs it.
run() {
    printf '$ %s\n' "$*" | sed "s|$TC_BIN|trustcloud|g; s|$LAB_DIR/||g; s|$TC_FIXTURES|fixtures|g"
    "$@"
}
tc() { run "$TC_BIN" "$@"; }

step "1. Coordinator: its own CA, an operator certificate, SQLite store, 1 s attestation interval"
lab_coordinator_start interval=1s
sed 's/^/   /' coordinator/coordinator.conf
say "listening at $TC_COORDINATOR (mutual TLS); the operator CLI uses:"
say "TC_COORDINATOR=$TC_COORDINATOR TC_CERT=operator.pem TC_KEY=operator.key TC_CA=ca.pem"

step "2. A webhook receiver for revocation events, registered as a subscriber"
lab_webhook_start
secret=demo-webhook-secret-$(openssl rand -hex 8)
tc subscriber add --url "$LAB_WEBHOOK_URL" --secret "$secret"

step "3. Three nodes: each a software TPM with a manufacturer-certified EK that boots a real"
say "machine's UEFI event log and runs a workload IMA measures into PCR 10"
for n in node-a node-b node-c; do
    lab_node_prepare "$n"
    say "$n: TPM $(lab_tcti "$n"), $(wc -l <"$n/ima.log") IMA entries, boot log replayed"
done
sed 's/^/   /' node-a/ima.log | cut -c1-150

step "4. Reference policies from the known-good state, stored and assigned to group 'default'"
tc policy create measured-boot --from-eventlog node-a/eventlog.bin -o mb-policy.json
tc policy create runtime --from-ima-log node-a/ima.log -o runtime-policy.json
tc policy add --name golden-boot --kind measured-boot --file mb-policy.json
tc policy add --name golden-runtime --kind runtime --file runtime-policy.json
tc policy assign golden-boot --group default
tc policy assign golden-runtime --group default
tc policy list

step "5. The agents start: enrollment (EK certificate, credential activation, TLS key bound to"
say "the AK), then a fresh-nonce quote + boot log + IMA list appraised every second"
for n in node-a node-b node-c; do lab_node_run "$n"; done
for n in node-a node-b node-c; do
    lab_node_wait "$n" trusted 30 || { tail -5 "$n/agent.log" >&2; echo "demo: $n not trusted" >&2; exit 1; }
done
tc node list

step "6. Work goes on: each node runs known programs again (new IMA entries, still allowed)"
for n in node-a node-b node-c; do lab_node_grow "$n"; lab_node_grow "$n"; done
sleep 2.5
tc node list

step "7. Tenants' VMs: two per node, each a vTPM run by the node's agent; its EK certificate is"
say "issued by a vTPM CA key inside the node's TPM (certified by the node's AK), its AK activated"
tc ca issue --dir coordinator/ca --tenant acme --out-cert acme.pem --out-key acme.key
for n in a b c; do
    tc vm create vm-$n-1 --node node-$n --tenant acme
    tc vm create vm-$n-2 --node node-$n --tenant globex
done
for n in a b c; do for i in 1 2; do lab_vm_guest_start node-$n vm-$n-$i; done; done
say "the guest of vm-a-1 reads its EK certificate from its vTPM (NV 0x01c0000a):"
tpm2_nvread --tcti "$(lab_vm_tcti node-a vm-a-1)" -C o 0x01c0000a -o vm-ek.der 2>/dev/null
openssl x509 -inform DER -in vm-ek.der -noout -subject -issuer | sed 's/^/   /'
openssl x509 -inform DER -in node-a/state/vtpm_ca.crt -out vtpm-ca.pem
run openssl verify -CAfile vtpm-ca.pem <(openssl x509 -inform DER -in vm-ek.der) | sed 's|/dev/fd/[0-9]*|vm-ek.pem|'
tc policy create runtime --from-ima-log "$(lab_vm_dir node-a vm-a-1)/guest_ima" -o guest-runtime.json
tc policy add --name guest-runtime --kind runtime --file guest-runtime.json
tc policy assign guest-runtime --tenant acme
tc policy assign guest-runtime --tenant globex
for n in a b c; do for i in 1 2; do
    "$TC_BIN" vm wait vm-$n-$i --state trusted --timeout 30 >/dev/null ||
        { echo "demo: vm-$n-$i not trusted" >&2; exit 1; }
done; done
tc vm list
say "tenant acme sees only its own VMs:"
run env TC_CERT=acme.pem TC_KEY=acme.key "$TC_BIN" vm list

step "8. Attack inside a VM: the guest of vm-c-2 runs a miner (measured into its vTPM)"
lab_vm_tamper node-c vm-c-2 /tmp/.x/miner
"$TC_BIN" vm wait vm-c-2 --state untrusted --timeout 15 >/dev/null ||
    { echo "demo: vm-c-2 was not found untrusted" >&2; exit 1; }
sleep 1.2
tc vm list --node node-c
say "only vm-c-2 is untrusted: its host node-c and its neighbour vm-c-1 stay trusted"

step "9. Attack on a host: on node-b a program outside the runtime policy runs (really measured + extended)"
lab_node_tamper node-b /tmp/.cache/xmrig
tail -n 1 node-b/ima.log | cut -c1-150 | sed 's/^/   /'
lab_node_wait node-b untrusted 15 || { echo "demo: node-b was not found untrusted" >&2; exit 1; }
tc node show node-b
for i in 1 2; do
    "$TC_BIN" vm wait vm-b-$i --state untrusted --timeout 10 >/dev/null ||
        { echo "demo: vm-b-$i did not follow its host" >&2; exit 1; }
done
tc vm list --node node-b
say "every VM of node-b is untrusted with it (host.untrusted), whatever its own evidence says"

step "10. The webhook fired (signed with the subscriber's secret)"
lab_webhook_wait 4 10 || true
python3 - "$LAB_WEBHOOK_LOG" "$secret" <<'PY'
import hashlib, hmac, json, sys
secret = sys.argv[2].encode()
for line in open(sys.argv[1]):
    r = json.loads(line)
    ev = json.loads(r["body"])
    if ev.get("new_state") != "untrusted":
        continue
    sig = r["headers"].get("X-Trustcloud-Signature", "")
    good = hmac.compare_digest(sig, "sha256=" + hmac.new(secret, r["body"].encode(), hashlib.sha256).hexdigest())
    print("   POST %s  X-Trustcloud-Event: %s  signature %s" % (r["path"], r["headers"].get("X-Trustcloud-Event"), "valid" if good else "INVALID"))
    print("   " + json.dumps(ev, indent=2).replace("\n", "\n   "))
PY
tc events

step "11. The other nodes and their VMs stay trusted (and keep being attested)"
sleep 1.5
tc node list
tc vm list
tc node history node-b --limit 4

step "Summary"
states=$("$TC_BIN" node list --json | lab_json - '" ".join(n["id"] + "=" + n["state"] for n in j["nodes"])')
reason=$("$TC_BIN" node show --json node-b | lab_json - 'j["reason"]["check"] + " at entry " + str(j["reason"]["entry"]) + ": " + j["reason"]["detail"]')
hooks=$(python3 -c 'import json,sys; print(sum(1 for l in open(sys.argv[1]) if json.loads(json.loads(l)["body"]).get("new_state") == "untrusted"))' "$LAB_WEBHOOK_LOG")
vms=$("$TC_BIN" vm list --json | lab_json - '" ".join(v["id"] + "=" + v["state"] for v in j["vms"])')
ok=1
for want in node-a=trusted node-b=untrusted node-c=trusted; do
    case " $states " in *" $want "*) ;; *) ok=0 ;; esac
done
for want in vm-a-1=trusted vm-a-2=trusted vm-b-1=untrusted vm-b-2=untrusted vm-c-1=trusted \
    vm-c-2=untrusted; do
    case " $vms " in *" $want "*) ;; *) ok=0 ;; esac
done
[ "$hooks" -ge 1 ] || ok=0
say "nodes:    $states"
say "vms:      $vms"
say "node-b:   $reason"
say "webhook:  $hooks revocation delivery(ies) to $LAB_WEBHOOK_URL"
say "time:     $(($(date +%s) - start)) s; stopping the coordinator, 3 agents, 3 TPMs, 6 vTPMs, the receiver"
if [ $ok = 1 ]; then
    printf '   %sDEMO OK%s\n' "$green" "$off"
else
    printf '   %sDEMO FAILED%s\n' "$red" "$off"
    exit 1
fi
