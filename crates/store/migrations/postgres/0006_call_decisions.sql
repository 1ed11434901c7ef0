-- One row per inbound call held by call control: how it ended and who decided.
CREATE TABLE call_decisions (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    held_at_ms  BIGINT  NOT NULL,
    decided_at_ms BIGINT  NOT NULL,
    channel     TEXT    NOT NULL,
    channel_id  TEXT    NOT NULL,
    caller      TEXT    NOT NULL,
    did         TEXT    NOT NULL,
    -- accepted, refused, timeout (accepted by the timer), hangup (caller gave
    -- up while held), backstop (left the hold without pbxgate: Asterisk's own
    -- limit while pbxgate was away), failed
    outcome     TEXT    NOT NULL,
    -- the API user, or "timer", "restart", "asterisk", "caller"
    decided_by  TEXT    NOT NULL,
    -- microseconds from the decision to Asterisk's confirmation
    apply_us    BIGINT  NOT NULL,
    detail      TEXT    NOT NULL
);
CREATE INDEX call_decisions_held_at ON call_decisions (held_at_ms);
CREATE INDEX call_decisions_channel ON call_decisions (channel);
