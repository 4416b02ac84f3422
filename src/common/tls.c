/* SPDX-License-Identifier: Apache-2.0 */
#define LOGMODULE "tls"
#include "trustcloud/tls.h"

#include <arpa/inet.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/log.h"
#include "trustcloud/pki.h"

static int ossl_fail(const char *what, int code)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    LOG_ERROR("%s: %s", what, e ? buf : "failed");
    ERR_clear_error();
    return code;
}

static int ctx_common(const struct tc_tls_config *cfg, bool server, SSL_CTX **out)
{
    int rc = 0;
    SSL_CTX *ctx = NULL;
    *out = NULL;
    if (!cfg || !cfg->ca_file)
        return TC_ERR_INVALID_ARG;
    bool have_cert = cfg->cert || cfg->cert_file;
    bool have_key = cfg->key || cfg->key_file;
    if (have_cert != have_key || (server && !have_cert))
        return TC_ERR_INVALID_ARG;
    if (!(ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method())))
        return ossl_fail("SSL_CTX_new", TC_ERR_ALLOC);
    if (!SSL_CTX_set_min_proto_version(ctx, cfg->allow_tls12 ? TLS1_2_VERSION : TLS1_3_VERSION)) {
        rc = ossl_fail("SSL_CTX_set_min_proto_version", TC_ERR_INTERNAL);
        goto out;
    }
    /* Our own CA only: no default verify paths are ever loaded. */
    if (SSL_CTX_load_verify_locations(ctx, cfg->ca_file, NULL) != 1) {
        rc = ossl_fail(cfg->ca_file, TC_ERR_IO);
        goto out;
    }
    if (cfg->cert) {
        if (SSL_CTX_use_certificate(ctx, cfg->cert) != 1) {
            rc = ossl_fail("SSL_CTX_use_certificate", TC_ERR_KEY);
            goto out;
        }
    } else if (cfg->cert_file && SSL_CTX_use_certificate_chain_file(ctx, cfg->cert_file) != 1) {
        rc = ossl_fail(cfg->cert_file, TC_ERR_IO);
        goto out;
    }
    if (cfg->key) {
        if (SSL_CTX_use_PrivateKey(ctx, cfg->key) != 1) {
            rc = ossl_fail("SSL_CTX_use_PrivateKey", TC_ERR_KEY);
            goto out;
        }
    } else if (cfg->key_file &&
               SSL_CTX_use_PrivateKey_file(ctx, cfg->key_file, SSL_FILETYPE_PEM) != 1) {
        rc = ossl_fail(cfg->key_file, TC_ERR_IO);
        goto out;
    }
    if (have_cert && SSL_CTX_check_private_key(ctx) != 1) {
        rc = ossl_fail("private key does not match the certificate", TC_ERR_KEY);
        goto out;
    }
    int mode = SSL_VERIFY_PEER;
    if (server && !cfg->allow_anonymous)
        mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(ctx, mode, NULL);
    SSL_CTX_set_verify_depth(ctx, cfg->verify_depth > 0 ? cfg->verify_depth : 2);
    /* libevent's TLS bufferevents retry writes from buffers that may move between retries. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    if (server) {
        /* Tell clients which CA we want their certificate from. */
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->ca_file);
        if (names)
            SSL_CTX_set_client_CA_list(ctx, names);
        ERR_clear_error();
        static const unsigned char sid[] = "trustcloud";
        SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
    }
    *out = ctx;
    ctx = NULL;
out:
    SSL_CTX_free(ctx);
    return rc;
}

int tc_tls_server_ctx(const struct tc_tls_config *cfg, SSL_CTX **out)
{
    return ctx_common(cfg, true, out);
}

int tc_tls_client_ctx(const struct tc_tls_config *cfg, SSL_CTX **out)
{
    return ctx_common(cfg, false, out);
}

int tc_tls_set_peer_name(SSL *ssl, const char *host)
{
    unsigned char bin[16];
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    if (!host || !*host)
        return TC_ERR_INVALID_ARG;
    if (inet_pton(AF_INET, host, bin) == 1 || inet_pton(AF_INET6, host, bin) == 1) {
        if (X509_VERIFY_PARAM_set1_ip_asc(param, host) != 1)
            return ossl_fail("X509_VERIFY_PARAM_set1_ip_asc", TC_ERR_INVALID_ARG);
        return 0;
    }
    if (SSL_set1_host(ssl, host) != 1 || SSL_set_tlsext_host_name(ssl, host) != 1)
        return ossl_fail("SSL_set1_host", TC_ERR_INVALID_ARG);
    return 0;
}

int tc_tls_peer_from_cert(X509 *cert, struct tc_peer *peer)
{
    int rc;
    memset(peer, 0, sizeof(*peer));
    if ((rc = tc_pki_cert_fingerprint(cert, peer->fingerprint)) != 0)
        return rc;
    tc_hex_encode(peer->fingerprint, sizeof(peer->fingerprint), peer->fingerprint_hex);
    uint8_t spki[32];
    if ((rc = tc_pki_cert_spki_hash(cert, spki)) != 0)
        goto out;
    tc_hex_encode(spki, sizeof(spki), peer->spki_hex);
    rc = tc_pki_cert_cn(cert, peer->cn, sizeof(peer->cn));
    if (rc == TC_ERR_NOT_FOUND)
        rc = 0;
    peer->roles = tc_pki_cert_roles(cert);
out:
    if (rc)
        memset(peer, 0, sizeof(*peer));
    return rc;
}

int tc_tls_peer(SSL *ssl, struct tc_peer *peer)
{
    memset(peer, 0, sizeof(*peer));
    X509 *cert = SSL_get0_peer_certificate(ssl);
    if (!cert)
        return TC_ERR_NOT_FOUND;
    if (SSL_get_verify_result(ssl) != X509_V_OK)
        return TC_ERR_SIGNATURE;
    return tc_tls_peer_from_cert(cert, peer);
}

int tc_tls_check_expected(X509 *cert, enum tc_tls_expect expect, char *detail, size_t cap)
{
    char cn[128] = "";
    if (detail && cap)
        detail[0] = '\0';
    if (expect == TC_TLS_EXPECT_ANY)
        return 0;
    unsigned roles = tc_pki_cert_roles(cert);
    if (cert)
        tc_pki_cert_cn(cert, cn, sizeof(cn));
    if (expect == TC_TLS_EXPECT_COORDINATOR && (roles & TC_PKI_ROLE_COORDINATOR) &&
        !(roles & TC_PKI_ROLE_NODE))
        return 0;
    if (expect == TC_TLS_EXPECT_NOT_NODE && cert && !(roles & TC_PKI_ROLE_NODE))
        return 0;
    if (detail && cap) {
        if (!cert)
            snprintf(detail, cap, "no server certificate");
        else if (expect == TC_TLS_EXPECT_COORDINATOR)
            snprintf(detail, cap,
                     "the server is not the coordinator: its certificate (CN \"%s\")%s lacks "
                     "the coordinator role (EKU " TC_PKI_OID_COORDINATOR " with CN coordinator)",
                     cn, (roles & TC_PKI_ROLE_NODE) ? " is a node's and" : "");
        else
            snprintf(detail, cap, "the server presents a node certificate (CN \"%s\")", cn);
    }
    return TC_ERR_SIGNATURE;
}
