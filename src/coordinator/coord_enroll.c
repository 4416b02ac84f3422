/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Enrollment (docs/protocol.md): a node earns its identity.
 *   POST /v1/enroll                 EK chain and key, AK attributes, MakeCredential
 *   POST /v1/enroll/{id}/activate   secret (constant time), quote binding the CSR key,
 *                                   certificate issuance, node creation
 * Both routes are anonymous by design: every check here is what makes the
 * caller trustworthy, so every input is bounded and every refusal names its
 * check.
 */
#define LOGMODULE "enroll"
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <tss2/tss2_mu.h>

#include "coordinator/coord.h"
#include "trustcloud/buf.h"
#include "trustcloud/credential.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"
#include "trustcloud/pcrs.h"

/* Pending enrollments are capped three ways, so that replaying public data cannot keep honest
 * nodes out (docs/protocol.md, "Enrollment limits"): 4096 in all, enroll_per_address per client
 * address, and one per EK key. A pending enrollment is only replaced by a newer one for the same
 * EK once it is older than enroll_ek_hold (time enough for the TPM that asked to activate it), only
 * by a request from another client address (so one address replaying a node's EK cannot hold its
 * slot by renewing it) and only by a request that passed every check. */
#define ENROLL_MAX_PENDING 4096
#define ENROLL_CSR_MAX 16384
#define ENROLL_ADDR_MAX 64

struct coord_pending {
    char id[65];
    char node_id[COORD_NODE_ID_MAX + 1];
    uint8_t nonce[32];
    uint8_t spki_hash[32]; /* SHA-256 of the CSR key's DER SubjectPublicKeyInfo */
    char pin[65];          /* the same in hex: recorded as the node's TLS pin */
    char *csr;
    char agent_url[TC_STORE_URL_MAX + 1];
    char host[256];
    char group[COORD_NODE_ID_MAX + 1];
    uint8_t ek_key[32];         /* SHA-256 of the EK's public key (ek_key_hash) */
    char addr[ENROLL_ADDR_MAX]; /* client address it came from (client_addr) */
    int64_t started;            /* monotonic ms (mono_ms): the hold is a duration */
    int64_t expires;
};

static void pending_clear(struct coord_pending *p)
{
    free(p->csr);
    OPENSSL_cleanse(p, sizeof(*p));
}

void coord_enroll_release(struct coord *c)
{
    for (size_t i = 0; i < c->npending; i++)
        pending_clear(&c->pending[i]);
    free(c->pending);
    c->pending = NULL;
    c->npending = 0;
}

static void pending_purge(struct coord *c, int64_t now)
{
    size_t j = 0;
    for (size_t i = 0; i < c->npending; i++) {
        if (c->pending[i].expires <= now) {
            pending_clear(&c->pending[i]);
            continue;
        }
        if (i != j)
            c->pending[j] = c->pending[i];
        j++;
    }
    c->npending = j;
}

static struct coord_pending *pending_find(struct coord *c, const char *id)
{
    for (size_t i = 0; i < c->npending; i++)
        if (strcmp(c->pending[i].id, id) == 0)
            return &c->pending[i];
    return NULL;
}

static void pending_remove(struct coord *c, struct coord_pending *p)
{
    size_t i = (size_t)(p - c->pending);
    pending_clear(p);
    if (i + 1 < c->npending)
        memmove(&c->pending[i], &c->pending[i + 1], (c->npending - i - 1) * sizeof(*p));
    c->npending--;
}

/* The client address a request counts against: the IP without the port; an IPv6 address by its
 * /64, the block one subscriber usually holds. */
