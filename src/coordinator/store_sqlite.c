/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Embedded SQLite backend of the coordinator store (see store.h for what
 * each function promises).
 *
 * Shape: one connection per handle (SQLITE_OPEN_NOMUTEX: the handle is used
 * by one thread), WAL journal, every statement prepared once per handle and
 * reset after each use, every multi-row change in one BEGIN IMMEDIATE
 * transaction (IMMEDIATE takes the write lock up front, so a transaction
 * never fails half-way with SQLITE_BUSY on lock upgrade).
 */
#define LOGMODULE "store.sqlite"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "coordinator/store.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"

/* ---- schema ---------------------------------------------------------------------------- */

/*
 * Ordered migrations: migrations[i] brings the schema from version i to i+1.
 * Append only; never edit a released entry.
 *
 * Why two node tables: the round hot path rewrites the node row every 2 s
 * per node and SQLite rewrites whole records on UPDATE, so the bulky,
 * rarely-changing bytes (EK certificate, keys, UEFI event log) live in
 * node_blobs and the hot row stays a few hundred bytes.
 */
static const char *const migrations[] = {
    /* 1: initial schema */
    "CREATE TABLE nodes ("
    "  id TEXT PRIMARY KEY NOT NULL,"
    "  state TEXT NOT NULL CHECK (state IN ('pending_approval','enrolled','trusted',"
    "                                        'untrusted','unreachable')),"
    "  tls_cert_fp TEXT NOT NULL DEFAULT '',"
    "  agent_url TEXT NOT NULL DEFAULT '',"
    "  group_name TEXT NOT NULL DEFAULT '',"
    "  reason_code INTEGER NOT NULL DEFAULT 0,"
    "  reason_check TEXT NOT NULL DEFAULT '',"
    "  reason_entry INTEGER NOT NULL DEFAULT -1,"
    "  reason_detail TEXT NOT NULL DEFAULT '',"
    "  missed INTEGER NOT NULL DEFAULT 0,"
    "  has_quote INTEGER NOT NULL DEFAULT 0,"
    "  reset_count INTEGER NOT NULL DEFAULT 0,"
    "  restart_count INTEGER NOT NULL DEFAULT 0,"
    "  clock INTEGER NOT NULL DEFAULT 0,"
    "  ima_count INTEGER NOT NULL DEFAULT 0,"
    "  ima_state BLOB,"
    "  last_round INTEGER NOT NULL DEFAULT 0,"
    "  since_prune INTEGER NOT NULL DEFAULT 0,"
    "  created INTEGER NOT NULL,"
    "  updated INTEGER NOT NULL,"
    "  version INTEGER NOT NULL DEFAULT 1"
    ");"
    "CREATE TABLE node_blobs ("
    "  node_id TEXT PRIMARY KEY NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,"
    "  ek_pub BLOB, ek_cert BLOB, ak_pub BLOB, ak_name BLOB, eventlog BLOB"
    ");"
    "CREATE TABLE enrollments ("
    "  id TEXT PRIMARY KEY NOT NULL,"
    "  node_id TEXT NOT NULL,"
    "  secret_hash BLOB NOT NULL CHECK (length(secret_hash) = 32),"
    "  ek_pub BLOB, ek_cert BLOB, ak_pub BLOB, ak_name BLOB,"
    "  created INTEGER NOT NULL,"
    "  expires INTEGER NOT NULL"
    ");"
    "CREATE INDEX enrollments_expires ON enrollments(expires);"
    "CREATE TABLE policies ("
    "  name TEXT NOT NULL,"
    "  version INTEGER NOT NULL CHECK (version > 0),"
    "  kind TEXT NOT NULL CHECK (kind IN ('runtime','measured_boot','pcr')),"
    "  body TEXT NOT NULL,"
    "  created INTEGER NOT NULL,"
    "  PRIMARY KEY (name, version)"
    ");"
    "CREATE TABLE assignments ("
    "  target_kind TEXT NOT NULL CHECK (target_kind IN ('node','group')),"
    "  target TEXT NOT NULL,"
    "  policy TEXT NOT NULL,"
    "  created INTEGER NOT NULL,"
    "  PRIMARY KEY (target_kind, target, policy)"
    ");"
    "CREATE TABLE results ("
    "  id INTEGER PRIMARY KEY,"
    "  node_id TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,"
    "  round INTEGER NOT NULL,"
    "  ts INTEGER NOT NULL,"
    "  state TEXT NOT NULL,"
    "  changed INTEGER NOT NULL,"
    "  reason_code INTEGER NOT NULL,"
    "  reason_check TEXT NOT NULL,"
    "  reason_entry INTEGER NOT NULL,"
    "  reason_detail TEXT NOT NULL"
    ");"
    /* Serves history paging (node, id DESC), pruning, and the FK cascade. */
    "CREATE INDEX results_node ON results(node_id, id);"
    /* AUTOINCREMENT: a seq is never reused, even after pruning the newest
     * events, so a reader's "since" cursor can never skip a new event. */
    "CREATE TABLE events ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  ts INTEGER NOT NULL,"
    "  node_id TEXT NOT NULL,"
    "  old_state TEXT NOT NULL,"
    "  new_state TEXT NOT NULL,"
    "  reason_code INTEGER NOT NULL,"
    "  reason_check TEXT NOT NULL,"
    "  reason_entry INTEGER NOT NULL,"
    "  reason_detail TEXT NOT NULL"
    ");"
    "CREATE TABLE subscribers ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  url TEXT NOT NULL,"
    "  secret BLOB NOT NULL,"
    "  created INTEGER NOT NULL"
    ");"
    "CREATE TABLE deliveries ("
    "  id INTEGER PRIMARY KEY,"
    "  seq INTEGER NOT NULL REFERENCES events(seq) ON DELETE CASCADE,"
    "  subscriber_id INTEGER NOT NULL REFERENCES subscribers(id) ON DELETE CASCADE,"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  next_attempt_at INTEGER NOT NULL,"
    "  delivered_at INTEGER,"
    "  UNIQUE (seq, subscriber_id)"
    ");"
    "CREATE INDEX deliveries_due ON deliveries(next_attempt_at) WHERE delivered_at IS NULL;"
    "CREATE INDEX deliveries_subscriber ON deliveries(subscriber_id);",
    /* 2: virtual machines are nodes hosted by another node, owned by a tenant */
    "ALTER TABLE nodes ADD COLUMN kind TEXT NOT NULL DEFAULT 'host' CHECK (kind IN ('host','vm'));"
    "ALTER TABLE nodes ADD COLUMN host TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE nodes ADD COLUMN tenant TEXT NOT NULL DEFAULT '';"
    "CREATE INDEX nodes_host ON nodes (host) WHERE host <> '';",
};
#define SCHEMA_VERSION ((int64_t)(sizeof(migrations) / sizeof(migrations[0])))

/* How many rounds of a node between two history prunes: amortizes the DELETE. */
#define PRUNE_EVERY 64

/* ---- statements ------------------------------------------------------------------------ */

#define NODE_COLS                                                                                  \
    "n.id, n.state, n.tls_cert_fp, n.agent_url, n.group_name, n.reason_code, n.reason_check, "     \
    "n.reason_entry, n.reason_detail, n.missed, n.has_quote, n.reset_count, n.restart_count, "     \
    "n.clock, n.ima_count, n.ima_state, n.last_round, n.created, n.updated, n.version, "           \
    "b.ek_pub, b.ek_cert, b.ak_pub, b.ak_name, n.kind, n.host, n.tenant "
#define REASON_COLS "reason_code, reason_check, reason_entry, reason_detail"

