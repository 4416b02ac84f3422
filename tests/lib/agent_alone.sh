#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# An agent on its own, curl playing the coordinator (tests/integration/agent_*.sh): a test CA in
# the current directory and the "enrolled" state an agent needs to serve without a coordinator.
# Source after tests/lib/common.sh (or lab.sh).

# agent_alone_ca: ca.key and ca.pem, a P-256 test CA in the current directory.
agent_alone_ca() {
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
    openssl req -x509 -new -key ca.key -subj /CN=test-ca -days 2 -out ca.pem \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=keyCertSign,cRLSign 2>/dev/null
}

# The trustcloud role EKUs (include/trustcloud/pki.h): coordinator .1, node .2.
TC_OID_ARC=2.25.277910308806770239075478762848318813545

# issue NAME CN [SAN]: NAME.key and NAME.pem from the test CA (server and client use, plus the
# role EKU that CN "coordinator" or "node:ID" has in certificates the coordinator issues).
issue() {
    local eku=serverAuth,clientAuth
    case $2 in
        coordinator) eku=$eku,$TC_OID_ARC.1 ;;
        node:*) eku=$eku,$TC_OID_ARC.2 ;;
    esac
    openssl ecparam -name prime256v1 -genkey -noout -out "$1.key" 2>/dev/null
    openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=%s\n%s\n' "$eku" \
        "${3:+subjectAltName=$3}" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
        -extfile "$1.ext" -out "$1.pem" 2>/dev/null
}

# agent_alone_state DIR NAME TCTI AKPUB: DIR (mode 700) as enrollment leaves it: NAME.key and
# NAME.pem as the agent's TLS key and certificate, an AK in the TPM at TCTI (its context in
# DIR/ak.ctx, its TPM2B_PUBLIC in AKPUB).
agent_alone_state() {
    mkdir -p -m 700 "$1"
    cp "$2.key" "$1/tls.key"
    chmod 600 "$1/tls.key"
    cp "$2.pem" "$1/tls.crt"
    "$TC_BIN" tpm ak create --tcti "$3" --ctx "$1/ak.ctx" --alg ecc --ek-alg ecc \
        --out-tpm2b "$4" >/dev/null
}
