-- One row that /healthz rewrites to check that the database still takes writes (a
-- full disk or a read-only file system fails writes while reads go on).
CREATE TABLE health_probe (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    at  INTEGER NOT NULL
);

-- A watch that resumes reads a stream's points in the order they last changed, from an
-- instant on (`WatchRequest.since`).
CREATE INDEX points_by_change ON points (stream_id, updated_at, period);
