/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The load benchmark's node emulator: one mTLS server answering
 * POST /n/{index}/v1/quote for many emulated nodes, each with its own
 * software AK (softquote.h: LOAD TESTS ONLY) and a real, growing IMA list.
 *
 * Every node runs the same software, so the IMA entries are one shared
 * sequence (entry i is the same measurement on every node) and each node only
 * keeps how many of them it has measured; its PCR 10 is the replay of that
 * prefix. Each answer carries a real delta the coordinator must parse,
 * template-hash check, replay and match against the quoted PCR 10, and a
 * quote freshly signed over the coordinator's nonce: nothing is cached that
 * would let an answer be reused.
 */
#ifndef TC_BENCH_LOAD_EMU_H
#define TC_BENCH_LOAD_EMU_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "trustcloud/buf.h"
#include "trustcloud/httpd.h"
#include "trustcloud/ima.h"
#include "trustcloud/pcrs.h"
#include "trustcloud/runtime_policy.h"
#include "trustcloud/softquote.h"

/* Challenge arrival times kept per node (ring): enough for a few minutes at 2 s. */
#define LOAD_EMU_ARRIVALS 256

struct load_emu_node {
    struct tc_softak *ak;
    uint32_t count;                        /* IMA entries measured so far */
    uint64_t narrival;                     /* challenges received (index into the ring) */
    int64_t arrival_us[LOAD_EMU_ARRIVALS]; /* CLOCK_REALTIME, when the request was complete */
};

/* The IMA measurements every node makes, in order, precomputed once. */
struct load_ima {
    struct tc_ima_log *log; /* entries 0..n-1 (entry 0 is boot_aggregate) */
    size_t n;
    struct tc_buf bin;                /* binary_runtime_measurements of all entries */
    size_t *off;                      /* off[i]: byte offset of entry i in bin; off[n] = bin.len */
    uint8_t (*pcr10)[32];             /* pcr10[k]: sha256 PCR 10 after the first k entries */
    struct tc_runtime_policy *policy; /* accepts exactly these entries */
};

struct load_emu {
    struct tc_httpd *srv;
    struct load_emu_node *nodes;
    size_t cap;            /* nodes allocated (keys made) */
    _Atomic size_t active; /* indexes >= active get 404 */
    unsigned per_round;    /* IMA entries a node measures between two quotes */
    uint32_t initial;      /* entries at "boot" */
    struct load_ima ima;
    struct tc_pcr_set base; /* sha256 PCRs 0-23: 0-9 firmware-like, 10 replaced per node */
    int64_t clock0_ms;
    _Atomic uint64_t answered, refused, notices;
    _Atomic uint64_t service_ns; /* handler time of answered quotes */
};

/* Precomputes the shared IMA sequence of max_entries (>= 2) entries and its policy. */
int load_ima_init(struct load_ima *ima, const struct tc_pcr_set *base, size_t max_entries);
void load_ima_release(struct load_ima *ima);

/* Fixed firmware-like PCR values (sha256 bank, PCRs 0-23; 10 is zero). */
void load_emu_base_pcrs(struct tc_pcr_set *pcrs);

/*
 * Makes nodes_cap soft AKs (ECC P-256) and an mTLS server on 127.0.0.1 (any port) with tls
 * (cert, key, CA). Serving starts at once; nodes answer once load_emu_reset made them active.
 */
int load_emu_new(const struct tc_tls_config *tls, size_t nodes_cap, unsigned per_round,
                 uint32_t initial, size_t max_entries, struct load_emu **out);
void load_emu_free(struct load_emu *e);
uint16_t load_emu_port(const struct load_emu *e);
/* Makes nodes [0, n) answer, as freshly booted machines (IMA at `initial`, no arrivals). Call
 * only while no coordinator talks to the emulator. */
void load_emu_reset(struct load_emu *e, size_t n);

/* The body of one answer, as an agent would send it (for in-process baselines). *out malloc'd. */
int load_emu_answer(struct load_emu *e, struct load_emu_node *node, const uint8_t *body, size_t len,
                    char **out, size_t *out_len);

#endif
