/* SPDX-License-Identifier: Apache-2.0 */
/*
 * PCR value files: tpm2-tools 5.x (tpm2_quote -o, tpm2_checkquote -f) and
 * trustcloud JSON. Layout of the tpm2-tools "serialized" format: see quote.h.
 */
#define LOGMODULE "pcrfile"
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <tss2/tss2_mu.h>

#include "evidence/quote_internal.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"
#include "trustcloud/quote.h"

/* Sizes of the host structs tpm2-tools writes (x86-64 and every common ABI: 2-byte alignment). */
#define SEL_ENTRIES 16                              /* TPM2_NUM_PCR_BANKS */
#define SEL_ENTRY_SIZE 8                            /* u16 hash, u8 size, u8[4] select, pad */
#define SEL_SIZE (4 + SEL_ENTRIES * SEL_ENTRY_SIZE) /* TPML_PCR_SELECTION: 132 */
#define DIGESTS_PER_LIST 8                          /* TPML_DIGEST holds 8 digests */
#define DIGEST_ENTRY_SIZE (2 + 64)                  /* TPM2B_DIGEST: u16 size, u8[64] */
#define LIST_SIZE (4 + DIGESTS_PER_LIST * DIGEST_ENTRY_SIZE) /* TPML_DIGEST: 532 */
#define MAX_LISTS 32 /* tpm2_pcrs holds TPM2_MAX_PCRS lists */

int tc_pcrfile_read_tpm2_tools(const uint8_t *data, size_t len, struct tc_pcr_set *out,
                               struct tc_pcr_selection *sel_out)
{
    struct tc_pcr_selection sel;
    struct tc_reader r, rl;
    uint32_t count, nlists;
    int rc;

    tc_pcrs_init(out);
    memset(&sel, 0, sizeof(sel));
    if (sel_out)
        memset(sel_out, 0, sizeof(*sel_out));
    if (len > TC_PCRFILE_MAX_SIZE)
        return TC_ERR_TOO_LARGE;
    tc_reader_init(&r, data, len);
    if ((rc = tc_reader_u32le(&r, &count)) != 0)
        return rc;
    if (count == 0 || count > SEL_ENTRIES)
        return TC_ERR_FORMAT;
    if (count > TC_MAX_BANKS)
        return TC_ERR_TOO_LARGE;
    for (uint32_t i = 0; i < SEL_ENTRIES; i++) {
        uint16_t hash;
        uint8_t size, select[4], pad;
        if ((rc = tc_reader_u16le(&r, &hash)) != 0 || (rc = tc_reader_u8(&r, &size)) != 0 ||
            (rc = tc_reader_bytes(&r, select, 4)) != 0 || (rc = tc_reader_u8(&r, &pad)) != 0)
            return rc;
        if (i >= count)
            continue; /* unused entries hold whatever the struct held */
        const struct tc_hash_alg *alg = tc_hash_by_tpm(hash);
        if (alg == NULL)
            return TC_ERR_UNSUPPORTED;
        if (size > 4)
            return TC_ERR_FORMAT;
        uint32_t mask = 0;
        for (unsigned j = 0; j < size; j++)
            mask |= (uint32_t)select[j] << (8 * j);
        if (mask >> TC_PCR_COUNT)
            return TC_ERR_FORMAT;
        sel.bank[i].alg = alg;
        sel.bank[i].mask = mask;
    }
    sel.nbanks = count;
    if ((rc = tc_reader_u32le(&r, &nlists)) != 0)
        return rc;
    if (nlists > MAX_LISTS || tc_reader_left(&r) != (size_t)nlists * LIST_SIZE)
        return TC_ERR_FORMAT;

