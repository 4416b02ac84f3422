/* SPDX-License-Identifier: Apache-2.0 */
/*
 * UEFI measured-boot event logs (TCG PC Client Platform Firmware Profile),
 * as firmware hands them to the OS in binary_bios_measurements.
 *
 * Both formats are parsed:
 *  - legacy SHA-1: every event is a TCG_PCR_EVENT (20-byte SHA-1 digest);
 *  - crypto-agile: the first event is a TCG_PCR_EVENT whose data is the
 *    "Spec ID Event03" TCG_EfiSpecIDEvent (algorithm/digest-size table); all
 *    following events are TCG_PCR_EVENT2 with a TPML_DIGEST_VALUES.
 *
 * Digest sizes always come from the Spec ID table, so algorithms this build
 * does not know are skipped correctly; they are kept in the event but not
 * replayed. A known algorithm whose table size disagrees with its real size,
 * an algorithm missing from the table, a repeated algorithm in one event or
 * more digests than the table has are format errors.
 *
 * Replay rules (checked against tpm2_eventlog on the fixtures):
 *  - EV_NO_ACTION events are never extended;
 *  - a "StartupLocality" EV_NO_ACTION event in PCR 0 sets the last byte of
 *    PCR 0's initial value to the locality (TPM 2.0 Part 1, TPM2_Startup);
 *    it must come before any measurement into PCR 0;
 *  - an EV_EFI_HCRTM_EVENT that is the first measurement into PCR 0 makes
 *    PCR 0 start at 0..04 (H-CRTM sequence at locality 4);
 *  - a PCR is reported in a bank when some event carries a digest of that
 *    bank for it (for crypto-agile logs, EV_NO_ACTION events included, which
 *    is what tpm2_eventlog does: their value is the initial one).
 */
#ifndef TRUSTCLOUD_EVENTLOG_H
#define TRUSTCLOUD_EVENTLOG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trustcloud/hashalg.h"
#include "trustcloud/pcrs.h"
#include "trustcloud/reason.h"

/* Caps on untrusted input. */
#define TC_EVLOG_MAX_SIZE (16u << 20)      /* whole log */
#define TC_EVLOG_MAX_EVENTS 100000         /* events per log */
#define TC_EVLOG_MAX_EVENT_DATA (1u << 20) /* one event's data */
#define TC_EVLOG_MAX_ALGS 16               /* Spec ID table entries */
#define TC_EVLOG_MAX_DIGEST_SIZE 128       /* digest size in the Spec ID table */
#define TC_EVLOG_MAX_NAME 1024             /* UEFI variable name, UTF-16 code units */

/* Event types (PC Client PFP, section 10.4.1). */
#define TC_EV_PREBOOT_CERT 0x00000000u
#define TC_EV_POST_CODE 0x00000001u
#define TC_EV_NO_ACTION 0x00000003u
#define TC_EV_SEPARATOR 0x00000004u
#define TC_EV_ACTION 0x00000005u
#define TC_EV_EVENT_TAG 0x00000006u
#define TC_EV_S_CRTM_CONTENTS 0x00000007u
#define TC_EV_S_CRTM_VERSION 0x00000008u
#define TC_EV_CPU_MICROCODE 0x00000009u
#define TC_EV_PLATFORM_CONFIG_FLAGS 0x0000000Au
#define TC_EV_TABLE_OF_DEVICES 0x0000000Bu
#define TC_EV_COMPACT_HASH 0x0000000Cu
#define TC_EV_IPL 0x0000000Du
#define TC_EV_IPL_PARTITION_DATA 0x0000000Eu
#define TC_EV_NONHOST_CODE 0x0000000Fu
#define TC_EV_NONHOST_CONFIG 0x00000010u
#define TC_EV_NONHOST_INFO 0x00000011u
#define TC_EV_OMIT_BOOT_DEVICE_EVENTS 0x00000012u
#define TC_EV_POST_CODE2 0x00000013u
#define TC_EV_EFI_VARIABLE_DRIVER_CONFIG 0x80000001u
#define TC_EV_EFI_VARIABLE_BOOT 0x80000002u
#define TC_EV_EFI_BOOT_SERVICES_APPLICATION 0x80000003u
#define TC_EV_EFI_BOOT_SERVICES_DRIVER 0x80000004u
#define TC_EV_EFI_RUNTIME_SERVICES_DRIVER 0x80000005u
#define TC_EV_EFI_GPT_EVENT 0x80000006u
#define TC_EV_EFI_ACTION 0x80000007u
#define TC_EV_EFI_PLATFORM_FIRMWARE_BLOB 0x80000008u
#define TC_EV_EFI_HANDOFF_TABLES 0x80000009u
#define TC_EV_EFI_PLATFORM_FIRMWARE_BLOB2 0x8000000Au
#define TC_EV_EFI_HANDOFF_TABLES2 0x8000000Bu
#define TC_EV_EFI_VARIABLE_BOOT2 0x8000000Cu
#define TC_EV_EFI_GPT_EVENT2 0x8000000Du
#define TC_EV_EFI_HCRTM_EVENT 0x80000010u
#define TC_EV_EFI_VARIABLE_AUTHORITY 0x800000E0u
#define TC_EV_EFI_SPDM_FIRMWARE_BLOB 0x800000E1u
#define TC_EV_EFI_SPDM_FIRMWARE_CONFIG 0x800000E2u

