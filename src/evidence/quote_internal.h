/* SPDX-License-Identifier: Apache-2.0 */
/* Shared between akpub.c and quote.c: the AK as the verifier uses it. */
#ifndef TC_EVIDENCE_QUOTE_INTERNAL_H
#define TC_EVIDENCE_QUOTE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <tss2/tss2_tpm2_types.h>

#include "trustcloud/hashalg.h"
#include "trustcloud/quote.h"

enum tc_ak_type { TC_AK_RSA = 1, TC_AK_ECC, TC_AK_SM2 };

struct tc_ak {
    EVP_PKEY *pkey;
    enum tc_ak_type key_type;
    bool has_public;      /* from a TPM public area: attributes checked, name known */
    uint16_t scheme;      /* TPM2_ALG_NULL when the key has none (or PEM) */
    uint16_t scheme_hash; /* hash of the key's scheme */
    const struct tc_hash_alg *name_alg;
    uint8_t name[TC_QUOTE_MAX_NAME];
    size_t name_len;
};

#endif
