/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The VMs a node hosts (docs/protocol.md, "Virtual machines"): one vTPM (swtpm) per VM in
 * <vm_dir>/<vm_id>/, provisioned with an ECC EK whose certificate the host's vTPM CA key (inside
 * the host TPM) issues, an AK under that EK (tcp mode), and a state encrypted with a key the
 * state guard seals in the host TPM and checks for rollback at every start.
 *
 * Threading: httpd handlers only parse and bound the request, then submit a job to the agent's
 * TPM worker (agent_server_submit). Everything else, the VM table included, lives on that one
 * thread, so no lock is needed and vTPM work is serialised with host quotes. A creation is
 * several jobs (host TPM, vTPM, host TPM again), re-queued after each step, so a quote that
 * arrives meanwhile waits for one step only. A VM with an operation in flight is "busy": other
 * requests for it get 409 vm.busy until that operation is over.
 *
 * Host TPM connections are opened per job and closed at its end (as agent_tpm.c does): the
 * node's own software must be able to use the TPM between two jobs.
 */
#define LOGMODULE "agent"
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/x509.h>

#include "agent.h"
#include "agent_guest.h"
#include "trustcloud/buf.h"
#include "trustcloud/certify.h"
#include "trustcloud/error.h"
#include "trustcloud/httpd.h"
#include "trustcloud/log.h"
#include "trustcloud/pki.h"
#include "trustcloud/tpm_certify.h"
#include "trustcloud/tpm_credential.h"
#include "trustcloud/tpm_nv.h"
#include "trustcloud/vm_guest.h"
#include "trustcloud/vtpm.h"
#include "trustcloud/vtpm_ca.h"
#include "trustcloud/vtpm_guard.h"

#define COORDINATOR_CN "coordinator"
#define VM_NONCE_LEN 32
#define VM_MAX_BLOB 1024 /* id_object / encrypted_secret (a TPM2B of at most ~600 bytes) */
#define VM_SECRET_MAX 64
#define MODE_FILE_MAX 16
#define TCTI_MAX 64

struct vm_entry {
    char id[TC_VTPM_ID_MAX + 1];
    enum tc_vtpm_mode mode;
    struct tc_vtpm *vtpm; /* NULL while being created */
    bool busy;            /* an operation is in flight */
    bool ready;           /* creation finished: visible to every route */
    /* The vTPM AK as the last quote found it (agent_vm_vtpm_learned). */
    uint8_t ak_name[TC_TPM_MAX_NAME];
    size_t ak_name_len; /* 0: not known yet (read from ak.ctx at the next quote) */
    bool ak_persistent; /* at AGENT_VM_AK_HANDLE */
    /* A VM with a guest definition: its libvirt domain (AGENT_VM_FILE_DOMAIN). */
    bool libvirt;
    char uuid[AGENT_UUID_LEN + 1];
};

struct agent_vms {
    const struct agent_config *cfg;
    struct agent_server *srv;
    struct tc_pcr_set seal_sel;
    struct vm_entry **vms;   /* GET /v1/vms lists them in this order */
    struct vm_entry **by_id; /* the same n entries sorted by id: a batch looks up every VM */
    size_t n, cap;
    /* Guest channel request ids: unique for the process's life, increasing (a guest's leftover
     * answer to an earlier one is recognised by it). Any thread. */
    atomic_uint_fast64_t guest_request;
    /* Guest exchanges the coordinator asks for (hello, activation): on their own threads. */
    struct agent_guest_runner guests;
    /* The vTPM CA certificate, loaded or made at first need. */
    X509 *ca_cert;
    EVP_PKEY *ca_pub;
    uint8_t *ca_der;
    size_t ca_der_len;
};

enum vm_op_kind { OP_CREATE, OP_ACTIVATE, OP_START, OP_STOP, OP_DELETE, OP_LIST, OP_RESTART };

struct vm_op {
    struct agent_vms *vms;
    enum vm_op_kind kind;
    int step;
    char id[TC_VTPM_ID_MAX + 1];
    enum tc_vtpm_mode mode;
    struct vm_entry *e; /* the entry this operation holds busy */
    bool force;         /* start: accept the state after an unclean stop */
    uint8_t nonce[VM_NONCE_LEN];
    uint8_t id_object[VM_MAX_BLOB], enc_secret[VM_MAX_BLOB];
    size_t id_object_len, enc_secret_len;
    /* Creation results, kept for the answer. */
    bool vtpm_made;
    uint8_t *ek_cert;
    size_t ek_cert_len;
    uint8_t ek_pub[TC_TPM_MAX_PUBLIC];
    size_t ek_pub_len;
    uint8_t ak_pub[TC_TPM_MAX_PUBLIC];
    size_t ak_pub_len;
    /* A libvirt VM: its guest definition (create), the stop's deadline (stop). */
    bool has_guest;
    struct tc_vm_guest guest;
    struct timespec stop_t0;
    bool stop_destroyed;
};

/* ---- small helpers ----------------------------------------------------------------------- */

static long elapsed_us(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (long)((t1.tv_sec - t0->tv_sec) * 1000000 + (t1.tv_nsec - t0->tv_nsec) / 1000);
}

static void answer_json(struct tc_http_response *resp, unsigned status, json_t *j)
{
    if (j == NULL || tc_http_response_json(resp, status, j) != 0)
        tc_http_response_error(resp, 500, "cannot build the answer");
    json_decref(j);
}

