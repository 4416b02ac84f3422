/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The agent's mTLS server, with the certificate issued at enrollment:
 *   POST /v1/quote   (CN coordinator) a fresh quote, the IMA list from ima_from, the boot log
 *                    and, for a challenge listing VMs, their vTPM quotes (agent_batch.c)
 *   POST /v1/notice  (CN coordinator) a node left "trusted": remember it
 *   GET  /v1/peers   (any client of our CA) the nodes this agent no longer trusts
 *   /v1/vms...       (CN coordinator) the VMs' vTPMs (agent_vm.c, run as jobs on the worker)
 *
 * httpd handlers run on one thread and must not block, so a quote request is parsed and
 * checked there, then deferred to the one thread that does all TPM work (the caller of
 * agent_server_run, the main thread): quotes are serialised on the TPM by construction, and
 * the queue in front of it is bounded.
 */
#define LOGMODULE "agent"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/eventlog.h"
#include "trustcloud/httpd.h"
#include "trustcloud/ima.h"
#include "trustcloud/log.h"
#include "trustcloud/pki.h"

#define COORDINATOR_CN "coordinator"
#define MAX_REVOKED 100000

struct quote_job {
    struct tc_http_deferred *deferred; /* NULL: nobody waits (a submitted background job) */
    struct agent_quote_request req;
    /* Set for work submitted with agent_server_submit (VMs) instead of a quote. */
    agent_job_run_fn run;
    void (*done)(void *arg);
    void *arg;
    struct quote_job *next;
};

struct revoked_node {
    char node_id[65];
    char state[33];
    long long seq;
};

struct agent_server {
    const struct agent_config *cfg;
    struct tc_httpd *httpd;

    pthread_mutex_t lock; /* queue and stopping */
    pthread_cond_t wake;
    struct quote_job *head, *tail;
    size_t pending;
    bool stopping;

    pthread_mutex_t peers_lock;
    struct revoked_node *revoked;
    size_t nrevoked, cap_revoked;

    struct agent_vms *vms; /* the VMs this node hosts (agent_vm.c) */
};

static void answer_reason(struct tc_http_response *resp, unsigned status,
                          const struct tc_reason *why)
{
    json_t *j = agent_error_json(why);
    if (j == NULL || tc_http_response_json(resp, status, j) != 0)
        tc_http_response_error(resp, status, "%s", why->detail);
    json_decref(j);
}

static void answer_error(struct tc_http_response *resp, unsigned status, const char *check,
                         const char *detail)
{
    struct tc_reason why;
    tc_reason_clear(&why);
    tc_fail(&why, TC_ERR_INTERNAL, check, -1, "%s", detail);
    answer_reason(resp, status, &why);
}

/* Only the coordinator may ask for evidence or send notices. */
static bool from_coordinator(const struct tc_http_request *req, struct tc_http_response *resp)
{
    /* The coordinator role (its EKU with CN "coordinator"), not just a CN another leaf of the
     * same CA could be given. */
    if (req->peer != NULL && strcmp(req->peer->cn, COORDINATOR_CN) == 0 &&
        (req->peer->roles & TC_PKI_ROLE_COORDINATOR))
        return true;
    LOG_WARN("%s: refused %s %s from '%s' (not the coordinator)", req->remote_addr, req->method,
             req->path, req->peer ? req->peer->cn : "");
    answer_error(resp, 403, "agent.forbidden", "only the coordinator may call this");
    return false;
}

/* ---- the quote worker ------------------------------------------------------------------ */

static void do_quote(struct agent_server *s, const struct agent_quote_request *req,
                     struct tc_http_response *resp)
{
    const struct agent_config *cfg = s->cfg;
    struct tc_tpm_quote q;
    struct tc_reason why;
    struct tc_buf ima;
    uint8_t *evlog = NULL;
    size_t evlog_len = 0;
    uint64_t first = 0;
    json_t *answer = NULL;
    char *text = NULL;
    struct agent_batch *batch = NULL;
    const uint8_t *qd = NULL;
    size_t qd_len = 0;
    int rc;

