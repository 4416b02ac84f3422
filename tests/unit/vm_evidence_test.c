/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A VM's evidence checked offline (tc_vm_evidence_verify): built here the way the agent and the
 * coordinator build it (soft AKs sign real TPMS_ATTEST quotes, a tree over several VMs' leaves,
 * the host quote over the batch qualifying data), then every way it can be wrong: another nonce,
 * a flipped quote or signature byte, a PCR value changed, a wrong proof, index or root, the host
 * quote of another batch, a swapped AK, pins that do not match, malformed members.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "trustcloud/batch.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/pcrs.h"
#include "trustcloud/softquote.h"
#include "trustcloud/vm_evidence.h"

static struct tc_softak *vm_ak, *host_ak, *other_ak;
static struct tc_pcr_set pcrs, sel;
static const uint8_t nonce[32] = "a coordinator nonce of 32 bytes";

static json_t *b64j(const uint8_t *d, size_t n)
{
    char *s = NULL;
    assert_int_equal(tc_b64_encode(d, n, &s), 0);
    json_t *j = json_string(s);
    free(s);
    return j;
}

static json_t *hexj(const uint8_t *d, size_t n)
{
    char s[2 * 64 + 1];
    tc_hex_encode(d, n, s);
    return json_string(s);
}

static json_t *side(const char *id, const struct tc_softak *ak, const uint8_t *qdata, size_t qlen,
                    uint8_t leaf[32])
{
    uint8_t *attest = NULL, *sig = NULL;
    size_t alen, slen, plen;
    const uint8_t *pub = tc_softak_public(ak, &plen);
    assert_int_equal(
        tc_softquote(ak, &sel, &pcrs, qdata, qlen, 5000, 1, 0, &attest, &alen, &sig, &slen), 0);
    if (leaf)
        assert_int_equal(tc_batch_leaf(id, attest, alen, sig, slen, leaf), 0);
    json_t *j =
        json_pack("{s:s, s:o, s:o, s:o, s:o}", "id", id, "ak_pub", b64j(pub, plen), "attest",
                  b64j(attest, alen), "signature", b64j(sig, slen), "pcrs", tc_pcrs_to_json(&pcrs));
    free(attest);
    free(sig);
    return j;
}

/* Evidence for vm "vm-2" at index 2 of a 5-VM batch. */
static json_t *build(void)
{
    uint8_t leaves[5][32], root[32], qd[32];
    struct tc_batch_tree *t = NULL;
    json_t *vm = NULL;
    for (int i = 0; i < 5; i++) {
        char id[8];
        snprintf(id, sizeof(id), "vm-%d", i);
        json_t *s = side(id, i == 2 ? vm_ak : other_ak, nonce, sizeof(nonce), leaves[i]);
        if (i == 2)
            vm = s;
        else
            json_decref(s);
    }
    assert_int_equal(tc_batch_tree_build((const uint8_t(*)[32])leaves, 5, &t), 0);
    assert_int_equal(tc_batch_tree_root(t, root), 0);
    json_t *proof = NULL;
    assert_int_equal(tc_batch_tree_proof_json(t, 2, &proof), 0);
    tc_batch_tree_free(t);
    assert_int_equal(tc_batch_qualifying_data(nonce, sizeof(nonce), root, qd), 0);
    json_t *host = side("host-1", host_ak, qd, sizeof(qd), NULL);
    json_object_del(host, "pcrs"); /* withheld from tenants, as the coordinator does */
    json_t *ev =
        json_pack("{s:s, s:o, s:i, s:i, s:s, s:s, s:o, s:o, s:{s:o, s:i, s:i, s:o}}", "format",
                  TC_VM_EVIDENCE_FORMAT, "nonce", hexj(nonce, sizeof(nonce)), "round", 7, "ts",
                  1700000000, "vm_state", "trusted", "host_state", "trusted", "vm", vm, "host",
                  host, "batch", "root", hexj(root, 32), "count", 5, "index", 2, "proof", proof);
    assert_non_null(ev);
    return ev;
}

