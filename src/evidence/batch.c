/* SPDX-License-Identifier: Apache-2.0 */
/* Batch attestation: the Merkle tree over vTPM quotes and the parser of an agent's answer. */
#define LOGMODULE "batch"
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "trustcloud/batch.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"
#include "trustcloud/quote.h"

#define HLEN TC_BATCH_HASH_LEN
/* 4096 leaves -> 13 levels (4096, 2048, ..., 1). */
#define MAX_LEVELS (TC_BATCH_MAX_PROOF + 1)
#define MAX_NONCE 64

static const uint8_t leaf_tag = 0x00;
static const uint8_t node_tag = 0x01;

struct tc_batch_tree {
    size_t n;
    size_t nlevels;
    size_t level_off[MAX_LEVELS]; /* offset of each level in nodes[] */
    size_t level_len[MAX_LEVELS];
    uint8_t (*nodes)[HLEN]; /* all levels, leaves first, root last */
};

static int sha256_parts(const void *const *parts, const size_t *lens, size_t nparts,
                        uint8_t out[HLEN])
{
    int rc = TC_ERR_CRYPTO;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL)
        return TC_ERR_ALLOC;
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
        goto out;
    for (size_t i = 0; i < nparts; i++)
        if (lens[i] > 0 && EVP_DigestUpdate(ctx, parts[i], lens[i]) != 1)
            goto out;
    if (EVP_DigestFinal_ex(ctx, out, NULL) != 1)
        goto out;
    rc = 0;
out:
    EVP_MD_CTX_free(ctx);
    return rc;
}

static int sha256(const void *data, size_t len, uint8_t out[HLEN])
{
    /* EVP_Digest needs a non-NULL pointer even for zero bytes. */
    static const uint8_t empty[1];
    return EVP_Digest(len ? data : empty, len, out, NULL, EVP_sha256(), NULL) == 1 ? 0
                                                                                   : TC_ERR_CRYPTO;
}

static int hash_inner(const uint8_t left[HLEN], const uint8_t right[HLEN], uint8_t out[HLEN])
{
    uint8_t in[1 + 2 * HLEN];
    in[0] = node_tag;
    memcpy(in + 1, left, HLEN);
    memcpy(in + 1 + HLEN, right, HLEN);
    return sha256(in, sizeof(in), out);
}

static bool id_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

/* An id of exactly len bytes (it may come from JSON with an embedded NUL). */
static bool id_valid_n(const char *s, size_t len)
{
    if (s == NULL || len == 0 || len > TC_BATCH_ID_MAX)
        return false;
    if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
        return false;
    for (size_t i = 0; i < len; i++)
        if (!id_char(s[i]))
            return false;
    return true;
}

bool tc_batch_id_valid(const char *s)
{
    return s != NULL && id_valid_n(s, strnlen(s, TC_BATCH_ID_MAX + 1));
}

int tc_batch_leaf(const char *vm_id, const uint8_t *attest, size_t attest_len, const uint8_t *sig,
                  size_t sig_len, uint8_t out[32])
{
    int rc;
    uint8_t ha[HLEN], hs[HLEN], len8;

    if (out == NULL)
        return TC_ERR_INVALID_ARG;
    memset(out, 0, HLEN);
    if (!tc_batch_id_valid(vm_id) || (attest == NULL && attest_len) || (sig == NULL && sig_len))
        return TC_ERR_INVALID_ARG;
    if ((rc = sha256(attest, attest_len, ha)) != 0)
        return rc;
    if ((rc = sha256(sig, sig_len, hs)) != 0)
        return rc;
    len8 = (uint8_t)strlen(vm_id);
    const void *parts[] = {&leaf_tag, &len8, vm_id, ha, hs};
    const size_t lens[] = {1, 1, len8, HLEN, HLEN};
    return sha256_parts(parts, lens, 5, out);
}

size_t tc_batch_proof_len(size_t index, size_t count)
{
    size_t n = 0;
    if (count == 0 || count > TC_BATCH_MAX_VMS || index >= count)
        return 0;
    for (size_t i = index, s = count; s > 1; i >>= 1, s = (s + 1) / 2)
        if ((i ^ 1) < s)
            n++;
    return n;
}

void tc_batch_tree_free(struct tc_batch_tree *t)
{
    if (t == NULL)
        return;
    free(t->nodes);
    free(t);
}

