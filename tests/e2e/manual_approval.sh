#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Manual approval: with approval = manual an enrolled node waits in pending_approval and is not
# attested (never trusted) until `trustcloud node approve`; then it is attested and trusted.
# Approving an unknown node is refused (exit 1); the operator commands' --json output parses.
. "$TC_SRC/tests/lib/lab.sh"
cd "$LAB_DIR"
T=$TC_BIN

lab_coordinator_start interval=500ms approval=manual
lab_node_prepare p1
lab_policies_from p1
lab_node_run p1
lab_node_wait p1 pending_approval 20 || tc_fail "p1 not pending approval"
sleep 1.5
[ "$(lab_node_field p1 'j["state"]')" = pending_approval ] || tc_fail "p1 left pending_approval alone"
[ "$(lab_node_field p1 'j.get("last_round", 0)')" = 0 ] || tc_fail "a pending node was challenged"
$T node list | grep -E '^p1 +pending_approval' >/dev/null || tc_fail "node list text"
tc_pass "enrolled node waits in pending_approval, not challenged"

rc=0; $T node approve no-such-node >/dev/null 2>&1 || rc=$?
[ $rc = 1 ] || tc_fail "approving an unknown node: exit $rc"
$T node approve --json p1 | lab_json - 'j["id"]' | grep -qx p1 || tc_fail "approve --json"
lab_node_wait p1 trusted 10 || tc_fail "approved p1 not trusted"
$T events --since 0 --json | lab_json - '[(e["old_state"], e["new_state"]) for e in j["events"]]' >ev.txt
grep -q "pending_approval" ev.txt && grep -q "trusted" ev.txt || { cat ev.txt; tc_fail "events"; }
tc_pass "node approve: enrolled, then trusted"
