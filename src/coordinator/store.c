/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Backend-independent half of the store: argument validation (so every
 * backend can rely on the caps), dispatch through tc_store_ops, and helpers.
 */
#define LOGMODULE "store"
#include "coordinator/store.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "trustcloud/error.h"
#include "trustcloud/log.h"

static const char *const state_names[TC_NODE_STATE_COUNT] = {
    "pending_approval", "enrolled", "trusted", "untrusted", "unreachable",
};
static const char *const kind_names[] = {"runtime", "measured_boot", "pcr"};

const char *tc_node_state_name(enum tc_node_state st)
{
    if ((unsigned)st >= TC_NODE_STATE_COUNT)
        return "invalid";
    return state_names[st];
}

int tc_node_state_parse(const char *name, enum tc_node_state *out)
{
    for (unsigned i = 0; name != NULL && i < TC_NODE_STATE_COUNT; i++)
        if (strcmp(name, state_names[i]) == 0) {
            *out = (enum tc_node_state)i;
            return 0;
        }
    return TC_ERR_FORMAT;
}

const char *tc_policy_kind_name(enum tc_policy_kind k)
{
    if ((unsigned)k >= sizeof(kind_names) / sizeof(kind_names[0]))
        return "invalid";
    return kind_names[k];
}

int tc_policy_kind_parse(const char *name, enum tc_policy_kind *out)
{
    for (unsigned i = 0; name != NULL && i < sizeof(kind_names) / sizeof(kind_names[0]); i++)
        if (strcmp(name, kind_names[i]) == 0) {
            *out = (enum tc_policy_kind)i;
            return 0;
        }
    return TC_ERR_FORMAT;
}

static void blob_free(struct tc_store_blob *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
}

void tc_store_node_release(struct tc_store_node *n)
{
    if (n == NULL)
        return;
    blob_free(&n->ek_pub);
    blob_free(&n->ek_cert);
    blob_free(&n->ak_pub);
    blob_free(&n->ak_name);
    blob_free(&n->ima_state);
    blob_free(&n->eventlog);
    memset(n, 0, sizeof(*n));
}

void tc_store_enrollment_release(struct tc_store_enrollment *e)
{
    if (e == NULL)
        return;
    blob_free(&e->ek_pub);
    blob_free(&e->ek_cert);
    blob_free(&e->ak_pub);
    blob_free(&e->ak_name);
    memset(e, 0, sizeof(*e));
}

void tc_store_policy_release(struct tc_store_policy *p)
{
    if (p == NULL)
        return;
    free(p->body);
    memset(p, 0, sizeof(*p));
}

void tc_store_subscriber_release(struct tc_store_subscriber *sub)
{
    if (sub == NULL)
        return;
    OPENSSL_cleanse(sub, sizeof(*sub));
}

/* ---- validation ------------------------------------------------------------------------ */

/* A string argument: non-NULL, non-empty (unless allow_empty), NUL-terminated within cap. */
static int check_str(const char *v, size_t cap, bool allow_empty)
{
    if (v == NULL)
        return TC_ERR_INVALID_ARG;
    size_t len = strnlen(v, cap + 1);
    if (len > cap)
        return TC_ERR_TOO_LARGE;
    if (len == 0 && !allow_empty)
        return TC_ERR_INVALID_ARG;
    return 0;
}

/* A fixed char array inside a struct: must hold its terminating NUL. */
#define CHECK_ARRAY(arr, allow_empty) check_str((arr), sizeof(arr) - 1, (allow_empty))

static int check_blob(const struct tc_store_blob *b, size_t cap)
{
    if (b->data == NULL && b->len != 0)
        return TC_ERR_INVALID_ARG;
    return b->len > cap ? TC_ERR_TOO_LARGE : 0;
}

static int check_state(enum tc_node_state st)
{
    return (unsigned)st < TC_NODE_STATE_COUNT ? 0 : TC_ERR_INVALID_ARG;
}