static void expect(json_t *ev, const char *check)
{
    struct tc_vm_evidence_info info;
    struct tc_reason why;
    int rc = tc_vm_evidence_verify(ev, NULL, 0, NULL, 0, &info, &why);
    if (rc == 0 || strcmp(why.check, check) != 0)
        fail_msg("expected %s, got %d %s: %s", check, rc, why.check, why.detail);
    assert_string_equal(info.vm_id, "");
    json_decref(ev);
}

/* Replaces one byte of a base64 member (decoded) with b ^ 1. */
static void flip(json_t *o, const char *key, size_t at)
{
    const char *s = json_string_value(json_object_get(o, key));
    uint8_t *d = NULL;
    size_t n = 0;
    assert_int_equal(tc_b64_decode(s, strlen(s), 4096, &d, &n), 0);
    d[at < n ? at : n - 1] ^= 1;
    json_object_set_new(o, key, b64j(d, n));
    free(d);
}

/* TC_VMEV_CORPUS_DIR=DIR: writes genuine evidence and a few broken variants there (seeds for
 * fuzz/vm_evidence.c). */
static void write_corpus(json_t *ev)
{
    const char *dir = getenv("TC_VMEV_CORPUS_DIR");
    if (!dir)
        return;
    static int n;
    char path[512];
    for (int variant = 0; variant < 4; variant++) {
        json_t *c = json_deep_copy(ev);
        if (variant == 1)
            json_object_set_new(json_object_get(c, "batch"), "index", json_integer(4));
        if (variant == 2)
            json_object_del(json_object_get(c, "host"), "pcrs");
        if (variant == 3)
            json_array_clear(json_object_get(json_object_get(c, "batch"), "proof"));
        snprintf(path, sizeof(path), "%s/evidence-%d-%d-%d.json", dir, (int)getpid(), n, variant);
        json_dump_file(c, path, JSON_COMPACT);
        json_decref(c);
    }
    n++;
}

static void genuine(void **state)
{
    (void)state;
    struct tc_vm_evidence_info info;
    struct tc_reason why;
    json_t *ev = build();
    write_corpus(ev);
    int rc = tc_vm_evidence_verify(ev, NULL, 0, NULL, 0, &info, &why);
    if (rc)
        fail_msg("%s: %s", why.check, why.detail);
    assert_string_equal(info.vm_id, "vm-2");
    assert_string_equal(info.host_id, "host-1");
    assert_int_equal(info.round, 7);
    assert_int_equal(info.vm_quote.clock, 5000);
    /* Pinned to the right AKs: still fine; to another: refused. */
    size_t vl, hl;
    uint8_t vname[TC_QUOTE_MAX_NAME], hname[TC_QUOTE_MAX_NAME];
    memcpy(vname, info.vm_ak_name, vl = info.vm_ak_name_len);
    memcpy(hname, info.host_ak_name, hl = info.host_ak_name_len);
    assert_int_equal(tc_vm_evidence_verify(ev, vname, vl, hname, hl, &info, &why), 0);
    assert_int_not_equal(tc_vm_evidence_verify(ev, hname, hl, NULL, 0, &info, &why), 0);
    assert_string_equal(why.check, "evidence.vm_ak");
    assert_int_not_equal(tc_vm_evidence_verify(ev, NULL, 0, vname, vl, &info, &why), 0);
    assert_string_equal(why.check, "evidence.host_ak");
    /* With the host's PCR values given, they are checked against its quote too. */
    json_object_set_new(json_object_get(ev, "host"), "pcrs", tc_pcrs_to_json(&pcrs));
    assert_int_equal(tc_vm_evidence_verify(ev, NULL, 0, NULL, 0, &info, &why), 0);
    json_object_set_new(
        json_object_get(json_object_get(json_object_get(ev, "host"), "pcrs"), "sha256"), "0",
        json_string("ab00000000000000000000000000000000000000000000000000000000000000"));
    assert_int_not_equal(tc_vm_evidence_verify(ev, NULL, 0, NULL, 0, &info, &why), 0);
    assert_string_equal(why.check, "quote.pcr_digest");
    json_decref(ev);
}

