/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Runtime policies: Keylime JSON and allowlist fixtures, lookups, excludes,
 * IMA signatures (keys generated here), keyrings, violations, caps, policy
 * generation from a list, and a measure of check speed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/ima.h"
#include "trustcloud/reason.h"
#include "trustcloud/runtime_policy.h"

static const struct tc_hash_alg *H(const char *name)
{
    return tc_hash_by_name(name);
}

static const char *fixture(const char *name)
{
    static char path[4096];
    const char *dir = getenv("TC_FIXTURES");
    if (dir == NULL)
        return "/nonexistent";
    snprintf(path, sizeof(path), "%s/ima/%s", dir, name);
    return path;
}

static struct tc_runtime_policy *load(const char *name)
{
    struct tc_runtime_policy *p = NULL;
    struct tc_reason why;
    tc_reason_clear(&why);
    if (tc_runtime_policy_load_file(fixture(name), &p, &why) != 0)
        fail_msg("%s: %s %s", name, why.check, why.detail);
    return p;
}

static struct tc_runtime_policy *from_text(const char *text, int expect)
{
    struct tc_runtime_policy *p = NULL;
    struct tc_reason why;
    tc_reason_clear(&why);
    int rc = tc_runtime_policy_parse((const uint8_t *)text, strlen(text), &p, &why);
    if (rc != expect)
        fail_msg("parse returned %d (%s %s), expected %d", rc, why.check, why.detail, expect);
    return p;
}

/* Appends an ima-ng (or ima-sig when sig is non-NULL) entry for path with digest H(content). */
static void add_file(struct tc_ima_log *log, const char *path, const char *content,
                     const uint8_t *sig, size_t siglen)
{
    uint8_t d[32], *td;
    size_t tdl;
    tc_hash(H("sha256"), content, strlen(content), d);
    assert_int_equal(
        tc_ima_template_data_ng(H("sha256"), d, path, sig, siglen, sig != NULL, &td, &tdl), 0);
    assert_int_equal(tc_ima_log_append(log, 10, sig ? "ima-sig" : "ima-ng", td, tdl, false, NULL),
                     0);
    free(td);
}

static void sha256_hex(const char *content, char *hex)
{
    uint8_t d[32];
    tc_hash(H("sha256"), content, strlen(content), d);
    tc_hex_encode(d, 32, hex);
}

/* ---- fixtures ---------------------------------------------------------------------------- */

