#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Runs every libFuzzer harness built in BUILD_DIR for SECONDS each, growing its corpus in
# fuzz/corpus/<name>/ (new inputs are merged into the corpus, minimised).
# Usage: scripts/fuzz.sh BUILD_DIR [SECONDS]
set -euo pipefail
build=${1:?build dir}
secs=${2:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
for bin in "$build"/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    name=${bin##*/fuzz_}
    corpus="$root/fuzz/corpus/$name"
    work=$(mktemp -d)
    echo "== $name: ${secs}s =="
    "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
        "$work" "$corpus" 2>&1 | grep -E '^(stat::number_of_executed_units|stat::new_units_added|==[0-9]+==ERROR|SUMMARY)' || true
    "$bin" -merge=1 "$corpus" "$work" >/dev/null 2>&1 || true
    rm -rf "$work"
done
