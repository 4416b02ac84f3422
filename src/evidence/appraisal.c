/* SPDX-License-Identifier: Apache-2.0 */
#define LOGMODULE "appraisal"
#include "trustcloud/appraisal.h"

#include <string.h>

#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"

/* Every PCR both quoted and touched by the boot log must equal its replay (PCR 10 belongs to
 * IMA). PCRs quoted but absent from the log are not the log's business. */
static int boot_matches_quote(const struct tc_pcr_set *replayed, const struct tc_pcr_set *quoted,
                              const struct tc_pcr_selection *sel, struct tc_reason *why)
{
    size_t compared = 0;
    for (size_t b = 0; b < sel->nbanks; b++) {
        const struct tc_hash_alg *alg = sel->bank[b].alg;
        const struct tc_pcr_bank *rb = tc_pcrs_bank_const(replayed, alg);
        const struct tc_pcr_bank *qb = tc_pcrs_bank_const(quoted, alg);
        if (rb == NULL || qb == NULL)
            continue;
        for (unsigned i = 0; i < TC_PCR_COUNT; i++) {
            uint32_t bit = 1u << i;
            if (i == TC_IMA_PCR || !(sel->bank[b].mask & bit) || !(rb->mask & bit))
                continue;
            if (memcmp(rb->value[i], qb->value[i], alg->size) != 0) {
                char want[2 * TC_MAX_DIGEST + 1], got[2 * TC_MAX_DIGEST + 1];
                tc_hex_encode(qb->value[i], alg->size, want);
                tc_hex_encode(rb->value[i], alg->size, got);
                return tc_fail(why, TC_ERR_MISMATCH, "boot.pcr_mismatch", -1,
                               "%s PCR %u: quoted %.16s..., event log replays to %.16s...",
                               alg->name, i, want, got);
            }
            compared++;
        }
    }
    if (compared == 0)
        return tc_fail(why, TC_ERR_MISMATCH, "boot.pcr_mismatch", -1,
                       "the quote covers no PCR that the event log measures");
    return 0;
}

static int pcr_policy_check(const struct tc_pcr_set *policy, const struct tc_pcr_set *quoted,
                            const struct tc_pcr_selection *sel, struct tc_reason *why)
{
    for (size_t b = 0; b < policy->nbanks; b++) {
        const struct tc_pcr_bank *pb = &policy->bank[b];
        const struct tc_pcr_bank *qb = tc_pcrs_bank_const(quoted, pb->alg);
        uint32_t quoted_mask = 0;
        for (size_t s = 0; s < sel->nbanks; s++)
            if (sel->bank[s].alg == pb->alg)
                quoted_mask = sel->bank[s].mask;
        for (unsigned i = 0; i < TC_PCR_COUNT; i++) {
            uint32_t bit = 1u << i;
            if (!(pb->mask & bit))
                continue;
            if (qb == NULL || !(quoted_mask & bit))
                return tc_fail(why, TC_ERR_POLICY, "pcr.not_quoted", -1,
                               "%s PCR %u is in the PCR policy but not in the quote", pb->alg->name,
                               i);
            if (memcmp(pb->value[i], qb->value[i], pb->alg->size) != 0)
                return tc_fail(why, TC_ERR_POLICY, "pcr.value", -1,
                               "%s PCR %u differs from the PCR policy", pb->alg->name, i);
        }
    }
    return 0;
}

/* The bank whose PCR 10 the IMA replay is matched against: sha256 when quoted, else the first
 * quoted bank that covers PCR 10. */
static const struct tc_hash_alg *ima_bank(const struct tc_pcr_selection *sel)
{
    const struct tc_hash_alg *first = NULL;
    for (size_t b = 0; b < sel->nbanks; b++) {
        if (!(sel->bank[b].mask & (1u << TC_IMA_PCR)))
            continue;
        if (strcmp(sel->bank[b].alg->name, "sha256") == 0)
            return sel->bank[b].alg;
        if (first == NULL)
            first = sel->bank[b].alg;
    }
    return first;
}

