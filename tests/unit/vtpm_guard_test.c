/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The vTPM state guard with real vTPMs (swtpm in TCP mode, state encrypted with the guard's key)
 * on a host TPM that is itself a swtpm (a second one plays another host): clean stop and start,
 * an older state copy put back, a VM directory moved to another host, host PCRs changed, the
 * registry rolled back or edited, and unclean stops.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/crypto.h>

#include "swtpm_fixture.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/hashalg.h"
#include "trustcloud/reason.h"
#include "trustcloud/tpm.h"
#include "trustcloud/tpm_seal.h"
#include "trustcloud/vtpm.h"
#include "trustcloud/vtpm_guard.h"

/* One host: its TPM (a swtpm), its EK, its agent's guard dir and vTPM base dir. */
struct host {
    struct swtpm sw;
    struct tc_tpm *tpm;
    struct tc_tpm_key ek;
    char guard_dir[300];
    char base[300];
};

static struct host host_a, host_b;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int host_up(struct host *h, const char *name)
{
    memset(h, 0, sizeof(*h));
    if (swtpm_new(&h->sw, name) != 0)
        return -1;
    snprintf(h->guard_dir, sizeof(h->guard_dir), "%s/guard", h->sw.dir);
    snprintf(h->base, sizeof(h->base), "%s/vms", h->sw.dir);
    if (mkdir(h->guard_dir, 0700) != 0 || mkdir(h->base, 0700) != 0)
        return -1;
    if (tc_tpm_open(h->sw.tcti, &h->tpm) != 0 || tc_tpm_ek_create(h->tpm, TC_KEY_ECC_P256, &h->ek))
        return -1;
    return 0;
}

static void host_down(struct host *h)
{
    /* vTPMs a failed test left running. */
    struct tc_vtpm_entry *list = NULL;
    size_t n = 0;
    if (h->base[0] && tc_vtpm_list(h->base, &list, &n) == 0) {
        for (size_t i = 0; i < n; i++) {
            struct tc_vtpm_config c = {.base_dir = h->base, .vm_id = list[i].id};
            struct tc_vtpm *v = NULL;
            if (tc_vtpm_open(&c, &v) == 0) {
                tc_vtpm_stop(v);
                tc_vtpm_free(v);
            }
        }
        free(list);
    }
    tc_tpm_key_release(h->tpm, &h->ek);
    tc_tpm_close(h->tpm);
    swtpm_free(&h->sw);
    memset(h, 0, sizeof(*h));
}

/* Every test gets fresh hosts: PCR changes and registry damage must not leak into the next. */
static int setup(void **state)
{
    (void)state;
    if (system("command -v swtpm >/dev/null") != 0 || host_up(&host_a, "tc-guard-a") != 0 ||
        host_up(&host_b, "tc-guard-b") != 0) {
        fprintf(stderr, "swtpm not available\n");
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    host_down(&host_a);
    host_down(&host_b);
    return 0;
}

static struct tc_vtpm_guard *guard_open(struct host *h)
{
    struct tc_vtpm_guard *g = NULL;
    struct tc_reason why;
    int rc = tc_vtpm_guard_open(h->tpm, &h->ek, h->guard_dir, NULL, &g, &why);
    if (rc != 0)
        fail_msg("guard open: %d %s: %s", rc, why.check, why.detail);
    return g;
}

/* Opening must fail with code and check. */
static void guard_open_refused(struct host *h, int code, const char *check)
{
    struct tc_vtpm_guard *g = (struct tc_vtpm_guard *)1;
    struct tc_reason why;
    int rc = tc_vtpm_guard_open(h->tpm, &h->ek, h->guard_dir, NULL, &g, &why);
    if (rc != code || strcmp(why.check, check) != 0)
        fail_msg("expected %s (%d), got %d %s: %s", check, code, rc, why.check, why.detail);
    assert_int_equal(why.code, code);
    assert_null(g);
}

static void vm_dir(const struct host *h, const char *id, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", h->base, id);
}

/* A new vTPM as the agent makes one: key from the guard, created encrypted, registered. */
static struct tc_vtpm *vm_create(struct host *h, struct tc_vtpm_guard *g, const char *id,
                                 uint8_t key[TC_VTPM_KEY_LEN])
{
    struct tc_vtpm *v = NULL;
    assert_int_equal(tc_vtpm_guard_new_key(g, key), 0);
    struct tc_vtpm_config c = {
        .base_dir = h->base, .vm_id = id, .mode = TC_VTPM_TCP, .state_key = key};
    assert_int_equal(tc_vtpm_create(&c, &v), 0);
    assert_int_equal(tc_vtpm_guard_created(g, id, tc_vtpm_dir(v), key), 0);
    bool running = false, has_hash = true;
    assert_int_equal(tc_vtpm_guard_status(g, id, &running, &has_hash), 0);
    assert_true(running);
    assert_false(has_hash);
    return v;
}

/* Something the vTPM keeps in its permanent state: its own NV counter goes up. Returns the new
 * value. */
static uint64_t vm_touch(struct tc_vtpm *v)
{
    struct tc_tpm *t = NULL;
    uint64_t val = 0;
    assert_int_equal(tc_tpm_open(tc_vtpm_tcti(v), &t), 0);
    assert_int_equal(tc_tpm_nv_counter_define(t, TC_TPM_NV_VTPM_COUNTER), 0);
    assert_int_equal(tc_tpm_nv_counter_increment(t, TC_TPM_NV_VTPM_COUNTER), 0);
    assert_int_equal(tc_tpm_nv_counter_read(t, TC_TPM_NV_VTPM_COUNTER, &val), 0);
    tc_tpm_close(t);
    return val;
}

static uint64_t vm_counter(struct tc_vtpm *v)
{
    struct tc_tpm *t = NULL;
    uint64_t val = 0;
    assert_int_equal(tc_tpm_open(tc_vtpm_tcti(v), &t), 0);
    assert_int_equal(tc_tpm_nv_counter_read(t, TC_TPM_NV_VTPM_COUNTER, &val), 0);
    tc_tpm_close(t);
    return val;
}

static void vm_stop(struct tc_vtpm_guard *g, struct tc_vtpm *v)
{
    assert_int_equal(tc_vtpm_stop(v), 0);
    assert_int_equal(tc_vtpm_guard_stopped(g, tc_vtpm_id(v), tc_vtpm_dir(v)), 0);
    bool running = true, has_hash = false;
    assert_int_equal(tc_vtpm_guard_status(g, tc_vtpm_id(v), &running, &has_hash), 0);
    assert_false(running);
    assert_true(has_hash);
}

/* The guard's start, then swtpm with the unsealed key: returns the running vTPM, or NULL with
 * the guard's refusal in *rc and why. */
static struct tc_vtpm *vm_start(struct host *h, struct tc_vtpm_guard *g, const char *id,
                                unsigned flags, int *rc, struct tc_reason *why)
{
    char dir[400];
    uint8_t key[TC_VTPM_KEY_LEN];
    struct tc_vtpm *v = NULL;
    vm_dir(h, id, dir, sizeof(dir));
    memset(key, 0, sizeof(key));
    *rc = tc_vtpm_guard_start(g, id, dir, flags, key, why);
    if (*rc != 0) {
        assert_int_equal(why->code, *rc);
        return NULL;
    }
    struct tc_vtpm_config c = {
        .base_dir = h->base, .vm_id = id, .mode = TC_VTPM_TCP, .state_key = key};
    assert_int_equal(tc_vtpm_open(&c, &v), 0);
    OPENSSL_cleanse(key, sizeof(key));
    /* swtpm decrypts its state only with the right key. */
    assert_int_equal(tc_vtpm_start(v), 0);
    return v;
}

static void assert_refused(int rc, const struct tc_reason *why, int code, const char *check)
{
    if (rc != code || strcmp(why->check, check) != 0)
        fail_msg("expected %s (%d), got %d %s: %s", check, code, rc, why->check, why->detail);
}

static void run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void run(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    assert_int_equal(system(cmd), 0);
}

static void assert_tpm_clean(struct host *h)
{
    size_t objects = 9, sessions = 9;
    assert_int_equal(tc_tpm_loaded_count(h->tpm, &objects, &sessions), 0);
    assert_int_equal(objects, 1); /* the EK */
    assert_int_equal(sessions, 0);
}

static void stop_start(void **state)
{
    (void)state;
    uint8_t key[TC_VTPM_KEY_LEN];
    struct tc_reason why;
    int rc;
    double t0 = now_ms();
    struct tc_vtpm_guard *g = guard_open(&host_a);
    printf("timing: first guard open (counter, MAC key) %.1f ms\n", now_ms() - t0);
    uint64_t v0 = tc_vtpm_guard_version(g);
    assert_true(v0 > 0);

    struct tc_vtpm *v = vm_create(&host_a, g, "vm1", key);
    assert_int_equal(tc_vtpm_guard_version(g), v0 + 1);
    char dir[400];
    vm_dir(&host_a, "vm1", dir, sizeof(dir));
    char seal[450];
    snprintf(seal, sizeof(seal), "%s/state.seal", dir);
    struct stat st;
    assert_int_equal(stat(seal, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    uint64_t c = vm_touch(v);
    t0 = now_ms();
    vm_stop(g, v);
    printf("timing: stop + record %.1f ms\n", now_ms() - t0);
    tc_vtpm_free(v);

    t0 = now_ms();
    v = vm_start(&host_a, g, "vm1", 0, &rc, &why);
    assert_non_null(v);
    printf("timing: guard start (hash, unseal, record) + swtpm start %.1f ms\n", now_ms() - t0);
    assert_int_equal(vm_counter(v), c);
    c = vm_touch(v);
    vm_stop(g, v);
    tc_vtpm_free(v);
    uint64_t ver = tc_vtpm_guard_version(g);
    tc_vtpm_guard_free(g);

    /* The agent restarts: the registry reopens with what it said. */
    t0 = now_ms();
    g = guard_open(&host_a);
    printf("timing: guard reopen (unseal, MAC, counter) %.1f ms\n", now_ms() - t0);
    assert_int_equal(tc_vtpm_guard_version(g), ver);
    v = vm_start(&host_a, g, "vm1", 0, &rc, &why);
    assert_non_null(v);
    assert_int_equal(vm_counter(v), c);
    /* Starting what runs already is an unclean start. */
    uint8_t k2[TC_VTPM_KEY_LEN];
    assert_refused(tc_vtpm_guard_start(g, "vm1", dir, 0, k2, &why), &why, TC_ERR_POLICY,
                   "vtpm.unclean");
    assert_int_equal(tc_vtpm_delete(v), 0);
    assert_int_equal(tc_vtpm_guard_forget(g, "vm1"), 0);
    assert_int_equal(tc_vtpm_guard_status(g, "vm1", NULL, NULL), TC_ERR_NOT_FOUND);
    assert_int_equal(tc_vtpm_guard_forget(g, "vm1"), 0); /* unknown: fine */
    assert_refused(tc_vtpm_guard_start(g, "vm1", dir, 0, k2, &why), &why, TC_ERR_NOT_FOUND,
                   "vtpm.unknown");
    assert_int_equal(tc_vtpm_guard_start(g, "../x", dir, 0, k2, &why), TC_ERR_INVALID_ARG);
    assert_tpm_clean(&host_a);
    tc_vtpm_guard_free(g);
    tc_vtpm_guard_free(NULL);
    OPENSSL_cleanse(key, sizeof(key));
}

static void old_state_refused(void **state)
{
    (void)state;
    uint8_t key[TC_VTPM_KEY_LEN];
    struct tc_reason why;
    char dir[400];
    int rc;
    struct tc_vtpm_guard *g = guard_open(&host_a);
    struct tc_vtpm *v = vm_create(&host_a, g, "vm2", key);
    vm_dir(&host_a, "vm2", dir, sizeof(dir));
    uint64_t old = vm_touch(v);
    vm_stop(g, v);
    tc_vtpm_free(v);
    /* The host keeps a copy of the stopped state... */
    run("cp -a '%s/state' '%s/state.old'", dir, dir);
    v = vm_start(&host_a, g, "vm2", 0, &rc, &why);
    assert_non_null(v);
    uint64_t newer = vm_touch(v);
    assert_true(newer > old);
    vm_stop(g, v);
    tc_vtpm_free(v);
    /* ...and puts it back: refused, and the VM stays stopped. */
    run("mv '%s/state' '%s/state.new' && cp -a '%s/state.old' '%s/state'", dir, dir, dir, dir);
    assert_null(vm_start(&host_a, g, "vm2", 0, &rc, &why));
    assert_refused(rc, &why, TC_ERR_ROLLBACK, "vtpm.rollback");
    bool running = true;
    assert_int_equal(tc_vtpm_guard_status(g, "vm2", &running, NULL), 0);
    assert_false(running);
    /* Forcing is for unclean stops only: it does not override a rollback. */
    assert_null(vm_start(&host_a, g, "vm2", TC_VTPM_GUARD_FORCE, &rc, &why));
    assert_refused(rc, &why, TC_ERR_ROLLBACK, "vtpm.rollback");
    /* A symlink in the state directory is refused too. */
    run("rm -rf '%s/state' && mkdir '%s/state' && ln -s '%s/state.new/tpm2-00.permall' "
        "'%s/state/tpm2-00.permall'",
        dir, dir, dir, dir);
    assert_null(vm_start(&host_a, g, "vm2", 0, &rc, &why));
    assert_refused(rc, &why, TC_ERR_FORMAT, "vtpm.state");
    /* The latest state is accepted again. */
    run("rm -rf '%s/state' && mv '%s/state.new' '%s/state'", dir, dir, dir);
    v = vm_start(&host_a, g, "vm2", 0, &rc, &why);
    assert_non_null(v);
    assert_int_equal(vm_counter(v), newer);
    assert_int_equal(tc_vtpm_delete(v), 0);
    assert_tpm_clean(&host_a);
    tc_vtpm_guard_free(g);
}

static void other_host_refused(void **state)
{
    (void)state;
    uint8_t key[TC_VTPM_KEY_LEN], dummy[TC_VTPM_KEY_LEN];
    struct tc_reason why;
    char dir_a[400], dir_b[400], scratch[400];
    int rc;
    struct tc_vtpm_guard *ga = guard_open(&host_a);
    struct tc_vtpm *v = vm_create(&host_a, ga, "vm3", key);
    vm_touch(v);
    vm_stop(ga, v);
    tc_vtpm_free(v);
    vm_dir(&host_a, "vm3", dir_a, sizeof(dir_a));
    vm_dir(&host_b, "vm3", dir_b, sizeof(dir_b));
    run("cp -a '%s' '%s'", dir_a, dir_b);

    /* Host B's guard knows nothing of vm3. */
    struct tc_vtpm_guard *gb = guard_open(&host_b);
    assert_null(vm_start(&host_b, gb, "vm3", 0, &rc, &why));
    assert_refused(rc, &why, TC_ERR_NOT_FOUND, "vtpm.unknown");
    /* Even registered on B with the copied state's hash (what a host B operator could do), the
     * key does not unseal there: it is sealed under host A's EK. */
    snprintf(scratch, sizeof(scratch), "%s/scratch", host_b.sw.dir);
    assert_int_equal(mkdir(scratch, 0700), 0);
    memset(dummy, 1, sizeof(dummy));
    assert_int_equal(tc_vtpm_guard_created(gb, "vm3", scratch, dummy), 0);
    assert_int_equal(tc_vtpm_guard_stopped(gb, "vm3", dir_b), 0);
    assert_null(vm_start(&host_b, gb, "vm3", 0, &rc, &why));
    assert_refused(rc, &why, TC_ERR_MISMATCH, "vtpm.unseal");
    /* Nor does the registry of A open with B's TPM. */
    run("cp '%s/registry.seal' '%s/vtpm-registry' '%s/'", host_a.guard_dir, host_a.guard_dir,
        scratch);
    struct tc_vtpm_guard *gx = (struct tc_vtpm_guard *)1;
    assert_int_equal(tc_vtpm_guard_open(host_b.tpm, &host_b.ek, scratch, NULL, &gx, &why),
                     TC_ERR_MISMATCH);
    assert_string_equal(why.check, "vtpm.registry_unseal");
    assert_null(gx);
    /* On A it still starts. */
    v = vm_start(&host_a, ga, "vm3", 0, &rc, &why);
    assert_non_null(v);
    assert_int_equal(tc_vtpm_delete(v), 0);
    assert_tpm_clean(&host_a);
    assert_tpm_clean(&host_b);
    tc_vtpm_guard_free(ga);
    tc_vtpm_guard_free(gb);
}

static void host_pcrs_changed(void **state)
{
    (void)state;
    uint8_t key[TC_VTPM_KEY_LEN];
    struct tc_reason why;
    int rc;
    struct tc_vtpm_guard *g = guard_open(&host_a);
    struct tc_vtpm *v = vm_create(&host_a, g, "vm4", key);
    vm_stop(g, v);
    tc_vtpm_free(v);
    /* The host "boots into another state": PCR 7 (Secure Boot policy) changes. */
    uint8_t digest[32];
    memset(digest, 0x77, sizeof(digest));
    assert_int_equal(tc_tpm_pcr_extend(host_a.tpm, 7, tc_hash_by_name("sha256"), digest), 0);
    assert_null(vm_start(&host_a, g, "vm4", 0, &rc, &why));
    assert_refused(rc, &why, TC_ERR_POLICY, "vtpm.unseal");
    tc_vtpm_guard_free(g);
    guard_open_refused(&host_a, TC_ERR_POLICY, "vtpm.registry_unseal");
    assert_tpm_clean(&host_a);

    /* A guard sealing to other PCRs (here sha256:16) is not affected by PCR 7. */
    struct tc_pcr_set sel;
    assert_int_equal(tc_pcrs_parse_selection("sha256:16", &sel), 0);
    char other[400];
    snprintf(other, sizeof(other), "%s/guard2", host_a.sw.dir);
    assert_int_equal(mkdir(other, 0700), 0);
    struct tc_vtpm_guard *g2 = NULL;
    assert_int_equal(tc_vtpm_guard_open(host_a.tpm, &host_a.ek, other, &sel, &g2, &why), 0);
    tc_vtpm_guard_free(g2);
    assert_int_equal(tc_vtpm_guard_open(host_a.tpm, &host_a.ek, other, &sel, &g2, &why), 0);
    tc_vtpm_guard_free(g2);
}

static void registry_rollback_refused(void **state)
{
    (void)state;
    uint8_t key[TC_VTPM_KEY_LEN];
    struct tc_reason why;
    int rc;
    struct tc_vtpm_guard *g = guard_open(&host_a);
    struct tc_vtpm *v = vm_create(&host_a, g, "vm5", key);
    char dir[400];
    vm_dir(&host_a, "vm5", dir, sizeof(dir));
    vm_stop(g, v);
    tc_vtpm_free(v);
    /* The attacker's plan: keep the registry and the state as they are now... */
    run("cp -a '%s/vtpm-registry' '%s/registry.old' && cp -a '%s/state' '%s/state.old'",
        host_a.guard_dir, host_a.guard_dir, dir, dir);
    v = vm_start(&host_a, g, "vm5", 0, &rc, &why);
    assert_non_null(v);
    vm_touch(v);
    vm_stop(g, v);
    tc_vtpm_free(v);
    tc_vtpm_guard_free(g);
    /* ...then put both back together, so that state and registry agree. */
    run("cp '%s/registry.old' '%s/vtpm-registry' && rm -rf '%s/state' && mv '%s/state.old' "
        "'%s/state'",
        host_a.guard_dir, host_a.guard_dir, dir, dir, dir);
    guard_open_refused(&host_a, TC_ERR_ROLLBACK, "vtpm.registry_rollback");

    /* Missing files: a registry without its key, a key without its registry. */
    run("mv '%s/registry.seal' '%s/seal.keep'", host_a.guard_dir, host_a.guard_dir);
    guard_open_refused(&host_a, TC_ERR_NOT_FOUND, "vtpm.registry");
    run("mv '%s/seal.keep' '%s/registry.seal' && rm '%s/vtpm-registry'", host_a.guard_dir,
        host_a.guard_dir, host_a.guard_dir);
    guard_open_refused(&host_a, TC_ERR_NOT_FOUND, "vtpm.registry");
    /* Something that is not a regular file. */
    run("mkfifo '%s/vtpm-registry'", host_a.guard_dir);
    guard_open_refused(&host_a, TC_ERR_FORMAT, "vtpm.registry");
    assert_tpm_clean(&host_a);
}

static void registry_edit_refused(void **state)
{
    (void)state;
    uint8_t key[TC_VTPM_KEY_LEN];
    struct tc_vtpm_guard *g = guard_open(&host_a);
    struct tc_vtpm *v = vm_create(&host_a, g, "vm6", key);
    vm_stop(g, v);
    tc_vtpm_free(v);
    tc_vtpm_guard_free(g);

    char path[400];
    uint8_t *data = NULL, *copy;
    size_t len = 0;
    snprintf(path, sizeof(path), "%s/vtpm-registry", host_a.guard_dir);
    assert_int_equal(tc_file_read(path, 1 << 20, &data, &len), 0);
    copy = malloc(len + 1);
    /* Every single-byte change (the running flag, the hash, the version, the MAC ...). */
    for (size_t i = 0; i < len; i++) {
        memcpy(copy, data, len);
        copy[i] ^= 0x01;
        assert_int_equal(tc_file_write(path, copy, len, 0600), 0);
        guard_open_refused(&host_a, TC_ERR_SIGNATURE, "vtpm.registry_mac");
    }
    /* Truncated and extended. */
    for (size_t n = 0; n < len; n += 7) {
        assert_int_equal(tc_file_write(path, data, n, 0600), 0);
        struct tc_vtpm_guard *gx = NULL;
        struct tc_reason why;
        int rc = tc_vtpm_guard_open(host_a.tpm, &host_a.ek, host_a.guard_dir, NULL, &gx, &why);
        assert_true(rc == TC_ERR_TRUNCATED || rc == TC_ERR_SIGNATURE);
        assert_null(gx);
    }
    memcpy(copy, data, len);
    copy[len] = 0;
    assert_int_equal(tc_file_write(path, copy, len + 1, 0600), 0);
    guard_open_refused(&host_a, TC_ERR_SIGNATURE, "vtpm.registry_mac");
    /* The original still opens. */
    assert_int_equal(tc_file_write(path, data, len, 0600), 0);
    g = guard_open(&host_a);
    tc_vtpm_guard_free(g);
    assert_tpm_clean(&host_a);
    free(copy);
    free(data);
}

static void unclean_stop(void **state)
{
    (void)state;
    uint8_t key[TC_VTPM_KEY_LEN];
    struct tc_reason why;
    int rc;
    struct tc_vtpm_guard *g = guard_open(&host_a);
    struct tc_vtpm *v = vm_create(&host_a, g, "vm7", key);
    uint64_t c = vm_touch(v);
    /* The agent dies while the VM runs; swtpm goes down with the host. */
    assert_int_equal(tc_vtpm_stop(v), 0);
    tc_vtpm_free(v);
    tc_vtpm_guard_free(g);
    g = guard_open(&host_a);
    assert_null(vm_start(&host_a, g, "vm7", 0, &rc, &why));
    assert_refused(rc, &why, TC_ERR_POLICY, "vtpm.unclean");
    /* The operator accepts the state as it is. */
    v = vm_start(&host_a, g, "vm7", TC_VTPM_GUARD_FORCE, &rc, &why);
    assert_non_null(v);
    assert_int_equal(vm_counter(v), c);
    /* From the next clean stop on, the rollback check is back. */
    vm_stop(g, v);
    tc_vtpm_free(v);
    v = vm_start(&host_a, g, "vm7", 0, &rc, &why);
    assert_non_null(v);
    assert_int_equal(tc_vtpm_delete(v), 0);
    assert_int_equal(tc_vtpm_guard_forget(g, "vm7"), 0);
    tc_vtpm_guard_free(g);
}

static void many_vms(void **state)
{
    (void)state;
    uint8_t key[TC_VTPM_KEY_LEN];
    char dir[400];
    struct tc_vtpm_guard *g = guard_open(&host_a);
    /* Registry entries only (no swtpm): the registry stays sorted and round-trips. */
    snprintf(dir, sizeof(dir), "%s/many", host_a.sw.dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    run("mkdir '%s/state' && echo x > '%s/state/tpm2-00.permall'", dir, dir);
    memset(key, 3, sizeof(key));
    double t0 = now_ms();
    for (int i = 40; i > 0; i--) {
        char id[16];
        snprintf(id, sizeof(id), "vm-%02d", i);
        assert_int_equal(tc_vtpm_guard_created(g, id, dir, key), 0);
        if (i % 2)
            assert_int_equal(tc_vtpm_guard_stopped(g, id, dir), 0);
    }
    printf("timing: %.1f ms per created (seal + registry write)\n", (now_ms() - t0) / 40);
    assert_int_equal(tc_vtpm_guard_created(g, "vm-07", dir, key), TC_ERR_INVALID_ARG);
    assert_int_equal(tc_vtpm_guard_created(g, "a/b", dir, key), TC_ERR_INVALID_ARG);
    assert_int_equal(tc_vtpm_guard_stopped(g, "nope", dir), TC_ERR_NOT_FOUND);
    uint64_t ver = tc_vtpm_guard_version(g);
    tc_vtpm_guard_free(g);
    g = guard_open(&host_a);
    assert_int_equal(tc_vtpm_guard_version(g), ver);
    for (int i = 1; i <= 40; i++) {
        char id[16];
        bool running, has_hash;
        snprintf(id, sizeof(id), "vm-%02d", i);
        assert_int_equal(tc_vtpm_guard_status(g, id, &running, &has_hash), 0);
        assert_int_equal(running, !(i % 2));
        assert_int_equal(has_hash, i % 2);
    }
    assert_int_equal(tc_vtpm_guard_forget(g, "vm-20"), 0);
    tc_vtpm_guard_free(g);
    g = guard_open(&host_a);
    assert_int_equal(tc_vtpm_guard_status(g, "vm-20", NULL, NULL), TC_ERR_NOT_FOUND);
    assert_int_equal(tc_vtpm_guard_status(g, "vm-21", NULL, NULL), 0);
    assert_tpm_clean(&host_a);
    tc_vtpm_guard_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(stop_start, setup, teardown),
        cmocka_unit_test_setup_teardown(old_state_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(other_host_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(host_pcrs_changed, setup, teardown),
        cmocka_unit_test_setup_teardown(registry_rollback_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(registry_edit_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(unclean_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(many_vms, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
