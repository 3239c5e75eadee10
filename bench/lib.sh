# shellcheck shell=bash
# Shared helpers for bench/run.sh. Source it; do not run it.
#
# Expects these to be set by the caller before use:
#   BENCH_DIR  - the bench/ directory (Lua scripts, benchlib.py)
#   REPO_ROOT  - the repository root (commands are shown relative to it)
#   RUN_DIR    - a scratch directory for this run (logs, data dirs, results)
# Files in RUN_DIR that the helpers write:
#   results.jsonl  one JSON object per measurement (rendered by benchlib.py report)
#   meta.tsv       key<TAB>value facts for the report header
#   commands.txt   the commands that were run, for the report
#   pids           every background process started, for cleanup

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# bl SUBCOMMAND ARGS... : run a benchlib.py helper.
bl() { python3 "$BENCH_DIR/benchlib.py" "$@"; }

free_port() { bl free-port; }

# meta KEY VALUE : add a fact to the report header.
meta() { printf '%s\t%s\n' "$1" "$2" >>"$RUN_DIR/meta.tsv"; }

# record_cmd WORDS... : remember a command for the report (RUN_DIR shown as
# $RUN, paths inside the repo relative to its root). A word that is exactly
# "$TOKEN" (single-quoted by the caller) is shown as "$TOKEN", the superuser
# token, instead of the token itself.
record_cmd() {
    local line
    line=$(printf '%q ' "$@")
    line=${line% }
    # shellcheck disable=SC2016 # literal $TOKEN on both sides
    line=${line//'\$TOKEN'/'"$TOKEN"'}
    line=${line//"$RUN_DIR"/\$RUN}
    line=${line//"$REPO_ROOT"\//}
    printf '%s\n' "$line" >>"$RUN_DIR/commands.txt"
}

# bl_json KEY=VALUE... KEY:=RAW... : a one-line JSON object (for record_json);
# VALUE is a string, RAW is JSON (a number, null, ...).
bl_json() { bl json "$@"; }

# record_json JSON : append one measurement to results.jsonl.
record_json() { printf '%s\n' "$1" >>"$RUN_DIR/results.jsonl"; }

# track_pid PID : remember a background process so cleanup can stop it.
track_pid() { printf '%s\n' "$1" >>"$RUN_DIR/pids"; }

# stop_pid PID [GRACE_SECONDS] : SIGTERM, wait, then SIGKILL. Quiet if gone.
stop_pid() {
    local pid=$1 grace=${2:-10} i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    log "pid $pid did not stop after ${grace}s; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

# stop_tracked : stop every process listed in RUN_DIR/pids (newest first).
stop_tracked() {
    [[ -f "$RUN_DIR/pids" ]] || return 0
    local pid
    for pid in $(tac "$RUN_DIR/pids"); do stop_pid "$pid" 5; done
    : >"$RUN_DIR/pids"
}

# start_bg LOGFILE CMD... : start CMD in the background, its output to LOGFILE.
# Sets BG_PID (the pid of CMD itself, not of a wrapper shell).
start_bg() {
    local logfile=$1
    shift
    record_cmd "$@"
    "$@" >"$logfile" 2>&1 &
    BG_PID=$!
    track_pid "$BG_PID"
}

# wait_health BASE PID LOGFILE [TIMEOUT_S] : poll BASE/api/health until it
# answers 2xx; fail if PID dies or TIMEOUT_S (default 30) passes.
wait_health() {
    local base=$1 pid=$2 logfile=$3 timeout=${4:-30} start=$SECONDS
    while ((SECONDS - start < timeout)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$logfile" >&2 || true
            die "server (pid $pid) exited before becoming healthy; log: $logfile"
        fi
        if bl health "$base"; then
            log "healthy after $((SECONDS - start))s: $base"
            return 0
        fi
        sleep 0.2
    done
    tail -n 30 "$logfile" >&2 || true
    die "server at $base not healthy after ${timeout}s; log: $logfile"
}

# proc_kb PID FIELD : a kB figure from /proc/PID/status (VmRSS, VmHWM, ...).
proc_kb() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

# wrk_args DURATION [TIMEOUT] : the common wrk arguments.
wrk_args() {
    printf '%s\n' -t"$BENCH_THREADS" -c"$BENCH_CONNECTIONS" -d"$1" \
        --timeout "${2:-$BENCH_WRK_TIMEOUT}" --latency
}

# per_workload NAME WORKLOAD DEFAULT : $NAME_<WORKLOAD> (upper case, - as _)
# if set, else DEFAULT. E.g. per_workload BENCH_DURATION list 10s.
per_workload() {
    local var="$1_${2^^}"
    var=${var//-/_}
    printf '%s\n' "${!var:-$3}"
}

# proc_cpu_ticks PID : user + system CPU time of PID, in clock ticks.
proc_cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

# wait_idle PID [MAX_S] : wait until PID uses less than 10 % of a core over
# 0.3 s, i.e. the server has finished the requests a previous wrk run left in
# flight (a slow endpoint under 64 connections can keep it busy for seconds
# after wrk exits). At most MAX_S seconds (default 30); quiet if PID is unset.
wait_idle() {
    local pid=$1 max=${2:-30} start=$SECONDS hz a b
    [[ -n "$pid" && -r "/proc/$pid/stat" ]] || return 0
    hz=$(getconf CLK_TCK)
    while ((SECONDS - start < max)); do
        a=$(proc_cpu_ticks "$pid") || return 0
        sleep 0.3
        b=$(proc_cpu_ticks "$pid") || return 0
        # (b - a) / hz seconds of CPU in 0.3 s; idle below 0.03 s.
        if (((b - a) * 100 <= 3 * hz)); then
            ((SECONDS - start < 2)) || log "server idle after $((SECONDS - start))s"
            return 0
        fi
    done
    log "WARNING: server pid $pid still busy after ${max}s; measuring anyway"
}

# run_wrk LABEL WORKLOAD LUA URL [VAR=VALUE...] : one timed wrk run, once the
# server is idle (wait_idle on $SERVER_PID).
# Duration: BENCH_DURATION_<WORKLOAD> (upper case, - as _) or BENCH_DURATION;
# timeout: BENCH_WRK_TIMEOUT_<WORKLOAD> or BENCH_WRK_TIMEOUT.
# Prints wrk's summary to stderr and appends a result to results.jsonl:
#   {"server":LABEL,"workload":WORKLOAD,"kind":"wrk",rps,p50_us,p99_us,non2xx,...}
run_wrk() {
    local label=$1 workload=$2 lua=$3 url=$4
    shift 4
    local duration timeout
    duration=$(per_workload BENCH_DURATION "$workload" "$BENCH_DURATION")
    timeout=$(per_workload BENCH_WRK_TIMEOUT "$workload" "$BENCH_WRK_TIMEOUT")
    local out="$RUN_DIR/$label-$workload.wrk.txt"
    wait_idle "${SERVER_PID:-}"
    local -a args
    mapfile -t args < <(wrk_args "$duration" "$timeout")
    local -a cmd=(env BENCH_LUA_DIR="$BENCH_DIR" BENCH_THREADS="$BENCH_THREADS" "$@"
        wrk "${args[@]}" -s "$lua" "$url")
    record_cmd "${cmd[@]}"
    log "$label/$workload: wrk ${args[*]} $url"
    # In the background and tracked, so that cleanup can stop it.
    "${cmd[@]}" >"$out" 2>&1 &
    local wpid=$! rc=0
    track_pid "$wpid"
    wait "$wpid" || rc=$?
    ((rc == 0)) || { cat "$out" >&2; die "wrk failed (exit $rc) for $label/$workload"; }
    grep -v '^BENCH_RESULT' "$out" | sed 's/^/    /' >&2
    local res
    res=$(bl wrk-result "$out")
    record_json "{\"server\":\"$label\",\"workload\":\"$workload\",\"kind\":\"wrk\",\"duration\":\"$duration\",\"timeout\":\"$timeout\",${res#\{}"
    local non2xx
    non2xx=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["non2xx"])' "$res")
    if [[ "$non2xx" != 0 ]]; then
        log "WARNING: $label/$workload had $non2xx non-2xx responses (must be 0)"
    fi
}

# warm_up LABEL WORKLOAD LUA URL [VAR=VALUE...] : an uncounted wrk run of
# BENCH_WARMUP (skipped when 0 / 0s).
warm_up() {
    local label=$1 workload=$2 lua=$3 url=$4
    shift 4
    [[ "$BENCH_WARMUP" =~ ^0[a-z]*$ ]] && return 0
    local -a args
    mapfile -t args < <(wrk_args "$BENCH_WARMUP" "$(per_workload BENCH_WRK_TIMEOUT "$workload" "$BENCH_WRK_TIMEOUT")")
    log "$label/$workload: warm-up $BENCH_WARMUP (not counted)"
    env BENCH_LUA_DIR="$BENCH_DIR" BENCH_THREADS="$BENCH_THREADS" "$@" \
        wrk "${args[@]}" -s "$lua" "$url" >"$RUN_DIR/$label-$workload.warmup.txt" 2>&1 &
    local wpid=$! rc=0
    track_pid "$wpid"
    wait "$wpid" || rc=$?
    ((rc == 0)) || die "warm-up wrk failed (exit $rc) for $label/$workload"
}

# wrk_create_bounded LABEL URL COUNT : create exactly COUNT records with wrk
# and create.lua's bounded mode; returns when every thread reports done (or
# BENCH_PRELOAD_TIMEOUT passes, in which case the caller tops up).
wrk_create_bounded() {
    local label=$1 url=$2 count=$3
    local done_dir="$RUN_DIR/$label-preload.done"
    local out="$RUN_DIR/$label-preload.wrk.txt"
    rm -rf "$done_dir" && mkdir -p "$done_dir"
    local -a cmd=(env BENCH_LUA_DIR="$BENCH_DIR" BENCH_THREADS="$BENCH_THREADS"
        BENCH_CREATE_LIMIT="$count" BENCH_DONE_DIR="$done_dir"
        wrk -t"$BENCH_THREADS" -c"$BENCH_CONNECTIONS" -d"$BENCH_PRELOAD_TIMEOUT"
        --timeout "$BENCH_WRK_TIMEOUT" -s "$BENCH_DIR/create.lua" "$url")
    record_cmd "${cmd[@]}"
    "${cmd[@]}" >"$out" 2>&1 &
    local wpid=$!
    track_pid "$wpid"
    local n
    while kill -0 "$wpid" 2>/dev/null; do
        n=$(find "$done_dir" -type f | wc -l)
        if ((n >= BENCH_THREADS)); then
            kill -INT "$wpid" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
    wait "$wpid" || true
    grep -v '^BENCH_RESULT' "$out" | sed 's/^/    /' >&2
}
