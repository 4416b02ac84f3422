# SPDX-License-Identifier: Apache-2.0
# Real QEMU guests on a vTPM, for tests and the demo: Debian's stock kernel (fetched once with
# apt-get download and cached), a small initramfs built here from busybox-static plus a few host
# binaries with their shared libraries, and a TCG (never KVM) boot through SeaBIOS with a swtpm
# attached as `-tpmdev emulator`. Source it after tests/lib/common.sh (or lab.sh):
#   . "$TC_SRC/tests/lib/qemu_guest.sh"
#
#   qg_need                         skip (exit 77) unless qemu-system-x86_64 and busybox exist
#   qg_kernel                       sets QG_KERNEL (a bzImage) from QG_CACHE, fetching Debian's
#                                   kernel package once; returns 1 with QG_ERROR when it can't
#   qg_modules NAME...              extracts kernel modules (e.g. virtio_console, which Debian
#                                   builds as a module) from the cached kernel package into
#                                   QG_CACHE/modules; sets QG_MODULE_FILES ("SRC:lib/modules/NAME.ko"
#                                   for QG_FILES, in the order given: load them in that order)
#   qg_initramfs OUT INIT [BIN...]  a newc cpio: INIT as /init, busybox with its applets, each BIN
#                                   (e.g. tpm2_nvread) with the libraries ldd resolves, the loader
#                                   and the tpm2-tss device TCTI (loaded with dlopen, so ldd misses it)
#   qg_vtpm_selfmade DIR            a vTPM made without the platform: swtpm provisioned over a short
#                                   TCP run (ECC EK at 0x81010002, certificate from a CA made here
#                                   in NV 0x01c0000a), then started for QEMU on a UnixIO control
#                                   socket. Sets QG_CTRL (socket), QG_CA_PEM, QG_EK_PEM.
#   qg_boot CTRL CONSOLE [SECONDS]  boots the guest with the vTPM whose control socket is CTRL;
#                                   serial console to the file CONSOLE; kills QEMU after SECONDS
#                                   (default QG_TIMEOUT or 120). Sets QG_BOOT_MS and QG_EXIT
#                                   ("poweroff", "timeout" or "exit N"). Returns 0 after a poweroff.
#   qg_start CTRL CONSOLE [INITRD]  starts the same guest in the background (QG_QEMU_ARGS: extra
#                                   QEMU arguments, e.g. a virtio-serial port); sets QG_PID
#   qg_extract CONSOLE NAME         prints the base64 body between "-----BEGIN NAME-----" and
#                                   "-----END NAME-----" lines of the console (CRs and kernel
#                                   messages dropped)
# Environment: QG_CACHE (default $TC_BUILD/qemu-cache), QG_KERNEL_PKG (a linux-image package name,
# default: the one linux-image-amd64 depends on), QG_KERNEL (use this bzImage, fetch nothing),
# QG_MEM (MiB, default 256), QG_APPEND (extra kernel parameters).

: "${TC_BUILD:=$TC_SRC/build}"
: "${QG_CACHE:=$TC_BUILD/qemu-cache}"
: "${QG_MEM:=256}"
: "${QG_TIMEOUT:=120}"
QG_QEMU=${QG_QEMU:-qemu-system-x86_64}
QG_BUSYBOX=${QG_BUSYBOX:-/bin/busybox}

qg_need() {
    command -v "$QG_QEMU" >/dev/null || tc_skip "$QG_QEMU not installed (scripts/install-deps.sh)"
    # Only the static busybox runs in an initramfs without a libc; the dynamic one would too
    # with its libraries, but the package that ships it is the static one.
    if [ ! -x "$QG_BUSYBOX" ] || ldd "$QG_BUSYBOX" >/dev/null 2>&1; then
        tc_skip "a static busybox is not installed (busybox-static)"
    fi
    command -v cpio >/dev/null || command -v python3 >/dev/null ||
        tc_skip "neither cpio nor python3 to write the initramfs"
}

