/* SPDX-License-Identifier: Apache-2.0 */
/*
 * trustcloud-agent: the node agent (the RATS attester). Private to src/agent.
 *
 *   agent_config.c   the [agent] settings table, loading and checks
 *   agent_request.c  bounded parsing of what the coordinator sends, building answers, base64
 *   agent_tpm.c      TPM access, one connection per operation (identity, quote, activation)
 *   agent_enroll.c   enrollment client (docs/protocol.md, "Enrollment")
 *   agent_serve.c    the mTLS server: /v1/quote, /v1/notice, /v1/peers
 *   agent_batch.c    batch attestation: the listed VMs' vTPMs quoted in parallel, Merkle tree
 *   agent_main.c     command line, signals
 */
#ifndef TC_AGENT_H
#define TC_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "trustcloud/buf.h"
#include "trustcloud/config.h"
#include "trustcloud/pcrs.h"
#include "trustcloud/reason.h"
#include "trustcloud/tpm.h"

/* ---- Configuration (agent_config.c) ------------------------------------------------------ */

/* AUTO (ek_alg only): the EK whose certificate the TPM holds, ECC P-256 first, then RSA; the
 * choice is recorded in state_dir (the AK is bound to that EK) and kept from then on. */
enum agent_alg { AGENT_ALG_ECC = 0, AGENT_ALG_RSA = 1, AGENT_ALG_AUTO = 2 };

struct agent_config {
    char *node_id;
    char *tcti;
    char *state_dir;
    char *listen_address;
    long long listen_port;
    char *agent_url; /* derived from listen_address:listen_port when not set */
    char *coordinator_url;
    char *ca_file;
    char *eventlog_path;
    char *ima_path;
    int ek_alg; /* enum agent_alg */
    int ak_alg; /* enum agent_alg */
    char *group;
    int log_level;                /* enum tc_log_level */
    long long enroll_backoff_max; /* ms: longest wait between enrollment attempts */
    long long enroll_attempts;    /* 0: retry for ever while the coordinator is unreachable */
    long long max_pending_quotes; /* quote requests queued for the TPM before 503 */
    /* Virtual machines (agent_vm.c) */
    char *vm_dir;       /* one subdirectory per VM; default <state_dir>/vms */
    char *vm_seal_pcrs; /* host PCRs the vTPM state keys are sealed to */
    long long max_vms;  /* VMs this agent hosts at most */
    char *swtpm;        /* swtpm binary for the vTPMs (default: "swtpm" from PATH) */
    /* VMs with a guest definition (agent_libvirt.c) */
    char *libvirt_uri;              /* libvirt connection their domains are defined on */
    char *libvirt_qemu_user;        /* the user QEMU runs as ("": the agent's own) */
    long long libvirt_stop_timeout; /* ms: graceful (ACPI) shutdown before destroy */
    long long guest_timeout;        /* ms: one exchange with a guest agent, deadline included */
    /* Tests only, not a setting: the step of a VM creation where the agent stops itself
     * (agent_test_point); empty unless agent_test_hooks_from_env found test hooks enabled. */
    char test_pause_at[32];
    /* HTTPS server connection limits (httpd.h, "Limits"). */
    long long max_connections;
    long long max_unauthenticated;             /* handshaking; 0 = half of max_connections */
    long long max_unauthenticated_per_address; /* 0 = no cap */
    long long handshake_timeout;               /* ms, like the other durations here */
    long long header_timeout;                  /* ms */
    long long idle_timeout;                    /* ms */
};

extern const struct tc_config_setting agent_config_table[];

/* Defaults, then the file, then agent_config_check. Errors carry "file:line: what" or the
 * failed check in err. Call agent_config_release in every case. */
int agent_config_load(const char *path, struct agent_config *cfg, char *err, size_t errlen);
int agent_config_load_string(const char *text, size_t len, struct agent_config *cfg, char *err,
                             size_t errlen);
