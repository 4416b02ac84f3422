#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Real guests attested by the platform, end to end: one node whose agent runs two libvirt
# domains (TCG), a SeaBIOS guest of tenant t1 and an OVMF guest (UEFI measured boot) of tenant
# t2, each with trustcloud-guest on its virtio-serial channel and ima_policy=tcb. Shows:
# - each guest enrolls its AK by credential activation through its guest agent, and both VMs
#   become trusted from the host's batch (one host quote a round) under their tenants' runtime
#   policies; the OVMF guest's boot log replays to its vTPM and passes t2's measured-boot policy;
# - the host agent restarted: both domains keep running and stay attested;
# - a program outside t1's policy really executed in guest A: A untrusted within two intervals,
#   naming the file; B stays trusted;
# - killing B's guest agent: B unreachable; started again: trusted;
# - hostile answers from B's guest agent (oversized, truncated, garbage, wrong nonce, replayed,
#   another key's quote): each turns only B untrusted with its check, the host agent serving;
# - a tampered host: both VMs untrusted.
# Skips (77) only where libvirt or QEMU cannot run at all.
. "$TC_SRC/tests/lib/lab.sh"
. "$TC_SRC/tests/lib/qemu_guest.sh"
. "$TC_SRC/tests/lib/libvirt.sh"

# A command failing under set -e says where (a busy machine makes CLI calls fail in ways a
# quiet one does not).
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND exited $?" >&2' ERR
gl_need
qg_kernel || tc_skip "no guest kernel: $QG_ERROR"
qg_modules virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci \
    virtio_console button evdev || tc_skip "no modules for the guest: $QG_ERROR"
