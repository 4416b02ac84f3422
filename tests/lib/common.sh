# SPDX-License-Identifier: Apache-2.0
# Shared helpers for integration and e2e tests: temporary directories, free loopback ports,
# swtpm instances that are always cleaned up. Source it: `. "$TC_SRC/tests/lib/common.sh"`.
set -euo pipefail

: "${TC_SRC:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${TC_BIN:=$TC_SRC/build/trustcloud}"
: "${TC_FIXTURES:=$TC_SRC/../shared/fixtures}"

TC_TMP=$(mktemp -d "${TMPDIR:-/tmp}/tc-test.XXXXXX")
TC_PIDS=()

tc_cleanup() {
    local p
    for p in "${TC_PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${TC_PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
        kill -9 "$p" 2>/dev/null || true
    done
    rm -rf "$TC_TMP"
}
trap tc_cleanup EXIT

tc_skip() { echo "SKIP: $*"; exit 77; }
tc_fail() { echo "FAIL: $*" >&2; exit 1; }
tc_pass() { echo "PASS: $*"; }

# Prints a free TCP port on 127.0.0.1 whose successor is free too (swtpm uses P and P+1).
tc_free_port_pair() {
    python3 - <<'PY'
import socket, random
for _ in range(200):
    p = random.randint(20000, 60000)
    ok = True
    for q in (p, p + 1):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", q))
        except OSError:
            ok = False
        finally:
            s.close()
    if ok:
        print(p)
        break
PY
}

# tc_start_swtpm NAME: starts a fresh TPM 2.0 swtpm with state in $TC_TMP/NAME, all four PCR banks
# active, already started up. Sets TC_TCTI_<NAME> to its TCTI string. Call it directly, not in
# $(...): a subshell would lose track of the process to clean up.
tc_start_swtpm() {
    local name=$1 dir="$TC_TMP/swtpm-$1" port
    command -v swtpm >/dev/null || tc_skip "swtpm not installed"
    mkdir -p "$dir"
    for _ in 1 2 3 4 5; do
        port=$(tc_free_port_pair)
        if swtpm socket --tpm2 --server "type=tcp,port=$port,bindaddr=127.0.0.1" \
            --ctrl "type=tcp,port=$((port + 1)),bindaddr=127.0.0.1" --tpmstate "dir=$dir" \
            --flags not-need-init,startup-clear --pid "file=$dir/pid" \
            --log "file=$dir/log" -d 2>"$dir/err"; then
            for _ in $(seq 100); do [ -s "$dir/pid" ] && break; sleep 0.02; done
            TC_PIDS+=("$(cat "$dir/pid")")
            printf -v "TC_TCTI_$name" '%s' "swtpm:host=127.0.0.1,port=$port"
            return 0
        fi
    done
    tc_fail "could not start swtpm"
}
