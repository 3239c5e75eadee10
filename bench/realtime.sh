#!/usr/bin/env bash
# Realtime benchmark: N subscribers on one server, a writer creating records
# at a fixed rate, and the delivery latency of every event, for Basalt
# (WebSocket feed and PocketBase-style SSE) and PocketBase 0.40 (SSE).
# Markdown report on stdout and in bench/results/<date>-realtime.md.
# See the "Realtime" section of bench/README.md.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source=lib.sh
source "$BENCH_DIR/lib.sh"

# --- configuration (environment) --------------------------------------------
# Scenarios run in order, each against a fresh server:
# SERVER:PROTOCOL:SUBSCRIBERS[:RATE] (RATE defaults to RT_RATE). The first
# four are the headline; 200 subscribers is a size PocketBase keeps up with
# at 200 writes/s (compared like for like when its row exists, from the list
# or a fallback); the last three hold 10,000 subscribers at 1 write/s:
# connections and memory without the fan-out load. A scenario already
# measured in this run (e.g. by a fallback) is not run again.
: "${RT_SCENARIOS:=basalt:ws:1000 basalt:ws:10000 basalt:sse:1000 pocketbase:sse:1000 basalt:ws:200 basalt:sse:200 pocketbase:sse:200 basalt:ws:10000:1 basalt:sse:10000:1 pocketbase:sse:10000:1}"
: "${RT_RATE:=200}"            # writes per second
: "${RT_SECONDS:=10}"          # how long the writer runs
# When a scenario does not keep up (see realtime_report.py verdict), the same
# server, protocol and rate run again with each of these sizes below its N,
# largest first, until one keeps up. Empty: no fallback.
: "${RT_FALLBACK:=7500 5000 2000 1500 500 200}"
: "${RT_THREADS:=1}"           # load generator: subscriber reader threads
: "${RT_WRITERS:=16}"          # load generator: max keep-alive write connections
: "${RT_BATCH:=100}"           # load generator: handshakes in flight per thread
: "${RT_RAMP_TIMEOUT:=120}"    # seconds to get every subscriber subscribed
: "${RT_DRAIN_IDLE:=5}"        # stop waiting for events after this many idle seconds
: "${RT_DRAIN_MAX:=60}"        # ... or this many seconds after the last write
: "${RT_NOFILE:=65536}"        # wanted `ulimit -n` (falls back to the hard limit)
: "${RT_IDLE_WAIT:=600}"       # seconds to wait for an idle machine before each scenario
: "${RT_RETRIES:=1}"           # repeats of a scenario that other processes disturbed
: "${RT_BUILD:=0}"             # 1 = always build first
: "${RT_NO_BUILD:=0}"          # 1 = never build (a stale binary is used, with a note);
                               #     a missing binary is an error
: "${RT_BEFORE_CAPS:=0}"       # 1 = BASALT_BIN predates the connection caps (a "before"
                               #     binary): no caps to lift, no staleness check
: "${BENCH_RESULTS_DIR:=$BENCH_DIR/results}"
: "${BENCH_KEEP:=0}"
: "${BENCH_CACHE:=/var/tmp/basalt-bench}"
: "${PB_VERSION:=0.40.6}"
: "${CARGO_TARGET_DIR:=/var/tmp/basalt-target}"
: "${BASALT_BIN:=$CARGO_TARGET_DIR/release/basalt}"
: "${LOAD_BIN:=$CARGO_TARGET_DIR/release/examples/realtime_load}"
export CARGO_TARGET_DIR

BENCH_EMAIL=bench@example.com
BENCH_PASSWORD=bench-password-123
COLLECTION=posts

: "${BENCH_TMPDIR:=/var/tmp}"
RUN_DIR=$(mktemp -d "$BENCH_TMPDIR/basalt-realtime-run.XXXXXX")
touch "$RUN_DIR/results.jsonl" "$RUN_DIR/meta.tsv" "$RUN_DIR/commands.txt" "$RUN_DIR/pids"

