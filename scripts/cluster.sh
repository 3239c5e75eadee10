#!/usr/bin/env bash
# A highly available Basalt cluster on loopback, for the cluster tests
# (tests/cluster) and the scale-out benchmark (bench/scaleout.py):
# etcd x3 + Patroni x3 (PostgreSQL 15, synchronous_mode on) + N Basalt nodes,
# every process on 127.0.0.1, every file under DIR.
#
#   scripts/cluster.sh start DIR        # start everything; prints the nodes' URLs
#   scripts/cluster.sh stop DIR         # kill everything started in DIR
#   scripts/cluster.sh node-start DIR I # (re)start Basalt node I (1-based)
#   scripts/cluster.sh node-kill DIR I  # kill -9 Basalt node I
#   scripts/cluster.sh leader DIR       # "NAME PG_PORT" of the PostgreSQL leader
#   scripts/cluster.sh pg-start DIR I   # (re)start Patroni member I
#   scripts/cluster.sh url DIR          # the --store URL the nodes use
#
# Environment: CLUSTER_PORT (default 56000, even) is the base of the ports
# used, all odd (etcd client +1,+3,+5 and peer +7,+9,+11, Patroni REST
# +13,+15,+17, PostgreSQL +21,+23,+25, Basalt nodes +31,+33,...);
# CLUSTER_NODES (default 3) Basalt nodes; BASALT_BIN
# (default $CARGO_TARGET_DIR/debug/basalt); CLUSTER_SU_EMAIL and
# CLUSTER_SU_PASSWORD, the superuser created before the nodes start.
#
# Every process started writes its pid to DIR/pids/<name>.pid; `stop` kills
# the ones still alive (also after a failed start), Basalt nodes first.
# Authentication is `trust` on 127.0.0.1: the cluster holds test data and
# listens on loopback only (docs/ops-scale-out.md shows a real setup).
# As root, etcd, Patroni and PostgreSQL run as the `postgres` user
# (initdb refuses root); the Debian packages are installed when missing.
set -euo pipefail

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
BASE="${CLUSTER_PORT:-56000}"
NODES="${CLUSTER_NODES:-3}"
SU_EMAIL="${CLUSTER_SU_EMAIL:-admin@cluster.test}"
SU_PASSWORD="${CLUSTER_SU_PASSWORD:-cluster-password-123}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BASALT_BIN="${BASALT_BIN:-${CARGO_TARGET_DIR:-/var/tmp/basalt-target}/debug/basalt}"

usage() {
    sed -n '6,12p' "$0" >&2
    exit 2
}
cmd="${1:-}"
dir="${2:-}"
[ -n "$cmd" ] && [ -n "$dir" ] || usage

# Odd ports only (with an even BASE): Linux hands out even ephemeral ports
# to outgoing connections first, and a client's TIME_WAIT socket on a port
# keeps a server from binding it for a minute; on a busy machine the even
# ports around here are often taken that way.
etcd_client() { echo $((BASE + 2 * $1 - 1)); }
etcd_peer() { echo $((BASE + 5 + 2 * $1)); }
rest_port() { echo $((BASE + 11 + 2 * $1)); }
pg_port() { echo $((BASE + 19 + 2 * $1)); }
node_port() { echo $((BASE + 29 + 2 * $1)); }