static void client_addr(const char *remote, char out[ENROLL_ADDR_MAX])
{
    char ip[ENROLL_ADDR_MAX];
    snprintf(ip, sizeof(ip), "%s", remote ? remote : "?");
    char *colon = strrchr(ip, ':');
    if (colon)
        *colon = '\0';
    struct in6_addr a6;
    if (strchr(ip, ':') && inet_pton(AF_INET6, ip, &a6) == 1 && !IN6_IS_ADDR_V4MAPPED(&a6)) {
        memset(a6.s6_addr + 8, 0, 8);
        char net[INET6_ADDRSTRLEN];
        if (inet_ntop(AF_INET6, &a6, net, sizeof(net))) {
            snprintf(out, ENROLL_ADDR_MAX, "%s/64", net);
            return;
        }
    }
    snprintf(out, ENROLL_ADDR_MAX, "%s", ip);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t pending_from(const struct coord *c, const char *addr)
{
    size_t n = 0;
    for (size_t i = 0; i < c->npending; i++)
        n += strcmp(c->pending[i].addr, addr) == 0;
    return n;
}

static struct coord_pending *pending_for_ek(struct coord *c, const uint8_t key[32])
{
    for (size_t i = 0; i < c->npending; i++)
        if (memcmp(c->pending[i].ek_key, key, 32) == 0)
            return &c->pending[i];
    return NULL;
}

static void hash_integer(EVP_MD_CTX *md, const uint8_t *b, size_t len)
{
    while (len && *b == 0) { /* big-endian: leading zeroes are the same integer */
        b++;
        len--;
    }
    uint8_t l[2] = {(uint8_t)(len >> 8), (uint8_t)len};
    EVP_DigestUpdate(md, l, sizeof(l));
    EVP_DigestUpdate(md, b, len);
}

/* What makes an EK the same EK: its key (type, RSA modulus or ECC point), not the other fields of
 * the public area, which the EK certificate does not cover and a replay could vary at will. */
static int ek_key_hash(const TPMT_PUBLIC *ek, uint8_t out[32])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int rc = TC_ERR_CRYPTO;
    uint8_t t[2] = {(uint8_t)(ek->type >> 8), (uint8_t)ek->type};
    if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
        goto out;
    EVP_DigestUpdate(md, t, sizeof(t));
    if (ek->type == TPM2_ALG_RSA) {
        hash_integer(md, ek->unique.rsa.buffer, ek->unique.rsa.size);
    } else if (ek->type == TPM2_ALG_ECC) {
        hash_integer(md, ek->unique.ecc.x.buffer, ek->unique.ecc.x.size);
        hash_integer(md, ek->unique.ecc.y.buffer, ek->unique.ecc.y.size);
    } else {
        rc = TC_ERR_KEY;
        goto out;
    }
    if (EVP_DigestFinal_ex(md, out, NULL) == 1)
        rc = 0;
out:
    EVP_MD_CTX_free(md);
    return rc;
}

/* A marshaled TPM2B_PUBLIC, consumed exactly. */
static int unmarshal_public(const uint8_t *data, size_t len, TPM2B_PUBLIC *pub)
{
    return tc_tpm2b_public_unmarshal(data, len, pub);
}

static bool bytes_equal_padded(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    /* Big-endian integers: leading zeroes do not count. */
    while (alen && *a == 0) {
        a++;
        alen--;
    }
    while (blen && *b == 0) {
        b++;
        blen--;
    }
    return alen == blen && memcmp(a, b, alen) == 0;
}

/* The EK certificate must certify exactly the EK public area the node sent. */
static int ek_cert_matches(X509 *cert, const TPMT_PUBLIC *ek, const char *prefix,
                           struct tc_reason *why)
{
    char chk_cert[40], chk_ek[40];
    snprintf(chk_cert, sizeof(chk_cert), "%s.ek_cert", prefix);
    snprintf(chk_ek, sizeof(chk_ek), "%s.ek", prefix);
    int rc = TC_ERR_MISMATCH;
    EVP_PKEY *key = X509_get0_pubkey(cert);
    BIGNUM *n = NULL, *e = NULL;
    uint8_t *nb = NULL, pt[1 + 2 * 66];
    size_t ptlen = 0;
    if (!key)
        return tc_fail(why, TC_ERR_FORMAT, chk_cert, -1, "no public key in EK cert");
    if (ek->type == TPM2_ALG_RSA) {
        if (!EVP_PKEY_is_a(key, "RSA") || !EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &n) ||
            !EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_E, &e))
            goto fail;
        int nlen = BN_num_bytes(n);
        if (nlen <= 0 || !(nb = malloc((size_t)nlen)))
            goto fail;
        BN_bn2bin(n, nb);
        uint32_t exp =
            ek->parameters.rsaDetail.exponent ? ek->parameters.rsaDetail.exponent : 65537;
        if (!bytes_equal_padded(nb, (size_t)nlen, ek->unique.rsa.buffer, ek->unique.rsa.size) ||
            !BN_is_word(e, exp))
            goto fail;
        rc = 0;
    } else if (ek->type == TPM2_ALG_ECC) {
        if (!EVP_PKEY_is_a(key, "EC") ||
            !EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pt,
                                             sizeof(pt), &ptlen) ||
            ptlen < 3 || pt[0] != 0x04 || (ptlen - 1) % 2 != 0)
            goto fail;
        size_t f = (ptlen - 1) / 2;
        if (!bytes_equal_padded(pt + 1, f, ek->unique.ecc.x.buffer, ek->unique.ecc.x.size) ||
            !bytes_equal_padded(pt + 1 + f, f, ek->unique.ecc.y.buffer, ek->unique.ecc.y.size))
            goto fail;
        rc = 0;
    } else {
        rc = tc_fail(why, TC_ERR_KEY, chk_ek, -1, "EK type 0x%04x is not RSA or ECC", ek->type);
        goto out;
    }
    goto out;
fail:
    rc = tc_fail(why, TC_ERR_MISMATCH, chk_cert, -1, "the EK certificate does not certify ek_pub");
