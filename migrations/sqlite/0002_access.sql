-- Organisations, users, teams, tokens, stream grants and the audit log.

-- The user who may create organisations (the first start's admin).
ALTER TABLE users ADD COLUMN server_admin INTEGER NOT NULL DEFAULT 0;
UPDATE users SET server_admin = 1
 WHERE id = (SELECT id FROM users ORDER BY created_at, id LIMIT 1);

CREATE TABLE teams (
    id          TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name        TEXT NOT NULL COLLATE NOCASE,
    created_at  INTEGER NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE team_members (
    team_id  TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    user_id  TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (team_id, user_id)
) WITHOUT ROWID;
CREATE INDEX team_members_user ON team_members (user_id);

-- Who may read or manage a stream: a user, a team, or the whole organisation
-- (grantee_id is then the org id).
CREATE TABLE grants (
    stream_id     TEXT NOT NULL REFERENCES streams(id) ON DELETE CASCADE,
    grantee_kind  TEXT NOT NULL CHECK (grantee_kind IN ('user', 'team', 'org')),
    grantee_id    TEXT NOT NULL,
    access        TEXT NOT NULL CHECK (access IN ('read', 'manage')),
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (stream_id, grantee_kind, grantee_id)
) WITHOUT ROWID;
CREATE INDEX grants_grantee ON grants (grantee_kind, grantee_id);

-- Every admin action, with who did it. Kept when its target is deleted.
CREATE TABLE audit (
    id           INTEGER PRIMARY KEY,
    org_id       TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    actor_id     TEXT NOT NULL,
    actor_name   TEXT NOT NULL,
    at           INTEGER NOT NULL,
    action       TEXT NOT NULL,
    target_kind  TEXT NOT NULL,
    target_id    TEXT NOT NULL,
    detail       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_org_at ON audit (org_id, at);

-- Streams made before grants existed: their creators manage them.
INSERT INTO grants (stream_id, grantee_kind, grantee_id, access, created_at)
SELECT id, 'user', created_by, 'manage', created_at FROM streams;
