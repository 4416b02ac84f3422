/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Runtime (IMA) policies. Paths live in a small open-addressing hash table
 * because a verifier checks every new IMA entry of every machine against it:
 * one lookup per entry, no allocation.
 */
#define _GNU_SOURCE
#define LOGMODULE "runtime_policy"
#include "trustcloud/runtime_policy.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"

/* ---- path -> digests table ---------------------------------------------------------------- */

struct rp_digest {
    const struct tc_hash_alg *alg; /* NULL: any algorithm of this size */
    uint8_t len;
    uint8_t d[TC_MAX_DIGEST];
};

struct rp_item {
    char *key; /* NULL: empty slot */
    size_t keylen;
    uint64_t hash;
    size_t ndig, capdig;
    struct rp_digest *dig;
};

struct rp_map {
    struct rp_item *slot;
    size_t cap; /* power of two */
    size_t count;
};

static uint64_t fnv1a(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static void map_release(struct rp_map *m)
{
    for (size_t i = 0; i < m->cap; i++) {
        free(m->slot[i].key);
        free(m->slot[i].dig);
    }
    free(m->slot);
    memset(m, 0, sizeof(*m));
}

static struct rp_item *map_find(const struct rp_map *m, const char *key, size_t n)
{
    if (m->cap == 0)
        return NULL;
    uint64_t h = fnv1a(key, n);
    for (size_t i = (size_t)h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        struct rp_item *it = &m->slot[i];
        if (it->key == NULL)
            return NULL;
        if (it->hash == h && it->keylen == n && memcmp(it->key, key, n) == 0)
            return it;
    }
}

static int map_grow(struct rp_map *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 64;
    struct rp_item *ns = calloc(ncap, sizeof(*ns));
    if (ns == NULL)
        return TC_ERR_ALLOC;
    for (size_t i = 0; i < m->cap; i++) {
        struct rp_item *it = &m->slot[i];
        if (it->key == NULL)
            continue;
        size_t j = (size_t)it->hash & (ncap - 1);
        while (ns[j].key != NULL)
            j = (j + 1) & (ncap - 1);
        ns[j] = *it;
    }
    free(m->slot);
    m->slot = ns;
    m->cap = ncap;
    return 0;
}

/* Finds or inserts key. */
static int map_get(struct rp_map *m, const char *key, size_t n, struct rp_item **out)
{
    int rc;
    *out = map_find(m, key, n);
    if (*out)
        return 0;
    if (m->count >= TC_RP_MAX_PATHS)
        return TC_ERR_TOO_LARGE;
    /* Keep the load under 3/4 so probes stay short. */
    if ((m->count + 1) * 4 > m->cap * 3 && (rc = map_grow(m)) != 0)
        return rc;
    uint64_t h = fnv1a(key, n);
    size_t i = (size_t)h & (m->cap - 1);
    while (m->slot[i].key != NULL)
        i = (i + 1) & (m->cap - 1);
    struct rp_item *it = &m->slot[i];
    if ((it->key = malloc(n + 1)) == NULL)
        return TC_ERR_ALLOC;
    memcpy(it->key, key, n);
    it->key[n] = 0;
    it->keylen = n;
    it->hash = h;
    m->count++;
    *out = it;
    return 0;
}

static bool digest_matches(const struct rp_digest *d, const struct tc_hash_alg *alg,
                           const uint8_t *digest, size_t len)
{
    return d->len == len && (d->alg == NULL || d->alg == alg) && memcmp(d->d, digest, len) == 0;
}

static int item_add_digest(struct rp_item *it, const struct tc_hash_alg *alg, const uint8_t *digest,
                           size_t len)
{
    if (len == 0 || len > TC_MAX_DIGEST || (alg && alg->size != len))
        return TC_ERR_INVALID_ARG;
    for (size_t i = 0; i < it->ndig; i++)
        if (it->dig[i].alg == alg && digest_matches(&it->dig[i], alg, digest, len))
            return 0;
    if (it->ndig == TC_RP_MAX_DIGESTS_PER_PATH)
        return TC_ERR_TOO_LARGE;
    if (it->ndig == it->capdig) {
        size_t nc = it->capdig ? it->capdig * 2 : 2;
        struct rp_digest *nd = realloc(it->dig, nc * sizeof(*nd));
        if (nd == NULL)
            return TC_ERR_ALLOC;
        it->dig = nd;
        it->capdig = nc;
    }
    struct rp_digest *d = &it->dig[it->ndig++];
    memset(d, 0, sizeof(*d));
    d->alg = alg;
    d->len = (uint8_t)len;
    memcpy(d->d, digest, len);
    return 0;
}

static bool item_has(const struct rp_item *it, const struct tc_hash_alg *alg, const uint8_t *digest,
                     size_t len)
{
    for (size_t i = 0; it && i < it->ndig; i++)
        if (digest_matches(&it->dig[i], alg, digest, len))
            return true;
    return false;
}

/* "hex" or "alg:hex" -> alg (NULL without prefix), bytes. */
static int parse_digest_text(const char *s, size_t n, const struct tc_hash_alg **alg, uint8_t *out,
                             size_t *len)
{
    const char *colon = memchr(s, ':', n);
    *alg = NULL;
    if (colon) {
        *alg = tc_hash_by_name_n(s, (size_t)(colon - s));
        if (*alg == NULL)
            return TC_ERR_UNSUPPORTED;
        n -= (size_t)(colon + 1 - s);
        s = colon + 1;
    }
    if (n == 0 || tc_hex_decode(s, n, out, TC_MAX_DIGEST, len) != 0)
        return TC_ERR_FORMAT;
    if (*alg && (*alg)->size != *len)
        return TC_ERR_FORMAT;
    if (*alg == NULL && *len != 20 && *len != 32 && *len != 48 && *len != 64)
        return TC_ERR_FORMAT;
    return 0;
}

/* ---- the policy --------------------------------------------------------------------------- */

struct rp_exclude {
    regex_t re;
    char *src;
};

struct rp_key {
    EVP_PKEY *pkey;
    uint8_t keyid[4];
};

struct tc_runtime_policy {
    struct rp_map digests;  /* path -> file digests */
    struct rp_map keyrings; /* keyring name -> key digests (ima-buf) */
    struct rp_map imabuf;   /* other ima-buf names -> digests */
    struct rp_exclude *excl;
    size_t nexcl;
    size_t excl_cost; /* sum of regex_cost() */
    char **ignored;
    size_t nignored;
    bool ignore_all_keyrings;
    struct rp_key keys[TC_RP_MAX_KEYS];
    size_t nkeys;
    const struct tc_hash_alg *log_hash_alg;
    bool allow_violations;
    json_int_t release;
};

int tc_runtime_policy_new(struct tc_runtime_policy **out)
{
    *out = calloc(1, sizeof(**out));
    if (*out == NULL)
        return TC_ERR_ALLOC;
    (*out)->log_hash_alg = tc_hash_by_name("sha1");
    return 0;
}

void tc_runtime_policy_free(struct tc_runtime_policy *p)
{
    if (p == NULL)
        return;
    map_release(&p->digests);
    map_release(&p->keyrings);
    map_release(&p->imabuf);
    for (size_t i = 0; i < p->nexcl; i++) {
        regfree(&p->excl[i].re);
        free(p->excl[i].src);
    }
    free(p->excl);
    for (size_t i = 0; i < p->nignored; i++)
        free(p->ignored[i]);
    free(p->ignored);
    for (size_t i = 0; i < p->nkeys; i++)
        EVP_PKEY_free(p->keys[i].pkey);
    free(p);
}

int tc_runtime_policy_add_digest(struct tc_runtime_policy *p, const char *path,
                                 const struct tc_hash_alg *alg, const uint8_t *digest, size_t len)
{
    struct rp_item *it;
    size_t n = strlen(path);
    if (n == 0 || n > TC_IMA_MAX_PATH)
        return TC_ERR_INVALID_ARG;
    int rc = map_get(&p->digests, path, n, &it);
    return rc ? rc : item_add_digest(it, alg, digest, len);
}

int tc_runtime_policy_add_digest_text(struct tc_runtime_policy *p, const char *path,
                                      const char *text, size_t tlen)
{
    const struct tc_hash_alg *alg;
    uint8_t d[TC_MAX_DIGEST];
    size_t n;
    int rc = parse_digest_text(text, tlen, &alg, d, &n);
    return rc ? rc : tc_runtime_policy_add_digest(p, path, alg, d, n);
}

int tc_runtime_policy_add_keyring_digest(struct tc_runtime_policy *p, const char *keyring,
                                         const struct tc_hash_alg *alg, const uint8_t *digest,
                                         size_t len)
{
    struct rp_item *it;
    size_t n = strlen(keyring);
    if (n == 0 || n > TC_IMA_MAX_PATH)
        return TC_ERR_INVALID_ARG;
    int rc = map_get(&p->keyrings, keyring, n, &it);
    return rc ? rc : item_add_digest(it, alg, digest, len);
}

/*
 * glibc's regcomp copies the pattern tree for every '+' and bounded repetition, so stacked or
 * nested quantifiers ("a++++", "((a{99}){99})") make it allocate exponentially. Before compiling,
 * estimate the cost as length x the product of those repetition factors, and refuse stacked
 * quantifiers outright.
 */
#define RP_REGEX_MAX_COST (64u << 10)
#define RP_REGEX_MAX_TOTAL_COST (256u << 10)

static int regex_cost(const char *re, size_t *cost)
{
    size_t n = strlen(re), factor = 1;
    bool after_quant = false;
    for (size_t i = 0; i < n; i++) {
        char c = re[i];
        size_t f = 0; /* 0: not a quantifier */
        if (c == '\\') {
            i++;
            after_quant = false;
            continue;
        }
        if (c == '[') {
            /* Bracket expression: ']' right after '[' or '[^' is literal. */
            size_t j = i + 1;
            if (j < n && re[j] == '^')
                j++;
            if (j < n && re[j] == ']')
                j++;
            while (j < n && re[j] != ']')
                j++;
            i = j;
            after_quant = false;
            continue;
        }
        if (c == '*' || c == '?')
            f = 1;
        else if (c == '+')
            f = 2;
        else if (c == '{') {
            size_t lo = 0, hi = 0, j = i + 1;
            while (j < n && re[j] >= '0' && re[j] <= '9' && lo < 100000)
                lo = lo * 10 + (size_t)(re[j++] - '0');
            hi = lo;
            if (j < n && re[j] == ',') {
                j++;
                hi = 0;
                while (j < n && re[j] >= '0' && re[j] <= '9' && hi < 100000)
                    hi = hi * 10 + (size_t)(re[j++] - '0');
                if (hi < lo)
                    hi = lo;
            }
            f = hi + 1;
            while (j < n && re[j] != '}')
                j++;
            i = j;
        }
        if (f == 0) {
            after_quant = false;
            continue;
        }
        if (after_quant)
            return TC_ERR_FORMAT;
        after_quant = true;
        factor = factor > RP_REGEX_MAX_COST / f ? RP_REGEX_MAX_COST + 1 : factor * f;
    }
    *cost = factor > RP_REGEX_MAX_COST / (n + 1) ? RP_REGEX_MAX_COST + 1 : factor * (n + 1);
    return *cost > RP_REGEX_MAX_COST ? TC_ERR_TOO_LARGE : 0;
}

int tc_runtime_policy_add_exclude(struct tc_runtime_policy *p, const char *regex)
{
    size_t n = strlen(regex), cost = 0;
    if (p->nexcl == TC_RP_MAX_EXCLUDES || n > TC_RP_MAX_REGEX_LEN)
        return TC_ERR_TOO_LARGE;
    int rc = regex_cost(regex, &cost);
    if (rc)
        return rc;
    if (cost > RP_REGEX_MAX_TOTAL_COST - p->excl_cost)
        return TC_ERR_TOO_LARGE;
    struct rp_exclude *ne = realloc(p->excl, (p->nexcl + 1) * sizeof(*ne));
    if (ne == NULL)
        return TC_ERR_ALLOC;
    p->excl = ne;
    /* Anchored at the start like Python's re.match(), which Keylime uses. */
    char *anchored = malloc(n + 4);
    char *src = strdup(regex);
    if (anchored == NULL || src == NULL) {
        free(anchored);
        free(src);
        return TC_ERR_ALLOC;
    }
    snprintf(anchored, n + 4, "^(%s)", regex);
    int r = regcomp(&ne[p->nexcl].re, anchored, REG_EXTENDED | REG_NOSUB);
    free(anchored);
    if (r != 0) {
        free(src);
        return TC_ERR_FORMAT;
    }
    ne[p->nexcl].src = src;
    p->nexcl++;
    p->excl_cost += cost;
    return 0;
}

int tc_runtime_policy_add_ignored_keyring(struct tc_runtime_policy *p, const char *keyring)
{
    if (strcmp(keyring, "*") == 0) {
        p->ignore_all_keyrings = true;
        return 0;
    }
    if (p->nignored == TC_RP_MAX_EXCLUDES || strlen(keyring) > TC_IMA_MAX_PATH)
        return TC_ERR_TOO_LARGE;
    char **ni = realloc(p->ignored, (p->nignored + 1) * sizeof(*ni));
    if (ni == NULL)
        return TC_ERR_ALLOC;
    p->ignored = ni;
    if ((ni[p->nignored] = strdup(keyring)) == NULL)
        return TC_ERR_ALLOC;
    p->nignored++;
    return 0;
}

void tc_runtime_policy_set_allow_violations(struct tc_runtime_policy *p, bool allow)
{
    p->allow_violations = allow;
}

const struct tc_hash_alg *tc_runtime_policy_log_hash_alg(const struct tc_runtime_policy *p)
{
    return p->log_hash_alg;
}

size_t tc_runtime_policy_path_count(const struct tc_runtime_policy *p)
{
    return p->digests.count;
}

/* ---- keys and IMA signatures -------------------------------------------------------------- */

/* A public key from PEM or DER SubjectPublicKeyInfo or X.509 certificate; *skid receives the
 * last 4 bytes of a certificate's Subject Key Identifier (what the kernel looks keys up by). */
static EVP_PKEY *read_pkey(const uint8_t *data, size_t len, uint8_t skid[4], bool *has_skid)
{
    EVP_PKEY *pk = NULL;
    X509 *cert = NULL;
    *has_skid = false;
    if (len > INT32_MAX)
        return NULL;
    if (memmem(data, len, "-----BEGIN", 10) != NULL) {
        BIO *bio = BIO_new_mem_buf(data, (int)len);
        if (bio == NULL)
            return NULL;
        pk = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
        if (pk == NULL) {
            (void)BIO_reset(bio);
            cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        }
        BIO_free(bio);
    } else {
        const unsigned char *q = data;
        pk = d2i_PUBKEY(NULL, &q, (long)len);
        if (pk != NULL && q != data + len) {
            EVP_PKEY_free(pk);
            return NULL;
        }
        if (pk == NULL) {
            q = data;
            cert = d2i_X509(NULL, &q, (long)len);
        }
    }
    if (pk == NULL && cert != NULL) {
        const ASN1_OCTET_STRING *id = X509_get0_subject_key_id(cert);
        if (id && ASN1_STRING_length(id) >= 4) {
            memcpy(skid, ASN1_STRING_get0_data(id) + ASN1_STRING_length(id) - 4, 4);
            *has_skid = true;
        }
        pk = X509_get_pubkey(cert);
    }
    X509_free(cert);
    return pk;
}

/* keyid NULL: from the certificate's SKID, else computed from the key. */
static int add_key_with_id(struct tc_runtime_policy *p, const uint8_t *data, size_t len,
                           const uint8_t *keyid)
{
    int rc = 0;
    X509_PUBKEY *xpk = NULL;
    EVP_PKEY *pk = NULL;
    const unsigned char *bits;
    int nbits;
    uint8_t h[20], skid[4];
    bool has_skid;
    if (p->nkeys == TC_RP_MAX_KEYS)
        return TC_ERR_TOO_LARGE;
    ERR_set_mark();
    if ((pk = read_pkey(data, len, skid, &has_skid)) == NULL ||
        (EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA && EVP_PKEY_get_base_id(pk) != EVP_PKEY_EC)) {
        rc = TC_ERR_KEY;
        goto out;
    }
    if (keyid) {
        memcpy(p->keys[p->nkeys].keyid, keyid, 4);
    } else if (has_skid) {
        memcpy(p->keys[p->nkeys].keyid, skid, 4);
    } else {
        /* Last 4 bytes of SHA-1 over the subjectPublicKey bits (PKCS#1 for RSA, the point for
         * EC): the usual SKID, and what evmctl puts in v2 signatures. */
        if (X509_PUBKEY_set(&xpk, pk) != 1 ||
            X509_PUBKEY_get0_param(NULL, &bits, &nbits, NULL, xpk) != 1 || nbits <= 0) {
            rc = TC_ERR_KEY;
            goto out;
        }
        if ((rc = tc_hash(tc_hash_by_name("sha1"), bits, (size_t)nbits, h)) != 0)
            goto out;
        memcpy(p->keys[p->nkeys].keyid, h + 16, 4);
    }
    p->keys[p->nkeys].pkey = pk;
    pk = NULL;
    p->nkeys++;
out:
    ERR_pop_to_mark();
    X509_PUBKEY_free(xpk);
    EVP_PKEY_free(pk);
    return rc;
}

int tc_runtime_policy_add_key(struct tc_runtime_policy *p, const uint8_t *data, size_t len)
{
    return add_key_with_id(p, data, len, NULL);
}

/* Kernel enum hash_algo values used in signature headers. */
static const struct tc_hash_alg *kernel_hash_algo(uint8_t v)
{
    switch (v) {
    case 2:
        return tc_hash_by_name("sha1");
    case 4:
        return tc_hash_by_name("sha256");
    case 5:
        return tc_hash_by_name("sha384");
    case 6:
        return tc_hash_by_name("sha512");
    case 17:
        return tc_hash_by_name("sm3_256");
    default:
        return NULL;
    }
}

/*
 * IMA signature (security.ima): type 0x03 (EVM_IMA_XATTR_DIGSIG; 0x05 portable), version 2 or 3,
 * hash algo,
 * key id (4 bytes), signature size (u16 big-endian), signature. v2 signs the file digest; v3
 * signs H(type || hash algo || file digest) (struct ima_file_id).
 */
static int verify_ima_sig(const struct tc_runtime_policy *p, const struct tc_ima_entry *e,
                          char *detail, size_t dsz)
{
    struct tc_reader r;
    uint8_t type, version, algo;
    uint8_t keyid[4];
    uint16_t siglen;
    const uint8_t *sig;
    tc_reader_init(&r, e->sig, e->sig_len);
    if (tc_reader_u8(&r, &type) || tc_reader_u8(&r, &version) || tc_reader_u8(&r, &algo) ||
        tc_reader_bytes(&r, keyid, 4) || tc_reader_u16be(&r, &siglen) ||
        tc_reader_view(&r, siglen, &sig) || tc_reader_left(&r) != 0) {
        snprintf(detail, dsz, "malformed signature");
        return TC_ERR_FORMAT;
    }
    if ((type != 0x03 && type != 0x05) || (version != 2 && version != 3)) {
        snprintf(detail, dsz, "unsupported signature type %u version %u", type, version);
        return TC_ERR_UNSUPPORTED;
    }
    const struct tc_hash_alg *alg = kernel_hash_algo(algo);
    if (alg == NULL || alg != e->digest_alg) {
        snprintf(detail, dsz, "signature hash algorithm %u does not match the %s digest", algo,
                 e->digest_alg ? e->digest_alg->name : "missing");
        return TC_ERR_SIGNATURE;
    }
    const struct rp_key *key = NULL;
    for (size_t i = 0; i < p->nkeys; i++)
        if (memcmp(p->keys[i].keyid, keyid, 4) == 0) {
            key = &p->keys[i];
            break;
        }
    if (key == NULL) {
        snprintf(detail, dsz, "no policy key with id %02x%02x%02x%02x", keyid[0], keyid[1],
                 keyid[2], keyid[3]);
        return TC_ERR_SIGNATURE;
    }
    uint8_t tbs[TC_MAX_DIGEST];
    const uint8_t *msg = e->digest;
    if (version == 3) {
        uint8_t id[2 + TC_MAX_DIGEST] = {type, algo};
        memcpy(id + 2, e->digest, e->digest_len);
        if (tc_hash(alg, id, 2 + e->digest_len, tbs) != 0)
            return TC_ERR_CRYPTO;
        msg = tbs;
    }
    int ok = 0;
    ERR_set_mark();
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key->pkey, NULL);
    if (ctx && EVP_PKEY_verify_init(ctx) == 1 &&
        (EVP_PKEY_get_base_id(key->pkey) != EVP_PKEY_RSA ||
         EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1) &&
        EVP_PKEY_CTX_set_signature_md(ctx, tc_hash_evp(alg)) == 1)
        ok = EVP_PKEY_verify(ctx, sig, siglen, msg, alg->size) == 1;
    EVP_PKEY_CTX_free(ctx);
    ERR_pop_to_mark();
    if (!ok) {
        snprintf(detail, dsz, "signature does not verify with key %02x%02x%02x%02x", keyid[0],
                 keyid[1], keyid[2], keyid[3]);
        return TC_ERR_SIGNATURE;
    }
    return 0;
}

