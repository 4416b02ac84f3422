/* SPDX-License-Identifier: Apache-2.0 */
/*
 * trustcloud events [--since SEQ] [--follow]: the coordinator's stream of state changes
 * (GET /v1/events?since=SEQ&wait=SECONDS, a long poll). Following survives coordinator
 * restarts: the stream is resumed from the last sequence number seen, so nothing is skipped or
 * shown twice. With --json, one event per line (JSON lines) when following. The coordinator
 * answers each caller with its own events only (an operator every event, a tenant its VMs', a
 * node its own); "last" may then move past events the caller does not see, which is why the
 * next request starts from it.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "coord_client.h"
#include "trustcloud/error.h"

static const struct cli_cmd events_cmd = {
    "events", NULL,
    "[--since SEQ] [--node ID] [--follow [--count N] [--timeout SECONDS]] " COORD_CLIENT_HELP
    "  state changes, oldest first (an operator sees every node and VM, a tenant its own VMs); "
    "--follow keeps waiting for new ones (exit 1 when --timeout passes before --count events)"};

enum { OPT_SINCE = 0x2000, OPT_FOLLOW, OPT_COUNT, OPT_TIMEOUT, OPT_NODE, OPT_WAIT };

/* Long-poll length of one request while following. */
#define EVENTS_WAIT_S 20

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void print_event(const json_t *ev, bool json)
{
    if (json) {
        char *s = json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS);
        if (s)
            puts(s);
        free(s);
    } else {
        char t[32], r[1024];
        const json_t *seq = json_object_get(ev, "seq");
        const json_t *ts = json_object_get(ev, "ts");
        printf("#%-6lld %s  %-20s %s -> %s  %s\n",
               json_is_integer(seq) ? (long long)json_integer_value(seq) : -1LL,
               coord_client_time(json_is_integer(ts) ? (long long)json_integer_value(ts) : 0, t,
                                 sizeof(t)),
               coord_client_str(ev, "node_id", "?"), coord_client_str(ev, "old_state", "?"),
               coord_client_str(ev, "new_state", "?"),
               coord_client_reason(json_object_get(ev, "reason"), r, sizeof(r)));
    }
    fflush(stdout);
}

int cmd_events(int argc, char **argv)
{
    static const struct option opts[] = {
        COORD_CLIENT_OPTIONS,
        {"since", required_argument, NULL, OPT_SINCE},
        {"follow", no_argument, NULL, OPT_FOLLOW},
        {"count", required_argument, NULL, OPT_COUNT},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"node", required_argument, NULL, OPT_NODE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct coord_client c;
    long long since = 0, count = 0, seen = 0;
    double timeout = 0;
    bool follow = false;
    const char *node = NULL;
    json_t *resp = NULL;
    int opt, ret;
    coord_client_init(&c, "events");
    optind = 1;
    while ((opt = getopt_long(argc, argv, "fh", opts, NULL)) != -1) {
        if (coord_client_option(&c, opt, optarg))
            continue;
        char *end = NULL;
        switch (opt) {
        case OPT_SINCE:
            since = strtoll(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || since < 0)
                return cli_usage("", &events_cmd);
            break;
        case OPT_COUNT:
            count = strtoll(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || count < 1)
                return cli_usage("", &events_cmd);
            break;
        case OPT_TIMEOUT:
            timeout = strtod(optarg, &end);
            if (*optarg == '\0' || *end != '\0' || !(timeout > 0 && timeout <= 86400 * 365.0))
                return cli_usage("", &events_cmd);
            break;
        case OPT_FOLLOW:
        case 'f':
            follow = true;
            break;
        case OPT_NODE:
            node = optarg;
            break;
        case 'h':
            printf("usage: trustcloud %s %s\n", events_cmd.name, events_cmd.help);
            return TC_EXIT_OK;
        default:
            return cli_usage("", &events_cmd);
        }
    }
    if (optind != argc)
        return cli_usage("", &events_cmd);
    if ((ret = coord_client_finish(&c)) != 0)
        return ret;

    double deadline = timeout > 0 ? now_s() + timeout : 0;
    json_t *collected = follow ? NULL : json_array();
    unsigned failures = 0;
    for (;;) {
        char path[128];
        long wait = 0;
        if (follow) {
            wait = EVENTS_WAIT_S;
            if (deadline > 0) {
                double left = deadline - now_s();
                if (left <= 0) {
                    fprintf(stderr, "trustcloud events: %lld of %lld events before the timeout\n",
                            seen, count);
                    ret = count ? TC_EXIT_REJECTED : TC_EXIT_OK;
                    break;
                }
                if (left < wait)
                    wait = left < 1 ? 1 : (long)left;
            }
        }
        snprintf(path, sizeof(path), "/v1/events?since=%lld&wait=%ld", since, wait);
        json_decref(resp);
        resp = NULL;
        /* While following, a coordinator that went away is waited for, quietly. */
        c.quiet = follow && failures > 0;
        bool json_errors = c.json;
        c.json = c.json && !follow;
        ret = coord_client_call(&c, "GET", path, NULL, (wait + 10) * 1000, &resp, NULL);
        c.json = json_errors;
        /* ... but not a server that is not the coordinator: that is final. */
        if (ret == TC_EXIT_USAGE && follow && !c.refused) {
            failures++;
            usleep(failures < 5 ? 200 * 1000 : 1000 * 1000);
            continue;
        }
        if (ret)
            break;
        failures = 0;
        const json_t *events = json_object_get(resp, "events");
        if (!json_is_array(events)) {
            fprintf(stderr, "trustcloud events: the answer has no event list\n");
            ret = TC_EXIT_USAGE;
            break;
        }
        size_t i;
        const json_t *ev;
        long long max_seq = since;
        json_array_foreach(events, i, ev)
        {
            const json_t *seq = json_object_get(ev, "seq");
            if (json_is_integer(seq) && json_integer_value(seq) > max_seq)
                max_seq = (long long)json_integer_value(seq);
            if (node && strcmp(coord_client_str(ev, "node_id", ""), node) != 0)
                continue;
            if (count && seen >= count)
                continue;
            seen++;
            if (collected)
                json_array_append(collected, (json_t *)ev);
            else
                print_event(ev, c.json);
        }
        /* "last" is where the next request starts; never go backwards. */
        const json_t *last = json_object_get(resp, "last");
        if (json_is_integer(last) && json_integer_value(last) > max_seq)
            max_seq = (long long)json_integer_value(last);
        bool progressed = max_seq > since;
        since = max_seq;
        if (count && seen >= count) {
            ret = TC_EXIT_OK;
            break;
        }
        /* An answer without events may still move on (a tenant's, past others' events): only
         * one that does not is the end of the stream. */
        if (!follow && !progressed)
            break;
    }
    if (collected && ret == TC_EXIT_OK) {
        if (c.json) {
            json_t *o = json_pack("{s:O, s:I}", "events", collected, "last", (json_int_t)since);
            coord_client_print_json(o);
            json_decref(o);
        } else {
            size_t i;
            const json_t *ev;
            json_array_foreach(collected, i, ev) print_event(ev, false);
            if (json_array_size(collected) == 0)
                printf("(no events after #%lld)\n", since);
        }
    }
    json_decref(collected);
    json_decref(resp);
    return ret;
}
