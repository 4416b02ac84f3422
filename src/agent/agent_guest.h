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

#include <stdbool.h>

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
 * nothing and why names the check: "guest.connect" (no socket, nobody there), "guest.channel"
 * (the path is not a socket: lstat, no link is followed), "guest.deadline" (nothing within the
 * deadline), "guest.truncated" (part of a frame, then nothing until the deadline), "guest.closed"
 * (the guest side went away before a whole frame), the decoder's and parsers' checks
 * ("guest.frame", "guest.version", "guest.type", "guest.too_large", "guest.payload"),
 * "guest.unexpected" (a frame of another type, or an answer to another request; a hello, or an
 * answer or error to an earlier request id, that an earlier session left behind is skipped, up to 4
 * of them), "guest.error" (the guest answered with an error: its check and text in the detail).
 * Errors: TC_ERR_IO (connect, closed, deadline), the parsers' codes, TC_ERR_POLICY
 * (guest.unexpected, guest.error). timing may be NULL. */
int agent_guest_quote(const char *path, const struct tc_gc_request *req, int deadline_ms,
                      struct tc_gc_hello *hello, struct tc_gc_answer *answer,
                      struct agent_guest_timing *timing, struct tc_reason *why);

/* A session's opening alone: connect and hellos (the guest's, with its AK, in *hello). The
 * checks of agent_guest_quote. */
int agent_guest_hello(const char *path, int deadline_ms, struct tc_gc_hello *hello,
                      struct tc_reason *why);

/* Connects, exchanges hellos and relays an activation request (the coordinator's credential for
 * the AK in the guest's hello) under one deadline; the guest's TPM unwraps it. *done holds the
 * secret (the caller wipes it). Checks as agent_guest_quote's, and "guest.activate" in the
 * detail of a "guest.error" when the guest's TPM refused. */
int agent_guest_activate(const char *path, const struct tc_gc_activate *act, int deadline_ms,
                         struct tc_gc_hello *hello, struct tc_gc_activated *done,
                         struct tc_reason *why);

/* ---- Exchanges the coordinator asks for ---------------------------------------------------- */

/* POST /v1/vms/{id}/guest (the guest's hello: its agent and AK) and POST /v1/vms/{id}/activate
 * for a VM whose guest owns its vTPM: each runs on a thread of its own, the request deferred,
 * so that a guest taking its whole deadline holds neither the server nor the TPM worker. At
 * most AGENT_GUEST_MAX_THREADS at once (then 503 agent.busy). */
#define AGENT_GUEST_MAX_THREADS 16
#include <pthread.h>
struct tc_http_request;
struct tc_http_response;
struct agent_guest_runner {
    pthread_mutex_t lock;
    pthread_cond_t idle;
    unsigned running;
    bool stopping;
};
void agent_guest_runner_init(struct agent_guest_runner *r);
/* Refuses new work and waits for the running exchanges (each ends by its deadline). */
void agent_guest_runner_stop(struct agent_guest_runner *r);
void agent_guest_runner_release(struct agent_guest_runner *r);
/* act NULL: the hello; else the activation. Answers resp itself when it cannot start. */
int agent_guest_runner_submit(struct agent_guest_runner *r, const struct tc_http_request *req,
                              struct tc_http_response *resp, const char *vm_id, const char *channel,
                              int deadline_ms, const struct tc_gc_activate *act);

#endif
