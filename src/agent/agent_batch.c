/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Batch attestation ("deep quote", docs/protocol.md): the vTPMs of the listed VMs are quoted
 * with the coordinator's nonce, their guest logs read, and a Merkle tree built over the quotes;
 * the host TPM then quotes once over SHA-256("trustcloud-batch-v1" || nonce || root).
 *
 * Every vTPM is its own swtpm process, so quoting them one after the other would leave the
 * machine idle while each answers: a small fixed pool of threads (the calling TPM worker is one
 * of them) takes VMs from a shared counter, each with its own tc_tpm connection per VM. The VM
 * table (agent_vm.c) is only consulted on the TPM worker thread, before the pool starts and after
 * it ends (what the threads learned about each AK, agent_vm_vtpm_learned); the threads see
 * nothing but their own struct agent_vm_vtpm and file paths.
 *
 * A VM whose guest owns its vTPM (a libvirt domain: QEMU holds the TPM) is asked through its
 * guest channel instead: trustcloud-guest quotes with the same nonce and sends its logs, which
 * are hostile input here. Each such exchange has its own deadline (guest_timeout), so a silent
 * or slow guest costs the batch at most that, on one of the pool's threads.
 *
 * A VM that cannot be quoted (not running, unknown, its vTPM fails, its guest log is unreadable
 * or too large, its guest does not answer or answers badly) becomes an error entry: it never
 * fails the host's answer.
 */
#define LOGMODULE "agent"
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "agent_guest.h"
#include "trustcloud/batch.h"
#include "trustcloud/error.h"
#include "trustcloud/eventlog.h"
#include "trustcloud/ima.h"
#include "trustcloud/log.h"

/* Raw guest evidence (IMA lists, boot logs) the answer may carry in total: base64 grows it by a
 * third and the quotes, PCRs and the host's own evidence need room in the 16 MiB answer. */
#define BATCH_EVIDENCE_BUDGET (AGENT_MAX_ANSWER / 4 * 3 - (2u << 20))

/* What a pool thread needs for one VM, resolved on the TPM worker thread beforehand. */
struct batch_vm_task {
    const struct agent_vm_request *vm;
    struct agent_vm_vtpm vtpm; /* the thread may learn about the AK: kept after the round */
    char dir[4096];
    long elapsed_us; /* time spent on this VM (quote and logs) */
    /* A guest-owned vTPM: asked over its channel. */
    bool guest;
    char channel[4096];
    uint64_t guest_request; /* the request id on its channel */
};

struct batch_pool {
    const struct agent_quote_request *req;
    int guest_timeout_ms;
    char vm_selection_text[TC_GC_MAX_SELECTION_TEXT + 1];
    struct batch_vm_task *tasks;
    struct agent_vm_evidence *ev; /* ev[i] belongs to tasks[i] */
    size_t n;
    atomic_size_t next; /* the next task to take */
    pthread_mutex_t budget_lock;
    size_t budget; /* raw guest evidence bytes still allowed */
};

static long us_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (long)((t1.tv_sec - t0->tv_sec) * 1000000L + (t1.tv_nsec - t0->tv_nsec) / 1000);
}

int agent_ima_slice(const char *path, uint64_t from, uint64_t *first, struct tc_buf *out,
                    struct tc_reason *why)
{
    struct tc_ima_log *log = NULL;
    int rc;

    *first = 0;
    if (access(path, F_OK) != 0) {
        /* IMA is off (or the guest has not booted yet): an empty list, PCR 10 tells the truth. */
        LOG_DEBUG("%s absent: empty IMA list", path);
        return 0;
    }
    /* The format is detected: the kernel's binary list, or the ASCII one the lab writes. */
    if ((rc = tc_ima_log_parse_file(path, NULL, &log, why)) != 0) {
        LOG_ERROR("%s: cannot parse the IMA list (%s)", path, tc_strerror(rc));
        return rc;
    }
    /* A list shorter than the verifier's saved point means it restarted (reboot): all of it. */
    uint64_t start = from <= log->count ? from : 0;
    if (start != from)
        LOG_INFO("%s has %zu entries, fewer than %llu asked from: sending all", path, log->count,
                 (unsigned long long)from);
    if ((rc = tc_ima_log_to_binary(log, (size_t)start, log->count, out)) != 0) {
        tc_fail(why, rc, "agent.ima", -1, "cannot serialise the IMA list (%s)", tc_strerror(rc));
        goto out;
    }
    *first = start;
out:
    tc_ima_log_free(log);
    return rc;
}