static void keylime_fixtures(void **state)
{
    const char *ok[] = {"policy-sha1",      "policy-sha256",     "policy-sha384",
                        "policy-sha512",    "policy-sm3_256",    "runtime-policy-test.json",
                        "allowlist-sha1",   "allowlist-sha256",  "allowlist-sha384",
                        "allowlist-sha512", "allowlist-sm3_256", "ima-allowlist-short.txt"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        tc_runtime_policy_free(load(ok[i]));

    struct tc_runtime_policy *p = load("runtime-policy-test.json");
    assert_int_equal(tc_runtime_policy_path_count(p), 21);
    assert_ptr_equal(tc_runtime_policy_log_hash_alg(p), H("sha1"));
    tc_runtime_policy_free(p);
    p = load("ima-allowlist-short.txt");
    assert_int_equal(tc_runtime_policy_path_count(p), 22);
    tc_runtime_policy_free(p);

    /* The "unknown" samples carry digests of no known size (16 and 31 bytes). */
    const char *bad[] = {"policy-unknown", "allowlist-unknown"};
    for (size_t i = 0; i < 2; i++) {
        struct tc_runtime_policy *q = NULL;
        struct tc_reason why;
        assert_int_not_equal(tc_runtime_policy_load_file(fixture(bad[i]), &q, &why), 0);
        assert_null(q);
        assert_string_equal(why.check, "ima.policy.parse");
    }
}

/* The allowlists list the file measured as "/data" under the name "data" (a rootfs-relative
 * path); the digest must be the one in the list. */
static void fixture_logs_against_allowlists(void **state)
{
    const char *algs[] = {"sha1", "sha256", "sha384", "sha512", "sm3_256"};
    for (size_t i = 0; i < 5; i++) {
        char n[64];
        struct tc_ima_log *log = NULL;
        struct tc_reason why;
        snprintf(n, sizeof(n), "ima-log-%s", algs[i]);
        assert_int_equal(tc_ima_log_parse_file(fixture(n), NULL, &log, &why), 0);
        snprintf(n, sizeof(n), "allowlist-%s", algs[i]);
        struct tc_runtime_policy *p = load(n);
        tc_runtime_policy_set_allow_violations(p, true);
        int rc = tc_runtime_policy_check_log(p, log, 0, log->count, &why);
        assert_int_equal(rc, TC_ERR_POLICY);
        assert_string_equal(why.check, "ima.policy.not_in_policy");
        /* sha256's boot_aggregate is a real entry (not in this allowlist); others are
         * violations, allowed here. */
        assert_int_equal(why.entry, strcmp(algs[i], "sha256") == 0 ? 0 : 1);
        struct tc_ima_entry e = log->entries[1];
        e.path = "data";
        e.path_len = 4;
        if (strcmp(algs[i], "sm3_256") == 0) {
            /* This list labels the file's sha256 digest as sm3_256; its allowlist has the real
             * SM3 digest, so they disagree. */
            assert_int_equal(tc_runtime_policy_check_entry(p, &e, 1, &why), TC_ERR_POLICY);
            assert_string_equal(why.check, "ima.policy.digest");
        } else {
            assert_int_equal(tc_runtime_policy_check_entry(p, &e, 1, &why), 0);
        }
        /* Without allowing violations the zero boot_aggregate entry fails first. */
        tc_runtime_policy_set_allow_violations(p, false);
        if (log->entries[0].violation) {
            assert_int_equal(tc_runtime_policy_check_log(p, log, 0, 2, &why), TC_ERR_POLICY);
            assert_string_equal(why.check, "ima.policy.violation");
            assert_int_equal(why.entry, 0);
        }
        tc_runtime_policy_free(p);
        tc_ima_log_free(log);
    }
}

/* ---- generation and JSON round trip ------------------------------------------------------ */

static void generate_from_log(void **state)
{
    struct tc_ima_log *log = NULL;
    struct tc_runtime_policy *p = NULL, *q = NULL;
    struct tc_reason why;
    json_t *j = NULL;
    assert_int_equal(tc_ima_log_parse_file(fixture("ima-log-sha256"), NULL, &log, &why), 0);
    assert_int_equal(tc_runtime_policy_from_ima_log(log, &p, &why), 0);
    assert_int_equal(tc_runtime_policy_check_log(p, log, 0, log->count, &why), 0);
    assert_int_equal(tc_runtime_policy_to_json(p, &j), 0);
    json_t *dg = json_object_get(j, "digests");
    assert_string_equal(json_string_value(json_array_get(json_object_get(dg, "/data"), 0)),
                        "96d7fae8adb7286a419a88f78c13d35fb782d63df654b7db56f154765698b754");
    assert_non_null(json_object_get(dg, "boot_aggregate"));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(j, "ima"), "log_hash_alg")), "sha1");
    char *s = json_dumps(j, JSON_COMPACT);
    assert_int_equal(tc_runtime_policy_parse((const uint8_t *)s, strlen(s), &q, &why), 0);
    assert_int_equal(tc_runtime_policy_check_log(q, log, 0, log->count, &why), 0);
    free(s);
    json_decref(j);
    tc_runtime_policy_free(p);
    tc_runtime_policy_free(q);
    tc_ima_log_free(log);
}

/* ---- semantics ---------------------------------------------------------------------------- */

