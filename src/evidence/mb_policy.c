/* SPDX-License-Identifier: Apache-2.0 */
/* Measured-boot reference policies: generation from a known-good log, JSON, checking. */
#define LOGMODULE "mb_policy"
#include "trustcloud/mb_policy.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"

#define CHECK_POLICY "mb.policy"
#define CMDLINE_PREFIX "kernel_cmdline: "
#define CMDLINE_PCR 8
#define BOOT_APP_PCR 4
#define SECUREBOOT_PCR 7

/* EFI_CERT_SHA256_GUID c1c41626-504c-4092-aca9-41f936934328, in-memory order. */
static const uint8_t GUID_CERT_SHA256[16] = {0x26, 0x16, 0xc4, 0xc1, 0x4c, 0x50, 0x92, 0x40,
                                             0xac, 0xa9, 0x41, 0xf9, 0x36, 0x93, 0x43, 0x28};

int tc_mb_policy_new(struct tc_mb_policy **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : TC_ERR_ALLOC;
}

static void hashes_release(struct tc_mb_hashes *h)
{
    free(h->h);
    memset(h, 0, sizeof(*h));
}

void tc_mb_policy_free(struct tc_mb_policy *p)
{
    if (p == NULL)
        return;
    hashes_release(&p->pk);
    hashes_release(&p->kek);
    hashes_release(&p->db);
    hashes_release(&p->dbx_contains);
    for (size_t i = 0; i < p->nboot_app_banks; i++)
        free(p->boot_apps[i].d);
    for (size_t i = 0; i < p->ncmdlines; i++)
        free(p->cmdlines[i]);
    free(p->cmdlines);
    free(p);
}

/* ---- small containers ---- */

static bool hashes_has(const struct tc_mb_hashes *h, const uint8_t v[32])
{
    for (size_t i = 0; i < h->n; i++)
        if (memcmp(h->h[i], v, 32) == 0)
            return true;
    return false;
}

static int hashes_add(struct tc_mb_hashes *h, const uint8_t v[32])
{
    h->set = true;
    if (hashes_has(h, v))
        return 0;
    if (h->n == TC_MB_POLICY_MAX_LIST)
        return TC_ERR_TOO_LARGE;
    uint8_t(*n)[32] = realloc(h->h, (h->n + 1) * 32);
    if (n == NULL)
        return TC_ERR_ALLOC;
    h->h = n;
    memcpy(h->h[h->n++], v, 32);
    return 0;
}

static struct tc_mb_digests *digests_bank(struct tc_mb_policy *p, const struct tc_hash_alg *alg)
{
    for (size_t i = 0; i < p->nboot_app_banks; i++)
        if (p->boot_apps[i].alg == alg)
            return &p->boot_apps[i];
    if (p->nboot_app_banks == TC_MAX_BANKS)
        return NULL;
    struct tc_mb_digests *d = &p->boot_apps[p->nboot_app_banks++];
    memset(d, 0, sizeof(*d));
    d->alg = alg;
    return d;
}

static bool digests_has(const struct tc_mb_digests *d, const uint8_t *v)
{
    for (size_t i = 0; i < d->n; i++)
        if (memcmp(d->d + i * d->alg->size, v, d->alg->size) == 0)
            return true;
    return false;
}

static int digests_add(struct tc_mb_digests *d, const uint8_t *v)
{
    if (digests_has(d, v))
        return 0;
    if (d->n == TC_MB_POLICY_MAX_LIST)
        return TC_ERR_TOO_LARGE;
    uint8_t *n = realloc(d->d, (d->n + 1) * d->alg->size);
    if (n == NULL)
        return TC_ERR_ALLOC;
    d->d = n;
    memcpy(d->d + d->n++ * d->alg->size, v, d->alg->size);
    return 0;
}

static int cmdlines_add(struct tc_mb_policy *p, const char *s)
{
    p->has_cmdlines = true;
    for (size_t i = 0; i < p->ncmdlines; i++)
        if (strcmp(p->cmdlines[i], s) == 0)
            return 0;
    if (p->ncmdlines == TC_MB_POLICY_MAX_LIST)
        return TC_ERR_TOO_LARGE;
    char **n = realloc(p->cmdlines, (p->ncmdlines + 1) * sizeof(*n));
    if (n == NULL)
        return TC_ERR_ALLOC;
    p->cmdlines = n;
    if ((p->cmdlines[p->ncmdlines] = strdup(s)) == NULL)
        return TC_ERR_ALLOC;
    p->ncmdlines++;
    return 0;
}

