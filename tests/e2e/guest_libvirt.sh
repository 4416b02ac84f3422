#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# A real guest through libvirt, driven by the platform: a coordinator and one lab node whose
# agent talks to libvirtd (qemu:///system). `trustcloud vm create --kernel --initrd --cmdline`
# makes the agent create the vTPM (qemu mode: EK certificate from the host's TPM-resident vTPM
# CA key, sealed state) and define a libvirt domain (TCG) whose TPM is that swtpm (backend
# external) with a virtio-serial channel for trustcloud-guest. Then: `vm start` runs the domain;
# the guest finds its TPM (its EK certificate chains to the host's vTPM CA and certifies the EK
# its TPM holds) and its guest agent answers a quote over the channel socket; a restarted host
# agent adopts the running domain (same QEMU process, not started twice); `vm stop` shuts the
# guest down through ACPI (no destroy); `vm start` boots it again; `vm delete` undefines the
# domain and removes the vTPM. Starts virtlogd and libvirtd when they are not running; skips
# (77) only where libvirt or QEMU cannot run at all.
. "$TC_SRC/tests/lib/lab.sh"
. "$TC_SRC/tests/lib/qemu_guest.sh"

qg_need
for b in virsh libvirtd virtlogd jq tpm2_nvread; do
    command -v "$b" >/dev/null || tc_skip "$b not installed (scripts/install-deps.sh)"
done
URI=qemu:///system
lv_up() { virsh -c "$URI" version >/dev/null 2>&1; }
if ! lv_up; then
    if ! pgrep -x libvirtd >/dev/null; then
        [ "$(id -u)" = 0 ] || tc_skip "libvirtd is not running and starting it needs root"
        pgrep -x virtlogd >/dev/null || virtlogd -d || tc_fail "virtlogd does not start"
        libvirtd -d || tc_fail "libvirtd does not start"
    fi
    for _ in $(seq 300); do lv_up && break; sleep 0.1; done
    lv_up || tc_fail "libvirtd does not answer on $URI"
fi
if ! pgrep -x virtlogd >/dev/null; then
    [ "$(id -u)" = 0 ] || tc_skip "virtlogd is not running and starting it needs root"
    virtlogd -d || tc_fail "virtlogd does not start"
fi
caps=
for _ in 1 2 3; do
    caps=$(virsh -c "$URI" domcapabilities --virttype qemu 2>&1) && break
    sleep 1
done
grep -q "<domainCapabilities" <<<"$caps" || tc_fail "virsh domcapabilities: $caps"
grep -q "<value>external</value>" <<<"$caps" || tc_skip "this libvirt has no external TPM backend"
qg_kernel || tc_skip "no guest kernel: $QG_ERROR"
qg_modules virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci \
    virtio_console button evdev || tc_skip "no modules for the guest: $QG_ERROR"
T=$TC_BIN

guest_bin=$TC_BUILD/trustcloud-guest
# A sanitizer build's guest agent would carry the sanitizer runtime into the guest.
if grep -q '^TC_SANITIZE:BOOL=ON' "$TC_BUILD/CMakeCache.txt" 2>/dev/null &&
    [ -x "$TC_SRC/build/trustcloud-guest" ]; then
    guest_bin=$TC_SRC/build/trustcloud-guest
fi
[ -x "$guest_bin" ] || tc_fail "no trustcloud-guest at $guest_bin"

# QEMU runs as libvirt-qemu: it must be able to walk to the VM's directory (the agent opens
# vm_dir and the VM's own directory to it, search only) and to read the kernel and initramfs.
chmod 0711 "$TC_TMP" "$LAB_DIR"
boot=$TC_TMP/boot
mkdir -p "$boot"
chmod 0755 "$boot"
cp "$QG_KERNEL" "$boot/vmlinuz"
QG_FILES="$guest_bin:usr/bin/trustcloud-guest $QG_MODULE_FILES" qg_initramfs "$boot/initrd" \
    "$TC_SRC/tests/data/qemu/guest_libvirt_init" "$guest_bin" tpm2_nvread tpm2_readpublic ||
    tc_fail "initramfs"
chmod 0644 "$boot/vmlinuz" "$boot/initrd"

lab_coordinator_start
lab_node_prepare n1
cat >>"$LAB_DIR/n1/agent.conf" <<CONF
libvirt_uri = $URI
libvirt_stop_timeout = 20s
CONF
chmod 0711 "$LAB_DIR/n1" "$LAB_DIR/n1/state"
lab_node_run n1
lab_node_wait n1 trusted 60 || tc_fail "node n1 not trusted"

