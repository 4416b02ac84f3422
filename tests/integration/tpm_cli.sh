# SPDX-License-Identifier: Apache-2.0
# `trustcloud tpm` against real swtpm instances, with tpm2-tools and OpenSSL as references.
. "$TC_SRC/tests/lib/common.sh"
. "$TC_SRC/tests/lib/swtpm_setup.sh"

command -v tpm2_pcrread >/dev/null || tc_skip "tpm2-tools not installed"
command -v jq >/dev/null || tc_skip "jq not installed"
tc=("$TC_BIN" tpm)
T=$TC_TMP

expect_exit() { # CODE CMD...: runs CMD and checks its exit code
    local want=$1 got=0
    shift
    "$@" >"$T/out" 2>"$T/err" || got=$?
    [ "$got" = "$want" ] || { cat "$T/out" "$T/err" >&2; tc_fail "exit $got, not $want: $*"; }
}

# --- usage and errors ---
expect_exit 0 "${tc[@]}" --help
for c in info pcrread extend ek; do expect_exit 0 "${tc[@]}" "$c" --help; done
expect_exit 0 "${tc[@]}" ak create --help
expect_exit 0 "${tc[@]}" ak show --help
expect_exit 2 "${tc[@]}" nosuch
expect_exit 2 "${tc[@]}" extend --pcr 99 --bank sha256 --data x
expect_exit 2 "${tc[@]}" extend --pcr 1 --bank sha256 --digest 00
expect_exit 2 "${tc[@]}" pcrread sha999:0
expect_exit 2 "${tc[@]}" ak create --ctx "$T/x" --alg dsa
port=$(tc_free_port_pair)
expect_exit 2 "${tc[@]}" info --tcti "swtpm:host=127.0.0.1,port=$port"
grep -q "cannot open the TPM" "$T/err" || tc_fail "bad TCTI: no clear message"
tc_pass "usage and bad TCTI"

tc_start_swtpm A
export TC_TCTI=$TC_TCTI_A

# --- info ---
"${tc[@]}" info --json >"$T/info.json"
[ "$(jq -r .manufacturer "$T/info.json")" = IBM ] || tc_fail "manufacturer"
[ "$(jq -c .banks "$T/info.json")" = '["sha1","sha256","sha384","sha512"]' ] || tc_fail "banks"
# TPM2TOOLS_TCTI is the fallback, --tcti wins over both.
TC_TCTI= TPM2TOOLS_TCTI=$TC_TCTI_A "${tc[@]}" info | grep -q "^manufacturer: IBM" ||
    tc_fail "TPM2TOOLS_TCTI"
TC_TCTI=device:/nonexistent "${tc[@]}" info --tcti "$TC_TCTI_A" >/dev/null || tc_fail "--tcti"
tc_pass "info"

