/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Small helpers shared by the benchmarks: a monotonic clock, a rate loop that
 * runs a function for a fixed wall time, and OpenSSL baselines measured in the
 * same process so results are printed as ratios, not absolute guesses.
 */
#ifndef TC_BENCH_H
#define TC_BENCH_H

#include <stddef.h>

double bench_now(void);
/* Calls fn(arg) repeatedly for about secs seconds; returns calls per second. fn returns 0 on
 * success; a failure aborts the benchmark with a message (a benchmark of a failing path is
 * meaningless). */
double bench_rate(const char *what, double secs, int (*fn)(void *), void *arg);

/* Baselines: raw OpenSSL operations per second on one core. */
double bench_baseline_ecdsa_p256_verify(double secs);
double bench_baseline_rsa2048_verify(double secs);
/* Bytes per second of SHA-256 over chunk-sized buffers. */
double bench_baseline_sha256(double secs, size_t chunk);

#endif
