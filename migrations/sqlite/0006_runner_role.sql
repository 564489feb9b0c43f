-- The `runner` role: tokens for `kpistream runner`, which keep connector state and read
-- the organisation's streams. SQLite cannot change a CHECK constraint in place, so the
-- users table is rebuilt by SQLite's documented procedure: with foreign keys off (the
-- store runs migrations on such a connection, and checks the references afterwards),
-- copy, drop, rename, without touching the tables that reference it.
CREATE TABLE users_with_runner_role (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'member', 'runner')),
    created_at  INTEGER NOT NULL,
    server_admin INTEGER NOT NULL DEFAULT 0,
    UNIQUE (org_id, name)
);
INSERT INTO users_with_runner_role (id, org_id, name, role, created_at, server_admin)
    SELECT id, org_id, name, role, created_at, server_admin FROM users;
DROP TABLE users;
ALTER TABLE users_with_runner_role RENAME TO users;
