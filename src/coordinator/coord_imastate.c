/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The IMA replay point of a node as stored between rounds (and restarts):
 *   u8 version (1) | u64 count (BE) | u32 flags | u8 nbanks |
 *   nbanks x { u16 tpm_alg | u32 mask | popcount(mask) x digest (alg size) }
 * Parsed back only through tc_reader and consumed exactly: the database is
 * ours, but a corrupt row must fail a round, not the daemon.
 */
#include <stdlib.h>
#include <string.h>

#include "coordinator/coord.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"

static int put_be(struct tc_buf *b, uint64_t v, int bytes)
{
    uint8_t t[8];
    for (int i = 0; i < bytes; i++)
        t[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
    return tc_buf_put(b, t, (size_t)bytes);
}

int coord_ima_state_encode(const struct tc_ima_replay_state *st, uint8_t **out, size_t *len)
{
    int rc;
    struct tc_buf b;
    *out = NULL;
    *len = 0;
    if (!st || st->pcrs.nbanks > TC_MAX_BANKS)
        return TC_ERR_INVALID_ARG;
    tc_buf_init(&b, TC_STORE_STATE_MAX);
    if ((rc = put_be(&b, COORD_IMA_STATE_VERSION, 1)) != 0 ||
        (rc = put_be(&b, st->count, 8)) != 0 || (rc = put_be(&b, st->flags, 4)) != 0 ||
        (rc = put_be(&b, st->pcrs.nbanks, 1)) != 0)
        goto out;
    for (size_t i = 0; i < st->pcrs.nbanks; i++) {
        const struct tc_pcr_bank *bk = &st->pcrs.bank[i];
        if ((rc = put_be(&b, bk->alg->tpm_alg, 2)) != 0 || (rc = put_be(&b, bk->mask, 4)) != 0)
            goto out;
        for (unsigned p = 0; p < TC_PCR_COUNT; p++)
            if ((bk->mask & (1u << p)) && (rc = tc_buf_put(&b, bk->value[p], bk->alg->size)) != 0)
                goto out;
    }
    *out = tc_buf_steal(&b, len);
    rc = *out ? 0 : TC_ERR_ALLOC;
out:
    tc_buf_release(&b);
    return rc;
}

int coord_ima_state_decode(const uint8_t *data, size_t len, struct tc_ima_replay_state *st)
{
    int rc;
    struct tc_reader r;
    struct tc_ima_replay_state s;
    uint8_t ver, nbanks;
    uint32_t hi, lo, flags;
    memset(st, 0, sizeof(*st));
    memset(&s, 0, sizeof(s));
    tc_pcrs_init(&s.pcrs);
    if (!data || len > TC_STORE_STATE_MAX)
        return TC_ERR_FORMAT;
    tc_reader_init(&r, data, len);
    if ((rc = tc_reader_u8(&r, &ver)) != 0)
        return TC_ERR_FORMAT;
    if (ver != COORD_IMA_STATE_VERSION)
        return TC_ERR_UNSUPPORTED;
    if (tc_reader_u32be(&r, &hi) || tc_reader_u32be(&r, &lo) || tc_reader_u32be(&r, &flags) ||
        tc_reader_u8(&r, &nbanks))
        return TC_ERR_FORMAT;
    if (nbanks > TC_MAX_BANKS || (flags & ~TC_IMA_REPLAY_SHA1_PADDED))
        return TC_ERR_FORMAT;
    s.count = (uint64_t)hi << 32 | lo;
    s.flags = flags;
    for (unsigned i = 0; i < nbanks; i++) {
        uint16_t alg_id;
        uint32_t mask;
        if (tc_reader_u16be(&r, &alg_id) || tc_reader_u32be(&r, &mask))
            return TC_ERR_FORMAT;
        const struct tc_hash_alg *alg = tc_hash_by_tpm(alg_id);
        if (!alg)
            return TC_ERR_UNSUPPORTED;
        if (mask >> TC_PCR_COUNT || tc_pcrs_bank_const(&s.pcrs, alg))
            return TC_ERR_FORMAT;
        struct tc_pcr_bank *bk = tc_pcrs_bank(&s.pcrs, alg, true);
        if (!bk)
            return TC_ERR_FORMAT;
        for (unsigned p = 0; p < TC_PCR_COUNT; p++) {
            if (!(mask & (1u << p)))
                continue;
            if (tc_reader_bytes(&r, bk->value[p], alg->size))
                return TC_ERR_FORMAT;
        }
        bk->mask = mask;
    }
    if (tc_reader_left(&r) != 0)
        return TC_ERR_TRAILING;
    *st = s;
    return 0;
}
