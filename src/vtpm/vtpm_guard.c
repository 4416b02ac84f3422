/* SPDX-License-Identifier: Apache-2.0 */
/* The host's vTPM state guard: sealed state keys and rollback refusal (see
 * trustcloud/vtpm_guard.h). */
#define LOGMODULE "vtpm"
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/hashalg.h"
#include "trustcloud/log.h"
#include "trustcloud/tpm_seal.h"
#include "trustcloud/vtpm_guard.h"

#define MAC_KEY_LEN 32
#define HASH_LEN 32
#define DEFAULT_SEL "sha256:0,1,2,3,4,5,6,7"

/* Registry file: "TCVR" | u16 format (1) | u32 version high | u32 version low | u32 count |
 * count x (u8 id length | id | u8 flags | 32-byte state hash) | HMAC-SHA256 of all before.
 * Entries are sorted by id (strictly: no duplicates); the hash is all zeroes when FLAG_HASH is
 * clear. */
static const uint8_t reg_magic[4] = {'T', 'C', 'V', 'R'};
#define REG_FORMAT 1
#define REG_HEAD (4 + 2 + 8 + 4)
#define REG_ENTRY_MAX (1 + TC_VTPM_ID_MAX + 1 + HASH_LEN)
#define REG_MAX (REG_HEAD + (size_t)TC_VTPM_GUARD_MAX_VMS * REG_ENTRY_MAX + MAC_KEY_LEN)
#define FLAG_RUNNING 0x01u
#define FLAG_HASH 0x02u

#define REG_FILE "vtpm-registry"
#define REG_SEAL_FILE "registry.seal"
#define STATE_SEAL_FILE "state.seal"
#define STATE_DIR "state"

/* swtpm's state directory: a handful of files (permanent, volatile, savestate, lock). */
#define STATE_MAX_FILES 16
#define STATE_FILE_MAX (8u * 1024 * 1024)

struct guard_entry {
    char id[TC_VTPM_ID_MAX + 1];
    bool running;
    bool has_hash;
    uint8_t hash[HASH_LEN];
};

struct tc_vtpm_guard {
    struct tc_tpm *tpm;
    struct tc_tpm_key ek; /* a copy of the caller's description; the caller owns the handle */
    struct tc_pcr_set sel;
    char reg_path[PATH_MAX];
    char seal_path[PATH_MAX];
    uint8_t mac_key[MAC_KEY_LEN];
    uint64_t version;
    struct guard_entry *e; /* sorted by id */
    size_t n, cap;
};

static int path_join(char *out, size_t cap, const char *a, const char *b)
{
    int n = snprintf(out, cap, "%s/%s", a, b);
    return (n < 0 || (size_t)n >= cap) ? TC_ERR_INVALID_ARG : 0;
}

/* 1 regular file, 0 absent, negative error (something else is there). */
static int file_present(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : TC_ERR_IO;
    return S_ISREG(st.st_mode) ? 1 : TC_ERR_FORMAT;
}

/* Reads a regular file (never a FIFO or a device that could block or stream forever). */
static int read_regular(const char *path, size_t max, uint8_t **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    int p = file_present(path);
    if (p < 0)
        return p;
    if (p == 0)
        return TC_ERR_NOT_FOUND;
    return tc_file_read(path, max, data, len);
}

static void put_u32(struct tc_buf *b, uint32_t v, int *rc)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    if (*rc == 0)
        *rc = tc_buf_put(b, x, sizeof(x));
}

static int mac(const uint8_t *key, const uint8_t *data, size_t len, uint8_t out[HASH_LEN])
{
    unsigned int n = 0;
    if (HMAC(EVP_sha256(), key, MAC_KEY_LEN, data, len, out, &n) == NULL || n != HASH_LEN)
        return TC_ERR_CRYPTO;
    return 0;
}

