/* SPDX-License-Identifier: Apache-2.0 */
/*
 * PostgreSQL backend of the coordinator store, over libpq (see store.h for what each function
 * promises; this file keeps the same semantics as store_sqlite.c).
 *
 * Shape: one connection per handle (used by one thread), every statement prepared once per
 * connection, all parameters and results in binary format, every multi-row change in one READ
 * COMMITTED transaction whose rows are locked (SELECT ... FOR UPDATE) before they are judged, so
 * several coordinators can share one database.
 *
 * Why bytea for ids, URLs, reasons and policy bodies: the store promises that ids may hold any
 * byte but NUL, including non-UTF-8, which a text column of a UTF-8 database refuses; bytea also
 * compares and sorts by bytes, as SQLite's default collation does, so "ordered by id" means the
 * same on both backends whatever the database's locale.
 *
 * Why the event stream has its own counter (table event_counter) instead of a sequence: a reader
 * follows the stream with "seq > since", so a seq must never become visible after a higher one
 * has been seen. A sequence hands out numbers at insert time, and with several writers a later
 * number can commit first: a follower that already moved past it would skip the earlier one for
 * ever. Here every transaction that queues events takes its seqs by updating the single counter
 * row as its last step before COMMIT. The row lock this takes is held until the transaction
 * ends, and PostgreSQL releases a transaction's locks only after its commit is visible; the next
 * writer blocks on the row until then and reads the counter the first one left. So seqs are
 * handed out in commit order: whoever can see seq N can see every seq below N. Taking the
 * counter last keeps the serialised part short (the event inserts and the commit) and means a
 * writer holding the counter never waits for a node row, so it cannot deadlock with rounds. The
 * committed counter is also the "highest seq ever handed out" of tc_store_events_last_seq, kept
 * when events are pruned, and a follower starting from it misses no in-flight event (those get
 * higher seqs).
 *
 * Durability is the server's: synchronous_commit as configured for the server, database or role
 * (the default, on, flushes every commit, which is stronger than SQLite's synchronous=NORMAL);
 * tc_store_options.sync_full and full_check change nothing here (PostgreSQL checks its pages
 * with data checksums when the cluster has them).
 *
 * Errors: a lost connection, a server that is down, starting or shutting down, a lock wait past
 * busy_timeout_ms, a deadlock or serialization failure, a full disk: TC_ERR_IO, so the engine
 * keeps verdicts in memory and retries. The next call reconnects (and the first statement of a
 * call is retried once on a fresh connection, so a server restart between two calls costs
 * nothing). Unique, foreign-key and check violations: TC_ERR_MISMATCH, as in SQLite.
 */
#define LOGMODULE "store.pg"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "coordinator/store.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"

/* ---- schema ---------------------------------------------------------------------------- */

/*
 * Ordered migrations: migrations[i] brings the schema from version i to i+1. Append only;
 * never edit a released entry. The versions follow the SQLite backend's, so "schema version N"
 * means the same tables on both.
 */
static const char *const migrations[] = {
    /* 1: initial schema */
    "CREATE TABLE nodes ("
    "  id BYTEA PRIMARY KEY,"
    "  state TEXT NOT NULL CHECK (state IN ('pending_approval','enrolled','trusted',"
    "                                        'untrusted','unreachable')),"
    "  tls_cert_fp BYTEA NOT NULL DEFAULT '',"
    "  agent_url BYTEA NOT NULL DEFAULT '',"
    "  group_name BYTEA NOT NULL DEFAULT '',"
    "  reason_code BIGINT NOT NULL DEFAULT 0,"
    "  reason_check BYTEA NOT NULL DEFAULT '',"
    "  reason_entry BIGINT NOT NULL DEFAULT -1,"
    "  reason_detail BYTEA NOT NULL DEFAULT '',"
    "  missed BIGINT NOT NULL DEFAULT 0,"
    "  has_quote BOOLEAN NOT NULL DEFAULT false,"
    "  reset_count BIGINT NOT NULL DEFAULT 0,"
    "  restart_count BIGINT NOT NULL DEFAULT 0,"
    "  clock BIGINT NOT NULL DEFAULT 0,"
    "  ima_count BIGINT NOT NULL DEFAULT 0,"
    "  ima_state BYTEA,"
    "  last_round BIGINT NOT NULL DEFAULT 0,"
    "  since_prune BIGINT NOT NULL DEFAULT 0,"
    "  created BIGINT NOT NULL,"
    "  updated BIGINT NOT NULL,"
    "  version BIGINT NOT NULL DEFAULT 1"
    ");"
    /* The bulky, rarely changing bytes apart from the row every round rewrites. */
    "CREATE TABLE node_blobs ("
    "  node_id BYTEA PRIMARY KEY REFERENCES nodes(id) ON DELETE CASCADE,"
    "  ek_pub BYTEA, ek_cert BYTEA, ak_pub BYTEA, ak_name BYTEA, eventlog BYTEA"
    ");"
    "CREATE TABLE enrollments ("
    "  id BYTEA PRIMARY KEY,"
    "  node_id BYTEA NOT NULL,"
    "  secret_hash BYTEA NOT NULL CHECK (length(secret_hash) = 32),"
    "  ek_pub BYTEA, ek_cert BYTEA, ak_pub BYTEA, ak_name BYTEA,"
    "  created BIGINT NOT NULL,"
    "  expires BIGINT NOT NULL"
    ");"
    "CREATE INDEX enrollments_expires ON enrollments(expires);"
    "CREATE TABLE policies ("
    "  name BYTEA NOT NULL,"
    "  version BIGINT NOT NULL CHECK (version > 0),"
    "  kind TEXT NOT NULL CHECK (kind IN ('runtime','measured_boot','pcr')),"
    "  body BYTEA NOT NULL,"
    "  created BIGINT NOT NULL,"
    "  PRIMARY KEY (name, version)"
    ");"
    "CREATE TABLE assignments ("
    "  target_kind TEXT NOT NULL CHECK (target_kind IN ('node','group')),"
    "  target BYTEA NOT NULL,"
    "  policy BYTEA NOT NULL,"
    "  created BIGINT NOT NULL,"
    "  PRIMARY KEY (target_kind, target, policy)"
    ");"
    "CREATE TABLE results ("
    "  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  node_id BYTEA NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,"
    "  round BIGINT NOT NULL,"
    "  ts BIGINT NOT NULL,"
    "  state TEXT NOT NULL,"
    "  changed BOOLEAN NOT NULL,"
    "  reason_code BIGINT NOT NULL,"
    "  reason_check BYTEA NOT NULL,"
    "  reason_entry BIGINT NOT NULL,"
    "  reason_detail BYTEA NOT NULL"
    ");"
    /* History paging (node, id DESC), pruning, and the FK cascade. A node's results are
     * written under its row lock, so their ids grow in that node's commit order. */
    "CREATE INDEX results_node ON results(node_id, id);"
    /* seq comes from event_counter, not from a sequence: see the comment at the top. */
    "CREATE TABLE events ("
    "  seq BIGINT PRIMARY KEY,"
    "  ts BIGINT NOT NULL,"
    "  node_id BYTEA NOT NULL,"
    "  old_state TEXT NOT NULL,"
    "  new_state TEXT NOT NULL,"
    "  reason_code BIGINT NOT NULL,"
    "  reason_check BYTEA NOT NULL,"
    "  reason_entry BIGINT NOT NULL,"
    "  reason_detail BYTEA NOT NULL"
    ");"
    "CREATE TABLE event_counter ("
    "  id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  seq BIGINT NOT NULL"
    ");"
    "INSERT INTO event_counter VALUES (1, 0);"
    "CREATE TABLE subscribers ("
    "  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  url BYTEA NOT NULL,"
    "  secret BYTEA NOT NULL,"
    "  created BIGINT NOT NULL"
    ");"
    "CREATE TABLE deliveries ("
    "  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  seq BIGINT NOT NULL REFERENCES events(seq) ON DELETE CASCADE,"
    "  subscriber_id BIGINT NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,"
    "  attempts BIGINT NOT NULL DEFAULT 0,"
    "  next_attempt_at BIGINT NOT NULL,"
    "  delivered_at BIGINT,"
    "  UNIQUE (seq, subscriber_id)"
    ");"
    "CREATE INDEX deliveries_due ON deliveries(next_attempt_at) WHERE delivered_at IS NULL;"
    "CREATE INDEX deliveries_subscriber ON deliveries(subscriber_id);",
    /* 2: virtual machines are nodes hosted by another node, owned by a tenant */
    "ALTER TABLE nodes ADD COLUMN kind TEXT NOT NULL DEFAULT 'host' CHECK (kind IN ('host','vm'));"
    "ALTER TABLE nodes ADD COLUMN host BYTEA NOT NULL DEFAULT '';"
    "ALTER TABLE nodes ADD COLUMN tenant BYTEA NOT NULL DEFAULT '';"
    "CREATE INDEX nodes_host ON nodes (host) WHERE host <> '';",
};
#define SCHEMA_VERSION ((int64_t)(sizeof(migrations) / sizeof(migrations[0])))

/* How many rounds of a node between two history prunes: amortizes the DELETE. */
#define PRUNE_EVERY 64

/* Advisory lock keys (two int4 halves): the high half 0x7463 ("tc") names this program, so the
 * keys do not collide with another application's on a shared database. */
#define LOCK_MIGRATE_CLASS 0x74630000 /* with 1: schema migrations at open */
#define LOCK_POLICY_CLASS 0x74630001  /* with a hash of the name: policy versions */

/* Rows fetched per round trip when walking all nodes (each may carry 64 KiB of IMA state). */
#define NODE_FETCH 256

/* ---- statements ------------------------------------------------------------------------ */

#define NODE_COLS                                                                                  \
    "n.id, n.state, n.tls_cert_fp, n.agent_url, n.group_name, n.reason_code, n.reason_check, "     \
    "n.reason_entry, n.reason_detail, n.missed, n.has_quote, n.reset_count, n.restart_count, "     \
    "n.clock, n.ima_count, n.ima_state, n.last_round, n.created, n.updated, n.version, "           \
    "b.ek_pub, b.ek_cert, b.ak_pub, b.ak_name, n.kind, n.host, n.tenant "
#define REASON_COLS "reason_code, reason_check, reason_entry, reason_detail"
#define ENR_COLS "id, node_id, secret_hash, ek_pub, ek_cert, ak_pub, ak_name, created, expires"

enum stmt_id {
    ST_SCHEMA_VERSION,
    ST_NODE_INSERT,
    ST_BLOBS_INSERT,
    ST_NODE_GET,
    ST_NODE_HEAD,
    ST_NODE_UPDATE,
    ST_NODE_DELETE,
    ST_NODE_SET_AK,
    ST_NODE_EXISTS,
    ST_NODE_UNASSIGN_ALL,
    ST_ROUND_WRITE,
    ST_EVENTLOG_UPDATE,
    ST_RESULT_PRUNE,
    ST_SEQ_TAKE,
    ST_EVENT_INSERT,
    ST_RESULTS_LIST,
    ST_EVENTS_SINCE,
    ST_EVENTS_LAST,
    ST_ENR_INSERT,
    ST_ENR_GET,
    ST_ENR_LOCK,
    ST_ENR_DELETE,
    ST_ENR_PURGE,
    ST_POL_LOCK,
    ST_POL_HEAD,
    ST_POL_INSERT,
    ST_POL_GET,
    ST_POL_LIST,
    ST_ASSIGN,
    ST_UNASSIGN,
    ST_NODE_POLICIES,
    ST_SUB_INSERT,
    ST_SUB_GET,
    ST_SUB_DELETE,
    ST_SUB_LIST,
    ST_DUE,
    ST_DONE,
    ST_RETRY,
    ST_PRUNE_DELIVERIES,
    ST_PRUNE_EVENTS,
    ST_COUNT
};