static void answer_fail(struct tc_http_response *resp, unsigned status, const char *check,
                        const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void answer_fail(struct tc_http_response *resp, unsigned status, const char *check,
                        const char *fmt, ...)
{
    struct tc_reason why;
    va_list ap;
    tc_reason_clear(&why);
    snprintf(why.check, sizeof(why.check), "%s", check);
    va_start(ap, fmt);
    vsnprintf(why.detail, sizeof(why.detail), fmt, ap);
    va_end(ap);
    answer_json(resp, status, agent_error_json(&why));
}

static void answer_reason(struct tc_http_response *resp, unsigned status,
                          const struct tc_reason *why)
{
    answer_json(resp, status, agent_error_json(why));
}

/* A VM id as the protocol has it (the node id rule) that is also a usable directory name. */
static bool vm_id_ok(const char *id)
{
    return agent_node_id_valid(id) && tc_vtpm_id_valid(id);
}

int agent_vm_dir(const struct agent_config *cfg, const char *vm_id, char *buf, size_t cap)
{
    if (!vm_id_ok(vm_id))
        return TC_ERR_INVALID_ARG;
    return agent_path(cfg->vm_dir, vm_id, buf, cap);
}

static int vm_file(const struct agent_vms *vms, const char *vm_id, const char *name, char *buf,
                   size_t cap)
{
    char dir[PATH_MAX];
    int rc = agent_vm_dir(vms->cfg, vm_id, dir, sizeof(dir));
    return rc ? rc : agent_path(dir, name, buf, cap);
}

/* The first position in by_id whose id is not below id. */
static size_t by_id_lower(const struct agent_vms *vms, const char *id)
{
    size_t lo = 0, hi = vms->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(vms->by_id[mid]->id, id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static struct vm_entry *vm_find(const struct agent_vms *vms, const char *id)
{
    size_t i = by_id_lower(vms, id);
    return i < vms->n && strcmp(vms->by_id[i]->id, id) == 0 ? vms->by_id[i] : NULL;
}

static int vm_add(struct agent_vms *vms, const char *id, enum tc_vtpm_mode mode,
                  struct vm_entry **out)
{
    *out = NULL;
    if (vms->n == vms->cap) {
        size_t ncap = vms->cap ? vms->cap * 2 : 16;
        struct vm_entry **nv = realloc(vms->vms, ncap * sizeof(*nv));
        if (nv == NULL)
            return TC_ERR_ALLOC;
        vms->vms = nv;
        struct vm_entry **ni = realloc(vms->by_id, ncap * sizeof(*ni));
        if (ni == NULL)
            return TC_ERR_ALLOC; /* vms grew alone: harmless, cap is still the smaller one */
        vms->by_id = ni;
        vms->cap = ncap;
    }
    struct vm_entry *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return TC_ERR_ALLOC;
    snprintf(e->id, sizeof(e->id), "%s", id);
    e->mode = mode;
    size_t at = by_id_lower(vms, e->id);
    memmove(&vms->by_id[at + 1], &vms->by_id[at], (vms->n - at) * sizeof(*vms->by_id));
    vms->by_id[at] = e;
    vms->vms[vms->n++] = e;
    *out = e;
    return 0;
}

static void vm_remove(struct agent_vms *vms, struct vm_entry *e)
{
    size_t at = by_id_lower(vms, e->id);
    if (at < vms->n && vms->by_id[at] == e)
        memmove(&vms->by_id[at], &vms->by_id[at + 1], (vms->n - at - 1) * sizeof(*vms->by_id));
    for (size_t i = 0; i < vms->n; i++) {
        if (vms->vms[i] == e) {
            vms->vms[i] = vms->vms[--vms->n];
            break;
        }
    }
    tc_vtpm_free(e->vtpm);
    free(e);
}

static const char *mode_name(enum tc_vtpm_mode m)
{
    return m == TC_VTPM_QEMU ? "qemu" : "tcp";
}

static void vtpm_config(const struct agent_vms *vms, const char *id, enum tc_vtpm_mode mode,
                        const uint8_t *key, struct tc_vtpm_config *c)
{
    memset(c, 0, sizeof(*c));
    c->base_dir = vms->cfg->vm_dir;
    c->vm_id = id;
    c->mode = mode;
    c->state_key = key;
    c->swtpm = vms->cfg->swtpm;
}

/* <vm>/tcti for the lab's guest simulator (and a human), while a tcp-mode vTPM runs. */
static void write_tcti_file(const struct agent_vms *vms, const struct vm_entry *e)
{
    char path[PATH_MAX];
    const char *tcti = tc_vtpm_tcti(e->vtpm);
    if (vm_file(vms, e->id, AGENT_VM_FILE_TCTI, path, sizeof(path)) != 0)
        return;
    if (tcti == NULL) {
        unlink(path);
        return;
    }
    char line[TCTI_MAX + 2];
    int n = snprintf(line, sizeof(line), "%s\n", tcti);
    if (n > 0 && (size_t)n < sizeof(line) && tc_file_write(path, line, (size_t)n, 0600) != 0)
        LOG_WARN("VM %s: cannot write %s", e->id, path);
}

/* ---- libvirt VMs ------------------------------------------------------------------------- */

static void domain_name(const struct agent_vms *vms, const char *id, char *buf, size_t cap)
{
    snprintf(buf, cap, "trustcloud-%s-%s", vms->cfg->node_id, id);
}

/* QEMU's user under libvirt; *none when the setting is empty (QEMU runs as the agent does). */
static int qemu_ids(const struct agent_config *cfg, uid_t *uid, gid_t *gid, bool *none,
                    struct tc_reason *why)
{
    struct passwd pw, *res = NULL;
    char buf[2048];
    *none = cfg->libvirt_qemu_user == NULL || cfg->libvirt_qemu_user[0] == 0;
    if (*none)
        return 0;
    if (getpwnam_r(cfg->libvirt_qemu_user, &pw, buf, sizeof(buf), &res) != 0 || res == NULL)
        return tc_fail(why, TC_ERR_NOT_FOUND, "vm.libvirt", -1,
                       "libvirt_qemu_user '%s': no such user on this node", cfg->libvirt_qemu_user);
    *uid = pw.pw_uid;
    *gid = pw.pw_gid;
    return 0;
}

/* What QEMU, as its own user, must reach: vm_dir and the VM's directory searchable (not
 * listable: everything else in them stays the agent's, 0600/0700), the vTPM's control socket
 * its own, and the channel directory, where the guest channel socket is bound. Run before every
 * start: the control socket is made anew with each swtpm. */
static int libvirt_grant(struct agent_vms *vms, struct vm_entry *e, struct tc_reason *why)
{
    char dir[PATH_MAX], chan[PATH_MAX];
    uid_t uid = 0;
    gid_t gid = 0;
    bool none = true;
    int rc;

    if ((rc = qemu_ids(vms->cfg, &uid, &gid, &none, why)) != 0)
        return rc;
    if ((rc = agent_vm_dir(vms->cfg, e->id, dir, sizeof(dir))) != 0 ||
        (rc = vm_file(vms, e->id, AGENT_VM_CHANNEL_DIR, chan, sizeof(chan))) != 0)
        return tc_fail(why, rc, "vm.files", -1, "VM directory path too long");
    if (mkdir(chan, 0700) != 0 && errno != EEXIST)
        return tc_fail(why, TC_ERR_IO, "vm.files", -1, "cannot create %s: %s", chan,
                       strerror(errno));
    if (none)
        return 0;
    const char *ctrl = tc_vtpm_ctrl_path(e->vtpm);
    const char *what = vms->cfg->vm_dir;
    if (chmod(what, 0711) != 0 || chmod((what = dir), 0711) != 0 ||
        lchown((what = chan), uid, gid) != 0 ||
        (ctrl != NULL && lchown((what = ctrl), uid, gid) != 0))
        return tc_fail(why, TC_ERR_IO, "vm.files", -1, "cannot give %s to QEMU's user %s: %s", what,
                       vms->cfg->libvirt_qemu_user, strerror(errno));
    return 0;
}

/* The domain of a libvirt VM, or false (logged) when libvirt cannot say. */
static bool domain_active(const struct agent_vms *vms, const struct vm_entry *e)
{
    struct tc_reason why;
    bool active = false;
    tc_reason_clear(&why);
    if (agent_libvirt_active(vms->cfg, e->uuid, &active, &why) != 0)
        LOG_WARN("VM %s: %s: %s", e->id, why.check, why.detail);
    return active;
}

/* A VM runs: its domain (libvirt VM) or its vTPM. */
static bool vm_running(const struct agent_vms *vms, const struct vm_entry *e)
{
    return e->libvirt ? domain_active(vms, e) : tc_vtpm_running(e->vtpm);
}

static bool uuid_ok(const char *u, size_t len)
{
    if (len != AGENT_UUID_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? u[i] != '-' : !((u[i] >= '0' && u[i] <= '9') || (u[i] >= 'a' && u[i] <= 'f')))
            return false;
    }
    return true;
}

/* <vm>/domain: the UUID of the VM's domain; TC_ERR_NOT_FOUND for a VM without one. */
static int read_domain(const struct agent_vms *vms, struct vm_entry *e)
{
    char path[PATH_MAX];
    uint8_t *s = NULL;
    size_t len = 0;
    int rc;
    if ((rc = vm_file(vms, e->id, AGENT_VM_FILE_DOMAIN, path, sizeof(path))) != 0)
        return rc;
    if (access(path, F_OK) != 0)
        return TC_ERR_NOT_FOUND;
    if ((rc = tc_file_read(path, AGENT_UUID_LEN + 2, &s, &len)) != 0)
        return rc;
    if (len > 0 && s[len - 1] == '\n')
        len--;
    if (uuid_ok((const char *)s, len)) {
        memcpy(e->uuid, s, AGENT_UUID_LEN);
        e->uuid[AGENT_UUID_LEN] = 0;
        e->libvirt = true;
    } else {
        rc = TC_ERR_FORMAT;
    }
    free(s);
    return rc;
}

/* The guest's files must be on this node (the paths are the host's). */
static bool guest_files_ok(const struct vm_op *op, struct tc_http_response *resp)
{
    const struct {
        const char *name, *path;
    } f[] = {{"kernel", op->guest.kernel}, {"initrd", op->guest.initrd}, {"disk", op->guest.disk}};
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        struct stat st;
        if (f[i].path[0] != 0 && (stat(f[i].path, &st) != 0 || !S_ISREG(st.st_mode))) {
            answer_fail(resp, 400, "vm.guest", "guest.%s %s: no such file on this node", f[i].name,
                        f[i].path);
            return false;
        }
    }
    return true;
}

/* Creation, last step before the mode file: guest.json, the files QEMU needs, the domain. */
static int libvirt_define(struct vm_op *op, struct tc_reason *why)
{
    struct agent_vms *vms = op->vms;
    struct vm_entry *e = op->e;
    char path[PATH_MAX], chan[PATH_MAX], console[PATH_MAX], name[160], uuid[AGENT_UUID_LEN + 2];
    char *text = NULL;
    json_t *gj = NULL;
    int rc;

    if ((rc = vm_file(vms, e->id, AGENT_VM_FILE_GUEST, path, sizeof(path))) != 0 ||
        (rc = vm_file(vms, e->id, AGENT_VM_CHANNEL_SOCK, chan, sizeof(chan))) != 0 ||
        (rc = vm_file(vms, e->id, AGENT_VM_CONSOLE_LOG, console, sizeof(console))) != 0) {
        tc_fail(why, rc, "vm.files", -1, "VM directory path too long");
        goto out;
    }
    if ((gj = tc_vm_guest_to_json(&op->guest)) == NULL ||
        (text = json_dumps(gj, JSON_COMPACT | JSON_SORT_KEYS)) == NULL) {
        rc = tc_fail(why, TC_ERR_ALLOC, "vm.files", -1, "out of memory");
        goto out;
    }
    if ((rc = tc_file_write(path, text, strlen(text), 0600)) != 0) {
        tc_fail(why, rc, "vm.files", -1, "cannot write %s", path);
        goto out;
    }
    if ((rc = libvirt_grant(vms, e, why)) != 0)
        goto out;
    domain_name(vms, e->id, name, sizeof(name));
    struct agent_domain_def def = {.name = name,
                                   .guest = &op->guest,
                                   .tpm_socket = tc_vtpm_ctrl_path(e->vtpm),
                                   .channel_socket = chan,
                                   .console_log = console};
    if ((rc = agent_libvirt_define(vms->cfg, &def, e->uuid, why)) != 0)
        goto out;
    e->libvirt = true; /* from here on, a failure undefines it (vm_destroy) */
    agent_test_point(vms->cfg, "domain_defined");
    snprintf(uuid, sizeof(uuid), "%s\n", e->uuid);
    if ((rc = vm_file(vms, e->id, AGENT_VM_FILE_DOMAIN, path, sizeof(path))) != 0 ||
        (rc = tc_file_write(path, uuid, strlen(uuid), 0600)) != 0)
        tc_fail(why, rc, "vm.files", -1, "cannot write the VM's domain file");
out:
    free(text);
    json_decref(gj);
    return rc;
}

/* ---- the host TPM ------------------------------------------------------------------------ */

struct host {
    struct tc_tpm *tpm;
    struct tc_tpm_key ek;
    struct tc_vtpm_guard *guard;
};

/* The host EK the agent's AK lives under: the configured algorithm, else the one recorded in
 * state_dir, else the one whose name the AK context file names as its parent. */
static int host_ek(const struct agent_config *cfg, struct tc_tpm *tpm, struct tc_tpm_key *ek)
{
    char path[PATH_MAX];
    uint8_t *saved = NULL;
    size_t len = 0;
    int rc;

    if (cfg->ek_alg != AGENT_ALG_AUTO)
        return tc_tpm_ek_create(tpm, agent_key_alg(cfg->ek_alg), ek);
    if ((rc = agent_path(cfg->state_dir, AGENT_FILE_EK_ALG, path, sizeof(path))) != 0)
        return rc;
    if (tc_file_read(path, 16, &saved, &len) == 0) {
        bool rsa = len >= 3 && memcmp(saved, "rsa", 3) == 0;
        free(saved);
        return tc_tpm_ek_create(tpm, rsa ? TC_KEY_RSA_2048 : TC_KEY_ECC_P256, ek);
    }
    struct tc_tpm_akctx ak;
    if ((rc = agent_path(cfg->state_dir, AGENT_FILE_AK, path, sizeof(path))) != 0 ||
        (rc = tc_tpm_akctx_read(path, &ak)) != 0) {
        LOG_ERROR("cannot read the AK context %s (%s)", path, tc_strerror(rc));
        return rc;
    }
    const enum tc_key_alg order[] = {TC_KEY_ECC_P256, TC_KEY_RSA_2048};
    rc = TC_ERR_MISMATCH;
    for (size_t i = 0; i < 2 && rc == TC_ERR_MISMATCH; i++) {
        if ((rc = tc_tpm_ek_create(tpm, order[i], ek)) != 0)
            break;
        if (ek->name_len != ak.parent_name_len ||
            memcmp(ek->name, ak.parent_name, ek->name_len) != 0) {
            tc_tpm_key_release(tpm, ek);
            rc = TC_ERR_MISMATCH;
        }
    }
    tc_tpm_akctx_release(&ak);
    if (rc == TC_ERR_MISMATCH)
        LOG_ERROR("the AK in %s was not created under this TPM's EK", path);
    return rc;
}

/* rc: the result of the work done with h; after a TPM failure the host TPM is also cleaned of
 * leftovers (agent_tpm_close), which a failure without resource manager is often due to. */
static void host_close(struct host *h, int rc)
{
    tc_vtpm_guard_free(h->guard);
    if (h->tpm != NULL)
        tc_tpm_key_release(h->tpm, &h->ek);
    agent_tpm_close(h->tpm, rc);
    memset(h, 0, sizeof(*h));
}

/* Opens the host TPM and its EK; with_guard: also the state guard (registry verified). */
static int host_open(struct agent_vms *vms, bool with_guard, struct host *h, struct tc_reason *why)
{
    int rc;
    memset(h, 0, sizeof(*h));
    if ((rc = tc_tpm_open(vms->cfg->tcti, &h->tpm)) != 0) {
        tc_fail(why, rc, "agent.tpm", -1, "cannot open the host TPM");
        goto out;
    }
    if ((rc = host_ek(vms->cfg, h->tpm, &h->ek)) != 0) {
        tc_fail(why, rc, "agent.tpm", -1, "cannot load the host EK (%s)", tc_strerror(rc));
        goto out;
    }
    if (with_guard && (rc = tc_vtpm_guard_open(h->tpm, &h->ek, vms->cfg->state_dir, &vms->seal_sel,
                                               &h->guard, why)) != 0) {
        if (why->check[0] == 0)
            tc_fail(why, rc, "vtpm.registry", -1, "cannot open the vTPM registry (%s)",
                    tc_strerror(rc));
        LOG_ERROR("vTPM guard: %s: %s", why->check, why->detail);
    }
out:
    if (rc != 0)
        host_close(h, rc);
    return rc;
}

struct ca_signer {
    struct tc_tpm *tpm;
    const struct tc_tpm_key *key;
};

static int tpm_sign(void *arg, const uint8_t digest[32], uint8_t **der, size_t *der_len)
{
    const struct ca_signer *s = arg;
    return tc_tpm_sign_digest(s->tpm, s->key, digest, der, der_len);
}

/* Loads the vTPM CA key into the host TPM (creating it under the EK the first time) and makes
 * sure its certificate is known: vtpm_ca.crt, or a new self-signed one. */
static int ca_load(struct agent_vms *vms, struct host *h, struct tc_tpm_key *key,
                   struct tc_reason *why)
{
    const struct agent_config *cfg = vms->cfg;
    char ctx[PATH_MAX], crt[PATH_MAX], cn[96];
    uint8_t *der = NULL;
    size_t der_len = 0;
    X509 *cert = NULL;
    EVP_PKEY *pub = NULL;
    bool created = false;
    struct stat st;
    int rc;

    memset(key, 0, sizeof(*key));
    if ((rc = agent_path(cfg->state_dir, AGENT_FILE_VTPM_CA_CTX, ctx, sizeof(ctx))) != 0 ||
        (rc = agent_path(cfg->state_dir, AGENT_FILE_VTPM_CA_CERT, crt, sizeof(crt))) != 0)
        return tc_fail(why, rc, "vtpm_ca.key", -1, "state_dir path too long");
    if (stat(ctx, &st) == 0) {
        rc = tc_tpm_vtpm_ca_load(h->tpm, &h->ek, ctx, key);
    } else {
        created = true;
        rc = tc_tpm_vtpm_ca_create(h->tpm, &h->ek, ctx, key);
        if (rc == 0)
            LOG_INFO("created the vTPM CA key in the host TPM (%s)", ctx);
    }
    if (rc != 0) {
        tc_fail(why, rc, "vtpm_ca.key", -1, "cannot %s the vTPM CA key (%s)",
                created ? "create" : "load", tc_strerror(rc));
        goto out;
    }
    if (vms->ca_cert != NULL && !created)
        goto out;
    X509_free(vms->ca_cert);
    EVP_PKEY_free(vms->ca_pub);
    free(vms->ca_der);
    vms->ca_cert = NULL;
    vms->ca_pub = NULL;
    vms->ca_der = NULL;
    if ((rc = tc_certify_public_key(key->pub, key->pub_len, &pub)) != 0) {
        tc_fail(why, rc, "vtpm_ca.key", -1, "unusable vTPM CA public key");
        goto out;
    }
    if (!created && tc_file_read(crt, TC_VTPM_CA_MAX_CERT, &der, &der_len) == 0) {
        const uint8_t *p = der;
        cert = d2i_X509(NULL, &p, (long)der_len);
        if (cert == NULL || p != der + der_len) {
            rc =
                tc_fail(why, TC_ERR_FORMAT, "vtpm_ca.cert", -1, "%s is not a DER certificate", crt);
            goto out;
        }
        if ((rc = tc_vtpm_ca_check_cert_key(cert, key->pub, key->pub_len, why)) != 0) {
            LOG_ERROR("%s is not the certificate of the vTPM CA key in %s", crt, ctx);
            goto out;
        }
    } else {
        struct ca_signer cs = {.tpm = h->tpm, .key = key};
        struct tc_vtpm_ca_signer signer = {.sign = tpm_sign, .arg = &cs, .pubkey = pub};
        snprintf(cn, sizeof(cn), "trustcloud vTPM CA %s", cfg->node_id);
        free(der);
        der = NULL;
        unsigned char *out = NULL;
        int n;
        if ((rc = tc_vtpm_ca_self_cert(&signer, cn, 0, &cert)) != 0 ||
            (n = i2d_X509(cert, &out)) <= 0) {
            rc = tc_fail(why, rc ? rc : TC_ERR_CRYPTO, "vtpm_ca.cert", -1,
                         "cannot make the vTPM CA certificate (%s)", tc_strerror(rc));
            goto out;
        }
        der = malloc((size_t)n);
        if (der != NULL)
            memcpy(der, out, (size_t)n);
        OPENSSL_free(out);
        der_len = (size_t)n;
        if (der == NULL) {
            rc = TC_ERR_ALLOC;
            goto out;
        }
        if ((rc = tc_file_write(crt, der, der_len, 0644)) != 0) {
            tc_fail(why, rc, "vtpm_ca.cert", -1, "cannot write %s", crt);
            goto out;
        }
        LOG_INFO("wrote the vTPM CA certificate %s", crt);
    }
    vms->ca_cert = cert;
    vms->ca_pub = pub;
    vms->ca_der = der;
    vms->ca_der_len = der_len;
    cert = NULL;
    pub = NULL;
    der = NULL;
out:
    X509_free(cert);
    EVP_PKEY_free(pub);
    free(der);
    if (rc != 0)
        tc_tpm_key_release(h->tpm, key);
    return rc;
}

/* tc_vtpm_create's callback: the vTPM's EK certificate, issued by the CA key in the host TPM. */
struct issue_ctx {
    struct agent_vms *vms;
    struct ca_signer signer;
    struct vm_op *op;
};

static int issue_ek_cert(void *arg, const char *vm_id, const uint8_t *ek_public,
                         size_t ek_public_len, uint8_t **der, size_t *der_len)
{
    struct issue_ctx *ic = arg;
    struct tc_vtpm_ca_signer signer = {
        .sign = tpm_sign, .arg = &ic->signer, .pubkey = ic->vms->ca_pub};
    struct tc_vtpm_ek_req req = {
        .ek_tpm2b_public = ek_public, .ek_tpm2b_public_len = ek_public_len, .vm_id = vm_id};
    int rc;

    *der = NULL;
    *der_len = 0;
    if (ek_public_len > sizeof(ic->op->ek_pub))
        return TC_ERR_TOO_LARGE;
    if ((rc = tc_vtpm_ca_issue_ek_cert(&signer, ic->vms->ca_cert, &req, der, der_len)) != 0)
        return rc;
    free(ic->op->ek_cert);
    if ((ic->op->ek_cert = malloc(*der_len)) == NULL) {
        free(*der);
        *der = NULL;
        return TC_ERR_ALLOC;
    }
    memcpy(ic->op->ek_cert, *der, *der_len);
    ic->op->ek_cert_len = *der_len;
    memcpy(ic->op->ek_pub, ek_public, ek_public_len);
    ic->op->ek_pub_len = ek_public_len;
    agent_test_point(ic->vms->cfg, "ek_cert_issued");
    return 0;
}

/* Stops and removes the vTPM of e and its registry entry (best effort: logs what fails). */
static int vm_destroy(struct agent_vms *vms, struct vm_entry *e, struct tc_reason *why)
{
    char dir[PATH_MAX];
    struct host h;
    int rc = 0;

    /* The domain goes first: a vTPM is never deleted under a guest that may still use it. */
    if (e->libvirt && (rc = agent_libvirt_undefine(vms->cfg, e->uuid, why)) != 0) {
        LOG_ERROR("VM %s: %s: %s", e->id, why->check, why->detail);
        return rc;
    }
    e->libvirt = false;
    if (e->vtpm != NULL) {
        rc = tc_vtpm_delete(e->vtpm); /* frees the handle in every case */
        e->vtpm = NULL;
    } else if (agent_vm_dir(vms->cfg, e->id, dir, sizeof(dir)) == 0 && access(dir, F_OK) == 0) {
        /* Also what an interrupted tc_vtpm_create left (maybe no state directory yet). */
        struct tc_vtpm_config c;
        vtpm_config(vms, e->id, e->mode, NULL, &c);
        rc = tc_vtpm_purge(&c);
    }
    if (rc != 0)
        tc_fail(why, rc, "vm.delete", -1, "cannot remove the vTPM's directory");
    int grc = host_open(vms, true, &h, why);
    if (grc == 0) {
        grc = tc_vtpm_guard_forget(h.guard, e->id);
        host_close(&h, grc);
    }
    if (grc != 0)
        LOG_ERROR("VM %s: cannot remove its registry entry (%s)", e->id, tc_strerror(grc));
    return rc ? rc : grc;
}

/* ---- operations (TPM worker thread) ------------------------------------------------------ */

/* Takes the entry of op->id for this operation; answers and returns false when it cannot. */
static bool op_claim(struct vm_op *op, struct tc_http_response *resp)
{
    struct vm_entry *e = vm_find(op->vms, op->id);
    if (e == NULL || (!e->ready && !e->busy)) {
        answer_fail(resp, 404, "vm.unknown", "no VM '%s' on this node", op->id);
        return false;
    }
    if (e->busy) {
        answer_fail(resp, 409, "vm.busy", "VM '%s' has an operation in progress", op->id);
        return false;
    }
    e->busy = true;
    op->e = e;
    return true;
}

static int create_step0(struct vm_op *op, struct tc_http_response *resp)
{
    struct agent_vms *vms = op->vms;
    char dir[PATH_MAX];

    if (vm_find(vms, op->id) != NULL) {
        answer_fail(resp, 409, "vm.exists", "VM '%s' exists on this node", op->id);
        return AGENT_JOB_DONE;
    }
    if (agent_vm_dir(vms->cfg, op->id, dir, sizeof(dir)) == 0 && access(dir, F_OK) == 0) {
        /* A directory the table does not know. Without a mode file it is what a failed
         * creation could not remove (the start-up removes interrupted ones): try once more. With
         * one, it is a VM the start-up could not take (a damaged mode file): an operator's call. */
        char mode[PATH_MAX];
        struct tc_vtpm_config c;
        vtpm_config(vms, op->id, op->mode, NULL, &c);
        bool unfinished = vm_file(vms, op->id, AGENT_VM_FILE_MODE, mode, sizeof(mode)) == 0 &&
                          access(mode, F_OK) != 0 && errno == ENOENT;
        if (unfinished)
            LOG_WARN("VM %s: removing the leftover directory %s", op->id, dir);
        if (!unfinished || tc_vtpm_purge(&c) != 0) {
            answer_fail(resp, 409, "vm.exists",
                        "VM '%s': %s is left from an earlier VM or attempt that this agent does "
                        "not manage: an operator must remove it",
                        op->id, dir);
            return AGENT_JOB_DONE;
        }
    }
    if (op->has_guest && !guest_files_ok(op, resp))
        return AGENT_JOB_DONE;
    if (vms->n >= (size_t)vms->cfg->max_vms) {
        answer_fail(resp, 503, "vm.limit", "this node hosts its maximum of %lld VMs",
                    vms->cfg->max_vms);
        return AGENT_JOB_DONE;
    }
    if (vm_add(vms, op->id, op->mode, &op->e) != 0) {
        answer_fail(resp, 503, "agent.busy", "out of memory");
        return AGENT_JOB_DONE;
    }
    op->e->busy = true;
    op->step = 1;
    return AGENT_JOB_AGAIN;
}

/* Host TPM + vTPM: CA key, state key, swtpm with EK and EK certificate, registry entry. */
static int create_step1(struct vm_op *op, struct tc_http_response *resp)
{
    struct agent_vms *vms = op->vms;
    struct tc_tpm_key ca_key;
    struct tc_reason why;
    struct host h;
    uint8_t key[TC_VTPM_KEY_LEN];
    struct timespec t0;
    int rc;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    tc_reason_clear(&why);
    memset(&ca_key, 0, sizeof(ca_key));
    if ((rc = host_open(vms, true, &h, &why)) != 0)
        goto out;
    agent_test_point(vms->cfg, "host_open");
    bool known = tc_vtpm_guard_status(h.guard, op->id, NULL, NULL) == 0;
    if (known) {
        /* A registry entry without a directory: left by a deletion that did not finish. */
        LOG_WARN("VM %s: forgetting a stale registry entry", op->id);
        if ((rc = tc_vtpm_guard_forget(h.guard, op->id)) != 0) {
            tc_fail(&why, rc, "vtpm.registry", -1, "cannot forget a stale registry entry");
            goto out;
        }
    }
    if ((rc = tc_vtpm_guard_new_key(h.guard, key)) != 0) {
        tc_fail(&why, rc, "vtpm.key", -1, "cannot draw a state key");
        goto out;
    }
    if ((rc = ca_load(vms, &h, &ca_key, &why)) != 0)
        goto out;
    agent_test_point(vms->cfg, "ca_loaded");
    struct issue_ctx ic = {.vms = vms, .signer = {.tpm = h.tpm, .key = &ca_key}, .op = op};
    struct tc_vtpm_config c;
    vtpm_config(vms, op->id, op->mode, key, &c);
    c.issue_ek_cert = issue_ek_cert;
    c.issue_arg = &ic;
    if ((rc = tc_vtpm_create(&c, &op->e->vtpm)) != 0) {
        tc_fail(&why, rc, "vtpm.create", -1, "cannot create the vTPM (%s)", tc_strerror(rc));
        goto out;
    }
    op->vtpm_made = true;
    agent_test_point(vms->cfg, "vtpm_created");
    /* The CA key is flushed before sealing: without a resource manager the TPM holds only a
     * few objects, and sealing loads a policy session next to the EK. */
    tc_tpm_key_release(h.tpm, &ca_key);
    char dir[PATH_MAX];
    if ((rc = agent_vm_dir(vms->cfg, op->id, dir, sizeof(dir))) != 0 ||
        (rc = tc_vtpm_guard_created(h.guard, op->id, dir, key)) != 0) {
        tc_fail(&why, rc, "vtpm.seal", -1, "cannot seal the state key (%s)", tc_strerror(rc));
        goto out;
    }
    agent_test_point(vms->cfg, "sealed");
    write_tcti_file(vms, op->e);
out:
    OPENSSL_cleanse(key, sizeof(key));
    if (h.tpm != NULL)
        tc_tpm_key_release(h.tpm, &ca_key);
    host_close(&h, rc);
    LOG_DEBUG("VM %s: vTPM created in %ld us", op->id, elapsed_us(&t0));
    if (rc != 0) {
        LOG_ERROR("VM %s: %s: %s", op->id, why.check, why.detail);
        answer_reason(resp, 500, &why);
        return AGENT_JOB_DONE; /* done() removes what was made */
    }
    op->step = op->mode == TC_VTPM_TCP ? 2 : 3;
    return AGENT_JOB_AGAIN;
}

/* vTPM only (tcp mode): the AK under the vTPM's persistent EK, kept in ak.ctx and made persistent
 * at AGENT_VM_AK_HANDLE so that quotes need no TPM2_Load. */
static int create_step2(struct vm_op *op, struct tc_http_response *resp)
{
    struct tc_tpm *vt = NULL;
    struct tc_tpm_key ek, ak;
    char path[PATH_MAX];
    int rc;

    memset(&ek, 0, sizeof(ek));
    memset(&ak, 0, sizeof(ak));
    if ((rc = vm_file(op->vms, op->id, AGENT_VM_FILE_AK, path, sizeof(path))) != 0 ||
        (rc = tc_tpm_open(tc_vtpm_tcti(op->e->vtpm), &vt)) != 0 ||
        (rc = tc_tpm_key_from_persistent(vt, TC_TPM_EK_HANDLE_ECC, &ek)) != 0 ||
        (rc = tc_tpm_ak_create(vt, &ek, TC_KEY_ECC_P256, TC_SIG_ECDSA, path, &ak)) != 0)
        goto out;
    agent_test_point(op->vms->cfg, "ak_created");
    if ((rc = tc_tpm_key_persist(vt, &ak, AGENT_VM_AK_HANDLE)) != 0)
        goto out;
    agent_test_point(op->vms->cfg, "ak_persisted");
    memcpy(op->ak_pub, ak.pub, ak.pub_len);
    op->ak_pub_len = ak.pub_len;
    memcpy(op->e->ak_name, ak.name, ak.name_len);
    op->e->ak_name_len = ak.name_len;
    op->e->ak_persistent = true;
out:
    if (rc != 0) {
        LOG_ERROR("VM %s: cannot create the vTPM AK (%s)", op->id, tc_strerror(rc));
        answer_fail(resp, 500, "vtpm.ak", "cannot create the vTPM AK (%s)", tc_strerror(rc));
    }
    if (vt != NULL) {
        tc_tpm_key_release(vt, &ak);
        tc_tpm_key_release(vt, &ek);
    }
    tc_tpm_close(vt); /* on failure the vTPM is deleted (op_done): nothing to clean in it */
    if (rc != 0)
        return AGENT_JOB_DONE;
    op->step = 3;
    return AGENT_JOB_AGAIN;
}

static int b64_field(json_t *obj, const char *key, const uint8_t *data, size_t len)
{
    char *s = NULL;
    int rc = agent_b64_encode(data, len, &s);
    if (rc == 0 && json_object_set_new(obj, key, json_string(s)) != 0)
        rc = TC_ERR_ALLOC;
    free(s);
    return rc;
}

/* Host TPM: the host AK certifies the CA key over the coordinator's nonce; the answer. */
static int create_step3(struct vm_op *op, struct tc_http_response *resp)
{
    struct agent_vms *vms = op->vms;
    struct tc_tpm_key ca_key, ak;
    struct tc_tpm_certify cert;
    struct tc_reason why;
    struct host h;
    char path[PATH_MAX];
    json_t *ans = NULL, *ca = NULL;
    int rc;

    tc_reason_clear(&why);
    memset(&ca_key, 0, sizeof(ca_key));
    memset(&ak, 0, sizeof(ak));
    memset(&cert, 0, sizeof(cert));
    if ((rc = host_open(vms, false, &h, &why)) != 0)
        goto out;
    if ((rc = agent_path(vms->cfg->state_dir, AGENT_FILE_AK, path, sizeof(path))) != 0 ||
        (rc = tc_tpm_ak_load(h.tpm, &h.ek, path, &ak)) != 0) {
        tc_fail(&why, rc, "agent.tpm", -1, "cannot load the host AK (%s)", tc_strerror(rc));
        goto out;
    }
    if ((rc = ca_load(vms, &h, &ca_key, &why)) != 0)
        goto out;
    agent_test_point(vms->cfg, "certify_keys_loaded");
    /* Both keys are loaded: the EK can go, which leaves room for the certify session on a TPM
     * without a resource manager. */
    tc_tpm_key_release(h.tpm, &h.ek);
    if ((rc = tc_tpm_certify(h.tpm, &ca_key, &ak, op->nonce, sizeof(op->nonce), &cert)) != 0) {
        tc_fail(&why, rc, "vtpm_ca.certify", -1, "TPM2_Certify of the vTPM CA key failed (%s)",
                tc_strerror(rc));
        goto out;
    }
    agent_test_point(vms->cfg, "certified");
    if ((ans = json_object()) == NULL || (ca = json_object()) == NULL ||
        json_object_set_new(ans, "vm_id", json_string(op->id)) != 0 ||
        json_object_set_new(ans, "mode", json_string(mode_name(op->mode))) != 0 ||
        (rc = b64_field(ans, "ek_pub", op->ek_pub, op->ek_pub_len)) != 0 ||
        (rc = b64_field(ans, "ek_cert", op->ek_cert, op->ek_cert_len)) != 0 ||
        (op->mode == TC_VTPM_TCP &&
         (rc = b64_field(ans, "ak_pub", op->ak_pub, op->ak_pub_len)) != 0) ||
        (rc = b64_field(ca, "cert", vms->ca_der, vms->ca_der_len)) != 0 ||
        (rc = b64_field(ca, "public", ca_key.pub, ca_key.pub_len)) != 0 ||
        (rc = b64_field(ca, "attest", cert.attest, cert.attest_len)) != 0 ||
        (rc = b64_field(ca, "signature", cert.sig, cert.sig_len)) != 0 ||
        (op->mode == TC_VTPM_QEMU &&
         json_object_set_new(ans, "ctrl_path", json_string(tc_vtpm_ctrl_path(op->e->vtpm))) != 0) ||
        json_object_set(ans, "vtpm_ca", ca) != 0) {
        rc = tc_fail(&why, rc ? rc : TC_ERR_ALLOC, "agent.answer", -1, "cannot build the answer");
        goto out;
    }
    if (op->has_guest) {
        char name[160], chan[PATH_MAX];
        domain_name(vms, op->id, name, sizeof(name));
        if ((rc = libvirt_define(op, &why)) != 0)
            goto out;
        if ((rc = vm_file(vms, op->id, AGENT_VM_CHANNEL_SOCK, chan, sizeof(chan))) != 0 ||
            json_object_set_new(ans, "domain", json_string(name)) != 0 ||
            json_object_set_new(ans, "channel_path", json_string(chan)) != 0) {
            rc = tc_fail(&why, rc ? rc : TC_ERR_ALLOC, "agent.answer", -1,
                         "cannot build the answer");
            goto out;
        }
    }
    /* The mode file comes last: a VM directory without one is a creation that did not finish
     * (the agent was killed during it), which the next start removes (purge_incomplete). */
    const char *m = op->mode == TC_VTPM_QEMU ? "qemu\n" : "tcp\n";
    if ((rc = vm_file(vms, op->id, AGENT_VM_FILE_MODE, path, sizeof(path))) != 0 ||
        (rc = tc_file_write(path, m, strlen(m), 0600)) != 0) {
        tc_fail(&why, rc, "vm.files", -1, "cannot write the VM's mode file");
        goto out;
    }
    agent_test_point(vms->cfg, "committed");
out:
    if (h.tpm != NULL) {
        tc_tpm_key_release(h.tpm, &ca_key);
        tc_tpm_key_release(h.tpm, &ak);
    }
    tc_tpm_certify_release(&cert);
    host_close(&h, rc);
    json_decref(ca);
    if (rc != 0) {
        LOG_ERROR("VM %s: %s: %s", op->id, why.check, why.detail);
        json_decref(ans);
        answer_reason(resp, 500, &why);
        return AGENT_JOB_DONE;
    }
    op->e->ready = true;
    LOG_INFO("VM %s: vTPM created (%s mode)", op->id, mode_name(op->mode));
    answer_json(resp, 201, ans);
    return AGENT_JOB_DONE;
}

static void do_activate(struct vm_op *op, struct tc_http_response *resp)
{
    struct tc_tpm *vt = NULL;
    struct tc_tpm_key ek, ak;
    uint8_t secret[VM_SECRET_MAX];
    size_t secret_len = 0;
    char path[PATH_MAX], *b64 = NULL;
    int rc;

    memset(&ek, 0, sizeof(ek));
    memset(&ak, 0, sizeof(ak));
    if (op->e->mode != TC_VTPM_TCP) {
        /* The guest owns a qemu-mode vTPM: it runs the activation itself. */
        answer_fail(resp, 409, "vm.mode", "VM '%s' is in qemu mode: its guest owns the TPM",
                    op->id);
        return;
    }
    if (tc_vtpm_tcti(op->e->vtpm) == NULL || !tc_vtpm_running(op->e->vtpm)) {
        answer_fail(resp, 409, "vm.not_running", "VM '%s' is not running", op->id);
        return;
    }
    if ((rc = vm_file(op->vms, op->id, AGENT_VM_FILE_AK, path, sizeof(path))) != 0 ||
        (rc = tc_tpm_open(tc_vtpm_tcti(op->e->vtpm), &vt)) != 0 ||
        (rc = tc_tpm_key_from_persistent(vt, TC_TPM_EK_HANDLE_ECC, &ek)) != 0 ||
        (rc = tc_tpm_ak_load(vt, &ek, path, &ak)) != 0) {
        answer_fail(resp, 500, "vtpm.tpm", "cannot load the vTPM's keys (%s)", tc_strerror(rc));
        goto out;
    }
    rc = tc_tpm_activate_credential(vt, &ak, &ek, op->id_object, op->id_object_len, op->enc_secret,
                                    op->enc_secret_len, secret, sizeof(secret), &secret_len);
    if (rc == TC_ERR_FORMAT || rc == TC_ERR_TRAILING || rc == TC_ERR_TRUNCATED) {
        answer_fail(resp, 400, "request.credential",
                    "not a TPM2B_ID_OBJECT and "
                    "TPM2B_ENCRYPTED_SECRET (%s)",
                    tc_strerror(rc));
        goto out;
    }
    if (rc != 0) {
        LOG_WARN("VM %s: credential activation failed (%s)", op->id, tc_strerror(rc));
        answer_fail(resp, 403, "vtpm.activate",
                    "the vTPM refused the credential (not made for its EK and AK)");
        goto out;
    }
    if (agent_b64_encode(secret, secret_len, &b64) != 0) {
        answer_fail(resp, 500, "agent.answer", "cannot build the answer");
        goto out;
    }
    answer_json(resp, 200, json_pack("{s:s}", "secret", b64));
out:
    if (b64 != NULL) {
        OPENSSL_cleanse(b64, strlen(b64));
        free(b64);
    }
    OPENSSL_cleanse(secret, sizeof(secret));
    if (vt != NULL) {
        tc_tpm_key_release(vt, &ak);
        tc_tpm_key_release(vt, &ek);
    }
    agent_tpm_close(vt, rc);
}

static void answer_running(struct tc_http_response *resp, const struct agent_vms *vms,
                           const struct vm_entry *e)
{
    answer_json(resp, 200, json_pack("{s:s, s:b}", "vm_id", e->id, "running", vm_running(vms, e)));
}

/* Through the guard: state hash as recorded at the last stop, key unsealed, swtpm started. */
static int vm_start(struct agent_vms *vms, struct vm_entry *e, bool force, struct tc_reason *why)
{
    uint8_t key[TC_VTPM_KEY_LEN];
    char dir[PATH_MAX];
    struct host h;
    struct tc_vtpm *v = NULL;
    int rc;

    if ((rc = agent_vm_dir(vms->cfg, e->id, dir, sizeof(dir))) != 0)
        return tc_fail(why, rc, "vm.files", -1, "bad VM directory");
    if ((rc = host_open(vms, true, &h, why)) != 0)
        return rc;
    rc = tc_vtpm_guard_start(h.guard, e->id, dir, force ? TC_VTPM_GUARD_FORCE : 0, key, why);
    if (rc != 0) {
        if (why->check[0] == 0)
            tc_fail(why, rc, "vtpm.guard", -1, "the guard refused (%s)", tc_strerror(rc));
        LOG_WARN("VM %s: not started: %s: %s", e->id, why->check, why->detail);
        goto out;
    }
    struct tc_vtpm_config c;
    vtpm_config(vms, e->id, e->mode, key, &c);
    if ((rc = tc_vtpm_open(&c, &v)) == 0 && (rc = tc_vtpm_start(v)) == 0) {
        tc_vtpm_free(e->vtpm);
        e->vtpm = v;
        v = NULL;
        write_tcti_file(vms, e);
        LOG_INFO("VM %s: vTPM started", e->id);
    } else {
        tc_fail(why, rc, "vtpm.start", -1, "swtpm did not start (%s)", tc_strerror(rc));
        /* Nothing ran on the state the guard just checked: record it as cleanly stopped again
         * so the next start is not taken for an unclean one. */
        if (tc_vtpm_guard_stopped(h.guard, e->id, dir) != 0)
            LOG_ERROR("VM %s: cannot record its state as stopped", e->id);
    }
out:
    OPENSSL_cleanse(key, sizeof(key));
    tc_vtpm_free(v);
    host_close(&h, rc);
    return rc;
}

static void answer_start_failed(struct tc_http_response *resp, int rc, const struct tc_reason *why);

/* The vTPM stopped and its state recorded as cleanly stopped (the guard checks it at the next
 * start); a vTPM that is not running is only cleaned up after. */
static int vtpm_stop_recorded(struct agent_vms *vms, struct vm_entry *e, struct tc_reason *why)
{
    char dir[PATH_MAX];
    struct host h;
    int rc;

    tc_vtpm_stop(e->vtpm);
    write_tcti_file(vms, e);
    if ((rc = agent_vm_dir(vms->cfg, e->id, dir, sizeof(dir))) != 0 ||
        (rc = host_open(vms, true, &h, why)) != 0) {
        if (why->check[0] == 0)
            tc_fail(why, rc, "vm.files", -1, "bad VM directory");
        return rc;
    }
    if ((rc = tc_vtpm_guard_stopped(h.guard, e->id, dir)) != 0) {
        tc_fail(why, rc, "vtpm.registry", -1, "cannot record the stopped state (%s)",
                tc_strerror(rc));
        LOG_ERROR("VM %s: %s", e->id, why->detail);
    }
    host_close(&h, rc);
    return rc;
}

/* A libvirt VM: its vTPM through the guard (unless it runs, as after the creation), then its
 * domain, unless that runs already (a VM is never started twice). */
static void start_domain(struct vm_op *op, struct tc_http_response *resp)
{
    struct agent_vms *vms = op->vms;
    struct vm_entry *e = op->e;
    struct tc_reason why;
    bool active = false;
    int rc;

    tc_reason_clear(&why);
    if ((rc = agent_libvirt_active(vms->cfg, e->uuid, &active, &why)) != 0) {
        answer_reason(resp, 500, &why);
        return;
    }
    if (active) {
        answer_running(resp, vms, e);
        return;
    }
    if (!tc_vtpm_running(e->vtpm) && (rc = vm_start(vms, e, op->force, &why)) != 0) {
        answer_start_failed(resp, rc, &why);
        return;
    }
    if ((rc = libvirt_grant(vms, e, &why)) != 0 ||
        (rc = agent_libvirt_start(vms->cfg, e->uuid, &why)) != 0) {
        /* Nothing ran on the vTPM: stopped cleanly, as it was. */
        struct tc_reason w2;
        tc_reason_clear(&w2);
        LOG_ERROR("VM %s: not started: %s: %s", e->id, why.check, why.detail);
        if (vtpm_stop_recorded(vms, e, &w2) != 0)
            LOG_ERROR("VM %s: %s: %s", e->id, w2.check, w2.detail);
        answer_reason(resp, 500, &why);
        return;
    }
    LOG_INFO("VM %s: domain started", e->id);
    answer_running(resp, vms, e);
}

/* A libvirt VM's stop, in steps so that host quotes go on meanwhile: an ACPI shutdown, polls
 * every 100 ms until the domain is down or libvirt_stop_timeout has passed (then it is
 * destroyed), then the vTPM, which ends when QEMU lets go of it, is recorded as stopped. */
static int stop_domain(struct vm_op *op, struct tc_http_response *resp)
{
    struct agent_vms *vms = op->vms;
    struct vm_entry *e = op->e;
    struct tc_reason why;
    bool active = false;
    int rc;

    tc_reason_clear(&why);
    if ((rc = agent_libvirt_active(vms->cfg, e->uuid, &active, &why)) != 0) {
        answer_reason(resp, 500, &why);
        return AGENT_JOB_DONE;
    }
    if (op->step == 0 && !active) {
        /* Down already (the guest powered off): like a vTPM that exited on its own, only a
         * forced start accepts the state it left. */
        tc_vtpm_stop(e->vtpm);
        answer_running(resp, vms, e);
        return AGENT_JOB_DONE;
    }
    if (op->step == 0) {
        if ((rc = agent_libvirt_shutdown(vms->cfg, e->uuid, false, &why)) != 0) {
            answer_reason(resp, 500, &why);
            return AGENT_JOB_DONE;
        }
        LOG_INFO("VM %s: ACPI shutdown requested", e->id);
        clock_gettime(CLOCK_MONOTONIC, &op->stop_t0);
        op->step = 1;
        return AGENT_JOB_AGAIN;
    }
    if (active) {
        if (elapsed_us(&op->stop_t0) / 1000 < vms->cfg->libvirt_stop_timeout) {
            struct timespec ts = {.tv_sec = 0, .tv_nsec = 100 * 1000000L};
            nanosleep(&ts, NULL);
            return AGENT_JOB_AGAIN;
        }
        LOG_WARN("VM %s: no shutdown within %lld ms: destroying the domain", e->id,
                 vms->cfg->libvirt_stop_timeout);
        if ((rc = agent_libvirt_shutdown(vms->cfg, e->uuid, true, &why)) != 0) {
            answer_reason(resp, 500, &why);
            return AGENT_JOB_DONE;
        }
        op->stop_destroyed = true;
    }
    for (int i = 0; i < 40 && tc_vtpm_running(e->vtpm); i++) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if ((rc = vtpm_stop_recorded(vms, e, &why)) != 0) {
        answer_reason(resp, 500, &why);
        return AGENT_JOB_DONE;
    }
    LOG_INFO("VM %s: domain %s, vTPM state recorded", e->id,
             op->stop_destroyed ? "destroyed after the timeout" : "shut down");
    answer_json(resp, 200,
                json_pack("{s:s, s:b, s:b}", "vm_id", e->id, "running", 0, "destroyed",
                          op->stop_destroyed));
    return AGENT_JOB_DONE;
}

static void do_start(struct vm_op *op, struct tc_http_response *resp)
{
    struct tc_reason why;
    tc_reason_clear(&why);
    if (op->e->libvirt) {
        start_domain(op, resp);
        return;
    }
    if (tc_vtpm_running(op->e->vtpm)) {
        answer_running(resp, op->vms, op->e);
        return;
    }
    int rc = vm_start(op->vms, op->e, op->force, &why);
    if (rc == 0) {
        answer_running(resp, op->vms, op->e);
        return;
    }
    answer_start_failed(resp, rc, &why);
}

static void answer_start_failed(struct tc_http_response *resp, int rc, const struct tc_reason *why)
{
    unsigned status = 500;
    if (strcmp(why->check, "vtpm.unseal") == 0)
        status = 403;
    else if (rc == TC_ERR_ROLLBACK || rc == TC_ERR_POLICY || strncmp(why->check, "vtpm.", 5) == 0)
        status = 409;
    if (strcmp(why->check, "vtpm.start") == 0 || strcmp(why->check, "agent.tpm") == 0)
        status = 500;
    answer_reason(resp, status, why);
}

static void do_stop(struct vm_op *op, struct tc_http_response *resp)
{
    struct tc_reason why;

    tc_reason_clear(&why);
    if (!tc_vtpm_running(op->e->vtpm)) {
        /* Stopped already (or exited on its own: the guard then still says "running", and
         * only a forced start accepts that state). */
        tc_vtpm_stop(op->e->vtpm); /* reaps an exited child, removes stale files */
        write_tcti_file(op->vms, op->e);
        answer_running(resp, op->vms, op->e);
        return;
    }
    if (vtpm_stop_recorded(op->vms, op->e, &why) != 0) {
        answer_reason(resp, 500, &why);
        return;
    }
    LOG_INFO("VM %s: vTPM stopped, state recorded", op->id);
    answer_running(resp, op->vms, op->e);
}

static void do_delete(struct vm_op *op, struct tc_http_response *resp)
{
    struct tc_reason why;
    tc_reason_clear(&why);
    int rc = vm_destroy(op->vms, op->e, &why);
    if (rc != 0 && op->e->libvirt) {
        /* The domain is still there: so is everything else, for another attempt. */
        answer_reason(resp, 500, &why);
        return;
    }
    vm_remove(op->vms, op->e);
    op->e = NULL;
    if (rc != 0) {
        if (why.check[0] == 0)
            tc_fail(&why, rc, "vm.delete", -1, "cannot delete everything (%s)", tc_strerror(rc));
        answer_reason(resp, 500, &why);
        return;
    }
    LOG_INFO("VM %s: deleted", op->id);
    answer_json(resp, 200, json_pack("{s:s, s:b}", "vm_id", op->id, "deleted", 1));
}

static void do_list(struct vm_op *op, struct tc_http_response *resp)
{
    json_t *list = json_array();
    for (size_t i = 0; list != NULL && i < op->vms->n; i++) {
        const struct vm_entry *e = op->vms->vms[i];
        if (!e->ready)
            continue;
        json_t *one = json_pack("{s:s, s:b, s:s}", "id", e->id, "running", vm_running(op->vms, e),
                                "mode", mode_name(e->mode));
        if (one != NULL && e->libvirt)
            json_object_set_new(one, "domain_uuid", json_string(e->uuid));
        if (json_array_append_new(list, one) != 0) {
            json_decref(list);
            list = NULL;
        }
    }
    answer_json(resp, 200, list ? json_pack("{s:o}", "vms", list) : NULL);
}

static int op_run(void *arg, struct tc_http_response *resp)
{
    struct vm_op *op = arg;
    if (op->kind == OP_CREATE) {
        switch (op->step) {
        case 0:
            return create_step0(op, resp);
        case 1:
            return create_step1(op, resp);
        case 2:
            return create_step2(op, resp);
        default:
            return create_step3(op, resp);
        }
    }
    if (op->kind == OP_LIST) {
        do_list(op, resp);
        return AGENT_JOB_DONE;
    }
    if (op->kind == OP_RESTART) {
        struct tc_reason why;
        tc_reason_clear(&why);
        struct vm_entry *e = vm_find(op->vms, op->id);
        if (e != NULL && !e->busy && !tc_vtpm_running(e->vtpm)) {
            e->busy = true;
            op->e = e;
            int rc = vm_start(op->vms, e, op->force, &why);
            /* A libvirt VM whose domain went down with its vTPM (a host restart): both again. */
            if (rc == 0 && e->libvirt && !domain_active(op->vms, e) &&
                ((rc = libvirt_grant(op->vms, e, &why)) != 0 ||
                 (rc = agent_libvirt_start(op->vms->cfg, e->uuid, &why)) != 0))
                LOG_ERROR("VM %s: its domain cannot be started again", e->id);
            if (rc != 0)
                LOG_ERROR("VM %s was running before the agent stopped and cannot be restarted: "
                          "%s: %s",
                          e->id, why.check, why.detail);
        }
        return AGENT_JOB_DONE;
    }
    if (op->kind == OP_STOP && op->step > 0)
        return stop_domain(op, resp); /* holds its entry since step 0 */
    if (!op_claim(op, resp))
        return AGENT_JOB_DONE;
    if (op->kind == OP_STOP && op->e->libvirt)
        return stop_domain(op, resp);
    switch (op->kind) {
    case OP_ACTIVATE:
        do_activate(op, resp);
        break;
    case OP_START:
        do_start(op, resp);
        break;
    case OP_STOP:
        do_stop(op, resp);
        break;
    case OP_DELETE:
        do_delete(op, resp);
        break;
    default:
        answer_fail(resp, 500, "agent.internal", "unknown operation");
        break;
    }
    return AGENT_JOB_DONE;
}

static void op_done(void *arg)
{
    struct vm_op *op = arg;
    if (op->e != NULL) {
        if (op->kind == OP_CREATE && !op->e->ready) {
            /* A creation that failed or was cut short (agent stopping): nothing stays. */
            struct tc_reason why;
            tc_reason_clear(&why);
            if (op->vtpm_made || op->e->vtpm != NULL)
                vm_destroy(op->vms, op->e, &why);
            vm_remove(op->vms, op->e);
        } else {
            op->e->busy = false;
        }
    }
    free(op->ek_cert);
    OPENSSL_cleanse(op, sizeof(*op));
    free(op);
}

/* ---- handlers (httpd thread: parse, bound, queue) ---------------------------------------- */

static bool from_coordinator(const struct tc_http_request *req, struct tc_http_response *resp)
{
    /* The coordinator role (its EKU with CN "coordinator"), not just a CN another leaf of the
     * same CA could be given. */
    if (req->peer != NULL && strcmp(req->peer->cn, COORDINATOR_CN) == 0 &&
        (req->peer->roles & TC_PKI_ROLE_COORDINATOR))
        return true;
    LOG_WARN("%s: refused %s %s from '%s' (not the coordinator)", req->remote_addr, req->method,
             req->path, req->peer ? req->peer->cn : "");
    answer_fail(resp, 403, "agent.forbidden", "only the coordinator may call this");
    return false;
}

static void submit(struct agent_vms *vms, const struct tc_http_request *req,
                   struct tc_http_response *resp, struct vm_op *op)
{
    if (agent_server_submit(vms->srv, req, op_run, op_done, op) != 0) {
        answer_fail(resp, 503, "agent.busy", "too much work queued for the TPM");
        free(op->ek_cert);
        OPENSSL_cleanse(op, sizeof(*op));
        free(op);
    }
}

static struct vm_op *op_new(struct agent_vms *vms, enum vm_op_kind kind,
                            struct tc_http_response *resp)
{
    struct vm_op *op = calloc(1, sizeof(*op));
    if (op == NULL) {
        answer_fail(resp, 503, "agent.busy", "out of memory");
        return NULL;
    }
    op->vms = vms;
    op->kind = kind;
    return op;
}

/* The body as a flat JSON object; an empty body is {} when allow_empty. */
static json_t *load_body(const struct tc_http_request *req, bool allow_empty,
                         struct tc_http_response *resp)
{
    json_error_t jerr;
    if (req->body_len == 0 && allow_empty)
        return json_object();
    if (req->body_len > AGENT_MAX_REQUEST) {
        answer_fail(resp, 413, "request.body", "body above %u bytes", AGENT_MAX_REQUEST);
        return NULL;
    }
    json_t *j = json_loadb((const char *)req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (j == NULL || !json_is_object(j)) {
        json_decref(j);
        answer_fail(resp, 400, "request.json", "not a JSON object");
        return NULL;
    }
    return j;
}

static bool b64_arg(json_t *j, const char *key, uint8_t *out, size_t cap, size_t *len,
                    struct tc_http_response *resp)
{
    json_t *v = json_object_get(j, key);
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        json_string_length(v) > 4 * ((cap + 2) / 3) ||
        agent_b64_decode(json_string_value(v), json_string_length(v), out, cap, len) != 0) {
        answer_fail(resp, 400, "request.credential", "%s: base64 of at most %zu bytes required",
                    key, cap);
        return false;
    }
    return true;
}

static void h_vms(void *arg, const struct tc_http_request *req, struct tc_http_response *resp)
{
    struct agent_vms *vms = arg;
    struct vm_op *op = NULL;
    json_t *j = NULL, *v;
    size_t n = 0;

    if (!from_coordinator(req, resp))
        return;
    if (strcmp(req->method, "GET") == 0) {
        if ((op = op_new(vms, OP_LIST, resp)) != NULL)
            submit(vms, req, resp, op);
        return;
    }
    if ((j = load_body(req, false, resp)) == NULL)
        return;
    v = json_object_get(j, "vm_id");
    if (!json_is_string(v) || json_string_length(v) > TC_VTPM_ID_MAX ||
        strlen(json_string_value(v)) != json_string_length(v) || !vm_id_ok(json_string_value(v))) {
        answer_fail(resp, 400, "request.vm_id", "vm_id: [A-Za-z0-9._-]{1,64} required");
        goto out;
    }
    if ((op = op_new(vms, OP_CREATE, resp)) == NULL)
        goto out;
    snprintf(op->id, sizeof(op->id), "%s", json_string_value(v));
    v = json_object_get(j, "nonce");
    if (!json_is_string(v) || json_string_length(v) != 2 * VM_NONCE_LEN ||
        tc_hex_decode(json_string_value(v), json_string_length(v), op->nonce, sizeof(op->nonce),
                      &n) != 0 ||
        n != VM_NONCE_LEN) {
        answer_fail(resp, 400, "request.nonce", "nonce: 32 bytes in hex required");
        goto out;
    }
    v = json_object_get(j, "mode");
    if (v == NULL || json_is_null(v) ||
        (json_is_string(v) && strcmp(json_string_value(v), "tcp") == 0))
        op->mode = TC_VTPM_TCP;
    else if (json_is_string(v) && strcmp(json_string_value(v), "qemu") == 0)
        op->mode = TC_VTPM_QEMU;
    else {
        answer_fail(resp, 400, "request.mode", "mode: \"tcp\" or \"qemu\"");
        goto out;
    }
    v = json_object_get(j, "guest");
    if (v != NULL) {
        struct tc_reason why;
        tc_reason_clear(&why);
        if (tc_vm_guest_from_json(v, &op->guest, &why) != 0) {
            answer_reason(resp, 400, &why);
            goto out;
        }
        if (op->mode != TC_VTPM_QEMU) {
            answer_fail(resp, 400, "request.mode", "a VM with a guest definition is in qemu mode");
            goto out;
        }
        op->has_guest = true;
    }
    submit(vms, req, resp, op);
    op = NULL;
out:
    free(op);
    json_decref(j);
}

/* /v1/vms/{id}[/activate|/start|/stop] */
static void h_vm(void *arg, const struct tc_http_request *req, struct tc_http_response *resp)
{
    struct agent_vms *vms = arg;
    static const char prefix[] = "/v1/vms/";
    struct vm_op *op = NULL;
    json_t *j = NULL;
    char id[TC_VTPM_ID_MAX + 1];

    if (!from_coordinator(req, resp))
        return;
    const char *p = req->path + strlen(prefix);
    const char *slash = strchr(p, '/');
    size_t idlen = slash ? (size_t)(slash - p) : strlen(p);
    const char *action = slash ? slash + 1 : "";
    if (idlen == 0 || idlen > TC_VTPM_ID_MAX) {
        answer_fail(resp, 400, "request.vm_id", "vm id: [A-Za-z0-9._-]{1,64}");
        return;
    }
    memcpy(id, p, idlen);
    id[idlen] = 0;
    if (!vm_id_ok(id)) {
        answer_fail(resp, 400, "request.vm_id", "vm id: [A-Za-z0-9._-]{1,64}");
        return;
    }
    enum vm_op_kind kind;
    const char *method = strcmp(action, "") == 0 ? "DELETE" : "POST";
    if (strcmp(action, "") == 0)
        kind = OP_DELETE;
    else if (strcmp(action, "activate") == 0 || strcmp(action, "guest") == 0)
        kind = OP_ACTIVATE;
    else if (strcmp(action, "start") == 0)
        kind = OP_START;
    else if (strcmp(action, "stop") == 0)
        kind = OP_STOP;
    else {
        answer_fail(resp, 404, "request.path", "no such route");
        return;
    }
    if (strcmp(req->method, method) != 0) {
        answer_fail(resp, 405, "request.method", "use %s", method);
        return;
    }
    /* A guest that owns its vTPM (a libvirt VM: its directory names its domain) answers for
     * itself over its channel, on a thread of its own. */
    char domfile[PATH_MAX], chan[PATH_MAX];
    bool guest = kind == OP_ACTIVATE &&
                 vm_file(vms, id, AGENT_VM_FILE_DOMAIN, domfile, sizeof(domfile)) == 0 &&
                 access(domfile, F_OK) == 0 &&
                 vm_file(vms, id, AGENT_VM_CHANNEL_SOCK, chan, sizeof(chan)) == 0;
    if (strcmp(action, "guest") == 0 && !guest) {
        answer_fail(resp, 404, "vm.no_guest_channel",
                    "VM '%s' has no guest channel on this node (not a libvirt VM)", id);
        return;
    }
    if (guest) {
        struct tc_gc_activate act;
        memset(&act, 0, sizeof(act));
        bool activate = strcmp(action, "activate") == 0;
        if (activate) {
            if ((j = load_body(req, false, resp)) == NULL)
                return;
            if (!b64_arg(j, "id_object", act.id_object, sizeof(act.id_object), &act.id_object_len,
                         resp) ||
                !b64_arg(j, "encrypted_secret", act.enc_secret, sizeof(act.enc_secret),
                         &act.enc_secret_len, resp)) {
                json_decref(j);
                return;
            }
            json_decref(j);
            act.id = agent_vm_guest_request_id(vms);
        }
        agent_guest_runner_submit(&vms->guests, req, resp, id, chan, (int)vms->cfg->guest_timeout,
                                  activate ? &act : NULL);
        OPENSSL_cleanse(&act, sizeof(act));
        return;
    }
    if ((op = op_new(vms, kind, resp)) == NULL)
        return;
    memcpy(op->id, id, idlen + 1);
    if (kind == OP_ACTIVATE || kind == OP_START) {
        if ((j = load_body(req, kind == OP_START, resp)) == NULL)
            goto out;
    }
    if (kind == OP_ACTIVATE &&
        (!b64_arg(j, "id_object", op->id_object, sizeof(op->id_object), &op->id_object_len, resp) ||
         !b64_arg(j, "encrypted_secret", op->enc_secret, sizeof(op->enc_secret),
                  &op->enc_secret_len, resp)))
        goto out;
    if (kind == OP_START) {
        json_t *f = json_object_get(j, "force");
        if (f != NULL && !json_is_boolean(f)) {
            answer_fail(resp, 400, "request.force", "force: boolean");
            goto out;
        }
        op->force = json_is_true(f);
    }
    submit(vms, req, resp, op);
    op = NULL;
out:
    if (op != NULL) {
        OPENSSL_cleanse(op, sizeof(*op));
        free(op);
    }
    json_decref(j);
}

int agent_vms_routes(struct agent_vms *vms, struct tc_httpd *httpd)
{
    int rc;
    if ((rc = tc_httpd_route(httpd, "POST", "/v1/vms", h_vms, vms, 0)) != 0 ||
        (rc = tc_httpd_route(httpd, "GET", "/v1/vms", h_vms, vms, 0)) != 0 ||
        (rc = tc_httpd_route(httpd, NULL, "/v1/vms/", h_vm, vms, 0)) != 0)
        return rc;
    return 0;
}

/* ---- start-up ------------------------------------------------------------------------------ */

static int read_mode(const struct agent_vms *vms, const char *id, enum tc_vtpm_mode *mode)
{
    char path[PATH_MAX];
    uint8_t *s = NULL;
    size_t len = 0;
    int rc;
    if ((rc = vm_file(vms, id, AGENT_VM_FILE_MODE, path, sizeof(path))) != 0 ||
        (rc = tc_file_read(path, MODE_FILE_MAX, &s, &len)) != 0)
        return rc;
    if (len >= 4 && memcmp(s, "qemu", 4) == 0)
        *mode = TC_VTPM_QEMU;
    else if (len >= 3 && memcmp(s, "tcp", 3) == 0)
        *mode = TC_VTPM_TCP;
    else
        rc = TC_ERR_FORMAT;
    free(s);
    return rc;
}

/* Interrupted creations forgotten in the registry per start (the rest: at their id's next
 * creation, which forgets a stale entry itself). */
#define PURGE_MAX 64

/* Creations that did not finish: VM directories without a mode file (create_step3 writes it
 * last), left when the agent was killed in the middle of a creation. Their swtpm is stopped, the
 * directory removed and the registry entry forgotten, so that the id can be created again.
 * Failures are logged with what is left to do; the agent starts all the same. */
static void purge_incomplete(struct agent_vms *vms)
{
    char ids[PURGE_MAX][TC_VTPM_ID_MAX + 1];
    size_t nids = 0;
    struct dirent *de;
    DIR *d;

    if ((d = opendir(vms->cfg->vm_dir)) == NULL)
        return; /* scan reports it */
    while ((de = readdir(d)) != NULL) {
        char dir[PATH_MAX], mode[PATH_MAX];
        struct stat st;
        if (!vm_id_ok(de->d_name) || agent_vm_dir(vms->cfg, de->d_name, dir, sizeof(dir)) != 0 ||
            lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) ||
            vm_file(vms, de->d_name, AGENT_VM_FILE_MODE, mode, sizeof(mode)) != 0 ||
            lstat(mode, &st) == 0 || errno != ENOENT)
            continue;
        struct tc_vtpm_config c;
        vtpm_config(vms, de->d_name, TC_VTPM_TCP, NULL, &c);
        LOG_WARN("VM %s: its creation did not finish (no mode file): removing %s", de->d_name, dir);
        if (tc_vtpm_purge(&c) != 0) {
            LOG_ERROR("VM %s: cannot remove %s: remove it by hand before creating '%s' again",
                      de->d_name, dir, de->d_name);
            continue;
        }
        if (nids < PURGE_MAX)
            memcpy(ids[nids++], de->d_name, strlen(de->d_name) + 1);
    }
    closedir(d);
    if (nids == 0)
        return;
    struct tc_reason why;
    struct host h;
    tc_reason_clear(&why);
    int rc = host_open(vms, true, &h, &why);
    if (rc != 0) {
        /* Harmless until the limit of entries: a creation of the same id forgets it. */
        LOG_ERROR("interrupted creations: their registry entries stay (%s: %s)", why.check,
                  why.detail);
        return;
    }
    for (size_t i = 0; rc == 0 && i < nids; i++)
        if ((rc = tc_vtpm_guard_forget(h.guard, ids[i])) != 0)
            LOG_ERROR("VM %s: cannot forget its registry entry (%s)", ids[i], tc_strerror(rc));
    host_close(&h, rc);
}

