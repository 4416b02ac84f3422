/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Coordinator persistence: nodes, pending enrollments, policies and their
 * assignments, the attestation history, the event (revocation) stream,
 * webhook subscribers and the delivery outbox.
 *
 * Callers use only the tc_store_* functions below. They validate arguments
 * (caps, NUL-free strings) once, in store.c, then dispatch through
 * struct tc_store_ops to a backend: "sqlite:PATH" (store_sqlite.c, embedded, one coordinator)
 * or a libpq connection URI "postgresql://..." / "postgres://..." (store_pg.c, a server that
 * several coordinators may share), without touching callers.
 *
 * Promises common to every function:
 * - Returns 0 or a negative TC_ERR_*. Outputs are cleared on entry and only
 *   meaningful on success.
 * - Each call is atomic: it commits completely or changes nothing. Multi-row
 *   changes (a round + its result + its event + its outbox rows, a batch of
 *   rounds, an enrollment completion) run in ONE transaction.
 * - All values travel as bound parameters; no SQL is ever built from data, so
 *   ids may contain any bytes except NUL (quotes, "--", "/", "..", non-UTF-8).
 * - Errors: TC_ERR_INVALID_ARG (NULL or empty argument, unterminated fixed
 *   array, bad enum), TC_ERR_TOO_LARGE (over one of the caps below, checked
 *   before any SQL runs), TC_ERR_NOT_FOUND (no such row), TC_ERR_MISMATCH (row
 *   already exists, optimistic-version conflict, or policy kind change),
 *   TC_ERR_IO (database busy, locked by another coordinator, disk error; PostgreSQL:
 *   connection lost or server down, lock wait over busy_timeout_ms, deadlock),
 *   TC_ERR_FORMAT (stored data is corrupt or not what this code wrote),
 *   TC_ERR_UNSUPPORTED (unknown URI scheme, database schema newer than this
 *   code), TC_ERR_ALLOC.
 *
 * Threads and processes: a struct tc_store is used by ONE thread at a time
 * (the daemon's event loop); it is not internally locked. Only one
 * coordinator process may open a given SQLite file: tc_store_open takes an
 * exclusive lock on PATH.lock (released by the kernel even on kill -9) and a
 * second opener gets TC_ERR_IO with the holder's pid in the log. Several
 * coordinators sharing state is what the PostgreSQL backend is for: there each
 * handle is one connection, rows are locked while a call judges them (versions,
 * last_round), and event seqs are handed out in commit order, so a follower of
 * tc_store_events_since never skips or repeats an event whoever wrote it. A
 * PostgreSQL handle whose connection broke reconnects on its next call (calls made
 * while the server is unreachable fail with TC_ERR_IO).
 *
 * Durability (SQLite): WAL with synchronous=NORMAL by default. A transaction
 * that returned 0 survives a crash or kill -9 of the process (it is in the
 * WAL, which the OS keeps); on power loss or kernel crash the last
 * transactions before the crash may be lost, the database stays consistent.
 * tc_store_options.sync_full = true fsyncs every commit (survives power
 * loss). Measured by tests/unit/store_test.c (1000 nodes, 2-core VM, shared):
 * NORMAL ~9-15k single-node rounds/s and ~55-65k rounds/s in batches of 500;
 * FULL ~200-600 single-node rounds/s (one fsync each) but ~45-75k rounds/s
 * batched. So FULL is affordable only when the caller batches rounds per
 * event-loop tick (tc_store_record_rounds), which the daemon should do anyway.
 *
 * Durability (PostgreSQL): the server's (synchronous_commit; by default every
 * commit is flushed); sync_full and full_check do not apply.
 *
 * Time: all timestamps are milliseconds since the Unix epoch (int64).
 * Secrets: the webhook secret is stored as given, because it is needed in
 * clear to sign; the database file is created mode 0600 and no function ever
 * logs it. Enrollment credential secrets are never stored, only a hash.
 */
#ifndef TC_COORDINATOR_STORE_H
#define TC_COORDINATOR_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trustcloud/reason.h"