enum stmt_id {
    ST_BEGIN,
    ST_COMMIT,
    ST_SCHEMA_VERSION,
    ST_NODE_INSERT,
    ST_BLOBS_INSERT,
    ST_NODE_GET,
    ST_NODE_LIST,
    ST_NODE_HEAD,
    ST_NODE_UPDATE,
    ST_NODE_DELETE,
    ST_NODE_SET_AK,
    ST_NODE_EXISTS,
    ST_NODE_UNASSIGN_ALL,
    ST_ROUND_UPDATE,
    ST_EVENTLOG_UPDATE,
    ST_RESULT_INSERT,
    ST_RESULT_PRUNE,
    ST_EVENT_INSERT,
    ST_OUTBOX_INSERT,
    ST_RESULTS_LIST,
    ST_EVENTS_SINCE,
    ST_EVENTS_LAST,
    ST_ENR_INSERT,
    ST_ENR_GET,
    ST_ENR_DELETE,
    ST_ENR_PURGE,
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

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_SCHEMA_VERSION] = "SELECT max(version) FROM schema_version",
    [ST_NODE_INSERT] =
        "INSERT INTO nodes (id, state, tls_cert_fp, agent_url, group_name, " REASON_COLS
        ", missed, has_quote, reset_count, restart_count, clock, ima_count, ima_state, "
        "created, updated, version, kind, host, tenant) VALUES "
        "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?17, 1, "
        "?18, ?19, ?20)",
    [ST_BLOBS_INSERT] = "INSERT INTO node_blobs (node_id, ek_pub, ek_cert, ak_pub, ak_name, "
                        "eventlog) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_NODE_GET] = "SELECT " NODE_COLS ", b.eventlog FROM nodes n "
                    "LEFT JOIN node_blobs b ON b.node_id = n.id WHERE n.id = ?1",
    [ST_NODE_LIST] = "SELECT " NODE_COLS ", NULL FROM nodes n "
                     "LEFT JOIN node_blobs b ON b.node_id = n.id ORDER BY n.id",
    [ST_NODE_HEAD] = "SELECT state, last_round, since_prune, version FROM nodes WHERE id = ?1",
    [ST_NODE_UPDATE] = "UPDATE nodes SET state = ?2, reason_code = ?3, reason_check = ?4, "
                       "reason_entry = ?5, reason_detail = ?6, tls_cert_fp = ?7, agent_url = ?8, "
                       "group_name = ?9, missed = ?10, updated = ?11, version = version + 1 "
                       "WHERE id = ?1 AND version = ?12",
    [ST_NODE_DELETE] = "DELETE FROM nodes WHERE id = ?1",
    [ST_NODE_SET_AK] = "UPDATE node_blobs SET ak_pub = ?2, ak_name = ?3 WHERE node_id = ?1 AND "
                       "(ak_pub IS NULL OR length(ak_pub) = 0)",
    [ST_NODE_EXISTS] = "SELECT 1 FROM nodes WHERE id = ?1",
    /* A later node with the same id must not inherit the old one's policies. */
    [ST_NODE_UNASSIGN_ALL] = "DELETE FROM assignments WHERE target_kind = 'node' AND target = ?1",
    /* ?8 = has_quote: quote info and IMA count only move with a verified quote. */
    [ST_ROUND_UPDATE] =
        "UPDATE nodes SET state = ?2, reason_code = ?3, reason_check = ?4, reason_entry = ?5, "
        "reason_detail = ?6, missed = ?7, "
        "has_quote = CASE WHEN ?8 THEN 1 ELSE has_quote END, "
        "reset_count = CASE WHEN ?8 THEN ?9 ELSE reset_count END, "
        "restart_count = CASE WHEN ?8 THEN ?10 ELSE restart_count END, "
        "clock = CASE WHEN ?8 THEN ?11 ELSE clock END, "
        "ima_count = CASE WHEN ?8 THEN ?12 ELSE ima_count END, "
        "ima_state = coalesce(?13, ima_state), last_round = ?14, since_prune = ?15, "
        "updated = ?16, version = version + 1 WHERE id = ?1",
    [ST_EVENTLOG_UPDATE] = "UPDATE node_blobs SET eventlog = ?2 WHERE node_id = ?1",
    [ST_RESULT_INSERT] = "INSERT INTO results (node_id, round, ts, state, changed, " REASON_COLS
                         ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    /* Keeps the newest ?2 rows of the node and every state change. */
    [ST_RESULT_PRUNE] = "DELETE FROM results WHERE node_id = ?1 AND changed = 0 AND id < "
                        "(SELECT id FROM results WHERE node_id = ?1 ORDER BY id DESC "
                        "LIMIT 1 OFFSET ?2)",
    [ST_EVENT_INSERT] = "INSERT INTO events (ts, node_id, old_state, new_state, " REASON_COLS
                        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [ST_OUTBOX_INSERT] = "INSERT INTO deliveries (seq, subscriber_id, next_attempt_at) "
                         "SELECT ?1, id, ?2 FROM subscribers",
    [ST_RESULTS_LIST] = "SELECT id, round, ts, state, changed, " REASON_COLS
                        " FROM results WHERE node_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
    [ST_EVENTS_SINCE] = "SELECT seq, ts, node_id, old_state, new_state, " REASON_COLS
                        " FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    /* sqlite_sequence keeps the highest seq ever handed out, even once pruned. */
    [ST_EVENTS_LAST] =
        "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)",
    [ST_ENR_INSERT] = "INSERT INTO enrollments (id, node_id, secret_hash, ek_pub, ek_cert, "
                      "ak_pub, ak_name, created, expires) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
                      "?8, ?9)",
    [ST_ENR_GET] = "SELECT id, node_id, secret_hash, ek_pub, ek_cert, ak_pub, ak_name, created, "
                   "expires FROM enrollments WHERE id = ?1 AND expires > ?2",
    [ST_ENR_DELETE] = "DELETE FROM enrollments WHERE id = ?1",
    [ST_ENR_PURGE] = "DELETE FROM enrollments WHERE expires <= ?1",
    [ST_POL_HEAD] = "SELECT version, kind FROM policies WHERE name = ?1 "
                    "ORDER BY version DESC LIMIT 1",
    [ST_POL_INSERT] = "INSERT INTO policies (name, version, kind, body, created) "
                      "VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_POL_GET] = "SELECT name, version, kind, body, created FROM policies WHERE name = ?1 "
                   "AND (?2 = 0 OR version = ?2) ORDER BY version DESC LIMIT 1",
    [ST_POL_LIST] = "SELECT name, max(version), kind FROM policies GROUP BY name ORDER BY name",
    [ST_ASSIGN] = "INSERT OR IGNORE INTO assignments (target_kind, target, policy, created) "
                  "VALUES (?1, ?2, ?3, ?4)",
    [ST_UNASSIGN] =
        "DELETE FROM assignments WHERE target_kind = ?1 AND target = ?2 AND policy = ?3",
    [ST_NODE_POLICIES] = "SELECT DISTINCT a.policy FROM assignments a JOIN nodes n "
                         "ON (a.target_kind = 'node' AND a.target = n.id) OR "
                         "(a.target_kind = 'group' AND n.group_name <> '' AND "
                         "a.target = n.group_name) WHERE n.id = ?1 ORDER BY a.policy",
    [ST_SUB_INSERT] = "INSERT INTO subscribers (url, secret, created) VALUES (?1, ?2, ?3)",
    [ST_SUB_GET] = "SELECT id, url, secret, created FROM subscribers WHERE id = ?1",
    [ST_SUB_DELETE] = "DELETE FROM subscribers WHERE id = ?1",
    [ST_SUB_LIST] = "SELECT id, url, secret, created FROM subscribers ORDER BY id",
    [ST_DUE] = "SELECT id, seq, subscriber_id, attempts, next_attempt_at FROM deliveries "
               "WHERE delivered_at IS NULL AND next_attempt_at <= ?1 ORDER BY seq, id LIMIT ?2",
    [ST_DONE] = "UPDATE deliveries SET delivered_at = ?2 WHERE id = ?1 AND delivered_at IS NULL",
    [ST_RETRY] = "UPDATE deliveries SET attempts = attempts + 1, next_attempt_at = ?2 "
                 "WHERE id = ?1 AND delivered_at IS NULL",
    [ST_PRUNE_DELIVERIES] =
        "DELETE FROM deliveries WHERE delivered_at IS NOT NULL AND delivered_at < ?1",
    [ST_PRUNE_EVENTS] = "DELETE FROM events WHERE ts < ?1 AND NOT EXISTS (SELECT 1 FROM "
                        "deliveries d WHERE d.seq = events.seq AND d.delivered_at IS NULL)",
};

struct sqlite_store {
    struct tc_store base; /* first: struct tc_store * <-> struct sqlite_store * */
    sqlite3 *db;
    int lock_fd;
    sqlite3_stmt *st[ST_COUNT];
    int fault_after;    /* testing: fail the n-th next step */
    bool injected;      /* testing: the last failure was injected */
    int quiet_code;     /* SQLITE_FULL/IOERR last logged at error level ... */
    time_t quiet_since; /* ... at this monotonic second */
};

static struct sqlite_store *SQ(struct tc_store *s)
{
    return (struct sqlite_store *)s;
}

/* ---- low-level helpers ----------------------------------------------------------------- */