int tc_batch_tree_build(const uint8_t (*leaves)[32], size_t n, struct tc_batch_tree **out)
{
    int rc = 0;
    struct tc_batch_tree *t = NULL;
    size_t total = 0;

    if (out == NULL)
        return TC_ERR_INVALID_ARG;
    *out = NULL;
    if (leaves == NULL || n == 0 || n > TC_BATCH_MAX_VMS)
        return TC_ERR_INVALID_ARG;
    if ((t = calloc(1, sizeof(*t))) == NULL)
        return TC_ERR_ALLOC;
    t->n = n;
    for (size_t s = n;; s = (s + 1) / 2) {
        t->level_off[t->nlevels] = total;
        t->level_len[t->nlevels] = s;
        t->nlevels++;
        total += s;
        if (s == 1)
            break;
    }
    if ((t->nodes = calloc(total, HLEN)) == NULL) {
        rc = TC_ERR_ALLOC;
        goto out;
    }
    memcpy(t->nodes, leaves, n * HLEN);
    for (size_t l = 1; l < t->nlevels; l++) {
        const uint8_t(*below)[HLEN] = t->nodes + t->level_off[l - 1];
        uint8_t(*here)[HLEN] = t->nodes + t->level_off[l];
        size_t bl = t->level_len[l - 1];
        for (size_t i = 0; i < t->level_len[l]; i++) {
            if (2 * i + 1 < bl) {
                if ((rc = hash_inner(below[2 * i], below[2 * i + 1], here[i])) != 0)
                    goto out;
            } else {
                /* The last node of an odd level moves up unchanged. */
                memcpy(here[i], below[2 * i], HLEN);
            }
        }
    }
    *out = t;
    t = NULL;
out:
    tc_batch_tree_free(t);
    return rc;
}

size_t tc_batch_tree_count(const struct tc_batch_tree *t)
{
    return t ? t->n : 0;
}

int tc_batch_tree_root(const struct tc_batch_tree *t, uint8_t out[32])
{
    if (t == NULL || out == NULL)
        return TC_ERR_INVALID_ARG;
    memcpy(out, t->nodes[t->level_off[t->nlevels - 1]], HLEN);
    return 0;
}

int tc_batch_tree_proof(const struct tc_batch_tree *t, size_t index, uint8_t (**sib)[32],
                        size_t *nsib)
{
    uint8_t(*s)[HLEN] = NULL;
    size_t k = 0, n;

    if (sib == NULL || nsib == NULL)
        return TC_ERR_INVALID_ARG;
    *sib = NULL;
    *nsib = 0;
    if (t == NULL || index >= t->n)
        return TC_ERR_INVALID_ARG;
    n = tc_batch_proof_len(index, t->n);
    if (n == 0)
        return 0;
    if ((s = calloc(n, HLEN)) == NULL)
        return TC_ERR_ALLOC;
    size_t i = index;
    for (size_t l = 0; l + 1 < t->nlevels; l++, i >>= 1)
        if ((i ^ 1) < t->level_len[l])
            memcpy(s[k++], t->nodes[t->level_off[l] + (i ^ 1)], HLEN);
    if (k != n) { /* broken invariant: proof_len and the tree disagree */
        free(s);
        return TC_ERR_INTERNAL;
    }
    *sib = s;
    *nsib = n;
    return 0;
}

static json_t *hex_string(const uint8_t *h)
{
    char hex[2 * HLEN + 1];
    tc_hex_encode(h, HLEN, hex);
    return json_string(hex);
}

int tc_batch_tree_to_json(const struct tc_batch_tree *t, json_t **out)
{
    uint8_t root[HLEN];
    json_t *j;

    if (out == NULL)
        return TC_ERR_INVALID_ARG;
    *out = NULL;
    if (tc_batch_tree_root(t, root) != 0)
        return TC_ERR_INVALID_ARG;
    j = json_pack("{s:o, s:I}", "root", hex_string(root), "count", (json_int_t)t->n);
    if (j == NULL)
        return TC_ERR_ALLOC;
    *out = j;
    return 0;
}

