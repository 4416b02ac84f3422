/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Why a piece of evidence was rejected: which check, which entry, what was
 * seen. Every verification function takes an optional struct tc_reason * and
 * fills it on failure, so the CLI and daemons can tell the operator exactly
 * what failed, in text and in JSON.
 */
#ifndef TRUSTCLOUD_REASON_H
#define TRUSTCLOUD_REASON_H

#include <jansson.h>
#include <stdio.h>

struct tc_reason {
    int code;          /* TC_ERR_* */
    char check[48];    /* stable check name: "quote.nonce", "ima.template_hash", ... */
    long entry;        /* 0-based entry index in a log, or -1 when not about an entry */
    char detail[320];  /* human-readable detail (no secrets) */
};

void tc_reason_clear(struct tc_reason *why);
/* Fills why (if non-NULL) and returns code, so callers can write `return tc_fail(...)`. */
int tc_fail(struct tc_reason *why, int code, const char *check, long entry, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* {"code": "signature", "check": "...", "entry": n (omitted when -1), "detail": "..."} */
json_t *tc_reason_to_json(const struct tc_reason *why);
/* One line: "check [entry N]: detail (error text)". */
void tc_reason_print(FILE *f, const struct tc_reason *why);

#endif
