#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster on loopback, for the tests that run
# Basalt on PostgreSQL (tests/api with BASALT_TEST_PG; see docs/scale-out.md).
#
#   scripts/pg.sh start DIR PORT   # initdb (once) + start; prints the URL
#   scripts/pg.sh stop DIR         # fast shutdown
#
# initdb refuses to run as root, so as root the cluster belongs to the
# `postgres` user (Debian's postgresql package creates it). Trust
# authentication on 127.0.0.1 only: the cluster holds test data and
# listens on loopback alone. fsync stays on (the default): the tests check
# that acknowledged writes are committed.
set -euo pipefail

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
cmd="${1:?usage: pg.sh start DIR PORT | stop DIR}"
dir="${2:?usage: pg.sh start DIR PORT | stop DIR}"

as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

case "$cmd" in
start)
    port="${3:?usage: pg.sh start DIR PORT}"
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$dir"
        chmod 700 "$dir"
    fi
    if [ ! -f "$dir/PG_VERSION" ]; then
        as_owner "$PG_BIN/initdb" -D "$dir" -U postgres --auth=trust --no-instructions -E UTF8 >/dev/null
    fi
    as_owner "$PG_BIN/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories='$dir' -c max_connections=500 -c shared_buffers=64MB" \
        start >/dev/null
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
stop)
    as_owner "$PG_BIN/pg_ctl" -D "$dir" -m fast -w stop >/dev/null
    ;;
*)
    echo "usage: pg.sh start DIR PORT | stop DIR" >&2
    exit 2
    ;;
esac