static void tampered(void **state)
{
    (void)state;
    json_t *ev;
    /* Another nonce: the host quote (over the root and nonce) no longer matches. */
    ev = build();
    json_object_set_new(ev, "nonce", json_string("00112233"));
    expect(ev, "quote.nonce");
    /* The VM quote or signature changed: its leaf is not in the tree. */
    ev = build();
    flip(json_object_get(ev, "vm"), "attest", 40);
    expect(ev, "batch.proof");
    ev = build();
    flip(json_object_get(ev, "vm"), "signature", 20);
    expect(ev, "batch.proof");
    /* A PCR value the VM claims that its quote does not cover. */
    ev = build();
    json_object_set_new(
        json_object_get(json_object_get(json_object_get(ev, "vm"), "pcrs"), "sha256"), "10",
        json_string("ff00000000000000000000000000000000000000000000000000000000000000"));
    expect(ev, "quote.pcr_digest");
    /* Proof, index, root. */
    ev = build();
    json_array_set_new(
        json_object_get(json_object_get(ev, "batch"), "proof"), 0,
        json_string("0000000000000000000000000000000000000000000000000000000000000000"));
    expect(ev, "batch.proof");
    ev = build();
    json_object_set_new(json_object_get(ev, "batch"), "index", json_integer(3));
    expect(ev, "batch.proof");
    ev = build();
    json_object_set_new(
        json_object_get(ev, "batch"), "root",
        json_string("1111111111111111111111111111111111111111111111111111111111111111"));
    expect(ev, "batch.proof");
    /* The host quote of another batch (built again: other signatures, other root). */
    ev = build();
    json_t *other = build();
    json_object_set(ev, "host", json_object_get(other, "host"));
    json_decref(other);
    expect(ev, "quote.nonce");
    /* The VM's AK swapped for another: the quote's signature fails. */
    ev = build();
    json_object_set(json_object_get(ev, "vm"), "ak_pub",
                    json_object_get(json_object_get(ev, "host"), "ak_pub"));
    expect(ev, "quote.signature");
}

static void malformed(void **state)
{
    (void)state;
    json_t *ev = build();
    json_object_set_new(ev, "format", json_string("v0"));
    expect(ev, "evidence.format");
    static const char *const top[] = {"nonce", "batch", "vm", "host"};
    for (size_t i = 0; i < 4; i++) {
        ev = build();
        json_object_del(ev, top[i]);
        expect(ev, "evidence.format");
    }
    static const char *const fields[] = {"id", "ak_pub", "attest", "signature", "pcrs"};
    for (size_t i = 0; i < 5; i++) {
        ev = build();
        json_object_set_new(json_object_get(ev, "vm"), fields[i], json_string("x=="));
        expect(ev, "evidence.format");
    }
    ev = build();
    json_object_set_new(json_object_get(ev, "vm"), "id", json_string("../etc"));
    expect(ev, "evidence.format");
    ev = build();
    json_object_set_new(json_object_get(ev, "batch"), "count", json_integer(5000));
    expect(ev, "evidence.format");
    ev = build();
    json_object_set_new(json_object_get(ev, "vm"), "ak_pub", json_string("AAAA"));
    expect(ev, "evidence.vm_ak");
    struct tc_vm_evidence_info info;
    struct tc_reason why;
    assert_int_not_equal(tc_vm_evidence_verify(NULL, NULL, 0, NULL, 0, &info, &why), 0);
}

static int setup(void **state)
{
    (void)state;
    if (tc_softak_new(TC_KEY_ECC_P256, &vm_ak) || tc_softak_new(TC_KEY_ECC_P256, &host_ak) ||
        tc_softak_new(TC_KEY_ECC_P256, &other_ak))
        return -1;
    tc_pcrs_init(&pcrs);
    uint8_t v[32];
    for (unsigned i = 0; i <= 10; i++) {
        memset(v, (int)i, sizeof(v));
        tc_pcrs_set(&pcrs, tc_hash_by_name("sha256"), i, v);
    }
    return tc_pcrs_parse_selection("sha256:0,1,2,3,4,5,6,7,8,9,10", &sel) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tc_softak_free(vm_ak);
    tc_softak_free(host_ak);
    tc_softak_free(other_ak);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(genuine),
        cmocka_unit_test(tampered),
        cmocka_unit_test(malformed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
