/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A set of PCR values over several banks: what a replay produces, what a
 * TPM reports and what a quote covers.
 */
#ifndef TRUSTCLOUD_PCRS_H
#define TRUSTCLOUD_PCRS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "trustcloud/hashalg.h"

#define TC_PCR_COUNT 24
#define TC_MAX_BANKS 5

struct tc_pcr_bank {
    const struct tc_hash_alg *alg;
    uint32_t mask; /* bit i set: value[i] is present */
    uint8_t value[TC_PCR_COUNT][TC_MAX_DIGEST];
};

struct tc_pcr_set {
    size_t nbanks;
    struct tc_pcr_bank bank[TC_MAX_BANKS];
};

void tc_pcrs_init(struct tc_pcr_set *s);
/* The bank for alg; when create is true a missing bank is added (all PCRs absent). NULL if
 * absent (or full). */
struct tc_pcr_bank *tc_pcrs_bank(struct tc_pcr_set *s, const struct tc_hash_alg *alg, bool create);
const struct tc_pcr_bank *tc_pcrs_bank_const(const struct tc_pcr_set *s,
                                             const struct tc_hash_alg *alg);
/* Sets PCR idx of bank to value (alg->size bytes). */
int tc_pcrs_set(struct tc_pcr_set *s, const struct tc_hash_alg *alg, unsigned idx,
                const uint8_t *value);
/* PCR[idx] = H(PCR[idx] || digest). An absent PCR starts at all zeroes. */
int tc_pcr_bank_extend(struct tc_pcr_bank *b, unsigned idx, const uint8_t *digest);
/* {"sha256": {"0": "<hex>", ...}, ...}: banks in set order, PCRs in numeric order. */
json_t *tc_pcrs_to_json(const struct tc_pcr_set *s);
/* Parses the JSON above (also accepts "0x"-prefixed hex). */
int tc_pcrs_from_json(const json_t *j, struct tc_pcr_set *s);
/* Parses "sha256:0,1,2+sha1:0" (tpm2-tools PCR selection syntax); "all" allowed as list. */
int tc_pcrs_parse_selection(const char *spec, struct tc_pcr_set *sel);

#endif