/* The VMs on disk: running ones are adopted, ones whose swtpm died (pid file left behind) are
 * queued for a restart through the guard; interrupted creations are removed first. */
static int scan(struct agent_vms *vms)
{
    struct tc_vtpm_entry *list = NULL;
    size_t n = 0;
    int rc;

    purge_incomplete(vms);

    if ((rc = tc_vtpm_list(vms->cfg->vm_dir, &list, &n)) != 0) {
        LOG_ERROR("cannot list %s (%s)", vms->cfg->vm_dir, tc_strerror(rc));
        return rc;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        enum tc_vtpm_mode mode;
        struct tc_vtpm_config c;
        struct vm_entry *e = NULL;
        char pidfile[PATH_MAX];
        if (!vm_id_ok(list[i].id) || read_mode(vms, list[i].id, &mode) != 0) {
            LOG_WARN("%s/%s: not a complete VM (no mode file): ignored", vms->cfg->vm_dir,
                     list[i].id);
            continue;
        }
        vtpm_config(vms, list[i].id, mode, NULL, &c);
        if ((rc = vm_add(vms, list[i].id, mode, &e)) != 0)
            break;
        if ((rc = tc_vtpm_open(&c, &e->vtpm)) != 0) {
            vm_remove(vms, e);
            break;
        }
        e->ready = true;
        int drc = read_domain(vms, e);
        if (drc != 0 && drc != TC_ERR_NOT_FOUND)
            LOG_ERROR("VM %s: unreadable %s (%s): its domain is not managed", e->id,
                      AGENT_VM_FILE_DOMAIN, tc_strerror(drc));
        if (e->libvirt) {
            struct tc_reason why;
            bool active = false;
            tc_reason_clear(&why);
            if (agent_libvirt_active(vms->cfg, e->uuid, &active, &why) != 0)
                LOG_ERROR("VM %s: domain %s: %s: %s", e->id, e->uuid, why.check, why.detail);
            else if (active)
                LOG_INFO("VM %s: domain %s running, adopted", e->id, e->uuid);
            if (active && !tc_vtpm_running(e->vtpm))
                LOG_ERROR("VM %s: its domain runs without its vTPM", e->id);
        }
        if (tc_vtpm_running(e->vtpm)) {
            LOG_INFO("VM %s: vTPM running (pid %d), adopted", e->id, (int)tc_vtpm_pid(e->vtpm));
            write_tcti_file(vms, e);
            continue;
        }
        write_tcti_file(vms, e);
        if (vm_file(vms, e->id, "swtpm.pid", pidfile, sizeof(pidfile)) == 0 &&
            access(pidfile, F_OK) == 0) {
            struct vm_op *op = calloc(1, sizeof(*op));
            if (op == NULL) {
                rc = TC_ERR_ALLOC;
                break;
            }
            op->vms = vms;
            op->kind = OP_RESTART;
            memcpy(op->id, e->id, sizeof(op->id));
            LOG_INFO("VM %s: its vTPM was running before: restarting it", e->id);
            if ((rc = agent_server_submit(vms->srv, NULL, op_run, op_done, op)) != 0) {
                free(op);
                break;
            }
        }
    }
    free(list);
    return rc;
}