log() { printf '[cluster] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# As root: the prefix that runs a command as `postgres`.
AS_PG=()
[ "$(id -u)" = 0 ] && AS_PG=(runuser -u postgres --)
as_pg() { "${AS_PG[@]}" "$@"; }

store_url() {
    local hosts="" i
    for i in 1 2 3; do
        hosts="${hosts:+$hosts,}127.0.0.1:$(pg_port "$i")"
    done
    echo "postgres://postgres@$hosts/basalt?target_session_attrs=read-write&connect_timeout=2"
}

install_missing() {
    local want=()
    command -v etcd >/dev/null 2>&1 || want+=(etcd-server)
    command -v patroni >/dev/null 2>&1 || want+=(patroni)
    /usr/bin/python3 -c 'import etcd' 2>/dev/null || want+=(python3-etcd)
    [ -x "$PG_BIN/initdb" ] || want+=(postgresql-15)
    if [ "${#want[@]}" -gt 0 ]; then
        log "installing ${want[*]} (apt)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}" >/dev/null
    fi
}

# bg NAME LOG CMD... : start CMD in the background, its pid in pids/NAME.pid.
bg() {
    local name=$1 logfile=$2
    shift 2
    setsid "$@" >>"$logfile" 2>&1 </dev/null &
    echo $! >"$dir/pids/$name.pid"
}

alive() {
    local f="$dir/pids/$1.pid"
    [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}

# wait_for WHAT SECONDS CMD... : until CMD succeeds, or die.
wait_for() {
    local what=$1 secs=$2
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || die "$what did not come up within ${secs}s (logs in $dir)"
        sleep 0.2
    done
}

start_etcd() {
    local initial="" i
    for i in 1 2 3; do
        initial="${initial:+$initial,}e$i=http://127.0.0.1:$(etcd_peer "$i")"
    done
    for i in 1 2 3; do
        mkdir -p "$dir/etcd$i"
        chmod 700 "$dir/etcd$i"
        [ "$(id -u)" = 0 ] && chown postgres: "$dir/etcd$i"
        bg "etcd$i" "$dir/etcd$i.log" "${AS_PG[@]}" etcd --name "e$i" --data-dir "$dir/etcd$i/data" \
            --listen-client-urls "http://127.0.0.1:$(etcd_client "$i")" \
            --advertise-client-urls "http://127.0.0.1:$(etcd_client "$i")" \
            --listen-peer-urls "http://127.0.0.1:$(etcd_peer "$i")" \
            --initial-advertise-peer-urls "http://127.0.0.1:$(etcd_peer "$i")" \
            --initial-cluster "$initial" --initial-cluster-state new \
            --initial-cluster-token "basalt-$BASE" --heartbeat-interval 100 --election-timeout 1000
    done
    # Every member healthy before Patroni starts: Patroni reads /version once
    # and would fall back to an API etcd 3.4 does not serve.
    for i in 1 2 3; do
        wait_for "etcd member $i" 60 etcdctl --endpoints "http://127.0.0.1:$(etcd_client "$i")" endpoint health
    done
}

# The Patroni configuration of member I. ttl 10 s / loop_wait 1 s: a dead
# leader is replaced about 10 s after it stopped renewing its key.
patroni_yml() {
    local i=$1 hosts="" j
    for j in 1 2 3; do
        hosts="${hosts:+$hosts,}127.0.0.1:$(etcd_client "$j")"
    done
    cat <<YML
scope: basalt-$BASE
namespace: /basalt/
name: pg$i
log:
  level: INFO
restapi:
  listen: 127.0.0.1:$(rest_port "$i")
  connect_address: 127.0.0.1:$(rest_port "$i")
etcd3:
  hosts: $hosts
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 4
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    postgresql:
      use_pg_rewind: true
      parameters:
        max_connections: 300
        shared_buffers: 64MB
        wal_log_hints: "on"
        max_wal_senders: 10
        max_replication_slots: 10
  initdb:
    - encoding: UTF8
    - locale: C.UTF-8
  pg_hba:
    - host replication replicator 127.0.0.1/32 trust
    - host all all 127.0.0.1/32 trust
    - local all all trust
postgresql:
  listen: 127.0.0.1:$(pg_port "$i")
  connect_address: 127.0.0.1:$(pg_port "$i")
  data_dir: $dir/pg$i/data
  bin_dir: $PG_BIN
  pgpass: $dir/pg$i/pgpass
  authentication:
    replication: {username: replicator, password: replicator}
    superuser: {username: postgres, password: postgres}
    rewind: {username: rewinder, password: rewinder}
  parameters:
    unix_socket_directories: $dir/pg$i
YML
}

start_patroni() {
    local i=$1
    mkdir -p "$dir/pg$i"
    chmod 700 "$dir/pg$i"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir/pg$i"
    patroni_yml "$i" >"$dir/pg$i/patroni.yml"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir/pg$i/patroni.yml"
    bg "patroni$i" "$dir/pg$i/patroni.log" "${AS_PG[@]}" patroni "$dir/pg$i/patroni.yml"
}

# The Patroni member that is the running leader: "pgI PORT".
leader() {
    local i
    for i in 1 2 3; do
        if curl -fs -o /dev/null --max-time 1 "http://127.0.0.1:$(rest_port "$i")/primary"; then
            echo "pg$i $(pg_port "$i")"
            return 0
        fi
    done
    return 1
}

# Every member's PostgreSQL running (Patroni's /health), a leader, and a
# synchronous standby among the members (the member list alone lags: a
# dead member stays listed until its key expires).
cluster_ready() {
    local i sync=""
    for i in 1 2 3; do
        curl -fs -o /dev/null --max-time 1 "http://127.0.0.1:$(rest_port "$i")/health" || return 1
    done
    leader >/dev/null || return 1
    for i in 1 2 3; do
        sync=$(curl -fs --max-time 2 "http://127.0.0.1:$(rest_port "$i")/cluster" | python3 -c '
import json, sys
m = json.load(sys.stdin)["members"]
print(sum(1 for x in m if x.get("role") == "sync_standby"))' 2>/dev/null) && break
    done
    [ "$sync" = 1 ]
}

start_node() {
    local i=$1
    mkdir -p "$dir/node$i"
    bg "node$i" "$dir/node$i.log" "$BASALT_BIN" serve --http "127.0.0.1:$(node_port "$i")" \
        --dir "$dir/node$i/data" --store "$(store_url)"
}

node_up() { curl -fs -o /dev/null --max-time 1 "http://127.0.0.1:$(node_port "$1")/api/health"; }

kill_pidfile() {
    local f=$1 pid
    pid="$(cat "$f" 2>/dev/null || true)"
    [ -n "$pid" ] || return 0
    # setsid made each process a group leader: kill its group (runuser's child too).
    kill -9 -- "-$pid" 2>/dev/null || kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"
}

# Processes that outlived their group (PostgreSQL daemonises under Patroni):
# find them by their data dir, which lies in DIR.
kill_postgres_of() {
    local data=$1 pid
    if [ -f "$data/postmaster.pid" ]; then
        # Negative while a single-user postgres runs (Patroni's crash recovery).
        pid="$(head -n1 "$data/postmaster.pid")"
        pid="${pid#-}"
        if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$data"; then
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
}

case "$cmd" in
start)
    [ -x "$BASALT_BIN" ] || die "no Basalt binary at $BASALT_BIN (cargo build --bin basalt, or set BASALT_BIN)"
    install_missing
    mkdir -p "$dir/pids"
    dir="$(cd "$dir" && pwd)"
    chmod 755 "$dir"
    log "etcd x3 on 127.0.0.1:$(etcd_client 1),$(etcd_client 2),$(etcd_client 3)"
    start_etcd
    log "Patroni x3 (PostgreSQL 15 on $(pg_port 1),$(pg_port 2),$(pg_port 3); synchronous_mode)"
    start_patroni 1
    wait_for "the first PostgreSQL leader" 90 leader
    start_patroni 2
    start_patroni 3
    wait_for "three members running, one synchronous standby" 180 cluster_ready
    read -r _ lport < <(leader)
    if [ -z "$(as_pg "$PG_BIN/psql" -h 127.0.0.1 -p "$lport" -U postgres -qAt -c "SELECT 1 FROM pg_database WHERE datname = 'basalt'" postgres)" ]; then
        as_pg "$PG_BIN/psql" -h 127.0.0.1 -p "$lport" -U postgres -qAt -c "CREATE DATABASE basalt" postgres >/dev/null
    fi
    log "superuser $SU_EMAIL"
    "$BASALT_BIN" superuser upsert "$SU_EMAIL" "$SU_PASSWORD" --dir "$dir/node1/data" --store "$(store_url)" \
        >"$dir/superuser.log" 2>&1 || die "superuser upsert failed: $(cat "$dir/superuser.log")"
    for i in $(seq 1 "$NODES"); do
        start_node "$i"
    done
    for i in $(seq 1 "$NODES"); do
        wait_for "Basalt node $i" 60 node_up "$i"
        echo "http://127.0.0.1:$(node_port "$i")"
    done
    ;;
stop)
    [ -d "$dir" ] || exit 0
    dir="$(cd "$dir" && pwd)"
    for f in "$dir"/pids/node*.pid "$dir"/pids/patroni*.pid "$dir"/pids/etcd*.pid; do
        [ -f "$f" ] && kill_pidfile "$f"
    done
    for i in 1 2 3; do
        kill_postgres_of "$dir/pg$i/data"
    done
    ;;
node-start)
    i="${3:?node number}"
    dir="$(cd "$dir" && pwd)"
    start_node "$i"
    wait_for "Basalt node $i" 60 node_up "$i"
    echo "http://127.0.0.1:$(node_port "$i")"
    ;;
node-kill)
    i="${3:?node number}"
    kill_pidfile "$dir/pids/node$i.pid"
    ;;
pg-start)
    i="${3:?member number}"
    dir="$(cd "$dir" && pwd)"
    alive "patroni$i" && die "patroni$i is running"
    start_patroni "$i"
    ;;
pg-kill)
    # kill -9 Patroni member I and its PostgreSQL: the machine dies.
    i="${3:?member number}"
    dir="$(cd "$dir" && pwd)"
    kill_postgres_of "$dir/pg$i/data"
    kill_pidfile "$dir/pids/patroni$i.pid"
    ;;
leader)
    leader || die "no leader"
    ;;
ready)
    cluster_ready
    ;;
url)
    store_url
    ;;
*)
    usage
    ;;
esac