enum tc_evlog_format { TC_EVLOG_LEGACY_SHA1 = 1, TC_EVLOG_CRYPTO_AGILE = 2 };

/* One row of the Spec ID algorithm table. */
struct tc_evlog_alg {
    uint16_t alg_id;
    uint16_t size;
    const struct tc_hash_alg *hash; /* NULL when this build does not know the algorithm */
};

struct tc_evlog_digest {
    uint16_t alg_id;
    const struct tc_hash_alg *hash; /* NULL when unknown (not replayed) */
    const uint8_t *value;           /* view into the log */
    size_t size;
};

struct tc_evlog_event {
    size_t index;  /* 0-based, the Spec ID event of a crypto-agile log is 0 */
    size_t offset; /* byte offset of the event header in the log */
    uint32_t pcr;
    uint32_t type;
    size_t ndigests;
    const struct tc_evlog_digest *digests; /* owned by the log */
    const uint8_t *data;                   /* view into the log */
    size_t data_len;
};

struct tc_evlog {
    enum tc_evlog_format format;
    uint8_t *buf; /* owned copy of the log bytes; every view points here */
    size_t len;
    /* Spec ID event (crypto-agile only). */
    uint32_t platform_class;
    uint8_t spec_major, spec_minor, spec_errata, uintn_size;
    size_t nalgs;
    struct tc_evlog_alg algs[TC_EVLOG_MAX_ALGS];
    const uint8_t *vendor_info;
    size_t vendor_info_len;
    /* StartupLocality, when the log has one (before any PCR 0 measurement). */
    bool has_startup_locality;
    uint8_t startup_locality;
    size_t nevents;
    struct tc_evlog_event *events;
    struct tc_evlog_digest *digest_pool; /* storage behind events[i].digests */
};

/*
 * Parses a binary event log. The bytes are copied, so data may be freed
 * afterwards. *out is set only on success (free with tc_evlog_free).
 * Errors: TC_ERR_FORMAT (empty, garbage, inconsistent sizes or tables),
 * TC_ERR_TRUNCATED (an event runs past the end), TC_ERR_TOO_LARGE (a cap),
 * TC_ERR_ALLOC. why names check "eventlog.parse", the entry index and the byte
 * offset.
 */
int tc_evlog_parse(const uint8_t *data, size_t len, struct tc_evlog **out, struct tc_reason *why);
/* Reads a file (at most TC_EVLOG_MAX_SIZE) and parses it. TC_ERR_IO when unreadable. */
int tc_evlog_parse_file(const char *path, struct tc_evlog **out, struct tc_reason *why);
void tc_evlog_free(struct tc_evlog *log);

/*
 * Replays every event into out (cleared on entry): one bank per known
 * algorithm that the events carry, PCRs 0..23. On failure out is cleared.
 * Errors: TC_ERR_FORMAT (StartupLocality after a PCR 0 measurement), TC_ERR_CRYPTO.
 */
