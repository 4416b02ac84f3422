/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TPM access. src/tpm is the only code that calls ESAPI; everything it hands
 * out is plain bytes in TPM wire format (marshaled TPM2B_PUBLIC, TPMS_ATTEST,
 * TPMT_SIGNATURE), so verifiers never need a TPM.
 *
 * No resource manager is assumed: every transient object loaded by these
 * functions is flushed before they return, except keys held in struct
 * tc_tpm_key, which tc_tpm_key_release() flushes.
 */
#ifndef TRUSTCLOUD_TPM_H
#define TRUSTCLOUD_TPM_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trustcloud/hashalg.h"
#include "trustcloud/pcrs.h"

struct tc_tpm;

enum tc_key_alg { TC_KEY_ECC_P256 = 0, TC_KEY_RSA_2048, TC_KEY_SM2_P256 };
enum tc_sig_scheme { TC_SIG_DEFAULT = 0, TC_SIG_ECDSA, TC_SIG_RSASSA, TC_SIG_RSAPSS, TC_SIG_SM2 };

#define TC_TPM_MAX_PUBLIC 1024 /* >= sizeof(TPM2B_PUBLIC) marshaled */
#define TC_TPM_MAX_NAME 68     /* alg id + largest digest */

/* A key loaded in the TPM (or persistent). */
struct tc_tpm_key {
    uint32_t esys_handle;           /* ESYS_TR while loaded; 0 when not loaded */
    uint32_t persistent;            /* persistent TPM handle, or 0 */
    uint8_t pub[TC_TPM_MAX_PUBLIC]; /* marshaled TPM2B_PUBLIC (with its size prefix) */
    size_t pub_len;
    uint8_t name[TC_TPM_MAX_NAME]; /* TPM name: nameAlg (2 bytes BE) || digest */
    size_t name_len;
    enum tc_key_alg alg;
    enum tc_sig_scheme scheme;
};

/* Opens a TPM by TCTI ("device:/dev/tpmrm0", "swtpm:host=127.0.0.1,port=2321") and issues
 * Startup(CLEAR) (already started is fine). NULL tcti: the tctildr default. *out is set on
 * success only. Errors: TC_ERR_TPM for anything tpm2-tss or the TPM reports (unknown TCTI,
 * nothing listening, failed Startup; the TSS2_RC is logged), TC_ERR_ALLOC.
 * Every function below returns TC_ERR_TPM when the TPM refuses a command (the TSS2_RC is logged
 * with Tss2_RC_Decode) and TC_ERR_INVALID_ARG for arguments it can reject without the TPM. */
int tc_tpm_open(const char *tcti, struct tc_tpm **out);
/* The same without Startup, one TPM command less per connection (with swtpm's TCTI every command
 * is a TCP connection of its own), for a TPM the caller knows is started: a swtpm it runs with
 * --flags startup-clear. On a TPM that is not, the first command fails (TC_ERR_TPM, TSS2_RC
 * TPM2_RC_INITIALIZE logged): open it again with tc_tpm_open. */
int tc_tpm_open_started(const char *tcti, struct tc_tpm **out);
/* Flushes keys this handle still holds and closes the connection. NULL is a no-op. */
void tc_tpm_close(struct tc_tpm *tpm);

/* {"manufacturer": "IBM", "vendor": "SW   TPM", "firmware": "20191023.00163636" (the two
 *  32-bit firmware version words in hex), "spec": "2.0 rev 1.64 level 0", "spec_year": 2021,
 *  "spec_day": 75, "banks": ["sha1", "sha256", ...]} (active banks only). *out is the caller's. */
int tc_tpm_info(struct tc_tpm *tpm, json_t **out);
/* Every active PCR bank (at least one PCR allocated) with its allocated PCRs selected, in the
 * TPM's order. Banks with a hash trustcloud does not know are skipped. */
int tc_tpm_active_banks(struct tc_tpm *tpm, struct tc_pcr_set *sel);
/* Reads every PCR selected in sel into out (banks in sel's order). Loops past the
 * 8-digests-per-call limit, accepting any number of digests per answer but only ones that were
 * asked for; restarts when pcrUpdateCounter moves between calls, so all values belong to one
 * moment. TC_ERR_NOT_FOUND when the TPM does not return something selected (inactive bank,
 * missing PCR). out is empty on error. */
int tc_tpm_pcr_read(struct tc_tpm *tpm, const struct tc_pcr_set *sel, struct tc_pcr_set *out);
/* Extends PCR pcr (0..23; 17..22 need a higher locality) of one bank: digest has alg->size
 * bytes. */
int tc_tpm_pcr_extend(struct tc_tpm *tpm, unsigned pcr, const struct tc_hash_alg *alg,
                      const uint8_t *digest);
/* Extends PCR pcr in several banks at once: digests[i] belongs to algs[i]. */
int tc_tpm_pcr_extend_multi(struct tc_tpm *tpm, unsigned pcr, size_t n,
                            const struct tc_hash_alg *const *algs, const uint8_t *const *digests);

