-- One row per cdrapi entry (call start, session), kept in step with the
-- legs: an unfiltered page of sessions counts its offset here, in a narrow
-- table without grouping, instead of grouping every preceding leg. The
-- store adds the pairs of each insert batch in the same transaction (one
-- statement per batch, far cheaper than a trigger per row); the triggers
-- cover rows changed or deleted by hand.
CREATE TABLE cdr_session (
    call_ms INTEGER NOT NULL,
    "session" TEXT NOT NULL,
    PRIMARY KEY (call_ms, "session")
) WITHOUT ROWID;

INSERT OR IGNORE INTO cdr_session (call_ms, "session") SELECT call_ms, "session" FROM cdr;

CREATE TRIGGER cdr_session_update AFTER UPDATE OF call_ms, "session" ON cdr BEGIN
    INSERT OR IGNORE INTO cdr_session (call_ms, "session") VALUES (NEW.call_ms, NEW."session");
    DELETE FROM cdr_session WHERE call_ms = OLD.call_ms AND "session" = OLD."session"
        AND NOT EXISTS (SELECT 1 FROM cdr WHERE call_ms = OLD.call_ms AND "session" = OLD."session");
END;

CREATE TRIGGER cdr_session_delete AFTER DELETE ON cdr BEGIN
    DELETE FROM cdr_session WHERE call_ms = OLD.call_ms AND "session" = OLD."session"
        AND NOT EXISTS (SELECT 1 FROM cdr WHERE call_ms = OLD.call_ms AND "session" = OLD."session");
END;
