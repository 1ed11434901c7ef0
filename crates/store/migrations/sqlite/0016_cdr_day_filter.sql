-- PostgreSQL's start_ms index carries the columns a filtered page reads
-- (index-only scans); SQLite keeps its indexes: nothing to change.
SELECT 1;