/* Caps, enforced on every write (longer -> TC_ERR_TOO_LARGE) and on read. */
#define TC_STORE_ID_MAX 128              /* node, enrollment, group ids; policy names (bytes) */
#define TC_STORE_URL_MAX 1024            /* agent and webhook URLs */
#define TC_STORE_FP_MAX 128              /* TLS certificate fingerprint text */
#define TC_STORE_KEY_MAX 4096            /* ek_pub, ak_pub, ak_name */
#define TC_STORE_CERT_MAX 16384          /* ek_cert (DER) */
#define TC_STORE_STATE_MAX 65536         /* serialized IMA replay state */
#define TC_STORE_EVENTLOG_MAX (8u << 20) /* last UEFI boot event log */
#define TC_STORE_POLICY_MAX (64u << 20)  /* policy body (JSON text) */
#define TC_STORE_SECRET_MAX 64           /* webhook HMAC secret */
#define TC_STORE_HASH_LEN 32             /* SHA-256 of an enrollment credential secret */
#define TC_STORE_BATCH_MAX 10000         /* rounds per tc_store_record_rounds call */
#define TC_STORE_LIST_MAX 10000          /* rows per list call */

enum tc_node_state {
    TC_NODE_PENDING_APPROVAL = 0,
    TC_NODE_ENROLLED,
    TC_NODE_TRUSTED,
    TC_NODE_UNTRUSTED,
    TC_NODE_UNREACHABLE,
};
#define TC_NODE_STATE_COUNT 5

/* "pending_approval", "enrolled", ... (never NULL; "invalid" for out of range). */
const char *tc_node_state_name(enum tc_node_state s);
/* Exact name -> state; TC_ERR_FORMAT if unknown. */
int tc_node_state_parse(const char *name, enum tc_node_state *out);

enum tc_policy_kind { TC_POLICY_RUNTIME = 0, TC_POLICY_MEASURED_BOOT, TC_POLICY_PCR };
const char *tc_policy_kind_name(enum tc_policy_kind k);
int tc_policy_kind_parse(const char *name, enum tc_policy_kind *out);

/* Bytes. In structs passed to the store they are only read (the caller keeps
 * ownership); in structs filled by the store they are malloc'd and released by
 * the struct's _release function. data == NULL means "absent". */
struct tc_store_blob {
    uint8_t *data;
    size_t len;
};

struct tc_store_node {
    char id[TC_STORE_ID_MAX + 1];
    enum tc_node_state state;
    struct tc_store_blob ek_pub, ek_cert, ak_pub, ak_name; /* identity, immutable after enroll */
    char tls_cert_fp[TC_STORE_FP_MAX + 1];
    char agent_url[TC_STORE_URL_MAX + 1];
    char group_name[TC_STORE_ID_MAX + 1]; /* "" = no group */
    struct tc_reason reason;              /* why the last round failed; code 0 = none */
    uint32_t missed;                      /* consecutive unanswered challenges */
    bool has_quote;                       /* the three fields below are valid */
    uint32_t reset_count, restart_count;  /* from the last verified quote */
    uint64_t clock;
    uint64_t ima_count;             /* IMA entries replayed so far */
    struct tc_store_blob ima_state; /* serialized incremental replay state */
    struct tc_store_blob eventlog;  /* last UEFI event log (filled by node_get only) */
    uint64_t last_round;            /* highest recorded round number */
    int64_t created, updated;       /* set by the store */
    int64_t version;                /* optimistic concurrency, set by the store */
    /* Virtual machines are nodes too (same id space, rounds, history, events, policies): a VM
     * is attested inside its host's round (the batch deep quote) and never challenged alone.
     * All three are set at creation and immutable. */
    bool is_vm;
    char host[TC_STORE_ID_MAX + 1];   /* the node running the VM ("" for a host) */
    char tenant[TC_STORE_ID_MAX + 1]; /* the VM's owner ("" for a host) */
};

/* Frees the blobs of a node filled by the store and clears it. NULL is a no-op. */
void tc_store_node_release(struct tc_store_node *n);

/* One attestation round of one node (the hot path). */
struct tc_store_round {
    const char *node_id;
    /* > 0, strictly increasing per node. A round <= the node's last_round is
     * a replay (e.g. a retry after an unclear commit): nothing is written and
     * it is reported as duplicate, which makes recording idempotent. After a
     * restart, continue from tc_store_node.last_round + 1. */
    uint64_t round;
    int64_t ts;
    enum tc_node_state state; /* state after this round */
    struct tc_reason reason;  /* code 0 = success */
    uint32_t missed;
    bool has_quote; /* false (e.g. unreachable): quote info and IMA fields unchanged */
    uint32_t reset_count, restart_count;
    uint64_t clock;
    uint64_t ima_count;
    const uint8_t *ima_state; /* NULL = unchanged */
    size_t ima_state_len;
    const uint8_t *eventlog; /* NULL = unchanged */
    size_t eventlog_len;
};

