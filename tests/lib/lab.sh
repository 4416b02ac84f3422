# SPDX-License-Identifier: Apache-2.0
# The node simulator: a coordinator on SQLite and N nodes on one machine, each node a real
# trustcloud-agent whose "hardware" TPM is its own swtpm, provisioned like a shipped TPM (EK +
# EK certificate from a private manufacturer CA the coordinator trusts), that booted with a real
# UEFI event log (replayed into its PCRs by `trustcloud lab boot`) and runs a workload IMA
# measures into PCR 10 (`trustcloud lab ima-start` / `lab measure`). Every process listens on
# 127.0.0.1 (free ports), lives in a temporary directory and is stopped on exit, whatever happens.
#
# Source it after setting nothing (tests get TC_BIN, TC_BUILD, TC_FIXTURES, TC_SRC from CTest):
#   . "$TC_SRC/tests/lib/lab.sh"
#   lab_coordinator_start [KEY=VALUE...]    coordinator.conf overrides, e.g. interval=500ms;
#                                          exports TC_COORDINATOR TC_CERT TC_KEY TC_CA
#   lab_coordinator_stop | lab_coordinator_kill9 | lab_coordinator_restart
#   lab_node_start NAME [GROUP]            lab_node_prepare + lab_node_run
#   lab_node_prepare NAME [GROUP]          provision the TPM, boot, start IMA, write agent.conf
#   lab_node_run NAME                      start the agent (it enrolls by itself)
#   lab_node_wait NAME STATE[,STATE] [SECONDS]   via `trustcloud node wait`
#   lab_node_grow NAME                     one more measurement the runtime policy allows
#   lab_node_tamper NAME [PATH]            a measurement outside the policy (really extended)
#   lab_node_stop NAME | lab_node_kill NAME | lab_node_restart NAME | lab_node_pause NAME |
#   lab_node_resume NAME                   the agent process (SIGTERM, SIGKILL, again, STOP, CONT)
#   lab_policies_from NAME [GROUP]         runtime policy from NAME's known-good IMA list and the
#                                          measured-boot policy from the boot log, added and
#                                          assigned to GROUP (default "default")
#   lab_webhook_start                      receiver; sets LAB_WEBHOOK_URL, LAB_WEBHOOK_LOG (JSON
#                                          lines: {"t", "path", "headers", "body"})
#   lab_webhook_wait N [SECONDS]           until N deliveries arrived
# VMs (the vTPM comes from the node's agent: `trustcloud vm create`, or POST /v1/vms):
#   lab_vm_dir NODE VM                     the VM's directory on its host (agent vm_dir/VM)
#   lab_vm_tcti NODE VM                    the TCTI of its running vTPM (from the agent's files)
#   lab_vm_guest_start NODE VM             boot the simulated guest on the vTPM: UEFI log
#                                          LAB_GUEST_BOOTLOG (default the node's; "none": no log)
#                                          replayed, guest_ima started, the guest workload measured
#   lab_vm_grow NODE VM                    one more guest measurement of the guest workload
#   lab_vm_tamper NODE VM [PATH]           a guest measurement outside any policy (really extended)
# Per node: LAB_DIR/NAME/{agent.conf,agent.log,ima.log,state/}, LAB_TCTI_NAME.
. "$TC_SRC/tests/lib/common.sh"
. "$TC_SRC/tests/lib/swtpm_setup.sh"

: "${TC_BUILD:=$(dirname "$TC_BIN")}"
LAB_DIR=$TC_TMP/lab
LAB_BOOTLOG=${LAB_BOOTLOG:-$TC_FIXTURES/eventlog/event-gce-ubuntu-2104-log.bin}
LAB_COORD_BIN=$TC_BUILD/trustcloud-coordinator
LAB_AGENT_BIN=$TC_BUILD/trustcloud-agent
LAB_COORD_PID=
LAB_WEBHOOK_PID=
LAB_NODES=()
declare -A LAB_AGENT_PID=()
# The known-good workload every node runs (path:content); the runtime policy allows exactly it.
LAB_WORKLOAD=(/usr/bin/bash /usr/bin/ls /usr/lib/systemd/systemd /usr/sbin/sshd /etc/ssh/sshd_config)
mkdir -p "$LAB_DIR"

