#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# A real QEMU guest (TCG, SeaBIOS, Debian's kernel, a busybox initramfs) on a vTPM: the guest
# finds /dev/tpm0, reads the vTPM's EK certificate from NV 0x01c0000a and the persistent EK
# 0x81010002 with tpm2-tools, and prints them on its serial console. The host checks that the
# certificate chains to the vTPM CA certificate and certifies the very EK the guest's TPM holds.
#
# The vTPM comes from the platform: a coordinator and one lab node; `trustcloud vm create --mode
# qemu` makes the node's agent create the vTPM with an EK certificate from its TPM-resident vTPM
# CA key (the coordinator checks the host AK's certification of that key, the CA certificate,
# the EK certificate and credential activation before it records the VM) and returns the control
# socket QEMU attaches to. TC_QEMU_VTPM=selfmade uses a vTPM made here instead (swtpm provisioned
# with tpm2-tools, an openssl CA): the guest side without the platform.
# Skips (77) without qemu-system-x86_64, busybox-static or a kernel package to fetch.
mode=${TC_QEMU_VTPM:-platform}
case $mode in
platform) . "$TC_SRC/tests/lib/lab.sh" ;;
selfmade) . "$TC_SRC/tests/lib/common.sh" ;;
*)
    echo "FAIL: TC_QEMU_VTPM=$mode: expected platform or selfmade" >&2
    exit 1
    ;;
esac
. "$TC_SRC/tests/lib/qemu_guest.sh"

qg_need
command -v tpm2_nvread >/dev/null || tc_skip "tpm2-tools not installed"
t0=$(qg_now_ms)
qg_kernel || tc_skip "no guest kernel: $QG_ERROR"
kernel_ms=$(($(qg_now_ms) - t0))


case $mode in
selfmade)
    qg_vtpm_selfmade "$TC_TMP/vtpm"
    ca_pem=$QG_CA_PEM
    host_ek_pem=$QG_EK_PEM
    ctrl=$QG_CTRL
    ;;
platform)
    command -v jq >/dev/null || tc_skip "jq not installed"
    T=$TC_BIN
    lab_coordinator_start
    lab_node_start n1
    lab_node_wait n1 trusted 60 || tc_fail "node n1 not trusted"
    # The coordinator records the VM only after it verified the host AK's certification of the
    # vTPM CA key, that the CA certificate is for that key, the EK certificate under it and
    # credential activation in the vTPM.
    t0=$(qg_now_ms)
    $T vm create vm1 --node n1 --tenant t1 --mode qemu --json >"$TC_TMP/vm.json" ||
        tc_fail "trustcloud vm create"
    vm_create_ms=$(($(qg_now_ms) - t0))
    ctrl=$(jq -r '.ctrl_path // empty' "$TC_TMP/vm.json")
    [ -n "$ctrl" ] || { cat "$TC_TMP/vm.json" >&2; tc_fail "vm create returned no ctrl_path"; }
    [ -S "$ctrl" ] || tc_fail "no control socket at $ctrl"
    # The agent's swtpm ends when QEMU disconnects; should the guest never connect, it must not
    # outlive the test either.
    vtpm_pid=$(cat "$(lab_vm_dir n1 vm1)/swtpm.pid" 2>/dev/null || true)
    if [ -n "$vtpm_pid" ]; then
        TC_PIDS+=("$vtpm_pid")
        echo "$vtpm_pid" >>"$LAB_PIDFILE"
    fi
    $T vm show vm1 --json >"$TC_TMP/vm_show.json" || tc_fail "trustcloud vm show"
    jq -e '.kind == "vm" and .host == "n1" and .tenant == "t1" and .state == "enrolled"
        and .host_state == "trusted"' "$TC_TMP/vm_show.json" >/dev/null ||
        { cat "$TC_TMP/vm_show.json" >&2; tc_fail "vm show: not an enrolled VM of t1 on n1"; }
    # The host's vTPM CA certificate, as its agent keeps it.
    ca_der=$LAB_DIR/n1/state/vtpm_ca.crt
    [ -s "$ca_der" ] || tc_fail "node n1 has no vTPM CA certificate ($ca_der)"
    ca_pem=$TC_TMP/vtpm_ca.pem
    openssl x509 -inform DER -in "$ca_der" -out "$ca_pem" || tc_fail "vTPM CA certificate"
    host_ek_pem=
    ;;
esac