struct tc_store_round_result {
    int status;        /* 0, or TC_ERR_NOT_FOUND when the node no longer exists */
    bool duplicate;    /* round <= last_round: nothing written */
    int64_t result_id; /* history row id (0 if none written) */
    int64_t event_seq; /* > 0 when the state changed and an event was queued */
};

/* One row of the attestation history. */
struct tc_store_result {
    int64_t id;
    uint64_t round;
    int64_t ts;
    enum tc_node_state state;
    bool changed; /* the state changed in this round (kept beyond the retention cap) */
    struct tc_reason reason;
};

/* One state change, in the stream readers follow by seq. */
struct tc_store_event {
    int64_t seq;
    int64_t ts;
    char node_id[TC_STORE_ID_MAX + 1];
    enum tc_node_state old_state, new_state;
    struct tc_reason reason;
};

struct tc_store_enrollment {
    char id[TC_STORE_ID_MAX + 1];
    char node_id[TC_STORE_ID_MAX + 1];
    uint8_t secret_hash[TC_STORE_HASH_LEN]; /* never the secret itself */
    struct tc_store_blob ek_pub, ek_cert, ak_pub, ak_name;
    int64_t created; /* set by the store */
    int64_t expires;
};
void tc_store_enrollment_release(struct tc_store_enrollment *e);

struct tc_store_policy {
    char name[TC_STORE_ID_MAX + 1];
    int64_t version; /* 1, 2, ...; the highest is current */
    enum tc_policy_kind kind;
    char *body; /* NUL-terminated JSON text, malloc'd */
    size_t body_len;
    int64_t created;
};
void tc_store_policy_release(struct tc_store_policy *p);

enum tc_assign_target { TC_ASSIGN_NODE = 0, TC_ASSIGN_GROUP };

struct tc_store_subscriber {
    int64_t id;
    char url[TC_STORE_URL_MAX + 1];
    uint8_t secret[TC_STORE_SECRET_MAX];
    size_t secret_len;
    int64_t created;
};
/* Cleanses the secret. NULL is a no-op. */
void tc_store_subscriber_release(struct tc_store_subscriber *s);

/* One outbox row: event seq to deliver to subscriber. */
struct tc_store_delivery {
    int64_t id;
    int64_t seq;
    int64_t subscriber_id;
    uint32_t attempts;
    int64_t next_attempt_at;
};

struct tc_store_options {
    bool sync_full;            /* SQLite synchronous=FULL instead of NORMAL */
    int busy_timeout_ms;       /* default 5000 */
    uint32_t history_per_node; /* results kept per node besides state changes; default 1000 */
    bool full_check;           /* open: a full integrity check instead of the quick one */
};

struct tc_store;

/* ---- open / close --------------------------------------------------------------------- */

/* Opens (creating if needed) the store at uri ("sqlite:PATH", or a libpq URI
 * "postgresql://[user@][host][:port]/dbname[?param=value&...]", e.g.
 * "postgresql:///trustcloud?host=/run/postgresql"; a password is best kept out of
 * the URI, in ~/.pgpass or PGPASSFILE), takes the
 * single-coordinator lock, checks the database's integrity (SQLite: PRAGMA
 * quick_check, or integrity_check with opts->full_check) and applies pending
 * schema migrations in one transaction (PostgreSQL: the database must exist and
 * the user may create tables in it; coordinators opening it together apply each
 * migration once; an unreachable server is TC_ERR_IO). opts may be NULL (defaults). *out is
 * owned by the caller. TC_ERR_CORRUPT: the database is damaged (or not a
 * database): nothing was changed, and it must not be served from (see the
 * README, "Recovering a damaged store"). */
int tc_store_open(const char *uri, const struct tc_store_options *opts, struct tc_store **out);
/* Closes and frees; NULL is a no-op. Releases the lock. */
void tc_store_close(struct tc_store *s);
/* Schema version of the open database (== the newest this code knows). */
int tc_store_schema_version(struct tc_store *s, int64_t *out);

/* ---- nodes ---------------------------------------------------------------------------- */

/* Inserts a new node (identity, state, addresses). TC_ERR_MISMATCH if the id
 * exists. Sets node->created/updated/version (version = 1). */
