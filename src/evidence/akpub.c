/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Attestation key public parts: TPM public areas and SubjectPublicKeyInfo into
 * OpenSSL keys, TPM names and qualified names.
 */
#define LOGMODULE "akpub"
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <tss2/tss2_mu.h>

#include "evidence/quote_internal.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"
#include "trustcloud/quote.h"

static void ak_init(struct tc_ak *ak)
{
    memset(ak, 0, sizeof(*ak));
}

void tc_ak_free(struct tc_ak *ak)
{
    if (ak == NULL)
        return;
    EVP_PKEY_free(ak->pkey);
    free(ak);
}

bool tc_ak_has_public_area(const struct tc_ak *ak)
{
    return ak->has_public;
}

int tc_ak_name(const struct tc_ak *ak, const uint8_t **name, size_t *len)
{
    *name = NULL;
    *len = 0;
    if (!ak->has_public)
        return TC_ERR_NOT_FOUND;
    *name = ak->name;
    *len = ak->name_len;
    return 0;
}

const void *tc_ak_evp_pkey(const struct tc_ak *ak)
{
    return ak->pkey;
}

/* RSA key from a big-endian modulus and a TPM exponent (0 means 65537). */
int tc_ak_rsa_from_tpm(const uint8_t *n, size_t n_len, uint32_t exponent, EVP_PKEY **out)
{
    int rc = TC_ERR_CRYPTO;
    BIGNUM *bn_n = BN_bin2bn(n, (int)n_len, NULL), *bn_e = BN_new();
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;

    if (bn_n == NULL || bn_e == NULL || bld == NULL)
        goto out;
    if (BN_set_word(bn_e, exponent ? exponent : 65537) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) != 1 ||
        (params = OSSL_PARAM_BLD_to_param(bld)) == NULL)
        goto out;
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) != 1)
        goto out;
    rc = 0;
out:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n);
    BN_free(bn_e);
    return rc;
}

/* EC key from affine coordinates, encoded as an uncompressed point, on a named group. */
int tc_ak_ec_from_tpm(const char *keytype, const char *group, size_t field, const uint8_t *x,
                      size_t x_len, const uint8_t *y, size_t y_len, EVP_PKEY **out)
{
    uint8_t point[1 + 2 * 66];
    if (x_len > field || y_len > field || x_len == 0 || y_len == 0)
        return TC_ERR_FORMAT;
    memset(point, 0, sizeof(point));
    point[0] = 0x04;
    /* Coordinates may come without leading zero bytes: right-align them in the field. */
    memcpy(point + 1 + field - x_len, x, x_len);
    memcpy(point + 1 + 2 * field - y_len, y, y_len);

    int rc = TC_ERR_CRYPTO;
    OSSL_PARAM params[3];
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)group, 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * field);
    params[2] = OSSL_PARAM_construct_end();
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, keytype, NULL);
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) != 1)
        goto out;
    /* fromdata does not check the point is on the curve; a bad point must fail here. */
    EVP_PKEY_CTX *chk = EVP_PKEY_CTX_new_from_pkey(NULL, *out, NULL);
    int ok = chk != NULL && EVP_PKEY_public_check(chk) == 1;
    EVP_PKEY_CTX_free(chk);
    if (!ok) {
        EVP_PKEY_free(*out);
        *out = NULL;
        rc = TC_ERR_KEY;
        goto out;
    }
    rc = 0;
out:
    EVP_PKEY_CTX_free(ctx);
    return rc;
}

/* Fills ak from an unmarshaled public area whose marshaled TPMT_PUBLIC bytes are tpmt. */
static int ak_from_public(const TPMT_PUBLIC *pub, const uint8_t *tpmt, size_t tpmt_len,
                          struct tc_ak *ak, struct tc_reason *why)
{
    int rc;
    TPMA_OBJECT a = pub->objectAttributes;
    const TPMA_OBJECT need =
        TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT | TPMA_OBJECT_FIXEDTPM;
    if ((a & need) != need || (a & TPMA_OBJECT_DECRYPT))
        return tc_fail(why, TC_ERR_KEY, "quote.ak_attributes", -1,
                       "objectAttributes 0x%08x: an AK must be restricted, sign, fixedTPM and "
                       "not decrypt",
                       (unsigned)a);

    const struct tc_hash_alg *name_alg = tc_hash_by_tpm(pub->nameAlg);
    if (name_alg == NULL)
        return tc_fail(why, TC_ERR_UNSUPPORTED, "quote.ak", -1, "unsupported nameAlg 0x%04x",
                       pub->nameAlg);
    ak->name[0] = (uint8_t)(pub->nameAlg >> 8);
    ak->name[1] = (uint8_t)pub->nameAlg;
    if ((rc = tc_hash(name_alg, tpmt, tpmt_len, ak->name + 2)) != 0)
        return tc_fail(why, rc, "quote.ak", -1, "hashing the public area failed");
    ak->name_len = 2 + name_alg->size;
    ak->name_alg = name_alg;

