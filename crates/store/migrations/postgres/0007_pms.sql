-- Hotel rooms driven by a PMS (pmsapi). One row per room, keyed by its address
-- (room number); the extension is the room's phone. Times are Unix milliseconds.
CREATE TABLE pms_rooms (
    address       TEXT    PRIMARY KEY NOT NULL,
    extension     TEXT    NOT NULL UNIQUE,
    checked_in    BIGINT  NOT NULL,         -- 1 checked in, 0 vacant
    guest_name    TEXT    NOT NULL,
    language      TEXT    NOT NULL,
    vip           BIGINT  NOT NULL,
    arrival       TEXT    NOT NULL,         -- YYYYMMDD, empty when vacant
    departure     TEXT    NOT NULL,
    cos           BIGINT  NOT NULL,         -- class of service 1..4
    dnd           BIGINT  NOT NULL,
    room_status   TEXT    NOT NULL,         -- maid status code
    mwi           BIGINT  NOT NULL,
    checked_in_ms BIGINT  NOT NULL,         -- last check-in, 0 never
    updated_ms    BIGINT  NOT NULL,
    version       BIGINT  NOT NULL          -- optimistic concurrency: +1 per write
);

-- Wake-up calls. status: pending, dialing (claimed by one pbxgate: claimed_by,
-- until claim_until_ms), answered, failed, cancelled, missed.
CREATE TABLE pms_wakeups (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    address         TEXT    NOT NULL,
    due_ms          BIGINT  NOT NULL,
    status          TEXT    NOT NULL,
    attempts        BIGINT  NOT NULL,
    outcome         TEXT    NOT NULL,       -- answered, no answer, busy, failed, ...
    next_attempt_ms BIGINT  NOT NULL,
    claimed_by      TEXT    NOT NULL,
    claim_until_ms  BIGINT  NOT NULL,
    created_ms      BIGINT  NOT NULL,
    updated_ms      BIGINT  NOT NULL
);
CREATE INDEX pms_wakeups_due ON pms_wakeups (status, next_attempt_ms);
CREATE INDEX pms_wakeups_address ON pms_wakeups (address, due_ms);
-- A room has one open wake-up call per time.
CREATE UNIQUE INDEX pms_wakeups_open ON pms_wakeups (address, due_ms)
    WHERE status IN ('pending', 'dialing');
