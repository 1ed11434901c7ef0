-- CDR Real-Time Output (issue 19): the quota dropping queued CDRs and a
-- replay asked for from the command line are audit events of their own.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_event_known;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_event_known CHECK (event IN (
    'login', 'logout', 'login-restriction', 'settings', 'admin-password', 'admin-call',
    'cdr-output'));