int tc_evlog_replay(const struct tc_evlog *log, struct tc_pcr_set *out, struct tc_reason *why);

/* The digest of event ev in algorithm hash, or NULL when the event has none. */
const uint8_t *tc_evlog_event_digest(const struct tc_evlog_event *ev,
                                     const struct tc_hash_alg *hash);

/* "EV_EFI_ACTION", ...; NULL for an unknown type. */
const char *tc_evlog_type_name(uint32_t type);

/* What an event's data was decoded as. */
enum tc_evlog_kind {
    TC_EVD_RAW = 0,          /* unknown type or undecodable data: only the bytes */
    TC_EVD_SPECID,           /* Spec ID event (see struct tc_evlog) */
    TC_EVD_STARTUP_LOCALITY, /* locality */
    TC_EVD_NO_ACTION,        /* other EV_NO_ACTION: text holds the signature */
    TC_EVD_STRING,           /* text: EV_ACTION, EV_EFI_ACTION, EV_IPL, EV_POST_CODE, ... */
    TC_EVD_SEPARATOR,        /* separator */
    TC_EVD_VARIABLE,         /* var_* */
    TC_EVD_IMAGE,            /* image_* */
    TC_EVD_BLOB,             /* blob_* (text holds the BLOB2 description) */
    TC_EVD_HANDOFF,          /* ntables (text holds the TABLES2 description) */
    TC_EVD_GPT,              /* gpt_* */
    TC_EVD_TAGGED,           /* tag_* */
};

/* Well-known UEFI variables (name and vendor GUID both checked). */
enum tc_evlog_var {
    TC_VAR_OTHER = 0,
    TC_VAR_SECUREBOOT,
    TC_VAR_PK,
    TC_VAR_KEK,
    TC_VAR_DB,
    TC_VAR_DBX,
    TC_VAR_BOOTORDER,
    TC_VAR_BOOTNNNN,
};

struct tc_evlog_decoded {
    enum tc_evlog_kind kind;
    char *text; /* malloc'd UTF-8 (control bytes replaced by '?'), or NULL */
    uint8_t locality;
    uint32_t separator;
    /* UEFI_VARIABLE_DATA */
    uint8_t var_guid[16];
    char *var_name; /* malloc'd UTF-8 */
    enum tc_evlog_var var;
    const uint8_t *var_data; /* view into the log */
    size_t var_data_len;
    /* UEFI_IMAGE_LOAD_EVENT */
    uint64_t image_location, image_length, image_link_address;
    const uint8_t *image_device_path; /* view into the log */
    size_t image_device_path_len;
    /* UEFI_PLATFORM_FIRMWARE_BLOB(2) */
    uint64_t blob_base, blob_length;
    /* UEFI_HANDOFF_TABLE_POINTERS(2) */
    uint64_t ntables;
    /* UEFI_GPT_DATA */
    uint8_t gpt_disk_guid[16];
    uint64_t gpt_npartitions;
    /* TCG_PCClientTaggedEvent */
    uint32_t tag_id;
    const uint8_t *tag_data;
    size_t tag_data_len;
};

/*
 * Decodes the data of one event (bounds-checked). Malformed data of a known
 * type returns TC_ERR_FORMAT / TC_ERR_TRUNCATED and leaves kind TC_EVD_RAW;
 * unknown types succeed as TC_EVD_RAW. Release with tc_evlog_decoded_release.
 */
int tc_evlog_decode(const struct tc_evlog *log, const struct tc_evlog_event *ev,
                    struct tc_evlog_decoded *out);
void tc_evlog_decoded_release(struct tc_evlog_decoded *d);

/* Formats a GUID in its canonical text form (37 bytes with the NUL). */
void tc_evlog_guid_str(const uint8_t guid[16], char out[37]);

/*
 * {"index", "offset", "pcr", "type", "type_name", "digests": {"sha256": "..", ...},
 *  "data_size", "details": {...}, "data": "<hex>" (raw events up to 4 KiB)}.
 * NULL on allocation failure. Unknown algorithms appear as "alg_0xNNNN".
 */
json_t *tc_evlog_event_to_json(const struct tc_evlog *log, const struct tc_evlog_event *ev);

#endif