    switch (pub->type) {
    case TPM2_ALG_RSA: {
        const TPMS_RSA_PARMS *p = &pub->parameters.rsaDetail;
        ak->key_type = TC_AK_RSA;
        ak->scheme = p->scheme.scheme;
        if (ak->scheme == TPM2_ALG_RSASSA || ak->scheme == TPM2_ALG_RSAPSS)
            ak->scheme_hash = p->scheme.details.anySig.hashAlg;
        else if (ak->scheme != TPM2_ALG_NULL)
            return tc_fail(why, TC_ERR_KEY, "quote.ak_attributes", -1,
                           "RSA scheme 0x%04x is not a signing scheme", ak->scheme);
        if (pub->unique.rsa.size == 0 || pub->unique.rsa.size * 8u != p->keyBits)
            return tc_fail(why, TC_ERR_FORMAT, "quote.ak", -1,
                           "RSA modulus of %u bytes for %u bits", pub->unique.rsa.size, p->keyBits);
        rc = tc_ak_rsa_from_tpm(pub->unique.rsa.buffer, pub->unique.rsa.size, p->exponent,
                                &ak->pkey);
        if (rc)
            return tc_fail(why, rc, "quote.ak", -1, "OpenSSL rejected the RSA key");
        return 0;
    }
    case TPM2_ALG_ECC: {
        const TPMS_ECC_PARMS *p = &pub->parameters.eccDetail;
        const char *group, *keytype = "EC";
        size_t field;
        switch (p->curveID) {
        case TPM2_ECC_NIST_P256:
            group = "P-256", field = 32, ak->key_type = TC_AK_ECC;
            break;
        case TPM2_ECC_NIST_P384:
            group = "P-384", field = 48, ak->key_type = TC_AK_ECC;
            break;
        case TPM2_ECC_SM2_P256:
            group = "SM2", keytype = "SM2", field = 32, ak->key_type = TC_AK_SM2;
            break;
        default:
            return tc_fail(why, TC_ERR_UNSUPPORTED, "quote.ak", -1, "unsupported curve 0x%04x",
                           p->curveID);
        }
        ak->scheme = p->scheme.scheme;
        if (ak->scheme == TPM2_ALG_ECDSA || ak->scheme == TPM2_ALG_SM2)
            ak->scheme_hash = p->scheme.details.anySig.hashAlg;
        else if (ak->scheme != TPM2_ALG_NULL)
            return tc_fail(why, TC_ERR_UNSUPPORTED, "quote.ak", -1, "unsupported ECC scheme 0x%04x",
                           ak->scheme);
        rc = tc_ak_ec_from_tpm(keytype, group, field, pub->unique.ecc.x.buffer,
                               pub->unique.ecc.x.size, pub->unique.ecc.y.buffer,
                               pub->unique.ecc.y.size, &ak->pkey);
        if (rc)
            return tc_fail(why, rc, "quote.ak", -1, "invalid ECC public point");
        return 0;
    }
    default:
        return tc_fail(why, TC_ERR_UNSUPPORTED, "quote.ak", -1,
                       "unsupported key type 0x%04x (an AK is RSA or ECC)", pub->type);
    }
}

static int finish(struct tc_ak *ak, struct tc_ak **out)
{
    struct tc_ak *copy = malloc(sizeof(*copy));
    if (copy == NULL) {
        EVP_PKEY_free(ak->pkey);
        return TC_ERR_ALLOC;
    }
    *copy = *ak;
    *out = copy;
    return 0;
}

int tc_ak_from_tpmt_public(const uint8_t *data, size_t len, struct tc_ak **out,
                           struct tc_reason *why)
{
    *out = NULL;
    struct tc_ak ak;
    ak_init(&ak);
    TPMT_PUBLIC pub;
    size_t off = 0;
    memset(&pub, 0, sizeof(pub));
    if (len > TC_AK_MAX_FILE || Tss2_MU_TPMT_PUBLIC_Unmarshal(data, len, &off, &pub) != 0)
        return tc_fail(why, TC_ERR_FORMAT, "quote.ak", -1, "not a TPMT_PUBLIC");
    if (off != len)
        return tc_fail(why, TC_ERR_TRAILING, "quote.ak", -1, "%zu bytes after the TPMT_PUBLIC",
                       len - off);
    int rc = ak_from_public(&pub, data, len, &ak, why);
    if (rc) {
        EVP_PKEY_free(ak.pkey);
        return rc;
    }
    ak.has_public = true;
    return finish(&ak, out);
}

