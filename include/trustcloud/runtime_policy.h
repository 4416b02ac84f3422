/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Runtime (IMA) policies: which file digests, keys and buffers a machine may
 * measure. Reads Keylime's runtime-policy JSON and plain allowlists
 * ("digest  path" lines), writes Keylime-compatible JSON, and checks IMA
 * entries with Keylime's semantics:
 *  - a path matching an exclude regex (POSIX ERE, anchored at the start of the
 *    path like Python's re.match) is accepted whatever its digest;
 *  - ima-sig entries with a signature are accepted when it verifies with a
 *    policy key and rejected when it does not; without a signature (or without
 *    keys in the policy) the digest must be listed for the path;
 *  - ima-buf entries are checked against "keyrings" (name = keyring) or
 *    "ima-buf", unless the keyring is ignored ("*" ignores all);
 *  - boot_aggregate is an ordinary path in "digests";
 *  - violations (all-zero template hash) fail unless allowed.
 * Digests may carry an "alg:" prefix; without one they match any algorithm of
 * that digest size.
 */
#ifndef TRUSTCLOUD_RUNTIME_POLICY_H
#define TRUSTCLOUD_RUNTIME_POLICY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trustcloud/hashalg.h"
#include "trustcloud/ima.h"
#include "trustcloud/reason.h"

#define TC_RP_MAX_SIZE (64u << 20) /* policy file */
#define TC_RP_MAX_DEPTH 16         /* JSON nesting */
#define TC_RP_MAX_EXCLUDES 1024
#define TC_RP_MAX_REGEX_LEN 1024
#define TC_RP_MAX_DIGESTS_PER_PATH 256
#define TC_RP_MAX_KEYS 64
#define TC_RP_MAX_PATHS 4000000

struct tc_runtime_policy;

int tc_runtime_policy_new(struct tc_runtime_policy **out);
void tc_runtime_policy_free(struct tc_runtime_policy *p);

/* Parses Keylime runtime-policy JSON or, when data does not start with '{', a plain allowlist.
 * Errors (TC_ERR_FORMAT, TC_ERR_TOO_LARGE, TC_ERR_UNSUPPORTED, TC_ERR_KEY) name the offending
 * item in why (check "ima.policy.parse"). *out set on success only. */
int tc_runtime_policy_parse(const uint8_t *data, size_t len, struct tc_runtime_policy **out,
                            struct tc_reason *why);
int tc_runtime_policy_parse_json(const uint8_t *data, size_t len, struct tc_runtime_policy **out,
                                 struct tc_reason *why);
/* "digest path" lines (one or more spaces/tabs; "alg:" prefix optional; '#' comments, blank
 * lines skipped). */
int tc_runtime_policy_parse_allowlist(const uint8_t *data, size_t len,
                                      struct tc_runtime_policy **out, struct tc_reason *why);
int tc_runtime_policy_load_file(const char *path, struct tc_runtime_policy **out,
                                struct tc_reason *why);

/* Building. alg NULL: the digest matches any algorithm with its size. */
int tc_runtime_policy_add_digest(struct tc_runtime_policy *p, const char *path,
                                 const struct tc_hash_alg *alg, const uint8_t *digest, size_t len);
/* Same as text: "hex" or "alg:hex". */
int tc_runtime_policy_add_digest_text(struct tc_runtime_policy *p, const char *path,
                                      const char *text, size_t tlen);
int tc_runtime_policy_add_exclude(struct tc_runtime_policy *p, const char *regex);
int tc_runtime_policy_add_keyring_digest(struct tc_runtime_policy *p, const char *keyring,
                                         const struct tc_hash_alg *alg, const uint8_t *digest,
                                         size_t len);
int tc_runtime_policy_add_ignored_keyring(struct tc_runtime_policy *p, const char *keyring);
/* An RSA or EC public key (PEM or DER SubjectPublicKeyInfo, or a PEM/DER X.509 certificate)
 * that IMA signatures may verify with. Its key id is the last 4 bytes of a certificate's Subject
 * Key Identifier, else of SHA-1 over the subjectPublicKey bits (what the kernel and
 * ima-evm-utils use). TC_ERR_KEY if unreadable. In JSON, "verification-keys" is read as Keylime
 * writes it: a string of JSON {"pubkeys": [base64 DER], "keyids": [int]} (or keyrings by name,
 * possibly encoded twice); PEM text and lists of PEM strings are accepted too. */
int tc_runtime_policy_add_key(struct tc_runtime_policy *p, const uint8_t *data, size_t len);
void tc_runtime_policy_set_allow_violations(struct tc_runtime_policy *p, bool allow);
/* "log_hash_alg" of Keylime policies (template hash algorithm of the list, sha1 by default). */
const struct tc_hash_alg *tc_runtime_policy_log_hash_alg(const struct tc_runtime_policy *p);
size_t tc_runtime_policy_path_count(const struct tc_runtime_policy *p);

/* Checks one entry (index = its global index, for the reason). 0 when accepted, else
 * TC_ERR_POLICY with check "ima.policy.not_in_policy", "ima.policy.digest",
 * "ima.policy.signature", "ima.policy.keyring", "ima.policy.violation" (or
 * "ima.policy.unsupported" for an entry without a path) and the path in the detail. */
int tc_runtime_policy_check_entry(const struct tc_runtime_policy *p, const struct tc_ima_entry *e,
                                  long index, struct tc_reason *why);
/* Checks entries [from, to) of log (positions in log->entries); stops at the first failure. */
int tc_runtime_policy_check_log(const struct tc_runtime_policy *p, const struct tc_ima_log *log,
                                size_t from, size_t to, struct tc_reason *why);

/* Keylime runtime-policy JSON (meta, release, digests, excludes, keyrings, ima, ima-buf,
 * verification-keys). *out is a new reference. */
int tc_runtime_policy_to_json(const struct tc_runtime_policy *p, json_t **out);
/* A policy that accepts exactly the measurements of a known-good list: digests per path,
 * keyring digests for ima-buf entries, log_hash_alg from the list. Violations are skipped. */
int tc_runtime_policy_from_ima_log(const struct tc_ima_log *log, struct tc_runtime_policy **out,
                                   struct tc_reason *why);

#endif
