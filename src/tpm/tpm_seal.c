/* SPDX-License-Identifier: Apache-2.0 */
/* Secrets sealed under the EK to PCR values, and monotonic NV counters (see trustcloud/tpm_seal.h).
 */
#define LOGMODULE "tpm"
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <tss2/tss2_mu.h>

#include "tpm_internal.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"
#include "trustcloud/tpm_seal.h"

static const uint8_t seal_magic[4] = {'T', 'C', 'S', 'L'};
#define SEAL_VERSION 1
#define POLICY_LEN 32 /* SHA-256 policy sessions */

/* No userWithAuth: the only way to use the object is its policy. No sensitiveDataOrigin: the
 * caller supplies the data. fixedTPM|fixedParent: it can never be duplicated out of this TPM.
 * noDA: a policy failure (PCRs changed) must not count towards the dictionary-attack lockout. */
static const TPMA_OBJECT sealed_attrs =
    TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_NODA;

/* Counter attributes (TPM2_NT_COUNTER): see trustcloud/tpm_seal.h. */
static const TPMA_NV counter_attrs =
    ((TPM2_NT_COUNTER << TPMA_NV_TPM2_NT_SHIFT) & TPMA_NV_TPM2_NT_MASK) | TPMA_NV_OWNERWRITE |
    TPMA_NV_AUTHWRITE | TPMA_NV_OWNERREAD | TPMA_NV_AUTHREAD | TPMA_NV_NO_DA;

static void sealed_template(const uint8_t *policy, TPM2B_PUBLIC *t)
{
    memset(t, 0, sizeof(*t));
    TPMT_PUBLIC *p = &t->publicArea;
    p->type = TPM2_ALG_KEYEDHASH;
    p->nameAlg = TPM2_ALG_SHA256;
    p->objectAttributes = sealed_attrs;
    p->authPolicy.size = POLICY_LEN;
    memcpy(p->authPolicy.buffer, policy, POLICY_LEN);
    p->parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_NULL;
}

/* A session whose key is salted with the EK (only this TPM can know it), so that the secret
 * crosses the TPM interface encrypted (AES-128-CFB parameter encryption): attrs says which way.
 * Always created with continueSession, so that cleanup is one tc_tpm_session_flush. */
static int salted_session(struct tc_tpm *tpm, const struct tc_tpm_key *ek, TPM2_SE type,
                          TPMA_SESSION attrs, ESYS_TR *session)
{
    TPMT_SYM_DEF sym = {
        .algorithm = TPM2_ALG_AES, .keyBits = {.aes = 128}, .mode = {.aes = TPM2_ALG_CFB}};
    *session = ESYS_TR_NONE;
    TSS2_RC r =
        Esys_StartAuthSession(tpm->esys, ek->esys_handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                              ESYS_TR_NONE, NULL, type, &sym, TPM2_ALG_SHA256, session);
    if (r != TSS2_RC_SUCCESS) {
        *session = ESYS_TR_NONE;
        return tc_tpm_rc(r, "Esys_StartAuthSession(salted)");
    }
    r = Esys_TRSess_SetAttributes(tpm->esys, *session, TPMA_SESSION_CONTINUESESSION | attrs, 0xff);
    if (r != TSS2_RC_SUCCESS) {
        tc_tpm_session_flush(tpm, session);
        return tc_tpm_rc(r, "Esys_TRSess_SetAttributes");
    }
    return 0;
}

/* PolicyPCR over sel in session (empty pcrDigest: the TPM takes its current PCR values, in a
 * trial session to compute the policy, in a real one to check them). */
static int policy_pcr(struct tc_tpm *tpm, ESYS_TR session, const TPML_PCR_SELECTION *sel,
                      TPM2B_DIGEST **digest)
{
    TPM2B_DIGEST empty = {.size = 0};
    *digest = NULL;
    TSS2_RC r =
        Esys_PolicyPCR(tpm->esys, session, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &empty, sel);
    if (r != TSS2_RC_SUCCESS) {
        int rc = tc_tpm_rc(r, "Esys_PolicyPCR");
        return tc_tpm_rc_base(r) == TPM2_RC_VALUE ? TC_ERR_POLICY : rc;
    }
    r = Esys_PolicyGetDigest(tpm->esys, session, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, digest);
    if (r != TSS2_RC_SUCCESS) {
        *digest = NULL;
        return tc_tpm_rc(r, "Esys_PolicyGetDigest");
    }
    if ((*digest)->size != POLICY_LEN) {
        Esys_Free(*digest);
        *digest = NULL;
        return TC_ERR_TPM;
    }
    return 0;
}

