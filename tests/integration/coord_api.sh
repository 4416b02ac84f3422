#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The real trustcloud-coordinator with `trustcloud ca init` material: the operator API over mutual
# TLS (no certificate refused, a node certificate cannot call operator routes), hostile input
# answered with JSON errors while the daemon keeps serving, load-test import refused by default,
# events long-poll, pid file and clean SIGTERM shutdown.
. "$TC_SRC/tests/lib/common.sh"

COORD="$TC_BUILD/trustcloud-coordinator"
[ -x "$COORD" ] || tc_skip "trustcloud-coordinator not built"
command -v curl >/dev/null || tc_skip "curl not installed"

D=$TC_TMP
"$TC_BIN" ca init --dir "$D/ca" >/dev/null
"$TC_BIN" ca issue --dir "$D/ca" --operator alice --out-cert "$D/op.pem" --out-key "$D/op.key" >/dev/null
"$TC_BIN" ca issue --dir "$D/ca" --cn node:n1 --out-cert "$D/node.pem" --out-key "$D/node.key" >/dev/null
# Role EKUs: the coordinator's (ca init, ca issue --coordinator, --cn coordinator), a node's.
OID=2.25.277910308806770239075478762848318813545
openssl x509 -in "$D/ca/coordinator.pem" -noout -ext extendedKeyUsage | grep -q "$OID\.1" ||
    tc_fail "ca init: no coordinator EKU"
"$TC_BIN" ca issue --dir "$D/ca" --coordinator --out-cert "$D/c2.pem" --out-key "$D/c2.key" >/dev/null
openssl x509 -in "$D/c2.pem" -noout -ext extendedKeyUsage | grep -q "Server Authentication.*$OID\.1" ||
    tc_fail "ca issue --coordinator"
openssl x509 -in "$D/c2.pem" -noout -subject | grep -q 'CN *= *coordinator' || tc_fail "--coordinator CN"
openssl x509 -in "$D/node.pem" -noout -ext extendedKeyUsage | grep -q "$OID\.2" ||
    tc_fail "ca issue --cn node:n1: no node EKU"
openssl x509 -in "$D/op.pem" -noout -ext extendedKeyUsage | grep -q "$OID" && tc_fail "operator with a role EKU"
if "$TC_BIN" ca issue --dir "$D/ca" --cn node: --out-cert "$D/x.pem" --out-key "$D/x.key" 2>/dev/null; then
    tc_fail "ca issue --cn node: accepted"
fi
# A second `ca init` on the same directory must refuse to overwrite the CA.
if "$TC_BIN" ca init --dir "$D/ca" 2>/dev/null; then tc_fail "ca init overwrote a CA"; fi

# TC_STORE_BACKEND=postgresql (under tests/lib/pg.sh run): the store on that server instead.
DB="sqlite:$D/coord.db"
[ "${TC_STORE_BACKEND:-}" = postgresql ] && DB=$TC_PG_URI
cat >"$D/coord.conf" <<CONF
[coordinator]
listen = 127.0.0.1
port = 0
db = $DB
ca_dir = ca
interval = 500ms
log_level = info
CONF

