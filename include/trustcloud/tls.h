/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Mutual-TLS contexts (OpenSSL 3) for the coordinator and agents.
 *
 * Both sides speak TLS 1.3 only (1.2 on request), trust exactly one CA file
 * (never the system store) and verify the peer with a small chain depth. A
 * server requires a client certificate unless allow_anonymous is set; even
 * then a certificate that is presented must verify. Contexts are reference
 * counted by OpenSSL: free them with SSL_CTX_free.
 */
#ifndef TRUSTCLOUD_TLS_H
#define TRUSTCLOUD_TLS_H

#include <stdbool.h>
#include <stdint.h>

#include <openssl/ssl.h>

struct tc_tls_config {
    /* Own certificate and key: files (PEM), or already loaded objects (used first if set;
     * the context takes its own references). The certificate may be followed by its chain. */
    const char *cert_file;
    const char *key_file;
    X509 *cert;
    EVP_PKEY *key;
    /* The only trust anchor(s): a PEM file. Required. */
    const char *ca_file;
    bool allow_tls12;     /* default: TLS 1.3 only */
    bool allow_anonymous; /* server: a client may connect without a certificate */
    int verify_depth;     /* certificates above the peer's; 0 = 2 */
};

/* Server context. TC_ERR_IO for unreadable files, TC_ERR_KEY if key and cert do not match. */
int tc_tls_server_ctx(const struct tc_tls_config *cfg, SSL_CTX **out);
/*
 * Client context (certificate and key optional, CA required). Name checks are
 * per connection: call tc_tls_set_peer_name on each SSL.
 */
int tc_tls_client_ctx(const struct tc_tls_config *cfg, SSL_CTX **out);
/* Requires the server certificate to match host (an IP literal is matched against IP SANs). */
int tc_tls_set_peer_name(SSL *ssl, const char *host);

/* The authenticated identity of a connection's peer. */
struct tc_peer {
    char cn[256];             /* subject CN, UTF-8 ("" if the certificate has none) */
    uint8_t fingerprint[32];  /* SHA-256 of the DER certificate */
    char fingerprint_hex[65]; /* the same in lower-case hex */
    char spki_hex[65];        /* SHA-256 of its key's DER SubjectPublicKeyInfo (a node's pin) */
    unsigned roles;           /* TC_PKI_ROLE_* bits (tc_pki_cert_roles) */
};

/*
 * Whom a client means to reach: checked on the server's verified certificate before any request
 * is sent (tc_httpc_config.expect_peer), in addition to the chain and, for names, the host.
 */
enum tc_tls_expect {
    TC_TLS_EXPECT_ANY = 0,     /* any server certificate of the CA (chain and host name) */
    TC_TLS_EXPECT_COORDINATOR, /* the coordinator role: coordinator EKU and CN "coordinator" */
    TC_TLS_EXPECT_NOT_NODE,    /* anything but a node: webhook receivers (tc_pki_cert_roles) */
};

/*
 * 0 when cert (a verified server certificate) is what expect asks for, else TC_ERR_SIGNATURE
 * with a one-line reason in detail (cap bytes, may be NULL) naming what the certificate is.
 */
int tc_tls_check_expected(X509 *cert, enum tc_tls_expect expect, char *detail, size_t cap);

/*
 * Fills peer from the verified peer certificate of a completed handshake.
 * TC_ERR_NOT_FOUND if the peer sent no certificate, TC_ERR_SIGNATURE if its
 * verification did not succeed.
 */
int tc_tls_peer(SSL *ssl, struct tc_peer *peer);
/* The same for a certificate (fingerprint + CN), e.g. one read from a store. */
int tc_tls_peer_from_cert(X509 *cert, struct tc_peer *peer);

#endif