int tc_batch_tree_proof_json(const struct tc_batch_tree *t, size_t index, json_t **out)
{
    int rc;
    uint8_t(*sib)[HLEN] = NULL;
    size_t nsib = 0;
    json_t *arr = NULL;

    if (out == NULL)
        return TC_ERR_INVALID_ARG;
    *out = NULL;
    if ((rc = tc_batch_tree_proof(t, index, &sib, &nsib)) != 0)
        goto out;
    if ((arr = json_array()) == NULL) {
        rc = TC_ERR_ALLOC;
        goto out;
    }
    for (size_t i = 0; i < nsib; i++) {
        if (json_array_append_new(arr, hex_string(sib[i])) != 0) {
            rc = TC_ERR_ALLOC;
            goto out;
        }
    }
    *out = arr;
    arr = NULL;
out:
    json_decref(arr);
    free(sib);
    return rc;
}

/* Shared by tc_batch_proof_verify and the parser, which names the answer position instead. */
static int proof_verify(const uint8_t leaf[HLEN], size_t index, size_t count,
                        const uint8_t (*siblings)[HLEN], size_t nsib, const uint8_t root[HLEN],
                        long entry, struct tc_reason *why)
{
    int rc;
    uint8_t h[HLEN];
    size_t k = 0;

    if (leaf == NULL || root == NULL || (siblings == NULL && nsib))
        return tc_fail(why, TC_ERR_INVALID_ARG, "batch.proof", entry, "missing input");
    if (count == 0 || count > TC_BATCH_MAX_VMS)
        return tc_fail(why, TC_ERR_FORMAT, "batch.proof", entry, "count %zu not in 1..%d", count,
                       TC_BATCH_MAX_VMS);
    if (index >= count)
        return tc_fail(why, TC_ERR_FORMAT, "batch.proof", entry, "index %zu not below count %zu",
                       index, count);
    size_t want = tc_batch_proof_len(index, count);
    if (nsib != want)
        return tc_fail(why, TC_ERR_FORMAT, "batch.proof", entry,
                       "%zu siblings, index %zu of %zu needs %zu", nsib, index, count, want);
    memcpy(h, leaf, HLEN);
    for (size_t i = index, s = count; s > 1; i >>= 1, s = (s + 1) / 2) {
        if ((i ^ 1) >= s)
            continue; /* moved up unchanged */
        if (i & 1)
            rc = hash_inner(siblings[k], h, h);
        else
            rc = hash_inner(h, siblings[k], h);
        if (rc != 0)
            return tc_fail(why, rc, "batch.proof", entry, "SHA-256 failed");
        k++;
    }
    if (CRYPTO_memcmp(h, root, HLEN) != 0)
        return tc_fail(why, TC_ERR_MISMATCH, "batch.proof", entry,
                       "proof of index %zu does not lead to the batch root", index);
    return 0;
}

int tc_batch_proof_verify(const uint8_t leaf[32], size_t index, size_t count,
                          const uint8_t (*siblings)[32], size_t nsib, const uint8_t root[32],
                          struct tc_reason *why)
{
    return proof_verify(leaf, index, count, siblings, nsib, root, (long)index, why);
}

int tc_batch_qualifying_data(const uint8_t *nonce, size_t nonce_len, const uint8_t root[32],
                             uint8_t out[32])
{
    if (out == NULL)
        return TC_ERR_INVALID_ARG;
    memset(out, 0, HLEN);
    if (root == NULL || (nonce == NULL && nonce_len) || nonce_len > MAX_NONCE)
        return TC_ERR_INVALID_ARG;
    const void *parts[] = {TC_BATCH_LABEL, nonce, root};
    const size_t lens[] = {sizeof(TC_BATCH_LABEL) - 1, nonce_len, HLEN};
    return sha256_parts(parts, lens, 3, out);
}

/* ---- parser of an agent's answer (untrusted) ---- */

static bool key_in(const char *key, const char *const *keys, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(key, keys[i]) == 0)
            return true;
    return false;
}

/* Rejects members outside the fixed format, so a misspelt member is an error, not ignored. */
static int only_keys(const json_t *o, const char *const *keys, size_t n, long entry,
                     struct tc_reason *why)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)o, key, v)
    {
        (void)v;
        if (!key_in(key, keys, n))
            return tc_fail(why, TC_ERR_FORMAT, "batch.format", entry, "unexpected member \"%.40s\"",
                           key);
    }
    return 0;
}