# --- extend, then pcrread equals tpm2_pcrread and the expected hash chain ---
"${tc[@]}" extend --pcr 16 --bank sha1,sha256,sha384,sha512 --data "hello"
d=$(printf 'abc' | sha256sum | cut -d' ' -f1)
"${tc[@]}" extend --pcr 16 --bank sha256 --digest "$d"
"${tc[@]}" extend --pcr 23 --bank sha384 --data "only384"
want=$(python3 - "$d" <<'PY'
import hashlib, sys
v = bytes(32)
v = hashlib.sha256(v + hashlib.sha256(b"hello").digest()).digest()
v = hashlib.sha256(v + bytes.fromhex(sys.argv[1])).digest()
print(v.hex())
PY
)
got=$("${tc[@]}" pcrread --json sha256:16 | jq -r '.sha256."16"')
[ "$got" = "$want" ] || tc_fail "sha256 PCR 16 is $got, expected $want"
sel="sha1:all+sha256:all+sha384:all+sha512:all"
"${tc[@]}" pcrread "$sel" >"$T/ours.txt"
tpm2_pcrread -T "$TC_TCTI_A" "$sel" >"$T/theirs.txt"
diff "$T/ours.txt" "$T/theirs.txt" >&2 || tc_fail "pcrread text differs from tpm2_pcrread"
# Default selection: every active bank, in JSON.
"${tc[@]}" pcrread --json >"$T/all.json"
[ "$(jq '[.[] | length] | add' "$T/all.json")" = 96 ] || tc_fail "default selection"
[ "$(jq -r '.sha384."23"' "$T/all.json")" = "$(python3 -c '
import hashlib; print(hashlib.sha384(bytes(48) + hashlib.sha384(b"only384").digest()).hexdigest())')" ] ||
    tc_fail "sha384 PCR 23"
tc_pass "extend and pcrread (equal to tpm2_pcrread)"

# --- EK equals tpm2_createek's ---
for alg in rsa ecc; do
    "${tc[@]}" ek --alg $alg --out-pub "$T/ek-$alg.pub" >"$T/ek.txt"
    tpm2_createek -T "$TC_TCTI_A" -G $alg -c "$T/ek.ctx" -u "$T/ek-tools.pub" >/dev/null
    tpm2_flushcontext -T "$TC_TCTI_A" -t
    cmp "$T/ek-$alg.pub" "$T/ek-tools.pub" || tc_fail "$alg EK differs from tpm2_createek"
    grep -q "^certificate: none" "$T/ek.txt" || tc_fail "unprovisioned TPM reports a certificate"
done
expect_exit 2 "${tc[@]}" ek --alg rsa --out-cert "$T/none.der"
tc_pass "EK (RSA, ECC) equals tpm2_createek"

# --- AKs: create, show, PEM parsable by OpenSSL, name = nameAlg || H(TPMT_PUBLIC) ---
for kind in ecc:ecdsa rsa:rsassa rsa:rsapss sm2:sm2; do
    alg=${kind%%:*} scheme=${kind##*:} ctx="$T/ak-$alg-$scheme.ctx"
    "${tc[@]}" ak create --ctx "$ctx" --alg "$alg" --scheme "$scheme" --out-pub "$T/ak.pem" \
        --out-tpm2b "$T/ak.pub" --out-name "$T/ak.name" --json >"$T/ak.json"
    [ "$(stat -c %a "$ctx")" = 600 ] || tc_fail "AK context mode"
    [ "$(jq -r .scheme "$T/ak.json")" = "$scheme" ] || tc_fail "scheme $scheme"
    openssl pkey -pubin -in "$T/ak.pem" -noout || tc_fail "$kind PEM"
    name=$(python3 - "$T/ak.pub" <<'PY'
import hashlib, sys
b = open(sys.argv[1], "rb").read()
assert int.from_bytes(b[:2], "big") == len(b) - 2
print("000b" + hashlib.sha256(b[2:]).hexdigest())
PY
)
    [ "$(xxd -p -c 256 "$T/ak.name")" = "$name" ] || tc_fail "$kind name"
    "${tc[@]}" ak show --ctx "$ctx" --out-tpm2b "$T/ak2.pub" >"$T/show.txt"
    cmp "$T/ak.pub" "$T/ak2.pub" || tc_fail "ak show public"
    grep -q "^name: $name" "$T/show.txt" || tc_fail "ak show name"
done
expect_exit 2 "${tc[@]}" ak create --ctx "$T/bad.ctx" --alg ecc --scheme rsassa
expect_exit 2 "${tc[@]}" ak show --ctx "$T/ek-rsa.pub"
expect_exit 2 "${tc[@]}" ak show --ctx "$T/ak-ecc-ecdsa.ctx" --alg rsa
tpm2_getcap -T "$TC_TCTI_A" handles-transient | grep -q . && tc_fail "transient objects left"
tc_pass "AK create/show (ECDSA, RSASSA, RSAPSS, SM2)"

# --- a provisioned TPM: EK certificate from NV, issued by the local CA ---
command -v swtpm_setup >/dev/null || tc_skip "swtpm_setup not installed"
tc_start_swtpm_setup B --pcr-banks sha1,sha256
"${tc[@]}" ek --tcti "$TC_TCTI_B" --alg rsa --out-cert "$T/ek.der" --out-pub "$T/ekb.pub" \
    --json >"$T/ekb.json"
[ "$(jq -r .certificate "$T/ekb.json" | xxd -r -p | cmp - "$T/ek.der" && echo same)" = same ] ||
    tc_fail "JSON certificate"
openssl x509 -inform DER -in "$T/ek.der" -noout -issuer >"$T/issuer"
openssl x509 -in "$TC_SWTPM_CA_DIR/issuercert.pem" -noout -subject >"$T/subject"
[ "$(cut -d= -f2- "$T/issuer")" = "$(cut -d= -f2- "$T/subject")" ] ||
    tc_fail "EK certificate not issued by the local CA"
# The certificate's modulus is the EK's (TPM2B_PUBLIC ends with the 256-byte modulus).
mod=$(openssl x509 -inform DER -in "$T/ek.der" -noout -modulus | cut -d= -f2 | tr A-F a-f)
[ "$mod" = "$(tail -c 256 "$T/ekb.pub" | xxd -p -c 256)" ] || tc_fail "certificate key != EK"
expect_exit 2 "${tc[@]}" ek --tcti "$TC_TCTI_B" --alg ecc --out-cert "$T/ecc.der"
[ "$("${tc[@]}" info --tcti "$TC_TCTI_B" --json | jq -c .banks)" = '["sha1","sha256"]' ] ||
    tc_fail "swtpm_setup banks"
tc_pass "EK certificate on a provisioned swtpm"
