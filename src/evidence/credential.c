/* SPDX-License-Identifier: Apache-2.0 */
#define LOGMODULE "credential"
#include "trustcloud/credential.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <tss2/tss2_mu.h>

#include "trustcloud/error.h"
#include "trustcloud/hashalg.h"
#include "trustcloud/log.h"
#include "trustcloud/quote.h"

/* KDFa (Part 1, 11.4.10.2): SP800-108 counter mode with HMAC; the label gets a 0 separator. */
static int kdfa(const struct tc_hash_alg *h, const uint8_t *key, size_t keylen, const char *label,
                const uint8_t *ctx_u, size_t ctx_u_len, const uint8_t *ctx_v, size_t ctx_v_len,
                uint8_t *out, size_t outlen)
{
    int rc = TC_ERR_CRYPTO;
    uint8_t context[2 * TC_MAX_DIGEST + 4];
    if (ctx_u_len + ctx_v_len > sizeof(context))
        return TC_ERR_INVALID_ARG;
    if (ctx_u_len)
        memcpy(context, ctx_u, ctx_u_len);
    if (ctx_v_len)
        memcpy(context + ctx_u_len, ctx_v, ctx_v_len);
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "KBKDF", NULL);
    EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    if (kctx == NULL)
        goto out;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_MODE, "counter", 0),
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_MAC, "HMAC", 0),
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)h->ossl_name, 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)key, keylen),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)label, strlen(label)),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, context, ctx_u_len + ctx_v_len),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_KDF_derive(kctx, out, outlen, params) == 1)
        rc = 0;
out:
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    OPENSSL_cleanse(context, sizeof(context));
    return rc;
}

/* KDFe (Part 1, 11.4.10.3): SP800-56A concatenation KDF: H(counter || Z || label\0 || U || V). */
static int kdfe(const struct tc_hash_alg *h, const uint8_t *z, size_t zlen, const char *label,
                const uint8_t *party_u, size_t ulen, const uint8_t *party_v, size_t vlen,
                uint8_t *out, size_t outlen)
{
    int rc = TC_ERR_CRYPTO;
    uint8_t info[16 + 2 * 66];
    size_t llen = strlen(label) + 1;
    if (llen + ulen + vlen > sizeof(info))
        return TC_ERR_INVALID_ARG;
    memcpy(info, label, llen);
    memcpy(info + llen, party_u, ulen);
    memcpy(info + llen + ulen, party_v, vlen);
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "SSKDF", NULL);
    EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    if (kctx == NULL)
        goto out;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)h->ossl_name, 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)z, zlen),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, llen + ulen + vlen),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_KDF_derive(kctx, out, outlen, params) == 1)
        rc = 0;
out:
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    return rc;
}

static int rsa_pkey(const TPMT_PUBLIC *pub, EVP_PKEY **out)
{
    int rc = TC_ERR_CRYPTO;
    uint32_t exp = pub->parameters.rsaDetail.exponent ? pub->parameters.rsaDetail.exponent : 65537;
    BIGNUM *n = BN_bin2bn(pub->unique.rsa.buffer, pub->unique.rsa.size, NULL);
    BIGNUM *e = BN_new();
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (!n || !e || !bld || !ctx || BN_set_word(e, exp) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) != 1 ||
        (params = OSSL_PARAM_BLD_to_param(bld)) == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) != 1)
        goto out;
    rc = 0;
out:
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    EVP_PKEY_CTX_free(ctx);
    BN_free(n);
    BN_free(e);
    return rc;
}

static int rsa_secret(const TPMT_PUBLIC *pub, const struct tc_hash_alg *h, uint8_t *seed,
                      size_t seedlen, TPM2B_ENCRYPTED_SECRET *secret)
{
    int rc = TC_ERR_CRYPTO;
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    /* OAEP label "IDENTITY" including its terminating zero; OpenSSL takes ownership of it. */
    char *label = OPENSSL_strdup("IDENTITY");
    if (label == NULL)
        return TC_ERR_ALLOC;
    if ((rc = rsa_pkey(pub, &pkey)) != 0)
        goto out;
    rc = TC_ERR_CRYPTO;
    size_t outlen = sizeof(secret->secret);
    if ((ctx = EVP_PKEY_CTX_new(pkey, NULL)) == NULL || EVP_PKEY_encrypt_init(ctx) != 1 ||
        EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) != 1 ||
        EVP_PKEY_CTX_set_rsa_oaep_md(ctx, tc_hash_evp(h)) != 1 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, tc_hash_evp(h)) != 1 ||
        EVP_PKEY_CTX_set0_rsa_oaep_label(ctx, label, strlen(label) + 1) != 1)
        goto out;
    label = NULL;
    if (EVP_PKEY_encrypt(ctx, secret->secret, &outlen, seed, seedlen) != 1)
        goto out;
    secret->size = (UINT16)outlen;
    rc = 0;
out:
    OPENSSL_free(label);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(pkey);
    return rc;
}

