#!/usr/bin/env bash
# Basalt vs PocketBase: the same HTTP workloads against both, one server at a
# time, and a Markdown report (stdout and bench/results/<date>-<tag>.md).
# See bench/README.md for the workloads and every knob below.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd)
# shellcheck source=lib.sh
source "$BENCH_DIR/lib.sh"

# --- configuration (environment) --------------------------------------------
: "${BENCH_THREADS:=2}"            # wrk -t
: "${BENCH_CONNECTIONS:=64}"       # wrk -c
: "${BENCH_DURATION:=10s}"         # wrk -d; per workload: BENCH_DURATION_CREATE, _GET_BY_ID, _LIST
: "${BENCH_WARMUP:=2s}"            # uncounted wrk run before each read workload (0 = none)
: "${BENCH_WRK_TIMEOUT:=5s}"       # wrk --timeout (slower responses count as timeouts)
: "${BENCH_RECORDS:=100000}"       # collection size for the read workloads
: "${BENCH_IDS:=1000}"             # ids cycled over by get-by-id
: "${BENCH_PRELOAD_METHOD:=wrk}"   # wrk | python
: "${BENCH_PRELOAD_TIMEOUT:=900s}" # upper bound of the bounded wrk preload
: "${BENCH_LOAD_CONCURRENCY:=16}"  # threads of the python loader
: "${BENCH_TAG:=foundation}"
: "${BENCH_RESULTS_DIR:=$BENCH_DIR/results}"
: "${BENCH_KEEP:=0}"               # 1 = keep the scratch dir (logs, data dirs)
: "${SKIP_BASALT:=0}"
: "${SKIP_POCKETBASE:=0}"
: "${BENCH_BUILD:=0}"              # 1 = always run cargo build --release first
: "${BENCH_NO_BUILD:=0}"           # 1 = never build; a missing binary is an error
: "${CARGO_TARGET_DIR:=/var/tmp/basalt-target}"
: "${BASALT_BIN:=$CARGO_TARGET_DIR/release/basalt}"
# Presets by tag: BENCH_TAG=query runs the query-engine workloads (the preload
# is still needed); any other tag the foundation set. BENCH_WORKLOADS wins.
QUERY_WORKLOADS="query-count query-skiptotal deep-page"
case "$BENCH_TAG" in
    query) : "${BENCH_WORKLOADS:=preload $QUERY_WORKLOADS}" ;;
    auth) : "${BENCH_WORKLOADS:=auth-data login get-auth-rule get-public}" ;;
    dashboard) : "${BENCH_WORKLOADS:=preload dashboard get-by-id}" ;;
    *) : "${BENCH_WORKLOADS:=create preload get-by-id list}" ;;
esac
# Auth data set (auth-data, BENCH_TAG=auth): users in `users`, notes per user
# in `notes` (owner-only rules) and the same records in `public_notes`.
: "${BENCH_USERS:=1000}"
: "${BENCH_NOTES_PER_USER:=10}"
: "${BENCH_AUTH_CONCURRENCY:=8}"  # threads creating users/notes and logging in once
# Secondary index on (views, created): by default only when a query workload
# runs, so the foundation figures keep measuring an unindexed collection.
if [[ -z "${BENCH_INDEXES:-}" ]]; then
    BENCH_INDEXES=0
    for _w in $QUERY_WORKLOADS; do
        [[ " $BENCH_WORKLOADS " == *" $_w "* ]] && BENCH_INDEXES=1
    done
fi
# Sorted pages on an unindexed column (PocketBase's sort=-created) take long
# under 64 connections; a 5 s timeout would drop most of them from the
# latency figures. 60 s unless set.
: "${BENCH_WRK_TIMEOUT_DEEP_PAGE_FIRST:=60s}"
: "${BENCH_WRK_TIMEOUT_DEEP_PAGE_CURSOR:=60s}"
: "${BENCH_WRK_TIMEOUT_DEEP_PAGE_OFFSET:=60s}"
# Logins are slow by design (one password hash each) and queue up behind
# each other at 64 connections: seconds per response. 60 s, so that they are
# counted in the latencies instead of as timeouts.
: "${BENCH_WRK_TIMEOUT_LOGIN:=60s}"
# Deep page for deep-page: 90 % into the collection at 30 per page
# (page 3000 of 100,000 records).
: "${BENCH_DEEP_PAGE:=$((BENCH_RECORDS * 9 / 10 / 30 > 2 ? BENCH_RECORDS * 9 / 10 / 30 : 2))}"
export BENCH_THREADS CARGO_TARGET_DIR

BENCH_EMAIL=bench@example.com
BENCH_PASSWORD=bench-password-123
COLLECTION=posts

# Scratch dir (data dirs, logs). /var/tmp rather than /tmp: /tmp is often a
# tmpfs, where fsync costs nothing and Basalt's durable writes would look free.
: "${BENCH_TMPDIR:=/var/tmp}"
RUN_DIR=$(mktemp -d "$BENCH_TMPDIR/basalt-bench-run.XXXXXX")
touch "$RUN_DIR/results.jsonl" "$RUN_DIR/meta.tsv" "$RUN_DIR/commands.txt" "$RUN_DIR/pids"

