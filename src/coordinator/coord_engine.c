/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The continuous attestation engine: ONE thread drives every challenge,
 * webhook delivery and revocation notice through one tc_httpc (libcurl multi).
 *
 * Each node is challenged at its own phase of the interval (a min-heap of due times):
 * `POST {agent_url}/v1/quote` with a fresh nonce; a node whose previous challenge is still in
 * flight skips that slot (rounds of one node never overlap). Answers are appraised as they
 * arrive, but their rounds are recorded in batches: ONE store transaction per FLUSH_MS (or per
 * FLUSH_MAX answers), which keeps the store fast without holding an answer for long. State
 * changes fan out as notices to the other agents; waiting event long-polls are answered after
 * each batch. Webhook deliveries go through the same client. Per-request timeouts (which start
 * when the request gets a connection, see httpc.h) keep a dead node from delaying anyone.
 *
 * The engine keeps a little state outside struct coord (answers waiting for their batch, the
 * schedule): one coordinator per process.
 */
#define LOGMODULE "engine"
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "coordinator/coord.h"
#include "trustcloud/appraisal.h"
#include "trustcloud/batch.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/eventlog.h"
#include "trustcloud/log.h"
#include "trustcloud/mb_policy.h"
#include "trustcloud/runtime_policy.h"

#define IDLE_MS 50 /* longest wait of the loop: deliveries, waiters' deadlines */
#define FLUSH_MS 5 /* an answer waits at most this long for its batch to be recorded */
#define FLUSH_MAX 2000
#define QUOTE_MAX_BODY (16u << 20)
#define DELIVERIES_PER_TICK 256
#define EVENTS_PER_ANSWER 1000
/* Recording while the store fails (disk full, I/O errors): the rounds wait in memory, in order,
 * and are retried every RETRY_MS; past BACKLOG_MAX rounds the uneventful ones are summarised
 * (state changes are always kept). An outage is logged at error level when it starts, every
 * OUTAGE_LOG_MS while it lasts, and when it ends. */
#define RETRY_MS 250
#define BACKLOG_MAX 1000000
#define OUTAGE_LOG_MS 10000
/* Webhook outcomes that could not be written to the store are kept in memory (never resent
 * while known delivered, never retried before their backoff) up to this many. */
#define DNOTES_MAX 65536

/* ---- policies ----------------------------------------------------------------------------- */

struct coord_policy_cache {
    struct coord_policy_cache *next;
    char name[TC_STORE_ID_MAX + 1];
    int64_t version;
    enum tc_policy_kind kind;
    bool seen;              /* still listed by the store (refresh bookkeeping) */
    struct tc_reason error; /* code != 0: the stored body does not parse */
    struct tc_mb_policy *mb;
    struct tc_runtime_policy *rt;
    struct tc_pcr_set pcrs;
};

static void policy_free(struct coord_policy_cache *p)
{
    if (!p)
        return;
    tc_mb_policy_free(p->mb);
    tc_runtime_policy_free(p->rt);
    free(p);
}

static struct coord_policy_cache *policy_find(struct coord *c, const char *name)
{
    for (struct coord_policy_cache *p = c->policies; p; p = p->next)
        if (strcmp(p->name, name) == 0)
            return p;
    return NULL;
}

/* Parses a stored policy body of its kind (also used to validate POST /v1/policies). */
int coord_policy_parse(enum tc_policy_kind kind, const char *body, size_t len,
                       struct tc_mb_policy **mb, struct tc_runtime_policy **rt,
                       struct tc_pcr_set *pcrs, struct tc_reason *why)
{
    int rc = 0;
    switch (kind) {
    case TC_POLICY_MEASURED_BOOT:
        rc = tc_mb_policy_from_json(body, len, mb, why);
        break;
    case TC_POLICY_RUNTIME:
        rc = tc_runtime_policy_parse((const uint8_t *)body, len, rt, why);
        break;
    case TC_POLICY_PCR: {
        json_error_t jerr;
        json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
        tc_pcrs_init(pcrs);
        if (!j || !json_is_object(j) || tc_pcrs_from_json(j, pcrs) != 0 || pcrs->nbanks == 0)
            rc = tc_fail(why, TC_ERR_FORMAT, "pcr.policy", -1,
                         "a PCR policy is {\"sha256\": {\"0\": \"hex\", ...}}");
        json_decref(j);
        break;
    }
    default:
        rc = tc_fail(why, TC_ERR_FORMAT, "policy.kind", -1, "unknown policy kind");
    }
    return rc;
}

struct policy_list_ctx {
    struct coord *c;
    struct {
        char name[TC_STORE_ID_MAX + 1];
        int64_t version;
        enum tc_policy_kind kind;
    } * items;
    size_t n, cap;
};

static int policy_list_cb(void *arg, const char *name, int64_t version, enum tc_policy_kind kind)
{
    struct policy_list_ctx *x = arg;
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 16;
        void *g = realloc(x->items, cap * sizeof(*x->items));
        if (!g)
            return TC_ERR_ALLOC;
        x->items = g;
        x->cap = cap;
    }
    snprintf(x->items[x->n].name, sizeof(x->items[x->n].name), "%s", name);
    x->items[x->n].version = version;
    x->items[x->n].kind = kind;
    x->n++;
    return 0;
}

/* Brings the cache to the store's current versions: a new version is parsed once and picked up
 * by every node at its next round, without re-enrollment. */
static void policies_refresh(struct coord *c)
{
    struct policy_list_ctx x = {.c = c};
    int rc = tc_store_policy_list(c->store, policy_list_cb, &x);
    if (rc) {
        LOG_ERROR("cannot list policies: %s", tc_strerror(rc));
        free(x.items);
        return;
    }
    for (struct coord_policy_cache *p = c->policies; p; p = p->next)
        p->seen = false;
    for (size_t i = 0; i < x.n; i++) {
        struct coord_policy_cache *p = policy_find(c, x.items[i].name);
        if (p && p->version == x.items[i].version) {
            p->seen = true;
            continue;
        }
        struct coord_policy_cache *np = calloc(1, sizeof(*np));
        struct tc_store_policy sp;
        memset(&sp, 0, sizeof(sp));
        if (!np)
            continue;
        snprintf(np->name, sizeof(np->name), "%s", x.items[i].name);
        np->kind = x.items[i].kind;
        np->seen = true;
        if ((rc = tc_store_policy_get(c->store, np->name, 0, &sp)) != 0) {
            tc_fail(&np->error, rc, "policy.load", -1, "cannot load policy %s", np->name);
        } else {
            np->version = sp.version;
            if (coord_policy_parse(np->kind, sp.body, sp.body_len, &np->mb, &np->rt, &np->pcrs,
                                   &np->error) == 0)
                tc_reason_clear(&np->error);
            tc_store_policy_release(&sp);
        }
        /* Replace in place so nodes holding the name see the new version. */
        if (p) {
            struct coord_policy_cache **pp = &c->policies;
            while (*pp != p)
                pp = &(*pp)->next;
            np->next = p->next;
            *pp = np;
            policy_free(p);
        } else {
            np->next = c->policies;
            c->policies = np;
        }
        LOG_INFO("policy %s (%s) version %lld loaded%s", np->name, tc_policy_kind_name(np->kind),
                 (long long)np->version, np->error.code ? " BUT DOES NOT PARSE" : "");
    }
    free(x.items);
}

void coord_engine_policies_changed(struct coord *c)
{
    c->assign_gen++;
    policies_refresh(c);
}

/* ---- nodes -------------------------------------------------------------------------------- */

struct coord_node {
    char id[TC_STORE_ID_MAX + 1];
    enum tc_node_state state;
    char url[TC_STORE_URL_MAX + 1];
    char pin[80]; /* libcurl pin, "" = CA check only (load-test imports) */
    struct tc_reason reason;
    uint32_t missed;
    uint64_t last_round;  /* highest round appraised (recorded or waiting in the backlog) */
    uint32_t unrecorded;  /* rounds of this node in the backlog, not yet in the store */
    size_t bl_newest;     /* backlog index of its newest such round (valid while unrecorded) */
    uint8_t *ak_pub;
    size_t ak_pub_len;
    struct tc_ak *ak; /* parsed once */
    bool has_quote;
    struct tc_quote_info prev;
    struct tc_ima_replay_state ima;
    struct tc_evlog *evlog; /* NULL: ask for the boot log */
    bool reboot_pending;    /* reset counter moved: ask again for the log and IMA from 0 */
    /* Policies: names resolved when policy_gen != c->assign_gen. */
    uint64_t policy_gen;
    char mb_name[TC_STORE_ID_MAX + 1], pcr_name[TC_STORE_ID_MAX + 1], rt_name[TC_STORE_ID_MAX + 1];
    /* Scheduling. */
    int64_t next_at;
    uint32_t sched_gen; /* heap entries with another generation are stale */
    bool in_flight, deleted;
    uint8_t nonce[32];
    bool asked_evlog;
    uint64_t asked_ima_from;
    /* VMs (docs/protocol.md, "Virtual machines"): a VM is never challenged itself; its host's
     * challenge lists it and the host's answer carries its quote in the batch. */
    bool is_vm;
    bool vm_stopped; /* stopped through the API: not asked for */
    /* VM whose guest owns its vTPM, without an AK yet (coord_vm_guest_enroll). */
    bool guest_enrolling;  /* an attempt is in flight */
    bool guest_no_channel; /* its host says it has no guest channel: not tried again */
    int64_t guest_next_at; /* no attempt before (ms) */
    char host[TC_STORE_ID_MAX + 1];
    char tenant[TC_STORE_ID_MAX + 1]; /* VM: its owner (scopes the event stream) */
    int64_t created;                  /* store time of creation (events before it are not its) */
    struct coord_node **vms;          /* host: its VMs (rebuilt when vm_links_dirty) */
    size_t nvms, vms_cap;
    struct coord_node **asked; /* host: the VMs listed in the challenge in flight */
    size_t nasked, asked_cap;
    json_t *evidence; /* VM: its last quoted round, verifiable alone (coord_vm_evidence) */
    long batch_pos;   /* VM: its entry in the host's answer being appraised, or -1 */
    /* Answer (written by the httpc callback on the engine thread). */
    struct coord_node *done_next;
    int status;
    long http_code;
    uint8_t *body;
    size_t body_len;
};

