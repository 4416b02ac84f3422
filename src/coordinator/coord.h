/* SPDX-License-Identifier: Apache-2.0 */
/*
 * trustcloud-coordinator internals: settings, the daemon state shared by the
 * HTTPS handlers (the HTTPS server's loop thread) and the attestation engine (one
 * event loop thread), request validation helpers and the IMA state codec.
 *
 * Locking: struct coord.lock guards the store (which is single-threaded by
 * contract), the node table and the waiter list. Handlers hold it for the
 * duration of one request; the engine holds it while it appraises the answers
 * of one tick and records them, never while it waits on the network.
 */
#ifndef TC_COORDINATOR_COORD_H
#define TC_COORDINATOR_COORD_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coordinator/store.h"
#include "trustcloud/config.h"
#include "trustcloud/httpc.h"
#include "trustcloud/httpd.h"
#include "trustcloud/ima.h"
#include "trustcloud/pki.h"
#include "trustcloud/quote.h"
#include <openssl/x509.h>
#include <tss2/tss2_tpm2_types.h>

/* ---- settings (coord_config.c) --------------------------------------------------------- */

enum coord_approval { COORD_APPROVAL_AUTO = 0, COORD_APPROVAL_MANUAL };

struct coord_settings {
    char *listen;                      /* numeric address */
    long long port;                    /* 0 = any free port */
    char *db;                          /* store URI, "sqlite:PATH" or "postgresql://..." */
    char *ca_dir;                      /* `trustcloud ca init` output */
    char *ek_ca_bundle;                /* manufacturer EK CA file or directory (optional) */
    int approval;                      /* enum coord_approval */
    long long interval_ms;             /* challenge period per node */
    long long unreachable_after;       /* consecutive misses before "unreachable" */
    long long request_timeout_ms;      /* one challenge; a timeout is a miss */
    bool allow_ek_without_cert;        /* accept EKs with no manufacturer certificate */
    bool load_test_allow_software_aks; /* POST /v1/nodes/import (load tests only) */
    long long webhook_max_backoff_ms;  /* cap of the webhook retry delay */
    long long webhook_timeout_ms;      /* one webhook delivery attempt */
    bool webhook_allow_http;           /* accept http:// subscriber URLs (tests, local relays) */
    long long enrollment_ttl_ms;       /* pending enrollment lifetime */
    long long max_body;                /* request body cap except policies */
    long long max_policy_body;         /* POST /v1/policies body cap */
    char *pcr_selection;               /* quoted PCRs, tpm2-tools syntax */
    bool sync_full;                    /* store fsyncs every commit */
    int log_level;                     /* enum tc_log_level */
    long long enroll_per_address;      /* pending enrollments started from one client address */
    long long enroll_ek_hold_ms;       /* a pending enrollment its EK cannot replace (activation) */
    /* HTTPS server connection limits (httpd.h, "Limits"). */
    long long max_connections;     /* concurrent connections */
    long long max_unauthenticated; /* of them without a verified certificate; 0 = half */
    long long max_unauthenticated_per_address; /* the same per client address; 0 = no cap */
    long long handshake_timeout_ms;            /* TLS handshake, from accept */
    long long header_timeout_ms;               /* first complete request head, from accept */
    long long idle_timeout_ms;                 /* keep-alive: next request head after an answer */
};

extern const struct tc_config_setting coord_settings_table[];

/* Loads path (NULL: defaults only) and checks cross-field rules. err gets "file:line: what". */
int coord_settings_load(const char *path, struct coord_settings *s, char *err, size_t errlen);
/* Copies the connection limits into the HTTPS server's configuration. */
void coord_settings_httpd_limits(const struct coord_settings *s, struct tc_httpd_config *hc);
void coord_settings_release(struct coord_settings *s);

/* ---- request validation (coord_validate.c) --------------------------------------------- */

#define COORD_NODE_ID_MAX 64
#define COORD_JSON_MAX_DEPTH 16
#define COORD_B64_MAX (24u << 20) /* decoded bytes of any base64 field */