FAILED=0
cleanup() {
    local rc=$?
    stop_tracked
    if [[ "$BENCH_KEEP" == 1 || $rc != 0 || $FAILED != 0 ]]; then
        log "scratch dir kept: $RUN_DIR"
    else
        rm -rf "$RUN_DIR"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rt() { python3 "$BENCH_DIR/realtime_report.py" "$@"; }

# --- open files ------------------------------------------------------------------
# Every subscriber is one socket in the load generator and one in the server
# (both inherit this limit). Only root with CAP_SYS_RESOURCE may go above the
# hard limit; otherwise take the hard limit.
if ! ulimit -n "$RT_NOFILE" 2>/dev/null; then
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    log "ulimit -n $RT_NOFILE refused; using the hard limit $(ulimit -n)"
fi
NOFILE=$(ulimit -n)

# --- binaries -----------------------------------------------------------------------
# Rebuild Basalt only when the binary is missing or older than the last commit
# (others may be building in the same target dir; cargo waits for its lock).
commit_ct=$(git -C "$REPO_ROOT" log -1 --format=%ct 2>/dev/null || echo 0)
build() {
    [[ "$RT_NO_BUILD" == 1 ]] && die "$1 is missing or stale and RT_NO_BUILD=1"
    shift
    log "building: cargo build --release $*"
    record_cmd env CARGO_TARGET_DIR="$CARGO_TARGET_DIR" cargo build --release "$@"
    (cd "$REPO_ROOT" && cargo build --release "$@") >&2
}
if [[ "$RT_NO_BUILD" == 1 && -x "$BASALT_BIN" ]] && (($(stat -c %Y "$BASALT_BIN") < commit_ct)); then
    log "note: $BASALT_BIN is older than the last commit (RT_NO_BUILD=1: used as it is)"
elif [[ "$RT_BUILD" == 1 || ! -x "$BASALT_BIN" ]] || { [[ "$RT_BEFORE_CAPS" != 1 ]] && (($(stat -c %Y "$BASALT_BIN") < commit_ct)); }; then
    build "$BASALT_BIN"
fi
if [[ "$RT_BUILD" == 1 || ! -x "$LOAD_BIN" || "$REPO_ROOT/examples/realtime_load.rs" -nt "$LOAD_BIN" ]]; then
    build "$LOAD_BIN" --example realtime_load
fi
[[ -x "$BASALT_BIN" && -x "$LOAD_BIN" ]] || die "binaries missing after the build"
PB_BIN="$BENCH_CACHE/pocketbase-$PB_VERSION/pocketbase"
if [[ "$RT_SCENARIOS" == *pocketbase* && ! -x "$PB_BIN" ]]; then
    PB_BIN=$(BENCH_CACHE="$BENCH_CACHE" PB_VERSION="$PB_VERSION" "$BENCH_DIR/setup.sh" | tail -n1)
    record_cmd bash bench/setup.sh
fi

# --- server kinds (as in run.sh, with the realtime collection) -----------------------

pocketbase_prepare() {
    local -a cmd=("$PB_BIN" superuser upsert "$BENCH_EMAIL" "$BENCH_PASSWORD" --dir "$1/pb_data")
    record_cmd "${cmd[@]}"
    "${cmd[@]}" >"$1/superuser.log" 2>&1 || { cat "$1/superuser.log" >&2; die "pocketbase superuser upsert failed"; }
}
pocketbase_start() {
    start_bg "$1/server.log" "$PB_BIN" serve --http "127.0.0.1:$2" --dir "$1/pb_data" \
        --automigrate=false --migrationsDir "$1/pb_data/migrations"
}
# sent_us holds microseconds since the epoch (~1.8e15 < 2^53: exact in a
# double, which is how PocketBase stores numbers).
pocketbase_collection_body() {
    cat <<JSON
{"name":"$COLLECTION","type":"base","listRule":"","viewRule":"","createRule":"","updateRule":"","deleteRule":"",
 "fields":[{"name":"title","type":"text"},
           {"name":"sent_us","type":"number","onlyInt":true},
           {"name":"created","type":"autodate","onCreate":true},
           {"name":"updated","type":"autodate","onCreate":true,"onUpdate":true}]}
JSON
}

basalt_prepare() {
    local -a cmd=("$BASALT_BIN" superuser upsert "$BENCH_EMAIL" "$BENCH_PASSWORD" --dir "$1/data")
    record_cmd "${cmd[@]}"
    "${cmd[@]}" >"$1/superuser.log" 2>&1 || { cat "$1/superuser.log" >&2; die "basalt superuser upsert failed"; }
}
basalt_start() {
    # Every subscriber connects from 127.0.0.1: lift the total connection
    # cap here and the per-address caps in basalt_tune.
    local -a caps=(--max-connections 1000000)
    [[ "$RT_BEFORE_CAPS" == 1 ]] && caps=()
    start_bg "$1/server.log" "$BASALT_BIN" serve --http "127.0.0.1:$2" --dir "$1/data" "${caps[@]}"
}
# basalt_tune BASE TOKEN: the per-address caps (256 connections, 64 realtime
# streams by default) would refuse a load generator on one address.
basalt_tune() {
    [[ "$RT_BEFORE_CAPS" == 1 ]] && return 0
    local body='{"limits":{"connectionsPerAddress":1000000,"realtimePerAddress":1000000}}'
    record_cmd python3 "$BENCH_DIR/benchlib.py" request PATCH "$1/api/settings" "$body" '$TOKEN'
    bl request PATCH "$1/api/settings" "$body" "$2" >/dev/null || die "PATCH /api/settings (limits) failed"
}
pocketbase_tune() { :; }
basalt_collection_body() {
    cat <<JSON
{"name":"$COLLECTION","type":"base","listRule":"","viewRule":"","createRule":"","updateRule":"","deleteRule":"",
 "schema":{"type":"object",
           "properties":{"title":{"type":"string"},"sent_us":{"type":"integer"}},
           "required":["title"],"additionalProperties":false}}
JSON
}

# --- one scenario ------------------------------------------------------------------

# machine_busy_ticks : CPU time of the whole machine (all CPUs, not idle or
# iowait), in clock ticks.
machine_busy_ticks() { awk '/^cpu / { print $2+$3+$4+$7+$8 }' /proc/stat; }

# ksoftirqd_ticks : CPU time of the ksoftirqd/N kernel threads, in clock
# ticks: loopback network work the kernel defers there under heavy load,
# on behalf of server and client but charged to neither.
ksoftirqd_ticks() {
    local f total=0 t
    for f in /proc/[0-9]*/stat; do
        t=$(awk '$2 ~ /^\(ksoftirqd\// { print $14 + $15 }' "$f" 2>/dev/null) || continue
        [[ -n "$t" ]] && total=$((total + t))
    done
    echo "$total"
}

# busy_pct : percent of all CPUs busy over one second (/proc/stat).
busy_pct() {
    local a b
    a=$(awk '/^cpu / { print $2+$3+$4+$7+$8, $5+$6 }' /proc/stat)
    sleep 1
    b=$(awk '/^cpu / { print $2+$3+$4+$7+$8, $5+$6 }' /proc/stat)
    python3 -c 'import sys; b0, i0, b1, i1 = map(int, sys.argv[1:]); t = (b1 - b0) + (i1 - i0); print(round(100 * (b1 - b0) / t) if t else 0)' $a $b
}

# wait_machine_idle : the machine is shared (builds, other benchmarks); wait
# up to RT_IDLE_WAIT s until under 15 % of the CPUs are busy. Prints the last
# reading.
wait_machine_idle() {
    local start=$SECONDS pct
    pct=$(busy_pct)
    while ((pct >= 15 && SECONDS - start < RT_IDLE_WAIT)); do
        ((SECONDS - start < 2)) && log "machine busy (${pct}% CPU); waiting up to ${RT_IDLE_WAIT}s"
        sleep 2
        pct=$(busy_pct)
    done
    ((pct < 15)) || log "WARNING: machine still ${pct}% busy; measuring anyway"
    echo "$pct"
}

# scenario KIND PROTOCOL SUBSCRIBERS : fresh server, collection, one load run,
# server CPU and memory, stop. Appends one line to results.jsonl; returns
# non-zero if the run could not be made (not if it merely missed events).
scenario() {
    local kind=$1 proto=$2 subs=$3 rate=$4
    local name="$kind-$proto-$subs"
    [[ "$rate" == "$RT_RATE" ]] || name+="-r$rate"
    local dir="$RUN_DIR/$name" port base token pid i
    # A repeated scenario gets a fresh directory (fresh data) too.
    for ((i = 2; ; i++)); do
        [[ -e "$dir" ]] || break
        dir="$RUN_DIR/$name.$i"
    done
    mkdir -p "$dir"
    if ((subs + 256 > NOFILE)); then
        log "WARNING: $name: $subs subscribers with ulimit -n $NOFILE; connections may fail (EMFILE)"
    fi
    local busy
    busy=$(wait_machine_idle)
    port=$(free_port)
    base="http://127.0.0.1:$port"
    log "== $name on $base (dir $dir)"
    # Run from the scratch dir, so nothing a server or CLI writes to a
    # relative path lands in the repository.
    cd "$dir"
    "${kind}_prepare" "$dir"
    "${kind}_start" "$dir" "$port"
    pid=$BG_PID
    # This runs in a subshell (see run_scenario): stop the server however it ends.
    trap 'stop_pid '"$pid" EXIT
    wait_health "$base" "$pid" "$dir/server.log" 30
    token=$(bl token "$base" "$BENCH_EMAIL" "$BENCH_PASSWORD")
    bl post-json "$base/api/collections" "$("${kind}_collection_body")" "$token" >/dev/null
    "${kind}_tune" "$base" "$token"

    local -a cmd=("$LOAD_BIN" --url "$base" --protocol "$proto" --subscribers "$subs"
        --rate "$rate" --seconds "$RT_SECONDS" --collection "$COLLECTION"
        --threads "$RT_THREADS" --writers "$RT_WRITERS" --batch "$RT_BATCH"
        --ramp-timeout "$RT_RAMP_TIMEOUT" --drain-idle "$RT_DRAIN_IDLE" --drain-max "$RT_DRAIN_MAX"
        --label "$name")
    # Hard bound on the whole client run: ramp + writes + the 10 s write
    # grace + drain + a margin.
    local bound=$((RT_RAMP_TIMEOUT + RT_SECONDS + 10 + RT_DRAIN_MAX + 60))
    record_cmd timeout --kill-after=10 "$bound" "${cmd[@]}"
    local cpu0 cpu1 t0 t1 rc=0 hz m0 m1 k0 k1
    hz=$(getconf CLK_TCK)
    cpu0=$(proc_cpu_ticks "$pid")
    m0=$(machine_busy_ticks)
    k0=$(ksoftirqd_ticks)
    t0=$(date +%s.%N)
    timeout --kill-after=10 "$bound" "${cmd[@]}" >"$dir/load.json" 2>"$dir/load.log" &
    local lpid=$!
    track_pid "$lpid"
    wait "$lpid" || rc=$?
    t1=$(date +%s.%N)
    cpu1=$(proc_cpu_ticks "$pid" || echo "$cpu0")
    m1=$(machine_busy_ticks)
    k1=$(ksoftirqd_ticks)
    sed 's/^/    /' "$dir/load.log" >&2

    local rss hwm alive=1
    kill -0 "$pid" 2>/dev/null || alive=0
    rss=$(proc_kb "$pid" VmRSS 2>/dev/null || echo null)
    hwm=$(proc_kb "$pid" VmHWM 2>/dev/null || echo null)
    local load status=ok reason=""
    load=$(tail -n1 "$dir/load.json" 2>/dev/null || true)
    if ! python3 -c 'import json,sys; json.loads(sys.argv[1])' "$load" 2>/dev/null; then
        load=null status=failed reason="load generator exit $rc, no report (see $dir/load.log)"
    elif ((rc != 0)); then
        status=failed reason="load generator exit $rc"
    fi
    ((alive)) || { status=failed reason="server exited during the run${reason:+; $reason}"; }
    local errors
    errors=$(grep -ciE 'panic|ERROR' "$dir/server.log" || true)
    record_json "$(bl_json scenario="$name" server="$kind" protocol="$proto" subscribers:="$subs" rate:="$rate" \
        status="$status" reason="$reason" load:="$load" rss_kb:="${rss:-null}" hwm_kb:="${hwm:-null}" \
        server_cpu_s:="$(python3 -c "print(round(($cpu1 - $cpu0) / $hz, 2))")" \
        client_wall_s:="$(python3 -c "print(round($t1 - $t0, 2))")" server_log_errors:="${errors:-0}" \
        nofile:="$NOFILE" busy_before_pct:="$busy" \
        machine_cpu_s:="$(python3 -c "print(round(($m1 - $m0) / $hz, 2))")" \
        ksoftirqd_cpu_s:="$(python3 -c "print(round(($k1 - $k0) / $hz, 2))")")"
    log "$name: $status${reason:+ ($reason)}; server CPU $(((cpu1 - cpu0) / hz)) s, VmRSS ${rss} kB, VmHWM ${hwm} kB"
    stop_pid "$pid" 15
    trap - EXIT
    [[ "$status" == ok ]]
}

# run_scenario KIND PROTOCOL SUBSCRIBERS RATE : run_scenario_once, repeated
# (up to RT_RETRIES times) while other processes disturb it. Sets VERDICT.
# run_scenario_once: scenario in a subshell, so that a failure to start or
# provision a server (die) ends that scenario only; it then still gets a row
# in the report.
run_scenario() {
    local try disturbed
    for ((try = 0; ; try++)); do
        run_scenario_once "$@"
        disturbed=$(rt disturbed "$RUN_DIR/results.jsonl")
        [[ "$disturbed" == yes* ]] || break
        if ((try >= RT_RETRIES)); then
            log "WARNING: $1:$2:$3:$4 disturbed (${disturbed#yes } s of CPU to other processes); keeping it"
            break
        fi
        log "$1:$2:$3:$4 disturbed (${disturbed#yes } s of CPU to other processes); repeating it"
        rt supersede "$RUN_DIR/results.jsonl"
    done
    VERDICT=$(rt verdict "$RUN_DIR/results.jsonl")
}

run_scenario_once() {
    local before after rc=0
    before=$(wc -l <"$RUN_DIR/results.jsonl")
    # In the background and waited for: `set -e` holds inside (it would not
    # in `( … ) || …`), and cleanup can stop it.
    (scenario "$@") &
    local sj=$!
    track_pid "$sj"
    wait "$sj" || rc=$?
    after=$(wc -l <"$RUN_DIR/results.jsonl")
    if ((after == before)); then
        record_json "$(bl_json scenario="$1-$2-$3" server="$1" protocol="$2" subscribers:="$3" rate:="$4" \
            status=failed reason="aborted before the load run (exit $rc); see the log above" load:=null)"
    fi
    ((rc == 0)) || FAILED=1
    return 0
}

# --- machine and versions -------------------------------------------------------
DATE=$(date -u +%F)
meta date "$(date -u '+%F %T UTC')"
meta nproc "$(nproc)"
meta cpu "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
meta ram "$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
meta kernel "$(uname -r)"
meta fs "$(df --output=fstype "$RUN_DIR" | tail -n1 | tr -d ' ')"
meta nofile "$NOFILE"
rev=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo "no commit")
[[ -n "$(git -C "$REPO_ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]] && rev+=" + uncommitted changes"
meta basalt_version "$("$BASALT_BIN" --version 2>/dev/null | head -n1) (git $rev, binary built $(date -u -r "$BASALT_BIN" '+%F %T UTC'))"
meta load_version "examples/realtime_load.rs (binary built $(date -u -r "$LOAD_BIN" '+%F %T UTC'))"
if [[ "$RT_SCENARIOS" == *pocketbase* ]]; then
    meta pocketbase_version "$("$PB_BIN" --version | awk '{print $NF}')"
