/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the coordinator sends the agent is untrusted until proven otherwise (a compromised or
 * buggy coordinator must not crash a node): every field is type-checked and bounded here,
 * before anything touches the TPM.
 */
#define LOGMODULE "agent"
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "agent.h"
#include "trustcloud/batch.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"

/* jansson's own nesting limit is 2048; requests are flat, so refuse anything deep early. */
static int load_object(const uint8_t *body, size_t len, json_t **out, struct tc_reason *why)
{
    json_error_t jerr;
    *out = NULL;
    if (len > AGENT_MAX_REQUEST)
        return tc_fail(why, TC_ERR_TOO_LARGE, "request.body", -1, "body above %u bytes",
                       AGENT_MAX_REQUEST);
    json_t *j = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (j == NULL)
        return tc_fail(why, TC_ERR_FORMAT, "request.json", -1, "not JSON: %s", jerr.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return tc_fail(why, TC_ERR_FORMAT, "request.json", -1, "not a JSON object");
    }
    *out = j;
    return 0;
}

static bool selection_chars_ok(const char *s)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == ':' || *s == ',' ||
              *s == '+' || *s == '_' || *s == '-'))
            return false;
    return true;
}

/* A PCR selection string ("sha256:0,1,2"): bounded, known banks, at least one PCR. */
static int parse_selection(const json_t *v, const char *check, struct tc_pcr_set *sel,
                           struct tc_reason *why)
{
    const char *field = check + strlen("request.");
    int rc;

    tc_pcrs_init(sel);
    if (!json_is_string(v))
        return tc_fail(why, TC_ERR_FORMAT, check, -1, "%s: string required (\"sha256:0,1,2\")",
                       field);
    const char *spec = json_string_value(v);
    if (json_string_length(v) > AGENT_MAX_SELECTION_TEXT || strlen(spec) != json_string_length(v) ||
        !selection_chars_ok(spec))
        return tc_fail(why, TC_ERR_FORMAT, check, -1, "%s: too long or unexpected characters",
                       field);
    if ((rc = tc_pcrs_parse_selection(spec, sel)) != 0) {
        tc_pcrs_init(sel);
        return tc_fail(why, rc == TC_ERR_UNSUPPORTED ? TC_ERR_UNSUPPORTED : TC_ERR_FORMAT, check,
                       -1, "%s: %s", field,
                       rc == TC_ERR_UNSUPPORTED ? "unknown bank" : "malformed (PCRs are 0..23)");
    }
    bool any = false;
    for (size_t i = 0; i < sel->nbanks; i++)
        any = any || sel->bank[i].mask != 0;
    if (!any) {
        tc_pcrs_init(sel);
        return tc_fail(why, TC_ERR_FORMAT, check, -1, "%s: empty", field);
    }
    return 0;
}

static int parse_ima_from(const json_t *v, const char *check, long entry, uint64_t *out,
                          struct tc_reason *why)
{
    *out = 0;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 ||
        (unsigned long long)json_integer_value(v) > AGENT_MAX_IMA_FROM)
        return tc_fail(why, TC_ERR_FORMAT, check, entry, "ima_from: integer 0..%llu required",
                       AGENT_MAX_IMA_FROM);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int parse_want_eventlog(const json_t *v, const char *check, long entry, bool *out,
                               struct tc_reason *why)
{
    *out = false;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return tc_fail(why, TC_ERR_FORMAT, check, entry, "want_eventlog: boolean required");
    *out = json_is_true(v);
    return 0;
}

static int cmp_vm_id(const void *a, const void *b)
{
    return strcmp((*(const struct agent_vm_request *const *)a)->id,
                  (*(const struct agent_vm_request *const *)b)->id);
}

/* "vms": [{"id", "ima_from"?, "want_eventlog"?}, ...], at most AGENT_MAX_BATCH_VMS, ids valid
 * and unique. Members a later protocol version may add are ignored, as at the top level. */