vm=lv-$$
dom=trustcloud-n1-$vm
vmdir=$(lab_vm_dir n1 "$vm")
# Whatever happens, the domain does not outlive the test.
GL_DOMS=("$dom" "trustcloud-n1-lv2-$$")
gl_cleanup() {
    local rc=$? d
    for d in "${GL_DOMS[@]}"; do
        virsh -c "$URI" destroy "$d" >/dev/null 2>&1 || true
        virsh -c "$URI" undefine --nvram "$d" >/dev/null 2>&1 || true
    done
    (exit "$rc")
    lab_cleanup
}
trap gl_cleanup EXIT

# Refused before anything is made: a kernel that is not on the node, a bad firmware, both a
# kernel and a disk.
if $T vm create bad1 --node n1 --tenant t1 --kernel /nonexistent/vmlinuz >"$TC_TMP/bad1" 2>&1; then
    tc_fail "a guest kernel that is not on the node was accepted"
fi
grep -q "vm.guest" "$TC_TMP/bad1" || { cat "$TC_TMP/bad1" >&2; tc_fail "no vm.guest refusal"; }
$T vm create bad2 --node n1 --tenant t1 --kernel "$boot/vmlinuz" --firmware coreboot \
    >/dev/null 2>&1 && tc_fail "firmware coreboot accepted"
$T vm create bad3 --node n1 --tenant t1 --kernel "$boot/vmlinuz" --disk "$boot/initrd" \
    >/dev/null 2>&1 && tc_fail "a kernel and a disk accepted"
[ ! -e "$(lab_vm_dir n1 bad1)" ] || tc_fail "a refused VM left a directory"
# The coordinator checks the definition itself (the CLI's check above is only a convenience).
coord_post() { # BODY: the HTTP status, the answer in coord.out
    curl -sS --max-time 20 --cacert "$TC_CA" --cert "$TC_CERT" --key "$TC_KEY" -X POST \
        -H 'Content-Type: application/json' -d "$1" -o "$TC_TMP/coord.out" -w '%{http_code}' \
        "$TC_COORDINATOR/v1/vms"
}
for g in '{"kernel": "/k", "firmware": "coreboot"}' '{"kernel": "/k", "disk": "/d"}' \
    '{"kernel": "/boot/../k"}' '{"kernel": "/k", "vcpus": 1000}' '{"kernel": "/k", "x": 1}' \
    "{\"kernel\": \"/$(head -c 1100 /dev/zero | tr '\0' a)\"}"; do
    st=$(coord_post "{\"vm_id\": \"bad4\", \"node\": \"n1\", \"tenant\": \"t1\", \"guest\": $g}")
    [ "$st" = 400 ] && jq -e '.check == "request.guest"' "$TC_TMP/coord.out" >/dev/null ||
        { cat "$TC_TMP/coord.out" >&2; tc_fail "the coordinator did not refuse guest $g ($st)"; }
done
st=$(coord_post '{"vm_id": "bad5", "node": "n1", "tenant": "t1", "mode": "tcp", "guest": {"kernel": "/k"}}')
[ "$st" = 400 ] || tc_fail "a tcp-mode VM with a guest definition was accepted ($st)"

t0=$(qg_now_ms)
$T vm create "$vm" --node n1 --tenant t1 --kernel "$boot/vmlinuz" --initrd "$boot/initrd" \
    --cmdline "console=ttyS0 panic=-1 quiet loglevel=3 rootfstype=ramfs" --memory 256 --vcpus 1 \
    --json >"$TC_TMP/vm.json" || tc_fail "trustcloud vm create"
create_ms=$(($(qg_now_ms) - t0))
jq -e --arg d "$dom" '.domain == $d and .mode == "qemu" and (.channel_path | length > 0)' \
    "$TC_TMP/vm.json" >/dev/null || { cat "$TC_TMP/vm.json" >&2; tc_fail "vm create: no domain"; }
chan=$(jq -r .channel_path "$TC_TMP/vm.json")
virsh -c "$URI" dumpxml "$dom" >"$TC_TMP/dom.xml" || tc_fail "libvirt has no domain $dom"
grep -q "<backend type='external'>" "$TC_TMP/dom.xml" &&
    grep -q "path='$vmdir/ctrl.sock'" "$TC_TMP/dom.xml" &&
    grep -q "name='org.trustcloud.guest.0'" "$TC_TMP/dom.xml" &&
    grep -q "<acpi/>" "$TC_TMP/dom.xml" || { cat "$TC_TMP/dom.xml" >&2; tc_fail "domain XML"; }
[ "$(virsh -c "$URI" domstate "$dom")" = "shut off" ] || tc_fail "the domain runs before vm start"
[ "$(cat "$vmdir/domain")" = "$(virsh -c "$URI" domuuid "$dom" | head -1)" ] ||
    tc_fail "the VM directory does not name the domain's UUID"