static int check_reason(const struct tc_reason *why)
{
    /* The fixed arrays must be terminated: the backend stores them as text. */
    if (memchr(why->check, 0, sizeof(why->check)) == NULL ||
        memchr(why->detail, 0, sizeof(why->detail)) == NULL)
        return TC_ERR_INVALID_ARG;
    return 0;
}

static int check_node(const struct tc_store_node *n, bool identity)
{
    int rc;
    if (n == NULL)
        return TC_ERR_INVALID_ARG;
    if ((rc = CHECK_ARRAY(n->id, false)) != 0 || (rc = CHECK_ARRAY(n->tls_cert_fp, true)) != 0 ||
        (rc = CHECK_ARRAY(n->agent_url, true)) != 0 ||
        (rc = CHECK_ARRAY(n->group_name, true)) != 0 || (rc = check_state(n->state)) != 0 ||
        (rc = check_reason(&n->reason)) != 0 || (rc = CHECK_ARRAY(n->host, true)) != 0 ||
        (rc = CHECK_ARRAY(n->tenant, true)) != 0)
        return rc;
    if (n->is_vm != (n->host[0] != '\0'))
        return TC_ERR_INVALID_ARG; /* a VM names its host, a host names none */
    if (!identity)
        return 0;
    if ((rc = check_blob(&n->ek_pub, TC_STORE_KEY_MAX)) != 0 ||
        (rc = check_blob(&n->ek_cert, TC_STORE_CERT_MAX)) != 0 ||
        (rc = check_blob(&n->ak_pub, TC_STORE_KEY_MAX)) != 0 ||
        (rc = check_blob(&n->ak_name, TC_STORE_KEY_MAX)) != 0 ||
        (rc = check_blob(&n->ima_state, TC_STORE_STATE_MAX)) != 0 ||
        (rc = check_blob(&n->eventlog, TC_STORE_EVENTLOG_MAX)) != 0)
        return rc;
    return 0;
}

static int check_round(const struct tc_store_round *r)
{
    int rc;
    if ((rc = check_str(r->node_id, TC_STORE_ID_MAX, false)) != 0 ||
        (rc = check_state(r->state)) != 0 || (rc = check_reason(&r->reason)) != 0)
        return rc;
    if (r->round == 0 || r->round > INT64_MAX)
        return TC_ERR_INVALID_ARG;
    if ((r->ima_state == NULL && r->ima_state_len != 0) ||
        (r->eventlog == NULL && r->eventlog_len != 0))
        return TC_ERR_INVALID_ARG;
    if (r->ima_state_len > TC_STORE_STATE_MAX || r->eventlog_len > TC_STORE_EVENTLOG_MAX)
        return TC_ERR_TOO_LARGE;
    return 0;
}

#define VALID(s) ((s) != NULL && (s)->ops != NULL)

/* ---- open / close ---------------------------------------------------------------------- */

int tc_store_open(const char *uri, const struct tc_store_options *opts, struct tc_store **out)
{
    struct tc_store_options o = {.busy_timeout_ms = 5000, .history_per_node = 1000};
    if (out == NULL)
        return TC_ERR_INVALID_ARG;
    *out = NULL;
    if (check_str(uri, 4096, false) != 0)
        return TC_ERR_INVALID_ARG;
    if (opts != NULL) {
        o.sync_full = opts->sync_full;
        o.full_check = opts->full_check;
        if (opts->busy_timeout_ms > 0)
            o.busy_timeout_ms = opts->busy_timeout_ms;
        if (opts->history_per_node > 0)
            o.history_per_node = opts->history_per_node;
    }
    if (strncmp(uri, "sqlite:", 7) == 0 && uri[7] != '\0')
        return tc_store_sqlite_open(uri + 7, &o, out);
    if (strncmp(uri, "postgresql://", 13) == 0 || strncmp(uri, "postgres://", 11) == 0)
        return tc_store_pg_open(uri, &o, out);
    LOG_ERROR("unknown store URI scheme (expected sqlite:PATH or postgresql://...)");
    return TC_ERR_UNSUPPORTED;
}