/* Parameter types, one letter per $n: b = bytea, t = text, i = int8, o = bool. */
struct stmt_def {
    const char *types;
    const char *sql;
};

static const struct stmt_def stmts[ST_COUNT] = {
    [ST_SCHEMA_VERSION] = {"", "SELECT max(version) FROM schema_version"},
    [ST_NODE_INSERT] = {"btbbbibibioiiiibitbb",
                        "INSERT INTO nodes (id, state, tls_cert_fp, agent_url, group_name, "
                        "" REASON_COLS ", missed, has_quote, reset_count, restart_count, clock, "
                        "ima_count, ima_state, created, updated, version, kind, host, tenant) "
                        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, "
                        "$15, $16, $17, $17, 1, $18, $19, $20)"},
    [ST_BLOBS_INSERT] = {"bbbbbb", "INSERT INTO node_blobs (node_id, ek_pub, ek_cert, ak_pub, "
                                   "ak_name, eventlog) VALUES ($1, $2, $3, $4, $5, $6)"},
    [ST_NODE_GET] = {"b", "SELECT " NODE_COLS ", b.eventlog FROM nodes n "
                          "LEFT JOIN node_blobs b ON b.node_id = n.id WHERE n.id = $1"},
    /* Locks the row: a concurrent coordinator's round or update of the node waits until this
     * transaction ends, so the version and last_round judged here stay true until commit. */
    [ST_NODE_HEAD] = {"b", "SELECT state, last_round, since_prune, version FROM nodes "
                           "WHERE id = $1 FOR UPDATE"},
    [ST_NODE_UPDATE] = {"btibibbbbiii",
                        "UPDATE nodes SET state = $2, reason_code = $3, reason_check = $4, "
                        "reason_entry = $5, reason_detail = $6, tls_cert_fp = $7, "
                        "agent_url = $8, group_name = $9, missed = $10, updated = $11, "
                        "version = version + 1 WHERE id = $1 AND version = $12"},
    [ST_NODE_DELETE] = {"b", "DELETE FROM nodes WHERE id = $1"},
    [ST_NODE_SET_AK] = {"bbb", "UPDATE node_blobs SET ak_pub = $2, ak_name = $3 WHERE node_id = $1 "
                               "AND (ak_pub IS NULL OR length(ak_pub) = 0)"},
    [ST_NODE_EXISTS] = {"b", "SELECT 1 FROM nodes WHERE id = $1"},
    /* A later node with the same id must not inherit the old one's policies. */
    [ST_NODE_UNASSIGN_ALL] = {"b", "DELETE FROM assignments WHERE target_kind = 'node' AND "
                                   "target = $1"},
    /* The node row and its history row in one round trip. $8 = has_quote: quote info and the
     * IMA count only move with a verified quote. */
    [ST_ROUND_WRITE] = {"btibibioiiiibiiio",
                        "WITH u AS (UPDATE nodes SET state = $2, reason_code = $3, "
                        "reason_check = $4, reason_entry = $5, reason_detail = $6, missed = $7, "
                        "has_quote = has_quote OR $8, "
                        "reset_count = CASE WHEN $8 THEN $9 ELSE reset_count END, "
                        "restart_count = CASE WHEN $8 THEN $10 ELSE restart_count END, "
                        "clock = CASE WHEN $8 THEN $11 ELSE clock END, "
                        "ima_count = CASE WHEN $8 THEN $12 ELSE ima_count END, "
                        "ima_state = coalesce($13, ima_state), last_round = $14, "
                        "since_prune = $15, updated = $16, version = version + 1 "
                        "WHERE id = $1 RETURNING id) "
                        "INSERT INTO results (node_id, round, ts, state, changed, " REASON_COLS
                        ") SELECT u.id, $14, $16, $2, $17, $3, $4, $5, $6 FROM u RETURNING id"},
    [ST_EVENTLOG_UPDATE] = {"bb", "UPDATE node_blobs SET eventlog = $2 WHERE node_id = $1"},
    /* Keeps the newest $2 + 1 rows of the node and every state change. */
    [ST_RESULT_PRUNE] = {"bi", "DELETE FROM results WHERE node_id = $1 AND NOT changed AND id < "
                               "(SELECT id FROM results WHERE node_id = $1 ORDER BY id DESC "
                               "LIMIT 1 OFFSET $2)"},
    /* The commit-ordered seqs (see the top of the file): $1 seqs, the last one returned. */
    [ST_SEQ_TAKE] = {"i", "UPDATE event_counter SET seq = seq + $1 WHERE id = 1 RETURNING seq"},
    /* The event and one outbox row per subscriber in one round trip; its seq is the counter
     * (already advanced by ST_SEQ_TAKE in this transaction) minus $1. */
    [ST_EVENT_INSERT] = {"iibttibib",
                         "WITH e AS (INSERT INTO events (seq, ts, node_id, old_state, new_state, "
                         "" REASON_COLS ") SELECT c.seq - $1, $2, $3, $4, $5, $6, $7, $8, $9 "
                         "FROM event_counter c WHERE c.id = 1 RETURNING seq, ts), "
                         "d AS (INSERT INTO deliveries (seq, subscriber_id, next_attempt_at) "
                         "SELECT e.seq, s.id, e.ts FROM e CROSS JOIN subscribers s) "
                         "SELECT seq FROM e"},
    [ST_RESULTS_LIST] = {"bii", "SELECT id, round, ts, state, changed, " REASON_COLS
                                " FROM results WHERE node_id = $1 AND id < $2 ORDER BY id DESC "
                                "LIMIT $3"},
    [ST_EVENTS_SINCE] = {"ii", "SELECT seq, ts, node_id, old_state, new_state, " REASON_COLS
                               " FROM events WHERE seq > $1 ORDER BY seq LIMIT $2"},
    [ST_EVENTS_LAST] = {"", "SELECT seq FROM event_counter WHERE id = 1"},
    [ST_ENR_INSERT] = {"bbbbbbbii",
                       "INSERT INTO enrollments (id, node_id, secret_hash, ek_pub, ek_cert, "
                       "ak_pub, ak_name, created, expires) VALUES ($1, $2, $3, $4, $5, $6, $7, "
                       "$8, $9)"},
    [ST_ENR_GET] = {"bi", "SELECT " ENR_COLS " FROM enrollments WHERE id = $1 AND expires > $2"},
    /* Locked, so two coordinators cannot both complete one enrollment. */
    [ST_ENR_LOCK] = {"bi", "SELECT " ENR_COLS " FROM enrollments WHERE id = $1 AND expires > $2 "
                           "FOR UPDATE"},
    [ST_ENR_DELETE] = {"b", "DELETE FROM enrollments WHERE id = $1"},
    [ST_ENR_PURGE] = {"i", "DELETE FROM enrollments WHERE expires <= $1"},
    /* Serialises the versions of one policy name across coordinators (a hash collision only
     * serialises two names, harmlessly). */
    [ST_POL_LOCK] = {"b", "SELECT pg_advisory_xact_lock(1952645121, hashtext(encode($1, "
                          "'base64')))"},
    [ST_POL_HEAD] = {"b", "SELECT version, kind FROM policies WHERE name = $1 "
                          "ORDER BY version DESC LIMIT 1"},
    [ST_POL_INSERT] = {"bitbi", "INSERT INTO policies (name, version, kind, body, created) "
                                "VALUES ($1, $2, $3, $4, $5)"},
    [ST_POL_GET] = {"bi", "SELECT name, version, kind, body, created FROM policies WHERE "
                          "name = $1 AND ($2 = 0 OR version = $2) ORDER BY version DESC LIMIT 1"},
    [ST_POL_LIST] = {"", "SELECT DISTINCT ON (name) name, version, kind FROM policies "
                         "ORDER BY name, version DESC"},
    [ST_ASSIGN] = {"tbbi", "INSERT INTO assignments (target_kind, target, policy, created) "
                           "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"},
    [ST_UNASSIGN] = {"tbb", "DELETE FROM assignments WHERE target_kind = $1 AND target = $2 "
                            "AND policy = $3"},
    /* One statement, so one snapshot: no row = no node; a NULL policy = a node without any. */
    [ST_NODE_POLICIES] = {"b", "SELECT DISTINCT a.policy FROM nodes n LEFT JOIN assignments a "
                               "ON (a.target_kind = 'node' AND a.target = n.id) OR "
                               "(a.target_kind = 'group' AND n.group_name <> ''::bytea AND "
                               "a.target = n.group_name) WHERE n.id = $1 ORDER BY a.policy"},
    [ST_SUB_INSERT] = {"bbi", "INSERT INTO subscribers (url, secret, created) VALUES ($1, $2, $3) "
                              "RETURNING id"},
    [ST_SUB_GET] = {"i", "SELECT id, url, secret, created FROM subscribers WHERE id = $1"},
    [ST_SUB_DELETE] = {"i", "DELETE FROM subscribers WHERE id = $1"},
    [ST_SUB_LIST] = {"", "SELECT id, url, secret, created FROM subscribers ORDER BY id"},
    [ST_DUE] = {"ii", "SELECT id, seq, subscriber_id, attempts, next_attempt_at FROM deliveries "
                      "WHERE delivered_at IS NULL AND next_attempt_at <= $1 ORDER BY seq, id "
                      "LIMIT $2"},
    [ST_DONE] = {"ii", "UPDATE deliveries SET delivered_at = $2 WHERE id = $1 AND "
                       "delivered_at IS NULL"},
    [ST_RETRY] = {"ii", "UPDATE deliveries SET attempts = attempts + 1, next_attempt_at = $2 "
                        "WHERE id = $1 AND delivered_at IS NULL"},
    [ST_PRUNE_DELIVERIES] = {"i", "DELETE FROM deliveries WHERE delivered_at IS NOT NULL AND "
                                  "delivered_at < $1"},
    [ST_PRUNE_EVENTS] = {"i", "DELETE FROM events WHERE ts < $1 AND NOT EXISTS (SELECT 1 FROM "
                              "deliveries d WHERE d.seq = events.seq AND d.delivered_at IS NULL)"},
};

/* PostgreSQL type oids of the parameter letters (pg_type.dat; stable across versions). */
#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23
#define OID_TEXT 25

#define MAX_PARAMS 24

struct pg_store {
    struct tc_store base; /* first: struct tc_store * <-> struct pg_store * */
    char *uri;            /* to reconnect; may hold a password, never logged */
    PGconn *conn;
    bool prepared[ST_COUNT]; /* on the current connection */
    bool retry_ok;           /* nothing sent yet in this call: a dead connection may be replaced */
    int fault_after;         /* testing: fail the n-th next statement */
    bool injected;           /* testing: the last failure was injected */
    int quiet_code;          /* outage errors last logged at error level ... */
    time_t quiet_since;      /* ... at this monotonic second */
};

static struct pg_store *PG(struct tc_store *s)
{
    return (struct pg_store *)s;
}

