#!/usr/bin/env bash
# A private, throwaway PostgreSQL server for tests: `scripts/postgres.sh start|stop|url`.
# Uses Debian's postgresql package (installed when missing and we are root),
# its own data directory and port, and stops only the server it started.
set -euo pipefail

PG_PORT="${PBXGATE_PG_PORT:-25432}"
PG_DIR="${PBXGATE_PG_DIR:-/var/tmp/pbxgate-test-pg}"
PG_URL="postgres://postgres@127.0.0.1:${PG_PORT}/postgres"

pg_bin() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
    done
    return 1
}

ensure_installed() {
    pg_bin >/dev/null && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "postgres.sh: PostgreSQL is not installed; run as root or: apt-get install postgresql" >&2
        exit 1
    fi
    echo "postgres.sh: installing Debian's postgresql package" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    pg_bin >/dev/null
}

as_pg() {
    # initdb and postgres refuse to run as root.
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start() {
    ensure_installed
    local bin
    bin=$(pg_bin)
    if [ -f "$PG_DIR/data/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1; then
        echo "$PG_URL"
        return 0
    fi
    rm -rf "$PG_DIR"
    mkdir -p "$PG_DIR"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$PG_DIR"
    as_pg "$bin/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 >"$PG_DIR/initdb.log" 2>&1 || {
        cat "$PG_DIR/initdb.log" >&2; exit 1; }
    # Tests create a database each: durability is not needed, speed is.
    as_pg "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
        -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400" \
        start >/dev/null || { cat "$PG_DIR/server.log" >&2; exit 1; }
    echo "$PG_URL"
}

stop() {
    local bin
    bin=$(pg_bin) || return 0
    [ -f "$PG_DIR/data/postmaster.pid" ] || return 0
    as_pg "$bin/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    url) echo "$PG_URL" ;;
    *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
