/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The guest channel (docs/protocol.md, "Guest channel"): the messages the host agent and the
 * guest agent (trustcloud-guest) exchange over a VM's virtio-serial port. Pure code, no I/O:
 * the host side (for which every byte from a guest is hostile) and the guest side share it.
 *
 * A frame is a 12-byte header, then the payload:
 *   magic "TCGC" (4 bytes) | version u8 (1) | type u8 | reserved u16 (0) | length u32 BE
 * and `length` bytes of compact JSON (one object). Each type has its own payload cap
 * (tc_gc_type_cap); a length above it is refused from the header alone, before anything is
 * buffered. Payload objects are parsed strictly: every member has one JSON type and its own
 * cap, required members must be there, and unknown members are refused (a new member means a
 * new protocol version), so one message has exactly one meaning on both sides.
 *
 * Every refusal fills a struct tc_reason whose check names it: "guest.frame" (magic, reserved
 * bits), "guest.version", "guest.type", "guest.too_large" (length above the type's cap),
 * "guest.truncated" (the stream ended inside a frame), "guest.payload" (a payload that is not
 * what its type says; the detail names the member).
 */
#ifndef TRUSTCLOUD_GUEST_CHANNEL_H
#define TRUSTCLOUD_GUEST_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trustcloud/buf.h"
#include "trustcloud/pcrs.h"
#include "trustcloud/reason.h"

#define TC_GC_MAGIC 0x54434743u /* "TCGC" */
#define TC_GC_VERSION 1
#define TC_GC_HEADER_LEN 12

/* The virtio-serial port name the platform gives the guest agent; inside the guest it is
 * /dev/virtio-ports/TC_GC_PORT_NAME. */
#define TC_GC_PORT_NAME "org.trustcloud.guest.0"
/* Where the platform keeps a vTPM's AK (as the host agent does for tcp-mode vTPMs): the guest
 * agent uses the key found there, or creates one under the EK and makes it persistent there. */
#define TC_GC_AK_HANDLE 0x81010003u

enum tc_gc_type {
    TC_GC_HELLO = 1,            /* both ways: the host opens a session, the guest says who it is */
    TC_GC_QUOTE_REQUEST = 2,    /* host -> guest */
    TC_GC_QUOTE_ANSWER = 3,     /* guest -> host */
    TC_GC_ERROR = 4,            /* both ways: a request that could not be answered */
    TC_GC_ACTIVATE_REQUEST = 5, /* host -> guest: a credential for the guest's AK (enrollment) */
    TC_GC_ACTIVATE_ANSWER = 6,  /* guest -> host: the secret its TPM unwrapped */
};

/* Payload caps by type. The answer carries an IMA delta and a UEFI log (base64, so 16 MiB of
 * frame hold about 12 MiB of logs). */
#define TC_GC_MAX_SMALL (4u << 10)       /* hello, request, error */
#define TC_GC_MAX_ANSWER (16u << 20)     /* quote answer */
#define TC_GC_MAX_NONCE 64               /* TPM2B_DATA limit for qualifyingData */
#define TC_GC_MAX_SELECTION_TEXT 256     /* "sha256:0,1,...+sha1:..." */
#define TC_GC_MAX_TEXT 256               /* agent, check, error texts */
#define TC_GC_MAX_CAPS 16                /* capability strings in a hello */
#define TC_GC_MAX_ID 0x1fffffffffffffULL /* request ids: exact in every JSON number parser */
#define TC_GC_MAX_IMA_POS 100000000ULL   /* IMA positions, far above any real list */

/* The payload cap of type, 0 for a type that does not exist. */
size_t tc_gc_type_cap(unsigned type);
/* "hello", "quote_request", "quote_answer", "error", or "unknown". */
const char *tc_gc_type_name(unsigned type);

/* Writes a header and payload (len at most the type's cap, else TC_ERR_TOO_LARGE; unknown type:
 * TC_ERR_INVALID_ARG) to out. */
int tc_gc_frame_encode(unsigned type, const void *payload, size_t len, struct tc_buf *out);

/* ---- Streaming decoder ------------------------------------------------------------------- */

/* Takes bytes as they arrive (in pieces of any size) and yields whole frames. Owns the payload
 * buffer of the frame being assembled. An error is final: the stream has no frame boundaries
 * any more, the reader must drop the connection. */
struct tc_gc_decoder {
    uint8_t header[TC_GC_HEADER_LEN];
    size_t header_have;
    unsigned type;
    size_t length;
    struct tc_buf payload; /* capped at the frame's own length */
    bool ready;            /* a whole frame is in type/payload */
    int error;             /* sticky TC_ERR_* once refused */
    size_t max_payload;    /* the reader's own cap, at most the type caps (0: the type caps) */
};

/* max_payload: 0 for the protocol caps, or a smaller cap of the reader's. */
void tc_gc_decoder_init(struct tc_gc_decoder *d, size_t max_payload);
/* Wipes and frees the payload; NULL is a no-op. */
void tc_gc_decoder_release(struct tc_gc_decoder *d);
/* Consumes bytes of data[0..len) up to the end of the next frame (*used says how many).
 * Returns 1 when a frame is complete (tc_gc_decoder_frame; then tc_gc_decoder_next before
 * feeding the bytes not used), 0 when every byte was used and the frame is not complete yet,
 * or a negative TC_ERR_* with why filled: TC_ERR_FORMAT (magic, reserved), TC_ERR_UNSUPPORTED
 * (version, type), TC_ERR_TOO_LARGE, TC_ERR_ALLOC. */
int tc_gc_decoder_feed(struct tc_gc_decoder *d, const uint8_t *data, size_t len, size_t *used,
                       struct tc_reason *why);
/* The complete frame: views valid until tc_gc_decoder_next or release. TC_ERR_NOT_FOUND when
 * none is ready. */
int tc_gc_decoder_frame(const struct tc_gc_decoder *d, unsigned *type, const uint8_t **payload,
                        size_t *len);
/* Forgets the complete frame, ready for the next one. */
void tc_gc_decoder_next(struct tc_gc_decoder *d);
/* At the end of the stream: 0 when it ended between frames, TC_ERR_TRUNCATED
 * ("guest.truncated") when inside one. */
int tc_gc_decoder_finish(const struct tc_gc_decoder *d, struct tc_reason *why);

/* ---- Payloads ---------------------------------------------------------------------------- */

/* HELLO. From the host: {"version": 1}. From the guest: {"version": 1, "agent": "name version",
 * "capabilities": ["quote", "ima", "eventlog", "activate"], "ak_pub": "b64 TPM2B_PUBLIC"} (ak_pub
 * required when "quote" is offered; capability strings this side does not know are ignored). */
#define TC_GC_CAP_QUOTE 0x1u
#define TC_GC_CAP_IMA 0x2u
#define TC_GC_CAP_EVENTLOG 0x4u
#define TC_GC_CAP_ACTIVATE 0x8u
#define TC_GC_MAX_AK_PUB 1024
struct tc_gc_hello {
    unsigned version;
    char agent[TC_GC_MAX_TEXT + 1]; /* empty in the host's hello */
    unsigned caps;                  /* TC_GC_CAP_* */
    uint8_t ak_pub[TC_GC_MAX_AK_PUB];
    size_t ak_pub_len; /* 0: none */
};

/* QUOTE_REQUEST: {"id": n, "nonce": "hex", "pcr_selection": "sha256:0,...,10",
 * "ima_from": n, "want_eventlog": bool}. */
struct tc_gc_request {
    uint64_t id; /* 1..TC_GC_MAX_ID, echoed by the answer or error */
    uint8_t nonce[TC_GC_MAX_NONCE];
    size_t nonce_len;            /* 1..64 */
    struct tc_pcr_set selection; /* banks and masks only */
    char selection_text[TC_GC_MAX_SELECTION_TEXT + 1];
    uint64_t ima_from;
    bool want_eventlog;
};

/* QUOTE_ANSWER: {"id": n, "attest": "b64 TPMS_ATTEST", "signature": "b64 TPMT_SIGNATURE",
 * "pcrs": {"sha256": {"0": "hex", ...}}, "ima": {"first": n, "next": n, "list": "b64
 * binary_runtime_measurements of entries first..next-1" (absent when empty)},
 * "eventlog": "b64" (only when asked and the guest has one)}.
 * The byte arrays are malloc'd (release with tc_gc_answer_release). */
struct tc_gc_answer {
    uint64_t id;
    uint8_t *attest;
    size_t attest_len;
    uint8_t *sig;
    size_t sig_len;
    struct tc_pcr_set pcrs;
    uint64_t ima_first; /* the list restarted (reboot) when below the request's ima_from */
    uint64_t ima_next;  /* the IMA position reached: the next request's ima_from */
    uint8_t *ima;       /* NULL when no entry */
    size_t ima_len;
    uint8_t *eventlog; /* NULL when not sent */
    size_t eventlog_len;
};

/* ACTIVATE_REQUEST: {"id": n, "id_object": "b64 TPM2B_ID_OBJECT", "encrypted_secret": "b64
 * TPM2B_ENCRYPTED_SECRET"}: the coordinator's MakeCredential output for the AK the guest's hello
 * named, wrapped to the vTPM's EK. Only the TPM holding both keys can unwrap it. */
#define TC_GC_MAX_CREDENTIAL 1024 /* each blob (a TPM2B of at most ~600 bytes) */
#define TC_GC_MAX_SECRET 64
struct tc_gc_activate {
    uint64_t id;
    uint8_t id_object[TC_GC_MAX_CREDENTIAL];
    size_t id_object_len;
    uint8_t enc_secret[TC_GC_MAX_CREDENTIAL];
    size_t enc_secret_len;
};
/* ACTIVATE_ANSWER: {"id": n, "secret": "b64"} (1..TC_GC_MAX_SECRET bytes). */
struct tc_gc_activated {
    uint64_t id;
    uint8_t secret[TC_GC_MAX_SECRET];
    size_t secret_len;
};

/* ERROR: {"id": n (0: not about a request), "check": "guest.tpm", "error": "text"}. */
struct tc_gc_error {
    uint64_t id;
    char check[48];
    char error[TC_GC_MAX_TEXT + 1];
};

/* Parsers: payload of exactly len bytes (untrusted). Outputs are cleared first and hold nothing
 * on failure. Errors: TC_ERR_FORMAT (not JSON, a member of the wrong type or out of range, a
 * missing or unknown member), TC_ERR_TOO_LARGE (a member above its cap), TC_ERR_UNSUPPORTED
 * (hello version, PCR bank), TC_ERR_ALLOC; why's check is "guest.payload" (or
 * "guest.version") and its detail names the member. */
int tc_gc_hello_parse(const uint8_t *p, size_t len, struct tc_gc_hello *out, struct tc_reason *why);
int tc_gc_request_parse(const uint8_t *p, size_t len, struct tc_gc_request *out,
                        struct tc_reason *why);
int tc_gc_answer_parse(const uint8_t *p, size_t len, struct tc_gc_answer *out,
                       struct tc_reason *why);
int tc_gc_error_parse(const uint8_t *p, size_t len, struct tc_gc_error *out, struct tc_reason *why);
int tc_gc_activate_parse(const uint8_t *p, size_t len, struct tc_gc_activate *out,
                         struct tc_reason *why);
/* The secret is wiped from out on failure; callers wipe it after use. */
int tc_gc_activated_parse(const uint8_t *p, size_t len, struct tc_gc_activated *out,
                          struct tc_reason *why);
/* Frees and clears; NULL is a no-op. */
void tc_gc_answer_release(struct tc_gc_answer *a);

/* Encoders: one whole frame appended to out (the payload as the parsers above want it).
 * hello: agent NULL or "" and caps 0 for the host's; ak_pub may be NULL. request:
 * selection_text must parse (tc_pcrs_parse_selection). answer: pcrs may be empty; ima / eventlog
 * NULL for none. */
int tc_gc_hello_encode(const char *agent, unsigned caps, const uint8_t *ak_pub, size_t ak_pub_len,
                       struct tc_buf *out);
int tc_gc_request_encode(const struct tc_gc_request *req, struct tc_buf *out);
int tc_gc_answer_encode(const struct tc_gc_answer *a, struct tc_buf *out);
int tc_gc_error_encode(uint64_t id, const char *check, const char *error, struct tc_buf *out);
int tc_gc_activate_encode(const struct tc_gc_activate *a, struct tc_buf *out);
int tc_gc_activated_encode(uint64_t id, const uint8_t *secret, size_t secret_len,
                           struct tc_buf *out);

#endif