static int map_err(struct sqlite_store *q, int r, const char *what)
{
    int code = r & 0xff;
    if (code == SQLITE_CONSTRAINT) {
        /* Expected (duplicate id, ...): the caller maps it to a clear answer. */
        LOG_DEBUG("%s: %s", what, sqlite3_errmsg(q->db));
        return TC_ERR_MISMATCH;
    }
    /* sqlite3_errmsg never contains bound values, so no secret can leak here. */
    const char *msg =
        q->db && sqlite3_extended_errcode(q->db) == r ? sqlite3_errmsg(q->db) : sqlite3_errstr(r);
    /* A full or failing disk fails every write: one error line per code and 10 s (the caller
     * reports the outage itself), the repeats at debug level. */
    bool repeat = false;
    if (code == SQLITE_FULL || code == SQLITE_IOERR) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        repeat = q->quiet_code == code && t.tv_sec - q->quiet_since < 10;
        if (!repeat) {
            q->quiet_code = code;
            q->quiet_since = t.tv_sec;
        }
    }
    if (q->injected) /* testing: an expected, self-inflicted failure */
        LOG_DEBUG("%s: injected %s", what, msg);
    else if (repeat)
        LOG_DEBUG("%s: %s (sqlite %d, again)", what, msg, r);
    else
        LOG_ERROR("%s: %s (sqlite %d)", what, msg, r);
    q->injected = false;
    switch (code) {
    case SQLITE_NOMEM:
        return TC_ERR_ALLOC;
    case SQLITE_TOOBIG:
        return TC_ERR_TOO_LARGE;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_MISMATCH:
        return TC_ERR_FORMAT;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_PROTOCOL:
        return TC_ERR_IO;
    default:
        return TC_ERR_INTERNAL;
    }
}

/* The cached statement id, reset and unbound, ready for binding (NULL on failure). */
static sqlite3_stmt *stmt(struct sqlite_store *q, enum stmt_id id)
{
    if (q->st[id] == NULL) {
        int r = sqlite3_prepare_v3(q->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &q->st[id],
                                   NULL);
        if (r != SQLITE_OK) {
            map_err(q, r, "prepare");
            q->st[id] = NULL;
            return NULL;
        }
    }
    return q->st[id];
}

/* Ends a use of a statement: releases its read snapshot and bound pointers. */
static void rst(sqlite3_stmt *st)
{
    if (st != NULL) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
}

/* sqlite3_step with the testing fault hook. */
static int step(struct sqlite_store *q, sqlite3_stmt *st)
{
    if (q->fault_after > 0 && --q->fault_after == 0) {
        q->injected = true;
        return SQLITE_IOERR;
    }
    return sqlite3_step(st);
}

/* Steps a statement that returns no row; resets it. */
static int run(struct sqlite_store *q, sqlite3_stmt *st, const char *what)
{
    int r = step(q, st);
    rst(st);
    return r == SQLITE_DONE ? 0 : map_err(q, r, what);
}

static int bind_text(sqlite3_stmt *st, int i, const char *v)
{
    return sqlite3_bind_text(st, i, v, (int)strlen(v), SQLITE_STATIC);
}

static int bind_bytes(sqlite3_stmt *st, int i, const void *data, size_t len)
{
    if (data == NULL)
        return sqlite3_bind_null(st, i);
    return sqlite3_bind_blob64(st, i, data, len, SQLITE_STATIC);
}

static int bind_blob(sqlite3_stmt *st, int i, const struct tc_store_blob *b)
{
    return bind_bytes(st, i, b->data, b->len);
}

/* Binds code, check, entry, detail at i..i+3. */
static int bind_reason(sqlite3_stmt *st, int i, const struct tc_reason *why)
{
    return sqlite3_bind_int(st, i, why->code) | bind_text(st, i + 1, why->check) |
           sqlite3_bind_int64(st, i + 2, why->entry) | bind_text(st, i + 3, why->detail);
}

/* Binding only fails on a programming error or out of memory. */
static int bind_failed(struct sqlite_store *q, int b)
{
    return b == SQLITE_OK ? 0 : map_err(q, SQLITE_NOMEM, "bind");
}

/* Copies a text column into a fixed array; data longer than the array is corrupt. */
static int col_text(sqlite3_stmt *st, int c, char *dst, size_t size)
{
    const unsigned char *v = sqlite3_column_text(st, c);
    size_t len = (size_t)sqlite3_column_bytes(st, c);
    dst[0] = '\0';
    if (v == NULL)
        return 0;
    if (len >= size || memchr(v, 0, len) != NULL)
        return TC_ERR_FORMAT;
    memcpy(dst, v, len);
    dst[len] = '\0';
    return 0;
}

static int col_blob(sqlite3_stmt *st, int c, struct tc_store_blob *b, size_t cap)
{
    const void *v = sqlite3_column_blob(st, c);
    size_t len = (size_t)sqlite3_column_bytes(st, c);
    b->data = NULL;
    b->len = 0;
    if (sqlite3_column_type(st, c) == SQLITE_NULL)
        return 0;
    if (len > cap)
        return TC_ERR_FORMAT;
    /* One extra byte so an empty blob is still distinguishable from NULL. */
    if ((b->data = malloc(len + 1)) == NULL)
        return TC_ERR_ALLOC;
    if (len > 0)
        memcpy(b->data, v, len);
    b->len = len;
    return 0;
}

static int col_state(sqlite3_stmt *st, int c, enum tc_node_state *out)
{
    return tc_node_state_parse((const char *)sqlite3_column_text(st, c), out);
}

static int col_reason(sqlite3_stmt *st, int c, struct tc_reason *why)
{
    int rc;
    tc_reason_clear(why);
    why->code = sqlite3_column_int(st, c);
    if ((rc = col_text(st, c + 1, why->check, sizeof(why->check))) != 0 ||
        (rc = col_text(st, c + 3, why->detail, sizeof(why->detail))) != 0)
        return rc;
    why->entry = (long)sqlite3_column_int64(st, c + 2);
    return 0;
}

static int tx_begin(struct sqlite_store *q)
{
    sqlite3_stmt *st = stmt(q, ST_BEGIN);
    return st ? run(q, st, "begin") : TC_ERR_INTERNAL;
}

