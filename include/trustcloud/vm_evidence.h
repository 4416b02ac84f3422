/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A VM's attestation as a tenant can check it alone (docs/protocol.md, "VM evidence"): the
 * coordinator keeps, per VM, its last quoted round as {"format": "trustcloud-vm-evidence-v1",
 * "nonce", "round", "ts", "vm_state", "host_state", "vm": {"id", "ak_pub", "attest",
 * "signature", "pcrs"}, "host": {... the same, "pcrs" only in an operator's copy}, "batch":
 * {"root", "count", "index", "proof"}}. The host's PCR values are not a tenant's business (they
 * describe the host's firmware and kernel): its quote is checked for signature and qualifying
 * data, and its PCR digest only when the values are given. The host quote is still the whole
 * signed TPMS_ATTEST (PCR digest, clock, counters, firmware version), which info->host_quote
 * returns. Checking it needs no TPM and no trust in the coordinator's
 * verdict, only in the two AKs (which the coordinator enrolled by credential activation):
 *
 *   - the VM's quote is signed by the VM AK over the nonce and its PCR values;
 *   - its leaf (id, quote, signature) is in the tree under root (inclusion proof);
 *   - the host's quote is signed by the host AK over SHA-256(label || nonce || root): the host
 *     TPM vouched for exactly this set of VM quotes, fresh for that nonce.
 *
 * Pure function over untrusted JSON (every field bounded and decoded strictly).
 */
#ifndef TRUSTCLOUD_VM_EVIDENCE_H
#define TRUSTCLOUD_VM_EVIDENCE_H
#include "trustcloud/quote.h"
#include "trustcloud/reason.h"
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define TC_VM_EVIDENCE_FORMAT "trustcloud-vm-evidence-v1"

struct tc_vm_evidence_info {
    char vm_id[65];
    char host_id[129];
    long long round, ts;
    struct tc_quote_info vm_quote, host_quote; /* clock, counters, selection, nonce... */
    uint8_t vm_ak_name[TC_QUOTE_MAX_NAME], host_ak_name[TC_QUOTE_MAX_NAME];
    size_t vm_ak_name_len, host_ak_name_len;
};

/*
 * Verifies the evidence. Optional pins: when vm_ak_name / host_ak_name is given (the TPM name of
 * the AK the caller trusts), the evidence's AK must have exactly that name (check
 * "evidence.vm_ak" / "evidence.host_ak"). Returns 0 with info filled (cleared otherwise), or a
 * negative TC_ERR_* with why naming the check: "evidence.format", "evidence.vm_ak",
 * "evidence.host_ak", "batch.proof", or the quote checks ("quote.nonce", "quote.signature",
 * "quote.pcr_digest", ...) prefixed in the detail by which quote failed.
 */
int tc_vm_evidence_verify(const json_t *evidence, const uint8_t *vm_ak_name, size_t vm_ak_name_len,
                          const uint8_t *host_ak_name, size_t host_ak_name_len,
                          struct tc_vm_evidence_info *info, struct tc_reason *why);

#endif
