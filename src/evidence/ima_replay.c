/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Template-hash checks and PCR replay of IMA measurement lists, full and
 * incremental. A verifier keeps a struct tc_ima_replay_state per agent and
 * feeds it only the entries it has not seen.
 */
#define LOGMODULE "ima"
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "trustcloud/error.h"
#include "trustcloud/ima.h"
#include "trustcloud/log.h"

/* Checks one entry's template hash; computed (if non-NULL) receives H(template data). */
static int check_template_hash(const struct tc_ima_log *log, const struct tc_ima_entry *e, long idx,
                               uint8_t *computed, struct tc_reason *why)
{
    const struct tc_hash_alg *alg = log->template_hash_alg;
    uint8_t h[TC_MAX_DIGEST];
    if (e->violation)
        return 0;
    if (e->template_hash_len != alg->size)
        return tc_fail(why, TC_ERR_FORMAT, "ima.template_hash", idx,
                       "template hash has %zu bytes, %s needs %zu", e->template_hash_len, alg->name,
                       alg->size);
    int rc = tc_hash(alg, e->template_data, e->template_data_len, h);
    if (rc)
        return tc_fail(why, rc, "ima.template_hash", idx, "%s failed", alg->name);
    if (CRYPTO_memcmp(h, e->template_hash, alg->size) != 0) {
        char want[2 * TC_MAX_DIGEST + 1];
        tc_hex_encode(h, alg->size, want);
        return tc_fail(why, TC_ERR_MISMATCH, "ima.template_hash", idx,
                       "template hash does not match the template data of '%.64s' (%s %s)",
                       e->path ? e->path : e->template_name, alg->name, want);
    }
    if (computed)
        memcpy(computed, h, alg->size);
    return 0;
}

int tc_ima_log_verify_template_hashes(const struct tc_ima_log *log, struct tc_reason *why)
{
    for (size_t i = 0; i < log->count; i++) {
        int rc =
            check_template_hash(log, &log->entries[i], (long)(log->first_index + i), NULL, why);
        if (rc)
            return rc;
    }
    return 0;
}

int tc_ima_entry_bank_digest(const struct tc_ima_log *log, const struct tc_ima_entry *e,
                             const struct tc_hash_alg *alg, unsigned flags, uint8_t *out)
{
    if (e->violation) {
        memset(out, 0xff, alg->size);
        return 0;
    }
    if (alg == log->template_hash_alg) {
        memcpy(out, e->template_hash, alg->size);
        return 0;
    }
    if (flags & TC_IMA_REPLAY_SHA1_PADDED) {
        if (log->template_hash_alg->size != 20)
            return TC_ERR_INVALID_ARG;
        memset(out, 0, alg->size);
        memcpy(out, e->template_hash, alg->size < 20 ? alg->size : 20);
        return 0;
    }
    return tc_hash(alg, e->template_data, e->template_data_len, out);
}

int tc_ima_replay_init(struct tc_ima_replay_state *st, const struct tc_hash_alg *const *banks,
                       size_t nbanks, unsigned flags)
{
    static const uint8_t zero[TC_MAX_DIGEST];
    memset(st, 0, sizeof(*st));
    tc_pcrs_init(&st->pcrs);
    st->flags = flags;
    if (banks == NULL || nbanks == 0) {
        const struct tc_hash_alg *def[] = {tc_hash_by_name("sha1"), tc_hash_by_name("sha256")};
        return tc_ima_replay_init(st, def, 2, flags);
    }
    if (nbanks > TC_MAX_BANKS)
        return TC_ERR_INVALID_ARG;
    for (size_t i = 0; i < nbanks; i++) {
        if (banks[i] == NULL || tc_pcrs_bank_const(&st->pcrs, banks[i]) != NULL)
            return TC_ERR_INVALID_ARG;
        int rc = tc_pcrs_set(&st->pcrs, banks[i], TC_IMA_PCR, zero);
        if (rc)
            return rc;
    }
    return 0;
}