/* Commits when rc == 0, otherwise (or if the commit fails) rolls back. Returns the result. */
static int tx_end(struct sqlite_store *q, int rc)
{
    if (rc == 0) {
        sqlite3_stmt *st = stmt(q, ST_COMMIT);
        rc = st ? run(q, st, "commit") : TC_ERR_INTERNAL;
    }
    /* Not through step(): the rollback must happen even while testing faults. */
    if (rc != 0 && !sqlite3_get_autocommit(q->db))
        sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

#define GET(q, id, st)                                                                             \
    do {                                                                                           \
        if (((st) = stmt((q), (id))) == NULL) {                                                    \
            rc = TC_ERR_INTERNAL;                                                                  \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

#define BIND(q, expr)                                                                              \
    do {                                                                                           \
        if ((rc = bind_failed((q), (expr))) != 0)                                                  \
            goto out;                                                                              \
    } while (0)

/* ---- open / close / migrations --------------------------------------------------------- */

static const struct tc_store_ops sqlite_ops;

static int pragma(struct sqlite_store *q, const char *sql)
{
    char *msg = NULL;
    int r = sqlite3_exec(q->db, sql, NULL, NULL, &msg);
    if (r != SQLITE_OK) {
        LOG_ERROR("%s: %s", sql, msg ? msg : sqlite3_errstr(r));
        sqlite3_free(msg);
        return map_err(q, r, "pragma");
    }
    return 0;
}

/* PRAGMA quick_check (or integrity_check with full): the database's pages, records and indexes
 * are sound. A damaged store is never served from: TC_ERR_CORRUPT, the first problems logged. */
static int check_integrity(struct sqlite_store *q, bool full)
{
    sqlite3_stmt *st = NULL;
    int r, rc = 0, problems = 0;
    const char *sql = full ? "PRAGMA integrity_check(20)" : "PRAGMA quick_check(20)";
    if ((r = sqlite3_prepare_v2(q->db, sql, -1, &st, NULL)) != SQLITE_OK) {
        rc = map_err(q, r, "integrity check");
        goto out;
    }
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        const char *line = (const char *)sqlite3_column_text(st, 0);
        if (line && strcmp(line, "ok") == 0)
            continue;
        if (problems++ < 5)
            LOG_ERROR("database integrity: %s", line ? line : "(no text)");
    }
    if (r != SQLITE_DONE)
        rc = map_err(q, r, "integrity check");
    else if (problems)
        rc = TC_ERR_CORRUPT;
out:
    sqlite3_finalize(st);
    if (rc == TC_ERR_FORMAT) /* SQLITE_CORRUPT / NOTADB while checking */
        rc = TC_ERR_CORRUPT;
    return rc;
}

static int migrate(struct sqlite_store *q)
{
    int rc, r;
    int64_t have = 0;
    sqlite3_stmt *st = NULL;
    char *msg = NULL;

    if ((rc = pragma(q, "BEGIN IMMEDIATE")) != 0)
        return rc;
    if ((rc = pragma(q, "CREATE TABLE IF NOT EXISTS schema_version ("
                        "version INTEGER PRIMARY KEY, applied INTEGER NOT NULL)")) != 0)
        goto out;
    GET(q, ST_SCHEMA_VERSION, st);
    if ((r = step(q, st)) != SQLITE_ROW) {
        rc = map_err(q, r, "schema version");
        goto out;
    }
    have = sqlite3_column_int64(st, 0);
    rst(st);
    if (have > SCHEMA_VERSION) {
        LOG_ERROR("database schema version %lld is newer than this coordinator knows (%lld): "
                  "upgrade the coordinator",
                  (long long)have, (long long)SCHEMA_VERSION);
        rc = TC_ERR_UNSUPPORTED;
        goto out;
    }
    for (int64_t v = have; v < SCHEMA_VERSION; v++) {
        char ins[128];
        if ((r = sqlite3_exec(q->db, migrations[v], NULL, NULL, &msg)) != SQLITE_OK) {
            LOG_ERROR("migration %lld: %s", (long long)(v + 1), msg ? msg : sqlite3_errstr(r));
            rc = map_err(q, r, "migration");
            goto out;
        }
        snprintf(ins, sizeof(ins), "INSERT INTO schema_version VALUES (%lld, %lld)",
                 (long long)(v + 1), (long long)tc_store_now_ms());
        if ((rc = pragma(q, ins)) != 0)
            goto out;
        LOG_INFO("applied schema migration %lld", (long long)(v + 1));
    }
out:
    rst(st);
    sqlite3_free(msg);
    return tx_end(q, rc);
}

/* One coordinator per database: an exclusive flock on PATH.lock. The kernel
 * drops it when the process dies (even by kill -9), so no stale lock after a
 * crash; O_CLOEXEC keeps spawned helpers from inheriting it. */
static int take_lock(const char *path, int *fd_out)
{
    int rc = 0, fd = -1;
    char *lock = NULL;
    size_t len = strlen(path);
    *fd_out = -1;
    if ((lock = malloc(len + 6)) == NULL)
        return TC_ERR_ALLOC;
    memcpy(lock, path, len);
    memcpy(lock + len, ".lock", 6);
    if ((fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0) {
        LOG_ERROR("cannot open lock file: %s", strerror(errno));
        rc = TC_ERR_IO;
        goto out;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char holder[32] = "unknown";
        ssize_t n = pread(fd, holder, sizeof(holder) - 1, 0);
        if (n > 0) {
            holder[n] = '\0';
            holder[strcspn(holder, "\n")] = '\0';
        }
        LOG_ERROR("store is in use by another coordinator (pid %s); only one coordinator may "
                  "use an SQLite store (use PostgreSQL to run several)",
                  holder);
        rc = TC_ERR_IO;
        goto out;
    }
    char pid[32];
    int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n)
        LOG_WARN("cannot record pid in lock file: %s", strerror(errno));
    *fd_out = fd;
    fd = -1;
out:
    if (fd >= 0)
        close(fd);
    free(lock);
    return rc;
}

static void sq_close(struct tc_store *s)
{
    struct sqlite_store *q = SQ(s);
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(q->st[i]);
    if (q->db != NULL) {
        /* Refreshes planner statistics cheaply; failures are harmless. */
        sqlite3_exec(q->db, "PRAGMA optimize", NULL, NULL, NULL);
        if (sqlite3_close(q->db) != SQLITE_OK)
            LOG_ERROR("close: %s", sqlite3_errmsg(q->db));
    }
    if (q->lock_fd >= 0)
        close(q->lock_fd);
    free(q);
}

int tc_store_sqlite_open(const char *path, const struct tc_store_options *opts,
                         struct tc_store **out)
{
    int rc, r, fd;
    char sql[96];
    struct sqlite_store *q = NULL;
    sqlite3_stmt *st = NULL;

    *out = NULL;
    if ((q = calloc(1, sizeof(*q))) == NULL)
        return TC_ERR_ALLOC;
    q->base.ops = &sqlite_ops;
    q->base.opts = *opts;
    q->lock_fd = -1;
    if ((rc = take_lock(path, &q->lock_fd)) != 0)
        goto out;
    /* Create the file ourselves so it is 0600 (it holds webhook secrets);
     * SQLite gives the -wal and -shm files the same mode. */
    if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0) {
        LOG_ERROR("cannot create database file: %s", strerror(errno));
        rc = TC_ERR_IO;
        goto out;
    }
    close(fd);
    r = sqlite3_open_v2(path, &q->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
                            SQLITE_OPEN_NOFOLLOW,
                        NULL);
    if (r != SQLITE_OK) {
        rc = map_err(q, r, "open");
        goto out;
    }
    sqlite3_extended_result_codes(q->db, 1);
    sqlite3_busy_timeout(q->db, opts->busy_timeout_ms);
    /* journal_mode answers with the mode actually in effect. */
    if ((r = sqlite3_prepare_v2(q->db, "PRAGMA journal_mode=WAL", -1, &st, NULL)) != SQLITE_OK ||
        (r = sqlite3_step(st)) != SQLITE_ROW) {
        rc = map_err(q, r, "journal_mode");
        goto out;
    }
    if (strcmp((const char *)sqlite3_column_text(st, 0), "wal") != 0) {
        LOG_ERROR("cannot enable WAL journal on this file system");
        rc = TC_ERR_IO;
        goto out;
    }
    /* Finished now: an open statement would block the migration's COMMIT. */
    sqlite3_finalize(st);
    st = NULL;
    snprintf(sql, sizeof(sql), "PRAGMA synchronous=%s", opts->sync_full ? "FULL" : "NORMAL");
    if ((rc = pragma(q, sql)) != 0 || (rc = pragma(q, "PRAGMA foreign_keys=ON")) != 0 ||
        (rc = pragma(q, "PRAGMA trusted_schema=OFF")) != 0 ||
        /* Bounds the WAL file after a checkpoint (64 MiB). */
        (rc = pragma(q, "PRAGMA journal_size_limit=67108864")) != 0)
        goto out;
    if ((rc = check_integrity(q, opts->full_check)) != 0)
        goto out;
    if ((rc = migrate(q)) != 0)
        goto out;
    *out = &q->base;
    q = NULL;
out:
    sqlite3_finalize(st);
    if (q != NULL)
        sq_close(&q->base);
    if (rc == TC_ERR_FORMAT) /* not a database, or one damaged where opening reads it */
        rc = TC_ERR_CORRUPT;
    return rc;
}

void tc_store_sqlite_inject_fault(struct tc_store *s, int n)
{
    if (s != NULL && s->ops == &sqlite_ops)
        SQ(s)->fault_after = n;
}

static int sq_inject_fault(struct tc_store *s, int n)
{
    SQ(s)->fault_after = n;
    return 0;
}

static int sq_schema_version(struct tc_store *s, int64_t *out)
{
    struct sqlite_store *q = SQ(s);
    sqlite3_stmt *st = NULL;
    int rc = 0, r;
    GET(q, ST_SCHEMA_VERSION, st);
    if ((r = step(q, st)) != SQLITE_ROW) {
        rc = map_err(q, r, "schema version");
        goto out;
    }
    *out = sqlite3_column_int64(st, 0);
out:
    rst(st);
    return rc;
}

/* ---- nodes ----------------------------------------------------------------------------- */

/* Reads the current head of a node row. *found = false if absent. */
struct node_head {
    enum tc_node_state state;
    int64_t last_round, since_prune, version;
};

static int node_head(struct sqlite_store *q, const char *id, struct node_head *h, bool *found)
{
    int rc = 0, r;
    sqlite3_stmt *st = NULL;
    *found = false;
    GET(q, ST_NODE_HEAD, st);
    BIND(q, bind_text(st, 1, id));
    if ((r = step(q, st)) == SQLITE_DONE)
        goto out;
    if (r != SQLITE_ROW) {
        rc = map_err(q, r, "node head");
        goto out;
    }
    if ((rc = col_state(st, 0, &h->state)) != 0)
        goto out;
    h->last_round = sqlite3_column_int64(st, 1);
    h->since_prune = sqlite3_column_int64(st, 2);
    h->version = sqlite3_column_int64(st, 3);
    *found = true;
out:
    rst(st);
    return rc;
}

/* Inserts nodes + node_blobs rows; inside a transaction. */
static int node_insert(struct sqlite_store *q, struct tc_store_node *n, int64_t now)
{
    int rc = 0;
    sqlite3_stmt *st = NULL;
    GET(q, ST_NODE_INSERT, st);
    BIND(q, bind_text(st, 1, n->id) | bind_text(st, 2, tc_node_state_name(n->state)) |
                bind_text(st, 3, n->tls_cert_fp) | bind_text(st, 4, n->agent_url) |
                bind_text(st, 5, n->group_name) | bind_reason(st, 6, &n->reason) |
                sqlite3_bind_int64(st, 10, n->missed) | sqlite3_bind_int(st, 11, n->has_quote) |
                sqlite3_bind_int64(st, 12, n->reset_count) |
                sqlite3_bind_int64(st, 13, n->restart_count) |
                sqlite3_bind_int64(st, 14, (int64_t)n->clock) |
                sqlite3_bind_int64(st, 15, (int64_t)n->ima_count) |
                bind_blob(st, 16, &n->ima_state) | sqlite3_bind_int64(st, 17, now) |
                bind_text(st, 18, n->is_vm ? "vm" : "host") | bind_text(st, 19, n->host) |
                bind_text(st, 20, n->tenant));
    if ((rc = run(q, st, "node insert")) != 0)
        goto out;
    GET(q, ST_BLOBS_INSERT, st);
    BIND(q, bind_text(st, 1, n->id) | bind_blob(st, 2, &n->ek_pub) | bind_blob(st, 3, &n->ek_cert) |
                bind_blob(st, 4, &n->ak_pub) | bind_blob(st, 5, &n->ak_name) |
                bind_blob(st, 6, &n->eventlog));
    if ((rc = run(q, st, "node blobs insert")) != 0)
        goto out;
    n->created = n->updated = now;
    n->version = 1;
    n->last_round = 0;
out:
    rst(st);
    return rc;
}

static int sq_node_create(struct tc_store *s, struct tc_store_node *node)
{
    struct sqlite_store *q = SQ(s);
    int rc;
    if ((rc = tx_begin(q)) != 0)
        return rc;
    rc = node_insert(q, node, tc_store_now_ms());
    return tx_end(q, rc);
}

static int read_node(sqlite3_stmt *st, struct tc_store_node *n)
{
    int rc;
    memset(n, 0, sizeof(*n));
    if ((rc = col_text(st, 0, n->id, sizeof(n->id))) != 0 ||
        (rc = col_state(st, 1, &n->state)) != 0 ||
        (rc = col_text(st, 2, n->tls_cert_fp, sizeof(n->tls_cert_fp))) != 0 ||
        (rc = col_text(st, 3, n->agent_url, sizeof(n->agent_url))) != 0 ||
        (rc = col_text(st, 4, n->group_name, sizeof(n->group_name))) != 0 ||
        (rc = col_reason(st, 5, &n->reason)) != 0)
        return rc;
    n->missed = (uint32_t)sqlite3_column_int64(st, 9);
    n->has_quote = sqlite3_column_int(st, 10) != 0;
    n->reset_count = (uint32_t)sqlite3_column_int64(st, 11);
    n->restart_count = (uint32_t)sqlite3_column_int64(st, 12);
    n->clock = (uint64_t)sqlite3_column_int64(st, 13);
    n->ima_count = (uint64_t)sqlite3_column_int64(st, 14);
    n->last_round = (uint64_t)sqlite3_column_int64(st, 16);
    n->created = sqlite3_column_int64(st, 17);
    n->updated = sqlite3_column_int64(st, 18);
    n->version = sqlite3_column_int64(st, 19);
    if ((rc = col_blob(st, 15, &n->ima_state, TC_STORE_STATE_MAX)) != 0 ||
        (rc = col_blob(st, 20, &n->ek_pub, TC_STORE_KEY_MAX)) != 0 ||
        (rc = col_blob(st, 21, &n->ek_cert, TC_STORE_CERT_MAX)) != 0 ||
        (rc = col_blob(st, 22, &n->ak_pub, TC_STORE_KEY_MAX)) != 0 ||
        (rc = col_blob(st, 23, &n->ak_name, TC_STORE_KEY_MAX)) != 0 ||
        (rc = col_blob(st, 27, &n->eventlog, TC_STORE_EVENTLOG_MAX)) != 0 ||
        (rc = col_text(st, 25, n->host, sizeof(n->host))) != 0 ||
        (rc = col_text(st, 26, n->tenant, sizeof(n->tenant))) != 0)
        return rc;
    const unsigned char *kind = sqlite3_column_text(st, 24);
    if (!kind || (strcmp((const char *)kind, "vm") != 0 && strcmp((const char *)kind, "host") != 0))
        return TC_ERR_FORMAT;
    n->is_vm = strcmp((const char *)kind, "vm") == 0;
    return 0;
}

static int sq_node_get(struct tc_store *s, const char *id, struct tc_store_node *out)
{
    struct sqlite_store *q = SQ(s);
    sqlite3_stmt *st = NULL;
    int rc = 0, r;
    GET(q, ST_NODE_GET, st);
    BIND(q, bind_text(st, 1, id));
    if ((r = step(q, st)) == SQLITE_DONE) {
        rc = TC_ERR_NOT_FOUND;
        goto out;
    }
    if (r != SQLITE_ROW) {
        rc = map_err(q, r, "node get");
        goto out;
    }
    rc = read_node(st, out);
out:
    rst(st);
    return rc;
}

static int sq_node_list(struct tc_store *s, int (*fn)(void *, const struct tc_store_node *),
                        void *arg)
{
    struct sqlite_store *q = SQ(s);
    sqlite3_stmt *st = NULL;
    struct tc_store_node n;
    int rc = 0, r;
    memset(&n, 0, sizeof(n));
    GET(q, ST_NODE_LIST, st);
    while ((r = step(q, st)) == SQLITE_ROW) {
        if ((rc = read_node(st, &n)) != 0)
            goto out;
        rc = fn(arg, &n);
        tc_store_node_release(&n);
        if (rc != 0)
            goto out;
    }
    if (r != SQLITE_DONE)
        rc = map_err(q, r, "node list");
out:
    tc_store_node_release(&n);
    rst(st);
    return rc;
}

/* Queues the event of a state change and one outbox row per subscriber. */
static int queue_event(struct sqlite_store *q, int64_t ts, const char *node_id,
                       enum tc_node_state old_state, enum tc_node_state new_state,
                       const struct tc_reason *why, int64_t *seq)
{
    int rc = 0;
    sqlite3_stmt *st = NULL;
    GET(q, ST_EVENT_INSERT, st);
    BIND(q, sqlite3_bind_int64(st, 1, ts) | bind_text(st, 2, node_id) |
                bind_text(st, 3, tc_node_state_name(old_state)) |
                bind_text(st, 4, tc_node_state_name(new_state)) | bind_reason(st, 5, why));
    if ((rc = run(q, st, "event insert")) != 0)
        goto out;
    *seq = sqlite3_last_insert_rowid(q->db);
    GET(q, ST_OUTBOX_INSERT, st);
    BIND(q, sqlite3_bind_int64(st, 1, *seq) | sqlite3_bind_int64(st, 2, ts));
    rc = run(q, st, "outbox insert");
out:
    rst(st);
    return rc;
}

static int sq_node_update(struct tc_store *s, struct tc_store_node *node)
{
    struct sqlite_store *q = SQ(s);
    sqlite3_stmt *st = NULL;
    struct node_head h;
    bool found;
    int64_t now = tc_store_now_ms(), seq;
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
    GET(q, ST_NODE_UPDATE, st);
    BIND(q, bind_text(st, 1, node->id) | bind_text(st, 2, tc_node_state_name(node->state)) |
                bind_reason(st, 3, &node->reason) | bind_text(st, 7, node->tls_cert_fp) |
                bind_text(st, 8, node->agent_url) | bind_text(st, 9, node->group_name) |
                sqlite3_bind_int64(st, 10, node->missed) | sqlite3_bind_int64(st, 11, now) |
                sqlite3_bind_int64(st, 12, node->version));
    if ((rc = run(q, st, "node update")) != 0)
        goto out;
    if (h.state != node->state)
        rc = queue_event(q, now, node->id, h.state, node->state, &node->reason, &seq);
out:
    rst(st);
    rc = tx_end(q, rc);
    if (rc == 0) {
        node->version++;
        node->updated = now;
    }
    return rc;
}

static int sq_node_delete(struct tc_store *s, const char *id)
{
    struct sqlite_store *q = SQ(s);
    sqlite3_stmt *st = NULL;
    int rc = 0;
    if ((rc = tx_begin(q)) != 0)
        return rc;
    GET(q, ST_NODE_DELETE, st);
    BIND(q, bind_text(st, 1, id));
    if ((rc = run(q, st, "node delete")) != 0)
        goto out;
    if (sqlite3_changes(q->db) == 0) {
        rc = TC_ERR_NOT_FOUND;
        goto out;
    }
    GET(q, ST_NODE_UNASSIGN_ALL, st);
    BIND(q, bind_text(st, 1, id));
    rc = run(q, st, "node unassign");
out:
    rst(st);
    return tx_end(q, rc);
}

static int sq_node_set_ak(struct tc_store *s, const char *id, const struct tc_store_blob *ak_pub,
                          const struct tc_store_blob *ak_name)
{
    struct sqlite_store *q = SQ(s);
    sqlite3_stmt *st = NULL;
    int rc = 0;
    if ((rc = tx_begin(q)) != 0)
        return rc;
    GET(q, ST_NODE_SET_AK, st);
    BIND(q, bind_text(st, 1, id) | bind_blob(st, 2, ak_pub) | bind_blob(st, 3, ak_name));
    if ((rc = run(q, st, "node set ak")) != 0)
        goto out;
    if (sqlite3_changes(q->db) == 0) {
        rst(st);
        GET(q, ST_NODE_EXISTS, st);
        BIND(q, bind_text(st, 1, id));
        int step = sqlite3_step(st);
        rc = step == SQLITE_ROW ? TC_ERR_MISMATCH : step == SQLITE_DONE ? TC_ERR_NOT_FOUND : TC_ERR_IO;
    }
out:
    rst(st);
    return tx_end(q, rc);
}

/* ---- rounds ---------------------------------------------------------------------------- */

static int record_one(struct sqlite_store *q, const struct tc_store_round *r,
                      struct tc_store_round_result *res)
{
    int rc = 0;
    sqlite3_stmt *st = NULL;
    struct node_head h;
    bool found, changed, prune;
    int64_t since;

    if ((rc = node_head(q, r->node_id, &h, &found)) != 0)
        return rc;
    if (!found) {
        res->status = TC_ERR_NOT_FOUND;
        return 0;
    }
    if ((int64_t)r->round <= h.last_round) {
        res->duplicate = true;
        return 0;
    }
    changed = h.state != r->state;
    since = h.since_prune + 1;
    prune = since >= PRUNE_EVERY;
    GET(q, ST_ROUND_UPDATE, st);
    BIND(q, bind_text(st, 1, r->node_id) | bind_text(st, 2, tc_node_state_name(r->state)) |
                bind_reason(st, 3, &r->reason) | sqlite3_bind_int64(st, 7, r->missed) |
                sqlite3_bind_int(st, 8, r->has_quote) | sqlite3_bind_int64(st, 9, r->reset_count) |
                sqlite3_bind_int64(st, 10, r->restart_count) |
                sqlite3_bind_int64(st, 11, (int64_t)r->clock) |
                sqlite3_bind_int64(st, 12, (int64_t)r->ima_count) |
                bind_bytes(st, 13, r->ima_state, r->ima_state_len) |
                sqlite3_bind_int64(st, 14, (int64_t)r->round) |
                sqlite3_bind_int64(st, 15, prune ? 0 : since) | sqlite3_bind_int64(st, 16, r->ts));
    if ((rc = run(q, st, "round update")) != 0)
        goto out;
    if (r->eventlog != NULL) {
        GET(q, ST_EVENTLOG_UPDATE, st);
        BIND(q, bind_text(st, 1, r->node_id) | bind_bytes(st, 2, r->eventlog, r->eventlog_len));
        if ((rc = run(q, st, "eventlog update")) != 0)
            goto out;
    }
    GET(q, ST_RESULT_INSERT, st);
    BIND(q, bind_text(st, 1, r->node_id) | sqlite3_bind_int64(st, 2, (int64_t)r->round) |
                sqlite3_bind_int64(st, 3, r->ts) | bind_text(st, 4, tc_node_state_name(r->state)) |
                sqlite3_bind_int(st, 5, changed) | bind_reason(st, 6, &r->reason));
    if ((rc = run(q, st, "result insert")) != 0)
        goto out;
    res->result_id = sqlite3_last_insert_rowid(q->db);
    if (changed && (rc = queue_event(q, r->ts, r->node_id, h.state, r->state, &r->reason,
                                     &res->event_seq)) != 0)
        goto out;
    if (prune) {
        GET(q, ST_RESULT_PRUNE, st);
        BIND(q, bind_text(st, 1, r->node_id) |
                    sqlite3_bind_int64(st, 2, (int64_t)q->base.opts.history_per_node - 1));
        rc = run(q, st, "history prune");
    }
out:
    rst(st);
    return rc;
}

static int sq_record_rounds(struct tc_store *s, const struct tc_store_round *r, size_t n,
                            struct tc_store_round_result *res)
{
    struct sqlite_store *q = SQ(s);
    struct tc_store_round_result scratch;
    int rc;
    if ((rc = tx_begin(q)) != 0)
        return rc;
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct tc_store_round_result *o = res ? &res[i] : &scratch;
        memset(o, 0, sizeof(*o));
        rc = record_one(q, &r[i], o);
    }
    return tx_end(q, rc);
}

