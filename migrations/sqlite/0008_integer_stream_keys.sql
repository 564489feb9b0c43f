-- Points, revisions and remembered batch ids name their stream by a small integer
-- (`streams.seq`) instead of its text id: every key the publish path compares and
-- every row and index entry it writes is shorter. Streams keep their public text id;
-- `seq` never leaves the database. Periods stay text: within one stream (one
-- frequency) their ISO text sorts in time order and is at most 10 bytes.

ALTER TABLE streams ADD COLUMN seq INTEGER;
UPDATE streams SET seq = rowid;
CREATE UNIQUE INDEX streams_seq ON streams (seq);

CREATE TABLE points_v8 (
    stream          INTEGER NOT NULL REFERENCES streams(seq) ON DELETE CASCADE,
    period          TEXT NOT NULL,
    value           TEXT NOT NULL,
    external_id     TEXT,
    batch_id        TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    updated_at      INTEGER NOT NULL,
    revision_count  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (stream, period)
) WITHOUT ROWID;
INSERT INTO points_v8 (stream, period, value, external_id, batch_id, key_id, updated_at, revision_count)
SELECT s.seq, p.period, p.value, p.external_id, p.batch_id, p.key_id, p.updated_at, p.revision_count
FROM points p JOIN streams s ON s.id = p.stream_id;
DROP TABLE points;
ALTER TABLE points_v8 RENAME TO points;
-- How a watch that resumes reads a stream's points: in the order they last changed.
CREATE INDEX points_by_change ON points (stream, updated_at, period);

CREATE TABLE revisions_v8 (
    id          INTEGER PRIMARY KEY,
    stream      INTEGER NOT NULL REFERENCES streams(seq) ON DELETE CASCADE,
    period      TEXT NOT NULL,
    old_value   TEXT NOT NULL,
    new_value   TEXT NOT NULL,
    batch_id    TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    revised_at  INTEGER NOT NULL
);
INSERT INTO revisions_v8 (id, stream, period, old_value, new_value, batch_id, key_id, revised_at)
SELECT r.id, s.seq, r.period, r.old_value, r.new_value, r.batch_id, r.key_id, r.revised_at
FROM revisions r JOIN streams s ON s.id = r.stream_id;
DROP TABLE revisions;
ALTER TABLE revisions_v8 RENAME TO revisions;
CREATE INDEX revisions_period ON revisions (stream, period, id);

CREATE TABLE batches_v8 (
    stream       INTEGER NOT NULL REFERENCES streams(seq) ON DELETE CASCADE,
    batch_id     TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    accepted_at  INTEGER NOT NULL,
    outcome      TEXT NOT NULL,
    PRIMARY KEY (stream, batch_id)
) WITHOUT ROWID;
INSERT INTO batches_v8 (stream, batch_id, key_id, accepted_at, outcome)
SELECT s.seq, b.batch_id, b.key_id, b.accepted_at, b.outcome
FROM batches b JOIN streams s ON s.id = b.stream_id;
DROP TABLE batches;
ALTER TABLE batches_v8 RENAME TO batches;
CREATE INDEX batches_accepted_at ON batches (accepted_at);