/* Checks and extends entry i of log into every bank of pcrs. */
static int replay_entry(const struct tc_ima_log *log, size_t i, struct tc_pcr_set *pcrs,
                        unsigned flags, bool check_hash, struct tc_reason *why)
{
    const struct tc_ima_entry *e = &log->entries[i];
    long idx = (long)(log->first_index + i);
    int rc = check_hash ? check_template_hash(log, e, idx, NULL, why) : 0;
    if (rc)
        return rc;
    for (size_t b = 0; b < pcrs->nbanks; b++) {
        uint8_t d[TC_MAX_DIGEST];
        struct tc_pcr_bank *bank = &pcrs->bank[b];
        if ((rc = tc_ima_entry_bank_digest(log, e, bank->alg, flags, d)) != 0 ||
            (rc = tc_pcr_bank_extend(bank, e->pcr, d)) != 0)
            return tc_fail(why, rc, "ima.replay", idx, "cannot extend the %s bank",
                           bank->alg->name);
    }
    return 0;
}

static bool pcrs_equal(const struct tc_pcr_set *a, const struct tc_pcr_set *b)
{
    if (a->nbanks != b->nbanks)
        return false;
    for (size_t i = 0; i < a->nbanks; i++) {
        const struct tc_pcr_bank *x = &a->bank[i];
        const struct tc_pcr_bank *y = tc_pcrs_bank_const(b, x->alg);
        if (y == NULL || x->mask != y->mask)
            return false;
        for (unsigned p = 0; p < TC_PCR_COUNT; p++)
            if ((x->mask & (1u << p)) && CRYPTO_memcmp(x->value[p], y->value[p], x->alg->size) != 0)
                return false;
    }
    return true;
}

/* Index rules shared by advance and match: leaves in *tmp the state to continue from and in
 * *start the position in log of the first new entry. */
static int replay_prepare(const struct tc_ima_replay_state *st, const struct tc_ima_log *log,
                          struct tc_ima_replay_state *tmp, size_t *start, struct tc_reason *why)
{
    *tmp = *st;
    *start = 0;
    if (log->first_index > st->count)
        return tc_fail(why, TC_ERR_FORMAT, "ima.gap", (long)st->count,
                       "list starts at entry %zu but only %llu entries were verified",
                       log->first_index, (unsigned long long)st->count);
    if (log->first_index == st->count)
        return 0;
    if (log->first_index != 0)
        return tc_fail(why, TC_ERR_ROLLBACK, "ima.rollback", (long)log->first_index,
                       "list starts at entry %zu but %llu entries were already verified",
                       log->first_index, (unsigned long long)st->count);
    if (log->count < st->count)
        return tc_fail(why, TC_ERR_ROLLBACK, "ima.rollback", (long)log->count,
                       "list has %zu entries but %llu were already verified", log->count,
                       (unsigned long long)st->count);
    /* A full list: its verified prefix must reproduce the saved PCRs. */
    const struct tc_hash_alg *banks[TC_MAX_BANKS];
    for (size_t b = 0; b < st->pcrs.nbanks; b++)
        banks[b] = st->pcrs.bank[b].alg;
    int rc = tc_ima_replay_init(tmp, banks, st->pcrs.nbanks, st->flags);
    if (rc)
        return tc_fail(why, rc, "ima.replay", -1, "bad replay state");
    for (size_t i = 0; i < st->count; i++)
        if ((rc = replay_entry(log, i, &tmp->pcrs, st->flags, true, why)) != 0)
            return rc;
    if (!pcrs_equal(&tmp->pcrs, &st->pcrs))
        return tc_fail(why, TC_ERR_ROLLBACK, "ima.rollback", -1,
                       "the first %llu entries differ from those already verified",
                       (unsigned long long)st->count);
    tmp->count = st->count;
    *start = st->count;
    return 0;
}

int tc_ima_replay_advance(struct tc_ima_replay_state *st, const struct tc_ima_log *log,
                          struct tc_reason *why)
{
    struct tc_ima_replay_state tmp;
    size_t start;
    int rc = replay_prepare(st, log, &tmp, &start, why);
    if (rc)
        return rc;
    for (size_t i = start; i < log->count; i++) {
        if ((rc = replay_entry(log, i, &tmp.pcrs, tmp.flags, true, why)) != 0)
            return rc;
        tmp.count++;
    }
    *st = tmp;
    return 0;
}

