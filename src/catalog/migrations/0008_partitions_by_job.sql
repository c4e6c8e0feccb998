-- A job's partitions in order (`status JOB`, the daemon's look at a job, the job's page):
-- read from this index instead of a scan of every job's partitions.
CREATE INDEX partitions_by_job ON partitions (job, table_version, partition_key);