/* The policy digest PolicyPCR(sel) gives with the TPM's current PCR values. */
static int trial_policy(struct tc_tpm *tpm, const TPML_PCR_SELECTION *sel, uint8_t *policy)
{
    TPMT_SYM_DEF sym = {.algorithm = TPM2_ALG_NULL};
    TPM2B_DIGEST *d = NULL;
    ESYS_TR s = ESYS_TR_NONE;
    TSS2_RC r =
        Esys_StartAuthSession(tpm->esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                              ESYS_TR_NONE, NULL, TPM2_SE_TRIAL, &sym, TPM2_ALG_SHA256, &s);
    if (r != TSS2_RC_SUCCESS)
        return tc_tpm_rc(r, "Esys_StartAuthSession(trial)");
    int rc = policy_pcr(tpm, s, sel, &d);
    if (rc == 0)
        memcpy(policy, d->buffer, POLICY_LEN);
    Esys_Free(d);
    tc_tpm_session_flush(tpm, &s);
    return rc;
}

/* TPML_PCR_SELECTION -> tc_pcr_set masks (the blob's selection is untrusted). */
static int selection_to_set(const TPML_PCR_SELECTION *l, struct tc_pcr_set *set)
{
    tc_pcrs_init(set);
    if (l->count == 0 || l->count > TC_MAX_BANKS)
        return TC_ERR_FORMAT;
    for (uint32_t i = 0; i < l->count; i++) {
        const TPMS_PCR_SELECTION *s = &l->pcrSelections[i];
        const struct tc_hash_alg *alg = tc_hash_by_tpm(s->hash);
        if (alg == NULL)
            return TC_ERR_UNSUPPORTED;
        if (s->sizeofSelect > 3 || tc_pcrs_bank_const(set, alg) != NULL)
            return TC_ERR_FORMAT;
        uint32_t mask = 0;
        for (unsigned b = 0; b < s->sizeofSelect; b++)
            mask |= (uint32_t)s->pcrSelect[b] << (8 * b);
        struct tc_pcr_bank *bank = tc_pcrs_bank(set, alg, true);
        if (mask == 0 || bank == NULL)
            return TC_ERR_FORMAT;
        bank->mask = mask;
    }
    return 0;
}

