/* SPDX-License-Identifier: Apache-2.0 */
/* TPM 2.0 quote verification (see include/trustcloud/quote.h). */
#define LOGMODULE "quote"
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <tss2/tss2_mu.h>

#include "evidence/quote_internal.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"
#include "trustcloud/quote.h"

void tc_pcr_selection_from_set(const struct tc_pcr_set *set, struct tc_pcr_selection *sel)
{
    memset(sel, 0, sizeof(*sel));
    for (size_t i = 0; i < set->nbanks && i < TC_MAX_BANKS; i++) {
        sel->bank[i].alg = set->bank[i].alg;
        sel->bank[i].mask = set->bank[i].mask;
    }
    sel->nbanks = set->nbanks;
}

bool tc_pcr_selection_equal(const struct tc_pcr_selection *a, const struct tc_pcr_selection *b)
{
    if (a->nbanks != b->nbanks)
        return false;
    for (size_t i = 0; i < a->nbanks; i++)
        if (a->bank[i].alg != b->bank[i].alg || a->bank[i].mask != b->bank[i].mask)
            return false;
    return true;
}

void tc_pcr_selection_format(const struct tc_pcr_selection *sel, char *buf, size_t cap)
{
    struct tc_buf b;
    tc_buf_init(&b, cap ? cap - 1 : 0);
    for (size_t i = 0; i < sel->nbanks; i++) {
        tc_buf_putf(&b, "%s%s:", i ? "+" : "", sel->bank[i].alg->name);
        int first = 1;
        for (unsigned p = 0; p < TC_PCR_COUNT; p++)
            if (sel->bank[i].mask & (1u << p)) {
                tc_buf_putf(&b, "%s%u", first ? "" : ",", p);
                first = 0;
            }
    }
    if (cap) {
        size_t n = b.len < cap - 1 ? b.len : cap - 1;
        if (n)
            memcpy(buf, b.data, n);
        buf[n] = 0;
    }
    tc_buf_release(&b);
}

int tc_quote_pcr_digest(const struct tc_hash_alg *hash, const struct tc_pcr_selection *sel,
                        const struct tc_pcr_set *pcrs, uint8_t *out)
{
    /* Largest concatenation: every PCR of every bank at the largest digest size. */
    uint8_t cat[TC_MAX_BANKS * TC_PCR_COUNT * TC_MAX_DIGEST];
    size_t n = 0;
    for (size_t i = 0; i < sel->nbanks; i++) {
        const struct tc_pcr_bank *b = tc_pcrs_bank_const(pcrs, sel->bank[i].alg);
        if (sel->bank[i].mask != 0 &&
            (b == NULL || (b->mask & sel->bank[i].mask) != sel->bank[i].mask))
            return TC_ERR_NOT_FOUND;
        for (unsigned p = 0; p < TC_PCR_COUNT; p++) {
            if (!(sel->bank[i].mask & (1u << p)))
                continue;
            if (n + b->alg->size > sizeof(cat))
                return TC_ERR_TOO_LARGE;
            memcpy(cat + n, b->value[p], b->alg->size);
            n += b->alg->size;
        }
    }
    return tc_hash(hash, cat, n, out);
}

int tc_quote_parse(const uint8_t *attest, size_t attest_len, struct tc_quote_info *info,
                   struct tc_reason *why)
{
    memset(info, 0, sizeof(*info));
    if (attest == NULL || attest_len == 0)
        return tc_fail(why, TC_ERR_FORMAT, "quote.format", -1, "empty quote message");
    if (attest_len > TC_QUOTE_MAX_ATTEST)
        return tc_fail(why, TC_ERR_TOO_LARGE, "quote.format", -1, "quote message of %zu bytes",
                       attest_len);
    TPMS_ATTEST a;
    size_t off = 0;
    TSS2_RC trc = Tss2_MU_TPMS_ATTEST_Unmarshal(attest, attest_len, &off, &a);
    if (trc != TSS2_RC_SUCCESS)
        return tc_fail(why, TC_ERR_FORMAT, "quote.format", -1,
                       "not a TPMS_ATTEST (unmarshal error 0x%x)", (unsigned)trc);
    if (off != attest_len)
        return tc_fail(why, TC_ERR_TRAILING, "quote.format", -1, "%zu bytes after the TPMS_ATTEST",
                       attest_len - off);
    if (a.magic != TPM2_GENERATED_VALUE)
        return tc_fail(why, TC_ERR_FORMAT, "quote.magic", -1,
                       "magic 0x%08x is not TPM_GENERATED_VALUE", (unsigned)a.magic);
    if (a.type != TPM2_ST_ATTEST_QUOTE)
        return tc_fail(why, TC_ERR_FORMAT, "quote.type", -1,
                       "attestation type 0x%04x is not a quote", a.type);
    if (a.qualifiedSigner.size > sizeof(info->signer) || a.extraData.size > sizeof(info->nonce))
        return tc_fail(why, TC_ERR_FORMAT, "quote.format", -1, "oversized signer or nonce");

