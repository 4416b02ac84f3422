/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Offline check of a VM's evidence (trustcloud/vm_evidence.h): two quotes and an inclusion proof.
 */
#define LOGMODULE "evidence"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "trustcloud/batch.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"
#include "trustcloud/pcrs.h"
#include "trustcloud/vm_evidence.h"

#define EV_MAX_KEY 4096 /* marshaled TPM2B_PUBLIC */

/* One side (vm or host): its AK, quote and PCR values, decoded. */
struct side {
    const char *what; /* "vm" or "host", for messages */
    const char *id;
    struct tc_ak *ak;
    uint8_t *attest, *sig;
    size_t attest_len, sig_len;
    struct tc_pcr_set pcrs;
    bool has_pcrs; /* the host's PCR values are withheld from tenants */
};

static void side_release(struct side *s)
{
    tc_ak_free(s->ak);
    free(s->attest);
    free(s->sig);
    memset(s, 0, sizeof(*s));
}

static int b64_field(const json_t *o, const char *key, size_t max, uint8_t **out, size_t *len,
                     const char *what, struct tc_reason *why)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_string(v) ||
        tc_b64_decode(json_string_value(v), json_string_length(v), max, out, len) != 0)
        return tc_fail(why, TC_ERR_FORMAT, "evidence.format", -1,
                       "%s.%s is not canonical base64 of at most %zu bytes", what, key, max);
    return 0;
}

static int side_parse(const json_t *o, const char *what, size_t id_max, struct side *s,
                      struct tc_reason *why)
{
    uint8_t *akpub = NULL;
    size_t akpub_len = 0;
    struct tc_reason akwhy;
    int rc;
    memset(s, 0, sizeof(*s));
    s->what = what;
    const json_t *jid = json_object_get(o, "id");
    if (!json_is_object(o) || !json_is_string(jid) || json_string_length(jid) == 0 ||
        json_string_length(jid) > id_max ||
        strlen(json_string_value(jid)) != json_string_length(jid))
        return tc_fail(why, TC_ERR_FORMAT, "evidence.format", -1, "%s: no valid id", what);
    s->id = json_string_value(jid);
    if ((rc = b64_field(o, "ak_pub", EV_MAX_KEY, &akpub, &akpub_len, what, why)) != 0 ||
        (rc = b64_field(o, "attest", TC_QUOTE_MAX_ATTEST, &s->attest, &s->attest_len, what, why)) !=
            0 ||
        (rc = b64_field(o, "signature", TC_QUOTE_MAX_SIG, &s->sig, &s->sig_len, what, why)) != 0)
        goto out;
    const json_t *jp = json_object_get(o, "pcrs");
    s->has_pcrs = jp != NULL;
    if ((jp || strcmp(what, "vm") == 0) &&
        (!json_is_object(jp) || tc_pcrs_from_json(jp, &s->pcrs) != 0)) {
        rc = tc_fail(why, TC_ERR_FORMAT, "evidence.format", -1, "%s.pcrs is not a PCR set", what);
        goto out;
    }
    if ((rc = tc_ak_from_tpm2b_public(akpub, akpub_len, &s->ak, &akwhy)) != 0)
        rc = tc_fail(why, rc, strcmp(what, "vm") == 0 ? "evidence.vm_ak" : "evidence.host_ak", -1,
                     "%s AK: %s", what, akwhy.detail);
out:
    free(akpub);
    return rc;
}

/* The AK must be the one the caller pinned (its TPM name), when it pinned one. */
static int side_pin(const struct side *s, const uint8_t *pin, size_t pin_len, uint8_t *name_out,
                    size_t *name_len_out, struct tc_reason *why)
{
    const uint8_t *name;
    size_t len;
    const char *check = strcmp(s->what, "vm") == 0 ? "evidence.vm_ak" : "evidence.host_ak";
    if (tc_ak_name(s->ak, &name, &len) != 0 || len > TC_QUOTE_MAX_NAME)
        return tc_fail(why, TC_ERR_KEY, check, -1, "%s AK has no TPM name", s->what);
    memcpy(name_out, name, len);
    *name_len_out = len;
    if (pin && (pin_len != len || CRYPTO_memcmp(pin, name, len) != 0))
        return tc_fail(why, TC_ERR_MISMATCH, check, -1, "%s AK is not the pinned one", s->what);
    return 0;
}

static int side_quote(const struct side *s, const uint8_t *nonce, size_t nonce_len,
                      struct tc_quote_info *info, struct tc_reason *why)
{
    struct tc_quote_expect ex = {
        .nonce = nonce, .nonce_len = nonce_len, .pcr_values_withheld = !s->has_pcrs};
    int rc = tc_quote_verify(s->ak, s->attest, s->attest_len, s->sig, s->sig_len,
                             s->has_pcrs ? &s->pcrs : NULL, &ex, info, why);
    if (rc) {
        /* Say which quote failed, in front of the check's own detail. */
        char prefix[96];
        snprintf(prefix, sizeof(prefix), "%s quote (%.64s): ", s->what, s->id);
        size_t pl = strlen(prefix), dl = strnlen(why->detail, sizeof(why->detail));
        if (pl + dl >= sizeof(why->detail))
            dl = sizeof(why->detail) - 1 - pl;
        memmove(why->detail + pl, why->detail, dl);
        memcpy(why->detail, prefix, pl);
        why->detail[pl + dl] = '\0';
    }
    return rc;
}