FAILED=0
cleanup() {
    local rc=$?
    if [[ -n "${SERVER_JOB:-}" ]]; then stop_pid "$SERVER_JOB" 5; fi
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

# --- server kinds ------------------------------------------------------------
# Each kind provides:
#   <kind>_prepare DIR         create the superuser while the server is stopped
#   <kind>_start DIR PORT      start the server in the background (sets BG_PID)
#   <kind>_collection_body     JSON for POST /api/collections

pocketbase_prepare() {
    local dir=$1
    local -a cmd=("$PB_BIN" superuser upsert "$BENCH_EMAIL" "$BENCH_PASSWORD" --dir "$dir/pb_data")
    record_cmd "${cmd[@]}"
    "${cmd[@]}" >"$dir/superuser.log" 2>&1 || { cat "$dir/superuser.log" >&2; die "pocketbase superuser upsert failed"; }
}
pocketbase_start() {
    local dir=$1 port=$2
    start_bg "$dir/server.log" "$PB_BIN" serve --http "127.0.0.1:$port" --dir "$dir/pb_data" \
        --automigrate=false --migrationsDir "$dir/pb_data/migrations"
}
PB_INDEX_SQL="CREATE INDEX idx_posts_views_created ON posts (views, created)"
pocketbase_collection_body() {
    # views: onlyInt + min 0 mirror Basalt's {"type":"integer","minimum":0}.
    # indexes: PocketBase keeps raw SQL CREATE INDEX statements.
    local indexes='[]'
    [[ "$BENCH_INDEXES" == 1 ]] && indexes="[\"$PB_INDEX_SQL\"]"
    cat <<JSON
{"name":"posts","type":"base","listRule":"","viewRule":"","createRule":"","updateRule":"","deleteRule":"",
 "indexes":$indexes,
 "fields":[{"name":"title","type":"text","required":true},
           {"name":"views","type":"number","onlyInt":true,"min":0},
           {"name":"body","type":"text"},
           {"name":"created","type":"autodate","onCreate":true},
           {"name":"updated","type":"autodate","onCreate":true,"onUpdate":true}]}
JSON
}

# <kind>_notes_body NAME RULE USERS_ID : JSON for POST /api/collections of
# `notes`/`public_notes` (auth preset): owner (a relation to users) and text,
# an index on owner, list/view rules RULE, the other rules superuser-only.
PB_NOTES_INDEX_SQL="CREATE INDEX idx_<name>_owner ON <name> (owner)"
pocketbase_notes_body() {
    local name=$1 rule=$2 users_id=$3
    cat <<JSON
{"name":"$name","type":"base","listRule":"$rule","viewRule":"$rule","createRule":null,"updateRule":null,"deleteRule":null,
 "indexes":["${PB_NOTES_INDEX_SQL//<name>/$name}"],
 "fields":[{"name":"owner","type":"relation","collectionId":"$users_id","maxSelect":1,"required":true},
           {"name":"text","type":"text"},
           {"name":"created","type":"autodate","onCreate":true},
           {"name":"updated","type":"autodate","onCreate":true,"onUpdate":true}]}
JSON
}
# <kind>_hash DIR : the stored password hash of one user, to report the
# hashing parameters as the server applied them. PocketBase: the users table
# (SQLite; read-only, the server keeps running).
pocketbase_hash() {
    python3 - "$1/pb_data/data.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
row = db.execute("SELECT password FROM users WHERE email LIKE '%@bench.example.com' LIMIT 1").fetchone()
print(row[0] if row else "")
PY
}

basalt_prepare() {
    local dir=$1
    local -a cmd=("$BASALT_BIN" superuser upsert "$BENCH_EMAIL" "$BENCH_PASSWORD" --dir "$dir/data")
    record_cmd "${cmd[@]}"
    "${cmd[@]}" >"$dir/superuser.log" 2>&1 || { cat "$dir/superuser.log" >&2; die "basalt superuser upsert failed"; }
}
basalt_start() {
    local dir=$1 port=$2
    start_bg "$dir/server.log" "$BASALT_BIN" serve --http "127.0.0.1:$port" --dir "$dir/data"
}
BASALT_INDEX_JSON='{"name":"by_views","fields":["views","-created"]}'
basalt_collection_body() {
    local indexes='[]'
    [[ "$BENCH_INDEXES" == 1 ]] && indexes="[$BASALT_INDEX_JSON]"
    cat <<JSON
{"name":"posts","type":"base","listRule":"","viewRule":"","createRule":"","updateRule":"","deleteRule":"",
 "indexes":$indexes,
 "schema":{"type":"object",
           "properties":{"title":{"type":"string"},"views":{"type":"integer","minimum":0},"body":{"type":"string"}},
           "required":["title"],"additionalProperties":false}}
JSON
}

BASALT_NOTES_INDEX_JSON='{"name":"by_owner","fields":["owner"]}'
basalt_notes_body() {
    local name=$1 rule=$2
    cat <<JSON
{"name":"$name","type":"base","listRule":"$rule","viewRule":"$rule","createRule":null,"updateRule":null,"deleteRule":null,
 "indexes":[$BASALT_NOTES_INDEX_JSON],
 "schema":{"type":"object",
           "properties":{"owner":{"type":"string","x-relation":{"collection":"users"}},"text":{"type":"string"}},
           "required":["owner"],"additionalProperties":false}}
JSON
}
# Basalt's PHC strings sit uncompressed in its data files.
basalt_hash() {
    # shellcheck disable=SC2016 # a literal $ in the pattern
    grep -raoh -m1 '\$argon2id\$v=[0-9]*\$m=[0-9]*,t=[0-9]*,p=[0-9]*\$' "$1/data" 2>/dev/null | head -n1 || true
}

# --- workloads ---------------------------------------------------------------
# workload_<name> LABEL BASE_URL DIR : one workload against one running server.
# To add a workload: define workload_<name> (- in the name becomes _) and add
# <name> to BENCH_WORKLOADS; use run_wrk for a timed wrk run.

records_url() { printf '%s/api/collections/%s/records' "$1" "$COLLECTION"; }

# settled_count BASE : the collection's totalItems once it stops changing
# (requests still in flight when a timed wrk run ends are still committed
# by the server for a moment after wrk exits).
settled_count() {
    local base=$1 prev now i
    prev=$(bl count "$base" "$COLLECTION")
    for ((i = 0; i < 50; i++)); do
        sleep 0.3
        now=$(bl count "$base" "$COLLECTION")
        [[ "$now" == "$prev" ]] && break
        prev=$now
    done
    echo "$now"
}

workload_create() {
    local label=$1 base=$2
    run_wrk "$label" create "$BENCH_DIR/create.lua" "$(records_url "$base")"
}

workload_preload() {
    local label=$1 base=$2
    local url have need start topped=0 tries
    url=$(records_url "$base")
    have=$(settled_count "$base")
    need=$((BENCH_RECORDS - have))
    log "$label/preload: $have records, $((need > 0 ? need : 0)) to add ($BENCH_PRELOAD_METHOD)"
    start=$(date +%s.%N)
    if ((need > 0)); then
        case "$BENCH_PRELOAD_METHOD" in
            wrk) wrk_create_bounded "$label" "$url" "$need" ;;
            python)
                record_cmd python3 "$BENCH_DIR/benchlib.py" load "$base" "$COLLECTION" "$need" --concurrency "$BENCH_LOAD_CONCURRENCY"
                bl load "$base" "$COLLECTION" "$need" --concurrency "$BENCH_LOAD_CONCURRENCY" >&2 ;;
            *) die "BENCH_PRELOAD_METHOD must be wrk or python" ;;
        esac
        # Top up whatever the bulk load missed (lost requests, errors).
        for tries in 1 2 3; do
            have=$(bl count "$base" "$COLLECTION")
            ((have < BENCH_RECORDS)) || break
            log "$label/preload: topping up $((BENCH_RECORDS - have)) records (python, try $tries)"
            bl load "$base" "$COLLECTION" "$((BENCH_RECORDS - have))" --concurrency "$BENCH_LOAD_CONCURRENCY" >&2
            topped=$((topped + BENCH_RECORDS - have))
        done
    fi
    local secs
    secs=$(python3 -c "import sys; print(round($(date +%s.%N) - $start, 2))")
    have=$(bl count "$base" "$COLLECTION")
    ((have >= BENCH_RECORDS)) || die "$label/preload: only $have of $BENCH_RECORDS records"
    local created=$((need > 0 ? need : 0))
    local rate
    rate=$(python3 -c "print(round($created / $secs, 1) if $secs > 0 else None)" | sed 's/None/null/')
    log "$label/preload: $created records in ${secs}s ($rate rec/s); collection has $have"
    record_json "{\"server\":\"$label\",\"workload\":\"preload\",\"kind\":\"preload\",\"method\":\"$BENCH_PRELOAD_METHOD\",\"created\":$created,\"topped_up\":$topped,\"seconds\":$secs,\"rate\":$rate,\"records\":$have}"
}

