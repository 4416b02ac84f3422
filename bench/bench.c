/* SPDX-License-Identifier: Apache-2.0 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double bench_rate(const char *what, double secs, int (*fn)(void *), void *arg)
{
    /* Warm up caches and lazy initialisation outside the measured window. */
    for (int i = 0; i < 10; i++)
        if (fn(arg) != 0) {
            fprintf(stderr, "bench: %s failed during warm-up\n", what);
            exit(1);
        }
    double start = bench_now(), now;
    long n = 0;
    do {
        for (int i = 0; i < 16; i++, n++)
            if (fn(arg) != 0) {
                fprintf(stderr, "bench: %s failed\n", what);
                exit(1);
            }
        now = bench_now();
    } while (now - start < secs);
    return (double)n / (now - start);
}

struct sig_case {
    EVP_PKEY *key;
    unsigned char dgst[32];
    unsigned char sig[512];
    size_t siglen;
    int pss;
};

static int verify_once(void *arg)
{
    struct sig_case *c = arg;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(c->key, NULL);
    int ok = ctx && EVP_PKEY_verify_init(ctx) == 1 &&
             EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1 &&
             EVP_PKEY_verify(ctx, c->sig, c->siglen, c->dgst, sizeof(c->dgst)) == 1;
    EVP_PKEY_CTX_free(ctx);
    return ok ? 0 : -1;
}

static double baseline_verify(EVP_PKEY *key, const char *what, double secs)
{
    struct sig_case c = {.key = key};
    memset(c.dgst, 0x5a, sizeof(c.dgst));
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key, NULL);
    c.siglen = sizeof(c.sig);
    if (!ctx || EVP_PKEY_sign_init(ctx) != 1 ||
        EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) != 1 ||
        EVP_PKEY_sign(ctx, c.sig, &c.siglen, c.dgst, sizeof(c.dgst)) != 1) {
        fprintf(stderr, "bench: baseline signing failed\n");
        exit(1);
    }
    EVP_PKEY_CTX_free(ctx);
    return bench_rate(what, secs, verify_once, &c);
}

double bench_baseline_ecdsa_p256_verify(double secs)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    double r = baseline_verify(key, "openssl ecdsa-p256 verify", secs);
    EVP_PKEY_free(key);
    return r;
}

double bench_baseline_rsa2048_verify(double secs)
{
    EVP_PKEY *key = EVP_RSA_gen(2048);
    double r = baseline_verify(key, "openssl rsa-2048 verify", secs);
    EVP_PKEY_free(key);
    return r;
}

struct sha_case {
    unsigned char *buf;
    size_t len;
};

static int sha_once(void *arg)
{
    struct sha_case *c = arg;
    unsigned char out[32];
    return EVP_Digest(c->buf, c->len, out, NULL, EVP_sha256(), NULL) == 1 ? 0 : -1;
}

double bench_baseline_sha256(double secs, size_t chunk)
{
    struct sha_case c = {.buf = calloc(1, chunk), .len = chunk};
    double r = bench_rate("openssl sha256", secs, sha_once, &c) * (double)chunk;
    free(c.buf);
    return r;
}
