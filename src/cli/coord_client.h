/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the operator commands (node, policy add|list|show|assign|update, events, subscriber)
 * share: the connection settings and one synchronous JSON call to the coordinator's API
 * (docs/protocol.md, "Operator API").
 *
 * Connection settings come from the command line (--coordinator URL --cert F --key F --ca F)
 * or, for any option not given, from TC_COORDINATOR, TC_CERT, TC_KEY, TC_CA. The certificate is
 * an operator certificate from `trustcloud ca issue --operator NAME`.
 *
 * Exit codes (cli.h): 0 success; 1 the coordinator answered with an error status (refused, not
 * found, conflict: its {"error", "check"} is printed); 2 usage, file, connection or TLS error.
 */
#ifndef TC_CLI_COORD_CLIENT_H
#define TC_CLI_COORD_CLIENT_H

#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Option values for getopt_long tables (above any short option character). */
enum {
    COORD_OPT_URL = 0x1000,
    COORD_OPT_CERT,
    COORD_OPT_KEY,
    COORD_OPT_CA,
    COORD_OPT_JSON,
};

/* Spread into a command's struct option table (before its terminator). */
#define COORD_CLIENT_OPTIONS                                                                       \
    {"coordinator", required_argument, NULL, COORD_OPT_URL},                                       \
        {"cert", required_argument, NULL, COORD_OPT_CERT},                                         \
        {"key", required_argument, NULL, COORD_OPT_KEY},                                           \
        {"ca", required_argument, NULL, COORD_OPT_CA},                                             \
    {                                                                                              \
        "json", no_argument, NULL, COORD_OPT_JSON                                                  \
    }

/* Help text of the common options, for usage lines. */
#define COORD_CLIENT_HELP "[--json] [--coordinator URL --cert F --key F --ca F]"

struct coord_client {
    const char *url; /* https://HOST:PORT, without a trailing slash once finished */
    const char *cert, *key, *ca;
    bool json;       /* --json: machine output on stdout */
    bool quiet;      /* print nothing about error answers (callers that retry) */
    bool refused;    /* set by a call: the server was not the coordinator (said on stderr) */
    const char *cmd; /* "node list": prefix of messages */
    char base[1024];
};

/* Clears c and sets its message prefix. */
void coord_client_init(struct coord_client *c, const char *cmd);

/* Takes one getopt result: returns true when opt was a common option (stored), else false. */
bool coord_client_option(struct coord_client *c, int opt, const char *arg);

/* Fills what the options did not give from the environment and checks that everything needed
 * is there. Returns 0 or TC_EXIT_USAGE (message printed). */
int coord_client_finish(struct coord_client *c);

/*
 * One request: method on base URL + path (path starts with '/', already escaped), body (a JSON
 * value, borrowed; NULL for none), the answer parsed into *resp (new reference; NULL when the
 * answer was empty). timeout_ms 0 = 30 s.
 * Returns TC_EXIT_OK for a 2xx answer, TC_EXIT_REJECTED for any other HTTP status (the error is
 * printed: as JSON on stdout with --json, as text on stderr otherwise; *resp still set), or
 * TC_EXIT_USAGE when no answer came (connection, TLS, timeout, unparsable body; printed).
 * The server must be the coordinator (coordinator EKU and CN, see pki.h): any other server of
 * the CA is refused after the handshake and before the request is sent; that is printed even
 * when quiet, sets c->refused and returns TC_EXIT_USAGE.
 */
int coord_client_call(struct coord_client *c, const char *method, const char *path,
                      const json_t *body, long timeout_ms, json_t **resp, long *http_code);

/* Appends s percent-encoded as one path segment (everything but [A-Za-z0-9._~-] is escaped) to
 * buf of cap bytes holding a NUL-terminated string. Returns 0 or TC_ERR_TOO_LARGE. */
int coord_client_path_escape(char *buf, size_t cap, const char *s);

/* prefix (e.g. "/v1/nodes/") + id as one escaped path segment + suffix into buf. When it does not
 * fit, prints "trustcloud CMD: WHAT too long" and returns TC_EXIT_USAGE; else 0. */
int coord_client_path(char *buf, size_t cap, const char *prefix, const char *id, const char *suffix,
                      const char *cmd, const char *what);

/* Prints v indented (sorted keys) to stdout with a newline. */
void coord_client_print_json(const json_t *v);
/* A warning on stderr when a list answer says the coordinator's store is failing. */
void coord_client_warn_store(const struct coord_client *c, const json_t *resp);

/* Milliseconds since the epoch as "YYYY-MM-DD HH:MM:SS" UTC into buf (or "-" for 0). */
const char *coord_client_time(long long ms, char *buf, size_t cap);

/* A string member of obj, or dflt when absent or not a string. */
const char *coord_client_str(const json_t *obj, const char *key, const char *dflt);

/* "check [entry N]: detail" of a reason object (or "-" when null/absent) into buf. */
const char *coord_client_reason(const json_t *reason, char *buf, size_t cap);

/* The value of an integer JSON value (times in ms, rounds, counts), or 0 for anything else. */
long long coord_client_int(const json_t *v);

/* Whether state is one of the comma-separated names in list ("trusted,untrusted"). */
bool coord_client_state_in(const char *state, const char *list);

/* Prints a refusal (an answer with a non-2xx status) as coord_client_call does when not quiet:
 * as JSON on stdout with --json (plus "http_status"), always as text on stderr. */
void coord_client_print_refusal(const struct coord_client *c, long code, const json_t *body);

/*
 * The `wait` commands: polls GET path (5 s per request, every 100 ms) until the "state" of the
 * answer is one of the comma-separated states (of its member `member` when that is an object,
 * e.g. {"node": {...}}; member NULL: of the answer itself), for at most timeout_s seconds.
 * A 404 ("not there yet", enrollment in progress) or no answer (coordinator restarting) means
 * keep polling; the polls print nothing. id names the object in the timeout message.
 * Returns TC_EXIT_OK with *resp the answer in a wanted state (new reference, printed by the
 * caller); TC_EXIT_REJECTED on timeout ("ID is STATE after T s, not STATES" on stderr,
 * *http_code 0, *resp NULL) or when the coordinator refused for another reason (*http_code its
 * status, *resp its answer or NULL, nothing printed: the caller decides whether to say why).
 */
int coord_client_wait(struct coord_client *c, const char *path, const char *id, const char *member,
                      const char *states, double timeout_s, json_t **resp, long *http_code);

#endif