/* Parameters of one statement, in binary format; integers are kept here in network order. */
struct params {
    int n;
    const char *values[MAX_PARAMS];
    int lengths[MAX_PARAMS];
    int formats[MAX_PARAMS];
    char kinds[MAX_PARAMS]; /* the letter each was bound as, checked against the statement */
    uint8_t ints[MAX_PARAMS][8];
    bool overflow;
};

static void p_add(struct params *p, char kind, const void *v, size_t len)
{
    if (p->n >= MAX_PARAMS || len > INT32_MAX) {
        p->overflow = true;
        return;
    }
    /* A NULL pointer is SQL NULL; an empty value needs a non-NULL pointer. */
    p->values[p->n] = v ? (const char *)v : NULL;
    p->lengths[p->n] = (int)len;
    p->formats[p->n] = 1;
    p->kinds[p->n] = kind;
    p->n++;
}

static void p_bytes(struct params *p, const void *data, size_t len)
{
    p_add(p, 'b', data, len);
}

static void p_blob(struct params *p, const struct tc_store_blob *b)
{
    p_bytes(p, b->data, b->len);
}

/* A C string as bytea (ids, URLs, reasons: any byte but NUL). */
static void p_str(struct params *p, const char *v)
{
    p_add(p, 'b', v, strlen(v));
}

/* A fixed ASCII word (state, kind names) as text. */
static void p_text(struct params *p, const char *v)
{
    p_add(p, 't', v, strlen(v));
}

static void p_i64(struct params *p, int64_t v)
{
    if (p->n >= MAX_PARAMS) {
        p->overflow = true;
        return;
    }
    uint64_t u = (uint64_t)v;
    for (int i = 0; i < 8; i++)
        p->ints[p->n][i] = (uint8_t)(u >> (56 - 8 * i));
    p_add(p, 'i', p->ints[p->n], 8);
}

static void p_bool(struct params *p, bool v)
{
    if (p->n >= MAX_PARAMS) {
        p->overflow = true;
        return;
    }
    p->ints[p->n][0] = v ? 1 : 0;
    p_add(p, 'o', p->ints[p->n], 1);
}

/* Binds a reason as code, check, entry, detail. */
static void p_reason(struct params *p, const struct tc_reason *why)
{
    p_i64(p, why->code);
    p_str(p, why->check);
    p_i64(p, why->entry);
    p_str(p, why->detail);
}

/* ---- errors and connection ------------------------------------------------------------- */

static int64_t mono_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec;
}

/* Logs an outage-class error once per 10 s at error level, the repeats at debug level (the
 * caller reports the outage itself). */
static void log_failure(struct pg_store *q, int code, const char *what, const char *msg,
                        const char *state)
{
    bool repeat = false;
    if (code == TC_ERR_IO) {
        time_t now = (time_t)mono_s();
        repeat = q->quiet_code == code && now - q->quiet_since < 10;
        if (!repeat) {
            q->quiet_code = code;
            q->quiet_since = now;
        }
    }
    if (q->injected)
        LOG_DEBUG("%s: injected failure", what);
    else if (repeat)
        LOG_DEBUG("%s: %s (sqlstate %s, again)", what, msg, state);
    else
        LOG_ERROR("%s: %s (sqlstate %s)", what, msg, state);
}

/* Maps a failed result (or a NULL one) to TC_ERR_*. Only the primary message is logged: the
 * DETAIL of some errors quotes row values. */
static int map_err(struct pg_store *q, const PGresult *res, const char *what)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    int code;
    char buf[256];
    if (msg == NULL) {
        /* Errors libpq makes itself (connection lost) have no fields, only the message. */
        snprintf(buf, sizeof(buf), "%s", q->conn ? PQerrorMessage(q->conn) : "no connection");
        buf[strcspn(buf, "\n")] = '\0';
        msg = buf;
    }
    if (state == NULL)
        state = "none";
    if (q->injected || q->conn == NULL || PQstatus(q->conn) != CONNECTION_OK)
        code = TC_ERR_IO;
    else if (strncmp(state, "23", 2) == 0) {
        /* Expected (duplicate id, ...): the caller maps it to a clear answer. */
        LOG_DEBUG("%s: %s (sqlstate %s)", what, msg, state);
        return TC_ERR_MISMATCH;
    } else if (strncmp(state, "08", 2) == 0 || /* connection exception */
               strncmp(state, "53", 2) == 0 || /* insufficient resources (disk full ...) */
               strncmp(state, "57", 2) == 0 || /* shutdown, cannot connect now, cancel */
               strncmp(state, "58", 2) == 0 || /* system error (I/O) */
               strcmp(state, "40001") == 0 ||  /* serialization failure */
               strcmp(state, "40P01") == 0 ||  /* deadlock detected */
               strcmp(state, "55P03") == 0 ||  /* lock not available (lock_timeout) */
               strcmp(state, "25006") == 0 ||  /* read-only transaction (a standby) */
               strcmp(state, "none") == 0)
        code = strcmp(state, "53200") == 0 ? TC_ERR_ALLOC : TC_ERR_IO;
    else if (strcmp(state, "54000") == 0) /* program limit exceeded */
        code = TC_ERR_TOO_LARGE;
    else if (strcmp(state, "XX001") == 0 || strcmp(state, "XX002") == 0) /* data corrupted */
        code = TC_ERR_FORMAT;
    else
        code = TC_ERR_INTERNAL;
    log_failure(q, code, what, msg, state);
    q->injected = false;
    return code;
}

static void notice_to_log(void *arg, const char *msg)
{
    (void)arg;
    LOG_DEBUG("server: %.*s", (int)strcspn(msg, "\n"), msg);
}

/* Sets up a fresh connection: session settings, nothing prepared yet. */
static int session_setup(struct pg_store *q)
{
    char sql[160];
    PGresult *res;
    int rc = 0;
    memset(q->prepared, 0, sizeof(q->prepared));
    PQsetNoticeProcessor(q->conn, notice_to_log, NULL);
    /* A lock held by another coordinator fails the call after busy_timeout_ms (TC_ERR_IO)
     * instead of stalling the event loop; the transactions are READ COMMITTED whatever the
     * database's default, which the locking above is written for. */
    snprintf(sql, sizeof(sql),
             "SET lock_timeout = %d; SET default_transaction_isolation = 'read committed'; "
             "SET client_min_messages = warning",
             q->base.opts.busy_timeout_ms);
    res = PQexec(q->conn, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = map_err(q, res, "session settings");
    PQclear(res);
    return rc;
}

static int connect_db(struct pg_store *q)
{
    /* connect_timeout before the URI, so the URI's own setting wins; expand_dbname parses it. */
    const char *const keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *const vals[] = {"10", "trustcloud-coordinator", q->uri, NULL};
    if (q->conn != NULL)
        PQfinish(q->conn);
    q->conn = PQconnectdbParams(keys, vals, 1);
    if (q->conn == NULL)
        return TC_ERR_ALLOC;
    if (PQstatus(q->conn) != CONNECTION_OK) {
        char msg[256];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(q->conn));
        msg[strcspn(msg, "\n")] = '\0';
        log_failure(q, TC_ERR_IO, "connect", msg, "none");
        return TC_ERR_IO;
    }
    return session_setup(q);
}

/* Start of every call: a connection that broke earlier is replaced now. */
static int begin_call(struct pg_store *q)
{
    int rc;
    q->retry_ok = true;
    if (q->conn != NULL && PQstatus(q->conn) == CONNECTION_OK)
        return 0;
    if ((rc = connect_db(q)) == 0)
        LOG_INFO("reconnected to the database");
    q->retry_ok = false; /* a connection this fresh is not retried again */
    return rc;
}

/* Sends the PREPARE of statement id; NULL or a failed result on failure (for map_err). */
static PGresult *prepare(struct pg_store *q, enum stmt_id id, const char *name)
{
    Oid types[MAX_PARAMS];
    const char *t = stmts[id].types;
    int n = (int)strlen(t);
    for (int i = 0; i < n; i++)
        types[i] = t[i] == 'b'   ? OID_BYTEA
                   : t[i] == 't' ? OID_TEXT
                   : t[i] == 'i' ? OID_INT8
                                 : OID_BOOL;
    PGresult *res = PQprepare(q->conn, name, stmts[id].sql, n, types);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        return res;
    PQclear(res);
    q->prepared[id] = true;
    return NULL;
}

/* Runs statement id with p. *out gets the result (PQclear it) when the statement succeeded:
 * PGRES_TUPLES_OK or PGRES_COMMAND_OK. */
static int exec_stmt(struct pg_store *q, enum stmt_id id, const struct params *p, const char *what,
                     PGresult **out)
{
    char name[16];
    int rc;
    *out = NULL;
    if (p->overflow || p->n != (int)strlen(stmts[id].types) ||
        (p->n > 0 && memcmp(p->kinds, stmts[id].types, (size_t)p->n) != 0)) {
        LOG_ERROR("%s: parameters do not match the statement", what);
        return TC_ERR_INTERNAL;
    }
    if (q->fault_after > 0 && --q->fault_after == 0) {
        q->injected = true;
        q->retry_ok = false;
        return map_err(q, NULL, what);
    }
    snprintf(name, sizeof(name), "tc%d", (int)id);
    for (int attempt = 0;; attempt++) {
        PGresult *res = q->prepared[id] ? NULL : prepare(q, id, name);
        if (q->prepared[id]) {
            res = PQexecPrepared(q->conn, name, p->n, p->values, p->lengths, p->formats, 1);
            ExecStatusType st = PQresultStatus(res);
            if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
                q->retry_ok = false;
                *out = res;
                return 0;
            }
        }
        /* The first statement of a call on a connection the server has since closed (a
         * restart between two calls): nothing was done, so reconnect and send it again. */
        if (attempt == 0 && q->retry_ok && PQstatus(q->conn) != CONNECTION_OK) {
            PQclear(res);
            q->retry_ok = false;
            if ((rc = connect_db(q)) != 0)
                return rc;
            LOG_INFO("reconnected to the database");
            continue;
        }
        q->retry_ok = false;
        rc = map_err(q, res, what);
        PQclear(res);
        return rc;
    }
}