int agent_vms_new(const struct agent_config *cfg, struct agent_server *srv, struct agent_vms **out)
{
    struct agent_vms *vms;
    int rc;

    *out = NULL;
    if ((vms = calloc(1, sizeof(*vms))) == NULL)
        return TC_ERR_ALLOC;
    vms->cfg = cfg;
    vms->srv = srv;
    atomic_init(&vms->guest_request, 1);
    agent_guest_runner_init(&vms->guests);
    if ((rc = tc_pcrs_parse_selection(cfg->vm_seal_pcrs, &vms->seal_sel)) != 0)
        goto out;
    if (mkdir(cfg->vm_dir, 0700) != 0 && errno != EEXIST) {
        LOG_ERROR("cannot create %s: %s", cfg->vm_dir, strerror(errno));
        rc = TC_ERR_IO;
        goto out;
    }
    if ((rc = scan(vms)) != 0)
        goto out;
    LOG_INFO("%zu VM(s) in %s", vms->n, cfg->vm_dir);
    *out = vms;
    vms = NULL;
out:
    agent_vms_free(vms);
    return rc;
}

void agent_vms_stop_guests(struct agent_vms *vms)
{
    if (vms != NULL)
        agent_guest_runner_stop(&vms->guests);
}

void agent_vms_free(struct agent_vms *vms)
{
    if (vms == NULL)
        return;
    agent_guest_runner_release(&vms->guests);
    for (size_t i = 0; i < vms->n; i++) {
        tc_vtpm_free(vms->vms[i]->vtpm);
        free(vms->vms[i]);
    }
    free(vms->vms);
    free(vms->by_id);
    X509_free(vms->ca_cert);
    EVP_PKEY_free(vms->ca_pub);
    free(vms->ca_der);
    free(vms);
}