workload_get_by_id() {
    local label=$1 base=$2 dir=$3
    local ids="$dir/ids.txt" n
    n=$(bl ids "$base" "$COLLECTION" "$BENCH_IDS" "$ids")
    log "$label/get-by-id: $n ids in $ids"
    warm_up "$label" get-by-id "$BENCH_DIR/get.lua" "$(records_url "$base")/" BENCH_IDS_FILE="$ids"
    run_wrk "$label" get-by-id "$BENCH_DIR/get.lua" "$(records_url "$base")/" BENCH_IDS_FILE="$ids"
}

workload_list() {
    local label=$1 base=$2
    local url
    url="$(records_url "$base")?page=1&perPage=30"
    warm_up "$label" list "$BENCH_DIR/list.lua" "$url"
    run_wrk "$label" list "$BENCH_DIR/list.lua" "$url"
}

# The dashboard's records page (BENCH_TAG=dashboard): Basalt renders the
# whole HTML page (20 records, newest first, with the total count) for a
# logged-in session; PocketBase's dashboard is a browser app, so its server
# side of the same page is the list call it makes, timed with a superuser
# token, newest first by its cheapest order (`-@rowid`, as its dashboard
# sorts), with the total count.
workload_dashboard() {
    local label=$1 base=$2 dir=$3
    local url name value
    if [[ $label == basalt ]]; then
        url="$base/_/collections/$COLLECTION/records"
        name=Cookie
        value=$(bl dashboard-cookie "$base" "$BENCH_EMAIL" "$BENCH_PASSWORD") ||
            { workload_failed "$label" dashboard "$dir" "dashboard login failed"; return 0; }
    else
        url="$(records_url "$base")?page=1&perPage=20&sort=-%40rowid"
        name=Authorization
        value=$(bl token "$base" "$BENCH_EMAIL" "$BENCH_PASSWORD")
    fi
    record_cmd env BENCH_HEADER_NAME="$name" BENCH_HEADER_VALUE='<session cookie or token>' wrk -s bench/header.lua "$url"
    warm_up "$label" dashboard "$BENCH_DIR/header.lua" "$url" BENCH_HEADER_NAME="$name" BENCH_HEADER_VALUE="$value"
    run_wrk "$label" dashboard "$BENCH_DIR/header.lua" "$url" BENCH_HEADER_NAME="$name" BENCH_HEADER_VALUE="$value"
}