out:
    BN_free(n);
    BN_free(e);
    free(nb);
    return rc;
}

int coord_ek_check(const uint8_t *ek_pub, size_t ek_pub_len, X509 *ek_cert, const char *prefix,
                   TPM2B_PUBLIC *ekp, struct tc_reason *why)
{
    char chk[40];
    int rc;
    snprintf(chk, sizeof(chk), "%s.ek", prefix);
    if ((rc = unmarshal_public(ek_pub, ek_pub_len, ekp)) != 0)
        return tc_fail(why, rc, chk, -1, "ek_pub is not a marshaled TPM2B_PUBLIC");
    return ek_cert ? ek_cert_matches(ek_cert, &ekp->publicArea, prefix, why) : 0;
}

int coord_keys_check(const TPM2B_PUBLIC *ekp, const uint8_t *ak_pub, size_t ak_pub_len,
                     const char *prefix, struct tc_ak **ak, struct tc_reason *why)
{
    char chk_eka[40], chk_ak[40], chk_aka[40];
    int rc;
    *ak = NULL;
    snprintf(chk_eka, sizeof(chk_eka), "%s.ek_attributes", prefix);
    snprintf(chk_ak, sizeof(chk_ak), "%s.ak", prefix);
    snprintf(chk_aka, sizeof(chk_aka), "%s.ak_attributes", prefix);
    TPMA_OBJECT ek_attrs = ekp->publicArea.objectAttributes;
    if (!(ek_attrs & TPMA_OBJECT_RESTRICTED) || !(ek_attrs & TPMA_OBJECT_DECRYPT) ||
        (ek_attrs & TPMA_OBJECT_SIGN_ENCRYPT))
        return tc_fail(why, TC_ERR_KEY, chk_eka, -1, "the EK is not a restricted decryption key");
    /* The AK: restricted signing, generated in and bound to its TPM. */
    TPM2B_PUBLIC akp;
    if ((rc = unmarshal_public(ak_pub, ak_pub_len, &akp)) != 0)
        return tc_fail(why, rc, chk_ak, -1, "ak_pub is not a marshaled TPM2B_PUBLIC");
    const TPMA_OBJECT need = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                             TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_RESTRICTED |
                             TPMA_OBJECT_SIGN_ENCRYPT;
    if ((akp.publicArea.objectAttributes & need) != need ||
        (akp.publicArea.objectAttributes & TPMA_OBJECT_DECRYPT))
        return tc_fail(why, TC_ERR_KEY, chk_aka, -1,
                       "the AK must be a restricted signing key with "
                       "fixedTPM|fixedParent|sensitiveDataOrigin (attributes 0x%08x)",
                       (unsigned)akp.publicArea.objectAttributes);
    if ((rc = tc_ak_from_tpm2b_public(ak_pub, ak_pub_len, ak, why)) != 0)
        return rc == TC_ERR_FORMAT ? TC_ERR_KEY : rc;
    return 0;
}

/* Parses the CSR (self-signature checked) and hashes its key's SubjectPublicKeyInfo. */
static int csr_key_hash(const char *pem, size_t len, uint8_t hash[32], char pin[65])
{
    int rc = TC_ERR_FORMAT;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509_REQ *req = NULL;
    unsigned char *der = NULL;
    if (!bio)
        return TC_ERR_ALLOC;
    if (!(req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL)))
        goto out;
    EVP_PKEY *k = X509_REQ_get0_pubkey(req);
    if (!k || X509_REQ_verify(req, k) != 1) {
        rc = TC_ERR_SIGNATURE;
        goto out;
    }
    int n = i2d_PUBKEY(k, &der);
    if (n <= 0)
        goto out;
    SHA256(der, (size_t)n, hash);
    tc_hex_encode(hash, 32, pin);
    rc = 0;
out:
    OPENSSL_free(der);
    X509_REQ_free(req);
    BIO_free(bio);
    return rc;
}

/* The port of an https URL coord_valid_url accepted (443 when it names none). */
static unsigned url_port(const char *url)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    if (*p == '[')
        p = strchr(p, ']');
    while (p && *p && *p != ':' && *p != '/')
        p++;
    return p && *p == ':' ? (unsigned)strtoul(p + 1, NULL, 10) : 443;
}

static bool ip_is_loopback(const unsigned char *ip, int len)
{
    static const unsigned char v6[16] = {[15] = 1};
    return (len == 4 && ip[0] == 127) || (len == 16 && memcmp(ip, v6, 16) == 0);
}

/*
 * Whether the agent_url host is one of the coordinator's own names or addresses (its
 * certificate's CN and subjectAltNames): the coordinator would be told to poll itself, and a
 * client resolving that name must only ever find the coordinator. A loopback address names the
 * machine, which local agents share with a local coordinator: it is the coordinator's only
 * together with the coordinator's port.
 */
