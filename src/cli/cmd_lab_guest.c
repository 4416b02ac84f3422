/* SPDX-License-Identifier: Apache-2.0 */
/*
 * trustcloud lab guest-quote: the host side of the guest channel by hand (tests, and a look at
 * a real guest before the host agent attests it). For each --socket, for --rounds rounds:
 * hello, quote request, answer (agent_guest_quote), then the answer appraised with the
 * project's own verifiers (tc_appraise): the quote by the AK the guest's hello names, the
 * nonce, the PCR digest, the UEFI log's replay when one came, and the IMA delta replayed
 * against the quoted PCR 10 (round after round from where the last one stopped). One JSON line
 * per round; a refused guest does not stop the rounds of the next socket.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "agent_guest.h"
#include "cli.h"
#include "trustcloud/appraisal.h"
#include "trustcloud/buf.h"
#include "trustcloud/error.h"
#include "trustcloud/eventlog.h"
#include "trustcloud/ima.h"
#include "trustcloud/quote.h"

#define MAX_SOCKETS 16

struct gq_args {
    const char *sockets[MAX_SOCKETS];
    size_t nsockets;
    const char *nonce_hex;
    const char *selection;
    const char *out_dir;
    long rounds;
    long timeout_ms;
    bool eventlog;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: trustcloud lab guest-quote --socket PATH [--socket PATH ...] [--nonce HEX]\n"
               "         [--pcrs SEL] [--eventlog] [--rounds N] [--timeout-ms MS] [--out DIR]\n");
}

/* Appraises one answer; the IMA replay state moves on success. */
static int appraise_answer(const struct tc_gc_hello *hello, const struct tc_gc_request *req,
                           const struct tc_gc_answer *ans, struct tc_ima_replay_state *ima_state,
                           struct tc_appraisal *res)
{
    struct tc_ak *ak = NULL;
    struct tc_evlog *evlog = NULL;
    struct tc_ima_log *ima = NULL;
    struct tc_pcr_selection sel;
    memset(res, 0, sizeof(*res));
    int rc = tc_ak_from_tpm2b_public(hello->ak_pub, hello->ak_pub_len, &ak, &res->why);
    if (rc)
        goto out;
    if (ans->eventlog != NULL &&
        (rc = tc_evlog_parse(ans->eventlog, ans->eventlog_len, &evlog, &res->why)) != 0)
        goto out;
    struct tc_ima_parse_opts po = {.format = TC_IMA_FMT_BINARY, .first_index = ans->ima_first};
    if (ans->ima != NULL)
        rc = tc_ima_log_parse(ans->ima, ans->ima_len, &po, &ima, &res->why);
    else if ((rc = tc_ima_log_new(NULL, &ima)) == 0)
        ima->first_index = ans->ima_first;
    if (rc)
        goto out;
    if (ima->count != ans->ima_next - ans->ima_first) {
        rc = tc_fail(&res->why, TC_ERR_MISMATCH, "guest.ima_count", -1,
                     "the answer says entries %llu..%llu but its list holds %zu",
                     (unsigned long long)ans->ima_first, (unsigned long long)ans->ima_next,
                     ima->count);
        goto out;
    }
    tc_pcr_selection_from_set(&req->selection, &sel);
    struct tc_appraisal_input in = {
        .ak = ak,
        .attest = ans->attest,
        .attest_len = ans->attest_len,
        .sig = ans->sig,
        .sig_len = ans->sig_len,
        .pcrs = &ans->pcrs,
        .expect = {.nonce = req->nonce, .nonce_len = req->nonce_len, .selection = &sel},
        .eventlog = evlog,
        .ima = ima,
        .ima_state = ima_state,
    };
    rc = tc_appraise(&in, res);
out:
    tc_ak_free(ak);
    tc_evlog_free(evlog);
    tc_ima_log_free(ima);
    return rc;
}

static void save(const char *dir, const char *sock_tag, long round, const char *name,
                 const uint8_t *data, size_t len)
{
    if (dir == NULL || data == NULL)
        return;
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s.%ld.%s", dir, sock_tag, round, name);
    if (tc_file_write(path, data, len, 0644) != 0)
        fprintf(stderr, "trustcloud lab guest-quote: cannot write %s\n", path);
}