int tc_store_node_create(struct tc_store *s, struct tc_store_node *node);
/* Fills *out (including the event log). TC_ERR_NOT_FOUND if absent. */
int tc_store_node_get(struct tc_store *s, const char *id, struct tc_store_node *out);
/* Replaces the mutable fields (state, reason, tls_cert_fp, agent_url, group_name,
 * missed) if node->version equals the stored version, then bumps node->version.
 * TC_ERR_MISMATCH on a version conflict (re-read and retry). A state change
 * queues one event (and its outbox rows), like a round does. Identity blobs,
 * quote info and IMA state are not touched (rounds own them). */
int tc_store_node_update(struct tc_store *s, struct tc_store_node *node);
/* Records the AK of a node enrolled without one (a VM whose guest owns its vTPM enrolls its AK
 * once the guest runs, by credential activation). TC_ERR_MISMATCH when the node has an AK
 * already (identities are immutable), TC_ERR_NOT_FOUND when there is no such node. */
int tc_store_node_set_ak(struct tc_store *s, const char *id, const struct tc_store_blob *ak_pub,
                         const struct tc_store_blob *ak_name);
/* Deletes the node, its history, its blobs and its node assignments (events stay). */
int tc_store_node_delete(struct tc_store *s, const char *id);
/* Calls fn for every node ordered by id (without the event log, to keep a
 * restart cheap). The node is valid only during the call and fn must not
 * call the store; a non-zero return from fn stops the walk and is returned. */
int tc_store_node_list(struct tc_store *s, int (*fn)(void *arg, const struct tc_store_node *n),
                       void *arg);

/* ---- attestation rounds (hot path) ---------------------------------------------------- */

/* Records one round: node state, quote info, IMA state, (event log,) a
 * history row and, if the state changed, an event plus one outbox row per
 * subscriber, in one transaction. res may be NULL. Returns TC_ERR_NOT_FOUND
 * if the node does not exist. */
int tc_store_record_round(struct tc_store *s, const struct tc_store_round *r,
                          struct tc_store_round_result *res);
/* The same for n rounds (<= TC_STORE_BATCH_MAX, distinct or increasing rounds
 * per node) in ONE transaction. Rounds of nodes that no longer exist are
 * skipped with res[i].status = TC_ERR_NOT_FOUND; any other failure rolls the
 * whole batch back and is returned. res (n entries) may be NULL. */
int tc_store_record_rounds(struct tc_store *s, const struct tc_store_round *r, size_t n,
                           struct tc_store_round_result *res);

/* History of one node, newest first: rows with id < before_id (0 = from the
 * newest), at most limit (<= TC_STORE_LIST_MAX); empty for an unknown node. *out is malloc'd
 * (free()), NULL when *n == 0. Retention: the newest history_per_node rows and every state-change
 * row are kept; older unchanged rows are pruned as rounds arrive. */
int tc_store_results_list(struct tc_store *s, const char *node_id, int64_t before_id, size_t limit,
                          struct tc_store_result **out, size_t *n);

/* ---- events --------------------------------------------------------------------------- */

/* Every state change of an existing node (by a round or by tc_store_node_update)
 * produces exactly one event, and one outbox row per subscriber, in the same
 * transaction as the change. Node creation and deletion produce none. The
 * reason is stored as columns; tc_reason_to_json renders it for the stream. */

/* Events with seq > since, oldest first, at most limit. *out is malloc'd
 * (free()), NULL when *n == 0. Seqs only grow and are never reused. */
int tc_store_events_since(struct tc_store *s, int64_t since, size_t limit,
                          struct tc_store_event **out, size_t *n);
/* Highest seq ever handed out (0 if none), so a new follower can start "from now". */
int tc_store_events_last_seq(struct tc_store *s, int64_t *seq);

/* ---- enrollments ---------------------------------------------------------------------- */

/* Inserts a pending enrollment (TC_ERR_MISMATCH if the id exists). */
int tc_store_enrollment_put(struct tc_store *s, struct tc_store_enrollment *e);
/* TC_ERR_NOT_FOUND if absent or expired at now. */
int tc_store_enrollment_get(struct tc_store *s, const char *id, int64_t now,
                            struct tc_store_enrollment *out);
/* Atomically consumes the enrollment and creates the node: TC_ERR_NOT_FOUND if
 * the enrollment is absent or expired, TC_ERR_MISMATCH if node->id is not the
 * enrollment's node_id or the node exists (the enrollment then stays). Sets
 * node->created/updated/version. */
