/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Linux IMA measurement lists: parsing (ASCII and binary, classic and
 * canonical), template-hash checks, PCR replay per bank, incremental replay
 * for verifiers that receive only new entries, and serialisation back to both
 * formats (what an agent sends).
 *
 * Kernel rules followed (security/integrity/ima):
 *  - The template data the kernel hashes is, for every template but "ima",
 *    the concatenation of the fields each prefixed by its u32 length; for the
 *    "ima" template it is the 20-byte digest followed by the name padded with
 *    zeroes to 256 bytes (no length prefixes).
 *  - A violation (ToMToU, open-writers) has an all-zero template hash in the
 *    log, but 0xff..ff is extended into every bank.
 *  - Since Linux 5.11 each bank is extended with the template data hashed in
 *    that bank's algorithm; older kernels extended the SHA-1 template hash
 *    zero-padded to the bank size (TC_IMA_REPLAY_SHA1_PADDED).
 *
 * Entry indexes in reasons are global: a delta list starting at entry N
 * (tc_ima_parse_opts.first_index) reports its first entry as N.
 */
#ifndef TRUSTCLOUD_IMA_H
#define TRUSTCLOUD_IMA_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trustcloud/buf.h"
#include "trustcloud/hashalg.h"
#include "trustcloud/pcrs.h"
#include "trustcloud/reason.h"

/* Caps on untrusted input. */
#define TC_IMA_MAX_FILE (256u << 20)       /* whole measurement list */
#define TC_IMA_MAX_ENTRIES_DEFAULT 1000000 /* entries per list */
#define TC_IMA_MAX_TEMPLATE_NAME 32        /* kernel: 15 */
#define TC_IMA_MAX_TEMPLATE_DATA (256u << 10)
#define TC_IMA_MAX_FIELDS 10
#define TC_IMA_MAX_PATH 4096 /* name field, NUL excluded */
#define TC_IMA_MAX_LINE (2 * TC_IMA_MAX_TEMPLATE_DATA + 512)
#define TC_IMA_PCR 10
#define TC_IMA_NAME_LEN_MAX 255 /* "ima" template: name padded to 256 bytes */

enum tc_ima_format { TC_IMA_FMT_AUTO = 0, TC_IMA_FMT_ASCII, TC_IMA_FMT_BINARY };
enum tc_ima_endian { TC_IMA_ENDIAN_AUTO = 0, TC_IMA_ENDIAN_LE, TC_IMA_ENDIAN_BE };

enum tc_ima_template {
    TC_IMA_TPL_OTHER = 0, /* unknown name: fields split generically (binary only) */
    TC_IMA_TPL_IMA,       /* d|n */
    TC_IMA_TPL_NG,        /* d-ng|n-ng */
    TC_IMA_TPL_NGV2,      /* d-ngv2|n-ng */
    TC_IMA_TPL_SIG,       /* d-ng|n-ng|sig */
    TC_IMA_TPL_SIGV2,     /* d-ngv2|n-ng|sig */
    TC_IMA_TPL_BUF,       /* d-ng|n-ng|buf */
    TC_IMA_TPL_MODSIG,    /* d-ng|n-ng|sig|d-modsig|modsig */
    TC_IMA_TPL_EVMSIG,    /* d-ng|n-ng|evmsig|xattrnames|xattrlengths|xattrvalues|iuid|igid|imode */
};

struct tc_ima_field {
    const uint8_t *data; /* view into the entry's template_data */
    uint32_t len;
};

struct tc_ima_entry {
    uint32_t pcr;
    uint8_t template_hash[TC_MAX_DIGEST]; /* as found in the log */
    size_t template_hash_len;
    bool violation; /* template hash all zero */
    char template_name[TC_IMA_MAX_TEMPLATE_NAME + 1];
    enum tc_ima_template tpl;
    uint8_t *template_data; /* owned: the exact bytes the kernel hashed */
    size_t template_data_len;
    size_t nfields;
    struct tc_ima_field field[TC_IMA_MAX_FIELDS]; /* raw field values (no length prefix) */
    /* Decoded views into template_data (NULL / 0 when the template has no such field). */
    const struct tc_hash_alg *digest_alg; /* file digest algorithm ("ima": sha1) */
    const uint8_t *digest;
    size_t digest_len;
    const char *path; /* NUL-terminated; the keyring / buffer name for ima-buf */
    size_t path_len;
    const uint8_t *sig; /* IMA signature (security.ima xattr value), may be empty */
    size_t sig_len;
    const uint8_t *buf; /* ima-buf payload */
    size_t buf_len;
};

struct tc_ima_log {
    struct tc_ima_entry *entries;
    size_t count;
    size_t cap;
    size_t first_index; /* global index of entries[0] */
    /* Algorithm of the template hashes in the log: sha1 for the classic lists. */
    const struct tc_hash_alg *template_hash_alg;
};

struct tc_ima_parse_opts {
    enum tc_ima_format format;
    enum tc_ima_endian endian; /* binary only; AUTO: detected from the first PCR index */
    /* Template hash algorithm: NULL = sha1 for binary, by hash length for ASCII (32 bytes:
     * sha256, or sm3_256 when that is what the first non-violation entry's hash matches). */
    const struct tc_hash_alg *template_hash_alg;
    size_t max_entries; /* 0: TC_IMA_MAX_ENTRIES_DEFAULT */
    size_t first_index; /* global index of the first entry (delta lists) */
};

/* Parses a measurement list. *out is allocated on success only (tc_ima_log_free). Errors:
 * TC_ERR_FORMAT / TC_ERR_TRUNCATED (check "ima.parse"), TC_ERR_TOO_LARGE (caps),
 * TC_ERR_UNSUPPORTED (unknown digest algorithm or ASCII template): why names the entry.
 * opts may be NULL. Template hashes are NOT checked here. */
