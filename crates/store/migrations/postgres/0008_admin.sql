-- The admin web interface: its accounts (separate from the API users) and
-- their sessions. Times are Unix milliseconds (UTC).
CREATE TABLE admin_accounts (
    username      TEXT    PRIMARY KEY NOT NULL,
    password_hash TEXT    NOT NULL,         -- argon2id, PHC string
    created_ms    BIGINT  NOT NULL,
    updated_ms    BIGINT  NOT NULL
);

-- Sessions of the admin pages: the cookie id, the CSRF token of the forms.
CREATE TABLE admin_sessions (
    id           TEXT    PRIMARY KEY NOT NULL,
    username     TEXT    NOT NULL,
    csrf         TEXT    NOT NULL,
    ip           TEXT    NOT NULL,
    created_ms   BIGINT  NOT NULL,
    last_seen_ms BIGINT  NOT NULL
);
CREATE INDEX admin_sessions_last_seen ON admin_sessions (last_seen_ms);
CREATE INDEX admin_sessions_username ON admin_sessions (username);
