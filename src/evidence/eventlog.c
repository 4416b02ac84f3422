/* SPDX-License-Identifier: Apache-2.0 */
/* UEFI event log parsing (legacy SHA-1 and crypto-agile) and PCR replay. */
#define LOGMODULE "eventlog"
#include "trustcloud/eventlog.h"

#include <stdlib.h>
#include <string.h>

#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"

#define CHECK_PARSE "eventlog.parse"
#define CHECK_REPLAY "eventlog.replay"

static const char SPECID_SIG[16] = "Spec ID Event03";
static const char LOCALITY_SIG[16] = "StartupLocality";

/* TCG_PCR_EVENT: pcrIndex, eventType, SHA-1 digest, eventDataSize. */
#define LEGACY_HDR (4 + 4 + 20 + 4)
/* TCG_EfiSpecIDEvent up to the algorithm table. */
#define SPECID_FIXED (16 + 4 + 1 + 1 + 1 + 1 + 4)

void tc_evlog_free(struct tc_evlog *log)
{
    if (log == NULL)
        return;
    free(log->buf);
    free(log->events);
    free(log->digest_pool);
    free(log);
}

/* Growable arrays of events and digests; pointers into the digest pool are fixed up at the end
 * because the pool may move while it grows. */
struct builder {
    struct tc_evlog *log;
    size_t ev_cap;
    size_t dg_len, dg_cap;
    size_t *dg_first; /* per event: index of its first digest in the pool */
};

static int add_event(struct builder *b, const struct tc_evlog_event *ev, size_t first_digest)
{
    struct tc_evlog *log = b->log;
    if (log->nevents == TC_EVLOG_MAX_EVENTS)
        return TC_ERR_TOO_LARGE;
    if (log->nevents == b->ev_cap) {
        size_t cap = b->ev_cap ? b->ev_cap * 2 : 64;
        if (cap > TC_EVLOG_MAX_EVENTS)
            cap = TC_EVLOG_MAX_EVENTS;
        struct tc_evlog_event *e = realloc(log->events, cap * sizeof(*e));
        if (e == NULL)
            return TC_ERR_ALLOC;
        log->events = e;
        size_t *f = realloc(b->dg_first, cap * sizeof(*f));
        if (f == NULL)
            return TC_ERR_ALLOC;
        b->dg_first = f;
        b->ev_cap = cap;
    }
    log->events[log->nevents] = *ev;
    b->dg_first[log->nevents] = first_digest;
    log->nevents++;
    return 0;
}

