#!/usr/bin/env bash
# Places one test call of a kind on the rig (scripts/rig/up.sh) with AMI Originate, from the
# rig's simulated phones or carrier, so pbxgate records it as a real call. It only places
# the call: pbxgate keeps its AMI and ARI connections (unlike scripts/rig/smoke.py, which
# takes over the ARI application), and an inbound call meets call control as any other.
#
#   scripts/rig/call.sh KIND [SECONDS] [RIG_DIR]
#
#   KIND      internal     1001 calls 1000 (answered)
#             inbound      the carrier calls DID 5550100 (-> 1000, answered), from +15551230000
#             outbound     1001 calls 95550123 (out through the trunk, answered)
#             busy         1001 calls 1098 (busy)
#             noanswer     1001 calls 1099 (rings until the rig's dial timeout)
#             congestion   1001 calls 1097 (fails)
#   SECONDS   how long the answered call lasts (default 5)
#   RIG_DIR   default $RIG_DIR or /var/tmp/pbxgate-rig (the rig's settings are RIG_DIR/rig.env)
#
# Prints the Originate's answer; the CDR arrives in pbxgate when the call ends.
set -euo pipefail

usage() { sed -n '7,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
KIND=${1:-}
SECS=${2:-5}
RIG_DIR=${3:-${RIG_DIR:-/var/tmp/pbxgate-rig}}
[[ "$SECS" =~ ^[0-9]+$ ]] || usage

case "$KIND" in
    internal)   FROM=phone-1001; NUMBER=1000;     CALLER='"Rig 1001" <1001>' ;;
    inbound)    FROM=carrier;    NUMBER=5550100;  CALLER='"Rig caller" <+15551230000>' ;;
    outbound)   FROM=phone-1001; NUMBER=95550123; CALLER='"Rig 1001" <1001>' ;;
    busy)       FROM=phone-1001; NUMBER=1098;     CALLER='"Rig 1001" <1001>' ;;
    noanswer)   FROM=phone-1001; NUMBER=1099;     CALLER='"Rig 1001" <1001>' ;;
    congestion) FROM=phone-1001; NUMBER=1097;     CALLER='"Rig 1001" <1001>' ;;
    *) usage ;;
esac

ENV_FILE="$RIG_DIR/rig.env"
[ -r "$ENV_FILE" ] || { echo "call: no rig settings in $ENV_FILE (start the rig: scripts/rig/up.sh $RIG_DIR)" >&2; exit 1; }
# shellcheck disable=SC1090
. "$ENV_FILE"

exec 3<>"/dev/tcp/$AMI_HOST/$AMI_PORT" \
    || { echo "call: AMI does not answer on $AMI_HOST:$AMI_PORT (is the rig running?)" >&2; exit 1; }
printf 'Action: Login\r\nUsername: %s\r\nSecret: %s\r\nEvents: off\r\n\r\n' "$AMI_USER" "$AMI_SECRET" >&3
printf 'Action: Originate\r\nActionID: call-sh\r\nChannel: PJSIP/%s@%s\r\nCallerID: %s\r\nApplication: Wait\r\nData: %s\r\nTimeout: 30000\r\nAsync: true\r\n\r\n' \
    "$NUMBER" "$FROM" "$CALLER" "$SECS" >&3
printf 'Action: Logoff\r\n\r\n' >&3

# the answers, one block per message: Login's, then Originate's (ActionID call-sh)
status=1 block=""
while IFS= read -r -t 10 line <&3; do
    line=${line%$'\r'}
    if [ -n "$line" ]; then block+="$line"$'\n'; continue; fi
    case "$block" in
        *"Message: Authentication failed"*)
            echo "call: AMI login refused (AMI_USER/AMI_SECRET in $ENV_FILE)" >&2; break ;;
        *"ActionID: call-sh"*)
            if [[ "$block" == *"Response: Success"* ]]; then
                echo "call: $KIND call placed: $CALLER -> $NUMBER (from $FROM, $SECS s once answered)"
                status=0
            else
                msg=$(sed -n 's/^Message: //p' <<<"$block")
                echo "call: Asterisk refused the call: ${msg:-no reason given}" >&2
            fi
            break ;;
    esac
    block=""
done
exec 3<&-
exit "$status"