# The versioned kernel package to fetch: QG_KERNEL_PKG, else the one the linux-image-amd64
# meta-package depends on now, else the newest linux-image-6.1.0-N-amd64 apt knows.
qg_kernel_pkg() {
    local pkg=${QG_KERNEL_PKG:-}
    if [ -z "$pkg" ]; then
        pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
            sed -n 's/^ *Depends: <\{0,1\}\(linux-image-[0-9][^>]*\)>\{0,1\}$/\1/p' | head -1)
    fi
    if [ -z "$pkg" ]; then
        pkg=$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64$' 2>/dev/null |
            awk '{print $1}' | sort -V | tail -1)
    fi
    [ -n "$pkg" ] && printf '%s\n' "$pkg"
}

# Sets QG_KERNEL. The cache keeps the .deb and the bzImage it holds (QG_CACHE/vmlinuz, the package
# name in QG_CACHE/vmlinuz.pkg), so only the first run downloads (~70 MB) and unpacks (~4 s).
# A lock keeps two runs sharing a cache from unpacking over each other.
qg_kernel() {
    QG_ERROR=
    if [ -n "${QG_KERNEL:-}" ]; then
        [ -r "$QG_KERNEL" ] && return 0
        QG_ERROR="QG_KERNEL=$QG_KERNEL is not readable"
        return 1
    fi
    local rc=0
    mkdir -p "$QG_CACHE" || { QG_ERROR="cannot create $QG_CACHE"; return 1; }
    (
        flock -w 600 9 || exit 3
        [ -s "$QG_CACHE/vmlinuz" ] && exit 0
        # A machine whose package lists were cleaned knows no kernel package: as root, fetch
        # the lists once (QG_APT_UPDATE=0 forbids it).
        if ! pkg=$(qg_kernel_pkg) && [ "$(id -u)" = 0 ] && [ "${QG_APT_UPDATE:-1}" != 0 ]; then
            apt-get update -qq >"$QG_CACHE/update.log" 2>&1
            pkg=$(qg_kernel_pkg)
        fi
        [ -n "$pkg" ] || exit 4
        command -v apt-get >/dev/null || exit 5
        cd "$QG_CACHE" || exit 3
        deb=$(ls "$pkg"_*.deb 2>/dev/null | head -1)
        if [ -z "$deb" ]; then
            # apt-get download as root warns that the _apt sandbox user cannot write here.
            apt-get download "$pkg" >download.log 2>&1 || exit 6
            deb=$(ls "$pkg"_*.deb 2>/dev/null | head -1)
            [ -n "$deb" ] || exit 6
        fi
        # Only the bzImage: the modules (hundreds of MB unpacked) are not needed, since the
        # kernel has the TPM TIS driver, devtmpfs and securityfs built in.
        dpkg-deb --fsys-tarfile "$deb" | tar -x --wildcards -O './boot/vmlinuz-*' >vmlinuz.tmp &&
            [ -s vmlinuz.tmp ] || { rm -f vmlinuz.tmp; exit 7; }
        echo "$pkg" >vmlinuz.pkg
        mv vmlinuz.tmp vmlinuz
    ) 9>"$QG_CACHE/.lock" || rc=$?
    case $rc in
    0) QG_KERNEL=$QG_CACHE/vmlinuz; return 0 ;;
    3) QG_ERROR="cannot lock or enter $QG_CACHE" ;;
    4) QG_ERROR="apt knows no linux-image package (run apt-get update)" ;;
    5) QG_ERROR="apt-get not available to fetch a kernel" ;;
    6) QG_ERROR="apt-get download $(qg_kernel_pkg) failed: $(tail -1 "$QG_CACHE/download.log" 2>/dev/null)" ;;
    *) QG_ERROR="no /boot/vmlinuz-* in the kernel package" ;;
    esac
    return 1
}

# qg_modules NAME...: after qg_kernel (which keeps the .deb unless QG_KERNEL was given).
qg_modules() {
    local deb name dir=$QG_CACHE/modules path
    QG_MODULE_FILES=
    deb=$(ls "$QG_CACHE"/"$(cat "$QG_CACHE/vmlinuz.pkg" 2>/dev/null)"_*.deb 2>/dev/null | head -1)
    [ -n "$deb" ] || { QG_ERROR="no cached kernel package for modules"; return 1; }
    mkdir -p "$dir"
    for name in "$@"; do
        if [ ! -s "$dir/$name.ko" ]; then
            path=$(dpkg-deb -c "$deb" | awk '{print $NF}' | grep "/$name\.ko$" | head -1)
            [ -n "$path" ] || { QG_ERROR="no module $name in $deb"; return 1; }
            dpkg-deb --fsys-tarfile "$deb" | tar -x -O "$path" >"$dir/$name.ko.tmp" &&
                mv "$dir/$name.ko.tmp" "$dir/$name.ko" || { QG_ERROR="cannot extract $name"; return 1; }
        fi
        QG_MODULE_FILES="$QG_MODULE_FILES $dir/$name.ko:lib/modules/$name.ko"
    done
}

