/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One error space for all of trustcloud. Functions that can fail return 0 or
 * one of these negative codes. TSS2_RC and OpenSSL errors are converted at the
 * src/tpm and crypto boundaries (the original code is logged there).
 */
#ifndef TRUSTCLOUD_ERROR_H
#define TRUSTCLOUD_ERROR_H

enum tc_err {
    TC_OK = 0,
    TC_ERR_INTERNAL = -1,     /* broken invariant or unexpected library failure */
    TC_ERR_ALLOC = -2,        /* out of memory */
    TC_ERR_INVALID_ARG = -3,  /* caller passed something unusable */
    TC_ERR_TRUNCATED = -4,    /* input ended before a structure did */
    TC_ERR_FORMAT = -5,       /* input is malformed */
    TC_ERR_TOO_LARGE = -6,    /* input exceeds a configured cap */
    TC_ERR_UNSUPPORTED = -7,  /* unknown algorithm, template, version ... */
    TC_ERR_IO = -8,           /* file or socket error */
    TC_ERR_TPM = -9,          /* the TPM returned an error */
    TC_ERR_CRYPTO = -10,      /* a crypto library call failed */
    TC_ERR_SIGNATURE = -11,   /* a signature does not verify */
    TC_ERR_MISMATCH = -12,    /* a digest or value does not equal its expectation */
    TC_ERR_NONCE = -13,       /* the nonce is not the one asked for */
    TC_ERR_POLICY = -14,      /* evidence is well-formed but violates a policy */
    TC_ERR_NOT_FOUND = -15,   /* a looked-up item does not exist */
    TC_ERR_TRAILING = -16,    /* bytes left over after a structure */
    TC_ERR_ROLLBACK = -17,    /* a counter or log went backwards */
    TC_ERR_KEY = -18,         /* a key has the wrong type or attributes */
    TC_ERR_CORRUPT = -19,     /* stored state failed its integrity check */
};

/* Static, human-readable text for a TC_ERR_* code (never NULL). */
const char *tc_strerror(int err);

/* Stable machine name ("truncated", "signature", ...) for JSON output. */
const char *tc_errname(int err);

#endif