int tc_ima_log_parse(const uint8_t *data, size_t len, const struct tc_ima_parse_opts *opts,
                     struct tc_ima_log **out, struct tc_reason *why);
/* Reads and parses a file (at most TC_IMA_MAX_FILE bytes). */
int tc_ima_log_parse_file(const char *path, const struct tc_ima_parse_opts *opts,
                          struct tc_ima_log **out, struct tc_reason *why);
/* Guesses the format: binary when the first 4 bytes are a small PCR index. */
enum tc_ima_format tc_ima_detect_format(const uint8_t *data, size_t len);
void tc_ima_log_free(struct tc_ima_log *log);

/* An empty log (for building lists programmatically). */
int tc_ima_log_new(const struct tc_hash_alg *template_hash_alg, struct tc_ima_log **out);
/* Appends an entry built from template data (copied). The template hash is computed in the
 * log's template hash algorithm (or zero when violation). The fields are decoded as the parser
 * does. */
int tc_ima_log_append(struct tc_ima_log *log, uint32_t pcr, const char *template_name,
                      const uint8_t *template_data, size_t len, bool violation,
                      struct tc_reason *why);
/* Template data for d-ng|n-ng[|extra]: "alg:\0digest", "path\0" and an optional third field
 * (sig or buf). *out malloc'd. */
int tc_ima_template_data_ng(const struct tc_hash_alg *alg, const uint8_t *digest, const char *path,
                            const uint8_t *extra, size_t extra_len, bool with_extra, uint8_t **out,
                            size_t *out_len);

/* Serialises entries [from, to) as the kernel's ascii_runtime_measurements (the template hash
 * column in the log's template hash algorithm) or as binary_runtime_measurements
 * (little-endian, canonical). TC_ERR_UNSUPPORTED for ASCII of templates it cannot print. */
int tc_ima_log_to_ascii(const struct tc_ima_log *log, size_t from, size_t to, struct tc_buf *out);
int tc_ima_log_to_binary(const struct tc_ima_log *log, size_t from, size_t to, struct tc_buf *out);

/* Checks every non-violation entry: template hash == H(template data). TC_ERR_MISMATCH
 * "ima.template_hash" with the entry index on failure. */
int tc_ima_log_verify_template_hashes(const struct tc_ima_log *log, struct tc_reason *why);

/* The digest a bank is extended with for an entry (out: alg->size bytes). */
#define TC_IMA_REPLAY_SHA1_PADDED 0x1u /* pre-5.11 kernels: SHA-1 template hash, zero-padded */
int tc_ima_entry_bank_digest(const struct tc_ima_log *log, const struct tc_ima_entry *e,
                             const struct tc_hash_alg *alg, unsigned flags, uint8_t *out);

/* Incremental replay: what a verifier keeps between rounds. */
struct tc_ima_replay_state {
    uint64_t count;         /* entries verified and extended so far */
    struct tc_pcr_set pcrs; /* one bank per replayed algorithm; PCRs touched are present */
    unsigned flags;         /* TC_IMA_REPLAY_* */
};

/* Starts at zero entries with the given banks (NULL/0: sha1 and sha256). PCR 10 of each bank is
 * present (all zero) from the start so the empty log has a value. */
int tc_ima_replay_init(struct tc_ima_replay_state *st, const struct tc_hash_alg *const *banks,
                       size_t nbanks, unsigned flags);
/*
 * Feeds a list whose first entry has global index log->first_index:
 *  - first_index == st->count: a delta; every entry is checked (template hash) and extended.
 *  - first_index == 0 < st->count: a full list; the first st->count entries are replayed from
 *    zero and must reproduce the saved PCR values (else TC_ERR_ROLLBACK "ima.rollback"), the
 *    rest is extended. A full list shorter than st->count is a rollback too.
 *  - first_index > st->count: TC_ERR_FORMAT "ima.gap"; 0 < first_index < st->count:
 *    TC_ERR_ROLLBACK "ima.rollback".
 * st is updated only on success.
 */
int tc_ima_replay_advance(struct tc_ima_replay_state *st, const struct tc_ima_log *log,
                          struct tc_reason *why);
/*
 * Finds the shortest prefix of the continuation (st->count plus k new entries of log, k >= 0)
 * whose replay gives PCR pcr of bank alg == quoted. Entries may be appended to the log after the
 * quote, so later entries are left for the next round. On success *st advances to that prefix
 * and *matched (if non-NULL) is its global entry count. TC_ERR_MISMATCH "ima.pcr_mismatch" when
 * no prefix matches; index rules as tc_ima_replay_advance.
 */
int tc_ima_replay_match_quote(struct tc_ima_replay_state *st, const struct tc_ima_log *log,
                              const struct tc_hash_alg *alg, unsigned pcr, const uint8_t *quoted,
                              uint64_t *matched, struct tc_reason *why);

/* boot_aggregate as the kernel computes it from PCRs 0-7 (sha1) or 0-9 (other banks). */
int tc_ima_boot_aggregate(const struct tc_pcr_set *pcrs, const struct tc_hash_alg *alg,
                          uint8_t *out);

/* Name of a template ("ima-ng") or NULL for TC_IMA_TPL_OTHER. */
const char *tc_ima_template_name(enum tc_ima_template t);
/* One entry as JSON: {"index", "pcr", "template_hash", "template", "violation", "digest",
 * "path", "sig", "buf"}. */
json_t *tc_ima_entry_to_json(const struct tc_ima_log *log, size_t i);

#endif