static void node_free(struct coord_node *n)
{
    if (!n)
        return;
    free(n->ak_pub);
    free(n->vms);
    free(n->asked);
    json_decref(n->evidence);
    tc_ak_free(n->ak);
    tc_evlog_free(n->evlog);
    free(n->body);
    free(n);
}

static struct coord_node *node_find(struct coord *c, const char *id)
{
    for (size_t i = 0; i < c->nnodes; i++)
        if (!c->nodes[i]->deleted && strcmp(c->nodes[i]->id, id) == 0)
            return c->nodes[i];
    return NULL;
}

/* Spreads first challenges over one interval so a restart does not send them all at once. */
static int64_t mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int64_t phase(const struct coord *c, const char *id)
{
    uint32_t h = 2166136261u;
    for (const char *p = id; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return (int64_t)(h % (uint32_t)c->cfg->interval_ms);
}

/* ---- schedule: a min-heap of (due time, node) ---------------------------------------------- */

struct sched_ent {
    int64_t at;
    struct coord_node *n;
    uint32_t gen;
};

/* Engine state outside struct coord, under c->lock (one coordinator per process). */
static struct {
    struct sched_ent *v;
    size_t n, cap;
} sched;

static void sched_sift_up(size_t i)
{
    struct sched_ent e = sched.v[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (sched.v[p].at <= e.at)
            break;
        sched.v[i] = sched.v[p];
        i = p;
    }
    sched.v[i] = e;
}

static void sched_sift_down(size_t i)
{
    struct sched_ent e = sched.v[i];
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        int64_t best = e.at;
        if (l < sched.n && sched.v[l].at < best)
            m = l, best = sched.v[l].at;
        if (l + 1 < sched.n && sched.v[l + 1].at < best)
            m = l + 1;
        if (m == i)
            break;
        sched.v[i] = sched.v[m];
        i = m;
    }
    sched.v[i] = e;
}

/* Puts n at its next_at; an older entry of n becomes stale (skipped when it comes up). */
static void sched_push(struct coord_node *n)
{
    if (sched.n == sched.cap) {
        size_t cap = sched.cap ? sched.cap * 2 : 256;
        void *g = realloc(sched.v, cap * sizeof(*sched.v));
        if (!g) {
            LOG_ERROR("out of memory: node %s is no longer scheduled", n->id);
            return;
        }
        sched.v = g;
        sched.cap = cap;
    }
    n->sched_gen++;
    sched.v[sched.n] = (struct sched_ent){.at = n->next_at, .n = n, .gen = n->sched_gen};
    sched_sift_up(sched.n++);
}

static void sched_pop(void)
{
    sched.v[0] = sched.v[--sched.n];
    if (sched.n)
        sched_sift_down(0);
}

static void schedule(struct coord_node *n, int64_t at)
{
    n->next_at = at;
    sched_push(n);
}

/* After nodes were freed: one entry per remaining node. */
static void sched_rebuild(struct coord *c)
{
    sched.n = 0;
    for (size_t i = 0; i < c->nnodes; i++)
        sched_push(c->nodes[i]);
}

static void sched_release(void)
{
    free(sched.v);
    memset(&sched, 0, sizeof(sched));
}

/* Copies what the engine needs from a stored node (no store calls: also used in list walks). */
/* Some VM appeared, vanished or moved: the hosts' VM lists are rebuilt before the next
 * challenge (engine thread, under c->lock). */
static bool vm_links_dirty = true;

static void vm_links_rebuild(struct coord *c)
{
    if (!vm_links_dirty)
        return;
    vm_links_dirty = false;
    for (size_t i = 0; i < c->nnodes; i++)
        c->nodes[i]->nvms = 0;
    for (size_t i = 0; i < c->nnodes; i++) {
        struct coord_node *v = c->nodes[i];
        if (!v->is_vm || v->deleted)
            continue;
        struct coord_node *h = node_find(c, v->host);
        if (!h || h->is_vm)
            continue;
        if (h->nvms == h->vms_cap) {
            size_t cap = h->vms_cap ? h->vms_cap * 2 : 8;
            void *g = realloc(h->vms, cap * sizeof(*h->vms));
            if (!g) {
                vm_links_dirty = true; /* try again next time */
                continue;
            }
            h->vms = g;
            h->vms_cap = cap;
        }
        h->vms[h->nvms++] = v;
    }
}

static int node_fill(struct coord *c, struct coord_node *n, const struct tc_store_node *s)
{
    snprintf(n->id, sizeof(n->id), "%s", s->id);
    n->state = s->state;
    if (s->is_vm != n->is_vm || strcmp(n->host, s->host) != 0)
        vm_links_dirty = true;
    n->is_vm = s->is_vm;
    snprintf(n->host, sizeof(n->host), "%s", s->host);
    snprintf(n->tenant, sizeof(n->tenant), "%s", s->tenant);
    n->created = s->created;
    n->vm_stopped =
        s->is_vm && s->state == TC_NODE_UNREACHABLE && strcmp(s->reason.check, "vm.stopped") == 0;
    n->guest_no_channel = false; /* the VM changed (started, say): its host is asked again */
    snprintf(n->url, sizeof(n->url), "%s", s->agent_url);
    size_t ul = strlen(n->url);
    while (ul > 0 && n->url[ul - 1] == '/')
        n->url[--ul] = '\0';
    n->pin[0] = '\0';
    if (s->tls_cert_fp[0] && coord_pin_curl(s->tls_cert_fp, n->pin, sizeof(n->pin)) != 0)
        LOG_WARN("node %s: unusable TLS pin, its challenges will fail", s->id);
    n->reason = s->reason;
    n->missed = s->missed;
    /* Rounds waiting in the backlog are numbered past what the store has recorded. */
    if (!n->unrecorded || s->last_round > n->last_round)
        n->last_round = s->last_round;
    if (!n->ak_pub && s->ak_pub.data) {
        if (!(n->ak_pub = malloc(s->ak_pub.len)))
            return TC_ERR_ALLOC;
        memcpy(n->ak_pub, s->ak_pub.data, s->ak_pub.len);
        n->ak_pub_len = s->ak_pub.len;
    }
    if (!n->has_quote && s->has_quote) {
        n->has_quote = true;
        memset(&n->prev, 0, sizeof(n->prev));
        n->prev.reset_count = s->reset_count;
        n->prev.restart_count = s->restart_count;
        n->prev.clock = s->clock;
    }
    if (s->ima_state.data) {
        if (coord_ima_state_decode(s->ima_state.data, s->ima_state.len, &n->ima) != 0) {
            LOG_WARN("node %s: stored IMA state unreadable, replaying from zero", s->id);
            tc_ima_replay_init(&n->ima, NULL, 0, 0);
        }
    } else if (n->ima.pcrs.nbanks == 0) {
        tc_ima_replay_init(&n->ima, NULL, 0, 0);
    }
    return 0;
}

static int node_add(struct coord *c, struct coord_node *n)
{
    if (c->nnodes == c->nodes_cap) {
        size_t cap = c->nodes_cap ? c->nodes_cap * 2 : 64;
        void *g = realloc(c->nodes, cap * sizeof(*c->nodes));
        if (!g)
            return TC_ERR_ALLOC;
        c->nodes = g;
        c->nodes_cap = cap;
    }
    c->nodes[c->nnodes++] = n;
    return 0;
}

static int load_cb(void *arg, const struct tc_store_node *s)
{
    struct coord *c = arg;
    struct coord_node *n = calloc(1, sizeof(*n));
    int rc;
    if (!n)
        return TC_ERR_ALLOC;
    if ((rc = node_fill(c, n, s)) != 0 || (rc = node_add(c, n)) != 0) {
        node_free(n);
        return rc;
    }
    schedule(n, tc_store_now_ms() + phase(c, n->id));
    return 0;
}

int coord_engine_load(struct coord *c)
{
    /* Nodes start at policy_gen 0: a non-zero generation makes each resolve its policies at its
     * first round (also after a restart). */
    if (c->assign_gen == 0)
        c->assign_gen = 1;
    int rc = tc_store_node_list(c->store, load_cb, c);
    if (rc == 0)
        rc = tc_store_events_last_seq(c->store, &c->last_seq_seen);
    policies_refresh(c);
    return rc;
}

int coord_engine_node_upsert(struct coord *c, const char *id)
{
    struct tc_store_node s;
    memset(&s, 0, sizeof(s));
    int rc = tc_store_node_get(c->store, id, &s);
    if (rc)
        return rc;
    struct coord_node *n = node_find(c, id);
    if (n) {
        rc = node_fill(c, n, &s);
    } else if (!(n = calloc(1, sizeof(*n)))) {
        rc = TC_ERR_ALLOC;
    } else if ((rc = node_fill(c, n, &s)) != 0 || (rc = node_add(c, n)) != 0) {
        node_free(n);
    } else {
        schedule(n, tc_store_now_ms()); /* attest a new node at once */
        n->policy_gen = c->assign_gen - 1;
    }
    tc_store_node_release(&s);
    return rc;
}

static bool deleted_pending; /* a node was removed: reap_deleted has work (under c->lock) */

void coord_engine_guest_enrolled(struct coord *c, const char *id, bool ok, bool no_channel)
{
    struct coord_node *n = node_find(c, id);
    if (!n)
        return;
    n->guest_enrolling = false;
    n->guest_no_channel = no_channel;
    /* A failed attempt is repeated one interval later (a booting guest answers in seconds). */
    n->guest_next_at = ok ? 0 : tc_store_now_ms() + c->cfg->interval_ms;
}

void coord_engine_node_remove(struct coord *c, const char *id)
{
    struct coord_node *n = node_find(c, id);
    if (n) {
        n->deleted = true; /* freed by the engine once no request refers to it */
        deleted_pending = true;
        vm_links_dirty = true;
    }
}

struct names_ctx {
    struct coord *c;
    struct coord_node *n;
};

static int names_cb(void *arg, const char *policy)
{
    struct names_ctx *x = arg;
    struct coord_policy_cache *p = policy_find(x->c, policy);
    if (!p)
        return 0;
    char *slot = p->kind == TC_POLICY_MEASURED_BOOT ? x->n->mb_name
                 : p->kind == TC_POLICY_RUNTIME     ? x->n->rt_name
                                                    : x->n->pcr_name;
    if (slot[0] == '\0') /* several of one kind: the first by name applies */
        snprintf(slot, TC_STORE_ID_MAX + 1, "%s", policy);
    return 0;
}

