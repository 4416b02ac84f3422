#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The evidence-core demo: a fresh swtpm becomes a "node" that booted with a real machine's UEFI
# event log and runs a measured workload; its quote, boot log and IMA list are verified; then
# one IMA entry is tampered with and the verifier rejects it. Leaves nothing running.
# Usage: scripts/demo-evidence.sh [PATH/TO/trustcloud]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
TC=${1:-$root/build/trustcloud}
TC=$(cd "$(dirname "$TC")" && pwd)/$(basename "$TC")
fixtures=${TC_FIXTURES:-$root/../shared/fixtures}
bootlog=$fixtures/eventlog/event-gce-ubuntu-2104-log.bin
[ -f "$bootlog" ] || { echo "demo: fixtures not found at $fixtures" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/trustcloud-demo.XXXXXX")
swtpm_pid=
cleanup() {
    [ -n "$swtpm_pid" ] && kill "$swtpm_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*" | sed "s|$TC|trustcloud|g; s|$fixtures|fixtures|g"; "$@"; }

step "1. A fresh software TPM on a free loopback port"
port=$(python3 -c 'import socket
for p in range(23000, 40000, 2):
    try:
        a = socket.socket(); a.bind(("127.0.0.1", p)); b = socket.socket(); b.bind(("127.0.0.1", p + 1))
        a.close(); b.close(); print(p); break
    except OSError: pass')
mkdir tpm
swtpm socket --tpm2 --server "type=tcp,port=$port,bindaddr=127.0.0.1" \
    --ctrl "type=tcp,port=$((port + 1)),bindaddr=127.0.0.1" --tpmstate "dir=$work/tpm" \
    --flags not-need-init,startup-clear --pid "file=$work/tpm/pid" -d
for _ in $(seq 100); do [ -s tpm/pid ] && break; sleep 0.02; done
swtpm_pid=$(cat tpm/pid)
export TC_TCTI="swtpm:host=127.0.0.1,port=$port"
run "$TC" tpm info

step "2. Endorsement key and a restricted signing attestation key (ECC P-256) under it"
run "$TC" tpm ek --alg ecc --out-pub ek.pem >/dev/null
run "$TC" tpm ak create --ctx ak.ctx --alg ecc --out-tpm2b ak.pub --out-pub ak.pem

step "3. Boot: a real machine's UEFI event log is measured into the PCRs"
run "$TC" lab boot --eventlog "$bootlog"

step "4. Runtime: IMA measures boot_aggregate and a workload into PCR 10"
run "$TC" lab ima-start --log ima.log
for f in /usr/bin/bash /usr/bin/ls /usr/lib/systemd/systemd /usr/sbin/sshd /etc/ssh/sshd_config; do
    "$TC" lab measure --log ima.log --path "$f" --content "contents of $f"
done
cat ima.log

step "5. Reference policies from the known-good state"
run "$TC" policy create measured-boot --from-eventlog "$bootlog" -o mb-policy.json
run "$TC" policy create runtime --from-ima-log ima.log -o runtime-policy.json

appraise() {
    nonce=$(openssl rand -hex 20)
    "$TC" tpm quote --tcti "$TC_TCTI" --ak-ctx ak.ctx --ek-alg ecc --nonce "$nonce" \
        --pcr-list sha256:0,1,2,3,4,5,6,7,8,9,10 --message quote.msg --signature quote.sig \
        --pcrs quote.pcrs >/dev/null
    run "$TC" appraise --ak ak.pub --message quote.msg --signature quote.sig --pcrs quote.pcrs \
        --nonce "$nonce" --pcr-list sha256:0,1,2,3,4,5,6,7,8,9,10 \
        --eventlog "$bootlog" --mb-policy mb-policy.json \
        --ima-log ima.log --runtime-policy runtime-policy.json "$@"
}

step "6. Fresh nonce, quote, full appraisal: quote + boot log + IMA list + policies"
appraise

step "7. Tamper: an attacker rewrites an IMA entry to hide what really ran"
cp ima.log ima.orig
sed -i '3s/ima-ng sha256:[0-9a-f]*/ima-ng sha256:'"$(printf 'trojan' | sha256sum | cut -d' ' -f1)"'/' ima.log
sed -n 3p ima.log
set +e
appraise --json
rc=$?
set -e
[ $rc -eq 1 ] || { echo "demo: tampered log was not rejected (exit $rc)" >&2; exit 1; }

step "8. Tamper: the log is restored, but a binary outside the policy runs"
cp ima.orig ima.log
"$TC" lab measure --log ima.log --path /tmp/.hidden/miner --content "not in the policy"
set +e
appraise
rc=$?
set -e
[ $rc -eq 1 ] || { echo "demo: unknown binary was not rejected (exit $rc)" >&2; exit 1; }

step "Summary"
echo "genuine evidence: VALID; rewritten IMA entry: REJECTED (template hash);"
echo "binary outside the runtime policy: REJECTED (ima.policy.not_in_policy)."
