-- A job's partitions in the order `catalog/folded.rs` reads them, a thousand at a time
-- after the last one read: by version, key and table (the table tells apart the rows of a
-- job whose table changed). With the table in the index each page is one seek and a walk,
-- on SQLite and PostgreSQL alike; without it, each page sorted the rest of the job.
DROP INDEX partitions_by_job;
CREATE INDEX partitions_by_job ON partitions (job, table_version, partition_key, table_name);