static int agent_url_not_coordinator(struct coord *c, const char *host, const char *url,
                                     struct tc_reason *why)
{
    X509 *own = NULL;
    GENERAL_NAMES *names = NULL;
    unsigned char ip[16];
    int iplen = inet_pton(AF_INET, host, ip) == 1 ? 4 : inet_pton(AF_INET6, host, ip) == 1 ? 16 : 0;
    int rc = tc_pki_cert_load(c->cert_file, &own);
    if (rc)
        return tc_fail(why, rc, "enroll.coordinator_cert", -1, "cannot read %s", c->cert_file);
    bool same = false;
    char cn[256];
    if (!iplen && tc_pki_cert_cn(own, cn, sizeof(cn)) == 0 && strcasecmp(cn, host) == 0)
        same = true;
    names = X509_get_ext_d2i(own, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; !same && names && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        if (gn->type == GEN_DNS && !iplen) {
            const ASN1_IA5STRING *d = gn->d.dNSName;
            size_t hl = strlen(host);
            while (hl > 0 && host[hl - 1] == '.')
                hl--;
            same = (size_t)d->length == hl && strncasecmp((const char *)d->data, host, hl) == 0;
        } else if (gn->type == GEN_IPADD && iplen && gn->d.iPAddress->length == iplen &&
                   memcmp(gn->d.iPAddress->data, ip, (size_t)iplen) == 0) {
            same = !ip_is_loopback(ip, iplen) ||
                   (c->httpd && url_port(url) == tc_httpd_port(c->httpd));
        }
    }
    GENERAL_NAMES_free(names);
    X509_free(own);
    if (same)
        return tc_fail(why, TC_ERR_POLICY, "enroll.agent_url_coordinator", -1,
                       "agent_url names the coordinator itself (%s is in its certificate)", host);
    return 0;
}

/* Optional base64 member: absent/null is fine (data NULL), anything else must decode. */
static int b64_member(const json_t *body, const char *key, size_t max, bool required, uint8_t **out,
                      size_t *len, struct tc_reason *why)
{
    *out = NULL;
    *len = 0;
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v)) {
        if (required)
            return tc_fail(why, TC_ERR_FORMAT, "request.field", -1, "%s is required", key);
        return 0;
    }
    if (!json_is_string(v))
        return tc_fail(why, TC_ERR_FORMAT, "request.field", -1, "%s must be a base64 string", key);
    int rc = coord_b64_decode(json_string_value(v), json_string_length(v), max, out, len);
    if (rc == TC_ERR_TOO_LARGE)
        return tc_fail(why, rc, "request.field", -1, "%s is larger than %zu bytes", key, max);
    if (rc || *len == 0)
        return tc_fail(why, rc ? rc : TC_ERR_FORMAT, "request.field", -1, "%s is not valid base64",
                       key);
    return 0;
}

static unsigned status_of(int rc)
{
    switch (rc) {
    case TC_ERR_ALLOC:
    case TC_ERR_IO:
    case TC_ERR_INTERNAL:
    case TC_ERR_CRYPTO:
        return 500;
    case TC_ERR_TOO_LARGE:
        return 413;
    case TC_ERR_NOT_FOUND:
        return 404;
    default:
        return 400;
    }
}

void coord_enroll_handle(struct coord *c, const struct tc_http_request *req,
                         struct tc_http_response *resp)
{
    struct tc_reason why;
    int rc;
    unsigned status = 400;
    uint8_t *ek_pub = NULL, *ek_cert = NULL, *ak_pub = NULL;
    size_t ek_pub_len, ek_cert_len, ak_pub_len;
    X509 *cert = NULL;
    struct tc_ak *ak = NULL;
    struct coord_pending p;
    struct tc_store_enrollment e;
    struct tc_store_node existing;
    uint8_t secret[32];
    struct tc_credential_blob blob;
    json_t *out = NULL;
    memset(&p, 0, sizeof(p));
    memset(&e, 0, sizeof(e));
    memset(&existing, 0, sizeof(existing));
    tc_reason_clear(&why);