# --- query-engine workloads (BENCH_TAG=query) ----------------------------------
# Each timed URL is first fetched once (bl probe, like a curl) to record what
# the server answered: totalItems, items on the page. A refused request (e.g.
# a 400 because a server does not support a parameter yet) or a failed check
# marks that workload failed in the report and skips its wrk run; the other
# workloads still run, and the server is reported FAILED at the end.

QUERY_PARAMS="filter=views%3D42&sort=-created&perPage=30"

# workload_failed LABEL WORKLOAD DIR REASON
workload_failed() {
    local label=$1 workload=$2 dir=$3 reason=$4
    log "$label/$workload: FAILED: $reason"
    record_json "$(bl_json server="$label" workload="$workload" kind=failed reason="$reason")"
    printf '%s\n' "$workload" >>"$dir/failed-workloads"
}

# probe LABEL WORKLOAD DIR URL CHECK [NOTE] : one GET of URL, recorded as the
# workload's probe. CHECK: total (totalItems > 0 and items), items (items on
# the page). Prints the probe's JSON; returns 1 (recorded as failed) if the
# request was refused or the check fails.
probe() {
    local label=$1 workload=$2 dir=$3 url=$4 check=$5 note=${6:-}
    local res rc=0 total items
    record_cmd python3 "$BENCH_DIR/benchlib.py" probe "$url"
    res=$(bl probe "$url") || rc=$?
    if ((rc != 0)); then
        local why
        why=$(bl jget "$res" error 2>/dev/null) || true
        workload_failed "$label" "$workload" "$dir" "${why:-request failed (exit $rc)}"
        return 1
    fi
    total=$(bl jget "$res" total_items)
    items=$(bl jget "$res" items)
    log "$label/$workload: totalItems=$total, $items items on the page ($url)"
    record_json "$(bl_json server="$label" workload="$workload" kind=probe \
        url="/api/${url#*/api/}" total_items:="${total:-null}" items:="$items" \
        first_id="$(bl jget "$res" first_id)" note="$note")"
    if [[ "$check" == total ]] && ! ((${total:-0} > 0)); then
        workload_failed "$label" "$workload" "$dir" "totalItems is ${total:-missing}, expected > 0"
        return 1
    fi
    if ! ((items > 0)); then
        workload_failed "$label" "$workload" "$dir" "empty page"
        return 1
    fi
    printf '%s\n' "$res"
}

workload_query_count() {
    local label=$1 base=$2 dir=$3 url
    url="$(records_url "$base")?$QUERY_PARAMS"
    probe "$label" query-count "$dir" "$url" total >/dev/null || return 0
    warm_up "$label" query-count "$BENCH_DIR/list.lua" "$url"
    run_wrk "$label" query-count "$BENCH_DIR/list.lua" "$url"
}

workload_query_skiptotal() {
    local label=$1 base=$2 dir=$3 url
    url="$(records_url "$base")?$QUERY_PARAMS&skipTotal=1"
    probe "$label" query-skiptotal "$dir" "$url" items >/dev/null || return 0
    warm_up "$label" query-skiptotal "$BENCH_DIR/list.lua" "$url"
    run_wrk "$label" query-skiptotal "$BENCH_DIR/list.lua" "$url"
}

