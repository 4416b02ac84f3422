/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Levelled logging with a per-module tag. Each .c file defines LOGMODULE
 * (a string) before including this header. Never log a secret.
 * The level comes from TC_LOG_LEVEL (error, warn, info, debug; default warn).
 */
#ifndef TRUSTCLOUD_LOG_H
#define TRUSTCLOUD_LOG_H

enum tc_log_level { TC_LOG_ERROR = 0, TC_LOG_WARN, TC_LOG_INFO, TC_LOG_DEBUG };

void tc_log(enum tc_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void tc_log_set_level(enum tc_log_level level);
int tc_log_enabled(enum tc_log_level level);

#ifndef LOGMODULE
#define LOGMODULE "trustcloud"
#endif

#define LOG_ERROR(...) tc_log(TC_LOG_ERROR, LOGMODULE, __VA_ARGS__)
#define LOG_WARN(...) tc_log(TC_LOG_WARN, LOGMODULE, __VA_ARGS__)
#define LOG_INFO(...) tc_log(TC_LOG_INFO, LOGMODULE, __VA_ARGS__)
#define LOG_DEBUG(...) tc_log(TC_LOG_DEBUG, LOGMODULE, __VA_ARGS__)

#endif
