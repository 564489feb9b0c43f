-- What connector runners keep on the server: one row of state per connector of an
-- organisation (cursor, failures, enabled, the current lease), and the run log.

CREATE TABLE connectors (
    org_id                TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name                  TEXT NOT NULL,
    cursor                TEXT,
    enabled               INTEGER NOT NULL DEFAULT 1,
    consecutive_failures  INTEGER NOT NULL DEFAULT 0,
    last_run_started      INTEGER,
    last_run_ended        INTEGER,
    last_error            TEXT,
    -- The lease: which runner may fire which slot, until when.
    lease_holder          TEXT,
    lease_slot            INTEGER,
    lease_expires_at      INTEGER,
    updated_at            INTEGER NOT NULL,
    PRIMARY KEY (org_id, name)
) WITHOUT ROWID;

-- One row per finished run. A slot with a run is completed: the unique index is what
-- makes a slot fire at most once.
CREATE TABLE connector_runs (
    id                INTEGER PRIMARY KEY,
    org_id            TEXT NOT NULL,
    connector         TEXT NOT NULL,
    slot              INTEGER NOT NULL,
    runner_id         TEXT NOT NULL,
    started_at        INTEGER NOT NULL,
    ended_at          INTEGER NOT NULL,
    records_pulled    INTEGER NOT NULL,
    points_published  INTEGER NOT NULL,
    points_rejected   INTEGER NOT NULL,
    error             TEXT,
    FOREIGN KEY (org_id, connector) REFERENCES connectors(org_id, name) ON DELETE CASCADE
);
CREATE UNIQUE INDEX connector_runs_slot ON connector_runs (org_id, connector, slot);