# deep-page: three rows, all sort=-created&perPage=30:
#   deep-page-first   page 1
#   deep-page-cursor  page BENCH_DEEP_PAGE through Basalt's keyset cursor
#                     (PocketBase: n/a; the report compares it with
#                     PocketBase's deep-page-offset)
#   deep-page-offset  page=BENCH_DEEP_PAGE (offset paging, both servers)
workload_deep_page() {
    local label=$1 base=$2 dir=$3
    local url first_url offset_url cursor_url res rc=0 cursor cursor_first="" offset_first note
    url="$(records_url "$base")"
    first_url="$url?sort=-created&perPage=30"
    offset_url="$url?page=$BENCH_DEEP_PAGE&perPage=30&sort=-created"

    if probe "$label" deep-page-first "$dir" "$first_url" items >/dev/null; then
        warm_up "$label" deep-page-first "$BENCH_DIR/list.lua" "$first_url"
        run_wrk "$label" deep-page-first "$BENCH_DIR/list.lua" "$first_url"
    fi

    if [[ "$label" == basalt ]]; then
        log "$label/deep-page: following nextCursor to page $BENCH_DEEP_PAGE (not timed)"
        record_cmd python3 "$BENCH_DIR/benchlib.py" follow-cursor "$first_url" "$BENCH_DEEP_PAGE"
        res=$(bl follow-cursor "$first_url" "$BENCH_DEEP_PAGE") || rc=$?
        if ((rc == 3)); then
            log "$label/deep-page: skipped: no nextCursor"
            record_json "$(bl_json server="$label" workload=deep-page-cursor kind=skipped reason="no nextCursor")"
        elif ((rc != 0)); then
            workload_failed "$label" deep-page-cursor "$dir" \
                "following nextCursor: $(bl jget "$res" error 2>/dev/null || echo "exit $rc")"
        else
            cursor=$(bl jget "$res" cursor)
            cursor_url="$first_url&cursor=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$cursor")"
            cursor_first=$(bl jget "$res" first_id)
            note="cursor of page $BENCH_DEEP_PAGE after $(bl jget "$res" hops) hops ($(bl jget "$res" seconds) s, not timed)"
            if probe "$label" deep-page-cursor "$dir" "$cursor_url" items "$note" >/dev/null; then
                warm_up "$label" deep-page-cursor "$BENCH_DIR/list.lua" "$cursor_url"
                run_wrk "$label" deep-page-cursor "$BENCH_DIR/list.lua" "$cursor_url"
            fi
        fi
    else
        record_json "$(bl_json server="$label" workload=deep-page-cursor kind=na reason="offset paging only (see deep-page-offset)")"
    fi

    if res=$(probe "$label" deep-page-offset "$dir" "$offset_url" items); then
        offset_first=$(bl jget "$res" first_id)
        if [[ -n "$cursor_first" ]]; then
            if [[ "$cursor_first" == "$offset_first" ]]; then
                log "$label/deep-page: cursor and offset pages start at the same record ($offset_first)"
            else
                log "WARNING: $label/deep-page: cursor page starts at $cursor_first, offset page at $offset_first (ties on created?)"
            fi
        fi
        warm_up "$label" deep-page-offset "$BENCH_DIR/list.lua" "$offset_url"
        run_wrk "$label" deep-page-offset "$BENCH_DIR/list.lua" "$offset_url"
    fi
}

# --- auth workloads (BENCH_TAG=auth) ------------------------------------------
# auth-data builds the data set once per server (not timed by wrk); login,
# get-auth-rule and get-public build it first if it is missing, and are
# skipped if it failed. Files in DIR/auth: creds.txt (identity,password),
# token, newest first by its cheapest order (`-@rowid`, as its dashboard
# sorts), with the total count..txt (userId,token), pairs.txt (token,noteId), note-ids.txt.

