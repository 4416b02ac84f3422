#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Runs the benchmarks of a build directory: the evidence core (verify_bench), the coordinator
# under load (load, a short sweep) and detection latency (detect.sh, needs swtpm).
# Usage: bench/run.sh BUILD_DIR [SECONDS]
#   LOAD_NODES=100,1000,5000,10000 LOAD_SECONDS=20 DETECT_REPEATS=10 override the defaults;
#   VTPM_CONCURRENT=100,1000 runs the large vTPM concurrency test (default 20);
#   VTPM_BATCH=1,10,100,1000 the batch attestation sizes (default 1,10,100);
#   VM_ROUND=10,100 the VM counts of the real-platform VM benchmark (default 10,50).
set -euo pipefail
build=${1:-build}
secs=${2:-2}
root=$(cd "$(dirname "$0")/.." && pwd)
fixtures=${TC_FIXTURES:-$root/../shared/fixtures}
echo "== verify_bench =="
"$build/bench/verify_bench" "$secs" "$fixtures"
echo
echo "== load =="
"$build/bench/load" --coordinator "$build/trustcloud-coordinator" \
    --nodes "${LOAD_NODES:-100,1000,2000}" --seconds "${LOAD_SECONDS:-10}" --baseline-seconds "$secs"
echo
echo "== detect =="
rc=0
TC_FIXTURES=$fixtures bash "$root/bench/detect.sh" "$build" "${DETECT_REPEATS:-10}" || rc=$?
if [ "$rc" = 77 ]; then
    echo "detect: skipped (swtpm or a tool it needs is not installed)"
elif [ "$rc" != 0 ]; then
    exit "$rc"
fi
echo
echo "== vtpm =="
"$build/bench/vtpm" --runs "${VTPM_RUNS:-20}" --concurrent "${VTPM_CONCURRENT:-20}"
echo
"$build/bench/vtpm" --batch "${VTPM_BATCH:-1,10,100}"
echo
echo "== vm_round =="
TC_FIXTURES=$fixtures bash "$root/bench/vm_round.sh" "$build" "${VM_ROUND:-10,50}"
