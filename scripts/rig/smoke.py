#!/usr/bin/env python3
"""Smoke test of the Asterisk rig (scripts/rig/up.sh) and of contrib/asterisk. Stdlib only.

    scripts/rig/smoke.py [--raw] [--only NAME[,NAME..]] [RIG_DIR]

RIG_DIR defaults to $RIG_DIR or /var/tmp/pbxgate-rig; settings come from RIG_DIR/rig.env.
Places every kind of call with AMI Originate through the rig's simulated phones and carrier
(internal, outbound, inbound; answered, busy, no answer, failed), checks the AMI Cdr event
of each (disposition, channels, the pbx_* contract headers, LinkedID) and the recording,
then checks the Stasis(pbxgate,...) hook over ARI: accept, refuse, and fail-open.
--raw prints every Cdr event as received. Ends with 'N passed, N failed'; exit 0 if all passed.
"""
import base64
import hashlib
import json
import os
import queue
import re
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
import wave

ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
RAW = "--raw" in sys.argv
ONLY = None
if "--only" in sys.argv:
    ONLY = set(sys.argv[sys.argv.index("--only") + 1].split(","))
    ARGS = [a for a in ARGS if a != sys.argv[sys.argv.index("--only") + 1]]
RIG_DIR = ARGS[0] if ARGS else os.environ.get("RIG_DIR", "/var/tmp/pbxgate-rig")


def load_env(path):
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                env[k] = v.strip('"')
    return env


ENV = load_env(os.path.join(RIG_DIR, "rig.env"))
RESULTS = []


def check(name, ok, detail=""):
    RESULTS.append(bool(ok))
    print(f"{'PASS' if ok else 'FAIL'}: {name}" + (f" -- {detail}" if detail else ""), flush=True)
    return ok