int lab_guest_quote_main(int argc, char **argv)
{
    static const struct option opts[] = {{"socket", required_argument, NULL, 's'},
                                         {"nonce", required_argument, NULL, 'n'},
                                         {"pcrs", required_argument, NULL, 'p'},
                                         {"eventlog", no_argument, NULL, 'e'},
                                         {"rounds", required_argument, NULL, 'r'},
                                         {"timeout-ms", required_argument, NULL, 't'},
                                         {"out", required_argument, NULL, 'o'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    struct gq_args a;
    memset(&a, 0, sizeof(a));
    a.selection = "sha256:0,1,2,3,4,5,6,7,8,9,10";
    a.rounds = 1;
    a.timeout_ms = 10000;
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "s:n:p:er:t:o:h", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            if (a.nsockets == MAX_SOCKETS) {
                fprintf(stderr, "trustcloud lab guest-quote: at most %d sockets\n", MAX_SOCKETS);
                return TC_EXIT_USAGE;
            }
            a.sockets[a.nsockets++] = optarg;
            break;
        case 'n':
            a.nonce_hex = optarg;
            break;
        case 'p':
            a.selection = optarg;
            break;
        case 'e':
            a.eventlog = true;
            break;
        case 'r':
            a.rounds = strtol(optarg, &end, 10);
            if (*end || a.rounds < 1 || a.rounds > 1000)
                return usage(stderr), TC_EXIT_USAGE;
            break;
        case 't':
            a.timeout_ms = strtol(optarg, &end, 10);
            if (*end || a.timeout_ms < 1 || a.timeout_ms > 600000)
                return usage(stderr), TC_EXIT_USAGE;
            break;
        case 'o':
            a.out_dir = optarg;
            break;
        case 'h':
            usage(stdout);
            return TC_EXIT_OK;
        default:
            usage(stderr);
            return TC_EXIT_USAGE;
        }
    }
    if (a.nsockets == 0 || optind != argc) {
        usage(stderr);
        return TC_EXIT_USAGE;
    }
    struct tc_gc_request req;
    memset(&req, 0, sizeof(req));
    if (snprintf(req.selection_text, sizeof(req.selection_text), "%s", a.selection) >=
            (int)sizeof(req.selection_text) ||
        tc_pcrs_parse_selection(req.selection_text, &req.selection) != 0) {
        fprintf(stderr, "trustcloud lab guest-quote: bad PCR selection '%s'\n", a.selection);
        return TC_EXIT_USAGE;
    }
    if (a.nonce_hex != NULL && (tc_hex_decode(a.nonce_hex, strlen(a.nonce_hex), req.nonce,
                                              sizeof(req.nonce), &req.nonce_len) != 0 ||
                                req.nonce_len == 0)) {
        fprintf(stderr, "trustcloud lab guest-quote: --nonce: 1..64 bytes of hex\n");
        return TC_EXIT_USAGE;
    }
    req.want_eventlog = a.eventlog;
    int exit_code = TC_EXIT_OK;
    for (size_t s = 0; s < a.nsockets; s++) {
        struct tc_ima_replay_state ima_state;
        tc_ima_replay_init(&ima_state, NULL, 0, 0);
        req.ima_from = 0;
        char tag[24];
        snprintf(tag, sizeof(tag), "s%zu", s);
        for (long round = 1; round <= a.rounds; round++) {
            req.id = (uint64_t)round;
            if (a.nonce_hex == NULL) {
                req.nonce_len = 32;
                RAND_bytes(req.nonce, (int)req.nonce_len);
            }
            struct tc_gc_hello hello;
            struct tc_gc_answer ans;
            struct agent_guest_timing t;
            struct tc_reason why;
            struct tc_appraisal res;
            tc_reason_clear(&why);
            memset(&res, 0, sizeof(res));
            json_t *line = json_pack("{s:s,s:i}", "socket", a.sockets[s], "round", (int)round);
            int rc =
                agent_guest_quote(a.sockets[s], &req, (int)a.timeout_ms, &hello, &ans, &t, &why);
            if (rc == 0) {
                save(a.out_dir, tag, round, "attest", ans.attest, ans.attest_len);
                save(a.out_dir, tag, round, "sig", ans.sig, ans.sig_len);
                save(a.out_dir, tag, round, "akpub", hello.ak_pub, hello.ak_pub_len);
                save(a.out_dir, tag, round, "ima", ans.ima, ans.ima_len);
                save(a.out_dir, tag, round, "eventlog", ans.eventlog, ans.eventlog_len);
                if (a.out_dir != NULL) {
                    json_t *pj = tc_pcrs_to_json(&ans.pcrs);
                    char *pt = pj ? json_dumps(pj, JSON_COMPACT) : NULL;
                    if (pt)
                        save(a.out_dir, tag, round, "pcrs.json", (const uint8_t *)pt, strlen(pt));
                    free(pt);
                    json_decref(pj);
                }
                rc = appraise_answer(&hello, &req, &ans, &ima_state, &res);
                why = res.why;
                char nonce[2 * TC_GC_MAX_NONCE + 1];
                tc_hex_encode(req.nonce, req.nonce_len, nonce);
                json_object_set_new(line, "agent", json_string(hello.agent));
                json_object_set_new(line, "nonce", json_string(nonce));
                json_object_set_new(line, "connect_ms", json_real((double)t.connect_us / 1000));
                json_object_set_new(line, "answer_ms", json_real((double)t.answer_us / 1000));
                json_object_set_new(line, "answer_bytes", json_integer((json_int_t)t.answer_bytes));
                json_object_set_new(line, "ima",
                                    json_pack("{s:I,s:I,s:I}", "first", (json_int_t)ans.ima_first,
                                              "next", (json_int_t)ans.ima_next, "verified",
                                              (json_int_t)res.ima_entries));
                json_object_set_new(line, "eventlog_bytes",
                                    json_integer((json_int_t)ans.eventlog_len));
                json_object_set_new(line, "appraisal", tc_appraisal_to_json(&res));
                if (rc == 0)
                    req.ima_from = ans.ima_next;
            }
            json_object_set_new(line, "valid", json_boolean(rc == 0));
            if (rc) {
                json_object_set_new(line, "error", tc_reason_to_json(&why));
                exit_code = TC_EXIT_REJECTED;
            }
            char *text = json_dumps(line, JSON_COMPACT);
            if (text)
                printf("%s\n", text);
            fflush(stdout);
            free(text);
            json_decref(line);
            tc_gc_answer_release(&ans);
        }
    }
    return exit_code;
}
