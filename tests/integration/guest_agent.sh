#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# trustcloud-guest without a VM: its TPM is a swtpm, its "virtio-serial port" a raw
# pseudo-terminal relayed to a unix socket (tests/lib/pty_channel.py, as QEMU's chardev), its
# IMA list one the lab extends into that TPM. The host side (`trustcloud lab guest-quote`)
# appraises its answers. Shows: the AK it creates on first start under the EK is persistent at
# 0x81010003 and is the one a restarted guest agent uses (same public key, quotes still
# verify); a new measurement appears in the next round's delta, replayed to PCR 10; --once exits
# after its answer; a host sending an oversized frame gets an error frame (guest.too_large).
. "$TC_SRC/tests/lib/common.sh"
command -v tpm2_readpublic >/dev/null || tc_skip "tpm2-tools not installed"
T=$TC_BIN
G=${TC_GUEST_BIN:-$TC_BUILD/trustcloud-guest}
[ -x "$G" ] || tc_fail "no trustcloud-guest at $G"
tc_start_swtpm g
tcti=$TC_TCTI_g
ima=$TC_TMP/ima.log
"$T" lab ima-start --tcti "$tcti" --log "$ima" >/dev/null || tc_fail "lab ima-start"

sock=$TC_TMP/chan.sock
python3 "$TC_SRC/tests/lib/pty_channel.py" "$sock" "$TC_TMP/pty" >"$TC_TMP/pty.log" 2>&1 &
TC_PIDS+=("$!")
for _ in $(seq 100); do [ -s "$TC_TMP/pty" ] && [ -S "$sock" ] && break; sleep 0.05; done
port=$(cat "$TC_TMP/pty")

# start_guest LOG [OPTION...]
start_guest() {
    local log=$1
    shift
    "$G" --port "$port" --tcti "$tcti" --ima "$ima" --eventlog "$TC_TMP/none" \
        --state-dir "$TC_TMP/state" "$@" >"$log" 2>&1 &
    GUEST_PID=$!
    TC_PIDS+=("$GUEST_PID")
    for _ in $(seq 200); do grep -q "ready" "$log" && break; sleep 0.05; done
    grep -q "ready" "$log" || { cat "$log" >&2; tc_fail "guest agent not ready"; }
}

start_guest "$TC_TMP/guest.log"
grep -q "AK: created under the EK, persistent at 0x81010003" "$TC_TMP/guest.log" ||
    { cat "$TC_TMP/guest.log" >&2; tc_fail "the guest agent did not create its AK"; }
tpm2_readpublic -T "$tcti" -c 0x81010003 >/dev/null 2>&1 || tc_fail "no AK at 0x81010003"
mkdir -p "$TC_TMP/o1" "$TC_TMP/o2"
"$T" lab guest-quote --socket "$sock" --out "$TC_TMP/o1" --rounds 1 >"$TC_TMP/r1.json" ||
    { cat "$TC_TMP/r1.json" "$TC_TMP/guest.log" >&2; tc_fail "round 1"; }
jq -e '.valid and .ima.first == 0 and .ima.next == 1 and .ima.verified == 1' "$TC_TMP/r1.json" \
    >/dev/null || tc_fail "round 1: $(cat "$TC_TMP/r1.json")"

# A host that announces a frame above the guest's cap gets an error frame.
python3 - "$sock" <<'PY' || tc_fail "no guest.too_large error frame for an oversized request"
import json, socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
s.sendall(b"TCGC" + struct.pack(">BBHI", 1, 2, 0, 1 << 20))
buf = b""
while len(buf) < 12 or len(buf) < 12 + struct.unpack(">I", buf[8:12])[0]:
    buf += s.recv(4096)
assert buf[:4] == b"TCGC" and buf[5] == 4, buf
assert json.loads(buf[12:])["check"] == "guest.too_large", buf
PY

# Restarted (--once this time): the same persistent AK, and a new measurement in the delta.
kill "$GUEST_PID"
wait "$GUEST_PID" 2>/dev/null || true
"$T" lab measure --tcti "$tcti" --log "$ima" --path /usr/bin/new-tool --content "v2" >/dev/null ||
    tc_fail "lab measure"
start_guest "$TC_TMP/guest2.log" --once
grep -q "AK: the key persistent at 0x81010003" "$TC_TMP/guest2.log" || tc_fail "the restarted guest agent did not reuse its AK"
"$T" lab guest-quote --socket "$sock" --out "$TC_TMP/o2" >"$TC_TMP/r2.json" ||
    { cat "$TC_TMP/r2.json" >&2; tc_fail "round after restart"; }
cmp -s "$TC_TMP/o1/s0.1.akpub" "$TC_TMP/o2/s0.1.akpub" || tc_fail "the AK changed across restarts"
jq -e '.valid and .ima.next == 2 and .ima.verified == 2' "$TC_TMP/r2.json" >/dev/null ||
    tc_fail "after restart: $(cat "$TC_TMP/r2.json")"
grep -a -q "/usr/bin/new-tool" "$TC_TMP/o2/s0.1.ima" || tc_fail "the new measurement is not in the list"
for _ in $(seq 100); do kill -0 "$GUEST_PID" 2>/dev/null || break; sleep 0.05; done
kill -0 "$GUEST_PID" 2>/dev/null && tc_fail "--once: the guest agent did not exit after its answer"
tc_pass "trustcloud-guest on a swtpm: AK created under the EK and kept persistent at 0x81010003 across restarts, IMA list appraised and grown, oversized request refused with an error frame, --once"