/* Creates the EK (TCG EK Credential Profile default template, low range: L-1 RSA 2048 or L-2 ECC
 * NIST P256) as a primary key in the endorsement hierarchy (empty endorsement auth). The key is
 * loaded (release it with tc_tpm_key_release; tc_tpm_close flushes it otherwise). The same
 * public key as tpm2_createek -G rsa|ecc. */
int tc_tpm_ek_create(struct tc_tpm *tpm, enum tc_key_alg alg, struct tc_tpm_key *ek);
/* Reads the EK certificate (DER, malloc'd: caller frees) from its standard NV index:
 * TC_TPM_NV_EK_CERT_RSA for RSA_2048, TC_TPM_NV_EK_CERT_ECC for ECC_P256. TC_ERR_NOT_FOUND when
 * the index is absent or unwritten. */
int tc_tpm_ek_cert_read(struct tc_tpm *tpm, enum tc_key_alg alg, uint8_t **der, size_t *len);

/* NV indices of EK certificates (TCG EK Credential Profile 2.0, 2.2.1.4). swtpm_setup 0.7
 * provisions an RSA 2048 EK certificate (low range) and an ECC NIST P-384 one (high range,
 * TC_TPM_NV_EK_CERT_ECC_P384), not a P-256 one. */
#define TC_TPM_NV_EK_CERT_RSA 0x01c00002u
#define TC_TPM_NV_EK_CERT_ECC 0x01c0000au
#define TC_TPM_NV_EK_CERT_ECC_P384 0x01c00016u
/* Persistent handles where EKs usually live (TCG TPM v2.0 Provisioning Guidance; swtpm_setup
 * uses them for its RSA 2048 and ECC P-384 EKs). */
#define TC_TPM_EK_HANDLE_RSA 0x81010001u
#define TC_TPM_EK_HANDLE_ECC_P384 0x81010016u

/* Reads a whole NV index (in chunks of the TPM's NV buffer size) with owner or index
 * authorization (empty). *data is malloc'd (caller frees). TC_ERR_NOT_FOUND when the index is
 * absent or unwritten, TC_ERR_TOO_LARGE when it holds more than max bytes. */
int tc_tpm_nv_read(struct tc_tpm *tpm, uint32_t index, size_t max, uint8_t **data, size_t *len);

/* Describes the persistent key at handle (0x81xxxxxx): key->pub, name (checked against the
 * TPM's), persistent = handle; alg is RSA_2048 / ECC_P256 / SM2_P256 when it is one, else
 * ECC_P256 with pub telling the truth. tc_tpm_key_release forgets it without evicting it.
 * TC_ERR_NOT_FOUND when nothing is there. */
int tc_tpm_key_from_persistent(struct tc_tpm *tpm, uint32_t handle, struct tc_tpm_key *key);
/* The persistent key at handle when its TPM name is name (name_len bytes): one TPM command
 * (ReadPublic), for paths that run often and know which key must be there (a vTPM's AK made
 * persistent at creation). key->name and key->persistent are set, key->pub is NOT (pub_len 0:
 * enough to quote or sign with it); tc_tpm_key_release forgets it without evicting it.
 * TC_ERR_MISMATCH: another key is there; TC_ERR_NOT_FOUND: nothing is (tpm2-tss then logs the
 * TPM's error: when absence is a normal case, ask tc_tpm_key_from_persistent instead). */
int tc_tpm_key_from_persistent_name(struct tc_tpm *tpm, uint32_t handle, const uint8_t *name,
                                    size_t name_len, struct tc_tpm_key *key);

/* Creates a restricted signing AK under the EK (endorsement hierarchy) and saves its public and
 * private blobs to ctx_path (mode 0600, written atomically) so a restarted process reuses it with
 * tc_tpm_ak_load. The AK comes back loaded, with pub and name filled (the name is computed and
 * checked against the TPM's). Schemes: ECC_P256 ECDSA (default), RSA_2048 RSASSA (default) or
 * RSAPSS, SM2_P256 SM2; all with SHA-256; anything else is TC_ERR_UNSUPPORTED. ek must be loaded
 * (tc_tpm_ek_create). Attributes: fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|
 * restricted|sign|noDA, empty auth.
 * tc_tpm_ak_load: TC_ERR_MISMATCH when the file's AK was created under another EK. */
int tc_tpm_ak_create(struct tc_tpm *tpm, const struct tc_tpm_key *ek, enum tc_key_alg alg,
                     enum tc_sig_scheme scheme, const char *ctx_path, struct tc_tpm_key *ak);
int tc_tpm_ak_load(struct tc_tpm *tpm, const struct tc_tpm_key *ek, const char *ctx_path,
                   struct tc_tpm_key *ak);

