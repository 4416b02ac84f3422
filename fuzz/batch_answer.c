/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An agent's batch answer as the coordinator receives it: JSON text (capped like an HTTP body)
 * whose "batch" and "vms" members go through tc_batch_parse. An accepted answer must hold what
 * the coordinator relies on afterwards; any violation aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "trustcloud/batch.h"
#include "trustcloud/quote.h"

#define BATCH_MAX_INPUT (1u << 20) /* the coordinator's body cap */

/* The decoded bytes re-encode to exactly the JSON text (the parser accepts canonical only). */
static void same_b64(const json_t *v, const uint8_t *data, size_t len)
{
    char *s = malloc(4 * ((len + 2) / 3) + 1);
    if (s == NULL)
        abort();
    EVP_EncodeBlock((unsigned char *)s, data, (int)len);
    if (!json_is_string(v) || strcmp(s, json_string_value(v)) != 0)
        abort();
    free(s);
}

static void check_accepted(const struct tc_batch *b, const json_t *vms)
{
    uint8_t *seen = calloc(b->count ? b->count : 1, 1);
    size_t quoted = 0;
    if (seen == NULL)
        abort();
    if (b->nvms > TC_BATCH_MAX_VMS || b->count > TC_BATCH_MAX_VMS ||
        (b->present && b->count == 0) || (!b->present && b->count != 0))
        abort();
    for (size_t i = 0; i < b->nvms; i++) {
        const struct tc_batch_vm *vm = &b->vms[i];
        const json_t *e = json_array_get(vms, i);
        uint8_t leaf[32];
        if (!tc_batch_id_valid(vm->id))
            abort();
        for (size_t j = 0; j < i; j++)
            if (strcmp(vm->id, b->vms[j].id) == 0)
                abort();
        if (!vm->quoted) {
            if (vm->error == NULL || vm->check == NULL)
                abort();
            continue;
        }
        quoted++;
        if (vm->index >= b->count || seen[vm->index]++ || vm->attest_len == 0 ||
            vm->attest_len > TC_QUOTE_MAX_ATTEST || vm->sig_len == 0 ||
            vm->sig_len > TC_QUOTE_MAX_SIG)
            abort();
        same_b64(json_object_get(e, "attest"), vm->attest, vm->attest_len);
        same_b64(json_object_get(e, "signature"), vm->signature, vm->sig_len);
        if (tc_batch_leaf(vm->id, vm->attest, vm->attest_len, vm->signature, vm->sig_len, leaf) !=
                0 ||
            memcmp(leaf, vm->leaf, 32) != 0)
            abort();
        if (tc_batch_proof_verify(leaf, vm->index, b->count, (const uint8_t(*)[32])vm->proof,
                                  vm->nproof, b->root, NULL) != 0)
            abort();
    }
    if (quoted != b->count)
        abort();
    free(seen);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t err;
    struct tc_batch *b = NULL;
    struct tc_reason why;
    json_t *root;

    if (size > BATCH_MAX_INPUT)
        return 0;
    root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &err);
    if (root == NULL)
        return 0;
    const json_t *batch = json_object_get(root, "batch"), *vms = json_object_get(root, "vms");
    int rc = tc_batch_parse(batch, vms, &b, &why);
    if (rc == 0) {
        if (b == NULL)
            abort();
        check_accepted(b, vms);
    } else if (b != NULL || why.check[0] == '\0' || strncmp(why.check, "batch.", 6) != 0) {
        abort();
    }
    tc_batch_free(b);
    json_decref(root);
    return 0;
}