    /* Walk the selection and take digests from the lists in order. */
    uint32_t list = 0, in_list = 0, di = 0;
    for (size_t b = 0; b < sel.nbanks; b++) {
        const struct tc_hash_alg *alg = sel.bank[b].alg;
        if (tc_pcrs_bank(out, alg, true) == NULL)
            return TC_ERR_TOO_LARGE;
        for (unsigned p = 0; p < TC_PCR_COUNT; p++) {
            if (!(sel.bank[b].mask & (1u << p)))
                continue;
            while (di == in_list) {
                if (list == nlists)
                    return TC_ERR_FORMAT; /* fewer digests than selected PCRs */
                if ((rc = tc_reader_sub(&r, LIST_SIZE, &rl)) != 0 ||
                    (rc = tc_reader_u32le(&rl, &in_list)) != 0)
                    return rc;
                if (in_list > DIGESTS_PER_LIST)
                    return TC_ERR_FORMAT;
                list++;
                di = 0;
            }
            uint16_t dsize;
            const uint8_t *dv;
            if ((rc = tc_reader_u16le(&rl, &dsize)) != 0 ||
                (rc = tc_reader_view(&rl, 64, &dv)) != 0)
                return rc;
            if (dsize != alg->size)
                return TC_ERR_FORMAT;
            if ((rc = tc_pcrs_set(out, alg, p, dv)) != 0)
                return rc;
            di++;
        }
    }
    /* Every digest the file lists must have been used (no extra lists or digests). */
    if (list != nlists || di != in_list) {
        tc_pcrs_init(out);
        return TC_ERR_FORMAT;
    }
    if (sel_out)
        *sel_out = sel;
    return 0;
}