static void node_resolve_policies(struct coord *c, struct coord_node *n)
{
    if (n->policy_gen == c->assign_gen)
        return;
    n->mb_name[0] = n->pcr_name[0] = n->rt_name[0] = '\0';
    struct names_ctx x = {c, n};
    int rc = tc_store_node_policies(c->store, n->id, names_cb, &x);
    if (rc && rc != TC_ERR_NOT_FOUND)
        LOG_WARN("node %s: cannot read its policies: %s", n->id, tc_strerror(rc));
    else
        n->policy_gen = c->assign_gen;
}

/* ---- challenges ---------------------------------------------------------------------------- */

/* Answers not processed yet (engine thread only): how many, and when the oldest arrived. */
static struct coord_node *done_list;
static size_t done_count;
static int64_t done_first_ms;

static void quote_done(void *arg, int status, long http_code, const uint8_t *body, size_t len)
{
    struct coord_node *n = arg;
    n->status = status;
    n->http_code = http_code;
    free(n->body);
    n->body = NULL;
    n->body_len = 0;
    if (status == 0 && http_code == 200 && (n->body = malloc(len + 1)) != NULL) {
        memcpy(n->body, body, len);
        n->body[len] = '\0';
        n->body_len = len;
    }
    if (!done_list)
        done_first_ms = tc_store_now_ms();
    n->done_next = done_list;
    done_list = n;
    done_count++;
}

static int challenge(struct coord *c, struct coord_node *n)
{
    char url[TC_STORE_URL_MAX + 16], nonce_hex[65];
    if (RAND_bytes(n->nonce, sizeof(n->nonce)) != 1)
        return TC_ERR_CRYPTO;
    tc_hex_encode(n->nonce, sizeof(n->nonce), nonce_hex);
    n->asked_evlog = n->evlog == NULL || n->reboot_pending;
    n->asked_ima_from = n->reboot_pending ? 0 : n->ima.count;
    char *body = NULL;
    json_t *j =
        json_pack("{s:s, s:s, s:I, s:b}", "nonce", nonce_hex, "pcr_selection", c->selection_text,
                  "ima_from", (json_int_t)n->asked_ima_from, "want_eventlog", n->asked_evlog);
    /* The host's running, attestable VMs ride on its challenge (one host quote for all). */
    n->nasked = 0;
    if (j && n->nvms > 0) {
        json_t *arr = json_array();
        if (n->asked_cap < n->nvms) {
            free(n->asked);
            n->asked = calloc(n->nvms, sizeof(*n->asked));
            n->asked_cap = n->asked ? n->nvms : 0;
        }
        int64_t now = tc_store_now_ms();
        for (size_t i = 0; arr && n->asked && i < n->nvms && n->nasked < TC_BATCH_MAX_VMS; i++) {
            struct coord_node *v = n->vms[i];
            if (v->deleted || v->vm_stopped || v->in_flight || v->state == TC_NODE_PENDING_APPROVAL)
                continue;
            if (!v->ak_pub) {
                /* A guest that owns its vTPM enrolls its AK first (through this host, which
                 * must be trusted): no quote can be checked before. */
                if (!v->guest_enrolling && !v->guest_no_channel && now >= v->guest_next_at &&
                    n->state == TC_NODE_TRUSTED) {
                    v->guest_enrolling = coord_vm_guest_enroll(c, v->id) == 0;
                    if (!v->guest_enrolling)
                        v->guest_next_at = now + c->cfg->interval_ms;
                }
                continue;
            }
            v->asked_evlog = v->evlog == NULL || v->reboot_pending;
            v->asked_ima_from = v->reboot_pending ? 0 : v->ima.count;
            json_array_append_new(arr, json_pack("{s:s, s:I, s:b}", "id", v->id, "ima_from",
                                                 (json_int_t)v->asked_ima_from, "want_eventlog",
                                                 v->asked_evlog));
            v->in_flight = true;
            n->asked[n->nasked++] = v;
        }
        if (arr && n->nasked > 0) {
            json_object_set_new(j, "vms", arr);
            json_object_set_new(j, "vm_pcr_selection", json_string(c->selection_text));
        } else {
            json_decref(arr);
        }
    }
    if (!j || !(body = json_dumps(j, JSON_COMPACT))) {
        json_decref(j);
        for (size_t i = 0; i < n->nasked; i++)
            n->asked[i]->in_flight = false;
        n->nasked = 0;
        return TC_ERR_ALLOC;
    }
    json_decref(j);
    snprintf(url, sizeof(url), "%s/v1/quote", n->url);
    struct tc_httpc_req r = {.method = "POST",
                             .url = url,
                             .content_type = "application/json",
                             .body = body,
                             .len = strlen(body),
                             .timeout_ms = c->cfg->request_timeout_ms,
                             .pinned_pubkey = n->pin[0] ? n->pin : NULL,
                             .cb = quote_done,
                             .arg = n};
    int rc = tc_httpc_submit_req(c->httpc, &r);
    free(body);
    if (rc) {
        for (size_t i = 0; i < n->nasked; i++)
            n->asked[i]->in_flight = false;
        n->nasked = 0;
    }
    return rc;
}

/* ---- appraisal of one answer ------------------------------------------------------------ */

struct pending_round {
    struct tc_store_round r;
    struct coord_node *n;
    enum tc_node_state old_state;
    uint8_t *ima_state; /* owned */
    uint8_t *eventlog;  /* owned */
};

static int b64_field(const json_t *o, const char *key, size_t max, uint8_t **out, size_t *len)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        return TC_ERR_NOT_FOUND;
    return coord_b64_decode(json_string_value(v), json_string_length(v), max, out, len);
}

/* Fills pr from one piece of evidence (a node's answer, or one VM entry of its batch) with
 * the quote's expected qualifying data. Returns 1 when no round is recorded (the node must be
 * asked again at once, e.g. for its boot log after a reboot). */
