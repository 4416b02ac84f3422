#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# One crash never bricks a node: trustcloud-agent is killed (kill -9) at each named step of a VM
# creation (test hooks: TC_TEST_HOOKS=1 TC_TEST_PAUSE_AT=<step> make it stop itself there), then
# started again. Checked after every crash: the host TPM (a swtpm, no resource manager) holds no
# transient object or session once the agent is back, the interrupted VM's directory and swtpm are
# gone, creating the same id again succeeds (or, after the creation was complete, is refused as
# vm.exists and the VM works), and a new id succeeds. Without TC_TEST_HOOKS the hook is ignored.
# Also: leftovers of another process are flushed after the TPM operation they made fail.
. "$TC_SRC/tests/lib/common.sh"
. "$TC_SRC/tests/lib/agent_alone.sh"
agent_bin="$TC_BUILD/trustcloud-agent"
[ -x "$agent_bin" ] || tc_skip "trustcloud-agent not built"
for t in curl openssl python3 tpm2_getcap tpm2_createprimary swtpm; do
    command -v "$t" >/dev/null || tc_skip "$t not installed"
done
cd "$TC_TMP"

agent_alone_ca
issue coord coordinator
tc_start_swtpm h1
issue h1 node:h1 IP:127.0.0.1
agent_alone_state h1 h1 "$TC_TCTI_h1" h1.akpub
port=$(tc_free_port_pair)
cat >h1.conf <<EOF
[agent]
node_id = h1
tcti = $TC_TCTI_h1
state_dir = h1
listen_address = 127.0.0.1
listen_port = $port
coordinator_url = https://127.0.0.1:1
ca_file = ca.pem
eventlog_path = /nonexistent
ima_path = /nonexistent
log_level = info
max_vms = 8
EOF
url=https://127.0.0.1:$port
AGENT_PID=

