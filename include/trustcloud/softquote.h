/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Software-signed quotes for load generation and benchmarks ONLY.
 *
 * A soft AK is an OpenSSL key wrapped in a real TPM2B_PUBLIC (restricted
 * signing, fixedTPM...), and a soft quote is a real TPMS_ATTEST signed with
 * it, byte-for-byte what a TPM would produce. They let one process emulate
 * thousands of nodes. Nothing proves such a key lives in a TPM: a verifier
 * must never accept one outside an explicit load-test configuration, which
 * is why enrollment (credential activation against a manufacturer-certified
 * EK) is what makes an AK trusted, never its format.
 */
#ifndef TRUSTCLOUD_SOFTQUOTE_H
#define TRUSTCLOUD_SOFTQUOTE_H

#include <stddef.h>
#include <stdint.h>

#include "trustcloud/pcrs.h"
#include "trustcloud/tpm.h"

struct tc_softak;

/* alg: TC_KEY_ECC_P256 (ECDSA-SHA256) or TC_KEY_RSA_2048 (RSASSA-SHA256). */
int tc_softak_new(enum tc_key_alg alg, struct tc_softak **out);
void tc_softak_free(struct tc_softak *ak);
/* The marshaled TPM2B_PUBLIC (view owned by ak). */
const uint8_t *tc_softak_public(const struct tc_softak *ak, size_t *len);

/* A quote over the PCRs selected in sel (values taken from pcrs), qualifyingData = nonce.
 * Outputs are malloc'd: marshaled TPMS_ATTEST and TPMT_SIGNATURE. clock/reset/restart are
 * written as given. */
int tc_softquote(const struct tc_softak *ak, const struct tc_pcr_set *sel,
                 const struct tc_pcr_set *pcrs, const uint8_t *nonce, size_t nonce_len,
                 uint64_t clock, uint32_t reset_count, uint32_t restart_count, uint8_t **attest,
                 size_t *attest_len, uint8_t **sig, size_t *sig_len);

#endif
