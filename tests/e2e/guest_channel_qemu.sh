#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The guest channel with a real guest: QEMU (TCG, SeaBIOS, Debian's kernel with
# ima_policy=tcb, a busybox initramfs built here) on a vTPM, trustcloud-guest started by the
# guest's /init on the virtio-serial port org.trustcloud.guest.0, whose QEMU chardev is a unix
# socket on the host. The host side (`trustcloud lab guest-quote`) says hello, asks for quotes
# over two rounds and appraises every answer with the project's verifiers: the quote by the AK
# the guest made under its EK, the nonce, the PCR digest, the guest's boot log replayed to its
# PCRs, the guest kernel's IMA list replayed to PCR 10 and continued from where round 1 ended.
# The saved quote is checked again with `trustcloud quote verify` (and refused under another
# nonce). Hostile guests (garbage, an oversized length, silence, half a frame, a payload with
# an unknown member) are refused with their checks in the same host process, which goes on to
# quote the real guest; the real guest refuses a host that sends no frame and still answers. Skips (77) only without QEMU, busybox-static, tpm2-tools or a kernel.
. "$TC_SRC/tests/lib/common.sh"
. "$TC_SRC/tests/lib/qemu_guest.sh"

qg_need
command -v tpm2_createek >/dev/null || tc_skip "tpm2-tools not installed"
command -v jq >/dev/null || tc_skip "jq not installed"
qg_kernel || tc_skip "no guest kernel: $QG_ERROR"
T=$TC_BIN

# The guest agent. A sanitizer build's one would carry the sanitizer runtime into the guest:
# take the normal build's when there is one (TC_GUEST_BIN overrides).
guest_bin=${TC_GUEST_BIN:-}
if [ -z "$guest_bin" ]; then
    guest_bin=$TC_BUILD/trustcloud-guest
    if grep -q '^TC_SANITIZE:BOOL=ON' "$TC_BUILD/CMakeCache.txt" 2>/dev/null &&
        [ -x "$TC_SRC/build/trustcloud-guest" ]; then
        guest_bin=$TC_SRC/build/trustcloud-guest
    fi
fi
[ -x "$guest_bin" ] || tc_fail "no trustcloud-guest at $guest_bin"
"$guest_bin" --version | grep -q "guest channel protocol 1" || tc_fail "trustcloud-guest --version"

# Debian builds virtio-serial (and virtio-pci under it) as modules.
qg_modules virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci \
    virtio_console || tc_skip "no virtio modules for the guest: $QG_ERROR"
qg_vtpm_selfmade "$TC_TMP/vtpm"
QG_INITRD=$TC_TMP/initrd.cpio
QG_FILES="$guest_bin:usr/bin/trustcloud-guest $QG_MODULE_FILES" qg_initramfs "$QG_INITRD" \
    "$TC_SRC/tests/data/qemu/guest_channel_init" "$guest_bin" || tc_fail "initramfs"

# rootfstype=ramfs: IMA's policies skip tmpfs, so the initramfs must not be one for the
# guest's executables to be measured.
sock=$TC_TMP/guest.sock
console=$TC_TMP/console.log
QG_APPEND="ima_policy=tcb rootfstype=ramfs" \
    QG_QEMU_ARGS="-device virtio-serial -chardev socket,id=ch0,path=$sock,server=on,wait=off -device virtserialport,chardev=ch0,name=org.trustcloud.guest.0" \
    qg_start "$QG_CTRL" "$console"
t0=$(qg_now_ms)
ready=0
for _ in $(seq 450); do
    if qg_console_text "$console" | grep -q "trustcloud-guest 0.1.0 ready"; then
        ready=1
        break
    fi
    kill -0 "$QG_PID" 2>/dev/null || break
    qg_console_text "$console" | grep -q -e "^TC-GUEST: FAIL" -e "^TC-GUEST: guest agent exited" && break
    sleep 0.2