static int sq_results_list(struct tc_store *s, const char *node_id, int64_t before_id, size_t limit,
                           struct tc_store_result **out, size_t *n)
{
    struct sqlite_store *q = SQ(s);
    sqlite3_stmt *st = NULL;
    struct tc_store_result *v = NULL;
    size_t k = 0;
    int rc = 0, r = SQLITE_DONE;

    if ((v = calloc(limit, sizeof(*v))) == NULL)
        return TC_ERR_ALLOC;
    GET(q, ST_RESULTS_LIST, st);
    BIND(q, bind_text(st, 1, node_id) |
                sqlite3_bind_int64(st, 2, before_id == 0 ? INT64_MAX : before_id) |
                sqlite3_bind_int64(st, 3, (int64_t)limit));
    while (k < limit && (r = step(q, st)) == SQLITE_ROW) {
        struct tc_store_result *e = &v[k];
        e->id = sqlite3_column_int64(st, 0);
        e->round = (uint64_t)sqlite3_column_int64(st, 1);
        e->ts = sqlite3_column_int64(st, 2);
        e->changed = sqlite3_column_int(st, 4) != 0;
        if ((rc = col_state(st, 3, &e->state)) != 0 || (rc = col_reason(st, 5, &e->reason)) != 0)
            goto out;
        k++;
    }
    if (k < limit && r != SQLITE_DONE)
        rc = map_err(q, r, "results list");
out:
    rst(st);
    if (rc != 0 || k == 0) {
        free(v);
        return rc;
    }
    *out = v;
    *n = k;
    return 0;
}