static void digests_and_prefixes(void **state)
{
    char a[65], b[65], text[1024];
    sha256_hex("a", a);
    sha256_hex("b", b);
    snprintf(text, sizeof(text),
             "# comment\n\nsha256:%s  /bin/a\n%s\t/bin/b with space\r\nsha1:%s /bin/x\n", a, b,
             "0123456789012345678901234567890123456789");
    struct tc_runtime_policy *p = from_text(text, 0);
    struct tc_ima_log *log = NULL;
    struct tc_reason why;
    tc_ima_log_new(NULL, &log);
    add_file(log, "/bin/a", "a", NULL, 0);
    add_file(log, "/bin/b with space", "b", NULL, 0);
    add_file(log, "/bin/a", "b", NULL, 0);
    add_file(log, "/bin/c", "c", NULL, 0);
    assert_int_equal(tc_runtime_policy_check_log(p, log, 0, 2, &why), 0);
    assert_int_equal(tc_runtime_policy_check_log(p, log, 0, 4, &why), TC_ERR_POLICY);
    assert_string_equal(why.check, "ima.policy.digest");
    assert_int_equal(why.entry, 2);
    assert_non_null(strstr(why.detail, "/bin/a"));
    assert_int_equal(tc_runtime_policy_check_log(p, log, 3, 4, &why), TC_ERR_POLICY);
    assert_string_equal(why.check, "ima.policy.not_in_policy");
    assert_int_equal(why.entry, 3);
    tc_runtime_policy_free(p);

    /* An "alg:" prefix pins the algorithm: an sm3_256 digest with the same bytes differs. */
    p = from_text("{\"digests\": {\"/bin/a\": [\"sm3_256:"
                  "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb\"]}}",
                  0);
    assert_int_equal(tc_runtime_policy_check_log(p, log, 0, 1, &why), TC_ERR_POLICY);
    tc_runtime_policy_free(p);
    tc_ima_log_free(log);

    /* Malformed lines and JSON. */
    tc_runtime_policy_free(from_text("zz /bin/a\n", TC_ERR_FORMAT));
    tc_runtime_policy_free(
        from_text("md5:00112233445566778899aabbccddeeff /a\n", TC_ERR_UNSUPPORTED));
    tc_runtime_policy_free(from_text("0011223344556677889900112233445566778899\n", TC_ERR_FORMAT));
    tc_runtime_policy_free(from_text("{\"digests\": []}", TC_ERR_FORMAT));
    tc_runtime_policy_free(from_text("{\"digests\": {\"/a\": \"00\"}}", TC_ERR_FORMAT));
    tc_runtime_policy_free(from_text("{\"digests\": {}, \"digests\": {}}", TC_ERR_FORMAT));
    tc_runtime_policy_free(from_text("{\"meta\": {\"version\": 7}}", TC_ERR_UNSUPPORTED));
    tc_runtime_policy_free(from_text("{\"ima\": {\"log_hash_alg\": \"md5\"}}", TC_ERR_UNSUPPORTED));
    tc_runtime_policy_free(from_text("{\"excludes\": [\"(\"]}", TC_ERR_FORMAT));
    tc_runtime_policy_free(from_text("{", TC_ERR_FORMAT));
    char deep[200];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 99);
    deep[0] = '{';
    deep[199] = 0;
    tc_runtime_policy_free(from_text(deep, TC_ERR_TOO_LARGE));
}

static void excludes(void **state)
{
    struct tc_runtime_policy *p = from_text(
        "{\"digests\": {}, \"excludes\": [\"/tmp/.*\", \"/var/log/[a-z]+\\\\.log$\"]}", 0);
    struct tc_ima_log *log = NULL;
    struct tc_reason why;
    tc_ima_log_new(NULL, &log);
    add_file(log, "/tmp/x", "1", NULL, 0);
    add_file(log, "/var/log/messages.log", "2", NULL, 0);
    add_file(log, "/home/u/tmp/x", "3", NULL, 0); /* anchored: /tmp/ must start the path */
    add_file(log, "/var/log/messages.log.1", "4", NULL, 0);
    assert_int_equal(tc_runtime_policy_check_log(p, log, 0, 2, &why), 0);
    assert_int_equal(tc_runtime_policy_check_log(p, log, 2, 3, &why), TC_ERR_POLICY);
    assert_int_equal(why.entry, 2);
    assert_int_equal(tc_runtime_policy_check_log(p, log, 3, 4, &why), TC_ERR_POLICY);
    tc_runtime_policy_free(p);
    tc_ima_log_free(log);

    /* Caps on count and length. */
    assert_int_equal(tc_runtime_policy_new(&p), 0);
    for (int i = 0; i < TC_RP_MAX_EXCLUDES; i++)
        assert_int_equal(tc_runtime_policy_add_exclude(p, "/x"), 0);
    assert_int_equal(tc_runtime_policy_add_exclude(p, "/x"), TC_ERR_TOO_LARGE);
    tc_runtime_policy_free(p);
    /* Patterns that make glibc's regcomp allocate exponentially are refused up front. */
    assert_int_equal(tc_runtime_policy_new(&p), 0);
    assert_int_equal(tc_runtime_policy_add_exclude(p, "@+++++++++++++++++++++++++++++++(a|b)+$"),
                     TC_ERR_FORMAT);
    assert_int_equal(tc_runtime_policy_add_exclude(p, "x*+"), TC_ERR_FORMAT);
    assert_int_equal(tc_runtime_policy_add_exclude(p, "((a{99}){99}){99}"), TC_ERR_TOO_LARGE);
    assert_int_equal(tc_runtime_policy_add_exclude(p, "/usr/(s?bin|lib)/[^/]+\\.so(\\.[0-9]+)*$"),
                     0);
    assert_int_equal(tc_runtime_policy_add_exclude(p, "[]+*]x{2,3}"), 0);
    tc_runtime_policy_free(p);
    char *longre = malloc(TC_RP_MAX_REGEX_LEN + 2);
    memset(longre, 'a', TC_RP_MAX_REGEX_LEN + 1);
    longre[TC_RP_MAX_REGEX_LEN + 1] = 0;
    assert_int_equal(tc_runtime_policy_new(&p), 0);
    assert_int_equal(tc_runtime_policy_add_exclude(p, longre), TC_ERR_TOO_LARGE);
    tc_runtime_policy_free(p);
    free(longre);
}

