-- Call detail records in the UCM630X model (ucm::cdr::FIELDS). acctid is the
-- UCM AcctId; dedupe_key makes every Asterisk CDR land exactly once whatever
-- the path it arrives by (AMI event, CSV recovery, import). start_ms is the
-- call start in UTC milliseconds, for range queries; "start" etc. keep the
-- local-time text the UCM shows.
CREATE TABLE cdr (
    acctid INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key TEXT NOT NULL UNIQUE,
    start_ms INTEGER NOT NULL,
    "accountcode" TEXT NOT NULL DEFAULT '',
    "src" TEXT NOT NULL DEFAULT '',
    "dst" TEXT NOT NULL DEFAULT '',
    "dcontext" TEXT NOT NULL DEFAULT '',
    "clid" TEXT NOT NULL DEFAULT '',
    "channel" TEXT NOT NULL DEFAULT '',
    "dstchannel" TEXT NOT NULL DEFAULT '',
    "lastapp" TEXT NOT NULL DEFAULT '',
    "lastdata" TEXT NOT NULL DEFAULT '',
    "start" TEXT NOT NULL DEFAULT '',
    "answer" TEXT NOT NULL DEFAULT '',
    "end" TEXT NOT NULL DEFAULT '',
    "duration" TEXT NOT NULL DEFAULT '',
    "billsec" TEXT NOT NULL DEFAULT '',
    "disposition" TEXT NOT NULL DEFAULT '',
    "amaflags" TEXT NOT NULL DEFAULT '',
    "uniqueid" TEXT NOT NULL DEFAULT '',
    "userfield" TEXT NOT NULL DEFAULT '',
    "channel_ext" TEXT NOT NULL DEFAULT '',
    "dstchannel_ext" TEXT NOT NULL DEFAULT '',
    "service" TEXT NOT NULL DEFAULT '',
    "caller_name" TEXT NOT NULL DEFAULT '',
    "recordfiles" TEXT NOT NULL DEFAULT '',
    "dstanswer" TEXT NOT NULL DEFAULT '',
    "chanext" TEXT NOT NULL DEFAULT '',
    "dstchanext" TEXT NOT NULL DEFAULT '',
    "session" TEXT NOT NULL DEFAULT '',
    "action_owner" TEXT NOT NULL DEFAULT '',
    "action_type" TEXT NOT NULL DEFAULT '',
    "src_trunk_name" TEXT NOT NULL DEFAULT '',
    "dst_trunk_name" TEXT NOT NULL DEFAULT '',
    "nat_call" TEXT NOT NULL DEFAULT '',
    "nat_call_peer" TEXT NOT NULL DEFAULT '',
    "video_call" TEXT NOT NULL DEFAULT '',
    "gdms_unique_code" TEXT NOT NULL DEFAULT '',
    "gds_call" TEXT NOT NULL DEFAULT '',
    "gsc_call" TEXT NOT NULL DEFAULT '',
    "wave_src_seqid" TEXT NOT NULL DEFAULT '',
    "wave_dst_seqid" TEXT NOT NULL DEFAULT '',
    "device_info" TEXT NOT NULL DEFAULT '',
    "device_info_peer" TEXT NOT NULL DEFAULT '',
    "recordfiles_desc" TEXT NOT NULL DEFAULT ''
);
CREATE INDEX cdr_start_ms ON cdr (start_ms);
CREATE INDEX cdr_session ON cdr ("session");

-- Progress of recovery sources (e.g. the byte offset reached in Master.csv).
CREATE TABLE checkpoints (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
