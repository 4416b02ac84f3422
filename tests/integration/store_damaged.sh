#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# A coordinator whose database was damaged (bytes overwritten) refuses to start: exit code 3, a
# message naming the database and the way to recover, the integrity problems in its log, and no
# port opened. The undamaged copy (a restored backup) starts and serves the same node.
. "$TC_SRC/tests/lib/lab.sh"
cd "$LAB_DIR"
T=$TC_BIN

lab_coordinator_start
lab_node_start d1
lab_node_wait d1 trusted 30 || tc_fail "d1 not trusted"
lab_coordinator_stop
db=$LAB_DIR/coordinator/coordinator.db
[ ! -s "$db-wal" ] || tc_fail "the WAL was not checkpointed at a clean stop"
cp "$db" backup.db

python3 - "$db" <<'PY'
import os, sys
path = sys.argv[1]
size = os.path.getsize(path)
page = int.from_bytes(open(path, "rb").read(18)[16:18], "big") or 65536
# A page in the middle of the file: a b-tree page of the schema's tables.
with open(path, "r+b") as f:
    f.seek((size // page // 2) * page)
    f.write(b"\x5a" * page)
print("overwrote page", size // page // 2, "of", size // page)
PY

set +e
timeout 20 "$LAB_COORD_BIN" -c coordinator/coordinator.conf >damaged.out 2>&1
rc=$?
set -e
[ "$rc" = 3 ] || { cat damaged.out >&2; tc_fail "exit code $rc on a damaged database (want 3)"; }
grep -q "the database sqlite:$db is damaged" damaged.out || { cat damaged.out >&2; tc_fail "no clear message"; }
grep -q "Recovering a damaged store" damaged.out || tc_fail "message does not point at the recovery steps"
grep -q "database integrity:" damaged.out || tc_fail "integrity problems not logged"
grep -q "listening on" damaged.out && tc_fail "served from a damaged database"
tc_pass "damaged database refused with exit code 3"

# Recovery by restoring the backup: the node is known again, without enrolling anew.
cp backup.db "$db"
lab_coordinator_start
lab_node_wait d1 trusted 15 || tc_fail "d1 not trusted after the restore"
n=$(grep -c "enrollment .* started for node" coordinator/coordinator.log || true)
[ "$n" = 1 ] || tc_fail "$n enrollments (the restore should not need one)"
tc_pass "restored copy serves the node again"
