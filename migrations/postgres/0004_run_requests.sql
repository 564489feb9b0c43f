-- "Run now" from the web console: a manual run asked of the runners, which the next
-- runner that polls takes up; cleared by the report of a manual run of a later slot.
ALTER TABLE connectors ADD COLUMN run_requested_at BIGINT;