# agent_start [ENV=VALUE...]: the agent in the background, its log in h1.log (older logs are
# appended to h1.log.old).
agent_start() {
    if [ -f h1.log ]; then cat h1.log >>h1.log.old && rm -f h1.log; fi
    env "$@" "$agent_bin" -c h1.conf >h1.log 2>&1 &
    AGENT_PID=$!
    TC_PIDS+=("$AGENT_PID")
    for _ in $(seq 200); do
        grep -q "listening on port" h1.log 2>/dev/null && return 0
        kill -0 "$AGENT_PID" 2>/dev/null || { cat h1.log; tc_fail "the agent exited"; }
        sleep 0.05
    done
    cat h1.log
    tc_fail "the agent did not start"
}
agent_stop() {
    kill "$AGENT_PID"
    wait "$AGENT_PID" || { tail -40 h1.log; tc_fail "the agent did not exit cleanly"; }
    sanitizer_check h1.log
}
sanitizer_check() {
    if grep -q -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$1"; then
        grep -A20 -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$1" | head -60
        tc_fail "sanitizer report in $1"
    fi
}
kill_vtpms() {
    local f
    for f in "$TC_TMP"/h1/vms/*/swtpm.pid; do
        # A swtpm that exits removes its pid file: it may be gone between the test and cat.
        [ -f "$f" ] && kill "$(cat "$f" 2>/dev/null)" 2>/dev/null || true
    done
    return 0
}
trap 'kill_vtpms; tc_cleanup' EXIT

# call METHOD PATH [BODY]: the HTTP status as the coordinator sees it; the answer in out.json.
call() {
    local data=()
    if [ -n "${3-}" ]; then
        printf '%s' "$3" >body.json
        data=(-H 'Content-Type: application/json' --data-binary @body.json)
    fi
    curl -sS --max-time 60 --cacert ca.pem --cert coord.pem --key coord.key -X "$1" -o out.json \
        -w '%{http_code}' "${data[@]}" "$url$2" 2>curl.err || echo "curl-failed"
}
expect() { # STATUS CHECK(or -) METHOD PATH [BODY]
    local want=$1 check=$2 st
    shift 2
    st=$(call "$@")
    [ "$st" = "$want" ] || { cat out.json curl.err 2>/dev/null; tail -20 h1.log; tc_fail "$1 $2: HTTP $st, expected $want"; }
    if [ "$check" != - ]; then
        python3 -c 'import json,sys; c=json.load(open("out.json")).get("check"); sys.exit(c!=sys.argv[1])' \
            "$check" || { cat out.json; tc_fail "$1 $2: check is not $check"; }
    fi
}
create_body() { # ID [MODE]
    printf '{"vm_id": "%s", "nonce": "%s", "mode": "%s"}' "$1" "$(openssl rand -hex 32)" "${2:-tcp}"
}
# Transient objects and loaded sessions in the host TPM, one handle per line.
host_leftovers() {
    tpm2_getcap -T "$TC_TCTI_h1" handles-transient
    tpm2_getcap -T "$TC_TCTI_h1" handles-loaded-session
}

# The hook needs TC_TEST_HOOKS=1: without it TC_TEST_PAUSE_AT changes nothing.
agent_start TC_TEST_PAUSE_AT=ca_loaded
expect 201 - POST /v1/vms "$(create_body vm0)"
grep -q "paused at\|TEST HOOKS" h1.log && tc_fail "the test hook acted without TC_TEST_HOOKS"
tc_pass "TC_TEST_PAUSE_AT alone is ignored: VM created"

# Another process fills the host TPM while the agent runs (tpm2_createprimary leaves its object
# loaded without a resource manager): the creation fails once, the agent flushes after the
# failure, the next creation succeeds.
for i in 1 2 3; do
    tpm2_createprimary -T "$TC_TCTI_h1" -C o -G ecc -c "left$i.ctx" >/dev/null
done
[ "$(host_leftovers | grep -c 0x || true)" = 3 ] || { host_leftovers; tc_fail "no leftovers made"; }
expect 500 agent.tpm POST /v1/vms "$(create_body vmx)"
grep -q "after a failed TPM operation: 3 leftover handle(s) flushed" h1.log ||
    { tail -20 h1.log; tc_fail "no flush after the failed creation"; }
[ "$(host_leftovers | grep -c 0x || true)" = 0 ] || { host_leftovers; tc_fail "leftovers stay"; }
expect 201 - POST /v1/vms "$(create_body vmx)"
expect 200 - DELETE /v1/vms/vmx
tc_pass "a TPM filled by another process: one failed creation, flushed after it, the next one created"

# Directories the agent does not know: one without a mode file (a failed creation's remains) is
# removed by the next creation of its id; one with a damaged mode file is left to an operator.
mkdir -p h1/vms/stray/state && echo junk >h1/vms/stray/state/x
expect 201 - POST /v1/vms "$(create_body stray)"
[ -e h1/vms/stray/state/x ] && tc_fail "the stray directory was not replaced"
expect 200 - DELETE /v1/vms/stray
mkdir -p h1/vms/damaged/state && echo kvm >h1/vms/damaged/mode
expect 409 vm.exists POST /v1/vms "$(create_body damaged)"
grep -q "an operator must remove it" out.json || { cat out.json; tc_fail "409 without what to do"; }
[ -f h1/vms/damaged/mode ] || tc_fail "a directory with a mode file was removed"
rm -rf h1/vms/damaged
agent_stop
tc_pass "unknown directories: a failed creation's remains replaced, a damaged VM refused with what to do"

# crash STEP MODE: kill -9 at STEP of the creation of crash-STEP, restart, check.
crash() {
    local step=$1 mode=$2 id=crash-$1 pid curl_pid vtpm_pid= left
    agent_start TC_TEST_HOOKS=1 "TC_TEST_PAUSE_AT=$step"
    grep -q "TEST HOOKS ENABLED" h1.log || tc_fail "$step: no warning that test hooks are on"
    create_body "$id" "$mode" >crash-body.json
    curl -sS --max-time 60 --cacert ca.pem --cert coord.pem --key coord.key -o crash-out.json \
        -H 'Content-Type: application/json' --data-binary @crash-body.json "$url/v1/vms" \
        >/dev/null 2>&1 &
    curl_pid=$!
    for _ in $(seq 600); do
        grep -q "test hook: paused at $step " h1.log && break
        kill -0 "$AGENT_PID" 2>/dev/null || { cat h1.log; tc_fail "$step: the agent exited"; }
        sleep 0.05
    done
    grep -q "test hook: paused at $step " h1.log || { tail -30 h1.log; tc_fail "$step: never paused there"; }
    pid=$AGENT_PID
    for _ in $(seq 100); do grep -q '^State:.*T' "/proc/$pid/status" && break; sleep 0.02; done
    grep -q '^State:.*T' "/proc/$pid/status" || tc_fail "$step: the agent is not stopped"
    kill -9 "$pid"
    wait "$pid" 2>/dev/null || true
    wait "$curl_pid" 2>/dev/null || true
    [ -f "h1/vms/$id/swtpm.pid" ] && vtpm_pid=$(cat "h1/vms/$id/swtpm.pid")
    left=$(host_leftovers | grep -c 0x || true)
    echo "$step ($mode): killed; $left handle(s) left in the host TPM${vtpm_pid:+, vTPM swtpm $vtpm_pid running}"
    [ "$step" != ca_loaded ] || [ "$left" -gt 0 ] || tc_fail "$step: the crash left nothing (test broken?)"

    agent_start
    if [ "$left" -gt 0 ]; then
        grep -q "flushed $left leftover handle(s) from the TPM" h1.log ||
            { grep -i flush h1.log; tc_fail "$step: no warning naming the $left flushed handle(s)"; }
    fi
    left=$(host_leftovers | grep -c 0x || true)
    [ "$left" = 0 ] || { host_leftovers; tc_fail "$step: the restarted agent left $left handle(s) loaded"; }
    if [ "$step" = committed ]; then
        # The creation was complete: the VM was adopted and works; the same id is refused.
        expect 409 vm.exists POST /v1/vms "$(create_body "$id" "$mode")"
        expect 200 - GET /v1/vms
        python3 -c 'import json,sys; v=json.load(open("out.json"))["vms"]
assert {"id": sys.argv[1], "running": True, "mode": sys.argv[2]} in v, v' "$id" "$mode"
    else
        [ -e "h1/vms/$id" ] && tc_fail "$step: the interrupted VM's directory is still there"
        if [ -n "$vtpm_pid" ]; then
            for _ in $(seq 100); do kill -0 "$vtpm_pid" 2>/dev/null || break; sleep 0.02; done
            kill -0 "$vtpm_pid" 2>/dev/null && tc_fail "$step: the interrupted VM's swtpm still runs"
        fi
        expect 201 - POST /v1/vms "$(create_body "$id" "$mode")"
    fi
    expect 201 - POST /v1/vms "$(create_body "new-$step" "$mode")"
    [ "$mode" = qemu ] || [ -s "h1/vms/new-$step/tcti" ] || tc_fail "$step: the new VM has no vTPM"
    left=$(host_leftovers | grep -c 0x || true)
    [ "$left" = 0 ] || { host_leftovers; tc_fail "$step: $left handle(s) loaded after the creations"; }
    expect 200 - DELETE "/v1/vms/$id"
    expect 200 - DELETE "/v1/vms/new-$step"
    agent_stop
    tc_pass "kill -9 at $step ($mode): the agent came back clean; same id and a new id created"
}

t0=$(date +%s)
for step in host_open ca_loaded ek_cert_issued vtpm_created sealed ak_created ak_persisted \
    certify_keys_loaded certified committed; do
    crash "$step" tcp
done
crash ek_cert_issued qemu
crash sealed qemu
echo "crash cycles: $(($(date +%s) - t0)) s"

# What stays: vm0 only, and the registry knows nothing else (a new VM still fits).
agent_start
expect 200 - GET /v1/vms
python3 -c 'import json; v=json.load(open("out.json"))["vms"]; assert [e["id"] for e in v] == ["vm0"], v'
[ "$(ls h1/vms)" = vm0 ] || tc_fail "vm_dir holds more than vm0: $(ls h1/vms)"
agent_stop
kill_vtpms