    json_t *body = coord_json_parse(req->body, req->body_len, (size_t)c->cfg->max_body, &why);
    if (!body) {
        rc = why.code;
        goto fail;
    }
    size_t id_len, url_len, csr_len, group_len = 0;
    const char *node_id = coord_json_str(body, "node_id", 256, &id_len);
    const char *url = coord_json_str(body, "agent_url", TC_STORE_URL_MAX, &url_len);
    const char *csr = coord_json_str(body, "csr", ENROLL_CSR_MAX, &csr_len);
    const char *group = coord_json_str(body, "group", 256, &group_len);
    if (!node_id || !coord_valid_node_id(node_id, id_len)) {
        rc = tc_fail(&why, TC_ERR_FORMAT, "request.node_id", -1,
                     "node_id must match [A-Za-z0-9._-]{1,64}");
        goto fail;
    }
    if (!url || !coord_valid_url(url, false, p.host, sizeof(p.host))) {
        rc = tc_fail(&why, TC_ERR_FORMAT, "request.agent_url", -1,
                     "agent_url must be https://HOST[:PORT]");
        goto fail;
    }
    if ((rc = agent_url_not_coordinator(c, p.host, url, &why)) != 0) {
        status = rc == TC_ERR_POLICY ? 403 : 500;
        goto fail;
    }
    if (json_object_get(body, "group") && !json_is_null(json_object_get(body, "group")) &&
        (!group || !coord_valid_group(group, group_len))) {
        rc = tc_fail(&why, TC_ERR_FORMAT, "request.group", -1,
                     "group must match [A-Za-z0-9._-]{1,64}");
        goto fail;
    }
    if (!csr) {
        rc = tc_fail(&why, TC_ERR_FORMAT, "request.csr", -1, "csr (PEM, <= %d bytes) is required",
                     ENROLL_CSR_MAX);
        goto fail;
    }
    if ((rc = b64_member(body, "ek_pub", TC_STORE_KEY_MAX, true, &ek_pub, &ek_pub_len, &why)) ||
        (rc = b64_member(body, "ak_pub", TC_STORE_KEY_MAX, true, &ak_pub, &ak_pub_len, &why)) ||
        (rc = b64_member(body, "ek_cert", TC_STORE_CERT_MAX, false, &ek_cert, &ek_cert_len, &why)))
        goto fail;

    /* The cheap limits first: a flood is refused before any signature check or MakeCredential. */
    int64_t now = tc_store_now_ms();
    pending_purge(c, now);
    client_addr(req->remote_addr, p.addr);
    if (pending_from(c, p.addr) >= (size_t)c->cfg->enroll_per_address) {
        status = 503;
        rc =
            tc_fail(&why, TC_ERR_TOO_LARGE, "enroll.address_busy", -1,
                    "%lld pending enrollments from %s already", c->cfg->enroll_per_address, p.addr);
        goto fail;
    }

    rc = tc_store_node_get(c->store, node_id, &existing);
    if (rc == 0) {
        status = 409;
        rc = tc_fail(&why, TC_ERR_MISMATCH, "enroll.node_exists", -1, "node %s is already enrolled",
                     node_id);
        goto fail;
    } else if (rc != TC_ERR_NOT_FOUND) {
        tc_fail(&why, rc, "store", -1, "store error");
        goto fail;
    }

    /* The EK: a TPM public area, certified by its manufacturer. */
    TPM2B_PUBLIC ekp;
    if ((rc = unmarshal_public(ek_pub, ek_pub_len, &ekp)) != 0) {
        tc_fail(&why, rc, "enroll.ek", -1, "ek_pub is not a marshaled TPM2B_PUBLIC");
        goto fail;
    }
    if ((rc = ek_key_hash(&ekp.publicArea, p.ek_key)) != 0) {
        status = 403;
        tc_fail(&why, rc, "enroll.ek", -1, "EK type 0x%04x is not RSA or ECC", ekp.publicArea.type);
        goto fail;
    }
    /* One pending enrollment per EK: a young one is being activated by the TPM that asked (or is
     * a replay of its public data, which cannot be activated either way), so it is kept; the
     * address that started it cannot renew it either, it expires. */
    struct coord_pending *same_ek = pending_for_ek(c, p.ek_key);
    int64_t age = same_ek ? mono_ms() - same_ek->started : 0;
    if (same_ek && (age < c->cfg->enroll_ek_hold_ms || strcmp(same_ek->addr, p.addr) == 0)) {
        status = 503;
        long long wait = strcmp(same_ek->addr, p.addr) == 0
                             ? (long long)(same_ek->expires - now)
                             : (long long)(c->cfg->enroll_ek_hold_ms - age);
        rc = tc_fail(&why, TC_ERR_MISMATCH, "enroll.ek_pending", -1,
                     "an enrollment for this EK is pending; retry in %lld ms", wait);
        goto fail;
    }
    if (ek_cert) {
        if (!c->cfg->ek_ca_bundle && !c->cfg->allow_ek_without_cert) {
            status = 403;
            rc = tc_fail(&why, TC_ERR_SIGNATURE, "enroll.ek_cert", -1,
                         "no ek_ca_bundle is configured to verify EK certificates");
            goto fail;
        }
        if (c->cfg->ek_ca_bundle) {
            struct tc_pki_verify_opts vo = {.trust = c->cfg->ek_ca_bundle,
                                            .flags = TC_PKI_VERIFY_EK};
            if ((rc = tc_pki_verify_chain(ek_cert, ek_cert_len, &vo, &why)) != 0) {
                status = rc == TC_ERR_IO ? 500 : 403;
                goto fail;
            }
        }
        if ((rc = tc_pki_cert_parse(ek_cert, ek_cert_len, &cert)) != 0) {
            tc_fail(&why, rc, "enroll.ek_cert", -1, "ek_cert is not a certificate");
            goto fail;
        }
        if ((rc = ek_cert_matches(cert, &ekp.publicArea, "enroll", &why)) != 0) {
            status = 403;
            goto fail;
        }
    } else if (!c->cfg->allow_ek_without_cert) {
        status = 403;
        rc = tc_fail(&why, TC_ERR_SIGNATURE, "enroll.ek_cert", -1,
                     "an EK certificate is required (allow_ek_without_cert is off)");
        goto fail;
    }
    if ((rc = coord_keys_check(&ekp, ak_pub, ak_pub_len, "enroll", &ak, &why)) != 0) {
        status = rc == TC_ERR_FORMAT || rc == TC_ERR_TRAILING ? 400 : 403;
        goto fail;
    }
    const uint8_t *name;
    size_t name_len;
    if ((rc = tc_ak_name(ak, &name, &name_len)) != 0) {
        tc_fail(&why, rc, "enroll.ak", -1, "the AK has no TPM name");
        goto fail;
    }