/* ---- event helpers ---- */

/* Every known digest of ev must equal the hash of data[0..n) (or of data[0..n2) when n2 is
 * nonzero: grub measures its strings with or without the NUL depending on version). */
static int verify_digests(const struct tc_evlog_event *ev, const uint8_t *data, size_t n, size_t n2,
                          struct tc_reason *why)
{
    size_t known = 0;
    for (size_t i = 0; i < ev->ndigests; i++) {
        const struct tc_evlog_digest *d = &ev->digests[i];
        uint8_t h[TC_MAX_DIGEST];
        int rc;
        if (d->hash == NULL)
            continue;
        known++;
        if ((rc = tc_hash(d->hash, data, n, h)) != 0)
            return tc_fail(why, rc, "mb.event_digest", (long)ev->index, "hashing failed");
        if (CRYPTO_memcmp(h, d->value, d->size) == 0)
            continue;
        if (n2 && (rc = tc_hash(d->hash, data, n2, h)) != 0)
            return tc_fail(why, rc, "mb.event_digest", (long)ev->index, "hashing failed");
        if (n2 && CRYPTO_memcmp(h, d->value, d->size) == 0)
            continue;
        return tc_fail(why, TC_ERR_POLICY, "mb.event_digest", (long)ev->index,
                       "%s digest of the event does not match its data", d->hash->name);
    }
    if (known == 0)
        return tc_fail(why, TC_ERR_POLICY, "mb.event_digest", (long)ev->index,
                       "event has no digest in a known algorithm");
    return 0;
}

/* Decodes a PCR 7 EV_EFI_VARIABLE_DRIVER_CONFIG event whose digests match its data. Returns 1
 * with d filled when ev is such an event, 0 when it is not one, or an error. */
static int secure_var(const struct tc_evlog *log, const struct tc_evlog_event *ev,
                      struct tc_evlog_decoded *d, struct tc_reason *why)
{
    int rc;
    memset(d, 0, sizeof(*d));
    if (ev->pcr != SECUREBOOT_PCR || ev->type != TC_EV_EFI_VARIABLE_DRIVER_CONFIG)
        return 0;
    if ((rc = tc_evlog_decode(log, ev, d)) != 0) {
        if (rc == TC_ERR_ALLOC)
            return rc;
        return tc_fail(why, TC_ERR_POLICY, "mb.secureboot", (long)ev->index,
                       "malformed UEFI variable event (%s)", tc_strerror(rc));
    }
    if (d->var == TC_VAR_OTHER || d->var == TC_VAR_BOOTORDER || d->var == TC_VAR_BOOTNNNN) {
        tc_evlog_decoded_release(d);
        return 0;
    }
    if ((rc = verify_digests(ev, ev->data, ev->data_len, 0, why)) != 0) {
        tc_evlog_decoded_release(d);
        return rc;
    }
    return 1;
}

/* Calls fn for the SHA-256 identity of every EFI_SIGNATURE_DATA in an EFI_SIGNATURE_LIST
 * sequence. TC_ERR_FORMAT when the lists are malformed. */