static int registry_serialize(const struct tc_vtpm_guard *g, uint64_t version, struct tc_buf *b)
{
    uint8_t head[6] = {reg_magic[0], reg_magic[1], reg_magic[2], reg_magic[3], 0, REG_FORMAT};
    uint8_t tag[HASH_LEN];
    int rc = tc_buf_put(b, head, sizeof(head));
    put_u32(b, (uint32_t)(version >> 32), &rc);
    put_u32(b, (uint32_t)version, &rc);
    put_u32(b, (uint32_t)g->n, &rc);
    for (size_t i = 0; i < g->n && rc == 0; i++) {
        const struct guard_entry *e = &g->e[i];
        uint8_t idl = (uint8_t)strlen(e->id);
        uint8_t flags = (uint8_t)((e->running ? FLAG_RUNNING : 0) | (e->has_hash ? FLAG_HASH : 0));
        if ((rc = tc_buf_put(b, &idl, 1)) == 0 && (rc = tc_buf_put(b, e->id, idl)) == 0 &&
            (rc = tc_buf_put(b, &flags, 1)) == 0)
            rc = tc_buf_put(b, e->hash, HASH_LEN);
    }
    if (rc == 0 && (rc = mac(g->mac_key, b->data, b->len, tag)) == 0)
        rc = tc_buf_put(b, tag, sizeof(tag));
    return rc;
}

/* Parses registry bytes whose MAC was verified (still bounds-checked throughout: the MAC key
 * could be known to whoever wrote a bad file only if the host TPM unsealed it for them). */
static int registry_parse(struct tc_vtpm_guard *g, const uint8_t *data, size_t len,
                          uint64_t *version)
{
    struct tc_reader r;
    uint8_t m[4];
    uint16_t fmt;
    uint32_t hi, lo, count;
    int rc;

    tc_reader_init(&r, data, len);
    if ((rc = tc_reader_bytes(&r, m, sizeof(m))) != 0 || (rc = tc_reader_u16be(&r, &fmt)) != 0 ||
        (rc = tc_reader_u32be(&r, &hi)) != 0 || (rc = tc_reader_u32be(&r, &lo)) != 0 ||
        (rc = tc_reader_u32be(&r, &count)) != 0)
        return rc;
    if (memcmp(m, reg_magic, sizeof(m)) != 0)
        return TC_ERR_FORMAT;
    if (fmt != REG_FORMAT)
        return TC_ERR_UNSUPPORTED;
    if (count > TC_VTPM_GUARD_MAX_VMS)
        return TC_ERR_TOO_LARGE;
    struct guard_entry *es = count ? calloc(count, sizeof(*es)) : NULL;
    if (count && es == NULL)
        return TC_ERR_ALLOC;
    for (uint32_t i = 0; i < count; i++) {
        uint8_t idl, flags;
        struct guard_entry *e = &es[i];
        if ((rc = tc_reader_u8(&r, &idl)) != 0)
            goto fail;
        if (idl == 0 || idl > TC_VTPM_ID_MAX) {
            rc = TC_ERR_FORMAT;
            goto fail;
        }
        if ((rc = tc_reader_bytes(&r, e->id, idl)) != 0 || (rc = tc_reader_u8(&r, &flags)) != 0 ||
            (rc = tc_reader_bytes(&r, e->hash, HASH_LEN)) != 0)
            goto fail;
        e->id[idl] = '\0';
        e->running = (flags & FLAG_RUNNING) != 0;
        e->has_hash = (flags & FLAG_HASH) != 0;
        static const uint8_t zero[HASH_LEN];
        /* Only states the guard itself produces: a stopped VM always has a hash. */
        if (!tc_vtpm_id_valid(e->id) || (flags & ~(FLAG_RUNNING | FLAG_HASH)) != 0 ||
            (!e->running && !e->has_hash) ||
            (!e->has_hash && memcmp(e->hash, zero, HASH_LEN) != 0) ||
            (i > 0 && strcmp(es[i - 1].id, e->id) >= 0)) {
            rc = TC_ERR_FORMAT;
            goto fail;
        }
    }
    if (tc_reader_left(&r) != 0) {
        rc = TC_ERR_TRAILING;
        goto fail;
    }
    free(g->e);
    g->e = es;
    g->n = g->cap = count;
    *version = ((uint64_t)hi << 32) | lo;
    return 0;
fail:
    free(es);
    return rc;
}