class Ami:
    """Minimal AMI client: keeps each message as an ordered list of (key, value) and its raw text."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=5)
        self.sock.settimeout(None)
        f = self.sock.makefile("rb")
        self.banner = f.readline().decode().strip()
        self.file = f
        self.events = []
        self.cond = threading.Condition()
        self.responses = {}
        self.n = 0
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        lines = []
        for line in self.file:
            line = line.decode(errors="replace").rstrip("\r\n")
            if line:
                lines.append(line)
                continue
            if not lines:
                continue
            msg = {"_raw": "\n".join(lines)}
            for ln in lines:
                k, _, v = ln.partition(":")
                msg.setdefault(k.strip(), v.strip())
            lines = []
            with self.cond:
                if "Event" in msg:
                    msg["_t"] = time.time()
                    self.events.append(msg)
                elif "Response" in msg:
                    self.responses[msg.get("ActionID")] = msg
                self.cond.notify_all()

    def action(self, name, timeout=10, **fields):
        self.n += 1
        aid = f"smoke-{self.n}"
        lines = [f"Action: {name}", f"ActionID: {aid}"]
        for k, v in fields.items():
            for item in (v if isinstance(v, list) else [v]):
                lines.append(f"{k}: {item}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        with self.cond:
            self.cond.wait_for(lambda: aid in self.responses, timeout)
            return self.responses.pop(aid, None)

    def wait_for(self, pred, timeout, since=0.0):
        end = time.time() + timeout
        with self.cond:
            while True:
                for e in self.events:
                    if e["_t"] >= since and pred(e):
                        return e
                left = end - time.time()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def command(self, cmd):
        r = self.action("Command", Command=cmd)
        return (r or {}).get("_raw", "")


class WebSocket:
    """Just enough of RFC 6455 for the ARI event stream (client side, text frames)."""

    def __init__(self, host, port, path, headers):
        self.sock = socket.create_connection((host, port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        req = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
               "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        req += [f"{k}: {v}" for k, v in headers.items()]
        self.sock.sendall(("\r\n".join(req) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            c = self.sock.recv(1)
            if not c:
                raise EOFError("websocket handshake: connection closed")
            head += c
        status = head.split(b"\r\n", 1)[0].decode()
        if " 101 " not in status:
            raise RuntimeError(f"websocket handshake: {status}")
        self.sock.settimeout(None)
        self.msgs = queue.Queue()
        self.seen = []
        threading.Thread(target=self._reader, daemon=True).start()

    def _exact(self, n):
        b = b""
        while len(b) < n:
            c = self.sock.recv(n - len(b))
            if not c:
                raise EOFError
            b += c
        return b

    def _send(self, op, data=b""):
        mask = os.urandom(4)
        n = len(data)
        hdr = bytes([0x80 | op]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n))
        self.sock.sendall(hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _reader(self):
        buf = b""
        try:
            while True:
                b1, b2 = self._exact(2)
                op, n = b1 & 0x0F, b2 & 0x7F
                if n == 126:
                    n = struct.unpack("!H", self._exact(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", self._exact(8))[0]
                data = self._exact(n)
                if op == 9:
                    self._send(10, data)
                elif op == 8:
                    return
                elif op in (0, 1):
                    buf += data
                    if b1 & 0x80:
                        m = json.loads(buf.decode())
                        buf = b""
                        self.seen.append(m)
                        self.msgs.put(m)
        except (EOFError, OSError):
            return

    def wait(self, pred, timeout):
        for m in list(self.seen):
            if pred(m):
                return m
        end = time.time() + timeout
        while time.time() < end:
            try:
                m = self.msgs.get(timeout=max(0.05, end - time.time()))
            except queue.Empty:
                return None
            if pred(m):
                return m
        return None

    def close(self):
        try:
            self._send(8, struct.pack("!H", 1000))
            self.sock.close()
        except OSError:
            pass


def ari(method, path):
    req = urllib.request.Request(ENV["ARI_URL"] + path, method=method,
                                 data=b"" if method == "POST" else None)
    tok = base64.b64encode(f"{ENV['ARI_USER']}:{ENV['ARI_PASSWORD']}".encode()).decode()
    req.add_header("Authorization", f"Basic {tok}")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            body = r.read()
            return r.status, (json.loads(body) if body else None)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def wait_idle(ami, timeout=30):
    """Until the rig has no channels left (the previous call is completely over)."""
    end = time.time() + timeout
    while time.time() < end:
        out = ami.command("core show channels count")
        m = re.search(r"(\d+) active channel", out)
        if m and m.group(1) == "0":
            return True
        time.sleep(0.3)
    return False


# name, Originate channel, caller ID (None: the endpoint's), expected fields of the Cdr event
INT = dict(PbxDirection="Internal", PbxActionType="DIAL", PbxSrcTrunk="", PbxDstTrunk="", PbxDid="")
OUT = dict(PbxDirection="Outbound", PbxActionType="DIAL", PbxSrcTrunk="", PbxDstTrunk="trunk", PbxDid="")
INB = dict(PbxDirection="Inbound", PbxActionType="DIAL", PbxSrcTrunk="trunk", PbxDstTrunk="")
CASES = [
    ("internal-answered", "PJSIP/1000@phone-1001", None,
     dict(INT, Source="1001", Destination="1000", Disposition="ANSWERED"), "PJSIP/1001-", "PJSIP/1000-"),
    ("internal-busy", "PJSIP/1098@phone-1001", None,
     dict(INT, Source="1001", Destination="1098", Disposition="BUSY"), "PJSIP/1001-", "PJSIP/1098-"),
    ("internal-noanswer", "PJSIP/1099@phone-1001", None,
     dict(INT, Source="1001", Destination="1099", Disposition="NO ANSWER"), "PJSIP/1001-", "PJSIP/1099-"),
    ("internal-failed", "PJSIP/1002@phone-1001", None,
     dict(INT, Source="1001", Destination="1002", Disposition="FAILED"), "PJSIP/1001-", ""),
    ("internal-congestion", "PJSIP/1097@phone-1001", None,
     dict(INT, Source="1001", Destination="1097", Disposition="FAILED"), "PJSIP/1001-", "PJSIP/1097-"),
    ("outbound-answered", "PJSIP/95550123@phone-1001", None,
     dict(OUT, Source="1001", Destination="5550123", Disposition="ANSWERED"), "PJSIP/1001-", "PJSIP/trunk-"),
    ("outbound-busy", "PJSIP/95550198@phone-1001", None,
     dict(OUT, Source="1001", Destination="5550198", Disposition="BUSY"), "PJSIP/1001-", "PJSIP/trunk-"),
    ("outbound-noanswer", "PJSIP/95550199@phone-1001", None,
     dict(OUT, Source="1001", Destination="5550199", Disposition="NO ANSWER"), "PJSIP/1001-", "PJSIP/trunk-"),
    ("outbound-congestion", "PJSIP/95550197@phone-1001", None,
     dict(OUT, Source="1001", Destination="5550197", Disposition="FAILED"), "PJSIP/1001-", "PJSIP/trunk-"),
    # Hangup() after an unanswered Dial: Asterisk adds a second CDR for the caller (checked below)
    ("internal-busy-then-hangup", "PJSIP/*1098@phone-1001", None,
     dict(INT, Source="1001", Destination="1098", Disposition="BUSY"), "PJSIP/1001-", "PJSIP/1098-"),
    ("inbound-answered", "PJSIP/5550100@carrier", '"Bob" <+15551234567>',
     dict(INB, Source="+15551234567", Destination="1000", PbxDid="5550100", Disposition="ANSWERED"),
     "PJSIP/trunk-", "PJSIP/1000-"),
    ("inbound-busy", "PJSIP/5550198@carrier", '"Bob" <+15551234567>',
     dict(INB, Source="+15551234567", Destination="1098", PbxDid="5550198", Disposition="BUSY"),
     "PJSIP/trunk-", "PJSIP/1098-"),
    ("inbound-noanswer", "PJSIP/5550199@carrier", '"Bob" <+15551234567>',
     dict(INB, Source="+15551234567", Destination="1099", PbxDid="5550199", Disposition="NO ANSWER"),
     "PJSIP/trunk-", "PJSIP/1099-"),
]
TALK_SECONDS = 2


def originate(ami, channel, callerid):
    fields = dict(Channel=channel, Application="Wait", Data=str(TALK_SECONDS), Timeout="30000", Async="true")
    if callerid:
        fields["CallerID"] = callerid
    return ami.action("Originate", **fields)


def place_call(ami, name, channel, callerid, expect):
    """Originate, then return every Cdr event that arrived for this call."""
    if not wait_idle(ami):
        check(f"{name}: rig idle before the call", False)
    t0 = time.time()
    r = originate(ami, channel, callerid)
    check(f"{name}: Originate {channel} accepted", r and r.get("Response") == "Success", r and r.get("Message"))
    first = ami.wait_for(lambda e: e.get("Event") == "Cdr" and e.get("Destination") == expect["Destination"]
                         and e.get("Source") == expect["Source"], 40, since=t0)
    wait_idle(ami)
    time.sleep(0.5)   # any late Cdr of the same call
    # this call's Cdr events: those of its LinkedID (other clients of the rig may be calling too)
    window = [e for e in ami.events if e["_t"] >= t0 and e.get("Event") == "Cdr"]
    cdrs = [e for e in window if first and e.get("LinkedID") == first.get("LinkedID")]
    others = len(window) - len(cdrs)
    if others:
        print(f"  info: {name}: {others} other Cdr event(s) in the same time (other calls on the rig)")
    return first, cdrs, time.time() - t0


def check_cdr(name, cdr, cdrs, expect, chan_prefix, dst_prefix, secs):
    if not check(f"{name}: Cdr event arrived", cdr is not None, f"{len(cdrs)} Cdr event(s), {secs:.1f}s"):
        for e in cdrs:
            print(e["_raw"])
        return
    if RAW:
        print(f"----- {name}: {len(cdrs)} Cdr event(s)")
        for e in cdrs:
            print(e["_raw"] + "\n")
    summary = "; ".join(f"{e.get('Channel')}>{e.get('DestinationChannel')} {e.get('LastApplication')} "
                        f"{e.get('Disposition')} seq={e.get('Sequence')}" for e in cdrs)
    if name.endswith("-then-hangup"):
        tail = [e for e in cdrs if e is not cdr]
        check(f"{name}: a second Cdr (same UniqueID, no DestinationChannel, LastApplication Hangup)",
              len(cdrs) == 2 and tail and tail[0].get("UniqueID") == cdr.get("UniqueID")
              and tail[0].get("DestinationChannel") == "" and tail[0].get("LastApplication") == "Hangup", summary)
    else:
        check(f"{name}: exactly one Cdr event", len(cdrs) == 1, summary)
    check(f"{name}: LinkedID = UniqueID (the caller's channel started the call)",
          cdr.get("LinkedID") == cdr.get("UniqueID"), f"{cdr.get('LinkedID')} / {cdr.get('UniqueID')}")
    bad = {k: (cdr.get(k), v) for k, v in expect.items() if cdr.get(k) != v}
    check(f"{name}: fields {', '.join(f'{k}={v}' for k, v in expect.items() if k.startswith(('Disp', 'PbxDir')))}",
          not bad, f"got/want {bad}" if bad else "")
    check(f"{name}: channels {chan_prefix}* -> {dst_prefix or '(none)'}*",
          cdr.get("Channel", "").startswith(chan_prefix)
          and (cdr.get("DestinationChannel", "").startswith(dst_prefix) if dst_prefix else cdr.get("DestinationChannel") == ""),
          f"{cdr.get('Channel')} -> {cdr.get('DestinationChannel')}")
    check(f"{name}: LinkedID and Sequence headers", re.fullmatch(r"(.+-)?\d+\.\d+", cdr.get("LinkedID", ""))
          and cdr.get("Sequence", "").isdigit(), f"LinkedID={cdr.get('LinkedID')} Sequence={cdr.get('Sequence')}")
    rec = cdr.get("PbxRecordFiles", "")
    callee = expect["Destination"]
    ok = re.fullmatch(r"\d{4}-\d{2}/auto-\d+-" + re.escape(expect["Source"]) + "-" + re.escape(callee) + r"\.wav@", rec)
    check(f"{name}: PbxRecordFiles YYYY-MM/auto-<epoch>-<caller>-<callee>.wav@", ok, rec)
    if ok:
        path = os.path.join(ENV["MONITOR_DIR"], rec.rstrip("@"))
        time.sleep(0.3)
        exists = os.path.exists(path)
        detail = path if exists else f"{path} missing"
        dur = 0.0
        if exists and os.path.getsize(path) > 44:
            with wave.open(path) as w:
                dur = w.getnframes() / w.getframerate()
            detail = f"{path} {os.path.getsize(path)} bytes {dur:.2f}s"
        elif exists:
            detail = f"{path} {os.path.getsize(path)} bytes (header only)"
        if expect["Disposition"] == "ANSWERED":
            check(f"{name}: recording exists with audio", exists and dur >= TALK_SECONDS - 0.5, detail)
        else:
            print(f"  info: {name}: unanswered call's recording: {detail}")


def main():
    ami = Ami(ENV["AMI_HOST"], int(ENV["AMI_PORT"]))
    check("AMI banner", ami.banner.startswith("Asterisk Call Manager"), ami.banner)
    r = ami.action("Challenge", AuthType="MD5")
    key = hashlib.md5((r["Challenge"] + ENV["AMI_SECRET"]).encode()).hexdigest()
    r = ami.action("Login", AuthType="MD5", Username=ENV["AMI_USER"], Key=key)
    if not check("AMI MD5 login as pbxgate", r and r.get("Response") == "Success", r and r.get("Message")):
        return 1

    for name, channel, callerid, expect, chan_prefix, dst_prefix in CASES:
        if ONLY and name not in ONLY:
            continue
        cdr, cdrs, secs = place_call(ami, name, channel, callerid, expect)
        check_cdr(name, cdr, cdrs, expect, chan_prefix, dst_prefix, secs)

    if not ONLY or "stasis" in ONLY:
        stasis_checks(ami)
    ami.action("Logoff")
    passed = sum(RESULTS)
    print(f"{passed} passed, {len(RESULTS) - passed} failed")
    return 0 if all(RESULTS) else 1


def stasis_checks(ami):
    app = ENV["ARI_APP"]
    port = int(ENV["ARI_URL"].split(":")[2].split("/")[0])
    tok = base64.b64encode(f"{ENV['ARI_USER']}:{ENV['ARI_PASSWORD']}".encode()).decode()
    ws = WebSocket("127.0.0.1", port, f"/ari/events?app={app}&subscribeAll=false", {"Authorization": f"Basic {tok}"})
    st, apps = ari("GET", "/applications")
    check(f"ARI app '{app}' registered by the websocket", st == 200 and any(a["name"] == app for a in apps), f"HTTP {st}")

    # accept: ARI continue -> the call goes on to extension 1000 and is answered
    wait_idle(ami)
    t0 = time.time()
    originate(ami, "PJSIP/5550100@carrier", '"Carol" <+15557770001>')
    ss = ws.wait(lambda m: m.get("type") == "StasisStart", 10)
    if check("stasis accept: StasisStart for the inbound call", ss is not None,
             ss and f"channel={ss['channel']['name']} args={ss.get('args')} state={ss['channel']['state']} "
                    f"caller={ss['channel']['caller']['number']} dialplan={ss['channel'].get('dialplan')}"):
        check("stasis accept: channel PJSIP/trunk-*, args [inbound, 5550100]",
              ss["channel"]["name"].startswith("PJSIP/trunk-") and ss.get("args") == ["inbound", "5550100"])
        st, body = ari("POST", f"/channels/{ss['channel']['id']}/continue")
        check("stasis accept: POST /channels/{id}/continue -> 204", st == 204, f"HTTP {st} {body or ''}")
        cdr = ami.wait_for(lambda e: e.get("Event") == "Cdr" and e.get("Source") == "+15557770001", 30, since=t0)
        check("stasis accept: call answered at 1000 after continue",
              cdr and cdr.get("Disposition") == "ANSWERED" and cdr.get("Destination") == "1000"
              and cdr.get("PbxDid") == "5550100",
              cdr and f"disp={cdr.get('Disposition')} dst={cdr.get('Destination')} lastapp={cdr.get('LastApplication')}")
        if RAW and cdr:
            print("----- stasis accept Cdr\n" + cdr["_raw"] + "\n")

    # refuse: ARI hangup while in Stasis
    wait_idle(ami)
    ws.seen.clear()
    t0 = time.time()
    originate(ami, "PJSIP/5550101@carrier", '"Eve" <+15557770002>')
    ss = ws.wait(lambda m: m.get("type") == "StasisStart", 10)
    if check("stasis refuse: StasisStart", ss is not None):
        st, body = ari("DELETE", f"/channels/{ss['channel']['id']}?reason=busy")
        check("stasis refuse: DELETE /channels/{id}?reason=busy -> 204", st == 204, f"HTTP {st} {body or ''}")
        cdr = ami.wait_for(lambda e: e.get("Event") == "Cdr" and e.get("Source") == "+15557770002", 15, since=t0)
        check("stasis refuse: Cdr not answered, LastApplication Stasis",
              cdr and cdr.get("Disposition") != "ANSWERED" and cdr.get("LastApplication") == "Stasis",
              cdr and f"disp={cdr.get('Disposition')} lastapp={cdr.get('LastApplication')} data={cdr.get('LastData')}")
        if RAW and cdr:
            print("----- stasis refuse Cdr\n" + cdr["_raw"] + "\n")
    ws.close()

    # fail-open: nobody holds the app -> Stasis() fails at once, the call goes on
    time.sleep(0.5)
    st, apps = ari("GET", "/applications")
    check("app gone after the websocket closed", st == 200 and not any(a["name"] == app for a in apps))
    wait_idle(ami)
    t0 = time.time()
    originate(ami, "PJSIP/5550101@carrier", '"Dan" <+15557770003>')
    cdr = ami.wait_for(lambda e: e.get("Event") == "Cdr" and e.get("Source") == "+15557770003", 30, since=t0)
    check("stasis fail-open: without a client the call is answered at 1001",
          cdr and cdr.get("Disposition") == "ANSWERED" and cdr.get("Destination") == "1001",
          cdr and f"disp={cdr.get('Disposition')} dst={cdr.get('Destination')} took {cdr['_t'] - t0:.1f}s")


if __name__ == "__main__":
    sys.exit(main())