/* ---- signatures -------------------------------------------------------------------------- */

/* Key id computed independently of the library: SHA-1 of the raw public key (PKCS#1 for RSA,
 * the EC point otherwise), last 4 bytes. */
static void keyid_of(EVP_PKEY *k, uint8_t id[4])
{
    unsigned char *der = NULL;
    int n = i2d_PublicKey(k, &der);
    assert_true(n > 0);
    uint8_t h[20];
    tc_hash(H("sha1"), der, (size_t)n, h);
    memcpy(id, h + 16, 4);
    OPENSSL_free(der);
}

/* security.ima v2 (or v3) signature of the sha256 digest of content. */
static size_t ima_sign(EVP_PKEY *k, int version, const char *content, uint8_t *out)
{
    uint8_t d[32], tbs[32];
    tc_hash(H("sha256"), content, strlen(content), d);
    memcpy(tbs, d, 32);
    if (version == 3) {
        uint8_t id[34] = {3, 4};
        memcpy(id + 2, d, 32);
        tc_hash(H("sha256"), id, 34, tbs);
    }
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(k, NULL);
    size_t siglen = 512;
    assert_int_equal(EVP_PKEY_sign_init(ctx), 1);
    assert_int_equal(EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()), 1);
    assert_int_equal(EVP_PKEY_sign(ctx, out + 9, &siglen, tbs, 32), 1);
    EVP_PKEY_CTX_free(ctx);
    out[0] = 3;
    out[1] = (uint8_t)version;
    out[2] = 4; /* kernel HASH_ALGO_SHA256 */
    keyid_of(k, out + 3);
    out[7] = (uint8_t)(siglen >> 8);
    out[8] = (uint8_t)siglen;
    return 9 + siglen;
}

static char *pubkey_pem(EVP_PKEY *k)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p;
    PEM_write_bio_PUBKEY(b, k);
    long n = BIO_get_mem_data(b, &p);
    char *s = strndup(p, (size_t)n);
    BIO_free(b);
    return s;
}

