/* SPDX-License-Identifier: Apache-2.0 */
/* Decoding of UEFI event data (PC Client PFP section 10) and JSON rendering of events. */
#define LOGMODULE "eventlog"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/eventlog.h"
#include "trustcloud/log.h"

#define JSON_HEX_MAX 4096 /* raw data bytes rendered as hex */

/* EFI_GLOBAL_VARIABLE and EFI_IMAGE_SECURITY_DATABASE_GUID, in their in-memory byte order. */
static const uint8_t GUID_GLOBAL[16] = {0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11,
                                        0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c};
static const uint8_t GUID_SECURITY_DB[16] = {0xcb, 0xb2, 0x19, 0xd7, 0x3a, 0x3d, 0x96, 0x45,
                                             0xa3, 0xbc, 0xda, 0xd0, 0x0e, 0x67, 0x65, 0x6f};

static const struct {
    uint32_t type;
    const char *name;
} type_names[] = {
    {TC_EV_PREBOOT_CERT, "EV_PREBOOT_CERT"},
    {TC_EV_POST_CODE, "EV_POST_CODE"},
    {0x00000002u, "EV_UNUSED"},
    {TC_EV_NO_ACTION, "EV_NO_ACTION"},
    {TC_EV_SEPARATOR, "EV_SEPARATOR"},
    {TC_EV_ACTION, "EV_ACTION"},
    {TC_EV_EVENT_TAG, "EV_EVENT_TAG"},
    {TC_EV_S_CRTM_CONTENTS, "EV_S_CRTM_CONTENTS"},
    {TC_EV_S_CRTM_VERSION, "EV_S_CRTM_VERSION"},
    {TC_EV_CPU_MICROCODE, "EV_CPU_MICROCODE"},
    {TC_EV_PLATFORM_CONFIG_FLAGS, "EV_PLATFORM_CONFIG_FLAGS"},
    {TC_EV_TABLE_OF_DEVICES, "EV_TABLE_OF_DEVICES"},
    {TC_EV_COMPACT_HASH, "EV_COMPACT_HASH"},
    {TC_EV_IPL, "EV_IPL"},
    {TC_EV_IPL_PARTITION_DATA, "EV_IPL_PARTITION_DATA"},
    {TC_EV_NONHOST_CODE, "EV_NONHOST_CODE"},
    {TC_EV_NONHOST_CONFIG, "EV_NONHOST_CONFIG"},
    {TC_EV_NONHOST_INFO, "EV_NONHOST_INFO"},
    {TC_EV_OMIT_BOOT_DEVICE_EVENTS, "EV_OMIT_BOOT_DEVICE_EVENTS"},
    {TC_EV_POST_CODE2, "EV_POST_CODE2"},
    {0x80000000u, "EV_EFI_EVENT_BASE"},
    {TC_EV_EFI_VARIABLE_DRIVER_CONFIG, "EV_EFI_VARIABLE_DRIVER_CONFIG"},
    {TC_EV_EFI_VARIABLE_BOOT, "EV_EFI_VARIABLE_BOOT"},
    {TC_EV_EFI_BOOT_SERVICES_APPLICATION, "EV_EFI_BOOT_SERVICES_APPLICATION"},
    {TC_EV_EFI_BOOT_SERVICES_DRIVER, "EV_EFI_BOOT_SERVICES_DRIVER"},
    {TC_EV_EFI_RUNTIME_SERVICES_DRIVER, "EV_EFI_RUNTIME_SERVICES_DRIVER"},
    {TC_EV_EFI_GPT_EVENT, "EV_EFI_GPT_EVENT"},
    {TC_EV_EFI_ACTION, "EV_EFI_ACTION"},
    {TC_EV_EFI_PLATFORM_FIRMWARE_BLOB, "EV_EFI_PLATFORM_FIRMWARE_BLOB"},
    {TC_EV_EFI_HANDOFF_TABLES, "EV_EFI_HANDOFF_TABLES"},
    {TC_EV_EFI_PLATFORM_FIRMWARE_BLOB2, "EV_EFI_PLATFORM_FIRMWARE_BLOB2"},
    {TC_EV_EFI_HANDOFF_TABLES2, "EV_EFI_HANDOFF_TABLES2"},
    {TC_EV_EFI_VARIABLE_BOOT2, "EV_EFI_VARIABLE_BOOT2"},
    {TC_EV_EFI_GPT_EVENT2, "EV_EFI_GPT_EVENT2"},
    {TC_EV_EFI_HCRTM_EVENT, "EV_EFI_HCRTM_EVENT"},
    {TC_EV_EFI_VARIABLE_AUTHORITY, "EV_EFI_VARIABLE_AUTHORITY"},
    {TC_EV_EFI_SPDM_FIRMWARE_BLOB, "EV_EFI_SPDM_FIRMWARE_BLOB"},
    {TC_EV_EFI_SPDM_FIRMWARE_CONFIG, "EV_EFI_SPDM_FIRMWARE_CONFIG"},
};

