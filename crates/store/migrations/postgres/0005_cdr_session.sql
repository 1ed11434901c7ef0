-- One row per cdrapi entry (call start, session), kept in step with the
-- legs: an unfiltered page of sessions counts its offset here, in a narrow
-- table without grouping, instead of grouping every preceding leg. The
-- store adds the pairs of each insert batch in the same transaction (one
-- statement per batch; an insert trigger's transition table cost a quarter
-- of the ingest rate); statement-level triggers with transition tables
-- cover rows changed or deleted by hand.
CREATE TABLE cdr_session (
    call_ms BIGINT NOT NULL,
    "session" TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (call_ms, "session")
);

INSERT INTO cdr_session (call_ms, "session")
    SELECT DISTINCT call_ms, "session" FROM cdr ON CONFLICT DO NOTHING;

CREATE FUNCTION cdr_session_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO cdr_session (call_ms, "session")
        SELECT DISTINCT call_ms, "session" FROM new_rows ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

CREATE FUNCTION cdr_session_prune() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM cdr_session s
        USING (SELECT DISTINCT call_ms, "session" FROM old_rows) o
        WHERE s.call_ms = o.call_ms AND s."session" = o."session"
          AND NOT EXISTS (SELECT 1 FROM cdr c WHERE c.call_ms = o.call_ms AND c."session" = o."session");
    RETURN NULL;
END
$$;

-- An update adds the new pairs, then drops old pairs left without legs
-- (triggers of one event fire in name order).
CREATE TRIGGER cdr_session_update_1 AFTER UPDATE ON cdr
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION cdr_session_add();
CREATE TRIGGER cdr_session_update_2 AFTER UPDATE ON cdr
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION cdr_session_prune();
CREATE TRIGGER cdr_session_delete AFTER DELETE ON cdr
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION cdr_session_prune();
