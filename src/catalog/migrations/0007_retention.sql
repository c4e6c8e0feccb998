-- Retention (`[catalog] retention`): the prune walks old runs in the order they finished,
-- and keeps each run a partition still points at (its content, or its last run).
CREATE INDEX runs_by_finish ON runs (finished_at, run_id);
CREATE INDEX partitions_by_content_run ON partitions (content_run_id);
CREATE INDEX partitions_by_last_run ON partitions (last_run_id);
CREATE INDEX messages_by_time ON messages (created_at);