/* ---- checks ------------------------------------------------------------------------------- */

static bool excluded(const struct tc_runtime_policy *p, const char *path)
{
    for (size_t i = 0; i < p->nexcl; i++)
        if (regexec(&p->excl[i].re, path, 0, NULL, 0) == 0)
            return true;
    return false;
}

static int check_buf_entry(const struct tc_runtime_policy *p, const struct tc_ima_entry *e,
                           long idx, struct tc_reason *why)
{
    const char *name = e->path;
    if (p->ignore_all_keyrings)
        return 0;
    for (size_t i = 0; i < p->nignored; i++)
        if (strcmp(p->ignored[i], name) == 0)
            return 0;
    /* The digest must be that of the buffer, or the entry was not made by the kernel. */
    uint8_t h[TC_MAX_DIGEST];
    if (tc_hash(e->digest_alg, e->buf, e->buf_len, h) != 0 ||
        CRYPTO_memcmp(h, e->digest, e->digest_len) != 0)
        return tc_fail(why, TC_ERR_POLICY, "ima.policy.buf_digest", idx,
                       "ima-buf '%.200s': digest is not the hash of the buffer", name);
    const struct rp_item *kr = map_find(&p->keyrings, name, e->path_len);
    if (kr) {
        if (item_has(kr, e->digest_alg, e->digest, e->digest_len))
            return 0;
        return tc_fail(why, TC_ERR_POLICY, "ima.policy.keyring", idx,
                       "key loaded on keyring '%.200s' is not in the policy", name);
    }
    const struct rp_item *b = map_find(&p->imabuf, name, e->path_len);
    if (b && item_has(b, e->digest_alg, e->digest, e->digest_len))
        return 0;
    if (excluded(p, name))
        return 0;
    if (b)
        return tc_fail(why, TC_ERR_POLICY, "ima.policy.digest", idx,
                       "ima-buf '%.200s': digest not in the policy", name);
    return tc_fail(why, TC_ERR_POLICY, "ima.policy.not_in_policy", idx,
                   "ima-buf '%.200s' is not in the policy", name);
}