done
[ "$ready" = 1 ] || { qg_show_console "$console"; tc_fail "the guest agent did not come up"; }
ready_ms=$(($(qg_now_ms) - t0))
[ -S "$sock" ] || tc_fail "QEMU made no channel socket"

# Hostile guests, each on its own socket, served by one process.
fake=$TC_TMP/fake
mkdir -p "$fake"
python3 "$TC_SRC/tests/lib/fake_guest.py" garbage:"$fake/garbage" oversize:"$fake/oversize" \
    silent:"$fake/silent" truncated:"$fake/truncated" payload:"$fake/payload" \
    >"$fake/log" 2>&1 &
TC_PIDS+=("$!")
for m in garbage oversize silent truncated payload; do
    for _ in $(seq 100); do [ -S "$fake/$m" ] && break; sleep 0.05; done
    [ -S "$fake/$m" ] || tc_fail "fake guest $m did not start"
done

out=$TC_TMP/out
mkdir -p "$out"
deadline_ms=4000
t0=$(qg_now_ms)
rc=0
"$T" lab guest-quote --socket "$fake/garbage" --socket "$fake/oversize" --socket "$fake/silent" \
    --socket "$fake/truncated" --socket "$fake/payload" --socket "$fake/none" --socket "$sock" \
    --eventlog --rounds 2 --timeout-ms "$deadline_ms" --out "$out" >"$TC_TMP/rounds.jsonl" \
    2>"$TC_TMP/rounds.err" || rc=$?
host_ms=$(($(qg_now_ms) - t0))
cat "$TC_TMP/rounds.jsonl"
[ "$rc" = 1 ] || { cat "$TC_TMP/rounds.err" >&2; tc_fail "lab guest-quote exited $rc, expected 1 (hostile guests refused)"; }
[ "$(wc -l <"$TC_TMP/rounds.jsonl")" = 14 ] || tc_fail "expected 14 result lines (7 sockets x 2 rounds)"

# Each hostile guest is refused with its own check, in both rounds.
expect_refusal() {
    local path=$1 check=$2 n
    n=$(jq -c --arg s "$path" --arg c "$check" \
        'select(.socket == $s and .valid == false and .error.check == $c)' \
        "$TC_TMP/rounds.jsonl" | wc -l)
    [ "$n" = 2 ] || tc_fail "$path: expected two refusals with check $check"
}
expect_refusal "$fake/garbage" guest.frame
expect_refusal "$fake/oversize" guest.too_large
expect_refusal "$fake/silent" guest.deadline
expect_refusal "$fake/truncated" guest.truncated
expect_refusal "$fake/payload" guest.payload
expect_refusal "$fake/none" guest.connect
grep -F "$fake/oversize" "$TC_TMP/rounds.jsonl" | grep -q "of 4294967295 bytes" ||
    tc_fail "the oversize refusal does not name the length"
# Silence costs the deadline, not more: two silent rounds and the rest within budget.
[ "$host_ms" -lt $((2 * deadline_ms + 20000)) ] || tc_fail "the host took $host_ms ms"

# The real guest: both rounds appraised.
real() { jq -c --arg s "$sock" --argjson r "$1" 'select(.socket == $s and .round == $r)' "$TC_TMP/rounds.jsonl"; }
r1=$(real 1)
r2=$(real 2)
echo "$r1" | jq -e '.valid == true and .appraisal.valid == true and .appraisal.properties.quote == "pass"
    and .agent == "trustcloud-guest 0.1.0" and .ima.first == 0 and .ima.next > 1
    and .ima.verified > 1' >/dev/null || tc_fail "round 1 of the real guest: $r1"
echo "$r2" | jq -e --argjson n "$(echo "$r1" | jq .ima.next)" '.valid == true
    and .appraisal.valid == true and .ima.first == $n and .ima.verified >= $n' >/dev/null ||
    tc_fail "round 2 did not continue the IMA replay where round 1 ended: $r2"