/* Every registry write: the counter first, then the file with the counter's new value (see the
 * header for why in this order). */
static int registry_write(struct tc_vtpm_guard *g)
{
    struct tc_buf b;
    uint64_t v = 0;
    int rc;

    if ((rc = tc_tpm_nv_counter_increment(g->tpm, TC_TPM_NV_VTPM_COUNTER)) != 0 ||
        (rc = tc_tpm_nv_counter_read(g->tpm, TC_TPM_NV_VTPM_COUNTER, &v)) != 0) {
        LOG_ERROR("vTPM registry: the NV counter cannot be advanced (%s)", tc_strerror(rc));
        return rc;
    }
    if (v != g->version + 1)
        LOG_WARN("vTPM registry: the NV counter moved from %llu to %llu (someone else increments "
                 "it?)",
                 (unsigned long long)g->version, (unsigned long long)v);
    tc_buf_init(&b, REG_MAX);
    if ((rc = registry_serialize(g, v, &b)) == 0)
        rc = tc_file_write(g->reg_path, b.data, b.len, 0600);
    tc_buf_release(&b);
    if (rc != 0) {
        LOG_ERROR("vTPM registry: cannot write %s (%s); it is now older than the counter and will "
                  "be refused",
                  g->reg_path, tc_strerror(rc));
        return rc;
    }
    g->version = v;
    return 0;
}