start_coord() {
    : >"$D/coord.log"
    "$COORD" -c "$D/coord.conf" --pid-file "$D/coord.pid" 2>"$D/coord.log" &
    COORD_PID=$!
    TC_PIDS+=("$COORD_PID")
    for _ in $(seq 100); do
        PORT=$(sed -n 's/^trustcloud-coordinator: listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$D/coord.log")
        [ -n "$PORT" ] && break
        sleep 0.05
    done
    [ -n "$PORT" ] || { cat "$D/coord.log"; tc_fail "coordinator did not start"; }
    URL="https://127.0.0.1:$PORT"
}

# op METHOD PATH [BODY]: prints "HTTP_CODE BODY"
req() {
    local who=$1 method=$2 path=$3 body=${4:-}
    local -a cert=()
    case $who in
        op) cert=(--cert "$D/op.pem" --key "$D/op.key") ;;
        node) cert=(--cert "$D/node.pem" --key "$D/node.key") ;;
    esac
    local -a data=()
    [ -n "$body" ] && data=(-H 'Content-Type: application/json' --data-binary "$body")
    curl -sS --max-time 20 --cacert "$D/ca/ca.pem" "${cert[@]}" -X "$method" "${data[@]}" \
        -o "$D/resp" -w '%{http_code}' "$URL$path" || echo -n "000"
    echo -n " "
    cat "$D/resp" 2>/dev/null || true
}
expect() { # expect CODE "req args..."
    local want=$1
    shift
    local got
    got=$(req "$@")
    [ "${got%% *}" = "$want" ] || tc_fail "$* -> $got (wanted $want)"
    LAST=${got#* }
}

# Bad configurations are refused with the file and line.
printf '[coordinator]\nbogus = 1\n' >"$D/bad.conf"
if "$COORD" -c "$D/bad.conf" 2>"$D/bad.log"; then tc_fail "unknown key accepted"; fi
grep -q "bad.conf:2" "$D/bad.log" || tc_fail "error does not name the line: $(cat "$D/bad.log")"
"$COORD" --print-defaults | grep -q '^;* *interval = 2s' || "$COORD" --print-defaults | grep -q 'interval' ||
    tc_fail "--print-defaults"

start_coord
[ "$(cat "$D/coord.pid")" = "$COORD_PID" ] || tc_fail "pid file"

# Identities.
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$D/ca/ca.pem" "$URL/v1/nodes" || true)
[ "$code" = 401 ] || tc_fail "no client certificate: $code"
expect 403 node GET /v1/nodes
echo "$LAST" | grep -q '"check":"auth.operator"' || tc_fail "403 without check: $LAST"
expect 403 node GET /v1/policies
expect 200 op GET /v1/nodes
[ "$LAST" = '{"nodes":[]}' ] || tc_fail "empty node list: $LAST"
# A node certificate counts only for a node enrolled with that key: n1 is not.
expect 403 node GET '/v1/events?since=0'

# Load-test import is refused unless explicitly configured.
expect 403 op POST /v1/nodes/import '{"node_id":"x","ak_pub":"AAAA","agent_url":"https://127.0.0.1:1"}'
echo "$LAST" | grep -q import.disabled || tc_fail "import: $LAST"

# Hostile ids and bodies.
expect 400 op GET "/v1/nodes/a'%3B%20DROP%20TABLE%20nodes--"
expect 404 op GET "/v1/nodes/..%2F..%2Fetc%2Fpasswd"
expect 400 op GET "/v1/nodes/$(head -c 100 /dev/zero | tr '\0' a)"
expect 404 op GET /v1/nodes/nosuchnode
expect 404 op GET /v1/nodes/nosuchnode/history
expect 400 op GET '/v1/nodes/nosuchnode/history?limit=-1'
expect 400 - POST /v1/enroll '{"node_id":"a/b"}'
echo "$LAST" | grep -q request.node_id || tc_fail "bad node id: $LAST"
expect 400 - POST /v1/enroll 'not json'
echo "$LAST" | grep -q json.parse || tc_fail "not json: $LAST"
expect 400 - POST /v1/enroll "$(printf '%0.s[' $(seq 100))"
expect 400 - POST /v1/enroll '{"node_id":"n1","node_id":"n2"}'
expect 400 - POST /v1/enroll '{"node_id":"n1","agent_url":"https://127.0.0.1:1","csr":"x","ek_pub":"!!!!","ak_pub":"AAAA"}'
head -c 2000000 /dev/zero | tr '\0' 'a' >"$D/big"
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$D/ca/ca.pem" -H 'Content-Type: application/json' \
    --data-binary @"$D/big" "$URL/v1/enroll" || true)
[ "$code" = 413 ] || tc_fail "2 MB enroll body: $code"
expect 404 - POST /v1/enroll/00112233445566778899aabbccddeeff/activate '{"secret":"AAAA"}'
expect 404 - POST /v1/enroll/zz/activate '{}'
expect 401 - GET /v1/policies

# Policies: add (validated), list, show, assign.
expect 400 op POST /v1/policies '{"name":"p1","kind":"pcr","body":{"sha256":{"0":"zz"}}}'
H=$(printf '%064d' 0)
expect 200 op POST /v1/policies "{\"name\":\"p1\",\"kind\":\"pcr\",\"body\":{\"sha256\":{\"0\":\"$H\"}}}"
echo "$LAST" | grep -q '"version":1' || tc_fail "policy v1: $LAST"
expect 200 op POST /v1/policies "{\"name\":\"p1\",\"kind\":\"pcr\",\"body\":{\"sha256\":{\"1\":\"$H\"}}}"
echo "$LAST" | grep -q '"version":2' || tc_fail "policy v2: $LAST"
expect 409 op POST /v1/policies "{\"name\":\"p1\",\"kind\":\"measured_boot\",\"body\":{\"version\":1}}"
expect 200 op GET /v1/policies
echo "$LAST" | grep -q '"name":"p1"' || tc_fail "policy list: $LAST"
expect 200 op GET '/v1/policies/p1?version=1'
echo "$LAST" | grep -q '"0":' || tc_fail "policy v1 body: $LAST"
expect 200 op POST /v1/policies/p1/assign '{"group":"default"}'
expect 404 op POST /v1/policies/nope/assign '{"group":"default"}'
expect 400 op POST /v1/policies/p1/assign '{"group":"default","node":"n1"}'

# Subscribers.
expect 400 op POST /v1/subscribers '{"url":"ftp://x","secret":"0123456789abcdef"}'
expect 400 op POST /v1/subscribers '{"url":"https://127.0.0.1:9/hook","secret":"short"}'
expect 200 op POST /v1/subscribers '{"url":"https://127.0.0.1:9/hook","secret":"0123456789abcdef"}'
expect 200 op GET /v1/subscribers
echo "$LAST" | grep -q 0123456789abcdef && tc_fail "subscriber secret leaked"
expect 200 op DELETE /v1/subscribers/1
expect 404 op DELETE /v1/subscribers/1

# Events long-poll: waits, then answers empty.
t0=$(date +%s%N)
expect 200 op GET '/v1/events?since=0&wait=1'
t1=$(date +%s%N)
[ $(((t1 - t0) / 1000000)) -ge 900 ] || tc_fail "long-poll returned too early"
echo "$LAST" | grep -q '"events":\[\]' || tc_fail "events: $LAST"
expect 400 op GET '/v1/events?wait=999'

# Still serving after all that, and a clean stop on SIGTERM.
expect 200 op GET /v1/nodes
kill -TERM "$COORD_PID"
for _ in $(seq 100); do kill -0 "$COORD_PID" 2>/dev/null || break; sleep 0.05; done
kill -0 "$COORD_PID" 2>/dev/null && tc_fail "no clean stop on SIGTERM"
wait "$COORD_PID" || tc_fail "exit status $? after SIGTERM"
[ -e "$D/coord.pid" ] && tc_fail "pid file left behind"

# With the load-test switch, import works (and is logged loudly).
echo "load_test_allow_software_aks = true" >>"$D/coord.conf"
start_coord
grep -q "LOAD TEST MODE" "$D/coord.log" || tc_fail "load-test mode not announced"
expect 400 op POST /v1/nodes/import '{"node_id":"x","ak_pub":"AAAA","agent_url":"https://127.0.0.1:1"}'
kill -TERM "$COORD_PID"
wait "$COORD_PID" || tc_fail "exit status after SIGTERM"
tc_pass "coordinator operator API"