/* Cross-field checks and derived values (agent_url). TC_ERR_INVALID_ARG with err set. */
int agent_config_check(struct agent_config *cfg, char *err, size_t errlen);
void agent_config_release(struct agent_config *cfg);

/* Test hooks, for crash tests only. With TC_TEST_HOOKS=1 in the environment (and never
 * otherwise), TC_TEST_PAUSE_AT=<step> is copied to cfg->test_pause_at (a warning says so); without
 * TC_TEST_HOOKS both are ignored. */
void agent_test_hooks_from_env(struct agent_config *cfg);
/* A named step of the agent's work (the VM creation's: agent_vm.c lists them). When it is
 * cfg->test_pause_at, logs "test hook: paused at <step>" at warn level and stops the whole
 * process with SIGSTOP, so that a test can kill -9 it exactly there. Otherwise nothing. */
void agent_test_point(const struct agent_config *cfg, const char *step);

/* Node ids match [A-Za-z0-9._-]{1,64} (docs/protocol.md). */
bool agent_node_id_valid(const char *id);
enum tc_key_alg agent_key_alg(int agent_alg);

/* Files in state_dir. */
#define AGENT_FILE_AK "ak.ctx"
#define AGENT_FILE_EK_ALG "ek.alg" /* the EK algorithm chosen by ek_alg = auto */
#define AGENT_FILE_KEY "tls.key"   /* the agent's TLS key, 0600 */
#define AGENT_FILE_CERT "tls.crt"  /* its certificate, issued at enrollment */
#define AGENT_FILE_CA "ca.pem"     /* the CA the coordinator returned at enrollment */
/* dir/name into buf; TC_ERR_TOO_LARGE when it does not fit. */
int agent_path(const char *dir, const char *name, char *buf, size_t cap);

/* ---- Requests and answers (agent_request.c) ---------------------------------------------- */

#define AGENT_MAX_NONCE 64 /* TPM2B_DATA limit for qualifyingData here */
#define AGENT_MAX_SELECTION_TEXT 256
#define AGENT_MAX_IMA_FROM 100000000ULL  /* far above any real list (TC_IMA_MAX_ENTRIES) */
#define AGENT_MAX_REQUEST (1024u * 1024) /* request bodies (4096 VMs of a batch fit) */
#define AGENT_MAX_ANSWER (16u << 20)     /* a /v1/quote answer (protocol cap) */
#define AGENT_MAX_BATCH_VMS 4096         /* VMs in one challenge (TC_BATCH_MAX_VMS) */

/* One VM of a batch challenge ("vms" entries). */
struct agent_vm_request {
    char id[65]; /* a valid VM id */
    uint64_t ima_from;
    bool want_eventlog;
};

struct agent_quote_request {
    uint8_t nonce[AGENT_MAX_NONCE];
    size_t nonce_len;
    struct tc_pcr_set selection; /* banks and masks only */
    uint64_t ima_from;
    bool want_eventlog;
    /* Batch attestation: has_vms when the body carries "vms" (even empty); the VMs in request
     * order (malloc'd, NULL when nvms is 0), ids unique; vm_selection is "vm_pcr_selection" or,
     * without it, the same as selection. */
    bool has_vms;
    struct agent_vm_request *vms;
    size_t nvms;
    struct tc_pcr_set vm_selection;
};

/* Parses and bounds-checks a POST /v1/quote body. Any failure is TC_ERR_FORMAT (or
 * TC_ERR_TOO_LARGE / TC_ERR_UNSUPPORTED) with why naming "request.<field>" (VM entries:
 * "request.vms..." with why->entry the position in "vms"); req then holds nothing. On success
 * release req with agent_quote_request_release. */
int agent_quote_request_parse(const uint8_t *body, size_t len, struct agent_quote_request *req,
                              struct tc_reason *why);
/* Frees req->vms and clears req. NULL is a no-op. */
void agent_quote_request_release(struct agent_quote_request *req);

/* A revocation notice (POST /v1/notice): the protocol's event object. */
struct agent_notice {
    char node_id[65];
    char new_state[33];
    char old_state[33];
    long long seq; /* -1 when absent */
    char check[48];
};
int agent_notice_parse(const uint8_t *body, size_t len, struct agent_notice *n,
                       struct tc_reason *why);

