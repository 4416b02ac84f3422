/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Measured-boot reference policies: what a known-good UEFI boot looks like.
 *
 * JSON form (every member but "version" optional; unknown members are errors):
 * {
 *   "version": 1,
 *   "pcrs": {"sha256": {"0": "<hex>", ...}, ...},          expected replayed PCRs (any subset)
 *   "secureboot": {
 *     "enabled": true,                                     SecureBoot variable must be 1
 *     "pk": ["<sha256>", ...], "kek": [...], "db": [...],  allowed signature entries
 *     "dbx_contains": ["<sha256>", ...]                    entries dbx must contain
 *   },
 *   "boot_apps": {"sha256": ["<hex>", ...], ...},          allowed EV_EFI_BOOT_SERVICES_APPLICATION
 *                                                          digests in PCR 4, per bank
 *   "kernel_cmdlines": ["...", ...]                        allowed grub "kernel_cmdline:" strings
 * }
 * A signature entry (EFI_SIGNATURE_DATA in an EFI_SIGNATURE_LIST) is identified by SHA-256:
 * an EFI_CERT_SHA256 entry by its hash itself, any other (X.509 certificates...) by the
 * SHA-256 of its data.
 *
 * Checks that read event data (SecureBoot, PK/KEK/db/dbx, kernel command line) first verify
 * that the event's digests are the hash of that data, so a log whose data was edited while its
 * digests (and so the PCRs) stayed intact is rejected ("mb.event_digest").
 */
#ifndef TRUSTCLOUD_MB_POLICY_H
#define TRUSTCLOUD_MB_POLICY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trustcloud/eventlog.h"
#include "trustcloud/pcrs.h"
#include "trustcloud/reason.h"

#define TC_MB_POLICY_MAX_SIZE (4u << 20) /* policy JSON text */
#define TC_MB_POLICY_MAX_DEPTH 8         /* JSON nesting */
#define TC_MB_POLICY_MAX_LIST 100000     /* entries in any list */

struct tc_mb_hashes {
    bool set; /* the list is part of the policy (an empty set list allows nothing) */
    size_t n;
    uint8_t (*h)[32];
};

struct tc_mb_digests {
    const struct tc_hash_alg *alg;
    size_t n;
    uint8_t *d; /* n * alg->size bytes */
};

struct tc_mb_policy {
    struct tc_pcr_set pcrs; /* expected values; banks/PCRs absent are not checked */
    bool require_secureboot;
    struct tc_mb_hashes pk, kek, db, dbx_contains;
    size_t nboot_app_banks;
    struct tc_mb_digests boot_apps[TC_MAX_BANKS];
    bool has_cmdlines;
    size_t ncmdlines;
    char **cmdlines;
};

/* An empty policy (checks nothing). */
int tc_mb_policy_new(struct tc_mb_policy **out);
void tc_mb_policy_free(struct tc_mb_policy *p);

/*
 * Parses the JSON form (at most TC_MB_POLICY_MAX_SIZE bytes, nesting at most
 * TC_MB_POLICY_MAX_DEPTH). *out set only on success. Errors: TC_ERR_FORMAT,
 * TC_ERR_TOO_LARGE, TC_ERR_UNSUPPORTED (version, algorithm); why names "mb.policy".
 */
int tc_mb_policy_from_json(const char *text, size_t len, struct tc_mb_policy **out,
                           struct tc_reason *why);
/* The JSON form; NULL on allocation failure. Caller owns the reference. */
json_t *tc_mb_policy_to_json(const struct tc_mb_policy *p);

/*
 * A policy from a known-good log and its replay: every replayed PCR, the Secure Boot state
 * (with the PK/KEK/db entries seen and all dbx entries when Secure Boot is on), the boot
 * application digests of every known bank and the kernel command lines seen.
 */
int tc_mb_policy_from_eventlog(const struct tc_evlog *log, const struct tc_pcr_set *replayed,
                               struct tc_mb_policy **out, struct tc_reason *why);

/*
 * Checks a parsed log and its replayed PCRs (the caller has matched them against a quote)
 * against the policy. Returns 0, TC_ERR_POLICY with why naming the check ("mb.secureboot",
 * "mb.secureboot.pk|kek|db|dbx", "mb.boot_app", "mb.kernel_cmdline", "mb.event_digest",
 * "mb.pcr") and the event index, or TC_ERR_ALLOC / TC_ERR_CRYPTO.
 */
int tc_mb_policy_check(const struct tc_mb_policy *p, const struct tc_evlog *log,
                       const struct tc_pcr_set *replayed, struct tc_reason *why);

#endif
