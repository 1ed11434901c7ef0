-- A filtered page reads every leg of its time window to test the caller or
-- callee filter and to group the matches into entries. With the columns it
-- reads in the start_ms index, that is an index-only scan: the table is
-- visited only for the legs of the page (10 M legs, caller list + one day:
-- 24 -> 17 ms a page; see docs/architecture.md, "CDR history").
DROP INDEX cdr_start_ms;
CREATE INDEX cdr_start_ms ON cdr (start_ms) INCLUDE ("src", "dst", call_ms, "session");