static int appraise_evidence(struct coord *c, struct coord_node *n, const json_t *j,
                             const uint8_t *nonce, size_t nonce_len, struct pending_round *pr)
{
    struct tc_reason *why = &pr->r.reason;
    uint8_t *attest = NULL, *sig = NULL, *evraw = NULL, *imaraw = NULL;
    size_t attest_len = 0, sig_len = 0, evlen = 0, imalen = 0;
    struct tc_evlog *evlog = NULL;
    struct tc_ima_log *ima = NULL;
    struct tc_pcr_set pcrs;
    struct tc_appraisal a;
    int again = 0;
    memset(&a, 0, sizeof(a));
    if (b64_field(j, "attest", TC_QUOTE_MAX_ATTEST, &attest, &attest_len) ||
        b64_field(j, "signature", TC_QUOTE_MAX_SIG, &sig, &sig_len) ||
        !json_is_object(json_object_get(j, "pcrs")) ||
        tc_pcrs_from_json(json_object_get(j, "pcrs"), &pcrs) != 0) {
        tc_fail(why, TC_ERR_FORMAT, "agent.response", -1,
                "answer lacks a valid attest, signature or pcrs");
        goto out;
    }
    int rc = b64_field(j, "eventlog", TC_STORE_EVENTLOG_MAX, &evraw, &evlen);
    if (rc && rc != TC_ERR_NOT_FOUND) {
        tc_fail(why, rc, "agent.response", -1, "eventlog is not valid base64 within %u bytes",
                TC_STORE_EVENTLOG_MAX);
        goto out;
    }
    json_t *jima = json_object_get(j, "ima");
    json_int_t ima_first = 0;
    if (jima && !json_is_null(jima)) {
        json_t *jf = json_object_get(jima, "first");
        if (!json_is_object(jima) || !json_is_integer(jf) || json_integer_value(jf) < 0 ||
            (rc = b64_field(jima, "list", QUOTE_MAX_BODY, &imaraw, &imalen)) != 0) {
            tc_fail(why, TC_ERR_FORMAT, "agent.response", -1,
                    "ima must be {\"first\": n, \"list\": \"b64\"}");
            goto out;
        }
        ima_first = json_integer_value(jf);
    }

    /* A reboot (reset counter moved) is not a failure: the boot log is re-verified and the IMA
     * replay restarts from zero, so both must come with this answer. */
    struct tc_quote_info qi;
    bool rebooted = false;
    if (n->has_quote && tc_quote_parse(attest, attest_len, &qi, NULL) == 0 &&
        qi.reset_count != n->prev.reset_count)
        rebooted = true;
    /* A reboot whose first appraisal failed (say, the guest's IMA list was not restarted yet)
     * stays a reboot until a round succeeds: replay from zero, not from the old point. */
    if (n->reboot_pending && n->asked_ima_from == 0 && n->asked_evlog)
        rebooted = true;
    if (rebooted && (!evraw || (imaraw && ima_first != 0))) {
        if (!n->asked_evlog || n->asked_ima_from != 0) {
            n->reboot_pending = true;
            again = 1;
            goto out;
        }
        if (!n->is_vm || (imaraw && ima_first != 0)) {
            tc_fail(why, TC_ERR_POLICY, "boot.no_eventlog", -1,
                    "the node rebooted but did not send its boot log and full IMA list");
            goto out;
        }
        /* A guest without a boot log (no measured firmware): its IMA list restarts alone. */
        tc_evlog_free(n->evlog);
        n->evlog = NULL;
    }
    if (evraw && tc_evlog_parse(evraw, evlen, &evlog, why) != 0)
        goto out;
    struct tc_ima_replay_state st = n->ima;
    if (rebooted)
        tc_ima_replay_init(&st, NULL, 0, st.flags);
    if (imaraw) {
        struct tc_ima_parse_opts po = {.format = TC_IMA_FMT_BINARY,
                                       .first_index = (size_t)ima_first};
        if (tc_ima_log_parse(imaraw, imalen, &po, &ima, why) != 0)
            goto out;
    }

    node_resolve_policies(c, n);
    struct coord_policy_cache *mb = n->mb_name[0] ? policy_find(c, n->mb_name) : NULL;
    struct coord_policy_cache *pp = n->pcr_name[0] ? policy_find(c, n->pcr_name) : NULL;
    struct coord_policy_cache *rp = n->rt_name[0] ? policy_find(c, n->rt_name) : NULL;
    struct coord_policy_cache *bad = mb && mb->error.code   ? mb
                                     : pp && pp->error.code ? pp
                                     : rp && rp->error.code ? rp
                                                            : NULL;
    if (bad) {
        tc_fail(why, TC_ERR_POLICY, "policy.invalid", -1, "policy %s v%lld does not parse: %s",
                bad->name, (long long)bad->version, bad->error.detail);
        goto out;
    }
    if (rp && !ima) {
        tc_fail(why, TC_ERR_POLICY, "ima.missing", -1,
                "a runtime policy applies but the agent sent no IMA list");
        goto out;
    }
    if (!n->ak) {
        struct tc_reason akwhy;
        if (tc_ak_from_tpm2b_public(n->ak_pub, n->ak_pub_len, &n->ak, &akwhy) != 0) {
            *why = akwhy;
            goto out;
        }
    }
    struct tc_appraisal_input in = {
        .ak = n->ak,
        .attest = attest,
        .attest_len = attest_len,
        .sig = sig,
        .sig_len = sig_len,
        .pcrs = &pcrs,
        .expect = {.nonce = nonce,
                   .nonce_len = nonce_len,
                   .selection = &c->selection,
                   .previous = n->has_quote ? &n->prev : NULL},
        .eventlog = evlog ? evlog : n->evlog,
        .mb_policy = mb ? mb->mb : NULL,
        .pcr_policy = pp ? &pp->pcrs : NULL,
        .ima = ima,
        .ima_state = &st,
        .runtime_policy = rp ? rp->rt : NULL,
    };
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    rc = tc_appraise(&in, &a);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    c->stat_appraisals++;
    c->stat_appraise_ms +=
        (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    if (a.quote_ok) {
        n->has_quote = true;
        n->prev = a.quote;
        pr->r.has_quote = true;
        pr->r.reset_count = a.quote.reset_count;
        pr->r.restart_count = a.quote.restart_count;
        pr->r.clock = a.quote.clock;
        pr->r.ima_count = n->ima.count;
    }
    if (rc == 0) {
        n->reboot_pending = false;
        if (evlog) {
            tc_evlog_free(n->evlog);
            n->evlog = evlog;
            evlog = NULL;
            pr->eventlog = evraw;
            pr->r.eventlog = evraw;
            pr->r.eventlog_len = evlen;
            evraw = NULL;
        }
        if (ima || rebooted) {
            n->ima = st;
            if (coord_ima_state_encode(&n->ima, &pr->ima_state, &pr->r.ima_state_len) == 0)
                pr->r.ima_state = pr->ima_state;
        }
        pr->r.ima_count = n->ima.count;
        tc_reason_clear(why);
        pr->r.state = TC_NODE_TRUSTED;
        goto out_ok;
    }
    *why = a.why;
    if (rebooted)
        n->reboot_pending = true;
    /* A boot log that failed is asked for again next round. */
    if (strncmp(why->check, "boot.", 5) == 0 || strncmp(why->check, "mb.", 3) == 0 ||
        strncmp(why->check, "eventlog.", 9) == 0) {
        tc_evlog_free(n->evlog);
        n->evlog = NULL;
    }
out:
    if (!again && pr->r.reason.code == 0)
        tc_fail(why, TC_ERR_INTERNAL, "coordinator", -1, "appraisal failed without a reason");
    pr->r.state = TC_NODE_UNTRUSTED;
out_ok:
    free(attest);
    free(sig);
    free(evraw);
    free(imaraw);
    tc_evlog_free(evlog);
    tc_ima_log_free(ima);
    return again;
}

/* ---- hosts and their VMs (the batch deep quote) ------------------------------------------- */

static void round_init(struct pending_round *p, struct coord_node *nd, int64_t now)
{
    memset(p, 0, sizeof(*p));
    p->n = nd;
    p->old_state = nd->state;
    p->r.node_id = nd->id;
    p->r.ts = now;
}

/* The verdict takes effect in memory at once (whether or not the store can record it). */
static void round_commit(struct pending_round *p)
{
    p->r.round = ++p->n->last_round;
    p->r.missed = p->n->missed;
    p->n->state = p->r.state;
    p->n->reason = p->r.reason;
}

/* The VMs asked in a round whose host gave no usable evidence follow the host: unreachable
 * with it, untrusted with it; a mere miss records nothing for them. Returns the rounds written
 * to vp (at most host->nasked). */
static size_t vms_follow_host(struct coord_node *host, const struct pending_round *hp,
                              struct pending_round *vp, int64_t now)
{
    size_t k = 0;
    for (size_t i = 0; i < host->nasked; i++) {
        struct coord_node *v = host->asked[i];
        v->in_flight = false;
        if (v->deleted || v->vm_stopped ||
            (hp->r.state != TC_NODE_UNREACHABLE && hp->r.state != TC_NODE_UNTRUSTED))
            continue;
        struct pending_round *p = &vp[k++];
        round_init(p, v, now);
        if (hp->r.state == TC_NODE_UNREACHABLE) {
            p->r.state = TC_NODE_UNREACHABLE;
            tc_fail(&p->r.reason, TC_ERR_IO, "host.unreachable", -1, "host %s is unreachable",
                    host->id);
        } else {
            p->r.state = TC_NODE_UNTRUSTED;
            tc_fail(&p->r.reason, TC_ERR_POLICY, "host.untrusted", -1, "host %s: %s: %s", host->id,
                    hp->r.reason.check, hp->r.reason.detail);
        }
        v->missed = 0;
        round_commit(p);
    }
    host->nasked = 0;
    return k;
}

/* What a tenant needs to check a VM's round without trusting the coordinator's verdict: the VM's
 * quote, its inclusion proof, the host quote over the root, the nonce and both AKs
 * (docs/protocol.md, "VM evidence"). Kept in memory, one round per VM, with the host's quoted PCR
 * values (shared with the host's other VMs): operators get them, the API strips them from a
 * tenant's copy (evidence_for_tenant in coord_vm.c). */
static void keep_evidence(struct coord *c, struct coord_node *host, struct coord_node *v,
                          const json_t *host_answer, const json_t *entry, const struct tc_batch *b,
                          const struct tc_batch_vm *e, const struct pending_round *p)
{
    char nonce_hex[65], root_hex[65];
    (void)c;
    tc_hex_encode(host->nonce, sizeof(host->nonce), nonce_hex);
    tc_hex_encode(b->root, sizeof(b->root), root_hex);
    char *host_ak = coord_b64_encode(host->ak_pub, host->ak_pub_len);
    char *vm_ak = coord_b64_encode(v->ak_pub, v->ak_pub_len);
    json_t *ev = host_ak && vm_ak
                     ? json_pack("{s:s, s:s, s:I, s:I, s:s, s:s, s:{s:s, s:s, s:O, s:O, s:O}, "
                                 "s:{s:s, s:s, s:O, s:O, s:O*}, s:{s:s, s:I, s:I, s:O}}",
                                 "format", "trustcloud-vm-evidence-v1", "nonce", nonce_hex, "round",
                                 (json_int_t)p->r.round, "ts", (json_int_t)p->r.ts, "vm_state",
                                 tc_node_state_name(p->r.state), "host_state",
                                 "trusted", /* VMs are appraised only in a host's good round */
                                 "vm", "id", v->id, "ak_pub", vm_ak, "attest",
                                 json_object_get(entry, "attest"), "signature",
                                 json_object_get(entry, "signature"), "pcrs",
                                 json_object_get(entry, "pcrs"), "host", "id", host->id, "ak_pub",
                                 host_ak, "attest", json_object_get(host_answer, "attest"),
                                 "signature", json_object_get(host_answer, "signature"), "pcrs",
                                 json_object_get(host_answer, "pcrs"), "batch", "root", root_hex,
                                 "count", (json_int_t)b->count, "index", (json_int_t)e->index,
                                 "proof", json_object_get(entry, "proof"))
                     : NULL;
    free(host_ak);
    free(vm_ak);
    if (!ev)
        return; /* a quote entry the parser accepted has all of these; out of memory otherwise */
    json_decref(v->evidence);
    v->evidence = ev;
}

json_t *coord_vm_evidence(struct coord *c, const char *id)
{
    struct coord_node *v = node_find(c, id);
    return v && v->is_vm && v->evidence ? json_incref(v->evidence) : NULL;
}

static int node_id_cmp(const void *a, const void *b)
{
    return strcmp((*(struct coord_node *const *)a)->id, (*(struct coord_node *const *)b)->id);
}

/* The asked VM with this id (n->asked sorted by id), or NULL: O(log n) per entry, so a batch
 * of thousands of VMs is matched to its challenge without a quadratic scan. */
static struct coord_node *asked_find(struct coord_node *n, const char *id)
{
    size_t lo = 0, hi = n->nasked;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(n->asked[mid]->id, id);
        if (c == 0)
            return n->asked[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* A host's answer: its own evidence and, when its challenge listed VMs, their batch. pr is the
 * host's round; VM rounds go to vp (room for host->nasked), their number to *nvm. Returns 1
 * as appraise_evidence does (nothing recorded, for the host nor its VMs). */
static int appraise_host(struct coord *c, struct coord_node *n, struct pending_round *pr,
                         struct pending_round *vp, size_t *nvm, int64_t now)
{
    struct tc_reason *why = &pr->r.reason, tmp;
    struct tc_batch *b = NULL;
    uint8_t qd[32];
    const uint8_t *nonce = n->nonce;
    int again = 0;
    *nvm = 0;
    json_t *j = coord_json_parse(n->body, n->body_len, QUOTE_MAX_BODY, &tmp);
    if (!j) {
        tc_fail(why, TC_ERR_FORMAT, "agent.response", -1, "answer is not JSON: %s", tmp.detail);
        goto host_failed;
    }
    json_t *jb = json_object_get(j, "batch"), *jv = json_object_get(j, "vms");
    if (n->nasked == 0 && (jb || jv)) {
        tc_fail(why, TC_ERR_POLICY, "batch.unexpected_vm", -1,
                "the answer carries VM evidence although no VM was asked for");
        goto host_failed;
    }
    if (n->nasked > 0) {
        if (tc_batch_parse(jb, jv, &b, why) != 0)
            goto host_failed;
        /* Only the VMs this host is recorded to run: evidence of any other VM in its batch is
         * a host claiming a VM it does not run. */
        qsort(n->asked, n->nasked, sizeof(*n->asked), node_id_cmp);
        for (size_t k = 0; k < n->nasked; k++)
            n->asked[k]->batch_pos = -1;
        for (size_t i = 0; i < b->nvms; i++) {
            struct coord_node *v = asked_find(n, b->vms[i].id);
            if (!v) {
                tc_fail(why, TC_ERR_POLICY, "batch.unexpected_vm", (long)i,
                        "VM %s is not one this node runs", b->vms[i].id);
                goto host_failed;
            }
            v->batch_pos = (long)i; /* ids in a parsed batch are unique */
        }
        if (b->present) {
            if (tc_batch_qualifying_data(n->nonce, sizeof(n->nonce), b->root, qd) != 0) {
                tc_fail(why, TC_ERR_CRYPTO, "batch.qualifying_data", -1, "SHA-256 failed");
                goto host_failed;
            }
            nonce = qd;
        }
    }
    again = appraise_evidence(c, n, j, nonce, sizeof(n->nonce), pr);
    if (again) {
        for (size_t k = 0; k < n->nasked; k++)
            n->asked[k]->in_flight = false;
        n->nasked = 0;
        goto out;
    }
    if (pr->r.state != TC_NODE_TRUSTED) {
        *nvm = vms_follow_host(n, pr, vp, now);
        goto out;
    }
    /* The host is trusted in this very round: each VM now stands on its own evidence. */
    for (size_t k = 0; k < n->nasked; k++) {
        struct coord_node *v = n->asked[k];
        v->in_flight = false;
        /* Stopped (or deleted) through the API while this round was in flight: the round's
         * evidence predates that and must not overwrite it. */
        if (v->deleted || v->vm_stopped)
            continue;
        struct pending_round *p = &vp[*nvm];
        round_init(p, v, now);
        size_t pos = v->batch_pos >= 0 ? (size_t)v->batch_pos : 0;
        const struct tc_batch_vm *e = v->batch_pos >= 0 ? &b->vms[pos] : NULL;
        if (!e) {
            p->r.state = TC_NODE_UNTRUSTED;
            tc_fail(&p->r.reason, TC_ERR_POLICY, "batch.missing", -1,
                    "host %s sent no evidence for this VM", n->id);
        } else if (!e->quoted) {
            /* Not running, or its guest agent not there (or not in time): unreachable. What
             * a guest sent that is not evidence is untrusted, with the host agent's check. */
            bool stopped = strcmp(e->check, "vm.not_running") == 0 ||
                           strcmp(e->check, "guest.connect") == 0 ||
                           strcmp(e->check, "guest.deadline") == 0 ||
                           strcmp(e->check, "guest.closed") == 0;
            p->r.state = stopped ? TC_NODE_UNREACHABLE : TC_NODE_UNTRUSTED;
            tc_fail(&p->r.reason, stopped ? TC_ERR_IO : TC_ERR_POLICY, e->check, -1, "host %s: %s",
                    n->id, e->error ? e->error : "no quote");
        } else if (appraise_evidence(c, v, json_array_get(jv, pos), n->nonce, sizeof(n->nonce),
                                     p) == 1) {
            /* The vTPM was reset (VM rebooted) without its boot log: asked again next round. */
            free(p->ima_state);
            free(p->eventlog);
            continue;
        }
        v->missed = 0;
        round_commit(p);
        if (e && e->quoted)
            keep_evidence(c, n, v, j, json_array_get(jv, pos), b, e, p);
        (*nvm)++;
    }
    n->nasked = 0;
    goto out;
host_failed:
    pr->r.state = TC_NODE_UNTRUSTED;
    *nvm = vms_follow_host(n, pr, vp, now);
out:
    tc_batch_free(b);
    json_decref(j);
    return again;
}

/* ---- webhooks, notices, waiters --------------------------------------------------------- */

struct coord_delivery_flight {
    struct coord_delivery_flight *next;
    struct coord *c;
    int64_t id;
    uint32_t attempts;
    bool done;
    int status;
    long http_code;
};

json_t *coord_event_json(const struct tc_store_event *ev)
{
    return json_pack("{s:I, s:I, s:s, s:s, s:s, s:o}", "seq", (json_int_t)ev->seq, "ts",
                     (json_int_t)ev->ts, "node_id", ev->node_id, "old_state",
                     tc_node_state_name(ev->old_state), "new_state",
                     tc_node_state_name(ev->new_state), "reason",
                     ev->reason.code ? tc_reason_to_json(&ev->reason) : json_null());
}

/* Delivery outcomes the store has not taken yet (a full disk): the attempt is not repeated for a
 * delivery known done, nor before its backoff, and the outcome is written when the store takes
 * it. Sorted by delivery id; under c->lock. */
struct delivery_note {
    int64_t id;
    bool done;           /* delivered: never sent again by this process */
    int64_t next_at;     /* not done: no attempt before (ms since the epoch) */
    uint32_t attempts;
};

static struct {
    struct delivery_note *v;
    size_t n, cap;
    int64_t next_sync; /* monotonic ms */
} dnotes;

static struct delivery_note *dnote_find(int64_t id)
{
    size_t lo = 0, hi = dnotes.n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (dnotes.v[mid].id == id)
            return &dnotes.v[mid];
        if (dnotes.v[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Writes an outcome to the store, or keeps it in memory when the store fails. */
static void delivery_outcome(struct coord *c, int64_t id, bool done, uint32_t attempts,
                             int64_t now)
{
    int64_t next_at = 0;
    int rc;
    if (done) {
        rc = tc_store_delivery_done(c->store, id, now);
    } else {
        int64_t delay = tc_store_backoff_ms(attempts);
        if (delay > c->cfg->webhook_max_backoff_ms)
            delay = c->cfg->webhook_max_backoff_ms;
        next_at = now + delay;
        rc = tc_store_delivery_retry(c->store, id, next_at);
    }
    struct delivery_note *e = dnote_find(id);
    if (rc == 0 || rc == TC_ERR_NOT_FOUND) { /* recorded, or the row is gone */
        if (e) {
            size_t i = (size_t)(e - dnotes.v);
            memmove(e, e + 1, (dnotes.n - i - 1) * sizeof(*e));
            dnotes.n--;
        }
        c->health.webhook_unsynced = dnotes.n;
        return;
    }
    if (!e) {
        if (dnotes.n == dnotes.cap) {
            size_t cap = dnotes.cap ? dnotes.cap * 2 : 64;
            void *g = cap <= DNOTES_MAX ? realloc(dnotes.v, cap * sizeof(*dnotes.v)) : NULL;
            if (!g) {
                LOG_ERROR("webhook delivery %lld: outcome neither recorded nor kept", (long long)id);
                return;
            }
            dnotes.v = g;
            dnotes.cap = cap;
        }
        size_t i = 0;
        while (i < dnotes.n && dnotes.v[i].id < id)
            i++;
        memmove(&dnotes.v[i + 1], &dnotes.v[i], (dnotes.n - i) * sizeof(*dnotes.v));
        dnotes.n++;
        e = &dnotes.v[i];
        *e = (struct delivery_note){.id = id};
    }
    e->done = e->done || done;
    e->next_at = next_at;
    e->attempts = attempts;
    c->health.webhook_unsynced = dnotes.n;
    LOG_ERROR("webhook delivery %lld: cannot record its outcome (%s): kept in memory", (long long)id,
              tc_strerror(rc));
}

/* Writes the outcomes kept in memory (every RETRY_MS while the store fails, or now). */
static void dnotes_sync(struct coord *c, bool now_too)
{
    int64_t mono = mono_ms();
    if (!dnotes.n || (!now_too && mono < dnotes.next_sync))
        return;
    dnotes.next_sync = mono + RETRY_MS;
    int64_t now = tc_store_now_ms();
    for (size_t i = dnotes.n; i-- > 0;) {
        struct delivery_note e = dnotes.v[i];
        int rc = e.done ? tc_store_delivery_done(c->store, e.id, now)
                        : tc_store_delivery_retry(c->store, e.id, e.next_at);
        if (rc == TC_ERR_IO)
            break; /* still failing: next time */
        if (rc == 0 || rc == TC_ERR_NOT_FOUND) {
            memmove(&dnotes.v[i], &dnotes.v[i + 1], (dnotes.n - i - 1) * sizeof(*dnotes.v));
            dnotes.n--;
        }
    }
    c->health.webhook_unsynced = dnotes.n;
}

static void delivery_done_cb(void *arg, int status, long http_code, const uint8_t *body, size_t len)
{
    struct coord_delivery_flight *f = arg;
    f->done = true;
    f->status = status;
    f->http_code = http_code;
}

static bool delivery_in_flight(struct coord *c, int64_t id)
{
    for (struct coord_delivery_flight *f = c->deliveries; f; f = f->next)
        if (f->id == id)
            return true;
    return false;
}

static void deliver_one(struct coord *c, const struct tc_store_delivery *d)
{
    struct tc_store_event *ev = NULL;
    size_t nev = 0;
    struct tc_store_subscriber sub;
    memset(&sub, 0, sizeof(sub));
    char *body = NULL;
    json_t *j = NULL;
    if (tc_store_events_since(c->store, d->seq - 1, 1, &ev, &nev) != 0 || nev != 1 ||
        ev[0].seq != d->seq || tc_store_subscriber_get(c->store, d->subscriber_id, &sub) != 0) {
        /* Unreadable now (store failing) or gone: not again before its backoff. */
        delivery_outcome(c, d->id, false, d->attempts + 1, tc_store_now_ms());
        goto out;
    }
    if (!(j = coord_event_json(&ev[0])) || !(body = json_dumps(j, JSON_COMPACT)))
        goto out;
    uint8_t mac[32];
    unsigned maclen = 0;
    if (!HMAC(EVP_sha256(), sub.secret, (int)sub.secret_len, (const uint8_t *)body, strlen(body),
              mac, &maclen) ||
        maclen != 32)
        goto out;
    char hex[65], sig_h[96], seq_h[64];
    tc_hex_encode(mac, 32, hex);
    snprintf(sig_h, sizeof(sig_h), "X-Trustcloud-Signature: sha256=%s", hex);
    snprintf(seq_h, sizeof(seq_h), "X-Trustcloud-Event: %lld", (long long)d->seq);
    const char *headers[] = {sig_h, seq_h, NULL};
    struct coord_delivery_flight *f = calloc(1, sizeof(*f));
    if (!f)
        goto out;
    f->c = c;
    f->id = d->id;
    f->attempts = d->attempts;
    struct tc_httpc_req r = {.method = "POST",
                             .url = sub.url,
                             .content_type = "application/json",
                             .body = body,
                             .len = strlen(body),
                             .timeout_ms = c->cfg->webhook_timeout_ms,
                             .headers = headers,
                             /* A receiver with a certificate of our CA, never a node's. */
                             .expect_peer = TC_TLS_EXPECT_NOT_NODE,
                             .cb = delivery_done_cb,
                             .arg = f};
    if (tc_httpc_submit_req(c->httpc, &r) != 0) {
        free(f);
        /* e.g. an http:// URL while webhook_allow_http is off: retry later, never drop */
        delivery_outcome(c, d->id, false, d->attempts + 1, tc_store_now_ms());
        goto out;
    }
    f->next = c->deliveries;
    c->deliveries = f;
out:
    json_decref(j);
    free(body);
    free(ev);
    tc_store_subscriber_release(&sub);
}

static void deliveries_submit(struct coord *c, int64_t now)
{
    struct tc_store_delivery *d = NULL;
    size_t n = 0;
    if (tc_store_deliveries_due(c->store, now, DELIVERIES_PER_TICK, &d, &n) != 0)
        return;
    for (size_t i = 0; i < n; i++) {
        struct delivery_note *e = dnote_find(d[i].id);
        if (e && (e->done || e->next_at > now))
            continue; /* its outcome is known here, the store has not taken it yet */
        if (e && e->attempts > d[i].attempts)
            d[i].attempts = e->attempts;
        if (!delivery_in_flight(c, d[i].id))
            deliver_one(c, &d[i]);
    }
    free(d);
}

static void deliveries_finish(struct coord *c, int64_t now)
{
    struct coord_delivery_flight **pp = &c->deliveries;
    while (*pp) {
        struct coord_delivery_flight *f = *pp;
        if (!f->done) {
            pp = &f->next;
            continue;
        }
        *pp = f->next;
        if (f->status == 0 && f->http_code >= 200 && f->http_code < 300) {
            delivery_outcome(c, f->id, true, f->attempts + 1, now);
        } else {
            LOG_INFO("webhook delivery %lld failed (%s, HTTP %ld); attempt %u", (long long)f->id,
                     f->status ? tc_strerror(f->status) : "answered", f->http_code,
                     f->attempts + 1);
            delivery_outcome(c, f->id, false, f->attempts + 1, now);
        }
        free(f);
    }
    dnotes_sync(c, false);
}

static void notice_done(void *arg, int status, long http_code, const uint8_t *body, size_t len)
{
    (void)arg;
    if (status != 0 || http_code / 100 != 2)
        LOG_DEBUG("notice not accepted (%s, HTTP %ld)", status ? tc_strerror(status) : "answered",
                  http_code);
}

/* A node left trusted: every other approved agent hears about it. */
static void notify_agents(struct coord *c, const struct tc_store_event *ev)
{
    json_t *j = coord_event_json(ev);
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!body)
        return;
    char url[TC_STORE_URL_MAX + 16];
    for (size_t i = 0; i < c->nnodes; i++) {
        struct coord_node *n = c->nodes[i];
        if (n->deleted || n->is_vm || n->state == TC_NODE_PENDING_APPROVAL ||
            strcmp(n->id, ev->node_id) == 0)
            continue;
        snprintf(url, sizeof(url), "%s/v1/notice", n->url);
        struct tc_httpc_req r = {.method = "POST",
                                 .url = url,
                                 .content_type = "application/json",
                                 .body = body,
                                 .len = strlen(body),
                                 .timeout_ms = c->cfg->request_timeout_ms,
                                 .pinned_pubkey = n->pin[0] ? n->pin : NULL,
                                 .cb = notice_done,
                                 .arg = NULL};
        tc_httpc_submit_req(c->httpc, &r);
    }
    free(body);
}

struct coord_waiter {
    struct coord_waiter *next;
    struct tc_http_deferred *d;
    struct coord_event_scope scope;
    int64_t scan; /* events up to this seq were looked at and none was in scope */
    int64_t deadline;
};

int coord_engine_add_waiter(struct coord *c, struct tc_http_deferred *d,
                            const struct coord_event_scope *scope, int64_t since, int64_t scan,
                            int64_t deadline_ms)
{
    struct coord_waiter *w = calloc(1, sizeof(*w));
    if (!w)
        return TC_ERR_ALLOC;
    w->d = d;
    w->scope = *scope;
    w->scan = scan > since ? scan : since;
    w->deadline = deadline_ms;
    w->next = c->waiters;
    c->waiters = w;
    return 0;
}

/* A tenant's VMs (id and creation time), sorted by id: built once per answer from the node
 * table, then looked up for every event. */
struct scope_vm {
    const char *id;
    int64_t created;
};

static int scope_vm_cmp(const void *a, const void *b)
{
    return strcmp(((const struct scope_vm *)a)->id, ((const struct scope_vm *)b)->id);
}

static int scope_vms(struct coord *c, const char *tenant, struct scope_vm **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    size_t k = 0;
    for (size_t i = 0; i < c->nnodes; i++)
        k +=
            c->nodes[i]->is_vm && !c->nodes[i]->deleted && strcmp(c->nodes[i]->tenant, tenant) == 0;
    if (k == 0)
        return 0;
    struct scope_vm *v = malloc(k * sizeof(*v));
    if (!v)
        return TC_ERR_ALLOC;
    k = 0;
    for (size_t i = 0; i < c->nnodes; i++) {
        const struct coord_node *nd = c->nodes[i];
        if (nd->is_vm && !nd->deleted && strcmp(nd->tenant, tenant) == 0)
            v[k++] = (struct scope_vm){nd->id, nd->created};
    }
    qsort(v, k, sizeof(*v), scope_vm_cmp);
    *out = v;
    *n = k;
    return 0;
}

static bool event_in_scope(const struct coord_event_scope *scope, const struct coord_node *self,
                           const struct scope_vm *vms, size_t nvms, const struct tc_store_event *ev)
{
    if (scope->all)
        return true;
    if (scope->tenant[0]) {
        if (nvms == 0)
            return false;
        struct scope_vm key = {ev->node_id, 0};
        const struct scope_vm *v = bsearch(&key, vms, nvms, sizeof(*vms), scope_vm_cmp);
        return v && ev->ts >= v->created;
    }
    return self && strcmp(ev->node_id, self->id) == 0 && ev->ts >= self->created;
}

json_t *coord_events_json(struct coord *c, const struct coord_event_scope *scope, int64_t since,
                          size_t limit, size_t *count, int64_t *last)
{
    struct tc_store_event *ev = NULL;
    struct scope_vm *vms = NULL;
    size_t nvms = 0, n = 0, looked = 0;
    const struct coord_node *self = NULL;
    json_t *arr = NULL, *out = NULL;
    *count = 0;
    *last = since;
    if (scope->tenant[0] && scope_vms(c, scope->tenant, &vms, &nvms) != 0)
        return NULL;
    if (!scope->all && !scope->tenant[0]) {
        self = node_find(c, scope->node);
        if (self && self->is_vm)
            self = NULL; /* a node certificate never speaks for a VM */
    }
    if (!(arr = json_array()))
        goto out;
    /* In chunks of at most `limit` events: an operator's answer is the first chunk; a scoped one
     * goes on past events out of scope, up to COORD_EVENTS_SCAN_MAX of them, so that its "last"
     * moves on even when nothing in the stream is the reader's. */
    while (*count < limit && looked < COORD_EVENTS_SCAN_MAX) {
        size_t want =
            limit < COORD_EVENTS_SCAN_MAX - looked ? limit : COORD_EVENTS_SCAN_MAX - looked;
        if (tc_store_events_since(c->store, *last, want, &ev, &n) != 0)
            goto out;
        for (size_t i = 0; i < n && *count < limit; i++) {
            if (event_in_scope(scope, self, vms, nvms, &ev[i])) {
                json_t *e = coord_event_json(&ev[i]);
                if (!e || json_array_append_new(arr, e) != 0)
                    goto out;
                (*count)++;
            }
            *last = ev[i].seq;
        }
        looked += n;
        free(ev);
        ev = NULL;
        if (n < want)
            break; /* the end of the stream */
    }
    out = json_pack("{s:O, s:I}", "events", arr, "last", (json_int_t)*last);
out:
    free(ev);
    free(vms);
    json_decref(arr);
    if (!out)
        *count = 0;
    return out;
}

static void waiter_answer(struct coord *c, struct coord_waiter *w, json_t *j)
{
    struct tc_http_response resp;
    memset(&resp, 0, sizeof(resp));
    if (j)
        tc_http_response_json(&resp, 200, j);
    else
        coord_reply_error(&resp, 500, "store", "cannot read events");
    tc_http_deferred_finish(w->d, &resp);
}

/* Answers the waiters that have an event in scope, or whose deadline passed. A waiter whose
 * new events are all out of scope only moves its scan point past them and goes on waiting: it
 * is looked at again when the stream grows beyond that point, not at every tick. */
static void waiters_run(struct coord *c, int64_t now, bool stopping)
{
    int64_t last = 0;
    if (c->waiters && tc_store_events_last_seq(c->store, &last) != 0)
        return;
    struct coord_waiter **pp = &c->waiters;
    while (*pp) {
        struct coord_waiter *w = *pp;
        bool due = stopping || now >= w->deadline;
        if (!due && last <= w->scan) {
            pp = &w->next;
            continue;
        }
        size_t n = 0;
        int64_t scanned = w->scan;
        json_t *j = coord_events_json(c, &w->scope, w->scan, EVENTS_PER_ANSWER, &n, &scanned);
        if (j && n == 0 && !due) {
            w->scan = scanned;
            json_decref(j);
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        waiter_answer(c, w, j);
        json_decref(j);
        free(w);
    }
}

/* ---- recording: verdicts act at once, durability follows ---------------------------------- */

/* Rounds appraised (and already in effect in memory) waiting to be recorded, oldest first, with
 * their blobs. Empty whenever the store accepts writes; under c->lock. */
static struct {
    struct pending_round *v;
    size_t n, cap;
    int64_t next_try;          /* monotonic ms: no attempt before (while failing) */
    int64_t last_log;          /* monotonic ms of the last outage log line */
    struct coord_node **idx;   /* nodes with unrecorded rounds, by id (coord_engine_view) */
    size_t nidx, idx_cap;
    bool idx_dirty;
} backlog;

static void pending_round_free(struct pending_round *p)
{
    free(p->ima_state);
    free(p->eventlog);
    p->ima_state = p->eventlog = NULL;
    p->r.ima_state = p->r.eventlog = NULL;
    p->r.ima_state_len = p->r.eventlog_len = 0;
}

/* Moves the blobs of an older round of the same node into a newer one that has none (the store
 * keeps only the newest IMA state and boot log, so the older copies are not needed). */
static void blobs_forward(struct pending_round *older, struct pending_round *newer)
{
    if (older->ima_state && !newer->ima_state) {
        newer->ima_state = older->ima_state;
        newer->r.ima_state = older->ima_state;
        newer->r.ima_state_len = older->r.ima_state_len;
        older->ima_state = NULL;
        older->r.ima_state = NULL;
        older->r.ima_state_len = 0;
    }
    if (older->eventlog && !newer->eventlog) {
        newer->eventlog = older->eventlog;
        newer->r.eventlog = older->eventlog;
        newer->r.eventlog_len = older->r.eventlog_len;
        older->eventlog = NULL;
        older->r.eventlog = NULL;
        older->r.eventlog_len = 0;
    }
    pending_round_free(older);
}

/* After entries moved: each node's newest entry (the last one of it, scanning forward). */
static void backlog_reindex(void)
{
    for (size_t i = 0; i < backlog.n; i++)
        backlog.v[i].n->bl_newest = i;
}

/* Full backlog: keeps every state change and each node's newest round, drops the uneventful
 * rounds in between (counted in health.dropped; the history has a gap there, the log says so). */
static void backlog_compact(struct coord *c)
{
    size_t before = backlog.n, j = backlog.n;
    for (size_t i = 0; i < backlog.n; i++)
        backlog.v[i].n->bl_newest = SIZE_MAX;
    for (size_t k = backlog.n; k-- > 0;) { /* newest first */
        struct pending_round *p = &backlog.v[k];
        struct coord_node *nd = p->n;
        bool newest = nd->bl_newest == SIZE_MAX;
        if (!newest && p->r.state == p->old_state) {
            blobs_forward(p, &backlog.v[nd->bl_newest]);
            nd->unrecorded--;
            continue;
        }
        backlog.v[--j] = *p;
        if (newest)
            nd->bl_newest = j;
    }
    size_t kept = backlog.n - j;
    memmove(backlog.v, backlog.v + j, kept * sizeof(*backlog.v));
    backlog.n = kept;
    backlog_reindex();
    c->health.dropped += before - kept;
    c->health.unrecorded = kept;
    LOG_ERROR("store outage: %zu unrecorded rounds exceeded the backlog cap; %zu uneventful "
              "rounds dropped from the history (state changes kept)",
              before, before - kept);
}

/* Takes over n committed rounds (and their blobs) at the end of the backlog. */
static void backlog_push(struct coord *c, struct pending_round *pr, size_t n)
{
    if (backlog.n + n > backlog.cap) {
        size_t cap = backlog.cap ? backlog.cap : 1024;
        while (cap < backlog.n + n)
            cap *= 2;
        void *g = realloc(backlog.v, cap * sizeof(*backlog.v));
        if (!g) {
            /* Verdicts are in effect in memory already; only their history is lost. */
            LOG_ERROR("out of memory: %zu rounds are not recorded", n);
            for (size_t i = 0; i < n; i++)
                pending_round_free(&pr[i]);
            c->health.dropped += n;
            return;
        }
        backlog.v = g;
        backlog.cap = cap;
    }
    for (size_t i = 0; i < n; i++) {
        struct coord_node *nd = pr[i].n;
        size_t at = backlog.n++;
        backlog.v[at] = pr[i];
        memset(&pr[i], 0, sizeof(pr[i]));
        if (nd->unrecorded) { /* only the newest IMA state and boot log are ever kept */
            struct pending_round *older = &backlog.v[nd->bl_newest], *newer = &backlog.v[at];
            if (newer->ima_state && older->ima_state) {
                free(older->ima_state);
                older->ima_state = NULL;
                older->r.ima_state = NULL;
                older->r.ima_state_len = 0;
            }
            if (newer->eventlog && older->eventlog) {
                free(older->eventlog);
                older->eventlog = NULL;
                older->r.eventlog = NULL;
                older->r.eventlog_len = 0;
            }
        } else {
            backlog.idx_dirty = true;
        }
        nd->unrecorded++;
        nd->bl_newest = at;
    }
    c->health.unrecorded = backlog.n;
    if (backlog.n > BACKLOG_MAX)
        backlog_compact(c);
}

/* What follows a recorded round: its node's count, the transition log line, agents' notices. */
static void round_recorded(struct coord *c, struct pending_round *p,
                           const struct tc_store_round_result *res)
{
    struct coord_node *nd = p->n;
    if (--nd->unrecorded == 0)
        backlog.idx_dirty = true;
    if (res->status != 0 || res->duplicate || res->event_seq <= 0)
        return;
    LOG_INFO("node %s: %s -> %s%s%s", nd->id, tc_node_state_name(p->old_state),
             tc_node_state_name(p->r.state), p->r.reason.code ? ": " : "",
             p->r.reason.code ? p->r.reason.check : "");
    if (p->old_state == TC_NODE_TRUSTED && p->r.state != TC_NODE_TRUSTED && !nd->is_vm) {
        struct tc_store_event ev = {.seq = res->event_seq,
                                    .ts = p->r.ts,
                                    .old_state = p->old_state,
                                    .new_state = p->r.state,
                                    .reason = p->r.reason};
        snprintf(ev.node_id, sizeof(ev.node_id), "%s", nd->id);
        notify_agents(c, &ev);
    }
}

/* One store transaction for rounds [0, n) of v. */
static int record_chunk(struct coord *c, struct pending_round *v, size_t n,
                        struct tc_store_round *r, struct tc_store_round_result *res)
{
    struct timespec t0, t1;
    for (size_t i = 0; i < n; i++)
        r[i] = v[i].r;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = tc_store_record_rounds(c->store, r, n, res);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    c->stat_record_ms +=
        (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    if (rc == 0) {
        c->stat_rounds += n;
        c->stat_batches++;
    }
    return rc;
}

static void outage_begin(struct coord *c, int rc, int64_t mono)
{
    if (!c->health.error) {
        c->health.since = tc_store_now_ms();
        c->health.outages++;
        backlog.last_log = 0;
    }
    c->health.error = rc;
    backlog.next_try = mono + RETRY_MS;
    if (!backlog.last_log || mono - backlog.last_log >= OUTAGE_LOG_MS) {
        LOG_ERROR("store outage: cannot record verdicts (%s); %zu rounds wait in memory and "
                  "every node with unrecorded rounds is reported not trusted until they are "
                  "recorded",
                  tc_strerror(rc), backlog.n);
        backlog.last_log = mono;
    }
}

/* Records as much of the backlog as the store takes, oldest first. A store that fails (I/O, a
 * full disk) leaves the rest for the next try; a round the store refuses for itself (too large,
 * invalid) is recorded alone and dropped with an error, so it cannot block the others. */
static void backlog_flush(struct coord *c)
{
    int64_t mono = mono_ms();
    if (!backlog.n || (c->health.error && mono < backlog.next_try))
        return;
    size_t chunk = backlog.n < TC_STORE_BATCH_MAX ? backlog.n : TC_STORE_BATCH_MAX;
    struct tc_store_round *r = calloc(chunk, sizeof(*r));
    struct tc_store_round_result *res = calloc(chunk, sizeof(*res));
    size_t done = 0;
    int rc = 0;
    bool was_failing = c->health.error != 0;
    if (!r || !res) {
        outage_begin(c, TC_ERR_ALLOC, mono);
        goto out;
    }
    while (done < backlog.n) {
        size_t n = backlog.n - done < chunk ? backlog.n - done : chunk;
        rc = record_chunk(c, backlog.v + done, n, r, res);
        if (rc == TC_ERR_IO || rc == TC_ERR_ALLOC || rc == TC_ERR_INTERNAL)
            break;
        if (rc != 0) { /* something in this chunk is refused: find it, keep the rest */
            for (size_t i = 0; i < n; i++) {
                struct pending_round *p = &backlog.v[done];
                int one = record_chunk(c, p, 1, r, res);
                if (one == TC_ERR_IO || one == TC_ERR_ALLOC || one == TC_ERR_INTERNAL) {
                    rc = one;
                    goto stop;
                }
                if (one != 0) {
                    LOG_ERROR("node %s: round %llu refused by the store (%s): dropped",
                              p->n->id, (unsigned long long)p->r.round, tc_strerror(one));
                    c->health.dropped++;
                    memset(res, 0, sizeof(*res));
                    res->status = one;
                }
                round_recorded(c, p, res);
                pending_round_free(p);
                done++;
            }
            rc = 0;
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            round_recorded(c, &backlog.v[done + i], &res[i]);
            pending_round_free(&backlog.v[done + i]);
        }
        if (was_failing)
            c->health.late += n;
        done += n;
    }
stop:
    if (rc)
        outage_begin(c, rc, mono);
out:
    if (done) {
        memmove(backlog.v, backlog.v + done, (backlog.n - done) * sizeof(*backlog.v));
        backlog.n -= done;
        backlog_reindex();
        c->health.last_ok = tc_store_now_ms();
    }
    c->health.unrecorded = backlog.n;
    if (!backlog.n && c->health.error) {
        LOG_WARN("store recovered after %lld ms: every verdict is recorded (%llu rounds caught "
                 "up, %llu dropped so far)",
                 (long long)(tc_store_now_ms() - c->health.since),
                 (unsigned long long)c->health.late, (unsigned long long)c->health.dropped);
        c->health.error = 0;
        c->health.since = 0;
    }
    free(r);
    free(res);
}

static int node_ptr_cmp(const void *a, const void *b)
{
    return strcmp((*(struct coord_node *const *)a)->id, (*(struct coord_node *const *)b)->id);
}

static int node_key_cmp(const void *key, const void *b)
{
    return strcmp(key, (*(struct coord_node *const *)b)->id);
}

/* The node with unrecorded rounds called id, through an index rebuilt after changes. */
static struct coord_node *unrecorded_find(struct coord *c, const char *id)
{
    if (backlog.idx_dirty) {
        if (backlog.idx_cap < c->nnodes) {
            void *g = realloc(backlog.idx, c->nnodes * sizeof(*backlog.idx));
            if (!g)
                return node_find(c, id); /* slower, same answer */
            backlog.idx = g;
            backlog.idx_cap = c->nnodes;
        }
        backlog.nidx = 0;
        for (size_t i = 0; i < c->nnodes; i++)
            if (c->nodes[i]->unrecorded && !c->nodes[i]->deleted)
                backlog.idx[backlog.nidx++] = c->nodes[i];
        qsort(backlog.idx, backlog.nidx, sizeof(*backlog.idx), node_ptr_cmp);
        backlog.idx_dirty = false;
    }
    struct coord_node **hit =
        bsearch(id, backlog.idx, backlog.nidx, sizeof(*backlog.idx), node_key_cmp);
    return hit ? *hit : NULL;
}

bool coord_engine_view(struct coord *c, const char *id, enum tc_node_state *state,
                       struct tc_reason *reason, enum tc_node_state *appraised,
                       uint32_t *unrecorded)
{
    if (!backlog.n)
        return false;
    struct coord_node *n = unrecorded_find(c, id);
    if (!n || !n->unrecorded)
        return false;
    *appraised = n->state;
    *unrecorded = n->unrecorded;
    if (n->state == TC_NODE_TRUSTED) {
        *state = TC_NODE_UNTRUSTED;
        tc_fail(reason, TC_ERR_IO, "store.unrecorded", -1,
                "appraised trusted in round %llu, but %u verdicts could not be recorded (%s)",
                (unsigned long long)n->last_round, n->unrecorded,
                tc_strerror(c->health.error ? c->health.error : TC_ERR_IO));
    } else {
        *state = n->state;
        *reason = n->reason;
    }
    return true;
}

/* ---- the loop -------------------------------------------------------------------------------- */

static void process_answers(struct coord *c, int64_t now)
{
    struct coord_node *list = done_list;
    done_list = NULL;
    done_count = 0;
    size_t cap = 0, n = 0;
    struct pending_round *pr = NULL;
    for (struct coord_node *nd = list; nd; nd = nd->done_next)
        cap += 1 + nd->nasked;
    if (cap && !(pr = calloc(cap, sizeof(*pr)))) {
        LOG_ERROR("out of memory");
        cap = 0;
    }
    for (struct coord_node *nd = list, *next; nd; nd = next) {
        next = nd->done_next;
        nd->in_flight = false;
        if (nd->deleted || !pr) {
            for (size_t k = 0; k < nd->nasked; k++)
                nd->asked[k]->in_flight = false;
            nd->nasked = 0;
            continue;
        }
        struct pending_round *p = &pr[n];
        size_t nvm = 0;
        round_init(p, nd, now);
        if (nd->status != 0 || nd->http_code != 200 || !nd->body) {
            if (nd->status == TC_ERR_SIGNATURE) {
                /* Someone answered with a certificate that is not this node's. */
                tc_fail(&p->r.reason, TC_ERR_SIGNATURE, "agent.identity", -1,
                        "the agent's TLS certificate is not the one enrolled for %s", nd->id);
                p->r.state = TC_NODE_UNTRUSTED;
                nd->missed = 0;
            } else {
                nd->missed++;
                tc_fail(&p->r.reason, TC_ERR_IO, "agent.unreachable", -1,
                        "challenge failed (%s, HTTP %ld), %u consecutive",
                        nd->status ? tc_strerror(nd->status) : "answered", nd->http_code,
                        nd->missed);
                p->r.state = nd->missed >= (uint32_t)c->cfg->unreachable_after ? TC_NODE_UNREACHABLE
                                                                               : nd->state;
            }
            nvm = vms_follow_host(nd, p, pr + n + 1, now);
        } else {
            nd->missed = 0;
            if (appraise_host(c, nd, p, pr + n + 1, &nvm, now) == 1) {
                schedule(nd, now); /* ask again at once, with the boot log */
                free(p->ima_state);
                free(p->eventlog);
                continue;
            }
        }
        free(nd->body);
        nd->body = NULL;
        round_commit(p);
        n += 1 + nvm;
    }
    backlog_push(c, pr, n); /* takes the rounds and their blobs */
    backlog_flush(c);
    free(pr);
}

static void reap_deleted(struct coord *c)
{
    if (!deleted_pending)
        return;
    deleted_pending = false;
    size_t j = 0, before = c->nnodes;
    for (size_t i = 0; i < c->nnodes; i++) {
        struct coord_node *n = c->nodes[i];
        if (n->deleted && !n->in_flight && !n->unrecorded) {
            node_free(n);
            continue;
        }
        if (n->deleted)
            deleted_pending = true; /* still in flight: next time */
        c->nodes[j++] = n;
    }
    c->nnodes = j;
    if (j != before)
        sched_rebuild(c); /* no heap entry may point at a freed node */
}

/* Challenges every node whose slot has come; returns when the next one is due. */
static int64_t send_due(struct coord *c, int64_t now)
{
    int64_t interval = c->cfg->interval_ms;
    vm_links_rebuild(c);
    while (sched.n > 0 && sched.v[0].at <= now) {
        struct sched_ent e = sched.v[0];
        sched_pop();
        struct coord_node *n = e.n;
        if (e.gen != n->sched_gen || n->deleted || n->is_vm)
            continue; /* stale entry, removed (freed once idle), or a VM (its host's round) */
        /* Next slot in this node's phase; a node still busy with its last challenge skips. */
        while (n->next_at <= now)
            n->next_at += interval;
        sched_push(n);
        if (n->state == TC_NODE_PENDING_APPROVAL || n->in_flight)
            continue;
        int rc = challenge(c, n);
        if (rc) {
            LOG_WARN("node %s: cannot send a challenge: %s", n->id, tc_strerror(rc));
            continue;
        }
        n->in_flight = true;
    }
    return sched.n > 0 ? sched.v[0].at : now + IDLE_MS;
}

static void log_stats(struct coord *c, int64_t now, int64_t *last_stats, uint64_t *rounds_at)
{
    if (now - *last_stats < 60000)
        return;
    double secs = (double)(now - *last_stats) / 1000.0;
    LOG_INFO("%zu nodes, %.1f rounds/s, appraisal %.3f ms avg, %llu batches (%.3f ms avg)",
             c->nnodes, (double)(c->stat_rounds - *rounds_at) / secs,
             c->stat_appraisals ? c->stat_appraise_ms / (double)c->stat_appraisals : 0.0,
             (unsigned long long)c->stat_batches,
             c->stat_batches ? c->stat_record_ms / (double)c->stat_batches : 0.0);
    *rounds_at = c->stat_rounds;
    *last_stats = now;
}

static void *engine_main(void *arg)
{
    struct coord *c = arg;
    int64_t last_deliveries = 0, last_idle = 0, last_stats = tc_store_now_ms();
    uint64_t rounds_at_stats = 0;
    while (!c->stop) {
        pthread_mutex_lock(&c->lock);
        int64_t now = tc_store_now_ms();
        reap_deleted(c);
        int64_t wake = send_due(c, now);
        if (now - last_deliveries >= 100) {
            deliveries_submit(c, now);
            last_deliveries = now;
        }
        /* Record what arrived once the oldest answer has waited FLUSH_MS (one transaction for
         * all of them), and look at deliveries and waiters at least every IDLE_MS. */
        bool flush = done_list && (now - done_first_ms >= FLUSH_MS || done_count >= FLUSH_MAX);
        if (flush || now - last_idle >= IDLE_MS) {
            if (flush)
                process_answers(c, now);
            backlog_flush(c); /* catches up after a store outage (no-op otherwise) */
            deliveries_finish(c, now);
            waiters_run(c, now, false);
            log_stats(c, now, &last_stats, &rounds_at_stats);
            last_idle = now;
        }
        if (done_list && done_first_ms + FLUSH_MS < wake)
            wake = done_first_ms + FLUSH_MS;
        if (last_idle + IDLE_MS < wake)
            wake = last_idle + IDLE_MS;
        pthread_mutex_unlock(&c->lock);

        /* Runs transfers (their callbacks queue answers) until something happened or the next
         * deadline. */
        int64_t left = wake - tc_store_now_ms();
        tc_httpc_run(c->httpc, left < 0 ? 0 : left > IDLE_MS ? IDLE_MS : (int)left);
    }
    return NULL;
}

int coord_engine_start(struct coord *c)
{
    if (pthread_create(&c->engine_thread, NULL, engine_main, c) != 0)
        return TC_ERR_INTERNAL;
    c->engine_running = true;
    return 0;
}

void coord_engine_stop(struct coord *c)
{
    if (c->engine_running) {
        c->stop = 1;
        pthread_join(c->engine_thread, NULL);
        c->engine_running = false;
    }
    pthread_mutex_lock(&c->lock);
    backlog.next_try = 0; /* a last attempt to make every verdict durable */
    backlog_flush(c);
    dnotes_sync(c, true);
    if (backlog.n)
        LOG_ERROR("stopping with %zu verdicts not recorded: their history is lost and the next "
                  "start shows the states last recorded until each node's first round",
                  backlog.n);
    waiters_run(c, tc_store_now_ms(), true);
    pthread_mutex_unlock(&c->lock);
}

/* Frees engine state; the client must already be freed (no callback can still run). */
void coord_engine_release(struct coord *c)
{
    /* tc_httpc_free ran the callbacks of unfinished requests with TC_ERR_IO: they only queued
     * nodes on done_list and marked flights done. */
    done_list = NULL;
    done_count = 0;
    deleted_pending = false;
    sched_release();
    for (size_t i = 0; i < backlog.n; i++)
        pending_round_free(&backlog.v[i]);
    free(backlog.v);
    free(backlog.idx);
    memset(&backlog, 0, sizeof(backlog));
    free(dnotes.v);
    memset(&dnotes, 0, sizeof(dnotes));
    for (size_t i = 0; i < c->nnodes; i++)
        node_free(c->nodes[i]);
    free(c->nodes);
    c->nodes = NULL;
    c->nnodes = c->nodes_cap = 0;
    while (c->policies) {
        struct coord_policy_cache *p = c->policies;
        c->policies = p->next;
        policy_free(p);
    }
    while (c->deliveries) {
        struct coord_delivery_flight *f = c->deliveries;
        c->deliveries = f->next;
        free(f);
    }
    while (c->waiters) {
        struct coord_waiter *w = c->waiters;
        c->waiters = w->next;
        struct tc_http_response resp;
        memset(&resp, 0, sizeof(resp));
        coord_reply_error(&resp, 503, "shutdown", "the coordinator is stopping");
        tc_http_deferred_finish(w->d, &resp);
        free(w);
    }
}
