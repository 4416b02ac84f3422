#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Software MakeCredential (trustcloud credential make) against a real TPM's ActivateCredential
# (swtpm + tpm2_activatecredential), for RSA and ECC EKs, compared with tpm2_makecredential.
. "$TC_SRC/tests/lib/common.sh"
command -v tpm2_activatecredential >/dev/null || tc_skip "tpm2-tools not installed"
cd "$TC_TMP"
tc_start_swtpm cred
export TPM2TOOLS_TCTI=$TC_TCTI_cred

activate() { # CREDFILE OUT
    tpm2_startauthsession --policy-session -S session.ctx >/dev/null
    tpm2_policysecret -S session.ctx -c e >/dev/null
    local rc=0
    tpm2_activatecredential -c ak.ctx -C ek.ctx -i "$1" -o "$2" -P "session:session.ctx" \
        >/dev/null 2>&1 || rc=$?
    tpm2_flushcontext session.ctx >/dev/null
    tpm2_flushcontext -t >/dev/null
    return $rc
}

secret=$(openssl rand -hex 32)
printf '%s' "$secret" | xxd -r -p > secret.bin
for alg in rsa ecc; do
    tpm2_flushcontext -t >/dev/null
    tpm2_createek -c ek.ctx -G $alg -u ek.pub >/dev/null
    tpm2_createak -C ek.ctx -c ak.ctx -G ecc -g sha256 -s ecdsa -u ak.pub -n ak.name >/dev/null
    tpm2_flushcontext -t >/dev/null
    "$TC_BIN" credential make --ek-pub ek.pub --name ak.name --secret "$secret" --out tc.cred
    # The reference implementation's output has the same layout and size.
    tpm2_makecredential --tcti none -u ek.pub -s secret.bin -n "$(xxd -p -c 256 ak.name)" \
        -o ref.cred >/dev/null
    [ "$(stat -c %s tc.cred)" = "$(stat -c %s ref.cred)" ] || tc_fail "$alg: size differs from tpm2_makecredential"
    activate tc.cred out.bin || tc_fail "$alg: TPM refused trustcloud's credential"
    cmp -s out.bin secret.bin || tc_fail "$alg: activated secret differs"
    activate ref.cred out2.bin || tc_fail "$alg: reference credential refused"
    # Bound to the AK's name: a credential made for another name must not activate.
    printf '000b%064x' 1 | xxd -r -p > other.name
    "$TC_BIN" credential make --ek-pub ek.pub --name other.name --secret "$secret" --out bad.cred
    if activate bad.cred out3.bin; then tc_fail "$alg: credential for another name activated"; fi
    tc_pass "$alg EK: credential activates, wrong name refused"
done
