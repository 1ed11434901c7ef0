-- The CDR table partitioned by month of start_ms (UTC), so that a day's
-- queries read one month and old months are dropped whole (issue 20).
-- An existing table is rewritten once, in this migration's transaction:
-- about 22 s per million legs on 2 cores (scripts/bench-migration;
-- docs/configuration.md#cdr-history-on-postgresql).
--
-- Unique constraints of a partitioned table include the partition key: the
-- AcctId stays unique (one sequence), and a dedupe key always comes with
-- the same start (it is a digest of the start among others), so
-- (dedupe_key, start_ms) is as strict as dedupe_key was.
ALTER TABLE cdr RENAME TO cdr_unpartitioned;
ALTER INDEX cdr_pkey RENAME TO cdr_unpartitioned_pkey;
ALTER INDEX cdr_dedupe_key_key RENAME TO cdr_unpartitioned_dedupe_key;
ALTER INDEX cdr_dst RENAME TO cdr_unpartitioned_dst;
ALTER INDEX cdr_end_ms RENAME TO cdr_unpartitioned_end_ms;
ALTER INDEX cdr_entry RENAME TO cdr_unpartitioned_entry;
ALTER INDEX cdr_src RENAME TO cdr_unpartitioned_src;
ALTER INDEX cdr_start_ms RENAME TO cdr_unpartitioned_start_ms;

CREATE TABLE cdr (LIKE cdr_unpartitioned INCLUDING DEFAULTS) PARTITION BY RANGE (start_ms);
-- PostgreSQL before 17 has no identity column on a partitioned table: a
-- sequence of its own, continuing the old one.
CREATE SEQUENCE cdr_acctids OWNED BY cdr.acctid;
SELECT setval('cdr_acctids', COALESCE((SELECT max(acctid) FROM cdr_unpartitioned), 0) + 1, false);
ALTER TABLE cdr ALTER COLUMN acctid SET DEFAULT nextval('cdr_acctids');
ALTER TABLE cdr ADD CONSTRAINT cdr_pkey PRIMARY KEY (acctid, start_ms);
ALTER TABLE cdr ADD CONSTRAINT cdr_dedupe UNIQUE (dedupe_key, start_ms);
CREATE INDEX cdr_start_ms ON cdr (start_ms);
CREATE INDEX cdr_entry ON cdr (call_ms, "session", start_ms, acctid);
CREATE INDEX cdr_end_ms ON cdr (end_ms);
CREATE INDEX cdr_src ON cdr ("src", start_ms);
CREATE INDEX cdr_dst ON cdr ("dst", start_ms);

-- Creates the partition of the month that contains `at_ms` (UTC), named
-- cdr_pYYYYMM, unless it exists; legs of that month that were kept in the
-- default partition move into it. Called for the months ahead by every
-- node (serialised by an advisory lock).
CREATE FUNCTION cdr_month_partition(at_ms BIGINT) RETURNS TEXT LANGUAGE plpgsql AS $$
DECLARE
    first TIMESTAMPTZ := date_trunc('month', to_timestamp(at_ms / 1000.0) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    lo BIGINT := (extract(epoch FROM first) * 1000)::bigint;
    hi BIGINT := (extract(epoch FROM first + INTERVAL '1 month') * 1000)::bigint;
    name TEXT := 'cdr_p' || to_char(first AT TIME ZONE 'UTC', 'YYYYMM');
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('pbxgate cdr_month_partition'));
    IF to_regclass(name) IS NOT NULL THEN
        RETURN name;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE cdr INCLUDING DEFAULTS)', name);
    IF to_regclass('cdr_default') IS NOT NULL THEN
        EXECUTE format('WITH moved AS (DELETE FROM cdr_default WHERE start_ms >= %s AND start_ms < %s RETURNING *) '
                       'INSERT INTO %I SELECT * FROM moved', lo, hi, name);
    END IF;
    EXECUTE format('ALTER TABLE cdr ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)', name, lo, hi);
    RETURN name;
END
$$;

-- Every month of the existing legs, and the next three; times outside any
-- month created (none or absurd ones: 0 when Asterisk's start was
-- unreadable) land in the default partition rather than being refused.
SELECT cdr_month_partition((extract(epoch FROM m) * 1000)::bigint)
FROM generate_series(
    date_trunc('month', to_timestamp(COALESCE(
        (SELECT min(start_ms) FROM cdr_unpartitioned WHERE start_ms >= 946684800000), -- 2000-01-01
        (extract(epoch FROM now()) * 1000)::bigint) / 1000.0) AT TIME ZONE 'UTC'),
    date_trunc('month', now() AT TIME ZONE 'UTC') + INTERVAL '3 months',
    INTERVAL '1 month') AS m;
CREATE TABLE cdr_default PARTITION OF cdr DEFAULT;

INSERT INTO cdr SELECT * FROM cdr_unpartitioned;
DROP TABLE cdr_unpartitioned;

-- Each entry keeps the first and last start of its legs: the legs of an
-- unfiltered page's entries are read from those months' partitions only
-- (the store widens the range when it adds legs; left wide, it is merely
-- slower). Rows made otherwise get the whole range.
ALTER TABLE cdr_session
    ADD COLUMN min_start_ms BIGINT NOT NULL DEFAULT -9223372036854775808,
    ADD COLUMN max_start_ms BIGINT NOT NULL DEFAULT 9223372036854775807;
-- Deep pages walk the key index: it carries the range, so the walk stays
-- index-only.
ALTER TABLE cdr_session DROP CONSTRAINT cdr_session_pkey,
    ADD CONSTRAINT cdr_session_pkey PRIMARY KEY (call_ms, "session") INCLUDE (min_start_ms, max_start_ms);
UPDATE cdr_session s SET min_start_ms = r.lo, max_start_ms = r.hi
    FROM (SELECT call_ms, "session", min(start_ms) AS lo, max(start_ms) AS hi
          FROM cdr GROUP BY call_ms, "session") r
    WHERE s.call_ms = r.call_ms AND s."session" = r."session";

CREATE OR REPLACE FUNCTION cdr_session_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO cdr_session (call_ms, "session", min_start_ms, max_start_ms)
        SELECT call_ms, "session", min(start_ms), max(start_ms) FROM new_rows GROUP BY call_ms, "session"
        ON CONFLICT (call_ms, "session") DO UPDATE SET
            min_start_ms = LEAST(cdr_session.min_start_ms, excluded.min_start_ms),
            max_start_ms = GREATEST(cdr_session.max_start_ms, excluded.max_start_ms);
    RETURN NULL;
END
$$;

-- The entries' table follows the legs as before (0005's triggers), on the
-- new table.
CREATE TRIGGER cdr_session_update_1 AFTER UPDATE ON cdr
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION cdr_session_add();
CREATE TRIGGER cdr_session_update_2 AFTER UPDATE ON cdr
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION cdr_session_prune();
CREATE TRIGGER cdr_session_delete AFTER DELETE ON cdr
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION cdr_session_prune();