static int foreach_signature(const uint8_t *data, size_t len,
                             int (*fn)(void *ctx, const uint8_t h[32]), void *ctx)
{
    const struct tc_hash_alg *sha256 = tc_hash_by_name("sha256");
    struct tc_reader r;
    size_t count = 0;
    int rc;
    tc_reader_init(&r, data, len);
    while (tc_reader_left(&r) > 0) {
        uint8_t type[16];
        uint32_t lsize, hsize, ssize;
        struct tc_reader list;
        if ((rc = tc_reader_bytes(&r, type, 16)) || (rc = tc_reader_u32le(&r, &lsize)) ||
            (rc = tc_reader_u32le(&r, &hsize)) || (rc = tc_reader_u32le(&r, &ssize)))
            return rc;
        if (lsize < 28 || ssize < 16 || (rc = tc_reader_sub(&r, lsize - 28, &list)) != 0 ||
            (rc = tc_reader_skip(&list, hsize)) != 0 || tc_reader_left(&list) % ssize != 0)
            return TC_ERR_FORMAT;
        while (tc_reader_left(&list) > 0) {
            const uint8_t *sig;
            uint8_t h[32];
            if (++count > TC_MB_POLICY_MAX_LIST)
                return TC_ERR_TOO_LARGE;
            if ((rc = tc_reader_skip(&list, 16)) || (rc = tc_reader_view(&list, ssize - 16, &sig)))
                return rc;
            if (memcmp(type, GUID_CERT_SHA256, 16) == 0 && ssize - 16 == 32)
                memcpy(h, sig, 32);
            else if ((rc = tc_hash(sha256, sig, ssize - 16, h)) != 0)
                return rc;
            if ((rc = fn(ctx, h)) != 0)
                return rc;
        }
    }
    return 0;
}

static int add_to_hashes(void *ctx, const uint8_t h[32])
{
    return hashes_add(ctx, h);
}

/* The text after "kernel_cmdline: " of a PCR 8 EV_IPL event, or NULL when ev is not one. */
static bool is_cmdline(const struct tc_evlog_event *ev)
{
    size_t n = strlen(CMDLINE_PREFIX);
    return ev->pcr == CMDLINE_PCR && ev->type == TC_EV_IPL && ev->data_len >= n &&
           memcmp(ev->data, CMDLINE_PREFIX, n) == 0;
}

static int cmdline_text(const struct tc_evlog *log, const struct tc_evlog_event *ev, char **out,
                        struct tc_reason *why)
{
    struct tc_evlog_decoded d;
    size_t n = strlen(CMDLINE_PREFIX);
    size_t len = ev->data_len - n;
    int rc;
    *out = NULL;
    /* The digest covers the string without the prefix, with or without its NUL. */
    size_t without_nul = len > 0 && ev->data[ev->data_len - 1] == 0 ? len - 1 : len;
    if ((rc = verify_digests(ev, ev->data + n, without_nul, len != without_nul ? len : 0, why)))
        return rc;
    if ((rc = tc_evlog_decode(log, ev, &d)) != 0)
        return rc == TC_ERR_ALLOC ? rc : TC_ERR_POLICY;
    if (d.text == NULL || strlen(d.text) < n) {
        tc_evlog_decoded_release(&d);
        return tc_fail(why, TC_ERR_POLICY, "mb.kernel_cmdline", (long)ev->index,
                       "unreadable command line");
    }
    *out = strdup(d.text + n);
    tc_evlog_decoded_release(&d);
    return *out ? 0 : TC_ERR_ALLOC;
}

/* ---- generation ---- */

int tc_mb_policy_from_eventlog(const struct tc_evlog *log, const struct tc_pcr_set *replayed,
                               struct tc_mb_policy **out, struct tc_reason *why)
{
    struct tc_mb_policy *p = NULL;
    struct tc_evlog_decoded d = {0};
    struct tc_mb_hashes pk = {0}, kek = {0}, db = {0}, dbx = {0};
    bool sb_seen = false, sb_on = true;
    char *cmd = NULL;
    int rc;