static void signatures(void **state)
{
    EVP_PKEY *ec = EVP_EC_gen("P-256"), *rsa = EVP_RSA_gen(2048), *other = EVP_EC_gen("P-256");
    assert_non_null(ec);
    assert_non_null(rsa);
    char *ecpem = pubkey_pem(ec), *rsapem = pubkey_pem(rsa);
    uint8_t s1[600], s2[600], s3[600], s4[600];
    size_t l1 = ima_sign(ec, 2, "good", s1), l2 = ima_sign(rsa, 2, "good2", s2);
    size_t l3 = ima_sign(other, 2, "good3", s3), l4 = ima_sign(ec, 3, "good4", s4);

    struct tc_ima_log *log = NULL;
    tc_ima_log_new(NULL, &log);
    add_file(log, "/usr/bin/ec", "good", s1, l1);        /* 0 valid EC v2 */
    add_file(log, "/usr/bin/rsa", "good2", s2, l2);      /* 1 valid RSA v2 */
    add_file(log, "/usr/bin/other", "good3", s3, l3);    /* 2 unknown key */
    add_file(log, "/usr/bin/v3", "good4", s4, l4);       /* 3 valid EC v3 */
    add_file(log, "/usr/bin/forged", "evil", s1, l1);    /* 4 signature of another digest */
    add_file(log, "/usr/bin/listed", "listed", NULL, 0); /* 5 unsigned, in digests */
    s2[20] ^= 1;
    add_file(log, "/usr/bin/rsa", "good2", s2, l2); /* 6 corrupted */
    add_file(log, "/usr/bin/short", "x", s2, 5);    /* 7 truncated header */

    /* Keys as Keylime's string of JSON, one as PEM, the other as a DER certificate-less key. */
    json_t *keys = json_pack("[s]", ecpem);
    char *ks = json_dumps(keys, JSON_COMPACT);
    char listed[65];
    sha256_hex("listed", listed);
    json_t *pj = json_pack("{s:{s:[s]}, s:s}", "digests", "/usr/bin/listed", listed,
                           "verification-keys", ks);
    char *ptext = json_dumps(pj, JSON_COMPACT);
    struct tc_runtime_policy *p = from_text(ptext, 0);
    unsigned char *der = NULL;
    int dl = i2d_PUBKEY(rsa, &der);
    assert_int_equal(tc_runtime_policy_add_key(p, der, (size_t)dl), 0);
    assert_int_equal(tc_runtime_policy_add_key(p, (const uint8_t *)"junk", 4), TC_ERR_KEY);

    struct tc_reason why;
    const long expect_ok[] = {0, 1, 3, 5};
    for (size_t i = 0; i < 4; i++) {
        size_t k = (size_t)expect_ok[i];
        if (tc_runtime_policy_check_log(p, log, k, k + 1, &why) != 0)
            fail_msg("entry %zu: %s %s", k, why.check, why.detail);
    }
    const long expect_bad[] = {2, 4, 6, 7};
    for (size_t i = 0; i < 4; i++) {
        size_t k = (size_t)expect_bad[i];
        assert_int_equal(tc_runtime_policy_check_log(p, log, k, k + 1, &why), TC_ERR_POLICY);
        assert_string_equal(why.check, "ima.policy.signature");
        assert_int_equal(why.entry, (long)k);
    }
    /* The policy written out keeps its keys. */
    json_t *out = NULL;
    assert_int_equal(tc_runtime_policy_to_json(p, &out), 0);
    char *otext = json_dumps(out, JSON_COMPACT);
    struct tc_runtime_policy *p2 = from_text(otext, 0);
    assert_int_equal(tc_runtime_policy_check_log(p2, log, 0, 2, &why), 0);

    /* Without keys, signatures are not evaluated: the digest list decides. */
    struct tc_runtime_policy *nokeys = from_text(ptext + 0, 0);
    tc_runtime_policy_free(nokeys);
    char nk[256];
    snprintf(nk, sizeof(nk), "{\"digests\": {\"/usr/bin/listed\": [\"%s\"]}}", listed);
    nokeys = from_text(nk, 0);
    assert_int_equal(tc_runtime_policy_check_log(nokeys, log, 0, 1, &why), TC_ERR_POLICY);
    assert_string_equal(why.check, "ima.policy.not_in_policy");

    tc_runtime_policy_free(nokeys);
    tc_runtime_policy_free(p2);
    tc_runtime_policy_free(p);
    free(otext);
    json_decref(out);
    OPENSSL_free(der);
    free(ptext);
    json_decref(pj);
    free(ks);
    json_decref(keys);
    free(ecpem);
    free(rsapem);
    EVP_PKEY_free(ec);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(other);
    tc_ima_log_free(log);
}

