-- The run log is read and pruned newest first per connector.
CREATE INDEX connector_runs_by_connector ON connector_runs (org_id, connector, id);