    *out = NULL;
    if ((rc = tc_mb_policy_new(&p)) != 0)
        goto out;
    p->pcrs = *replayed;
    for (size_t i = 0; i < log->nevents; i++) {
        const struct tc_evlog_event *ev = &log->events[i];
        if ((rc = secure_var(log, ev, &d, why)) < 0)
            goto out;
        if (rc == 1) {
            struct tc_mb_hashes *dst = d.var == TC_VAR_PK    ? &pk
                                       : d.var == TC_VAR_KEK ? &kek
                                       : d.var == TC_VAR_DB  ? &db
                                       : d.var == TC_VAR_DBX ? &dbx
                                                             : NULL;
            if (d.var == TC_VAR_SECUREBOOT) {
                sb_seen = true;
                sb_on = sb_on && d.var_data_len == 1 && d.var_data[0] == 1;
            } else if (dst != NULL) {
                dst->set = true;
                rc = foreach_signature(d.var_data, d.var_data_len, add_to_hashes, dst);
                if (rc != 0) {
                    rc = tc_fail(why, rc == TC_ERR_ALLOC ? rc : TC_ERR_FORMAT, "mb.secureboot",
                                 (long)i, "malformed signature list in %s", d.var_name);
                    goto out;
                }
            }
            tc_evlog_decoded_release(&d);
        }
        if (ev->pcr == BOOT_APP_PCR && ev->type == TC_EV_EFI_BOOT_SERVICES_APPLICATION) {
            for (size_t k = 0; k < ev->ndigests; k++) {
                struct tc_mb_digests *b;
                if (ev->digests[k].hash == NULL)
                    continue;
                if ((b = digests_bank(p, ev->digests[k].hash)) == NULL) {
                    rc = TC_ERR_INTERNAL;
                    goto out;
                }
                if ((rc = digests_add(b, ev->digests[k].value)) != 0)
                    goto out;
            }
        }
        if (is_cmdline(ev)) {
            if ((rc = cmdline_text(log, ev, &cmd, why)) != 0 || (rc = cmdlines_add(p, cmd)) != 0)
                goto out;
            free(cmd);
            cmd = NULL;
        }
    }
    if (sb_seen && sb_on) {
        p->require_secureboot = true;
        p->pk = pk, p->kek = kek, p->db = db, p->dbx_contains = dbx;
        memset(&pk, 0, sizeof(pk)), memset(&kek, 0, sizeof(kek));
        memset(&db, 0, sizeof(db)), memset(&dbx, 0, sizeof(dbx));
    }
    *out = p;
    p = NULL;
    rc = 0;
out:
    if (rc != 0 && why != NULL && why->code == 0)
        tc_fail(why, rc, CHECK_POLICY, -1, "cannot build the policy");
    free(cmd);
    tc_evlog_decoded_release(&d);
    hashes_release(&pk), hashes_release(&kek), hashes_release(&db), hashes_release(&dbx);
    tc_mb_policy_free(p);
    return rc;
}

/* ---- checking ---- */

struct sig_check {
    const struct tc_mb_hashes *allowed;
    uint8_t bad[32];
};

static int check_allowed(void *ctx, const uint8_t h[32])
{
    struct sig_check *c = ctx;
    if (hashes_has(c->allowed, h))
        return 0;
    memcpy(c->bad, h, 32);
    return TC_ERR_POLICY;
}

static int check_secure_var(const struct tc_mb_policy *p, const struct tc_evlog_event *ev,
                            const struct tc_evlog_decoded *d, struct tc_mb_hashes *dbx_seen,
                            struct tc_reason *why)
{
    const struct tc_mb_hashes *allowed = d->var == TC_VAR_PK    ? &p->pk
                                         : d->var == TC_VAR_KEK ? &p->kek
                                         : d->var == TC_VAR_DB  ? &p->db
                                                                : NULL;
    const char *check = d->var == TC_VAR_PK    ? "mb.secureboot.pk"
                        : d->var == TC_VAR_KEK ? "mb.secureboot.kek"
                        : d->var == TC_VAR_DB  ? "mb.secureboot.db"
                                               : "mb.secureboot.dbx";
    int rc;
    if (d->var == TC_VAR_DBX) {
        if (!p->dbx_contains.set)
            return 0;
        rc = foreach_signature(d->var_data, d->var_data_len, add_to_hashes, dbx_seen);
    } else {
        if (allowed == NULL || !allowed->set)
            return 0;
        struct sig_check c = {.allowed = allowed};
        rc = foreach_signature(d->var_data, d->var_data_len, check_allowed, &c);
        if (rc == TC_ERR_POLICY) {
            char hex[65];
            tc_hex_encode(c.bad, 32, hex);
            return tc_fail(why, rc, check, (long)ev->index, "%s entry %s is not allowed",
                           d->var_name, hex);
        }
    }
    if (rc == TC_ERR_ALLOC)
        return rc;
    if (rc != 0)
        return tc_fail(why, TC_ERR_POLICY, check, (long)ev->index,
                       "malformed signature list in %s (%s)", d->var_name, tc_strerror(rc));
    return 0;
}

