/* SPDX-License-Identifier: Apache-2.0 */
/* PCR read and extend. */
#define LOGMODULE "tpm"
#include <string.h>

#include "tpm_internal.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"

/* A PCR_Read that keeps seeing a changing pcrUpdateCounter gives up after this many restarts:
 * values from different counter epochs would not belong together. */
#define PCR_READ_RESTARTS 8

int tc_tpm_pcr_selection(const struct tc_pcr_set *sel, TPML_PCR_SELECTION *out)
{
    memset(out, 0, sizeof(*out));
    if (sel->nbanks > TPM2_NUM_PCR_BANKS || sel->nbanks > TC_MAX_BANKS)
        return TC_ERR_INVALID_ARG;
    for (size_t i = 0; i < sel->nbanks; i++) {
        const struct tc_pcr_bank *b = &sel->bank[i];
        if (b->alg == NULL || (b->mask >> TC_PCR_COUNT) != 0)
            return TC_ERR_INVALID_ARG;
        TPMS_PCR_SELECTION *s = &out->pcrSelections[out->count++];
        s->hash = b->alg->tpm_alg;
        s->sizeofSelect = 3;
        s->pcrSelect[0] = b->mask & 0xff;
        s->pcrSelect[1] = (b->mask >> 8) & 0xff;
        s->pcrSelect[2] = (b->mask >> 16) & 0xff;
    }
    return 0;
}

/* One pass of PCR_Read calls until everything in want is read or the TPM stops returning
 * anything. Returns 1 (and nothing else changed) when pcrUpdateCounter moved. */
static int read_pass(struct tc_tpm *tpm, const struct tc_pcr_set *want, struct tc_pcr_set *out)
{
    struct tc_pcr_set left = *want;
    uint32_t counter0 = 0;
    bool first = true;
    int rc;

    for (;;) {
        size_t remaining = 0;
        for (size_t i = 0; i < left.nbanks; i++)
            remaining += left.bank[i].mask != 0;
        if (remaining == 0)
            return 0;

        TPML_PCR_SELECTION in;
        TPML_PCR_SELECTION *got_sel = NULL;
        TPML_DIGEST *got = NULL;
        uint32_t counter = 0;
        if ((rc = tc_tpm_pcr_selection(&left, &in)) != 0)
            return rc;
        TSS2_RC r = Esys_PCR_Read(tpm->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &in,
                                  &counter, &got_sel, &got);
        if (r != TSS2_RC_SUCCESS)
            return tc_tpm_rc(r, "Esys_PCR_Read");
        if (!first && counter != counter0) {
            Esys_Free(got_sel);
            Esys_Free(got);
            return 1;
        }
        first = false;
        counter0 = counter;

        /* Digests come in selection order: banks as returned, PCRs in ascending order. */
        uint32_t d = 0, progress = 0;
        rc = 0;
        for (uint32_t i = 0; i < got_sel->count && i < TPM2_NUM_PCR_BANKS && rc == 0; i++) {
            const TPMS_PCR_SELECTION *s = &got_sel->pcrSelections[i];
            const struct tc_hash_alg *alg = tc_hash_by_tpm(s->hash);
            struct tc_pcr_bank *lb = alg ? tc_pcrs_bank(&left, alg, false) : NULL;
            for (unsigned p = 0; p < 8u * s->sizeofSelect && p < 8u * TPM2_PCR_SELECT_MAX; p++) {
                if (!(s->pcrSelect[p / 8] & (1u << (p % 8))))
                    continue;
                /* Every returned digest must be one we asked for and not yet have. */
                if (lb == NULL || p >= TC_PCR_COUNT || !(lb->mask & (1u << p)) || d >= got->count ||
                    got->digests[d].size != alg->size) {
                    LOG_ERROR("PCR_Read returned an unrequested or malformed value");
                    rc = TC_ERR_TPM;
                    break;
                }
                if ((rc = tc_pcrs_set(out, alg, p, got->digests[d].buffer)) != 0)
                    break;
                lb->mask &= ~(1u << p);
                d++;
                progress++;
            }
        }
        if (rc == 0 && d != got->count) {
            LOG_ERROR("PCR_Read returned %u digests for %u selected PCRs", got->count, d);
            rc = TC_ERR_TPM;
        }
        Esys_Free(got_sel);
        Esys_Free(got);
        if (rc != 0)
            return rc;
        if (progress == 0) {
            /* The TPM left out what is still selected: an inactive bank or a PCR it lacks. */
            for (size_t i = 0; i < left.nbanks; i++)
                if (left.bank[i].mask)
                    LOG_ERROR("TPM does not return %s PCRs 0x%06x", left.bank[i].alg->name,
                              left.bank[i].mask);
            return TC_ERR_NOT_FOUND;
        }
    }
}

int tc_tpm_pcr_read(struct tc_tpm *tpm, const struct tc_pcr_set *sel, struct tc_pcr_set *out)
{
    int rc = TC_ERR_TPM;
    tc_pcrs_init(out);
    for (int attempt = 0; attempt < PCR_READ_RESTARTS; attempt++) {
        /* Banks appear in out in the caller's order, even when some bank has no PCR selected. */
        tc_pcrs_init(out);
        for (size_t i = 0; i < sel->nbanks; i++)
            if (sel->bank[i].alg == NULL || tc_pcrs_bank(out, sel->bank[i].alg, true) == NULL)
                return TC_ERR_INVALID_ARG;
        rc = read_pass(tpm, sel, out);
        if (rc <= 0)
            break;
        LOG_DEBUG("PCRs changed while reading; reading again");
        rc = TC_ERR_TPM;
    }
    if (rc != 0)
        tc_pcrs_init(out);
    return rc;
}

int tc_tpm_pcr_extend_multi(struct tc_tpm *tpm, unsigned pcr, size_t n,
                            const struct tc_hash_alg *const *algs, const uint8_t *const *digests)
{
    TPML_DIGEST_VALUES v;
    memset(&v, 0, sizeof(v));
    if (pcr >= TC_PCR_COUNT || n == 0 || n > TPM2_NUM_PCR_BANKS)
        return TC_ERR_INVALID_ARG;
    for (size_t i = 0; i < n; i++) {
        if (algs[i] == NULL || digests[i] == NULL || algs[i]->size > sizeof(TPMU_HA))
            return TC_ERR_INVALID_ARG;
        v.digests[i].hashAlg = algs[i]->tpm_alg;
        memcpy((uint8_t *)&v.digests[i].digest, digests[i], algs[i]->size);
    }
    v.count = (uint32_t)n;
    TSS2_RC r = Esys_PCR_Extend(tpm->esys, ESYS_TR_PCR0 + pcr, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                ESYS_TR_NONE, &v);
    if (r != TSS2_RC_SUCCESS)
        return tc_tpm_rc(r, "Esys_PCR_Extend");
    return 0;
}

int tc_tpm_pcr_extend(struct tc_tpm *tpm, unsigned pcr, const struct tc_hash_alg *alg,
                      const uint8_t *digest)
{
    return tc_tpm_pcr_extend_multi(tpm, pcr, 1, &alg, &digest);
}
