/* SPDX-License-Identifier: Apache-2.0 */
/* A VM's guest definition: strict JSON parsing shared by the coordinator and the agent. */
#include <string.h>

#include "trustcloud/error.h"
#include "trustcloud/vm_guest.h"

const char *tc_vm_firmware_name(enum tc_vm_firmware f)
{
    return f == TC_VM_FW_OVMF ? "ovmf" : "seabios";
}

bool tc_vm_guest_path_ok(const char *p, size_t len)
{
    if (p == NULL || len == 0 || len > TC_VM_GUEST_PATH_MAX || p[0] != '/' || strlen(p) != len)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7e)
            return false;
    /* Components: no empty, "." or ".." one (the path names one file, as written). */
    for (const char *c = p + 1;; c++) {
        const char *e = strchr(c, '/');
        size_t n = e ? (size_t)(e - c) : strlen(c);
        if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
            return false;
        if (e == NULL)
            return true;
        c = e;
    }
}

/* The string member key of o into buf (cap bytes with the NUL); absent leaves buf empty. */
static int str_member(const json_t *o, const char *key, bool path, char *buf, size_t cap,
                      struct tc_reason *why)
{
    const json_t *v = json_object_get(o, key);
    buf[0] = 0;
    if (v == NULL)
        return 0;
    size_t len = json_is_string(v) ? json_string_length(v) : 0;
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    if (s == NULL || len >= cap || strlen(s) != len)
        return tc_fail(why, TC_ERR_FORMAT, "request.guest", -1,
                       "guest.%s: a string of at most %zu bytes", key, cap - 1);
    if (path && !tc_vm_guest_path_ok(s, len))
        return tc_fail(why, TC_ERR_FORMAT, "request.guest", -1,
                       "guest.%s: an absolute path of printable ASCII without empty, \".\" or "
                       "\"..\" components",
                       key);
    if (!path) {
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
                return tc_fail(why, TC_ERR_FORMAT, "request.guest", -1,
                               "guest.%s: printable ASCII only", key);
    }
    memcpy(buf, s, len + 1);
    return 0;
}

static int uint_member(const json_t *o, const char *key, unsigned lo, unsigned hi, unsigned dflt,
                       unsigned *out, struct tc_reason *why)
{
    const json_t *v = json_object_get(o, key);
    *out = dflt;
    if (v == NULL)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < (json_int_t)lo ||
        json_integer_value(v) > (json_int_t)hi)
        return tc_fail(why, TC_ERR_FORMAT, "request.guest", -1, "guest.%s: an integer %u..%u", key,
                       lo, hi);
    *out = (unsigned)json_integer_value(v);
    return 0;
}

int tc_vm_guest_from_json(const json_t *o, struct tc_vm_guest *g, struct tc_reason *why)
{
    static const char *const known[] = {"kernel",   "initrd",    "cmdline", "disk",
                                        "firmware", "memory_mb", "vcpus",   NULL};
    const char *key;
    json_t *v;
    int rc;

    memset(g, 0, sizeof(*g));
    if (!json_is_object(o))
        return tc_fail(why, TC_ERR_FORMAT, "request.guest", -1, "guest: an object");
    json_object_foreach((json_t *)o, key, v)
    {
        size_t i = 0;
        while (known[i] != NULL && strcmp(known[i], key) != 0)
            i++;
        if (known[i] == NULL)
            return tc_fail(why, TC_ERR_FORMAT, "request.guest", -1,
                           "guest: unknown member (known: kernel, initrd, cmdline, disk, firmware, "
                           "memory_mb, vcpus)");
    }
    if ((rc = str_member(o, "kernel", true, g->kernel, sizeof(g->kernel), why)) != 0 ||
        (rc = str_member(o, "initrd", true, g->initrd, sizeof(g->initrd), why)) != 0 ||
        (rc = str_member(o, "cmdline", false, g->cmdline, sizeof(g->cmdline), why)) != 0 ||
        (rc = str_member(o, "disk", true, g->disk, sizeof(g->disk), why)) != 0 ||
        (rc = uint_member(o, "memory_mb", TC_VM_GUEST_MEMORY_MIN, TC_VM_GUEST_MEMORY_MAX,
                          TC_VM_GUEST_MEMORY_DEFAULT, &g->memory_mb, why)) != 0 ||
        (rc = uint_member(o, "vcpus", 1, TC_VM_GUEST_VCPUS_MAX, 1, &g->vcpus, why)) != 0)
        goto out;
    v = json_object_get(o, "firmware");
    if (v == NULL || (json_is_string(v) && strcmp(json_string_value(v), "seabios") == 0))
        g->firmware = TC_VM_FW_SEABIOS;
    else if (json_is_string(v) && strcmp(json_string_value(v), "ovmf") == 0)
        g->firmware = TC_VM_FW_OVMF;
    else {
        rc = tc_fail(why, TC_ERR_FORMAT, "request.guest", -1,
                     "guest.firmware: \"seabios\" or \"ovmf\"");
        goto out;
    }
    if ((g->kernel[0] != 0) == (g->disk[0] != 0))
        rc = tc_fail(why, TC_ERR_FORMAT, "request.guest", -1,
                     "guest: either kernel (with initrd, cmdline) or disk");
    else if (g->kernel[0] == 0 && (g->initrd[0] != 0 || g->cmdline[0] != 0))
        rc = tc_fail(why, TC_ERR_FORMAT, "request.guest", -1,
                     "guest.initrd and guest.cmdline need guest.kernel");
out:
    if (rc != 0)
        memset(g, 0, sizeof(*g));
    return rc;
}

json_t *tc_vm_guest_to_json(const struct tc_vm_guest *g)
{
    json_t *o = json_pack("{s:s, s:I, s:I}", "firmware", tc_vm_firmware_name(g->firmware),
                          "memory_mb", (json_int_t)g->memory_mb, "vcpus", (json_int_t)g->vcpus);
    const struct {
        const char *key, *val;
    } s[] = {
        {"kernel", g->kernel}, {"initrd", g->initrd}, {"cmdline", g->cmdline}, {"disk", g->disk}};
    for (size_t i = 0; o != NULL && i < sizeof(s) / sizeof(s[0]); i++) {
        if (s[i].val[0] != 0 && json_object_set_new(o, s[i].key, json_string(s[i].val)) != 0) {
            json_decref(o);
            o = NULL;
        }
    }
    return o;
}
