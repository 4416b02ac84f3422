/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Batch attestation ("deep quote", docs/protocol.md, "Batch attestation"): an agent quotes every
 * vTPM it hosts with the coordinator's nonce, builds a Merkle tree over those quotes and quotes
 * the host TPM once with qualifyingData = SHA-256("trustcloud-batch-v1" || nonce || root).
 *
 *   leaf  = SHA-256(0x00 || u8 len(id) || id || SHA-256(attest) || SHA-256(signature))
 *   inner = SHA-256(0x01 || left || right)
 *
 * Leaves are in index order (0..count-1); at each level nodes are paired (0,1), (2,3), ...; a
 * last node without a sibling moves up unchanged. A proof lists the sibling hashes from the leaf
 * upwards; levels where the node moved up contribute nothing, so the number of siblings is fixed
 * by (index, count).
 *
 * This module is pure (no TPM, no I/O). The agent uses the tree API:
 *
 *     leaves[i] = tc_batch_leaf(id_i, attest_i, sig_i)      for every quoted VM, i = 0..n-1
 *     tc_batch_tree_build(leaves, n, &t);
 *     tc_batch_tree_to_json(t, &batch);                     -> answer["batch"]
 *     tc_batch_tree_root(t, root);
 *     tc_batch_qualifying_data(nonce, nonce_len, root, qd); -> host quote qualifyingData
 *     tc_batch_tree_proof_json(t, i, &proof);               -> answer["vms"][k]["proof"]
 *
 * The coordinator uses tc_batch_parse on the answer, then verifies the host quote against
 * tc_batch_qualifying_data(nonce, root) and every VM quote with that VM's AK and the nonce.
 *
 * Errors: TC_ERR_INVALID_ARG (NULL, n = 0, n > TC_BATCH_MAX_VMS, index out of range),
 * TC_ERR_ALLOC, TC_ERR_CRYPTO (SHA-256 failed); verification failures as documented below.
 */
#ifndef TRUSTCLOUD_BATCH_H
#define TRUSTCLOUD_BATCH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trustcloud/reason.h"

#define TC_BATCH_MAX_VMS 4096 /* most VMs in one challenge / answer */
#define TC_BATCH_ID_MAX 64    /* vm ids: 1..64 of [A-Za-z0-9._-], not "." or ".." */
#define TC_BATCH_MAX_PROOF 12 /* ceil(log2(TC_BATCH_MAX_VMS)): most siblings in a proof */
#define TC_BATCH_HASH_LEN 32  /* SHA-256 */
#define TC_BATCH_LABEL "trustcloud-batch-v1"
#define TC_BATCH_MAX_TEXT 320 /* longest "error" text of an error entry */
#define TC_BATCH_MAX_CHECK 47 /* longest "check" name of an error entry (struct tc_reason) */

/* The leaf of one quoted VM. vm_id must be a valid vm id (TC_ERR_INVALID_ARG otherwise). */
int tc_batch_leaf(const char *vm_id, const uint8_t *attest, size_t attest_len, const uint8_t *sig,
                  size_t sig_len, uint8_t out[32]);

/* Agent side: the whole tree over n leaves (1..TC_BATCH_MAX_VMS). The leaves are copied. *out is
 * set on success only; free with tc_batch_tree_free (NULL is a no-op). */
struct tc_batch_tree;
int tc_batch_tree_build(const uint8_t (*leaves)[32], size_t n, struct tc_batch_tree **out);
void tc_batch_tree_free(struct tc_batch_tree *t);
/* Number of leaves. */
size_t tc_batch_tree_count(const struct tc_batch_tree *t);
int tc_batch_tree_root(const struct tc_batch_tree *t, uint8_t out[32]);
/* Siblings of leaf `index`, leaf upwards. *sib is malloc'd (caller frees; NULL when *nsib is 0,
 * which happens only for n = 1). */
int tc_batch_tree_proof(const struct tc_batch_tree *t, size_t index, uint8_t (**sib)[32],
                        size_t *nsib);
/* {"root": "hex", "count": n}: the answer's "batch" member. *out is a new reference. */
int tc_batch_tree_to_json(const struct tc_batch_tree *t, json_t **out);
/* ["hex", ...]: the "proof" member of the VM entry with this index. *out is a new reference. */
int tc_batch_tree_proof_json(const struct tc_batch_tree *t, size_t index, json_t **out);

