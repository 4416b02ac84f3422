/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Appraisal: one call that turns a node's evidence into a verdict, in the
 * order a verifier must check it:
 *   1. the quote (signature by the AK, nonce, selection, PCR digest, counters);
 *   2. the UEFI event log: its replay must equal every quoted PCR it covers
 *      (PCR 10 excluded: that is IMA's), then the measured-boot policy;
 *   3. expected PCR values (a PCR policy), if any;
 *   4. the IMA list: incremental replay from the saved point, matched against
 *      the quoted PCR 10, and every new entry up to the match checked against
 *      the runtime policy.
 * Pure function over bytes and parsed structures: no TPM, no I/O.
 */
#ifndef TRUSTCLOUD_APPRAISAL_H
#define TRUSTCLOUD_APPRAISAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "trustcloud/eventlog.h"
#include "trustcloud/ima.h"
#include "trustcloud/mb_policy.h"
#include "trustcloud/pcrs.h"
#include "trustcloud/quote.h"
#include "trustcloud/reason.h"
#include "trustcloud/runtime_policy.h"

struct tc_appraisal_input {
    /* The quote (required). */
    const struct tc_ak *ak;
    const uint8_t *attest;
    size_t attest_len;
    const uint8_t *sig;
    size_t sig_len;
    const struct tc_pcr_set *pcrs;
    struct tc_quote_expect expect;
    /* Boot (optional): a parsed UEFI log and the measured-boot policy to hold it to. */
    const struct tc_evlog *eventlog;
    const struct tc_mb_policy *mb_policy;
    /* Expected PCR values (optional): every PCR present here must be quoted and equal. */
    const struct tc_pcr_set *pcr_policy;
    /* Runtime (optional): the IMA list (full, or a delta starting at ima_state->count) and the
     * runtime policy for its new entries. ima_state is advanced only when everything passes. */
    const struct tc_ima_log *ima;
    struct tc_ima_replay_state *ima_state;
    const struct tc_runtime_policy *runtime_policy;
};

struct tc_appraisal {
    bool valid;
    struct tc_quote_info quote;   /* filled once the quote verified */
    bool quote_ok, boot_ok, pcrs_ok, runtime_ok; /* each true when checked and passed */
    bool boot_checked, pcrs_checked, runtime_checked;
    uint64_t ima_entries;         /* entries verified in total after this round */
    uint64_t ima_new;             /* entries verified in this round */
    struct tc_reason why;         /* the first failure */
};

/* Returns 0 when every requested check passed, else the failing check's TC_ERR_* (also in
 * out->why). Never partially advances in->ima_state. */
int tc_appraise(const struct tc_appraisal_input *in, struct tc_appraisal *out);

/* {"valid": bool, "properties": {"quote": "pass", "boot": "pass|fail|not_checked", ...},
 *  "quote": {...}, "ima_entries": n, "error": {...}} */
json_t *tc_appraisal_to_json(const struct tc_appraisal *a);

#endif