fi
meta rate "$RT_RATE"
meta seconds "$RT_SECONDS"
meta load_args "--threads $RT_THREADS --writers $RT_WRITERS --batch $RT_BATCH --drain-idle $RT_DRAIN_IDLE --drain-max $RT_DRAIN_MAX"

# --- run ---------------------------------------------------------------------
declare -A DONE=()
for sc in $RT_SCENARIOS; do
    IFS=: read -r kind proto subs rate <<<"$sc"
    rate=${rate:-$RT_RATE}
    if [[ -n "${DONE[$kind:$proto:$subs:$rate]:-}" ]]; then
        log "$sc: already measured in this run"
        continue
    fi
    [[ "$kind" =~ ^(basalt|pocketbase)$ && "$proto" =~ ^(ws|sse)$ && "$subs" =~ ^[0-9]+$ ]] ||
        die "bad scenario $sc (SERVER:PROTOCOL:N[:RATE])"
    [[ "$kind:$proto" != pocketbase:ws ]] || die "PocketBase has no WebSocket feed ($sc)"
    run_scenario "$kind" "$proto" "$subs" "$rate"
    DONE[$kind:$proto:$subs:$rate]=1
    log "$sc: $VERDICT"
    [[ "$VERDICT" == "keeps up"* ]] && continue
    for n in $RT_FALLBACK; do
        ((n < subs)) || continue
        [[ -z "${DONE[$kind:$proto:$n:$rate]:-}" ]] || continue
        run_scenario "$kind" "$proto" "$n" "$rate"
        DONE[$kind:$proto:$n:$rate]=1
        log "$kind:$proto:$n:$rate: $VERDICT"
        [[ "$VERDICT" == "keeps up"* ]] && break
    done
done

# --- report ------------------------------------------------------------------
mkdir -p "$BENCH_RESULTS_DIR"
report="$BENCH_RESULTS_DIR/$DATE-realtime.md"
rt report "$RUN_DIR/results.jsonl" "$RUN_DIR/meta.tsv" "$RUN_DIR/commands.txt" >"$report"
cat "$report"
log "report written to $report"
((FAILED == 0)) || die "at least one scenario failed; see above (scratch dir kept)"
