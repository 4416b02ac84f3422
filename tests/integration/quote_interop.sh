#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Quote interoperability with tpm2-tools 5.4 against a real swtpm, in both directions:
#  (a) tpm2_createak + tpm2_quote  ->  trustcloud quote verify (and every tampering is rejected
#      with the right check);
#  (b) trustcloud tpm quote        ->  tpm2_checkquote (and tampering is rejected).
. "${TC_SRC:?}/tests/lib/common.sh"

for t in tpm2_createek tpm2_createak tpm2_quote tpm2_checkquote openssl python3; do
    command -v "$t" >/dev/null || tc_skip "$t not installed"
done
[ -x "$TC_BIN" ] || tc_fail "trustcloud binary not found at $TC_BIN"

tc_start_swtpm Q
export TPM2TOOLS_TCTI=$TC_TCTI_Q
cd "$TC_TMP"
flush() { tpm2_flushcontext -t >/dev/null; }

# flip FILE OFFSET: XORs one byte (negative offsets count from the end) into FILE.tampered.
flip() {
    python3 - "$1" "$2" <<'PY'
import sys
p, off = sys.argv[1], int(sys.argv[2])
b = bytearray(open(p, "rb").read())
b[off] ^= 0x01
open(p + ".tampered", "wb").write(bytes(b))
PY
}

