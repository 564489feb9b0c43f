-- The points table keeps one B-tree only. `points_by_change` (stream, updated_at,
-- period) cost a second B-tree insert for every point written, about a third of the
-- writer's time on new periods, to serve one read: a watch that resumes after a gap
-- (`points_updated_after`). That read now scans the stream's own points, which its
-- primary key keeps together; a stream has one point per period, so the scan is
-- bounded by the stream's length (tens of thousands of rows for a century of days).
DROP INDEX IF EXISTS points_by_change;