# grep -q ends early: a pipe into it would fail under pipefail (SIGPIPE), so the text goes to a file.
con_has() { # CONSOLE PATTERN
    qg_console_text "$1" >"$TC_TMP/console.txt" 2>/dev/null || return 1
    grep -q -e "$2" "$TC_TMP/console.txt"
}
wait_guest() { # CONSOLE: until the guest agent is up
    for _ in $(seq 600); do
        con_has "$1" "trustcloud-guest .* ready" && return 0
        con_has "$1" "^TC-GUEST: FAIL" && break
        sleep 0.2
    done
    qg_show_console "$1"
    return 1
}
console=$vmdir/console.log
t0=$(qg_now_ms)
$T vm start "$vm" >/dev/null || tc_fail "trustcloud vm start"
[ "$(virsh -c "$URI" domstate "$dom")" = running ] || tc_fail "the domain is not running"
wait_guest "$console" || tc_fail "the guest agent did not come up"
ready_ms=$(($(qg_now_ms) - t0))
con_has "$console" "^TC-GUEST: tpm0 present: 2$" || tc_fail "no TPM 2.0 in the guest"

# The guest's TPM is the platform's vTPM: its EK certificate chains to the node's vTPM CA and
# certifies the EK the guest's TPM holds.
openssl x509 -inform DER -in "$LAB_DIR/n1/state/vtpm_ca.crt" -out "$TC_TMP/ca.pem" ||
    tc_fail "vTPM CA certificate"
qg_extract "$console" "TC EK CERTIFICATE" | base64 -d >"$TC_TMP/ekcert.der" 2>/dev/null
qg_extract "$console" "TC EK PUBLIC KEY" | base64 -d >"$TC_TMP/ek.der" 2>/dev/null
openssl x509 -inform DER -in "$TC_TMP/ekcert.der" -out "$TC_TMP/ekcert.pem" 2>/dev/null ||
    { qg_show_console "$console"; tc_fail "no EK certificate from the guest"; }
openssl verify -CAfile "$TC_TMP/ca.pem" "$TC_TMP/ekcert.pem" >/dev/null ||
    tc_fail "the guest's EK certificate does not chain to the node's vTPM CA"
[ "$(openssl x509 -in "$TC_TMP/ekcert.pem" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum)" = \
    "$(openssl pkey -pubin -inform DER -in "$TC_TMP/ek.der" -outform DER | sha256sum)" ] ||
    tc_fail "the EK certificate is not for the guest TPM's EK"

# The guest agent answers over the channel libvirt made: its AK is enrolled through it and its
# quotes come in the node's rounds (the channel takes one client: the host agent's).
[ -S "$chan" ] || tc_fail "no guest channel socket at $chan"
t0=$(qg_now_ms)
$T vm wait "$vm" --state trusted --timeout 120 >/dev/null ||
    { $T vm show "$vm" >&2; tc_fail "the guest was not attested through its guest agent"; }
quote_ms=$(($(qg_now_ms) - t0))

# The host agent restarts: the domain keeps running and is adopted, not started again.
qpid=$(pgrep -f "guest=$dom" | head -1)
[ -n "$qpid" ] || tc_fail "no QEMU process for $dom"
domid=$(virsh -c "$URI" domid "$dom" | head -1)
lab_node_restart n1
lab_node_wait n1 trusted 60 || tc_fail "node n1 not trusted after its agent restarted"
for _ in $(seq 50); do grep -q "VM $vm: domain .* running, adopted" "$LAB_DIR/n1/agent.log" && break; sleep 0.1; done
grep -q "VM $vm: domain .* running, adopted" "$LAB_DIR/n1/agent.log" || tc_fail "the agent did not adopt the domain"
$T vm start "$vm" >/dev/null || tc_fail "vm start of a running VM"
[ "$(virsh -c "$URI" domid "$dom" | head -1)" = "$domid" ] &&
    [ "$(pgrep -f "guest=$dom" | head -1)" = "$qpid" ] || tc_fail "the domain was started again"
sleep 3
$T vm wait "$vm" --state trusted --timeout 60 >/dev/null ||
    { $T vm show "$vm" >&2; tc_fail "the guest is no longer attested after the host agent restarted"; }

# A graceful stop: the guest powers off on the ACPI power button (no destroy).
t0=$(qg_now_ms)
$T vm stop "$vm" >/dev/null || tc_fail "trustcloud vm stop"
stop_ms=$(($(qg_now_ms) - t0))
[ "$(virsh -c "$URI" domstate "$dom")" = "shut off" ] || tc_fail "the domain still runs after vm stop"
grep -q "VM $vm: domain shut down" "$LAB_DIR/n1/agent.log" ||
    { grep "VM $vm" "$LAB_DIR/n1/agent.log" | tail >&2; tc_fail "the stop was not graceful"; }