    const TPMS_QUOTE_INFO *q = &a.attested.quote;
    const TPML_PCR_SELECTION *s = &q->pcrSelect;
    if (s->count > TC_MAX_BANKS)
        return tc_fail(why, TC_ERR_TOO_LARGE, "quote.pcr_selection", -1,
                       "%u PCR banks selected (at most %d)", (unsigned)s->count, TC_MAX_BANKS);
    for (UINT32 i = 0; i < s->count; i++) {
        const TPMS_PCR_SELECTION *ps = &s->pcrSelections[i];
        const struct tc_hash_alg *alg = tc_hash_by_tpm(ps->hash);
        if (alg == NULL)
            return tc_fail(why, TC_ERR_UNSUPPORTED, "quote.pcr_selection", -1,
                           "unknown PCR bank 0x%04x", ps->hash);
        uint32_t mask = 0;
        for (unsigned j = 0; j < ps->sizeofSelect && j < TPM2_PCR_SELECT_MAX; j++)
            mask |= (uint32_t)ps->pcrSelect[j] << (8 * j);
        if (mask >> TC_PCR_COUNT)
            return tc_fail(why, TC_ERR_FORMAT, "quote.pcr_selection", -1,
                           "PCR index >= %d selected in bank %s", TC_PCR_COUNT, alg->name);
        info->selection.bank[i].alg = alg;
        info->selection.bank[i].mask = mask;
    }
    info->selection.nbanks = s->count;
    if (q->pcrDigest.size > sizeof(info->pcr_digest))
        return tc_fail(why, TC_ERR_FORMAT, "quote.format", -1, "oversized PCR digest");

    info->clock = a.clockInfo.clock;
    info->reset_count = a.clockInfo.resetCount;
    info->restart_count = a.clockInfo.restartCount;
    info->safe = a.clockInfo.safe != 0;
    info->firmware_version = a.firmwareVersion;
    memcpy(info->signer, a.qualifiedSigner.name, a.qualifiedSigner.size);
    info->signer_len = a.qualifiedSigner.size;
    memcpy(info->nonce, a.extraData.buffer, a.extraData.size);
    info->nonce_len = a.extraData.size;
    memcpy(info->pcr_digest, q->pcrDigest.buffer, q->pcrDigest.size);
    info->pcr_digest_len = q->pcrDigest.size;
    return 0;
}

/* DER INTEGER of an unsigned big-endian value; returns bytes written (out has n + 3). */
static size_t der_uint(uint8_t *out, const uint8_t *v, size_t n)
{
    while (n > 1 && v[0] == 0)
        v++, n--;
    size_t pad = (n == 0 || (v[0] & 0x80)) ? 1 : 0;
    out[0] = 0x02;
    out[1] = (uint8_t)(n + pad);
    out[2] = 0;
    memcpy(out + 2 + pad, v, n);
    return 2 + pad + n;
}

/* ECDSA-Sig-Value DER from r and s (each at most 66 bytes), as OpenSSL verifies. */
static int ecdsa_der(const TPMS_SIGNATURE_ECC *e, uint8_t *out, size_t *out_len)
{
    uint8_t body[2 * (66 + 3)];
    if (e->signatureR.size > 66 || e->signatureS.size > 66)
        return TC_ERR_FORMAT;
    size_t n = der_uint(body, e->signatureR.buffer, e->signatureR.size);
    n += der_uint(body + n, e->signatureS.buffer, e->signatureS.size);
    size_t h = 0;
    out[h++] = 0x30;
    if (n >= 0x80)
        out[h++] = 0x81;
    out[h++] = (uint8_t)n;
    memcpy(out + h, body, n);
    *out_len = h + n;
    return 0;
}