int tc_vm_evidence_verify(const json_t *ev, const uint8_t *vm_ak_name, size_t vm_ak_name_len,
                          const uint8_t *host_ak_name, size_t host_ak_name_len,
                          struct tc_vm_evidence_info *info, struct tc_reason *why)
{
    struct side vm, host;
    uint8_t nonce[TC_QUOTE_MAX_NONCE], root[32], qd[32], leaf[32], (*proof)[32] = NULL;
    size_t nonce_len = 0, nproof = 0;
    int rc;
    memset(&vm, 0, sizeof(vm));
    memset(&host, 0, sizeof(host));
    memset(info, 0, sizeof(*info));
    tc_reason_clear(why);
    const json_t *fmt = json_object_get(ev, "format"), *jn = json_object_get(ev, "nonce");
    const json_t *jb = json_object_get(ev, "batch");
    const json_t *jc = json_object_get(jb, "count"), *ji = json_object_get(jb, "index");
    const json_t *jr = json_object_get(jb, "root"), *jp = json_object_get(jb, "proof");
    if (!json_is_object(ev) || !json_is_string(fmt) ||
        strcmp(json_string_value(fmt), TC_VM_EVIDENCE_FORMAT) != 0) {
        rc = tc_fail(why, TC_ERR_UNSUPPORTED, "evidence.format", -1, "not %s evidence",
                     TC_VM_EVIDENCE_FORMAT);
        goto out;
    }
    if (!json_is_string(jn) || json_string_length(jn) > 2 * 64 ||
        tc_hex_decode(json_string_value(jn), json_string_length(jn), nonce, sizeof(nonce),
                      &nonce_len) != 0 ||
        nonce_len == 0) {
        rc = tc_fail(why, TC_ERR_FORMAT, "evidence.format", -1, "nonce: 1..64 bytes of hex");
        goto out;
    }
    size_t got = 0;
    if (!json_is_object(jb) || !json_is_integer(jc) || !json_is_integer(ji) ||
        json_integer_value(jc) < 1 || json_integer_value(jc) > TC_BATCH_MAX_VMS ||
        json_integer_value(ji) < 0 || json_integer_value(ji) >= json_integer_value(jc) ||
        !json_is_string(jr) || json_string_length(jr) != 64 ||
        tc_hex_decode(json_string_value(jr), 64, root, sizeof(root), &got) != 0 || got != 32 ||
        !json_is_array(jp) || json_array_size(jp) > TC_BATCH_MAX_PROOF) {
        rc = tc_fail(why, TC_ERR_FORMAT, "evidence.format", -1,
                     "batch: {root: 64 hex, count: 1..%d, index < count, proof: [hex]}",
                     TC_BATCH_MAX_VMS);
        goto out;
    }
    nproof = json_array_size(jp);
    if (nproof && !(proof = calloc(nproof, sizeof(*proof)))) {
        rc = TC_ERR_ALLOC;
        goto out;
    }
    for (size_t i = 0; i < nproof; i++) {
        const json_t *h = json_array_get(jp, i);
        if (!json_is_string(h) || json_string_length(h) != 64 ||
            tc_hex_decode(json_string_value(h), 64, proof[i], 32, &got) != 0 || got != 32) {
            rc = tc_fail(why, TC_ERR_FORMAT, "evidence.format", (long)i,
                         "proof entries are 64 hex characters");
            goto out;
        }
    }
    if ((rc = side_parse(json_object_get(ev, "vm"), "vm", TC_BATCH_ID_MAX, &vm, why)) != 0 ||
        (rc = side_parse(json_object_get(ev, "host"), "host", 128, &host, why)) != 0)
        goto out;
    if (!tc_batch_id_valid(vm.id)) {
        rc = tc_fail(why, TC_ERR_FORMAT, "evidence.format", -1, "vm.id is not a valid VM id");
        goto out;
    }
    if ((rc = side_pin(&vm, vm_ak_name, vm_ak_name_len, info->vm_ak_name, &info->vm_ak_name_len,
                       why)) != 0 ||
        (rc = side_pin(&host, host_ak_name, host_ak_name_len, info->host_ak_name,
                       &info->host_ak_name_len, why)) != 0)
        goto out;
    /* The VM's quote is in the set the host TPM vouched for... */
    if ((rc = tc_batch_leaf(vm.id, vm.attest, vm.attest_len, vm.sig, vm.sig_len, leaf)) != 0 ||
        (rc = tc_batch_proof_verify(leaf, (size_t)json_integer_value(ji),
                                    (size_t)json_integer_value(jc), (const uint8_t(*)[32])proof,
                                    nproof, root, why)) != 0)
        goto out;
    /* ... the host TPM vouched for it with this nonce ... */
    if ((rc = tc_batch_qualifying_data(nonce, nonce_len, root, qd)) != 0 ||
        (rc = side_quote(&host, qd, sizeof(qd), &info->host_quote, why)) != 0)
        goto out;
    /* ... and the vTPM signed these PCR values for the same nonce. */
    if ((rc = side_quote(&vm, nonce, nonce_len, &info->vm_quote, why)) != 0)
        goto out;
    snprintf(info->vm_id, sizeof(info->vm_id), "%s", vm.id);
    snprintf(info->host_id, sizeof(info->host_id), "%s", host.id);
    const json_t *r = json_object_get(ev, "round"), *t = json_object_get(ev, "ts");
    info->round = json_is_integer(r) ? (long long)json_integer_value(r) : 0;
    info->ts = json_is_integer(t) ? (long long)json_integer_value(t) : 0;
out:
    free(proof);
    side_release(&vm);
    side_release(&host);
    if (rc) {
        struct tc_reason keep = *why;
        memset(info, 0, sizeof(*info));
        *why = keep;
    }
    return rc;
}