static int parse_vms(const json_t *v, struct agent_quote_request *req, struct tc_reason *why)
{
    struct agent_vm_request **sorted = NULL;
    int rc;

    if (!json_is_array(v))
        return tc_fail(why, TC_ERR_FORMAT, "request.vms", -1, "vms: array required");
    size_t n = json_array_size(v);
    if (n > AGENT_MAX_BATCH_VMS)
        return tc_fail(why, TC_ERR_TOO_LARGE, "request.vms", -1, "vms: at most %d VMs",
                       AGENT_MAX_BATCH_VMS);
    req->has_vms = true;
    if (n == 0)
        return 0;
    if ((req->vms = calloc(n, sizeof(*req->vms))) == NULL ||
        (sorted = malloc(n * sizeof(*sorted))) == NULL) {
        rc = tc_fail(why, TC_ERR_ALLOC, "request.vms", -1, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(v, i), *id = json_object_get(e, "id");
        struct agent_vm_request *vm = &req->vms[i];
        if (!json_is_object(e)) {
            rc =
                tc_fail(why, TC_ERR_FORMAT, "request.vms", (long)i, "vms[%zu]: object required", i);
            goto out;
        }
        if (!json_is_string(id) || json_string_length(id) >= sizeof(vm->id) ||
            strlen(json_string_value(id)) != json_string_length(id) ||
            !tc_batch_id_valid(json_string_value(id))) {
            rc = tc_fail(why, TC_ERR_FORMAT, "request.vms.id", (long)i,
                         "vms[%zu].id: 1 to 64 of [A-Za-z0-9._-] required", i);
            goto out;
        }
        memcpy(vm->id, json_string_value(id), json_string_length(id) + 1);
        if ((rc = parse_ima_from(json_object_get(e, "ima_from"), "request.vms.ima_from", (long)i,
                                 &vm->ima_from, why)) != 0 ||
            (rc = parse_want_eventlog(json_object_get(e, "want_eventlog"),
                                      "request.vms.want_eventlog", (long)i, &vm->want_eventlog,
                                      why)) != 0)
            goto out;
        sorted[i] = vm;
    }
    /* Each VM once: a repeated id would be quoted twice and give two leaves one name. */
    qsort(sorted, n, sizeof(*sorted), cmp_vm_id);
    for (size_t i = 1; i < n; i++)
        if (strcmp(sorted[i - 1]->id, sorted[i]->id) == 0) {
            rc = tc_fail(why, TC_ERR_FORMAT, "request.vms.id", (long)(sorted[i] - req->vms),
                         "vms: '%s' listed twice", sorted[i]->id);
            goto out;
        }
    req->nvms = n;
    rc = 0;
out:
    free(sorted);
    return rc;
}

int agent_quote_request_parse(const uint8_t *body, size_t len, struct agent_quote_request *req,
                              struct tc_reason *why)
{
    json_t *j = NULL, *v;
    int rc;

    memset(req, 0, sizeof(*req));
    tc_pcrs_init(&req->selection);
    tc_pcrs_init(&req->vm_selection);
    if ((rc = load_object(body, len, &j, why)) != 0)
        return rc;

    v = json_object_get(j, "nonce");
    if (!json_is_string(v)) {
        rc = tc_fail(why, TC_ERR_FORMAT, "request.nonce", -1, "nonce: hex string required");
        goto out;
    }
    size_t slen = json_string_length(v);
    if (slen == 0 || slen > 2 * AGENT_MAX_NONCE) {
        rc = tc_fail(why, TC_ERR_FORMAT, "request.nonce", -1, "nonce: 1 to %d bytes",
                     AGENT_MAX_NONCE);
        goto out;
    }
    if (tc_hex_decode(json_string_value(v), slen, req->nonce, sizeof(req->nonce),
                      &req->nonce_len) != 0) {
        rc = tc_fail(why, TC_ERR_FORMAT, "request.nonce", -1, "nonce: not hex");
        goto out;
    }

    if ((rc = parse_selection(json_object_get(j, "pcr_selection"), "request.pcr_selection",
                              &req->selection, why)) != 0)
        goto out;

    if ((rc = parse_ima_from(json_object_get(j, "ima_from"), "request.ima_from", -1, &req->ima_from,
                             why)) != 0 ||
        (rc = parse_want_eventlog(json_object_get(j, "want_eventlog"), "request.want_eventlog", -1,
                                  &req->want_eventlog, why)) != 0)
        goto out;

    v = json_object_get(j, "vms");
    if (v != NULL && !json_is_null(v) && (rc = parse_vms(v, req, why)) != 0)
        goto out;
    v = json_object_get(j, "vm_pcr_selection");
    if (v == NULL || json_is_null(v))
        req->vm_selection = req->selection;
    else if ((rc = parse_selection(v, "request.vm_pcr_selection", &req->vm_selection, why)) != 0)
        goto out;
    rc = 0;
out:
    json_decref(j);
    if (rc != 0)
        agent_quote_request_release(req);
    return rc;
}

void agent_quote_request_release(struct agent_quote_request *req)
{
    if (req == NULL)
        return;
    free(req->vms);
    memset(req, 0, sizeof(*req));
    tc_pcrs_init(&req->selection);
    tc_pcrs_init(&req->vm_selection);
}

static int copy_short_string(json_t *j, const char *key, char *out, size_t cap, bool required,
                             struct tc_reason *why)
{
    json_t *v = json_object_get(j, key);
    out[0] = 0;
    if (v == NULL || json_is_null(v)) {
        if (required)
            return tc_fail(why, TC_ERR_FORMAT, "request.notice", -1, "%s: required", key);
        return 0;
    }
    if (!json_is_string(v) || json_string_length(v) >= cap ||
        strlen(json_string_value(v)) != json_string_length(v))
        return tc_fail(why, TC_ERR_FORMAT, "request.notice", -1, "%s: string of at most %zu bytes",
                       key, cap - 1);
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

int agent_notice_parse(const uint8_t *body, size_t len, struct agent_notice *n,
                       struct tc_reason *why)
{
    json_t *j = NULL, *v;
    int rc;

    memset(n, 0, sizeof(*n));
    n->seq = -1;
    if ((rc = load_object(body, len, &j, why)) != 0)
        return rc;
    if ((rc = copy_short_string(j, "node_id", n->node_id, sizeof(n->node_id), true, why)) != 0 ||
        (rc = copy_short_string(j, "new_state", n->new_state, sizeof(n->new_state), true, why)) !=
            0 ||
        (rc = copy_short_string(j, "old_state", n->old_state, sizeof(n->old_state), false, why)) !=
            0)
        goto out;
    if (!agent_node_id_valid(n->node_id)) {
        rc = tc_fail(why, TC_ERR_FORMAT, "request.notice", -1, "node_id: not a node id");
        goto out;
    }
    v = json_object_get(j, "seq");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            rc = tc_fail(why, TC_ERR_FORMAT, "request.notice", -1, "seq: integer >= 0 required");
            goto out;
        }
        n->seq = json_integer_value(v);
    }
    v = json_object_get(j, "reason");
    if (json_is_object(v) && json_is_string(json_object_get(v, "check"))) {
        const char *c = json_string_value(json_object_get(v, "check"));
        /* Only for the log: truncation is fine, but keep it printable. */
        size_t k = 0;
        for (; c[k] && k + 1 < sizeof(n->check); k++)
            n->check[k] = (c[k] >= 0x20 && c[k] < 0x7f) ? c[k] : '?';
        n->check[k] = 0;
    }
    rc = 0;
out:
    json_decref(j);
    if (rc != 0) {
        memset(n, 0, sizeof(*n));
        n->seq = -1;
    }
    return rc;
}