# qg_copy_with_libs ROOT FILE: FILE (symlinks resolved) into ROOT at the same path, and every
# library ldd resolves for it into ROOT/lib, the dynamic loader at its absolute path.
qg_copy_with_libs() {
    local root=$1 file=$2 real lib
    real=$(readlink -f "$file")
    mkdir -p "$root$(dirname "$file")"
    cp "$real" "$root$file"
    while read -r lib; do
        [ -n "$lib" ] || continue
        case $lib in
        */ld-linux*) mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib" ;;
        esac
        cp -L -n "$lib" "$root/lib/" 2>/dev/null || true
    done < <(ldd "$real" 2>/dev/null | awk '/=> \//{print $3} /^\t\//{print $1}')
}

# qg_initramfs OUT INIT [BIN...]
qg_initramfs() {
    local out=$1 init=$2 root bin tcti applet
    shift 2
    root=$(mktemp -d "$TC_TMP/initramfs.XXXXXX")
    mkdir -p "$root"/{bin,sbin,lib,lib64,dev,proc,sys,tmp,etc}
    cp "$QG_BUSYBOX" "$root/bin/busybox"
    for applet in $("$QG_BUSYBOX" --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
    done
    install -m 0755 "$init" "$root/init"
    # QG_FILES="SRC:DEST ...": extra files for the guest (e.g. a CA certificate under /etc).
    local spec
    for spec in ${QG_FILES:-}; do
        mkdir -p "$root/$(dirname "${spec#*:}")"
        cp "${spec%%:*}" "$root/${spec#*:}" || return 1
    done
    for bin in "$@"; do
        bin=$(command -v "$bin") || { echo "qg_initramfs: $bin not found" >&2; return 1; }
        qg_copy_with_libs "$root" "$bin"
    done
    # tpm2-tss loads its TCTI with dlopen: ldd never sees it.
    for tcti in /lib/x86_64-linux-gnu/libtss2-tcti-device.so.0 \
        /usr/lib/x86_64-linux-gnu/libtss2-tcti-device.so.0; do
        if [ -e "$tcti" ]; then
            qg_copy_with_libs "$root" "$tcti"
            cp -L "$tcti" "$root/lib/"
            break
        fi
    done
    # Uncompressed: SeaBIOS hands it over by fw_cfg DMA, and not making the TCG guest inflate
    # it saves more than the extra megabytes cost.
    if command -v cpio >/dev/null; then
        (cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) >"$out"
    else
        python3 - "$root" "$out" <<'PY'
import os, stat, sys
root, out = sys.argv[1], sys.argv[2]
ino = 1
def entry(f, name, st, data):
    global ino
    mode = st.st_mode if st else 0
    hdr = "070701" + "".join("%08X" % v for v in (
        ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0))
    ino += 1
    f.write(hdr.encode() + name.encode() + b"\0")
    f.write(b"\0" * ((4 - (110 + len(name) + 1) % 4) % 4))
    f.write(data)
    f.write(b"\0" * ((4 - len(data) % 4) % 4))
with open(out, "wb") as f:
    for d, dirs, files in os.walk(root):
        dirs.sort()
        for n in sorted(dirs) + sorted(files):
            p = os.path.join(d, n)
            name = os.path.relpath(p, root)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                data = os.readlink(p).encode()
            elif stat.S_ISREG(st.st_mode):
                data = open(p, "rb").read()
            else:
                data = b""
            entry(f, name, st, data)
    entry(f, "TRAILER!!!", None, b"")
PY
    fi
    rm -rf "$root"
}

# qg_vtpm_selfmade DIR
qg_vtpm_selfmade() {
    local dir=$1 port tcti state=$1/state pid ext
    command -v tpm2_createek >/dev/null || tc_skip "tpm2-tools not installed"
    mkdir -p "$state"
    # The CA: an ECC P-256 key and a self-signed certificate, as the host's vTPM CA would be.
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$dir/ca.key" -subj "/CN=self-made vTPM CA" -days 3650 \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
        -out "$dir/ca.pem" 2>/dev/null
    # A TCP-mode run on the state directory to create and certify the EK.
    for _ in 1 2 3 4 5; do
        port=$(tc_free_port_pair)
        if swtpm socket --tpm2 --server "type=tcp,port=$port,bindaddr=127.0.0.1" \
            --ctrl "type=tcp,port=$((port + 1)),bindaddr=127.0.0.1" --tpmstate "dir=$state" \
            --flags not-need-init,startup-clear --pid "file=$dir/prov.pid" \
            --log "file=$dir/prov.log" -d 2>>"$dir/prov.err"; then
            break
        fi
        port=
    done
    [ -n "$port" ] || tc_fail "could not start swtpm to provision the self-made vTPM"
    for _ in $(seq 100); do [ -s "$dir/prov.pid" ] && break; sleep 0.02; done
    pid=$(cat "$dir/prov.pid")
    TC_PIDS+=("$pid")
    tcti="swtpm:host=127.0.0.1,port=$port"
    {
        tpm2_createek -T "$tcti" -G ecc -c "$dir/ek.ctx" -u "$dir/ek.pub" &&
            tpm2_evictcontrol -T "$tcti" -C o -c "$dir/ek.ctx" 0x81010002 &&
            tpm2_readpublic -T "$tcti" -c 0x81010002 -f pem -o "$dir/ek.pem"
    } >"$dir/prov.out" 2>&1 || { cat "$dir/prov.out" >&2; tc_fail "EK creation failed"; }
    ext=$dir/ek.ext
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,keyEncipherment\n' >"$ext"
    openssl x509 -new -subj "/CN=self-made vTPM EK" -force_pubkey "$dir/ek.pem" \
        -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -days 365 -extfile "$ext" -outform DER \
        -out "$dir/ek.der" 2>"$dir/prov.out" || { cat "$dir/prov.out" >&2; tc_fail "EK certificate"; }
    {
        tpm2_nvdefine -T "$tcti" 0x01c0000a -C p -s "$(stat -c %s "$dir/ek.der")" \
            -a "ppwrite|ppread|ownerread|authread|no_da|platformcreate" &&
            tpm2_nvwrite -T "$tcti" 0x01c0000a -C p -i "$dir/ek.der"
    } >"$dir/prov.out" 2>&1 || { cat "$dir/prov.out" >&2; tc_fail "EK certificate NV write"; }
    # An orderly TPM shutdown, so the state swtpm leaves on disk is the one QEMU finds.
    swtpm_ioctl --tcp "127.0.0.1:$((port + 1))" -s >/dev/null 2>&1 || kill "$pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -0 "$pid" 2>/dev/null && tc_fail "provisioning swtpm did not stop"
    # QEMU mode: only the control channel; QEMU passes the data channel over it and sends Init.
    QG_CTRL=$dir/ctrl.sock
    swtpm socket --tpm2 --ctrl "type=unixio,path=$QG_CTRL" --tpmstate "dir=$state" \
        --pid "file=$dir/swtpm.pid" --log "file=$dir/swtpm.log" -d 2>"$dir/swtpm.err" ||
        { cat "$dir/swtpm.err" >&2; tc_fail "could not start swtpm for QEMU"; }
    for _ in $(seq 100); do [ -s "$dir/swtpm.pid" ] && [ -S "$QG_CTRL" ] && break; sleep 0.02; done
    TC_PIDS+=("$(cat "$dir/swtpm.pid")")
    [ -S "$QG_CTRL" ] || tc_fail "swtpm made no control socket"
    QG_CA_PEM=$dir/ca.pem
    QG_EK_PEM=$dir/ek.pem
}

qg_now_ms() { date +%s%3N; }

# qg_boot CTRL CONSOLE [SECONDS] [INITRD]: INITRD defaults to QG_INITRD.
qg_boot() {
    local ctrl=$1 console=$2 limit=${3:-$QG_TIMEOUT} initrd=${4:-$QG_INITRD} pid t0 rc timed_out
    : >"$console"
    t0=$(qg_now_ms)
    # -nodefaults: no NIC (no iPXE ROM to load), no VGA, no parallel port; the serial console is
    # the file. -no-reboot turns the guest's panic (panic=-1) into a QEMU exit as well.
    "$QG_QEMU" -accel tcg -machine pc -m "$QG_MEM" -smp 1 -nodefaults -nographic -no-reboot \
        -monitor none -serial "file:$console" \
        -kernel "$QG_KERNEL" -initrd "$initrd" \
        -append "console=ttyS0 panic=-1 quiet loglevel=3 ${QG_APPEND:-}" \
        -chardev "socket,id=chrtpm,path=$ctrl" -tpmdev emulator,id=tpm0,chardev=chrtpm \
        -device tpm-tis,tpmdev=tpm0 \
        </dev/null >"$console.qemu" 2>&1 &
    pid=$!
    TC_PIDS+=("$pid")
    [ -z "${LAB_PIDFILE:-}" ] || echo "$pid" >>"$LAB_PIDFILE"
    timed_out=0
    while kill -0 "$pid" 2>/dev/null; do
        if [ $(($(qg_now_ms) - t0)) -ge $((limit * 1000)) ]; then
            timed_out=1
            kill "$pid" 2>/dev/null
            sleep 1
            kill -9 "$pid" 2>/dev/null
            break
        fi
        sleep 0.2
    done
    rc=0
    wait "$pid" 2>/dev/null || rc=$?
    QG_BOOT_MS=$(($(qg_now_ms) - t0))
    if [ "$timed_out" = 1 ]; then
        QG_EXIT=timeout
        return 1
    fi
    if [ "$rc" = 0 ] && qg_console_text "$console" | grep "^TC-GUEST: poweroff$" >/dev/null; then
        QG_EXIT=poweroff
        return 0
    fi
    QG_EXIT="exit $rc"
    return 1
}

# qg_start CTRL CONSOLE [INITRD]: the guest of qg_boot, left running (the caller stops it by
# QG_PID, which is in TC_PIDS for the exit trap as well).
qg_start() {
    local ctrl=$1 console=$2 initrd=${3:-$QG_INITRD}
    : >"$console"
    # shellcheck disable=SC2086 # QG_QEMU_ARGS is a list of arguments
    "$QG_QEMU" -accel tcg -machine pc -m "$QG_MEM" -smp 1 -nodefaults -nographic -no-reboot \
        -monitor none -serial "file:$console" \
        -kernel "$QG_KERNEL" -initrd "$initrd" \
        -append "console=ttyS0 panic=-1 quiet loglevel=3 ${QG_APPEND:-}" \
        -chardev "socket,id=chrtpm,path=$ctrl" -tpmdev emulator,id=tpm0,chardev=chrtpm \
        -device tpm-tis,tpmdev=tpm0 ${QG_QEMU_ARGS:-} \
        </dev/null >"$console.qemu" 2>&1 &
    QG_PID=$!
    TC_PIDS+=("$QG_PID")
    [ -z "${LAB_PIDFILE:-}" ] || echo "$QG_PID" >>"$LAB_PIDFILE"
}

# qg_console_text CONSOLE: the console without CRs and the terminal control sequences SeaBIOS
# and the kernel print.
qg_console_text() {
    tr -d '\r' <"$1" | sed -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1b[A-Za-z]//g'
}

# qg_extract CONSOLE NAME
qg_extract() {
    qg_console_text "$1" | awk -v b="-----BEGIN $2-----" -v e="-----END $2-----" '
        $0 == b { on = 1; next }
        $0 == e { on = 0 }
        on && /^[A-Za-z0-9+\/=]+$/ { print }'
}

# Prints the guest console (for failures), at most the last 80 lines.
qg_show_console() {
    echo "---- guest console ($1) ----" >&2
    qg_console_text "$1" | tail -80 >&2
    [ -s "$1.qemu" ] && { echo "---- qemu ----" >&2; tail -20 "$1.qemu" >&2; }
    echo "----" >&2
}
