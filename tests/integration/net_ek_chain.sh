#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# EK certificate chain validation against a freshly provisioned swtpm: swtpm_setup creates the EK
# and its certificate with a private local CA (root + intermediate); the certificate is read from
# NV like a verifier would receive it, and the PKI unit test's EK cases run on these files.
. "$TC_SRC/tests/lib/common.sh"
. "$TC_SRC/tests/lib/swtpm_setup.sh"

command -v swtpm_setup >/dev/null || tc_skip "swtpm_setup not installed"
command -v tpm2_nvread >/dev/null || tc_skip "tpm2-tools not installed"
pki_test="$TC_BUILD/tests/pki_test"
[ -x "$pki_test" ] || tc_skip "pki_test not built"

tc_start_swtpm_setup EK
ek="$TC_TMP/ek"
mkdir -p "$ek"
tpm2_nvread -T "$TC_TCTI_EK" 0x01c00002 -o "$ek/ek-rsa.der" 2>"$TC_TMP/nvread.log" ||
    tc_fail "tpm2_nvread of the RSA EK certificate: $(cat "$TC_TMP/nvread.log")"
cp "$TC_SWTPM_CA_DIR/issuercert.pem" "$TC_SWTPM_CA_DIR/swtpm-localca-rootca-cert.pem" "$ek/"

# Sanity: OpenSSL itself agrees that the chain holds, so a pass below is not vacuous.
openssl verify -CAfile "$ek/swtpm-localca-rootca-cert.pem" -untrusted "$ek/issuercert.pem" \
    <(openssl x509 -inform DER -in "$ek/ek-rsa.der") >/dev/null || tc_fail "openssl verify"

TC_NET_EK_DIR="$ek" "$pki_test" >"$TC_TMP/pki.log" 2>&1 || {
    cat "$TC_TMP/pki.log"
    tc_fail "pki_test on a fresh EK certificate"
}
grep -q "OK \] swtpm_ek_chain" "$TC_TMP/pki.log" || tc_fail "EK case did not run"
tc_pass "fresh swtpm EK certificate verifies against its local CA and not against another"