static int check_boot_app(const struct tc_mb_policy *p, const struct tc_evlog_event *ev,
                          struct tc_reason *why)
{
    /* Every digest the event carries in a policy bank must be allowed, and it must carry at
     * least one. A bank the event omits is not checked here: that bank's PCR 4 then misses the
     * extend, which the quote over that bank reveals. */
    size_t matched = 0;
    if (p->nboot_app_banks == 0)
        return 0;
    for (size_t b = 0; b < p->nboot_app_banks; b++) {
        const struct tc_mb_digests *allowed = &p->boot_apps[b];
        const uint8_t *dg = tc_evlog_event_digest(ev, allowed->alg);
        char hex[2 * TC_MAX_DIGEST + 1];
        if (dg == NULL)
            continue;
        if (digests_has(allowed, dg)) {
            matched++;
            continue;
        }
        tc_hex_encode(dg, allowed->alg->size, hex);
        return tc_fail(why, TC_ERR_POLICY, "mb.boot_app", (long)ev->index,
                       "boot application %s:%s is not allowed", allowed->alg->name, hex);
    }
    if (matched == 0)
        return tc_fail(why, TC_ERR_POLICY, "mb.boot_app", (long)ev->index,
                       "boot application has no digest in any bank the policy lists");
    return 0;
}

static int check_pcrs(const struct tc_mb_policy *p, const struct tc_pcr_set *replayed,
                      struct tc_reason *why)
{
    for (size_t b = 0; b < p->pcrs.nbanks; b++) {
        const struct tc_pcr_bank *want = &p->pcrs.bank[b];
        const struct tc_pcr_bank *got = tc_pcrs_bank_const(replayed, want->alg);
        for (unsigned i = 0; i < TC_PCR_COUNT; i++) {
            char hex[2 * TC_MAX_DIGEST + 1];
            if (!(want->mask & (1u << i)))
                continue;
            if (got == NULL || !(got->mask & (1u << i)))
                return tc_fail(why, TC_ERR_POLICY, "mb.pcr", -1,
                               "%s:%u is required but the log does not measure it", want->alg->name,
                               i);
            if (memcmp(got->value[i], want->value[i], want->alg->size) == 0)
                continue;
            tc_hex_encode(got->value[i], want->alg->size, hex);
            return tc_fail(why, TC_ERR_POLICY, "mb.pcr", -1, "%s:%u is %s, not the expected value",
                           want->alg->name, i, hex);
        }
    }
    return 0;
}

