# SPDX-License-Identifier: Apache-2.0
# Helpers for tests with libvirt guests (source after lab.sh and qemu_guest.sh).

GL_URI=qemu:///system
GL_DOMS=()
declare -A GL_PTS=() # domain -> its console pty (it does not change while the domain runs)

gl_up() { virsh -c "$GL_URI" version >/dev/null 2>&1; }

# libvirtd and virtlogd running (started when they are not), the external TPM backend there.
gl_need() {
    qg_need
    local b caps
    for b in virsh libvirtd virtlogd jq tpm2_nvread; do
        command -v "$b" >/dev/null || tc_skip "$b not installed (scripts/install-deps.sh)"
    done
    if ! gl_up; then
        if ! pgrep -x libvirtd >/dev/null; then
            [ "$(id -u)" = 0 ] || tc_skip "libvirtd is not running and starting it needs root"
            pgrep -x virtlogd >/dev/null || virtlogd -d || tc_fail "virtlogd does not start"
            libvirtd -d || tc_fail "libvirtd does not start"
        fi
        for _ in $(seq 300); do gl_up && break; sleep 0.1; done
        gl_up || tc_fail "libvirtd does not answer on $GL_URI"
    fi
    if ! pgrep -x virtlogd >/dev/null; then
        [ "$(id -u)" = 0 ] || tc_skip "virtlogd is not running and starting it needs root"
        virtlogd -d || tc_fail "virtlogd does not start"
    fi
    for _ in 1 2 3; do
        caps=$(virsh -c "$GL_URI" domcapabilities --virttype qemu 2>&1) && break
        sleep 1
    done
    grep -q "<domainCapabilities" <<<"$caps" || tc_fail "virsh domcapabilities: $caps"
    grep -q "<value>external</value>" <<<"$caps" || tc_skip "this libvirt has no external TPM backend"
}

# GL_GUEST: the guest agent for the initramfs (a sanitizer build's would carry the sanitizer
# runtime into the guest: the normal build's is taken when there is one).
gl_guest_bin() {
    GL_GUEST=$TC_BUILD/trustcloud-guest
    if grep -q '^TC_SANITIZE:BOOL=ON' "$TC_BUILD/CMakeCache.txt" 2>/dev/null &&
        [ -x "$TC_SRC/build/trustcloud-guest" ]; then
        GL_GUEST=$TC_SRC/build/trustcloud-guest
    fi
    [ -x "$GL_GUEST" ] || tc_fail "no trustcloud-guest at $GL_GUEST"
}

# gl_boot_files INIT: GL_BOOT/vmlinuz and GL_BOOT/initrd (busybox, the guest agent, tpm2-tools
# readers, the modules), readable by QEMU (user libvirt-qemu), which must also walk to the VMs.
gl_boot_files() {
    chmod 0711 "$TC_TMP" "$LAB_DIR"
    GL_BOOT=$TC_TMP/boot
    mkdir -p "$GL_BOOT"
    chmod 0755 "$GL_BOOT"
    cp "$QG_KERNEL" "$GL_BOOT/vmlinuz"
    QG_FILES="$GL_GUEST:usr/bin/trustcloud-guest $QG_MODULE_FILES" qg_initramfs "$GL_BOOT/initrd" \
        "$1" "$GL_GUEST" tpm2_nvread tpm2_readpublic || tc_fail "initramfs"
    chmod 0644 "$GL_BOOT/vmlinuz" "$GL_BOOT/initrd"
}

# Whatever happens, no domain of GL_DOMS outlives the test.
gl_cleanup() {
    local rc=$? d
    for d in "${GL_DOMS[@]}"; do
        virsh -c "$GL_URI" destroy "$d" >/dev/null 2>&1 || true
        virsh -c "$GL_URI" undefine --nvram "$d" >/dev/null 2>&1 || true
    done
    (exit "$rc")
    lab_cleanup
}

# gl_runtime_policy OUT: a Keylime-format runtime policy allowing every regular file of
# GL_BOOT/initrd under the path the guest sees it at (sha256), boot_aggregate excluded.
gl_runtime_policy() {
    local x=$TC_TMP/initrd.x
    rm -rf "$x"
    mkdir -p "$x"
    (cd "$x" && cpio -id --quiet <"$GL_BOOT/initrd") || tc_fail "cannot unpack the initramfs"
    python3 - "$x" "$1" <<'PY'
import hashlib, json, os, sys
root, out = sys.argv[1], sys.argv[2]
digests = {}
for d, _, files in os.walk(root):
    for n in files:
        p = os.path.join(d, n)
        if os.path.islink(p) or not os.path.isfile(p):
            continue
        h = hashlib.sha256(open(p, "rb").read()).hexdigest()
        digests["/" + os.path.relpath(p, root)] = [h]
json.dump({"meta": {"version": 1, "generator": 0}, "release": 0, "digests": digests,
           "excludes": ["^boot_aggregate$"], "keyrings": {}, "ima-buf": {},
           "ima": {"ignored_keyrings": [], "log_hash_alg": "sha1", "dm_policy": None},
           "verification-keys": ""}, open(out, "w"), indent=1)
PY
}

# gl_cmd VM "COMMAND ARGS": one command to the guest's /init over its serial console (the pty
# libvirt gives it), waiting for its acknowledgement on the console log.
gl_cmd() {
    local vm=$1 cmd=$2 dom=trustcloud-n1-$1 pts log before fd attempt
    log=$(lab_vm_dir n1 "$vm")/console.log
    before=$(qg_console_text "$log" 2>/dev/null | grep -c "^TC-GUEST: done ${cmd%% *}" || true)
    # QEMU reads the pty only while its other end is open (it polls for that): the end is
    # held open until the guest acknowledges; a write the pty refuses is tried again.
    for attempt in 1 2 3; do
        pts=${GL_PTS[$dom]:-}
        if [ ! -c "$pts" ]; then
            pts=$(virsh -c "$GL_URI" ttyconsole "$dom" 2>/dev/null | head -1 || true)
            if [ ! -c "$pts" ]; then
                echo "gl_cmd: no console pty for $dom yet (attempt $attempt)" >&2
                sleep 1
                continue
            fi
            GL_PTS[$dom]=$pts
        fi
        exec {fd}<>"$pts" || { GL_PTS[$dom]=; sleep 1; continue; }
        stty -F "$pts" raw -echo 2>/dev/null || true
        sleep 1
        if printf 'TCCMD %s\n' "$cmd" >&"$fd" 2>/dev/null; then
            for _ in $(seq 150); do
                if [ "$(qg_console_text "$log" 2>/dev/null | grep -c "^TC-GUEST: done ${cmd%% *}" || true)" -gt "$before" ]; then
                    exec {fd}>&-
                    return 0
                fi
                sleep 0.1
            done
        fi
        exec {fd}>&-
        echo "gl_cmd: '$cmd' to $vm not acknowledged (attempt $attempt)" >&2
        [ "$cmd" = start ] && break # never two guest agents
    done
    qg_show_console "$log"
    tc_fail "the guest of $vm did not do '$cmd'"
}

gl_wait_round() { sleep $((2 * ${INTERVAL_S:-1})); }