# auth_data LABEL BASE DIR : returns 1 if the data set could not be built.
auth_data() {
    local label=$1 base=$2 dir=$3
    local adir="$dir/auth" token before after users_id res rc=0 check hash
    if [[ -f "$adir/status" ]]; then
        [[ "$(cat "$adir/status")" == ok ]]
        return
    fi
    mkdir -p "$adir"
    echo failed >"$adir/status" # until everything below succeeded
    # Called in a || list, so set -e is off in here: check each step.
    token=$(bl token "$base" "$BENCH_EMAIL" "$BENCH_PASSWORD") ||
        { workload_failed "$label" auth-data "$dir" "superuser login failed"; return 1; }

    # Rate limits off: Basalt limits *:auth to 5 per 10 s per address (and per
    # account) by default; PocketBase's limiter is off by default. Sent to
    # both, checked on both.
    before=$(bl request GET "$base/api/settings" "" "$token" | python3 -c 'import json,sys; print(json.dumps((json.load(sys.stdin).get("rateLimits") or {}).get("enabled")))')
    # shellcheck disable=SC2016 # '$TOKEN' is shown as is in the report (record_cmd)
    record_cmd python3 "$BENCH_DIR/benchlib.py" request PATCH "$base/api/settings" '{"rateLimits":{"enabled":false}}' '$TOKEN'
    bl request PATCH "$base/api/settings" '{"rateLimits":{"enabled":false}}' "$token" >/dev/null ||
        { workload_failed "$label" auth-data "$dir" "PATCH /api/settings failed"; return 1; }
    after=$(bl request GET "$base/api/settings" "" "$token" | python3 -c 'import json,sys; print(json.dumps((json.load(sys.stdin).get("rateLimits") or {}).get("enabled")))')
    before=${before:-null} after=${after:-null}
    log "$label/auth-data: rateLimits.enabled $before -> $after"
    if [[ "$after" != false ]]; then
        workload_failed "$label" auth-data "$dir" "rateLimits.enabled is $after after the PATCH"
        return 1
    fi

    users_id=$(bl jget "$(bl request GET "$base/api/collections/users" "" "$token")" id)
    [[ -n "$users_id" ]] || { workload_failed "$label" auth-data "$dir" "no users collection"; return 1; }
    local name rule
    for name in notes public_notes; do
        rule='owner = @request.auth.id'
        [[ "$name" == public_notes ]] && rule=''
        bl post-json "$base/api/collections" "$("${label}_notes_body" "$name" "$rule" "$users_id")" "$token" >/dev/null ||
            { workload_failed "$label" auth-data "$dir" "creating collection $name failed"; return 1; }
    done
    log "$label/auth-data: collections notes and public_notes created; $BENCH_USERS users, $BENCH_NOTES_PER_USER notes each (not timed)"

    # shellcheck disable=SC2016
    record_cmd python3 "$BENCH_DIR/benchlib.py" auth-data "$base" '$TOKEN' "$adir" "$BENCH_USERS" "$BENCH_NOTES_PER_USER" "$BENCH_IDS" --concurrency "$BENCH_AUTH_CONCURRENCY"
    res=$(bl auth-data "$base" "$token" "$adir" "$BENCH_USERS" "$BENCH_NOTES_PER_USER" "$BENCH_IDS" \
        --concurrency "$BENCH_AUTH_CONCURRENCY") || rc=$?
    if ((rc != 0)); then
        workload_failed "$label" auth-data "$dir" "$(bl jget "$res" error 2>/dev/null || echo "benchlib.py auth-data: exit $rc")"
        return 1
    fi
    record_cmd python3 "$BENCH_DIR/benchlib.py" auth-check "$base" "$adir/pairs.txt"
    check=$(bl auth-check "$base" "$adir/pairs.txt") || rc=$?
    log "$label/auth-data: rule check $check"
    if ((rc != 0)); then
        workload_failed "$label" auth-data "$dir" "rule check: $check"
        return 1
    fi
    local n_users n_notes n_public
    n_users=$(bl count "$base" users "$token")
    n_notes=$(bl count "$base" notes "$token")
    n_public=$(bl count "$base" public_notes "$token")
    hash=$("${label}_hash" "$dir")
    log "$label/auth-data: $n_users users, $n_notes notes, $n_public public_notes"
    local want=$((BENCH_USERS * BENCH_NOTES_PER_USER))
    if [[ "$n_users" != "$BENCH_USERS" || "$n_notes" != "$want" || "$n_public" != "$want" ]]; then
        workload_failed "$label" auth-data "$dir" "counts: $n_users users, $n_notes notes, $n_public public_notes; expected $BENCH_USERS, $want, $want"
        return 1
    fi
    # The hash up to its parameters (no salt, no digest).
    # shellcheck disable=SC2016
    hash=$(printf '%s' "$hash" | sed -E 's/^(\$argon2id\$v=[0-9]+\$[^$]+\$|\$2[aby]?\$[0-9]+\$).*/\1/')
    record_json "$(python3 - "$label" "$res" "$check" "$n_users" "$n_notes" "$n_public" "$before" "$after" "$hash" <<'PY'
import json, sys
label, res, check, users, notes, public, before, after, hash_ = sys.argv[1:]
r = json.loads(res)
r.update(server=label, workload="auth-data", kind="auth-data", check=json.loads(check),
         counts={"users": int(users), "notes": int(notes), "public_notes": int(public)},
         rate_limits_before=json.loads(before), rate_limits_after=json.loads(after), hash=hash_)
print(json.dumps(r))
PY
)"
    echo ok >"$adir/status"
}

workload_auth_data() { auth_data "$@" || true; }

# auth_ready LABEL WORKLOAD BASE DIR : the data set, or a skipped row.
auth_ready() {
    local label=$1 workload=$2 base=$3 dir=$4
    auth_data "$label" "$base" "$dir" && return 0
    record_json "$(bl_json server="$label" workload="$workload" kind=skipped reason="no auth data set (see auth-data)")"
    return 1
}