static int verify_sig(const struct tc_ak *ak, const TPMT_SIGNATURE *s,
                      const struct tc_hash_alg *hash, const uint8_t *dgst, const char *check,
                      struct tc_reason *why)
{
    uint8_t der[2 * (66 + 3) + 3];
    const uint8_t *sig;
    size_t sig_len;
    int pad = 0;

    switch (s->sigAlg) {
    case TPM2_ALG_ECDSA:
    case TPM2_ALG_SM2:
        if (ecdsa_der(&s->signature.ecdsa, der, &sig_len) != 0)
            return tc_fail(why, TC_ERR_SIGNATURE, check, -1, "oversized r or s");
        sig = der;
        break;
    case TPM2_ALG_RSASSA:
        pad = RSA_PKCS1_PADDING;
        sig = s->signature.rsassa.sig.buffer;
        sig_len = s->signature.rsassa.sig.size;
        break;
    case TPM2_ALG_RSAPSS:
        pad = RSA_PKCS1_PSS_PADDING;
        sig = s->signature.rsapss.sig.buffer;
        sig_len = s->signature.rsapss.sig.size;
        break;
    default:
        return tc_fail(why, TC_ERR_UNSUPPORTED, check, -1, "unsupported signature algorithm 0x%04x",
                       s->sigAlg);
    }

    int rc = TC_ERR_CRYPTO;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(ak->pkey, NULL);
    if (ctx == NULL || EVP_PKEY_verify_init(ctx) != 1)
        goto out;
    if (pad) {
        /* The digest algorithm goes into the PKCS#1 DigestInfo / PSS encoding. */
        if (EVP_PKEY_CTX_set_rsa_padding(ctx, pad) != 1 ||
            EVP_PKEY_CTX_set_signature_md(ctx, tc_hash_evp(hash)) != 1)
            goto out;
        /* TPMs use the largest salt or the digest length: let OpenSSL recover it. */
        if (pad == RSA_PKCS1_PSS_PADDING &&
            EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_AUTO) != 1)
            goto out;
    }
    /* ECDSA truncates the digest to the group order itself; SM2 from a TPM signs the scheme
     * hash of the message without the Z value, which is what EVP_PKEY_verify computes on. */
    int ok = EVP_PKEY_verify(ctx, sig, sig_len, dgst, hash->size);
    if (ok != 1) {
        ERR_clear_error(); /* a bad signature leaves decoding errors on the queue */
        rc = tc_fail(why, TC_ERR_SIGNATURE, check, -1, "the signature does not verify with the AK");
        goto out;
    }
    rc = 0;
out:
    if (rc == TC_ERR_CRYPTO)
        rc = tc_fail(why, rc, check, -1, "OpenSSL could not set up verification");
    EVP_PKEY_CTX_free(ctx);
    return rc;
}

int tc_attest_sig_verify(const struct tc_ak *ak, const char *module, const uint8_t *attest,
                         size_t attest_len, const uint8_t *sig, size_t sig_len,
                         const struct tc_hash_alg **hash_out, uint16_t *sig_alg_out,
                         struct tc_reason *why)
{
    char c_sig[32], c_scheme[32];
    TPMT_SIGNATURE s;
    size_t off = 0;
    int rc;

    snprintf(c_sig, sizeof(c_sig), "%s.signature", module);
    snprintf(c_scheme, sizeof(c_scheme), "%s.scheme", module);
    memset(&s, 0, sizeof(s));
    if (sig == NULL || sig_len > TC_QUOTE_MAX_SIG ||
        Tss2_MU_TPMT_SIGNATURE_Unmarshal(sig, sig_len, &off, &s) != TSS2_RC_SUCCESS)
        return tc_fail(why, TC_ERR_FORMAT, c_sig, -1, "not a TPMT_SIGNATURE");
    if (off != sig_len)
        return tc_fail(why, TC_ERR_TRAILING, c_sig, -1, "%zu bytes after the TPMT_SIGNATURE",
                       sig_len - off);

