/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The coordinator's HTTPS API (docs/protocol.md) and the daemon's lifecycle.
 *
 * Every handler validates its input before touching the store, answers
 * errors as {"error", "check"}, and holds coord.lock for its whole (short)
 * run: the store is single-threaded and shared with the engine.
 * Authorization is by certificate CN: "operator:*" for operator routes,
 * "tenant:*" for its own VMs, "node:*" may only follow (its own) events,
 * anonymous callers may only enroll.
 */
#define LOGMODULE "api"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "coordinator/coord.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"
#include "trustcloud/mb_policy.h"
#include "trustcloud/pcrs.h"
#include "trustcloud/runtime_policy.h"

#define HISTORY_DEFAULT 100
#define HISTORY_MAX 1000
#define EVENTS_MAX 1000
#define WAIT_MAX_S 60
#define SUB_SECRET_MIN 16

void coord_reply_error(struct tc_http_response *resp, unsigned status, const char *check,
                       const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    json_t *j = json_pack("{s:s, s:s}", "error", text, "check", check);
    if (!j || tc_http_response_json(resp, status, j) != 0)
        tc_http_response_error(resp, status, "%s", text);
    json_decref(j);
}

static bool is_operator(const struct tc_http_request *req)
{
    return req->peer && strncmp(req->peer->cn, "operator:", 9) == 0 && req->peer->cn[9];
}

bool coord_peer_operator(const struct tc_http_request *req)
{
    return is_operator(req);
}

const char *coord_peer_tenant(const struct tc_http_request *req)
{
    if (!req->peer || strncmp(req->peer->cn, "tenant:", 7) != 0)
        return NULL;
    const char *t = req->peer->cn + 7;
    return coord_valid_node_id(t, strlen(t)) ? t : NULL;
}

static bool is_node(const struct tc_http_request *req)
{
    return req->peer && strncmp(req->peer->cn, "node:", 5) == 0 && req->peer->cn[5];
}

/*
 * A node certificate is only as good as the node's enrollment: the node must still be in the
 * store and its key must be the one pinned at enrollment. A deleted node's certificate (still
 * valid by date and chain) is refused on every request, also on a connection opened before the
 * deletion; the store is the persistent revocation list. Takes c->lock.
 */
static bool is_current_node(struct coord *c, const struct tc_http_request *req)
{
    if (!is_node(req))
        return false;
    struct tc_store_node n;
    memset(&n, 0, sizeof(n));
    pthread_mutex_lock(&c->lock);
    int rc = tc_store_node_get(c->store, req->peer->cn + 5, &n);
    pthread_mutex_unlock(&c->lock);
    bool ok = rc == 0 && strlen(n.tls_cert_fp) == 64 &&
              strcasecmp(n.tls_cert_fp, req->peer->spki_hex) == 0;
    if (!ok)
        LOG_WARN("%s: refused the certificate of %s: %s", req->remote_addr, req->peer->cn,
                 rc == TC_ERR_NOT_FOUND ? "no such node (deleted?)"
                 : rc                   ? "store error"
                                        : "not the key enrolled for that node");
    tc_store_node_release(&n);
    return ok;
}

/* Refuses non-operators; true when the handler may go on. */
static bool require_operator(const struct tc_http_request *req, struct tc_http_response *resp)
{
    if (is_operator(req))
        return true;
    coord_reply_error(resp, 403, "auth.operator", "this route needs an operator certificate");
    return false;
}

static bool body_cap(struct coord *c, const struct tc_http_request *req,
                     struct tc_http_response *resp)
{
    if (req->body_len <= (size_t)c->cfg->max_body)
        return true;
    coord_reply_error(resp, 413, "request.size", "body of %zu bytes exceeds %lld", req->body_len,
                      c->cfg->max_body);
    return false;
}

static json_t *parse_body(struct coord *c, const struct tc_http_request *req,
                          struct tc_http_response *resp, size_t max)
{
    struct tc_reason why;
    json_t *j = coord_json_parse(req->body, req->body_len, max, &why);
    if (!j)
        coord_reply_error(resp, why.code == TC_ERR_TOO_LARGE ? 413 : 400, why.check, "%s",
                          why.detail);
    return j;
}

static void reply_json(struct tc_http_response *resp, unsigned status, json_t *j)
{
    if (!j) {
        coord_reply_error(resp, 500, "internal", "out of memory");
        return;
    }
    tc_http_response_json(resp, status, j);
    json_decref(j);
}

static void reply_store_error(struct tc_http_response *resp, int rc, const char *what)
{
    unsigned st = rc == TC_ERR_NOT_FOUND                               ? 404
                  : rc == TC_ERR_MISMATCH                              ? 409
                  : rc == TC_ERR_TOO_LARGE || rc == TC_ERR_INVALID_ARG ? 400
                                                                       : 500;
    coord_reply_error(resp, st, rc == TC_ERR_NOT_FOUND ? "not_found" : "store", "%s: %s", what,
                      tc_strerror(rc));
}