/* ---- for the batch quote (worker thread) --------------------------------------------------- */

/* The entry of a running tcp-mode vTPM; agent_vm_tcti's errors. */
static int quotable(struct agent_vms *vms, const char *vm_id, struct vm_entry **out)
{
    *out = NULL;
    if (vms == NULL || !vm_id_ok(vm_id))
        return TC_ERR_NOT_FOUND;
    struct vm_entry *e = vm_find(vms, vm_id);
    if (e == NULL || (!e->ready && !e->busy))
        return TC_ERR_NOT_FOUND;
    if (!e->ready || e->mode != TC_VTPM_TCP || tc_vtpm_tcti(e->vtpm) == NULL ||
        !tc_vtpm_running(e->vtpm))
        return TC_ERR_INVALID_ARG;
    *out = e;
    return 0;
}

int agent_vm_tcti(struct agent_vms *vms, const char *vm_id, char *tcti, size_t tcti_cap,
                  char *ak_path, size_t ak_cap)
{
    struct vm_entry *e;
    if (tcti_cap > 0)
        tcti[0] = 0;
    if (ak_cap > 0)
        ak_path[0] = 0;
    int rc = quotable(vms, vm_id, &e);
    if (rc != 0)
        return rc;
    const char *t = tc_vtpm_tcti(e->vtpm);
    if (strlen(t) >= tcti_cap)
        return TC_ERR_TOO_LARGE;
    if ((rc = vm_file(vms, vm_id, AGENT_VM_FILE_AK, ak_path, ak_cap)) != 0)
        return rc;
    memcpy(tcti, t, strlen(t) + 1);
    return 0;
}