int tc_store_enrollment_complete(struct tc_store *s, const char *enrollment_id, int64_t now,
                                 struct tc_store_node *node);
/* Deletes enrollments that expired at or before now; *n (may be NULL) = count. */
int tc_store_enrollment_purge(struct tc_store *s, int64_t now, size_t *n);

/* ---- policies and assignments --------------------------------------------------------- */

/* Stores body as the next version of policy name (1 for a new name) and sets
 * *version. TC_ERR_MISMATCH if name exists with another kind. body must be
 * NUL-free, <= TC_STORE_POLICY_MAX; the store does not parse it. */
int tc_store_policy_put(struct tc_store *s, const char *name, enum tc_policy_kind kind,
                        const char *body, size_t body_len, int64_t *version);
/* version 0 = current (highest). */
int tc_store_policy_get(struct tc_store *s, const char *name, int64_t version,
                        struct tc_store_policy *out);
/* Calls fn with every policy's name, current version and kind, ordered by
 * name; fn must not call the store. */
int tc_store_policy_list(struct tc_store *s,
                         int (*fn)(void *arg, const char *name, int64_t version,
                                   enum tc_policy_kind kind),
                         void *arg);
/* Assigns policy name (must exist) to a node id or group name; idempotent. */
int tc_store_assign(struct tc_store *s, enum tc_assign_target kind, const char *target,
                    const char *policy);
/* TC_ERR_NOT_FOUND if there was no such assignment. */
int tc_store_unassign(struct tc_store *s, enum tc_assign_target kind, const char *target,
                      const char *policy);
/* Calls fn with each policy name assigned to the node directly or to its
 * group (each name once, ordered by name); fn must not call the store.
 * TC_ERR_NOT_FOUND if no such node. */
int tc_store_node_policies(struct tc_store *s, const char *node_id,
                           int (*fn)(void *arg, const char *policy), void *arg);

/* ---- subscribers and webhook outbox --------------------------------------------------- */

/* Adds a webhook subscriber; it receives events queued from now on. */
int tc_store_subscriber_add(struct tc_store *s, const char *url, const uint8_t *secret,
                            size_t secret_len, int64_t *id);
int tc_store_subscriber_get(struct tc_store *s, int64_t id, struct tc_store_subscriber *out);
/* Calls fn with every subscriber (secret included: never log it), ordered by
 * id; fn must not call the store. */
int tc_store_subscriber_list(struct tc_store *s,
                             int (*fn)(void *arg, const struct tc_store_subscriber *sub),
                             void *arg);
/* Deletes the subscriber and its outbox rows. */
int tc_store_subscriber_delete(struct tc_store *s, int64_t id);

/* Undelivered outbox rows with next_attempt_at <= now, oldest seq first, at
 * most limit. *out is malloc'd (free()). */
int tc_store_deliveries_due(struct tc_store *s, int64_t now, size_t limit,
                            struct tc_store_delivery **out, size_t *n);
/* Marks delivered (no longer due). TC_ERR_NOT_FOUND if absent or already delivered. */
int tc_store_delivery_done(struct tc_store *s, int64_t id, int64_t now);
/* Counts a failed attempt and schedules the next at next_attempt_at (see
 * tc_store_backoff_ms). Rows are never dropped: delivery is retried until it
 * succeeds or the subscriber is deleted. */
int tc_store_delivery_retry(struct tc_store *s, int64_t id, int64_t next_attempt_at);
/* Next retry delay after `attempts` failures: 1 s doubling, capped at 1 h. */
int64_t tc_store_backoff_ms(uint32_t attempts);

/* ---- maintenance ---------------------------------------------------------------------- */

/* Deletes delivered outbox rows and events older than before_ts that no
 * undelivered row still needs. */
int tc_store_prune(struct tc_store *s, int64_t before_ts);

/* ---- helpers -------------------------------------------------------------------------- */

int64_t tc_store_now_ms(void);
/* SHA-256 of an enrollment credential secret, for tc_store_enrollment.secret_hash. */
int tc_store_secret_hash(const uint8_t *secret, size_t len, uint8_t out[TC_STORE_HASH_LEN]);
/* Constant-time check of a presented secret against a stored hash (true = match). */
bool tc_store_secret_matches(const uint8_t hash[TC_STORE_HASH_LEN], const uint8_t *secret,
                             size_t len);

