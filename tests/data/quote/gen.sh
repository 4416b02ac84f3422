#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Regenerates the real quotes in this folder with tpm2-tools 5.4 against a fresh swtpm.
# Usage: bash tests/data/quote/gen.sh   (needs swtpm, tpm2-tools, openssl, xxd)
set -euo pipefail
OUT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TC_SRC=$(cd "$OUT/../../.." && pwd)
. "$TC_SRC/tests/lib/common.sh"

tc_start_swtpm GEN
export TPM2TOOLS_TCTI=$TC_TCTI_GEN
cd "$TC_TMP"
flush() { tpm2_flushcontext -t >/dev/null; }

# SPKI DER prefixes for EC keys (SEQUENCE{SEQUENCE{ecPublicKey, curve}, BIT STRING}), used for SM2,
# which tpm2-tools cannot export as PEM.
SM2_SPKI_PREFIX=3059301306072a8648ce3d020106082a811ccf5501822d034200

# Non-zero PCR values so a quote's digest depends on every byte of them.
tpm2_pcrextend "16:sha256=$(printf 'trustcloud-16' | sha256sum | cut -c1-64),sha1=$(printf 'trustcloud-16' | sha1sum | cut -c1-40)"
tpm2_pcrextend "23:sha256=$(printf 'trustcloud-23' | sha256sum | cut -c1-64)"

tpm2_createek -c ek.ctx -G ecc -u "$OUT/ek.pub" >/dev/null
tpm2_evictcontrol -c ek.ctx 0x81010001 >/dev/null
flush

# name key-alg sign-alg hash pcr-list persistent-handle
while read -r name galg salg hash sel handle; do
    tpm2_createak -C 0x81010001 -c ak.ctx -G "$galg" -g "$hash" -s "$salg" -u "$OUT/$name.ak.pub" \
        -n "$OUT/$name.ak.name" -q "$OUT/$name.ak.qname" >/dev/null
    flush
    tpm2_evictcontrol -c ak.ctx "$handle" >/dev/null
    flush
    if [ "$salg" = sm2 ]; then
        xxd -p "$OUT/$name.ak.pub" | tr -d '\n' >pub.hex
        # TPM2B_PUBLIC of an SM2 AK: x and y are the last 2 x (2 + 32) bytes.
        x=$(tail -c 68 "$OUT/$name.ak.pub" | head -c 34 | tail -c 32 | xxd -p | tr -d '\n')
        y=$(tail -c 32 "$OUT/$name.ak.pub" | xxd -p | tr -d '\n')
        echo "${SM2_SPKI_PREFIX}04$x$y" | xxd -r -p >sm2.der
        openssl pkey -pubin -inform DER -in sm2.der -out "$OUT/$name.ak.pem"
    else
        tpm2_readpublic -c "$handle" -f pem -o "$OUT/$name.ak.pem" >/dev/null
    fi
    nonce=$(openssl rand -hex 20)
    echo "$nonce" >"$OUT/$name.nonce"
    tpm2_quote -c "$handle" -l "$sel" -q "$nonce" -m "$OUT/$name.msg" -s "$OUT/$name.sig" \
        -o "$OUT/$name.pcrs" -g "$hash" --scheme "$salg" >/dev/null
    echo "$sel" >"$OUT/$name.sel"
done <<'LIST'
ecc ecc ecdsa sha256 sha256:0,1,2,3,16,23+sha1:16 0x81010010
ecc384 ecc384 ecdsa sha384 sha384:0,16 0x81010011
rsa rsa rsassa sha256 sha256:0,1,2,3,4,5,6,7,8,9,16,23 0x81010012
rsapss rsa rsapss sha256 sha256:16,23+sha1:0,16 0x81010013
sm2 ecc_sm2 sm2 sha256 sha256:16 0x81010014
LIST

# Monotonicity: a second quote of the ecc AK later in the same boot, then one after a TPM reset
# (Shutdown(CLEAR), _TPM_Init, Startup(CLEAR): resetCount + 1).
sleep 0.1
tpm2_pcrextend "16:sha256=$(printf 'second' | sha256sum | cut -c1-64)"
nonce=$(openssl rand -hex 20)
echo "$nonce" >"$OUT/ecc.later.nonce"
tpm2_quote -c 0x81010010 -l sha256:0,1,2,3,16,23+sha1:16 -q "$nonce" -m "$OUT/ecc.later.msg" \
    -s "$OUT/ecc.later.sig" -o "$OUT/ecc.later.pcrs" -g sha256 >/dev/null
tpm2_shutdown -c
port=${TC_TCTI_GEN##*port=}
swtpm_ioctl --tcp "127.0.0.1:$((port + 1))" -i
tpm2_startup -c
nonce=$(openssl rand -hex 20)
echo "$nonce" >"$OUT/ecc.reboot.nonce"
tpm2_quote -c 0x81010010 -l sha256:0,1,2,3,16,23+sha1:16 -q "$nonce" -m "$OUT/ecc.reboot.msg" \
    -s "$OUT/ecc.reboot.sig" -o "$OUT/ecc.reboot.pcrs" -g sha256 >/dev/null

# A non-restricted signing key (must be rejected as an AK) and a decrypt key.
tpm2_create -C 0x81010001 -G ecc -u plain.pub -r plain.priv -a "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign" >/dev/null 2>&1 ||
    { tpm2_createprimary -C o -c prim.ctx >/dev/null; flush; tpm2_create -C prim.ctx -G ecc -u plain.pub -r plain.priv -a "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign" >/dev/null; }
flush
cp plain.pub "$OUT/unrestricted.ak.pub"
echo "regenerated into $OUT"
