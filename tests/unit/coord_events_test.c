/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GET /v1/events is scoped to who asks (docs/protocol.md, "Events"), over real mTLS against an
 * in-process coordinator: two hosts, three VMs of tenants a and b written to the store, their
 * state changes made through the store (each one event). Shown: an operator reads every event; a
 * tenant only its VMs' (including across its hosts), a tenant without VMs none; a node only its
 * own, not its VMs'; other roles are refused. A tenant's long-poll is not answered by other
 * tenants' events, only by its own, and at its deadline it answers an empty list whose "last"
 * lets it go on past the hidden events. A scoped reader's answer looks at a bounded number of
 * events and its "last" moves on even when none was in scope. A VM id reused by another tenant
 * does not hand over the old VM's events. Hosts stay pending approval: the engine never
 * challenges them, so every event in the stream is one this test made.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "coord_fixture.h"
#include "coordinator/coord.h"
#include "trustcloud/error.h"
#include "trustcloud/pki.h"

static struct coord_fixture fx;
static char cert_a[512], key_a[512], cert_b[512], key_b[512], cert_c[512], key_c[512];
static char cert_h1[512], key_h1[512], cert_x[512], key_x[512];

/* A request with the given client certificate; returns the status, *out the JSON answer. */
static long req_as(struct coord *c, const char *cert, const char *key, const char *path,
                   json_t **out)
{
    char url[256];
    snprintf(url, sizeof(url), "https://127.0.0.1:%u%s", (unsigned)tc_httpd_port(c->httpd), path);
    struct tc_httpc_config cfg = {
        .cert_file = cert, .key_file = key, .ca_file = fx.cacert, .timeout_ms = 30000};
    long code = 0;
    uint8_t *resp = NULL;
    size_t rlen = 0;
    int rc = tc_httpc_request(&cfg, "GET", url, NULL, NULL, 0, &code, &resp, &rlen);
    if (out)
        *out = rc == 0 ? json_loadb((const char *)resp, rlen, 0, NULL) : NULL;
    free(resp);
    return rc == 0 ? code : -1;
}

static void node_create(struct coord *c, const char *id, const char *host, const char *tenant)
{
    struct tc_store_node n;
    memset(&n, 0, sizeof(n));
    snprintf(n.id, sizeof(n.id), "%s", id);
    n.state = TC_NODE_PENDING_APPROVAL;
    if (host) {
        n.is_vm = true;
        snprintf(n.host, sizeof(n.host), "%s", host);
        snprintf(n.tenant, sizeof(n.tenant), "%s", tenant);
    } else if (strcmp(id, "h1") == 0) { /* enrolled with node:h1's key: it may read events */
        X509 *cert = NULL;
        EVP_PKEY *key = NULL;
        assert_int_equal(tc_pki_cert_load(cert_h1, &cert), 0);
        assert_int_equal(tc_pki_cert_pubkey(cert, &key), 0);
        assert_int_equal(coord_spki_pin_hex(key, n.tls_cert_fp), 0);
        EVP_PKEY_free(key);
        X509_free(cert);
    }
    pthread_mutex_lock(&c->lock);
    assert_int_equal(tc_store_node_create(c->store, &n), 0);
    assert_int_equal(coord_engine_node_upsert(c, id), 0);
    pthread_mutex_unlock(&c->lock);
}

/* One event: the node's state flips between untrusted and unreachable (store only: the engine's
 * view stays pending approval, so it never challenges it). */
static void flip(struct coord *c, const char *id)
{
    struct tc_store_node n;
    memset(&n, 0, sizeof(n));
    pthread_mutex_lock(&c->lock);
    assert_int_equal(tc_store_node_get(c->store, id, &n), 0);
    n.state = n.state == TC_NODE_UNTRUSTED ? TC_NODE_UNREACHABLE : TC_NODE_UNTRUSTED;
    assert_int_equal(tc_store_node_update(c->store, &n), 0);
    pthread_mutex_unlock(&c->lock);
    tc_store_node_release(&n);
}

static int64_t last_seq(struct coord *c)
{
    int64_t s = 0;
    pthread_mutex_lock(&c->lock);
    assert_int_equal(tc_store_events_last_seq(c->store, &s), 0);
    pthread_mutex_unlock(&c->lock);
    return s;
}