static void put_u16le(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32le(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

int tc_pcrfile_write_tpm2_tools(const struct tc_pcr_set *pcrs, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    size_t total = 0;
    if (pcrs->nbanks == 0 || pcrs->nbanks > SEL_ENTRIES)
        return TC_ERR_INVALID_ARG;
    for (size_t b = 0; b < pcrs->nbanks; b++)
        total += (size_t)__builtin_popcount(pcrs->bank[b].mask);
    size_t nlists = (total + DIGESTS_PER_LIST - 1) / DIGESTS_PER_LIST;
    if (total == 0 || nlists > MAX_LISTS)
        return TC_ERR_INVALID_ARG;
    size_t n = SEL_SIZE + 4 + nlists * LIST_SIZE;
    uint8_t *buf = calloc(1, n);
    if (buf == NULL)
        return TC_ERR_ALLOC;

    put_u32le(buf, (uint32_t)pcrs->nbanks);
    for (size_t b = 0; b < pcrs->nbanks; b++) {
        uint8_t *e = buf + 4 + b * SEL_ENTRY_SIZE;
        uint32_t mask = pcrs->bank[b].mask;
        put_u16le(e, pcrs->bank[b].alg->tpm_alg);
        e[2] = 3; /* 24 PCRs */
        e[3] = (uint8_t)mask, e[4] = (uint8_t)(mask >> 8), e[5] = (uint8_t)(mask >> 16);
    }
    put_u32le(buf + SEL_SIZE, (uint32_t)nlists);
    size_t k = 0; /* digest number overall */
    for (size_t b = 0; b < pcrs->nbanks; b++) {
        const struct tc_pcr_bank *bank = &pcrs->bank[b];
        for (unsigned p = 0; p < TC_PCR_COUNT; p++) {
            if (!(bank->mask & (1u << p)))
                continue;
            uint8_t *l = buf + SEL_SIZE + 4 + (k / DIGESTS_PER_LIST) * LIST_SIZE;
            size_t in = k % DIGESTS_PER_LIST;
            put_u32le(l, (uint32_t)(in + 1));
            uint8_t *d = l + 4 + in * DIGEST_ENTRY_SIZE;
            put_u16le(d, (uint16_t)bank->alg->size);
            memcpy(d + 2, bank->value[p], bank->alg->size);
            k++;
        }
    }
    *out = buf;
    *len = n;
    return 0;
}

int tc_pcrfile_read_values(const uint8_t *data, size_t len, const struct tc_pcr_selection *sel,
                           struct tc_pcr_set *out)
{
    struct tc_reader r;
    int rc;
    tc_pcrs_init(out);
    if (len > TC_PCRFILE_MAX_SIZE)
        return TC_ERR_TOO_LARGE;
    tc_reader_init(&r, data, len);
    for (size_t b = 0; b < sel->nbanks; b++)
        for (unsigned p = 0; p < TC_PCR_COUNT; p++) {
            if (!(sel->bank[b].mask & (1u << p)))
                continue;
            const uint8_t *v;
            if ((rc = tc_reader_view(&r, sel->bank[b].alg->size, &v)) != 0 ||
                (rc = tc_pcrs_set(out, sel->bank[b].alg, p, v)) != 0) {
                tc_pcrs_init(out);
                return rc == TC_ERR_TRUNCATED ? TC_ERR_FORMAT : rc;
            }
        }
    if (tc_reader_left(&r) != 0) {
        tc_pcrs_init(out);
        return TC_ERR_TRAILING;
    }
    return 0;
}

int tc_pcrfile_parse(const uint8_t *data, size_t len, struct tc_pcr_set *out)
{
    tc_pcrs_init(out);
    if (len > TC_PCRFILE_MAX_SIZE)
        return TC_ERR_TOO_LARGE;
    size_t i = 0;
    while (i < len && (data[i] == ' ' || data[i] == '\n' || data[i] == '\r' || data[i] == '\t'))
        i++;
    if (i < len && data[i] == '{') {
        json_error_t err;
        json_t *j = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &err);
        if (j == NULL)
            return TC_ERR_FORMAT;
        int rc = tc_pcrs_from_json(j, out);
        json_decref(j);
        if (rc)
            tc_pcrs_init(out);
        return rc;
    }
    return tc_pcrfile_read_tpm2_tools(data, len, out, NULL);
}

int tc_pcrfile_load(const char *path, struct tc_pcr_set *out)
{
    uint8_t *data = NULL;
    size_t len = 0;
    tc_pcrs_init(out);
    int rc = tc_file_read(path, TC_PCRFILE_MAX_SIZE, &data, &len);
    if (rc)
        return rc == TC_ERR_TOO_LARGE ? rc : TC_ERR_IO;
    rc = tc_pcrfile_parse(data, len, out);
    free(data);
    return rc;
}

int tc_sig_from_plain(const struct tc_ak *ak, uint16_t sig_alg, const struct tc_hash_alg *hash,
                      const uint8_t *plain, size_t plain_len, uint8_t *out, size_t *out_len)
{
    TPMT_SIGNATURE t;
    int rc = TC_ERR_FORMAT;
    *out_len = 0;
    memset(&t, 0, sizeof(t));
    if (hash == NULL || plain_len == 0 || plain_len > TC_QUOTE_MAX_SIG || plain_len > INT32_MAX)
        return TC_ERR_FORMAT;
    if (sig_alg == 0)
        sig_alg = ak->scheme != TPM2_ALG_NULL ? ak->scheme
                  : ak->key_type == TC_AK_RSA ? TPM2_ALG_RSASSA
                  : ak->key_type == TC_AK_SM2 ? TPM2_ALG_SM2
                                              : TPM2_ALG_ECDSA;
    t.sigAlg = sig_alg;
    if (sig_alg == TPM2_ALG_ECDSA || sig_alg == TPM2_ALG_SM2) {
        if (ak->key_type == TC_AK_RSA)
            return TC_ERR_KEY;
        const unsigned char *p = plain;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)plain_len);
        if (es == NULL)
            return TC_ERR_FORMAT;
        const BIGNUM *r = ECDSA_SIG_get0_r(es), *s = ECDSA_SIG_get0_s(es);
        TPMS_SIGNATURE_ECC *e = &t.signature.ecdsa;
        e->hash = hash->tpm_alg;
        if (p == plain + plain_len && BN_num_bytes(r) <= 66 && BN_num_bytes(s) <= 66) {
            e->signatureR.size = (UINT16)BN_bn2bin(r, e->signatureR.buffer);
            e->signatureS.size = (UINT16)BN_bn2bin(s, e->signatureS.buffer);
            rc = 0;
        }
        ECDSA_SIG_free(es);
        if (rc)
            return rc;
    } else if (sig_alg == TPM2_ALG_RSASSA || sig_alg == TPM2_ALG_RSAPSS) {
        if (ak->key_type != TC_AK_RSA)
            return TC_ERR_KEY;
        if (plain_len > sizeof(t.signature.rsassa.sig.buffer) ||
            (int)plain_len != EVP_PKEY_get_size(ak->pkey))
            return TC_ERR_FORMAT;
        t.signature.rsassa.hash = hash->tpm_alg;
        t.signature.rsassa.sig.size = (UINT16)plain_len;
        memcpy(t.signature.rsassa.sig.buffer, plain, plain_len);
    } else {
        return TC_ERR_UNSUPPORTED;
    }
    size_t off = 0;
    if (Tss2_MU_TPMT_SIGNATURE_Marshal(&t, out, TC_QUOTE_MAX_SIG, &off) != TSS2_RC_SUCCESS)
        return TC_ERR_INTERNAL;
    *out_len = off;
    return 0;
}