int tc_appraise(const struct tc_appraisal_input *in, struct tc_appraisal *out)
{
    memset(out, 0, sizeof(*out));
    tc_reason_clear(&out->why);
    struct tc_reason *why = &out->why;
    int rc;
    struct tc_pcr_set replayed;

    if (in->ak == NULL || in->attest == NULL || in->sig == NULL || in->pcrs == NULL)
        return tc_fail(why, TC_ERR_INVALID_ARG, "appraisal.input", -1, "no quote to appraise");
    if ((rc = tc_quote_verify(in->ak, in->attest, in->attest_len, in->sig, in->sig_len, in->pcrs,
                              &in->expect, &out->quote, why)) != 0)
        return rc;
    out->quote_ok = true;
    const struct tc_pcr_selection *sel = &out->quote.selection;

    if (in->eventlog) {
        out->boot_checked = true;
        if ((rc = tc_evlog_replay(in->eventlog, &replayed, why)) != 0 ||
            (rc = boot_matches_quote(&replayed, in->pcrs, sel, why)) != 0)
            return rc;
        if (in->mb_policy &&
            (rc = tc_mb_policy_check(in->mb_policy, in->eventlog, &replayed, why)) != 0)
            return rc;
        out->boot_ok = true;
    } else if (in->mb_policy) {
        return tc_fail(why, TC_ERR_POLICY, "boot.no_eventlog", -1,
                       "a measured-boot policy applies but no event log was supplied");
    }

    if (in->pcr_policy) {
        out->pcrs_checked = true;
        if ((rc = pcr_policy_check(in->pcr_policy, in->pcrs, sel, why)) != 0)
            return rc;
        out->pcrs_ok = true;
    }

    if (in->ima) {
        out->runtime_checked = true;
        if (in->ima_state == NULL)
            return tc_fail(why, TC_ERR_INVALID_ARG, "appraisal.input", -1, "no IMA replay state");
        const struct tc_hash_alg *alg = ima_bank(sel);
        if (alg == NULL)
            return tc_fail(why, TC_ERR_POLICY, "ima.not_quoted", -1,
                           "an IMA list was supplied but PCR 10 is not quoted");
        const struct tc_pcr_bank *qb = tc_pcrs_bank_const(in->pcrs, alg);
        /* Work on a copy: the caller's state moves only when every check passed. */
        struct tc_ima_replay_state st = *in->ima_state;
        uint64_t before = st.count, matched = 0;
        if ((rc = tc_ima_replay_match_quote(&st, in->ima, alg, TC_IMA_PCR, qb->value[TC_IMA_PCR],
                                            &matched, why)) != 0)
            return rc;
        if (in->runtime_policy && matched > before) {
            /* New entries are positions [before - first_index, matched - first_index) of the
             * supplied list (a full list starts at 0, a delta at the saved count). */
            size_t from = (size_t)(before - in->ima->first_index);
            size_t to = (size_t)(matched - in->ima->first_index);
            if ((rc = tc_runtime_policy_check_log(in->runtime_policy, in->ima, from, to, why)) != 0)
                return rc;
        }
        *in->ima_state = st;
        out->ima_entries = matched;
        out->ima_new = matched - before;
        out->runtime_ok = true;
    }
    out->valid = true;
    return 0;
}

static const char *property(bool checked, bool ok, bool failed_here)
{
    if (!checked)
        return "not_checked";
    if (ok)
        return "pass";
    return failed_here ? "fail" : "not_reached";
}

json_t *tc_appraisal_to_json(const struct tc_appraisal *a)
{
    json_t *j = json_object(), *props = json_object();
    if (j == NULL || props == NULL) {
        json_decref(j);
        json_decref(props);
        return NULL;
    }
    bool failed = !a->valid;
    const char *check = a->why.check;
    json_object_set_new(j, "valid", json_boolean(a->valid));
    json_object_set_new(props, "quote", json_string(a->quote_ok ? "pass" : "fail"));
    json_object_set_new(
        props, "boot",
        json_string(property(a->boot_checked, a->boot_ok,
                             failed && (!strncmp(check, "boot", 4) || !strncmp(check, "mb", 2) ||
                                        !strncmp(check, "eventlog", 8)))));
    json_object_set_new(
        props, "pcrs",
        json_string(property(a->pcrs_checked, a->pcrs_ok, failed && !strncmp(check, "pcr.", 4))));
    json_object_set_new(props, "runtime",
                        json_string(property(a->runtime_checked, a->runtime_ok,
                                             failed && !strncmp(check, "ima", 3))));
    json_object_set_new(j, "properties", props);
    if (a->quote_ok)
        json_object_set_new(j, "quote", tc_quote_info_to_json(&a->quote));
    if (a->runtime_ok) {
        json_object_set_new(j, "ima_entries", json_integer((json_int_t)a->ima_entries));
        json_object_set_new(j, "ima_new", json_integer((json_int_t)a->ima_new));
    }
    if (failed)
        json_object_set_new(j, "error", tc_reason_to_json(&a->why));
    return j;
}