static void vm_error(struct agent_vm_evidence *ev, int rc, const char *check, const char *detail)
{
    /* An error entry carries no evidence. */
    tc_tpm_quote_release(&ev->quote);
    tc_buf_release(&ev->ima);
    free(ev->eventlog);
    ev->eventlog = NULL;
    ev->eventlog_len = 0;
    ev->rc = rc ? rc : TC_ERR_INTERNAL;
    snprintf(ev->check, sizeof(ev->check), "%s", check);
    snprintf(ev->error, sizeof(ev->error), "%s", detail);
}

static bool budget_take(struct batch_pool *p, size_t n)
{
    bool ok;
    pthread_mutex_lock(&p->budget_lock);
    ok = n <= p->budget;
    if (ok)
        p->budget -= n;
    pthread_mutex_unlock(&p->budget_lock);
    return ok;
}

/* "sha256:0,1,2+sha1:0": the selection as the guest channel's request states it. */
static int selection_text(const struct tc_pcr_set *sel, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = 0;
    for (size_t b = 0; b < sel->nbanks; b++) {
        int w = snprintf(out + n, cap - n, "%s%s:", b ? "+" : "", sel->bank[b].alg->name);
        if (w < 0 || (size_t)w >= cap - n)
            return TC_ERR_TOO_LARGE;
        n += (size_t)w;
        bool first = true;
        for (unsigned i = 0; i < TC_PCR_COUNT; i++) {
            if (!(sel->bank[b].mask & (1u << i)))
                continue;
            w = snprintf(out + n, cap - n, "%s%u", first ? "" : ",", i);
            if (w < 0 || (size_t)w >= cap - n)
                return TC_ERR_TOO_LARGE;
            n += (size_t)w;
            first = false;
        }
    }
    return 0;
}

/* Connection-level failures (nobody there, no answer in time, the guest went away) make the VM
 * unreachable; everything else the guest sent is refused as untrusted (the coordinator decides,
 * from the check). */
static void guest_collect(struct batch_pool *p, struct batch_vm_task *t,
                          struct agent_vm_evidence *ev)
{
    struct tc_gc_request gr;
    struct tc_gc_hello hello;
    struct tc_gc_answer a;
    struct agent_guest_timing tm;
    struct tc_reason why;
    memset(&gr, 0, sizeof(gr));
    tc_reason_clear(&why);
    gr.id = t->guest_request;
    memcpy(gr.nonce, p->req->nonce, p->req->nonce_len);
    gr.nonce_len = p->req->nonce_len;
    gr.selection = p->req->vm_selection;
    memcpy(gr.selection_text, p->vm_selection_text, sizeof(gr.selection_text));
    gr.ima_from = t->vm->ima_from;
    gr.want_eventlog = t->vm->want_eventlog;
    int rc = agent_guest_quote(t->channel, &gr, p->guest_timeout_ms, &hello, &a, &tm, &why);
    if (rc != 0) {
        LOG_WARN("VM %s: guest channel: %s: %s", ev->id, why.check, why.detail);
        vm_error(ev, rc, why.check, why.detail);
        return;
    }
    /* The IMA delta starts where it was asked to, or at 0 (the guest rebooted): a guest that
     * skips entries would hide them from the replay. */
    if (a.ima_first != gr.ima_from && a.ima_first != 0) {
        snprintf(why.detail, sizeof(why.detail), "IMA entries from %llu when asked from %llu",
                 (unsigned long long)a.ima_first, (unsigned long long)gr.ima_from);
        vm_error(ev, TC_ERR_POLICY, "guest.ima", why.detail);
        goto out;
    }
    /* The list must be one: parsed here as the coordinator will, so that a garbled list is
     * this VM's refusal with its own check. */
    if (a.ima != NULL) {
        struct tc_ima_log *log = NULL;
        struct tc_ima_parse_opts po = {.format = TC_IMA_FMT_BINARY};
        if ((rc = tc_ima_log_parse(a.ima, a.ima_len, &po, &log, &why)) != 0 ||
            log->count != a.ima_next - a.ima_first) {
            char d[200];
            snprintf(d, sizeof(d), "the guest's IMA list is not %llu binary entries (%.80s)",
                     (unsigned long long)(a.ima_next - a.ima_first),
                     rc ? why.detail : "count differs");
            tc_ima_log_free(log);
            vm_error(ev, rc ? rc : TC_ERR_FORMAT, "guest.ima", d);
            goto out;
        }
        tc_ima_log_free(log);
    }
    if (!budget_take(p, a.ima_len + a.eventlog_len)) {
        vm_error(ev, TC_ERR_TOO_LARGE, "vm.too_large",
                 "guest logs do not fit in the answer: ask from a later ima_from");
        goto out;
    }
    ev->quote.attest = a.attest;
    ev->quote.attest_len = a.attest_len;
    ev->quote.sig = a.sig;
    ev->quote.sig_len = a.sig_len;
    ev->quote.pcrs = a.pcrs;
    a.attest = a.sig = NULL;
    ev->ima_first = a.ima_first;
    if (a.ima != NULL && (rc = tc_buf_put(&ev->ima, a.ima, a.ima_len)) != 0) {
        vm_error(ev, rc, "vm.error", "out of memory");
        goto out;
    }
    ev->eventlog = a.eventlog;
    ev->eventlog_len = a.eventlog_len;
    a.eventlog = NULL;
    LOG_DEBUG("VM %s: guest answered in %lld us (+%lld us connect), %zu bytes", ev->id,
              tm.answer_us, tm.connect_us, tm.answer_bytes);
out:
    tc_gc_answer_release(&a);
}

