#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# A private PostgreSQL server for tests: a fresh cluster in a temporary directory, reachable only
# through a unix socket in that directory (listen_addresses = ''), run as the `postgres` user
# when the caller is root (initdb refuses root), always stopped and removed at the end.
#
#   pg.sh run CMD [ARG...]   start a server, run CMD with the variables below, stop the server
#                            (even when CMD fails or is killed); exits with CMD's status, or 77
#                            (skip) when no PostgreSQL server binaries are installed
#   pg.sh stop DIR           stop the server of DIR (fast shutdown; no-op if stopped)
#   pg.sh start DIR          start it again, waiting until it accepts connections
#
# Or source it and call pg_init DIR, pg_start DIR, pg_stop DIR, pg_uri DIR [DBNAME].
#
# CMD sees TC_PG_DIR (the directory: data in DIR/data, socket and log in DIR), TC_PG_HOST
# (the socket directory), TC_PG_PORT, TC_PG_USER (a superuser, trust authentication),
# TC_PG_URI (libpq URI of the `postgres` database) and TC_PG_SH (this script, for stop/start).

: "${TC_PG_PORT:=5432}" # only names the socket file: nothing listens on TCP
TC_PG_USER=trustcloud

# The server binaries: TC_PG_BIN, else the newest /usr/lib/postgresql/*/bin.
pg_bin() {
    local d=${TC_PG_BIN:-}
    [ -n "$d" ] || d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && echo "$d"
}

# Runs a server binary as the cluster's owner.
pg_as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_init() {
    local dir=$1 bin
    bin=$(pg_bin) || return 1
    [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
    pg_as_owner "$bin/initdb" -D "$dir/data" -U "$TC_PG_USER" --auth=trust -E UTF8 --no-sync \
        >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; return 1; }
    cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = ''
unix_socket_directories = '$dir'
port = $TC_PG_PORT
max_connections = 50
EOF
}

pg_start() {
    local dir=$1
    pg_as_owner "$(pg_bin)/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null
}

pg_stop() {
    local dir=$1
    [ -f "$dir/data/postmaster.pid" ] || return 0
    pg_as_owner "$(pg_bin)/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null ||
        pg_as_owner "$(pg_bin)/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null
}

pg_uri() {
    echo "postgresql:///${2:-postgres}?host=$1&port=$TC_PG_PORT&user=$TC_PG_USER"
}

pg_run() {
    local dir rc=0
    if [ -z "$(pg_bin)" ]; then
        echo "SKIP: no PostgreSQL server binaries (initdb, pg_ctl) installed"
        exit 77
    fi
    # The socket path (DIR/.s.PGSQL.PORT) must fit in sun_path (108 bytes).
    dir=$(mktemp -d "${TMPDIR:-/tmp}/tc_pg.XXXXXX")
    if [ ${#dir} -gt 80 ]; then
        rmdir "$dir"
        dir=$(mktemp -d /tmp/tc_pg.XXXXXX)
    fi
    chmod 755 "$dir"
    # shellcheck disable=SC2064
    trap "pg_stop '$dir'; rm -rf '$dir'" EXIT
    # Killed (a timeout): stop CMD too, then the EXIT trap stops the server.
    trap '[ -n "${child:-}" ] && kill "$child" 2>/dev/null; exit 143' INT TERM
    pg_init "$dir" && pg_start "$dir" || {
        cat "$dir/server.log" >&2 2>/dev/null
        echo "FAIL: cannot start a PostgreSQL server" >&2
        exit 1
    }
    export TC_PG_DIR=$dir TC_PG_HOST=$dir TC_PG_PORT TC_PG_USER
    export TC_PG_URI
    TC_PG_URI=$(pg_uri "$dir")
    export TC_PG_SH
    TC_PG_SH=$(readlink -f "${BASH_SOURCE[0]}")
    # In the background, so that a signal is handled at once, not when CMD ends.
    "$@" &
    child=$!
    wait "$child" || rc=$?
    exit "$rc"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -u
    case "${1:-}" in
    run)
        shift
        pg_run "$@"
        ;;
    stop) pg_stop "$2" ;;
    start) pg_start "$2" ;;
    *)
        echo "usage: pg.sh run CMD [ARG...] | stop DIR | start DIR" >&2
        exit 2
        ;;
    esac
fi