# expect_reject CHECK ARGS...: trustcloud quote verify must exit 1 with error.check == CHECK.
expect_reject() {
    local want=$1 out rc=0
    shift
    out=$("$TC_BIN" quote verify --json "$@") || rc=$?
    [ "$rc" = 1 ] || tc_fail "expected rejection ($want), exit $rc: $out"
    local got
    got=$(printf '%s' "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["error"]["check"]) if not d["valid"] else print("VALID")')
    [ "$got" = "$want" ] || tc_fail "expected check $want, got $got"
}

expect_valid() {
    local out rc=0
    out=$("$TC_BIN" quote verify --json "$@") || rc=$?
    [ "$rc" = 0 ] || tc_fail "expected a valid quote, exit $rc: $out"
    printf '%s' "$out" | python3 -c 'import json,sys; assert json.load(sys.stdin)["valid"] is True'
}

# Some PCR values that are not zero.
tpm2_pcrextend "16:sha256=$(printf 'interop' | sha256sum | cut -c1-64)"

tpm2_createek -c ek.ctx -G ecc -u ek.pub >/dev/null
tpm2_evictcontrol -c ek.ctx 0x81010001 >/dev/null
flush

tpm2_createek -c ekr.ctx -G rsa -u ek-rsa.pub >/dev/null
flush
printf '000b%064x' 0 | xxd -r -p >bad.qname

SM2_SPKI_PREFIX=3059301306072a8648ce3d020106082a811ccf5501822d034200
SEL="sha256:0,1,2,16+sha1:0,16"
n=0
# ---- (a) tpm2-tools quotes, trustcloud verifies ------------------------------------------------
for kind in "ecc ecdsa" "rsa rsassa" "rsa rsapss" "ecc_sm2 sm2"; do
    set -- $kind
    galg=$1 salg=$2 k="$1-$2" handle=$((0x81010010 + n)) n=$((n + 1))
    if ! tpm2_createak -C 0x81010001 -c "$k.ctx" -G "$galg" -g sha256 -s "$salg" -u "$k.pub" \
        >/dev/null 2>"$k.err"; then
        [ "$salg" = sm2 ] && { echo "note: tpm2_createak cannot make SM2 AKs here"; continue; }
        tc_fail "tpm2_createak $kind: $(cat "$k.err")"
    fi
    flush
    tpm2_evictcontrol -c "$k.ctx" "$handle" >/dev/null
    flush
    if [ "$salg" = sm2 ]; then
        x=$(tail -c 68 "$k.pub" | head -c 34 | tail -c 32 | xxd -p | tr -d '\n')
        y=$(tail -c 32 "$k.pub" | xxd -p | tr -d '\n')
        echo "${SM2_SPKI_PREFIX}04$x$y" | xxd -r -p >"$k.der"
        openssl pkey -pubin -inform DER -in "$k.der" -out "$k.pem"
    else
        tpm2_readpublic -c "$handle" -f pem -o "$k.pem" >/dev/null
    fi
    nonce=$(openssl rand -hex 16)
    tpm2_quote -c "$handle" -l "$SEL" -q "$nonce" -m "$k.msg" -s "$k.sig" -o "$k.pcrs" \
        -g sha256 --scheme "$salg" >/dev/null
    common=(--message "$k.msg" --signature "$k.sig" --pcrs "$k.pcrs" --nonce "$nonce")

    expect_valid --ak "$k.pem" "${common[@]}" --pcr-list "$SEL"
    expect_valid --ak "$k.pub" "${common[@]}" --pcr-list "$SEL" --ek ek.pub
    "$TC_BIN" quote verify --ak "$k.pub" "${common[@]}" >/dev/null || tc_fail "$k: text mode"
    # tpm2_quote -f plain signatures (DER ECDSA / raw RSA).
    tpm2_quote -c "$handle" -l "$SEL" -q "$nonce" -m "$k.p.msg" -s "$k.p.sig" -o "$k.p.pcrs" \
        -g sha256 --scheme "$salg" -f plain >/dev/null
    for ak in "$k.pub" "$k.pem"; do
        expect_valid --ak "$ak" --message "$k.p.msg" --signature "$k.p.sig" --pcrs "$k.p.pcrs" \
            --nonce "$nonce" --signature-format plain --hash-algorithm sha256 --scheme "$salg"
    done
    flip "$k.p.sig" -1
    expect_reject quote.signature --ak "$k.pub" --message "$k.p.msg" \
        --signature "$k.p.sig.tampered" --pcrs "$k.p.pcrs" --nonce "$nonce" \
        --signature-format plain

    flip "$k.msg" -1
    expect_reject quote.signature --ak "$k.pub" --message "$k.msg.tampered" \
        --signature "$k.sig" --pcrs "$k.pcrs" --nonce "$nonce"
    flip "$k.sig" -1
    expect_reject quote.signature --ak "$k.pem" --message "$k.msg" \
        --signature "$k.sig.tampered" --pcrs "$k.pcrs" --nonce "$nonce"
    flip "$k.pcrs" $((132 + 4 + 4 + 2)) # first byte of the first PCR value
    expect_reject quote.pcr_digest --ak "$k.pub" --message "$k.msg" --signature "$k.sig" \
        --pcrs "$k.pcrs.tampered" --nonce "$nonce"
    expect_reject quote.nonce --ak "$k.pub" --message "$k.msg" --signature "$k.sig" \
        --pcrs "$k.pcrs" --nonce "$(openssl rand -hex 16)"
    expect_reject quote.pcr_selection --ak "$k.pub" "${common[@]}" --pcr-list "sha256:0,1,2,16"
    if [ -n "${prev_pem:-}" ]; then
        # Another AK of the same family (RSASSA vs RSAPSS share key type) or another type.
        rc=0
        out=$("$TC_BIN" quote verify --json --ak "$prev_pem" "${common[@]}") || rc=$?
        [ "$rc" = 1 ] || tc_fail "$k: quote accepted with another AK ($rc)"
        case "$out" in *'"quote.signature"'* | *'"quote.scheme"'*) ;;
        *) tc_fail "$k: another AK rejected for the wrong reason: $out" ;; esac
    fi
    # The signer is this AK under this EK: not under another EK, not another name.
    expect_reject quote.signer --ak "$k.pub" "${common[@]}" --ek ek-rsa.pub
    expect_reject quote.signer --ak "$k.pub" "${common[@]}" --ak-qualified-name bad.qname
    prev_pem=$k.pem
    tc_pass "(a) tpm2-tools $galg/$salg quote verified; tampering rejected"
done

# ---- (b) trustcloud quotes, tpm2_checkquote verifies ---------------------------------------------
if ! "$TC_BIN" tpm quote --help >/dev/null 2>&1; then
    echo "SKIP (b): 'trustcloud tpm quote' is not wired into the tpm command group yet"
    exit 0
