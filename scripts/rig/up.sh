#!/usr/bin/env bash
# pbxgate's test rig: a real Asterisk (Debian sid package) in a chroot on loopback, configured
# with exactly the files shipped in contrib/asterisk/ plus rig-only test files.
#
#   scripts/rig/up.sh [RIG_DIR]          default RIG_DIR: $RIG_DIR or /var/tmp/pbxgate-rig
#
# The first run builds the chroot with debootstrap (about 1-2 minutes; needs the machine's
# Debian mirror) into RIG_DIR.partial and renames it when complete; later runs reuse it.
# The configuration is rewritten on every start, so changes to contrib/asterisk/ or to the
# variables below take effect after down.sh + up.sh. Idempotent: when this rig's Asterisk is
# already running it only checks that AMI answers and prints the settings again.
#
# Environment (all optional):
#   RIG_AMI_PORT=15038 RIG_HTTP_PORT=18088   AMI and HTTP/ARI, on 127.0.0.1
#   RIG_SIP_PORT=15060                       the PBX's SIP port (phones, trunk), UDP 127.0.0.1
#   RIG_SIM_PORT=15061 RIG_CARRIER_PORT=15062  SIP ports of the simulated phones / carrier
#   RIG_RTP_START=31000 RIG_RTP_END=31999
#   RIG_AMI_SECRET=pbxgate RIG_ARI_PASSWORD=pbxgate   (users are 'pbxgate', from contrib/asterisk)
#   RIG_SIP_PASSWORD_PREFIX=secret           SIP endpoint N gets password secretN
#   RIG_DIAL_TIMEOUT=8                       seconds a call rings before NO ANSWER
#   RIG_TZ=<zone, e.g. Europe/Berlin>        Asterisk's local time (default: this machine's)
#   RIG_SUITE=sid RIG_MIRROR=<Debian mirror; default: the one apt uses here> RIG_START_TIMEOUT=60
#
# Output: KEY=VALUE lines on stdout, also written to RIG_DIR/rig.env (sourceable by sh).
# Needs root (debootstrap, chroot, mount). Never kills anything by name; stop with down.sh.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CONTRIB_DIR=$(cd "$SCRIPT_DIR/../../contrib/asterisk" && pwd)

RIG_DIR=${1:-${RIG_DIR:-/var/tmp/pbxgate-rig}}
AMI_PORT=${RIG_AMI_PORT:-15038}
HTTP_PORT=${RIG_HTTP_PORT:-18088}
SIP_PORT=${RIG_SIP_PORT:-15060}
SIM_PORT=${RIG_SIM_PORT:-15061}
CARRIER_PORT=${RIG_CARRIER_PORT:-15062}
RTP_START=${RIG_RTP_START:-31000}
RTP_END=${RIG_RTP_END:-31999}
AMI_SECRET=${RIG_AMI_SECRET:-pbxgate}
ARI_PASSWORD=${RIG_ARI_PASSWORD:-pbxgate}
SIP_PW=${RIG_SIP_PASSWORD_PREFIX:-secret}
DIAL_TIMEOUT=${RIG_DIAL_TIMEOUT:-8}
SUITE=${RIG_SUITE:-sid}
START_TIMEOUT=${RIG_START_TIMEOUT:-60}
# fixed by the shipped files in contrib/asterisk (manager_pbxgate.conf, ari_pbxgate.conf,
# extensions_pbxgate.conf): the rig only changes secrets and ports
AMI_USER=pbxgate
ARI_USER=pbxgate
ARI_APP=pbxgate
# extensions with a PJSIP endpoint in the rig; all but 1002 have a simulated phone that
# answers when no real phone is registered (1097 congestion, 1098 busy, 1099 never answers)
PHONES="1000 1001 1002 1097 1098 1099"
SIM_PHONES="1000 1001 1097 1098 1099"

# shellcheck source=scripts/rig/lib.sh
. "$SCRIPT_DIR/lib.sh"

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap/chroot/mount)"
RIG_DIR=$(realpath -m "$RIG_DIR")
[ "$RIG_DIR" != "/" ] || die "refusing RIG_DIR=/"
for f in manager_pbxgate.conf http_pbxgate.conf ari_pbxgate.conf cdr_pbxgate.conf \
         cdr_manager_pbxgate.conf extensions_pbxgate.conf pbxgate_directory.conf; do
    [ -r "$CONTRIB_DIR/$f" ] || die "missing $CONTRIB_DIR/$f"
done

# The Debian mirror apt already uses on this machine (deb822 sources or the classic list).
system_mirror() {
    local uri
    uri=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null \
          | grep -v -- '-security' | grep -E '/debian/?$' | head -n1 || true)
    [ -n "$uri" ] || uri=$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\).*/\2/p' \
          /etc/apt/sources.list 2>/dev/null | grep -v -- '-security' | grep -E '/debian/?$' | head -n1 || true)
    echo "${uri:-http://deb.debian.org/debian}"
}

ami_banner() {   # the AMI banner line, if AMI answers on 127.0.0.1:$AMI_PORT
    timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$AMI_PORT && head -n1 <&3" 2>/dev/null | tr -d '\r' || true
}