/* Non-negative decimal integer of at most 18 digits. */
static bool parse_uint(const char *s, long long max, long long *out)
{
    if (!s || !*s || strlen(s) > 18)
        return false;
    long long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (*p - '0');
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

/* ---- nodes --------------------------------------------------------------------------------- */

json_t *coord_node_json(struct coord *c, const struct tc_store_node *n, bool full)
{
    enum tc_node_state state = n->state, appraised;
    struct tc_reason reason = n->reason;
    uint32_t unrecorded = 0;
    bool view = coord_engine_view(c, n->id, &state, &reason, &appraised, &unrecorded);
    json_t *j =
        json_pack("{s:s, s:s, s:s, s:s, s:o, s:I}", "id", n->id, "state", tc_node_state_name(state),
                  "group", n->group_name, "agent_url", n->agent_url, "reason",
                  reason.code ? tc_reason_to_json(&reason) : json_null(), "updated",
                  (json_int_t)n->updated);
    if (j && view) { /* the newest verdicts are in effect but not durable yet */
        json_object_set_new(j, "recorded", json_false());
        json_object_set_new(j, "appraised_state", json_string(tc_node_state_name(appraised)));
        json_object_set_new(j, "unrecorded_rounds", json_integer(unrecorded));
    }
    if (j) {
        json_object_set_new(j, "kind", json_string(n->is_vm ? "vm" : "host"));
        if (n->is_vm) {
            json_object_set_new(j, "host", json_string(n->host));
            json_object_set_new(j, "tenant", json_string(n->tenant));
            json_object_del(j, "group");
            json_object_del(j, "agent_url");
        }
    }
    if (j && full) {
        json_object_set_new(j, "created", json_integer(n->created));
        json_object_set_new(j, "missed", json_integer(n->missed));
        json_object_set_new(j, "last_round", json_integer((json_int_t)n->last_round));
        json_object_set_new(j, "tls_pin_sha256", json_string(n->tls_cert_fp));
        json_object_set_new(j, "ima_entries", json_integer((json_int_t)n->ima_count));
        json_object_set_new(j, "has_eventlog", json_boolean(n->eventlog.data != NULL));
        if (n->has_quote)
            json_object_set_new(j, "quote",
                                json_pack("{s:I, s:I, s:I}", "reset_count",
                                          (json_int_t)n->reset_count, "restart_count",
                                          (json_int_t)n->restart_count, "clock",
                                          (json_int_t)n->clock));
    }
    return j;
}

struct list_ctx {
    struct coord *c;
    json_t *arr;
};

static int list_cb(void *arg, const struct tc_store_node *n)
{
    struct list_ctx *x = arg;
    if (n->is_vm) /* GET /v1/vms lists those */
        return 0;
    return json_array_append_new(x->arr, coord_node_json(x->c, n, false)) == 0 ? 0 : TC_ERR_ALLOC;
}

json_t *coord_store_health_json(const struct coord *c)
{
    const struct coord_store_health *h = &c->health;
    json_t *j = json_pack("{s:b, s:I, s:I, s:I, s:I, s:I}", "healthy", h->error == 0 && !h->unrecorded,
                          "unrecorded_rounds", (json_int_t)h->unrecorded, "late_rounds",
                          (json_int_t)h->late, "dropped_rounds", (json_int_t)h->dropped, "outages",
                          (json_int_t)h->outages, "webhook_outcomes_unrecorded",
                          (json_int_t)h->webhook_unsynced);
    if (j && h->error) {
        json_object_set_new(j, "error", json_string(tc_strerror(h->error)));
        json_object_set_new(j, "failing_since", json_integer(h->since));
    }
    if (j && h->last_ok)
        json_object_set_new(j, "last_recorded", json_integer(h->last_ok));
    return j;
}

static void nodes_list(struct coord *c, const struct tc_http_request *req,
                       struct tc_http_response *resp)
{
    struct list_ctx x = {.c = c, .arr = json_array()};
    int rc = x.arr ? tc_store_node_list(c->store, list_cb, &x) : TC_ERR_ALLOC;
    if (rc) {
        json_decref(x.arr);
        reply_store_error(resp, rc, "cannot list nodes");
        return;
    }
    json_t *j = json_pack("{s:o}", "nodes", x.arr);
    if (j && (c->health.error || c->health.unrecorded)) /* loud only when it matters */
        json_object_set_new(j, "store", coord_store_health_json(c));
    reply_json(resp, 200, j);
}

static void node_show(struct coord *c, const char *id, struct tc_http_response *resp)
{
    struct tc_store_node n;
    memset(&n, 0, sizeof(n));
    int rc = tc_store_node_get(c->store, id, &n);
    if (rc)
        reply_store_error(resp, rc, "no such node");
    else
        reply_json(resp, 200, coord_node_json(c, &n, true));
    tc_store_node_release(&n);
}

static int host_of_cb(void *arg, const struct tc_store_node *n)
{
    const char *host = arg;
    return n->is_vm && strcmp(n->host, host) == 0 ? 1 : 0;
}

static void node_delete(struct coord *c, const char *id, struct tc_http_response *resp)
{
    struct tc_store_node n;
    memset(&n, 0, sizeof(n));
    int rc = tc_store_node_get(c->store, id, &n);
    bool vm = n.is_vm;
    tc_store_node_release(&n);
    if (rc == 0 && vm) {
        coord_reply_error(resp, 409, "node.is_vm", "%s is a VM: use DELETE /v1/vms/%s", id, id);
        return;
    }
    if (rc == 0 && tc_store_node_list(c->store, host_of_cb, (void *)id) == 1) {
        coord_reply_error(resp, 409, "node.has_vms", "node %s still hosts VMs: delete them first",
                          id);
        return;
    }
    rc = tc_store_node_delete(c->store, id);
    if (rc) {
        reply_store_error(resp, rc, "cannot delete node");
        return;
    }
    coord_engine_node_remove(c, id);
    LOG_INFO("node %s deleted by an operator", id);
    reply_json(resp, 200, json_pack("{s:s, s:b}", "id", id, "deleted", 1));
}

static void node_approve(struct coord *c, const char *id, struct tc_http_response *resp)
{
    struct tc_store_node n;
    memset(&n, 0, sizeof(n));
    int rc = tc_store_node_get(c->store, id, &n);
    if (rc) {
        reply_store_error(resp, rc, "no such node");
        goto out;
    }
    if (n.state != TC_NODE_PENDING_APPROVAL) {
        coord_reply_error(resp, 409, "node.state", "node %s is %s, not pending_approval", id,
                          tc_node_state_name(n.state));
        goto out;
    }
    n.state = TC_NODE_ENROLLED;
    if ((rc = tc_store_node_update(c->store, &n)) != 0) {
        reply_store_error(resp, rc, "cannot approve");
        goto out;
    }
    coord_engine_node_upsert(c, id);
    LOG_INFO("node %s approved", id);
    reply_json(resp, 200, json_pack("{s:s, s:s}", "id", id, "state", "enrolled"));
out:
    tc_store_node_release(&n);
}

void coord_history_reply(struct coord *c, const char *id, const struct tc_http_request *req,
                         struct tc_http_response *resp)
{
    long long before = 0, limit = HISTORY_DEFAULT;
    const char *b = tc_http_query(req, "before"), *l = tc_http_query(req, "limit");
    if ((b && !parse_uint(b, INT64_MAX, &before)) ||
        (l && (!parse_uint(l, HISTORY_MAX, &limit) || limit == 0))) {
        coord_reply_error(resp, 400, "request.query", "before must be an id, limit 1..%d",
                          HISTORY_MAX);
        return;
    }
    struct tc_store_node n;
    memset(&n, 0, sizeof(n));
    int rc = tc_store_node_get(c->store, id, &n);
    tc_store_node_release(&n);
    if (rc) {
        reply_store_error(resp, rc, "no such node");
        return;
    }
    struct tc_store_result *r = NULL;
    size_t cnt = 0;
    if ((rc = tc_store_results_list(c->store, id, before, (size_t)limit, &r, &cnt)) != 0) {
        reply_store_error(resp, rc, "cannot read history");
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < cnt; i++)
        json_array_append_new(
            arr, json_pack("{s:I, s:I, s:I, s:s, s:b, s:o}", "id", (json_int_t)r[i].id, "round",
                           (json_int_t)r[i].round, "ts", (json_int_t)r[i].ts, "state",
                           tc_node_state_name(r[i].state), "changed", r[i].changed, "reason",
                           r[i].reason.code ? tc_reason_to_json(&r[i].reason) : json_null()));
    free(r);
    reply_json(resp, 200, arr ? json_pack("{s:s, s:o}", "node", id, "results", arr) : NULL);
}

/* Load tests only: a node whose AK nothing vouches for (see softquote.h). */
static void node_import(struct coord *c, const struct tc_http_request *req,
                        struct tc_http_response *resp)
{
    if (!c->cfg->load_test_allow_software_aks) {
        coord_reply_error(resp, 403, "import.disabled",
                          "node import is for load tests and is disabled");
        return;
    }
    json_t *body = parse_body(c, req, resp, (size_t)c->cfg->max_body);
    uint8_t *ak_pub = NULL;
    size_t ak_len = 0, id_len = 0, group_len = 0;
    struct tc_ak *ak = NULL;
    struct tc_reason why;
    if (!body)
        return;
    const char *id = coord_json_str(body, "node_id", 256, &id_len);
    const char *url = coord_json_str(body, "agent_url", TC_STORE_URL_MAX, NULL);
    const char *akb = coord_json_str(body, "ak_pub", COORD_B64_MAX, NULL);
    const char *pin = coord_json_str(body, "tls_pin_sha256", 64, NULL);
    const char *group = coord_json_str(body, "group", 256, &group_len);
    char curlpin[80];
    if (!id || !coord_valid_node_id(id, id_len)) {
        coord_reply_error(resp, 400, "request.node_id", "node_id must match [A-Za-z0-9._-]{1,64}");
        goto out;
    }
    if (!url || !coord_valid_url(url, false, NULL, 0)) {
        coord_reply_error(resp, 400, "request.agent_url", "agent_url must be https://HOST[:PORT]");
        goto out;
    }
    if (group && !coord_valid_group(group, group_len)) {
        coord_reply_error(resp, 400, "request.group", "bad group name");
        goto out;
    }
    if (pin && coord_pin_curl(pin, curlpin, sizeof(curlpin)) != 0) {
        coord_reply_error(resp, 400, "request.tls_pin_sha256", "tls_pin_sha256 must be 64 hex");
        goto out;
    }
    if (!akb || coord_b64_decode(akb, strlen(akb), TC_STORE_KEY_MAX, &ak_pub, &ak_len) != 0 ||
        tc_ak_from_tpm2b_public(ak_pub, ak_len, &ak, &why) != 0) {
        coord_reply_error(resp, 400, "request.ak_pub",
                          "ak_pub must be a b64 TPM2B_PUBLIC of a restricted signing key");
        goto out;
    }
    const uint8_t *name;
    size_t name_len;
    if (tc_ak_name(ak, &name, &name_len) != 0) {
        coord_reply_error(resp, 400, "request.ak_pub", "the AK has no name");
        goto out;
    }
    struct tc_store_node n;
    memset(&n, 0, sizeof(n));
    snprintf(n.id, sizeof(n.id), "%s", id);
    n.state = TC_NODE_ENROLLED;
    n.ak_pub = (struct tc_store_blob){ak_pub, ak_len};
    n.ak_name = (struct tc_store_blob){(uint8_t *)name, name_len};
    snprintf(n.agent_url, sizeof(n.agent_url), "%s", url);
    snprintf(n.tls_cert_fp, sizeof(n.tls_cert_fp), "%s", pin ? pin : "");
    snprintf(n.group_name, sizeof(n.group_name), "%s", group ? group : "");
    int rc = tc_store_node_create(c->store, &n);
    if (rc) {
        reply_store_error(resp, rc, rc == TC_ERR_MISMATCH ? "node exists" : "cannot import");
        goto out;
    }
    coord_engine_node_upsert(c, id);
    LOG_INFO("LOAD TEST: node %s imported with an unverified software AK", id);
    reply_json(resp, 200, json_pack("{s:s, s:s}", "node_id", id, "state", "enrolled"));
out:
    json_decref(body);
    free(ak_pub);
    tc_ak_free(ak);
}

static void h_nodes(void *arg, const struct tc_http_request *req, struct tc_http_response *resp)
{
    struct coord *c = arg;
    if (!require_operator(req, resp) || !body_cap(c, req, resp))
        return;
    pthread_mutex_lock(&c->lock);
    if (strcmp(req->path, "/v1/nodes") == 0) {
        if (strcmp(req->method, "GET") == 0)
            nodes_list(c, req, resp);
        else
            coord_reply_error(resp, 405, "request.method", "GET only");
        goto out;
    }
    /* /v1/nodes/{id}[/approve|/history] or /v1/nodes/import */
    const char *rest = req->path + strlen("/v1/nodes/");
    const char *slash = strchr(rest, '/');
    size_t idlen = slash ? (size_t)(slash - rest) : strlen(rest);
    const char *sub = slash ? slash + 1 : "";
    if (!slash && strcmp(rest, "import") == 0) {
        if (strcmp(req->method, "POST") == 0)
            node_import(c, req, resp);
        else
            coord_reply_error(resp, 405, "request.method", "POST only");
        goto out;
    }
    if (!coord_valid_node_id(rest, idlen)) {
        coord_reply_error(resp, 400, "request.node_id", "node ids match [A-Za-z0-9._-]{1,64}");
        goto out;
    }
    char id[COORD_NODE_ID_MAX + 1];
    memcpy(id, rest, idlen);
    id[idlen] = '\0';
    if (!*sub && strcmp(req->method, "GET") == 0)
        node_show(c, id, resp);
    else if (!*sub && strcmp(req->method, "DELETE") == 0)
        node_delete(c, id, resp);
    else if (strcmp(sub, "approve") == 0 && strcmp(req->method, "POST") == 0)
        node_approve(c, id, resp);
    else if (strcmp(sub, "history") == 0 && strcmp(req->method, "GET") == 0)
        coord_history_reply(c, id, req, resp);
    else
        coord_reply_error(resp, 404, "request.route", "no such node route");
out:
    pthread_mutex_unlock(&c->lock);
}

/* ---- policies ------------------------------------------------------------------------------ */

static int policies_cb(void *arg, const char *name, int64_t version, enum tc_policy_kind kind)
{
    return json_array_append_new(arg, json_pack("{s:s, s:I, s:s}", "name", name, "version",
                                                (json_int_t)version, "kind",
                                                tc_policy_kind_name(kind))) == 0
               ? 0
               : TC_ERR_ALLOC;
}

static void policy_add(struct coord *c, const struct tc_http_request *req,
                       struct tc_http_response *resp)
{
    json_t *body = parse_body(c, req, resp, (size_t)c->cfg->max_policy_body);
    char *text = NULL;
    struct tc_mb_policy *mb = NULL;
    struct tc_runtime_policy *rt = NULL;
    struct tc_pcr_set pcrs;
    struct tc_reason why;
    enum tc_policy_kind kind;
    size_t name_len;
    if (!body)
        return;
    const char *name = coord_json_str(body, "name", 256, &name_len);
    const char *kind_s = coord_json_str(body, "kind", 32, NULL);
    json_t *pb = json_object_get(body, "body");
    if (!name || !coord_valid_node_id(name, name_len)) {
        coord_reply_error(resp, 400, "request.name", "policy names match [A-Za-z0-9._-]{1,64}");
        goto out;
    }
    if (!kind_s || tc_policy_kind_parse(kind_s, &kind) != 0) {
        coord_reply_error(resp, 400, "request.kind", "kind is runtime, measured_boot or pcr");
        goto out;
    }
    size_t len;
    if (json_is_object(pb)) {
        text = json_dumps(pb, JSON_COMPACT);
        len = text ? strlen(text) : 0;
    } else if (json_is_string(pb) && kind == TC_POLICY_RUNTIME) {
        /* a plain allowlist */
        len = json_string_length(pb);
        text = strndup(json_string_value(pb), len);
        if (text && strlen(text) != len) {
            coord_reply_error(resp, 400, "request.body", "the policy contains a NUL byte");
            goto out;
        }
    } else {
        coord_reply_error(resp, 400, "request.body", "body must be a JSON object");
        goto out;
    }
    if (!text) {
        coord_reply_error(resp, 500, "internal", "out of memory");
        goto out;
    }
    tc_reason_clear(&why);
    if (coord_policy_parse(kind, text, len, &mb, &rt, &pcrs, &why) != 0) {
        coord_reply_error(resp, 400, why.check[0] ? why.check : "policy.parse", "%s", why.detail);
        goto out;
    }
    int64_t version = 0;
    int rc = tc_store_policy_put(c->store, name, kind, text, len, &version);
    if (rc) {
        reply_store_error(resp, rc,
                          rc == TC_ERR_MISMATCH ? "a policy of that name has another kind"
                                                : "cannot store the policy");
        goto out;
    }
    coord_engine_policies_changed(c);
    LOG_INFO("policy %s (%s) version %lld added", name, kind_s, (long long)version);
    reply_json(
        resp, 200,
        json_pack("{s:s, s:s, s:I}", "name", name, "kind", kind_s, "version", (json_int_t)version));
out:
    tc_mb_policy_free(mb);
    tc_runtime_policy_free(rt);
    free(text);
    json_decref(body);
}

static void policy_show(struct coord *c, const char *name, const struct tc_http_request *req,
                        struct tc_http_response *resp)
{
    long long version = 0;
    const char *v = tc_http_query(req, "version");
    if (v && !parse_uint(v, INT64_MAX, &version)) {
        coord_reply_error(resp, 400, "request.query", "version must be a number");
        return;
    }
    struct tc_store_policy p;
    memset(&p, 0, sizeof(p));
    int rc = tc_store_policy_get(c->store, name, version, &p);
    if (rc) {
        reply_store_error(resp, rc, "no such policy");
        return;
    }
    json_t *b = json_loadb(p.body, p.body_len, 0, NULL);
    if (!b)
        b = json_stringn(p.body, p.body_len);
    reply_json(resp, 200,
               json_pack("{s:s, s:I, s:s, s:I, s:o}", "name", p.name, "version",
                         (json_int_t)p.version, "kind", tc_policy_kind_name(p.kind), "created",
                         (json_int_t)p.created, "body", b ? b : json_null()));
    tc_store_policy_release(&p);
}

static void policy_assign(struct coord *c, const char *name, const struct tc_http_request *req,
                          struct tc_http_response *resp)
{
    json_t *body = parse_body(c, req, resp, (size_t)c->cfg->max_body);
    if (!body)
        return;
    /* A VM is a node and a tenant a group named "tenant:NAME" (no host group can have a colon). */
    static const char *const keys[] = {"node", "group", "vm", "tenant"};
    const char *val = NULL, *key = NULL;
    size_t vl = 0, given = 0;
    for (size_t i = 0; i < 4; i++) {
        size_t l = 0;
        const char *v = coord_json_str(body, keys[i], 256, &l);
        if (json_object_get(body, keys[i]))
            given++;
        if (v && coord_valid_node_id(v, l)) {
            val = v;
            vl = l;
            key = keys[i];
        }
    }
    if (given != 1 || !val) {
        coord_reply_error(
            resp, 400, "request.target",
            "give exactly one of node, group, vm or tenant, each [A-Za-z0-9._-]{1,64}");
        json_decref(body);
        return;
    }
    char target[COORD_NODE_ID_MAX + 16];
    bool to_group = strcmp(key, "group") == 0 || strcmp(key, "tenant") == 0;
    snprintf(target, sizeof(target), "%s%.*s", strcmp(key, "tenant") == 0 ? "tenant:" : "", (int)vl,
             val);
    int rc = tc_store_assign(c->store, to_group ? TC_ASSIGN_GROUP : TC_ASSIGN_NODE, target, name);
    if (rc) {
        reply_store_error(resp, rc, "cannot assign (does the policy exist?)");
    } else {
        coord_engine_policies_changed(c);
        reply_json(resp, 200, json_pack("{s:s, s:s%}", "policy", name, key, val, vl));
    }
    json_decref(body);
}

static void h_policies(void *arg, const struct tc_http_request *req, struct tc_http_response *resp)
{
    struct coord *c = arg;
    if (!require_operator(req, resp))
        return;
    pthread_mutex_lock(&c->lock);
    if (strcmp(req->path, "/v1/policies") == 0) {
        if (strcmp(req->method, "POST") == 0) {
            policy_add(c, req, resp);
        } else if (strcmp(req->method, "GET") == 0) {
            json_t *arr = json_array();
            int rc = arr ? tc_store_policy_list(c->store, policies_cb, arr) : TC_ERR_ALLOC;
            if (rc) {
                json_decref(arr);
                reply_store_error(resp, rc, "cannot list policies");
            } else {
                reply_json(resp, 200, json_pack("{s:o}", "policies", arr));
            }
        } else {
            coord_reply_error(resp, 405, "request.method", "GET or POST");
        }
        goto out;
    }
    if (!body_cap(c, req, resp))
        goto out;
    const char *rest = req->path + strlen("/v1/policies/");
    const char *slash = strchr(rest, '/');
    size_t nlen = slash ? (size_t)(slash - rest) : strlen(rest);
    if (!coord_valid_node_id(rest, nlen)) {
        coord_reply_error(resp, 400, "request.name", "policy names match [A-Za-z0-9._-]{1,64}");
        goto out;
    }
    char name[COORD_NODE_ID_MAX + 1];
    memcpy(name, rest, nlen);
    name[nlen] = '\0';
    if (!slash && strcmp(req->method, "GET") == 0)
        policy_show(c, name, req, resp);
    else if (slash && strcmp(slash, "/assign") == 0 && strcmp(req->method, "POST") == 0)
        policy_assign(c, name, req, resp);
    else
        coord_reply_error(resp, 404, "request.route", "no such policy route");
out:
    pthread_mutex_unlock(&c->lock);
}

/* ---- events -------------------------------------------------------------------------------- */

/* Operators read every event, a tenant its VMs', a node its own (docs/protocol.md, "Events"). */
static bool events_scope(struct coord *c, const struct tc_http_request *req,
                         struct coord_event_scope *scope)
{
    const char *t;
    memset(scope, 0, sizeof(*scope));
    if (is_operator(req)) {
        scope->all = true;
    } else if ((t = coord_peer_tenant(req)) != NULL) {
        snprintf(scope->tenant, sizeof(scope->tenant), "%s", t);
    } else if (is_node(req) && coord_valid_node_id(req->peer->cn + 5, strlen(req->peer->cn + 5)) &&
               is_current_node(c, req)) { /* enrolled, with that very key */
        snprintf(scope->node, sizeof(scope->node), "%s", req->peer->cn + 5);
    } else {
        return false;
    }
    return true;
}

static void h_events(void *arg, const struct tc_http_request *req, struct tc_http_response *resp)
{
    struct coord *c = arg;
    struct coord_event_scope scope;
    if (!events_scope(c, req, &scope)) {
        coord_reply_error(resp, 403, "auth.events", "operators, tenants and nodes only");
        return;
    }
    if (strcmp(req->method, "GET") != 0) {
        coord_reply_error(resp, 405, "request.method", "GET only");
        return;
    }
    long long since = 0, wait = 0;
    const char *s = tc_http_query(req, "since"), *w = tc_http_query(req, "wait");
    if ((s && !parse_uint(s, INT64_MAX, &since)) || (w && !parse_uint(w, WAIT_MAX_S, &wait))) {
        coord_reply_error(resp, 400, "request.query", "since must be a seq, wait 0..%d",
                          WAIT_MAX_S);
        return;
    }
    pthread_mutex_lock(&c->lock);
    size_t n = 0;
    int64_t last = since;
    json_t *j = coord_events_json(c, &scope, since, EVENTS_MAX, &n, &last);
    if (j && n == 0 && wait > 0 && !c->stop) {
        struct tc_http_deferred *d = tc_http_defer(req);
        if (d && coord_engine_add_waiter(c, d, &scope, since, last,
                                         tc_store_now_ms() + wait * 1000) == 0) {
            json_decref(j);
            pthread_mutex_unlock(&c->lock);
            return;
        }
        if (d) { /* could not queue it: answer now */
            struct tc_http_response r2;
            memset(&r2, 0, sizeof(r2));
            tc_http_response_json(&r2, 200, j);
            json_decref(j);
            tc_http_deferred_finish(d, &r2);
            pthread_mutex_unlock(&c->lock);
            return;
        }
    }
    pthread_mutex_unlock(&c->lock);
    if (!j)
        coord_reply_error(resp, 500, "store", "cannot read events");
    else
        reply_json(resp, 200, j);
}

/* ---- subscribers --------------------------------------------------------------------------- */

static int subs_cb(void *arg, const struct tc_store_subscriber *s)
{
    return json_array_append_new(arg, json_pack("{s:I, s:s, s:I}", "id", (json_int_t)s->id, "url",
                                                s->url, "created", (json_int_t)s->created)) == 0
               ? 0
               : TC_ERR_ALLOC;
}

/* GET /v1/status (operators): whether verdicts reach the store, engine counters. */
static void h_status(void *arg, const struct tc_http_request *req, struct tc_http_response *resp)
{
    struct coord *c = arg;
    if (!require_operator(req, resp))
        return;
    if (strcmp(req->method, "GET") != 0) {
        coord_reply_error(resp, 405, "request.method", "GET only");
        return;
    }
    pthread_mutex_lock(&c->lock);
    json_t *j = json_pack("{s:o, s:I, s:I, s:I}", "store", coord_store_health_json(c), "nodes",
                          (json_int_t)c->nnodes, "rounds_recorded", (json_int_t)c->stat_rounds,
                          "appraisals", (json_int_t)c->stat_appraisals);
    pthread_mutex_unlock(&c->lock);
    reply_json(resp, 200, j);
}

static void h_subscribers(void *arg, const struct tc_http_request *req,
                          struct tc_http_response *resp)
{
    struct coord *c = arg;
    if (!require_operator(req, resp) || !body_cap(c, req, resp))
        return;
    pthread_mutex_lock(&c->lock);
    if (strcmp(req->path, "/v1/subscribers") == 0 && strcmp(req->method, "GET") == 0) {
        json_t *arr = json_array();
        int rc = arr ? tc_store_subscriber_list(c->store, subs_cb, arr) : TC_ERR_ALLOC;
        if (rc) {
            json_decref(arr);
            reply_store_error(resp, rc, "cannot list subscribers");
        } else {
            reply_json(resp, 200, json_pack("{s:o}", "subscribers", arr));
        }
    } else if (strcmp(req->path, "/v1/subscribers") == 0 && strcmp(req->method, "POST") == 0) {
        json_t *body = parse_body(c, req, resp, (size_t)c->cfg->max_body);
        if (body) {
            size_t sl = 0;
            const char *url = coord_json_str(body, "url", TC_STORE_URL_MAX, NULL);
            const char *secret = coord_json_str(body, "secret", TC_STORE_SECRET_MAX, &sl);
            int64_t id = 0;
            int rc;
            if (!url || !coord_valid_url(url, c->cfg->webhook_allow_http, NULL, 0))
                coord_reply_error(resp, 400, "request.url",
                                  "url must be https://HOST[:PORT][/PATH]%s",
                                  c->cfg->webhook_allow_http ? " or http://" : "");
            else if (!secret || sl < SUB_SECRET_MIN)
                coord_reply_error(resp, 400, "request.secret",
                                  "secret must be a string of %d..%d bytes", SUB_SECRET_MIN,
                                  TC_STORE_SECRET_MAX);
            else if ((rc = tc_store_subscriber_add(c->store, url, (const uint8_t *)secret, sl,
                                                   &id)) != 0)
                reply_store_error(resp, rc, "cannot add subscriber");
            else
                reply_json(resp, 200, json_pack("{s:I, s:s}", "id", (json_int_t)id, "url", url));
            json_decref(body);
        }
    } else if (strncmp(req->path, "/v1/subscribers/", 16) == 0 &&
               strcmp(req->method, "DELETE") == 0) {
        long long id;
        int rc;
        if (!parse_uint(req->path + 16, INT64_MAX, &id))
            coord_reply_error(resp, 400, "request.id", "subscriber ids are numbers");
        else if ((rc = tc_store_subscriber_delete(c->store, id)) != 0)
            reply_store_error(resp, rc, "cannot delete subscriber");
        else
            reply_json(resp, 200, json_pack("{s:I, s:b}", "id", (json_int_t)id, "deleted", 1));
    } else {
        coord_reply_error(resp, 404, "request.route", "no such subscriber route");
    }
    pthread_mutex_unlock(&c->lock);
}

/* ---- enrollment ---------------------------------------------------------------------------- */

static void h_enroll(void *arg, const struct tc_http_request *req, struct tc_http_response *resp)
{
    struct coord *c = arg;
    if (!body_cap(c, req, resp))
        return;
    if (strcmp(req->method, "POST") != 0) {
        coord_reply_error(resp, 405, "request.method", "POST only");
        return;
    }
    pthread_mutex_lock(&c->lock);
    if (strcmp(req->path, "/v1/enroll") == 0) {
        coord_enroll_handle(c, req, resp);
    } else {
        /* /v1/enroll/{hex id}/activate */
        const char *rest = req->path + strlen("/v1/enroll/");
        const char *slash = strchr(rest, '/');
        char id[65];
        size_t n = slash ? (size_t)(slash - rest) : 0;
        bool hex = n == 32;
        for (size_t i = 0; hex && i < n; i++)
            hex = (rest[i] >= '0' && rest[i] <= '9') || (rest[i] >= 'a' && rest[i] <= 'f');
        if (!hex || strcmp(slash, "/activate") != 0) {
            coord_reply_error(resp, 404, "request.route",
                              "expected /v1/enroll/{enrollment_id}/activate");
        } else {
            memcpy(id, rest, n);
            id[n] = '\0';
            coord_activate_handle(c, id, req, resp);
        }
    }
    pthread_mutex_unlock(&c->lock);
}

int coord_api_register(struct coord *c)
{
    int rc;
    if ((rc = tc_httpd_route(c->httpd, NULL, "/v1/enroll", h_enroll, c,
                             TC_HTTPD_ROUTE_ANONYMOUS)) != 0 ||
        (rc = tc_httpd_route(c->httpd, NULL, "/v1/enroll/", h_enroll, c,
                             TC_HTTPD_ROUTE_ANONYMOUS)) != 0 ||
        (rc = tc_httpd_route(c->httpd, NULL, "/v1/nodes", h_nodes, c, 0)) != 0 ||
        (rc = tc_httpd_route(c->httpd, NULL, "/v1/nodes/", h_nodes, c, 0)) != 0 ||
        (rc = tc_httpd_route(c->httpd, NULL, "/v1/policies", h_policies, c, 0)) != 0 ||
        (rc = tc_httpd_route(c->httpd, NULL, "/v1/policies/", h_policies, c, 0)) != 0 ||
        (rc = tc_httpd_route(c->httpd, NULL, "/v1/events", h_events, c, 0)) != 0 ||
        (rc = tc_httpd_route(c->httpd, NULL, "/v1/status", h_status, c, 0)) != 0 ||
        (rc = tc_httpd_route(c->httpd, NULL, "/v1/subscribers", h_subscribers, c, 0)) != 0 ||
        (rc = tc_httpd_route(c->httpd, NULL, "/v1/subscribers/", h_subscribers, c, 0)) != 0 ||
        (rc = coord_vm_register(c)) != 0)
        return rc;
    return 0;
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

static int path_in(char *out, size_t cap, const char *dir, const char *file)
{
    return (size_t)snprintf(out, cap, "%s/%s", dir, file) < cap ? 0 : TC_ERR_TOO_LARGE;
}

int coord_new(struct coord_settings *cfg, struct coord **out)
{
    int rc;
    *out = NULL;
    struct coord *c = calloc(1, sizeof(*c));
    if (!c)
        return TC_ERR_ALLOC;
    c->cfg = cfg;
    pthread_mutex_init(&c->lock, NULL);
    if ((rc = path_in(c->cert_file, sizeof(c->cert_file), cfg->ca_dir, "coordinator.pem")) ||
        (rc = path_in(c->key_file, sizeof(c->key_file), cfg->ca_dir, "coordinator.key")) ||
        (rc = path_in(c->ca_file, sizeof(c->ca_file), cfg->ca_dir, "ca.pem")))
        goto out;
    if ((rc = tc_pki_ca_load(cfg->ca_dir, &c->ca)) != 0) {
        LOG_ERROR("cannot load the CA from %s (run `trustcloud ca init --dir %s`): %s", cfg->ca_dir,
                  cfg->ca_dir, tc_strerror(rc));
        goto out;
    }
    size_t calen;
    if ((rc = tc_file_read(c->ca_file, TC_PKI_MAX_FILE, (uint8_t **)&c->ca_pem, &calen)) != 0) {
        LOG_ERROR("cannot read %s: %s", c->ca_file, tc_strerror(rc));
        goto out;
    }
    struct tc_pcr_set selset;
    if ((rc = tc_pcrs_parse_selection(cfg->pcr_selection, &selset)) != 0)
        goto out;
    tc_pcr_selection_from_set(&selset, &c->selection);
    tc_pcr_selection_format(&c->selection, c->selection_text, sizeof(c->selection_text));

    struct tc_store_options so = {.sync_full = cfg->sync_full};
    if ((rc = tc_store_open(cfg->db, &so, &c->store)) != 0) {
        LOG_ERROR("cannot open the store %s: %s", cfg->db, tc_strerror(rc));
        goto out;
    }
    size_t maxbody =
        (size_t)(cfg->max_policy_body > cfg->max_body ? cfg->max_policy_body : cfg->max_body);
    struct tc_httpd_config hc = {.bind_addr = cfg->listen,
                                 .port = (uint16_t)cfg->port,
                                 .tls = {.cert_file = c->cert_file,
                                         .key_file = c->key_file,
                                         .ca_file = c->ca_file,
                                         .allow_anonymous = true},
                                 .max_body = maxbody};
    coord_settings_httpd_limits(cfg, &hc);
    if ((rc = tc_httpd_new(&hc, &c->httpd)) != 0) {
        LOG_ERROR("cannot listen on %s:%lld: %s", cfg->listen, cfg->port, tc_strerror(rc));
        goto out;
    }
    struct tc_httpc_config cc = {.cert_file = c->cert_file,
                                 .key_file = c->key_file,
                                 .ca_file = c->ca_file,
                                 .timeout_ms = cfg->request_timeout_ms,
                                 .connect_timeout_ms = cfg->request_timeout_ms,
                                 .max_body = 16u << 20,
                                 .max_host_connections = 256,
                                 .max_total_connections = 4096,
                                 .allow_plain_http = cfg->webhook_allow_http};
    if ((rc = tc_httpc_new(&cc, &c->httpc)) != 0)
        goto out;
    if ((rc = coord_api_register(c)) != 0)
        goto out;
    pthread_mutex_lock(&c->lock);
    rc = coord_engine_load(c);
    pthread_mutex_unlock(&c->lock);
    if (rc) {
        LOG_ERROR("cannot load nodes: %s", tc_strerror(rc));
        goto out;
    }
    *out = c;
    c = NULL;
out:
    coord_free(c);
    return rc;
}

int coord_start(struct coord *c)
{
    int rc;
    if ((rc = tc_httpd_start(c->httpd)) != 0)
        return rc;
    return coord_engine_start(c);
}

void coord_stop(struct coord *c)
{
    if (!c)
        return;
    coord_engine_stop(c);
    if (c->httpd)
        tc_httpd_stop(c->httpd);
}

void coord_free(struct coord *c)
{
    if (!c)
        return;
    coord_stop(c);
    tc_httpd_free(c->httpd);
    tc_httpc_free(c->httpc); /* remaining callbacks run here; engine state is still alive */
    coord_engine_release(c);
    coord_enroll_release(c);
    tc_store_close(c->store);
    tc_pki_ca_free(c->ca);
    free(c->ca_pem);
    pthread_mutex_destroy(&c->lock);
    free(c);
}