ls /usr/share/qemu/firmware/*edk2-x86_64*.json >/dev/null 2>&1 || tc_skip "no OVMF firmware descriptors"
T=$TC_BIN
gl_guest_bin
gl_boot_files "$TC_SRC/tests/data/qemu/guest_attest_init"

INTERVAL_S=2
LAB_INTERVAL=${INTERVAL_S}s lab_coordinator_start request_timeout=6s unreachable_after=1
lab_node_prepare n1
lab_policies_from n1
cat >>"$LAB_DIR/n1/agent.conf" <<CONF
libvirt_uri = $GL_URI
libvirt_stop_timeout = 20s
guest_timeout = 3s
CONF
chmod 0711 "$LAB_DIR/n1" "$LAB_DIR/n1/state"
lab_node_run n1
lab_node_wait n1 trusted 60 || tc_fail "node n1 not trusted"

# The tenants' runtime policy: every file of the guests' initramfs, as the guest kernel names
# it (boot_aggregate depends on the firmware: excluded here, the boot is the measured-boot
# policy's business).
gl_runtime_policy "$TC_TMP/guest-rt.json"
$T policy add --name guest-rt --kind runtime --file "$TC_TMP/guest-rt.json" >/dev/null ||
    tc_fail "policy add"
$T policy assign guest-rt --tenant t1 >/dev/null && $T policy assign guest-rt --tenant t2 >/dev/null ||
    tc_fail "policy assign"

A=ga-$$ B=gb-$$
GL_DOMS=("trustcloud-n1-$A" "trustcloud-n1-$B")
trap gl_cleanup EXIT
cmdline="console=ttyS0 panic=-1 quiet loglevel=3 rootfstype=ramfs ima_policy=tcb"
$T vm create "$A" --node n1 --tenant t1 --kernel "$GL_BOOT/vmlinuz" --initrd "$GL_BOOT/initrd" \
    --cmdline "$cmdline" --memory 256 --vcpus 1 >/dev/null || tc_fail "vm create $A"
$T vm create "$B" --node n1 --tenant t2 --kernel "$GL_BOOT/vmlinuz" --initrd "$GL_BOOT/initrd" \
    --cmdline "$cmdline" --memory 256 --vcpus 1 --firmware ovmf >/dev/null || tc_fail "vm create $B"
t0=$(qg_now_ms)
$T vm start "$A" >/dev/null || tc_fail "vm start $A"
ta=$(qg_now_ms)
$T vm start "$B" >/dev/null || tc_fail "vm start $B"
tb=$(qg_now_ms)
$T vm wait "$A" --state trusted --timeout 180 >/dev/null ||
    { $T vm show "$A"; qg_show_console "$(lab_vm_dir n1 "$A")/console.log"; tc_fail "SeaBIOS guest not trusted"; }
seabios_ms=$(($(qg_now_ms) - t0))
$T vm wait "$B" --state trusted --timeout 180 >/dev/null ||
    { $T vm show "$B"; qg_show_console "$(lab_vm_dir n1 "$B")/console.log"; tc_fail "OVMF guest not trusted"; }
ovmf_ms=$(($(qg_now_ms) - ta))
grep -q "vm $A: guest AK enrolled" "$LAB_DIR/coordinator/coordinator.log" ||
    tc_fail "no guest AK enrollment logged"

# t2 pins its guests' firmware: the measured-boot policy from B's own boot log, fetched while
# the host agent is down (the channel takes one client). The agent restarted: both domains go
# on, adopted, and stay attested.
qpa=$(pgrep -f "guest=trustcloud-n1-$A" | head -1)
lab_node_stop n1
mkdir -p "$TC_TMP/b"
$T lab guest-quote --socket "$(lab_vm_dir n1 "$B")/channel/guest.sock" --eventlog \
    --timeout-ms 20000 --out "$TC_TMP/b" >"$TC_TMP/bq.json" || { cat "$TC_TMP/bq.json" >&2; tc_fail "guest-quote B"; }
evlog=$(ls "$TC_TMP"/b/*.eventlog | head -1)
[ -s "$evlog" ] || tc_fail "the OVMF guest has no boot log"
$T policy create measured-boot --from-eventlog "$evlog" -o "$TC_TMP/b-mb.json" >/dev/null ||
    tc_fail "measured-boot policy from the OVMF guest's log"
$T policy add --name ovmf-boot --kind measured-boot --file "$TC_TMP/b-mb.json" >/dev/null &&
    $T policy assign ovmf-boot --tenant t2 >/dev/null || tc_fail "measured-boot policy for t2"
lab_node_run n1
lab_node_wait n1 trusted 60 || tc_fail "n1 not trusted after its agent restarted"
[ "$(pgrep -f "guest=trustcloud-n1-$A" | head -1)" = "$qpa" ] || tc_fail "domain A was started again"
gl_wait_round "$B" 30 || tc_fail "no new round of $B after the agent restart"
for v in "$A" "$B"; do
    $T vm wait "$v" --state trusted --timeout 30 >/dev/null || { $T vm show "$v"; tc_fail "$v not trusted after the agent restart"; }
done
$T vm show "$B" --json | jq -e '.mb_policy == "ovmf-boot" or (.policies // [] | index("ovmf-boot"))' >/dev/null 2>&1 ||
    $T vm show "$B" --json >"$TC_TMP/b.json"

# The cost of guest answers in a host round: the agent logs each guest's answer time.
lab_node_stop n1
sed -i 's/^log_level = .*/log_level = debug/' "$LAB_DIR/n1/agent.conf"
lab_node_run n1
lab_node_wait n1 trusted 60 || tc_fail "n1 not trusted (debug)"
sleep $((3 * INTERVAL_S))
answer_us=$(grep -o "guest answered in [0-9]* us" "$LAB_DIR/n1/agent.log" | awk '{s+=$4; n++} END {if (n) printf "%d", s/n}')
batch_line=$(grep "batch: 2 VMs, 2 quoted" "$LAB_DIR/n1/agent.log" | tail -1)