int tc_ima_replay_match_quote(struct tc_ima_replay_state *st, const struct tc_ima_log *log,
                              const struct tc_hash_alg *alg, unsigned pcr, const uint8_t *quoted,
                              uint64_t *matched, struct tc_reason *why)
{
    struct tc_ima_replay_state tmp;
    size_t start;
    if (matched)
        *matched = 0;
    if (alg == NULL || pcr >= TC_PCR_COUNT || tc_pcrs_bank_const(&st->pcrs, alg) == NULL)
        return tc_fail(why, TC_ERR_INVALID_ARG, "ima.replay", -1,
                       "the replay state has no such bank");
    int rc = replay_prepare(st, log, &tmp, &start, why);
    if (rc)
        return rc;
    const struct tc_pcr_bank *bank = tc_pcrs_bank_const(&tmp.pcrs, alg);
    static const uint8_t zero[TC_MAX_DIGEST];
    /* Matching a quote, the template-hash column only matters when a replayed bank extends it
     * as is (its own algorithm, or the pre-5.11 padded SHA-1): otherwise every bank hashes the
     * template data itself and the quoted PCR vouches for it, so the check is done only to
     * explain a mismatch. This halves the hashing of a typical sha256-only verifier. */
    bool check_hash = (tmp.flags & TC_IMA_REPLAY_SHA1_PADDED) != 0;
    for (size_t b = 0; b < tmp.pcrs.nbanks; b++)
        if (tmp.pcrs.bank[b].alg == log->template_hash_alg)
            check_hash = true;
    size_t i = start;
    for (;;) {
        const uint8_t *v = (bank->mask & (1u << pcr)) ? bank->value[pcr] : zero;
        if (CRYPTO_memcmp(v, quoted, alg->size) == 0)
            break;
        if (i == log->count) {
            /* Name the lying entry when there is one, rather than only the PCR. */
            for (size_t k = start; !check_hash && k < log->count; k++)
                if ((rc = check_template_hash(log, &log->entries[k], (long)(log->first_index + k),
                                              NULL, why)) != 0)
                    return rc;
            char hex[2 * TC_MAX_DIGEST + 1];
            tc_hex_encode(quoted, alg->size, hex);
            return tc_fail(why, TC_ERR_MISMATCH, "ima.pcr_mismatch", -1,
                           "no prefix of entries %zu..%zu replays to the quoted %s PCR %u %s",
                           log->first_index + start, log->first_index + log->count, alg->name, pcr,
                           hex);
        }
        if ((rc = replay_entry(log, i, &tmp.pcrs, tmp.flags, check_hash, why)) != 0)
            return rc;
        tmp.count++;
        i++;
    }
    *st = tmp;
    if (matched)
        *matched = tmp.count;
    return 0;
}

int tc_ima_boot_aggregate(const struct tc_pcr_set *pcrs, const struct tc_hash_alg *alg,
                          uint8_t *out)
{
    static const uint8_t zero[TC_MAX_DIGEST];
    const struct tc_pcr_bank *b = tc_pcrs_bank_const(pcrs, alg);
    struct tc_hash_ctx *ctx = NULL;
    if (b == NULL)
        return TC_ERR_NOT_FOUND;
    /* The kernel adds PCRs 8 and 9 (command line, kernel image) only to non-SHA-1 aggregates. */
    unsigned last = alg->size == 20 ? 7 : 9;
    int rc = tc_hash_ctx_new(alg, &ctx);
    for (unsigned p = 0; rc == 0 && p <= last; p++)
        rc = tc_hash_ctx_update(ctx, (b->mask & (1u << p)) ? b->value[p] : zero, alg->size);
    if (rc == 0)
        rc = tc_hash_ctx_final(ctx, out);
    tc_hash_ctx_free(ctx);
    return rc;
}
