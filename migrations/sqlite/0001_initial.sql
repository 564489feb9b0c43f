-- kpistream schema, SQLite. Times are microseconds since the Unix epoch (UTC).
-- Migrations are append-only: never edit one that has landed.

CREATE TABLE orgs (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    created_at  INTEGER NOT NULL,
    UNIQUE (org_id, name)
);

-- Only the SHA-256 of a token is kept.
CREATE TABLE tokens (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    hash          BLOB NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
    expires_at    INTEGER,
    revoked_at    INTEGER
);

CREATE TABLE categories (
    id          INTEGER PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name        TEXT NOT NULL COLLATE NOCASE,
    created_at  INTEGER NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE streams (
    id             TEXT PRIMARY KEY,
    org_id         TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    description    TEXT NOT NULL DEFAULT '',
    category_id    INTEGER REFERENCES categories(id),
    frequency      TEXT NOT NULL CHECK (frequency IN ('daily', 'weekly', 'monthly', 'quarterly')),
    value_type     TEXT NOT NULL CHECK (value_type IN ('number', 'currency', 'percentage')),
    currency       TEXT,
    time_zone      TEXT NOT NULL,
    disabled       INTEGER NOT NULL DEFAULT 0,
    created_by     TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    latest_period  TEXT,
    last_data_at   INTEGER,
    point_count    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX streams_org ON streams (org_id);

CREATE TABLE stream_keys (
    stream_id     TEXT NOT NULL REFERENCES streams(id) ON DELETE CASCADE,
    key_id        TEXT NOT NULL,
    public_key    BLOB NOT NULL,
    origin        TEXT NOT NULL CHECK (origin IN ('generated', 'registered')),
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
    revoked_at    INTEGER,
    PRIMARY KEY (stream_id, key_id)
) WITHOUT ROWID;

-- One current value per (stream, period). Period text sorts in time order within a
-- frequency (2026-W09 < 2026-W10), and a stream has one frequency.
CREATE TABLE points (
    stream_id       TEXT NOT NULL REFERENCES streams(id) ON DELETE CASCADE,
    period          TEXT NOT NULL,
    value           TEXT NOT NULL,
    external_id     TEXT,
    batch_id        TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    updated_at      INTEGER NOT NULL,
    revision_count  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (stream_id, period)
) WITHOUT ROWID;

CREATE TABLE revisions (
    id          INTEGER PRIMARY KEY,
    stream_id   TEXT NOT NULL REFERENCES streams(id) ON DELETE CASCADE,
    period      TEXT NOT NULL,
    old_value   TEXT NOT NULL,
    new_value   TEXT NOT NULL,
    batch_id    TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    revised_at  INTEGER NOT NULL
);
CREATE INDEX revisions_period ON revisions (stream_id, period, id);

-- Accepted batch ids, with the outcome a replay gets back (JSON), kept for the dedup window.
CREATE TABLE batches (
    stream_id    TEXT NOT NULL REFERENCES streams(id) ON DELETE CASCADE,
    batch_id     TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    accepted_at  INTEGER NOT NULL,
    outcome      TEXT NOT NULL,
    PRIMARY KEY (stream_id, batch_id)
) WITHOUT ROWID;
CREATE INDEX batches_accepted_at ON batches (accepted_at);