uint64_t agent_vm_guest_request_id(struct agent_vms *vms)
{
    return atomic_fetch_add(&vms->guest_request, 1);
}

int agent_vm_guest(struct agent_vms *vms, const char *vm_id, char *chan, size_t cap,
                   uint64_t *request_id)
{
    if (cap > 0)
        chan[0] = 0;
    if (vms == NULL || !vm_id_ok(vm_id))
        return TC_ERR_NOT_FOUND;
    struct vm_entry *e = vm_find(vms, vm_id);
    if (e == NULL || (!e->ready && !e->busy))
        return TC_ERR_NOT_FOUND;
    if (!e->libvirt)
        return TC_ERR_UNSUPPORTED;
    if (!e->ready || e->vtpm == NULL || !tc_vtpm_running(e->vtpm))
        return TC_ERR_INVALID_ARG;
    int rc = vm_file(vms, vm_id, AGENT_VM_CHANNEL_SOCK, chan, cap);
    if (rc == 0)
        *request_id = agent_vm_guest_request_id(vms);
    return rc;
}

int agent_vm_vtpm(struct agent_vms *vms, const char *vm_id, struct agent_vm_vtpm *out)
{
    struct vm_entry *e;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = quotable(vms, vm_id, &e)) != 0)
        return rc;
    const char *t = tc_vtpm_tcti(e->vtpm);
    if (strlen(t) >= sizeof(out->tcti))
        return TC_ERR_TOO_LARGE;
    memcpy(out->tcti, t, strlen(t) + 1);
    if ((rc = vm_file(vms, vm_id, AGENT_VM_FILE_AK, out->ak_path, sizeof(out->ak_path))) != 0) {
        memset(out, 0, sizeof(*out));
        return rc;
    }
    if (e->ak_name_len == 0) {
        /* A VM this agent did not create (adopted at start-up): its AK's name once, from the
         * context file. An unreadable file is left to the quote, which reports it. */
        struct tc_tpm_akctx ctx;
        if (tc_tpm_akctx_read(out->ak_path, &ctx) == 0) {
            memcpy(e->ak_name, ctx.name, ctx.name_len);
            e->ak_name_len = ctx.name_len;
        }
        tc_tpm_akctx_release(&ctx);
    }
    memcpy(out->ak_name, e->ak_name, e->ak_name_len);
    out->ak_name_len = e->ak_name_len;
    out->ak_persistent = e->ak_persistent;
    return 0;
}