con_has "$console" "power button: poweroff" || tc_fail "the guest saw no power button"

# Started again (the vTPM through the state guard: its state was recorded at the stop).
$T vm start "$vm" >/dev/null || tc_fail "the second vm start"
[ "$(virsh -c "$URI" domstate "$dom")" = running ] || tc_fail "the domain did not start again"
wait_guest "$console" || tc_fail "the guest agent did not come up after the second start"
$T vm wait "$vm" --state trusted --timeout 120 >/dev/null ||
    { $T vm show "$vm" >&2; tc_fail "the guest is not attested after the second start"; }

# Deleted: the domain undefined, the vTPM and its directory gone.
$T vm delete "$vm" >/dev/null || tc_fail "trustcloud vm delete"
virsh -c "$URI" dominfo "$dom" >/dev/null 2>&1 && tc_fail "the domain is still defined"
[ ! -e "$vmdir" ] || tc_fail "the VM directory is still there"
pgrep -f "guest=$dom" >/dev/null && tc_fail "QEMU still runs"

# The same guest under OVMF (UEFI, no secure boot): the firmware libvirt picks from the host's
# descriptors (Debian's ovmf package). Skipped without them.
ovmf_ms=
if ls /usr/share/qemu/firmware/*edk2-x86_64*.json >/dev/null 2>&1; then
    vm2=lv2-$$
    dom=trustcloud-n1-$vm2
    $T vm create "$vm2" --node n1 --tenant t1 --kernel "$boot/vmlinuz" --initrd "$boot/initrd" \
        --cmdline "console=ttyS0 panic=-1 quiet loglevel=3 rootfstype=ramfs" --firmware ovmf \
        --json >"$TC_TMP/vm2.json" || tc_fail "vm create --firmware ovmf"
    virsh -c "$URI" dumpxml --inactive "$dom" >"$TC_TMP/dom2.xml" || tc_fail "no OVMF domain"
    grep -q "<os firmware='efi'>" "$TC_TMP/dom2.xml" || tc_fail "the OVMF domain's XML has no efi firmware"
    t0=$(qg_now_ms)
    $T vm start "$vm2" >/dev/null || tc_fail "vm start of the OVMF guest"
    # The firmware libvirt resolved at the start.
    virsh -c "$URI" dumpxml "$dom" >"$TC_TMP/dom2.live.xml" || tc_fail "no live OVMF domain"
    grep -q "<loader.*OVMF" "$TC_TMP/dom2.live.xml" ||
        { cat "$TC_TMP/dom2.live.xml" >&2; tc_fail "the OVMF domain runs without an OVMF loader"; }
    wait_guest "$(lab_vm_dir n1 "$vm2")/console.log" || tc_fail "the OVMF guest's agent did not come up"
    ovmf_ms=$(($(qg_now_ms) - t0))
    con_has "$(lab_vm_dir n1 "$vm2")/console.log" "^TC-GUEST: tpm0 present: 2$" ||
        tc_fail "no TPM 2.0 in the OVMF guest"
    # Attested from the node's rounds: its quote, and its UEFI boot log replayed to its PCRs.
    $T vm wait "$vm2" --state trusted --timeout 120 >/dev/null ||
        { $T vm show "$vm2" >&2; tc_fail "the OVMF guest was not attested"; }
    $T vm delete "$vm2" >/dev/null || tc_fail "vm delete of the OVMF guest"
    virsh -c "$URI" dominfo "$dom" >/dev/null 2>&1 && tc_fail "the OVMF domain is still defined"
fi

echo "vm create (vTPM with EK certificate, verified, domain defined): ${create_ms} ms"
echo "vm start to guest agent ready (TCG, SeaBIOS): ${ready_ms} ms; then attested (AK enrolled through the guest agent, first trusted round): ${quote_ms} ms more"
echo "vm stop (ACPI shutdown, vTPM state recorded): ${stop_ms} ms"
ovmf_note="OVMF skipped (no firmware descriptors)"
if [ -n "$ovmf_ms" ]; then
    echo "vm start to guest agent ready (TCG, OVMF): ${ovmf_ms} ms"
    ovmf_note="the same guest under OVMF with its UEFI boot log"
fi
tc_pass "a libvirt domain on the platform's vTPM: created, started, its TPM verified and its guest agent answering, adopted by a restarted agent, stopped gracefully, started again, deleted; $ovmf_note"