/* Runs a statement and discards its rows; *changed (may be NULL) = rows affected. */
static int run(struct pg_store *q, enum stmt_id id, const struct params *p, const char *what,
               int64_t *changed)
{
    PGresult *res;
    int rc = exec_stmt(q, id, p, what, &res);
    if (rc == 0 && changed != NULL)
        *changed = strtoll(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return rc;
}

/* A command without parameters (BEGIN, COMMIT, ...), through the fault hook unless raw. */
static int simple(struct pg_store *q, const char *sql, bool raw)
{
    if (!raw && q->fault_after > 0 && --q->fault_after == 0) {
        q->injected = true;
        q->retry_ok = false;
        return map_err(q, NULL, sql);
    }
    for (int attempt = 0;; attempt++) {
        PGresult *res = PQexec(q->conn, sql);
        int rc = 0;
        if (PQresultStatus(res) == PGRES_COMMAND_OK) {
            q->retry_ok = false;
            PQclear(res);
            return 0;
        }
        if (attempt == 0 && q->retry_ok && PQstatus(q->conn) != CONNECTION_OK) {
            PQclear(res);
            q->retry_ok = false;
            if ((rc = connect_db(q)) != 0)
                return rc;
            LOG_INFO("reconnected to the database");
            continue;
        }
        q->retry_ok = false;
        rc = map_err(q, res, sql);
        PQclear(res);
        return rc;
    }
}

static int tx_begin(struct pg_store *q)
{
    int rc;
    if ((rc = begin_call(q)) != 0)
        return rc;
    return simple(q, "BEGIN", false);
}

/* Commits when rc == 0, otherwise (or if the commit fails) rolls back. Returns the result. An
 * unclear commit (connection lost while committing) is TC_ERR_IO: rounds are idempotent and
 * node updates versioned, so the caller's retry is safe either way. */
static int tx_end(struct pg_store *q, int rc)
{
    if (rc == 0)
        rc = simple(q, "COMMIT", false);
    /* Not through the fault hook: the rollback must happen even while testing faults. */
    if (rc != 0 && q->conn != NULL && PQstatus(q->conn) == CONNECTION_OK &&
        PQtransactionStatus(q->conn) != PQTRANS_IDLE) {
        PGresult *res = PQexec(q->conn, "ROLLBACK");
        PQclear(res);
    }
    return rc;
}

/* ---- result columns -------------------------------------------------------------------- */

static int col_i64(const PGresult *res, int row, int c, int64_t *out)
{
    const uint8_t *v = (const uint8_t *)PQgetvalue(res, row, c);
    int len = PQgetlength(res, row, c);
    Oid t = PQftype(res, c);
    uint64_t u = 0;
    *out = 0;
    if (PQgetisnull(res, row, c))
        return 0;
    int want = t == OID_INT8 ? 8 : t == OID_INT4 ? 4 : t == OID_INT2 ? 2 : -1;
    if (want < 0 || len != want)
        return TC_ERR_FORMAT;
    for (int i = 0; i < len; i++)
        u = u << 8 | v[i];
    if (want == 4)
        *out = (int32_t)(uint32_t)u;
    else if (want == 2)
        *out = (int16_t)(uint16_t)u;
    else
        *out = (int64_t)u;
    return 0;
}

static int col_bool(const PGresult *res, int row, int c, bool *out)
{
    *out = false;
    if (PQftype(res, c) != OID_BOOL || PQgetisnull(res, row, c) || PQgetlength(res, row, c) != 1)
        return TC_ERR_FORMAT;
    *out = PQgetvalue(res, row, c)[0] != 0;
    return 0;
}

/* Copies a bytea/text column into a fixed array; data longer than the array is corrupt. */
static int col_text(const PGresult *res, int row, int c, char *dst, size_t size)
{
    const char *v = PQgetvalue(res, row, c);
    size_t len = (size_t)PQgetlength(res, row, c);
    dst[0] = '\0';
    if (PQgetisnull(res, row, c))
        return 0;
    if (len >= size || memchr(v, 0, len) != NULL)
        return TC_ERR_FORMAT;
    memcpy(dst, v, len);
    dst[len] = '\0';
    return 0;
}

static int col_blob(const PGresult *res, int row, int c, struct tc_store_blob *b, size_t cap)
{
    size_t len = (size_t)PQgetlength(res, row, c);
    b->data = NULL;
    b->len = 0;
    if (PQgetisnull(res, row, c))
        return 0;
    if (len > cap)
        return TC_ERR_FORMAT;
    /* One extra byte so an empty blob is still distinguishable from NULL. */
    if ((b->data = malloc(len + 1)) == NULL)
        return TC_ERR_ALLOC;
    if (len > 0)
        memcpy(b->data, PQgetvalue(res, row, c), len);
    b->len = len;
    return 0;
}

static int col_state(const PGresult *res, int row, int c, enum tc_node_state *out)
{
    char name[32];
    int rc = col_text(res, row, c, name, sizeof(name));
    return rc ? rc : tc_node_state_parse(name, out);
}

static int col_kind(const PGresult *res, int row, int c, enum tc_policy_kind *out)
{
    char name[32];
    int rc = col_text(res, row, c, name, sizeof(name));
    return rc ? rc : tc_policy_kind_parse(name, out);
}

static int col_reason(const PGresult *res, int row, int c, struct tc_reason *why)
{
    int64_t code, entry;
    int rc;
    tc_reason_clear(why);
    if ((rc = col_i64(res, row, c, &code)) != 0 || (rc = col_i64(res, row, c + 2, &entry)) != 0 ||
        (rc = col_text(res, row, c + 1, why->check, sizeof(why->check))) != 0 ||
        (rc = col_text(res, row, c + 3, why->detail, sizeof(why->detail))) != 0)
        return rc;
    if (code < INT32_MIN || code > INT32_MAX)
        return TC_ERR_FORMAT;
    why->code = (int)code;
    why->entry = (long)entry;
    return 0;
}

/* ---- open / close / migrations --------------------------------------------------------- */

static const struct tc_store_ops pg_ops;

static int migrate(struct pg_store *q)
{
    int rc;
    int64_t have = 0;
    PGresult *res = NULL;
    char sql[160];

    if ((rc = simple(q, "BEGIN", true)) != 0)
        return rc;
    /* Coordinators starting together: the first applies the migrations, the others wait for
     * its commit and then find nothing left to do. */
    snprintf(sql, sizeof(sql), "SELECT pg_advisory_xact_lock(%d, 1)", LOCK_MIGRATE_CLASS);
    res = PQexec(q->conn, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = map_err(q, res, "migration lock");
        goto out;
    }
    PQclear(res);
    res = NULL;
    if ((rc = simple(q,
                     "CREATE TABLE IF NOT EXISTS schema_version ("
                     "version BIGINT PRIMARY KEY, applied BIGINT NOT NULL)",
                     true)) != 0)
        goto out;
    res = PQexecParams(q->conn, "SELECT max(version) FROM schema_version", 0, NULL, NULL, NULL,
                       NULL, 1);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        rc = map_err(q, res, "schema version");
        goto out;
    }
    if ((rc = col_i64(res, 0, 0, &have)) != 0)
        goto out;
    PQclear(res);
    res = NULL;
    if (have > SCHEMA_VERSION) {
        LOG_ERROR("database schema version %lld is newer than this coordinator knows (%lld): "
                  "upgrade the coordinator",
                  (long long)have, (long long)SCHEMA_VERSION);
        rc = TC_ERR_UNSUPPORTED;
        goto out;
    }
    for (int64_t v = have; v < SCHEMA_VERSION; v++) {
        res = PQexec(q->conn, migrations[v]);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            LOG_ERROR("migration %lld failed", (long long)(v + 1));
            rc = map_err(q, res, "migration");
            goto out;
        }
        PQclear(res);
        snprintf(sql, sizeof(sql), "INSERT INTO schema_version VALUES (%lld, %lld)",
                 (long long)(v + 1), (long long)tc_store_now_ms());
        if ((rc = simple(q, sql, true)) != 0)
            goto out;
        res = NULL;
        LOG_INFO("applied schema migration %lld", (long long)(v + 1));
    }
out:
    PQclear(res);
    if (rc == 0)
        rc = simple(q, "COMMIT", true);
    if (rc != 0 && PQstatus(q->conn) == CONNECTION_OK &&
        PQtransactionStatus(q->conn) != PQTRANS_IDLE)
        PQclear(PQexec(q->conn, "ROLLBACK"));
    return rc;
}

static void pg_close(struct tc_store *s)
{
    struct pg_store *q = PG(s);
    if (q->conn != NULL)
        PQfinish(q->conn);
    if (q->uri != NULL) {
        /* The URI may carry a password. */
        memset(q->uri, 0, strlen(q->uri));
        free(q->uri);
    }
    free(q);
}

int tc_store_pg_open(const char *uri, const struct tc_store_options *opts, struct tc_store **out)
{
    int rc;
    struct pg_store *q = NULL;

    *out = NULL;
    if ((q = calloc(1, sizeof(*q))) == NULL)
        return TC_ERR_ALLOC;
    q->base.ops = &pg_ops;
    q->base.opts = *opts;
    if ((q->uri = strdup(uri)) == NULL) {
        rc = TC_ERR_ALLOC;
        goto out;
    }
    if ((rc = connect_db(q)) != 0)
        goto out;
    if ((rc = migrate(q)) != 0)
        goto out;
    *out = &q->base;
    q = NULL;
out:
    if (q != NULL)
        pg_close(&q->base);
    if (rc == TC_ERR_FORMAT)
        rc = TC_ERR_CORRUPT;
    return rc;
}

static int pg_inject_fault(struct tc_store *s, int n)
{
    PG(s)->fault_after = n;
    return 0;
}

/* One row, one int64 column. */
static int query_i64(struct pg_store *q, enum stmt_id id, const char *what, int64_t *out)
{
    struct params p = {0};
    PGresult *res = NULL;
    int rc;
    if ((rc = begin_call(q)) != 0)
        return rc;
    if ((rc = exec_stmt(q, id, &p, what, &res)) != 0)
        return rc;
    rc = PQntuples(res) == 1 ? col_i64(res, 0, 0, out) : TC_ERR_FORMAT;
    PQclear(res);
    return rc;
}

static int pg_schema_version(struct tc_store *s, int64_t *out)
{
    return query_i64(PG(s), ST_SCHEMA_VERSION, "schema version", out);
}

/* ---- nodes ----------------------------------------------------------------------------- */

struct node_head {
    enum tc_node_state state;
    int64_t last_round, since_prune, version;
};

/* Reads and locks the head of a node row (inside a transaction). *found = false if absent. */
static int node_head(struct pg_store *q, const char *id, struct node_head *h, bool *found)
{
    struct params p = {0};
    PGresult *res = NULL;
    int rc;
    *found = false;
    p_str(&p, id);
    if ((rc = exec_stmt(q, ST_NODE_HEAD, &p, "node head", &res)) != 0)
        return rc;
    if (PQntuples(res) == 1) {
        if ((rc = col_state(res, 0, 0, &h->state)) == 0 &&
            (rc = col_i64(res, 0, 1, &h->last_round)) == 0 &&
            (rc = col_i64(res, 0, 2, &h->since_prune)) == 0 &&
            (rc = col_i64(res, 0, 3, &h->version)) == 0)
            *found = true;
    }
    PQclear(res);
    return rc;
}

/* Inserts nodes + node_blobs rows; inside a transaction. */
static int node_insert(struct pg_store *q, struct tc_store_node *n, int64_t now)
{
    struct params p = {0};
    int rc;
    p_str(&p, n->id);
    p_text(&p, tc_node_state_name(n->state));
    p_str(&p, n->tls_cert_fp);
    p_str(&p, n->agent_url);
    p_str(&p, n->group_name);
    p_reason(&p, &n->reason);
    p_i64(&p, n->missed);
    p_bool(&p, n->has_quote);
    p_i64(&p, n->reset_count);
    p_i64(&p, n->restart_count);
    p_i64(&p, (int64_t)n->clock);
    p_i64(&p, (int64_t)n->ima_count);
    p_blob(&p, &n->ima_state);
    p_i64(&p, now);
    p_text(&p, n->is_vm ? "vm" : "host");
    p_str(&p, n->host);
    p_str(&p, n->tenant);
    if ((rc = run(q, ST_NODE_INSERT, &p, "node insert", NULL)) != 0)
        return rc;
    memset(&p, 0, sizeof(p));
    p_str(&p, n->id);
    p_blob(&p, &n->ek_pub);
    p_blob(&p, &n->ek_cert);
    p_blob(&p, &n->ak_pub);
    p_blob(&p, &n->ak_name);
    p_blob(&p, &n->eventlog);
    if ((rc = run(q, ST_BLOBS_INSERT, &p, "node blobs insert", NULL)) != 0)
        return rc;
    return 0;
}

