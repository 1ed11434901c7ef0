-- cdrapi queries. call_ms: start of the call a leg belongs to (the epoch of
-- its Asterisk linkedid), the same for every leg of a session, so that the
-- entries of a cdrapi answer — sessions — are contiguous runs of the
-- (call_ms, session) index, and paging by entries is an index walk.
-- end_ms: call end in UTC milliseconds, for timeFilterType=End.
ALTER TABLE cdr ADD COLUMN call_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE cdr ADD COLUMN end_ms BIGINT NOT NULL DEFAULT 0;
UPDATE cdr SET
    call_ms = s.first_ms,
    end_ms = cdr.start_ms + 1000 * (CASE WHEN cdr."duration" ~ '^[0-9]{1,15}$' THEN cdr."duration"::bigint ELSE 0 END)
FROM (SELECT "session", MIN(start_ms) AS first_ms FROM cdr GROUP BY "session") s
WHERE s."session" = cdr."session";
DROP INDEX cdr_session;
-- Byte-wise comparison for the columns cdrapi filters and orders on, as on
-- SQLite, whatever the database locale: the same order on both backends,
-- and LIKE 'abc%' can seek a plain index.
ALTER TABLE cdr
    ALTER COLUMN "session" TYPE TEXT COLLATE "C",
    ALTER COLUMN "src" TYPE TEXT COLLATE "C",
    ALTER COLUMN "dst" TYPE TEXT COLLATE "C",
    ALTER COLUMN "dstanswer" TYPE TEXT COLLATE "C",
    ALTER COLUMN "caller_name" TYPE TEXT COLLATE "C";
-- acctid last: the legs order, so paging by legs is an index-only walk.
CREATE INDEX cdr_entry ON cdr (call_ms, "session", start_ms, acctid);
CREATE INDEX cdr_end_ms ON cdr (end_ms);
-- caller / callee filters: exact values and prefix wildcards seek here.
CREATE INDEX cdr_src ON cdr ("src", start_ms);
CREATE INDEX cdr_dst ON cdr ("dst", start_ms);
