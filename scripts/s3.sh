#!/usr/bin/env bash
# A private, throwaway S3-compatible server for tests: `scripts/s3.sh start|stop|url`.
# Runs moto's server (PyPI `moto[server]`, installed into its own virtualenv on first use)
# on loopback, with its own port and directory, and stops only the server it started.
# Tests create a bucket of their own on it (moto accepts any credentials).
set -euo pipefail

S3_PORT="${PBXGATE_S3_PORT:-25900}"
S3_DIR="${PBXGATE_S3_DIR:-/var/tmp/pbxgate-test-s3}"
S3_URL="http://127.0.0.1:${S3_PORT}"
VENV="$S3_DIR/venv"

answers() {
    # moto answers GET / with the bucket list
    python3 - "$S3_URL" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/", timeout=2).read()
EOF
}

# pid of the moto server this script started, if it still runs
our_pid() {
    local pid
    [ -r "$S3_DIR/moto.pid" ] || return 0
    pid=$(tr -dc 0-9 < "$S3_DIR/moto.pid")
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 0
    tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "moto_server.*-p $S3_PORT" && echo "$pid"
    return 0
}

ensure_installed() {
    [ -x "$VENV/bin/moto_server" ] && return 0
    mkdir -p "$S3_DIR"
    if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
        if [ "$(id -u)" -ne 0 ]; then
            echo "s3.sh: python3 -m venv fails; run as root or: apt-get install python3-venv" >&2
            exit 1
        fi
        echo "s3.sh: installing Debian's python3-venv package" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
        rm -rf "$VENV"
        python3 -m venv "$VENV"
    fi
    echo "s3.sh: installing moto[server] from PyPI into $VENV" >&2
    "$VENV/bin/pip" install -q 'moto[server]>=5,<6' >"$S3_DIR/pip.log" 2>&1 || {
        tail -20 "$S3_DIR/pip.log" >&2; exit 1; }
}

start() {
    if [ -n "$(our_pid)" ] && answers; then
        echo "$S3_URL"
        return 0
    fi
    ensure_installed
    # setsid: not in the caller's process group, so a terminal's Ctrl-C does not reach it
    setsid "$VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" </dev/null >"$S3_DIR/server.log" 2>&1 &
    echo $! > "$S3_DIR/moto.pid"
    for _ in $(seq 1 150); do
        if answers; then
            echo "$S3_URL"
            return 0
        fi
        if [ -z "$(our_pid)" ]; then break; fi
        sleep 0.2
    done
    echo "s3.sh: moto_server did not answer on $S3_URL" >&2
    tail -20 "$S3_DIR/server.log" >&2 || true
    stop
    exit 1
}

stop() {
    local pid
    pid=$(our_pid)
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    fi
    rm -f "$S3_DIR/moto.pid"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    url) echo "$S3_URL" ;;
    *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