int tc_runtime_policy_check_entry(const struct tc_runtime_policy *p, const struct tc_ima_entry *e,
                                  long idx, struct tc_reason *why)
{
    if (e->violation) {
        if (p->allow_violations)
            return 0;
        return tc_fail(why, TC_ERR_POLICY, "ima.policy.violation", idx,
                       "measurement violation (zero template hash) for '%.200s'",
                       e->path ? e->path : "?");
    }
    if (e->path == NULL || e->digest == NULL)
        return tc_fail(why, TC_ERR_POLICY, "ima.policy.unsupported", idx,
                       "template '%s' entry has no file digest and name", e->template_name);
    if (e->tpl == TC_IMA_TPL_BUF)
        return check_buf_entry(p, e, idx, why);

    char sigdetail[160] = "";
    if (e->sig_len > 0 && p->nkeys > 0) {
        if (verify_ima_sig(p, e, sigdetail, sizeof(sigdetail)) == 0)
            return 0;
        /* A bad signature is a failure even if the digest is listed, unless excluded. */
        if (excluded(p, e->path))
            return 0;
        return tc_fail(why, TC_ERR_POLICY, "ima.policy.signature", idx, "'%.200s': %s", e->path,
                       sigdetail);
    }
    const struct rp_item *it = map_find(&p->digests, e->path, e->path_len);
    if (item_has(it, e->digest_alg, e->digest, e->digest_len))
        return 0;
    if (excluded(p, e->path))
        return 0;
    if (it) {
        char hex[2 * TC_MAX_DIGEST + 1];
        tc_hex_encode(e->digest, e->digest_len, hex);
        return tc_fail(why, TC_ERR_POLICY, "ima.policy.digest", idx,
                       "'%.160s': %s:%s is not an allowed digest", e->path, e->digest_alg->name,
                       hex);
    }
    return tc_fail(why, TC_ERR_POLICY, "ima.policy.not_in_policy", idx,
                   "'%.200s' is not in the policy", e->path);
}