/* Number of siblings a proof for (index, count) has; 0 also when index >= count or count is out
 * of range (check those first). */
size_t tc_batch_proof_len(size_t index, size_t count);

/* Recomputes the root from leaf and siblings and compares it (constant time) with root.
 * 0 when it matches; otherwise fills why (check "batch.proof", entry = index) and returns
 * TC_ERR_FORMAT (count not in 1..TC_BATCH_MAX_VMS, index >= count, or nsib is not
 * tc_batch_proof_len(index, count)) or TC_ERR_MISMATCH (another root). */
int tc_batch_proof_verify(const uint8_t leaf[32], size_t index, size_t count,
                          const uint8_t (*siblings)[32], size_t nsib, const uint8_t root[32],
                          struct tc_reason *why);

/* SHA-256("trustcloud-batch-v1" || nonce || root): the host quote's qualifyingData.
 * nonce_len at most 64 (TC_ERR_INVALID_ARG past it). */
int tc_batch_qualifying_data(const uint8_t *nonce, size_t nonce_len, const uint8_t root[32],
                             uint8_t out[32]);

/* One entry of the answer's "vms" array, in answer order. */
struct tc_batch_vm {
    char id[TC_BATCH_ID_MAX + 1];
    bool quoted; /* true: a quote entry; false: an error entry */
    /* Quote entries: */
    size_t index;    /* leaf index, 0..count-1 */
    uint8_t *attest; /* decoded, 1..TC_QUOTE_MAX_ATTEST bytes (owned) */
    size_t attest_len;
    uint8_t *signature; /* decoded, 1..TC_QUOTE_MAX_SIG bytes (owned) */
    size_t sig_len;
    uint8_t leaf[32];     /* tc_batch_leaf of id, attest, signature */
    uint8_t (*proof)[32]; /* owned; NULL when nproof is 0 */
    size_t nproof;
    /* Borrowed from the parsed JSON (valid while the caller holds `vms`); NULL when absent.
     * Not checked beyond their JSON type: pcrs and ima objects, eventlog a string. */
    const json_t *pcrs;
    const json_t *ima;
    const json_t *eventlog;
    /* Error entries: borrowed strings (the JSON's), error at most TC_BATCH_MAX_TEXT bytes and
     * check 1..TC_BATCH_MAX_CHECK bytes of [A-Za-z0-9._-]. */
    const char *error;
    const char *check;
};

struct tc_batch {
    bool present;     /* false: no "batch" member (every VM entry is an error entry) */
    uint8_t root[32]; /* when present */
    size_t count;     /* quoted entries (= leaves); 0 when !present */
    size_t nvms;      /* entries in vms (quoted + error) */
    struct tc_batch_vm *vms;
};

/*
 * Coordinator side: decodes and checks an agent's untrusted answer["batch"] and answer["vms"]
 * (either may be NULL when the answer lacks it). Checks: JSON types and members ("batch.format";
 * base64 standard with padding and canonical, hex lower or upper case), count in
 * 1..TC_BATCH_MAX_VMS and at most TC_BATCH_MAX_VMS entries ("batch.count"), ids valid and unique
 * ("batch.id"), each index 0..count-1 used by exactly one quote entry and count quote entries
 * ("batch.index"), every proof against the root with the leaf of that entry's id, attest and
 * signature ("batch.proof"). Without "batch" every entry must be an error entry (the host quote
 * then uses the nonce itself); with "batch" there is at least one quote entry. Failures name the
 * position of the entry in vms (why->entry), or -1 for the batch object itself.
 * Does NOT check: the quotes themselves, that the ids are the ones challenged, pcrs/ima/eventlog.
 * Returns 0 and sets *out (free with tc_batch_free), or TC_ERR_FORMAT, TC_ERR_TOO_LARGE,
 * TC_ERR_MISMATCH (proof), TC_ERR_ALLOC, TC_ERR_CRYPTO, with why filled.
 */
int tc_batch_parse(const json_t *batch, const json_t *vms, struct tc_batch **out,
                   struct tc_reason *why);
void tc_batch_free(struct tc_batch *b);

/* Whether s is a valid vm id (the node/VM id rule). */
bool tc_batch_id_valid(const char *s);

#endif