void tc_store_close(struct tc_store *s)
{
    if (s == NULL)
        return;
    s->ops->close(s);
}

int tc_store_inject_fault(struct tc_store *s, int n)
{
    if (!VALID(s) || n < 0)
        return TC_ERR_INVALID_ARG;
    if (s->ops->inject_fault == NULL)
        return TC_ERR_UNSUPPORTED;
    return s->ops->inject_fault(s, n);
}

int tc_store_schema_version(struct tc_store *s, int64_t *out)
{
    if (!VALID(s) || out == NULL)
        return TC_ERR_INVALID_ARG;
    *out = 0;
    return s->ops->schema_version(s, out);
}

/* ---- nodes ----------------------------------------------------------------------------- */

int tc_store_node_create(struct tc_store *s, struct tc_store_node *node)
{
    int rc;
    if (!VALID(s))
        return TC_ERR_INVALID_ARG;
    if ((rc = check_node(node, true)) != 0)
        return rc;
    return s->ops->node_create(s, node);
}

int tc_store_node_get(struct tc_store *s, const char *id, struct tc_store_node *out)
{
    int rc;
    if (!VALID(s) || out == NULL)
        return TC_ERR_INVALID_ARG;
    memset(out, 0, sizeof(*out));
    if ((rc = check_str(id, TC_STORE_ID_MAX, false)) != 0)
        return rc;
    if ((rc = s->ops->node_get(s, id, out)) != 0)
        tc_store_node_release(out);
    return rc;
}

int tc_store_node_update(struct tc_store *s, struct tc_store_node *node)
{
    int rc;
    if (!VALID(s))
        return TC_ERR_INVALID_ARG;
    if ((rc = check_node(node, false)) != 0)
        return rc;
    return s->ops->node_update(s, node);
}

int tc_store_node_set_ak(struct tc_store *s, const char *id, const struct tc_store_blob *ak_pub,
                         const struct tc_store_blob *ak_name)
{
    int rc;
    if (!VALID(s) || ak_pub == NULL || ak_name == NULL || ak_pub->data == NULL ||
        ak_pub->len == 0 || ak_name->data == NULL || ak_name->len == 0)
        return TC_ERR_INVALID_ARG;
    if ((rc = check_str(id, TC_STORE_ID_MAX, false)) != 0)
        return rc;
    if (ak_pub->len > TC_STORE_KEY_MAX || ak_name->len > TC_STORE_KEY_MAX)
        return TC_ERR_TOO_LARGE;
    return s->ops->node_set_ak(s, id, ak_pub, ak_name);
}

int tc_store_node_delete(struct tc_store *s, const char *id)
{
    int rc;
    if (!VALID(s))
        return TC_ERR_INVALID_ARG;
    if ((rc = check_str(id, TC_STORE_ID_MAX, false)) != 0)
        return rc;
    return s->ops->node_delete(s, id);
}

int tc_store_node_list(struct tc_store *s, int (*fn)(void *arg, const struct tc_store_node *n),
                       void *arg)
{
    if (!VALID(s) || fn == NULL)
        return TC_ERR_INVALID_ARG;
    return s->ops->node_list(s, fn, arg);
}

/* ---- rounds ---------------------------------------------------------------------------- */

int tc_store_record_rounds(struct tc_store *s, const struct tc_store_round *r, size_t n,
                           struct tc_store_round_result *res)
{
    int rc;
    if (!VALID(s) || r == NULL || n == 0)
        return TC_ERR_INVALID_ARG;
    if (n > TC_STORE_BATCH_MAX)
        return TC_ERR_TOO_LARGE;
    if (res != NULL)
        memset(res, 0, n * sizeof(*res));
    for (size_t i = 0; i < n; i++)
        if ((rc = check_round(&r[i])) != 0)
            return rc;
    if ((rc = s->ops->record_rounds(s, r, n, res)) != 0 && res != NULL)
        memset(res, 0, n * sizeof(*res));
    return rc;
}

