#!/usr/bin/env bash
# Realtime across nodes on PostgreSQL (issue 17): commit→client latency of
# events written through node A and received by a WebSocket client on node
# B (both nodes on one database), next to the same client on node A, and
# the check that every event arrived once, in seq order, without a gap.
#
#   bench/realtime_nodes.sh                  # 2,000 events: 200 writes/s for 10 s
#   RN_RATE=100 RN_SECONDS=20 bench/realtime_nodes.sh
#
# Starts a throwaway PostgreSQL 15 (scripts/pg.sh) on RN_PG_PORT and two
# release-build nodes on free ports, runs examples/realtime_load once per
# scenario (one WebSocket subscriber; its writer stamps `sent_us` when a
# write is due, the subscriber takes receive time − sent_us: one machine,
# one clock, so a figure is an upper bound on commit→client that includes
# the create request itself), prints one JSON line per scenario and a
# summary, and stops everything it started.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd)
: "${RN_PG_PORT:=55441}"  # not 55439, the port scripts/test.sh uses
: "${RN_RATE:=200}"
: "${RN_SECONDS:=10}"
: "${CARGO_TARGET_DIR:=/var/tmp/basalt-target}"
: "${BASALT_BIN:=$CARGO_TARGET_DIR/release/basalt}"
: "${LOAD_BIN:=$CARGO_TARGET_DIR/release/examples/realtime_load}"
: "${RN_BUILD:=1}"  # 0 = use the binaries as they are
export CARGO_TARGET_DIR

EMAIL=bench@example.com
PASSWORD=bench-password-123
RUN=$(mktemp -d /var/tmp/basalt-rn.XXXXXX)
chmod 755 "$RUN" # scripts/pg.sh runs initdb as the postgres user when root
PIDS=()

log() { printf '[realtime_nodes %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
bl() { python3 "$BENCH_DIR/benchlib.py" "$@"; }

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    "$REPO_ROOT/scripts/pg.sh" stop "$RUN/pg" >/dev/null 2>&1 || true
    log "logs and data in $RUN"
}
trap cleanup EXIT

if [[ "$RN_BUILD" == 1 ]]; then
    (cd "$REPO_ROOT" && cargo build --release --locked --bin basalt --example realtime_load) >&2
fi
[[ -x "$BASALT_BIN" && -x "$LOAD_BIN" ]] || die "no $BASALT_BIN or $LOAD_BIN (build them, or RN_BUILD=1)"

server=$("$REPO_ROOT/scripts/pg.sh" start "$RUN/pg" "$RN_PG_PORT" | tail -n 1)
db="${server%/*}/basalt_rn"
python3 - "$server" <<'PY' || die "cannot create the database"
import subprocess, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
subprocess.run(["psql", "-h", u.hostname, "-p", str(u.port), "-U", u.username or "postgres",
                "-d", "postgres", "-qc", "CREATE DATABASE basalt_rn"], check=True)
PY

# node NAME : starts a node on DB, sets PORT_<NAME>.
node() {
    local name=$1 port
    port=$(bl free-port)
    mkdir -p "$RUN/$name"
    (cd "$RUN/$name" && exec "$BASALT_BIN" serve --http "127.0.0.1:$port" --dir "$RUN/$name/data" \
        --store "$db" --max-connections 100000) >"$RUN/$name/server.log" 2>&1 &
    PIDS+=($!)
    local start=$SECONDS
    until bl health "http://127.0.0.1:$port"; do
        ((SECONDS - start < 60)) || die "node $name not healthy; see $RUN/$name/server.log"
        sleep 0.2
    done
    printf -v "PORT_$name" '%s' "$port"
}

"$BASALT_BIN" superuser upsert "$EMAIL" "$PASSWORD" --dir "$RUN/setup" --store "$db" >"$RUN/superuser.log" 2>&1 ||
    die "superuser upsert failed: $(cat "$RUN/superuser.log")"
node a
A="http://127.0.0.1:$PORT_a"
token=$(bl token "$A" "$EMAIL" "$PASSWORD")
bl post-json "$A/api/collections" '{"name":"posts","listRule":"","viewRule":"","createRule":"",
 "schema":{"type":"object","properties":{"title":{"type":"string"},"sent_us":{"type":"integer"}},
 "required":["title"],"additionalProperties":false}}' "$token" >/dev/null
# Started after the collection exists (it loads collections at start).
node b
B="http://127.0.0.1:$PORT_b"
log "node A $A, node B $B, database $db"

# scenario LABEL SUBSCRIBE_URL WRITE_URL
scenario() {
    "$LOAD_BIN" --url "$2" --write-url "$3" --protocol ws --subscribers 1 \
        --rate "$RN_RATE" --seconds "$RN_SECONDS" --collection posts --token "$token" \
        --writers 4 --drain-idle 5 --drain-max 30 --label "$1" 2>>"$RUN/load.log" | tee -a "$RUN/results.jsonl"
}
scenario "across nodes: writes on A, client on B" "$B" "$A"
scenario "one node: writes on A, client on A" "$A" "$A"

python3 - "$RUN/results.jsonl" <<'PY'
import json, sys
print("\n| scenario | events | missing | seq gaps / dups | p50 ms | p99 ms | max ms |")
print("|---|---:|---:|---:|---:|---:|---:|")
for line in open(sys.argv[1]):
    r = json.loads(line)
    l = r["latency_ms"]
    print(f"| {r['label']} | {r['events_received']} | {r['events_missing']} | "
          f"{r['seq_gaps']} / {r['seq_dups']} | {l['p50']} | {l['p99']} | {l['max']} |")
PY