fi
tpm2_evictcontrol -c 0x81010001 >/dev/null # trustcloud makes its own (transient) EK
flush
# tpm2_checkquote 5.4 cannot verify RSAPSS quotes (not even tpm2_quote's) nor SM2: ecc and rsa.
for kind in ecc rsa; do
    nonce=$(openssl rand -hex 20)
    "$TC_BIN" tpm quote --tcti "$TC_TCTI_Q" --ak-ctx "tc-$kind.akctx" --create-ak "$kind" \
        --ek-alg ecc --nonce "$nonce" --pcr-list "$SEL" --message "tc-$kind.msg" \
        --signature "tc-$kind.sig" --pcrs "tc-$kind.pcrs" --pcrs-json "tc-$kind.json" \
        --ak-pub "tc-$kind.pub" --ak-pem "tc-$kind.pem" --ek-pub tc-ek.pub ||
        tc_fail "trustcloud tpm quote ($kind)"
    tpm2_checkquote -u "tc-$kind.pem" -m "tc-$kind.msg" -s "tc-$kind.sig" -f "tc-$kind.pcrs" \
        -q "$nonce" -g sha256 >/dev/null || tc_fail "tpm2_checkquote rejects trustcloud's $kind quote"
    # Also a second quote with the same (reloaded) AK, checked against the first.
    nonce2=$(openssl rand -hex 20)
    "$TC_BIN" tpm quote --tcti "$TC_TCTI_Q" --ak-ctx "tc-$kind.akctx" --ek-alg ecc \
        --nonce "$nonce2" --pcr-list "$SEL" --message "tc-$kind.2.msg" \
        --signature "tc-$kind.2.sig" --pcrs "tc-$kind.2.pcrs" || tc_fail "second quote ($kind)"
    expect_valid --ak "tc-$kind.pub" --message "tc-$kind.2.msg" --signature "tc-$kind.2.sig" \
        --pcrs "tc-$kind.2.pcrs" --nonce "$nonce2" --ek tc-ek.pub --pcr-list "$SEL" \
        --previous "tc-$kind.msg"
    expect_valid --ak "tc-$kind.pem" --message "tc-$kind.msg" --signature "tc-$kind.sig" \
        --pcrs "tc-$kind.json" --nonce "$nonce"
    expect_reject quote.clock --ak "tc-$kind.pub" --message "tc-$kind.msg" \
        --signature "tc-$kind.sig" --pcrs "tc-$kind.pcrs" --nonce "$nonce" \
        --previous "tc-$kind.2.msg"

    flip "tc-$kind.msg" -1
    flip "tc-$kind.sig" -1
    flip "tc-$kind.pcrs" $((132 + 4 + 4 + 2))
    for bad in "-m tc-$kind.msg.tampered -s tc-$kind.sig -f tc-$kind.pcrs -q $nonce" \
        "-m tc-$kind.msg -s tc-$kind.sig.tampered -f tc-$kind.pcrs -q $nonce" \
        "-m tc-$kind.msg -s tc-$kind.sig -f tc-$kind.pcrs.tampered -q $nonce" \
        "-m tc-$kind.msg -s tc-$kind.sig -f tc-$kind.pcrs -q ${nonce2}"; do
        # shellcheck disable=SC2086
        if tpm2_checkquote -u "tc-$kind.pem" $bad -g sha256 >/dev/null 2>&1; then
            tc_fail "tpm2_checkquote accepted a tampered trustcloud $kind quote ($bad)"
        fi
    done
    tc_pass "(b) trustcloud $kind quote verified by tpm2_checkquote; tampering rejected"
done
# RSAPSS and SM2 AKs made by trustcloud: verified by trustcloud only (see above).
for kind in rsapss sm2; do
    nonce=$(openssl rand -hex 20)
    "$TC_BIN" tpm quote --tcti "$TC_TCTI_Q" --ak-ctx "tc-$kind.akctx" --create-ak "$kind" \
        --ek-alg ecc --nonce "$nonce" --pcr-list "$SEL" --message "tc-$kind.msg" \
        --signature "tc-$kind.sig" --pcrs "tc-$kind.pcrs" --ak-pub "tc-$kind.pub" \
        --ak-pem "tc-$kind.pem" --ek-pub tc-ek.pub || tc_fail "trustcloud tpm quote ($kind)"
    for ak in "tc-$kind.pub" "tc-$kind.pem"; do
        expect_valid --ak "$ak" --message "tc-$kind.msg" --signature "tc-$kind.sig" \
            --pcrs "tc-$kind.pcrs" --nonce "$nonce" --pcr-list "$SEL"
    done
    flip "tc-$kind.sig" -1
    expect_reject quote.signature --ak "tc-$kind.pub" --message "tc-$kind.msg" \
        --signature "tc-$kind.sig.tampered" --pcrs "tc-$kind.pcrs" --nonce "$nonce"
    tc_pass "(b) trustcloud $kind quote verified by trustcloud"
done
tc_pass "quote interop"