void agent_vm_vtpm_learned(struct agent_vms *vms, const char *vm_id, const struct agent_vm_vtpm *v)
{
    struct vm_entry *e = vms ? vm_find(vms, vm_id) : NULL;
    if (e == NULL || v->ak_name_len == 0 || v->ak_name_len > sizeof(e->ak_name))
        return;
    memcpy(e->ak_name, v->ak_name, v->ak_name_len);
    e->ak_name_len = v->ak_name_len;
    e->ak_persistent = v->ak_persistent;
}

/* The AK of v, loaded into vt: at AGENT_VM_AK_HANDLE when it is there (one ReadPublic), else
 * from ak.ctx under the persistent EK (ek holds it then). *migrate: the handle is free, so the
 * AK loaded from the file can be made persistent once it has quoted. */
static int vtpm_ak(struct tc_tpm *vt, struct agent_vm_vtpm *v, const char *vm_id,
                   struct tc_tpm_key *ek, struct tc_tpm_key *ak, bool *migrate)
{
    bool exists = false;
    int rc;

    *migrate = false;
    if (v->ak_persistent) {
        rc =
            tc_tpm_key_from_persistent_name(vt, AGENT_VM_AK_HANDLE, v->ak_name, v->ak_name_len, ak);
        if (rc != TC_ERR_NOT_FOUND && rc != TC_ERR_MISMATCH)
            return rc; /* 0, or the TPM failed: nothing learned about the AK */
        LOG_WARN("VM %s: the vTPM AK is not at 0x%08x any more (%s): using %s", vm_id,
                 AGENT_VM_AK_HANDLE, tc_strerror(rc), v->ak_path);
        v->ak_persistent = false;
    }
    /* Not known to be persistent (a VM created before it was kept so, or adopted): look without
     * provoking a TPM error, and take it when it is there with the right name. */
    rc = tc_tpm_key_from_persistent(vt, AGENT_VM_AK_HANDLE, ak);
    if (rc != 0 && rc != TC_ERR_NOT_FOUND)
        return rc;
    exists = rc == 0;
    if (exists && v->ak_name_len > 0 && ak->name_len == v->ak_name_len &&
        memcmp(ak->name, v->ak_name, v->ak_name_len) == 0) {
        v->ak_persistent = true;
        return 0;
    }
    if (exists)
        LOG_WARN("VM %s: another key than the vTPM AK is at 0x%08x: using %s", vm_id,
                 AGENT_VM_AK_HANDLE, v->ak_path);
    tc_tpm_key_release(vt, ak);
    rc = tc_tpm_key_from_persistent(vt, TC_TPM_EK_HANDLE_ECC, ek);
    if (rc == TC_ERR_NOT_FOUND) /* recreated from the seed: the same key */
        rc = tc_tpm_ek_create(vt, TC_KEY_ECC_P256, ek);
    if (rc != 0 || (rc = tc_tpm_ak_load(vt, ek, v->ak_path, ak)) != 0)
        return rc;
    if (ak->name_len <= sizeof(v->ak_name)) {
        memcpy(v->ak_name, ak->name, ak->name_len);
        v->ak_name_len = ak->name_len;
    }
    *migrate = !exists;
    return 0;
}

