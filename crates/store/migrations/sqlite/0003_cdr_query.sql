-- cdrapi queries. call_ms: start of the call a leg belongs to (the epoch of
-- its Asterisk linkedid), the same for every leg of a session, so that the
-- entries of a cdrapi answer — sessions — are contiguous runs of the
-- (call_ms, session) index, and paging by entries is an index walk.
-- end_ms: call end in UTC milliseconds, for timeFilterType=End.
ALTER TABLE cdr ADD COLUMN call_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cdr ADD COLUMN end_ms INTEGER NOT NULL DEFAULT 0;
UPDATE cdr SET
    call_ms = (SELECT MIN(c.start_ms) FROM cdr c WHERE c."session" = cdr."session"),
    end_ms = start_ms + 1000 * CAST("duration" AS INTEGER);
DROP INDEX cdr_session;
CREATE INDEX cdr_entry ON cdr (call_ms, "session", start_ms, acctid);
CREATE INDEX cdr_end_ms ON cdr (end_ms);
-- caller / callee filters: exact values and prefix wildcards (GLOB) seek here.
CREATE INDEX cdr_src ON cdr ("src", start_ms);
CREATE INDEX cdr_dst ON cdr ("dst", start_ms);