/* A whole 64-character hex SHA-256. */
static int hash_hex(const json_t *v, uint8_t out[HLEN])
{
    size_t got = 0;
    if (!json_is_string(v) || json_string_length(v) != 2 * HLEN)
        return TC_ERR_FORMAT;
    if (tc_hex_decode(json_string_value(v), 2 * HLEN, out, HLEN, &got) != 0 || got != HLEN)
        return TC_ERR_FORMAT;
    return 0;
}

/* Canonical base64 only (tc_b64_decode), so that one byte string has exactly one text: the leaf
 * hashes the decoded bytes, and two texts of the same quote must not look like two quotes. */
static int b64_member(const json_t *o, const char *key, size_t max, uint8_t **out, size_t *len,
                      long entry, struct tc_reason *why)
{
    const json_t *v = json_object_get(o, key);
    int rc;
    if (!json_is_string(v))
        return tc_fail(why, TC_ERR_FORMAT, "batch.format", entry, "\"%s\" is not a string", key);
    rc = tc_b64_decode(json_string_value(v), json_string_length(v), max, out, len);
    if (rc == TC_ERR_TOO_LARGE)
        return tc_fail(why, rc, "batch.format", entry, "\"%s\" exceeds %zu bytes", key, max);
    if (rc != 0)
        return tc_fail(why, rc, "batch.format", entry, "\"%s\" is not canonical base64", key);
    return 0;
}

static bool check_name_valid(const char *s, size_t len)
{
    if (len == 0 || len > TC_BATCH_MAX_CHECK)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!id_char(s[i]))
            return false;
    return true;
}

static int parse_error_entry(const json_t *e, struct tc_batch_vm *vm, long entry,
                             struct tc_reason *why)
{
    static const char *const keys[] = {"id", "error", "check"};
    const json_t *err = json_object_get(e, "error"), *chk = json_object_get(e, "check");
    int rc;

    if ((rc = only_keys(e, keys, 3, entry, why)) != 0)
        return rc;
    if (!json_is_string(err) || !json_is_string(chk))
        return tc_fail(why, TC_ERR_FORMAT, "batch.format", entry,
                       "error entry without \"error\" and \"check\" strings");
    /* Borrowed as C strings: an embedded NUL would cut them silently. */
    size_t elen = json_string_length(err), clen = json_string_length(chk);
    if (elen > TC_BATCH_MAX_TEXT || strlen(json_string_value(err)) != elen)
        return tc_fail(why, TC_ERR_FORMAT, "batch.format", entry, "\"error\" text unusable");
    if (!check_name_valid(json_string_value(chk), clen) || strlen(json_string_value(chk)) != clen)
        return tc_fail(why, TC_ERR_FORMAT, "batch.format", entry, "\"check\" name unusable");
    vm->quoted = false;
    vm->error = json_string_value(err);
    vm->check = json_string_value(chk);
    return 0;
}

static int parse_quote_entry(const json_t *e, const struct tc_batch *b, uint8_t *index_seen,
                             struct tc_batch_vm *vm, long entry, struct tc_reason *why)
{
    static const char *const keys[] = {"id",   "index", "attest",   "signature",
                                       "pcrs", "ima",   "eventlog", "proof"};
    const json_t *jindex = json_object_get(e, "index"), *jproof = json_object_get(e, "proof");
    int rc;

    if ((rc = only_keys(e, keys, 8, entry, why)) != 0)
        return rc;
    if (!b->present)
        return tc_fail(why, TC_ERR_FORMAT, "batch.format", entry,
                       "quote entry in an answer without \"batch\"");
    if (!json_is_integer(jindex))
        return tc_fail(why, TC_ERR_FORMAT, "batch.index", entry, "\"index\" is not an integer");
    json_int_t idx = json_integer_value(jindex);
    if (idx < 0 || (size_t)idx >= b->count)
        return tc_fail(why, TC_ERR_FORMAT, "batch.index", entry, "index %lld not in 0..%zu",
                       (long long)idx, b->count - 1);
    if (index_seen[idx])
        return tc_fail(why, TC_ERR_FORMAT, "batch.index", entry, "index %lld used twice",
                       (long long)idx);
    index_seen[idx] = 1;
    vm->quoted = true;
    vm->index = (size_t)idx;

