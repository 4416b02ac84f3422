#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# VMs through the real platform: one lab node (swtpm host TPM, trustcloud-agent) under a
# coordinator, N VMs created with `trustcloud vm create` (vTPM, sealed state, EK certificate from
# the host's vTPM CA key, certify, chain checks, AK activation), each guest booted with a growing
# IMA list. Prints, for each N:
#   create   median / max ms of one `vm create`, end to end through the CLI
#   answer   median ms of the agent's answer to a batch challenge listing all N VMs (N vTPM
#            quotes + guest IMA lists + tree + ONE host quote), as the coordinator asks it
#   single   the same challenge for the host alone (no VMs): the baseline in the same run
#   trusted  seconds until every VM was trusted, and whether all stayed trusted over 3 intervals
# Usage: bench/vm_round.sh [BUILD_DIR] [N[,N...]]   (default: build 10,50)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
sizes=${2:-10,50}
export TC_SRC=$root TC_BIN=$build/trustcloud TC_BUILD=$build
export TC_FIXTURES=${TC_FIXTURES:-$root/../shared/fixtures}
. "$root/tests/lib/lab.sh"
tc_skip() { echo "vm_round: $*" >&2; exit 2; }
cd "$LAB_DIR"
T=$TC_BIN

lab_coordinator_start interval=2s request_timeout=10s
lab_node_prepare n1
lab_policies_from n1
lab_node_run n1
lab_node_wait n1 trusted 30 >/dev/null || { echo "vm_round: n1 not trusted" >&2; exit 1; }
# The coordinator's identity, to challenge the agent directly as the coordinator does.
$T ca issue --dir coordinator/ca --cn coordinator --out-cert coord.pem --out-key coord.key >/dev/null
agent_url=$(lab_node_field n1 'j["agent_url"]')

median() { sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
challenge() { # VMS_JSON: prints the answer time in ms
    local nonce
    nonce=$(openssl rand -hex 32)
    printf '{"nonce":"%s","pcr_selection":"sha256:0,1,2,3,4,5,6,7,8,9,10","ima_from":0,"want_eventlog":false%s}' \
        "$nonce" "$1" >chal.json
    curl -sS --max-time 120 --cacert coordinator/ca/ca.pem --cert coord.pem --key coord.key \
        -H 'Content-Type: application/json' --data-binary @chal.json -o answer.json \
        -w '%{time_total}\n' "$agent_url/v1/quote" | awk '{printf "%.1f\n", $1 * 1000}'
}

printf '%6s %12s %12s %12s %12s %10s %14s\n' VMs "create p50" "create max" "answer p50" \
    "single p50" ratio "all trusted s"
have=0
policy_added=0
IFS=, read -r -a ns <<<"$sizes"
for n in "${ns[@]}"; do
    : >create.ms
    while [ "$have" -lt "$n" ]; do
        have=$((have + 1))
        t0=$(date +%s%N)
        $T vm create "vm$have" --node n1 --tenant bench >/dev/null
        echo $((($(date +%s%N) - t0) / 1000000)) >>create.ms
        lab_vm_guest_start n1 "vm$have"
    done
    if [ $policy_added = 0 ]; then
        $T policy create runtime --from-ima-log "$(lab_vm_dir n1 vm1)/guest_ima" -o guest.json
        $T policy add --name guest --kind runtime --file guest.json >/dev/null
        $T policy assign guest --tenant bench >/dev/null
        policy_added=1
    fi
    t0=$(date +%s%N)
    for i in $(seq 1 "$n"); do
        $T vm wait "vm$i" --state trusted --timeout 120 >/dev/null ||
            { echo "vm_round: vm$i not trusted" >&2; exit 1; }
    done
    trusted_s=$(awk -v ns=$(($(date +%s%N) - t0)) 'BEGIN {printf "%.1f", ns / 1e9}')
    vms=$(seq 1 "$n" | awk '{printf "%s{\"id\":\"vm%d\",\"ima_from\":0,\"want_eventlog\":false}", (NR > 1 ? "," : ""), $1}')
    for _ in 1 2 3 4 5; do challenge ",\"vms\":[$vms]"; done | median >answer.ms
    python3 -c 'import json,sys; a=json.load(open("answer.json")); assert a["batch"]["count"] == int(sys.argv[1]), a.get("batch")' "$n" ||
        { echo "vm_round: the batch answer does not cover $n VMs" >&2; exit 1; }
    for _ in 1 2 3 4 5; do challenge ""; done | median >single.ms
    sleep 6 # three intervals: nothing may leave trusted
    bad=$($T vm list --json | lab_json - 'sum(1 for v in j["vms"] if v["state"] != "trusted")')
    [ "$(lab_node_field n1 'j["state"]')" = trusted ] || bad="$bad+host"
    if [ -s create.ms ]; then
        c50=$(median <create.ms)
        cmax=$(sort -n create.ms | tail -1)
    else
        c50=- cmax=-
    fi
    a=$(cat answer.ms) s=$(cat single.ms)
    printf '%6s %12s %12s %12s %12s %10s %14s%s\n' "$n" "$c50" "$cmax" "$a" "$s" \
        "$(awk -v a="$a" -v s="$s" 'BEGIN {printf "%.1f", a / s}')" "$trusted_s" \
        "$([ "$bad" = 0 ] || echo "  ($bad not trusted after 3 intervals)")"
done
echo
echo "answer: the agent's whole batch answer (vTPM quotes in parallel, guest IMA, tree, one host"
echo "quote, JSON) timed by curl over mTLS; ratio = answer / single (host quote alone)."