int tc_runtime_policy_check_log(const struct tc_runtime_policy *p, const struct tc_ima_log *log,
                                size_t from, size_t to, struct tc_reason *why)
{
    if (from > to || to > log->count)
        return tc_fail(why, TC_ERR_INVALID_ARG, "ima.policy", -1, "bad entry range");
    for (size_t i = from; i < to; i++) {
        int rc =
            tc_runtime_policy_check_entry(p, &log->entries[i], (long)(log->first_index + i), why);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- parsing ------------------------------------------------------------------------------ */

/* Rejects JSON nested deeper than TC_RP_MAX_DEPTH before jansson sees it. */
static int json_depth_ok(const uint8_t *d, size_t n)
{
    int depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = d[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            if (++depth > TC_RP_MAX_DEPTH)
                return 0;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return 1;
}

static int add_digest_list(struct tc_runtime_policy *p, struct rp_map *m, const char *key,
                           json_t *arr, const char *section, struct tc_reason *why)
{
    struct rp_item *it;
    size_t i;
    json_t *v;
    if (!json_is_array(arr))
        return tc_fail(why, TC_ERR_FORMAT, "ima.policy.parse", -1, "%s['%.100s'] is not a list",
                       section, key);
    size_t klen = strlen(key);
    if (klen == 0 || klen > TC_IMA_MAX_PATH)
        return tc_fail(why, TC_ERR_FORMAT, "ima.policy.parse", -1, "bad %s name", section);
    int rc = map_get(m, key, klen, &it);
    if (rc)
        return tc_fail(why, rc, "ima.policy.parse", -1, "cannot add %s '%.100s'", section, key);
    json_array_foreach(arr, i, v)
    {
        const struct tc_hash_alg *alg;
        uint8_t d[TC_MAX_DIGEST];
        size_t n;
        if (!json_is_string(v))
            return tc_fail(why, TC_ERR_FORMAT, "ima.policy.parse", -1,
                           "%s['%.100s'] has a non-string digest", section, key);
        rc = parse_digest_text(json_string_value(v), json_string_length(v), &alg, d, &n);
        if (rc == 0)
            rc = item_add_digest(it, alg, d, n);
        if (rc)
            return tc_fail(why, rc, "ima.policy.parse", -1, "%s['%.100s']: bad digest '%.80s'",
                           section, key, json_string_value(v));
    }
    return 0;
}

static int add_digest_map(struct tc_runtime_policy *p, struct rp_map *m, json_t *obj,
                          const char *section, struct tc_reason *why)
{
    const char *k;
    json_t *v;
    if (obj == NULL || json_is_null(obj))
        return 0;
    if (!json_is_object(obj))
        return tc_fail(why, TC_ERR_FORMAT, "ima.policy.parse", -1, "%s is not an object", section);
    json_object_foreach(obj, k, v)
    {
        int rc = add_digest_list(p, m, k, v, section, why);
        if (rc)
            return rc;
    }
    return 0;
}

/* A key given as text: PEM, or base64 of DER. */
static int add_key_text(struct tc_runtime_policy *p, const char *s, size_t n, const uint8_t *keyid)
{
    if (memmem(s, n, "-----BEGIN", 10) != NULL)
        return add_key_with_id(p, (const uint8_t *)s, n, keyid);
    if (n == 0 || n % 4 || n > 64 * 1024)
        return TC_ERR_KEY;
    uint8_t *der = malloc(n / 4 * 3);
    if (der == NULL)
        return TC_ERR_ALLOC;
    int dl = EVP_DecodeBlock(der, (const unsigned char *)s, (int)n);
    int rc = TC_ERR_KEY;
    if (dl > 0) {
        /* EVP_DecodeBlock counts the '=' padding as zero bytes. */
        dl -= (s[n - 1] == '=') + (s[n - 2] == '=');
        rc = add_key_with_id(p, der, (size_t)dl, keyid);
    }
    free(der);
    return rc;
}

/* One keyring as Keylime writes it: {"pubkeys": [base64 DER...], "keyids": [int...]}, or a
 * plain list of keys (PEM or base64 DER strings, or {"pubkey": ...} objects). */
static int add_keyring(struct tc_runtime_policy *p, json_t *kr, int depth, struct tc_reason *why)
{
    json_t *list = kr, *ids = NULL;
    size_t i;
    json_t *k;
    if (json_is_object(kr) && json_object_get(kr, "pubkeys")) {
        list = json_object_get(kr, "pubkeys");
        ids = json_object_get(kr, "keyids");
    } else if (json_is_object(kr)) {
        /* Keylime's ImaKeyrings: keyring name -> keyring (often itself a JSON string). */
        const char *name;
        json_object_foreach(kr, name, k)
        {
            int rc = depth > 3 ? TC_ERR_FORMAT : 0;
            json_t *sub = NULL;
            if (rc == 0 && json_is_string(k)) {
                size_t n = json_string_length(k);
                if (n == 0)
                    continue;
                if (!json_depth_ok((const uint8_t *)json_string_value(k), n) ||
                    (sub = json_loadb(json_string_value(k), n, 0, NULL)) == NULL)
                    rc = TC_ERR_FORMAT;
                k = sub;
            }
            if (rc == 0)
                rc = add_keyring(p, k, depth + 1, why);
            json_decref(sub);
            if (rc)
                return tc_fail(why, rc, "ima.policy.parse", -1,
                               "verification-keys: keyring '%.60s' is unreadable", name);
        }
        return 0;
    }
    if (!json_is_array(list))
        return tc_fail(why, TC_ERR_FORMAT, "ima.policy.parse", -1,
                       "verification-keys is not a list of keys");
    json_array_foreach(list, i, k)
    {
        uint8_t id[4], *idp = NULL;
        json_t *jid = json_is_array(ids) ? json_array_get(ids, i) : NULL;
        if (json_is_integer(jid)) {
            json_int_t v = json_integer_value(jid);
            id[0] = (uint8_t)(v >> 24);
            id[1] = (uint8_t)(v >> 16);
            id[2] = (uint8_t)(v >> 8);
            id[3] = (uint8_t)v;
            idp = id;
        }
        if (json_is_object(k))
            k = json_object_get(k, "pubkey");
        if (!json_is_string(k))
            return tc_fail(why, TC_ERR_FORMAT, "ima.policy.parse", -1,
                           "verification-keys[%zu] is not a key string", i);
        int rc = add_key_text(p, json_string_value(k), json_string_length(k), idp);
        if (rc)
            return tc_fail(why, rc, "ima.policy.parse", -1,
                           "verification-keys[%zu]: unreadable key", i);
    }
    return 0;
}

/* Keylime keeps the keys as one string: empty, or JSON (sometimes encoded twice) of a keyring or
 * of keyrings by name. PEM text and plain JSON lists are accepted too. */
static int add_keys(struct tc_runtime_policy *p, json_t *vk, struct tc_reason *why)
{
    int rc = 0;
    json_t *parsed = NULL, *inner = NULL;
    if (vk == NULL || json_is_null(vk))
        return 0;
    if (json_is_string(vk)) {
        const char *s = json_string_value(vk);
        size_t n = json_string_length(vk);
        if (n == 0)
            return 0;
        if (memmem(s, n, "-----BEGIN", 10) != NULL && s[0] == '-') {
            rc = add_key_with_id(p, (const uint8_t *)s, n, NULL);
            return rc ? tc_fail(why, rc, "ima.policy.parse", -1,
                                "verification-keys: unreadable key")
                      : 0;
        }
        if (!json_depth_ok((const uint8_t *)s, n) ||
            (parsed = json_loadb(s, n, JSON_DECODE_ANY, NULL)) == NULL)
            return tc_fail(why, TC_ERR_FORMAT, "ima.policy.parse", -1,
                           "verification-keys is not valid JSON");
        vk = parsed;
        if (json_is_string(vk)) {
            if ((inner = json_loadb(json_string_value(vk), json_string_length(vk), 0, NULL)) ==
                    NULL ||
                !json_depth_ok((const uint8_t *)json_string_value(vk), json_string_length(vk))) {
                rc = tc_fail(why, TC_ERR_FORMAT, "ima.policy.parse", -1,
                             "verification-keys is not valid JSON");
                goto out;
            }
            vk = inner;
        }
    }
    rc = add_keyring(p, vk, 0, why);
out:
    json_decref(inner);
    json_decref(parsed);
    return rc;
}

static int parse_json_policy(struct tc_runtime_policy *p, json_t *root, struct tc_reason *why)
{
    int rc;
    size_t i;
    json_t *v;
    if (!json_is_object(root))
        return tc_fail(why, TC_ERR_FORMAT, "ima.policy.parse", -1, "policy is not an object");
    json_t *meta = json_object_get(root, "meta");
    if (meta) {
        json_t *ver = json_object_get(meta, "version");
        if (!json_is_object(meta) ||
            (ver && (!json_is_integer(ver) || json_integer_value(ver) != 1)))
            return tc_fail(why, TC_ERR_UNSUPPORTED, "ima.policy.parse", -1,
                           "unsupported policy meta.version");
    }
    json_t *rel = json_object_get(root, "release");
    if (json_is_integer(rel))
        p->release = json_integer_value(rel);
    json_t *digests = json_object_get(root, "digests");
    if (digests == NULL)
        digests = json_object_get(root, "hashes"); /* older allowlist JSON */
    if ((rc = add_digest_map(p, &p->digests, digests, "digests", why)) != 0 ||
        (rc = add_digest_map(p, &p->keyrings, json_object_get(root, "keyrings"), "keyrings",
                             why)) != 0 ||
        (rc = add_digest_map(p, &p->imabuf, json_object_get(root, "ima-buf"), "ima-buf", why)) != 0)
        return rc;
    json_t *ex = json_object_get(root, "excludes");
    if (ex && !json_is_array(ex))
        return tc_fail(why, TC_ERR_FORMAT, "ima.policy.parse", -1, "excludes is not a list");
    json_array_foreach(ex, i, v)
    {
        if (!json_is_string(v) || json_string_length(v) != strlen(json_string_value(v)))
            return tc_fail(why, TC_ERR_FORMAT, "ima.policy.parse", -1, "excludes[%zu] is bad", i);
        if ((rc = tc_runtime_policy_add_exclude(p, json_string_value(v))) != 0)
            return tc_fail(why, rc, "ima.policy.parse", -1,
                           "excludes[%zu] '%.100s' is not a usable regex", i, json_string_value(v));
    }
    json_t *ima = json_object_get(root, "ima");
    if (ima && !json_is_object(ima))
        return tc_fail(why, TC_ERR_FORMAT, "ima.policy.parse", -1, "ima is not an object");
    if (ima) {
        json_t *ign = json_object_get(ima, "ignored_keyrings");
        if (ign && !json_is_array(ign))
            return tc_fail(why, TC_ERR_FORMAT, "ima.policy.parse", -1,
                           "ima.ignored_keyrings is not a list");
        json_array_foreach(ign, i, v)
        {
            if (!json_is_string(v) ||
                (rc = tc_runtime_policy_add_ignored_keyring(p, json_string_value(v))) != 0)
                return tc_fail(why, TC_ERR_FORMAT, "ima.policy.parse", -1,
                               "ima.ignored_keyrings[%zu] is bad", i);
        }
        json_t *lha = json_object_get(ima, "log_hash_alg");
        if (lha) {
            const struct tc_hash_alg *a =
                json_is_string(lha) ? tc_hash_by_name(json_string_value(lha)) : NULL;
            if (a == NULL)
                return tc_fail(why, TC_ERR_UNSUPPORTED, "ima.policy.parse", -1,
                               "unknown ima.log_hash_alg '%.40s'",
                               json_is_string(lha) ? json_string_value(lha) : "?");
            p->log_hash_alg = a;
        }
    }
    return add_keys(p, json_object_get(root, "verification-keys"), why);
}

int tc_runtime_policy_parse_json(const uint8_t *data, size_t len, struct tc_runtime_policy **out,
                                 struct tc_reason *why)
{
    struct tc_runtime_policy *p = NULL;
    json_t *root = NULL;
    json_error_t err;
    int rc;
    *out = NULL;
    if (len > TC_RP_MAX_SIZE)
        return tc_fail(why, TC_ERR_TOO_LARGE, "ima.policy.parse", -1, "policy larger than %u bytes",
                       TC_RP_MAX_SIZE);
    if (!json_depth_ok(data, len))
        return tc_fail(why, TC_ERR_TOO_LARGE, "ima.policy.parse", -1,
                       "policy nested deeper than %d", TC_RP_MAX_DEPTH);
    if ((root = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &err)) == NULL)
        return tc_fail(why, TC_ERR_FORMAT, "ima.policy.parse", -1, "bad JSON at line %d: %.120s",
                       err.line, err.text);
    if ((rc = tc_runtime_policy_new(&p)) != 0) {
        tc_fail(why, rc, "ima.policy.parse", -1, "out of memory");
        goto out;
    }
    if ((rc = parse_json_policy(p, root, why)) != 0)
        goto out;
    *out = p;
    p = NULL;
out:
    json_decref(root);
    tc_runtime_policy_free(p);
    return rc;
}

int tc_runtime_policy_parse_allowlist(const uint8_t *data, size_t len,
                                      struct tc_runtime_policy **out, struct tc_reason *why)
{
    struct tc_runtime_policy *p = NULL;
    struct tc_reader r;
    int rc;
    long lineno = 0;
    *out = NULL;
    if (len > TC_RP_MAX_SIZE)
        return tc_fail(why, TC_ERR_TOO_LARGE, "ima.policy.parse", -1,
                       "allowlist larger than %u bytes", TC_RP_MAX_SIZE);
    if ((rc = tc_runtime_policy_new(&p)) != 0)
        return tc_fail(why, rc, "ima.policy.parse", -1, "out of memory");
    tc_reader_init(&r, data, len);
    while (tc_reader_left(&r) > 0) {
        const uint8_t *nl = memchr(tc_reader_ptr(&r), '\n', tc_reader_left(&r));
        size_t ll = nl ? (size_t)(nl - tc_reader_ptr(&r)) : tc_reader_left(&r);
        const uint8_t *lp;
        tc_reader_view(&r, ll, &lp);
        if (nl)
            tc_reader_skip(&r, 1);
        lineno++;
        const char *s = (const char *)lp, *end = s + ll;
        while (s < end && (*s == ' ' || *s == '\t'))
            s++;
        while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
            end--;
        if (s == end || *s == '#')
            continue;
        const char *d = s;
        while (s < end && *s != ' ' && *s != '\t')
            s++;
        size_t dlen = (size_t)(s - d);
        while (s < end && (*s == ' ' || *s == '\t'))
            s++;
        size_t plen = (size_t)(end - s);
        if (plen == 0 || plen > TC_IMA_MAX_PATH || memchr(s, 0, plen) != NULL) {
            rc = tc_fail(why, TC_ERR_FORMAT, "ima.policy.parse", -1,
                         "allowlist line %ld: expected 'digest path'", lineno);
            goto out;
        }
        char path[TC_IMA_MAX_PATH + 1];
        memcpy(path, s, plen);
        path[plen] = 0;
        if ((rc = tc_runtime_policy_add_digest_text(p, path, d, dlen)) != 0) {
            tc_fail(why, rc, "ima.policy.parse", -1, "allowlist line %ld: bad digest '%.*s'",
                    lineno, (int)(dlen > 80 ? 80 : dlen), d);
            goto out;
        }
    }
    *out = p;
    p = NULL;
out:
    tc_runtime_policy_free(p);
    return rc;
}

int tc_runtime_policy_parse(const uint8_t *data, size_t len, struct tc_runtime_policy **out,
                            struct tc_reason *why)
{
    size_t i = 0;
    while (i < len && (data[i] == ' ' || data[i] == '\n' || data[i] == '\t' || data[i] == '\r'))
        i++;
    if (i < len && data[i] == '{')
        return tc_runtime_policy_parse_json(data, len, out, why);
    return tc_runtime_policy_parse_allowlist(data, len, out, why);
}

int tc_runtime_policy_load_file(const char *path, struct tc_runtime_policy **out,
                                struct tc_reason *why)
{
    uint8_t *data;
    size_t len;
    *out = NULL;
    int rc = tc_file_read(path, TC_RP_MAX_SIZE, &data, &len);
    if (rc)
        return tc_fail(why, rc, "ima.policy.read", -1, "cannot read %s", path);
    rc = tc_runtime_policy_parse(data, len, out, why);
    free(data);
    return rc;
}

/* ---- writing ------------------------------------------------------------------------------ */

static json_t *map_to_json(const struct rp_map *m)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < m->cap; i++) {
        const struct rp_item *it = &m->slot[i];
        if (it->key == NULL)
            continue;
        json_t *a = json_array();
        for (size_t k = 0; a && k < it->ndig; k++) {
            char hex[2 * TC_MAX_DIGEST + 40];
            size_t off = 0;
            if (it->dig[k].alg)
                off = (size_t)snprintf(hex, sizeof(hex), "%s:", it->dig[k].alg->name);
            tc_hex_encode(it->dig[k].d, it->dig[k].len, hex + off);
            json_array_append_new(a, json_string(hex));
        }
        if (a == NULL) {
            json_decref(o);
            return NULL;
        }
        /* Names are bytes from the log; JSON needs UTF-8, so others cannot be written. */
        if (json_object_setn_new(o, it->key, it->keylen, a) != 0)
            LOG_WARN("skipping a name that is not UTF-8");
    }
    return o;
}