static int sq_events_since(struct tc_store *s, int64_t since, size_t limit,
                           struct tc_store_event **out, size_t *n)
{
    struct sqlite_store *q = SQ(s);
    sqlite3_stmt *st = NULL;
    struct tc_store_event *v = NULL;
    size_t k = 0;
    int rc = 0, r = SQLITE_DONE;

    if ((v = calloc(limit, sizeof(*v))) == NULL)
        return TC_ERR_ALLOC;
    GET(q, ST_EVENTS_SINCE, st);
    BIND(q, sqlite3_bind_int64(st, 1, since) | sqlite3_bind_int64(st, 2, (int64_t)limit));
    while (k < limit && (r = step(q, st)) == SQLITE_ROW) {
        struct tc_store_event *e = &v[k];
        e->seq = sqlite3_column_int64(st, 0);
        e->ts = sqlite3_column_int64(st, 1);
        if ((rc = col_text(st, 2, e->node_id, sizeof(e->node_id))) != 0 ||
            (rc = col_state(st, 3, &e->old_state)) != 0 ||
            (rc = col_state(st, 4, &e->new_state)) != 0 ||
            (rc = col_reason(st, 5, &e->reason)) != 0)
            goto out;
        k++;
    }
    if (k < limit && r != SQLITE_DONE)
        rc = map_err(q, r, "events since");
out:
    rst(st);
    if (rc != 0 || k == 0) {
        free(v);
        return rc;
    }
    *out = v;
    *n = k;
    return 0;
}

static int sq_events_last_seq(struct tc_store *s, int64_t *seq)
{
    struct sqlite_store *q = SQ(s);
    sqlite3_stmt *st = NULL;
    int rc = 0, r;
    GET(q, ST_EVENTS_LAST, st);
    if ((r = step(q, st)) != SQLITE_ROW) {
        rc = map_err(q, r, "events last");
        goto out;
    }
    *seq = sqlite3_column_int64(st, 0);
out:
    rst(st);
    return rc;
}

/* ---- enrollments ----------------------------------------------------------------------- */

static int sq_enrollment_put(struct tc_store *s, struct tc_store_enrollment *e)
{
    struct sqlite_store *q = SQ(s);
    sqlite3_stmt *st = NULL;
    int64_t now = tc_store_now_ms();
    int rc = 0;
    GET(q, ST_ENR_INSERT, st);
    BIND(q, bind_text(st, 1, e->id) | bind_text(st, 2, e->node_id) |
                bind_bytes(st, 3, e->secret_hash, sizeof(e->secret_hash)) |
                bind_blob(st, 4, &e->ek_pub) | bind_blob(st, 5, &e->ek_cert) |
                bind_blob(st, 6, &e->ak_pub) | bind_blob(st, 7, &e->ak_name) |
                sqlite3_bind_int64(st, 8, now) | sqlite3_bind_int64(st, 9, e->expires));
    if ((rc = run(q, st, "enrollment insert")) == 0)
        e->created = now;
out:
    rst(st);
    return rc;
}

