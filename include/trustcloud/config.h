/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Typed configuration files (INI syntax, parsed by inih).
 *
 * A program describes its settings once, as a table of struct tc_config_setting
 * terminated by an entry whose name is NULL. Each entry says where the value
 * lives in the program's own settings struct (offsetof), its type, bounds,
 * default and help text. Loading a file applies every default first, then the
 * file; an unknown section/key, a key set twice, a value of the wrong type or
 * out of bounds is an error whose message names the file and line.
 *
 * Storage per type (the field at `offset` must have exactly this C type):
 *   TC_CFG_STRING, TC_CFG_PATH  char *      (malloc'd; free with tc_config_release)
 *   TC_CFG_INT                  long long   (min..max inclusive unless both are 0)
 *   TC_CFG_BOOL                 bool        (true/false, yes/no, on/off, 1/0)
 *   TC_CFG_DURATION             long long   milliseconds; written "500ms", "2s", "5m", "1h"
 *                                           or "0"; min..max (ms) as for TC_CFG_INT
 *   TC_CFG_ENUM                 int         index into `choices` (NULL-terminated)
 * A TC_CFG_PATH value that is relative is resolved against the directory of the
 * config file it came from (not against the working directory), so a config
 * file can name its neighbours. Empty string and path values are errors (use no
 * line at all to keep the default).
 */
#ifndef TRUSTCLOUD_CONFIG_H
#define TRUSTCLOUD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum tc_config_type {
    TC_CFG_STRING,
    TC_CFG_INT,
    TC_CFG_BOOL,
    TC_CFG_PATH,
    TC_CFG_DURATION,
    TC_CFG_ENUM,
};

struct tc_config_setting {
    const char *section; /* "" for keys before any [section] */
    const char *name;    /* NULL terminates the table */
    enum tc_config_type type;
    const char *def;            /* default in file syntax; NULL = NULL string / 0 / false */
    size_t offset;              /* offsetof(struct your_settings, field) */
    long long min, max;         /* TC_CFG_INT, TC_CFG_DURATION bounds; both 0 = unbounded */
    const char *const *choices; /* TC_CFG_ENUM: NULL-terminated list of accepted words */
    const char *help;           /* one line, printed by tc_config_print_defaults */
};

/* Largest config file accepted, and longest line (inih's compiled-in limit). */
#define TC_CONFIG_MAX_FILE (1024 * 1024)
#define TC_CONFIG_MAX_LINE 199

/*
 * Applies all defaults to cfg (freeing strings it held). Fails only on a table
 * error (a default that does not parse: TC_ERR_INVALID_ARG, message in err).
 */
int tc_config_defaults(const struct tc_config_setting *table, void *cfg, char *err, size_t errlen);

/*
 * Applies defaults, then the file at path (at most TC_CONFIG_MAX_FILE bytes).
 * Returns 0, TC_ERR_IO (unreadable), TC_ERR_TOO_LARGE, or TC_ERR_FORMAT with
 * "path:line: what" in err. On failure cfg holds defaults plus whatever was
 * applied before the error; call tc_config_release in every case.
 */
int tc_config_load(const char *path, const struct tc_config_setting *table, void *cfg, char *err,
                   size_t errlen);

/*
 * Same as tc_config_load for an in-memory text of len bytes (no NUL needed;
 * an embedded NUL is an error). origin names the source in messages; relative
 * paths are resolved against base_dir, or kept as they are when it is NULL.
 */
int tc_config_load_string(const char *text, size_t len, const char *origin, const char *base_dir,
                          const struct tc_config_setting *table, void *cfg, char *err,
                          size_t errlen);

/* Frees the strings the table's settings hold in cfg and sets them to NULL. */
void tc_config_release(const struct tc_config_setting *table, void *cfg);

/* Writes a commented INI file with every setting at its default and its help. */
void tc_config_print_defaults(const struct tc_config_setting *table, FILE *out);

/* Parses a duration ("250ms", "2s", "3m", "1h", "0") into milliseconds. */
int tc_config_parse_duration(const char *s, long long *ms);

#endif