static struct guard_entry *entry_find(const struct tc_vtpm_guard *g, const char *id, size_t *pos)
{
    size_t lo = 0, hi = g->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(g->e[mid].id, id);
        if (c == 0) {
            if (pos)
                *pos = mid;
            return &g->e[mid];
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (pos)
        *pos = lo;
    return NULL;
}

static int entry_insert(struct tc_vtpm_guard *g, size_t pos, const struct guard_entry *e)
{
    if (g->n == g->cap) {
        size_t ncap = g->cap ? g->cap * 2 : 16;
        struct guard_entry *ne = realloc(g->e, ncap * sizeof(*ne));
        if (ne == NULL)
            return TC_ERR_ALLOC;
        g->e = ne;
        g->cap = ncap;
    }
    memmove(&g->e[pos + 1], &g->e[pos], (g->n - pos) * sizeof(*e));
    g->e[pos] = *e;
    g->n++;
    return 0;
}

static void entry_remove(struct tc_vtpm_guard *g, size_t pos)
{
    memmove(&g->e[pos], &g->e[pos + 1], (g->n - pos - 1) * sizeof(g->e[0]));
    g->n--;
}

static int seal_to_file(struct tc_vtpm_guard *g, const char *path, const uint8_t *secret,
                        size_t len)
{
    uint8_t *blob = NULL;
    size_t blen = 0;
    int rc = tc_tpm_seal(g->tpm, &g->ek, &g->sel, secret, len, &blob, &blen);
    if (rc == 0)
        rc = tc_file_write(path, blob, blen, 0600);
    free(blob);
    return rc;
}

/* Unseals a 32-byte secret from path into out (written on success only). */
static int unseal_file(struct tc_vtpm_guard *g, const char *path, uint8_t out[32])
{
    uint8_t *blob = NULL, tmp[TC_TPM_SEAL_MAX_DATA];
    size_t blen = 0, n = 0;
    int rc = read_regular(path, TC_TPM_SEAL_BLOB_MAX, &blob, &blen);
    if (rc == TC_ERR_TOO_LARGE)
        LOG_ERROR("%s is larger than any sealed blob", path);
    if (rc == 0)
        rc = tc_tpm_unseal(g->tpm, &g->ek, blob, blen, tmp, sizeof(tmp), &n);
    if (rc == 0 && n != 32)
        rc = TC_ERR_FORMAT;
    if (rc == 0)
        memcpy(out, tmp, 32);
    OPENSSL_cleanse(tmp, sizeof(tmp));
    free(blob);
    return rc;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* SHA-256 over <vm_dir>/state/: for every regular file but swtpm's lock, in name order,
 * u8 name length | name | u32 size | contents. Anything but regular files there is refused:
 * swtpm makes none, and a symlink could point the hash somewhere else than what swtpm reads. */
static int state_hash(const char *vm_dir, uint8_t out[HASH_LEN], struct tc_reason *why)
{
    char dir[PATH_MAX], path[PATH_MAX];
    char *names[STATE_MAX_FILES];
    size_t n = 0;
    struct tc_hash_ctx *ctx = NULL;
    uint8_t *data = NULL;
    size_t len = 0;
    DIR *d = NULL;
    int rc;

    if ((rc = path_join(dir, sizeof(dir), vm_dir, STATE_DIR)) != 0)
        return rc;
    if ((d = opendir(dir)) == NULL)
        return tc_fail(why, errno == ENOENT ? TC_ERR_NOT_FOUND : TC_ERR_IO, "vtpm.state", -1,
                       "cannot open the vTPM state directory: %s", strerror(errno));
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
            strcmp(de->d_name, ".lock") == 0)
            continue;
        if (n == STATE_MAX_FILES) {
            rc = tc_fail(why, TC_ERR_TOO_LARGE, "vtpm.state", -1,
                         "more than %d files in the state directory", STATE_MAX_FILES);
            goto out;
        }
        if (strlen(de->d_name) > 255 || (names[n] = strdup(de->d_name)) == NULL) {
            rc = TC_ERR_ALLOC;
            goto out;
        }
        n++;
    }
    qsort(names, n, sizeof(names[0]), name_cmp);
    if ((rc = tc_hash_ctx_new(tc_hash_by_name("sha256"), &ctx)) != 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        if ((rc = path_join(path, sizeof(path), dir, names[i])) != 0)
            goto out;
        rc = read_regular(path, STATE_FILE_MAX, &data, &len);
        if (rc != 0) {
            rc = tc_fail(why, rc, "vtpm.state", -1, "state file %s: %s", names[i],
                         rc == TC_ERR_FORMAT ? "not a regular file" : tc_strerror(rc));
            goto out;
        }
        uint8_t nl = (uint8_t)strlen(names[i]);
        uint8_t sz[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                         (uint8_t)len};
        if ((rc = tc_hash_ctx_update(ctx, &nl, 1)) != 0 ||
            (rc = tc_hash_ctx_update(ctx, names[i], nl)) != 0 ||
            (rc = tc_hash_ctx_update(ctx, sz, sizeof(sz))) != 0 ||
            (rc = tc_hash_ctx_update(ctx, data, len)) != 0)
            goto out;
        free(data);
        data = NULL;
    }
    rc = tc_hash_ctx_final(ctx, out);
out:
    free(data);
    tc_hash_ctx_free(ctx);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    if (d != NULL)
        closedir(d);
    return rc;
}

/* First use: the counter, a fresh MAC key sealed to the host, an empty registry. */
static int guard_init(struct tc_vtpm_guard *g, struct tc_reason *why)
{
    int rc;
    if ((rc = tc_tpm_nv_counter_define(g->tpm, TC_TPM_NV_VTPM_COUNTER)) != 0 ||
        (rc = tc_tpm_nv_counter_read(g->tpm, TC_TPM_NV_VTPM_COUNTER, &g->version)) != 0)
        return tc_fail(why, rc, "vtpm.registry", -1, "cannot set up the NV counter 0x%08x",
                       TC_TPM_NV_VTPM_COUNTER);
    if (RAND_bytes(g->mac_key, sizeof(g->mac_key)) != 1)
        return tc_fail(why, TC_ERR_CRYPTO, "vtpm.registry", -1, "no random bytes for the MAC key");
    if ((rc = seal_to_file(g, g->seal_path, g->mac_key, sizeof(g->mac_key))) != 0)
        return tc_fail(why, rc, "vtpm.registry", -1, "cannot seal the registry MAC key");
    if ((rc = registry_write(g)) != 0)
        return tc_fail(why, rc, "vtpm.registry", -1, "cannot write the first registry");
    LOG_INFO("vTPM registry created (version %llu)", (unsigned long long)g->version);
    return 0;
}