/* "id,id,..." of an answer's events, in order. */
static const char *ids(const json_t *j)
{
    static char buf[4096];
    size_t i, off = 0;
    const json_t *e;
    buf[0] = 0;
    json_array_foreach(json_object_get(j, "events"), i, e)
    {
        off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%s", off ? "," : "",
                                json_string_value(json_object_get(e, "node_id")));
        if (off >= sizeof(buf))
            break;
    }
    return buf;
}

static int64_t last_of(const json_t *j)
{
    return (int64_t)json_integer_value(json_object_get(j, "last"));
}

struct poll_arg {
    struct coord *c;
    const char *cert, *key;
    char path[128];
    long status;
    json_t *answer;
    double answered_at;
};

static void *poll_thread(void *p)
{
    struct poll_arg *a = p;
    a->status = req_as(a->c, a->cert, a->key, a->path, &a->answer);
    a->answered_at = coord_fixture_now_s();
    return NULL;
}

static void events_scoped(void **state)
{
    (void)state;
    struct coord *c = coord_fixture_start(&fx);
    json_t *j = NULL;

    node_create(c, "h1", NULL, NULL);
    node_create(c, "h2", NULL, NULL);
    node_create(c, "va1", "h1", "a");
    node_create(c, "vb1", "h1", "b");
    node_create(c, "va2", "h2", "a");
    int64_t base = last_seq(c);
    flip(c, "h1");
    flip(c, "va1");
    flip(c, "vb1");
    flip(c, "h2");
    flip(c, "va2");
    flip(c, "vb1");
    int64_t end = last_seq(c);
    assert_int_equal(end - base, 6);

    char path[128];
    snprintf(path, sizeof(path), "/v1/events?since=%lld", (long long)base);
    assert_int_equal(coord_fixture_op(&fx, c, "GET", path, NULL, &j), 200);
    assert_string_equal(ids(j), "h1,va1,vb1,h2,va2,vb1");
    assert_int_equal(last_of(j), end);
    json_decref(j);

    /* A tenant: its VMs on both hosts, nothing of the hosts or of the other tenant. */
    assert_int_equal(req_as(c, cert_a, key_a, path, &j), 200);
    assert_string_equal(ids(j), "va1,va2");
    assert_int_equal(last_of(j), end); /* the hidden vb1 after va2 was looked at too */
    json_decref(j);
    assert_int_equal(req_as(c, cert_b, key_b, path, &j), 200);
    assert_string_equal(ids(j), "vb1,vb1");
    json_decref(j);
    /* A tenant without VMs sees nothing, and its cursor moves past what it cannot see. */
    assert_int_equal(req_as(c, cert_c, key_c, path, &j), 200);
    assert_string_equal(ids(j), "");
    assert_int_equal(last_of(j), end);
    json_decref(j);
    /* A node: only its own events, not its VMs'. */
    assert_int_equal(req_as(c, cert_h1, key_h1, path, &j), 200);
    assert_string_equal(ids(j), "h1");
    json_decref(j);
    /* The fixture's node:fake is no node of this coordinator, h2 was never enrolled with a key:
     * refused like other roles. */
    assert_int_equal(req_as(c, fx.ag_cert, fx.ag_key, path, &j), 403);
    json_decref(j);
    assert_int_equal(req_as(c, cert_x, key_x, path, &j), 403);
    assert_string_equal(json_string_value(json_object_get(j, "check")), "auth.events");
    json_decref(j);

    /* Long-poll: tenant b waits; tenant a's events do not answer it. */
    struct poll_arg pa = {.c = c, .cert = cert_b, .key = key_b};
    snprintf(pa.path, sizeof(pa.path), "/v1/events?since=%lld&wait=20", (long long)end);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, poll_thread, &pa), 0);
    usleep(300000);
    for (int i = 0; i < 5; i++) {
        flip(c, "va1");
        flip(c, "h1");
        usleep(100000);
    }
    usleep(300000);
    assert_null(pa.answer); /* still waiting */
    assert_int_equal(pa.status, 0);
    double t = coord_fixture_now_s();
    flip(c, "vb1");
    int64_t vb1_seq = last_seq(c);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(pa.status, 200);
    assert_string_equal(ids(pa.answer), "vb1");
    assert_int_equal(last_of(pa.answer), vb1_seq);
    print_message("tenant b's long-poll answered %.0f ms after its VM's event, after 10 others\n",
                  (pa.answered_at - t) * 1000);
    assert_true(pa.answered_at - t < 1.0);
    json_decref(pa.answer);

    /* At the deadline a waiter with only others' events answers an empty list and a "last"
     * past them, so the next poll does not look at them again. */
    memset(&pa, 0, sizeof(pa));
    pa.c = c;
    pa.cert = cert_b;
    pa.key = key_b;
    snprintf(pa.path, sizeof(pa.path), "/v1/events?since=%lld&wait=2", (long long)vb1_seq);
    t = coord_fixture_now_s();
    assert_int_equal(pthread_create(&th, NULL, poll_thread, &pa), 0);
    usleep(300000);
    flip(c, "va2");
    flip(c, "h2");
    int64_t hidden_end = last_seq(c);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(pa.status, 200);
    assert_string_equal(ids(pa.answer), "");
    assert_int_equal(last_of(pa.answer), hidden_end);
    assert_true(pa.answered_at - t >= 1.9);
    json_decref(pa.answer);

    /* A reused id: vb1 deleted, a new vb1 of tenant a: tenant a does not get the old one's
     * events, only the new one's. */
    pthread_mutex_lock(&c->lock);
    assert_int_equal(tc_store_node_delete(c->store, "vb1"), 0);
    coord_engine_node_remove(c, "vb1");
    pthread_mutex_unlock(&c->lock);
    usleep(200000); /* the engine reaps it */
    usleep(5000);
    node_create(c, "vb1", "h1", "a");
    int64_t reuse = last_seq(c);
    flip(c, "vb1");
    assert_int_equal(req_as(c, cert_a, key_a, "/v1/events?since=0", &j), 200);
    assert_string_equal(ids(j), "va1,va2,va1,va1,va1,va1,va1,va2,vb1");
    assert_int_equal(last_of(j), reuse + 1);
    json_decref(j);
    assert_int_equal(req_as(c, cert_b, key_b, "/v1/events?since=0", &j), 200);
    assert_string_equal(ids(j), ""); /* b has no VM any more */
    json_decref(j);

    /* Bounded work: a scoped answer looks at COORD_EVENTS_SCAN_MAX events at most, and its last
     * moves on by that much; following it reaches the end. */
    int64_t from = last_seq(c);
    for (int i = 0; i < COORD_EVENTS_SCAN_MAX + 50; i++)
        flip(c, "h2");
    flip(c, "va1");
    snprintf(path, sizeof(path), "/v1/events?since=%lld", (long long)from);
    assert_int_equal(req_as(c, cert_a, key_a, path, &j), 200);
    assert_string_equal(ids(j), "");
    assert_int_equal(last_of(j), from + COORD_EVENTS_SCAN_MAX);
    snprintf(path, sizeof(path), "/v1/events?since=%lld", (long long)last_of(j));
    json_decref(j);
    assert_int_equal(req_as(c, cert_a, key_a, path, &j), 200);
    assert_string_equal(ids(j), "va1");
    assert_int_equal(last_of(j), last_seq(c));
    json_decref(j);
    /* An operator's answer stops at 1000 events, as before. */
    snprintf(path, sizeof(path), "/v1/events?since=%lld", (long long)from);
    assert_int_equal(coord_fixture_op(&fx, c, "GET", path, NULL, &j), 200);
    assert_int_equal(json_array_size(json_object_get(j, "events")), 1000);
    assert_int_equal(last_of(j), from + 1000);
    json_decref(j);

    coord_fixture_stop(&fx, c);
}

