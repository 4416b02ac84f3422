/* SPDX-License-Identifier: Apache-2.0 */
/* TPM2_Quote with an AK, returned in the byte formats tpm2_quote writes. */
#define LOGMODULE "tpm"
#include <stdlib.h>
#include <string.h>

#include <tss2/tss2_mu.h>

#include "tpm_internal.h"
#include "trustcloud/error.h"
#include "trustcloud/hashalg.h"
#include "trustcloud/log.h"
#include "trustcloud/quote.h"

/* qualifyingData is a TPM2B_DATA: room for one TPMT_HA; we promise the largest digest. */
#define QUOTE_MAX_NONCE 64

/* PCRs extended by someone else between a quote and the PCR read make the values differ
 * from what the TPM signed; the quote is taken again this many times in all. */
#define QUOTE_ATTEMPTS 4

static int quote_once(struct tc_tpm *tpm, const struct tc_tpm_key *ak, const struct tc_pcr_set *sel,
                      const uint8_t *nonce, size_t nonce_len, struct tc_tpm_quote *out);

/* Whether the PCR values read after the quote hash to the digest the TPM signed (under the hash
 * of the digest's size: the AK's scheme hash). */
static bool pcrs_match_quote(const struct tc_tpm_quote *q)
{
    struct tc_quote_info info;
    struct tc_reason why;
    uint8_t d[TC_MAX_DIGEST];
    size_t n = 0;
    if (tc_quote_parse(q->attest, q->attest_len, &info, &why) != 0)
        return true; /* not ours to judge: the verifier names what is wrong */
    const struct tc_hash_alg *algs = tc_hash_all(&n);
    for (size_t i = 0; i < n; i++)
        if (algs[i].size == info.pcr_digest_len &&
            tc_quote_pcr_digest(&algs[i], &info.selection, &q->pcrs, d) == 0 &&
            memcmp(d, info.pcr_digest, info.pcr_digest_len) == 0)
            return true;
    return false;
}

int tc_tpm_quote(struct tc_tpm *tpm, const struct tc_tpm_key *ak, const struct tc_pcr_set *sel,
                 const uint8_t *nonce, size_t nonce_len, struct tc_tpm_quote *out)
{
    int rc = 0;
    for (int attempt = 1; attempt <= QUOTE_ATTEMPTS; attempt++) {
        if (attempt > 1)
            tc_tpm_quote_release(out);
        if ((rc = quote_once(tpm, ak, sel, nonce, nonce_len, out)) != 0 || pcrs_match_quote(out))
            return rc;
        LOG_DEBUG("PCRs changed between the quote and their read (attempt %d): quoting again",
                  attempt);
    }
    LOG_WARN("PCRs kept changing during %d quotes: sending the last one", QUOTE_ATTEMPTS);
    return rc;
}

static int quote_once(struct tc_tpm *tpm, const struct tc_tpm_key *ak, const struct tc_pcr_set *sel,
                      const uint8_t *nonce, size_t nonce_len, struct tc_tpm_quote *out)
{
    TPM2B_DATA qualifying;
    TPMT_SIG_SCHEME scheme = {.scheme = TPM2_ALG_NULL};
    TPML_PCR_SELECTION pcrsel;
    TPM2B_ATTEST *quoted = NULL;
    TPMT_SIGNATURE *sig = NULL;
    uint8_t sigbuf[sizeof(TPMT_SIGNATURE)];
    size_t siglen = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    tc_pcrs_init(&out->pcrs);
    if (ak == NULL || ak->esys_handle == 0 || sel == NULL || nonce_len > QUOTE_MAX_NONCE ||
        (nonce == NULL && nonce_len != 0))
        return TC_ERR_INVALID_ARG;
    if ((rc = tc_tpm_pcr_selection(sel, &pcrsel)) != 0)
        return rc;
    memset(&qualifying, 0, sizeof(qualifying));
    qualifying.size = (uint16_t)nonce_len;
    if (nonce_len)
        memcpy(qualifying.buffer, nonce, nonce_len);

    /* The AK is restricted and carries its scheme, so TPM2_ALG_NULL selects it. */
    TSS2_RC r = Esys_Quote(tpm->esys, ak->esys_handle, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE,
                           &qualifying, &scheme, &pcrsel, &quoted, &sig);
    if (r != TSS2_RC_SUCCESS) {
        rc = tc_tpm_rc(r, "Esys_Quote");
        goto out;
    }
    if (quoted->size == 0 || quoted->size > sizeof(quoted->attestationData)) {
        rc = TC_ERR_TPM;
        goto out;
    }
    if (Tss2_MU_TPMT_SIGNATURE_Marshal(sig, sigbuf, sizeof(sigbuf), &siglen) != TSS2_RC_SUCCESS) {
        rc = TC_ERR_TPM;
        goto out;
    }
    if ((out->attest = malloc(quoted->size)) == NULL || (out->sig = malloc(siglen)) == NULL) {
        rc = TC_ERR_ALLOC;
        goto out;
    }
    memcpy(out->attest, quoted->attestationData, quoted->size);
    out->attest_len = quoted->size;
    memcpy(out->sig, sigbuf, siglen);
    out->sig_len = siglen;
    rc = tc_tpm_pcr_read(tpm, sel, &out->pcrs);
out:
    Esys_Free(quoted);
    Esys_Free(sig);
    if (rc != 0)
        tc_tpm_quote_release(out);
    return rc;
}

void tc_tpm_quote_release(struct tc_tpm_quote *q)
{
    if (q == NULL)
        return;
    free(q->attest);
    free(q->sig);
    memset(q, 0, sizeof(*q));
}
