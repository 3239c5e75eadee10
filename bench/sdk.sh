#!/usr/bin/env bash
# SDK insert/read benchmark (TrailBase's published scenario), Basalt vs
# PocketBase: bench/sdk_bench.mjs inserts SDK_RECORDS records through the
# official JS SDK with SDK_CONCURRENCY requests in flight, then reads each one
# back by id, against a fresh release Basalt and then a fresh PocketBase
# (never both at once). Writes a Markdown report to
# $BENCH_RESULTS_DIR/<UTC date>-sdk.md and prints it. See bench/README.md.
#
#   bench/sdk.sh                                 # 100,000 records, 64 in flight
#   SDK_RECORDS=5000 bench/sdk.sh                # quick smoke run
#   SKIP_POCKETBASE=1 bench/sdk.sh               # Basalt only (SKIP_BASALT=1: PocketBase only)
#
# Environment: SDK_RECORDS (100000), SDK_CONCURRENCY (64), BASALT_BIN
# (/var/tmp/basalt-target/release/basalt; built with cargo if missing, or
# always with SDK_BUILD=1), PB_BIN (default: bench/setup.sh's cached
# download), BENCH_TMPDIR (/var/tmp: scratch dirs, not a tmpfs),
# BENCH_RESULTS_DIR (bench/results), SDK_WAIT_IDLE (1: first wait until no
# other benchmark runs, see wait_idle), SDK_IDLE_MAX (1800 s), BENCH_KEEP=1
# (keep the scratch dir).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd)
E2E_DIR="$REPO_ROOT/tests/e2e"

SDK_RECORDS=${SDK_RECORDS:-100000}
SDK_CONCURRENCY=${SDK_CONCURRENCY:-64}
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/basalt-target}
export CARGO_TARGET_DIR
BASALT_BIN=${BASALT_BIN:-$CARGO_TARGET_DIR/release/basalt}
BENCH_TMPDIR=${BENCH_TMPDIR:-/var/tmp}
BENCH_RESULTS_DIR=${BENCH_RESULTS_DIR:-$BENCH_DIR/results}
SDK_WAIT_IDLE=${SDK_WAIT_IDLE:-1}
SDK_IDLE_MAX=${SDK_IDLE_MAX:-1800}
SKIP_BASALT=${SKIP_BASALT:-0}
SKIP_POCKETBASE=${SKIP_POCKETBASE:-0}
EMAIL=bench@example.com
PASSWORD=bench-password-123