static void put_u16(uint8_t *p, size_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* The file image: head (magic, version, selection, policy), then the key-file tail. */
static int blob_build(const TPML_PCR_SELECTION *sel, const uint8_t *policy,
                      const struct tc_tpm_key *parent, const TPM2B_PUBLIC *pub,
                      const TPM2B_PRIVATE *priv, uint8_t **blob, size_t *blob_len)
{
    uint8_t selbuf[sizeof(TPML_PCR_SELECTION)], pubbuf[TC_TPM_MAX_PUBLIC];
    uint8_t privbuf[sizeof(TPM2B_PRIVATE)];
    size_t sellen = 0, publen = 0, privlen = 0;
    uint8_t hdr[6 + 2], lens[6], plen[2];
    struct tc_buf b;
    int rc;

    if (Tss2_MU_TPML_PCR_SELECTION_Marshal(sel, selbuf, sizeof(selbuf), &sellen) !=
            TSS2_RC_SUCCESS ||
        Tss2_MU_TPM2B_PUBLIC_Marshal(pub, pubbuf, sizeof(pubbuf), &publen) != TSS2_RC_SUCCESS ||
        Tss2_MU_TPM2B_PRIVATE_Marshal(priv, privbuf, sizeof(privbuf), &privlen) != TSS2_RC_SUCCESS)
        return TC_ERR_INTERNAL;
    memcpy(hdr, seal_magic, 4);
    put_u16(hdr + 4, SEAL_VERSION);
    put_u16(hdr + 6, sellen);
    put_u16(plen, POLICY_LEN);
    put_u16(lens, parent->name_len);
    put_u16(lens + 2, publen);
    put_u16(lens + 4, privlen);
    tc_buf_init(&b, TC_TPM_SEAL_BLOB_MAX);
    if ((rc = tc_buf_put(&b, hdr, sizeof(hdr))) == 0 &&
        (rc = tc_buf_put(&b, selbuf, sellen)) == 0 &&
        (rc = tc_buf_put(&b, plen, sizeof(plen))) == 0 &&
        (rc = tc_buf_put(&b, policy, POLICY_LEN)) == 0 &&
        (rc = tc_buf_put(&b, lens, sizeof(lens))) == 0 &&
        (rc = tc_buf_put(&b, parent->name, parent->name_len)) == 0 &&
        (rc = tc_buf_put(&b, pubbuf, publen)) == 0)
        rc = tc_buf_put(&b, privbuf, privlen);
    OPENSSL_cleanse(privbuf, sizeof(privbuf));
    if (rc == 0)
        *blob = tc_buf_steal(&b, blob_len);
    tc_buf_release(&b);
    return rc;
}

int tc_tpm_seal(struct tc_tpm *tpm, const struct tc_tpm_key *parent, const struct tc_pcr_set *sel,
                const uint8_t *data, size_t len, uint8_t **blob, size_t *blob_len)
{
    TPML_PCR_SELECTION tsel;
    TPM2B_SENSITIVE_CREATE sens;
    TPM2B_DATA outside = {.size = 0};
    TPML_PCR_SELECTION creation_pcr = {.count = 0};
    TPM2B_PUBLIC tmpl;
    TPM2B_PRIVATE *priv = NULL;
    TPM2B_PUBLIC *pub = NULL;
    ESYS_TR auth = ESYS_TR_NONE, enc = ESYS_TR_NONE;
    uint8_t policy[POLICY_LEN];
    int rc;

    *blob = NULL;
    *blob_len = 0;
    memset(&sens, 0, sizeof(sens));
    if (tpm == NULL || parent == NULL || parent->esys_handle == 0 || sel == NULL || data == NULL ||
        len == 0 || len > TC_TPM_SEAL_MAX_DATA)
        return TC_ERR_INVALID_ARG;
    if ((rc = tc_tpm_pcr_selection(sel, &tsel)) != 0)
        return rc;
    bool any = false;
    for (size_t i = 0; i < sel->nbanks; i++)
        any = any || sel->bank[i].mask != 0;
    if (!any)
        return TC_ERR_INVALID_ARG;
    if ((rc = trial_policy(tpm, &tsel, policy)) != 0)
        goto out;
    sealed_template(policy, &tmpl);
    sens.sensitive.data.size = (uint16_t)len;
    memcpy(sens.sensitive.data.buffer, data, len);
    /* The EK's own policy session authorizes the parent; a second, EK-salted session encrypts
     * the first command parameter (inSensitive, the secret) on its way in. */
    if ((rc = tc_tpm_ek_session(tpm, &auth)) != 0 ||
        (rc = salted_session(tpm, parent, TPM2_SE_HMAC, TPMA_SESSION_DECRYPT, &enc)) != 0)
        goto out;
    TSS2_RC r = Esys_Create(tpm->esys, parent->esys_handle, auth, enc, ESYS_TR_NONE, &sens, &tmpl,
                            &outside, &creation_pcr, &priv, &pub, NULL, NULL, NULL);
    if (r != TSS2_RC_SUCCESS) {
        priv = NULL;
        pub = NULL;
        rc = tc_tpm_rc(r, "Esys_Create(sealed data)");
        goto out;
    }
    rc = blob_build(&tsel, policy, parent, pub, priv, blob, blob_len);
out:
    tc_tpm_session_flush(tpm, &auth);
    tc_tpm_session_flush(tpm, &enc);
    OPENSSL_cleanse(&sens, sizeof(sens));
    if (priv != NULL)
        OPENSSL_cleanse(priv, sizeof(*priv));
    Esys_Free(priv);
    Esys_Free(pub);
    return rc;
}

/* Parses the blob; tsel/pub/priv (when non-NULL) receive the unmarshaled parts. */
static int blob_parse(const uint8_t *blob, size_t len, struct tc_tpm_sealed *out,
                      TPML_PCR_SELECTION *tsel_out, TPM2B_PUBLIC *pub_out, TPM2B_PRIVATE *priv_out)
{
    struct tc_reader r;
    const uint8_t *selv, *polv, *pubv, *privv;
    uint16_t sellen, pollen;
    size_t plen, qlen, off = 0;
    TPML_PCR_SELECTION tsel;
    TPM2B_PUBLIC pub;
    TPM2B_PRIVATE priv;
    int rc;

    memset(out, 0, sizeof(*out));
    memset(&tsel, 0, sizeof(tsel));
    memset(&priv, 0, sizeof(priv));
    if (blob == NULL)
        return TC_ERR_INVALID_ARG;
    if ((rc = tc_tpm_ctx_open(&r, blob, len, TC_TPM_SEAL_BLOB_MAX, seal_magic, SEAL_VERSION)) != 0)
        goto out;
    if ((rc = tc_reader_u16be(&r, &sellen)) != 0)
        goto out;
    if (sellen > sizeof(TPML_PCR_SELECTION)) {
        rc = TC_ERR_FORMAT;
        goto out;
    }
    if ((rc = tc_reader_view(&r, sellen, &selv)) != 0 || (rc = tc_reader_u16be(&r, &pollen)) != 0)
        goto out;
    if (pollen != POLICY_LEN) {
        rc = TC_ERR_FORMAT;
        goto out;
    }
    if ((rc = tc_reader_view(&r, pollen, &polv)) != 0 ||
        (rc = tc_tpm_ctx_read_tail(&r, sizeof(out->priv), out->parent_name, &out->parent_name_len,
                                   &pubv, &plen, &privv, &qlen)) != 0)
        goto out;
    if (Tss2_MU_TPML_PCR_SELECTION_Unmarshal(selv, sellen, &off, &tsel) != TSS2_RC_SUCCESS) {
        rc = TC_ERR_FORMAT;
        goto out;
    }
    if (off != sellen) {
        rc = TC_ERR_TRAILING;
        goto out;
    }
    if ((rc = selection_to_set(&tsel, &out->sel)) != 0 ||
        (rc = tc_tpm_unmarshal_public(pubv, plen, &pub)) != 0 ||
        (rc = tc_tpm_unmarshal_private(privv, qlen, &priv)) != 0)
        goto out;
    /* Only what tc_tpm_seal makes: a sealed object whose policy is the recorded one (so the
     * recorded selection and digest describe what the TPM will enforce). */
    TPM2B_PUBLIC want;
    sealed_template(polv, &want);
    const TPMT_PUBLIC *a = &pub.publicArea, *e = &want.publicArea;
    if (a->type != e->type || a->nameAlg != e->nameAlg ||
        a->objectAttributes != e->objectAttributes || a->authPolicy.size != POLICY_LEN ||
        memcmp(a->authPolicy.buffer, polv, POLICY_LEN) != 0 ||
        a->parameters.keyedHashDetail.scheme.scheme != TPM2_ALG_NULL || out->parent_name_len < 2) {
        rc = TC_ERR_FORMAT;
        goto out;
    }
    memcpy(out->policy, polv, POLICY_LEN);
    out->policy_len = POLICY_LEN;
    memcpy(out->pub, pubv, plen);
    out->pub_len = plen;
    memcpy(out->priv, privv, qlen);
    out->priv_len = qlen;
    if (tsel_out != NULL)
        *tsel_out = tsel;
    if (pub_out != NULL)
        *pub_out = pub;
    if (priv_out != NULL)
        *priv_out = priv;
out:
    OPENSSL_cleanse(&priv, sizeof(priv));
    if (rc != 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

int tc_tpm_sealed_parse(const uint8_t *blob, size_t len, struct tc_tpm_sealed *out)
{
    return blob_parse(blob, len, out, NULL, NULL, NULL);
}

int tc_tpm_unseal(struct tc_tpm *tpm, const struct tc_tpm_key *parent, const uint8_t *blob,
                  size_t blob_len, uint8_t *out, size_t cap, size_t *out_len)
{
    struct tc_tpm_sealed *s = NULL;
    TPML_PCR_SELECTION tsel;
    TPM2B_PUBLIC pub;
    TPM2B_PRIVATE priv;
    TPM2B_DIGEST *digest = NULL;
    TPM2B_SENSITIVE_DATA *data = NULL;
    ESYS_TR auth = ESYS_TR_NONE, policy = ESYS_TR_NONE, h = ESYS_TR_NONE;
    TSS2_RC r;
    int rc;

    *out_len = 0;
    memset(&priv, 0, sizeof(priv));
    if (tpm == NULL || parent == NULL || parent->esys_handle == 0 || blob == NULL || out == NULL)
        return TC_ERR_INVALID_ARG;
    if ((s = malloc(sizeof(*s))) == NULL)
        return TC_ERR_ALLOC;
    if ((rc = blob_parse(blob, blob_len, s, &tsel, &pub, &priv)) != 0) {
        LOG_ERROR("not a usable sealed blob (%s)", tc_strerror(rc));
        goto out;
    }
    if (s->parent_name_len != parent->name_len ||
        memcmp(s->parent_name, parent->name, parent->name_len) != 0) {
        LOG_ERROR("the blob was sealed under another parent (another TPM or EK)");
        rc = TC_ERR_MISMATCH;
        goto out;
    }
    if ((rc = tc_tpm_ek_session(tpm, &auth)) != 0)
        goto out;
    r = Esys_Load(tpm->esys, parent->esys_handle, auth, ESYS_TR_NONE, ESYS_TR_NONE, &priv, &pub,
                  &h);
    tc_tpm_session_flush(tpm, &auth);
    if (r != TSS2_RC_SUCCESS) {
        h = ESYS_TR_NONE;
        rc = tc_tpm_rc(r, "Esys_Load(sealed data)");
        /* The private blob's integrity is keyed by the parent's seed: another TPM (or a changed
         * blob) fails here even when the parent's name was forged to match. */
        if (tc_tpm_rc_base(r) == TPM2_RC_INTEGRITY)
            rc = TC_ERR_MISMATCH;
        goto out;
    }
    /* The policy session, salted with the EK, also encrypts the unsealed data on its way out. */
    if ((rc = salted_session(tpm, parent, TPM2_SE_POLICY, TPMA_SESSION_ENCRYPT, &policy)) != 0 ||
        (rc = policy_pcr(tpm, policy, &tsel, &digest)) != 0)
        goto out;
    /* Comparing first turns "PCRs changed" into a clear answer instead of a TPM error. */
    if (memcmp(digest->buffer, s->policy, POLICY_LEN) != 0) {
        LOG_ERROR("the PCRs no longer have the values the data was sealed to");
        rc = TC_ERR_POLICY;
        goto out;
    }
    r = Esys_Unseal(tpm->esys, h, policy, ESYS_TR_NONE, ESYS_TR_NONE, &data);
    if (r != TSS2_RC_SUCCESS) {
        data = NULL;
        rc = tc_tpm_rc(r, "Esys_Unseal");
        if (tc_tpm_rc_base(r) == TPM2_RC_POLICY_FAIL || tc_tpm_rc_base(r) == TPM2_RC_VALUE)
            rc = TC_ERR_POLICY;
        goto out;
    }
    if (data->size > cap) {
        rc = TC_ERR_TOO_LARGE;
        goto out;
    }
    memcpy(out, data->buffer, data->size);
    *out_len = data->size;
out:
    if (data != NULL)
        OPENSSL_cleanse(data, sizeof(*data));
    Esys_Free(data);
    Esys_Free(digest);
    tc_tpm_session_flush(tpm, &auth);
    tc_tpm_session_flush(tpm, &policy);
    if (h != ESYS_TR_NONE) {
        r = Esys_FlushContext(tpm->esys, h);
        if (r != TSS2_RC_SUCCESS)
            tc_tpm_rc(r, "Esys_FlushContext(sealed data)");
    }
    OPENSSL_cleanse(&priv, sizeof(priv));
    free(s);
    return rc;
}

/* An ESYS_TR for the counter at index with its public area checked. TC_ERR_NOT_FOUND when
 * absent; TC_ERR_MISMATCH when the index is not a counter with our attributes. *written tells
 * whether it has a value yet. */
static int counter_open(struct tc_tpm *tpm, uint32_t index, ESYS_TR *nv, bool *written)
{
    TPM2B_NV_PUBLIC *pub = NULL;
    TPM2B_NAME *name = NULL;
    bool exists;
    int rc;

    *nv = ESYS_TR_NONE;
    *written = false;
    if ((rc = tc_tpm_handle_exists(tpm, index, &exists)) != 0)
        return rc;
    if (!exists)
        return TC_ERR_NOT_FOUND;
    TSS2_RC r =
        Esys_TR_FromTPMPublic(tpm->esys, index, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, nv);
    if (r != TSS2_RC_SUCCESS) {
        *nv = ESYS_TR_NONE;
        return tc_tpm_rc(r, "Esys_TR_FromTPMPublic(NV counter)");
    }
    r = Esys_NV_ReadPublic(tpm->esys, *nv, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, &name);
    if (r != TSS2_RC_SUCCESS) {
        rc = tc_tpm_rc(r, "Esys_NV_ReadPublic(NV counter)");
        goto out;
    }
    /* Anyone with owner auth could have put something else here; only our exact counter (type,
     * auth rules, no policy) guarantees the monotonic value the registry relies on. */
    const TPMS_NV_PUBLIC *p = &pub->nvPublic;
    if ((p->attributes & ~(TPMA_NV)TPMA_NV_WRITTEN) != counter_attrs ||
        p->nameAlg != TPM2_ALG_SHA256 || p->authPolicy.size != 0 || p->dataSize != 8) {
        LOG_ERROR("NV index 0x%08x is not the expected counter (attributes 0x%08x)", index,
                  p->attributes);
        rc = TC_ERR_MISMATCH;
        goto out;
    }
    *written = (p->attributes & TPMA_NV_WRITTEN) != 0;
out:
    Esys_Free(pub);
    Esys_Free(name);
    if (rc != 0)
        Esys_TR_Close(tpm->esys, nv);
    return rc;
}

static int counter_bump(struct tc_tpm *tpm, ESYS_TR nv)
{
    TSS2_RC r = Esys_NV_Increment(tpm->esys, nv, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE);
    return r == TSS2_RC_SUCCESS ? 0 : tc_tpm_rc(r, "Esys_NV_Increment");
}

static bool counter_index_ok(uint32_t index)
{
    return (index >> 24) == TPM2_HT_NV_INDEX;
}

int tc_tpm_nv_counter_define(struct tc_tpm *tpm, uint32_t index)
{
    ESYS_TR nv = ESYS_TR_NONE;
    bool written = false;
    int rc;

    if (tpm == NULL || !counter_index_ok(index))
        return TC_ERR_INVALID_ARG;
    rc = counter_open(tpm, index, &nv, &written);
    if (rc == TC_ERR_NOT_FOUND) {
        TPM2B_AUTH auth = {.size = 0};
        TPM2B_NV_PUBLIC pub = {
            .nvPublic = {.nvIndex = index,
                         .nameAlg = TPM2_ALG_SHA256,
                         .attributes = counter_attrs,
                         .authPolicy = {.size = 0},
                         .dataSize = 8},
        };
        TSS2_RC r = Esys_NV_DefineSpace(tpm->esys, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                        ESYS_TR_NONE, &auth, &pub, &nv);
        if (r != TSS2_RC_SUCCESS) {
            nv = ESYS_TR_NONE;
            return tc_tpm_rc(r, "Esys_NV_DefineSpace(counter)");
        }
        rc = 0;
    }
    if (rc != 0)
        return rc;
    /* An unwritten counter has no value (NV_Read answers TPM_RC_NV_UNINITIALIZED); its first
     * increment sets it to the highest value any counter of this TPM ever had, plus one. */
    if (!written)
        rc = counter_bump(tpm, nv);
    Esys_TR_Close(tpm->esys, &nv);
    return rc;
}

int tc_tpm_nv_counter_increment(struct tc_tpm *tpm, uint32_t index)
{
    ESYS_TR nv = ESYS_TR_NONE;
    bool written;
    int rc;

    if (tpm == NULL || !counter_index_ok(index))
        return TC_ERR_INVALID_ARG;
    if ((rc = counter_open(tpm, index, &nv, &written)) != 0)
        return rc;
    rc = counter_bump(tpm, nv);
    Esys_TR_Close(tpm->esys, &nv);
    return rc;
}

int tc_tpm_nv_counter_read(struct tc_tpm *tpm, uint32_t index, uint64_t *value)
{
    ESYS_TR nv = ESYS_TR_NONE;
    TPM2B_MAX_NV_BUFFER *buf = NULL;
    bool written;
    int rc;

    *value = 0;
    if (tpm == NULL || !counter_index_ok(index))
        return TC_ERR_INVALID_ARG;
    if ((rc = counter_open(tpm, index, &nv, &written)) != 0)
        return rc;
    if (!written) {
        rc = TC_ERR_NOT_FOUND;
        goto out;
    }
    TSS2_RC r =
        Esys_NV_Read(tpm->esys, nv, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, 8, 0, &buf);
    if (r != TSS2_RC_SUCCESS) {
        buf = NULL;
        rc = tc_tpm_rc(r, "Esys_NV_Read(counter)");
        goto out;
    }
    if (buf->size != 8) {
        rc = TC_ERR_TPM;
        goto out;
    }
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | buf->buffer[i];
    *value = v;
out:
    Esys_Free(buf);
    Esys_TR_Close(tpm->esys, &nv);
    return rc;
}