# Everything the lab started, each process group first (daemons run in their own), then the
# helpers' cleanup (swtpm processes, the temporary directory).
lab_cleanup() {
    local rc=$? p
    set +e
    for p in "$LAB_WEBHOOK_PID" "$LAB_COORD_PID" "${LAB_AGENT_PID[@]}"; do
        [ -n "$p" ] || continue
        kill -CONT -- "-$p" 2>/dev/null
        kill -TERM -- "-$p" 2>/dev/null
    done
    for p in "$LAB_WEBHOOK_PID" "$LAB_COORD_PID" "${LAB_AGENT_PID[@]}"; do
        [ -n "$p" ] || continue
        for _ in $(seq 40); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
        kill -KILL -- "-$p" 2>/dev/null
    done
    # vTPMs outlive their agent on purpose (guests keep their TPM across agent restarts): stop
    # every one the lab's agents started, by the pid files in their VM directories.
    local f vp
    while IFS= read -r f; do
        vp=$(cat "$f" 2>/dev/null)
        case $vp in '' | *[!0-9]*) continue ;; esac
        [ "$(readlink "/proc/$vp/exe" 2>/dev/null | sed 's|.*/||')" = swtpm ] || continue
        kill -TERM "$vp" 2>/dev/null
        for _ in $(seq 20); do kill -0 "$vp" 2>/dev/null || break; sleep 0.05; done
        kill -KILL "$vp" 2>/dev/null
    done < <(find "$LAB_DIR" -name swtpm.pid 2>/dev/null)
    # A sanitizer build reports memory errors and leaks of the daemons in their logs (they exit
    # on SIGTERM above): any such report fails the test.
    if grep -l -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$LAB_DIR"/*/*.log \
        "$LAB_DIR"/*.log 2>/dev/null >"$TC_TMP/sanitizer"; then
        echo "FAIL: sanitizer reports in: $(tr '\n' ' ' <"$TC_TMP/sanitizer")" >&2
        grep -h -A12 -E "ERROR: (Address|Leak)Sanitizer|runtime error:" $(cat "$TC_TMP/sanitizer") |
            head -60 >&2
        [ "$rc" != 0 ] || rc=1
    fi
    # LAB_KEEP=DIR keeps the lab's files (logs, configs, databases) for a post-mortem.
    [ -z "${LAB_KEEP:-}" ] || { rm -rf "$LAB_KEEP"; cp -a "$LAB_DIR" "$LAB_KEEP"; }
    tc_cleanup
    exit "$rc"
}
trap lab_cleanup EXIT
trap 'exit 130' INT TERM

# If this shell is killed outright (SIGKILL, e.g. a test-runner timeout), no trap runs: a
# watchdog in its own session then stops whatever the lab started and removes the files. After
# a normal exit the cleanup above has removed the pid file and the watchdog just ends.
LAB_PIDFILE=$TC_TMP/lab.pids
: >"$LAB_PIDFILE"
setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done
[ -f "$2" ] || exit 0
while read -r p; do kill -KILL -- "-$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; done <"$2"
rm -rf "$3"' lab-watchdog "$$" "$LAB_PIDFILE" "$TC_TMP" >/dev/null 2>&1 </dev/null &

lab_need() {
    command -v swtpm >/dev/null || tc_skip "swtpm not installed"
    command -v swtpm_setup >/dev/null || tc_skip "swtpm_setup not installed"
    [ -x "$LAB_COORD_BIN" ] || tc_fail "trustcloud-coordinator not built ($LAB_COORD_BIN)"
    [ -x "$LAB_AGENT_BIN" ] || tc_fail "trustcloud-agent not built ($LAB_AGENT_BIN)"
    [ -f "$LAB_BOOTLOG" ] || tc_fail "boot log fixture not found ($LAB_BOOTLOG)"
}