int tc_tpm2b_public_unmarshal(const uint8_t *data, size_t len, TPM2B_PUBLIC *pub)
{
    size_t off = 0;
    memset(pub, 0, sizeof(*pub));
    if (data == NULL || len < 2 ||
        Tss2_MU_TPM2B_PUBLIC_Unmarshal(data, len, &off, pub) != TSS2_RC_SUCCESS)
        return TC_ERR_FORMAT;
    int rc = off != len                                      ? TC_ERR_TRAILING
             : (((size_t)data[0] << 8) | data[1]) != len - 2 ? TC_ERR_FORMAT
                                                             : 0;
    if (rc)
        memset(pub, 0, sizeof(*pub));
    return rc;
}

int tc_ak_from_tpm2b_public(const uint8_t *data, size_t len, struct tc_ak **out,
                            struct tc_reason *why)
{
    *out = NULL;
    TPM2B_PUBLIC pub;
    int rc = len > TC_AK_MAX_FILE ? TC_ERR_FORMAT : tc_tpm2b_public_unmarshal(data, len, &pub);
    if (rc == TC_ERR_TRAILING)
        return tc_fail(why, rc, "quote.ak", -1, "bytes after the TPM2B_PUBLIC");
    if (rc)
        return tc_fail(why, rc, "quote.ak", -1,
                       "not a TPM2B_PUBLIC (or its size prefix does not frame it)");
    return tc_ak_from_tpmt_public(data + 2, len - 2, out, why);
}

int tc_ak_from_spki(const uint8_t *data, size_t len, struct tc_ak **out, struct tc_reason *why)
{
    *out = NULL;
    struct tc_ak ak;
    ak_init(&ak);
    if (len > TC_AK_MAX_FILE || len > INT32_MAX)
        return tc_fail(why, TC_ERR_TOO_LARGE, "quote.ak", -1, "key file too large");
    if (len >= 10 && memcmp(data, "-----BEGIN", 10) == 0) {
        BIO *bio = BIO_new_mem_buf(data, (int)len);
        if (bio == NULL)
            return TC_ERR_ALLOC;
        ak.pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
        BIO_free(bio);
    } else {
        const unsigned char *p = data;
        ak.pkey = d2i_PUBKEY(NULL, &p, (long)len);
        if (ak.pkey != NULL && p != data + len) {
            EVP_PKEY_free(ak.pkey);
            return tc_fail(why, TC_ERR_TRAILING, "quote.ak", -1, "bytes after the DER key");
        }
    }
    if (ak.pkey == NULL)
        return tc_fail(why, TC_ERR_FORMAT, "quote.ak", -1, "not a PEM or DER SubjectPublicKeyInfo");
    if (EVP_PKEY_is_a(ak.pkey, "RSA")) {
        ak.key_type = TC_AK_RSA;
    } else if (EVP_PKEY_is_a(ak.pkey, "SM2")) {
        ak.key_type = TC_AK_SM2;
    } else if (EVP_PKEY_is_a(ak.pkey, "EC")) {
        char group[32] = "";
        size_t glen = 0;
        EVP_PKEY_get_utf8_string_param(ak.pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                       &glen);
        if (strcmp(group, "SM2") == 0) {
            ak.key_type = TC_AK_SM2;
        } else if (strcmp(group, "prime256v1") == 0 || strcmp(group, "secp384r1") == 0 ||
                   strcmp(group, "P-256") == 0 || strcmp(group, "P-384") == 0) {
            ak.key_type = TC_AK_ECC;
        } else {
            EVP_PKEY_free(ak.pkey);
            return tc_fail(why, TC_ERR_UNSUPPORTED, "quote.ak", -1, "unsupported curve %s", group);
        }
    } else {
        EVP_PKEY_free(ak.pkey);
        return tc_fail(why, TC_ERR_UNSUPPORTED, "quote.ak", -1, "unsupported key type");
    }
    /* An SM2 curve key parsed as "EC" must be re-typed, or OpenSSL signs/verifies as ECDSA. */
    if (ak.key_type == TC_AK_SM2 && !EVP_PKEY_is_a(ak.pkey, "SM2")) {
        uint8_t point[65];
        size_t plen = 0;
        EVP_PKEY *sm2 = NULL;
        int ok = EVP_PKEY_get_octet_string_param(ak.pkey, OSSL_PKEY_PARAM_PUB_KEY, point,
                                                 sizeof(point), &plen) == 1 &&
                 plen == 65 &&
                 tc_ak_ec_from_tpm("SM2", "SM2", 32, point + 1, 32, point + 33, 32, &sm2) == 0;
        EVP_PKEY_free(ak.pkey);
        ak.pkey = sm2;
        if (!ok)
            return tc_fail(why, TC_ERR_KEY, "quote.ak", -1, "unusable SM2 key");
    }
    ak.has_public = false;
    ak.scheme = TPM2_ALG_NULL;
    return finish(&ak, out);
}