static int sq_enrollment_get(struct tc_store *s, const char *id, int64_t now,
                             struct tc_store_enrollment *e)
{
    struct sqlite_store *q = SQ(s);
    sqlite3_stmt *st = NULL;
    int rc = 0, r;
    GET(q, ST_ENR_GET, st);
    BIND(q, bind_text(st, 1, id) | sqlite3_bind_int64(st, 2, now));
    if ((r = step(q, st)) == SQLITE_DONE) {
        rc = TC_ERR_NOT_FOUND;
        goto out;
    }
    if (r != SQLITE_ROW) {
        rc = map_err(q, r, "enrollment get");
        goto out;
    }
    if (sqlite3_column_bytes(st, 2) != TC_STORE_HASH_LEN) {
        rc = TC_ERR_FORMAT;
        goto out;
    }
    memcpy(e->secret_hash, sqlite3_column_blob(st, 2), TC_STORE_HASH_LEN);
    e->created = sqlite3_column_int64(st, 7);
    e->expires = sqlite3_column_int64(st, 8);
    if ((rc = col_text(st, 0, e->id, sizeof(e->id))) != 0 ||
        (rc = col_text(st, 1, e->node_id, sizeof(e->node_id))) != 0 ||
        (rc = col_blob(st, 3, &e->ek_pub, TC_STORE_KEY_MAX)) != 0 ||
        (rc = col_blob(st, 4, &e->ek_cert, TC_STORE_CERT_MAX)) != 0 ||
        (rc = col_blob(st, 5, &e->ak_pub, TC_STORE_KEY_MAX)) != 0 ||
        (rc = col_blob(st, 6, &e->ak_name, TC_STORE_KEY_MAX)) != 0)
        goto out;
out:
    rst(st);
    return rc;
}

static int sq_enrollment_complete(struct tc_store *s, const char *id, int64_t now,
                                  struct tc_store_node *node)
{
    struct sqlite_store *q = SQ(s);
    struct tc_store_enrollment e;
    sqlite3_stmt *st = NULL;
    int rc;
    memset(&e, 0, sizeof(e));
    if ((rc = tx_begin(q)) != 0)
        return rc;
    if ((rc = sq_enrollment_get(s, id, now, &e)) != 0)
        goto out;
    /* The proof of possession was for this node id and no other. */
    if (strcmp(e.node_id, node->id) != 0) {
        rc = TC_ERR_MISMATCH;
        goto out;
    }
    GET(q, ST_ENR_DELETE, st);
    BIND(q, bind_text(st, 1, id));
    if ((rc = run(q, st, "enrollment delete")) != 0)
        goto out;
    rc = node_insert(q, node, tc_store_now_ms());
out:
    rst(st);
    tc_store_enrollment_release(&e);
    return tx_end(q, rc);
}

static int sq_enrollment_purge(struct tc_store *s, int64_t now, size_t *n)
{
    struct sqlite_store *q = SQ(s);
    sqlite3_stmt *st = NULL;
    int rc = 0;
    GET(q, ST_ENR_PURGE, st);
    BIND(q, sqlite3_bind_int64(st, 1, now));
    if ((rc = run(q, st, "enrollment purge")) == 0)
        *n = (size_t)sqlite3_changes(q->db);
out:
    rst(st);
    return rc;
}

/* ---- policies -------------------------------------------------------------------------- */

/* Latest version and kind of a policy; *version = 0 if none. */
static int policy_head(struct sqlite_store *q, const char *name, int64_t *version,
                       enum tc_policy_kind *kind)
{
    sqlite3_stmt *st = NULL;
    int rc = 0, r;
    *version = 0;
    GET(q, ST_POL_HEAD, st);
    BIND(q, bind_text(st, 1, name));
    if ((r = step(q, st)) == SQLITE_ROW) {
        *version = sqlite3_column_int64(st, 0);
        rc = tc_policy_kind_parse((const char *)sqlite3_column_text(st, 1), kind);
    } else if (r != SQLITE_DONE) {
        rc = map_err(q, r, "policy head");
    }
out:
    rst(st);
    return rc;
}

static int sq_policy_put(struct tc_store *s, const char *name, enum tc_policy_kind kind,
                         const char *body, size_t body_len, int64_t *version)
{
    struct sqlite_store *q = SQ(s);
    sqlite3_stmt *st = NULL;
    enum tc_policy_kind have_kind = kind;
    int64_t have = 0;
    int rc;
    if ((rc = tx_begin(q)) != 0)
        return rc;
    if ((rc = policy_head(q, name, &have, &have_kind)) != 0)
        goto out;
    if (have > 0 && have_kind != kind) {
        rc = TC_ERR_MISMATCH;
        goto out;
    }
    GET(q, ST_POL_INSERT, st);
    BIND(q, bind_text(st, 1, name) | sqlite3_bind_int64(st, 2, have + 1) |
                bind_text(st, 3, tc_policy_kind_name(kind)) |
                sqlite3_bind_text64(st, 4, body, body_len, SQLITE_STATIC, SQLITE_UTF8) |
                sqlite3_bind_int64(st, 5, tc_store_now_ms()));
    rc = run(q, st, "policy insert");
out:
    rst(st);
    rc = tx_end(q, rc);
    if (rc == 0)
        *version = have + 1;
    return rc;
}

static int sq_policy_get(struct tc_store *s, const char *name, int64_t version,
                         struct tc_store_policy *p)
{
    struct sqlite_store *q = SQ(s);
    sqlite3_stmt *st = NULL;
    int rc = 0, r;
    GET(q, ST_POL_GET, st);
    BIND(q, bind_text(st, 1, name) | sqlite3_bind_int64(st, 2, version));
    if ((r = step(q, st)) == SQLITE_DONE) {
        rc = TC_ERR_NOT_FOUND;
        goto out;
    }
    if (r != SQLITE_ROW) {
        rc = map_err(q, r, "policy get");
        goto out;
    }
    const char *body = (const char *)sqlite3_column_text(st, 3);
    size_t len = (size_t)sqlite3_column_bytes(st, 3);
    if (body == NULL || len > TC_STORE_POLICY_MAX) {
        rc = TC_ERR_FORMAT;
        goto out;
    }
    if ((rc = col_text(st, 0, p->name, sizeof(p->name))) != 0 ||
        (rc = tc_policy_kind_parse((const char *)sqlite3_column_text(st, 2), &p->kind)) != 0)
        goto out;
    if ((p->body = malloc(len + 1)) == NULL) {
        rc = TC_ERR_ALLOC;
        goto out;
    }
    memcpy(p->body, body, len);
    p->body[len] = '\0';
    p->body_len = len;
    p->version = sqlite3_column_int64(st, 1);
    p->created = sqlite3_column_int64(st, 4);
out:
    rst(st);
    return rc;
}

static int sq_policy_list(struct tc_store *s,
                          int (*fn)(void *, const char *, int64_t, enum tc_policy_kind), void *arg)
{
    struct sqlite_store *q = SQ(s);
    sqlite3_stmt *st = NULL;
    char name[TC_STORE_ID_MAX + 1];
    enum tc_policy_kind kind;
    int rc = 0, r;
    GET(q, ST_POL_LIST, st);
    while ((r = step(q, st)) == SQLITE_ROW) {
        if ((rc = col_text(st, 0, name, sizeof(name))) != 0 ||
            (rc = tc_policy_kind_parse((const char *)sqlite3_column_text(st, 2), &kind)) != 0 ||
            (rc = fn(arg, name, sqlite3_column_int64(st, 1), kind)) != 0)
            goto out;
    }
    if (r != SQLITE_DONE)
        rc = map_err(q, r, "policy list");
out:
    rst(st);
    return rc;
}

static const char *target_name(enum tc_assign_target k)
{
    return k == TC_ASSIGN_GROUP ? "group" : "node";
}

static int sq_assign(struct tc_store *s, enum tc_assign_target kind, const char *target,
                     const char *policy)
{
    struct sqlite_store *q = SQ(s);
    sqlite3_stmt *st = NULL;
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
    GET(q, ST_ASSIGN, st);
    BIND(q, bind_text(st, 1, target_name(kind)) | bind_text(st, 2, target) |
                bind_text(st, 3, policy) | sqlite3_bind_int64(st, 4, tc_store_now_ms()));
    rc = run(q, st, "assign");
out:
    rst(st);
    return tx_end(q, rc);
}

static int sq_unassign(struct tc_store *s, enum tc_assign_target kind, const char *target,
                       const char *policy)
{
    struct sqlite_store *q = SQ(s);
    sqlite3_stmt *st = NULL;
    int rc = 0;
    GET(q, ST_UNASSIGN, st);
    BIND(q,
         bind_text(st, 1, target_name(kind)) | bind_text(st, 2, target) | bind_text(st, 3, policy));
    if ((rc = run(q, st, "unassign")) == 0 && sqlite3_changes(q->db) == 0)
        rc = TC_ERR_NOT_FOUND;
out:
    rst(st);
    return rc;
}