int tc_runtime_policy_to_json(const struct tc_runtime_policy *p, json_t **out)
{
    *out = NULL;
    json_t *j = json_object(), *ex = json_array(), *ign = json_array(), *ima = json_object();
    json_t *meta = json_object();
    json_t *dg = map_to_json(&p->digests), *kr = map_to_json(&p->keyrings);
    json_t *ib = map_to_json(&p->imabuf);
    if (!j || !ex || !ign || !ima || !meta || !dg || !kr || !ib)
        goto fail;
    for (size_t i = 0; i < p->nexcl; i++)
        json_array_append_new(ex, json_string(p->excl[i].src));
    if (p->ignore_all_keyrings)
        json_array_append_new(ign, json_string("*"));
    for (size_t i = 0; i < p->nignored; i++)
        json_array_append_new(ign, json_string(p->ignored[i]));
    json_object_set_new(meta, "version", json_integer(1));
    json_object_set_new(meta, "generator", json_integer(0));
    json_object_set_new(j, "meta", meta);
    json_object_set_new(j, "release", json_integer(p->release));
    json_object_set_new(j, "digests", dg);
    json_object_set_new(j, "excludes", ex);
    json_object_set_new(j, "keyrings", kr);
    json_object_set_new(ima, "ignored_keyrings", ign);
    json_object_set_new(ima, "log_hash_alg", json_string(p->log_hash_alg->name));
    json_object_set_new(ima, "dm_policy", json_null());
    json_object_set_new(j, "ima", ima);
    json_object_set_new(j, "ima-buf", ib);
    /* Keylime's keyring string: {"pubkeys": [base64 DER SPKI], "keyids": [int]}. */
    json_t *keys = json_array(), *ids = json_array();
    for (size_t i = 0; keys && ids && i < p->nkeys; i++) {
        unsigned char *der = NULL;
        int dl = i2d_PUBKEY(p->keys[i].pkey, &der);
        char *b64 = dl > 0 ? malloc((size_t)dl / 3 * 4 + 8) : NULL;
        if (b64) {
            EVP_EncodeBlock((unsigned char *)b64, der, dl);
            const uint8_t *k = p->keys[i].keyid;
            json_array_append_new(keys, json_string(b64));
            json_array_append_new(
                ids, json_integer((json_int_t)((uint32_t)k[0] << 24 | (uint32_t)k[1] << 16 |
                                               (uint32_t)k[2] << 8 | k[3])));
        }
        free(b64);
        OPENSSL_free(der);
    }
    json_t *vkr = p->nkeys ? json_pack("{s:O, s:O}", "pubkeys", keys, "keyids", ids) : NULL;
    char *ks = vkr ? json_dumps(vkr, JSON_COMPACT) : NULL;
    json_object_set_new(j, "verification-keys", json_string(ks ? ks : ""));
    free(ks);
    json_decref(vkr);
    json_decref(keys);
    json_decref(ids);
    *out = j;
    return 0;
fail:
    json_decref(j);
    json_decref(ex);
    json_decref(ign);
    json_decref(ima);
    json_decref(meta);
    json_decref(dg);
    json_decref(kr);
    json_decref(ib);
    return TC_ERR_ALLOC;
}