evlog_bytes=$(echo "$r1" | jq .eventlog_bytes)
if [ "$evlog_bytes" -gt 0 ]; then
    echo "$r1" | jq -e '.appraisal.properties.boot == "pass"' >/dev/null ||
        tc_fail "the guest's boot log did not replay to its quoted PCRs: $r1"
fi
# The guest's kernel measured the guest agent itself.
real_tag=s6
grep -a -q "trustcloud-guest" "$out/$real_tag.1.ima" || tc_fail "the IMA list does not name trustcloud-guest"

# The same quote through `trustcloud quote verify`; another nonce is refused.
nonce=$(echo "$r1" | jq -r .nonce)
"$T" quote verify --ak "$out/$real_tag.1.akpub" --message "$out/$real_tag.1.attest" \
    --signature "$out/$real_tag.1.sig" --pcrs "$out/$real_tag.1.pcrs.json" --nonce "$nonce" \
    --pcr-list sha256:0,1,2,3,4,5,6,7,8,9,10 >"$TC_TMP/qv.out" 2>&1 ||
    { cat "$TC_TMP/qv.out" >&2; tc_fail "trustcloud quote verify refused the guest's quote"; }
if "$T" quote verify --ak "$out/$real_tag.1.akpub" --message "$out/$real_tag.1.attest" \
    --signature "$out/$real_tag.1.sig" --pcrs "$out/$real_tag.1.pcrs.json" \
    --nonce "$(echo "$r2" | jq -r .nonce)" >/dev/null 2>&1; then
    tc_fail "the guest's quote verified under another round's nonce"
fi

# A hostile host towards the guest: bytes that are no frame get an error frame back (the guest
# then ignores that connection's bytes until it closes).
python3 - "$sock" >"$TC_TMP/hostile_host.out" 2>&1 <<'PY' || { cat "$TC_TMP/hostile_host.out" >&2; tc_fail "the guest did not refuse a hostile host with an error frame"; }
import json, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(15)
s.connect(sys.argv[1])
s.sendall(b"NOT A FRAME AT ALL\n")
buf = b""
while len(buf) < 12:
    chunk = s.recv(4096)
    if not chunk:
        sys.exit("closed")
    buf += chunk
magic, version, mtype, _, length = struct.unpack(">4sBBHI", buf[:12])
while len(buf) < 12 + length:
    buf += s.recv(4096)
body = json.loads(buf[12:12 + length])
print(mtype, body)
assert magic == b"TCGC" and mtype == 4 and body["check"] == "guest.frame", body
PY

# The guest agent survived everything and still answers.
"$T" lab guest-quote --socket "$sock" --timeout-ms 10000 >"$TC_TMP/last.json" ||
    { cat "$TC_TMP/last.json" >&2; tc_fail "the guest agent no longer answers"; }

kill "$QG_PID" 2>/dev/null || true
rss=$(qg_console_text "$console" | sed -n 's/.*VmRSS \([0-9]*\) kB).*/\1/p' | tail -1)
libs=$(ldd "$guest_bin" | awk '/=> \//{print $3}' | xargs -r stat -L -c %s | awk '{s+=$1} END {print int(s/1024)}')
echo "guest agent: $(($(stat -c %s "$guest_bin") / 1024)) KiB binary + ${libs} KiB libraries; VmRSS ${rss:-?} kB after an answer (in the guest)"
echo "guest up and agent ready: ${ready_ms} ms after QEMU start"
echo "one guest quote answer (request sent to answer parsed, host side): $(echo "$r1" | jq .answer_ms) ms round 1 ($(echo "$r1" | jq .answer_bytes) bytes, boot log ${evlog_bytes} bytes, $(echo "$r1" | jq .ima.next) IMA entries), $(echo "$r2" | jq .answer_ms) ms round 2 ($(echo "$r2" | jq .answer_bytes) bytes)"
tc_pass "a real guest's trustcloud-guest answered over virtio-serial: quote, boot log and IMA delta appraised over two rounds; hostile guests refused (frame, too_large, deadline, truncated, payload, connect) without stopping the host"
