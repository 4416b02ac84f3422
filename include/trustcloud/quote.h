/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TPM 2.0 quote verification: pure functions over bytes, no TPM needed.
 *
 * A quote is a TPMS_ATTEST of type TPM2_ST_ATTEST_QUOTE (TPM 2.0 Part 2,
 * 10.12) signed by an attestation key (AK) with a TPMT_SIGNATURE. It binds a
 * verifier's nonce (extraData), a PCR selection and the digest of the selected
 * PCR values (hashed with the signature scheme's hash, banks in selection
 * order and PCRs ascending), plus the TPM's clock and boot counters.
 *
 * The AK is given either as its TPM public area (marshaled TPM2B_PUBLIC or
 * TPMT_PUBLIC; then its object attributes and its TPM name are checked) or as
 * a PEM/DER SubjectPublicKeyInfo (as tpm2_checkquote allows; then there are no
 * attributes and no name to check, and tc_quote_info says so).
 *
 * Obfuscated fields. The TPM adds a per-key constant (derived from the
 * hierarchy proof and the key's name) to resetCount, restartCount and
 * firmwareVersion when the signing key is NOT in the endorsement or platform
 * hierarchy (TPM 2.0 Part 1, "Clock and Time" / Part 3 attestation commands).
 * clock and safe are always real. Consequences for the checks below:
 *  - for an AK in the endorsement hierarchy (what tpm2_createak and
 *    tc_tpm_ak_create make) all counters are real and compared directly;
 *  - for other AKs, the obfuscation constant is the same for every quote of
 *    that AK, so the counters still change exactly when the real ones do, but
 *    a plain "<" can be wrong when the offset wraps around 2^32. Set
 *    expect.counters_obfuscated: counters are then compared with serial-number
 *    arithmetic (RFC 1982: new is "after" old when (new - old) mod 2^32 is in
 *    [1, 2^31)), which is exact as long as a counter moves by less than 2^31
 *    between two quotes. firmware_version is then meaningless as a value.
 *
 * Every rejection fills a struct tc_reason whose check names the test that
 * failed: "quote.format" (unparsable or trailing bytes), "quote.magic",
 * "quote.type", "quote.nonce", "quote.pcr_selection", "quote.pcr_values" (a
 * selected PCR has no value), "quote.pcr_digest", "quote.signature",
 * "quote.scheme" (signature scheme/hash differs from the key's), "quote.signer",
 * "quote.clock", "quote.reset_count", "quote.restart_count",
 * "quote.ak_attributes", "quote.ak" (unusable key), "quote.args" (a required argument is
 * missing).
 */
#ifndef TRUSTCLOUD_QUOTE_H
#define TRUSTCLOUD_QUOTE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trustcloud/hashalg.h"
#include "trustcloud/pcrs.h"
#include "trustcloud/reason.h"
#include <tss2/tss2_tpm2_types.h>

#define TC_QUOTE_MAX_ATTEST 1024 /* >= sizeof(TPMS_ATTEST) marshaled for a quote */
#define TC_QUOTE_MAX_SIG 1024    /* >= sizeof(TPMT_SIGNATURE) marshaled */
#define TC_QUOTE_MAX_NAME 68     /* nameAlg (2 bytes) + largest digest */
#define TC_QUOTE_MAX_NONCE 66    /* TPM2B_DATA limit: sizeof(TPMT_HA) */
#define TC_AK_MAX_FILE 16384     /* PEM/DER/TPM2B_PUBLIC file */

/* TPM handles of the hierarchies, for qualified names. */
#define TC_TPM_RH_OWNER 0x40000001u
#define TC_TPM_RH_ENDORSEMENT 0x4000000Bu
#define TC_TPM_RH_PLATFORM 0x4000000Cu

/* ---- Attestation keys (akpub.c) ---------------------------------------------------------- */

struct tc_ak;

/*
 * Parses an AK public key, auto-detecting the encoding: PEM ("-----BEGIN"), a marshaled
 * TPM2B_PUBLIC (its size prefix equals len - 2), DER SubjectPublicKeyInfo, or a marshaled
 * TPMT_PUBLIC. TPM structures must be consumed exactly. Supported keys: RSA (any size OpenSSL
 * accepts; exponent 0 means 65537), ECC NIST P-256/P-384, SM2 P-256.
 * A public area must describe a restricted signing key (restricted, sign, fixedTPM, not
 * decrypt), else TC_ERR_KEY with check "quote.ak_attributes". Other errors: TC_ERR_FORMAT
 * (check "quote.ak"), TC_ERR_UNSUPPORTED (algorithm/curve), TC_ERR_CRYPTO, TC_ERR_ALLOC.
 * *out is set on success only; free with tc_ak_free.
 */
int tc_ak_parse(const uint8_t *data, size_t len, struct tc_ak **out, struct tc_reason *why);
/* The same on a marshaled TPM2B_PUBLIC / TPMT_PUBLIC / PEM-or-DER SPKI only. */
int tc_ak_from_tpm2b_public(const uint8_t *data, size_t len, struct tc_ak **out,
                            struct tc_reason *why);
int tc_ak_from_tpmt_public(const uint8_t *data, size_t len, struct tc_ak **out,
                           struct tc_reason *why);
int tc_ak_from_spki(const uint8_t *data, size_t len, struct tc_ak **out, struct tc_reason *why);
/* Unmarshals a TPM2B_PUBLIC of exactly len bytes (untrusted) into *pub (cleared first, and
 * again on failure): TC_ERR_TRAILING when bytes are left, TC_ERR_FORMAT when it does not parse
 * or its size field does not frame the public area exactly (tpm2-tss reads the whole area under
 * a size of 0 or 1; this refuses it, so one public area has exactly one byte string). The one
 * parser of public areas for every module. */
int tc_tpm2b_public_unmarshal(const uint8_t *data, size_t len, TPM2B_PUBLIC *pub);
/* Reads a file (at most TC_AK_MAX_FILE bytes; TC_ERR_IO if unreadable) and parses it. */
int tc_ak_load_file(const char *path, struct tc_ak **out, struct tc_reason *why);
void tc_ak_free(struct tc_ak *ak);

/* True when the key came from a TPM public area (attributes checked, name known). */
bool tc_ak_has_public_area(const struct tc_ak *ak);
/* The TPM name (nameAlg BE || H(TPMT_PUBLIC)); TC_ERR_NOT_FOUND for a PEM/DER key. The view
 * lives as long as ak. */
int tc_ak_name(const struct tc_ak *ak, const uint8_t **name, size_t *len);
/* The OpenSSL EVP_PKEY (as const void * to keep OpenSSL out of this header); owned by ak. */
const void *tc_ak_evp_pkey(const struct tc_ak *ak);
/* SubjectPublicKeyInfo as PEM text (malloc'd, NUL-terminated), as tpm2_checkquote -u reads. */
int tc_ak_to_pem(const struct tc_ak *ak, char **pem, size_t *len);

/*
 * TPM name of a marshaled TPM2B_PUBLIC (any object, e.g. an EK): nameAlg || H(TPMT_PUBLIC).
 * out must hold TC_QUOTE_MAX_NAME bytes. TC_ERR_FORMAT, TC_ERR_UNSUPPORTED (nameAlg).
 */
int tc_tpm_public_name(const uint8_t *tpm2b_public, size_t len, uint8_t *out, size_t *out_len);
/*
 * Qualified name of an object (Part 1, 16.6): QN = nameAlg || H_nameAlg(QN(parent) || name),
 * where the QN of a hierarchy is its 4-byte handle. The qualifiedSigner of a quote is the
 * AK's qualified name, NOT its name: for an AK created under an EK (a primary key in the
 * endorsement hierarchy), QN(EK) = tc_tpm_qualified_name(handle TC_TPM_RH_ENDORSEMENT,
 * EK name) and QN(AK) = tc_tpm_qualified_name(QN(EK), AK name).
 * parent is either a 4-byte big-endian handle or a qualified name; name is nameAlg || digest.
 */
int tc_tpm_qualified_name(const uint8_t *parent, size_t parent_len, const uint8_t *name,
                          size_t name_len, uint8_t *out, size_t *out_len);
/* QN of an AK whose parent is a primary key (the EK) of hierarchy (TC_TPM_RH_*). */
int tc_ak_qualified_name(const struct tc_ak *ak, uint32_t hierarchy, const uint8_t *parent_pub,
                         size_t parent_pub_len, uint8_t *out, size_t *out_len);

/* ---- Quotes (quote.c) -------------------------------------------------------------------- */

/* A PCR selection in the order the TPM lists it. */
struct tc_pcr_selection {
    size_t nbanks;
    struct {
        const struct tc_hash_alg *alg;
        uint32_t mask; /* bit i: PCR i */
    } bank[TC_MAX_BANKS];
};

/* What a quote says (filled by tc_quote_parse and, on success, tc_quote_verify). */
struct tc_quote_info {
    uint64_t clock; /* ms, real even for obfuscated AKs */
    uint32_t reset_count;
    uint32_t restart_count;
    bool safe;
    uint64_t firmware_version;
    uint8_t signer[TC_QUOTE_MAX_NAME]; /* qualifiedSigner */
    size_t signer_len;
    uint8_t nonce[TC_QUOTE_MAX_NONCE]; /* extraData */
    size_t nonce_len;
    struct tc_pcr_selection selection;
    uint8_t pcr_digest[TC_MAX_DIGEST];
    size_t pcr_digest_len;
    /* Set by tc_quote_verify. */
    const struct tc_hash_alg *hash; /* signature scheme hash (also hashes the PCR digest) */
    uint16_t sig_alg;               /* TPM2_ALG_ECDSA, _RSASSA, _RSAPSS, _SM2 */
    bool ak_checked;                /* false: PEM/DER AK, attributes and name not checked */
    bool signer_checked;            /* qualifiedSigner compared with expect.signer_qn */
    bool rebooted;                  /* resetCount increased since expect.previous */
    bool restarted;                 /* restartCount increased (same boot) since previous */
    bool firmware_changed;          /* firmwareVersion differs from previous */
};

struct tc_quote_expect {
    const uint8_t *nonce; /* required: the nonce asked for */
    size_t nonce_len;
    /* Optional: the exact selection asked for (bank order and PCRs), else any is accepted. */
    const struct tc_pcr_selection *selection;
    /* Optional: the AK's expected qualified name (see tc_ak_qualified_name). Without it and
     * with a public-area AK, the qualifiedSigner must at least use the AK's nameAlg. */
    const uint8_t *signer_qn;
    size_t signer_qn_len;
    /* Optional: the info of the last accepted quote of the same AK. */
    const struct tc_quote_info *previous;
    bool counters_obfuscated; /* see the header comment */
    /* The verifier is not given the PCR values (pcrs may be NULL): everything but the PCR
     * digest is checked, and info_out->pcr_digest is what the TPM signed. For a party that
     * must not see them, e.g. a tenant checking the host quote of its VM's batch. */
    bool pcr_values_withheld;
};

/*
 * Parses a marshaled TPMS_ATTEST (consumed exactly) of type quote into info (cleared first),
 * without verifying anything but its structure, magic and type. Errors: TC_ERR_FORMAT /
 * TC_ERR_TRAILING ("quote.format"), TC_ERR_FORMAT ("quote.magic", "quote.type"),
 * TC_ERR_UNSUPPORTED (an unknown PCR bank; "quote.pcr_selection"), TC_ERR_TOO_LARGE.
 */
int tc_quote_parse(const uint8_t *attest, size_t attest_len, struct tc_quote_info *info,
                   struct tc_reason *why);

/*
 * Verifies a quote. attest: marshaled TPMS_ATTEST (tpm2_quote -m); sig: marshaled
 * TPMT_SIGNATURE (tpm2_quote -s, "tss" format); pcrs: the PCR values claimed (every selected
 * PCR must be present; extra ones are ignored). Checks, in order: structure, magic, type,
 * nonce (constant time), selection, signature scheme vs key, signature, PCR digest, signer,
 * clock and counters against expect->previous. Returns 0 when valid, with info_out (may be
 * NULL) filled; otherwise a negative TC_ERR_* (TC_ERR_NONCE, TC_ERR_SIGNATURE,
 * TC_ERR_MISMATCH, TC_ERR_ROLLBACK, TC_ERR_KEY, TC_ERR_FORMAT, ...) and why names the check.
 * info_out is cleared on failure.
 */
int tc_quote_verify(const struct tc_ak *ak, const uint8_t *attest, size_t attest_len,
                    const uint8_t *sig, size_t sig_len, const struct tc_pcr_set *pcrs,
                    const struct tc_quote_expect *expect, struct tc_quote_info *info_out,
                    struct tc_reason *why);

/* PCR digest as a TPM computes it for a quote: H(values of sel in order). TC_ERR_NOT_FOUND
 * when a selected PCR is missing from pcrs. out holds hash->size bytes. */
int tc_quote_pcr_digest(const struct tc_hash_alg *hash, const struct tc_pcr_selection *sel,
                        const struct tc_pcr_set *pcrs, uint8_t *out);

/* Selection helpers: from a set (bank order kept, masks), and back. */
void tc_pcr_selection_from_set(const struct tc_pcr_set *set, struct tc_pcr_selection *sel);
bool tc_pcr_selection_equal(const struct tc_pcr_selection *a, const struct tc_pcr_selection *b);
/* "sha256:0,1,2+sha1:0" into buf (always NUL-terminated). */
void tc_pcr_selection_format(const struct tc_pcr_selection *sel, char *buf, size_t cap);

/* {"clock", "reset_count", "restart_count", "safe", "firmware_version", "signer", "nonce",
 *  "selection", "pcr_digest", ...}. New reference or NULL. */
json_t *tc_quote_info_to_json(const struct tc_quote_info *info);

/* ---- tpm2-tools file formats (pcrfile.c) -------------------------------------------------- */

#define TC_PCRFILE_MAX_SIZE (64u << 10)

/*
 * The PCR file tpm2_quote -o writes (and tpm2_checkquote -f reads) in tpm2-tools 5.x's default
 * "serialized" format: the host-layout structs written as-is, multi-byte fields little-endian:
 *   TPML_PCR_SELECTION (u32 count, then 16 x {u16 hash, u8 sizeofSelect, u8 pcrSelect[4],
 *   1 pad byte}) = 132 bytes; u32 n; n x TPML_DIGEST (u32 count, then 8 x {u16 size,
 *   u8 buffer[64]}) = 532 bytes each.
 * The digests follow the selection (banks in order, PCRs ascending), up to 8 per TPML_DIGEST.
 * out receives the banks in selection order with their values; sel_out (optional) the
 * selection itself. Errors: TC_ERR_FORMAT (sizes, counts, digests that do not match the
 * selection), TC_ERR_UNSUPPORTED (bank), TC_ERR_TOO_LARGE.
 */
int tc_pcrfile_read_tpm2_tools(const uint8_t *data, size_t len, struct tc_pcr_set *out,
                               struct tc_pcr_selection *sel_out);
/* Writes pcrs (every present PCR, banks in set order) in that format. *out is malloc'd. */
int tc_pcrfile_write_tpm2_tools(const struct tc_pcr_set *pcrs, uint8_t **out, size_t *len);
/* The -F values format: the digests concatenated in selection order (needs the selection). */
int tc_pcrfile_read_values(const uint8_t *data, size_t len, const struct tc_pcr_selection *sel,
                           struct tc_pcr_set *out);
/*
 * Auto-detects: JSON {"sha256": {"0": "hex"}} when the first non-blank byte is '{', else the
 * tpm2-tools serialized format.
 */
int tc_pcrfile_parse(const uint8_t *data, size_t len, struct tc_pcr_set *out);
int tc_pcrfile_load(const char *path, struct tc_pcr_set *out);

/*
 * Converts a tpm2_quote -f plain signature into a marshaled TPMT_SIGNATURE for ak: ECDSA/SM2
 * keys take a DER ECDSA-Sig-Value (consumed exactly), RSA keys the raw signature (as many bytes
 * as the modulus). sig_alg: TPM2_ALG_* of the scheme, or 0 for the AK's own scheme (ECDSA, SM2
 * or RSASSA when it has none). hash: the scheme hash (tpm2_quote -g). out holds
 * TC_QUOTE_MAX_SIG bytes. Errors: TC_ERR_FORMAT, TC_ERR_KEY (scheme does not fit the key).
 */
struct tc_ak;
int tc_sig_from_plain(const struct tc_ak *ak, uint16_t sig_alg, const struct tc_hash_alg *hash,
                      const uint8_t *plain, size_t plain_len, uint8_t *out, size_t *out_len);

#endif