/* Standard base64 (RFC 4648, with padding). *out malloc'd (NUL-terminated). */
int agent_b64_encode(const uint8_t *in, size_t len, char **out);
/* Decodes a base64 string of slen characters into at most cap bytes (TC_ERR_TOO_LARGE beyond,
 * TC_ERR_FORMAT for anything that is not canonical padded base64). */
int agent_b64_decode(const char *s, size_t slen, uint8_t *out, size_t cap, size_t *out_len);

/* The /v1/quote answer. ima_list: binary measurements of entries ima_first.. (may be empty);
 * eventlog may be NULL (not asked). *out is a new reference. */
int agent_quote_answer(const uint8_t *attest, size_t attest_len, const uint8_t *sig, size_t sig_len,
                       const struct tc_pcr_set *pcrs, const uint8_t *eventlog, size_t eventlog_len,
                       uint64_t ima_first, const uint8_t *ima_list, size_t ima_list_len,
                       json_t **out);

/* {"error": detail, "check": check} */
json_t *agent_error_json(const struct tc_reason *why);

/* The evidence of one VM of a batch (agent_batch.c gathers it): a quote entry when rc is 0,
 * else an error entry {"id", "error", "check"}. */
struct agent_vm_evidence {
    char id[65];
    int rc;         /* 0: quoted; else a TC_ERR_* */
    char check[48]; /* error entries: "vm.not_running", "vm.unknown", "vm.tpm", ... */
    char error[160];
    struct tc_tpm_quote quote; /* attest, sig, pcrs (vm_pcr_selection) */
    uint64_t ima_first;
    struct tc_buf ima; /* guest IMA entries ima_first.. in binary (may be empty) */
    uint8_t *eventlog; /* guest UEFI log (malloc'd); NULL when not asked or the guest has none */
    size_t eventlog_len;
};
/* Initialises / releases (quote, buffers) one entry; release of NULL is a no-op. */
void agent_vm_evidence_init(struct agent_vm_evidence *ev, const char *id);
void agent_vm_evidence_release(struct agent_vm_evidence *ev);

/* The Merkle tree (trustcloud/batch.h) over the quoted entries of ev[0..n), in order: leaf i is
 * the i-th entry with rc 0. *tree is NULL (and 0 returned) when no entry is quoted. */
struct tc_batch_tree;
int agent_batch_tree(const struct agent_vm_evidence *ev, size_t n, struct tc_batch_tree **tree);
/* Adds "batch" ({"root", "count"}, only when tree is not NULL) and "vms" (one entry per ev, in
 * order; quote entries with "index" and "proof") to the /v1/quote answer. tree must be
 * agent_batch_tree's of the same ev. On failure answer may hold part of it (drop it). */
int agent_batch_answer(json_t *answer, const struct agent_vm_evidence *ev, size_t n,
                       const struct tc_batch_tree *tree);

/* ---- Batch attestation (agent_batch.c) --------------------------------------------------- */

#ifndef AGENT_BATCH_WORKERS /* threads quoting vTPMs, the caller included (-D for benchmarks) */
#define AGENT_BATCH_WORKERS 8
#endif
#define AGENT_VM_FILE_GUEST_IMA "guest_ima"           /* guest IMA list (ASCII or binary) */
#define AGENT_VM_FILE_GUEST_EVENTLOG "guest_eventlog" /* guest UEFI event log */

struct agent_vms;
struct agent_batch {
    struct agent_vm_evidence *ev; /* one per requested VM, in request order */
    size_t n;
    struct tc_batch_tree *tree; /* over the quoted ones; NULL when none was quoted */
    uint8_t qualifying[32];     /* tc_batch_qualifying_data(nonce, root) when tree */
    long elapsed_us;            /* wall time of the VM half */
};