workload_login() {
    local label=$1 base=$2 dir=$3
    auth_ready "$label" login "$base" "$dir" || return 0
    # No warm-up: auth-data has just logged every user in once.
    run_wrk "$label" login "$BENCH_DIR/login.lua" "$base/api/collections/users/auth-with-password" \
        BENCH_CREDS_FILE="$dir/auth/creds.txt"
}

workload_get_auth_rule() {
    local label=$1 base=$2 dir=$3
    local url="$base/api/collections/notes/records/"
    auth_ready "$label" get-auth-rule "$base" "$dir" || return 0
    warm_up "$label" get-auth-rule "$BENCH_DIR/get_auth.lua" "$url" BENCH_PAIRS_FILE="$dir/auth/pairs.txt"
    run_wrk "$label" get-auth-rule "$BENCH_DIR/get_auth.lua" "$url" BENCH_PAIRS_FILE="$dir/auth/pairs.txt"
}

workload_get_public() {
    local label=$1 base=$2 dir=$3
    local url="$base/api/collections/public_notes/records/"
    auth_ready "$label" get-public "$base" "$dir" || return 0
    warm_up "$label" get-public "$BENCH_DIR/get.lua" "$url" BENCH_IDS_FILE="$dir/auth/note-ids.txt"
    run_wrk "$label" get-public "$BENCH_DIR/get.lua" "$url" BENCH_IDS_FILE="$dir/auth/note-ids.txt"
}

# run_workload NAME LABEL BASE_URL DIR
run_workload() {
    local fn="workload_${1//-/_}"
    declare -F "$fn" >/dev/null || die "unknown workload: $1"
    "$fn" "$2" "$3" "$4"
}

# bench_server KIND : fresh data dir, start, provision, every workload, memory, stop.
bench_server() {
    local kind=$1 label=$1
    local dir port base token
    dir="$RUN_DIR/$label"
    mkdir -p "$dir"
    # Work inside the scratch dir (this runs in a subshell), so nothing a
    # server or CLI writes to a relative path can land in the repository.
    cd "$dir"
    port=$(free_port)
    base="http://127.0.0.1:$port"
    log "== $label on $base (dir $dir)"
    "${kind}_prepare" "$dir"
    "${kind}_start" "$dir" "$port"
    local pid=$BG_PID
    SERVER_PID=$pid # for run_wrk's wait_idle
    # Stop this server however the subshell ends.
    trap 'stop_pid '"$pid" EXIT
    wait_health "$base" "$pid" "$dir/server.log" 30
    token=$(bl token "$base" "$BENCH_EMAIL" "$BENCH_PASSWORD")
    bl post-json "$base/api/collections" "$("${kind}_collection_body")" "$token" >/dev/null
    log "$label: collection $COLLECTION created"
    # BENCH_BASALT_SETTINGS: a settings patch for Basalt before the workloads
    # (e.g. '{"logs":{"enabled":false}}' to measure the request log's cost).
    if [[ $kind == basalt && -n "${BENCH_BASALT_SETTINGS:-}" ]]; then
        record_cmd python3 "$BENCH_DIR/benchlib.py" request PATCH "$base/api/settings" "$BENCH_BASALT_SETTINGS" '$TOKEN'
        bl request PATCH "$base/api/settings" "$BENCH_BASALT_SETTINGS" "$token" >/dev/null ||
            die "$label: PATCH /api/settings $BENCH_BASALT_SETTINGS failed"
        log "$label: settings patched: $BENCH_BASALT_SETTINGS"
    fi

    local w
    for w in $BENCH_WORKLOADS; do
        run_workload "$w" "$label" "$base" "$dir"
    done

    local rss hwm disk records
    rss=$(proc_kb "$pid" VmRSS)
    hwm=$(proc_kb "$pid" VmHWM)
    if [[ "$(cat "$dir/auth/status" 2>/dev/null)" == ok ]]; then
        records=$(bl count "$base" notes "$token") # the auth preset's data
    else
        records=$(bl count "$base" "$COLLECTION")
    fi
    disk=$(du -sk "$dir/$([[ $kind == pocketbase ]] && echo pb_data || echo data)" | cut -f1)
    log "$label: VmRSS ${rss} kB, VmHWM ${hwm} kB, $records records, data dir ${disk} kB"
    record_json "{\"server\":\"$label\",\"workload\":\"memory\",\"kind\":\"rss\",\"rss_kb\":$rss,\"hwm_kb\":$hwm,\"records\":$records,\"disk_kb\":$disk}"
    stop_pid "$pid" 15
    trap - EXIT
    if [[ -s "$dir/failed-workloads" ]]; then
        echo "failed workloads: $(paste -sd, "$dir/failed-workloads" | sed 's/,/, /g')" >"$dir/status"
        die "$label: $(cat "$dir/status")"
    fi
}

