#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster on loopback, for the tests that run
# Basalt on PostgreSQL (tests/api with BASALT_TEST_PG; see docs/scale-out.md).
#
#   scripts/pg.sh start DIR PORT   # initdb (once) + start; prints the URL
#                                  # (and DIR/ca.crt: the CA of its TLS certificate)
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
    # TLS (tests of sslmode=verify-*): a throwaway CA ($dir/ca.crt, what
    # BASALT_TEST_PG_CA names) and a server certificate for 127.0.0.1 and
    # localhost, made once with the openssl CLI if it is there. Plain
    # connections keep working (pg_hba accepts both).
    if [ ! -f "$dir/server.crt" ] && command -v openssl >/dev/null; then
        (
            cd "$dir"
            q() { as_owner openssl "$@" >/dev/null 2>&1; }
            q req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
                -subj "/CN=basalt test CA" -keyout ca.key -out ca.crt
            q req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                -subj "/CN=127.0.0.1" -keyout server.key -out server.csr
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' >"$dir/server.ext"
            q x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
                -extfile server.ext -out server.crt
            as_owner chmod 600 server.key ca.key
        )
    fi
    ssl=""
    if [ -f "$dir/server.crt" ]; then
        ssl="-c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key"
    fi
    as_owner "$PG_BIN/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories='$dir' -c max_connections=500 -c shared_buffers=64MB $ssl" \
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
