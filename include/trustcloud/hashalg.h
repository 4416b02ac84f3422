/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The hash algorithms trustcloud knows, by TPM algorithm id and by name, with
 * their OpenSSL implementations fetched once. SM3 is included: OpenSSL
 * provides it even where the TPM has no SM3 bank.
 */
#ifndef TRUSTCLOUD_HASHALG_H
#define TRUSTCLOUD_HASHALG_H

#include <stddef.h>
#include <stdint.h>

#define TC_MAX_DIGEST 64

struct tc_hash_alg {
    uint16_t tpm_alg;     /* TPM2_ALG_SHA256 ... */
    const char *name;     /* "sha256": the name used by tpm2-tools, IMA and JSON output */
    size_t size;          /* digest size in bytes */
    const char *ossl_name; /* OpenSSL's name */
};

/* NULL when unknown. */
const struct tc_hash_alg *tc_hash_by_tpm(uint16_t tpm_alg);
/* Accepts "sha1", "sha256", "sha384", "sha512", "sm3_256" (and "sm3"); NULL when unknown. */
const struct tc_hash_alg *tc_hash_by_name(const char *name);
/* Same, but for a name of length n (not NUL-terminated). */
const struct tc_hash_alg *tc_hash_by_name_n(const char *name, size_t n);
/* All known algorithms, in a fixed order; *count set. */
const struct tc_hash_alg *tc_hash_all(size_t *count);

/* out must hold alg->size bytes. */
int tc_hash(const struct tc_hash_alg *alg, const void *data, size_t len, uint8_t *out);
/* Hash of the concatenation of two buffers (used for PCR extends). */
int tc_hash2(const struct tc_hash_alg *alg, const void *a, size_t alen, const void *b, size_t blen,
             uint8_t *out);

/* Incremental hashing. */
struct tc_hash_ctx;
int tc_hash_ctx_new(const struct tc_hash_alg *alg, struct tc_hash_ctx **out);
int tc_hash_ctx_update(struct tc_hash_ctx *ctx, const void *data, size_t len);
int tc_hash_ctx_final(struct tc_hash_ctx *ctx, uint8_t *out);
void tc_hash_ctx_free(struct tc_hash_ctx *ctx);

/* The fetched OpenSSL EVP_MD (as const void * to keep OpenSSL out of this header). */
const void *tc_hash_evp(const struct tc_hash_alg *alg);

#endif