static int setup(void **state)
{
    (void)state;
    if (coord_fixture_setup(&fx, "coord-events", "") != 0)
        return -1;
    struct tc_pki_ca *ca = NULL;
    assert_int_equal(tc_pki_ca_load(fx.ca_dir, &ca), 0);
    struct {
        const char *cn;
        char *cert, *key;
        const char *name;
    } who[] = {{"tenant:a", cert_a, key_a, "a"},
               {"tenant:b", cert_b, key_b, "b"},
               {"tenant:c", cert_c, key_c, "c"},
               {"node:h1", cert_h1, key_h1, "h1"},
               {"subscriber:x", cert_x, key_x, "x"}};
    for (size_t i = 0; i < sizeof(who) / sizeof(who[0]); i++) {
        char n[64];
        snprintf(n, sizeof(n), "%s.pem", who[i].name);
        coord_fixture_path(&fx, who[i].cert, n);
        snprintf(n, sizeof(n), "%s.key", who[i].name);
        coord_fixture_path(&fx, who[i].key, n);
        coord_fixture_issue(ca, who[i].cn, TC_PKI_USAGE_CLIENT, who[i].cert, who[i].key);
    }
    tc_pki_ca_free(ca);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    coord_fixture_cleanup(&fx);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(events_scoped),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