/* [A-Za-z0-9._-]{1,64}; len is the byte length (embedded NULs fail). */
bool coord_valid_node_id(const char *s, size_t len);
/* Group names follow the node id rule. */
#define coord_valid_group coord_valid_node_id
/* https://HOST[:PORT][/] with HOST an IPv4 literal, [IPv6] literal or DNS name; host (without
 * brackets) copied to host[hostcap]. http:// too when allow_http. */
bool coord_valid_url(const char *url, bool allow_http, char *host, size_t hostcap);
/* Parses a JSON object of at most max bytes and depth COORD_JSON_MAX_DEPTH (duplicate keys
 * refused). Returns NULL with err filled ("json.size", "json.depth", "json.parse", "json.type"). */
json_t *coord_json_parse(const uint8_t *body, size_t len, size_t max, struct tc_reason *err);
/* Nesting depth of JSON text (brackets outside strings); stops counting past limit. */
size_t coord_json_depth(const uint8_t *body, size_t len, size_t limit);
/* Standard base64 (padding required, no whitespace) of at most max decoded bytes. *out
 * malloc'd (free). TC_ERR_FORMAT or TC_ERR_TOO_LARGE. */
int coord_b64_decode(const char *s, size_t len, size_t max, uint8_t **out, size_t *out_len);
/* Base64 text (malloc'd, NUL-terminated). */
char *coord_b64_encode(const uint8_t *data, size_t len);
/* A string member of at most max bytes (no NUL); NULL if absent or not a string. */
const char *coord_json_str(const json_t *obj, const char *key, size_t max, size_t *len);

/* ---- IMA replay state codec (coord_imastate.c) ----------------------------------------- */

#define COORD_IMA_STATE_VERSION 1
/* Versioned binary form for tc_store_node.ima_state. *out malloc'd. */
int coord_ima_state_encode(const struct tc_ima_replay_state *st, uint8_t **out, size_t *len);
/* TC_ERR_FORMAT / TC_ERR_UNSUPPORTED (version, bank) / TC_ERR_TRAILING. */
int coord_ima_state_decode(const uint8_t *data, size_t len, struct tc_ima_replay_state *st);

/* ---- the daemon --------------------------------------------------------------------------- */

struct coord_node;    /* engine view of one node (coord_engine.c) */
struct coord_pending; /* what activation needs besides the stored enrollment (coord_enroll.c) */
struct coord_waiter;  /* a deferred GET /v1/events */

/* Whether the engine's verdicts reach the store. While a round cannot be recorded (disk full,
 * I/O error) the engine keeps it in memory, in order, retries it every tick and fails closed in
 * every answer about the node meanwhile (coord_engine_view). */
struct coord_store_health {
    int error;           /* last recording error (TC_ERR_*); 0 while every verdict is durable */
    int64_t since;       /* ms since the epoch when recording began failing; 0 = healthy */
    int64_t last_ok;     /* ms since the epoch of the last successful recording */
    size_t unrecorded;   /* rounds appraised and acted on, waiting to be recorded */
    uint64_t late;       /* rounds recorded after an outage (caught up) */
    uint64_t dropped;    /* rounds given up on: refused by the store or over the backlog cap */
    uint64_t outages;    /* times recording began failing */
    size_t webhook_unsynced; /* delivery outcomes known in memory, not yet in the store */
};

struct coord {
    struct coord_settings *cfg;
    struct tc_store *store;
    struct tc_pki_ca *ca;
    char *ca_pem; /* handed to agents with their certificate */
    char cert_file[4096], key_file[4096], ca_file[4096];
    struct tc_httpd *httpd;
    struct tc_httpc *httpc;
    struct tc_pcr_selection selection; /* what every challenge asks for */
    char selection_text[256];

    pthread_mutex_t lock;
    pthread_t engine_thread;
    bool engine_running;
    volatile int stop;

    /* Pending enrollments' nonce, CSR and address. Kept in memory only: an enrollment lives
     * two minutes, and after a restart the agent simply enrolls again. */
    struct coord_pending *pending;
    size_t npending;