int tc_store_record_round(struct tc_store *s, const struct tc_store_round *r,
                          struct tc_store_round_result *res)
{
    struct tc_store_round_result one;
    int rc = tc_store_record_rounds(s, r, 1, &one);
    if (rc == 0)
        rc = one.status;
    if (res != NULL)
        *res = one;
    return rc;
}

int tc_store_results_list(struct tc_store *s, const char *node_id, int64_t before_id, size_t limit,
                          struct tc_store_result **out, size_t *n)
{
    int rc;
    if (!VALID(s) || out == NULL || n == NULL)
        return TC_ERR_INVALID_ARG;
    *out = NULL;
    *n = 0;
    if ((rc = check_str(node_id, TC_STORE_ID_MAX, false)) != 0)
        return rc;
    if (limit == 0 || limit > TC_STORE_LIST_MAX || before_id < 0)
        return TC_ERR_INVALID_ARG;
    return s->ops->results_list(s, node_id, before_id, limit, out, n);
}

int tc_store_events_since(struct tc_store *s, int64_t since, size_t limit,
                          struct tc_store_event **out, size_t *n)
{
    if (!VALID(s) || out == NULL || n == NULL)
        return TC_ERR_INVALID_ARG;
    *out = NULL;
    *n = 0;
    if (limit == 0 || limit > TC_STORE_LIST_MAX || since < 0)
        return TC_ERR_INVALID_ARG;
    return s->ops->events_since(s, since, limit, out, n);
}

int tc_store_events_last_seq(struct tc_store *s, int64_t *seq)
{
    if (!VALID(s) || seq == NULL)
        return TC_ERR_INVALID_ARG;
    *seq = 0;
    return s->ops->events_last_seq(s, seq);
}

/* ---- enrollments ----------------------------------------------------------------------- */

int tc_store_enrollment_put(struct tc_store *s, struct tc_store_enrollment *e)
{
    int rc;
    if (!VALID(s) || e == NULL)
        return TC_ERR_INVALID_ARG;
    if ((rc = CHECK_ARRAY(e->id, false)) != 0 || (rc = CHECK_ARRAY(e->node_id, false)) != 0 ||
        (rc = check_blob(&e->ek_pub, TC_STORE_KEY_MAX)) != 0 ||
        (rc = check_blob(&e->ek_cert, TC_STORE_CERT_MAX)) != 0 ||
        (rc = check_blob(&e->ak_pub, TC_STORE_KEY_MAX)) != 0 ||
        (rc = check_blob(&e->ak_name, TC_STORE_KEY_MAX)) != 0)
        return rc;
    return s->ops->enrollment_put(s, e);
}

int tc_store_enrollment_get(struct tc_store *s, const char *id, int64_t now,
                            struct tc_store_enrollment *out)
{
    int rc;
    if (!VALID(s) || out == NULL)
        return TC_ERR_INVALID_ARG;
    memset(out, 0, sizeof(*out));
    if ((rc = check_str(id, TC_STORE_ID_MAX, false)) != 0)
        return rc;
    if ((rc = s->ops->enrollment_get(s, id, now, out)) != 0)
        tc_store_enrollment_release(out);
    return rc;
}

int tc_store_enrollment_complete(struct tc_store *s, const char *enrollment_id, int64_t now,
                                 struct tc_store_node *node)
{
    int rc;
    if (!VALID(s))
        return TC_ERR_INVALID_ARG;
    if ((rc = check_str(enrollment_id, TC_STORE_ID_MAX, false)) != 0 ||
        (rc = check_node(node, true)) != 0)
        return rc;
    return s->ops->enrollment_complete(s, enrollment_id, now, node);
}