int tc_runtime_policy_from_ima_log(const struct tc_ima_log *log, struct tc_runtime_policy **out,
                                   struct tc_reason *why)
{
    struct tc_runtime_policy *p = NULL;
    int rc;
    *out = NULL;
    if ((rc = tc_runtime_policy_new(&p)) != 0)
        return tc_fail(why, rc, "ima.policy.create", -1, "out of memory");
    p->log_hash_alg = log->template_hash_alg;
    for (size_t i = 0; i < log->count; i++) {
        const struct tc_ima_entry *e = &log->entries[i];
        long idx = (long)(log->first_index + i);
        struct rp_item *it;
        if (e->violation || e->path == NULL || e->digest == NULL)
            continue;
        struct rp_map *m = e->tpl == TC_IMA_TPL_BUF ? &p->keyrings : &p->digests;
        /* Keylime lists bare hex digests; the digest size tells the algorithm apart. */
        if ((rc = map_get(m, e->path, e->path_len, &it)) != 0 ||
            (rc = item_add_digest(it, NULL, e->digest, e->digest_len)) != 0) {
            tc_fail(why, rc, "ima.policy.create", idx, "cannot add '%.200s'", e->path);
            goto out;
        }
    }
    *out = p;
    p = NULL;
out:
    tc_runtime_policy_free(p);
    return rc;
}
