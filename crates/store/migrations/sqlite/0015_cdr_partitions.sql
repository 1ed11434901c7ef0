-- The CDR table's partitions by month are PostgreSQL's (issue 20); SQLite
-- keeps one table: nothing to change.
SELECT 1;