static int guard_load(struct tc_vtpm_guard *g, struct tc_reason *why)
{
    uint8_t *data = NULL, tag[HASH_LEN];
    size_t len = 0;
    uint64_t version = 0, counter = 0;
    int rc;

    if ((rc = unseal_file(g, g->seal_path, g->mac_key)) != 0) {
        rc = tc_fail(why, rc, "vtpm.registry_unseal", -1,
                     "the registry MAC key does not unseal (%s): another host, or this host "
                     "booted into another state",
                     tc_strerror(rc));
        goto out;
    }
    if ((rc = read_regular(g->reg_path, REG_MAX, &data, &len)) != 0) {
        rc = tc_fail(why, rc, "vtpm.registry", -1, "cannot read %s", g->reg_path);
        goto out;
    }
    if (len < REG_HEAD + HASH_LEN) {
        rc = tc_fail(why, TC_ERR_TRUNCATED, "vtpm.registry", -1, "the registry is %zu bytes", len);
        goto out;
    }
    if ((rc = mac(g->mac_key, data, len - HASH_LEN, tag)) != 0)
        goto out;
    if (CRYPTO_memcmp(tag, data + len - HASH_LEN, HASH_LEN) != 0) {
        rc = tc_fail(why, TC_ERR_SIGNATURE, "vtpm.registry_mac", -1,
                     "the registry's MAC does not verify: it was changed outside the guard");
        goto out;
    }
    if ((rc = registry_parse(g, data, len - HASH_LEN, &version)) != 0) {
        rc = tc_fail(why, rc, "vtpm.registry", -1, "the registry is malformed");
        goto out;
    }
    rc = tc_tpm_nv_counter_read(g->tpm, TC_TPM_NV_VTPM_COUNTER, &counter);
    if (rc == TC_ERR_NOT_FOUND) {
        rc = tc_fail(why, TC_ERR_ROLLBACK, "vtpm.registry_rollback", -1,
                     "the NV counter 0x%08x is gone (TPM cleared or index deleted)",
                     TC_TPM_NV_VTPM_COUNTER);
        goto out;
    }
    if (rc != 0) {
        rc = tc_fail(why, rc, "vtpm.registry", -1, "cannot read the NV counter");
        goto out;
    }
    if (version != counter) {
        rc =
            tc_fail(why, TC_ERR_ROLLBACK, "vtpm.registry_rollback", -1,
                    "registry version %llu, NV counter %llu: %s", (unsigned long long)version,
                    (unsigned long long)counter,
                    version < counter ? "an older registry was put back" : "the counter is behind");
        goto out;
    }
    g->version = version;
out:
    free(data);
    return rc;
}

int tc_vtpm_guard_open(struct tc_tpm *tpm, const struct tc_tpm_key *ek, const char *guard_dir,
                       const struct tc_pcr_set *sel, struct tc_vtpm_guard **out,
                       struct tc_reason *why)
{
    struct tc_vtpm_guard *g = NULL;
    int rc;