    /* The scheme must fit the key, and the key's own scheme when it has one. */
    uint16_t hash_alg = s.signature.any.hashAlg;
    bool fits =
        (s.sigAlg == TPM2_ALG_ECDSA && ak->key_type == TC_AK_ECC) ||
        (s.sigAlg == TPM2_ALG_SM2 && ak->key_type == TC_AK_SM2) ||
        ((s.sigAlg == TPM2_ALG_RSASSA || s.sigAlg == TPM2_ALG_RSAPSS) && ak->key_type == TC_AK_RSA);
    if (!fits)
        return tc_fail(why, TC_ERR_KEY, c_scheme, -1,
                       "signature algorithm 0x%04x does not fit the AK's key type", s.sigAlg);
    if (ak->scheme != TPM2_ALG_NULL && (s.sigAlg != ak->scheme || hash_alg != ak->scheme_hash))
        return tc_fail(why, TC_ERR_KEY, c_scheme, -1,
                       "signature scheme 0x%04x/0x%04x is not the AK's 0x%04x/0x%04x", s.sigAlg,
                       hash_alg, ak->scheme, ak->scheme_hash);
    const struct tc_hash_alg *hash = tc_hash_by_tpm(hash_alg);
    if (hash == NULL || tc_hash_evp(hash) == NULL)
        return tc_fail(why, TC_ERR_UNSUPPORTED, c_scheme, -1, "unsupported signature hash 0x%04x",
                       hash_alg);

    uint8_t dgst[TC_MAX_DIGEST];
    if ((rc = tc_hash(hash, attest, attest_len, dgst)) != 0)
        return tc_fail(why, rc, c_sig, -1, "hashing the %s attestation failed", module);
    if ((rc = verify_sig(ak, &s, hash, dgst, c_sig, why)) != 0)
        return rc;
    if (hash_out != NULL)
        *hash_out = hash;
    if (sig_alg_out != NULL)
        *sig_alg_out = s.sigAlg;
    return 0;
}

/* Serial-number comparison (RFC 1982) for obfuscated counters, plain otherwise. */
static int counter_cmp(uint32_t now, uint32_t before, bool obfuscated)
{
    if (!obfuscated)
        return now < before ? -1 : now > before;
    uint32_t d = now - before;
    if (d == 0)
        return 0;
    return d < 0x80000000u ? 1 : -1;
}

static int check_counters(struct tc_quote_info *info, const struct tc_quote_expect *ex,
                          struct tc_reason *why)
{
    const struct tc_quote_info *prev = ex->previous;
    int reset = counter_cmp(info->reset_count, prev->reset_count, ex->counters_obfuscated);
    info->firmware_changed = info->firmware_version != prev->firmware_version;
    if (reset < 0)
        return tc_fail(why, TC_ERR_ROLLBACK, "quote.reset_count", -1,
                       "resetCount went back from %u to %u", prev->reset_count, info->reset_count);
    if (reset > 0) {
        /* A TPM reset (reboot): clock and restartCount may legitimately start over. */
        info->rebooted = true;
        return 0;
    }
    int restart = counter_cmp(info->restart_count, prev->restart_count, ex->counters_obfuscated);
    if (restart < 0)
        return tc_fail(why, TC_ERR_ROLLBACK, "quote.restart_count", -1,
                       "restartCount went back from %u to %u without a reset", prev->restart_count,
                       info->restart_count);
    info->restarted = restart > 0;
    if (info->clock < prev->clock)
        return tc_fail(why, TC_ERR_ROLLBACK, "quote.clock", -1,
                       "clock went back from %llu to %llu ms without a reset",
                       (unsigned long long)prev->clock, (unsigned long long)info->clock);
    return 0;
}

int tc_quote_verify(const struct tc_ak *ak, const uint8_t *attest, size_t attest_len,
                    const uint8_t *sig, size_t sig_len, const struct tc_pcr_set *pcrs,
                    const struct tc_quote_expect *expect, struct tc_quote_info *info_out,
                    struct tc_reason *why)
{
    struct tc_quote_info info;
    int rc;
    if (info_out)
        memset(info_out, 0, sizeof(*info_out));
    if (ak == NULL || expect == NULL || (pcrs == NULL && !expect->pcr_values_withheld) ||
        sig == NULL || (expect->nonce == NULL && expect->nonce_len))
        return tc_fail(why, TC_ERR_INVALID_ARG, "quote.args", -1,
                       "AK, signature, PCR values and nonce are required");
    if ((rc = tc_quote_parse(attest, attest_len, &info, why)) != 0)
        return rc;

    /* Nonce first: it is what makes this quote fresh, and comparing costs nothing. */
    if (info.nonce_len != expect->nonce_len ||
        CRYPTO_memcmp(info.nonce, expect->nonce, expect->nonce_len) != 0)
        return tc_fail(why, TC_ERR_NONCE, "quote.nonce", -1,
                       "the quote carries a %zu-byte nonce that is not the one asked for",
                       info.nonce_len);