    if ((rc = csr_key_hash(csr, csr_len, p.spki_hash, p.pin)) != 0) {
        tc_fail(&why, rc, "request.csr", -1, "csr is not a PEM CSR with a valid self-signature");
        goto fail;
    }

    /* The challenge only this TPM can answer. */
    uint8_t idb[16];
    if (RAND_bytes(secret, sizeof(secret)) != 1 || RAND_bytes(p.nonce, sizeof(p.nonce)) != 1 ||
        RAND_bytes(idb, sizeof(idb)) != 1) {
        rc = tc_fail(&why, TC_ERR_CRYPTO, "enroll.random", -1, "RAND_bytes failed");
        goto fail;
    }
    if ((rc = tc_make_credential(ek_pub, ek_pub_len, name, name_len, secret, sizeof(secret),
                                 &blob)) != 0) {
        status = rc == TC_ERR_KEY || rc == TC_ERR_FORMAT ? 403 : 500;
        tc_fail(&why, rc, "enroll.make_credential", -1, "cannot wrap a credential to this EK (%s)",
                tc_strerror(rc));
        goto fail;
    }

    /* Every check passed: this one replaces an older pending enrollment for the same EK (the
     * agent that asked it has given up, or it was a replay). The handler runs under coord.lock,
     * so nothing moved since pending_for_ek. */
    if ((same_ek = pending_for_ek(c, p.ek_key)) != NULL) {
        LOG_INFO("enrollment %s for node %s replaced by a newer one for the same EK", same_ek->id,
                 same_ek->node_id);
        pending_remove(c, same_ek);
    }
    if (c->npending >= ENROLL_MAX_PENDING) {
        status = 503;
        rc = tc_fail(&why, TC_ERR_TOO_LARGE, "enroll.busy", -1, "too many pending enrollments");
        goto fail;
    }
    tc_hex_encode(idb, sizeof(idb), p.id);
    snprintf(p.node_id, sizeof(p.node_id), "%s", node_id);
    snprintf(p.agent_url, sizeof(p.agent_url), "%s", url);
    snprintf(p.group, sizeof(p.group), "%s", group ? group : "");
    p.started = mono_ms();
    p.expires = now + c->cfg->enrollment_ttl_ms;

    snprintf(e.id, sizeof(e.id), "%s", p.id);
    snprintf(e.node_id, sizeof(e.node_id), "%s", node_id);
    if ((rc = tc_store_secret_hash(secret, sizeof(secret), e.secret_hash)) != 0)
        goto fail;
    e.ek_pub = (struct tc_store_blob){ek_pub, ek_pub_len};
    e.ek_cert = (struct tc_store_blob){ek_cert, ek_cert_len};
    e.ak_pub = (struct tc_store_blob){ak_pub, ak_pub_len};
    e.ak_name = (struct tc_store_blob){(uint8_t *)name, name_len};
    e.expires = p.expires;
    rc = tc_store_enrollment_put(c->store, &e);
    memset(&e, 0, sizeof(e)); /* blobs are borrowed */
    if (rc) {
        status = 500;
        tc_fail(&why, rc, "store", -1, "cannot record the enrollment");
        goto fail;
    }
    struct coord_pending *grown = realloc(c->pending, (c->npending + 1) * sizeof(*c->pending));
    if (!grown) {
        rc = TC_ERR_ALLOC;
        goto fail;
    }
    c->pending = grown;
    if (!(p.csr = strndup(csr, csr_len))) {
        rc = TC_ERR_ALLOC;
        goto fail;
    }
    c->pending[c->npending++] = p;
    memset(&p, 0, sizeof(p));