static void vm_collect(struct batch_pool *p, struct batch_vm_task *t, struct agent_vm_evidence *ev)
{
    char path[4096 + 32];
    struct tc_reason why;
    int rc;

    tc_reason_clear(&why);
    if (t->guest) {
        guest_collect(p, t, ev);
        return;
    }
    if ((rc = agent_vm_vtpm_quote(&t->vtpm, ev->id, &p->req->vm_selection, p->req->nonce,
                                  p->req->nonce_len, &ev->quote)) != 0) {
        LOG_WARN("VM %s: vTPM quote failed (%s)", ev->id, tc_strerror(rc));
        vm_error(ev, rc, "vm.tpm", "vTPM quote failed");
        return;
    }
    /* The logs are read after the quote, as the host's: the quoted PCRs are a prefix of them. */
    snprintf(path, sizeof(path), "%s/%s", t->dir, AGENT_VM_FILE_GUEST_IMA);
    if ((rc = agent_ima_slice(path, t->vm->ima_from, &ev->ima_first, &ev->ima, &why)) != 0) {
        LOG_WARN("VM %s: guest IMA list unusable (%s)", ev->id, why.detail);
        vm_error(ev, rc, "vm.ima", "guest IMA list unreadable");
        return;
    }
    snprintf(path, sizeof(path), "%s/%s", t->dir, AGENT_VM_FILE_GUEST_EVENTLOG);
    if (t->vm->want_eventlog && access(path, F_OK) == 0 &&
        (rc = tc_file_read(path, TC_EVLOG_MAX_SIZE, &ev->eventlog, &ev->eventlog_len)) != 0) {
        LOG_WARN("VM %s: cannot read the guest event log (%s)", ev->id, tc_strerror(rc));
        vm_error(ev, rc, "vm.eventlog", "guest event log unreadable");
        return;
    }
    if (!budget_take(p, ev->ima.len + ev->eventlog_len)) {
        LOG_WARN("VM %s: %zu bytes of guest logs do not fit in this answer", ev->id,
                 ev->ima.len + ev->eventlog_len);
        vm_error(ev, TC_ERR_TOO_LARGE, "vm.too_large",
                 "guest logs do not fit in the answer: ask from a later ima_from");
    }
}

static void *pool_worker(void *arg)
{
    struct batch_pool *p = arg;
    for (;;) {
        size_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->n)
            break;
        if (p->ev[i].rc != 0) /* resolved as an error entry already */
            continue;
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        vm_collect(p, &p->tasks[i], &p->ev[i]);
        p->tasks[i].elapsed_us = us_since(&t0);
    }
    return NULL;
}

/* Which VMs can be quoted, where: only here (the TPM worker) is the VM table read. */
static void resolve(const struct agent_config *cfg, struct agent_vms *vms, struct batch_vm_task *t,
                    struct agent_vm_evidence *ev)
{
    int rc = vms ? agent_vm_guest(vms, t->vm->id, t->channel, sizeof(t->channel), &t->guest_request)
                 : TC_ERR_NOT_FOUND;
    if (rc == 0) {
        t->guest = true;
        return;
    }
    if (rc == TC_ERR_UNSUPPORTED) /* the agent holds this vTPM itself */
        rc = agent_vm_vtpm(vms, t->vm->id, &t->vtpm);
    if (rc == TC_ERR_NOT_FOUND) {
        vm_error(ev, rc, "vm.unknown", "no such VM on this node");
        return;
    }
    if (rc == TC_ERR_INVALID_ARG) {
        vm_error(ev, rc, "vm.not_running", "not running");
        return;
    }
    if (rc == 0)
        rc = agent_vm_dir(cfg, t->vm->id, t->dir, sizeof(t->dir));
    if (rc != 0)
        vm_error(ev, rc, "vm.error", "cannot locate the vTPM");
}