    /* Engine state (under lock). */
    struct coord_node **nodes;
    size_t nnodes, nodes_cap;
    uint64_t assign_gen; /* bumped by every policy/assignment change */
    struct coord_policy_cache *policies;
    struct coord_waiter *waiters;
    int64_t last_seq_seen;
    struct coord_delivery_flight *deliveries; /* webhook attempts in flight */
    struct coord_store_health health;         /* can verdicts be made durable? */
    /* Measurements. */
    uint64_t stat_rounds, stat_batches, stat_appraisals;
    double stat_appraise_ms, stat_record_ms;
};

/* Opens the store, loads the CA, builds the server and client, loads every node. */
int coord_new(struct coord_settings *cfg, struct coord **out);
/* Starts serving and the engine thread. */
int coord_start(struct coord *c);
/* Stops the engine and the server (idempotent). */
void coord_stop(struct coord *c);
void coord_free(struct coord *c);

/* Routes (coord_api.c, coord_enroll.c). */
int coord_api_register(struct coord *c);
void coord_enroll_handle(struct coord *c, const struct tc_http_request *req,
                         struct tc_http_response *resp);
void coord_activate_handle(struct coord *c, const char *enrollment_id,
                           const struct tc_http_request *req, struct tc_http_response *resp);

void coord_enroll_release(struct coord *c);

/* Engine lifecycle (coord_engine.c). */
int coord_engine_start(struct coord *c);
void coord_engine_stop(struct coord *c);
void coord_engine_release(struct coord *c);
/* Parses a policy body of its kind (validation of POST /v1/policies, and the engine's cache). */
struct tc_mb_policy;
struct tc_runtime_policy;
int coord_policy_parse(enum tc_policy_kind kind, const char *body, size_t len,
                       struct tc_mb_policy **mb, struct tc_runtime_policy **rt,
                       struct tc_pcr_set *pcrs, struct tc_reason *why);

/* Engine hooks, called under lock by the API. */
int coord_engine_load(struct coord *c);                        /* every node from the store */
int coord_engine_node_upsert(struct coord *c, const char *id); /* (re)read one node */
void coord_engine_node_remove(struct coord *c, const char *id);
void coord_engine_policies_changed(struct coord *c);
/* A guest AK enrollment (coord_vm_guest_enroll) ended: ok, or failed (tried again an interval
 * later), or the VM has no guest channel (not tried again until the VM changes). */
void coord_engine_guest_enrolled(struct coord *c, const char *id, bool ok, bool no_channel);
/* The VM's last quoted round as self-verifiable evidence (docs/protocol.md, "VM evidence"), a new
 * reference, or NULL when none was kept yet. */
json_t *coord_vm_evidence(struct coord *c, const char *id);
/* The state to report for node id. The store's (*state, *reason, filled by the caller) stands
 * unless the engine holds verdicts for that node that are not recorded yet; then it is the
 * engine's newest verdict, failed closed: a trusted verdict that is not durable is reported as
 * untrusted with check "store.unrecorded". Returns true (and *appraised, *unrecorded) when it
 * overrode the store. Under c->lock. */
bool coord_engine_view(struct coord *c, const char *id, enum tc_node_state *state,
                       struct tc_reason *reason, enum tc_node_state *appraised,
                       uint32_t *unrecorded);
/* Who reads the event stream (docs/protocol.md, "Events"): an operator every event, a tenant its
 * VMs' events, a node its own (never its VMs': their verdicts follow the tenants' policies). An
 * event is of a node or VM only if it happened since that node or VM was created, so a reused id
 * does not hand over its predecessor's events. Exactly one member is set. */
struct coord_event_scope {
    bool all;
    char tenant[COORD_NODE_ID_MAX + 1];
    char node[COORD_NODE_ID_MAX + 1];
};
/* A deferred events request (takes the handle): answered as soon as an event in scope arrives
 * after `since` (scan: the events up to it were looked at and are not in scope), or at the
 * deadline. */
int coord_engine_add_waiter(struct coord *c, struct tc_http_deferred *d,
                            const struct coord_event_scope *scope, int64_t since, int64_t scan,
                            int64_t deadline_ms);
/* {"events": [...], "last": N}: the events in scope with seq > since, at most limit of them,
 * looking at no more than COORD_EVENTS_SCAN_MAX events. "last" (also in *last) is the seq of the
 * last event looked at (returned or not in scope), since when none was; *count the events
 * returned. */
