-- CDR Real-Time Output (issue 19): per receiver, the stored CDRs still to
-- push, queued in the transaction that stores them; a row goes when its
-- receiver confirmed it (or the quota drops it).
CREATE TABLE cdr_outbox (
    id         BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    receiver   TEXT    NOT NULL,
    acctid     BIGINT  NOT NULL,
    queued_ms  BIGINT  NOT NULL,
    attempts   BIGINT  NOT NULL DEFAULT 0,
    -- not retried before this time (backoff after a failed attempt)
    next_ms    BIGINT  NOT NULL DEFAULT 0,
    last_error TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX cdr_outbox_receiver ON cdr_outbox (receiver, id);

-- Which process delivers to a receiver, until when (taken over when it lapses).
CREATE TABLE cdr_outbox_leases (
    receiver   TEXT    PRIMARY KEY,
    holder     TEXT    NOT NULL,
    expires_ms BIGINT  NOT NULL
);
