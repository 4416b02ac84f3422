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
};

/*
 * Fills peer from the verified peer certificate of a completed handshake.
 * TC_ERR_NOT_FOUND if the peer sent no certificate, TC_ERR_SIGNATURE if its
 * verification did not succeed.
 */
int tc_tls_peer(SSL *ssl, struct tc_peer *peer);
/* The same for a certificate (fingerprint + CN), e.g. one read from a store. */
int tc_tls_peer_from_cert(X509 *cert, struct tc_peer *peer);

#endif