static int sq_node_policies(struct tc_store *s, const char *node_id,
                            int (*fn)(void *, const char *), void *arg)
{
    struct sqlite_store *q = SQ(s);
    sqlite3_stmt *st = NULL;
    struct node_head h;
    bool found;
    char name[TC_STORE_ID_MAX + 1];
    int rc, r;
    /* Both reads in one snapshot, so "no node" and "no policies" cannot mix. */
    if ((rc = pragma(q, "BEGIN")) != 0)
        return rc;
    if ((rc = node_head(q, node_id, &h, &found)) != 0)
        goto out;
    if (!found) {
        rc = TC_ERR_NOT_FOUND;
        goto out;
    }
    GET(q, ST_NODE_POLICIES, st);
    BIND(q, bind_text(st, 1, node_id));
    while ((r = step(q, st)) == SQLITE_ROW) {
        if ((rc = col_text(st, 0, name, sizeof(name))) != 0 || (rc = fn(arg, name)) != 0)
            goto out;
    }
    if (r != SQLITE_DONE)
        rc = map_err(q, r, "node policies");
out:
    rst(st);
    /* Read-only: ending it either way changes nothing. */
    if (!sqlite3_get_autocommit(q->db))
        sqlite3_exec(q->db, "COMMIT", NULL, NULL, NULL);
    return rc;
}

/* ---- subscribers and outbox ------------------------------------------------------------ */

static int sq_subscriber_add(struct tc_store *s, const char *url, const uint8_t *secret,
                             size_t secret_len, int64_t *id)
{
    struct sqlite_store *q = SQ(s);
    sqlite3_stmt *st = NULL;
    int rc = 0;
    GET(q, ST_SUB_INSERT, st);
    BIND(q, bind_text(st, 1, url) | bind_bytes(st, 2, secret, secret_len) |
                sqlite3_bind_int64(st, 3, tc_store_now_ms()));
    if ((rc = run(q, st, "subscriber insert")) == 0)
        *id = sqlite3_last_insert_rowid(q->db);
out:
    rst(st);
    return rc;
}

static int read_subscriber(sqlite3_stmt *st, struct tc_store_subscriber *sub)
{
    int rc;
    size_t len = (size_t)sqlite3_column_bytes(st, 2);
    if (len == 0 || len > sizeof(sub->secret))
        return TC_ERR_FORMAT;
    if ((rc = col_text(st, 1, sub->url, sizeof(sub->url))) != 0)
        return rc;
    memcpy(sub->secret, sqlite3_column_blob(st, 2), len);
    sub->secret_len = len;
    sub->id = sqlite3_column_int64(st, 0);
    sub->created = sqlite3_column_int64(st, 3);
    return 0;
}

static int sq_subscriber_get(struct tc_store *s, int64_t id, struct tc_store_subscriber *sub)
{
    struct sqlite_store *q = SQ(s);
    sqlite3_stmt *st = NULL;
    int rc = 0, r;
    GET(q, ST_SUB_GET, st);
    BIND(q, sqlite3_bind_int64(st, 1, id));
    if ((r = step(q, st)) == SQLITE_DONE) {
        rc = TC_ERR_NOT_FOUND;
        goto out;
    }
    if (r != SQLITE_ROW) {
        rc = map_err(q, r, "subscriber get");
        goto out;
    }
    rc = read_subscriber(st, sub);
out:
    rst(st);
    return rc;
}

static int sq_subscriber_list(struct tc_store *s,
                              int (*fn)(void *, const struct tc_store_subscriber *), void *arg)
{
    struct sqlite_store *q = SQ(s);
    sqlite3_stmt *st = NULL;
    struct tc_store_subscriber sub;
    int rc = 0, r;
    memset(&sub, 0, sizeof(sub));
    GET(q, ST_SUB_LIST, st);
    while ((r = step(q, st)) == SQLITE_ROW) {
        if ((rc = read_subscriber(st, &sub)) != 0)
            goto out;
        rc = fn(arg, &sub);
        tc_store_subscriber_release(&sub);
        if (rc != 0)
            goto out;
    }
    if (r != SQLITE_DONE)
        rc = map_err(q, r, "subscriber list");
out:
    tc_store_subscriber_release(&sub);
    rst(st);
    return rc;
}

static int sq_subscriber_delete(struct tc_store *s, int64_t id)
{
    struct sqlite_store *q = SQ(s);
    sqlite3_stmt *st = NULL;
    int rc = 0;
    GET(q, ST_SUB_DELETE, st);
    BIND(q, sqlite3_bind_int64(st, 1, id));
    if ((rc = run(q, st, "subscriber delete")) == 0 && sqlite3_changes(q->db) == 0)
        rc = TC_ERR_NOT_FOUND;
out:
    rst(st);
    return rc;
}

static int sq_deliveries_due(struct tc_store *s, int64_t now, size_t limit,
                             struct tc_store_delivery **out, size_t *n)
{
    struct sqlite_store *q = SQ(s);
    sqlite3_stmt *st = NULL;
    struct tc_store_delivery *v = NULL;
    size_t k = 0;
    int rc = 0, r = SQLITE_DONE;
    if ((v = calloc(limit, sizeof(*v))) == NULL)
        return TC_ERR_ALLOC;
    GET(q, ST_DUE, st);
    BIND(q, sqlite3_bind_int64(st, 1, now) | sqlite3_bind_int64(st, 2, (int64_t)limit));
    while (k < limit && (r = step(q, st)) == SQLITE_ROW) {
        v[k].id = sqlite3_column_int64(st, 0);
        v[k].seq = sqlite3_column_int64(st, 1);
        v[k].subscriber_id = sqlite3_column_int64(st, 2);
        v[k].attempts = (uint32_t)sqlite3_column_int64(st, 3);
        v[k].next_attempt_at = sqlite3_column_int64(st, 4);
        k++;
    }
    if (k < limit && r != SQLITE_DONE)
        rc = map_err(q, r, "deliveries due");
out:
    rst(st);
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
    struct sqlite_store *q = SQ(s);
    sqlite3_stmt *st = NULL;
    int rc = 0;
    GET(q, id_stmt, st);
    BIND(q, sqlite3_bind_int64(st, 1, id) | sqlite3_bind_int64(st, 2, v));
    if ((rc = run(q, st, "delivery update")) == 0 && sqlite3_changes(q->db) == 0)
        rc = TC_ERR_NOT_FOUND;
out:
    rst(st);
    return rc;
}

static int sq_delivery_done(struct tc_store *s, int64_t id, int64_t now)
{
    return delivery_update(s, ST_DONE, id, now);
}

static int sq_delivery_retry(struct tc_store *s, int64_t id, int64_t next_attempt_at)
{
    return delivery_update(s, ST_RETRY, id, next_attempt_at);
}

static int sq_prune(struct tc_store *s, int64_t before_ts)
{
    struct sqlite_store *q = SQ(s);
    sqlite3_stmt *st = NULL;
    int rc;
    if ((rc = tx_begin(q)) != 0)
        return rc;
    GET(q, ST_PRUNE_DELIVERIES, st);
    BIND(q, sqlite3_bind_int64(st, 1, before_ts));
    if ((rc = run(q, st, "prune deliveries")) != 0)
        goto out;
    GET(q, ST_PRUNE_EVENTS, st);
    BIND(q, sqlite3_bind_int64(st, 1, before_ts));
    rc = run(q, st, "prune events");
out:
    rst(st);
    return tx_end(q, rc);
}

static const struct tc_store_ops sqlite_ops = {
    .name = "sqlite",
    .close = sq_close,
    .schema_version = sq_schema_version,
    .node_create = sq_node_create,
    .node_get = sq_node_get,
    .node_update = sq_node_update,
    .node_delete = sq_node_delete,
    .node_set_ak = sq_node_set_ak,
    .node_list = sq_node_list,
    .record_rounds = sq_record_rounds,
    .results_list = sq_results_list,
    .events_since = sq_events_since,
    .events_last_seq = sq_events_last_seq,
    .enrollment_put = sq_enrollment_put,
    .enrollment_get = sq_enrollment_get,
    .enrollment_complete = sq_enrollment_complete,
    .enrollment_purge = sq_enrollment_purge,
    .policy_put = sq_policy_put,
    .policy_get = sq_policy_get,
    .policy_list = sq_policy_list,
    .assign = sq_assign,
    .unassign = sq_unassign,
    .node_policies = sq_node_policies,
    .subscriber_add = sq_subscriber_add,
    .subscriber_get = sq_subscriber_get,
    .subscriber_list = sq_subscriber_list,
    .subscriber_delete = sq_subscriber_delete,
    .deliveries_due = sq_deliveries_due,
    .delivery_done = sq_delivery_done,
    .delivery_retry = sq_delivery_retry,
    .prune = sq_prune,
    .inject_fault = sq_inject_fault,
};
