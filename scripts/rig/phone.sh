#!/usr/bin/env bash
# A real, headless SIP phone for the rig (baresip; installs Debian's baresip-core if missing).
# Not needed for calls driven by AMI Originate (see docs/asterisk.md); useful to hear/see a
# real SIP client against the shipped configuration.
#
#   scripts/rig/phone.sh EXT [NUMBER] [SECONDS]
#
#   EXT      endpoint to register as: 1000, 1001, 1002, 1097, 1098, 1099 or trunk
#   NUMBER   dial it once registered (e.g. 1000, 95550123; as trunk: a DID such as 5550100)
#   SECONDS  run this long, then quit (default 15)
#
# Incoming calls are answered at once. The microphone is a prompt WAV from the rig; both
# directions are written to $PHONE_DIR/dump-*-{enc,dec}.wav.
# While a phone is registered as 10XX, the rig rings it instead of the simulated phone.
# Ports: SIP = the rig's SIP_PORT + 10 + 2 x the endpoint's position in SIP_ENDPOINTS, RTP 50 ports
# per endpoint just above the rig's RTP range (both from RIG_DIR/rig.env).
# Env: RIG_DIR (default /var/tmp/pbxgate-rig), PHONE_DIR (default /tmp/pbxgate-phone-EXT),
#      PHONE_FROM=+15551234567 with EXT=trunk: call in as the carrier would (that number in
#      From, authenticating as 'trunk', without registering).
set -euo pipefail
EXT=${1:?usage: phone.sh EXT [NUMBER] [SECONDS]}
NUMBER=${2:-}
SECS=${3:-15}
RIG_DIR=${RIG_DIR:-/var/tmp/pbxgate-rig}
[ -r "$RIG_DIR/rig.env" ] || { echo "phone: no rig settings in $RIG_DIR/rig.env (start the rig: scripts/rig/up.sh $RIG_DIR)" >&2; exit 1; }
# shellcheck disable=SC1091
. "$RIG_DIR/rig.env"
if ! command -v baresip >/dev/null; then
    echo "phone: installing baresip-core" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends baresip-core >/dev/null
fi

PW=""
for e in $SIP_ENDPOINTS; do [ "${e%%:*}" = "$EXT" ] && PW=${e#*:}; done
[ -n "$PW" ] || { echo "phone: unknown endpoint $EXT (rig has: $SIP_ENDPOINTS)" >&2; exit 1; }

# own SIP and RTP ports per endpoint, so several phones can run at once; derived from the
# rig's own (rig.env), so phones of rigs on other RIG_* ports never collide
i=0; off=9
for e in $SIP_ENDPOINTS; do [ "${e%%:*}" = "$EXT" ] && off=$i; i=$((i + 1)); done
SIP_LOCAL=$((SIP_PORT + 10 + 2 * off))
RTP_LO=$((${RTP_PORTS##*-} + 1 + 50 * off))
D=${PHONE_DIR:-/tmp/pbxgate-phone-$EXT}
mkdir -p "$D"
# an 8 kHz prompt (Debian's sounds/en is an absolute symlink: search the real directory)
SRC=$(find "$RIG_DIR/usr/share/asterisk/sounds/" -name demo-congrats.wav | head -n1)

cat > "$D/config" <<CFG
poll_method		epoll
sip_listen		127.0.0.1:$SIP_LOCAL
net_interface		127.0.0.1
audio_source		aufile,$SRC
audio_alert		aufile,/dev/null
rtp_ports		$RTP_LO-$((RTP_LO + 49))
module_path		/usr/lib/baresip/modules
module			g711.so
module			aufile.so
module			sndfile.so
snd_path		$D
module_app		account.so
module_app		menu.so
CFG
if [ -n "${PHONE_FROM:-}" ]; then
    echo "<sip:$PHONE_FROM@$SIP_HOST:$SIP_PORT;transport=udp>;auth_user=$EXT;auth_pass=$PW;answermode=auto;regint=0" > "$D/accounts"
else
    echo "<sip:$EXT@$SIP_HOST:$SIP_PORT;transport=udp>;auth_pass=$PW;answermode=auto;regint=300" > "$D/accounts"
fi

args=(-f "$D" -t "$SECS")
[ -z "$NUMBER" ] || args+=(-e "/dial sip:$NUMBER@$SIP_HOST:$SIP_PORT")
exec baresip "${args[@]}"