    if (expect->selection && !tc_pcr_selection_equal(&info.selection, expect->selection)) {
        char got[160], want[160];
        tc_pcr_selection_format(&info.selection, got, sizeof(got));
        tc_pcr_selection_format(expect->selection, want, sizeof(want));
        return tc_fail(why, TC_ERR_MISMATCH, "quote.pcr_selection", -1,
                       "quote selects %s, expected %s", got, want);
    }

    const struct tc_hash_alg *hash = NULL;
    uint16_t sig_alg = 0;
    if ((rc = tc_attest_sig_verify(ak, "quote", attest, attest_len, sig, sig_len, &hash, &sig_alg,
                                   why)) != 0)
        return rc;

    /* The TPM hashes the selected PCRs with the signing scheme's hash. */
    uint8_t pd[TC_MAX_DIGEST];
    if (expect->pcr_values_withheld)
        goto signer; /* the signed digest is all there is to check (see quote.h) */
    rc = tc_quote_pcr_digest(hash, &info.selection, pcrs, pd);
    if (rc == TC_ERR_NOT_FOUND) {
        char sel[160];
        tc_pcr_selection_format(&info.selection, sel, sizeof(sel));
        return tc_fail(why, TC_ERR_MISMATCH, "quote.pcr_values", -1,
                       "the PCR values do not cover the quoted selection %s", sel);
    }
    if (rc)
        return tc_fail(why, rc, "quote.pcr_digest", -1, "computing the PCR digest failed");
    if (info.pcr_digest_len != hash->size || memcmp(pd, info.pcr_digest, hash->size) != 0)
        return tc_fail(why, TC_ERR_MISMATCH, "quote.pcr_digest", -1,
                       "the PCR values do not hash to the quoted %s digest", hash->name);

signer:
    if (expect->signer_qn) {
        if (info.signer_len != expect->signer_qn_len ||
            memcmp(info.signer, expect->signer_qn, info.signer_len) != 0)
            return tc_fail(why, TC_ERR_MISMATCH, "quote.signer", -1,
                           "qualifiedSigner is not the AK's qualified name");
        info.signer_checked = true;
    } else if (ak->has_public) {
        if (info.signer_len != ak->name_len || memcmp(info.signer, ak->name, 2) != 0)
            return tc_fail(why, TC_ERR_MISMATCH, "quote.signer", -1,
                           "qualifiedSigner does not use the AK's name algorithm");
    }

    if (expect->previous && (rc = check_counters(&info, expect, why)) != 0)
        return rc;

    info.hash = hash;
    info.sig_alg = sig_alg;
    info.ak_checked = ak->has_public;
    if (info_out)
        *info_out = info;
    return 0;
}

json_t *tc_quote_info_to_json(const struct tc_quote_info *info)
{
    char hex[2 * TC_QUOTE_MAX_NAME + 1], sel[160];
    json_t *j = json_object();
    if (j == NULL)
        return NULL;
    json_object_set_new(j, "clock", json_integer((json_int_t)info->clock));
    json_object_set_new(j, "reset_count", json_integer(info->reset_count));
    json_object_set_new(j, "restart_count", json_integer(info->restart_count));
    json_object_set_new(j, "safe", json_boolean(info->safe));
    /* JSON integers are signed 64-bit: the firmware version goes out as hex text. */
    snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)info->firmware_version);
    json_object_set_new(j, "firmware_version", json_string(hex));
    tc_hex_encode(info->signer, info->signer_len, hex);
    json_object_set_new(j, "signer", json_string(hex));
    tc_hex_encode(info->nonce, info->nonce_len, hex);
    json_object_set_new(j, "nonce", json_string(hex));
    tc_pcr_selection_format(&info->selection, sel, sizeof(sel));
    json_object_set_new(j, "selection", json_string(sel));
    tc_hex_encode(info->pcr_digest, info->pcr_digest_len, hex);
    json_object_set_new(j, "pcr_digest", json_string(hex));
    if (info->hash)
        json_object_set_new(j, "hash", json_string(info->hash->name));
    json_object_set_new(j, "ak_checked", json_boolean(info->ak_checked));
    json_object_set_new(j, "signer_checked", json_boolean(info->signer_checked));
    json_object_set_new(j, "rebooted", json_boolean(info->rebooted));
    json_object_set_new(j, "restarted", json_boolean(info->restarted));
    json_object_set_new(j, "firmware_changed", json_boolean(info->firmware_changed));
    return j;
}