# run_server KIND : bench_server in a background subshell, so that a failure
# of one server is recorded and the other still runs, and so that a signal to
# this script interrupts the wait at once (cleanup then stops everything).
SERVER_JOB=""
run_server() {
    local kind=$1 rc=0
    (
        set -e
        trap 'exit 143' TERM
        bench_server "$kind"
    ) &
    SERVER_JOB=$!
    wait "$SERVER_JOB" || rc=$?
    SERVER_JOB=""
    if ((rc == 0)); then
        record_json "{\"server\":\"$kind\",\"workload\":\"_status\",\"status\":\"ok\"}"
    else
        FAILED=1
        local why="exit $rc"
        [[ -s "$RUN_DIR/$kind/status" ]] && why=$(cat "$RUN_DIR/$kind/status")
        log "$kind: FAILED ($why); logs in $RUN_DIR/$kind"
        record_json "$(bl_json server="$kind" workload=_status status="FAILED ($why)")"
    fi
}

# --- setup -------------------------------------------------------------------
PB_BIN=""
if [[ "$SKIP_POCKETBASE" != 1 ]] || ! command -v wrk >/dev/null; then
    PB_BIN=$("$BENCH_DIR/setup.sh" | tail -n1)
fi
record_cmd bash bench/setup.sh

if [[ "$SKIP_BASALT" != 1 ]]; then
    if [[ "$BENCH_BUILD" == 1 || ! -x "$BASALT_BIN" ]]; then
        [[ "$BENCH_NO_BUILD" == 1 ]] && die "Basalt binary $BASALT_BIN missing and BENCH_NO_BUILD=1"
        log "building Basalt (release) into $CARGO_TARGET_DIR"
        record_cmd env CARGO_TARGET_DIR="$CARGO_TARGET_DIR" cargo build --release
        (cd "$REPO_ROOT" && cargo build --release) >&2
        [[ -x "$BASALT_BIN" ]] || die "no binary at $BASALT_BIN after the build"
    fi
fi

# --- machine and versions ----------------------------------------------------
DATE=$(date -u +%F)
meta tag "$BENCH_TAG"
meta date "$(date -u '+%F %T UTC')"
meta nproc "$(nproc)"
meta cpu "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
meta ram "$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
meta kernel "$(uname -r)"
RUN_FS=$(df --output=fstype "$RUN_DIR" | tail -n1 | tr -d ' ')
meta fs "$RUN_FS ($(df --output=source "$RUN_DIR" | tail -n1 | tr -d ' '))"
if [[ "$RUN_FS" == tmpfs || "$RUN_FS" == ramfs ]]; then
    log "WARNING: data dirs are on $RUN_FS: fsync is free there; set BENCH_TMPDIR to a disk"
fi
meta wrk_version "$(wrk -v 2>&1 | head -n1 | awk '{print $1, $2}')"
meta connections "$BENCH_CONNECTIONS"
meta wrk_args "-t$BENCH_THREADS -c$BENCH_CONNECTIONS -d$BENCH_DURATION --timeout $BENCH_WRK_TIMEOUT --latency"
meta warmup "$BENCH_WARMUP"
meta ids "$BENCH_IDS"
if [[ "$SKIP_POCKETBASE" == 1 ]]; then
    meta pocketbase_version "skipped (SKIP_POCKETBASE=1)"
else
    meta pocketbase_version "$("$PB_BIN" --version | awk '{print $NF}')"
fi
if [[ "$SKIP_BASALT" == 1 ]]; then
    meta basalt_version "skipped (SKIP_BASALT=1)"
else
    rev=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo "no commit")
    [[ -n "$(git -C "$REPO_ROOT" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]] && rev+=" + uncommitted changes"
    ver=$("$BASALT_BIN" --version 2>/dev/null | head -n1 || true)
    meta basalt_version "${ver:-basalt} (git $rev, $BASALT_BIN built $(date -u -r "$BASALT_BIN" '+%F %T UTC'))"
fi
if [[ " $BENCH_WORKLOADS " == *" preload "* ]]; then
    meta note "Target collection size $BENCH_RECORDS records; preload with $BENCH_PRELOAD_METHOD."
fi
if [[ "$BENCH_INDEXES" == 1 ]]; then
    meta indexes "PocketBase \`$PB_INDEX_SQL\`; Basalt \`$BASALT_INDEX_JSON\`."
fi
meta deep_page "$BENCH_DEEP_PAGE"
meta users "$BENCH_USERS"
meta workloads "$BENCH_WORKLOADS"

# --- run ---------------------------------------------------------------------
[[ "$SKIP_BASALT" == 1 ]] || run_server basalt
[[ "$SKIP_POCKETBASE" == 1 ]] || run_server pocketbase

# --- report ------------------------------------------------------------------
mkdir -p "$BENCH_RESULTS_DIR"
report="$BENCH_RESULTS_DIR/$DATE-$BENCH_TAG.md"
bl report "$RUN_DIR/results.jsonl" "$RUN_DIR/meta.tsv" "$RUN_DIR/commands.txt" >"$report"
cat "$report"
log "report written to $report"
if ((FAILED)); then
    die "at least one server failed; see the logs above"
fi
