#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The vTPM benchmark in miniature: provisioned vTPMs are created, measured, run side by side and
# deleted, and afterwards no swtpm process of this run is left and no state directory remains.
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
tc_pass "vTPM benchmark smoke run: created, ran 4 at once, deleted, nothing left"
