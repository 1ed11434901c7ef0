-- Columns of a fixed set of words only take those words (the enums of the
-- store crate: AuditEventKind, DecisionOutcome, WakeupStatus). SQLite cannot
-- add a constraint to a table: each table is rebuilt the standard way (new
-- table, rows copied with their ids, old table dropped, new one renamed,
-- indexes made again). None of these tables has triggers, views or foreign
-- keys. A row holding another word makes this migration fail (nothing is
-- changed then): pbxgate never wrote other words.

-- audit_log
CREATE TABLE audit_log_new (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms    INTEGER NOT NULL,
    event    TEXT    NOT NULL CONSTRAINT audit_log_event_known CHECK (event IN (
                 'login', 'logout', 'login-restriction', 'settings',
                 'admin-password', 'admin-call')),
    username TEXT    NOT NULL,
    ip       TEXT    NOT NULL,
    result   TEXT    NOT NULL,
    detail   TEXT    NOT NULL
);
INSERT INTO audit_log_new (id, at_ms, event, username, ip, result, detail)
    SELECT id, at_ms, event, username, ip, result, detail FROM audit_log;
-- AUTOINCREMENT's high-water mark moves over: ids are not reused.
DELETE FROM sqlite_sequence WHERE name = 'audit_log_new';
UPDATE sqlite_sequence SET name = 'audit_log_new' WHERE name = 'audit_log';
DROP TABLE audit_log;
ALTER TABLE audit_log_new RENAME TO audit_log;
CREATE INDEX audit_log_at ON audit_log (at_ms);

-- call_decisions
CREATE TABLE call_decisions_new (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    held_at_ms  INTEGER NOT NULL,
    decided_at_ms INTEGER NOT NULL,
    channel     TEXT    NOT NULL,
    channel_id  TEXT    NOT NULL,
    caller      TEXT    NOT NULL,
    did         TEXT    NOT NULL,
    outcome     TEXT    NOT NULL CONSTRAINT call_decisions_outcome_known CHECK (outcome IN (
                    'accepted', 'refused', 'timeout', 'hangup', 'backstop', 'failed')),
    decided_by  TEXT    NOT NULL,
    apply_us    INTEGER NOT NULL,
    detail      TEXT    NOT NULL
);
INSERT INTO call_decisions_new (id, held_at_ms, decided_at_ms, channel, channel_id, caller, did,
        outcome, decided_by, apply_us, detail)
    SELECT id, held_at_ms, decided_at_ms, channel, channel_id, caller, did,
        outcome, decided_by, apply_us, detail FROM call_decisions;
DELETE FROM sqlite_sequence WHERE name = 'call_decisions_new';
UPDATE sqlite_sequence SET name = 'call_decisions_new' WHERE name = 'call_decisions';
DROP TABLE call_decisions;
ALTER TABLE call_decisions_new RENAME TO call_decisions;
CREATE INDEX call_decisions_held_at ON call_decisions (held_at_ms);
CREATE INDEX call_decisions_channel ON call_decisions (channel);

-- pms_wakeups
CREATE TABLE pms_wakeups_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    address         TEXT    NOT NULL,
    due_ms          INTEGER NOT NULL,
    status          TEXT    NOT NULL CONSTRAINT pms_wakeups_status_known CHECK (status IN (
                        'pending', 'dialing', 'answered', 'failed', 'cancelled', 'missed')),
    attempts        INTEGER NOT NULL,
    outcome         TEXT    NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    claimed_by      TEXT    NOT NULL,
    claim_until_ms  INTEGER NOT NULL,
    created_ms      INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL
);
INSERT INTO pms_wakeups_new (id, address, due_ms, status, attempts, outcome, next_attempt_ms,
        claimed_by, claim_until_ms, created_ms, updated_ms)
    SELECT id, address, due_ms, status, attempts, outcome, next_attempt_ms,
        claimed_by, claim_until_ms, created_ms, updated_ms FROM pms_wakeups;
DELETE FROM sqlite_sequence WHERE name = 'pms_wakeups_new';
UPDATE sqlite_sequence SET name = 'pms_wakeups_new' WHERE name = 'pms_wakeups';
DROP TABLE pms_wakeups;
ALTER TABLE pms_wakeups_new RENAME TO pms_wakeups;
CREATE INDEX pms_wakeups_due ON pms_wakeups (status, next_attempt_ms);
CREATE INDEX pms_wakeups_address ON pms_wakeups (address, due_ms);
CREATE UNIQUE INDEX pms_wakeups_open ON pms_wakeups (address, due_ms)
    WHERE status IN ('pending', 'dialing');
