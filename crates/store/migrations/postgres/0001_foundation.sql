-- Sessions of the new HTTPS API. Times are Unix milliseconds (UTC).
CREATE TABLE sessions (
    cookie       TEXT    PRIMARY KEY NOT NULL,
    username     TEXT    NOT NULL,
    ip           TEXT    NOT NULL,
    created_ms   BIGINT  NOT NULL,
    last_seen_ms BIGINT  NOT NULL
);
CREATE INDEX sessions_last_seen ON sessions (last_seen_ms);
CREATE INDEX sessions_username ON sessions (username);

-- Outstanding login challenges: single use, short-lived, bound to user and source IP.
CREATE TABLE challenges (
    challenge  TEXT    PRIMARY KEY NOT NULL,
    username   TEXT    NOT NULL,
    ip         TEXT    NOT NULL,
    expires_ms BIGINT  NOT NULL
);
CREATE INDEX challenges_user_ip ON challenges (username, ip, expires_ms);

-- Login restriction: failed attempts per source IP and the resulting bans.
CREATE TABLE login_failures (
    id    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ip    TEXT    NOT NULL,
    at_ms BIGINT  NOT NULL
);
CREATE INDEX login_failures_ip ON login_failures (ip, at_ms);

CREATE TABLE login_bans (
    ip       TEXT    PRIMARY KEY NOT NULL,
    until_ms BIGINT  NOT NULL
);

-- Audit trail: logins, logouts and settings changes.
CREATE TABLE audit_log (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms    BIGINT  NOT NULL,
    event    TEXT    NOT NULL,
    username TEXT    NOT NULL,
    ip       TEXT    NOT NULL,
    result   TEXT    NOT NULL,
    detail   TEXT    NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at_ms);

-- Digests of the effective settings, to audit what changed between starts.
CREATE TABLE settings_digests (
    key    TEXT PRIMARY KEY NOT NULL,
    digest TEXT NOT NULL
);

-- Stable identity of this installation (serial number, bind code, ...).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