/* ---- backend interface (for store_*.c only) ------------------------------------------- */

/* Arguments reaching a backend are already validated by store.c. */
struct tc_store_ops {
    const char *name;
    void (*close)(struct tc_store *s);
    int (*schema_version)(struct tc_store *s, int64_t *out);
    int (*node_create)(struct tc_store *s, struct tc_store_node *node);
    int (*node_get)(struct tc_store *s, const char *id, struct tc_store_node *out);
    int (*node_update)(struct tc_store *s, struct tc_store_node *node);
    int (*node_delete)(struct tc_store *s, const char *id);
    int (*node_set_ak)(struct tc_store *s, const char *id, const struct tc_store_blob *ak_pub,
                       const struct tc_store_blob *ak_name);
    int (*node_list)(struct tc_store *s, int (*fn)(void *, const struct tc_store_node *),
                     void *arg);
    int (*record_rounds)(struct tc_store *s, const struct tc_store_round *r, size_t n,
                         struct tc_store_round_result *res);
    int (*results_list)(struct tc_store *s, const char *node_id, int64_t before_id, size_t limit,
                        struct tc_store_result **out, size_t *n);
    int (*events_since)(struct tc_store *s, int64_t since, size_t limit,
                        struct tc_store_event **out, size_t *n);
    int (*events_last_seq)(struct tc_store *s, int64_t *seq);
    int (*enrollment_put)(struct tc_store *s, struct tc_store_enrollment *e);
    int (*enrollment_get)(struct tc_store *s, const char *id, int64_t now,
                          struct tc_store_enrollment *out);
    int (*enrollment_complete)(struct tc_store *s, const char *id, int64_t now,
                               struct tc_store_node *node);
    int (*enrollment_purge)(struct tc_store *s, int64_t now, size_t *n);
    int (*policy_put)(struct tc_store *s, const char *name, enum tc_policy_kind kind,
                      const char *body, size_t body_len, int64_t *version);
    int (*policy_get)(struct tc_store *s, const char *name, int64_t version,
                      struct tc_store_policy *out);
    int (*policy_list)(struct tc_store *s,
                       int (*fn)(void *, const char *, int64_t, enum tc_policy_kind), void *arg);
    int (*assign)(struct tc_store *s, enum tc_assign_target kind, const char *target,
                  const char *policy);
    int (*unassign)(struct tc_store *s, enum tc_assign_target kind, const char *target,
                    const char *policy);
    int (*node_policies)(struct tc_store *s, const char *node_id, int (*fn)(void *, const char *),
                         void *arg);
    int (*subscriber_add)(struct tc_store *s, const char *url, const uint8_t *secret,
                          size_t secret_len, int64_t *id);
    int (*subscriber_get)(struct tc_store *s, int64_t id, struct tc_store_subscriber *out);
    int (*subscriber_list)(struct tc_store *s,
                           int (*fn)(void *, const struct tc_store_subscriber *), void *arg);
    int (*subscriber_delete)(struct tc_store *s, int64_t id);
    int (*deliveries_due)(struct tc_store *s, int64_t now, size_t limit,
                          struct tc_store_delivery **out, size_t *n);
    int (*delivery_done)(struct tc_store *s, int64_t id, int64_t now);
    int (*delivery_retry)(struct tc_store *s, int64_t id, int64_t next_attempt_at);
    int (*prune)(struct tc_store *s, int64_t before_ts);
    int (*inject_fault)(struct tc_store *s, int n); /* testing only; may be NULL */
};

/* Every backend handle starts with this. */
struct tc_store {
    const struct tc_store_ops *ops;
    struct tc_store_options opts;
};

/* Backend constructors: SQLite takes the path without "sqlite:", PostgreSQL the whole URI
 * (libpq parses it, scheme included). */
int tc_store_sqlite_open(const char *path, const struct tc_store_options *opts,
                         struct tc_store **out);
int tc_store_pg_open(const char *uri, const struct tc_store_options *opts, struct tc_store **out);

/* Testing only: make the n-th following SQLite statement step fail (0 = off). */
void tc_store_sqlite_inject_fault(struct tc_store *s, int n);
/* Testing only, either backend: the n-th following statement fails with TC_ERR_IO as a lost
 * disk or connection would (0 = off); TC_ERR_UNSUPPORTED if the backend has no such hook. */
int tc_store_inject_fault(struct tc_store *s, int n);

#endif