static int ecc_secret(const TPMT_PUBLIC *pub, const struct tc_hash_alg *h, uint8_t *seed,
                      size_t seedlen, TPM2B_ENCRYPTED_SECRET *secret)
{
    const char *group;
    size_t coord;
    switch (pub->parameters.eccDetail.curveID) {
    case TPM2_ECC_NIST_P256:
        group = "P-256";
        coord = 32;
        break;
    case TPM2_ECC_NIST_P384:
        group = "P-384";
        coord = 48;
        break;
    default:
        return TC_ERR_KEY;
    }
    const TPMS_ECC_POINT *q = &pub->unique.ecc;
    if (q->x.size != coord || q->y.size != coord)
        return TC_ERR_FORMAT;
    int rc = TC_ERR_CRYPTO;
    EVP_PKEY *peer = NULL, *eph = NULL;
    EVP_PKEY_CTX *pctx = NULL, *dctx = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    uint8_t point[1 + 2 * 48], z[48], eph_pt[1 + 2 * 48];
    size_t zlen = sizeof(z), eph_len = 0;
    point[0] = 0x04;
    memcpy(point + 1, q->x.buffer, coord);
    memcpy(point + 1 + coord, q->y.buffer, coord);
    if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
        OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1 ||
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * coord) != 1 ||
        (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
        (pctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL ||
        EVP_PKEY_fromdata_init(pctx) != 1 ||
        EVP_PKEY_fromdata(pctx, &peer, EVP_PKEY_PUBLIC_KEY, params) != 1)
        goto out;
    /* An ephemeral key on the EK's curve; Z is the x coordinate of the shared point. */
    if ((eph = EVP_EC_gen(group)) == NULL || (dctx = EVP_PKEY_CTX_new(eph, NULL)) == NULL ||
        EVP_PKEY_derive_init(dctx) != 1 || EVP_PKEY_derive_set_peer(dctx, peer) != 1 ||
        EVP_PKEY_derive(dctx, z, &zlen) != 1 || zlen != coord)
        goto out;
    if (EVP_PKEY_get_octet_string_param(eph, OSSL_PKEY_PARAM_PUB_KEY, eph_pt, sizeof(eph_pt),
                                        &eph_len) != 1 ||
        eph_len != 1 + 2 * coord)
        goto out;
    if ((rc = kdfe(h, z, zlen, "IDENTITY", eph_pt + 1, coord, q->x.buffer, coord, seed, seedlen)) !=
        0)
        goto out;
    /* The encrypted secret is the marshaled ephemeral TPMS_ECC_POINT. */
    TPMS_ECC_POINT ep = {0};
    ep.x.size = ep.y.size = (UINT16)coord;
    memcpy(ep.x.buffer, eph_pt + 1, coord);
    memcpy(ep.y.buffer, eph_pt + 1 + coord, coord);
    size_t off = 0;
    if (Tss2_MU_TPMS_ECC_POINT_Marshal(&ep, secret->secret, sizeof(secret->secret), &off) !=
        TSS2_RC_SUCCESS) {
        rc = TC_ERR_INTERNAL;
        goto out;
    }
    secret->size = (UINT16)off;
    rc = 0;
out:
    OPENSSL_cleanse(z, sizeof(z));
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    EVP_PKEY_CTX_free(pctx);
    EVP_PKEY_CTX_free(dctx);
    EVP_PKEY_free(peer);
    EVP_PKEY_free(eph);
    return rc;
}

int tc_make_credential(const uint8_t *ek_public, size_t ek_public_len, const uint8_t *obj_name,
                       size_t obj_name_len, const uint8_t *credential, size_t credential_len,
                       struct tc_credential_blob *out)
{
    memset(out, 0, sizeof(*out));
    TPM2B_PUBLIC pub;
    if (tc_tpm2b_public_unmarshal(ek_public, ek_public_len, &pub) != 0)
        return TC_ERR_FORMAT;
    const TPMT_PUBLIC *p = &pub.publicArea;
    const struct tc_hash_alg *h = tc_hash_by_tpm(p->nameAlg);
    if (h == NULL || obj_name_len > sizeof(TPM2B_NAME) - 2 || credential_len == 0 ||
        credential_len > h->size)
        return TC_ERR_INVALID_ARG;
    TPMA_OBJECT need = TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
    if ((p->objectAttributes & need) != need || (p->objectAttributes & TPMA_OBJECT_SIGN_ENCRYPT))
        return TC_ERR_KEY;
    const TPMT_SYM_DEF_OBJECT *sym = p->type == TPM2_ALG_RSA   ? &p->parameters.rsaDetail.symmetric
                                     : p->type == TPM2_ALG_ECC ? &p->parameters.eccDetail.symmetric
                                                               : NULL;
    if (sym == NULL || sym->algorithm != TPM2_ALG_AES || sym->mode.aes != TPM2_ALG_CFB)
        return TC_ERR_KEY;
    const char *cipher_name = sym->keyBits.aes == 128   ? "AES-128-CFB"
                              : sym->keyBits.aes == 256 ? "AES-256-CFB"
                                                        : NULL;
    if (cipher_name == NULL)
        return TC_ERR_KEY;
    size_t symlen = sym->keyBits.aes / 8;