int tc_store_enrollment_purge(struct tc_store *s, int64_t now, size_t *n)
{
    size_t dummy;
    if (!VALID(s))
        return TC_ERR_INVALID_ARG;
    if (n == NULL)
        n = &dummy;
    *n = 0;
    return s->ops->enrollment_purge(s, now, n);
}

/* ---- policies -------------------------------------------------------------------------- */

int tc_store_policy_put(struct tc_store *s, const char *name, enum tc_policy_kind kind,
                        const char *body, size_t body_len, int64_t *version)
{
    int rc;
    if (!VALID(s) || body == NULL || version == NULL)
        return TC_ERR_INVALID_ARG;
    *version = 0;
    if ((rc = check_str(name, TC_STORE_ID_MAX, false)) != 0)
        return rc;
    if ((unsigned)kind > TC_POLICY_PCR)
        return TC_ERR_INVALID_ARG;
    if (body_len > TC_STORE_POLICY_MAX)
        return TC_ERR_TOO_LARGE;
    if (memchr(body, 0, body_len) != NULL)
        return TC_ERR_INVALID_ARG;
    return s->ops->policy_put(s, name, kind, body, body_len, version);
}

int tc_store_policy_get(struct tc_store *s, const char *name, int64_t version,
                        struct tc_store_policy *out)
{
    int rc;
    if (!VALID(s) || out == NULL)
        return TC_ERR_INVALID_ARG;
    memset(out, 0, sizeof(*out));
    if ((rc = check_str(name, TC_STORE_ID_MAX, false)) != 0)
        return rc;
    if (version < 0)
        return TC_ERR_INVALID_ARG;
    if ((rc = s->ops->policy_get(s, name, version, out)) != 0)
        tc_store_policy_release(out);
    return rc;
}

int tc_store_policy_list(struct tc_store *s,
                         int (*fn)(void *arg, const char *name, int64_t version,
                                   enum tc_policy_kind kind),
                         void *arg)
{
    if (!VALID(s) || fn == NULL)
        return TC_ERR_INVALID_ARG;
    return s->ops->policy_list(s, fn, arg);
}

static int check_assign(enum tc_assign_target kind, const char *target, const char *policy)
{
    int rc;
    if ((unsigned)kind > TC_ASSIGN_GROUP)
        return TC_ERR_INVALID_ARG;
    if ((rc = check_str(target, TC_STORE_ID_MAX, false)) != 0 ||
        (rc = check_str(policy, TC_STORE_ID_MAX, false)) != 0)
        return rc;
    return 0;
}

int tc_store_assign(struct tc_store *s, enum tc_assign_target kind, const char *target,
                    const char *policy)
{
    int rc;
    if (!VALID(s))
        return TC_ERR_INVALID_ARG;
    if ((rc = check_assign(kind, target, policy)) != 0)
        return rc;
    return s->ops->assign(s, kind, target, policy);
}

int tc_store_unassign(struct tc_store *s, enum tc_assign_target kind, const char *target,
                      const char *policy)
{
    int rc;
    if (!VALID(s))
        return TC_ERR_INVALID_ARG;
    if ((rc = check_assign(kind, target, policy)) != 0)
        return rc;
    return s->ops->unassign(s, kind, target, policy);
}

int tc_store_node_policies(struct tc_store *s, const char *node_id,
                           int (*fn)(void *arg, const char *policy), void *arg)
{
    int rc;
    if (!VALID(s) || fn == NULL)
        return TC_ERR_INVALID_ARG;
    if ((rc = check_str(node_id, TC_STORE_ID_MAX, false)) != 0)
        return rc;
    return s->ops->node_policies(s, node_id, fn, arg);
}

/* ---- subscribers and outbox ------------------------------------------------------------ */