    char nonce_hex[65];
    tc_hex_encode(c->pending[c->npending - 1].nonce, 32, nonce_hex);
    char *idobj = coord_b64_encode(blob.id_object, blob.id_object_len);
    char *encsec = coord_b64_encode(blob.secret, blob.secret_len);
    out =
        json_pack("{s:s, s:s, s:s, s:s, s:I}", "enrollment_id", c->pending[c->npending - 1].id,
                  "id_object", idobj ? idobj : "", "encrypted_secret", encsec ? encsec : "",
                  "nonce", nonce_hex, "expires_in", (json_int_t)(c->cfg->enrollment_ttl_ms / 1000));
    free(idobj);
    free(encsec);
    LOG_INFO("enrollment %s started for node %s (%s)", c->pending[c->npending - 1].id, node_id,
             ek_cert ? "EK certificate verified" : "EK without certificate");
    tc_http_response_json(resp, 200, out);
    goto out;

fail:
    if (status == 400)
        status = status_of(rc);
    LOG_INFO("enrollment refused: %s: %s", why.check[0] ? why.check : "request", why.detail);
    coord_reply_error(resp, status, why.check[0] ? why.check : "request", "%s", why.detail);
out:
    OPENSSL_cleanse(secret, sizeof(secret));
    OPENSSL_cleanse(&blob, sizeof(blob));
    if (p.csr)
        free(p.csr);
    json_decref(out);
    json_decref(body);
    free(ek_pub);
    free(ek_cert);
    free(ak_pub);
    X509_free(cert);
    tc_ak_free(ak);
    tc_store_node_release(&existing);
}