int agent_b64_encode(const uint8_t *in, size_t len, char **out)
{
    *out = NULL;
    if (len > (size_t)(AGENT_MAX_ANSWER))
        return TC_ERR_TOO_LARGE;
    return tc_b64_encode(in, len, out);
}

int agent_b64_decode(const char *s, size_t slen, uint8_t *out, size_t cap, size_t *out_len)
{
    uint8_t *tmp = NULL;
    *out_len = 0;
    if (slen == 0)
        return 0; /* an empty field decodes to nothing */
    int rc = tc_b64_decode(s, slen, cap, &tmp, out_len);
    if (rc == 0)
        memcpy(out, tmp, *out_len);
    free(tmp);
    return rc;
}

static int put_b64(json_t *obj, const char *key, const uint8_t *data, size_t len)
{
    char *s = NULL;
    int rc = agent_b64_encode(data, len, &s);
    if (rc != 0)
        return rc;
    rc = json_object_set_new(obj, key, json_string(s)) == 0 ? 0 : TC_ERR_ALLOC;
    free(s);
    return rc;
}

int agent_quote_answer(const uint8_t *attest, size_t attest_len, const uint8_t *sig, size_t sig_len,
                       const struct tc_pcr_set *pcrs, const uint8_t *eventlog, size_t eventlog_len,
                       uint64_t ima_first, const uint8_t *ima_list, size_t ima_list_len,
                       json_t **out)
{
    json_t *a = json_object(), *ima = json_object(), *p = tc_pcrs_to_json(pcrs);
    int rc = TC_ERR_ALLOC;

    *out = NULL;
    if (a == NULL || ima == NULL || p == NULL)
        goto out;
    if ((rc = put_b64(a, "attest", attest, attest_len)) != 0 ||
        (rc = put_b64(a, "signature", sig, sig_len)) != 0)
        goto out;
    rc = TC_ERR_ALLOC;
    if (json_object_set(a, "pcrs", p) != 0)
        goto out;
    if (eventlog != NULL && (rc = put_b64(a, "eventlog", eventlog, eventlog_len)) != 0)
        goto out;
    rc = TC_ERR_ALLOC;
    if (json_object_set_new(ima, "first", json_integer((json_int_t)ima_first)) != 0)
        goto out;
    if ((rc = put_b64(ima, "list", ima_list ? ima_list : (const uint8_t *)"", ima_list_len)) != 0)
        goto out;
    rc = TC_ERR_ALLOC;
    if (json_object_set(a, "ima", ima) != 0)
        goto out;
    *out = a;
    a = NULL;
    rc = 0;
out:
    json_decref(a);
    json_decref(ima);
    json_decref(p);
    return rc;
}

