#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The vTPM benchmark in miniature: provisioned vTPMs are created, measured, run side by side and
# deleted, and afterwards no swtpm process of this run is left and no state directory remains;
# then a batch ("deep quote") round over 3 vTPMs and a host TPM, verified end to end.
. "$TC_SRC/tests/lib/common.sh"
command -v swtpm >/dev/null || tc_skip "swtpm not installed"
bench="$TC_BUILD/bench/vtpm"
[ -x "$bench" ] || tc_skip "bench/vtpm not built"

out=$(TMPDIR="$TC_TMP" "$bench" --runs 3 --concurrent 4 --no-swtpm-setup 2>"$TC_TMP/err") ||
    { cat "$TC_TMP/err" >&2; tc_fail "bench/vtpm failed"; }
echo "$out"
grep -q "tc_vtpm_create + ECC EK + cert (encrypted) *n=3 " <<<"$out" || tc_fail "no creation timing"
grep -q "concurrent target 4 *: 4 running (4 alive at the end)" <<<"$out" ||
    tc_fail "not all 4 vTPMs ran at once"
grep -q "memory per running vTPM" <<<"$out" || tc_fail "no memory figure"
grep -q "deleted 4 vTPMs in .* left running: 0" <<<"$out" || tc_fail "vTPMs left behind"
if pgrep -f "swtpm socket .*$TC_TMP" >/dev/null; then
    tc_fail "an swtpm process of this run is still running"
fi
if compgen -G "$TC_TMP/vtpm-bench.*" >/dev/null; then
    tc_fail "the benchmark left its directory behind"
fi

# Batch attestation with 3 vTPMs: every quote, proof and host quote verified, nothing left.
out=$(TMPDIR="$TC_TMP" "$bench" --batch 1,3 --rounds 1 --threads 2 2>"$TC_TMP/err") ||
    { cat "$TC_TMP/err" >&2; tc_fail "bench/vtpm --batch failed"; }
echo "$out"
grep -q "^batch    N=3 *host TPM quotes 1 " <<<"$out" || tc_fail "no batch round for N=3"
grep -q "^per-VM   N=3 *host TPM quotes 3 " <<<"$out" || tc_fail "no per-VM baseline for N=3"
grep -q "^batch: deleted 3 vTPMs and the host TPM; left running: 0" <<<"$out" ||
    tc_fail "batch vTPMs left behind"
if pgrep -f "swtpm socket .*$TC_TMP" >/dev/null; then
    tc_fail "an swtpm process of the batch run is still running"
fi
if compgen -G "$TC_TMP/vtpm-bench.*" >/dev/null; then
    tc_fail "the batch benchmark left its directory behind"
fi
tc_pass "vTPM benchmark smoke run: created, ran 4 at once, batch-attested 3, deleted, nothing left"
