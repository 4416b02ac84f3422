/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Batch attestation: leaves, trees and proofs against an independent computation with OpenSSL's
 * SHA256() (and fixed vectors computed outside C), every proof of trees of 1..33 leaves and its
 * failure after any single bit flip, and tc_batch_parse rejecting each malformed answer with the
 * right check and entry.
 *
 * With TC_BATCH_CORPUS_DIR set, also writes the valid answers it generates there (the seed corpus
 * of fuzz/batch_answer.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "trustcloud/batch.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/quote.h"

typedef uint8_t hash_t[32];

/* ---- the reference: written from the protocol text, OpenSSL SHA256() only ---- */

static void ref_leaf(const char *id, const uint8_t *a, size_t alen, const uint8_t *s, size_t slen,
                     uint8_t out[32])
{
    uint8_t buf[1 + 1 + 64 + 32 + 32];
    size_t n = strlen(id), off = 0;
    buf[off++] = 0x00;
    buf[off++] = (uint8_t)n;
    memcpy(buf + off, id, n);
    off += n;
    SHA256(a, alen, buf + off);
    off += 32;
    SHA256(s, slen, buf + off);
    off += 32;
    SHA256(buf, off, out);
}

static void ref_inner(const uint8_t l[32], const uint8_t r[32], uint8_t out[32])
{
    uint8_t buf[65];
    buf[0] = 0x01;
    memcpy(buf + 1, l, 32);
    memcpy(buf + 33, r, 32);
    SHA256(buf, sizeof(buf), out);
}

static void test_vm(size_t k, char id[32], uint8_t attest[32], size_t *alen, uint8_t sig[32],
                    size_t *slen)
{
    snprintf(id, 32, "vm%zu", k);
    *alen = (size_t)snprintf((char *)attest, 32, "attest-%zu", k);
    *slen = (size_t)snprintf((char *)sig, 32, "sig-%zu", k);
}

static void leaves_for(size_t n, hash_t *ref)
{
    for (size_t k = 0; k < n; k++) {
        char id[32];
        uint8_t a[32], s[32];
        size_t al, sl;
        test_vm(k, id, a, &al, s, &sl);
        ref_leaf(id, a, al, s, sl, ref[k]);
    }
}

static void hexdecode32(const char *hex, uint8_t out[32])
{
    size_t n;
    assert_int_equal(tc_hex_decode(hex, 64, out, 32, &n), 0);
    assert_int_equal(n, 32);
}

/* ---- known answers ---- */

static void known_answers(void **state)
{
    (void)state;
    hash_t ref[5], got, want, root, qd;
    struct tc_batch_tree *t = NULL;

    /* Fixed vectors computed outside this code base (Python hashlib) from the protocol text. */
    leaves_for(3, ref);
    uint8_t a[32], s[32];
    char id[32];
    size_t al, sl;
    test_vm(0, id, a, &al, s, &sl);
    assert_int_equal(tc_batch_leaf(id, a, al, s, sl, got), 0);
    hexdecode32("2805fcdb80cdc56dc01d7d7be678c572d1d48b4db57cd26b699d8acd6de10153", want);
    assert_memory_equal(got, want, 32);
    assert_memory_equal(got, ref[0], 32);
    assert_int_equal(tc_batch_tree_build((const uint8_t(*)[32])ref, 3, &t), 0);
    assert_int_equal(tc_batch_tree_root(t, root), 0);
    hexdecode32("a12bb8d5bb94c78266d2b64b33f87bec942320ea9ececdda6f482d71ea948bb0", want);
    assert_memory_equal(root, want, 32);
    uint8_t nonce[32];
    for (int i = 0; i < 32; i++)
        nonce[i] = (uint8_t)i;
    assert_int_equal(tc_batch_qualifying_data(nonce, 32, root, qd), 0);
    hexdecode32("9f2d5c04787cab5d4f5b2ebb5f3eb46ef74a754f0bf019e7cce14fed680c8d87", want);
    assert_memory_equal(qd, want, 32);
    tc_batch_tree_free(t);
    t = NULL;

    /* n = 1, 2, 3, 5 against the reference. */
    leaves_for(5, ref);
    for (size_t i = 0; i < 5; i++) {
        test_vm(i, id, a, &al, s, &sl);
        assert_int_equal(tc_batch_leaf(id, a, al, s, sl, got), 0);
        assert_memory_equal(got, ref[i], 32);
    }
    hash_t r1, r2, r3, r5, x, y;
    memcpy(r1, ref[0], 32);
    ref_inner(ref[0], ref[1], r2);
    ref_inner(r2, ref[2], r3);
    ref_inner(ref[2], ref[3], x); /* n = 5: ((01)(23)) then 4, which moved up twice */
    ref_inner(r2, x, y);
    ref_inner(y, ref[4], r5);
    const struct {
        size_t n;
        uint8_t *root;
    } cases[] = {{1, r1}, {2, r2}, {3, r3}, {5, r5}};
    for (size_t c = 0; c < 4; c++) {
        assert_int_equal(tc_batch_tree_build((const uint8_t(*)[32])ref, cases[c].n, &t), 0);
        assert_int_equal(tc_batch_tree_count(t), cases[c].n);
        assert_int_equal(tc_batch_tree_root(t, got), 0);
        assert_memory_equal(got, cases[c].root, 32);
        tc_batch_tree_free(t);
        t = NULL;
    }

    /* Proof shapes for n = 5: leaf 4 has one sibling (the promoted node skips two levels). */
    uint8_t(*sib)[32] = NULL;
    size_t nsib = 0;
    assert_int_equal(tc_batch_tree_build((const uint8_t(*)[32])ref, 5, &t), 0);
    assert_int_equal(tc_batch_tree_proof(t, 4, &sib, &nsib), 0);
    assert_int_equal(nsib, 1);
    assert_memory_equal(sib[0], y, 32);
    free(sib);
    assert_int_equal(tc_batch_tree_proof(t, 0, &sib, &nsib), 0);
    assert_int_equal(nsib, 3);
    assert_memory_equal(sib[0], ref[1], 32);
    assert_memory_equal(sib[1], x, 32);
    assert_memory_equal(sib[2], ref[4], 32);
    free(sib);
    assert_int_equal(tc_batch_tree_proof(t, 5, &sib, &nsib), TC_ERR_INVALID_ARG);
    assert_null(sib);
    /* JSON forms. */
    json_t *j = NULL;
    assert_int_equal(tc_batch_tree_to_json(t, &j), 0);
    char rhex[65];
    tc_hex_encode(r5, 32, rhex);
    assert_string_equal(json_string_value(json_object_get(j, "root")), rhex);
    assert_int_equal(json_integer_value(json_object_get(j, "count")), 5);
    json_decref(j);
    assert_int_equal(tc_batch_tree_proof_json(t, 4, &j), 0);
    tc_hex_encode(y, 32, rhex);
    assert_int_equal(json_array_size(j), 1);
    assert_string_equal(json_string_value(json_array_get(j, 0)), rhex);
    json_decref(j);
    tc_batch_tree_free(t);
    t = NULL;
    /* n = 1: the root is the leaf and the proof is empty. */
    assert_int_equal(tc_batch_tree_build((const uint8_t(*)[32])ref, 1, &t), 0);
    assert_int_equal(tc_batch_tree_proof(t, 0, &sib, &nsib), 0);
    assert_int_equal(nsib, 0);
    assert_null(sib);
    assert_int_equal(tc_batch_proof_verify(ref[0], 0, 1, NULL, 0, ref[0], NULL), 0);
    tc_batch_tree_free(t);
}

static void bad_arguments(void **state)
{
    (void)state;
    hash_t leaves[2] = {{0}}, out;
    struct tc_batch_tree *t = (struct tc_batch_tree *)1;
    assert_int_equal(tc_batch_tree_build((const uint8_t(*)[32])leaves, 0, &t), TC_ERR_INVALID_ARG);
    assert_null(t);
    assert_int_equal(tc_batch_tree_build((const uint8_t(*)[32])leaves, TC_BATCH_MAX_VMS + 1, &t),
                     TC_ERR_INVALID_ARG);
    assert_int_equal(tc_batch_leaf("a b", (const uint8_t *)"x", 1, (const uint8_t *)"y", 1, out),
                     TC_ERR_INVALID_ARG);
    assert_int_equal(tc_batch_leaf("..", (const uint8_t *)"x", 1, (const uint8_t *)"y", 1, out),
                     TC_ERR_INVALID_ARG);
    char longid[66];
    memset(longid, 'a', 65);
    longid[65] = 0;
    assert_int_equal(tc_batch_leaf(longid, (const uint8_t *)"x", 1, (const uint8_t *)"y", 1, out),
                     TC_ERR_INVALID_ARG);
    longid[64] = 0;
    assert_int_equal(tc_batch_leaf(longid, (const uint8_t *)"x", 1, (const uint8_t *)"y", 1, out),
                     0);
    uint8_t nonce[65] = {0};
    assert_int_equal(tc_batch_qualifying_data(nonce, 65, leaves[0], out), TC_ERR_INVALID_ARG);
    assert_int_equal(tc_batch_qualifying_data(nonce, 64, leaves[0], out), 0);
    /* The label is part of the hash: a plain SHA-256(nonce || root) differs. */
    uint8_t plain[96], ph[32];
    memcpy(plain, nonce, 64);
    memcpy(plain + 64, leaves[0], 32);
    SHA256(plain, 96, ph);
    assert_memory_not_equal(ph, out, 32);
    assert_true(tc_batch_id_valid("vm-1.a_B"));
    assert_false(tc_batch_id_valid(""));
    assert_false(tc_batch_id_valid("."));
    assert_false(tc_batch_id_valid("vm/1"));
}

/* ---- every proof of every tree up to 33 leaves, and single bit flips ---- */

static void flip(uint8_t *p, size_t bit)
{
    p[bit / 8] ^= (uint8_t)(1u << (bit % 8));
}

static void proofs_and_flips(void **state)
{
    (void)state;
    hash_t ref[33], root;
    leaves_for(33, ref);
    for (size_t n = 1; n <= 33; n++) {
        struct tc_batch_tree *t = NULL;
        assert_int_equal(tc_batch_tree_build((const uint8_t(*)[32])ref, n, &t), 0);
        assert_int_equal(tc_batch_tree_root(t, root), 0);
        for (size_t i = 0; i < n; i++) {
            uint8_t(*sib)[32] = NULL;
            size_t nsib = 0;
            struct tc_reason why;
            assert_int_equal(tc_batch_tree_proof(t, i, &sib, &nsib), 0);
            assert_int_equal(nsib, tc_batch_proof_len(i, n));
            assert_true(nsib <= TC_BATCH_MAX_PROOF);
            const uint8_t(*cs)[32] = (const uint8_t(*)[32])sib;
            assert_int_equal(tc_batch_proof_verify(ref[i], i, n, cs, nsib, root, &why), 0);
            for (size_t b = 0; b < 256; b++) {
                flip(ref[i], b);
                assert_int_equal(tc_batch_proof_verify(ref[i], i, n, cs, nsib, root, &why),
                                 TC_ERR_MISMATCH);
                flip(ref[i], b);
                flip(root, b);
                assert_int_equal(tc_batch_proof_verify(ref[i], i, n, cs, nsib, root, &why),
                                 TC_ERR_MISMATCH);
                flip(root, b);
                for (size_t k = 0; k < nsib; k++) {
                    flip(sib[k], b);
                    assert_int_equal(tc_batch_proof_verify(ref[i], i, n, cs, nsib, root, &why),
                                     TC_ERR_MISMATCH);
                    assert_string_equal(why.check, "batch.proof");
                    flip(sib[k], b);
                }
            }
            /* Any other index: out of range, another sibling count, or another path. */
            for (size_t b = 0; b < 8; b++) {
                size_t j = i ^ ((size_t)1 << b);
                int rc = tc_batch_proof_verify(ref[i], j, n, cs, nsib, root, &why);
                assert_true(rc == TC_ERR_MISMATCH || rc == TC_ERR_FORMAT);
                assert_string_equal(why.check, "batch.proof");
            }
            /* The leaf of another index with this proof. */
            for (size_t j = 0; j < n; j++)
                if (j != i)
                    assert_int_not_equal(tc_batch_proof_verify(ref[j], i, n, cs, nsib, root, &why),
                                         0);
            /* One sibling too many or too few. */
            uint8_t(*more)[32] = calloc(nsib + 1, 32);
            assert_non_null(more);
            if (nsib)
                memcpy(more, sib, nsib * 32);
            assert_int_equal(tc_batch_proof_verify(ref[i], i, n, (const uint8_t(*)[32])more,
                                                   nsib + 1, root, &why),
                             TC_ERR_FORMAT);
            if (nsib)
                assert_int_equal(tc_batch_proof_verify(ref[i], i, n, cs, nsib - 1, root, &why),
                                 TC_ERR_FORMAT);
            free(more);
            free(sib);
        }
        /* A different count (the shape changes) fails for the last index. */
        if (n > 1) {
            uint8_t(*sib)[32] = NULL;
            size_t nsib = 0;
            assert_int_equal(tc_batch_tree_proof(t, n - 1, &sib, &nsib), 0);
            assert_int_not_equal(tc_batch_proof_verify(ref[n - 1], n - 1, n + 1,
                                                       (const uint8_t(*)[32])sib, nsib, root, NULL),
                                 0);
            free(sib);
        }
        tc_batch_tree_free(t);
    }
}

/* Odd counts: a promoted node equals the one below it, and 2^k + 1 leaves put the last leaf one
 * level below the root with a single sibling. */
static void odd_promotion(void **state)
{
    (void)state;
    static hash_t ref[TC_BATCH_MAX_VMS];
    for (size_t i = 0; i < TC_BATCH_MAX_VMS; i++) {
        memset(ref[i], 0, 32);
        memcpy(ref[i], &i, sizeof(i));
        SHA256(ref[i], 32, ref[i]);
    }
    size_t sizes[] = {3, 7, 9, 17, 1025, 4095, 4096};
    for (size_t c = 0; c < sizeof(sizes) / sizeof(sizes[0]); c++) {
        size_t n = sizes[c];
        struct tc_batch_tree *t = NULL;
        hash_t root;
        assert_int_equal(tc_batch_tree_build((const uint8_t(*)[32])ref, n, &t), 0);
        assert_int_equal(tc_batch_tree_root(t, root), 0);
        if (n > 2 && ((n - 1) & (n - 2)) == 0) {
            /* n = 2^k + 1: root = H(root of the first 2^k, last leaf). */
            struct tc_batch_tree *left = NULL;
            hash_t lroot, want;
            assert_int_equal(tc_batch_tree_build((const uint8_t(*)[32])ref, n - 1, &left), 0);
            assert_int_equal(tc_batch_tree_root(left, lroot), 0);
            ref_inner(lroot, ref[n - 1], want);
            assert_memory_equal(root, want, 32);
            assert_int_equal(tc_batch_proof_len(n - 1, n), 1);
            tc_batch_tree_free(left);
        }
        for (size_t i = 0; i < n; i += (n > 64 ? 97 : 1)) {
            uint8_t(*sib)[32] = NULL;
            size_t nsib = 0;
            assert_int_equal(tc_batch_tree_proof(t, i, &sib, &nsib), 0);
            assert_int_equal(
                tc_batch_proof_verify(ref[i], i, n, (const uint8_t(*)[32])sib, nsib, root, NULL),
                0);
            free(sib);
        }
        tc_batch_tree_free(t);
    }
    assert_int_equal(tc_batch_proof_len(0, 4096), 12);
    assert_int_equal(tc_batch_proof_len(4094, 4095), 11);
    assert_int_equal(tc_batch_proof_len(0, 3), 2);
    assert_int_equal(tc_batch_proof_len(2, 3), 1);
    assert_int_equal(tc_batch_proof_len(3, 3), 0);
}

/* ---- answers: a generator and the parser ---- */

static char *b64(const uint8_t *d, size_t n)
{
    char *s = malloc(4 * ((n + 2) / 3) + 1);
    assert_non_null(s);
    EVP_EncodeBlock((unsigned char *)s, d, (int)n);
    return s;
}

/*
 * An answer's {"batch", "vms"} for `count` quoted VMs and `nerr` error entries: quoted VM k has
 * id "vm<k>" and index (k * 7) % count when 7 does not divide count (so answer order differs
 * from index order), error entries "down<k>" interleaved.
 */
static json_t *gen_answer(size_t count, size_t nerr)
{
    hash_t *leaves = calloc(count ? count : 1, 32);
    char(*ids)[32] = calloc(count ? count : 1, 32);
    uint8_t(*att)[40] = calloc(count ? count : 1, 40);
    size_t *alen = calloc(count ? count : 1, sizeof(size_t));
    assert_true(leaves && ids && att && alen);
    size_t mult = (count % 7 != 0) ? 7 : 1;
    for (size_t k = 0; k < count; k++) {
        size_t idx = (k * mult) % count;
        snprintf(ids[idx], 32, "vm%zu", k);
        alen[idx] = 20 + k % 20; /* lengths with every base64 padding */
        for (size_t b = 0; b < alen[idx]; b++)
            att[idx][b] = (uint8_t)(k * 31 + b);
        ref_leaf(ids[idx], att[idx], alen[idx], (const uint8_t *)ids[idx], strlen(ids[idx]),
                 leaves[idx]);
    }
    json_t *ans = json_object(), *vms = json_array();
    struct tc_batch_tree *t = NULL;
    if (count) {
        json_t *jb = NULL;
        assert_int_equal(tc_batch_tree_build((const uint8_t(*)[32])leaves, count, &t), 0);
        assert_int_equal(tc_batch_tree_to_json(t, &jb), 0);
        json_object_set_new(ans, "batch", jb);
    }
    size_t e = 0;
    for (size_t k = 0; k < count || e < nerr; k++) {
        if (k < count) {
            size_t idx = (k * mult) % count;
            json_t *proof = NULL;
            assert_int_equal(tc_batch_tree_proof_json(t, idx, &proof), 0);
            char *a = b64(att[idx], alen[idx]);
            char *s = b64((const uint8_t *)ids[idx], strlen(ids[idx]));
            json_t *vm =
                json_pack("{s:s, s:I, s:s, s:s, s:{s:{s:s}}, s:{s:i, s:s}, s:o}", "id", ids[idx],
                          "index", (json_int_t)idx, "attest", a, "signature", s, "pcrs", "sha256",
                          "0", "00", "ima", "first", 0, "list", "", "proof", proof);
            assert_non_null(vm);
            json_array_append_new(vms, vm);
            free(a);
            free(s);
        }
        if (e < nerr && (k % 2 == 1 || k >= count)) {
            char id[32];
            snprintf(id, sizeof(id), "down%zu", e++);
            json_array_append_new(vms, json_pack("{s:s, s:s, s:s}", "id", id, "error",
                                                 "not running", "check", "vm.not_running"));
        }
    }
    json_object_set_new(ans, "vms", vms);
    tc_batch_tree_free(t);
    free(leaves);
    free(ids);
    free(att);
    free(alen);
    return ans;
}

static int parse_answer(const json_t *ans, struct tc_reason *why)
{
    struct tc_batch *b = NULL;
    tc_reason_clear(why);
    int rc = tc_batch_parse(json_object_get(ans, "batch"), json_object_get(ans, "vms"), &b, why);
    if (rc == 0)
        assert_non_null(b);
    else
        assert_null(b);
    tc_batch_free(b);
    return rc;
}

static void expect_fail(const json_t *ans, const char *check, long entry)
{
    struct tc_reason why;
    assert_int_not_equal(parse_answer(ans, &why), 0);
    if (strcmp(why.check, check) != 0 || why.entry != entry)
        fail_msg("expected %s entry %ld, got %s entry %ld: %s", check, entry, why.check, why.entry,
                 why.detail);
}

static json_t *vm_at(json_t *ans, size_t i)
{
    return json_array_get(json_object_get(ans, "vms"), i);
}

static void parse_valid(void **state)
{
    (void)state;
    const char *dir = getenv("TC_BATCH_CORPUS_DIR");
    size_t counts[] = {1, 2, 3, 5, 8, 13, 33};
    for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
        json_t *ans = gen_answer(counts[c], c % 3);
        struct tc_batch *b = NULL;
        struct tc_reason why;
        assert_int_equal(
            tc_batch_parse(json_object_get(ans, "batch"), json_object_get(ans, "vms"), &b, &why),
            0);
        assert_true(b->present);
        assert_int_equal(b->count, counts[c]);
        assert_int_equal(b->nvms, counts[c] + c % 3);
        size_t quoted = 0;
        for (size_t i = 0; i < b->nvms; i++) {
            const struct tc_batch_vm *vm = &b->vms[i];
            const json_t *e = vm_at(ans, i);
            assert_string_equal(vm->id, json_string_value(json_object_get(e, "id")));
            if (!vm->quoted) {
                assert_string_equal(vm->check, "vm.not_running");
                assert_string_equal(vm->error, "not running");
                continue;
            }
            quoted++;
            assert_int_equal(vm->index, json_integer_value(json_object_get(e, "index")));
            hash_t want;
            ref_leaf(vm->id, vm->attest, vm->attest_len, vm->signature, vm->sig_len, want);
            assert_memory_equal(vm->leaf, want, 32);
            assert_memory_equal(vm->signature, vm->id, vm->sig_len);
            assert_ptr_equal(vm->pcrs, json_object_get(e, "pcrs"));
            assert_ptr_equal(vm->ima, json_object_get(e, "ima"));
            assert_null(vm->eventlog);
            assert_int_equal(vm->nproof, tc_batch_proof_len(vm->index, b->count));
        }
        assert_int_equal(quoted, counts[c]);
        tc_batch_free(b);
        if (dir != NULL) {
            char path[4096];
            snprintf(path, sizeof(path), "%s/valid-%zu-%zu", dir, counts[c], c % 3);
            assert_int_equal(json_dump_file(ans, path, JSON_COMPACT), 0);
        }
        json_decref(ans);
    }
    /* No batch and only error entries; nothing at all. */
    json_t *ans = gen_answer(0, 2);
    struct tc_batch *b = NULL;
    assert_int_equal(
        tc_batch_parse(json_object_get(ans, "batch"), json_object_get(ans, "vms"), &b, NULL), 0);
    assert_false(b->present);
    assert_int_equal(b->count, 0);
    assert_int_equal(b->nvms, 2);
    tc_batch_free(b);
    json_decref(ans);
    assert_int_equal(tc_batch_parse(NULL, NULL, &b, NULL), 0);
    assert_int_equal(b->nvms, 0);
    tc_batch_free(b);
    /* The largest batch. */
    ans = gen_answer(TC_BATCH_MAX_VMS, 0);
    struct tc_reason why;
    assert_int_equal(parse_answer(ans, &why), 0);
    /* Entry 4097 (an error entry) makes too many. */
    json_array_append_new(json_object_get(ans, "vms"),
                          json_pack("{s:s, s:s, s:s}", "id", "extra", "error", "x", "check", "x"));
    expect_fail(ans, "batch.count", -1);
    json_decref(ans);
}