/* Optional cross-check with a signature made by evmctl (ima-evm-utils), kept as test data. */
static void evmctl_signature(void **state)
{
    const char *dir = getenv("TC_TEST_DATA");
    char path[4096];
    struct tc_ima_log *log = NULL;
    struct tc_runtime_policy *p = NULL;
    struct tc_reason why;
    if (dir == NULL)
        skip();
    snprintf(path, sizeof(path), "%s/ima/evmctl-signed.ascii", dir);
    if (tc_ima_log_parse_file(path, NULL, &log, &why) != 0)
        skip();
    assert_int_equal(tc_ima_log_verify_template_hashes(log, &why), 0);
    /* Keys as PEM (two keys, one certificate whose SKID is the key id), and as Keylime writes
     * them (keyrings of base64 DER keys with key ids, JSON inside JSON strings). */
    const char *pols[] = {"evmctl-policy.json", "evmctl-policy-keylime.json"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/ima/%s", dir, pols[i]);
        if (tc_runtime_policy_load_file(path, &p, &why) != 0)
            fail_msg("%s %s", why.check, why.detail);
        if (tc_runtime_policy_check_log(p, log, 0, log->count, &why) != 0)
            fail_msg("%s: %s %ld %s", pols[i], why.check, why.entry, why.detail);
        tc_runtime_policy_free(p);
    }
    /* The certificate-signed entry needs the certificate's key id, not the computed one. */
    size_t len;
    uint8_t *pem = NULL;
    snprintf(path, sizeof(path), "%s/ima/evmctl-cert.pem", dir);
    assert_int_equal(tc_file_read(path, 1u << 16, &pem, &len), 0);
    assert_int_equal(tc_runtime_policy_new(&p), 0);
    assert_int_equal(tc_runtime_policy_add_key(p, pem, len), 0);
    assert_int_equal(tc_runtime_policy_check_log(p, log, 4, 5, &why), 0);
    assert_int_equal(tc_runtime_policy_check_log(p, log, 1, 2, &why), TC_ERR_POLICY);
    assert_string_equal(why.check, "ima.policy.signature");
    assert_non_null(strstr(why.detail, "ca3ed2b8"));
    tc_runtime_policy_free(p);
    free(pem);
    tc_ima_log_free(log);
}

/* ---- keyrings, ima-buf, violations -------------------------------------------------------- */

static void add_buf(struct tc_ima_log *log, const char *name, const char *buf, bool bad_digest)
{
    uint8_t d[32], *td;
    size_t tdl;
    tc_hash(H("sha256"), buf, strlen(buf), d);
    d[0] ^= bad_digest;
    assert_int_equal(tc_ima_template_data_ng(H("sha256"), d, name, (const uint8_t *)buf,
                                             strlen(buf), true, &td, &tdl),
                     0);
    assert_int_equal(tc_ima_log_append(log, 10, "ima-buf", td, tdl, false, NULL), 0);
    free(td);
}

