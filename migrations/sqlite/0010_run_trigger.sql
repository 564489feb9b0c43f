-- What started a run: a person by hand (`connector run`), or a backfill of a range
-- (`connector backfill`, with its range); neither for a scheduled slot or one taken up
-- again. `connector log` shows it, and catch-up looks for the newest run of the schedule.
ALTER TABLE connector_runs ADD COLUMN manual INTEGER NOT NULL DEFAULT 0;
ALTER TABLE connector_runs ADD COLUMN backfill TEXT;