log() { printf '[sdk %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

RUN_DIR=$(mktemp -d "$BENCH_TMPDIR/basalt-sdk-bench.XXXXXX")
PIDS=()
COMMANDS=()
FAILED=0

# stop_pid PID [GRACE] : SIGTERM, then SIGKILL after GRACE seconds.
stop_pid() {
    local pid=$1 grace=${2:-15} i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    log "pid $pid did not stop after ${grace}s; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do stop_pid "$pid" 5; done
    if ((FAILED)) || [[ "${BENCH_KEEP:-0}" == 1 ]]; then
        log "scratch dir kept: $RUN_DIR"
    else
        rm -rf "$RUN_DIR"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# record CMD... : a command for the report's Commands section.
record() {
    local line
    line=$(printf '%q ' "$@")
    line=${line% }
    line=${line//"$RUN_DIR"/\$RUN}
    line=${line//"$REPO_ROOT"\//}
    COMMANDS+=("$line")
}

# record_raw LINE : a line for the Commands section, as written.
record_raw() { COMMANDS+=("$1"); }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_health URL PID LOG : until GET URL/api/health answers 200 (30 s).
wait_health() {
    local url=$1 pid=$2 logf=$3 i
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || { tail -n 30 "$logf" >&2; die "server exited before answering"; }
        curl -fsS -o /dev/null --max-time 1 "$url/api/health" 2>/dev/null && return 0
        sleep 0.1
    done
    tail -n 30 "$logf" >&2
    die "no answer from $url/api/health within 30 s"
}

# others_running : the processes of other benchmarks and of cargo builds,
# one per line (none: empty). The [x]yz patterns cannot match a command line
# that merely contains the pattern (such as this script's own pgrep).
others_running() {
    pgrep -fa '[r]ealtime_load' || true
    pgrep -fa '[b]ench/run\.sh' || true
    pgrep -fa '[w]rk ' || true
    pgrep -fa '[r]ustc .*--crate-name' || true
}

# wait_idle LABEL : before each server's run, polls every 15 s (at most
# SDK_IDLE_MAX s) until others_running finds nothing; IDLE_NOTE collects
# what it found.
IDLE_NOTE=""
wait_idle() {
    local label=$1 start=$SECONDS busy note
    if [[ "$SDK_WAIT_IDLE" != 1 ]]; then
        note="not checked (SDK_WAIT_IDLE=0)"
    else
        while busy=$(others_running) && [[ -n "$busy" ]]; do
            if ((SECONDS - start >= SDK_IDLE_MAX)); then
                note="other benchmarks still running after ${SDK_IDLE_MAX} s; ran anyway ($(head -n1 <<<"$busy" | cut -c1-100))"
                log "WARNING: $label: $note"
                break
            fi
            log "waiting for other benchmarks to finish ($(wc -l <<<"$busy") processes, e.g. $(head -n1 <<<"$busy" | cut -c1-100))"
            sleep 15
        done
        [[ -n "${note:-}" ]] || note="no other benchmark running (waited $((SECONDS - start)) s)"
    fi
    IDLE_NOTE+="${IDLE_NOTE:+; }$label: $note"
    log "$label: $note"
}

# monitor FILE : every 5 s, appends what others_running finds (runs in the
# background during a measurement; killed afterwards).
monitor() {
    while sleep 5; do others_running >>"$1"; done
}

# check_interference LABEL FILE : notes other benchmarks or builds seen during a run.
check_interference() {
    if [[ -s "$2" ]]; then
        IDLE_NOTE+="; WARNING: during the $1 run, another benchmark or a build was running ($(head -n1 "$2" | cut -c1-100))"
        log "WARNING: during the $1 run, another benchmark or a build was running: $(head -n1 "$2" | cut -c1-100)"
    fi
}

# --- setup ---------------------------------------------------------------------
record_raw "SDK_RECORDS=$SDK_RECORDS SDK_CONCURRENCY=$SDK_CONCURRENCY bench/sdk.sh   # runs the commands below"
command -v node >/dev/null || die "node is required (Node 18 or later)"
command -v curl >/dev/null || die "curl is required"
if [[ ! -d "$E2E_DIR/node_modules/pocketbase" ]]; then
    log "installing the JS SDK (npm ci in tests/e2e)"
    (cd "$E2E_DIR" && npm ci --no-audit --no-fund) >&2
fi
record_raw "(cd tests/e2e && npm ci)"

PB_BIN=${PB_BIN:-}
if [[ "$SKIP_POCKETBASE" != 1 && -z "$PB_BIN" ]]; then
    PB_BIN=$("$BENCH_DIR/setup.sh" | tail -n1)
    record bash bench/setup.sh
fi

if [[ "$SKIP_BASALT" != 1 ]]; then
    if [[ "${SDK_BUILD:-0}" == 1 || ! -x "$BASALT_BIN" ]]; then
        log "building Basalt (release) into $CARGO_TARGET_DIR"
        (cd "$REPO_ROOT" && cargo build --release --bin basalt) >&2
        record env CARGO_TARGET_DIR="$CARGO_TARGET_DIR" cargo build --release --bin basalt
        [[ -x "$BASALT_BIN" ]] || die "no binary at $BASALT_BIN after the build"
    fi
    last_src=$(git -C "$REPO_ROOT" log -1 --format=%ct -- src Cargo.toml Cargo.lock 2>/dev/null || echo 0)
    if (($(stat -c %Y "$BASALT_BIN") < last_src)); then
        log "WARNING: $BASALT_BIN is older than the last commit to src/ (SDK_BUILD=1 rebuilds it)"
    fi
fi

# --- one server ----------------------------------------------------------------
# bench_server KIND : fresh dir, superuser, start, sdk_bench.mjs run, stop.
SERVER_NOTES=()
bench_server() {
    local kind=$1 dir="$RUN_DIR/$1" port url pid data
    mkdir -p "$dir"
    port=$(free_port)
    url="http://127.0.0.1:$port"
    if [[ $kind == basalt ]]; then
        data="$dir/data"
        record "$BASALT_BIN" superuser upsert "$EMAIL" "$PASSWORD" --dir "$data"
        "$BASALT_BIN" superuser upsert "$EMAIL" "$PASSWORD" --dir "$data" >"$dir/superuser.log" 2>&1 ||
            { cat "$dir/superuser.log" >&2; die "basalt superuser upsert failed"; }
        record "$BASALT_BIN" serve --http "127.0.0.1:$port" --dir "$data"
        (cd "$dir" && exec "$BASALT_BIN" serve --http "127.0.0.1:$port" --dir "$data") >"$dir/server.log" 2>&1 &
    else
        data="$dir/pb_data"
        record "$PB_BIN" superuser upsert "$EMAIL" "$PASSWORD" --dir "$data"
        "$PB_BIN" superuser upsert "$EMAIL" "$PASSWORD" --dir "$data" >"$dir/superuser.log" 2>&1 ||
            { cat "$dir/superuser.log" >&2; die "pocketbase superuser upsert failed"; }
        record "$PB_BIN" serve --http "127.0.0.1:$port" --dir "$data" --automigrate=false --migrationsDir "$data/migrations"
        (cd "$dir" && exec "$PB_BIN" serve --http "127.0.0.1:$port" --dir "$data" \
            --automigrate=false --migrationsDir "$data/migrations") >"$dir/server.log" 2>&1 &
    fi
    pid=$!
    PIDS+=("$pid")
    wait_health "$url" "$pid" "$dir/server.log"
    log "== $kind on $url (pid $pid, dir $dir)"

    local -a cmd=(node "$BENCH_DIR/sdk_bench.mjs" run --url "$url" --kind "$kind" --email "$EMAIL" --password "$PASSWORD"
        --records "$SDK_RECORDS" --concurrency "$SDK_CONCURRENCY" --pid "$pid" --out "$RUN_DIR/$kind.json")
    record "${cmd[@]}"
    # In the background, so that a signal to this script stops it at once.
    local rc=0 client mon
    "${cmd[@]}" &
    client=$!
    PIDS+=("$client")
    monitor "$dir/interference" &
    mon=$!
    PIDS+=("$mon")
    wait "$client" || rc=$?
    kill "$mon" 2>/dev/null || true
    wait "$mon" 2>/dev/null || true
    check_interference "$kind" "$dir/interference"

    local hwm rss disk
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo "?")
    hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo "?")
    stop_pid "$pid" 15
    disk=$(du -sk "$data" | cut -f1)
    SERVER_NOTES+=("$kind" "pid $pid; VmRSS ${rss} kB, VmHWM ${hwm} kB at the end; data dir ${disk} kB after stopping")
    log "$kind: VmRSS ${rss} kB, VmHWM ${hwm} kB, data dir ${disk} kB"
    if ((rc != 0)); then
        FAILED=1
        log "$kind: FAILED (sdk_bench.mjs exit $rc); logs in $dir"
    fi
}

# --- machine, then the runs ------------------------------------------------------
DATE=$(date -u +%F)
commit=$(git -C "$REPO_ROOT" rev-parse HEAD 2>/dev/null || echo "no commit")
[[ -n "$(git -C "$REPO_ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]] && commit+=" + uncommitted changes in src/, Cargo.*"
basalt_meta="skipped (SKIP_BASALT=1)"
if [[ "$SKIP_BASALT" != 1 ]]; then
    basalt_meta="$("$BASALT_BIN" --version 2>/dev/null | head -n1 || echo basalt) ($BASALT_BIN, built $(date -u -r "$BASALT_BIN" '+%F %T UTC'))"
fi
pb_meta="skipped (SKIP_POCKETBASE=1)"
if [[ "$SKIP_POCKETBASE" != 1 ]]; then
    pb_meta="$("$PB_BIN" --version | awk '{print $NF}') ($PB_BIN)"
fi

LOAD=""
for kind in basalt pocketbase; do
    [[ "$kind" == basalt && "$SKIP_BASALT" == 1 ]] && continue
    [[ "$kind" == pocketbase && "$SKIP_POCKETBASE" == 1 ]] && continue
    wait_idle "$kind"
    LOAD+="${LOAD:+; }$kind: $(cut -d' ' -f1-3 /proc/loadavg)"
    bench_server "$kind"
done

# --- report ----------------------------------------------------------------------
results=()
for kind in basalt pocketbase; do
    [[ -f "$RUN_DIR/$kind.json" ]] && results+=("$RUN_DIR/$kind.json")
done
((${#results[@]})) || die "no results"
record_raw "node bench/sdk_bench.mjs report \$RUN/meta.json ${results[*]//"$RUN_DIR"/\$RUN} > ${BENCH_RESULTS_DIR//"$REPO_ROOT"\//}/$DATE-sdk.md"

python3 - "$RUN_DIR/meta.json" "$DATE" "$SDK_RECORDS" "$SDK_CONCURRENCY" "$commit" "$basalt_meta" "$pb_meta" \
    "$LOAD" "$IDLE_NOTE" "$(df --output=fstype,source "$RUN_DIR" | tail -n1 | xargs)" "${SERVER_NOTES[@]}" <<'PY' -- "${COMMANDS[@]}"
import json, os, platform, sys
args = sys.argv[1:]
sep = args.index("--")
fixed, commands = args[:sep], args[sep + 1:]
out, date, records, conc, commit, basalt, pb, load, idle, fs, *notes = fixed
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
json.dump({
    "date": date, "records": int(records), "concurrency": int(conc), "commit": commit,
    "basalt": basalt, "pocketbase": pb, "load": f"load average (1, 5, 15 min) before each run: {load}", "idle": idle,
    "nproc": len(os.sched_getaffinity(0)), "cpu": cpu, "ram": f"{mem / 1048576:.1f} GiB", "kernel": platform.release(),
    "fs": fs, "servers": dict(zip(notes[::2], notes[1::2])), "commands": commands,
}, open(out, "w"), indent=2)
PY

mkdir -p "$BENCH_RESULTS_DIR"
report="$BENCH_RESULTS_DIR/$DATE-sdk.md"
node "$BENCH_DIR/sdk_bench.mjs" report "$RUN_DIR/meta.json" "${results[@]}" >"$report"
cat "$report"
log "report written to $report"
((FAILED == 0)) || die "at least one server failed; see the logs above"