static void parse_rejects(void **state)
{
    (void)state;
    json_t *ans;
#define FRESH() (json_decref(ans), ans = gen_answer(5, 2))
    ans = gen_answer(5, 2);
    /* Layout: 0 vm0(idx0) 1 vm1(idx2) 2 down0 3 vm2(idx4) 4 vm3(idx1) 5 down1 6 vm4(idx3). */
    assert_string_equal(json_string_value(json_object_get(vm_at(ans, 2), "id")), "down0");
    assert_int_equal(json_integer_value(json_object_get(vm_at(ans, 1), "index")), 2);

    /* ids */
    json_object_set_new(vm_at(ans, 2), "id", json_string("vm0"));
    expect_fail(ans, "batch.id", 2);
    FRESH();
    json_object_set_new(vm_at(ans, 5), "id", json_string("vm4"));
    expect_fail(ans, "batch.id", 6);
    FRESH();
    const char *bad_ids[] = {"", "a b", "..", "vm/1",
                             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    for (size_t i = 0; i < 5; i++) {
        json_object_set_new(vm_at(ans, 1), "id", json_string(bad_ids[i]));
        expect_fail(ans, "batch.id", 1);
        FRESH();
    }
    json_object_set_new(vm_at(ans, 1), "id", json_stringn("vm\0x", 4));
    expect_fail(ans, "batch.id", 1);
    FRESH();
    json_object_del(vm_at(ans, 2), "id");
    expect_fail(ans, "batch.id", 2);
    FRESH();

    /* indexes */
    json_object_set_new(vm_at(ans, 1), "index", json_integer(0));
    expect_fail(ans, "batch.index", 1);
    FRESH();
    json_object_set_new(vm_at(ans, 1), "index", json_integer(5));
    expect_fail(ans, "batch.index", 1);
    FRESH();
    json_object_set_new(vm_at(ans, 1), "index", json_integer(-1));
    expect_fail(ans, "batch.index", 1);
    FRESH();
    json_object_set_new(vm_at(ans, 1), "index", json_string("2"));
    expect_fail(ans, "batch.index", 1);
    FRESH();
    json_object_del(vm_at(ans, 1), "index");
    expect_fail(ans, "batch.index", 1);
    FRESH();
    /* A quote entry turned into an error entry: index 2 has no entry. */
    json_array_set_new(json_object_get(ans, "vms"), 1,
                       json_pack("{s:s, s:s, s:s}", "id", "vm1", "error", "x", "check", "vm.x"));
    expect_fail(ans, "batch.index", -1);
    FRESH();
    /* Two entries swap indexes: both proofs now fail, the first named. */
    json_object_set_new(vm_at(ans, 0), "index", json_integer(2));
    json_object_set_new(vm_at(ans, 1), "index", json_integer(0));
    expect_fail(ans, "batch.proof", 0);
    FRESH();

    /* count */
    json_t *batch = json_object_get(ans, "batch");
    json_object_set_new(batch, "count", json_integer(0));
    expect_fail(ans, "batch.count", -1);
    json_object_set_new(batch, "count", json_integer(TC_BATCH_MAX_VMS + 1));
    expect_fail(ans, "batch.count", -1);
    json_object_set_new(batch, "count", json_integer(8)); /* more than the 7 entries */
    expect_fail(ans, "batch.count", -1);
    /* The proofs are for 5: indexes 0..3 have the same path in a tree of 6, index 4 (entry 3)
     * does not (a sibling at level 0 now). */
    json_object_set_new(batch, "count", json_integer(6));
    expect_fail(ans, "batch.proof", 3);
    json_object_set_new(batch, "count", json_real(5.0));
    expect_fail(ans, "batch.count", -1);
    FRESH();

    /* root */
    batch = json_object_get(ans, "batch");
    char root[65];
    snprintf(root, sizeof(root), "%s", json_string_value(json_object_get(batch, "root")));
    char last = root[63];
    root[63] = 0;
    json_object_set_new(batch, "root", json_string(root));
    expect_fail(ans, "batch.format", -1);
    root[63] = 'g';
    json_object_set_new(batch, "root", json_string(root));
    expect_fail(ans, "batch.format", -1);
    root[63] = last == '0' ? '1' : '0';
    json_object_set_new(batch, "root", json_string(root));
    expect_fail(ans, "batch.proof", 0);
    FRESH();
    json_object_set_new(json_object_get(ans, "batch"), "extra", json_true());
    expect_fail(ans, "batch.format", -1);
    FRESH();
    json_object_set_new(ans, "batch", json_array());
    expect_fail(ans, "batch.format", -1);
    FRESH();

    /* base64 */
    const char *bad_b64[] = {
        "", "QQ", "QQ=", "QR==", "QUI=x", "QUJ=", "Q===", "QU I", "=QUJD", "QUJD\n", "QU-_"};
    for (size_t i = 0; i < sizeof(bad_b64) / sizeof(bad_b64[0]); i++) {
        json_object_set_new(vm_at(ans, 3), "attest", json_string(bad_b64[i]));
        expect_fail(ans, "batch.format", 3);
        json_object_set_new(vm_at(ans, 3), "signature", json_string(bad_b64[i]));
        expect_fail(ans, "batch.format", 3);
        FRESH();
    }
    /* Canonical base64 of other bytes: the leaf changes and the proof fails. */
    json_object_set_new(vm_at(ans, 3), "signature", json_string("QQ=="));
    expect_fail(ans, "batch.proof", 3);
    FRESH();
    json_object_set_new(vm_at(ans, 3), "attest", json_integer(1));
    expect_fail(ans, "batch.format", 3);
    FRESH();
    /* Oversized attest / signature. */
    uint8_t big[TC_QUOTE_MAX_ATTEST + TC_QUOTE_MAX_SIG + 1];
    memset(big, 0x5a, sizeof(big));
    char *s = b64(big, TC_QUOTE_MAX_ATTEST + 1);
    json_object_set_new(vm_at(ans, 3), "attest", json_string(s));
    free(s);
    struct tc_reason why;
    assert_int_equal(parse_answer(ans, &why), TC_ERR_TOO_LARGE);
    assert_string_equal(why.check, "batch.format");
    FRESH();
    s = b64(big, TC_QUOTE_MAX_SIG + 1);
    json_object_set_new(vm_at(ans, 3), "signature", json_string(s));
    free(s);
    expect_fail(ans, "batch.format", 3);
    FRESH();

    /* proofs */
    json_t *proof = json_object_get(vm_at(ans, 0), "proof");
    json_array_append_new(proof, json_string(json_string_value(json_array_get(proof, 0))));
    expect_fail(ans, "batch.proof", 0);
    FRESH();
    proof = json_object_get(vm_at(ans, 0), "proof");
    json_array_remove(proof, 0);
    expect_fail(ans, "batch.proof", 0);
    FRESH();
    proof = json_object_get(vm_at(ans, 0), "proof");
    json_array_set_new(proof, 1, json_string("zz"));
    expect_fail(ans, "batch.proof", 0);
    FRESH();
    proof = json_object_get(vm_at(ans, 0), "proof");
    char sib[65];
    snprintf(sib, sizeof(sib), "%s", json_string_value(json_array_get(proof, 1)));
    sib[0] = sib[0] == 'a' ? 'b' : 'a';
    json_array_set_new(proof, 1, json_string(sib));
    expect_fail(ans, "batch.proof", 0);
    FRESH();
    json_object_del(vm_at(ans, 6), "proof");
    expect_fail(ans, "batch.proof", 6);
    FRESH();

    /* entry shapes */
    json_object_set_new(vm_at(ans, 1), "pcrs", json_string("x"));
    expect_fail(ans, "batch.format", 1);
    FRESH();
    json_object_set_new(vm_at(ans, 1), "eventlog", json_object());
    expect_fail(ans, "batch.format", 1);
    FRESH();
    json_object_set_new(vm_at(ans, 1), "nonce", json_string("x"));
    expect_fail(ans, "batch.format", 1);
    FRESH();
    json_object_set_new(vm_at(ans, 1), "error", json_string("x"));
    expect_fail(ans, "batch.format", 1);
    FRESH();
    json_object_set_new(vm_at(ans, 2), "check", json_string("has space"));
    expect_fail(ans, "batch.format", 2);
    FRESH();
    json_object_del(vm_at(ans, 2), "check");
    expect_fail(ans, "batch.format", 2);
    FRESH();
    json_object_set_new(vm_at(ans, 2), "error", json_stringn("a\0b", 3));
    expect_fail(ans, "batch.format", 2);
    FRESH();
    json_array_set_new(json_object_get(ans, "vms"), 4, json_string("vm3"));
    expect_fail(ans, "batch.format", 4);
    FRESH();
    json_object_set_new(ans, "vms", json_object());
    expect_fail(ans, "batch.format", -1);
    FRESH();
    /* Quote entries but no batch; a batch but no vms. */
    json_object_del(ans, "batch");
    expect_fail(ans, "batch.format", 0);
    FRESH();
    json_object_del(ans, "vms");
    expect_fail(ans, "batch.count", -1);
    json_decref(ans);
#undef FRESH
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(known_answers),    cmocka_unit_test(bad_arguments),
        cmocka_unit_test(proofs_and_flips), cmocka_unit_test(odd_promotion),
        cmocka_unit_test(parse_valid),      cmocka_unit_test(parse_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