    if ((rc = b64_member(e, "attest", TC_QUOTE_MAX_ATTEST, &vm->attest, &vm->attest_len, entry,
                         why)) != 0)
        return rc;
    if ((rc = b64_member(e, "signature", TC_QUOTE_MAX_SIG, &vm->signature, &vm->sig_len, entry,
                         why)) != 0)
        return rc;

    vm->pcrs = json_object_get(e, "pcrs");
    vm->ima = json_object_get(e, "ima");
    vm->eventlog = json_object_get(e, "eventlog");
    if ((vm->pcrs && !json_is_object(vm->pcrs)) || (vm->ima && !json_is_object(vm->ima)) ||
        (vm->eventlog && !json_is_string(vm->eventlog)))
        return tc_fail(why, TC_ERR_FORMAT, "batch.format", entry,
                       "\"pcrs\"/\"ima\" must be objects, \"eventlog\" a string");

    if (!json_is_array(jproof))
        return tc_fail(why, TC_ERR_FORMAT, "batch.proof", entry, "\"proof\" is not an array");
    size_t np = json_array_size(jproof), want = tc_batch_proof_len(vm->index, b->count);
    if (np != want)
        return tc_fail(why, TC_ERR_FORMAT, "batch.proof", entry,
                       "%zu siblings, index %zu of %zu needs %zu", np, vm->index, b->count, want);
    if (np > 0) {
        if ((vm->proof = calloc(np, HLEN)) == NULL)
            return tc_fail(why, TC_ERR_ALLOC, "batch.proof", entry, "out of memory");
        vm->nproof = np;
        for (size_t i = 0; i < np; i++)
            if (hash_hex(json_array_get(jproof, i), vm->proof[i]) != 0)
                return tc_fail(why, TC_ERR_FORMAT, "batch.proof", entry,
                               "sibling %zu is not 64 hex characters", i);
    }
    if ((rc = tc_batch_leaf(vm->id, vm->attest, vm->attest_len, vm->signature, vm->sig_len,
                            vm->leaf)) != 0)
        return tc_fail(why, rc, "batch.proof", entry, "leaf hash failed");
    return proof_verify(vm->leaf, vm->index, b->count, (const uint8_t(*)[HLEN])vm->proof,
                        vm->nproof, b->root, entry, why);
}

static int parse_batch_object(const json_t *batch, struct tc_batch *b, struct tc_reason *why)
{
    static const char *const keys[] = {"root", "count"};
    const json_t *jcount = json_object_get(batch, "count");
    int rc;

    if (!json_is_object(batch))
        return tc_fail(why, TC_ERR_FORMAT, "batch.format", -1, "\"batch\" is not an object");
    if ((rc = only_keys(batch, keys, 2, -1, why)) != 0)
        return rc;
    if (hash_hex(json_object_get(batch, "root"), b->root) != 0)
        return tc_fail(why, TC_ERR_FORMAT, "batch.format", -1, "\"root\" is not 64 hex characters");
    if (!json_is_integer(jcount))
        return tc_fail(why, TC_ERR_FORMAT, "batch.count", -1, "\"count\" is not an integer");
    json_int_t c = json_integer_value(jcount);
    if (c < 1 || c > TC_BATCH_MAX_VMS)
        return tc_fail(why, c < 1 ? TC_ERR_FORMAT : TC_ERR_TOO_LARGE, "batch.count", -1,
                       "count %lld not in 1..%d", (long long)c, TC_BATCH_MAX_VMS);
    b->present = true;
    b->count = (size_t)c;
    return 0;
}

static int cmp_vm_id(const void *a, const void *b)
{
    const struct tc_batch_vm *const *x = a, *const *y = b;
    int c = strcmp((*x)->id, (*y)->id);
    if (c != 0)
        return c;
    /* Ties by position, so the duplicate reported is the later one. */
    return (*x > *y) - (*x < *y);
}