# "who holds it" for each of our ports already bound on this machine (TCP or UDP)
ports_in_use() {
    local p
    for p in "tcp:$AMI_PORT" "tcp:$HTTP_PORT" "udp:$SIP_PORT" "udp:$SIM_PORT" "udp:$CARRIER_PORT"; do
        ss -Hlnp --"${p%%:*}" "sport = :${p#*:}" 2>/dev/null | awk -v p="$p" '{ print p, $NF }' || true
    done
}

asterisk_version() {   # the Debian package version inside the rig
    # shellcheck disable=SC2016   # ${Version} is dpkg-query's format, not the shell's
    chroot "$RIG_DIR" dpkg-query -W -f '${Version}' asterisk 2>/dev/null || echo unknown
}

write_env() {
    cat > "$RIG_DIR/rig.env" <<EOF
RIG_DIR=$RIG_DIR
RIG_PID=$1
ASTERISK_VERSION=$(asterisk_version)
AMI_HOST=127.0.0.1
AMI_PORT=$AMI_PORT
AMI_USER=$AMI_USER
AMI_SECRET=$AMI_SECRET
ARI_URL=http://127.0.0.1:$HTTP_PORT/ari
ARI_WS_URL=ws://127.0.0.1:$HTTP_PORT/ari/events
ARI_USER=$ARI_USER
ARI_PASSWORD=$ARI_PASSWORD
ARI_APP=$ARI_APP
SIP_HOST=127.0.0.1
SIP_PORT=$SIP_PORT
SIM_PORT=$SIM_PORT
CARRIER_PORT=$CARRIER_PORT
RTP_PORTS=$RTP_START-$RTP_END
SIP_ENDPOINTS="$(for p in $PHONES trunk; do printf '%s:%s%s ' "$p" "$SIP_PW" "$p"; done | sed 's/ $//')"
SIM_PHONES="$SIM_PHONES"
TRUNK=trunk
DIAL_TIMEOUT=$DIAL_TIMEOUT
MONITOR_DIR=$RIG_DIR/var/spool/asterisk/monitor
CDR_CSV=$RIG_DIR/var/log/asterisk/cdr-csv/Master.csv
CDR_CUSTOM_CSV=$RIG_DIR/var/log/asterisk/cdr-custom/pbxgate.csv
ASTERISK_LOG=$RIG_DIR/var/log/asterisk/messages.log
ASTERISK_CLI="chroot $RIG_DIR asterisk -rx"
EOF
    cat "$RIG_DIR/rig.env"
}

# ------------------------------------------------------------------ already running?
pid=$(rig_pid)
if [ -n "$pid" ]; then
    [ -n "$(ami_banner)" ] \
        || die "asterisk pid $pid of this rig runs but AMI does not answer on port $AMI_PORT (ports changed? run down.sh first)"
    log "already running (pid $pid), AMI answers"
    write_env "$pid"
    exit 0
fi
busy=$(ports_in_use)
[ -z "$busy" ] || die "ports already in use (another rig? scripts/rig/down.sh RIG_DIR stops it; or give this one other RIG_* ports):
$busy"

