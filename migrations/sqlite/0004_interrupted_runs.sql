-- A run its runner ended early when asked to stop (SIGTERM): neither a success nor a
-- failure; the cursor of its acknowledged pages is kept.
ALTER TABLE connector_runs ADD COLUMN interrupted INTEGER NOT NULL DEFAULT 0;
