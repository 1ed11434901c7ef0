-- Columns of a fixed set of words only take those words (the enums of the
-- store crate: AuditEventKind, DecisionOutcome, WakeupStatus). Existing rows
-- are checked: one holding another word makes this migration fail (nothing
-- is changed then): pbxgate never wrote other words.
ALTER TABLE audit_log ADD CONSTRAINT audit_log_event_known CHECK (event IN (
    'login', 'logout', 'login-restriction', 'settings', 'admin-password', 'admin-call'));

ALTER TABLE call_decisions ADD CONSTRAINT call_decisions_outcome_known CHECK (outcome IN (
    'accepted', 'refused', 'timeout', 'hangup', 'backstop', 'failed'));

ALTER TABLE pms_wakeups ADD CONSTRAINT pms_wakeups_status_known CHECK (status IN (
    'pending', 'dialing', 'answered', 'failed', 'cancelled', 'missed'));