static void keyrings_and_violations(void **state)
{
    char k1[65];
    sha256_hex("key-one", k1);
    char text[512];
    snprintf(text, sizeof(text),
             "{\"keyrings\": {\".ima\": [\"%s\"]}, \"ima\": {\"ignored_keyrings\": "
             "[\".builtin_trusted_keys\"]}, \"ima-buf\": {\"kexec-cmdline\": [\"%s\"]}}",
             k1, k1);
    struct tc_runtime_policy *p = from_text(text, 0);
    struct tc_ima_log *log = NULL;
    struct tc_reason why;
    tc_ima_log_new(NULL, &log);
    add_buf(log, ".ima", "key-one", false);              /* 0 ok */
    add_buf(log, ".builtin_trusted_keys", "any", false); /* 1 ignored */
    add_buf(log, "kexec-cmdline", "key-one", false);     /* 2 ima-buf section */
    add_buf(log, ".ima", "key-two", false);              /* 3 unknown key */
    add_buf(log, ".evm", "key-one", false);              /* 4 keyring not in policy */
    add_buf(log, ".ima", "key-one", true);               /* 5 digest is not H(buf) */
    assert_int_equal(tc_runtime_policy_check_log(p, log, 0, 3, &why), 0);
    assert_int_equal(tc_runtime_policy_check_log(p, log, 3, 4, &why), TC_ERR_POLICY);
    assert_string_equal(why.check, "ima.policy.keyring");
    assert_int_equal(tc_runtime_policy_check_log(p, log, 4, 5, &why), TC_ERR_POLICY);
    assert_string_equal(why.check, "ima.policy.not_in_policy");
    assert_int_equal(tc_runtime_policy_check_log(p, log, 5, 6, &why), TC_ERR_POLICY);
    assert_string_equal(why.check, "ima.policy.buf_digest");
    tc_runtime_policy_add_ignored_keyring(p, "*");
    assert_int_equal(tc_runtime_policy_check_log(p, log, 0, 6, &why), 0);
    tc_runtime_policy_free(p);

    /* Generated policies list keyring digests too. */
    tc_ima_log_free(log);
    tc_ima_log_new(NULL, &log);
    add_buf(log, ".ima", "key-one", false);
    add_file(log, "/bin/x", "x", NULL, 0);
    uint8_t *td;
    size_t tdl;
    uint8_t zero[32] = {0};
    tc_ima_template_data_ng(H("sha256"), zero, "/bin/tomtou", NULL, 0, false, &td, &tdl);
    assert_int_equal(tc_ima_log_append(log, 10, "ima-ng", td, tdl, true, NULL), 0);
    free(td);
    assert_int_equal(tc_runtime_policy_from_ima_log(log, &p, &why), 0);
    assert_int_equal(tc_runtime_policy_check_log(p, log, 0, 2, &why), 0);
    assert_int_equal(tc_runtime_policy_check_log(p, log, 0, 3, &why), TC_ERR_POLICY);
    assert_string_equal(why.check, "ima.policy.violation");
    assert_int_equal(why.entry, 2);
    tc_runtime_policy_set_allow_violations(p, true);
    assert_int_equal(tc_runtime_policy_check_log(p, log, 0, 3, &why), 0);
    assert_int_equal(tc_runtime_policy_check_log(p, log, 2, 4, &why), TC_ERR_INVALID_ARG);
    tc_runtime_policy_free(p);
    tc_ima_log_free(log);
}

/* ---- table and speed ---------------------------------------------------------------------- */

static void table_many_paths_and_speed(void **state)
{
    enum { NPATHS = 100000, DELTA = 100 };
    struct tc_runtime_policy *p = NULL;
    struct tc_ima_log *log = NULL;
    struct tc_reason why;
    assert_int_equal(tc_runtime_policy_new(&p), 0);
    tc_ima_log_new(NULL, &log);
    for (int i = 0; i < NPATHS; i++) {
        char path[64], content[32];
        uint8_t d[32];
        snprintf(path, sizeof(path), "/usr/lib/x86_64-linux-gnu/lib%d.so.%d", i, i % 7);
        snprintf(content, sizeof(content), "c%d", i);
        tc_hash(H("sha256"), content, strlen(content), d);
        assert_int_equal(tc_runtime_policy_add_digest(p, path, NULL, d, 32), 0);
        if (i % (NPATHS / DELTA) == 0)
            add_file(log, path, content, NULL, 0);
    }
    /* Re-adding is idempotent; a second digest for a path is kept. */
    uint8_t d0[32];
    tc_hash(H("sha256"), "c0", 2, d0);
    assert_int_equal(
        tc_runtime_policy_add_digest(p, "/usr/lib/x86_64-linux-gnu/lib0.so.0", NULL, d0, 32), 0);
    assert_int_equal(tc_runtime_policy_path_count(p), NPATHS);
    for (int i = 0; i < 20; i++)
        tc_runtime_policy_add_exclude(p, "/proc/[0-9]+/.*");
    assert_int_equal(log->count, DELTA);

    struct timespec t0, t1;
    int rounds = 5000;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int r = 0; r < rounds; r++)
        assert_int_equal(tc_runtime_policy_check_log(p, log, 0, log->count, &why), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("# policy check, %d paths: %.0f 100-entry deltas/s (%.0f ns/entry)\n", NPATHS,
           rounds / s, s * 1e9 / (rounds * (double)DELTA));
    tc_runtime_policy_free(p);
    tc_ima_log_free(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(keylime_fixtures),
        cmocka_unit_test(fixture_logs_against_allowlists),
        cmocka_unit_test(generate_from_log),
        cmocka_unit_test(digests_and_prefixes),
        cmocka_unit_test(excludes),
        cmocka_unit_test(signatures),
        cmocka_unit_test(evmctl_signature),
        cmocka_unit_test(keyrings_and_violations),
        cmocka_unit_test(table_many_paths_and_speed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
