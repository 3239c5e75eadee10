#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need,
# checks formatting and lints, then runs every test against the real server.
#
#   ./scripts/test.sh
#
# CARGO_TARGET_DIR defaults to /var/tmp/basalt-target so repeated runs (and
# CI on the same machine) reuse build artefacts.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/basalt-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n== %s\n' "$*"; }

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is required (https://rustup.rs): install a Rust toolchain first" >&2
    exit 1
fi
if ! cargo nextest --version >/dev/null 2>&1; then
    step "installing cargo-nextest"
    cargo install --locked cargo-nextest
fi

# tests/support/smtp_sink.py (the SMTP server the mail tests deliver to).
if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
    step "installing aiosmtpd (python3)"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore aiosmtpd
fi

# tests/support/s3_server.py (the S3-compatible server the storage tests use:
# moto, offline), in its own venv; tests/api/s3.rs finds it there (or at
# BASALT_MOTO_PYTHON) and, with CI set, fails when it is missing.
export BASALT_MOTO_PYTHON="${BASALT_MOTO_PYTHON:-/var/tmp/basalt-moto-venv/bin/python}"
if ! "$BASALT_MOTO_PYTHON" -c 'import moto.server, boto3' 2>/dev/null; then
    step "installing moto[server] (python3 venv)"
    MOTO_VENV="$(dirname "$(dirname "$BASALT_MOTO_PYTHON")")"
    python3 -m venv "$MOTO_VENV"
    "$MOTO_VENV/bin/pip" install --quiet --disable-pip-version-check 'moto[server]'
fi

# tests/support/oidc (the OpenID Connect provider the OAuth2 tests sign in
# with: panva's oidc-provider on Node.js, from the npm registry).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    step "installing nodejs and npm (apt)"
    apt-get update -qq
    apt-get install -y -qq nodejs npm
fi
step "installing the OpenID Connect test provider (npm)"
(cd tests/support/oidc && npm ci --no-audit --no-fund --silent)

# A throwaway PostgreSQL 15 cluster on loopback for the PostgreSQL engine's
# tests (tests/api/postgres.rs; with CI set they fail without it), stopped
# and removed when this script exits, whatever the outcome.
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
if [ ! -x "$PG_BIN/initdb" ]; then
    step "installing postgresql-15 (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15
fi
PG_DIR="$(mktemp -d /var/tmp/basalt-pg.XXXXXX)"
stop_pg() {
    scripts/pg.sh stop "$PG_DIR" >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
}
trap stop_pg EXIT
step "starting PostgreSQL 15 (scripts/pg.sh, $PG_DIR)"
BASALT_TEST_PG="$(PG_BIN="$PG_BIN" scripts/pg.sh start "$PG_DIR" "${BASALT_TEST_PG_PORT:-55439}")"
export BASALT_TEST_PG
# The CA of the cluster's TLS certificate (tests of sslmode=verify-full).
export BASALT_TEST_PG_CA="$PG_DIR/ca.crt"

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --all-targets --locked -- -D warnings

step "tests"
cargo nextest run --locked --no-fail-fast

step "tests/api on PostgreSQL (all but what scripts/pg-suite.filter leaves out; docs/scale-out.md)"
BASALT_TEST_ENGINE=postgres cargo nextest run --locked --no-fail-fast --test api -E "$(cat scripts/pg-suite.filter)"

step "cluster tests (etcd x3 + Patroni x3 + 3 nodes on loopback; tests/cluster/run.py)"
# Installs etcd-server and patroni if missing (scripts/cluster.sh) and always
# stops every process it started; the realtime test (a node killed, its
# WebSocket client resumes on another with `since`) is on.
cargo build --locked --bin basalt
BASALT_BIN="$CARGO_TARGET_DIR/debug/basalt" python3 tests/cluster/run.py

step "contract (OpenAPI document + schemathesis)"
BASALT_BIN="$CARGO_TARGET_DIR/debug/basalt" tests/contract/run.sh

step "e2e (PocketBase JS SDK, dashboard in headless Chromium)"
# tests/e2e drives the debug binary with the official JS SDK (Node.js + npm).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    step "installing nodejs and npm (apt)"
    apt-get update -qq
    apt-get install -y -qq nodejs npm
fi
# tests/e2e/dashboard.test.js drives Debian's Chromium through playwright-core.
if [ ! -x "${CHROMIUM_BIN:-/usr/bin/chromium}" ]; then
    step "installing chromium (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
cargo build --locked --bin basalt
(cd tests/e2e && npm ci --no-audit --no-fund && BASALT_BIN="$CARGO_TARGET_DIR/debug/basalt" npm test)
