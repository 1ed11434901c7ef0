-- Settings changed on the admin web interface (the API Configuration page):
-- one JSON document per section (https_api, https_api_old). Keys fixed in
-- the configuration file win over these. `version` makes concurrent saves
-- (two admins, two nodes) conditional: a save based on an older version fails.
CREATE TABLE web_settings (
    section    TEXT    PRIMARY KEY NOT NULL,
    body       TEXT    NOT NULL,
    version    INTEGER  NOT NULL,
    updated_ms INTEGER  NOT NULL,
    updated_by TEXT    NOT NULL
);