void coord_activate_handle(struct coord *c, const char *enrollment_id,
                           const struct tc_http_request *req, struct tc_http_response *resp)
{
    struct tc_reason why;
    int rc = 0;
    unsigned status = 400;
    struct tc_store_enrollment e;
    struct tc_store_node node;
    struct tc_ak *ak = NULL;
    uint8_t *secret = NULL, *attest = NULL, *sig = NULL;
    size_t secret_len = 0, attest_len, sig_len;
    char *cert_pem = NULL;
    json_t *out = NULL;
    memset(&e, 0, sizeof(e));
    memset(&node, 0, sizeof(node));
    tc_reason_clear(&why);

    json_t *body = coord_json_parse(req->body, req->body_len, (size_t)c->cfg->max_body, &why);
    if (!body) {
        rc = why.code;
        goto fail;
    }
    int64_t now = tc_store_now_ms();
    pending_purge(c, now);
    struct coord_pending *p = NULL;
    if (strlen(enrollment_id) == 32)
        p = pending_find(c, enrollment_id);
    if (!p || (rc = tc_store_enrollment_get(c->store, enrollment_id, now, &e)) != 0) {
        status = 404;
        rc = tc_fail(&why, TC_ERR_NOT_FOUND, "enroll.unknown", -1,
                     "no such pending enrollment (expired or already used)");
        goto fail;
    }
    if ((rc = b64_member(body, "secret", TC_STORE_SECRET_MAX, true, &secret, &secret_len, &why)))
        goto fail;
    if (!tc_store_secret_matches(e.secret_hash, secret, secret_len)) {
        status = 403;
        rc = tc_fail(&why, TC_ERR_MISMATCH, "enroll.secret", -1,
                     "the activated credential does not match");
        goto fail;
    }
    json_t *q = json_object_get(body, "quote");
    if (!json_is_object(q)) {
        rc = tc_fail(&why, TC_ERR_FORMAT, "request.quote", -1, "quote object is required");
        goto fail;
    }
    if ((rc = b64_member(q, "attest", TC_QUOTE_MAX_ATTEST, true, &attest, &attest_len, &why)) ||
        (rc = b64_member(q, "signature", TC_QUOTE_MAX_SIG, true, &sig, &sig_len, &why)))
        goto fail;
    struct tc_pcr_set pcrs;
    tc_pcrs_init(&pcrs);
    if (!json_is_object(json_object_get(q, "pcrs")) ||
        tc_pcrs_from_json(json_object_get(q, "pcrs"), &pcrs) != 0) {
        rc = tc_fail(&why, TC_ERR_FORMAT, "request.pcrs", -1,
                     "quote.pcrs must be {\"sha256\": {\"0\": \"hex\"}}");
        goto fail;
    }
    if ((rc = tc_ak_from_tpm2b_public(e.ak_pub.data, e.ak_pub.len, &ak, &why)) != 0) {
        status = 500;
        goto fail;
    }
    /* qualifyingData = SHA-256(nonce || SHA-256(SPKI of the CSR key)): this AK vouches for
     * this TLS key. */
    uint8_t qd[32], cat[64];
    memcpy(cat, p->nonce, 32);
    memcpy(cat + 32, p->spki_hash, 32);
    SHA256(cat, sizeof(cat), qd);
    struct tc_pcr_set selset;
    struct tc_pcr_selection sel;
    tc_pcrs_parse_selection("sha256:0", &selset);
    tc_pcr_selection_from_set(&selset, &sel);
    struct tc_quote_expect ex = {.nonce = qd, .nonce_len = sizeof(qd), .selection = &sel};
    if ((rc = tc_quote_verify(ak, attest, attest_len, sig, sig_len, &pcrs, &ex, NULL, &why)) != 0) {
        status = 403;
        goto fail;
    }

    /* The coordinator names the node, never the host it chose: CN "node:ID", the node EKU and
     * (when the id is a DNS label sequence) DNS ID.node.invalid, a reserved name no coordinator
     * or webhook receiver has. The node serves with it (serverAuth): the coordinator reaches it
     * by its pinned key, not by a name. */
    char cn[COORD_NODE_ID_MAX + 8], dns[COORD_NODE_ID_MAX + 24];
    snprintf(cn, sizeof(cn), "node:%s", p->node_id);
    snprintf(dns, sizeof(dns), "DNS:%s.node.invalid", p->node_id);
    const char *sans[] = {dns, NULL};
    bool dns_ok = p->node_id[0] != '.' && p->node_id[0] != '-' && !strchr(p->node_id, '_') &&
                  !strstr(p->node_id, "..");
    struct tc_pki_issue_req ir = {.cn = cn,
                                  .sans = dns_ok ? sans : NULL,
                                  .usage = TC_PKI_USAGE_BOTH,
                                  .role = TC_PKI_ROLE_NODE,
                                  .days = 365,
                                  .csr_pem = p->csr,
                                  .csr_len = strlen(p->csr)};
    if ((rc = tc_pki_issue(c->ca, &ir, &cert_pem)) != 0) {
        status = rc == TC_ERR_SIGNATURE || rc == TC_ERR_INVALID_ARG ? 400 : 500;
        tc_fail(&why, rc, "enroll.issue", -1, "cannot issue the node certificate (%s)",
                tc_strerror(rc));
        goto fail;
    }

    snprintf(node.id, sizeof(node.id), "%s", p->node_id);
    node.state =
        c->cfg->approval == COORD_APPROVAL_MANUAL ? TC_NODE_PENDING_APPROVAL : TC_NODE_ENROLLED;
    node.ek_pub = e.ek_pub;
    node.ek_cert = e.ek_cert;
    node.ak_pub = e.ak_pub;
    node.ak_name = e.ak_name;
    snprintf(node.tls_cert_fp, sizeof(node.tls_cert_fp), "%s", p->pin);
    snprintf(node.agent_url, sizeof(node.agent_url), "%s", p->agent_url);
    snprintf(node.group_name, sizeof(node.group_name), "%s", p->group);
    rc = tc_store_enrollment_complete(c->store, enrollment_id, now, &node);
    memset(&node.ek_pub, 0, sizeof(node.ek_pub)); /* borrowed from e */
    memset(&node.ek_cert, 0, sizeof(node.ek_cert));
    memset(&node.ak_pub, 0, sizeof(node.ak_pub));
    memset(&node.ak_name, 0, sizeof(node.ak_name));
    if (rc == TC_ERR_MISMATCH) {
        status = 409;
        tc_fail(&why, rc, "enroll.node_exists", -1, "node %s is already enrolled", p->node_id);
        goto fail;
    } else if (rc) {
        status = rc == TC_ERR_NOT_FOUND ? 404 : 500;
        tc_fail(&why, rc, "enroll.complete", -1, "cannot complete the enrollment (%s)",
                tc_strerror(rc));
        goto fail;
    }
    coord_engine_node_upsert(c, node.id);
    out = json_pack("{s:s, s:s, s:s, s:s}", "node_id", node.id, "certificate", cert_pem, "ca",
                    c->ca_pem, "state", tc_node_state_name(node.state));
    LOG_INFO("node %s enrolled (%s), agent %s", node.id, tc_node_state_name(node.state),
             node.agent_url);
    pending_remove(c, p);
    tc_http_response_json(resp, 200, out);
    goto out;

fail:
    if (status == 400)
        status = status_of(rc);
    LOG_INFO("activation refused: %s: %s", why.check[0] ? why.check : "request", why.detail);
    coord_reply_error(resp, status, why.check[0] ? why.check : "request", "%s", why.detail);
out:
    if (secret)
        OPENSSL_cleanse(secret, secret_len);
    free(secret);
    free(attest);
    free(sig);
    free(cert_pem);
    json_decref(out);
    json_decref(body);
    tc_ak_free(ak);
    tc_store_enrollment_release(&e);
    tc_store_node_release(&node);
}