const char *tc_evlog_type_name(uint32_t type)
{
    for (size_t i = 0; i < sizeof(type_names) / sizeof(type_names[0]); i++)
        if (type_names[i].type == type)
            return type_names[i].name;
    return NULL;
}

void tc_evlog_guid_str(const uint8_t g[16], char out[37])
{
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", g[3],
             g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8], g[9], g[10], g[11], g[12], g[13],
             g[14], g[15]);
}

void tc_evlog_decoded_release(struct tc_evlog_decoded *d)
{
    if (d == NULL)
        return;
    free(d->text);
    free(d->var_name);
    memset(d, 0, sizeof(*d));
}

/* Printable ASCII copy of n bytes; trailing NULs dropped, other control or 8-bit bytes become '?'
 * (keeps output valid UTF-8 and free of terminal escapes). */
static char *ascii_dup(const uint8_t *p, size_t n)
{
    while (n > 0 && p[n - 1] == 0)
        n--;
    char *s = malloc(n + 1);
    if (s == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        s[i] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char)p[i] : '?';
    s[n] = 0;
    return s;
}

static size_t put_utf8(char *o, uint32_t c)
{
    if (c < 0x80) {
        o[0] = (c >= 0x20 && c != 0x7f) ? (char)c : '?';
        return 1;
    }
    if (c < 0x800) {
        o[0] = (char)(0xc0 | (c >> 6));
        o[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (char)(0xe0 | (c >> 12));
        o[1] = (char)(0x80 | ((c >> 6) & 0x3f));
        o[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (c >> 18));
    o[1] = (char)(0x80 | ((c >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3f));
    o[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

/* UTF-16LE (n code units, stops at a NUL) to UTF-8; lone surrogates become U+FFFD. */
static char *utf16_dup(const uint8_t *p, size_t n)
{
    char *s = malloc(3 * n + 1); /* a surrogate pair (2 units) takes 4 bytes: 3n bounds it */
    if (s == NULL)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = (uint32_t)p[2 * i] | ((uint32_t)p[2 * i + 1] << 8);
        if (c == 0)
            break;
        if (c >= 0xd800 && c < 0xdc00 && i + 1 < n) {
            uint32_t lo = (uint32_t)p[2 * i + 2] | ((uint32_t)p[2 * i + 3] << 8);
            if (lo >= 0xdc00 && lo < 0xe000) {
                c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
                i++;
            } else {
                c = 0xfffd;
            }
        } else if (c >= 0xd800 && c < 0xe000) {
            c = 0xfffd;
        }
        o += put_utf8(s + o, c);
    }
    s[o] = 0;
    return s;
}

/* Firmware writes some strings as CHAR16: even length and every high byte zero. */
static bool looks_utf16(const uint8_t *p, size_t n)
{
    if (n < 2 || n % 2)
        return false;
    for (size_t i = 1; i < n; i += 2)
        if (p[i] != 0)
            return false;
    return p[0] != 0;
}

static char *text_dup(const uint8_t *p, size_t n)
{
    return looks_utf16(p, n) ? utf16_dup(p, n / 2) : ascii_dup(p, n);
}

static bool printable(const uint8_t *p, size_t n)
{
    while (n > 0 && p[n - 1] == 0)
        n--;
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x20 || p[i] >= 0x7f)
            return false;
    return n > 0;
}

static int get_uintn(const struct tc_evlog *log, struct tc_reader *r, uint64_t *v)
{
    if (log->format == TC_EVLOG_CRYPTO_AGILE && log->uintn_size == 1) {
        uint32_t x;
        int rc = tc_reader_u32le(r, &x);
        if (rc == 0)
            *v = x;
        return rc;
    }
    return tc_reader_u64le(r, v);
}

static enum tc_evlog_var classify_var(const uint8_t guid[16], const char *name)
{
    if (memcmp(guid, GUID_GLOBAL, 16) == 0) {
        if (strcmp(name, "SecureBoot") == 0)
            return TC_VAR_SECUREBOOT;
        if (strcmp(name, "PK") == 0)
            return TC_VAR_PK;
        if (strcmp(name, "KEK") == 0)
            return TC_VAR_KEK;
        if (strcmp(name, "BootOrder") == 0)
            return TC_VAR_BOOTORDER;
        if (strncmp(name, "Boot", 4) == 0 && strlen(name) == 8 &&
            strspn(name + 4, "0123456789ABCDEFabcdef") == 4)
            return TC_VAR_BOOTNNNN;
    } else if (memcmp(guid, GUID_SECURITY_DB, 16) == 0) {
        if (strcmp(name, "db") == 0)
            return TC_VAR_DB;
        if (strcmp(name, "dbx") == 0)
            return TC_VAR_DBX;
    }
    return TC_VAR_OTHER;
}

static int decode_variable(struct tc_reader *r, struct tc_evlog_decoded *d)
{
    uint64_t nlen, dlen;
    const uint8_t *name;
    int rc;
    if ((rc = tc_reader_bytes(r, d->var_guid, 16)) || (rc = tc_reader_u64le(r, &nlen)) ||
        (rc = tc_reader_u64le(r, &dlen)))
        return rc;
    if (nlen > TC_EVLOG_MAX_NAME)
        return TC_ERR_FORMAT;
    if ((rc = tc_reader_view(r, (size_t)nlen * 2, &name)) != 0)
        return rc;
    if (dlen > tc_reader_left(r))
        return TC_ERR_TRUNCATED;
    if ((rc = tc_reader_view(r, (size_t)dlen, &d->var_data)) != 0)
        return rc;
    d->var_data_len = (size_t)dlen;
    if ((d->var_name = utf16_dup(name, (size_t)nlen)) == NULL)
        return TC_ERR_ALLOC;
    d->var = classify_var(d->var_guid, d->var_name);
    d->kind = TC_EVD_VARIABLE;
    return 0;
}

static int decode_image(const struct tc_evlog *log, struct tc_reader *r, struct tc_evlog_decoded *d)
{
    uint64_t dplen;
    int rc;
    if ((rc = tc_reader_u64le(r, &d->image_location)) ||
        (rc = get_uintn(log, r, &d->image_length)) ||
        (rc = get_uintn(log, r, &d->image_link_address)) || (rc = get_uintn(log, r, &dplen)))
        return rc;
    if (dplen > tc_reader_left(r))
        return TC_ERR_TRUNCATED;
    if ((rc = tc_reader_view(r, (size_t)dplen, &d->image_device_path)) != 0)
        return rc;
    d->image_device_path_len = (size_t)dplen;
    d->kind = TC_EVD_IMAGE;
    return 0;
}

/* UINT8 size + description (BLOB2 / TABLES2). */
static int decode_desc(struct tc_reader *r, struct tc_evlog_decoded *d)
{
    uint8_t n;
    const uint8_t *p;
    int rc;
    if ((rc = tc_reader_u8(r, &n)) || (rc = tc_reader_view(r, n, &p)))
        return rc;
    return (d->text = ascii_dup(p, n)) ? 0 : TC_ERR_ALLOC;
}

static int decode_handoff(struct tc_reader *r, struct tc_evlog_decoded *d)
{
    int rc;
    if ((rc = tc_reader_u64le(r, &d->ntables)) != 0)
        return rc;
    /* Each UEFI_CONFIGURATION_TABLE is a GUID and a pointer. */
    if (d->ntables > tc_reader_left(r) / 24)
        return TC_ERR_TRUNCATED;
    d->kind = TC_EVD_HANDOFF;
    return 0;
}

/* UEFI_GPT_DATA: the 92-byte EFI partition table header, then a UINT64 count and the entries. */
#define GPT_HDR 92
static int decode_gpt(struct tc_reader *r, struct tc_evlog_decoded *d, uint32_t *entry_size)
{
    const uint8_t *hdr;
    int rc;
    if ((rc = tc_reader_view(r, GPT_HDR, &hdr)) || (rc = tc_reader_u64le(r, &d->gpt_npartitions)))
        return rc;
    memcpy(d->gpt_disk_guid, hdr + 56, 16);
    *entry_size = (uint32_t)hdr[84] | (uint32_t)hdr[85] << 8 | (uint32_t)hdr[86] << 16 |
                  (uint32_t)hdr[87] << 24;
    if (*entry_size < 128 || *entry_size > 4096)
        return TC_ERR_FORMAT;
    if (d->gpt_npartitions > tc_reader_left(r) / *entry_size)
        return TC_ERR_TRUNCATED;
    d->kind = TC_EVD_GPT;
    return 0;
}

int tc_evlog_decode(const struct tc_evlog *log, const struct tc_evlog_event *ev,
                    struct tc_evlog_decoded *d)
{
    struct tc_reader r;
    uint32_t entry_size;
    int rc = 0;

    memset(d, 0, sizeof(*d));
    tc_reader_init(&r, ev->data, ev->data_len);
    if (log->format == TC_EVLOG_CRYPTO_AGILE && ev->index == 0) {
        d->kind = TC_EVD_SPECID;
        return 0;
    }
    switch (ev->type) {
    case TC_EV_NO_ACTION:
        if (ev->data_len == 17 && memcmp(ev->data, "StartupLocality", 16) == 0) {
            d->kind = TC_EVD_STARTUP_LOCALITY;
            d->locality = ev->data[16];
        } else if (ev->data_len >= 16) {
            d->kind = TC_EVD_NO_ACTION;
            d->text = ascii_dup(ev->data, strnlen((const char *)ev->data, 16));
            rc = d->text ? 0 : TC_ERR_ALLOC;
        }
        break;
    case TC_EV_SEPARATOR:
        if (ev->data_len == 4) {
            d->kind = TC_EVD_SEPARATOR;
            rc = tc_reader_u32le(&r, &d->separator);
        }
        break;
    case TC_EV_ACTION:
    case TC_EV_EFI_ACTION:
    case TC_EV_IPL:
    case TC_EV_S_CRTM_VERSION:
    case TC_EV_COMPACT_HASH:
    case TC_EV_OMIT_BOOT_DEVICE_EVENTS:
        d->kind = TC_EVD_STRING;
        rc = (d->text = text_dup(ev->data, ev->data_len)) ? 0 : TC_ERR_ALLOC;
        break;
    case TC_EV_POST_CODE:
    case TC_EV_S_CRTM_CONTENTS:
    case TC_EV_EFI_PLATFORM_FIRMWARE_BLOB:
        /* A POST code is either a string ("ACPI DATA") or a firmware blob base/length. */
        if (ev->type == TC_EV_POST_CODE && printable(ev->data, ev->data_len)) {
            d->kind = TC_EVD_STRING;
            rc = (d->text = ascii_dup(ev->data, ev->data_len)) ? 0 : TC_ERR_ALLOC;
        } else if (ev->data_len == 16) {
            if ((rc = tc_reader_u64le(&r, &d->blob_base)) == 0 &&
                (rc = tc_reader_u64le(&r, &d->blob_length)) == 0)
                d->kind = TC_EVD_BLOB;
        } else if (ev->type != TC_EV_POST_CODE && ev->type != TC_EV_S_CRTM_CONTENTS) {
            rc = TC_ERR_FORMAT;
        }
        break;
    case TC_EV_EFI_PLATFORM_FIRMWARE_BLOB2:
    case TC_EV_POST_CODE2:
        if ((rc = decode_desc(&r, d)) == 0 && (rc = tc_reader_u64le(&r, &d->blob_base)) == 0 &&
            (rc = tc_reader_u64le(&r, &d->blob_length)) == 0)
            d->kind = TC_EVD_BLOB;
        break;
    case TC_EV_EFI_VARIABLE_DRIVER_CONFIG:
    case TC_EV_EFI_VARIABLE_BOOT:
    case TC_EV_EFI_VARIABLE_BOOT2:
    case TC_EV_EFI_VARIABLE_AUTHORITY:
        rc = decode_variable(&r, d);
        break;
    case TC_EV_EFI_BOOT_SERVICES_APPLICATION:
    case TC_EV_EFI_BOOT_SERVICES_DRIVER:
    case TC_EV_EFI_RUNTIME_SERVICES_DRIVER:
        rc = decode_image(log, &r, d);
        break;
    case TC_EV_EFI_GPT_EVENT:
        rc = decode_gpt(&r, d, &entry_size);
        break;
    case TC_EV_EFI_HANDOFF_TABLES:
        rc = decode_handoff(&r, d);
        break;
    case TC_EV_EFI_HANDOFF_TABLES2:
        if ((rc = decode_desc(&r, d)) == 0)
            rc = decode_handoff(&r, d);
        break;
    case TC_EV_EVENT_TAG: {
        uint32_t n;
        if ((rc = tc_reader_u32le(&r, &d->tag_id)) == 0 && (rc = tc_reader_u32le(&r, &n)) == 0 &&
            (rc = tc_reader_view(&r, n, &d->tag_data)) == 0) {
            d->tag_data_len = n;
            d->kind = TC_EVD_TAGGED;
        }
        break;
    }
    case TC_EV_EFI_HCRTM_EVENT:
        d->kind = TC_EVD_STRING;
        rc = (d->text = ascii_dup(ev->data, ev->data_len)) ? 0 : TC_ERR_ALLOC;
        break;
    default:
        break;
    }
    if (rc != 0) {
        tc_evlog_decoded_release(d);
        d->kind = TC_EVD_RAW;
    }
    return rc;
}

/* ---- JSON ---- */

static int set_hex(json_t *o, const char *key, const uint8_t *p, size_t n)
{
    char *hex = malloc(2 * n + 1);
    if (hex == NULL)
        return TC_ERR_ALLOC;
    tc_hex_encode(p, n, hex);
    int rc = json_object_set_new(o, key, json_string(hex)) ? TC_ERR_ALLOC : 0;
    free(hex);
    return rc;
}

static int set_guid(json_t *o, const char *key, const uint8_t g[16])
{
    char s[37];
    tc_evlog_guid_str(g, s);
    return json_object_set_new(o, key, json_string(s)) ? TC_ERR_ALLOC : 0;
}

static int set_u64(json_t *o, const char *key, uint64_t v)
{
    return json_object_set_new(o, key, json_integer((json_int_t)v)) ? TC_ERR_ALLOC : 0;
}

static int set_str(json_t *o, const char *key, const char *s)
{
    return json_object_set_new(o, key, json_string(s ? s : "")) ? TC_ERR_ALLOC : 0;
}

/* Extra detail for well-known variables: SecureBoot state, BootOrder, Boot#### description. */
static int variable_details(json_t *det, const struct tc_evlog_decoded *d)
{
    struct tc_reader r;
    tc_reader_init(&r, d->var_data, d->var_data_len);
    if (d->var == TC_VAR_SECUREBOOT) {
        bool on = d->var_data_len >= 1 && d->var_data[0] == 1;
        return json_object_set_new(det, "enabled", json_boolean(on)) ? TC_ERR_ALLOC : 0;
    }
    if (d->var == TC_VAR_BOOTORDER) {
        json_t *a = json_array();
        if (a == NULL || json_object_set_new(det, "boot_order", a))
            return TC_ERR_ALLOC;
        uint16_t v;
        while (tc_reader_u16le(&r, &v) == 0) {
            char s[8];
            snprintf(s, sizeof(s), "%04X", v);
            if (json_array_append_new(a, json_string(s)))
                return TC_ERR_ALLOC;
        }
        return 0;
    }
    if (d->var == TC_VAR_BOOTNNNN) {
        /* EFI_LOAD_OPTION: Attributes, FilePathListLength, NUL-terminated CHAR16 description. */
        uint32_t attr;
        uint16_t fplen;
        if (tc_reader_u32le(&r, &attr) || tc_reader_u16le(&r, &fplen))
            return 0;
        size_t n = tc_reader_left(&r) / 2;
        char *desc = utf16_dup(tc_reader_ptr(&r), n);
        if (desc == NULL)
            return TC_ERR_ALLOC;
        int rc = set_str(det, "description", desc);
        free(desc);
        if (rc == 0)
            rc = set_u64(det, "attributes", attr);
        return rc;
    }
    return 0;
}

static const char *var_kind_name(enum tc_evlog_var v)
{
    switch (v) {
    case TC_VAR_SECUREBOOT:
        return "SecureBoot";
    case TC_VAR_PK:
        return "PK";
    case TC_VAR_KEK:
        return "KEK";
    case TC_VAR_DB:
        return "db";
    case TC_VAR_DBX:
        return "dbx";
    case TC_VAR_BOOTORDER:
        return "BootOrder";
    case TC_VAR_BOOTNNNN:
        return "Boot####";
    default:
        return NULL;
    }
}

static int gpt_details(json_t *det, const struct tc_evlog_event *ev,
                       const struct tc_evlog_decoded *d)
{
    struct tc_reader r;
    const uint8_t *hdr, *e;
    uint64_t n;
    int rc;
    tc_reader_init(&r, ev->data, ev->data_len);
    if ((rc = tc_reader_view(&r, GPT_HDR, &hdr)) || (rc = tc_reader_u64le(&r, &n)))
        return rc;
    uint32_t esize = (uint32_t)hdr[84] | (uint32_t)hdr[85] << 8 | (uint32_t)hdr[86] << 16 |
                     (uint32_t)hdr[87] << 24;
    if ((rc = set_guid(det, "disk_guid", d->gpt_disk_guid)) ||
        (rc = set_u64(det, "partitions", d->gpt_npartitions)))
        return rc;
    json_t *a = json_array();
    if (a == NULL || json_object_set_new(det, "partition_entries", a))
        return TC_ERR_ALLOC;
    for (uint64_t i = 0; i < n; i++) {
        if ((rc = tc_reader_view(&r, esize, &e)) != 0)
            return rc;
        json_t *p = json_object();
        if (p == NULL || json_array_append_new(a, p))
            return TC_ERR_ALLOC;
        struct tc_reader er;
        uint64_t first, last;
        tc_reader_init(&er, e + 32, 16);
        if (tc_reader_u64le(&er, &first) || tc_reader_u64le(&er, &last))
            return TC_ERR_INTERNAL;
        char *name = utf16_dup(e + 56, 36);
        if (name == NULL)
            return TC_ERR_ALLOC;
        rc = set_guid(p, "type_guid", e);
        if (rc == 0)
            rc = set_guid(p, "unique_guid", e + 16);
        if (rc == 0)
            rc = set_u64(p, "first_lba", first);
        if (rc == 0)
            rc = set_u64(p, "last_lba", last);
        if (rc == 0)
            rc = set_str(p, "name", name);
        free(name);
        if (rc)
            return rc;
    }
    return 0;
}

static int details_json(const struct tc_evlog *log, const struct tc_evlog_event *ev,
                        const struct tc_evlog_decoded *d, json_t *det)
{
    int rc = 0;
    switch (d->kind) {
    case TC_EVD_SPECID: {
        char sig[17] = {0};
        memcpy(sig, ev->data, 16);
        if ((rc = set_str(det, "signature", sig)) ||
            (rc = set_u64(det, "platform_class", log->platform_class)))
            return rc;
        char ver[32];
        snprintf(ver, sizeof(ver), "%u.%u.%u", log->spec_major, log->spec_minor, log->spec_errata);
        if ((rc = set_str(det, "spec_version", ver)) ||
            (rc = set_u64(det, "uintn_size", log->uintn_size)))
            return rc;
        json_t *a = json_array();
        if (a == NULL || json_object_set_new(det, "algorithms", a))
            return TC_ERR_ALLOC;
        for (size_t i = 0; i < log->nalgs; i++) {
            json_t *x = json_object();
            char id[16];
            snprintf(id, sizeof(id), "0x%04x", log->algs[i].alg_id);
            if (x == NULL || json_array_append_new(a, x) || set_str(x, "id", id) ||
                set_str(x, "name", log->algs[i].hash ? log->algs[i].hash->name : "unknown") ||
                set_u64(x, "digest_size", log->algs[i].size))
                return TC_ERR_ALLOC;
        }
        return set_hex(det, "vendor_info", log->vendor_info, log->vendor_info_len);
    }
    case TC_EVD_STARTUP_LOCALITY:
        return set_u64(det, "startup_locality", d->locality);
    case TC_EVD_NO_ACTION:
        return set_str(det, "signature", d->text);
    case TC_EVD_STRING:
        return set_str(det, "string", d->text);
    case TC_EVD_SEPARATOR:
        if ((rc = set_u64(det, "value", d->separator)) != 0)
            return rc;
        return json_object_set_new(det, "error", json_boolean(d->separator == 0xffffffffu))
                   ? TC_ERR_ALLOC
                   : 0;
    case TC_EVD_VARIABLE:
        if ((rc = set_guid(det, "guid", d->var_guid)) || (rc = set_str(det, "name", d->var_name)))
            return rc;
        if (var_kind_name(d->var) && (rc = set_str(det, "variable", var_kind_name(d->var))))
            return rc;
        if ((rc = set_u64(det, "data_size", d->var_data_len)) != 0)
            return rc;
        if (d->var_data_len <= JSON_HEX_MAX &&
            (rc = set_hex(det, "data", d->var_data, d->var_data_len)) != 0)
            return rc;
        return variable_details(det, d);
    case TC_EVD_IMAGE:
        if ((rc = set_u64(det, "image_location", d->image_location)) ||
            (rc = set_u64(det, "image_length", d->image_length)) ||
            (rc = set_u64(det, "image_link_address", d->image_link_address)) ||
            (rc = set_u64(det, "device_path_length", d->image_device_path_len)))
            return rc;
        return set_hex(det, "device_path", d->image_device_path,
                       d->image_device_path_len > JSON_HEX_MAX ? JSON_HEX_MAX
                                                               : d->image_device_path_len);
    case TC_EVD_BLOB:
        if (d->text && (rc = set_str(det, "description", d->text)))
            return rc;
        if ((rc = set_u64(det, "blob_base", d->blob_base)) != 0)
            return rc;
        return set_u64(det, "blob_length", d->blob_length);
    case TC_EVD_HANDOFF:
        if (d->text && (rc = set_str(det, "description", d->text)))
            return rc;
        return set_u64(det, "tables", d->ntables);
    case TC_EVD_GPT:
        return gpt_details(det, ev, d);
    case TC_EVD_TAGGED:
        if ((rc = set_u64(det, "tag_id", d->tag_id)) != 0)
            return rc;
        return set_hex(det, "tag_data", d->tag_data,
                       d->tag_data_len > JSON_HEX_MAX ? JSON_HEX_MAX : d->tag_data_len);
    case TC_EVD_RAW:
        break;
    }
    return 0;
}

json_t *tc_evlog_event_to_json(const struct tc_evlog *log, const struct tc_evlog_event *ev)
{
    struct tc_evlog_decoded d;
    json_t *j = json_object(), *dg = json_object(), *det = json_object();
    const char *tn = tc_evlog_type_name(ev->type);
    char tbuf[24];
    int drc;

    memset(&d, 0, sizeof(d));
    if (j == NULL || dg == NULL || det == NULL)
        goto fail;
    if (tn == NULL) {
        snprintf(tbuf, sizeof(tbuf), "0x%08x", ev->type);
        tn = tbuf;
    }
    if (set_u64(j, "index", ev->index) || set_u64(j, "offset", ev->offset) ||
        set_u64(j, "pcr", ev->pcr) || set_u64(j, "type", ev->type) || set_str(j, "type_name", tn))
        goto fail;
    for (size_t i = 0; i < ev->ndigests; i++) {
        char name[16];
        const char *key = ev->digests[i].hash ? ev->digests[i].hash->name : name;
        snprintf(name, sizeof(name), "alg_0x%04x", ev->digests[i].alg_id);
        if (set_hex(dg, key, ev->digests[i].value, ev->digests[i].size))
            goto fail;
    }
    if (json_object_set(j, "digests", dg) || set_u64(j, "data_size", ev->data_len))
        goto fail;
    drc = tc_evlog_decode(log, ev, &d);
    if (drc == TC_ERR_ALLOC)
        goto fail;
    if (drc != 0 && set_str(j, "decode_error", tc_strerror(drc)))
        goto fail;
    if (details_json(log, ev, &d, det) != 0)
        goto fail;
    if (json_object_size(det) > 0 && json_object_set(j, "details", det))
        goto fail;
    if (d.kind == TC_EVD_RAW && ev->data_len <= JSON_HEX_MAX &&
        set_hex(j, "data", ev->data, ev->data_len))
        goto fail;
    tc_evlog_decoded_release(&d);
    json_decref(dg);
    json_decref(det);
    return j;
fail:
    tc_evlog_decoded_release(&d);
    json_decref(dg);
    json_decref(det);
    json_decref(j);
    return NULL;
}