int tc_mb_policy_check(const struct tc_mb_policy *p, const struct tc_evlog *log,
                       const struct tc_pcr_set *replayed, struct tc_reason *why)
{
    struct tc_evlog_decoded d = {0};
    struct tc_mb_hashes dbx_seen = {0};
    long sb_index = -1, dbx_index = -1;
    bool sb_on = true, pk_seen = false, kek_seen = false, db_seen = false;
    char *cmd = NULL;
    int rc = 0;

    for (size_t i = 0; i < log->nevents; i++) {
        const struct tc_evlog_event *ev = &log->events[i];
        bool need_vars =
            p->require_secureboot || p->pk.set || p->kek.set || p->db.set || p->dbx_contains.set;
        if (need_vars) {
            if ((rc = secure_var(log, ev, &d, why)) < 0)
                goto out;
            if (rc == 1) {
                rc = 0;
                if (d.var == TC_VAR_SECUREBOOT) {
                    sb_index = (long)i;
                    bool on = d.var_data_len == 1 && d.var_data[0] == 1;
                    if (p->require_secureboot && !on) {
                        rc = tc_fail(why, TC_ERR_POLICY, "mb.secureboot", (long)i,
                                     "Secure Boot is disabled (SecureBoot variable is %s%u)",
                                     d.var_data_len == 1 ? "" : "not one byte: ",
                                     d.var_data_len ? d.var_data[0] : 0);
                        goto out;
                    }
                    sb_on = sb_on && on;
                } else {
                    pk_seen |= d.var == TC_VAR_PK;
                    kek_seen |= d.var == TC_VAR_KEK;
                    db_seen |= d.var == TC_VAR_DB;
                    if (d.var == TC_VAR_DBX)
                        dbx_index = (long)i;
                    if ((rc = check_secure_var(p, ev, &d, &dbx_seen, why)) != 0)
                        goto out;
                }
                tc_evlog_decoded_release(&d);
            }
        }
        if (ev->pcr == BOOT_APP_PCR && ev->type == TC_EV_EFI_BOOT_SERVICES_APPLICATION &&
            (rc = check_boot_app(p, ev, why)) != 0)
            goto out;
        if (p->has_cmdlines && is_cmdline(ev)) {
            if ((rc = cmdline_text(log, ev, &cmd, why)) != 0)
                goto out;
            bool ok = false;
            for (size_t k = 0; k < p->ncmdlines && !ok; k++)
                ok = strcmp(p->cmdlines[k], cmd) == 0;
            if (!ok) {
                rc = tc_fail(why, TC_ERR_POLICY, "mb.kernel_cmdline", (long)i,
                             "kernel command line '%.200s' is not allowed", cmd);
                goto out;
            }
            free(cmd);
            cmd = NULL;
        }
    }
    if (p->require_secureboot && sb_index < 0) {
        rc = tc_fail(why, TC_ERR_POLICY, "mb.secureboot", -1,
                     "the log does not measure the SecureBoot variable");
        goto out;
    }
    if ((p->pk.set && !pk_seen) || (p->kek.set && !kek_seen) || (p->db.set && !db_seen)) {
        rc = tc_fail(why, TC_ERR_POLICY,
                     p->pk.set && !pk_seen     ? "mb.secureboot.pk"
                     : p->kek.set && !kek_seen ? "mb.secureboot.kek"
                                               : "mb.secureboot.db",
                     -1, "the log does not measure this variable");
        goto out;
    }
    for (size_t k = 0; p->dbx_contains.set && k < p->dbx_contains.n; k++) {
        if (hashes_has(&dbx_seen, p->dbx_contains.h[k]))
            continue;
        char hex[65];
        tc_hex_encode(p->dbx_contains.h[k], 32, hex);
        rc = tc_fail(why, TC_ERR_POLICY, "mb.secureboot.dbx", dbx_index,
                     "dbx lacks the required entry %s", hex);
        goto out;
    }
    rc = check_pcrs(p, replayed, why);
out:
    free(cmd);
    tc_evlog_decoded_release(&d);
    hashes_release(&dbx_seen);
    return rc;
}

/* ---- JSON ---- */