#define COORD_EVENTS_SCAN_MAX 10000
json_t *coord_events_json(struct coord *c, const struct coord_event_scope *scope, int64_t since,
                          size_t limit, size_t *count, int64_t *last);
/* One event as the webhook/notice/stream body. */
json_t *coord_event_json(const struct tc_store_event *ev);
/* Error reply: {"error": text, "check": check}. */
void coord_reply_error(struct tc_http_response *resp, unsigned status, const char *check,
                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Identity checks shared by node enrollment and VM enrollment (coord_enroll.c); check names are
 * "<prefix>.ek", "<prefix>.ek_cert", "<prefix>.ek_attributes", "<prefix>.ak",
 * "<prefix>.ak_attributes". coord_ek_check parses ek_pub into *ekp and, when ek_cert is given,
 * requires it to certify exactly that key. coord_keys_check requires a restricted decryption EK
 * and a restricted signing AK bound to its TPM, and parses the AK (*ak, caller frees). */
int coord_ek_check(const uint8_t *ek_pub, size_t ek_pub_len, X509 *ek_cert, const char *prefix,
                   TPM2B_PUBLIC *ekp, struct tc_reason *why);
int coord_keys_check(const TPM2B_PUBLIC *ekp, const uint8_t *ak_pub, size_t ak_pub_len,
                     const char *prefix, struct tc_ak **ak, struct tc_reason *why);
/* A node or VM as JSON (full: with counters and quote info), in the engine's view
 * (coord_engine_view: "recorded": false and "appraised_state" when it overrides the store). */
json_t *coord_node_json(struct coord *c, const struct tc_store_node *n, bool full);
/* {"healthy": bool, "unrecorded_rounds": N, ...}: whether verdicts reach the store. */
json_t *coord_store_health_json(const struct coord *c);
/* VMs (coord_vm.c): routes /v1/vms and /v1/vms/... */
struct coord_vm_identity { /* malloc'd; coord_vm_identity_release */
    uint8_t *ek_pub, *ek_cert, *ak_pub, *ak_name;
    size_t ek_pub_len, ek_cert_len, ak_pub_len, ak_name_len;
};
/* Verifies an agent's POST /v1/vms answer (untrusted JSON): TPM2_Certify of the vTPM CA key by
 * host_ak over nonce, the CA certificate's key is that key, the EK certificate chains to the CA
 * certificate and certifies ek_pub, and (tcp) the vTPM AK is a restricted signing key next to a
 * restricted decryption EK. On success id holds the VM's identity (ak_name for MakeCredential).
 * Errors name the check: vm.agent_response, certify.*, vtpm_ca.*, vm.ek*, vm.ak*. */
int coord_vm_verify_answer(const json_t *answer, const struct tc_ak *host_ak, const uint8_t *nonce,
                           size_t nonce_len, bool tcp, struct coord_vm_identity *id,
                           struct tc_reason *why);
void coord_vm_identity_release(struct coord_vm_identity *id);
int coord_vm_register(struct coord *c);
/* Engine (under c->lock): starts enrolling the AK of a VM whose guest owns its vTPM (coord_vm.c,
 * G1 and G2). 0 when the request went out; coord_engine_guest_enrolled reports the end. */
int coord_vm_guest_enroll(struct coord *c, const char *vm_id);
/* GET .../history for a node or VM id (coord_api.c). */
void coord_history_reply(struct coord *c, const char *id, const struct tc_http_request *req,
                         struct tc_http_response *resp);
/* Tenant certificates: CN "tenant:NAME"; NULL for anyone else. */
const char *coord_peer_tenant(const struct tc_http_request *req);
bool coord_peer_operator(const struct tc_http_request *req);

/* Hex of SHA-256 of a DER SubjectPublicKeyInfo: the pin recorded for an agent. */
int coord_spki_pin_hex(EVP_PKEY *key, char out[65]);
/* "sha256//BASE64" for libcurl from the recorded hex pin. */
int coord_pin_curl(const char *hex, char *out, size_t cap);

#endif
