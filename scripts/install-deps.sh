#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian 12 packages trustcloud needs to build, test and run its demo.
# Idempotent: installs only what is missing; needs root when something is missing.
set -eu

PKGS="build-essential cmake pkg-config clang-14 libclang-rt-14-dev
libtss2-dev tpm2-tools swtpm swtpm-tools libtpms-dev
libssl-dev openssl libcmocka-dev libjansson-dev libevent-dev
libcurl4-openssl-dev libsqlite3-dev libinih-dev libpq-dev postgresql-15
python3 iproute2 procps curl xxd jq
qemu-system-x86 busybox-static cpio
libvirt-dev libvirt-daemon-system libvirt-clients ovmf"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    exit 0
fi

echo "install-deps: installing:$missing"
if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages and not root; run as root: apt-get install$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "install-deps: done"