static json_t *hashes_json(const struct tc_mb_hashes *h)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < h->n; i++) {
        char hex[65];
        tc_hex_encode(h->h[i], 32, hex);
        if (json_array_append_new(a, json_string(hex))) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

json_t *tc_mb_policy_to_json(const struct tc_mb_policy *p)
{
    json_t *j = json_object();
    if (j == NULL || json_object_set_new(j, "version", json_integer(1)))
        goto fail;
    if (p->pcrs.nbanks && json_object_set_new(j, "pcrs", tc_pcrs_to_json(&p->pcrs)))
        goto fail;
    if (p->require_secureboot || p->pk.set || p->kek.set || p->db.set || p->dbx_contains.set) {
        json_t *sb = json_object();
        if (sb == NULL || json_object_set_new(j, "secureboot", sb) ||
            json_object_set_new(sb, "enabled", json_boolean(p->require_secureboot)))
            goto fail;
        if ((p->pk.set && json_object_set_new(sb, "pk", hashes_json(&p->pk))) ||
            (p->kek.set && json_object_set_new(sb, "kek", hashes_json(&p->kek))) ||
            (p->db.set && json_object_set_new(sb, "db", hashes_json(&p->db))) ||
            (p->dbx_contains.set &&
             json_object_set_new(sb, "dbx_contains", hashes_json(&p->dbx_contains))))
            goto fail;
    }
    if (p->nboot_app_banks) {
        json_t *ba = json_object();
        if (ba == NULL || json_object_set_new(j, "boot_apps", ba))
            goto fail;
        for (size_t b = 0; b < p->nboot_app_banks; b++) {
            const struct tc_mb_digests *d = &p->boot_apps[b];
            json_t *a = json_array();
            if (a == NULL || json_object_set_new(ba, d->alg->name, a))
                goto fail;
            for (size_t i = 0; i < d->n; i++) {
                char hex[2 * TC_MAX_DIGEST + 1];
                tc_hex_encode(d->d + i * d->alg->size, d->alg->size, hex);
                if (json_array_append_new(a, json_string(hex)))
                    goto fail;
            }
        }
    }
    if (p->has_cmdlines) {
        json_t *a = json_array();
        if (a == NULL || json_object_set_new(j, "kernel_cmdlines", a))
            goto fail;
        for (size_t i = 0; i < p->ncmdlines; i++)
            if (json_array_append_new(a, json_string(p->cmdlines[i])))
                goto fail;
    }
    return j;
fail:
    json_decref(j);
    return NULL;
}

/* Nesting depth of JSON text, counted outside strings; rejects deep input before jansson
 * recurses into it. */
static int json_depth_ok(const char *s, size_t n)
{
    int depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            if (++depth > TC_MB_POLICY_MAX_DEPTH)
                return 0;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return 1;
}

static int parse_hash_list(const json_t *a, struct tc_mb_hashes *h, const char *name,
                           struct tc_reason *why)
{
    size_t i;
    json_t *v;
    h->set = true;
    if (!json_is_array(a))
        return tc_fail(why, TC_ERR_FORMAT, CHECK_POLICY, -1, "secureboot.%s is not an array", name);
    json_array_foreach(a, i, v)
    {
        uint8_t d[32];
        size_t n;
        const char *s = json_string_value(v);
        int rc;
        if (s == NULL || tc_hex_decode(s, strlen(s), d, sizeof(d), &n) != 0 || n != 32)
            return tc_fail(why, TC_ERR_FORMAT, CHECK_POLICY, -1,
                           "secureboot.%s[%zu] is not a SHA-256 hex digest", name, i);
        if ((rc = hashes_add(h, d)) != 0)
            return tc_fail(why, rc, CHECK_POLICY, -1, "secureboot.%s: too many entries", name);
    }
    return 0;
}

static int parse_secureboot(const json_t *sb, struct tc_mb_policy *p, struct tc_reason *why)
{
    const char *key;
    json_t *v;
    int rc;
    if (!json_is_object(sb))
        return tc_fail(why, TC_ERR_FORMAT, CHECK_POLICY, -1, "secureboot is not an object");
    json_object_foreach((json_t *)sb, key, v)
    {
        if (strcmp(key, "enabled") == 0) {
            if (!json_is_boolean(v))
                return tc_fail(why, TC_ERR_FORMAT, CHECK_POLICY, -1,
                               "secureboot.enabled is not a boolean");
            p->require_secureboot = json_is_true(v);
        } else if (strcmp(key, "pk") == 0) {
            if ((rc = parse_hash_list(v, &p->pk, key, why)) != 0)
                return rc;
        } else if (strcmp(key, "kek") == 0) {
            if ((rc = parse_hash_list(v, &p->kek, key, why)) != 0)
                return rc;
        } else if (strcmp(key, "db") == 0) {
            if ((rc = parse_hash_list(v, &p->db, key, why)) != 0)
                return rc;
        } else if (strcmp(key, "dbx_contains") == 0) {
            if ((rc = parse_hash_list(v, &p->dbx_contains, key, why)) != 0)
                return rc;
        } else {
            return tc_fail(why, TC_ERR_FORMAT, CHECK_POLICY, -1, "unknown member secureboot.%s",
                           key);
        }
    }
    return 0;
}

static int parse_boot_apps(const json_t *ba, struct tc_mb_policy *p, struct tc_reason *why)
{
    const char *bank;
    json_t *a;
    if (!json_is_object(ba))
        return tc_fail(why, TC_ERR_FORMAT, CHECK_POLICY, -1, "boot_apps is not an object");
    json_object_foreach((json_t *)ba, bank, a)
    {
        const struct tc_hash_alg *alg = tc_hash_by_name(bank);
        struct tc_mb_digests *d;
        size_t i;
        json_t *v;
        if (alg == NULL)
            return tc_fail(why, TC_ERR_UNSUPPORTED, CHECK_POLICY, -1,
                           "boot_apps: unknown algorithm %.40s", bank);
        if (!json_is_array(a) || (d = digests_bank(p, alg)) == NULL)
            return tc_fail(why, TC_ERR_FORMAT, CHECK_POLICY, -1, "boot_apps.%s is not an array",
                           bank);
        json_array_foreach(a, i, v)
        {
            uint8_t dg[TC_MAX_DIGEST];
            size_t n;
            const char *s = json_string_value(v);
            int rc;
            if (s == NULL || tc_hex_decode(s, strlen(s), dg, sizeof(dg), &n) != 0 || n != alg->size)
                return tc_fail(why, TC_ERR_FORMAT, CHECK_POLICY, -1,
                               "boot_apps.%s[%zu] is not a %s hex digest", bank, i, bank);
            if ((rc = digests_add(d, dg)) != 0)
                return tc_fail(why, rc, CHECK_POLICY, -1, "boot_apps.%s: too many entries", bank);
        }
    }
    return 0;
}

int tc_mb_policy_from_json(const char *text, size_t len, struct tc_mb_policy **out,
                           struct tc_reason *why)
{
    struct tc_mb_policy *p = NULL;
    json_t *root = NULL;
    json_error_t jerr;
    const char *key;
    json_t *v;
    int rc;

    *out = NULL;
    if (len > TC_MB_POLICY_MAX_SIZE) {
        rc = tc_fail(why, TC_ERR_TOO_LARGE, CHECK_POLICY, -1, "policy larger than %u bytes",
                     TC_MB_POLICY_MAX_SIZE);
        goto out;
    }
    if (!json_depth_ok(text, len)) {
        rc = tc_fail(why, TC_ERR_TOO_LARGE, CHECK_POLICY, -1, "policy nested deeper than %d",
                     TC_MB_POLICY_MAX_DEPTH);
        goto out;
    }
    if ((root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
        rc = tc_fail(why, TC_ERR_FORMAT, CHECK_POLICY, -1, "invalid JSON at line %d: %.100s",
                     jerr.line, jerr.text);
        goto out;
    }
    if (!json_is_object(root)) {
        rc = tc_fail(why, TC_ERR_FORMAT, CHECK_POLICY, -1, "policy is not a JSON object");
        goto out;
    }
    v = json_object_get(root, "version");
    if (!json_is_integer(v) || json_integer_value(v) != 1) {
        rc = tc_fail(why, TC_ERR_UNSUPPORTED, CHECK_POLICY, -1, "policy version must be 1");
        goto out;
    }
    if ((rc = tc_mb_policy_new(&p)) != 0) {
        rc = tc_fail(why, rc, CHECK_POLICY, -1, "out of memory");
        goto out;
    }
    json_object_foreach(root, key, v)
    {
        if (strcmp(key, "version") == 0)
            continue;
        if (strcmp(key, "pcrs") == 0) {
            if ((rc = tc_pcrs_from_json(v, &p->pcrs)) != 0) {
                rc = tc_fail(why, rc, CHECK_POLICY, -1, "invalid pcrs (%s)", tc_strerror(rc));
                goto out;
            }
        } else if (strcmp(key, "secureboot") == 0) {
            if ((rc = parse_secureboot(v, p, why)) != 0)
                goto out;
        } else if (strcmp(key, "boot_apps") == 0) {
            if ((rc = parse_boot_apps(v, p, why)) != 0)
                goto out;
        } else if (strcmp(key, "kernel_cmdlines") == 0) {
            size_t i;
            json_t *s;
            p->has_cmdlines = true;
            if (!json_is_array(v)) {
                rc = tc_fail(why, TC_ERR_FORMAT, CHECK_POLICY, -1,
                             "kernel_cmdlines is not an array");
                goto out;
            }
            json_array_foreach(v, i, s)
            {
                if (!json_is_string(s)) {
                    rc = tc_fail(why, TC_ERR_FORMAT, CHECK_POLICY, -1,
                                 "kernel_cmdlines[%zu] is not a string", i);
                    goto out;
                }
                if ((rc = cmdlines_add(p, json_string_value(s))) != 0) {
                    rc = tc_fail(why, rc, CHECK_POLICY, -1, "kernel_cmdlines: too many entries");
                    goto out;
                }
            }
        } else {
            rc = tc_fail(why, TC_ERR_FORMAT, CHECK_POLICY, -1, "unknown member %.60s", key);
            goto out;
        }
    }
    *out = p;
    p = NULL;
    rc = 0;
out:
    json_decref(root);
    tc_mb_policy_free(p);
    return rc;
}