/* One attempt; started: the vTPM is taken as started (no Startup command). */
static int vtpm_quote_once(struct agent_vm_vtpm *v, const char *vm_id, bool started,
                           const struct tc_pcr_set *sel, const uint8_t *nonce, size_t nonce_len,
                           struct tc_tpm_quote *quote)
{
    struct tc_tpm *vt = NULL;
    struct tc_tpm_key ek, ak;
    bool migrate = false;
    int rc;

    memset(&ek, 0, sizeof(ek));
    memset(&ak, 0, sizeof(ak));
    if ((rc = started ? tc_tpm_open_started(v->tcti, &vt) : tc_tpm_open(v->tcti, &vt)) != 0 ||
        (rc = vtpm_ak(vt, v, vm_id, &ek, &ak, &migrate)) != 0 ||
        (rc = tc_tpm_quote(vt, &ak, sel, nonce, nonce_len, quote)) != 0)
        goto out;
    if (migrate) {
        /* After the quote: a failure here costs only speed, the next quote tries again. */
        int prc = tc_tpm_key_persist(vt, &ak, AGENT_VM_AK_HANDLE);
        if (prc == 0) {
            v->ak_persistent = true;
            LOG_INFO("VM %s: vTPM AK made persistent at 0x%08x", vm_id, AGENT_VM_AK_HANDLE);
        } else {
            LOG_WARN("VM %s: cannot make the vTPM AK persistent (%s)", vm_id, tc_strerror(prc));
        }
    }
out:
    if (vt != NULL) {
        tc_tpm_key_release(vt, &ak);
        tc_tpm_key_release(vt, &ek);
    }
    agent_tpm_close(vt, rc);
    return rc;
}

int agent_vm_vtpm_quote(struct agent_vm_vtpm *v, const char *vm_id, const struct tc_pcr_set *sel,
                        const uint8_t *nonce, size_t nonce_len, struct tc_tpm_quote *quote)
{
    memset(quote, 0, sizeof(*quote));
    /* The agent starts every tcp-mode swtpm with startup-clear, so Startup is one command (one
     * connection, with swtpm's TCTI) of six spent for nothing; a vTPM that turns out not to be
     * started (or any other TPM failure) gets a second attempt that issues it. */
    int rc = vtpm_quote_once(v, vm_id, true, sel, nonce, nonce_len, quote);
    if (rc == TC_ERR_TPM) {
        LOG_INFO("VM %s: vTPM quote failed, trying again after a Startup", vm_id);
        rc = vtpm_quote_once(v, vm_id, false, sel, nonce, nonce_len, quote);
    }
    return rc;
}

int agent_vm_quote(struct agent_vms *vms, const char *vm_id, const struct tc_pcr_set *sel,
                   const uint8_t *nonce, size_t nonce_len, struct tc_tpm_quote *quote)
{
    struct agent_vm_vtpm v;
    int rc;

    memset(quote, 0, sizeof(*quote));
    if ((rc = agent_vm_vtpm(vms, vm_id, &v)) != 0)
        return rc;
    if ((rc = agent_vm_vtpm_quote(&v, vm_id, sel, nonce, nonce_len, quote)) != 0)
        LOG_ERROR("VM %s: vTPM quote failed (%s)", vm_id, tc_strerror(rc));
    agent_vm_vtpm_learned(vms, vm_id, &v);
    return rc;
}
