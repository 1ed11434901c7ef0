-- Several nodes on one database (issue 20).
-- Which node owns each Asterisk (holds its ARI application and runs the
-- once-per-PBX work) and until when; the epoch grows with every change of
-- owner, so that a decision taken under an old lease can be told apart.
-- Times are the database's clock (Unix ms), never a node's.
CREATE TABLE pbx_owners (
    pbx        TEXT   PRIMARY KEY,
    node       TEXT   NOT NULL,
    epoch      INTEGER NOT NULL,
    since_ms   INTEGER NOT NULL,
    renewed_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);

-- Every node serving an Asterisk, as last seen (operator view).
CREATE TABLE cluster_nodes (
    node       TEXT   NOT NULL,
    pbx        TEXT   NOT NULL,
    started_ms INTEGER NOT NULL,
    seen_ms    INTEGER NOT NULL,
    PRIMARY KEY (node, pbx)
);

-- The one decision on a held call, whichever node takes it: the first
-- claim wins, cluster-wide.
CREATE TABLE call_claims (
    channel_id TEXT   PRIMARY KEY,
    node       TEXT   NOT NULL,
    decision   TEXT   NOT NULL,
    claimed_ms INTEGER NOT NULL
);
CREATE INDEX call_claims_claimed ON call_claims (claimed_ms);
