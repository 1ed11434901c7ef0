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
log() { echo "rig: $*" >&2; }
[ "$RIG_DIR" != "/" ] || { log "refusing RIG_DIR=/"; exit 1; }
[ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }

mounts_below() {
    awk -v d="$1" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r
}
rig_pid() {   # see up.sh: only an 'asterisk' process whose root is this rig
    local f pid
    for f in "$RIG_DIR/run/asterisk/asterisk.pid" "$RIG_DIR/.rig.pid"; do
        [ -r "$f" ] || continue
        pid=$(tr -dc 0-9 < "$f")
        [ -n "$pid" ] || continue
        if [ -d "/proc/$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = asterisk ] \
           && [ "$(readlink "/proc/$pid/root" 2>/dev/null)" = "$RIG_DIR" ]; then
            echo "$pid"; return 0
        fi
    done
    return 0
}
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

for d in "$RIG_DIR" "$RIG_DIR.partial"; do
    for m in $(mounts_below "$d"); do
        log "unmounting $m"
        umount "$m" 2>/dev/null || umount -l "$m"
    done
done

if [ "$PURGE" = 1 ]; then
    for d in "$RIG_DIR" "$RIG_DIR.partial"; do
        [ -e "$d" ] || continue
        [ -z "$(mounts_below "$d")" ] || { log "still mounted below $d, not removing"; exit 1; }
        log "removing $d"
        rm -rf --one-file-system "$d"
    done
    rm -f "$RIG_DIR.debootstrap.log"
fi
exit 0