/* On the TPM worker thread (it reads the VM table through agent_vm_tcti): quotes the vTPM of
 * every VM in req->vms (their AK, qualifyingData = req->nonce, req->vm_selection) with up to
 * AGENT_BATCH_WORKERS threads, each with its own connection, then reads each guest's IMA list
 * (<vm dir>/guest_ima from the VM's ima_from, binary) and, when asked and present, its event log
 * (<vm dir>/guest_eventlog); builds the Merkle tree over the quoted VMs. A VM that is unknown,
 * not running, or whose vTPM or logs fail becomes an error entry (checks vm.unknown,
 * vm.not_running, vm.tpm, vm.ima, vm.eventlog, vm.too_large). vms may be NULL (no VM table: all
 * unknown). Fails only for local resources (TC_ERR_ALLOC, crypto); *out set on success. */
int agent_batch_collect(const struct agent_config *cfg, struct agent_vms *vms,
                        const struct agent_quote_request *req, struct agent_batch **out);
/* The host quote's qualifyingData: b->qualifying when at least one VM was quoted, else (also
 * for b NULL) the request's nonce itself. *qd points into b or req. */
int agent_batch_host_nonce(const struct agent_batch *b, const struct agent_quote_request *req,
                           const uint8_t **qd, size_t *qd_len);
/* Adds "batch" and "vms" to the /v1/quote answer (agent_batch_answer). */
int agent_batch_add(const struct agent_batch *b, json_t *answer);
/* NULL is a no-op. */
void agent_batch_free(struct agent_batch *b);

/* The IMA list at path (binary or ASCII, detected) as binary measurements of entries from..
 * (all of them, *first = 0, when the list is shorter: it restarted). An absent file is an empty
 * list. Shared by the host's list and the guests'. TC_ERR_* of the parser with why filled. */
int agent_ima_slice(const char *path, uint64_t from, uint64_t *first, struct tc_buf *out,
                    struct tc_reason *why);

/* ---- TPM (agent_tpm.c) ------------------------------------------------------------------- */

/* What enrollment needs from the TPM: marshaled public areas and the EK certificate. */
struct agent_identity {
    uint8_t ek_pub[TC_TPM_MAX_PUBLIC];
    size_t ek_pub_len;
    uint8_t ak_pub[TC_TPM_MAX_PUBLIC];
    size_t ak_pub_len;
    uint8_t ak_name[TC_TPM_MAX_NAME];
    size_t ak_name_len;
    uint8_t *ek_cert; /* DER, malloc'd; NULL when the TPM has none for this EK type */
    size_t ek_cert_len;
};
void agent_identity_release(struct agent_identity *id);

/* Opens the TPM, creates the EK, loads the AK from state_dir (or creates and saves it the first
 * time), fills id, closes the TPM. */
int agent_tpm_identity(const struct agent_config *cfg, struct agent_identity *id);

/* Opens the TPM, loads EK and AK, activates the credential, then quotes PCR sel with
 * qualifyingData = nonce, closes. secret receives the credential. */
int agent_tpm_activate_and_quote(const struct agent_config *cfg, const uint8_t *id_object,
                                 size_t id_object_len, const uint8_t *enc_secret,
                                 size_t enc_secret_len, uint8_t *secret, size_t secret_cap,
                                 size_t *secret_len, const struct tc_pcr_set *sel,
                                 const uint8_t *nonce, size_t nonce_len,
                                 struct tc_tpm_quote *quote);

/* Crash recovery on the host TPM (cfg->tcti): opens it and flushes what a process that died
 * while using it left loaded (tc_tpm_flush_leftovers: only with a TCTI without resource manager,
 * else nothing is sent). The agent does it at start-up, and agent_tpm_close after a TPM operation
 * failed. Errors are logged and returned; callers carry on. */
int agent_tpm_clean(const char *tcti);
/* The end of an operation on a TPM (host or vTPM): closes tpm (NULL is a no-op). When rc, the
 * operation's result, is TC_ERR_TPM, first flushes the leftovers the failure may be due to, so
 * that the next operation finds room (the handle's own keys go with the close, as always). */