int tc_store_subscriber_add(struct tc_store *s, const char *url, const uint8_t *secret,
                            size_t secret_len, int64_t *id)
{
    int rc;
    if (!VALID(s) || id == NULL || secret == NULL || secret_len == 0)
        return TC_ERR_INVALID_ARG;
    *id = 0;
    if ((rc = check_str(url, TC_STORE_URL_MAX, false)) != 0)
        return rc;
    if (secret_len > TC_STORE_SECRET_MAX)
        return TC_ERR_TOO_LARGE;
    return s->ops->subscriber_add(s, url, secret, secret_len, id);
}

int tc_store_subscriber_get(struct tc_store *s, int64_t id, struct tc_store_subscriber *out)
{
    int rc;
    if (!VALID(s) || out == NULL)
        return TC_ERR_INVALID_ARG;
    memset(out, 0, sizeof(*out));
    if ((rc = s->ops->subscriber_get(s, id, out)) != 0)
        tc_store_subscriber_release(out);
    return rc;
}

int tc_store_subscriber_list(struct tc_store *s,
                             int (*fn)(void *arg, const struct tc_store_subscriber *sub), void *arg)
{
    if (!VALID(s) || fn == NULL)
        return TC_ERR_INVALID_ARG;
    return s->ops->subscriber_list(s, fn, arg);
}

int tc_store_subscriber_delete(struct tc_store *s, int64_t id)
{
    if (!VALID(s))
        return TC_ERR_INVALID_ARG;
    return s->ops->subscriber_delete(s, id);
}

int tc_store_deliveries_due(struct tc_store *s, int64_t now, size_t limit,
                            struct tc_store_delivery **out, size_t *n)
{
    if (!VALID(s) || out == NULL || n == NULL)
        return TC_ERR_INVALID_ARG;
    *out = NULL;
    *n = 0;
    if (limit == 0 || limit > TC_STORE_LIST_MAX)
        return TC_ERR_INVALID_ARG;
    return s->ops->deliveries_due(s, now, limit, out, n);
}

int tc_store_delivery_done(struct tc_store *s, int64_t id, int64_t now)
{
    if (!VALID(s))
        return TC_ERR_INVALID_ARG;
    return s->ops->delivery_done(s, id, now);
}

int tc_store_delivery_retry(struct tc_store *s, int64_t id, int64_t next_attempt_at)
{
    if (!VALID(s))
        return TC_ERR_INVALID_ARG;
    return s->ops->delivery_retry(s, id, next_attempt_at);
}

int64_t tc_store_backoff_ms(uint32_t attempts)
{
    /* 1 s, 2 s, 4 s ... capped at one hour: a subscriber that is down for a
     * day gets ~24 tries an hour, not a retry storm, and catches up in order. */
    const int64_t cap = 3600 * 1000;
    if (attempts == 0)
        return 0;
    if (attempts > 12)
        return cap;
    int64_t d = (int64_t)1000 << (attempts - 1);
    return d > cap ? cap : d;
}

int tc_store_prune(struct tc_store *s, int64_t before_ts)
{
    if (!VALID(s))
        return TC_ERR_INVALID_ARG;
    return s->ops->prune(s, before_ts);
}

/* ---- helpers --------------------------------------------------------------------------- */

int64_t tc_store_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int tc_store_secret_hash(const uint8_t *secret, size_t len, uint8_t out[TC_STORE_HASH_LEN])
{
    unsigned int olen = 0;
    if (secret == NULL || out == NULL)
        return TC_ERR_INVALID_ARG;
    if (EVP_Digest(secret, len, out, &olen, EVP_sha256(), NULL) != 1 || olen != TC_STORE_HASH_LEN)
        return TC_ERR_CRYPTO;
    return 0;
}

bool tc_store_secret_matches(const uint8_t hash[TC_STORE_HASH_LEN], const uint8_t *secret,
                             size_t len)
{
    uint8_t h[TC_STORE_HASH_LEN];
    bool ok =
        tc_store_secret_hash(secret, len, h) == 0 && CRYPTO_memcmp(h, hash, TC_STORE_HASH_LEN) == 0;
    OPENSSL_cleanse(h, sizeof(h));
    return ok;
}
