#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Runs the benchmarks of a build directory. Usage: bench/run.sh BUILD_DIR [SECONDS]
set -euo pipefail
build=${1:-build}
secs=${2:-2}
root=$(cd "$(dirname "$0")/.." && pwd)
fixtures=${TC_FIXTURES:-$root/../shared/fixtures}
"$build/bench/verify_bench" "$secs" "$fixtures"