    *out = NULL;
    tc_reason_clear(why);
    if (tpm == NULL || ek == NULL || ek->esys_handle == 0 || guard_dir == NULL)
        return TC_ERR_INVALID_ARG;
    if ((g = calloc(1, sizeof(*g))) == NULL)
        return TC_ERR_ALLOC;
    g->tpm = tpm;
    g->ek = *ek;
    if (sel != NULL)
        g->sel = *sel;
    else if ((rc = tc_pcrs_parse_selection(DEFAULT_SEL, &g->sel)) != 0)
        goto out;
    if ((rc = path_join(g->reg_path, sizeof(g->reg_path), guard_dir, REG_FILE)) != 0 ||
        (rc = path_join(g->seal_path, sizeof(g->seal_path), guard_dir, REG_SEAL_FILE)) != 0)
        goto out;
    int have_reg = file_present(g->reg_path), have_seal = file_present(g->seal_path);
    if (have_reg < 0 || have_seal < 0) {
        rc = tc_fail(why, TC_ERR_FORMAT, "vtpm.registry", -1, "%s or %s is not a regular file",
                     g->reg_path, g->seal_path);
        goto out;
    }
    if (have_reg == 0 && have_seal == 0)
        rc = guard_init(g, why);
    else if (have_reg == 0 || have_seal == 0)
        /* One without the other is a deletion (or a crash during the very first open): starting
         * over silently would forget every VM's state hash. */
        rc = tc_fail(why, TC_ERR_NOT_FOUND, "vtpm.registry", -1,
                     "%s is missing; remove %s too to start over (this forgets every vTPM)",
                     have_reg ? g->seal_path : g->reg_path, have_reg ? g->reg_path : g->seal_path);
    else
        rc = guard_load(g, why);
    if (rc != 0)
        goto out;
    *out = g;
    g = NULL;
out:
    tc_vtpm_guard_free(g);
    return rc;
}

void tc_vtpm_guard_free(struct tc_vtpm_guard *g)
{
    if (g == NULL)
        return;
    free(g->e);
    OPENSSL_cleanse(g, sizeof(*g));
    free(g);
}

int tc_vtpm_guard_new_key(struct tc_vtpm_guard *g, uint8_t key[TC_VTPM_KEY_LEN])
{
    if (g == NULL || key == NULL)
        return TC_ERR_INVALID_ARG;
    return RAND_bytes(key, TC_VTPM_KEY_LEN) == 1 ? 0 : TC_ERR_CRYPTO;
}

int tc_vtpm_guard_created(struct tc_vtpm_guard *g, const char *vm_id, const char *vm_dir,
                          const uint8_t key[TC_VTPM_KEY_LEN])
{
    char path[PATH_MAX];
    size_t pos;
    int rc;

    if (g == NULL || !tc_vtpm_id_valid(vm_id) || vm_dir == NULL || key == NULL)
        return TC_ERR_INVALID_ARG;
    if (entry_find(g, vm_id, &pos) != NULL) {
        LOG_ERROR("vTPM %s is registered already", vm_id);
        return TC_ERR_INVALID_ARG;
    }
    if (g->n >= TC_VTPM_GUARD_MAX_VMS)
        return TC_ERR_TOO_LARGE;
    if ((rc = path_join(path, sizeof(path), vm_dir, STATE_SEAL_FILE)) != 0)
        return rc;
    if ((rc = seal_to_file(g, path, key, TC_VTPM_KEY_LEN)) != 0) {
        LOG_ERROR("vTPM %s: cannot seal its state key (%s)", vm_id, tc_strerror(rc));
        return rc;
    }
    struct guard_entry e;
    memset(&e, 0, sizeof(e));
    memcpy(e.id, vm_id, strlen(vm_id) + 1);
    e.running = true;
    if ((rc = entry_insert(g, pos, &e)) != 0)
        return rc;
    if ((rc = registry_write(g)) != 0)
        entry_remove(g, pos);
    return rc;
}

