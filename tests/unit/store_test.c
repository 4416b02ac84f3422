/* SPDX-License-Identifier: Apache-2.0 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "coordinator/store.h"
#include "trustcloud/error.h"

/* ---- fixture: a fresh database per test ------------------------------------------------ */

/*
 * The same tests run against both backends. TC_STORE_BACKEND=postgresql selects PostgreSQL on
 * the server tests/lib/pg.sh started (TC_PG_URI ...): each test gets its own database, dropped
 * afterwards. Otherwise each test gets an SQLite file in a fresh temporary directory.
 */
static bool pg;

#define FX_DBS 8

struct fx {
    char dir[256];
    char path[300]; /* SQLite: database file */
    char uri[512];
    char dbs[FX_DBS][64]; /* PostgreSQL: databases made for this test */
    int ndbs;
};

/* The same query for both backends, where their SQL dialects differ. */
#define SQL(sqlite_text, pg_text) (pg ? (pg_text) : (sqlite_text))

static int pg_admin(const char *sql)
{
    PGconn *c = PQconnectdb(getenv("TC_PG_URI"));
    int ok = PQstatus(c) == CONNECTION_OK;
    if (ok) {
        PGresult *r = PQexec(c, sql);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            print_error("%s: %s", sql, PQresultErrorMessage(r));
        PQclear(r);
    } else {
        print_error("admin connection: %s", PQerrorMessage(c));
    }
    PQfinish(c);
    return ok ? 0 : -1;
}

/* Points f->uri (and f->path) at a new, empty database named after label. */
static void fx_new_db(struct fx *f, const char *label)
{
    if (!pg) {
        snprintf(f->path, sizeof(f->path), "%s/%s.db", f->dir, label);
        snprintf(f->uri, sizeof(f->uri), "sqlite:%s", f->path);
        return;
    }
    static unsigned counter;
    char sql[128];
    assert_true(f->ndbs < FX_DBS);
    char *name = f->dbs[f->ndbs];
    snprintf(name, sizeof(f->dbs[0]), "tc_%ld_%u", (long)getpid(), counter++);
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
    assert_int_equal(pg_admin(sql), 0);
    f->ndbs++;
    snprintf(f->uri, sizeof(f->uri), "postgresql:///%s?host=%s&port=%s&user=%s", name,
             getenv("TC_PG_HOST"), getenv("TC_PG_PORT"), getenv("TC_PG_USER"));
    snprintf(f->path, sizeof(f->path), "%s", name);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof(f->dir), "%s/tc_store_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(f->dir) == NULL)
        return -1;
    *state = f;
    fx_new_db(f, "coordinator");
    return 0;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(p);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < f->ndbs; i++) {
        char sql[128];
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", f->dbs[i]);
        pg_admin(sql);
    }
    nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static struct tc_store *open_store(struct fx *f, const struct tc_store_options *o)
{
    struct tc_store *s = NULL;
    assert_int_equal(tc_store_open(f->uri, o, &s), 0);
    assert_non_null(s);
    return s;
}

/* A statement on a separate PostgreSQL connection: the first column of the first row as text
 * into text_out (may be NULL); returns false if there is no row. */