int agent_batch_collect(const struct agent_config *cfg, struct agent_vms *vms,
                        const struct agent_quote_request *req, struct agent_batch **out)
{
    struct agent_batch *b = NULL;
    struct batch_pool pool;
    pthread_t threads[AGENT_BATCH_WORKERS];
    size_t nthreads = 0, todo = 0;
    struct timespec t0;
    int rc = TC_ERR_ALLOC;

    *out = NULL;
    memset(&pool, 0, sizeof(pool));
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if ((b = calloc(1, sizeof(*b))) == NULL)
        return TC_ERR_ALLOC;
    if (req->nvms > 0 && ((b->ev = calloc(req->nvms, sizeof(*b->ev))) == NULL ||
                          (pool.tasks = calloc(req->nvms, sizeof(*pool.tasks))) == NULL))
        goto out;
    b->n = req->nvms;
    for (size_t i = 0; i < b->n; i++) {
        agent_vm_evidence_init(&b->ev[i], req->vms[i].id);
        pool.tasks[i].vm = &req->vms[i];
        resolve(cfg, vms, &pool.tasks[i], &b->ev[i]);
        todo += b->ev[i].rc == 0;
    }

    pool.req = req;
    pool.guest_timeout_ms = (int)cfg->guest_timeout;
    if (selection_text(&req->vm_selection, pool.vm_selection_text,
                       sizeof(pool.vm_selection_text)) != 0)
        for (size_t i = 0; i < b->n; i++)
            if (pool.tasks[i].guest)
                vm_error(&b->ev[i], TC_ERR_TOO_LARGE, "vm.error",
                         "the PCR selection does not fit a guest request");
    pool.ev = b->ev;
    pool.n = b->n;
    pool.budget = BATCH_EVIDENCE_BUDGET;
    atomic_init(&pool.next, 0);
    pthread_mutex_init(&pool.budget_lock, NULL);
    /* The calling thread is one of the workers, so a failed pthread_create only slows it. */
    while (nthreads + 1 < AGENT_BATCH_WORKERS && nthreads + 1 < todo &&
           pthread_create(&threads[nthreads], NULL, pool_worker, &pool) == 0)
        nthreads++;
    pool_worker(&pool);
    for (size_t i = 0; i < nthreads; i++)
        pthread_join(threads[i], NULL);
    pthread_mutex_destroy(&pool.budget_lock);

    long sum_us = 0;
    size_t quoted = 0;
    for (size_t i = 0; i < b->n; i++) {
        sum_us += pool.tasks[i].elapsed_us;
        quoted += b->ev[i].rc == 0;
        if (!pool.tasks[i].guest && pool.tasks[i].vtpm.tcti[0] != 0)
            agent_vm_vtpm_learned(vms, req->vms[i].id, &pool.tasks[i].vtpm);
    }
    if ((rc = agent_batch_tree(b->ev, b->n, &b->tree)) != 0)
        goto out;
    if (b->tree != NULL) {
        uint8_t root[32];
        if ((rc = tc_batch_tree_root(b->tree, root)) != 0 ||
            (rc = tc_batch_qualifying_data(req->nonce, req->nonce_len, root, b->qualifying)) != 0)
            goto out;
    }
    b->elapsed_us = us_since(&t0);
    LOG_DEBUG("batch: %zu VMs, %zu quoted, in %ld us with %zu threads (%ld us of vTPM work)", b->n,
              quoted, b->elapsed_us, nthreads + 1, sum_us);
    *out = b;
    b = NULL;
    rc = 0;
out:
    free(pool.tasks);
    agent_batch_free(b);
    return rc;
}

int agent_batch_host_nonce(const struct agent_batch *b, const struct agent_quote_request *req,
                           const uint8_t **qd, size_t *qd_len)
{
    if (b == NULL || b->tree == NULL) {
        /* No VM quoted: the host quote uses the nonce itself, as without a batch. */
        *qd = req->nonce;
        *qd_len = req->nonce_len;
    } else {
        *qd = b->qualifying;
        *qd_len = sizeof(b->qualifying);
    }
    return 0;
}

int agent_batch_add(const struct agent_batch *b, json_t *answer)
{
    return agent_batch_answer(answer, b->ev, b->n, b->tree);
}

void agent_batch_free(struct agent_batch *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->n; i++)
        agent_vm_evidence_release(&b->ev[i]);
    free(b->ev);
    tc_batch_tree_free(b->tree);
    free(b);
}
