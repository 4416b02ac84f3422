/* SPDX-License-Identifier: Apache-2.0 */
#define LOGMODULE "hash"
#include "trustcloud/hashalg.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "trustcloud/error.h"
#include "trustcloud/log.h"

/* TPM2_ALG_* values (TPM 2.0 Part 2, Table 9). */
static const struct tc_hash_alg algs[] = {
    {0x0004, "sha1", 20, "SHA1"},     {0x000B, "sha256", 32, "SHA256"},
    {0x000C, "sha384", 48, "SHA384"}, {0x000D, "sha512", 64, "SHA512"},
    {0x0012, "sm3_256", 32, "SM3"},
};
#define NALGS (sizeof(algs) / sizeof(algs[0]))

static EVP_MD *evp[NALGS];
static pthread_once_t evp_once = PTHREAD_ONCE_INIT;
/* One reusable digest context per thread (replay hashes millions of small buffers), freed by
 * the key's destructor when the thread exits. */
static pthread_key_t ctx_key;
static bool ctx_key_ready;

static void ctx_destroy(void *ctx)
{
    EVP_MD_CTX_free(ctx);
}

/* The main thread never runs key destructors: free its context at exit too. */
static void hashalg_fini(void)
{
    if (!ctx_key_ready) /* never hashed: nothing to free (and OpenSSL may be gone already) */
        return;
    void *ctx = pthread_getspecific(ctx_key);
    if (ctx) {
        pthread_setspecific(ctx_key, NULL);
        EVP_MD_CTX_free(ctx);
    }
}

static void fetch_all(void)
{
    for (size_t i = 0; i < NALGS; i++)
        evp[i] = EVP_MD_fetch(NULL, algs[i].ossl_name, NULL);
    if (pthread_key_create(&ctx_key, ctx_destroy) != 0)
        abort(); /* no thread-specific storage at start-up: nothing sensible to do */
    ctx_key_ready = true;
    /* Runs inside OPENSSL_cleanup(), before OpenSSL tears down what the context refers to. */
    OPENSSL_atexit(hashalg_fini);
}

const struct tc_hash_alg *tc_hash_all(size_t *count)
{
    *count = NALGS;
    return algs;
}

const struct tc_hash_alg *tc_hash_by_tpm(uint16_t tpm_alg)
{
    for (size_t i = 0; i < NALGS; i++)
        if (algs[i].tpm_alg == tpm_alg)
            return &algs[i];
    return NULL;
}

const struct tc_hash_alg *tc_hash_by_name_n(const char *name, size_t n)
{
    if (n == 3 && strncmp(name, "sm3", 3) == 0)
        return &algs[4];
    for (size_t i = 0; i < NALGS; i++)
        if (strlen(algs[i].name) == n && strncmp(algs[i].name, name, n) == 0)
            return &algs[i];
    return NULL;
}

const struct tc_hash_alg *tc_hash_by_name(const char *name)
{
    return tc_hash_by_name_n(name, strlen(name));
}

const void *tc_hash_evp(const struct tc_hash_alg *alg)
{
    pthread_once(&evp_once, fetch_all);
    size_t i = (size_t)(alg - algs);
    if (i >= NALGS)
        return NULL;
    return evp[i];
}

struct tc_hash_ctx {
    EVP_MD_CTX *md;
};

int tc_hash_ctx_new(const struct tc_hash_alg *alg, struct tc_hash_ctx **out)
{
    *out = NULL;
    const EVP_MD *md = tc_hash_evp(alg);
    if (md == NULL)
        return TC_ERR_UNSUPPORTED;
    struct tc_hash_ctx *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return TC_ERR_ALLOC;
    c->md = EVP_MD_CTX_new();
    if (c->md == NULL || EVP_DigestInit_ex(c->md, md, NULL) != 1) {
        tc_hash_ctx_free(c);
        return TC_ERR_CRYPTO;
    }
    *out = c;
    return 0;
}

int tc_hash_ctx_update(struct tc_hash_ctx *ctx, const void *data, size_t len)
{
    return EVP_DigestUpdate(ctx->md, data, len) == 1 ? 0 : TC_ERR_CRYPTO;
}

int tc_hash_ctx_final(struct tc_hash_ctx *ctx, uint8_t *out)
{
    return EVP_DigestFinal_ex(ctx->md, out, NULL) == 1 ? 0 : TC_ERR_CRYPTO;
}

void tc_hash_ctx_free(struct tc_hash_ctx *ctx)
{
    if (ctx == NULL)
        return;
    EVP_MD_CTX_free(ctx->md);
    free(ctx);
}

int tc_hash2(const struct tc_hash_alg *alg, const void *a, size_t alen, const void *b, size_t blen,
             uint8_t *out)
{
    const EVP_MD *md = tc_hash_evp(alg);
    if (md == NULL)
        return TC_ERR_UNSUPPORTED;
    EVP_MD_CTX *ctx = pthread_getspecific(ctx_key);
    if (ctx == NULL) {
        if ((ctx = EVP_MD_CTX_new()) == NULL)
            return TC_ERR_ALLOC;
        if (pthread_setspecific(ctx_key, ctx) != 0) {
            EVP_MD_CTX_free(ctx);
            return TC_ERR_ALLOC;
        }
    }
    if (EVP_DigestInit_ex(ctx, md, NULL) != 1 || EVP_DigestUpdate(ctx, a, alen) != 1 ||
        (blen && EVP_DigestUpdate(ctx, b, blen) != 1) || EVP_DigestFinal_ex(ctx, out, NULL) != 1) {
        LOG_ERROR("digest %s failed", alg->name);
        return TC_ERR_CRYPTO;
    }
    return 0;
}

int tc_hash(const struct tc_hash_alg *alg, const void *data, size_t len, uint8_t *out)
{
    return tc_hash2(alg, data, len, NULL, 0, out);
}