static bool pg_raw(struct fx *f, const char *sql, char *text_out, size_t size)
{
    PGconn *c = PQconnectdb(f->uri);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
        print_error("%s: %s", sql, PQresultErrorMessage(r));
    assert_true(st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK);
    bool row = st == PGRES_TUPLES_OK && PQntuples(r) > 0;
    if (text_out != NULL)
        snprintf(text_out, size, "%s", row ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    PQfinish(c);
    return row;
}

/* A query on a separate raw connection, returning the first column of the first row. */
static int64_t q64(struct fx *f, const char *sql)
{
    if (pg) {
        char v[64];
        if (!pg_raw(f, sql, v, sizeof(v)) || v[0] == '\0')
            return -1;
        return strtoll(v, NULL, 10);
    }
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void raw_exec(struct fx *f, const char *sql, char *text_out, size_t size)
{
    if (pg) {
        pg_raw(f, sql, text_out, size);
        return;
    }
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    int r = sqlite3_step(st);
    assert_true(r == SQLITE_ROW || r == SQLITE_DONE);
    if (text_out != NULL)
        snprintf(text_out, size, "%s",
                 r == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : "");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void make_node(struct tc_store_node *n, const char *id, enum tc_node_state st)
{
    static uint8_t ek[] = {0x00, 0x01, 0x27, 0x00}, cert[300], ak[] = {1, 2, 3}, name[34];
    memset(n, 0, sizeof(*n));
    snprintf(n->id, sizeof(n->id), "%s", id);
    n->state = st;
    tc_reason_clear(&n->reason);
    snprintf(n->agent_url, sizeof(n->agent_url), "https://10.0.0.1:8891");
    snprintf(n->tls_cert_fp, sizeof(n->tls_cert_fp), "sha256:ab12");
    memset(cert, 0x30, sizeof(cert));
    memset(name, 0x0b, sizeof(name));
    n->ek_pub = (struct tc_store_blob){ek, sizeof(ek)};
    n->ek_cert = (struct tc_store_blob){cert, sizeof(cert)};
    n->ak_pub = (struct tc_store_blob){ak, sizeof(ak)};
    n->ak_name = (struct tc_store_blob){name, sizeof(name)};
}

static void make_round(struct tc_store_round *r, const char *id, uint64_t round,
                       enum tc_node_state st)
{
    memset(r, 0, sizeof(*r));
    r->node_id = id;
    r->round = round;
    r->ts = 1700000000000 + (int64_t)round;
    r->state = st;
    tc_reason_clear(&r->reason);
    if (st == TC_NODE_UNTRUSTED)
        tc_fail(&r->reason, TC_ERR_POLICY, "ima.runtime_policy", (long)round, "file %llu",
                (unsigned long long)round);
    r->has_quote = st != TC_NODE_UNREACHABLE;
    r->reset_count = 3;
    r->restart_count = 1;
    r->clock = round * 2000;
    r->ima_count = round * 10;
}

static int count_cb(void *arg, const char *policy)
{
    (void)policy;
    (*(int *)arg)++;
    return 0;
}

/* ---- tests ----------------------------------------------------------------------------- */

static void migrations_from_empty(void **state)
{
    struct fx *f = *state;
    struct tc_store *s = open_store(f, NULL);
    int64_t v = 0;
    assert_int_equal(tc_store_schema_version(s, &v), 0);
    assert_int_equal(v, 2);
    tc_store_close(s);
    assert_int_equal(q64(f, "SELECT count(*) FROM schema_version"), 2);
#define TABLES                                                                                     \
    "('nodes','node_blobs','enrollments','policies','assignments','results','events',"             \
    "'subscribers','deliveries')"
    assert_int_equal(q64(f, SQL("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                                "name IN " TABLES,
                                "SELECT count(*) FROM information_schema.tables WHERE "
                                "table_schema = current_schema() AND table_name IN " TABLES)),
                     9);
    if (!pg) {
        char mode[16];
        raw_exec(f, "PRAGMA journal_mode", mode, sizeof(mode));
        assert_string_equal(mode, "wal");
    }
    /* Re-opening applies nothing twice. */
    s = open_store(f, NULL);
    tc_store_close(s);
    assert_int_equal(q64(f, "SELECT count(*) FROM schema_version"), 2);
    tc_store_close(NULL);
}

/* VMs are nodes with a host and a tenant; the pair is validated and read back. */
static void vm_nodes(void **state)
{
    struct fx *f = *state;
    struct tc_store *s = open_store(f, NULL);
    struct tc_store_node n, g;
    make_node(&n, "host1", TC_NODE_TRUSTED);
    assert_int_equal(tc_store_node_create(s, &n), 0);
    make_node(&n, "vm1", TC_NODE_ENROLLED);
    n.is_vm = true;
    assert_int_equal(tc_store_node_create(s, &n), TC_ERR_INVALID_ARG); /* a VM without a host */
    snprintf(n.host, sizeof(n.host), "host1");
    snprintf(n.tenant, sizeof(n.tenant), "acme");
    snprintf(n.group_name, sizeof(n.group_name), "tenant:acme");
    n.agent_url[0] = n.tls_cert_fp[0] = '\0';
    struct tc_store_blob ak = n.ak_pub, name = n.ak_name;
    n.ak_pub = (struct tc_store_blob){NULL, 0}; /* a guest that owns its vTPM: AK later */
    n.ak_name = (struct tc_store_blob){NULL, 0};
    assert_int_equal(tc_store_node_create(s, &n), 0);
    assert_int_equal(tc_store_node_get(s, "vm1", &g), 0);
    assert_true(g.ak_pub.len == 0);
    tc_store_node_release(&g);
    assert_int_equal(tc_store_node_set_ak(s, "vm1", &ak, &name), 0);
    assert_int_equal(tc_store_node_set_ak(s, "vm1", &ak, &name), TC_ERR_MISMATCH); /* immutable */
    assert_int_equal(tc_store_node_set_ak(s, "nope", &ak, &name), TC_ERR_NOT_FOUND);
    assert_int_equal(tc_store_node_get(s, "vm1", &g), 0);
    assert_int_equal(g.ak_pub.len, ak.len);
    assert_memory_equal(g.ak_pub.data, ak.data, ak.len);
    assert_memory_equal(g.ak_name.data, name.data, name.len);
    tc_store_node_release(&g);
    n.ak_pub = ak;
    n.ak_name = name;
    n.is_vm = false; /* a host naming a host */
    snprintf(n.id, sizeof(n.id), "vm2");
    assert_int_equal(tc_store_node_create(s, &n), TC_ERR_INVALID_ARG);
    assert_int_equal(tc_store_node_get(s, "vm1", &g), 0);
    assert_true(g.is_vm);
    assert_string_equal(g.host, "host1");
    assert_string_equal(g.tenant, "acme");
    tc_store_node_release(&g);
    assert_int_equal(tc_store_node_get(s, "host1", &g), 0);
    assert_false(g.is_vm);
    assert_string_equal(g.host, "");
    tc_store_node_release(&g);
    /* Tenant policies reach the VM through its group. */
    assert_int_equal(tc_store_policy_put(s, "rt", TC_POLICY_RUNTIME, "{}", 2, &(int64_t){0}), 0);
    assert_int_equal(tc_store_assign(s, TC_ASSIGN_GROUP, "tenant:acme", "rt"), 0);
    int seen = 0;
    assert_int_equal(tc_store_node_policies(s, "vm1", count_cb, &seen), 0);
    assert_int_equal(seen, 1);
    tc_store_close(s);
}

static void newer_schema_is_refused(void **state)
{
    struct fx *f = *state;
    struct tc_store *s = open_store(f, NULL);
    tc_store_close(s);
    raw_exec(f, "INSERT INTO schema_version VALUES (99, 0)", NULL, 0);
    assert_int_equal(tc_store_open(f->uri, NULL, &s), TC_ERR_UNSUPPORTED);
    assert_null(s);
}

static void open_errors_and_single_writer_lock(void **state)
{
    struct fx *f = *state;
    struct tc_store *a = NULL, *b = NULL;
    /* No server behind the socket: an outage (TC_ERR_IO), not a configuration error. */
    assert_int_equal(tc_store_open("postgresql:///tc?host=/nonexistent", NULL, &b), TC_ERR_IO);
    assert_int_equal(tc_store_open("postgres:///tc?host=/nonexistent", NULL, &b), TC_ERR_IO);
    assert_null(b);
    assert_int_equal(tc_store_open("mysql:x", NULL, &b), TC_ERR_UNSUPPORTED);
    assert_int_equal(tc_store_open("sqlite:", NULL, &b), TC_ERR_UNSUPPORTED);
    assert_int_equal(tc_store_open(NULL, NULL, &b), TC_ERR_INVALID_ARG);
    a = open_store(f, NULL);
    if (pg) {
        /* Several coordinators share one PostgreSQL database, each seeing the others' writes. */
        struct tc_store_node n, g;
        b = open_store(f, NULL);
        make_node(&n, "shared", TC_NODE_ENROLLED);
        assert_int_equal(tc_store_node_create(a, &n), 0);
        assert_int_equal(tc_store_node_get(b, "shared", &g), 0);
        g.state = TC_NODE_TRUSTED;
        assert_int_equal(tc_store_node_update(b, &g), 0);
        /* a's copy is stale now: the version check spans connections. */
        n.state = TC_NODE_UNTRUSTED;
        assert_int_equal(tc_store_node_update(a, &n), TC_ERR_MISMATCH);
        tc_store_node_release(&g);
        tc_store_close(a);
        tc_store_close(b);
        return;
    }
    /* A second coordinator on the same file is refused... */
    assert_int_equal(tc_store_open(f->uri, NULL, &b), TC_ERR_IO);
    assert_null(b);
    tc_store_close(a);
    /* ...until the first one is gone. */
    b = open_store(f, NULL);
    /* The files hold webhook secrets: owner-only, the WAL included. */
    struct stat sb;
    char wal[320];
    snprintf(wal, sizeof(wal), "%s-wal", f->path);
    assert_int_equal(stat(f->path, &sb), 0);
    assert_int_equal(sb.st_mode & 077, 0);
    assert_int_equal(stat(wal, &sb), 0);
    assert_int_equal(sb.st_mode & 077, 0);
    tc_store_close(b);
}

static void node_crud_hostile_ids(void **state)
{
    struct fx *f = *state;
    struct tc_store *s = open_store(f, NULL);
    char max_id[TC_STORE_ID_MAX + 1], bytes[200];
    memset(max_id, 'x', TC_STORE_ID_MAX);
    max_id[TC_STORE_ID_MAX] = '\0';
    for (int i = 1; i < 128; i++)
        bytes[i - 1] = (char)(i * 2 + 1); /* odd bytes 0x03..0xff: controls, quotes, non-UTF-8 */
    bytes[127] = '\0';
    const char *ids[] = {"'; DROP TABLE nodes;--",
                         "\" OR 1=1 --",
                         "../../etc/passwd",
                         "a/b\\c",
                         "%s%n%x",
                         "node-1",
                         "Node-1",
                         bytes,
                         max_id};
    const size_t nids = sizeof(ids) / sizeof(ids[0]);
    struct tc_store_node n, g;

    for (size_t i = 0; i < nids; i++) {
        make_node(&n, ids[i], TC_NODE_ENROLLED);
        snprintf(n.group_name, sizeof(n.group_name), "%s", ids[(i + 1) % nids]);
        assert_int_equal(tc_store_node_create(s, &n), 0);
        assert_int_equal(n.version, 1);
    }
    make_node(&n, ids[0], TC_NODE_ENROLLED);
    assert_int_equal(tc_store_node_create(s, &n), TC_ERR_MISMATCH);
    for (size_t i = 0; i < nids; i++) {
        assert_int_equal(tc_store_node_get(s, ids[i], &g), 0);
        assert_string_equal(g.id, ids[i]);
        assert_string_equal(g.group_name, ids[(i + 1) % nids]);
        assert_int_equal(g.state, TC_NODE_ENROLLED);
        assert_int_equal(g.ek_cert.len, 300);
        assert_int_equal(g.ak_name.len, 34);
        assert_null(g.eventlog.data);
        tc_store_node_release(&g);
    }
    assert_int_equal(q64(f, "SELECT count(*) FROM nodes"), (int64_t)nids);

    /* Over the cap, empty, or huge: refused before any SQL. */
    char *huge = malloc(1 << 20);
    memset(huge, '\'', (1 << 20) - 1);
    huge[(1 << 20) - 1] = '\0';
    assert_int_equal(tc_store_node_get(s, huge, &g), TC_ERR_TOO_LARGE);
    assert_int_equal(tc_store_node_delete(s, huge), TC_ERR_TOO_LARGE);
    assert_int_equal(tc_store_node_get(s, "", &g), TC_ERR_INVALID_ARG);
    assert_int_equal(tc_store_node_get(s, "nope", &g), TC_ERR_NOT_FOUND);
    struct tc_store_round r;
    make_round(&r, huge, 1, TC_NODE_TRUSTED);
    assert_int_equal(tc_store_record_round(s, &r, NULL), TC_ERR_TOO_LARGE);
    /* A 1 MiB body full of SQL metacharacters is data, stored verbatim. */
    int64_t ver = 0;
    assert_int_equal(tc_store_policy_put(s, ids[0], TC_POLICY_RUNTIME, huge, strlen(huge), &ver),
                     0);
    struct tc_store_policy p;
    assert_int_equal(tc_store_policy_get(s, ids[0], 0, &p), 0);
    assert_int_equal(p.body_len, strlen(huge));
    assert_memory_equal(p.body, huge, p.body_len);
    tc_store_policy_release(&p);
    free(huge);
    /* An unterminated id array is refused, not over-read. */
    make_node(&n, "x", TC_NODE_ENROLLED);
    memset(n.id, 'a', sizeof(n.id));
    assert_int_equal(tc_store_node_create(s, &n), TC_ERR_TOO_LARGE);

    /* Update with optimistic concurrency; a state change emits one event. */
    assert_int_equal(tc_store_node_get(s, ids[0], &g), 0);
    struct tc_store_node stale = g;
    g.state = TC_NODE_TRUSTED;
    snprintf(g.agent_url, sizeof(g.agent_url), "https://[::1]:1/'--");
    assert_int_equal(tc_store_node_update(s, &g), 0);
    assert_int_equal(g.version, 2);
    stale.state = TC_NODE_UNTRUSTED;
    assert_int_equal(tc_store_node_update(s, &stale), TC_ERR_MISMATCH);
    tc_store_node_release(&g);
    assert_int_equal(tc_store_node_get(s, ids[0], &g), 0);
    assert_int_equal(g.state, TC_NODE_TRUSTED);
    assert_string_equal(g.agent_url, "https://[::1]:1/'--");
    tc_store_node_release(&g);
    assert_int_equal(q64(f, "SELECT count(*) FROM events"), 1);

    /* Delete: gone with its blobs; the others and the tables survive. */
    assert_int_equal(tc_store_node_delete(s, ids[0]), 0);
    assert_int_equal(tc_store_node_delete(s, ids[0]), TC_ERR_NOT_FOUND);
    assert_int_equal(tc_store_node_get(s, ids[0], &g), TC_ERR_NOT_FOUND);
    assert_int_equal(q64(f, "SELECT count(*) FROM nodes"), (int64_t)nids - 1);
    assert_int_equal(q64(f, "SELECT count(*) FROM node_blobs"), (int64_t)nids - 1);
    tc_store_close(s);
}

static int count_node(void *arg, const struct tc_store_node *n)
{
    (*(int *)arg)++;
    return n->eventlog.data == NULL ? 0 : -1;
}

/* Overwrites len bytes at off of the database file with a pattern. */
static void scribble(struct fx *f, off_t off, size_t len, uint8_t pattern)
{
    uint8_t buf[4096];
    memset(buf, pattern, sizeof(buf));
    int fd = open(f->path, O_WRONLY);
    assert_true(fd >= 0);
    while (len > 0) {
        size_t k = len < sizeof(buf) ? len : sizeof(buf);
        assert_int_equal(pwrite(fd, buf, k, off), (ssize_t)k);
        off += (off_t)k;
        len -= k;
    }
    close(fd);
}

/* A damaged database is refused at open (quick_check, and a full check on request), with
 * TC_ERR_CORRUPT and nothing written to it, instead of being served from. */
static void damaged_database_is_refused(void **state)
{
    struct fx *f = *state;
    struct tc_store *s = open_store(f, NULL);
    struct tc_store_node n;
    char id[32];
    for (int i = 0; i < 300; i++) {
        snprintf(id, sizeof(id), "node-%04d", i);
        make_node(&n, id, TC_NODE_ENROLLED);
        assert_int_equal(tc_store_node_create(s, &n), 0);
    }
    tc_store_close(s); /* the last connection checkpoints the WAL into the file */
    struct stat sb;
    assert_int_equal(stat(f->path, &sb), 0);
    int64_t page = q64(f, "PRAGMA page_size"), pages = (int64_t)sb.st_size / page;
    assert_true(pages >= 8);
    struct tc_store_options full = {.full_check = true};
    s = open_store(f, NULL);
    tc_store_close(s);
    s = open_store(f, &full);
    tc_store_close(s);

    /* A page in the middle of the nodes' table (an undamaged copy kept aside). */
    char copy[400];
    snprintf(copy, sizeof(copy), "%s.good", f->path);
    {
        FILE *in = fopen(f->path, "rb"), *out = fopen(copy, "wb");
        char b[8192];
        size_t k;
        assert_true(in && out);
        while ((k = fread(b, 1, sizeof(b), in)) > 0)
            assert_int_equal(fwrite(b, 1, k, out), k);
        fclose(in);
        fclose(out);
    }
    scribble(f, (off_t)(pages / 2) * page, (size_t)page, 0x5a);
    assert_int_equal(stat(f->path, &sb), 0);
    time_t mtime = sb.st_mtime;
    assert_int_equal(tc_store_open(f->uri, NULL, &s), TC_ERR_CORRUPT);
    assert_null(s);
    assert_int_equal(tc_store_open(f->uri, &full, &s), TC_ERR_CORRUPT);
    assert_null(s);
    assert_int_equal(stat(f->path, &sb), 0);
    assert_int_equal(sb.st_mtime, mtime);

    /* The header itself, and a file that is no database at all. */
    scribble(f, 0, 100, 0x00);
    assert_int_equal(tc_store_open(f->uri, NULL, &s), TC_ERR_CORRUPT);
    scribble(f, 0, (size_t)page * 2, 0x41);
    assert_int_equal(tc_store_open(f->uri, NULL, &s), TC_ERR_CORRUPT);
    assert_null(s);

    /* The undamaged copy still opens. */
    assert_int_equal(rename(copy, f->path), 0);
    s = open_store(f, NULL);
    assert_int_equal(tc_store_node_get(s, "node-0150", &n), 0);
    tc_store_node_release(&n);
    tc_store_close(s);
}

static void reopen_keeps_data(void **state)
{
    struct fx *f = *state;
    struct tc_store *s = open_store(f, NULL);
    struct tc_store_node n;
    struct tc_store_round r;
    uint8_t ima[100], evlog[5000];
    memset(ima, 0x5a, sizeof(ima));
    memset(evlog, 0xe1, sizeof(evlog));
    make_node(&n, "n1", TC_NODE_ENROLLED);
    assert_int_equal(tc_store_node_create(s, &n), 0);
    make_node(&n, "n2", TC_NODE_ENROLLED);
    assert_int_equal(tc_store_node_create(s, &n), 0);
    make_round(&r, "n1", 7, TC_NODE_UNTRUSTED);
    r.ima_state = ima;
    r.ima_state_len = sizeof(ima);
    r.eventlog = evlog;
    r.eventlog_len = sizeof(evlog);
    assert_int_equal(tc_store_record_round(s, &r, NULL), 0);
    tc_store_close(s);

    s = open_store(f, NULL);
    assert_int_equal(tc_store_node_get(s, "n1", &n), 0);
    assert_int_equal(n.state, TC_NODE_UNTRUSTED);
    assert_int_equal(n.last_round, 7);
    assert_int_equal(n.clock, 14000);
    assert_int_equal(n.ima_count, 70);
    assert_true(n.has_quote);
    assert_int_equal(n.reason.code, TC_ERR_POLICY);
    assert_string_equal(n.reason.check, "ima.runtime_policy");
    assert_int_equal(n.reason.entry, 7);
    assert_int_equal(n.ima_state.len, sizeof(ima));
    assert_memory_equal(n.ima_state.data, ima, sizeof(ima));
    assert_int_equal(n.eventlog.len, sizeof(evlog));
    assert_memory_equal(n.eventlog.data, evlog, sizeof(evlog));
    tc_store_node_release(&n);
    int count = 0;
    assert_int_equal(tc_store_node_list(s, count_node, &count), 0);
    assert_int_equal(count, 2);
    /* An unreachable round keeps quote info, IMA state and event log. */
    make_round(&r, "n1", 8, TC_NODE_UNREACHABLE);
    r.missed = 1;
    assert_int_equal(tc_store_record_round(s, &r, NULL), 0);
    assert_int_equal(tc_store_node_get(s, "n1", &n), 0);
    assert_int_equal(n.clock, 14000);
    assert_int_equal(n.ima_count, 70);
    assert_int_equal(n.missed, 1);
    assert_int_equal(n.ima_state.len, sizeof(ima));
    assert_int_equal(n.eventlog.len, sizeof(evlog));
    tc_store_node_release(&n);
    tc_store_close(s);
}

static int collect_names(void *arg, const char *name)
{
    char *acc = arg;
    strcat(acc, name);
    strcat(acc, ";");
    return 0;
}

static int collect_policies(void *arg, const char *name, int64_t version, enum tc_policy_kind kind)
{
    char *acc = arg;
    sprintf(acc + strlen(acc), "%s=%lld/%s;", name, (long long)version, tc_policy_kind_name(kind));
    return 0;
}

static void policy_versioning_and_assignment(void **state)
{
    struct fx *f = *state;
    struct tc_store *s = open_store(f, NULL);
    struct tc_store_policy p;
    struct tc_store_node n;
    int64_t v = 0;
    assert_int_equal(tc_store_policy_put(s, "base", TC_POLICY_RUNTIME, "{\"v\":1}", 7, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(tc_store_policy_put(s, "base", TC_POLICY_RUNTIME, "{\"v\":2}", 7, &v), 0);
    assert_int_equal(v, 2);
    assert_int_equal(tc_store_policy_put(s, "base", TC_POLICY_PCR, "{}", 2, &v), TC_ERR_MISMATCH);
    assert_int_equal(v, 0);
    assert_int_equal(tc_store_policy_put(s, "boot", TC_POLICY_MEASURED_BOOT, "{}", 2, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(tc_store_policy_put(s, "x", TC_POLICY_PCR, "a\0b", 3, &v), TC_ERR_INVALID_ARG);
    assert_int_equal(tc_store_policy_get(s, "base", 0, &p), 0);
    assert_int_equal(p.version, 2);
    assert_string_equal(p.body, "{\"v\":2}");
    assert_int_equal(p.kind, TC_POLICY_RUNTIME);
    tc_store_policy_release(&p);
    assert_int_equal(tc_store_policy_get(s, "base", 1, &p), 0);
    assert_string_equal(p.body, "{\"v\":1}");
    tc_store_policy_release(&p);
    assert_int_equal(tc_store_policy_get(s, "base", 3, &p), TC_ERR_NOT_FOUND);
    assert_int_equal(tc_store_policy_get(s, "none", 0, &p), TC_ERR_NOT_FOUND);
    char list[256] = "";
    assert_int_equal(tc_store_policy_list(s, collect_policies, list), 0);
    assert_string_equal(list, "base=2/runtime;boot=1/measured_boot;");

    make_node(&n, "n1", TC_NODE_ENROLLED);
    snprintf(n.group_name, sizeof(n.group_name), "rack-7");
    assert_int_equal(tc_store_node_create(s, &n), 0);
    make_node(&n, "n2", TC_NODE_ENROLLED);
    assert_int_equal(tc_store_node_create(s, &n), 0);
    assert_int_equal(tc_store_assign(s, TC_ASSIGN_NODE, "n1", "base"), 0);
    assert_int_equal(tc_store_assign(s, TC_ASSIGN_NODE, "n1", "base"), 0); /* idempotent */
    assert_int_equal(tc_store_assign(s, TC_ASSIGN_GROUP, "rack-7", "boot"), 0);
    assert_int_equal(tc_store_assign(s, TC_ASSIGN_GROUP, "rack-7", "base"), 0);
    assert_int_equal(tc_store_assign(s, TC_ASSIGN_NODE, "n1", "missing"), TC_ERR_NOT_FOUND);
    char acc[256] = "";
    assert_int_equal(tc_store_node_policies(s, "n1", collect_names, acc), 0);
    assert_string_equal(acc, "base;boot;");
    acc[0] = '\0';
    assert_int_equal(tc_store_node_policies(s, "n2", collect_names, acc), 0);
    assert_string_equal(acc, "");
    assert_int_equal(tc_store_node_policies(s, "n3", collect_names, acc), TC_ERR_NOT_FOUND);
    assert_int_equal(tc_store_unassign(s, TC_ASSIGN_GROUP, "rack-7", "boot"), 0);
    assert_int_equal(tc_store_unassign(s, TC_ASSIGN_GROUP, "rack-7", "boot"), TC_ERR_NOT_FOUND);
    assert_int_equal(tc_store_node_policies(s, "n1", collect_names, acc), 0);
    assert_string_equal(acc, "base;");
    /* A node re-created under the same id starts without the old node's assignments. */
    assert_int_equal(tc_store_node_delete(s, "n1"), 0);
    make_node(&n, "n1", TC_NODE_ENROLLED);
    assert_int_equal(tc_store_node_create(s, &n), 0);
    acc[0] = '\0';
    assert_int_equal(tc_store_node_policies(s, "n1", collect_names, acc), 0);
    assert_string_equal(acc, "");
    assert_int_equal(q64(f, "SELECT count(*) FROM assignments"), 1); /* the group one */
    tc_store_close(s);
}

/* State of node in round i of the history tests: a change every 10 rounds. */
static enum tc_node_state pattern(uint64_t i)
{
    return (i / 10) % 2 ? TC_NODE_UNTRUSTED : TC_NODE_TRUSTED;
}

static void history_paging_events_and_idempotency(void **state)
{
    struct fx *f = *state;
    struct tc_store *s = open_store(f, NULL);
    struct tc_store_node n;
    struct tc_store_round r;
    struct tc_store_round_result res;
    make_node(&n, "n1", TC_NODE_ENROLLED);
    assert_int_equal(tc_store_node_create(s, &n), 0);
    for (uint64_t i = 1; i <= 25; i++) {
        make_round(&r, "n1", i, pattern(i));
        assert_int_equal(tc_store_record_round(s, &r, &res), 0);
        assert_false(res.duplicate);
        assert_true(res.result_id > 0);
        /* enrolled->trusted at 1, trusted->untrusted at 10, back at 20. */
        assert_int_equal(res.event_seq > 0, i == 1 || i == 10 || i == 20);
    }
    /* A retried round is a no-op. */
    make_round(&r, "n1", 25, TC_NODE_UNREACHABLE);
    assert_int_equal(tc_store_record_round(s, &r, &res), 0);
    assert_true(res.duplicate);
    make_round(&r, "n1", 3, TC_NODE_UNREACHABLE);
    assert_int_equal(tc_store_record_round(s, &r, &res), 0);
    assert_true(res.duplicate);
    make_round(&r, "ghost", 1, TC_NODE_TRUSTED);
    assert_int_equal(tc_store_record_round(s, &r, &res), TC_ERR_NOT_FOUND);
    assert_int_equal(q64(f, "SELECT count(*) FROM results"), 25);

    /* Paging newest first with a "before id" cursor. */
    struct tc_store_result *page = NULL;
    size_t cnt = 0, total = 0;
    int64_t before = 0;
    uint64_t expect = 25;
    for (;;) {
        assert_int_equal(tc_store_results_list(s, "n1", before, 10, &page, &cnt), 0);
        if (cnt == 0) {
            assert_null(page);
            break;
        }
        for (size_t i = 0; i < cnt; i++, expect--) {
            assert_int_equal(page[i].round, expect);
            assert_int_equal(page[i].state, pattern(expect));
            assert_int_equal(page[i].changed, expect == 1 || expect == 10 || expect == 20);
            if (page[i].state == TC_NODE_UNTRUSTED)
                assert_string_equal(page[i].reason.check, "ima.runtime_policy");
        }
        total += cnt;
        before = page[cnt - 1].id;
        free(page);
    }
    assert_int_equal(total, 25);
    assert_int_equal(tc_store_results_list(s, "n1", 0, 0, &page, &cnt), TC_ERR_INVALID_ARG);

    /* Events since a seq, oldest first. */
    struct tc_store_event *ev = NULL;
    assert_int_equal(tc_store_events_since(s, 0, 100, &ev, &cnt), 0);
    assert_int_equal(cnt, 3);
    assert_int_equal(ev[0].old_state, TC_NODE_ENROLLED);
    assert_int_equal(ev[0].new_state, TC_NODE_TRUSTED);
    assert_int_equal(ev[1].new_state, TC_NODE_UNTRUSTED);
    assert_int_equal(ev[1].reason.code, TC_ERR_POLICY);
    assert_int_equal(ev[1].reason.entry, 10);
    assert_string_equal(ev[2].node_id, "n1");
    assert_true(ev[0].seq < ev[1].seq && ev[1].seq < ev[2].seq);
    int64_t mid = ev[1].seq;
    free(ev);
    assert_int_equal(tc_store_events_since(s, mid, 100, &ev, &cnt), 0);
    assert_int_equal(cnt, 1);
    assert_int_equal(ev[0].new_state, TC_NODE_TRUSTED);
    free(ev);
    assert_int_equal(tc_store_events_since(s, mid + 1, 100, &ev, &cnt), 0);
    assert_int_equal(cnt, 0);
    int64_t last = 0;
    assert_int_equal(tc_store_events_last_seq(s, &last), 0);
    assert_int_equal(last, mid + 1);
    tc_store_close(s);
}

static void history_retention(void **state)
{
    struct fx *f = *state;
    struct tc_store_options o = {.history_per_node = 10};
    struct tc_store *s = open_store(f, &o);
    struct tc_store_node n;
    struct tc_store_round r;
    make_node(&n, "n1", TC_NODE_ENROLLED);
    assert_int_equal(tc_store_node_create(s, &n), 0);
    make_node(&n, "n2", TC_NODE_ENROLLED);
    assert_int_equal(tc_store_node_create(s, &n), 0);
    for (uint64_t i = 1; i <= 1000; i++) {
        make_round(&r, "n1", i, pattern(i));
        assert_int_equal(tc_store_record_round(s, &r, NULL), 0);
    }
    make_round(&r, "n2", 1, TC_NODE_TRUSTED);
    assert_int_equal(tc_store_record_round(s, &r, NULL), 0);
    /* Bounded: 10 newest + 101 state changes (round 1, then every 10th) + < 64 rounds since
     * the last prune. */
    int64_t kept = q64(f, "SELECT count(*) FROM results WHERE node_id = 'n1'");
    assert_true(kept <= 10 + 101 + 64);
    assert_int_equal(q64(f, "SELECT count(*) FROM results WHERE node_id = 'n1' AND changed"), 101);
    assert_int_equal(q64(f, "SELECT max(round) FROM results WHERE node_id = 'n1'"), 1000);
    /* Another node's history is untouched. */
    assert_int_equal(q64(f, "SELECT count(*) FROM results WHERE node_id = 'n2'"), 1);
    /* Deleting the node drops its history (events stay). */
    assert_int_equal(tc_store_node_delete(s, "n1"), 0);
    assert_int_equal(q64(f, "SELECT count(*) FROM results WHERE node_id = 'n1'"), 0);
    assert_int_equal(q64(f, "SELECT count(*) FROM events WHERE node_id = 'n1'"), 101);
    tc_store_close(s);
}

static int count_sub(void *arg, const struct tc_store_subscriber *sub)
{
    (*(int *)arg)++;
    return sub->secret_len > 0 ? 0 : -1;
}

static void outbox_retry_scheduling(void **state)
{
    struct fx *f = *state;
    struct tc_store *s = open_store(f, NULL);
    struct tc_store_node n;
    struct tc_store_round r;
    struct tc_store_round_result res;
    struct tc_store_delivery *d = NULL;
    struct tc_store_subscriber sub;
    size_t cnt = 0;
    int64_t a = 0, b = 0;
    const uint8_t secret[] = "0123456789abcdef0123456789abcdef";

    make_node(&n, "n1", TC_NODE_TRUSTED);
    assert_int_equal(tc_store_node_create(s, &n), 0);
    assert_int_equal(tc_store_subscriber_add(s, "https://hooks.example/a", secret, 32, &a), 0);
    assert_int_equal(tc_store_subscriber_add(s, "https://hooks.example/b'--", secret, 16, &b), 0);
    int64_t c = 0;
    assert_int_equal(tc_store_subscriber_add(s, "https://x", secret, 65, &c), TC_ERR_TOO_LARGE);
    int nsubs = 0;
    assert_int_equal(tc_store_subscriber_list(s, count_sub, &nsubs), 0);
    assert_int_equal(nsubs, 2);
    assert_int_equal(tc_store_subscriber_get(s, a, &sub), 0);
    assert_int_equal(sub.secret_len, 32);
    assert_memory_equal(sub.secret, secret, 32);
    assert_string_equal(sub.url, "https://hooks.example/a");
    tc_store_subscriber_release(&sub);

    make_round(&r, "n1", 1, TC_NODE_TRUSTED); /* no change: no event, no outbox */
    assert_int_equal(tc_store_record_round(s, &r, &res), 0);
    assert_int_equal(res.event_seq, 0);
    make_round(&r, "n1", 2, TC_NODE_UNTRUSTED);
    assert_int_equal(tc_store_record_round(s, &r, &res), 0);
    assert_true(res.event_seq > 0);
    const int64_t t0 = r.ts;

    assert_int_equal(tc_store_deliveries_due(s, t0 - 1, 100, &d, &cnt), 0);
    assert_int_equal(cnt, 0);
    assert_int_equal(tc_store_deliveries_due(s, t0, 100, &d, &cnt), 0);
    assert_int_equal(cnt, 2);
    assert_int_equal(d[0].seq, res.event_seq);
    assert_int_equal(d[0].attempts, 0);
    int64_t da = d[0].subscriber_id == a ? d[0].id : d[1].id;
    int64_t db = d[0].subscriber_id == a ? d[1].id : d[0].id;
    free(d);

    /* a fails twice with backoff, b succeeds at once. */
    assert_int_equal(tc_store_delivery_done(s, db, t0), 0);
    assert_int_equal(tc_store_delivery_done(s, db, t0), TC_ERR_NOT_FOUND);
    assert_int_equal(tc_store_delivery_retry(s, da, t0 + tc_store_backoff_ms(1)), 0);
    assert_int_equal(tc_store_deliveries_due(s, t0 + 999, 100, &d, &cnt), 0);
    assert_int_equal(cnt, 0);
    assert_int_equal(tc_store_deliveries_due(s, t0 + 1000, 100, &d, &cnt), 0);
    assert_int_equal(cnt, 1);
    assert_int_equal(d[0].attempts, 1);
    assert_int_equal(d[0].next_attempt_at, t0 + 1000);
    free(d);
    assert_int_equal(tc_store_delivery_retry(s, da, t0 + 1000 + tc_store_backoff_ms(2)), 0);
    assert_int_equal(tc_store_backoff_ms(2), 2000);
    assert_int_equal(tc_store_backoff_ms(40), 3600 * 1000);

    /* Survives a restart: the schedule is in the database. */
    tc_store_close(s);
    s = open_store(f, NULL);
    assert_int_equal(tc_store_deliveries_due(s, t0 + 2999, 100, &d, &cnt), 0);
    assert_int_equal(cnt, 0);
    assert_int_equal(tc_store_deliveries_due(s, t0 + 3000, 100, &d, &cnt), 0);
    assert_int_equal(cnt, 1);
    assert_int_equal(d[0].attempts, 2);
    free(d);
    /* Pruning keeps events an undelivered row still needs. */
    assert_int_equal(tc_store_prune(s, INT64_MAX), 0);
    assert_int_equal(q64(f, "SELECT count(*) FROM events"), 1);
    assert_int_equal(q64(f, "SELECT count(*) FROM deliveries"), 1);
    assert_int_equal(tc_store_delivery_done(s, da, t0 + 3000), 0);
    assert_int_equal(tc_store_prune(s, INT64_MAX), 0);
    assert_int_equal(q64(f, "SELECT count(*) FROM events"), 0);
    assert_int_equal(q64(f, "SELECT count(*) FROM deliveries"), 0);
    int64_t last = 0;
    assert_int_equal(tc_store_events_last_seq(s, &last), 0);
    assert_int_equal(last, res.event_seq); /* remembered although pruned */
    /* A new event after pruning gets a fresh, higher seq. */
    make_round(&r, "n1", 3, TC_NODE_TRUSTED);
    int64_t old_seq = res.event_seq;
    assert_int_equal(tc_store_record_round(s, &r, &res), 0);
    assert_true(res.event_seq > old_seq);
    /* Deleting a subscriber drops its queue. */
    assert_int_equal(tc_store_subscriber_delete(s, a), 0);
    assert_int_equal(tc_store_subscriber_delete(s, a), TC_ERR_NOT_FOUND);
    assert_int_equal(q64(f, "SELECT count(*) FROM deliveries"), 1);
    assert_int_equal(tc_store_subscriber_get(s, a, &sub), TC_ERR_NOT_FOUND);
    tc_store_close(s);
}

static void enrollment_lifecycle(void **state)
{
    struct fx *f = *state;
    struct tc_store *s = open_store(f, NULL);
    struct tc_store_enrollment e, g;
    struct tc_store_node n;
    const uint8_t secret[32] = {1, 2, 3};
    int64_t now = tc_store_now_ms();

    memset(&e, 0, sizeof(e));
    snprintf(e.id, sizeof(e.id), "enr-1");
    snprintf(e.node_id, sizeof(e.node_id), "n1");
    assert_int_equal(tc_store_secret_hash(secret, sizeof(secret), e.secret_hash), 0);
    e.expires = now + 60000;
    assert_int_equal(tc_store_enrollment_put(s, &e), 0);
    assert_int_equal(tc_store_enrollment_put(s, &e), TC_ERR_MISMATCH);
    snprintf(e.id, sizeof(e.id), "enr-old");
    e.expires = now - 1;
    assert_int_equal(tc_store_enrollment_put(s, &e), 0);
    snprintf(e.id, sizeof(e.id), "enr-dup");
    e.expires = now + 60000;
    assert_int_equal(tc_store_enrollment_put(s, &e), 0);

    assert_int_equal(tc_store_enrollment_get(s, "enr-1", now, &g), 0);
    assert_true(tc_store_secret_matches(g.secret_hash, secret, sizeof(secret)));
    assert_false(tc_store_secret_matches(g.secret_hash, secret, sizeof(secret) - 1));
    assert_string_equal(g.node_id, "n1");
    tc_store_enrollment_release(&g);
    assert_int_equal(tc_store_enrollment_get(s, "enr-old", now, &g), TC_ERR_NOT_FOUND);
    /* The secret itself is nowhere in the database. */
    assert_int_equal(q64(f, SQL("SELECT count(*) FROM enrollments WHERE instr(secret_hash, "
                                "x'0102030000') > 0",
                                "SELECT count(*) FROM enrollments WHERE position("
                                "'\\x0102030000'::bytea IN secret_hash) > 0")),
                     0);

    make_node(&n, "n2", TC_NODE_PENDING_APPROVAL);
    assert_int_equal(tc_store_enrollment_complete(s, "enr-1", now, &n), TC_ERR_MISMATCH);
    make_node(&n, "n1", TC_NODE_PENDING_APPROVAL);
    assert_int_equal(tc_store_enrollment_complete(s, "enr-old", now, &n), TC_ERR_NOT_FOUND);
    assert_int_equal(tc_store_enrollment_complete(s, "enr-1", now, &n), 0);
    assert_int_equal(tc_store_enrollment_complete(s, "enr-1", now, &n), TC_ERR_NOT_FOUND);
    /* The last statement (node insert) violates the primary key: the delete
     * before it must be rolled back, the enrollment stays. */
    assert_int_equal(tc_store_enrollment_complete(s, "enr-dup", now, &n), TC_ERR_MISMATCH);
    assert_int_equal(tc_store_enrollment_get(s, "enr-dup", now, &g), 0);
    tc_store_enrollment_release(&g);
    assert_int_equal(q64(f, "SELECT count(*) FROM nodes"), 1);
    size_t purged = 0;
    assert_int_equal(tc_store_enrollment_purge(s, now, &purged), 0);
    assert_int_equal(purged, 1);
    assert_int_equal(q64(f, "SELECT count(*) FROM enrollments"), 1);
    tc_store_close(s);
}

/* A snapshot of everything a batch of rounds touches. */
static void snapshot(struct fx *f, int64_t v[5])
{
    v[0] = q64(f, "SELECT count(*) FROM results");
    v[1] = q64(f, "SELECT count(*) FROM events");
    v[2] = q64(f, "SELECT count(*) FROM deliveries");
    v[3] = q64(f, "SELECT coalesce(sum(last_round), 0) + coalesce(sum(version), 0) FROM nodes");
    v[4] = q64(f, "SELECT count(*) FROM node_blobs WHERE eventlog IS NOT NULL");
}

static void failure_halfway_leaves_nothing(void **state)
{
    struct fx *f = *state;
    struct tc_store *s = open_store(f, NULL);
    struct tc_store_node n;
    struct tc_store_round r[20];
    struct tc_store_round_result res[20];
    char ids[5][8];
    uint8_t evlog[64] = {0};
    int64_t id = 0, before[5], after[5];
    const uint8_t secret[] = "k";

    for (int i = 0; i < 5; i++) {
        snprintf(ids[i], sizeof(ids[i]), "n%d", i);
        make_node(&n, ids[i], TC_NODE_ENROLLED);
        assert_int_equal(tc_store_node_create(s, &n), 0);
    }
    assert_int_equal(tc_store_subscriber_add(s, "https://a", secret, 1, &id), 0);
    assert_int_equal(tc_store_subscriber_add(s, "https://b", secret, 1, &id), 0);
    for (int i = 0; i < 20; i++) {
        make_round(&r[i], ids[i % 5], (uint64_t)(i / 5 + 1),
                   i / 5 % 2 ? TC_NODE_UNTRUSTED : TC_NODE_TRUSTED);
        if (i == 7) {
            r[i].eventlog = evlog;
            r[i].eventlog_len = sizeof(evlog);
        }
    }
    snapshot(f, before);
    /* Fail the k-th statement of the batch for every k until none is left:
     * each failure must leave the database exactly as before. */
    int failures = 0;
    for (int k = 1; k < 1000; k++) {
        assert_int_equal(tc_store_inject_fault(s, k), 0);
        int rc = tc_store_record_rounds(s, r, 20, res);
        assert_int_equal(tc_store_inject_fault(s, 0), 0);
        snapshot(f, after);
        if (rc == 0)
            break;
        assert_int_equal(rc, TC_ERR_IO);
        assert_memory_equal(before, after, sizeof(before));
        failures++;
    }
    /* Every statement of the batch was a failure point (PostgreSQL sends fewer: one head read
     * per node, the node and history rows in one statement, an event with its outbox rows). */
    assert_true(failures > (pg ? 45 : 50));
    /* The final, successful run wrote everything exactly once. */
    assert_int_equal(after[0], 20);
    assert_int_equal(after[1], 20); /* every round changes its node's state */
    assert_int_equal(after[2], 40);
    assert_int_equal(after[4], 1);
    for (int i = 0; i < 20; i++)
        assert_int_equal(res[i].status, 0);
    /* The whole batch again is all duplicates and changes nothing. */
    snapshot(f, before);
    assert_int_equal(tc_store_record_rounds(s, r, 20, res), 0);
    for (int i = 0; i < 20; i++)
        assert_true(res[i].duplicate);
    snapshot(f, after);
    assert_memory_equal(before, after, sizeof(before));
    /* A vanished node is skipped, not fatal to the batch. */
    make_round(&r[0], "gone", 9, TC_NODE_TRUSTED);
    make_round(&r[1], "n1", 9, TC_NODE_TRUSTED);
    assert_int_equal(tc_store_record_rounds(s, r, 2, res), 0);
    assert_int_equal(res[0].status, TC_ERR_NOT_FOUND);
    assert_int_equal(res[1].status, 0);
    assert_true(res[1].result_id > 0);
    tc_store_close(s);
}

/* ---- crash safety ---------------------------------------------------------------------- */

#define CRASH_NODES 8

static void crash_child(struct fx *f, int wfd)
{
    struct tc_store *s = NULL;
    struct tc_store_options o = {.history_per_node = 1000000};
    struct tc_store_round r[CRASH_NODES];
    char ids[CRASH_NODES][8];
    uint8_t ima[256];
    if (tc_store_open(f->uri, &o, &s) != 0)
        _exit(2);
    for (int i = 0; i < CRASH_NODES; i++)
        snprintf(ids[i], sizeof(ids[i]), "c%d", i);
    for (uint64_t round = 1;; round++) {
        memset(ima, (int)round, sizeof(ima));
        for (int i = 0; i < CRASH_NODES; i++) {
            make_round(&r[i], ids[i], round,
                       (round + (uint64_t)i) % 7 == 0 ? TC_NODE_UNTRUSTED : TC_NODE_TRUSTED);
            r[i].ima_state = ima;
            r[i].ima_state_len = sizeof(ima);
        }
        int rc = 0;
        if (round % 2) { /* alternate batched and single-node transactions */
            rc = tc_store_record_rounds(s, r, CRASH_NODES, NULL);
        } else {
            for (int i = 0; i < CRASH_NODES && rc == 0; i++)
                rc = tc_store_record_round(s, &r[i], NULL);
        }
        if (rc != 0)
            _exit(3);
        /* Reported only after the commit returned. */
        if (write(wfd, &round, sizeof(round)) != (ssize_t)sizeof(round))
            _exit(4);
    }
}

static void crash_safety_kill9(void **state)
{
    struct fx *f = *state;
    struct tc_store *s = NULL;
    struct tc_store_node n;
    int64_t id;
    const uint8_t secret[] = "s";
    int pfd[2];

    for (int trial = 0; trial < 3; trial++) {
        uint64_t committed = 0, v;
        char label[16];
        snprintf(label, sizeof(label), "crash_%d", trial);
        fx_new_db(f, label);
        s = open_store(f, NULL);
        for (int i = 0; i < CRASH_NODES; i++) {
            char nid[8];
            snprintf(nid, sizeof(nid), "c%d", i);
            make_node(&n, nid, TC_NODE_ENROLLED);
            assert_int_equal(tc_store_node_create(s, &n), 0);
        }
        assert_int_equal(tc_store_subscriber_add(s, "https://a", secret, 1, &id), 0);
        assert_int_equal(tc_store_subscriber_add(s, "https://b", secret, 1, &id), 0);
        tc_store_close(s);
        assert_int_equal(pipe(pfd), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(pfd[0]);
            crash_child(f, pfd[1]);
        }
        close(pfd[1]);
        /* Let it run a random-ish while, reading progress, then kill -9. */
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        long budget_ms = 200 + trial * 150;
        for (;;) {
            struct pollfd p = {.fd = pfd[0], .events = POLLIN};
            clock_gettime(CLOCK_MONOTONIC, &t1);
            long el = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
            if (el >= budget_ms)
                break;
            if (poll(&p, 1, (int)(budget_ms - el)) > 0 &&
                read(pfd[0], &v, sizeof(v)) == (ssize_t)sizeof(v))
                committed = v;
        }
        kill(pid, SIGKILL);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        while (read(pfd[0], &v, sizeof(v)) == (ssize_t)sizeof(v))
            committed = v;
        close(pfd[0]);
        assert_true(committed > 0);

        /* The kernel released the lock: the store reopens (recovering the WAL). */
        s = open_store(f, NULL);
        if (!pg) { /* PostgreSQL checks its foreign keys on every write */
            char ok[64];
            raw_exec(f, "PRAGMA integrity_check", ok, sizeof(ok));
            assert_string_equal(ok, "ok");
            assert_int_equal(q64(f, "SELECT count(*) FROM pragma_foreign_key_check"), 0);
        }
        /* Every committed round is there, complete, once. */
        assert_true(q64(f, "SELECT min(last_round) FROM nodes") >= (int64_t)committed);
        assert_int_equal(q64(f, "SELECT count(*) FROM (SELECT node_id, round FROM results "
                                "GROUP BY node_id, round HAVING count(*) > 1) d"),
                         0);
        assert_int_equal(q64(f, "SELECT count(*) FROM nodes n WHERE (SELECT count(*) FROM "
                                "results r WHERE r.node_id = n.id) != n.last_round"),
                         0);
        /* Node row and its last result row agree; quote info and IMA state are that round's. */
#define ROW_DISAGREES                                                                              \
    "SELECT count(*) FROM nodes n JOIN results r ON r.node_id = n.id AND r.round = n.last_round "  \
    "WHERE r.state != n.state OR r.reason_detail != n.reason_detail OR "                           \
    "n.ima_count != 10 * n.last_round OR length(n.ima_state) != 256 OR "
        assert_int_equal(
            q64(f, SQL(ROW_DISAGREES
                       "hex(substr(n.ima_state, 256, 1)) != printf('%02X', n.last_round % 256)",
                       ROW_DISAGREES "get_byte(n.ima_state, 255) != n.last_round % 256")),
            0);
        assert_int_equal(q64(f, "SELECT count(*) FROM nodes n JOIN results r ON r.node_id = n.id "
                                "AND r.round = n.last_round"),
                         CRASH_NODES);
        assert_int_equal(q64(f, "SELECT count(*) FROM nodes n WHERE n.clock != 2000 * last_round"),
                         0);
        /* One event per state change, two outbox rows per event. */
        assert_int_equal(q64(f, "SELECT count(*) FROM events"),
                         q64(f, "SELECT count(*) FROM results WHERE changed"));
        assert_int_equal(q64(f, "SELECT count(*) FROM deliveries"),
                         2 * q64(f, "SELECT count(*) FROM events"));
        /* The restarted store carries on: replay is a duplicate, the next round records. */
        struct tc_store_node g;
        struct tc_store_round r;
        struct tc_store_round_result res;
        assert_int_equal(tc_store_node_get(s, "c0", &g), 0);
        make_round(&r, "c0", g.last_round, TC_NODE_TRUSTED);
        assert_int_equal(tc_store_record_round(s, &r, &res), 0);
        assert_true(res.duplicate);
        make_round(&r, "c0", g.last_round + 1, TC_NODE_TRUSTED);
        assert_int_equal(tc_store_record_round(s, &r, &res), 0);
        assert_false(res.duplicate);
        print_message("crash trial %d: killed after %llu committed rounds, node at %llu\n", trial,
                      (unsigned long long)committed, (unsigned long long)g.last_round);
        tc_store_node_release(&g);
        tc_store_close(s);
    }
}

/* ---- throughput (printed, not asserted) ------------------------------------------------ */

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

#define BENCH_NODES 1000
#define BENCH_BATCH 500

static void bench_mode(struct fx *f, bool full)
{
    struct tc_store_options o = {.sync_full = full};
    struct tc_store *s = NULL;
    struct tc_store_node n;
    static struct tc_store_round r[BENCH_BATCH];
    static char ids[BENCH_NODES][16];
    uint8_t ima[200];
    uint64_t round = 1;
    memset(ima, 0x42, sizeof(ima));
    fx_new_db(f, full ? "bench_full" : "bench");
    assert_int_equal(tc_store_open(f->uri, &o, &s), 0);
    for (int i = 0; i < BENCH_NODES; i++) {
        snprintf(ids[i], sizeof(ids[i]), "node-%04d", i);
        make_node(&n, ids[i], TC_NODE_TRUSTED);
        assert_int_equal(tc_store_node_create(s, &n), 0);
    }
    /* Single-node transactions for ~0.5 s. */
    size_t done = 0;
    double t0 = now_s(), el;
    do {
        for (int k = 0; k < 50; k++, done++) {
            make_round(&r[0], ids[done % BENCH_NODES], round + done / BENCH_NODES, TC_NODE_TRUSTED);
            r[0].ima_state = ima;
            r[0].ima_state_len = sizeof(ima);
            assert_int_equal(tc_store_record_round(s, &r[0], NULL), 0);
        }
        el = now_s() - t0;
    } while (el < 0.5);
    double single = (double)done / el;
    round += done / BENCH_NODES + 1;
    /* Batches of BENCH_BATCH rounds per transaction for ~0.5 s. */
    size_t bdone = 0;
    t0 = now_s();
    do {
        for (int i = 0; i < BENCH_BATCH; i++) {
            size_t k = bdone + (size_t)i;
            make_round(&r[i], ids[k % BENCH_NODES], round + k / BENCH_NODES, TC_NODE_TRUSTED);
            r[i].ima_state = ima;
            r[i].ima_state_len = sizeof(ima);
        }
        assert_int_equal(tc_store_record_rounds(s, r, BENCH_BATCH, NULL), 0);
        bdone += BENCH_BATCH;
        el = now_s() - t0;
    } while (el < 0.5);
    double batched = (double)bdone / el;
    tc_store_close(s);
    /* A restart: open (WAL recovery, migrations check) and load every node. */
    int count = 0;
    t0 = now_s();
    assert_int_equal(tc_store_open(f->uri, &o, &s), 0);
    assert_int_equal(tc_store_node_list(s, count_node, &count), 0);
    double restart_ms = (now_s() - t0) * 1000;
    assert_int_equal(count, BENCH_NODES);
    tc_store_close(s);
    char mode[64];
    if (pg) {
        char sync[16];
        raw_exec(f, "SHOW synchronous_commit", sync, sizeof(sync));
        snprintf(mode, sizeof(mode), "postgresql, synchronous_commit=%s", sync);
    } else {
        snprintf(mode, sizeof(mode), "synchronous=%s", full ? "FULL" : "NORMAL");
    }
    print_message("store bench (%s, %d nodes): %.0f single-node rounds/s, "
                  "%.0f batched rounds/s (batch %d), reopen + load all nodes %.1f ms\n",
                  mode, BENCH_NODES, single, batched, BENCH_BATCH, restart_ms);
}

static void throughput(void **state)
{
    struct fx *f = *state;
    bench_mode(f, false);
    if (!pg) /* PostgreSQL's durability is the server's: sync_full changes nothing */
        bench_mode(f, true);
}

/* ---- PostgreSQL only: several coordinators, outages ------------------------------------ */

#define CW_WRITERS 4
#define CW_NODES 4
#define CW_BATCHES 150

/* Rounds of writer w's batch b: 1..CW_NODES, varying, so transactions of different lengths
 * overlap. Every round flips its node's state, so every round queues one event. */
static int cw_batch_len(int w, int b)
{
    return 1 + (b + w) % CW_NODES;
}

static void cw_writer(struct fx *f, int w)
{
    struct tc_store *s = NULL;
    struct tc_store_round r[CW_NODES];
    struct tc_store_round_result res[CW_NODES];
    char ids[CW_NODES][16];
    uint64_t round[CW_NODES] = {0};
    if (tc_store_open(f->uri, NULL, &s) != 0)
        _exit(2);
    for (int i = 0; i < CW_NODES; i++)
        snprintf(ids[i], sizeof(ids[i]), "w%d-%d", w, i);
    for (int b = 0; b < CW_BATCHES; b++) {
        int k = cw_batch_len(w, b);
        for (int i = 0; i < k; i++) {
            round[i]++;
            make_round(&r[i], ids[i], round[i], round[i] % 2 ? TC_NODE_TRUSTED : TC_NODE_UNTRUSTED);
        }
        int rc = k == 1 ? tc_store_record_round(s, r, res) : tc_store_record_rounds(s, r, k, res);
        if (rc != 0)
            _exit(3);
        for (int i = 0; i < k; i++)
            if (res[i].status != 0 || res[i].event_seq <= 0)
                _exit(4);
    }
    tc_store_close(s);
    _exit(0);
}

struct cw_seen {
    int64_t *seq;
    size_t n, cap;
};

/* Appends the events after *since to v, checking the stream only moves forward. */
static void cw_follow(struct tc_store *s, int64_t *since, struct cw_seen *v)
{
    struct tc_store_event *ev = NULL;
    size_t n = 0;
    do {
        assert_int_equal(tc_store_events_since(s, *since, 1000, &ev, &n), 0);
        for (size_t i = 0; i < n; i++) {
            assert_true(ev[i].seq > *since); /* never a repeat, never an older one */
            if (v->n == v->cap) {
                v->cap = v->cap ? v->cap * 2 : 1024;
                v->seq = realloc(v->seq, v->cap * sizeof(*v->seq));
                assert_non_null(v->seq);
            }
            v->seq[v->n++] = ev[i].seq;
            *since = ev[i].seq;
        }
        free(ev);
    } while (n == 1000);
}

/* Several coordinators (processes, one connection each) record rounds with events while a
 * reader follows the stream by seq: the follower must see every event exactly once, in the
 * order of the complete stream read afterwards, and each node's changes in their order. */
static void events_commit_ordered(void **state)
{
    struct fx *f = *state;
    struct tc_store *s = open_store(f, NULL);
    struct tc_store_node n;
    const uint8_t secret[] = "k";
    int64_t sub = 0, since = 0;
    pid_t pids[CW_WRITERS];
    struct cw_seen live = {0}, all = {0};
    size_t expect = 0;

    for (int w = 0; w < CW_WRITERS; w++)
        for (int i = 0; i < CW_NODES; i++) {
            char id[16];
            snprintf(id, sizeof(id), "w%d-%d", w, i);
            make_node(&n, id, TC_NODE_ENROLLED);
            assert_int_equal(tc_store_node_create(s, &n), 0);
        }
    assert_int_equal(tc_store_subscriber_add(s, "https://a", secret, 1, &sub), 0);
    for (int w = 0; w < CW_WRITERS; w++)
        for (int b = 0; b < CW_BATCHES; b++)
            expect += (size_t)cw_batch_len(w, b);
    for (int w = 0; w < CW_WRITERS; w++) {
        pids[w] = fork();
        assert_true(pids[w] >= 0);
        if (pids[w] == 0)
            cw_writer(f, w);
    }
    int running = CW_WRITERS, polls = 0;
    while (running > 0) {
        cw_follow(s, &since, &live);
        polls++;
        for (int w = 0; w < CW_WRITERS; w++) {
            int status;
            if (pids[w] > 0 && waitpid(pids[w], &status, WNOHANG) == pids[w]) {
                assert_true(WIFEXITED(status));
                assert_int_equal(WEXITSTATUS(status), 0);
                pids[w] = 0;
                running--;
            }
        }
    }
    cw_follow(s, &since, &live);
    int64_t from = 0;
    cw_follow(s, &from, &all);
    assert_int_equal(all.n, expect);
    assert_int_equal(live.n, all.n);
    assert_memory_equal(live.seq, all.seq, all.n * sizeof(*all.seq));
    int64_t last = 0;
    assert_int_equal(tc_store_events_last_seq(s, &last), 0);
    assert_int_equal(last, all.seq[all.n - 1]);
    /* Per node, the stream replays its changes in order; one outbox row per event. */
    assert_int_equal(q64(f, "SELECT count(*) FROM (SELECT node_id, seq, old_state, lag(new_state) "
                            "OVER (PARTITION BY node_id ORDER BY seq) AS prev FROM events) e "
                            "WHERE prev IS NOT NULL AND prev != old_state"),
                     0);
    assert_int_equal(q64(f, "SELECT count(*) FROM deliveries"), (int64_t)expect);
    print_message("commit-ordered stream: %zu events from %d writers, followed live in %d polls\n",
                  all.n, CW_WRITERS, polls);
    free(live.seq);
    free(all.seq);
    tc_store_close(s);
}

static void pg_server(const char *action)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "bash '%s' %s '%s'", getenv("TC_PG_SH"), action,
             getenv("TC_PG_DIR"));
    assert_int_equal(system(cmd), 0);
}

/* While the server is down every call fails with TC_ERR_IO (what the engine's fail-closed
 * handling waits for), none crashes; once it is back the same handle works again. */
static void outage_is_io_then_reconnects(void **state)
{
    struct fx *f = *state;
    struct tc_store *s = open_store(f, NULL), *other = NULL;
    struct tc_store_node n, g;
    struct tc_store_round r;
    struct tc_store_round_result res;
    struct tc_store_event *ev = NULL;
    size_t cnt = 0;
    int64_t last = 0;

    make_node(&n, "n1", TC_NODE_ENROLLED);
    assert_int_equal(tc_store_node_create(s, &n), 0);
    make_round(&r, "n1", 1, TC_NODE_TRUSTED);
    assert_int_equal(tc_store_record_round(s, &r, &res), 0);

    pg_server("stop");
    make_round(&r, "n1", 2, TC_NODE_UNTRUSTED);
    for (int i = 0; i < 3; i++) { /* again and again: each call tries to reconnect */
        assert_int_equal(tc_store_record_round(s, &r, &res), TC_ERR_IO);
        assert_int_equal(tc_store_record_rounds(s, &r, 1, &res), TC_ERR_IO);
        assert_int_equal(tc_store_node_get(s, "n1", &g), TC_ERR_IO);
        assert_int_equal(tc_store_events_since(s, 0, 10, &ev, &cnt), TC_ERR_IO);
        assert_int_equal(tc_store_events_last_seq(s, &last), TC_ERR_IO);
        int count = 0;
        assert_int_equal(tc_store_node_list(s, count_node, &count), TC_ERR_IO);
    }
    assert_int_equal(tc_store_open(f->uri, NULL, &other), TC_ERR_IO);
    assert_null(other);
    pg_server("start");

    /* The round that failed is recorded with its number: no gap, no duplicate. */
    assert_int_equal(tc_store_record_round(s, &r, &res), 0);
    assert_false(res.duplicate);
    assert_true(res.event_seq > 0);
    assert_int_equal(tc_store_node_get(s, "n1", &g), 0);
    assert_int_equal(g.last_round, 2);
    assert_int_equal(g.state, TC_NODE_UNTRUSTED);
    tc_store_node_release(&g);

    /* A restart between two calls (the handle's connection silently dead) costs nothing. */
    pg_server("stop");
    pg_server("start");
    make_round(&r, "n1", 3, TC_NODE_TRUSTED);
    assert_int_equal(tc_store_record_round(s, &r, &res), 0);
    assert_int_equal(tc_store_events_since(s, 0, 10, &ev, &cnt), 0);
    assert_int_equal(cnt, 3);
    free(ev);
    tc_store_close(s);
}

int main(void)
{
    const char *backend = getenv("TC_STORE_BACKEND");
    pg = backend != NULL && strcmp(backend, "postgresql") == 0;
    if (pg && (getenv("TC_PG_URI") == NULL || getenv("TC_PG_SH") == NULL)) {
        fprintf(stderr, "TC_STORE_BACKEND=postgresql: run under tests/lib/pg.sh run\n");
        return 1;
    }
    const struct CMUnitTest sqlite_only[] = {
        cmocka_unit_test_setup_teardown(damaged_database_is_refused, setup, teardown),
    };
    const struct CMUnitTest pg_only[] = {
        cmocka_unit_test_setup_teardown(events_commit_ordered, setup, teardown),
        cmocka_unit_test_setup_teardown(outage_is_io_then_reconnects, setup, teardown),
    };
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(migrations_from_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(newer_schema_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(vm_nodes, setup, teardown),
        cmocka_unit_test_setup_teardown(open_errors_and_single_writer_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(node_crud_hostile_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(reopen_keeps_data, setup, teardown),
        cmocka_unit_test_setup_teardown(policy_versioning_and_assignment, setup, teardown),
        cmocka_unit_test_setup_teardown(history_paging_events_and_idempotency, setup, teardown),
        cmocka_unit_test_setup_teardown(history_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(outbox_retry_scheduling, setup, teardown),
        cmocka_unit_test_setup_teardown(enrollment_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(failure_halfway_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(crash_safety_kill9, setup, teardown),
        cmocka_unit_test_setup_teardown(throughput, setup, teardown),
    };
    int failed = cmocka_run_group_tests_name(pg ? "store (postgresql)" : "store (sqlite)", tests,
                                             NULL, NULL);
    if (pg)
        failed += cmocka_run_group_tests_name("store (postgresql only)", pg_only, NULL, NULL);
    else
        failed += cmocka_run_group_tests_name("store (sqlite only)", sqlite_only, NULL, NULL);
    return failed;
}
