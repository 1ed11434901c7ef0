# shellcheck shell=bash
# Shell functions shared by the rig scripts (up.sh, down.sh) and scripts/test.
# Source it after setting RIG_DIR to an absolute path (realpath -m).

log() { echo "rig: $*" >&2; }
die() { echo "rig: ERROR: $*" >&2; exit 1; }

# mount points at or below a directory, deepest first
mounts_below() {
    awk -v d="$1" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r
}
unmount_all_below() {
    local m
    for m in $(mounts_below "$1"); do
        log "unmounting $m"
        umount "$m" 2>/dev/null || umount -l "$m"
    done
}
safe_rm_tree() {   # rm -rf only when nothing is mounted inside
    [ -e "$1" ] || return 0
    unmount_all_below "$1"
    [ -z "$(mounts_below "$1")" ] || die "still mounted below $1, not removing"
    rm -rf --one-file-system "$1"
}

# pid of this rig's running asterisk, or nothing. The pid must be an 'asterisk' process
# whose root directory is this rig, so a stale pid file never points at a stranger.
rig_pid() {
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