# Runs "$@" in the background as the leader of a new process group (so cleanup reaches anything
# it spawns); the pid is in LAB_LAST_PID. Output goes to the file named by LAB_LOG.
lab_spawn() {
    setsid "$@" >>"$LAB_LOG" 2>&1 </dev/null &
    LAB_LAST_PID=$!
    TC_PIDS+=("$LAB_LAST_PID")
    echo "$LAB_LAST_PID" >>"$LAB_PIDFILE"
}

# lab_free_port [N]: a free loopback port P (with P+1..P+N-1 free too), below the kernel's
# ephemeral range so that outgoing connections of other programs do not take it meanwhile.
lab_free_port() {
    python3 - "${1:-1}" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
lo, hi = 10000, 32000
try:
    lo_e = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    hi = min(hi, lo_e - n - 1)
except (OSError, ValueError):
    pass
for _ in range(500):
    p = random.randint(lo, hi)
    ok = True
    for q in range(p, p + n):
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

# ---- manufacturer CA and TPMs ------------------------------------------------------------

# lab_mfr_ca [DIR]: the private manufacturer CA (swtpm_localca state) EK certificates come from.
# The first node creates it; the coordinator trusts LAB_DIR/mfr-bundle.pem.
lab_tpm_provision() { # NAME [CA_DIR]
    local name=$1 ca=${2:-$LAB_DIR/mfr-ca} state=$LAB_DIR/$1/tpm
    local tool
    tool=$(command -v swtpm_localca) || tc_skip "swtpm_localca not installed"
    mkdir -p "$state" "$ca"
    cat >"$ca/swtpm_setup.conf" <<CONF
create_certs_tool = $tool
create_certs_tool_config = $ca/swtpm-localca.conf
create_certs_tool_options = $ca/swtpm-localca.options
CONF
    cat >"$ca/swtpm-localca.conf" <<CONF
statedir = $ca
signingkey = $ca/signkey.pem
issuercert = $ca/issuercert.pem
certserial = $ca/certserial
CONF
    printf -- '--platform-manufacturer trustcloud-lab\n--platform-version 1.0\n--platform-model sim\n' \
        >"$ca/swtpm-localca.options"
    # swtpm_localca takes a lock in its state directory; nodes are provisioned one at a time.
    swtpm_setup --tpm2 --tpmstate "$state" --config "$ca/swtpm_setup.conf" --createek \
        --create-ek-cert --overwrite >"$LAB_DIR/$name/swtpm_setup.log" 2>&1 ||
        { cat "$LAB_DIR/$name/swtpm_setup.log" >&2; tc_fail "swtpm_setup failed for $name"; }
    cat "$ca/issuercert.pem" "$ca/swtpm-localca-rootca-cert.pem" >"$ca/bundle.pem"
}

# Starts the node's swtpm on its provisioned state; sets LAB_TCTI_<NAME> (NAME with - and . as _).
lab_tpm_start() { # NAME
    local name=$1 dir=$LAB_DIR/$1/tpm port var
    var=LAB_TCTI_${name//[^A-Za-z0-9_]/_}
    for _ in 1 2 3 4 5; do
        port=$(lab_free_port 2)
        rm -f "$dir/pid"
        if swtpm socket --tpm2 --server "type=tcp,port=$port,bindaddr=127.0.0.1" \
            --ctrl "type=tcp,port=$((port + 1)),bindaddr=127.0.0.1" --tpmstate "dir=$dir" \
            --flags not-need-init,startup-clear --pid "file=$dir/pid" \
            --log "file=$dir/swtpm.log" -d 2>"$dir/err"; then
            for _ in $(seq 100); do [ -s "$dir/pid" ] && break; sleep 0.02; done
            TC_PIDS+=("$(cat "$dir/pid")")
            echo "$(cat "$dir/pid")" >>"$LAB_PIDFILE"
            printf -v "$var" '%s' "swtpm:host=127.0.0.1,port=$port"
            return 0
        fi
    done
    tc_fail "could not start swtpm for $name"
}

lab_tcti() { # NAME: prints the node's TCTI
    local var=LAB_TCTI_${1//[^A-Za-z0-9_]/_}
    printf '%s' "${!var}"
}

# ---- coordinator -----------------------------------------------------------------------------

# lab_coordinator_start [KEY=VALUE...]: CA, operator certificate, config, start, wait until it
# listens. Later calls (restarts) reuse the database, the CA and the port.
lab_coordinator_start() {
    lab_need
    local d=$LAB_DIR/coordinator kv port
    mkdir -p "$d"
    if [ ! -f "$d/ca/ca.pem" ]; then
        "$TC_BIN" ca init --dir "$d/ca" >/dev/null
        "$TC_BIN" ca issue --dir "$d/ca" --operator lab --out-cert "$d/operator.pem" \
            --out-key "$d/operator.key" >/dev/null
        [ -f "$LAB_DIR/mfr-ca/bundle.pem" ] || lab_mfr_ca_init
        {
            echo "[coordinator]"
            echo "listen = 127.0.0.1"
            echo "port = 0"
            echo "db = sqlite:$d/coordinator.db"
            echo "ca_dir = ca"
            echo "ek_ca_bundle = $LAB_DIR/mfr-ca/bundle.pem"
            echo "interval = ${LAB_INTERVAL:-1s}"
            echo "unreachable_after = 2"
            echo "request_timeout = 2s"
            echo "webhook_allow_http = true"
            echo "webhook_timeout = 2s"
            echo "log_level = ${LAB_COORD_LOG_LEVEL:-info}"
            for kv in "$@"; do
                echo "${kv%%=*} = ${kv#*=}"
            done
        } | python3 -c '
import sys
# later KEY lines override earlier ones (the config loader refuses a key set twice)
lines, seen = sys.stdin.read().splitlines(), {}
for l in lines:
    if "=" in l: seen[l.split("=")[0].strip()] = l
out = []
for l in lines:
    if "=" not in l: out.append(l)
    elif seen.get(l.split("=")[0].strip()) is l: out.append(l)
print("\n".join(out))' >"$d/coordinator.conf"
    fi
    LAB_LOG=$d/coordinator.log
    echo "--- start $(date +%T.%N)" >>"$LAB_LOG"
    local before
    before=$(grep -c "trustcloud-coordinator: listening on" "$LAB_LOG" || true)
    lab_spawn "$LAB_COORD_BIN" -c "$d/coordinator.conf"
    LAB_COORD_PID=$LAB_LAST_PID
    for _ in $(seq 200); do
        [ "$(grep -c "trustcloud-coordinator: listening on" "$LAB_LOG" || true)" -gt "$before" ] && break
        kill -0 "$LAB_COORD_PID" 2>/dev/null || { tail -20 "$LAB_LOG" >&2; tc_fail "coordinator exited"; }
        sleep 0.05
    done
    [ "$(grep -c "trustcloud-coordinator: listening on" "$LAB_LOG" || true)" -gt "$before" ] ||
        { tail -20 "$LAB_LOG" >&2; tc_fail "coordinator did not start"; }
    port=$(grep "trustcloud-coordinator: listening on" "$LAB_LOG" | tail -1 | sed 's/.*://')
    # A restart must come back at the same address (the CLI and agents know it).
    sed -i "s/^port = .*/port = $port/" "$d/coordinator.conf"
    export TC_COORDINATOR=https://127.0.0.1:$port
    export TC_CA=$d/ca/ca.pem TC_CERT=$d/operator.pem TC_KEY=$d/operator.key
    LAB_COORD_URL=$TC_COORDINATOR
}

lab_mfr_ca_init() {
    # A throwaway TPM state creates the manufacturer CA (swtpm_localca makes it on first use).
    mkdir -p "$LAB_DIR/.mfr-init"
    lab_tpm_provision .mfr-init
}

lab_coordinator_stop() {
    [ -n "$LAB_COORD_PID" ] || return 0
    kill -TERM "$LAB_COORD_PID" 2>/dev/null || true
    wait "$LAB_COORD_PID" 2>/dev/null || true
    LAB_COORD_PID=
}

lab_coordinator_kill9() {
    [ -n "$LAB_COORD_PID" ] || return 0
    kill -KILL -- "-$LAB_COORD_PID" 2>/dev/null || true
    wait "$LAB_COORD_PID" 2>/dev/null || true
    LAB_COORD_PID=
}

lab_coordinator_restart() {
    lab_coordinator_stop
    lab_coordinator_start
}

# ---- nodes -------------------------------------------------------------------------------------

# lab_node_start NAME [GROUP]: a fresh TPM with an EK certificate from the lab's manufacturer CA
# (LAB_MFR_CA=DIR for another one), boot log replayed, IMA list with the known-good workload,
# then the agent (which enrolls by itself).
lab_node_start() {
    lab_node_prepare "$@"
    lab_node_run "$1"
}

lab_node_prepare() {
    lab_need
    local name=$1 group=${2:-default} d=$LAB_DIR/$1 f tcti
    mkdir -p "$d/state"
    chmod 700 "$d/state"
    lab_tpm_provision "$name" "${LAB_MFR_CA:-$LAB_DIR/mfr-ca}"
    lab_tpm_start "$name"
    tcti=$(lab_tcti "$name")
    cp "$LAB_BOOTLOG" "$d/eventlog.bin"
    "$TC_BIN" lab boot --tcti "$tcti" --eventlog "$d/eventlog.bin" >/dev/null
    "$TC_BIN" lab ima-start --tcti "$tcti" --log "$d/ima.log"
    for f in "${LAB_WORKLOAD[@]}"; do
        "$TC_BIN" lab measure --tcti "$tcti" --log "$d/ima.log" --path "$f" --content "contents of $f"
    done
    cat >"$d/agent.conf" <<EOF
[agent]
node_id = $name
tcti = $tcti
state_dir = state
listen_address = 127.0.0.1
listen_port = @PORT@
coordinator_url = ${LAB_COORD_URL:?start the coordinator first}
ca_file = $LAB_DIR/coordinator/ca/ca.pem
eventlog_path = eventlog.bin
ima_path = ima.log
group = $group
log_level = ${LAB_AGENT_LOG_LEVEL:-info}
enroll_backoff_max = 1s
# ek_alg is left at auto: swtpm_setup certifies an RSA-2048 EK (and a P-384 one, which the
# agent does not use), so the agent picks the certified RSA EK by itself.
EOF
    LAB_NODES+=("$name")
}

# Starts (again) the agent of NAME with its existing state: same identity, no re-enrollment.
lab_node_run() {
    local name=$1 d=$LAB_DIR/$1
    # The port is drawn at the first start (the agent enrolls with it, then keeps it).
    grep -q '@PORT@' "$d/agent.conf" && sed -i "s/@PORT@/$(lab_free_port)/" "$d/agent.conf"
    LAB_LOG=$d/agent.log
    echo "--- start $(date +%T.%N)" >>"$LAB_LOG"
    lab_spawn "$LAB_AGENT_BIN" -c "$d/agent.conf"
    LAB_AGENT_PID[$name]=$LAB_LAST_PID
}
lab_node_restart() { lab_node_stop "$1"; lab_node_run "$1"; }

lab_node_stop() {
    local p=${LAB_AGENT_PID[$1]:-}
    [ -n "$p" ] || return 0
    kill -CONT "$p" 2>/dev/null || true
    kill -TERM "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    LAB_AGENT_PID[$1]=
}
lab_node_kill() {
    local p=${LAB_AGENT_PID[$1]:-}
    [ -n "$p" ] || return 0
    kill -KILL -- "-$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    LAB_AGENT_PID[$1]=
}
# A hung node: the process exists and its socket accepts, but nothing answers.
lab_node_pause() { kill -STOP "${LAB_AGENT_PID[$1]}"; }
lab_node_resume() { kill -CONT "${LAB_AGENT_PID[$1]}"; }

lab_node_wait() { # NAME STATES [SECONDS]
    "$TC_BIN" node wait "$1" --state "$2" --timeout "${3:-30}" >/dev/null
}

# One more measurement of the known-good workload (a program run again after an update to the
# same content: same digest, allowed).
lab_node_grow() {
    local name=$1 n f
    n=$(wc -l <"$LAB_DIR/$name/ima.log")
    f=${LAB_WORKLOAD[$((n % ${#LAB_WORKLOAD[@]}))]}
    "$TC_BIN" lab measure --tcti "$(lab_tcti "$name")" --log "$LAB_DIR/$name/ima.log" \
        --path "$f" --content "contents of $f"
}

# Something outside the runtime policy runs: appended and really extended into PCR 10, so the
# evidence is consistent and only the policy can catch it.
lab_node_tamper() {
    local name=$1 path=${2:-/tmp/.x/cryptominer}
    "$TC_BIN" lab measure --tcti "$(lab_tcti "$name")" --log "$LAB_DIR/$name/ima.log" \
        --path "$path" --content "not in any policy: $RANDOM"
}

# lab_policies_from NAME [GROUP]: the runtime policy from NAME's known-good IMA list and the
# measured-boot policy from the boot log, stored on the coordinator and assigned to GROUP.
lab_policies_from() {
    local name=$1 group=${2:-default} d=$LAB_DIR/$1
    "$TC_BIN" policy create runtime --from-ima-log "$d/ima.log" -o "$LAB_DIR/runtime-policy.json"
    "$TC_BIN" policy create measured-boot --from-eventlog "$d/eventlog.bin" \
        -o "$LAB_DIR/mb-policy.json" >/dev/null
    "$TC_BIN" policy add --name lab-runtime --kind runtime --file "$LAB_DIR/runtime-policy.json" >/dev/null
    "$TC_BIN" policy add --name lab-boot --kind measured-boot --file "$LAB_DIR/mb-policy.json" >/dev/null
    "$TC_BIN" policy assign lab-runtime --group "$group" >/dev/null
    "$TC_BIN" policy assign lab-boot --group "$group" >/dev/null
}

# ---- webhook receiver --------------------------------------------------------------------------

lab_webhook_start() {
    LAB_WEBHOOK_LOG=$LAB_DIR/webhook.jsonl
    : >"$LAB_WEBHOOK_LOG"
    LAB_LOG=$LAB_DIR/webhook.out
    lab_spawn python3 -u "$TC_SRC/tests/lib/webhook_receiver.py" "$LAB_WEBHOOK_LOG" \
        "${LAB_WEBHOOK_STATUS:-200}"
    LAB_WEBHOOK_PID=$LAB_LAST_PID
    for _ in $(seq 100); do
        grep -q '^port ' "$LAB_LOG" 2>/dev/null && break
        sleep 0.05
    done
    LAB_WEBHOOK_URL=http://127.0.0.1:$(sed -n 's/^port //p' "$LAB_LOG" | tail -1)/hook
    [ "$LAB_WEBHOOK_URL" != "http://127.0.0.1:/hook" ] || tc_fail "webhook receiver did not start"
}

lab_webhook_wait() { # N [SECONDS]: until N deliveries were received
    local n=$1 t=${2:-10} i
    for i in $(seq $((t * 10))); do
        [ "$(wc -l <"$LAB_WEBHOOK_LOG")" -ge "$n" ] && return 0
        sleep 0.1
    done
    return 1
}

# ---- small helpers for tests ------------------------------------------------------------------

# lab_json FILE|- EXPR: prints a Python expression over the parsed JSON (bound to j).
lab_json() {
    python3 -c 'import json,sys
j = json.load(sys.stdin if sys.argv[1] == "-" else open(sys.argv[1]))
v = eval(sys.argv[2])
print(json.dumps(v) if isinstance(v, (dict, list)) else v)' "$@"
}

# lab_node_field NAME EXPR: e.g. lab_node_field n1 'j["state"]'
lab_node_field() {
    "$TC_BIN" node show --json "$1" | lab_json - "$2"
}

# ---- VMs: simulated guests on the agents' vTPMs ---------------------------------------------
# A VM's vTPM is created and run by its node's agent (docs/protocol.md, "Virtual machines"); the
# lab plays the guest: it extends the guest's boot log and IMA measurements into that vTPM and
# writes the guest logs where the agent reads them (<vm dir>/guest_ima, guest_eventlog).

# The known-good workload every guest runs (path:content as for the nodes' LAB_WORKLOAD).
LAB_GUEST_WORKLOAD=(/usr/bin/bash /usr/sbin/nginx /etc/nginx/nginx.conf /usr/bin/python3)

lab_vm_dir() { # NODE VM
    local node=$1 vm=$2 conf=$LAB_DIR/$1/agent.conf dir
    dir=$(sed -n 's/^vm_dir *= *//p' "$conf" 2>/dev/null | tail -1)
    # Relative paths in agent.conf are relative to its directory (the default: state_dir/vms).
    [ -n "$dir" ] || dir=$(sed -n 's/^state_dir *= *//p' "$conf" | tail -1)/vms
    case $dir in /*) ;; *) dir=$LAB_DIR/$node/$dir ;; esac
    printf '%s' "$dir/$vm"
}

lab_vm_tcti() { # NODE VM
    local f
    f=$(lab_vm_dir "$1" "$2")/tcti
    [ -s "$f" ] || tc_fail "VM $2 on $1 has no running tcp-mode vTPM ($f)"
    tr -d '\n' <"$f"
}

lab_vm_guest_start() { # NODE VM
    local node=$1 vm=$2 d tcti f boot=${LAB_GUEST_BOOTLOG:-$LAB_BOOTLOG}
    d=$(lab_vm_dir "$node" "$vm")
    tcti=$(lab_vm_tcti "$node" "$vm")
    if [ "$boot" = none ]; then
        "$TC_BIN" lab guest-boot --tcti "$tcti" --dir "$d" >/dev/null
    else
        "$TC_BIN" lab guest-boot --tcti "$tcti" --eventlog "$boot" --dir "$d" >/dev/null
    fi
    for f in "${LAB_GUEST_WORKLOAD[@]}"; do
        "$TC_BIN" lab guest-measure --tcti "$tcti" --dir "$d" "$f"
    done
}

lab_vm_grow() { # NODE VM
    local d n f
    d=$(lab_vm_dir "$1" "$2")
    n=$(wc -l <"$d/guest_ima")
    f=${LAB_GUEST_WORKLOAD[$((n % ${#LAB_GUEST_WORKLOAD[@]}))]}
    "$TC_BIN" lab guest-measure --tcti "$(lab_vm_tcti "$1" "$2")" --dir "$d" "$f"
}

lab_vm_tamper() { # NODE VM [PATH]
    local d path=${3:-/tmp/.x/guest-miner}
    d=$(lab_vm_dir "$1" "$2")
    "$TC_BIN" lab guest-measure --tcti "$(lab_vm_tcti "$1" "$2")" --dir "$d" "$path" \
        "not in any policy: $RANDOM"
}