void agent_tpm_close(struct tc_tpm *tpm, int rc);

/* Opens the TPM, loads EK and AK, quotes, closes. */
int agent_tpm_quote(const struct agent_config *cfg, const struct tc_pcr_set *sel,
                    const uint8_t *nonce, size_t nonce_len, struct tc_tpm_quote *quote);

/* ---- Enrollment (agent_enroll.c) --------------------------------------------------------- */

/* Exit status for a refusal by the coordinator (scripts can rely on it). */
#define AGENT_EXIT_REFUSED 3

struct agent_enroll_result {
    bool already;   /* state_dir had a certificate for our key: nothing was sent */
    char state[32]; /* "enrolled" or "pending_approval" when something was sent */
};

/* Runs enrollment unless state_dir already holds a certificate for the agent's TLS key.
 * Retries with exponential backoff while the coordinator is unreachable (or answers 5xx), up
 * to cfg->enroll_attempts (0: until *stop becomes non-zero). Returns 0, TC_ERR_POLICY when the
 * coordinator refused (its reason is logged and copied to why), TC_ERR_IO when it stayed
 * unreachable, or the error of a local step (TPM, files). */
int agent_enroll(const struct agent_config *cfg, volatile int *stop,
                 struct agent_enroll_result *res, struct tc_reason *why);

/* SHA-256(nonce || SHA-256(DER SubjectPublicKeyInfo of key)): the enrollment quote's
 * qualifyingData, binding the TLS key to the AK. key is an EVP_PKEY *. */
int agent_binding_digest(const uint8_t *nonce, size_t nonce_len, const void *key, uint8_t out[32]);

/* ---- Serving (agent_serve.c) ------------------------------------------------------------- */

struct agent_server;
int agent_server_new(const struct agent_config *cfg, struct agent_server **out);
uint16_t agent_server_port(const struct agent_server *s);
/* Does the queued TPM work (quotes, one at a time) on the calling thread until *stop is set,
 * then answers what is still queued with 503. */
int agent_server_run(struct agent_server *s, volatile int *stop);
/* Stops serving, answers queued requests with 503, frees. NULL is a no-op. */
void agent_server_free(struct agent_server *s);


/* ---- Virtual machines (agent_vm.c) ------------------------------------------------------- */
/* docs/protocol.md, "Virtual machines": one vTPM (swtpm) per VM in <vm_dir>/<vm_id>/, its state
 * key sealed in the host TPM by the state guard, its EK certified by the vTPM CA key that lives
 * in the host TPM. agent_serve.c owns one struct agent_vms (s->vms) and registers its routes. */
struct agent_vms;
struct agent_server;
struct tc_httpd;
struct tc_http_request;
struct tc_http_response;

#define AGENT_FILE_VTPM_CA_CTX "vtpm_ca.ctx"  /* the vTPM CA key (host TPM context), in state_dir */
#define AGENT_FILE_VTPM_CA_CERT "vtpm_ca.crt" /* its self-signed certificate (DER), in state_dir */
#define AGENT_VM_FILE_AK "ak.ctx"             /* the vTPM AK (tcp mode), in <vm_dir>/<vm_id> */
#define AGENT_VM_FILE_TCTI "tcti"             /* the running vTPM's TCTI string (tcp mode) */
#define AGENT_VM_FILE_MODE "mode"             /* "tcp" or "qemu" */
#define AGENT_VM_FILE_GUEST "guest.json"      /* the guest definition (libvirt VMs) */
#define AGENT_VM_FILE_DOMAIN "domain"         /* the libvirt domain's UUID (libvirt VMs) */
#define AGENT_VM_CHANNEL_DIR "channel"        /* QEMU's directory: the guest channel socket */
#define AGENT_VM_CHANNEL_SOCK "channel/guest.sock"
#define AGENT_VM_CONSOLE_LOG "console.log" /* the guest's serial console (virtlogd) */

/* The VM table of cfg->vm_dir (created if missing), with routes served through srv's TPM
 * worker. Scans the VMs already on disk; those that were running before (a pid file whose
 * process is gone) are queued for a restart through the guard. *out set on success only. */
