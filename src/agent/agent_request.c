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

int agent_quote_request_parse(const uint8_t *body, size_t len, struct agent_quote_request *req,
                              struct tc_reason *why)
{
    json_t *j = NULL, *v;
    int rc;

    memset(req, 0, sizeof(*req));
    tc_pcrs_init(&req->selection);
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

    v = json_object_get(j, "pcr_selection");
    if (!json_is_string(v)) {
        rc = tc_fail(why, TC_ERR_FORMAT, "request.pcr_selection", -1,
                     "pcr_selection: string required (\"sha256:0,1,2\")");
        goto out;
    }
    const char *spec = json_string_value(v);
    if (json_string_length(v) > AGENT_MAX_SELECTION_TEXT || strlen(spec) != json_string_length(v) ||
        !selection_chars_ok(spec)) {
        rc = tc_fail(why, TC_ERR_FORMAT, "request.pcr_selection", -1,
                     "pcr_selection: too long or unexpected characters");
        goto out;
    }
    if ((rc = tc_pcrs_parse_selection(spec, &req->selection)) != 0) {
        rc = tc_fail(why, rc == TC_ERR_UNSUPPORTED ? TC_ERR_UNSUPPORTED : TC_ERR_FORMAT,
                     "request.pcr_selection", -1, "pcr_selection: %s",
                     rc == TC_ERR_UNSUPPORTED ? "unknown bank" : "malformed (PCRs are 0..23)");
        goto out;
    }
    bool any = false;
    for (size_t i = 0; i < req->selection.nbanks; i++)
        any = any || req->selection.bank[i].mask != 0;
    if (!any) {
        rc = tc_fail(why, TC_ERR_FORMAT, "request.pcr_selection", -1, "pcr_selection: empty");
        goto out;
    }

    v = json_object_get(j, "ima_from");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            (unsigned long long)json_integer_value(v) > AGENT_MAX_IMA_FROM) {
            rc = tc_fail(why, TC_ERR_FORMAT, "request.ima_from", -1,
                         "ima_from: integer 0..%llu required", AGENT_MAX_IMA_FROM);
            goto out;
        }
        req->ima_from = (uint64_t)json_integer_value(v);
    }

    v = json_object_get(j, "want_eventlog");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_boolean(v)) {
            rc = tc_fail(why, TC_ERR_FORMAT, "request.want_eventlog", -1,
                         "want_eventlog: boolean required");
            goto out;
        }
        req->want_eventlog = json_is_true(v);
    }
    rc = 0;
out:
    json_decref(j);
    if (rc != 0) {
        memset(req, 0, sizeof(*req));
        tc_pcrs_init(&req->selection);
    }
    return rc;
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
    size_t cap = 4 * ((len + 2) / 3) + 1;
    char *s = malloc(cap);
    if (s == NULL)
        return TC_ERR_ALLOC;
    int n = EVP_EncodeBlock((unsigned char *)s, in, (int)len);
    if (n < 0 || (size_t)n >= cap) {
        free(s);
        return TC_ERR_CRYPTO;
    }
    s[n] = 0;
    *out = s;
    return 0;
}

static bool b64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

int agent_b64_decode(const char *s, size_t slen, uint8_t *out, size_t cap, size_t *out_len)
{
    *out_len = 0;
    if (slen % 4 != 0)
        return TC_ERR_FORMAT;
    size_t pad = 0;
    if (slen >= 1 && s[slen - 1] == '=')
        pad++;
    if (slen >= 2 && s[slen - 2] == '=')
        pad++;
    for (size_t i = 0; i < slen - pad; i++)
        if (!b64_char(s[i]))
            return TC_ERR_FORMAT;
    size_t n = slen / 4 * 3 - pad;
    if (n > cap)
        return TC_ERR_TOO_LARGE;
    if (slen == 0)
        return 0;
    /* EVP_DecodeBlock writes whole groups of 3 (padding included): decode into scratch. */
    uint8_t *tmp = malloc(slen / 4 * 3);
    if (tmp == NULL)
        return TC_ERR_ALLOC;
    int r = EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)slen);
    if (r < 0 || (size_t)r != slen / 4 * 3) {
        free(tmp);
        return TC_ERR_FORMAT;
    }
    memcpy(out, tmp, n);
    free(tmp);
    *out_len = n;
    return 0;
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
