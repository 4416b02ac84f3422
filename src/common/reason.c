/* SPDX-License-Identifier: Apache-2.0 */
#include "trustcloud/reason.h"

#include <stdarg.h>
#include <string.h>

#include "trustcloud/error.h"

void tc_reason_clear(struct tc_reason *why)
{
    if (why == NULL)
        return;
    memset(why, 0, sizeof(*why));
    why->entry = -1;
}

int tc_fail(struct tc_reason *why, int code, const char *check, long entry, const char *fmt, ...)
{
    if (why == NULL)
        return code;
    why->code = code;
    snprintf(why->check, sizeof(why->check), "%s", check ? check : "");
    why->entry = entry;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why->detail, sizeof(why->detail), fmt, ap);
    va_end(ap);
    /* Details may quote untrusted bytes: keep them printable ASCII (and valid JSON strings). */
    for (char *c = why->detail; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
            *c = '?';
    return code;
}

json_t *tc_reason_to_json(const struct tc_reason *why)
{
    json_t *j = json_object();
    if (j == NULL)
        return NULL;
    json_object_set_new(j, "code", json_string(tc_errname(why->code)));
    json_object_set_new(j, "check", json_string(why->check));
    if (why->entry >= 0)
        json_object_set_new(j, "entry", json_integer(why->entry));
    json_object_set_new(j, "detail", json_string(why->detail));
    return j;
}

void tc_reason_print(FILE *f, const struct tc_reason *why)
{
    if (why->entry >= 0)
        fprintf(f, "%s [entry %ld]: %s (%s)\n", why->check, why->entry, why->detail,
                tc_strerror(why->code));
    else
        fprintf(f, "%s: %s (%s)\n", why->check, why->detail, tc_strerror(why->code));
}