int agent_vms_new(const struct agent_config *cfg, struct agent_server *srv, struct agent_vms **out);
/* POST/GET /v1/vms, /v1/vms/{id}[/activate|/start|/stop] (coordinator only). */
int agent_vms_routes(struct agent_vms *vms, struct tc_httpd *httpd);
/* Frees the table; running vTPMs keep running (a restarted agent adopts them). NULL: no-op. */
void agent_vms_free(struct agent_vms *vms);

/* For the /v1/quote batch path, on the TPM worker thread only. The running tcp-mode vTPM of
 * vm_id: its TCTI string (e.g. "swtpm:host=127.0.0.1,port=P") in tcti and the path of its AK
 * context file (tc_tpm_ak_load under the vTPM EK, persistent at TC_TPM_EK_HANDLE_ECC) in
 * ak_path. TC_ERR_NOT_FOUND: no such VM here; TC_ERR_INVALID_ARG: not running, qemu mode (no AK)
 * or being created/deleted; TC_ERR_TOO_LARGE: a buffer is too small. */
int agent_vm_tcti(struct agent_vms *vms, const char *vm_id, char *tcti, size_t tcti_cap,
                  char *ak_path, size_t ak_cap);
/* The same, then quotes sel with qualifyingData = nonce (agent_vm_vtpm_quote) and remembers
 * what it learned about the AK (quote cleared first; release with tc_tpm_quote_release).
 * TC_ERR_TPM from the vTPM. */
int agent_vm_quote(struct agent_vms *vms, const char *vm_id, const struct tc_pcr_set *sel,
                   const uint8_t *nonce, size_t nonce_len, struct tc_tpm_quote *quote);

/* Where a tcp-mode vTPM keeps its AK: made persistent there at creation (ak.ctx is still
 * written), or at the first quote for a VM created before, so that a quote needs no TPM2_Load
 * under the EK (most of a vTPM quote's cost). */
#define AGENT_VM_AK_HANDLE 0x81010003u

/* One VM's vTPM as a thread that quotes it needs it: no access to the VM table. */
struct agent_vm_vtpm {
    char tcti[64];
    char ak_path[4096];               /* <vm dir>/ak.ctx */
    uint8_t ak_name[TC_TPM_MAX_NAME]; /* the AK's name (from ak.ctx); 0 bytes when unknown */
    size_t ak_name_len;
    bool ak_persistent; /* the AK is known to be at AGENT_VM_AK_HANDLE */
};
/* TPM worker thread only: the guest channel socket of a VM whose guest owns its vTPM (a libvirt
 * domain) into chan, and a fresh request id for it. TC_ERR_UNSUPPORTED: the agent holds this
 * VM's vTPM itself (ask agent_vm_vtpm); TC_ERR_NOT_FOUND: unknown; TC_ERR_INVALID_ARG: not
 * running (its vTPM is down). */
int agent_vm_guest(struct agent_vms *vms, const char *vm_id, char *chan, size_t cap,
                   uint64_t *request_id);
/* A fresh guest channel request id (any thread). */
uint64_t agent_vm_guest_request_id(struct agent_vms *vms);
/* Refuses new guest exchanges and waits for those running (before the server is freed). */
void agent_vms_stop_guests(struct agent_vms *vms);
/* TPM worker thread only: agent_vm_tcti's checks and errors, and what the table knows of the AK
 * (its name is read from ak.ctx once per VM and kept). */
int agent_vm_vtpm(struct agent_vms *vms, const char *vm_id, struct agent_vm_vtpm *out);
/* Any thread (touches only v): opens the vTPM (without Startup: the agent starts every tcp-mode
 * swtpm with startup-clear; once more with Startup when that attempt fails on the TPM), quotes
 * sel with qualifyingData = nonce by the AK and closes. The AK is taken at AGENT_VM_AK_HANDLE when v says it is there, else (or when it is
 * not, or another key is) loaded from ak.ctx under the persistent EK, and then made persistent
 * when the handle is free; v->ak_persistent and v->ak_name say what was found. quote is cleared
 * first (release with tc_tpm_quote_release). TC_ERR_TPM from the vTPM, the AK file's errors. */