json_t *agent_error_json(const struct tc_reason *why)
{
    return json_pack("{s:s, s:s}", "error", why->detail[0] ? why->detail : tc_strerror(why->code),
                     "check", why->check[0] ? why->check : "agent");
}

/* ---- batch answers ------------------------------------------------------------------------ */

void agent_vm_evidence_init(struct agent_vm_evidence *ev, const char *id)
{
    memset(ev, 0, sizeof(*ev));
    snprintf(ev->id, sizeof(ev->id), "%s", id);
    tc_pcrs_init(&ev->quote.pcrs);
    tc_buf_init(&ev->ima, AGENT_MAX_ANSWER);
}

void agent_vm_evidence_release(struct agent_vm_evidence *ev)
{
    if (ev == NULL)
        return;
    tc_tpm_quote_release(&ev->quote);
    tc_buf_release(&ev->ima);
    free(ev->eventlog);
    memset(ev, 0, sizeof(*ev));
}

int agent_batch_tree(const struct agent_vm_evidence *ev, size_t n, struct tc_batch_tree **tree)
{
    uint8_t(*leaves)[32] = NULL;
    size_t count = 0;
    int rc;

    *tree = NULL;
    for (size_t i = 0; i < n; i++)
        count += ev[i].rc == 0;
    if (count == 0)
        return 0;
    if ((leaves = malloc(count * sizeof(*leaves))) == NULL)
        return TC_ERR_ALLOC;
    count = 0;
    for (size_t i = 0; i < n; i++) {
        if (ev[i].rc != 0)
            continue;
        if ((rc = tc_batch_leaf(ev[i].id, ev[i].quote.attest, ev[i].quote.attest_len,
                                ev[i].quote.sig, ev[i].quote.sig_len, leaves[count++])) != 0)
            goto out;
    }
    rc = tc_batch_tree_build((const uint8_t(*)[32])leaves, count, tree);
out:
    free(leaves);
    return rc;
}