int tc_vtpm_guard_start(struct tc_vtpm_guard *g, const char *vm_id, const char *vm_dir,
                        unsigned flags, uint8_t key[TC_VTPM_KEY_LEN], struct tc_reason *why)
{
    char path[PATH_MAX];
    uint8_t h[HASH_LEN], k[TC_VTPM_KEY_LEN];
    struct guard_entry *e;
    int rc;

    tc_reason_clear(why);
    if (g == NULL || !tc_vtpm_id_valid(vm_id) || vm_dir == NULL || key == NULL ||
        (flags & ~TC_VTPM_GUARD_FORCE) != 0)
        return TC_ERR_INVALID_ARG;
    if ((e = entry_find(g, vm_id, NULL)) == NULL)
        return tc_fail(why, TC_ERR_NOT_FOUND, "vtpm.unknown", -1,
                       "vTPM %s is not in this host's registry", vm_id);
    if (e->running && !(flags & TC_VTPM_GUARD_FORCE))
        return tc_fail(why, TC_ERR_POLICY, "vtpm.unclean", -1,
                       "vTPM %s was not stopped cleanly: its state cannot be checked against "
                       "rollback (force to accept it)",
                       vm_id);
    if (e->has_hash && !e->running) {
        if ((rc = state_hash(vm_dir, h, why)) != 0)
            return rc;
        if (CRYPTO_memcmp(h, e->hash, HASH_LEN) != 0)
            return tc_fail(why, TC_ERR_ROLLBACK, "vtpm.rollback", -1,
                           "vTPM %s: the state is not the one recorded at its last stop", vm_id);
    } else {
        LOG_WARN("vTPM %s: starting after an unclean stop (forced), state not checked", vm_id);
    }
    if ((rc = path_join(path, sizeof(path), vm_dir, STATE_SEAL_FILE)) != 0)
        return rc;
    if ((rc = unseal_file(g, path, k)) != 0)
        return tc_fail(why, rc, "vtpm.unseal", -1,
                       "vTPM %s: the state key does not unseal (%s): copied from another host, "
                       "or this host booted into another state",
                       vm_id, tc_strerror(rc));
    struct guard_entry old = *e;
    e->running = true;
    if ((rc = registry_write(g)) != 0) {
        *e = old;
        OPENSSL_cleanse(k, sizeof(k));
        return tc_fail(why, rc, "vtpm.registry", -1, "cannot record vTPM %s as running", vm_id);
    }
    memcpy(key, k, sizeof(k));
    OPENSSL_cleanse(k, sizeof(k));
    return 0;
}

int tc_vtpm_guard_stopped(struct tc_vtpm_guard *g, const char *vm_id, const char *vm_dir)
{
    uint8_t h[HASH_LEN];
    struct guard_entry *e;
    int rc;

    if (g == NULL || !tc_vtpm_id_valid(vm_id) || vm_dir == NULL)
        return TC_ERR_INVALID_ARG;
    if ((e = entry_find(g, vm_id, NULL)) == NULL)
        return TC_ERR_NOT_FOUND;
    if ((rc = state_hash(vm_dir, h, NULL)) != 0) {
        LOG_ERROR("vTPM %s: cannot hash its state (%s)", vm_id, tc_strerror(rc));
        return rc;
    }
    struct guard_entry old = *e;
    memcpy(e->hash, h, HASH_LEN);
    e->has_hash = true;
    e->running = false;
    if ((rc = registry_write(g)) != 0)
        *e = old;
    return rc;
}

int tc_vtpm_guard_forget(struct tc_vtpm_guard *g, const char *vm_id)
{
    size_t pos;
    int rc;

    if (g == NULL || !tc_vtpm_id_valid(vm_id))
        return TC_ERR_INVALID_ARG;
    struct guard_entry *e = entry_find(g, vm_id, &pos);
    if (e == NULL)
        return 0;
    struct guard_entry old = *e;
    entry_remove(g, pos);
    if ((rc = registry_write(g)) != 0 && entry_insert(g, pos, &old) != 0)
        LOG_ERROR("vTPM %s: lost from the in-memory registry", vm_id);
    return rc;
}

int tc_vtpm_guard_status(const struct tc_vtpm_guard *g, const char *vm_id, bool *running,
                         bool *has_hash)
{
    if (running)
        *running = false;
    if (has_hash)
        *has_hash = false;
    if (g == NULL || !tc_vtpm_id_valid(vm_id))
        return TC_ERR_INVALID_ARG;
    const struct guard_entry *e = entry_find(g, vm_id, NULL);
    if (e == NULL)
        return TC_ERR_NOT_FOUND;
    if (running)
        *running = e->running;
    if (has_hash)
        *has_hash = e->has_hash;
    return 0;
}

uint64_t tc_vtpm_guard_version(const struct tc_vtpm_guard *g)
{
    return g ? g->version : 0;
}
