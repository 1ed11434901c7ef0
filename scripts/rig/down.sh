#!/usr/bin/env bash
# Stop pbxgate's Asterisk rig (scripts/rig/up.sh) and unmount what it mounted.
#
#   scripts/rig/down.sh [RIG_DIR] [--purge]      default RIG_DIR: $RIG_DIR or /var/tmp/pbxgate-rig
#
# Stops only the asterisk whose pid file is in RIG_DIR and whose root directory is RIG_DIR
# ("core stop now" over its CLI socket, then SIGTERM, then SIGKILL); never kills by name.
# Then unmounts everything below RIG_DIR (its /proc). --purge also deletes RIG_DIR (and a
# left-over RIG_DIR.partial), only when nothing is mounted inside.
# Idempotent: on a stopped or missing rig it does nothing.
set -euo pipefail

PURGE=0
ARGS=()
for a in "$@"; do
    case "$a" in --purge) PURGE=1 ;; *) ARGS+=("$a") ;; esac
done
RIG_DIR=${ARGS[0]:-${RIG_DIR:-/var/tmp/pbxgate-rig}}
RIG_DIR=$(realpath -m "$RIG_DIR")
# shellcheck source=scripts/rig/lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
[ "$RIG_DIR" != "/" ] || { log "refusing RIG_DIR=/"; exit 1; }
[ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }

wait_gone() {   # PID SECONDS
    local i
    for ((i = 0; i < $2 * 10; i++)); do [ -d "/proc/$1" ] || return 0; sleep 0.1; done
    return 1
}

pid=$(rig_pid)
if [ -n "$pid" ]; then
    log "stopping asterisk pid $pid"
    timeout 10 chroot "$RIG_DIR" asterisk -rx "core stop now" >/dev/null 2>&1 || true
    if ! wait_gone "$pid" 10; then
        log "still running, SIGTERM"
        kill -TERM "$pid" 2>/dev/null || true
        if ! wait_gone "$pid" 5; then
            log "still running, SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            wait_gone "$pid" 5 || log "WARNING: pid $pid did not exit"
        fi
    fi
elif [ -d "$RIG_DIR" ]; then
    log "no running asterisk for $RIG_DIR"
fi
rm -f "$RIG_DIR/run/asterisk/asterisk.pid" "$RIG_DIR/run/asterisk/asterisk.ctl" "$RIG_DIR/.rig.pid" 2>/dev/null || true
# rig.env describes a running rig: without it, tests skip (outside CI) instead of failing
# against a stopped one; up.sh writes it again
rm -f "$RIG_DIR/rig.env"

for d in "$RIG_DIR" "$RIG_DIR.partial"; do
    unmount_all_below "$d"
done

if [ "$PURGE" = 1 ]; then
    for d in "$RIG_DIR" "$RIG_DIR.partial"; do
        [ -e "$d" ] || continue
        log "removing $d"
        safe_rm_tree "$d"
    done
    rm -f "$RIG_DIR.debootstrap.log"
fi
exit 0
