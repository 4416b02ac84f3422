# SPDX-License-Identifier: Apache-2.0
# Manufacturing-style swtpm state: an EK and its certificate (signed by a local CA kept in a
# temporary directory, never the system-wide /var/lib/swtpm-localca), as a real TPM ships.
#
#   tc_swtpm_setup STATE_DIR [swtpm_setup options...]
#       Creates STATE_DIR with an RSA-2048 and an ECC EK and their certificates in NV. swtpm_setup
#       0.7.1 makes the ECC one a P-384 key (certificate at 0x01c00016, key at 0x81010016), not
#       the P-256 one whose certificate would be at 0x01c0000a; the RSA one is at 0x01c00002. Extra options go to swtpm_setup, e.g.
#       --pcr-banks sha1,sha256,sha384,sha512 (swtpm_setup activates only sha256 by default),
#       --create-platform-cert. The local CA lives in STATE_DIR.ca/localca; afterwards
#       TC_SWTPM_CA_DIR names it: issuercert.pem (the EK certificates' issuer) and
#       swtpm-localca-rootca-cert.pem (its root) are there, for EK chain validation.
#   tc_start_swtpm_setup NAME [swtpm_setup options...]
#       tc_swtpm_setup on $TC_TMP/swtpm-NAME, then tc_start_swtpm NAME on that state (needs
#       tests/lib/common.sh sourced first). Sets TC_TCTI_<NAME> and TC_SWTPM_CA_DIR.
#
# Usable from any shell script (`. tests/lib/swtpm_setup.sh`) and from other languages via
# `bash -c '. "$0"; tc_swtpm_setup "$1"' tests/lib/swtpm_setup.sh DIR`.

tc_swtpm_setup() {
    local state=$1
    shift
    local cfg="$state.ca"
    local tool
    tool=$(command -v swtpm_localca || true)
    if [ -z "$tool" ] || ! command -v swtpm_setup >/dev/null; then
        echo "swtpm_setup or swtpm_localca not installed" >&2
        return 1
    fi
    mkdir -p "$state" "$cfg/localca"
    cat >"$cfg/swtpm_setup.conf" <<CONF
create_certs_tool = $tool
create_certs_tool_config = $cfg/swtpm-localca.conf
create_certs_tool_options = $cfg/swtpm-localca.options
CONF
    cat >"$cfg/swtpm-localca.conf" <<CONF
statedir = $cfg/localca
signingkey = $cfg/localca/signkey.pem
issuercert = $cfg/localca/issuercert.pem
certserial = $cfg/localca/certserial
CONF
    cat >"$cfg/swtpm-localca.options" <<CONF
--platform-manufacturer trustcloud
--platform-version 1.0
--platform-model test
CONF
    if ! swtpm_setup --tpm2 --tpmstate "$state" --config "$cfg/swtpm_setup.conf" \
        --createek --create-ek-cert --overwrite "$@" >"$cfg/setup.log" 2>&1; then
        echo "swtpm_setup failed:" >&2
        cat "$cfg/setup.log" >&2
        return 1
    fi
    TC_SWTPM_CA_DIR="$cfg/localca"
}

tc_start_swtpm_setup() {
    local name=$1
    shift
    tc_swtpm_setup "$TC_TMP/swtpm-$name" "$@" || tc_fail "swtpm_setup failed"
    tc_start_swtpm "$name"
}