    tc_reason_clear(&why);
    tc_buf_init(&ima, AGENT_MAX_ANSWER);
    memset(&q, 0, sizeof(q));
    /* Batch (docs/protocol.md, "deep quote"): the listed VMs' vTPMs first, then the host TPM
     * once over their Merkle root instead of the nonce. */
    if (req->has_vms && (rc = agent_batch_collect(cfg, s->vms, req, &batch)) != 0) {
        tc_fail(&why, rc, "agent.batch", -1, "cannot quote the VMs (%s)", tc_strerror(rc));
        answer_reason(resp, 500, &why);
        goto out;
    }
    agent_batch_host_nonce(batch, req, &qd, &qd_len);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if ((rc = agent_tpm_quote(cfg, &req->selection, qd, qd_len, &q)) != 0) {
        tc_fail(&why, rc, "agent.tpm", -1, "TPM quote failed (%s)", tc_strerror(rc));
        answer_reason(resp, 500, &why);
        goto out;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* The IMA entries from ima_from on, read AFTER the quote so that every entry extended
     * before the quote is in the list (later ones are fine: the verifier matches the shortest
     * prefix). */
    if ((rc = agent_ima_slice(cfg->ima_path, req->ima_from, &first, &ima, &why)) != 0) {
        if (why.check[0] == 0)
            tc_fail(&why, rc, "agent.ima", -1, "cannot read the IMA list (%s)", tc_strerror(rc));
        answer_reason(resp, 500, &why);
        goto out;
    }
    if (req->want_eventlog &&
        (rc = tc_file_read(cfg->eventlog_path, TC_EVLOG_MAX_SIZE, &evlog, &evlog_len)) != 0) {
        tc_fail(&why, rc, "agent.eventlog", -1, "cannot read the UEFI event log (%s)",
                tc_strerror(rc));
        LOG_ERROR("%s: %s", cfg->eventlog_path, why.detail);
        answer_reason(resp, 500, &why);
        goto out;
    }
    if ((rc = agent_quote_answer(q.attest, q.attest_len, q.sig, q.sig_len, &q.pcrs, evlog,
                                 evlog_len, first, ima.data, ima.len, &answer)) != 0 ||
        (batch != NULL && (rc = agent_batch_add(batch, answer)) != 0) ||
        (text = json_dumps(answer, JSON_COMPACT)) == NULL) {
        answer_error(resp, 500, "agent.answer",
                     rc == TC_ERR_TOO_LARGE ? "evidence too large" : "cannot build the answer");
        goto out;
    }
    size_t len = strlen(text);
    if (len > AGENT_MAX_ANSWER) {
        answer_error(resp, 500, "agent.answer", "evidence above the protocol's 16 MiB cap");
        goto out;
    }
    resp->status = 200;
    snprintf(resp->content_type, sizeof(resp->content_type), "application/json");
    resp->body = (uint8_t *)text;
    resp->body_len = len;
    text = NULL;
    LOG_DEBUG("quote in %ld us, IMA entries from %llu (%zu bytes)%s",
              (long)((t1.tv_sec - t0.tv_sec) * 1000000 + (t1.tv_nsec - t0.tv_nsec) / 1000),
              (unsigned long long)first, ima.len, evlog ? ", with the boot log" : "");
out:
    free(text);
    json_decref(answer);
    free(evlog);
    tc_buf_release(&ima);
    tc_tpm_quote_release(&q);
    agent_batch_free(batch);
}

static void job_free(struct quote_job *job)
{
    agent_quote_request_release(&job->req);
    free(job);
}

/* Answers every queued request with 503 (the agent is stopping). Called with s->lock held. */
static void drain_locked(struct agent_server *s)
{
    while (s->head != NULL) {
        struct quote_job *job = s->head;
        s->head = job->next;
        struct tc_http_response resp = {0};
        if (job->done != NULL)
            job->done(job->arg);
        if (job->deferred != NULL) {
            answer_error(&resp, 503, "agent.stopping", "the agent is stopping");
            tc_http_deferred_finish(job->deferred, &resp);
        }
        job_free(job);
        s->pending--;
    }
    s->tail = NULL;
}

int agent_server_run(struct agent_server *s, volatile int *stop)
{
    pthread_mutex_lock(&s->lock);
    while (!*stop) {
        if (s->head == NULL) {
            /* Woken by a new job, or every 200 ms to look at *stop (set by a signal). */
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += 200 * 1000 * 1000;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&s->wake, &s->lock, &until);
            continue;
        }
        struct quote_job *job = s->head;
        s->head = job->next;
        if (s->head == NULL)
            s->tail = NULL;
        pthread_mutex_unlock(&s->lock);

        struct tc_http_response resp = {0};
        if (job->run != NULL && job->run(job->arg, &resp) == AGENT_JOB_AGAIN) {
            /* Next step later: whatever was queued meanwhile (quotes) goes first. */
            free(resp.body);
            pthread_mutex_lock(&s->lock);
            job->next = NULL;
            if (s->tail)
                s->tail->next = job;
            else
                s->head = job;
            s->tail = job;
            continue;
        }
        if (job->run == NULL)
            do_quote(s, &job->req, &resp);
        if (job->done != NULL)
            job->done(job->arg);
        if (job->deferred != NULL)
            tc_http_deferred_finish(job->deferred, &resp); /* takes over resp.body */
        else
            free(resp.body);
        job_free(job);

        pthread_mutex_lock(&s->lock);
        s->pending--;
    }
    s->stopping = true;
    drain_locked(s);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int agent_server_submit(struct agent_server *s, const struct tc_http_request *req,
                        agent_job_run_fn run, void (*done)(void *arg), void *arg)
{
    struct quote_job *job = calloc(1, sizeof(*job));
    if (job == NULL)
        return TC_ERR_ALLOC;
    job->run = run;
    job->done = done;
    job->arg = arg;
    pthread_mutex_lock(&s->lock);
    /* Background jobs (req NULL: restarts at start-up) are not bounded by the quote queue. */
    if (s->stopping || (req != NULL && s->pending >= (size_t)s->cfg->max_pending_quotes) ||
        (req != NULL && (job->deferred = tc_http_defer(req)) == NULL)) {
        pthread_mutex_unlock(&s->lock);
        job_free(job);
        return TC_ERR_IO;
    }
    if (s->tail)
        s->tail->next = job;
    else
        s->head = job;
    s->tail = job;
    s->pending++;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* ---- handlers ---------------------------------------------------------------------------- */

static void h_quote(void *arg, const struct tc_http_request *req, struct tc_http_response *resp)
{
    struct agent_server *s = arg;
    struct tc_reason why;
    struct quote_job *job = NULL;

    if (!from_coordinator(req, resp))
        return;
    if ((job = calloc(1, sizeof(*job))) == NULL) {
        answer_error(resp, 503, "agent.busy", "out of memory");
        return;
    }
    tc_reason_clear(&why);
    if (agent_quote_request_parse(req->body, req->body_len, &job->req, &why) != 0) {
        LOG_WARN("%s: bad quote request: %s", req->remote_addr, why.detail);
        answer_reason(resp, 400, &why);
        job_free(job);
        return;
    }
    pthread_mutex_lock(&s->lock);
    if (s->stopping || s->pending >= (size_t)s->cfg->max_pending_quotes) {
        pthread_mutex_unlock(&s->lock);
        answer_error(resp, 503, "agent.busy",
                     s->stopping ? "the agent is stopping" : "too many quote requests queued");
        job_free(job);
        return;
    }
    if ((job->deferred = tc_http_defer(req)) == NULL) {
        pthread_mutex_unlock(&s->lock);
        answer_error(resp, 503, "agent.busy", "cannot queue the request");
        job_free(job);
        return;
    }
    if (s->tail)
        s->tail->next = job;
    else
        s->head = job;
    s->tail = job;
    s->pending++;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
}

static void h_notice(void *arg, const struct tc_http_request *req, struct tc_http_response *resp)
{
    struct agent_server *s = arg;
    struct agent_notice n;
    struct tc_reason why;

    if (!from_coordinator(req, resp))
        return;
    tc_reason_clear(&why);
    if (agent_notice_parse(req->body, req->body_len, &n, &why) != 0) {
        answer_reason(resp, 400, &why);
        return;
    }
    bool trusted = strcmp(n.new_state, "trusted") == 0;
    pthread_mutex_lock(&s->peers_lock);
    size_t i = 0;
    while (i < s->nrevoked && strcmp(s->revoked[i].node_id, n.node_id) != 0)
        i++;
    if (trusted) {
        /* Back to trusted (a later notice): forget it. */
        if (i < s->nrevoked)
            s->revoked[i] = s->revoked[--s->nrevoked];
    } else {
        if (i == s->nrevoked) {
            if (s->nrevoked == s->cap_revoked) {
                size_t ncap = s->cap_revoked ? s->cap_revoked * 2 : 16;
                struct revoked_node *r =
                    s->nrevoked < MAX_REVOKED ? realloc(s->revoked, ncap * sizeof(*r)) : NULL;
                if (r == NULL) {
                    pthread_mutex_unlock(&s->peers_lock);
                    answer_error(resp, 503, "agent.notice", "revocation set full");
                    return;
                }
                s->revoked = r;
                s->cap_revoked = ncap;
            }
            s->nrevoked++;
        }
        struct revoked_node *r = &s->revoked[i];
        memcpy(r->node_id, n.node_id, sizeof(r->node_id));
        memcpy(r->state, n.new_state, sizeof(r->state));
        r->seq = n.seq;
    }
    pthread_mutex_unlock(&s->peers_lock);
    char state[sizeof(n.new_state)];
    size_t k = 0;
    for (; n.new_state[k]; k++)
        state[k] = (n.new_state[k] >= 0x20 && n.new_state[k] < 0x7f) ? n.new_state[k] : '?';
    state[k] = 0;
    if (trusted)
        LOG_INFO("notice: node %s is trusted again", n.node_id);
    else
        LOG_WARN("notice: node %s is no longer trusted (now %s%s%s): refusing it from now on",
                 n.node_id, state, n.check[0] ? ", check " : "", n.check);
    json_t *ok = json_pack("{s:b, s:s}", "recorded", 1, "node_id", n.node_id);
    if (ok == NULL || tc_http_response_json(resp, 200, ok) != 0)
        answer_error(resp, 500, "agent.notice", "cannot answer");
    json_decref(ok);
}

static void h_peers(void *arg, const struct tc_http_request *req, struct tc_http_response *resp)
{
    struct agent_server *s = arg;
    json_t *list = json_array(), *ans = NULL;
    if (list == NULL)
        goto fail;
    pthread_mutex_lock(&s->peers_lock);
    for (size_t i = 0; i < s->nrevoked; i++) {
        json_t *e =
            json_pack("{s:s, s:s}", "node_id", s->revoked[i].node_id, "state", s->revoked[i].state);
        if (e != NULL && s->revoked[i].seq >= 0)
            json_object_set_new(e, "seq", json_integer(s->revoked[i].seq));
        if (e == NULL || json_array_append_new(list, e) != 0) {
            pthread_mutex_unlock(&s->peers_lock);
            goto fail;
        }
    }
    pthread_mutex_unlock(&s->peers_lock);
    if ((ans = json_pack("{s:o}", "revoked", list)) == NULL) {
        list = NULL; /* json_pack "o" steals even on failure */
        goto fail;
    }
    list = NULL;
    if (tc_http_response_json(resp, 200, ans) == 0) {
        json_decref(ans);
        return;
    }
fail:
    json_decref(list);
    json_decref(ans);
    answer_error(resp, 500, "agent.peers", "cannot answer");
}

/* ---- lifecycle --------------------------------------------------------------------------- */

int agent_server_new(const struct agent_config *cfg, struct agent_server **out)
{
    char cert[4096], key[4096];
    struct agent_server *s = NULL;
    int rc;

    *out = NULL;
    if ((rc = agent_path(cfg->state_dir, AGENT_FILE_CERT, cert, sizeof(cert))) != 0 ||
        (rc = agent_path(cfg->state_dir, AGENT_FILE_KEY, key, sizeof(key))) != 0)
        return rc;
    if ((s = calloc(1, sizeof(*s))) == NULL)
        return TC_ERR_ALLOC;
    s->cfg = cfg;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    pthread_mutex_init(&s->peers_lock, NULL);

    struct tc_httpd_config hc = {
        .bind_addr = cfg->listen_address,
        .port = (uint16_t)cfg->listen_port,
        .tls = {.cert_file = cert, .key_file = key, .ca_file = cfg->ca_file},
        .max_body = AGENT_MAX_REQUEST,
        .max_connections = (unsigned)cfg->max_connections,
        .max_unauth = (unsigned)cfg->max_unauthenticated,
        .max_unauth_per_addr = (unsigned)cfg->max_unauthenticated_per_address,
        /* whole seconds, rounded up */
        .handshake_timeout_s = (unsigned)((cfg->handshake_timeout + 999) / 1000),
        .header_timeout_s = (unsigned)((cfg->header_timeout + 999) / 1000),
        .idle_timeout_s = (unsigned)((cfg->idle_timeout + 999) / 1000),
    };
    if ((rc = tc_httpd_new(&hc, &s->httpd)) != 0) {
        LOG_ERROR("cannot serve on %s:%lld (%s)", cfg->listen_address, cfg->listen_port,
                  tc_strerror(rc));
        goto out;
    }
    if ((rc = agent_vms_new(cfg, s, &s->vms)) != 0) {
        LOG_ERROR("cannot open the VM directory %s (%s)", cfg->vm_dir, tc_strerror(rc));
        goto out;
    }
    if ((rc = tc_httpd_route(s->httpd, "POST", "/v1/quote", h_quote, s, 0)) != 0 ||
        (rc = tc_httpd_route(s->httpd, "POST", "/v1/notice", h_notice, s, 0)) != 0 ||
        (rc = tc_httpd_route(s->httpd, "GET", "/v1/peers", h_peers, s, 0)) != 0 ||
        (rc = agent_vms_routes(s->vms, s->httpd)) != 0)
        goto out;
    if ((rc = tc_httpd_start(s->httpd)) != 0)
        goto out;
    LOG_INFO("serving on %s:%u as %s", cfg->listen_address, tc_httpd_port(s->httpd),
             cfg->agent_url);
    *out = s;
    s = NULL;
out:
    agent_server_free(s);
    return rc;
}

uint16_t agent_server_port(const struct agent_server *s)
{
    return tc_httpd_port(s->httpd);
}

void agent_server_free(struct agent_server *s)
{
    if (s == NULL)
        return;
    /* New requests see stopping and get 503, and so do queued ones. */
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    drain_locked(s);
    pthread_mutex_unlock(&s->lock);
    agent_vms_stop_guests(s->vms); /* their deferred answers go through the server */
    tc_httpd_free(s->httpd);
    agent_vms_free(s->vms); /* after the handlers and the queued jobs that use it */
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->peers_lock);
    free(s->revoked);
    free(s);
}