static int pg_node_create(struct tc_store *s, struct tc_store_node *node)
{
    struct pg_store *q = PG(s);
    int64_t now = tc_store_now_ms();
    int rc;
    if ((rc = tx_begin(q)) != 0)
        return rc;
    rc = tx_end(q, node_insert(q, node, now));
    if (rc == 0) {
        node->created = node->updated = now;
        node->version = 1;
        node->last_round = 0;
    }
    return rc;
}

/* Columns as NODE_COLS, then the event log (or NULL) at 27. */
static int read_node(const PGresult *res, int row, struct tc_store_node *n)
{
    int64_t v[10];
    char kind[8];
    int rc;
    memset(n, 0, sizeof(*n));
    if ((rc = col_text(res, row, 0, n->id, sizeof(n->id))) != 0 ||
        (rc = col_state(res, row, 1, &n->state)) != 0 ||
        (rc = col_text(res, row, 2, n->tls_cert_fp, sizeof(n->tls_cert_fp))) != 0 ||
        (rc = col_text(res, row, 3, n->agent_url, sizeof(n->agent_url))) != 0 ||
        (rc = col_text(res, row, 4, n->group_name, sizeof(n->group_name))) != 0 ||
        (rc = col_reason(res, row, 5, &n->reason)) != 0 ||
        (rc = col_i64(res, row, 9, &v[0])) != 0 || (rc = col_bool(res, row, 10, &n->has_quote)) ||
        (rc = col_i64(res, row, 11, &v[1])) != 0 || (rc = col_i64(res, row, 12, &v[2])) != 0 ||
        (rc = col_i64(res, row, 13, &v[3])) != 0 || (rc = col_i64(res, row, 14, &v[4])) != 0 ||
        (rc = col_i64(res, row, 16, &v[5])) != 0 || (rc = col_i64(res, row, 17, &v[6])) != 0 ||
        (rc = col_i64(res, row, 18, &v[7])) != 0 || (rc = col_i64(res, row, 19, &v[8])) != 0)
        return rc;
    n->missed = (uint32_t)v[0];
    n->reset_count = (uint32_t)v[1];
    n->restart_count = (uint32_t)v[2];
    n->clock = (uint64_t)v[3];
    n->ima_count = (uint64_t)v[4];
    n->last_round = (uint64_t)v[5];
    n->created = v[6];
    n->updated = v[7];
    n->version = v[8];
    if ((rc = col_blob(res, row, 15, &n->ima_state, TC_STORE_STATE_MAX)) != 0 ||
        (rc = col_blob(res, row, 20, &n->ek_pub, TC_STORE_KEY_MAX)) != 0 ||
        (rc = col_blob(res, row, 21, &n->ek_cert, TC_STORE_CERT_MAX)) != 0 ||
        (rc = col_blob(res, row, 22, &n->ak_pub, TC_STORE_KEY_MAX)) != 0 ||
        (rc = col_blob(res, row, 23, &n->ak_name, TC_STORE_KEY_MAX)) != 0 ||
        (rc = col_blob(res, row, 27, &n->eventlog, TC_STORE_EVENTLOG_MAX)) != 0 ||
        (rc = col_text(res, row, 25, n->host, sizeof(n->host))) != 0 ||
        (rc = col_text(res, row, 26, n->tenant, sizeof(n->tenant))) != 0 ||
        (rc = col_text(res, row, 24, kind, sizeof(kind))) != 0)
        return rc;
    if (strcmp(kind, "vm") != 0 && strcmp(kind, "host") != 0)
        return TC_ERR_FORMAT;
    n->is_vm = strcmp(kind, "vm") == 0;
    return 0;
}

static int pg_node_get(struct tc_store *s, const char *id, struct tc_store_node *out)
{
    struct pg_store *q = PG(s);
    struct params p = {0};
    PGresult *res = NULL;
    int rc;
    if ((rc = begin_call(q)) != 0)
        return rc;
    p_str(&p, id);
    if ((rc = exec_stmt(q, ST_NODE_GET, &p, "node get", &res)) != 0)
        return rc;
    rc = PQntuples(res) == 0 ? TC_ERR_NOT_FOUND : read_node(res, 0, out);
    PQclear(res);
    return rc;
}

/* Walks every node through a cursor, NODE_FETCH rows per round trip, in one read-only
 * snapshot, so memory stays bounded however many nodes (and IMA states) there are. */