# The initramfs carries the host's vTPM CA certificate, so the guest checks the chain itself.
t0=$(qg_now_ms)
QG_INITRD=$TC_TMP/initrd.cpio
QG_FILES="$ca_pem:etc/vtpm_ca.pem" qg_initramfs "$QG_INITRD" "$TC_SRC/tests/data/qemu/init" \
    tpm2_nvread tpm2_readpublic openssl || tc_fail "initramfs"
initrd_ms=$(($(qg_now_ms) - t0))

console=$TC_TMP/console.log
if ! qg_boot "$ctrl" "$console" "${QG_TIMEOUT:-120}"; then
    qg_show_console "$console"
    tc_fail "guest did not power off cleanly ($QG_EXIT after $QG_BOOT_MS ms)"
fi
if qg_console_text "$console" | grep "^TC-GUEST: FAIL" >/dev/null; then
    qg_show_console "$console"
    tc_fail "the guest reported a failure"
fi
qg_console_text "$console" | grep "^TC-GUEST: tpm0 present: 2$" >/dev/null ||
    { qg_show_console "$console"; tc_fail "the guest saw no TPM 2.0 at /dev/tpm0"; }
qg_console_text "$console" | grep "^TC-GUEST: ek certificate chains to the host's vTPM CA: OK$" \
    >/dev/null || { qg_show_console "$console"; tc_fail "the guest did not verify its EK chain"; }

# The certificate as the guest read it.
qg_extract "$console" "TC EK CERTIFICATE" | base64 -d >"$TC_TMP/guest_ekcert.der" 2>/dev/null
qg_extract "$console" "TC EK PUBLIC KEY" | base64 -d >"$TC_TMP/guest_ek.der" 2>/dev/null
[ -s "$TC_TMP/guest_ekcert.der" ] || { qg_show_console "$console"; tc_fail "no EK certificate"; }
[ -s "$TC_TMP/guest_ek.der" ] || { qg_show_console "$console"; tc_fail "no EK public key"; }
openssl x509 -inform DER -in "$TC_TMP/guest_ekcert.der" -out "$TC_TMP/guest_ekcert.pem" ||
    tc_fail "the guest's EK certificate does not parse"

# 1. It chains to the vTPM CA certificate.
openssl verify -CAfile "$ca_pem" "$TC_TMP/guest_ekcert.pem" >"$TC_TMP/verify.out" 2>&1 ||
    { cat "$TC_TMP/verify.out" >&2; tc_fail "the guest's EK certificate does not chain to the vTPM CA"; }
# ... and to no other CA (the check above can fail).
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TC_TMP/other.key" 2>/dev/null
openssl req -x509 -new -key "$TC_TMP/other.key" -subj "/CN=other CA" -days 1 \
    -out "$TC_TMP/other.pem" 2>/dev/null
if openssl verify -CAfile "$TC_TMP/other.pem" "$TC_TMP/guest_ekcert.pem" >/dev/null 2>&1; then
    tc_fail "the EK certificate verifies under an unrelated CA"
fi

# 2. It certifies the EK the guest's TPM holds, which is the EK the host provisioned.
cert_key=$(openssl x509 -in "$TC_TMP/guest_ekcert.pem" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum)
guest_key=$(openssl pkey -pubin -inform DER -in "$TC_TMP/guest_ek.der" -outform DER | sha256sum)
[ "$cert_key" = "$guest_key" ] || tc_fail "the EK certificate is not for the guest TPM's EK"
if [ -n "$host_ek_pem" ]; then
    host_key=$(openssl pkey -pubin -in "$host_ek_pem" -outform DER | sha256sum)
    [ "$guest_key" = "$host_key" ] || tc_fail "the guest's EK is not the one the host provisioned"
fi

uptime=$(qg_console_text "$console" | sed -n 's/^TC-GUEST: userspace up at \([0-9.]*\) s$/\1/p')
echo "kernel: $(cat "$QG_CACHE/vmlinuz.pkg" 2>/dev/null || echo "$QG_KERNEL") (ready in ${kernel_ms} ms)"
echo "initramfs: $(($(stat -c %s "$QG_INITRD") / 1024)) KiB, built in ${initrd_ms} ms"
[ -z "${vm_create_ms:-}" ] || echo "vm create (vTPM with EK certificate, verified): ${vm_create_ms} ms"
echo "boot: ${QG_BOOT_MS} ms from QEMU start to power-off (guest userspace at ${uptime:-?} s uptime)"
tc_pass "QEMU guest (TCG) read its vTPM EK certificate (vTPM: $mode) and verified its chain to the host's vTPM CA itself; the host checked the chain and the EK"