# ------------------------------------------------------------------ build the chroot once
if [ ! -e "$RIG_DIR/.rig-built" ]; then
    if ! command -v debootstrap >/dev/null; then
        log "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    [ ! -e "$RIG_DIR" ] || [ -z "$(ls -A "$RIG_DIR" 2>/dev/null)" ] \
        || die "$RIG_DIR exists but is not a finished rig; remove it first (down.sh --purge)"
    MIRROR=${RIG_MIRROR:-$(system_mirror)}
    tmp="$RIG_DIR.partial"
    safe_rm_tree "$tmp"
    mkdir -p "$(dirname "$RIG_DIR")"
    log "building $RIG_DIR with debootstrap ($SUITE from $MIRROR, asterisk) ..."
    t0=$(date +%s)
    if ! debootstrap --variant=minbase --include=asterisk,asterisk-core-sounds-en-wav \
            "$SUITE" "$tmp" "$MIRROR" > "$RIG_DIR.debootstrap.log" 2>&1; then
        unmount_all_below "$tmp"
        tail -20 "$RIG_DIR.debootstrap.log" >&2
        die "debootstrap failed (log: $RIG_DIR.debootstrap.log)"
    fi
    unmount_all_below "$tmp"
    # keep the package's stock configs for reference; the rig writes its own etc/asterisk
    mv "$tmp/etc/asterisk" "$tmp/etc/asterisk.dist"
    mkdir -p "$tmp/etc/asterisk"
    rm -f "$tmp"/var/cache/apt/archives/*.deb
    rmdir "$RIG_DIR" 2>/dev/null || true
    mv "$tmp" "$RIG_DIR"
    ver=$(asterisk_version)
    echo "built=$(date -Is) seconds=$(( $(date +%s) - t0 )) suite=$SUITE asterisk=$ver" > "$RIG_DIR/.rig-built"
    log "built in $(( $(date +%s) - t0 )) s, asterisk $ver"
fi

# ------------------------------------------------------------------ configuration
E="$RIG_DIR/etc/asterisk"
MODDIR=""
for d in "$RIG_DIR"/usr/lib/*/asterisk/modules; do [ -d "$d" ] && MODDIR=${d#"$RIG_DIR"} && break; done
[ -n "$MODDIR" ] || die "no asterisk modules directory in $RIG_DIR"
mkdir -p "$E"
rm -f "$E"/*.conf

# 1. the shipped configuration, unchanged
cp "$CONTRIB_DIR"/*.conf "$E/"

# 2. rig-only files; they #include the shipped ones and change only secrets and ports
cat > "$E/asterisk.conf" <<EOF
[directories](!)
astcachedir => /var/cache/asterisk
astetcdir => /etc/asterisk
astmoddir => $MODDIR
astvarlibdir => /var/lib/asterisk
astdbdir => /var/lib/asterisk
astkeydir => /var/lib/asterisk
astdatadir => /usr/share/asterisk
astagidir => /usr/share/asterisk/agi-bin
astspooldir => /var/spool/asterisk
astrundir => /var/run/asterisk
astlogdir => /var/log/asterisk
astsbindir => /usr/sbin

[options]
verbose = 3
debug = 0
defaultlanguage = en
transmit_silence = yes          ; continuous audio in recordings
; as Debian ships it (and Asterisk's default): dialplan functions such as DB() are refused
; where an external interface (AMI, ARI) acts, so the rig meets what a stock PBX does
live_dangerously = no
EOF

cat > "$E/logger.conf" <<'EOF'
[general]
dateformat = %F %T.%3q
[logfiles]
messages.log => notice,warning,error,verbose(3)
EOF

# modules: autoload, minus a generated noload list of every installed module outside the
# wanted set, so that a new sid package cannot change the loaded set silently
wanted_module() {
    case "$1" in
        app_dial|app_playback|app_mixmonitor|app_stasis|app_echo|app_verbose|app_exec|\
        app_originate|app_senddtmf|app_userevent|app_cdr|app_stack|app_transfer|\
        app_softhangup|app_milliwatt|app_record|app_read|app_bridgewait|app_chanspy|\
        app_directed_pickup|app_db|app_while|app_if|app_playtones|app_channelredirect|\
        app_blind_transfer|app_attended_transfer|app_waituntil|app_sayunixtime|app_system|app_queue|\
        app_voicemail|app_minivm|app_forkcdr|app_confbridge|app_followme) return 0 ;;
        bridge_*) return 0 ;;
        cdr_csv|cdr_manager|cdr_custom|res_cdrel_custom) return 0 ;;
        chan_pjsip|chan_bridge_media|chan_rtp) return 0 ;;
        codec_alaw|codec_ulaw|codec_a_mu|codec_g722|codec_gsm|codec_resample|codec_adpcm) return 0 ;;
        format_wav|format_wav_gsm|format_pcm|format_gsm|format_sln) return 0 ;;
        func_odbc|func_realtime|func_curl|func_aes) return 1 ;;
        func_*) return 0 ;;
        pbx_config|pbx_spool) return 0 ;;
        res_pjsip_stir_shaken|res_pjsip_geolocation|res_pjsip_phoneprov_provider|res_pjsip_transport_websocket|\
        res_pjsip_notify|res_pjsip_config_wizard) return 1 ;;
        res_pjproject|res_pjsip|res_pjsip_*) return 0 ;;
        res_sorcery_config|res_sorcery_memory|res_sorcery_astdb|res_sorcery_memory_cache) return 0 ;;
        res_rtp_asterisk|res_rtp_multicast|res_timing_timerfd|res_http_websocket|res_websocket_client) return 0 ;;
        res_ari|res_ari_*) return 0 ;;
        res_stasis|res_stasis_answer|res_stasis_device_state|res_stasis_playback|res_stasis_recording|res_stasis_snoop) return 0 ;;
        res_parking) return 0 ;;
        res_musiconhold|res_clioriginate|res_manager_devicestate|res_manager_presencestate|res_mutestream|res_limit|res_convert) return 0 ;;
        res_format_attr_*) return 0 ;;
        *) return 1 ;;
    esac
}
{
    echo "[modules]"
    echo "autoload = yes"
    for m in "$RIG_DIR$MODDIR"/*.so; do
        m=$(basename "$m" .so)
        wanted_module "$m" || echo "noload => $m.so"
    done
} > "$E/modules.conf"

# configs that loaded modules look for: present (empty or minimal) to keep the log clean
for f in acl.conf ccss.conf udptl.conf pjproject.conf websocket_client.conf; do : > "$E/$f"; done
printf '[general]\nenable = no\n' > "$E/cel.conf"
# phones' feature codes (Dial options t/T: transfers, k/K: park), group pickup (*8, endpoints'
# call_group/pickup_group), the parking lot (700 parks, 701-720 the spaces, dialable from phones)
cat > "$E/features.conf" <<'EOF'
[general]
transferdigittimeout = 3
atxfernoanswertimeout = 15
pickupexten = *8

[featuremap]
blindxfer = #1
atxfer = *2
parkcall = #72
EOF
cat > "$E/res_parking.conf" <<'EOF'
[general]

[default]
parkext => 700
parkpos => 701-720
context => parkedcalls
parkingtime => 60
comebacktoorigin = yes
EOF
# conference rooms (ConfBridge 800): the default profiles
printf '[general]\n[default_bridge]\ntype = bridge\n[default_user]\ntype = user\n' > "$E/confbridge.conf"
# follow-me 6500: 1099 (never answers), then 1000; 6501: 1099 only
cat > "$E/followme.conf" <<'EOF'
[general]
takecall = 1
declinecall = 2
[6500]
context = ext-local
number => 1099,4
number => 1000,6
enable_callee_prompt = no
; follow-me 6501: 1099 only (nobody answers)
[6501]
context = ext-local
number => 1099,4
enable_callee_prompt = no
EOF

# music on hold (queues, pbxgate's hold): one class, one file (copied below)
cat > "$E/musiconhold.conf" <<'EOF'
[default]
mode = files
directory = /var/lib/asterisk/moh
EOF

# the queues the dialplan's 6000 and 6100 ring; 6000: simulated phone 1000, through the rig's own extension
# routing (a Local member, as PJSIP/1000 itself has no contact without a registered phone)
cat > "$E/queues.conf" <<'EOF'
[general]
persistentmembers = no

[6000]
strategy = ringall
timeout = 5
retry = 1
joinempty = yes
leavewhenempty = no
member => Local/1000@ext-local/n

; queue 6200: 1099, which never answers (abandoned calls)
[6200]
strategy = ringall
timeout = 5
retry = 1
joinempty = yes
leavewhenempty = no
member => Local/1099@ext-local/n

; queue 6100 (pbxgate's directory lists): 1001 and 1097, one at a time
[6100]
strategy = leastrecent
timeout = 5
retry = 1
joinempty = yes
leavewhenempty = no
member => Local/1001@ext-local/n
member => Local/1097@ext-local/n
EOF
cp "$RIG_DIR/etc/asterisk.dist/indications.conf" "$E/indications.conf"   # tone tables

# pbxgate's directory (contrib pbxgate_directory.conf, read by pbxgate over AMI GetConfig):
# the rig's routes, ring group 6400 (rig-ringgroup), groups, departments, queue 6000's name
cat >> "$E/pbxgate_directory.conf" <<'EOF'
; ---- rig-only: what the rig's dialplan does (below the shipped file's [general])
inbound_context = ext-did
outbound_context = outbound-route

[6400]
type = ringgroup
name = Rig sales
members = 1000,1001

[6000]
type = queue
name = Rig support

[frontdesk]
type = extension_group
name = Front desk
members = 1000,1001

[rooms]
type = extension_group
name = Rooms
members = 1097,1098
members = 1099

[backoffice]
type = extension_group
name = Back office
members = 1002

[sales]
type = department
name = Sales
members = 1000,1001

[support]
type = department
name = Support
members = 1002
EOF

# voicemail (hotel rooms: pmsapi's check-out empties the room's mailbox): one box per phone.
# MiniVM (app_minivm, for the message-waiting lamp pbxgate sets) runs with its defaults.
{
    printf '[general]\nformat = wav\nminsecs = 0\npollmailboxes = no\n\n[default]\n'
    for ext in $PHONES; do echo "$ext => $ext,Room $ext"; done
} > "$E/voicemail.conf"
printf '[general]\n' > "$E/minivm.conf"

cat > "$E/manager.conf" <<EOF
; rig: AMI on 127.0.0.1:$AMI_PORT; the user is the shipped manager_pbxgate.conf
[general]
enabled = yes
bindaddr = 127.0.0.1
port = $AMI_PORT
displayconnects = no
timestampevents = yes

#include manager_pbxgate.conf

; rig-only: the test secret (the shipped file stays unchanged)
[pbxgate](+)
secret = $AMI_SECRET
EOF

cat > "$E/http.conf" <<EOF
#include http_pbxgate.conf

; rig-only: the rig's port
[general](+)
bindport = $HTTP_PORT
EOF

cat > "$E/ari.conf" <<EOF
[general]
enabled = yes
pretty = no

#include ari_pbxgate.conf

; rig-only: the test password
[pbxgate](+)
password = $ARI_PASSWORD
EOF

cat > "$E/cdr.conf" <<'EOF'
#include cdr_pbxgate.conf

; rig-only: also write CSV (var/log/asterisk/cdr-csv/Master.csv), handy for debugging
[csv]
usegmtime = no
loguniqueid = yes
loguserfield = yes
accountlogs = no
EOF

echo '#include cdr_manager_pbxgate.conf' > "$E/cdr_manager.conf"
echo '#include cdr_custom_pbxgate.conf' > "$E/cdr_custom.conf"

cat > "$E/rtp.conf" <<EOF
[general]
rtpstart = $RTP_START
rtpend = $RTP_END
EOF

# --- pjsip.conf: the PBX (phones, a trunk) and, on their own ports, the simulators that
#     play the phones and the carrier, so calls need no SIP client at all
cat > "$E/pjsip.conf" <<EOF
[global]
type = global
user_agent = pbxgate-rig

; the PBX's SIP port: phones register here, the trunk sends and receives here
[transport-udp]
type = transport
protocol = udp
bind = 127.0.0.1:$SIP_PORT

; simulated phones and the simulated carrier's receiving side (rig-only)
[transport-sim]
type = transport
protocol = udp
bind = 127.0.0.1:$SIM_PORT

; the simulated carrier's sending side (rig-only); the PBX knows the trunk by this address
[transport-carrier]
type = transport
protocol = udp
bind = 127.0.0.1:$CARRIER_PORT

[endpoint-tpl](!)
type = endpoint
transport = transport-udp
context = from-internal
disallow = all
allow = ulaw,alaw,g722
direct_media = no
rtp_symmetric = yes
force_rport = yes
rewrite_contact = yes
identify_by = username,auth_username

[auth-tpl](!)
type = auth
auth_type = userpass

[aor-tpl](!)
type = aor
max_contacts = 1
remove_existing = yes

; ---- the PBX's phones (a real SIP phone may register as any of them, see phone.sh)
EOF
for ext in $PHONES; do
cat >> "$E/pjsip.conf" <<EOF
[$ext](endpoint-tpl)
auth = $ext
aors = $ext
callerid = "Ext $ext" <$ext>
call_group = 1
pickup_group = 1
[$ext](auth-tpl)
username = $ext
password = ${SIP_PW}$ext
[$ext](aor-tpl)

EOF
done
cat >> "$E/pjsip.conf" <<EOF
; ---- the PBX's trunk to the (simulated) carrier. Calls out: Dial(PJSIP/<number>@trunk).
; Calls in are identified by the carrier's address, or by auth_username 'trunk' (phone.sh).
[trunk](endpoint-tpl)
context = from-trunk
auth = trunk
aors = trunk
identify_by = ip,username,auth_username
[trunk](auth-tpl)
username = trunk
password = ${SIP_PW}trunk
[trunk]
type = aor
contact = sip:127.0.0.1:$SIM_PORT
[trunk]
type = identify
endpoint = trunk
match = 127.0.0.1:$CARRIER_PORT

; ---- two trunks that register (listVoIPTrunk/getSIPTrunk): the PBX registers to itself, as the
; rig-only account 'regsink' below; regtrunk is Registered, badtrunk (wrong password) Rejected.
; Each registration is named as its endpoint: that is how pbxgate pairs them (no line support)
[regtrunk](endpoint-tpl)
context = from-trunk
outbound_auth = regtrunk
[regtrunk](auth-tpl)
username = regsink
password = ${SIP_PW}regsink
[regtrunk]
type = registration
transport = transport-sim
server_uri = sip:127.0.0.1:$SIP_PORT
client_uri = sip:regsink@127.0.0.1:$SIP_PORT
outbound_auth = regtrunk
retry_interval = 5
[badtrunk](endpoint-tpl)
context = from-trunk
outbound_auth = badtrunk
[badtrunk](auth-tpl)
username = regsink
password = wrong-password
[badtrunk]
type = registration
transport = transport-sim
server_uri = sip:127.0.0.1:$SIP_PORT
client_uri = sip:regsink@127.0.0.1:$SIP_PORT
outbound_auth = badtrunk

; ==== simulators (rig-only, not part of the PBX under test; their CDRs are disabled) ====
[sim-tpl](!)
type = endpoint
transport = transport-sim
context = rig-sim
disallow = all
allow = ulaw,alaw,g722
direct_media = no
set_var = CDR_PROP(disable)=1

; the registrar side of regtrunk/badtrunk (identified by its username)
[regsink](sim-tpl)
identify_by = username
auth = regsink
aors = regsink
[regsink](auth-tpl)
username = regsink
password = ${SIP_PW}regsink
[regsink](aor-tpl)

; receives everything the PBX sends to the simulated phones and to the carrier
[sim](sim-tpl)
identify_by = ip
[sim]
type = identify
endpoint = sim
match = 127.0.0.1:$SIP_PORT

; the carrier calling in: AMI Originate PJSIP/<did>@carrier (authenticates as the trunk)
[carrier](sim-tpl)
transport = transport-carrier
outbound_auth = trunk
aors = carrier
[carrier]
type = aor
contact = sip:127.0.0.1:$SIP_PORT
EOF
for ext in $PHONES; do
cat >> "$E/pjsip.conf" <<EOF

; phone $ext placing a call: AMI Originate PJSIP/<number>@phone-$ext
[phone-$ext](sim-tpl)
outbound_auth = $ext
from_user = $ext
aors = phone-$ext
[phone-$ext]
type = aor
contact = sip:127.0.0.1:$SIP_PORT
EOF
done

# --- extensions.conf: the shipped building blocks, a small PBX dialplan that uses them the
#     way an operator would, and the simulators
cat > "$E/extensions.conf" <<EOF
[general]
static = yes
writeprotect = yes
clearglobalvars = yes

[globals]
RIG_DIAL_TIMEOUT = $DIAL_TIMEOUT
RIG_SIM = 127.0.0.1:$SIM_PORT
RIG_SIM_PHONES = $(echo "$SIM_PHONES" | tr ' ' -)

; the shipped pbxgate building blocks (contrib/asterisk/extensions_pbxgate.conf), unchanged
#include extensions_pbxgate.conf

; ==== the PBX's dialplan: what an operator writes, using the building blocks ====
; (context names as on a UCM, so dcontext in the CDRs looks familiar)

; phones (endpoints 10XX): extensions, and 9 + number out through the trunk;
; *10XX: like 10XX, through a dialplan with Hangup() after Dial (see ext-local-hangup)
[from-internal]
exten => _10XX,1,Goto(ext-local,\${EXTEN},1)
exten => _9X.,1,Goto(outbound-route,\${EXTEN:1},1)
exten => _*10XX,1,Goto(ext-local-hangup,\${EXTEN:1},1)
; what pbxgate's dialIVR / dialQueue / dialRinggroup dial: an IVR, a queue, a ring group
exten => 7000,1,Goto(rig-ivr,s,1)
exten => 6000,1,Goto(rig-queue,s,1)
exten => 6100,1,Queue(6100,,,,30)
exten => 6400,1,Goto(rig-ringgroup,s,1)
; *98 + extension: leave a voicemail for 10XX (app_voicemail, voicemail.conf)
exten => _*9810XX,1,VoiceMail(\${EXTEN:3}@default,s)
; *88 + extension: like 10XX, then voicemail when not answered or busy (ext-local-vm)
exten => _*8810XX,1,Goto(ext-local-vm,\${EXTEN:3},1)
; the parking lot's spaces (701-720; 700 parks the caller); **10XX: pick up the call ringing
; at 10XX (directed pickup; *8, group pickup, is Asterisk's features.conf pickupexten)
include => parkedcalls
exten => _**10XX,1,PickupChan(PJSIP/\${EXTEN:2}-)
; conference room 800; follow-me 6500 (followme.conf: 1099, then 1000)
exten => 800,1,Gosub(pbxgate-conference,s,1(800))
exten => 6500,1,Gosub(pbxgate-followme,s,1(6500))
 same => n,FollowMe(6500,dN)
exten => 6501,1,Gosub(pbxgate-followme,s,1(6501))
 same => n,FollowMe(6501,dN)
; queue 6200 (1099 never answers); ring group 6401: 1099 (no answer) and 1098 (busy)
exten => 6200,1,Gosub(pbxgate-queue,s,1(6200))
 same => n,Queue(6200,,,,30)
exten => 6401,1,Gosub(pbxgate-ringgroup,s,1(6401))
 same => n,Dial(PJSIP/1099/sip:1099@\${RIG_SIM}&PJSIP/1098/sip:1098@\${RIG_SIM},\${RIG_DIAL_TIMEOUT})
; ring group 6402, hunt: 1099 for 4 s, then 1000
exten => 6402,1,Gosub(pbxgate-ringgroup,s,1(6402))
 same => n,Dial(PJSIP/1099/sip:1099@\${RIG_SIM},4)
 same => n,Gosub(pbxgate-ringgroup,s,1(6402))
 same => n,Dial(PJSIP/1000/sip:1000@\${RIG_SIM},\${RIG_DIAL_TIMEOUT})
; forwarding: *61 + 10XX always to 1000; *62 + 10XX always out to 5550123; *63 + 10XX to 1000
; when 10XX does not answer or is busy
exten => _*6110XX,1,Gosub(pbxgate-forward,s,1(\${EXTEN:3},1000))
 same => n,Goto(ext-local,1000,1)
exten => _*6210XX,1,Gosub(pbxgate-forward,s,1(\${EXTEN:3},5550123))
 same => n,Goto(outbound-route,5550123,1)
exten => _*6310XX,1,Goto(ext-local-fwd,\${EXTEN:3},1)

; a local extension: the registered phone, else the simulated phone (context rig-sim),
; else (1002) the bare endpoint, which fails with CHANUNAVAIL.
; Nothing runs after Dial(): when the dialplan ends, Asterisk hangs up. Any application after
; an unanswered Dial (Hangup(), Playback, VoiceMail...) makes Asterisk write a second CDR for
; the caller (same UniqueID, no DestinationChannel), see ext-local-hangup.
[ext-local]
exten => _10XX,1,Gosub(pbxgate-to-extension,s,1(\${EXTEN}))
 same => n,Gosub(rig-target,s,1(\${EXTEN}))
 same => n,Dial(\${GOSUB_RETVAL},\${RIG_DIAL_TIMEOUT},tTkK)
; device-state hints, one per phone: Asterisk sends AMI ExtensionStatus events for hints
; only, and pbxgate turns them into the websocket's ExtensionStatus notifications
$(for ext in $PHONES; do echo "exten => $ext,hint,PJSIP/$ext"; done)

; the same with Hangup() after Dial, as many dialplans have (phones dial *10XX)
[ext-local-hangup]
exten => _10XX,1,Gosub(pbxgate-to-extension,s,1(\${EXTEN}))
 same => n,Gosub(rig-target,s,1(\${EXTEN}))
 same => n,Dial(\${GOSUB_RETVAL},\${RIG_DIAL_TIMEOUT})
 same => n,Hangup()

; the same, then the extension's voicemail when the phone did not answer or was busy
[ext-local-vm]
exten => _10XX,1,Gosub(pbxgate-to-extension,s,1(\${EXTEN}))
 same => n,Gosub(rig-target,s,1(\${EXTEN}))
 same => n,Dial(\${GOSUB_RETVAL},\${RIG_DIAL_TIMEOUT})
 same => n,GotoIf(\$["\${DIALSTATUS}" = "ANSWER"]?done)
 same => n,Gosub(pbxgate-voicemail,s,1(\${EXTEN}))
 same => n,VoiceMail(\${EXTEN}@default,\${IF(\$["\${DIALSTATUS}" = "BUSY"]?b:u)})
 same => n(done),Hangup()

; the same, then forwarded to 1000 when the phone did not answer or was busy
[ext-local-fwd]
exten => _10XX,1,Gosub(pbxgate-to-extension,s,1(\${EXTEN}))
 same => n,Gosub(rig-target,s,1(\${EXTEN}))
 same => n,Dial(\${GOSUB_RETVAL},\${RIG_DIAL_TIMEOUT})
 same => n,GotoIf(\$["\${DIALSTATUS}" = "ANSWER"]?done)
 same => n,Gosub(pbxgate-forward,s,1(\${EXTEN},1000))
 same => n,Goto(ext-local,1000,1)
 same => n(done),Hangup()

; what to Dial() for extension ARG1, returned in GOSUB_RETVAL
[rig-target]
exten => s,1,Set(LOCAL(t)=\${PJSIP_DIAL_CONTACTS(\${ARG1})})
 same => n,GotoIf(\$["\${LOCAL(t)}" != ""]?done)
 same => n,Set(LOCAL(t)=PJSIP/\${ARG1})
 same => n,GotoIf(\$[\${FIELDNUM(RIG_SIM_PHONES,-,\${ARG1})} = 0]?done)
 same => n,Set(LOCAL(t)=PJSIP/\${ARG1}/sip:\${ARG1}@\${RIG_SIM})
 same => n(done),Return(\${LOCAL(t)})

; IVR 7000: a prompt, then an extension may be dialled
[rig-ivr]
exten => s,1,Gosub(pbxgate-ivr,s,1(7000))
 same => n,Background(demo-congrats)
 same => n,WaitExten(10)
exten => _10XX,1,Gosub(pbxgate-ivr-exit,s,1)
 same => n,Goto(ext-local,\${EXTEN},1)
exten => t,1,Hangup()
exten => i,1,Hangup()

; queue 6000 (queues.conf): member 1000
[rig-queue]
exten => s,1,Gosub(pbxgate-queue,s,1(6000))
 same => n,Queue(6000,,,,30)

; ring group 6400: 1000 and 1001 at once
[rig-ringgroup]
exten => s,1,Gosub(pbxgate-ringgroup,s,1(6400))
 same => n,Gosub(rig-target,s,1(1000))
 same => n,Set(RIG_RG_FIRST=\${GOSUB_RETVAL})
 same => n,Gosub(rig-target,s,1(1001))
 same => n,Dial(\${RIG_RG_FIRST}&\${GOSUB_RETVAL},\${RIG_DIAL_TIMEOUT})

[outbound-route]
exten => _X.,1,Gosub(pbxgate-to-trunk,s,1(\${EXTEN},trunk))
 same => n,Dial(PJSIP/\${EXTEN}@trunk,\${RIG_DIAL_TIMEOUT})

; calls from the trunk: pbxgate first (Stasis), then the DID routing
[from-trunk]
exten => _X.,1,Gosub(pbxgate-inbound,s,1(\${EXTEN}))
; a DB() read after Stasis, as operators' own dialplans have: Asterisk logs "Dangerous function
; DB read blocked" when call control left the channel unable to (the tests look for that line)
 same => n,Set(LOCAL(rigdb)=\${DB(rig/\${EXTEN})})
 same => n,Goto(ext-did,\${EXTEN},1)

; DID 55501XX -> extension 10XX (5550100 -> 1000 answers, 5550198 -> 1098 busy,
; 5550199 -> 1099 no answer, 5550197 -> 1097 congestion, 5550102 -> 1002 fails);
; 5556400 -> ring group 6400, 5556000 -> queue 6000, 5557000 -> IVR 7000; others -> 1000
[ext-did]
exten => _55501XX,1,Goto(ext-local,10\${EXTEN:-2},1)
exten => 5556400,1,Goto(rig-ringgroup,s,1)
exten => 5556000,1,Goto(rig-queue,s,1)
exten => 5557000,1,Goto(rig-ivr,s,1)
exten => _X.,1,Goto(ext-local,1000,1)

; ==== simulators (rig-only) ====
; A simulated caller that keys digits once answered (tests Originate into here: an IVR):
; waits, sends RIG_DTMF, stays RIG_WAIT seconds, hangs up. Not a PBX call: no CDR.
[rig-caller]
exten => dtmf,1,Set(CDR_PROP(disable)=1)
 same => n,Wait(1)
 same => n,SendDTMF(\${RIG_DTMF})
 same => n,Wait(\${RIG_WAIT})
 same => n,Hangup()
; feature codes once answered: after RIG_WAIT1 s, RIG_CODE (e.g. *2 attended transfer, #1 blind
; transfer, #72 park), then after 2 s RIG_DTMF (the transfer target), then RIG_WAIT s, hang up
exten => feature,1,Set(CDR_PROP(disable)=1)
 same => n,Wait(\${RIG_WAIT1})
 same => n,SendDTMF(\${RIG_CODE},150)
 same => n,Wait(2)
 same => n,ExecIf(\$["\${RIG_DTMF}" != ""]?SendDTMF(\${RIG_DTMF},150))
 same => n,Wait(\${RIG_WAIT})
 same => n,Hangup()

; Everything the PBX sends to 127.0.0.1:$SIM_PORT: the simulated phones (request user 10XX)
; and the carrier (request user = the number dialled out). By the last two digits:
; 97 congestion (SIP 503), 98 busy (486), 99 rings until the caller gives up,
; anything else rings 1 s, answers and plays audio until the caller hangs up.
[rig-sim]
exten => _X.,1,Set(CDR_PROP(disable)=1)
 same => n,GotoIf(\$["\${EXTEN:-2}" = "97"]?congestion)
 same => n,GotoIf(\$["\${EXTEN:-2}" = "98"]?busy)
 same => n,GotoIf(\$["\${EXTEN:-2}" = "99"]?noanswer)
 same => n,Ringing()
 same => n,Wait(1)
 same => n,Answer()
 same => n,Playback(demo-congrats)
 same => n,Wait(600)
 same => n,Hangup()
 same => n(busy),Busy(10)
 same => n(congestion),Congestion(10)
 same => n(noanswer),Ringing()
 same => n,Wait(600)
EOF

chmod -R a+rX "$E"
# NB: inside the chroot /var/run -> /run is an absolute symlink: always use $RIG_DIR/run here
mkdir -p "$RIG_DIR/run/asterisk" "$RIG_DIR/var/lib/asterisk" "$RIG_DIR/var/spool/asterisk/monitor" \
         "$RIG_DIR/var/log/asterisk/cdr-csv" "$RIG_DIR/var/log/asterisk/cdr-custom" "$RIG_DIR/var/cache/asterisk"
# recordings and CSV readable from the host by a non-root process; owned by root, as the
# chroot's asterisk uid is some unrelated user on the host
chown root:root "$RIG_DIR/var/spool/asterisk" "$RIG_DIR/var/spool/asterisk/monitor" \
                "$RIG_DIR/var/log/asterisk" "$RIG_DIR/var/log/asterisk/cdr-csv" "$RIG_DIR/var/log/asterisk/cdr-custom"
chmod 755 "$RIG_DIR/var/spool/asterisk" "$RIG_DIR/var/spool/asterisk/monitor" \
          "$RIG_DIR/var/log/asterisk" "$RIG_DIR/var/log/asterisk/cdr-csv" "$RIG_DIR/var/log/asterisk/cdr-custom"
rm -f "$RIG_DIR/run/asterisk/asterisk.pid" "$RIG_DIR/run/asterisk/asterisk.ctl" "$RIG_DIR/.rig.pid"
# the one music-on-hold file (musiconhold.conf)
mkdir -p "$RIG_DIR/var/lib/asterisk/moh"
chroot "$RIG_DIR" cp -L /usr/share/asterisk/sounds/en/demo-congrats.wav /var/lib/asterisk/moh/rig-hold.wav

# local time of the rig's Asterisk (CDR times, the YYYY-MM recording folders)
if [ -n "${RIG_TZ:-}" ]; then
    [ -e "$RIG_DIR/usr/share/zoneinfo/$RIG_TZ" ] || die "unknown RIG_TZ=$RIG_TZ"
    ln -sfn "/usr/share/zoneinfo/$RIG_TZ" "$RIG_DIR/etc/localtime"
    echo "$RIG_TZ" > "$RIG_DIR/etc/timezone"
elif [ -e /etc/localtime ]; then
    rm -f "$RIG_DIR/etc/localtime"
    cp -L /etc/localtime "$RIG_DIR/etc/localtime"
    if [ -r /etc/timezone ]; then cp /etc/timezone "$RIG_DIR/etc/timezone"; fi
fi

# ------------------------------------------------------------------ start
if ! awk -v d="$RIG_DIR/proc" '$2 == d { f = 1 } END { exit !f }' /proc/mounts; then
    mount -t proc proc "$RIG_DIR/proc"
fi
log "starting asterisk (AMI $AMI_PORT, HTTP/ARI $HTTP_PORT, SIP udp $SIP_PORT, simulators $SIM_PORT/$CARRIER_PORT)"
t0=$(date +%s%N)
# setsid: its own session, so signals for the caller's terminal or job do not reach it
setsid chroot "$RIG_DIR" /usr/sbin/asterisk -f -n < /dev/null >> "$RIG_DIR/var/log/asterisk/console.log" 2>&1 &
echo $! > "$RIG_DIR/.rig.pid"

fail_start() {   # stop what we started (only if it is still our asterisk), then die
    local p
    tail -30 "$RIG_DIR/var/log/asterisk/console.log" "$RIG_DIR/var/log/asterisk/messages.log" >&2 2>/dev/null || true
    p=$(rig_pid)
    [ -z "$p" ] || kill -TERM "$p" 2>/dev/null || true
    die "$1"
}
deadline=$(( $(date +%s) + START_TIMEOUT ))
until [ -n "$(ami_banner)" ]; do
    if [ -z "$(rig_pid)" ] && ! kill -0 "$(cat "$RIG_DIR/.rig.pid")" 2>/dev/null; then
        fail_start "asterisk exited during start"
    fi
    [ "$(date +%s)" -lt "$deadline" ] || fail_start "AMI did not answer on 127.0.0.1:$AMI_PORT within ${START_TIMEOUT}s"
    sleep 0.2
done
ami_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
chroot "$RIG_DIR" asterisk -rx "core waitfullybooted" >/dev/null 2>&1 || true
booted_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
pid=$(rig_pid)
[ -n "$pid" ] || fail_start "asterisk is not running after start"
log "AMI answered after ${ami_ms} ms, fully booted after ${booted_ms} ms, pid $pid"
write_env "$pid"