static int add_digest(struct builder *b, const struct tc_evlog_digest *d)
{
    if (b->dg_len == b->dg_cap) {
        size_t cap = b->dg_cap ? b->dg_cap * 2 : 128;
        struct tc_evlog_digest *p = realloc(b->log->digest_pool, cap * sizeof(*p));
        if (p == NULL)
            return TC_ERR_ALLOC;
        b->log->digest_pool = p;
        b->dg_cap = cap;
    }
    b->log->digest_pool[b->dg_len++] = *d;
    return 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

/* Parses the TCG_EfiSpecIDEvent inside the first event. data_len is the event's eventDataSize;
 * avail is how many bytes of the log follow the event header. *consumed is set to the number of
 * bytes the structure really takes (see the vendor-info note below). */
static int parse_specid(struct tc_evlog *log, const uint8_t *data, size_t data_len, size_t avail,
                        size_t *consumed, struct tc_reason *why)
{
    struct tc_reader r;
    uint32_t nalgs;
    uint8_t vsize;
    int rc;

    /* The table is self-describing; read it from everything that is left and check the
     * declared eventDataSize against it afterwards. */
    tc_reader_init(&r, data, avail);
    if ((rc = tc_reader_skip(&r, 16)) != 0 || (rc = tc_reader_u32le(&r, &log->platform_class)) ||
        (rc = tc_reader_u8(&r, &log->spec_minor)) || (rc = tc_reader_u8(&r, &log->spec_major)) ||
        (rc = tc_reader_u8(&r, &log->spec_errata)) || (rc = tc_reader_u8(&r, &log->uintn_size)) ||
        (rc = tc_reader_u32le(&r, &nalgs)))
        return tc_fail(why, rc, CHECK_PARSE, 0, "entry 0 at offset 0: Spec ID event truncated");
    if (nalgs == 0 || nalgs > TC_EVLOG_MAX_ALGS)
        return tc_fail(why, TC_ERR_FORMAT, CHECK_PARSE, 0,
                       "entry 0 at offset 0: Spec ID numberOfAlgorithms %u not in 1..%d", nalgs,
                       TC_EVLOG_MAX_ALGS);
    for (uint32_t i = 0; i < nalgs; i++) {
        uint16_t id, size;
        if ((rc = tc_reader_u16le(&r, &id)) != 0 || (rc = tc_reader_u16le(&r, &size)) != 0)
            return tc_fail(why, rc, CHECK_PARSE, 0,
                           "entry 0 at offset 0: Spec ID algorithm table truncated");
        const struct tc_hash_alg *h = tc_hash_by_tpm(id);
        if (size == 0 || size > TC_EVLOG_MAX_DIGEST_SIZE || (h != NULL && h->size != size))
            return tc_fail(why, TC_ERR_FORMAT, CHECK_PARSE, 0,
                           "entry 0 at offset 0: Spec ID digest size %u for algorithm 0x%04x is "
                           "wrong",
                           size, id);
        for (size_t j = 0; j < log->nalgs; j++)
            if (log->algs[j].alg_id == id)
                return tc_fail(why, TC_ERR_FORMAT, CHECK_PARSE, 0,
                               "entry 0 at offset 0: algorithm 0x%04x twice in the Spec ID table",
                               id);
        log->algs[log->nalgs++] = (struct tc_evlog_alg){id, size, h};
    }
    if ((rc = tc_reader_u8(&r, &vsize)) != 0 ||
        (rc = tc_reader_view(&r, vsize, &log->vendor_info)) != 0)
        return tc_fail(why, rc, CHECK_PARSE, 0,
                       "entry 0 at offset 0: Spec ID vendor info truncated");
    log->vendor_info_len = vsize;
    *consumed = r.off;
    /* eventDataSize must cover the structure exactly. One quirk is accepted because
     * tpm2_eventlog accepts it too (its specid-vendordata fixture): a size that leaves out the
     * vendor info bytes. The structure's own lengths then decide where event 1 starts. */
    if (data_len == r.off)
        return 0;
    if (vsize > 0 && data_len == r.off - vsize) {
        LOG_INFO("Spec ID eventDataSize excludes the %u vendor info bytes", vsize);
        return 0;
    }
    return tc_fail(why, TC_ERR_FORMAT, CHECK_PARSE, 0,
                   "entry 0 at offset 0: Spec ID eventDataSize %zu but the structure is %zu bytes",
                   data_len, r.off);
}

static int parse_legacy(struct builder *b, struct tc_reader *r, struct tc_reason *why)
{
    struct tc_evlog *log = b->log;
    int rc;
    while (tc_reader_left(r) > 0) {
        struct tc_evlog_event ev = {.index = log->nevents, .offset = r->off, .ndigests = 1};
        struct tc_evlog_digest d = {.alg_id = 0x0004, .size = 20};
        uint32_t size;
        d.hash = tc_hash_by_tpm(d.alg_id);
        if ((rc = tc_reader_u32le(r, &ev.pcr)) || (rc = tc_reader_u32le(r, &ev.type)) ||
            (rc = tc_reader_view(r, 20, &d.value)) || (rc = tc_reader_u32le(r, &size)))
            return tc_fail(why, rc, CHECK_PARSE, (long)ev.index,
                           "entry %zu at offset %zu: event header truncated", ev.index, ev.offset);
        if (ev.pcr >= TC_PCR_COUNT)
            return tc_fail(why, TC_ERR_FORMAT, CHECK_PARSE, (long)ev.index,
                           "entry %zu at offset %zu: PCR index %u out of range", ev.index,
                           ev.offset, ev.pcr);
        if (size > TC_EVLOG_MAX_EVENT_DATA)
            return tc_fail(why, TC_ERR_TOO_LARGE, CHECK_PARSE, (long)ev.index,
                           "entry %zu at offset %zu: event data size %u exceeds the cap", ev.index,
                           ev.offset, size);
        if ((rc = tc_reader_view(r, size, &ev.data)) != 0)
            return tc_fail(why, rc, CHECK_PARSE, (long)ev.index,
                           "entry %zu at offset %zu: event data (%u bytes) truncated", ev.index,
                           ev.offset, size);
        ev.data_len = size;
        size_t first = b->dg_len;
        if ((rc = add_digest(b, &d)) != 0 || (rc = add_event(b, &ev, first)) != 0)
            return tc_fail(why, rc, CHECK_PARSE, (long)ev.index, "entry %zu at offset %zu: %s",
                           ev.index, ev.offset,
                           rc == TC_ERR_TOO_LARGE ? "too many events" : "out of memory");
    }
    return 0;
}

static int parse_agile(struct builder *b, struct tc_reader *r, struct tc_reason *why)
{
    struct tc_evlog *log = b->log;
    int rc;
    while (tc_reader_left(r) > 0) {
        struct tc_evlog_event ev = {.index = log->nevents, .offset = r->off};
        uint32_t count, size;
        if ((rc = tc_reader_u32le(r, &ev.pcr)) || (rc = tc_reader_u32le(r, &ev.type)) ||
            (rc = tc_reader_u32le(r, &count)))
            return tc_fail(why, rc, CHECK_PARSE, (long)ev.index,
                           "entry %zu at offset %zu: event header truncated", ev.index, ev.offset);
        if (ev.pcr >= TC_PCR_COUNT)
            return tc_fail(why, TC_ERR_FORMAT, CHECK_PARSE, (long)ev.index,
                           "entry %zu at offset %zu: PCR index %u out of range", ev.index,
                           ev.offset, ev.pcr);
        if (count > log->nalgs)
            return tc_fail(why, TC_ERR_FORMAT, CHECK_PARSE, (long)ev.index,
                           "entry %zu at offset %zu: %u digests but the Spec ID table has %zu "
                           "algorithms",
                           ev.index, ev.offset, count, log->nalgs);
        size_t first = b->dg_len;
        uint32_t seen = 0; /* bit j: algs[j] already present in this event */
        for (uint32_t i = 0; i < count; i++) {
            struct tc_evlog_digest d = {0};
            size_t j;
            if ((rc = tc_reader_u16le(r, &d.alg_id)) != 0)
                return tc_fail(why, rc, CHECK_PARSE, (long)ev.index,
                               "entry %zu at offset %zu: digest %u truncated", ev.index, ev.offset,
                               i);
            for (j = 0; j < log->nalgs; j++)
                if (log->algs[j].alg_id == d.alg_id)
                    break;
            if (j == log->nalgs)
                return tc_fail(why, TC_ERR_FORMAT, CHECK_PARSE, (long)ev.index,
                               "entry %zu at offset %zu: digest algorithm 0x%04x is not in the "
                               "Spec ID table",
                               ev.index, ev.offset, d.alg_id);
            if (seen & (1u << j))
                return tc_fail(why, TC_ERR_FORMAT, CHECK_PARSE, (long)ev.index,
                               "entry %zu at offset %zu: digest algorithm 0x%04x repeated",
                               ev.index, ev.offset, d.alg_id);
            seen |= 1u << j;
            d.hash = log->algs[j].hash;
            d.size = log->algs[j].size;
            if ((rc = tc_reader_view(r, d.size, &d.value)) != 0)
                return tc_fail(why, rc, CHECK_PARSE, (long)ev.index,
                               "entry %zu at offset %zu: digest %u truncated", ev.index, ev.offset,
                               i);
            if ((rc = add_digest(b, &d)) != 0)
                return tc_fail(why, rc, CHECK_PARSE, (long)ev.index, "out of memory");
        }
        ev.ndigests = count;
        if ((rc = tc_reader_u32le(r, &size)) != 0)
            return tc_fail(why, rc, CHECK_PARSE, (long)ev.index,
                           "entry %zu at offset %zu: event size truncated", ev.index, ev.offset);
        if (size > TC_EVLOG_MAX_EVENT_DATA)
            return tc_fail(why, TC_ERR_TOO_LARGE, CHECK_PARSE, (long)ev.index,
                           "entry %zu at offset %zu: event data size %u exceeds the cap", ev.index,
                           ev.offset, size);
        if ((rc = tc_reader_view(r, size, &ev.data)) != 0)
            return tc_fail(why, rc, CHECK_PARSE, (long)ev.index,
                           "entry %zu at offset %zu: event data (%u bytes) truncated", ev.index,
                           ev.offset, size);
        ev.data_len = size;
        if ((rc = add_event(b, &ev, first)) != 0)
            return tc_fail(why, rc, CHECK_PARSE, (long)ev.index, "entry %zu at offset %zu: %s",
                           ev.index, ev.offset,
                           rc == TC_ERR_TOO_LARGE ? "too many events" : "out of memory");
    }
    return 0;
}

/* Records StartupLocality (PCR 0, before any PCR 0 measurement: PC Client PFP 10.4.5.3). */
static int find_startup_locality(struct tc_evlog *log, struct tc_reason *why)
{
    bool pcr0_measured = false;
    for (size_t i = 0; i < log->nevents; i++) {
        const struct tc_evlog_event *ev = &log->events[i];
        if (ev->pcr != 0)
            continue;
        if (ev->type != TC_EV_NO_ACTION) {
            pcr0_measured = true;
            continue;
        }
        if (ev->data_len < sizeof(LOCALITY_SIG) ||
            memcmp(ev->data, LOCALITY_SIG, sizeof(LOCALITY_SIG)) != 0)
            continue;
        if (ev->data_len != sizeof(LOCALITY_SIG) + 1)
            return tc_fail(why, TC_ERR_FORMAT, CHECK_PARSE, (long)i,
                           "entry %zu at offset %zu: StartupLocality event of %zu bytes", i,
                           ev->offset, ev->data_len);
        if (pcr0_measured || log->has_startup_locality)
            return tc_fail(why, TC_ERR_FORMAT, CHECK_PARSE, (long)i,
                           "entry %zu at offset %zu: StartupLocality after a PCR 0 measurement "
                           "or repeated",
                           i, ev->offset);
        log->has_startup_locality = true;
        log->startup_locality = ev->data[sizeof(LOCALITY_SIG)];
    }
    return 0;
}

int tc_evlog_parse(const uint8_t *data, size_t len, struct tc_evlog **out, struct tc_reason *why)
{
    struct builder b = {0};
    struct tc_evlog *log = NULL;
    struct tc_reader r;
    int rc;

    *out = NULL;
    if (len == 0) {
        rc = tc_fail(why, TC_ERR_FORMAT, CHECK_PARSE, -1, "entry 0 at offset 0: event log is empty");
        goto out;
    }
    if (len > TC_EVLOG_MAX_SIZE) {
        rc = tc_fail(why, TC_ERR_TOO_LARGE, CHECK_PARSE, -1, "event log of %zu bytes exceeds %u",
                     len, TC_EVLOG_MAX_SIZE);
        goto out;
    }
    if ((log = calloc(1, sizeof(*log))) == NULL || (log->buf = malloc(len)) == NULL) {
        rc = tc_fail(why, TC_ERR_ALLOC, CHECK_PARSE, -1, "out of memory");
        goto out;
    }
    memcpy(log->buf, data, len);
    log->len = len;
    b.log = log;
    tc_reader_init(&r, log->buf, len);

    /* The first event is always a TCG_PCR_EVENT; it decides the format. */
    uint32_t pcr, type, size;
    const uint8_t *digest, *edata;
    if ((rc = tc_reader_u32le(&r, &pcr)) || (rc = tc_reader_u32le(&r, &type)) ||
        (rc = tc_reader_view(&r, 20, &digest)) || (rc = tc_reader_u32le(&r, &size))) {
        rc = tc_fail(why, TC_ERR_FORMAT, CHECK_PARSE, 0,
                     "entry 0 at offset 0: %zu bytes cannot hold an event header", len);
        goto out;
    }
    bool agile = type == TC_EV_NO_ACTION && pcr == 0 && all_zero(digest, 20) &&
                 size >= sizeof(SPECID_SIG) && tc_reader_left(&r) >= sizeof(SPECID_SIG) &&
                 memcmp(tc_reader_ptr(&r), SPECID_SIG, sizeof(SPECID_SIG)) == 0;
    if (agile) {
        size_t consumed = 0;
        log->format = TC_EVLOG_CRYPTO_AGILE;
        if (size > TC_EVLOG_MAX_EVENT_DATA) {
            rc = tc_fail(why, TC_ERR_TOO_LARGE, CHECK_PARSE, 0,
                         "entry 0 at offset 0: event data size %u exceeds the cap", size);
            goto out;
        }
        edata = tc_reader_ptr(&r);
        if ((rc = parse_specid(log, edata, size, tc_reader_left(&r), &consumed, why)) != 0)
            goto out;
        struct tc_evlog_event ev = {
            .index = 0, .offset = 0, .pcr = 0, .type = type, .data = edata, .data_len = consumed};
        if ((rc = tc_reader_skip(&r, consumed)) != 0 || (rc = add_event(&b, &ev, 0)) != 0) {
            rc = tc_fail(why, rc, CHECK_PARSE, 0, "entry 0: cannot store the Spec ID event");
            goto out;
        }
        if ((rc = parse_agile(&b, &r, why)) != 0)
            goto out;
    } else {
        log->format = TC_EVLOG_LEGACY_SHA1;
        /* Refuse obvious garbage early: a first event must name a PCR. */
        if (pcr >= TC_PCR_COUNT || size > TC_EVLOG_MAX_EVENT_DATA) {
            rc = tc_fail(why, TC_ERR_FORMAT, CHECK_PARSE, 0,
                         "entry 0 at offset 0: not an event log (PCR %u, data size %u)", pcr, size);
            goto out;
        }
        tc_reader_init(&r, log->buf, len);
        if ((rc = parse_legacy(&b, &r, why)) != 0)
            goto out;
    }
    for (size_t i = 0; i < log->nevents; i++)
        log->events[i].digests = log->events[i].ndigests ? &log->digest_pool[b.dg_first[i]] : NULL;
    if ((rc = find_startup_locality(log, why)) != 0)
        goto out;
    *out = log;
    log = NULL;
    rc = 0;
out:
    free(b.dg_first);
    tc_evlog_free(log);
    return rc;
}

int tc_evlog_parse_file(const char *path, struct tc_evlog **out, struct tc_reason *why)
{
    uint8_t *data = NULL;
    size_t len = 0;
    int rc;
    *out = NULL;
    if ((rc = tc_file_read(path, TC_EVLOG_MAX_SIZE, &data, &len)) != 0) {
        if (rc == TC_ERR_TOO_LARGE)
            return tc_fail(why, rc, CHECK_PARSE, -1, "%s is larger than %u bytes", path,
                           TC_EVLOG_MAX_SIZE);
        return tc_fail(why, TC_ERR_IO, "eventlog.read", -1, "cannot read %s", path);
    }
    rc = tc_evlog_parse(data, len, out, why);
    free(data);
    return rc;
}

const uint8_t *tc_evlog_event_digest(const struct tc_evlog_event *ev,
                                     const struct tc_hash_alg *hash)
{
    for (size_t i = 0; i < ev->ndigests; i++)
        if (ev->digests[i].hash == hash && hash != NULL)
            return ev->digests[i].value;
    return NULL;
}

int tc_evlog_replay(const struct tc_evlog *log, struct tc_pcr_set *out, struct tc_reason *why)
{
    struct tc_pcr_set set;
    bool pcr0_started = false; /* PCR 0's initial value is fixed by the first event touching it */
    int rc = 0;

    tc_pcrs_init(out);
    tc_pcrs_init(&set);
    /* Banks in Spec ID table order (legacy: SHA-1), only those the events use. */
    for (size_t i = 0; i < log->nevents; i++) {
        const struct tc_evlog_event *ev = &log->events[i];
        if (log->format == TC_EVLOG_CRYPTO_AGILE && i == 0)
            continue; /* the Spec ID event's SHA-1 field is a placeholder */
        if (log->format == TC_EVLOG_LEGACY_SHA1 && ev->type == TC_EV_NO_ACTION)
            continue;
        if (ev->pcr == 0 && !pcr0_started) {
            /* Initial value of PCR 0 in every bank. */
            uint8_t init = 0;
            if (ev->type == TC_EV_EFI_HCRTM_EVENT)
                init = 4;
            else if (log->has_startup_locality)
                init = log->startup_locality;
            pcr0_started = true;
            for (size_t a = 0; a < log->nalgs || (a == 0 && log->nalgs == 0); a++) {
                const struct tc_hash_alg *h =
                    log->nalgs ? log->algs[a].hash : tc_hash_by_tpm(0x0004);
                uint8_t v[TC_MAX_DIGEST] = {0};
                if (h == NULL)
                    continue;
                v[h->size - 1] = init;
                struct tc_pcr_bank *bank = tc_pcrs_bank(&set, h, true);
                if (bank == NULL) {
                    rc = tc_fail(why, TC_ERR_INTERNAL, CHECK_REPLAY, (long)i, "too many banks");
                    goto out;
                }
                /* Not marked present: only digests carried by events make a PCR visible. */
                memcpy(bank->value[0], v, h->size);
            }
        }
        for (size_t d = 0; d < ev->ndigests; d++) {
            const struct tc_evlog_digest *dg = &ev->digests[d];
            if (dg->hash == NULL)
                continue;
            struct tc_pcr_bank *bank = tc_pcrs_bank(&set, dg->hash, true);
            if (bank == NULL) {
                rc = tc_fail(why, TC_ERR_INTERNAL, CHECK_REPLAY, (long)i, "too many banks");
                goto out;
            }
            if (ev->type == TC_EV_NO_ACTION) {
                if (!(bank->mask & (1u << ev->pcr)) && ev->pcr != 0)
                    memset(bank->value[ev->pcr], 0, dg->hash->size);
                bank->mask |= 1u << ev->pcr;
                continue;
            }
            if (!(bank->mask & (1u << ev->pcr)) && ev->pcr != 0)
                memset(bank->value[ev->pcr], 0, dg->hash->size);
            bank->mask |= 1u << ev->pcr; /* keep PCR 0's initial value */
            if ((rc = tc_pcr_bank_extend(bank, ev->pcr, dg->value)) != 0) {
                rc = tc_fail(why, rc, CHECK_REPLAY, (long)i, "extend of PCR %u (%s) failed",
                             ev->pcr, dg->hash->name);
                goto out;
            }
        }
    }
    /* Drop banks that no event extended (a PCR 0 initial value alone is not a measurement). */
    for (size_t i = 0; i < set.nbanks; i++) {
        if (set.bank[i].mask == 0)
            continue;
        struct tc_pcr_bank *dst = tc_pcrs_bank(out, set.bank[i].alg, true);
        if (dst != NULL)
            *dst = set.bank[i];
    }
out:
    if (rc != 0)
        tc_pcrs_init(out);
    return rc;
}
