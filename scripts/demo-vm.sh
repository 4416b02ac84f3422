#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The real-guest demo (`make demo-vm`): a coordinator on SQLite and one node (a trustcloud-agent
# on a software TPM) whose agent runs a real guest through libvirt (QEMU under TCG, Debian's
# kernel, a busybox initramfs with trustcloud-guest, ima_policy=tcb). The guest's vTPM is rooted
# in the node's TPM; its guest agent enrolls its AK by credential activation and answers in the
# node's batch. The VM turns trusted; a program outside the tenant's policy is run inside it and
# the VM turns untrusted with the file named; then every process and domain is removed.
# Usage: scripts/demo-vm.sh [PATH/TO/trustcloud]  (needs root for libvirtd, as the tests do)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
TC_BIN=${1:-$root/build/trustcloud}
TC_BIN=$(cd "$(dirname "$TC_BIN")" && pwd)/$(basename "$TC_BIN")
export TC_SRC=$root TC_BIN TC_BUILD=$(dirname "$TC_BIN")
export TC_FIXTURES=${TC_FIXTURES:-$root/../shared/fixtures}
[ -f "$TC_FIXTURES/eventlog/event-gce-ubuntu-2104-log.bin" ] ||
    { echo "demo-vm: fixtures not found at $TC_FIXTURES (set TC_FIXTURES)" >&2; exit 2; }
start=$(date +%s)
. "$root/tests/lib/lab.sh"
. "$root/tests/lib/qemu_guest.sh"
. "$root/tests/lib/libvirt.sh"
tc_skip() { echo "demo-vm: $*" >&2; exit 2; }
bold=$'\033[1m' off=$'\033[0m'
[ -t 1 ] || bold='' off=''
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$off"; }
say() { printf '   %s\n' "$*"; }
run() {
    printf '$ %s\n' "$*" | sed "s|$TC_BIN|trustcloud|g; s|$LAB_DIR/||g; s|$TC_TMP/||g"
    "$@"
}
tc() { run "$TC_BIN" "$@"; }

step "1. libvirt, a guest kernel (Debian's 6.1) and an initramfs with trustcloud-guest"
gl_need
qg_kernel || tc_skip "no guest kernel: $QG_ERROR"
qg_modules virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci \
    virtio_console button evdev || tc_skip "no modules for the guest: $QG_ERROR"
gl_guest_bin
gl_boot_files "$root/tests/data/qemu/guest_attest_init"
say "kernel $(basename "$QG_KERNEL"), initramfs $(du -h "$GL_BOOT/initrd" | cut -f1)"

step "2. A coordinator (2 s interval) and a node whose agent drives libvirt"
INTERVAL_S=2
LAB_INTERVAL=2s lab_coordinator_start request_timeout=6s unreachable_after=1
lab_node_prepare n1
lab_policies_from n1
printf 'libvirt_uri = %s\nguest_timeout = 3s\n' "$GL_URI" >>"$LAB_DIR/n1/agent.conf"
chmod 0711 "$LAB_DIR/n1" "$LAB_DIR/n1/state"
lab_node_run n1
tc node wait n1 --state trusted --timeout 60

step "3. The tenant's runtime policy: the guest image's files"
gl_runtime_policy "$TC_TMP/guest-rt.json"
tc policy add --name guest-rt --kind runtime --file "$TC_TMP/guest-rt.json"
tc policy assign guest-rt --tenant acme

vm=demo-vm
GL_DOMS=("trustcloud-n1-$vm")
trap gl_cleanup EXIT
step "4. The VM: a vTPM rooted in n1's TPM, a libvirt domain (TCG, SeaBIOS), started"
tc vm create $vm --node n1 --tenant acme --kernel "$GL_BOOT/vmlinuz" --initrd "$GL_BOOT/initrd" \
    --cmdline "console=ttyS0 panic=-1 quiet loglevel=3 rootfstype=ramfs ima_policy=tcb" --memory 256
t0=$(date +%s)
tc vm start $vm
say "booting; its guest agent enrolls its AK through n1 (credential activation), then answers in n1's rounds"
tc vm wait $vm --state trusted --timeout 180
say "trusted $(($(date +%s) - t0)) s after vm start"
tc vm show $vm

step "5. A program outside the tenant's policy runs inside the guest"
gl_cmd $vm "run /usr/local/bin/miner"
say "(the guest ran /usr/local/bin/miner; its kernel measured it)"
tc vm wait $vm --state untrusted --timeout 10
tc vm show $vm
tc node show n1 | head -3

step "6. Cleaning up"
tc vm delete $vm
say "demo-vm done in $(($(date +%s) - start)) s; every process and domain it started is gone"
