-- CDR Real-Time Output (issue 19): the quota dropping queued CDRs and a
-- replay asked for from the command line are audit events of their own.
-- SQLite cannot change a constraint: the table is rebuilt as in 0011.
CREATE TABLE audit_log_new (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms    INTEGER NOT NULL,
    event    TEXT    NOT NULL CONSTRAINT audit_log_event_known CHECK (event IN (
                 'login', 'logout', 'login-restriction', 'settings',
                 'admin-password', 'admin-call', 'cdr-output')),
    username TEXT    NOT NULL,
    ip       TEXT    NOT NULL,
    result   TEXT    NOT NULL,
    detail   TEXT    NOT NULL
);
INSERT INTO audit_log_new (id, at_ms, event, username, ip, result, detail)
    SELECT id, at_ms, event, username, ip, result, detail FROM audit_log;
DELETE FROM sqlite_sequence WHERE name = 'audit_log_new';
UPDATE sqlite_sequence SET name = 'audit_log_new' WHERE name = 'audit_log';
DROP TABLE audit_log;
ALTER TABLE audit_log_new RENAME TO audit_log;
CREATE INDEX audit_log_at ON audit_log (at_ms);