/* A quote's raw output, in the byte formats tpm2_quote writes (-m, -s). */
struct tc_tpm_quote {
    uint8_t *attest; /* marshaled TPMS_ATTEST (the TPM2B_ATTEST's contents) */
    size_t attest_len;
    uint8_t *sig; /* marshaled TPMT_SIGNATURE */
    size_t sig_len;
    struct tc_pcr_set pcrs; /* the selected PCR values, read right after the quote */
};

/* Quotes the PCRs selected in sel (banks in the order of sel) with qualifyingData = nonce (at
 * most 64 bytes, else TC_ERR_INVALID_ARG), using the AK's own scheme. out->pcrs holds the same
 * selection read right after the quote; when a concurrent extend made them differ from what the
 * TPM signed, the quote is taken again (up to 4 quotes; the last one is returned all the same).
 * Release out with tc_tpm_quote_release (also on error: out is cleared). */
int tc_tpm_quote(struct tc_tpm *tpm, const struct tc_tpm_key *ak, const struct tc_pcr_set *sel,
                 const uint8_t *nonce, size_t nonce_len, struct tc_tpm_quote *out);
void tc_tpm_quote_release(struct tc_tpm_quote *q);

/* Flushes the key if loaded (not persistent ones) and clears it. NULL is a no-op. */
void tc_tpm_key_release(struct tc_tpm *tpm, struct tc_tpm_key *key);

/* Counts the transient objects and the sessions loaded in the TPM right now (any owner), to
 * prove that nothing leaks when no resource manager is present. */
int tc_tpm_loaded_count(struct tc_tpm *tpm, size_t *objects, size_t *sessions);

/* Whether tcti reaches a TPM with no resource manager in between, where the transient objects
 * and sessions of a process that died stay loaded until someone flushes them: "swtpm[:...]",
 * "mssim[:...]", "device" and "device:/dev/tpmN" (also spelled with the libtss2-tcti-NAME.so
 * module name). False for everything else, "device:/dev/tpmrmN", "tabrmd" and NULL (the tctildr
 * default, which may be tabrmd or /dev/tpmrm0) included: there an RM cleans up after its
 * clients, and what is loaded belongs to other processes. */
bool tc_tpm_tcti_without_rm(const char *tcti);

/* Crash recovery: flushes every transient object (0x80xxxxxx) and every loaded HMAC or policy
 * session (0x02xxxxxx, 0x03xxxxxx) in the TPM, except the keys this handle holds in struct
 * tc_tpm_key, i.e. what a process killed while it used the TPM left behind (a TPM without RM has
 * room for about three objects: a few leftovers make every later TPM2_Load fail with
 * TPM_RC_OBJECT_MEMORY). Done only when the handle was opened with a TCTI for which
 * tc_tpm_tcti_without_rm is true; with any other TCTI it sends nothing and returns 0 with
 * *flushed = 0. It assumes that no other process keeps objects loaded in this TPM between its
 * commands (what every function here assumes already: they flush before returning).
 * flushed (may be NULL) receives how many handles were flushed; when there were some, the count
 * and the handles are logged at warn level. Errors: TC_ERR_TPM when the TPM cannot list its
 * handles, or when a handle it listed cannot be flushed (the others are flushed all the same). */
int tc_tpm_flush_leftovers(struct tc_tpm *tpm, size_t *flushed);

/* The contents of an AK context file written by tc_tpm_ak_create (versioned: magic "TCAK",
 * version, alg, scheme, lengths, the parent EK's name, TPM2B_PUBLIC, TPM2B_PRIVATE). */
struct tc_tpm_akctx {
    enum tc_key_alg alg;
    enum tc_sig_scheme scheme;            /* never TC_SIG_DEFAULT */
    uint8_t parent_name[TC_TPM_MAX_NAME]; /* name of the EK the AK was created under */
    size_t parent_name_len;
    uint8_t pub[TC_TPM_MAX_PUBLIC]; /* marshaled TPM2B_PUBLIC */
    size_t pub_len;
    uint8_t priv[1024]; /* marshaled TPM2B_PRIVATE (TPM-encrypted) */
    size_t priv_len;
    uint8_t name[TC_TPM_MAX_NAME]; /* the AK's name, computed from pub */
    size_t name_len;
};
/* Parses (untrusted) AK context bytes; both blobs are unmarshaled exactly and the public area
 * must be an AK of the recorded alg/scheme with the AK attributes (TC_ERR_KEY otherwise).
 * Needs no TPM. Errors: TC_ERR_FORMAT, TC_ERR_TRUNCATED, TC_ERR_TRAILING, TC_ERR_UNSUPPORTED
 * (version, alg), TC_ERR_TOO_LARGE. */
int tc_tpm_akctx_parse(const uint8_t *data, size_t len, struct tc_tpm_akctx *ctx);
/* Reads and parses an AK context file (at most 8 KB). */
int tc_tpm_akctx_read(const char *path, struct tc_tpm_akctx *ctx);
/* Wipes ctx. NULL is a no-op. */
void tc_tpm_akctx_release(struct tc_tpm_akctx *ctx);

#endif
