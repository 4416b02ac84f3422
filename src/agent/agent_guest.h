/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The host side of the guest channel (docs/protocol.md, "Guest channel"): one exchange with a
 * real guest's trustcloud-guest through the unix socket of its virtio-serial chardev (QEMU's
 * `-chardev socket,...,server=on`). Private to src/agent (the CLI's `lab guest-quote` test hook
 * links it too).
 *
 * Everything the guest sends is hostile: frames are read with the protocol's caps through the
 * streaming decoder, payloads through the strict parsers, and the whole exchange has one
 * deadline, so a silent, slow or garbling guest costs its caller at most that much time and
 * never more memory than one capped answer.
 */
#ifndef TC_AGENT_GUEST_H
#define TC_AGENT_GUEST_H

#include "trustcloud/guest_channel.h"
#include "trustcloud/reason.h"

/* Timings of one exchange (microseconds, monotonic clock). */
struct agent_guest_timing {
    long long connect_us; /* connected and hello answered */
    long long answer_us;  /* request sent to answer parsed */
    size_t answer_bytes;  /* the answer frame's payload */
};

/* Connects to the unix socket at path, exchanges hellos (the guest's in *hello), sends req and
 * reads the answer (in *answer: release it with tc_gc_answer_release), all before deadline_ms
 * have passed. The answer must be the one to req (same id). On failure the outputs hold
 * nothing and why names the check: "guest.connect" (no socket, nobody there), "guest.deadline"
 * (nothing or not enough within the deadline), "guest.closed" (the guest side went away before
 * a whole frame), the decoder's and parsers' checks ("guest.frame", "guest.version",
 * "guest.type", "guest.too_large", "guest.payload"), "guest.unexpected" (a frame of another
 * type, or an answer to another request), "guest.error" (the guest answered with an error: its
 * check and text in the detail). Errors: TC_ERR_IO (connect, closed, deadline), the parsers'
 * codes, TC_ERR_POLICY (guest.unexpected, guest.error). timing may be NULL. */
int agent_guest_quote(const char *path, const struct tc_gc_request *req, int deadline_ms,
                      struct tc_gc_hello *hello, struct tc_gc_answer *answer,
                      struct agent_guest_timing *timing, struct tc_reason *why);

#endif