/* Unique ids, in O(n log n): 4096 entries would be 8 million comparisons pairwise. */
static int check_unique_ids(const struct tc_batch *b, struct tc_reason *why)
{
    const struct tc_batch_vm **sorted;
    int rc = 0;

    if (b->nvms < 2)
        return 0;
    if ((sorted = calloc(b->nvms, sizeof(*sorted))) == NULL)
        return tc_fail(why, TC_ERR_ALLOC, "batch.id", -1, "out of memory");
    for (size_t i = 0; i < b->nvms; i++)
        sorted[i] = &b->vms[i];
    qsort(sorted, b->nvms, sizeof(*sorted), cmp_vm_id);
    for (size_t i = 1; i < b->nvms; i++) {
        if (strcmp(sorted[i - 1]->id, sorted[i]->id) == 0) {
            rc = tc_fail(why, TC_ERR_FORMAT, "batch.id", (long)(sorted[i] - b->vms),
                         "vm id \"%s\" appears twice", sorted[i]->id);
            break;
        }
    }
    free(sorted);
    return rc;
}

void tc_batch_free(struct tc_batch *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->nvms; i++) {
        free(b->vms[i].attest);
        free(b->vms[i].signature);
        free(b->vms[i].proof);
    }
    free(b->vms);
    free(b);
}

int tc_batch_parse(const json_t *batch, const json_t *vms, struct tc_batch **out,
                   struct tc_reason *why)
{
    int rc = 0;
    struct tc_batch *b = NULL;
    uint8_t *index_seen = NULL;
    size_t nquoted = 0;

    if (out == NULL)
        return tc_fail(why, TC_ERR_INVALID_ARG, "batch.format", -1, "no output");
    *out = NULL;
    if ((b = calloc(1, sizeof(*b))) == NULL)
        return tc_fail(why, TC_ERR_ALLOC, "batch.format", -1, "out of memory");
    if (batch != NULL && (rc = parse_batch_object(batch, b, why)) != 0)
        goto out;
    if (vms != NULL && !json_is_array(vms)) {
        rc = tc_fail(why, TC_ERR_FORMAT, "batch.format", -1, "\"vms\" is not an array");
        goto out;
    }
    size_t n = vms ? json_array_size(vms) : 0;
    if (n > TC_BATCH_MAX_VMS) {
        rc = tc_fail(why, TC_ERR_TOO_LARGE, "batch.count", -1, "%zu vm entries exceed %d", n,
                     TC_BATCH_MAX_VMS);
        goto out;
    }
    if (b->present && n < b->count) {
        rc = tc_fail(why, TC_ERR_FORMAT, "batch.count", -1, "count %zu but only %zu vm entries",
                     b->count, n);
        goto out;
    }
    if (n > 0 && (b->vms = calloc(n, sizeof(*b->vms))) == NULL) {
        rc = tc_fail(why, TC_ERR_ALLOC, "batch.format", -1, "out of memory");
        goto out;
    }
    if (b->present && (index_seen = calloc(b->count, 1)) == NULL) {
        rc = tc_fail(why, TC_ERR_ALLOC, "batch.format", -1, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(vms, i), *jid;
        struct tc_batch_vm *vm = &b->vms[i];
        long entry = (long)i;
        b->nvms = i + 1; /* so tc_batch_free sees what this entry allocates */
        if (!json_is_object(e)) {
            rc = tc_fail(why, TC_ERR_FORMAT, "batch.format", entry, "vm entry is not an object");
            goto out;
        }
        jid = json_object_get(e, "id");
        if (!json_is_string(jid) || !id_valid_n(json_string_value(jid), json_string_length(jid))) {
            rc = tc_fail(why, TC_ERR_FORMAT, "batch.id", entry, "missing or invalid vm id");
            goto out;
        }
        memcpy(vm->id, json_string_value(jid), json_string_length(jid));
        if (json_object_get(e, "error") != NULL)
            rc = parse_error_entry(e, vm, entry, why);
        else
            rc = parse_quote_entry(e, b, index_seen, vm, entry, why);
        if (rc != 0)
            goto out;
        if (vm->quoted)
            nquoted++;
    }
    if ((rc = check_unique_ids(b, why)) != 0)
        goto out;
    if (b->present && nquoted != b->count) {
        /* Every index used at most once and below count, so a shortfall means a gap. */
        size_t missing = 0;
        while (missing < b->count && index_seen[missing])
            missing++;
        rc = tc_fail(why, TC_ERR_FORMAT, "batch.index", -1,
                     "%zu quote entries for count %zu: index %zu has none", nquoted, b->count,
                     missing);
        goto out;
    }
    *out = b;
    b = NULL;
out:
    free(index_seen);
    tc_batch_free(b);
    return rc;
}