static int pg_node_list(struct tc_store *s, int (*fn)(void *, const struct tc_store_node *),
                        void *arg)
{
    struct pg_store *q = PG(s);
    struct tc_store_node n;
    PGresult *res = NULL;
    char fetch[48];
    int rc;
    memset(&n, 0, sizeof(n));
    if ((rc = begin_call(q)) != 0)
        return rc;
    if ((rc = simple(q, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", false)) != 0)
        return rc;
    if ((rc = simple(q,
                     "DECLARE tc_nodes NO SCROLL CURSOR FOR SELECT " NODE_COLS
                     ", NULL::bytea FROM nodes n LEFT JOIN node_blobs b ON b.node_id = n.id "
                     "ORDER BY n.id",
                     false)) != 0)
        goto out;
    snprintf(fetch, sizeof(fetch), "FETCH %d FROM tc_nodes", NODE_FETCH);
    for (;;) {
        res = PQexecParams(q->conn, fetch, 0, NULL, NULL, NULL, NULL, 1);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            rc = map_err(q, res, "node list");
            goto out;
        }
        int rows = PQntuples(res);
        for (int i = 0; i < rows; i++) {
            if ((rc = read_node(res, i, &n)) != 0)
                goto out;
            rc = fn(arg, &n);
            tc_store_node_release(&n);
            if (rc != 0)
                goto out;
        }
        PQclear(res);
        res = NULL;
        if (rows < NODE_FETCH)
            break;
    }
out:
    PQclear(res);
    tc_store_node_release(&n);
    /* Read-only: ending it either way changes nothing. */
    if (q->conn != NULL && PQstatus(q->conn) == CONNECTION_OK &&
        PQtransactionStatus(q->conn) != PQTRANS_IDLE)
        PQclear(PQexec(q->conn, rc == 0 ? "COMMIT" : "ROLLBACK"));
    return rc;
}

/* ---- pipelines ------------------------------------------------------------------------- */

/* One statement of a pipeline. */
struct pipe_op {
    enum stmt_id id;
    struct params p;
    size_t round; /* index of the round (or node) it is for */
};

/* Statements in flight at once: their results (a few dozen bytes each) always fit in the
 * socket buffers, so the server never blocks writing them while libpq is still sending. */
#define PIPE_CHUNK 128

typedef int (*pipe_result_fn)(void *ctx, const struct pipe_op *op, const PGresult *res);

/* Sends ops[0..n) without waiting for each answer (libpq pipeline mode, PIPE_CHUNK at a time,
 * inside the caller's transaction) and hands each result to fn. The first failure is returned;
 * the statements after it are not run (the server aborts the rest of the pipeline). */
static int pipeline(struct pg_store *q, const struct pipe_op *ops, size_t n, pipe_result_fn fn,
                    void *ctx)
{
    int rc = 0;
    char name[16];
    for (size_t i = 0; i < n; i++) {
        const struct params *p = &ops[i].p;
        if (p->overflow || p->n != (int)strlen(stmts[ops[i].id].types) ||
            (p->n > 0 && memcmp(p->kinds, stmts[ops[i].id].types, (size_t)p->n) != 0)) {
            LOG_ERROR("pipeline: parameters do not match the statement");
            return TC_ERR_INTERNAL;
        }
        if (!q->prepared[ops[i].id]) {
            snprintf(name, sizeof(name), "tc%d", (int)ops[i].id);
            PGresult *res = prepare(q, ops[i].id, name);
            if (!q->prepared[ops[i].id]) {
                rc = map_err(q, res, "prepare");
                PQclear(res);
                return rc;
            }
        }
    }
    q->retry_ok = false;
    for (size_t at = 0; at < n && rc == 0; at += PIPE_CHUNK) {
        size_t end = n - at < PIPE_CHUNK ? n : at + PIPE_CHUNK, sent = at;
        if (PQenterPipelineMode(q->conn) != 1)
            return map_err(q, NULL, "pipeline");
        for (; sent < end; sent++) {
            const struct pipe_op *op = &ops[sent];
            if (q->fault_after > 0 && --q->fault_after == 0) {
                q->injected = true;
                rc = map_err(q, NULL, "pipeline statement");
                break;
            }
            snprintf(name, sizeof(name), "tc%d", (int)op->id);
            if (PQsendQueryPrepared(q->conn, name, op->p.n, op->p.values, op->p.lengths,
                                    op->p.formats, 1) != 1) {
                rc = map_err(q, NULL, "pipeline send");
                break;
            }
        }
        if (PQpipelineSync(q->conn) != 1 && rc == 0)
            rc = map_err(q, NULL, "pipeline sync");
        /* One result (then NULL) per statement sent, then the sync's. */
        for (size_t i = at; i < sent && PQstatus(q->conn) == CONNECTION_OK; i++) {
            PGresult *res = PQgetResult(q->conn);
            if (res == NULL) {
                if (rc == 0)
                    rc = map_err(q, NULL, "pipeline result");
                break;
            }
            ExecStatusType st = PQresultStatus(res);
            if (rc == 0 && (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK))
                rc = fn ? fn(ctx, &ops[i], res) : 0;
            else if (rc == 0)
                rc = map_err(q, res, "pipeline statement");
            PQclear(res);
            while ((res = PQgetResult(q->conn)) != NULL)
                PQclear(res);
        }
        for (int guard = 0; guard < 4 && PQstatus(q->conn) == CONNECTION_OK; guard++) {
            PGresult *res = PQgetResult(q->conn);
            bool sync = res != NULL && PQresultStatus(res) == PGRES_PIPELINE_SYNC;
            PQclear(res);
            if (sync)
                break;
        }
        if (PQstatus(q->conn) != CONNECTION_OK) {
            if (rc == 0)
                rc = map_err(q, NULL, "pipeline");
            return rc;
        }
        if (PQexitPipelineMode(q->conn) != 1 && rc == 0)
            rc = map_err(q, NULL, "pipeline end");
    }
    return rc;
}

/* A state change whose event is queued at the end of its transaction. */
struct pending_event {
    int64_t ts;
    const char *node_id;
    enum tc_node_state old_state, new_state;
    const struct tc_reason *why;
};

/* The statements that queue k events, last step before COMMIT: one that takes k consecutive
 * seqs from the counter (its row lock orders the writers by commit, see the top of the file)
 * and one insert per event, with its outbox rows. Appends them at ops[*nops]. */
static void queue_events(struct pipe_op *ops, size_t *nops, const struct pending_event *ev,
                         const size_t *round, size_t k)
{
    if (k == 0)
        return;
    struct pipe_op *op = &ops[(*nops)++];
    memset(op, 0, sizeof(*op));
    op->id = ST_SEQ_TAKE;
    p_i64(&op->p, (int64_t)k);
    for (size_t i = 0; i < k; i++) {
        op = &ops[(*nops)++];
        memset(op, 0, sizeof(*op));
        op->id = ST_EVENT_INSERT;
        op->round = round[i];
        p_i64(&op->p, (int64_t)(k - 1 - i));
        p_i64(&op->p, ev[i].ts);
        p_str(&op->p, ev[i].node_id);
        p_text(&op->p, tc_node_state_name(ev[i].old_state));
        p_text(&op->p, tc_node_state_name(ev[i].new_state));
        p_reason(&op->p, ev[i].why);
    }
}

/* The seq of an inserted event. */
static int event_seq_of(const PGresult *res, int64_t *seq)
{
    return PQntuples(res) == 1 ? col_i64(res, 0, 0, seq) : TC_ERR_INTERNAL;
}

static int one_event_result(void *ctx, const struct pipe_op *op, const PGresult *res)
{
    return op->id == ST_EVENT_INSERT ? event_seq_of(res, ctx) : 0;
}

static int pg_node_update(struct tc_store *s, struct tc_store_node *node)
{
    struct pg_store *q = PG(s);
    struct params p = {0};
    struct node_head h;
    bool found;
    int64_t now = tc_store_now_ms(), seq = 0;
    int rc;

    if ((rc = tx_begin(q)) != 0)
        return rc;
    if ((rc = node_head(q, node->id, &h, &found)) != 0)
        goto out;
    if (!found) {
        rc = TC_ERR_NOT_FOUND;
        goto out;
    }
    if (h.version != node->version) {
        rc = TC_ERR_MISMATCH;
        goto out;
    }
    p_str(&p, node->id);
    p_text(&p, tc_node_state_name(node->state));
    p_reason(&p, &node->reason);
    p_str(&p, node->tls_cert_fp);
    p_str(&p, node->agent_url);
    p_str(&p, node->group_name);
    p_i64(&p, node->missed);
    p_i64(&p, now);
    p_i64(&p, node->version);
    if ((rc = run(q, ST_NODE_UPDATE, &p, "node update", NULL)) != 0)
        goto out;
    if (h.state != node->state) {
        struct pending_event ev = {now, node->id, h.state, node->state, &node->reason};
        struct pipe_op ops[2];
        size_t nops = 0, idx = 0;
        queue_events(ops, &nops, &ev, &idx, 1);
        rc = pipeline(q, ops, nops, one_event_result, &seq);
    }
out:
    rc = tx_end(q, rc);
    if (rc == 0) {
        node->version++;
        node->updated = now;
    }
    return rc;
}

static int pg_node_delete(struct tc_store *s, const char *id)
{
    struct pg_store *q = PG(s);
    struct params p = {0};
    int64_t changed = 0;
    int rc;
    if ((rc = tx_begin(q)) != 0)
        return rc;
    p_str(&p, id);
    if ((rc = run(q, ST_NODE_DELETE, &p, "node delete", &changed)) != 0)
        goto out;
    if (changed == 0) {
        rc = TC_ERR_NOT_FOUND;
        goto out;
    }
    rc = run(q, ST_NODE_UNASSIGN_ALL, &p, "node unassign", NULL);
out:
    return tx_end(q, rc);
}

static int pg_node_set_ak(struct tc_store *s, const char *id, const struct tc_store_blob *ak_pub,
                          const struct tc_store_blob *ak_name)
{
    struct pg_store *q = PG(s);
    struct params p = {0};
    int64_t changed = 0;
    int rc;
    if ((rc = tx_begin(q)) != 0)
        return rc;
    p_str(&p, id);
    p_blob(&p, ak_pub);
    p_blob(&p, ak_name);
    if ((rc = run(q, ST_NODE_SET_AK, &p, "node set ak", &changed)) != 0)
        goto out;
    if (changed == 0) {
        struct params e = {0};
        int64_t found = 0;
        p_str(&e, id);
        if ((rc = run(q, ST_NODE_EXISTS, &e, "node exists", &found)) == 0)
            rc = found ? TC_ERR_MISMATCH : TC_ERR_NOT_FOUND;
    }
out:
    return tx_end(q, rc);
}

/* ---- rounds ---------------------------------------------------------------------------- */

/*
 * A batch in four round trips whatever its size: BEGIN; the heads of its nodes, read and locked
 * in one pipeline, in id order (so two coordinators locking overlapping batches take the rows in
 * the same order and do not deadlock); then, judged here, every write, the seqs and the events
 * in a second pipeline; COMMIT.
 */

struct batch {
    const struct tc_store_round *r;
    struct tc_store_round_result *res;
    size_t *order;           /* round indices sorted by node id, then index */
    struct node_head *heads; /* per round: its node's head before that round */
    bool *found;
};

static const struct tc_store_round *sort_rounds;

static int by_node(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    int c = strcmp(sort_rounds[x].node_id, sort_rounds[y].node_id);
    return c ? c : (x > y) - (x < y);
}

static int head_result(void *ctx, const struct pipe_op *op, const PGresult *res)
{
    struct batch *b = ctx;
    struct node_head *h = &b->heads[op->round];
    if (PQntuples(res) == 0)
        return 0;
    int rc;
    if ((rc = col_state(res, 0, 0, &h->state)) != 0 || (rc = col_i64(res, 0, 1, &h->last_round)) ||
        (rc = col_i64(res, 0, 2, &h->since_prune)) || (rc = col_i64(res, 0, 3, &h->version)))
        return rc;
    b->found[op->round] = true;
    return 0;
}

static int write_result(void *ctx, const struct pipe_op *op, const PGresult *res)
{
    struct batch *b = ctx;
    if (op->id == ST_ROUND_WRITE)
        return PQntuples(res) == 1 ? col_i64(res, 0, 0, &b->res[op->round].result_id)
                                   : TC_ERR_INTERNAL;
    if (op->id == ST_EVENT_INSERT)
        return event_seq_of(res, &b->res[op->round].event_seq);
    return 0;
}

static int pg_record_rounds(struct tc_store *s, const struct tc_store_round *r, size_t n,
                            struct tc_store_round_result *res)
{
    struct pg_store *q = PG(s);
    struct tc_store_round_result *scratch = NULL;
    struct pending_event *ev = NULL;
    struct pipe_op *ops = NULL;
    bool *changed = NULL, *prune = NULL;
    size_t *ev_round = NULL, nev = 0, nops = 0;
    struct batch b = {r, res, NULL, NULL, NULL};
    int rc = TC_ERR_ALLOC;

    /* Results are needed even when the caller passes none: the pipelines fill them. */
    if (res == NULL && (b.res = res = scratch = calloc(n, sizeof(*res))) == NULL)
        return TC_ERR_ALLOC;
    if ((b.order = calloc(n, sizeof(*b.order))) == NULL ||
        (b.heads = calloc(n, sizeof(*b.heads))) == NULL ||
        (b.found = calloc(n, sizeof(*b.found))) == NULL ||
        (changed = calloc(n, sizeof(*changed))) == NULL ||
        (prune = calloc(n, sizeof(*prune))) == NULL || (ev = calloc(n, sizeof(*ev))) == NULL ||
        (ev_round = calloc(n, sizeof(*ev_round))) == NULL ||
        (ops = calloc(4 * n + 1, sizeof(*ops))) == NULL)
        goto out;
    for (size_t i = 0; i < n; i++)
        b.order[i] = i;
    sort_rounds = r; /* the handle is used by one thread: so is this */
    qsort(b.order, n, sizeof(*b.order), by_node);
    if ((rc = tx_begin(q)) != 0)
        goto out;

    /* 1: read and lock the head of each node once (at its first round in id order). */
    for (size_t k = 0; k < n; k++) {
        size_t i = b.order[k];
        if (k > 0 && strcmp(r[b.order[k - 1]].node_id, r[i].node_id) == 0)
            continue;
        memset(&ops[nops], 0, sizeof(ops[nops]));
        ops[nops].id = ST_NODE_HEAD;
        ops[nops].round = i;
        p_str(&ops[nops].p, r[i].node_id);
        nops++;
    }
    if ((rc = pipeline(q, ops, nops, head_result, &b)) != 0)
        goto end;

    /* 2: judge each round against its node's head as the earlier rounds of the batch left it. */
    for (size_t k = 0; k < n; k++) {
        size_t i = b.order[k];
        if (k > 0 && strcmp(r[b.order[k - 1]].node_id, r[i].node_id) == 0) {
            size_t prev = b.order[k - 1];
            b.found[i] = b.found[prev];
            b.heads[i] = b.heads[prev];
            if (b.found[prev] && !res[prev].duplicate) { /* the previous round was written */
                b.heads[i].state = r[prev].state;
                b.heads[i].last_round = (int64_t)r[prev].round;
                b.heads[i].since_prune = prune[prev] ? 0 : b.heads[prev].since_prune + 1;
            }
        }
        if (!b.found[i]) {
            res[i].status = TC_ERR_NOT_FOUND;
            continue;
        }
        if ((int64_t)r[i].round <= b.heads[i].last_round) {
            res[i].duplicate = true;
            continue;
        }
        changed[i] = b.heads[i].state != r[i].state;
        prune[i] = b.heads[i].since_prune + 1 >= PRUNE_EVERY;
    }

    /* 3: the writes in the batch's order, then the events, in one pipeline. */
    nops = 0;
    for (size_t i = 0; i < n; i++) {
        const struct tc_store_round *x = &r[i];
        struct params *p;
        if (res[i].status != 0 || res[i].duplicate)
            continue;
        memset(&ops[nops], 0, sizeof(ops[nops]));
        ops[nops].id = ST_ROUND_WRITE;
        ops[nops].round = i;
        p = &ops[nops++].p;
        p_str(p, x->node_id);
        p_text(p, tc_node_state_name(x->state));
        p_reason(p, &x->reason);
        p_i64(p, x->missed);
        p_bool(p, x->has_quote);
        p_i64(p, x->reset_count);
        p_i64(p, x->restart_count);
        p_i64(p, (int64_t)x->clock);
        p_i64(p, (int64_t)x->ima_count);
        p_bytes(p, x->ima_state, x->ima_state_len);
        p_i64(p, (int64_t)x->round);
        p_i64(p, prune[i] ? 0 : b.heads[i].since_prune + 1);
        p_i64(p, x->ts);
        p_bool(p, changed[i]);
        if (x->eventlog != NULL) {
            memset(&ops[nops], 0, sizeof(ops[nops]));
            ops[nops].id = ST_EVENTLOG_UPDATE;
            p = &ops[nops++].p;
            p_str(p, x->node_id);
            p_bytes(p, x->eventlog, x->eventlog_len);
        }
        if (prune[i]) {
            memset(&ops[nops], 0, sizeof(ops[nops]));
            ops[nops].id = ST_RESULT_PRUNE;
            p = &ops[nops++].p;
            p_str(p, x->node_id);
            p_i64(p, (int64_t)q->base.opts.history_per_node - 1);
        }
        if (changed[i]) {
            ev[nev] =
                (struct pending_event){x->ts, x->node_id, b.heads[i].state, x->state, &x->reason};
            ev_round[nev++] = i;
        }
    }
    queue_events(ops, &nops, ev, ev_round, nev);
    rc = pipeline(q, ops, nops, write_result, &b);
end:
    rc = tx_end(q, rc);
out:
    free(ops);
    free(ev_round);
    free(ev);
    free(prune);
    free(changed);
    free(b.found);
    free(b.heads);
    free(b.order);
    free(scratch);
    return rc;
}

static int pg_results_list(struct tc_store *s, const char *node_id, int64_t before_id, size_t limit,
                           struct tc_store_result **out, size_t *n)
{
    struct pg_store *q = PG(s);
    struct params p = {0};
    struct tc_store_result *v = NULL;
    PGresult *res = NULL;
    size_t k = 0;
    int rc;
    if ((rc = begin_call(q)) != 0)
        return rc;
    p_str(&p, node_id);
    p_i64(&p, before_id == 0 ? INT64_MAX : before_id);
    p_i64(&p, (int64_t)limit);
    if ((rc = exec_stmt(q, ST_RESULTS_LIST, &p, "results list", &res)) != 0)
        return rc;
    size_t rows = (size_t)PQntuples(res);
    if (rows > limit) {
        rc = TC_ERR_INTERNAL;
        goto out;
    }
    if (rows > 0 && (v = calloc(rows, sizeof(*v))) == NULL) {
        rc = TC_ERR_ALLOC;
        goto out;
    }
    for (; k < rows; k++) {
        struct tc_store_result *e = &v[k];
        int64_t round;
        int row = (int)k;
        if ((rc = col_i64(res, row, 0, &e->id)) != 0 || (rc = col_i64(res, row, 1, &round)) != 0 ||
            (rc = col_i64(res, row, 2, &e->ts)) != 0 ||
            (rc = col_state(res, row, 3, &e->state)) != 0 ||
            (rc = col_bool(res, row, 4, &e->changed)) != 0 ||
            (rc = col_reason(res, row, 5, &e->reason)) != 0)
            goto out;
        e->round = (uint64_t)round;
    }
out:
    PQclear(res);
    if (rc != 0 || k == 0) {
        free(v);
        return rc;
    }
    *out = v;
    *n = k;
    return 0;
}

static int pg_events_since(struct tc_store *s, int64_t since, size_t limit,
                           struct tc_store_event **out, size_t *n)
{
    struct pg_store *q = PG(s);
    struct params p = {0};
    struct tc_store_event *v = NULL;
    PGresult *res = NULL;
    size_t k = 0;
    int rc;
    if ((rc = begin_call(q)) != 0)
        return rc;
    p_i64(&p, since);
    p_i64(&p, (int64_t)limit);
    if ((rc = exec_stmt(q, ST_EVENTS_SINCE, &p, "events since", &res)) != 0)
        return rc;
    size_t rows = (size_t)PQntuples(res);
    if (rows > limit) {
        rc = TC_ERR_INTERNAL;
        goto out;
    }
    if (rows > 0 && (v = calloc(rows, sizeof(*v))) == NULL) {
        rc = TC_ERR_ALLOC;
        goto out;
    }
    for (; k < rows; k++) {
        struct tc_store_event *e = &v[k];
        int row = (int)k;
        if ((rc = col_i64(res, row, 0, &e->seq)) != 0 || (rc = col_i64(res, row, 1, &e->ts)) != 0 ||
            (rc = col_text(res, row, 2, e->node_id, sizeof(e->node_id))) != 0 ||
            (rc = col_state(res, row, 3, &e->old_state)) != 0 ||
            (rc = col_state(res, row, 4, &e->new_state)) != 0 ||
            (rc = col_reason(res, row, 5, &e->reason)) != 0)
            goto out;
    }
out:
    PQclear(res);
    if (rc != 0 || k == 0) {
        free(v);
        return rc;
    }
    *out = v;
    *n = k;
    return 0;
}

static int pg_events_last_seq(struct tc_store *s, int64_t *seq)
{
    return query_i64(PG(s), ST_EVENTS_LAST, "events last", seq);
}

/* ---- enrollments ----------------------------------------------------------------------- */

static int pg_enrollment_put(struct tc_store *s, struct tc_store_enrollment *e)
{
    struct pg_store *q = PG(s);
    struct params p = {0};
    int64_t now = tc_store_now_ms();
    int rc;
    if ((rc = begin_call(q)) != 0)
        return rc;
    p_str(&p, e->id);
    p_str(&p, e->node_id);
    p_bytes(&p, e->secret_hash, sizeof(e->secret_hash));
    p_blob(&p, &e->ek_pub);
    p_blob(&p, &e->ek_cert);
    p_blob(&p, &e->ak_pub);
    p_blob(&p, &e->ak_name);
    p_i64(&p, now);
    p_i64(&p, e->expires);
    if ((rc = run(q, ST_ENR_INSERT, &p, "enrollment insert", NULL)) == 0)
        e->created = now;
    return rc;
}

/* The enrollment row; lock: also lock it until the transaction ends. */
static int enrollment_read(struct pg_store *q, const char *id, int64_t now, bool lock,
                           struct tc_store_enrollment *e)
{
    struct params p = {0};
    PGresult *res = NULL;
    int rc;
    p_str(&p, id);
    p_i64(&p, now);
    if ((rc = exec_stmt(q, lock ? ST_ENR_LOCK : ST_ENR_GET, &p, "enrollment get", &res)) != 0)
        return rc;
    if (PQntuples(res) == 0) {
        rc = TC_ERR_NOT_FOUND;
        goto out;
    }
    if (PQgetisnull(res, 0, 2) || PQgetlength(res, 0, 2) != TC_STORE_HASH_LEN) {
        rc = TC_ERR_FORMAT;
        goto out;
    }
    memcpy(e->secret_hash, PQgetvalue(res, 0, 2), TC_STORE_HASH_LEN);
    if ((rc = col_i64(res, 0, 7, &e->created)) != 0 ||
        (rc = col_i64(res, 0, 8, &e->expires)) != 0 ||
        (rc = col_text(res, 0, 0, e->id, sizeof(e->id))) != 0 ||
        (rc = col_text(res, 0, 1, e->node_id, sizeof(e->node_id))) != 0 ||
        (rc = col_blob(res, 0, 3, &e->ek_pub, TC_STORE_KEY_MAX)) != 0 ||
        (rc = col_blob(res, 0, 4, &e->ek_cert, TC_STORE_CERT_MAX)) != 0 ||
        (rc = col_blob(res, 0, 5, &e->ak_pub, TC_STORE_KEY_MAX)) != 0 ||
        (rc = col_blob(res, 0, 6, &e->ak_name, TC_STORE_KEY_MAX)) != 0)
        goto out;
out:
    PQclear(res);
    return rc;
}

static int pg_enrollment_get(struct tc_store *s, const char *id, int64_t now,
                             struct tc_store_enrollment *e)
{
    struct pg_store *q = PG(s);
    int rc;
    if ((rc = begin_call(q)) != 0)
        return rc;
    return enrollment_read(q, id, now, false, e);
}

static int pg_enrollment_complete(struct tc_store *s, const char *id, int64_t now,
                                  struct tc_store_node *node)
{
    struct pg_store *q = PG(s);
    struct tc_store_enrollment e;
    struct params p = {0};
    int64_t created = tc_store_now_ms();
    int rc;
    memset(&e, 0, sizeof(e));
    if ((rc = tx_begin(q)) != 0)
        return rc;
    if ((rc = enrollment_read(q, id, now, true, &e)) != 0)
        goto out;
    /* The proof of possession was for this node id and no other. */
    if (strcmp(e.node_id, node->id) != 0) {
        rc = TC_ERR_MISMATCH;
        goto out;
    }
    p_str(&p, id);
    if ((rc = run(q, ST_ENR_DELETE, &p, "enrollment delete", NULL)) != 0)
        goto out;
    rc = node_insert(q, node, created);
out:
    tc_store_enrollment_release(&e);
    rc = tx_end(q, rc);
    if (rc == 0) {
        node->created = node->updated = created;
        node->version = 1;
        node->last_round = 0;
    }
    return rc;
}

static int pg_enrollment_purge(struct tc_store *s, int64_t now, size_t *n)
{
    struct pg_store *q = PG(s);
    struct params p = {0};
    int64_t changed = 0;
    int rc;
    if ((rc = begin_call(q)) != 0)
        return rc;
    p_i64(&p, now);
    if ((rc = run(q, ST_ENR_PURGE, &p, "enrollment purge", &changed)) == 0)
        *n = (size_t)changed;
    return rc;
}

/* ---- policies -------------------------------------------------------------------------- */

/* Latest version and kind of a policy; *version = 0 if none. */
static int policy_head(struct pg_store *q, const char *name, int64_t *version,
                       enum tc_policy_kind *kind)
{
    struct params p = {0};
    PGresult *res = NULL;
    int rc;
    *version = 0;
    p_str(&p, name);
    if ((rc = exec_stmt(q, ST_POL_HEAD, &p, "policy head", &res)) != 0)
        return rc;
    if (PQntuples(res) == 1 && (rc = col_i64(res, 0, 0, version)) == 0)
        rc = col_kind(res, 0, 1, kind);
    PQclear(res);
    return rc;
}

static int pg_policy_put(struct tc_store *s, const char *name, enum tc_policy_kind kind,
                         const char *body, size_t body_len, int64_t *version)
{
    struct pg_store *q = PG(s);
    struct params p = {0};
    enum tc_policy_kind have_kind = kind;
    int64_t have = 0;
    int rc;
    if ((rc = tx_begin(q)) != 0)
        return rc;
    p_str(&p, name);
    if ((rc = run(q, ST_POL_LOCK, &p, "policy lock", NULL)) != 0 ||
        (rc = policy_head(q, name, &have, &have_kind)) != 0)
        goto out;
    if (have > 0 && have_kind != kind) {
        rc = TC_ERR_MISMATCH;
        goto out;
    }
    memset(&p, 0, sizeof(p));
    p_str(&p, name);
    p_i64(&p, have + 1);
    p_text(&p, tc_policy_kind_name(kind));
    p_bytes(&p, body_len ? body : "", body_len);
    p_i64(&p, tc_store_now_ms());
    rc = run(q, ST_POL_INSERT, &p, "policy insert", NULL);
out:
    rc = tx_end(q, rc);
    if (rc == 0)
        *version = have + 1;
    return rc;
}

static int pg_policy_get(struct tc_store *s, const char *name, int64_t version,
                         struct tc_store_policy *pol)
{
    struct pg_store *q = PG(s);
    struct params p = {0};
    PGresult *res = NULL;
    int rc;
    if ((rc = begin_call(q)) != 0)
        return rc;
    p_str(&p, name);
    p_i64(&p, version);
    if ((rc = exec_stmt(q, ST_POL_GET, &p, "policy get", &res)) != 0)
        return rc;
    if (PQntuples(res) == 0) {
        rc = TC_ERR_NOT_FOUND;
        goto out;
    }
    size_t len = (size_t)PQgetlength(res, 0, 3);
    const char *b = PQgetvalue(res, 0, 3);
    if (PQgetisnull(res, 0, 3) || len > TC_STORE_POLICY_MAX || memchr(b, 0, len) != NULL) {
        rc = TC_ERR_FORMAT;
        goto out;
    }
    if ((rc = col_text(res, 0, 0, pol->name, sizeof(pol->name))) != 0 ||
        (rc = col_kind(res, 0, 2, &pol->kind)) != 0 ||
        (rc = col_i64(res, 0, 1, &pol->version)) != 0 ||
        (rc = col_i64(res, 0, 4, &pol->created)) != 0)
        goto out;
    if ((pol->body = malloc(len + 1)) == NULL) {
        rc = TC_ERR_ALLOC;
        goto out;
    }
    memcpy(pol->body, b, len);
    pol->body[len] = '\0';
    pol->body_len = len;
out:
    PQclear(res);
    return rc;
}

static int pg_policy_list(struct tc_store *s,
                          int (*fn)(void *, const char *, int64_t, enum tc_policy_kind), void *arg)
{
    struct pg_store *q = PG(s);
    struct params p = {0};
    PGresult *res = NULL;
    char name[TC_STORE_ID_MAX + 1];
    enum tc_policy_kind kind;
    int64_t version;
    int rc;
    if ((rc = begin_call(q)) != 0)
        return rc;
    if ((rc = exec_stmt(q, ST_POL_LIST, &p, "policy list", &res)) != 0)
        return rc;
    for (int i = 0; i < PQntuples(res); i++) {
        if ((rc = col_text(res, i, 0, name, sizeof(name))) != 0 ||
            (rc = col_i64(res, i, 1, &version)) != 0 || (rc = col_kind(res, i, 2, &kind)) != 0 ||
            (rc = fn(arg, name, version, kind)) != 0)
            break;
    }
    PQclear(res);
    return rc;
}

static const char *target_name(enum tc_assign_target k)
{
    return k == TC_ASSIGN_GROUP ? "group" : "node";
}

static int pg_assign(struct tc_store *s, enum tc_assign_target kind, const char *target,
                     const char *policy)
{
    struct pg_store *q = PG(s);
    struct params p = {0};
    enum tc_policy_kind pk;
    int64_t have;
    int rc;
    if ((rc = tx_begin(q)) != 0)
        return rc;
    if ((rc = policy_head(q, policy, &have, &pk)) != 0)
        goto out;
    if (have == 0) {
        rc = TC_ERR_NOT_FOUND;
        goto out;
    }
    p_text(&p, target_name(kind));
    p_str(&p, target);
    p_str(&p, policy);
    p_i64(&p, tc_store_now_ms());
    rc = run(q, ST_ASSIGN, &p, "assign", NULL);
out:
    return tx_end(q, rc);
}

static int pg_unassign(struct tc_store *s, enum tc_assign_target kind, const char *target,
                       const char *policy)
{
    struct pg_store *q = PG(s);
    struct params p = {0};
    int64_t changed = 0;
    int rc;
    if ((rc = begin_call(q)) != 0)
        return rc;
    p_text(&p, target_name(kind));
    p_str(&p, target);
    p_str(&p, policy);
    if ((rc = run(q, ST_UNASSIGN, &p, "unassign", &changed)) == 0 && changed == 0)
        rc = TC_ERR_NOT_FOUND;
    return rc;
}

static int pg_node_policies(struct tc_store *s, const char *node_id,
                            int (*fn)(void *, const char *), void *arg)
{
    struct pg_store *q = PG(s);
    struct params p = {0};
    PGresult *res = NULL;
    char name[TC_STORE_ID_MAX + 1];
    int rc;
    if ((rc = begin_call(q)) != 0)
        return rc;
    p_str(&p, node_id);
    if ((rc = exec_stmt(q, ST_NODE_POLICIES, &p, "node policies", &res)) != 0)
        return rc;
    if (PQntuples(res) == 0)
        rc = TC_ERR_NOT_FOUND;
    for (int i = 0; rc == 0 && i < PQntuples(res); i++) {
        if (PQgetisnull(res, i, 0))
            continue;
        if ((rc = col_text(res, i, 0, name, sizeof(name))) == 0)
            rc = fn(arg, name);
    }
    PQclear(res);
    return rc;
}

/* ---- subscribers and outbox ------------------------------------------------------------ */

static int pg_subscriber_add(struct tc_store *s, const char *url, const uint8_t *secret,
                             size_t secret_len, int64_t *id)
{
    struct pg_store *q = PG(s);
    struct params p = {0};
    PGresult *res = NULL;
    int rc;
    if ((rc = begin_call(q)) != 0)
        return rc;
    p_str(&p, url);
    p_bytes(&p, secret, secret_len);
    p_i64(&p, tc_store_now_ms());
    if ((rc = exec_stmt(q, ST_SUB_INSERT, &p, "subscriber insert", &res)) != 0)
        return rc;
    rc = PQntuples(res) == 1 ? col_i64(res, 0, 0, id) : TC_ERR_INTERNAL;
    PQclear(res);
    return rc;
}

static int read_subscriber(const PGresult *res, int row, struct tc_store_subscriber *sub)
{
    int rc;
    size_t len = (size_t)PQgetlength(res, row, 2);
    if (PQgetisnull(res, row, 2) || len == 0 || len > sizeof(sub->secret))
        return TC_ERR_FORMAT;
    if ((rc = col_text(res, row, 1, sub->url, sizeof(sub->url))) != 0 ||
        (rc = col_i64(res, row, 0, &sub->id)) != 0 ||
        (rc = col_i64(res, row, 3, &sub->created)) != 0)
        return rc;
    memcpy(sub->secret, PQgetvalue(res, row, 2), len);
    sub->secret_len = len;
    return 0;
}

static int pg_subscriber_get(struct tc_store *s, int64_t id, struct tc_store_subscriber *sub)
{
    struct pg_store *q = PG(s);
    struct params p = {0};
    PGresult *res = NULL;
    int rc;
    if ((rc = begin_call(q)) != 0)
        return rc;
    p_i64(&p, id);
    if ((rc = exec_stmt(q, ST_SUB_GET, &p, "subscriber get", &res)) != 0)
        return rc;
    rc = PQntuples(res) == 0 ? TC_ERR_NOT_FOUND : read_subscriber(res, 0, sub);
    PQclear(res);
    return rc;
}

static int pg_subscriber_list(struct tc_store *s,
                              int (*fn)(void *, const struct tc_store_subscriber *), void *arg)
{
    struct pg_store *q = PG(s);
    struct params p = {0};
    struct tc_store_subscriber sub;
    PGresult *res = NULL;
    int rc;
    memset(&sub, 0, sizeof(sub));
    if ((rc = begin_call(q)) != 0)
        return rc;
    if ((rc = exec_stmt(q, ST_SUB_LIST, &p, "subscriber list", &res)) != 0)
        return rc;
    for (int i = 0; rc == 0 && i < PQntuples(res); i++) {
        if ((rc = read_subscriber(res, i, &sub)) == 0)
            rc = fn(arg, &sub);
        tc_store_subscriber_release(&sub);
    }
    tc_store_subscriber_release(&sub);
    PQclear(res);
    return rc;
}

static int pg_subscriber_delete(struct tc_store *s, int64_t id)
{
    struct pg_store *q = PG(s);
    struct params p = {0};
    int64_t changed = 0;
    int rc;
    if ((rc = begin_call(q)) != 0)
        return rc;
    p_i64(&p, id);
    if ((rc = run(q, ST_SUB_DELETE, &p, "subscriber delete", &changed)) == 0 && changed == 0)
        rc = TC_ERR_NOT_FOUND;
    return rc;
}

static int pg_deliveries_due(struct tc_store *s, int64_t now, size_t limit,
                             struct tc_store_delivery **out, size_t *n)
{
    struct pg_store *q = PG(s);
    struct params p = {0};
    struct tc_store_delivery *v = NULL;
    PGresult *res = NULL;
    size_t k = 0;
    int rc;
    if ((rc = begin_call(q)) != 0)
        return rc;
    p_i64(&p, now);
    p_i64(&p, (int64_t)limit);
    if ((rc = exec_stmt(q, ST_DUE, &p, "deliveries due", &res)) != 0)
        return rc;
    size_t rows = (size_t)PQntuples(res);
    if (rows > limit) {
        rc = TC_ERR_INTERNAL;
        goto out;
    }
    if (rows > 0 && (v = calloc(rows, sizeof(*v))) == NULL) {
        rc = TC_ERR_ALLOC;
        goto out;
    }
    for (; k < rows; k++) {
        int64_t attempts;
        int row = (int)k;
        if ((rc = col_i64(res, row, 0, &v[k].id)) != 0 ||
            (rc = col_i64(res, row, 1, &v[k].seq)) != 0 ||
            (rc = col_i64(res, row, 2, &v[k].subscriber_id)) != 0 ||
            (rc = col_i64(res, row, 3, &attempts)) != 0 ||
            (rc = col_i64(res, row, 4, &v[k].next_attempt_at)) != 0)
            goto out;
        v[k].attempts = (uint32_t)attempts;
    }
out:
    PQclear(res);
    if (rc != 0 || k == 0) {
        free(v);
        return rc;
    }
    *out = v;
    *n = k;
    return 0;
}

static int delivery_update(struct tc_store *s, enum stmt_id id_stmt, int64_t id, int64_t v)
{
    struct pg_store *q = PG(s);
    struct params p = {0};
    int64_t changed = 0;
    int rc;
    if ((rc = begin_call(q)) != 0)
        return rc;
    p_i64(&p, id);
    p_i64(&p, v);
    if ((rc = run(q, id_stmt, &p, "delivery update", &changed)) == 0 && changed == 0)
        rc = TC_ERR_NOT_FOUND;
    return rc;
}

static int pg_delivery_done(struct tc_store *s, int64_t id, int64_t now)
{
    return delivery_update(s, ST_DONE, id, now);
}

static int pg_delivery_retry(struct tc_store *s, int64_t id, int64_t next_attempt_at)
{
    return delivery_update(s, ST_RETRY, id, next_attempt_at);
}

static int pg_prune(struct tc_store *s, int64_t before_ts)
{
    struct pg_store *q = PG(s);
    struct params p = {0};
    int rc;
    if ((rc = tx_begin(q)) != 0)
        return rc;
    p_i64(&p, before_ts);
    if ((rc = run(q, ST_PRUNE_DELIVERIES, &p, "prune deliveries", NULL)) == 0)
        rc = run(q, ST_PRUNE_EVENTS, &p, "prune events", NULL);
    return tx_end(q, rc);
}

static const struct tc_store_ops pg_ops = {
    .name = "postgresql",
    .close = pg_close,
    .schema_version = pg_schema_version,
    .node_create = pg_node_create,
    .node_get = pg_node_get,
    .node_update = pg_node_update,
    .node_delete = pg_node_delete,
    .node_set_ak = pg_node_set_ak,
    .node_list = pg_node_list,
    .record_rounds = pg_record_rounds,
    .results_list = pg_results_list,
    .events_since = pg_events_since,
    .events_last_seq = pg_events_last_seq,
    .enrollment_put = pg_enrollment_put,
    .enrollment_get = pg_enrollment_get,
    .enrollment_complete = pg_enrollment_complete,
    .enrollment_purge = pg_enrollment_purge,
    .policy_put = pg_policy_put,
    .policy_get = pg_policy_get,
    .policy_list = pg_policy_list,
    .assign = pg_assign,
    .unassign = pg_unassign,
    .node_policies = pg_node_policies,
    .subscriber_add = pg_subscriber_add,
    .subscriber_get = pg_subscriber_get,
    .subscriber_list = pg_subscriber_list,
    .subscriber_delete = pg_subscriber_delete,
    .deliveries_due = pg_deliveries_due,
    .delivery_done = pg_delivery_done,
    .delivery_retry = pg_delivery_retry,
    .prune = pg_prune,
    .inject_fault = pg_inject_fault,
};