    int rc;
    uint8_t seed[TC_MAX_DIGEST], symkey[32], hmackey[TC_MAX_DIGEST];
    TPM2B_ENCRYPTED_SECRET secret = {0};
    TPM2B_ID_OBJECT idobj = {0};
    EVP_CIPHER *cipher = NULL;
    EVP_CIPHER_CTX *cctx = NULL;
    /* The seed is as long as the name algorithm's digest (Part 1, 24.4). */
    size_t seedlen = h->size;
    if (p->type == TPM2_ALG_RSA) {
        if (RAND_bytes(seed, (int)seedlen) != 1) {
            rc = TC_ERR_CRYPTO;
            goto out;
        }
        rc = rsa_secret(p, h, seed, seedlen, &secret);
    } else {
        rc = ecc_secret(p, h, seed, seedlen, &secret);
    }
    if (rc)
        goto out;

    /* symKey = KDFa(nameAlg, seed, "STORAGE", name, NULL, symBits). */
    if ((rc = kdfa(h, seed, seedlen, "STORAGE", obj_name, obj_name_len, NULL, 0, symkey, symlen)) !=
        0)
        goto out;
    /* encIdentity = CFB(symKey, IV = 0, marshaled TPM2B_DIGEST(credential)). */
    uint8_t plain[2 + TC_CRED_MAX_CREDENTIAL], iv[16] = {0};
    plain[0] = (uint8_t)(credential_len >> 8);
    plain[1] = (uint8_t)credential_len;
    memcpy(plain + 2, credential, credential_len);
    size_t hlen = h->size;
    uint8_t *enc = idobj.credential + 2 + hlen; /* after the integrity TPM2B_DIGEST */
    int n1 = 0, n2 = 0;
    rc = TC_ERR_CRYPTO;
    if ((cipher = EVP_CIPHER_fetch(NULL, cipher_name, NULL)) == NULL ||
        (cctx = EVP_CIPHER_CTX_new()) == NULL ||
        EVP_EncryptInit_ex2(cctx, cipher, symkey, iv, NULL) != 1 ||
        EVP_EncryptUpdate(cctx, enc, &n1, plain, (int)(2 + credential_len)) != 1 ||
        EVP_EncryptFinal_ex(cctx, enc + n1, &n2) != 1)
        goto out_plain;
    size_t enclen = (size_t)(n1 + n2);
    /* HMACkey = KDFa(nameAlg, seed, "INTEGRITY", NULL, NULL, digest bits);
     * outerHMAC = HMAC(HMACkey, encIdentity || name). */
    if ((rc = kdfa(h, seed, seedlen, "INTEGRITY", NULL, 0, NULL, 0, hmackey, hlen)) != 0)
        goto out_plain;
    uint8_t mac_in[2 + TC_CRED_MAX_CREDENTIAL + sizeof(TPM2B_NAME)];
    memcpy(mac_in, enc, enclen);
    memcpy(mac_in + enclen, obj_name, obj_name_len);
    rc = TC_ERR_CRYPTO;
    if (EVP_Q_mac(NULL, "HMAC", NULL, h->ossl_name, NULL, hmackey, hlen, mac_in,
                  enclen + obj_name_len, idobj.credential + 2, hlen, NULL) == NULL)
        goto out_plain;
    idobj.credential[0] = (uint8_t)(hlen >> 8);
    idobj.credential[1] = (uint8_t)hlen;
    idobj.size = (UINT16)(2 + hlen + enclen);

    size_t off = 0;
    if (Tss2_MU_TPM2B_ID_OBJECT_Marshal(&idobj, out->id_object, sizeof(out->id_object), &off) !=
        TSS2_RC_SUCCESS) {
        rc = TC_ERR_INTERNAL;
        goto out_plain;
    }
    out->id_object_len = off;
    off = 0;
    if (Tss2_MU_TPM2B_ENCRYPTED_SECRET_Marshal(&secret, out->secret, sizeof(out->secret), &off) !=
        TSS2_RC_SUCCESS) {
        rc = TC_ERR_INTERNAL;
        goto out_plain;
    }
    out->secret_len = off;
    rc = 0;
out_plain:
    OPENSSL_cleanse(plain, sizeof(plain));
out:
    if (rc)
        memset(out, 0, sizeof(*out));
    OPENSSL_cleanse(seed, sizeof(seed));
    OPENSSL_cleanse(symkey, sizeof(symkey));
    OPENSSL_cleanse(hmackey, sizeof(hmackey));
    EVP_CIPHER_CTX_free(cctx);
    EVP_CIPHER_free(cipher);
    return rc;
}