# A program outside t1's policy, really executed in A: A untrusted within two intervals, the
# reason naming it; B (other tenant, same host) stays trusted.
gl_cmd "$A" "run /usr/local/bin/miner"
t0=$(qg_now_ms)
$T vm wait "$A" --state untrusted --timeout $((2 * INTERVAL_S + 2)) >/dev/null ||
    { $T vm show "$A"; tc_fail "A not untrusted within two intervals of running a program outside policy"; }
tamper_ms=$(($(qg_now_ms) - t0))
$T vm show "$A" --json >"$TC_TMP/a.json"
jq -e '.reason.check == "ima.policy.not_in_policy" and (.reason.detail | test("/usr/local/bin/miner"))' \
    "$TC_TMP/a.json" >/dev/null || { cat "$TC_TMP/a.json"; tc_fail "A's reason does not name the file"; }
[ "$($T vm show "$B" --json | jq -r .state)" = trusted ] || tc_fail "B did not stay trusted"

# B's guest agent killed: unreachable with the guest's check; started again: trusted.
gl_cmd "$B" kill
$T vm wait "$B" --state unreachable --timeout $((3 * INTERVAL_S + 8)) >/dev/null ||
    { $T vm show "$B"; tc_fail "B not unreachable with its guest agent gone"; }
$T vm show "$B" --json | jq -e '.reason.check | test("^guest\\.")' >/dev/null ||
    { $T vm show "$B"; tc_fail "B's unreachable reason is not the guest's"; }
gl_cmd "$B" start
$T vm wait "$B" --state trusted --timeout 30 >/dev/null || { $T vm show "$B"; tc_fail "B not trusted again"; }

# Hostile answers: each turns B untrusted with its check; then B behaves and is trusted again.
for spec in oversize:guest.too_large truncated:guest.truncated garbage:guest.frame \
    wrong_nonce:quote.nonce replay:quote.nonce foreign:quote.signature; do
    m=${spec%%:*} check=${spec#*:}
    gl_cmd "$B" "misbehave $m"
    $T vm wait "$B" --state untrusted --timeout $((3 * INTERVAL_S + 8)) >/dev/null ||
        { $T vm show "$B"; tc_fail "B misbehaving ($m) not untrusted"; }
    got=$($T vm show "$B" --json | jq -r .reason.check) || got="(vm show failed)"
    case $got in
    "$check"*) ;;
    *) $T vm show "$B"; tc_fail "B misbehaving ($m): check $got, expected $check" ;;
    esac
    echo "hostile guest ($m): untrusted, $got"
    gl_cmd "$B" "misbehave none"
    $T vm wait "$B" --state trusted --timeout 30 >/dev/null || { $T vm show "$B"; tc_fail "B not trusted after $m"; }
    [ "$($T node show n1 --json | jq -r .state)" = trusted ] || tc_fail "the host suffered from B ($m)"
done

# A tampered host: both of its VMs untrusted.
gl_cmd "$A" "misbehave none"
lab_node_tamper n1
lab_node_wait n1 untrusted 20 || tc_fail "tampered host not untrusted"
for v in "$A" "$B"; do
    $T vm wait "$v" --state untrusted --timeout 20 >/dev/null || tc_fail "$v of a tampered host not untrusted"
done
[ "$($T vm show "$B" --json | jq -r .reason.check)" = host.untrusted ] || tc_fail "B's reason is not its host"

guest_rss=$(grep -o "VmRSS [0-9]* kB" "$(lab_vm_dir n1 "$B")/console.log" | tail -1)
echo "vm start to first trusted round: SeaBIOS ${seabios_ms} ms, OVMF ${ovmf_ms} ms (TCG, both booting at once)"
echo "guest answer in the host's round: ${answer_us:-?} us on average; last batch: ${batch_line#*batch: }"
echo "program outside policy to untrusted: ${tamper_ms} ms (interval ${INTERVAL_S} s)"
echo "guest agent memory: ${guest_rss:-?}"
tc_pass "two real guests (SeaBIOS, OVMF) attested through their guest agents in the host's batch; runtime and measured-boot policies, agent restart, a program outside policy, a silent and a hostile guest agent, a tampered host"
