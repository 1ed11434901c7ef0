-- Hotel rooms driven by a PMS (pmsapi). One row per room, keyed by its address
-- (room number); the extension is the room's phone. Times are Unix milliseconds.
CREATE TABLE pms_rooms (
    address       TEXT    PRIMARY KEY NOT NULL,
    extension     TEXT    NOT NULL UNIQUE,
    checked_in    INTEGER NOT NULL,         -- 1 checked in, 0 vacant
    guest_name    TEXT    NOT NULL,
    language      TEXT    NOT NULL,
    vip           INTEGER NOT NULL,
    arrival       TEXT    NOT NULL,         -- YYYYMMDD, empty when vacant
    departure     TEXT    NOT NULL,
    cos           INTEGER NOT NULL,         -- class of service 1..4
    dnd           INTEGER NOT NULL,
    room_status   TEXT    NOT NULL,         -- maid status code
    mwi           INTEGER NOT NULL,
    checked_in_ms INTEGER NOT NULL,         -- last check-in, 0 never
    updated_ms    INTEGER NOT NULL,
    version       INTEGER NOT NULL          -- optimistic concurrency: +1 per write
);

-- Wake-up calls. status: pending, dialing (claimed by one pbxgate: claimed_by,
-- until claim_until_ms), answered, failed, cancelled, missed.
CREATE TABLE pms_wakeups (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    address         TEXT    NOT NULL,
    due_ms          INTEGER NOT NULL,
    status          TEXT    NOT NULL,
    attempts        INTEGER NOT NULL,
    outcome         TEXT    NOT NULL,       -- answered, no answer, busy, failed, ...
    next_attempt_ms INTEGER NOT NULL,
    claimed_by      TEXT    NOT NULL,
    claim_until_ms  INTEGER NOT NULL,
    created_ms      INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL
);
CREATE INDEX pms_wakeups_due ON pms_wakeups (status, next_attempt_ms);
CREATE INDEX pms_wakeups_address ON pms_wakeups (address, due_ms);
-- A room has one open wake-up call per time.
CREATE UNIQUE INDEX pms_wakeups_open ON pms_wakeups (address, due_ms)
    WHERE status IN ('pending', 'dialing');