static int vm_error_entry(const struct agent_vm_evidence *ev, json_t **out)
{
    *out = json_pack("{s:s, s:s, s:s}", "id", ev->id, "error",
                     ev->error[0] ? ev->error : tc_strerror(ev->rc), "check",
                     ev->check[0] ? ev->check : "vm.error");
    return *out ? 0 : TC_ERR_ALLOC;
}

static int vm_quote_entry(const struct agent_vm_evidence *ev, size_t index,
                          const struct tc_batch_tree *tree, json_t **out)
{
    json_t *e = NULL, *proof = NULL;
    int rc;

    *out = NULL;
    /* The same members as the host's own answer, plus id, index and proof. */
    if ((rc = agent_quote_answer(ev->quote.attest, ev->quote.attest_len, ev->quote.sig,
                                 ev->quote.sig_len, &ev->quote.pcrs, ev->eventlog, ev->eventlog_len,
                                 ev->ima_first, ev->ima.data, ev->ima.len, &e)) != 0 ||
        (rc = tc_batch_tree_proof_json(tree, index, &proof)) != 0)
        goto out;
    rc = TC_ERR_ALLOC;
    if (json_object_set_new(e, "id", json_string(ev->id)) != 0 ||
        json_object_set_new(e, "index", json_integer((json_int_t)index)) != 0 ||
        json_object_set(e, "proof", proof) != 0)
        goto out;
    *out = e;
    e = NULL;
    rc = 0;
out:
    json_decref(e);
    json_decref(proof);
    return rc;
}

int agent_batch_answer(json_t *answer, const struct agent_vm_evidence *ev, size_t n,
                       const struct tc_batch_tree *tree)
{
    json_t *vms = json_array(), *batch = NULL, *e = NULL;
    size_t index = 0;
    int rc = TC_ERR_ALLOC;

    if (vms == NULL)
        goto out;
    for (size_t i = 0; i < n; i++) {
        if (ev[i].rc == 0 && tree == NULL) {
            rc = TC_ERR_INVALID_ARG; /* a quoted VM needs the tree it is a leaf of */
            goto out;
        }
        if ((rc = ev[i].rc == 0 ? vm_quote_entry(&ev[i], index++, tree, &e)
                                : vm_error_entry(&ev[i], &e)) != 0)
            goto out;
        rc = TC_ERR_ALLOC;
        if (json_array_append_new(vms, e) != 0) {
            e = NULL;
            goto out;
        }
        e = NULL;
    }
    if (tree != NULL && index != tc_batch_tree_count(tree)) {
        rc = TC_ERR_INVALID_ARG;
        goto out;
    }
    if (tree != NULL && ((rc = tc_batch_tree_to_json(tree, &batch)) != 0 ||
                         (rc = json_object_set(answer, "batch", batch) != 0 ? TC_ERR_ALLOC : 0)))
        goto out;
    rc = json_object_set(answer, "vms", vms) == 0 ? 0 : TC_ERR_ALLOC;
out:
    json_decref(vms);
    json_decref(batch);
    return rc;
}