int agent_vm_vtpm_quote(struct agent_vm_vtpm *v, const char *vm_id, const struct tc_pcr_set *sel,
                        const uint8_t *nonce, size_t nonce_len, struct tc_tpm_quote *quote);
/* TPM worker thread only: keeps what agent_vm_vtpm_quote learned (AK persistent, its name) in
 * the table for the next quotes. An unknown VM is ignored. */
void agent_vm_vtpm_learned(struct agent_vms *vms, const char *vm_id,
                           const struct agent_vm_vtpm *v);
/* <vm_dir>/<vm_id> (where guest_ima and guest_eventlog are) into buf; TC_ERR_INVALID_ARG for an
 * invalid id, TC_ERR_TOO_LARGE when it does not fit. */
int agent_vm_dir(const struct agent_config *cfg, const char *vm_id, char *buf, size_t cap);

/* ---- libvirt domains (agent_libvirt.c) --------------------------------------------------- */
/* One connection to cfg->libvirt_uri per call; failures fill why ("vm.libvirt": libvirt not
 * reachable or failing, "vm.domain": the domain refused or missing, with libvirt's message).
 * TPM worker thread only. */
#define AGENT_UUID_LEN 36
struct tc_vm_guest;
struct agent_domain_def {
    const char *name;           /* trustcloud-<node_id>-<vm_id> */
    const char *uuid;           /* NULL or "": libvirt picks one */
    const struct tc_vm_guest *guest;
    const char *tpm_socket;     /* the vTPM's control socket (qemu mode) */
    const char *channel_socket; /* where QEMU listens for the host side of the guest channel */
    const char *console_log;
};
/* The domain XML (malloc'd) for def: TC_ERR_ALLOC only. */
int agent_libvirt_xml(const struct agent_domain_def *def, char **xml);
/* Defines (persistently) the domain; its UUID into uuid. */
int agent_libvirt_define(const struct agent_config *cfg, const struct agent_domain_def *def,
                         char uuid[AGENT_UUID_LEN + 1], struct tc_reason *why);
/* TC_ERR_NOT_FOUND when libvirt has no such domain. */
int agent_libvirt_active(const struct agent_config *cfg, const char *uuid, bool *active,
                         struct tc_reason *why);
/* Starts it unless it runs already (never twice). */
int agent_libvirt_start(const struct agent_config *cfg, const char *uuid, struct tc_reason *why);
/* Asks for an ACPI shutdown (destroy: pulls the plug); a domain that is not running is fine. */
int agent_libvirt_shutdown(const struct agent_config *cfg, const char *uuid, bool destroy,
                           struct tc_reason *why);
/* Destroys it if it runs, then undefines it (and its NVRAM); an unknown domain is fine. */
int agent_libvirt_undefine(const struct agent_config *cfg, const char *uuid,
                           struct tc_reason *why);

/* Work for the TPM worker thread (agent_serve.c). run answers resp and returns AGENT_JOB_DONE,
 * or leaves resp alone and returns AGENT_JOB_AGAIN to be queued again at the tail, so that a
 * long operation runs in short steps with host quotes in between. done(arg) runs exactly once,
 * after the last run or when the job is dropped because the agent stops (then a deferred
 * request is answered 503 by the server). req NULL: nobody waits for an answer. On failure
 * (TC_ERR_IO: stopping or queue full, TC_ERR_ALLOC) nothing is queued and done is not called. */
enum { AGENT_JOB_DONE = 0, AGENT_JOB_AGAIN = 1 };
typedef int (*agent_job_run_fn)(void *arg, struct tc_http_response *resp);
int agent_server_submit(struct agent_server *s, const struct tc_http_request *req,
                        agent_job_run_fn run, void (*done)(void *arg), void *arg);

#endif
