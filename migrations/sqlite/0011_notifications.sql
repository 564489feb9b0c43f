-- Notifications: outbound webhooks, freshness-alert email subscriptions, the outbox of
-- deliveries the server sends (with their log), and what the freshness check last saw
-- of each stream. See docs/notifications.md.

-- A webhook: where to POST signed events, for the whole organisation, one stream or
-- one category. `secret` signs the events (HMAC-SHA256); it is shown once, at creation.
CREATE TABLE webhooks (
    org_id           TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    id               TEXT NOT NULL,
    url              TEXT NOT NULL,
    secret           TEXT NOT NULL,
    stream_id        TEXT REFERENCES streams(id) ON DELETE CASCADE,
    category         TEXT,
    events           TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    -- Deliveries given up in a row; reset by a delivery that succeeds.
    failures         INTEGER NOT NULL DEFAULT 0,
    disabled_at      INTEGER,
    disabled_reason  TEXT,
    PRIMARY KEY (org_id, id)
);

-- An address that gets an email when a stream turns stale and when it recovers.
CREATE TABLE alert_subscriptions (
    org_id      TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    id          TEXT NOT NULL,
    email       TEXT NOT NULL,
    stream_id   TEXT REFERENCES streams(id) ON DELETE CASCADE,
    category    TEXT,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (org_id, id)
);

-- The outbox: one row per event and target (a webhook or an email address), written in
-- the transaction that decided the event, sent by the dispatcher until it is delivered
-- or given up. `next_attempt_at` is NULL once it is finished; while an attempt is under
-- way it holds the end of the sender's lease, which the attempt's result must match.
-- A webhook's deliveries go with it.
CREATE TABLE deliveries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id           TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    event            TEXT NOT NULL,
    webhook_id       TEXT,
    email            TEXT,
    stream_id        TEXT,
    payload          TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER,
    last_attempt_at  INTEGER,
    last_status      INTEGER,
    last_error       TEXT,
    delivered_at     INTEGER,
    gave_up_at       INTEGER,
    FOREIGN KEY (org_id) REFERENCES orgs(id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, webhook_id) REFERENCES webhooks(org_id, id) ON DELETE CASCADE
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
CREATE INDEX deliveries_target ON deliveries (org_id, webhook_id, id);
CREATE INDEX deliveries_created ON deliveries (created_at);

-- The status the freshness check last saw of each stream: a change is an event.
CREATE TABLE stream_alerts (
    org_id      TEXT NOT NULL,
    stream_id   TEXT NOT NULL REFERENCES streams(id) ON DELETE CASCADE,
    status      TEXT NOT NULL,
    changed_at  INTEGER NOT NULL,
    PRIMARY KEY (org_id, stream_id)
);

-- How far a webhook with point events has sent each stream's changed points.
CREATE TABLE webhook_cursors (
    org_id      TEXT NOT NULL,
    webhook_id  TEXT NOT NULL,
    stream_id   TEXT NOT NULL REFERENCES streams(id) ON DELETE CASCADE,
    updated_at  INTEGER NOT NULL,
    period      TEXT NOT NULL,
    PRIMARY KEY (org_id, webhook_id, stream_id),
    FOREIGN KEY (org_id, webhook_id) REFERENCES webhooks(org_id, id) ON DELETE CASCADE
);