int tc_ak_parse(const uint8_t *data, size_t len, struct tc_ak **out, struct tc_reason *why)
{
    *out = NULL;
    if (data == NULL || len == 0)
        return tc_fail(why, TC_ERR_FORMAT, "quote.ak", -1, "empty key");
    if (len >= 10 && memcmp(data, "-----BEGIN", 10) == 0)
        return tc_ak_from_spki(data, len, out, why);
    if (len >= 2 && ((size_t)data[0] << 8 | data[1]) == len - 2)
        return tc_ak_from_tpm2b_public(data, len, out, why);
    if (data[0] == 0x30)
        return tc_ak_from_spki(data, len, out, why);
    return tc_ak_from_tpmt_public(data, len, out, why);
}

int tc_ak_load_file(const char *path, struct tc_ak **out, struct tc_reason *why)
{
    *out = NULL;
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = tc_file_read(path, TC_AK_MAX_FILE, &data, &len);
    if (rc)
        return tc_fail(why, rc == TC_ERR_TOO_LARGE ? rc : TC_ERR_IO, "quote.ak", -1,
                       "cannot read %s", path);
    rc = tc_ak_parse(data, len, out, why);
    free(data);
    return rc;
}

int tc_ak_to_pem(const struct tc_ak *ak, char **pem, size_t *len)
{
    *pem = NULL;
    *len = 0;
    int rc = TC_ERR_CRYPTO;
    BIO *bio = BIO_new(BIO_s_mem());
    char *p = NULL;
    if (bio == NULL || PEM_write_bio_PUBKEY(bio, ak->pkey) != 1)
        goto out;
    char *mem;
    long n = BIO_get_mem_data(bio, &mem);
    if (n <= 0)
        goto out;
    if ((p = malloc((size_t)n + 1)) == NULL) {
        rc = TC_ERR_ALLOC;
        goto out;
    }
    memcpy(p, mem, (size_t)n);
    p[n] = 0;
    *pem = p;
    *len = (size_t)n;
    rc = 0;
out:
    BIO_free(bio);
    return rc;
}

int tc_tpm_public_name(const uint8_t *tpm2b_public, size_t len, uint8_t *out, size_t *out_len)
{
    *out_len = 0;
    TPM2B_PUBLIC pub;
    if (tc_tpm2b_public_unmarshal(tpm2b_public, len, &pub) != 0)
        return TC_ERR_FORMAT;
    const struct tc_hash_alg *alg = tc_hash_by_tpm(pub.publicArea.nameAlg);
    if (alg == NULL)
        return TC_ERR_UNSUPPORTED;
    out[0] = (uint8_t)(alg->tpm_alg >> 8);
    out[1] = (uint8_t)alg->tpm_alg;
    int rc = tc_hash(alg, tpm2b_public + 2, len - 2, out + 2);
    if (rc == 0)
        *out_len = 2 + alg->size;
    return rc;
}

int tc_tpm_qualified_name(const uint8_t *parent, size_t parent_len, const uint8_t *name,
                          size_t name_len, uint8_t *out, size_t *out_len)
{
    *out_len = 0;
    if (name_len < 2 || name_len > TC_QUOTE_MAX_NAME || parent_len > TC_QUOTE_MAX_NAME)
        return TC_ERR_INVALID_ARG;
    const struct tc_hash_alg *alg = tc_hash_by_tpm((uint16_t)(name[0] << 8 | name[1]));
    if (alg == NULL || name_len != 2 + alg->size)
        return TC_ERR_UNSUPPORTED;
    out[0] = name[0];
    out[1] = name[1];
    int rc = tc_hash2(alg, parent, parent_len, name, name_len, out + 2);
    if (rc == 0)
        *out_len = 2 + alg->size;
    return rc;
}

int tc_ak_qualified_name(const struct tc_ak *ak, uint32_t hierarchy, const uint8_t *parent_pub,
                         size_t parent_pub_len, uint8_t *out, size_t *out_len)
{
    *out_len = 0;
    if (!ak->has_public)
        return TC_ERR_NOT_FOUND;
    uint8_t handle[4] = {(uint8_t)(hierarchy >> 24), (uint8_t)(hierarchy >> 16),
                         (uint8_t)(hierarchy >> 8), (uint8_t)hierarchy};
    uint8_t parent_name[TC_QUOTE_MAX_NAME], parent_qn[TC_QUOTE_MAX_NAME];
    size_t pn_len, pqn_len;
    int rc;
    if ((rc = tc_tpm_public_name(parent_pub, parent_pub_len, parent_name, &pn_len)) != 0)
        return rc;
    if ((rc = tc_tpm_qualified_name(handle, 4, parent_name, pn_len, parent_qn, &pqn_len)) != 0)
        return rc;
    return tc_tpm_qualified_name(parent_qn, pqn_len, ak->name, ak->name_len, out, out_len);
}
