-- A partition's row carries what every view of it shows of its last run and of the run
-- that wrote its content, copied there by the statements that write those runs
-- (`run_writes`, `leases`). Reading a partition then reads no run: at a million
-- partitions and ten million runs, the two lookups per partition into `runs` were most of
-- `status`, the grid and the daemon's judging (each a random read of a large table).
-- `runs` stays the record of every run; these columns are its copies, never written alone.
ALTER TABLE partitions ADD COLUMN last_started_at BIGINT;
ALTER TABLE partitions ADD COLUMN last_finished_at BIGINT;
ALTER TABLE partitions ADD COLUMN last_attempt BIGINT;
ALTER TABLE partitions ADD COLUMN last_run_state TEXT;
ALTER TABLE partitions ADD COLUMN last_cpu_us BIGINT;
ALTER TABLE partitions ADD COLUMN last_bytes_read BIGINT;
ALTER TABLE partitions ADD COLUMN last_bytes_written BIGINT;
ALTER TABLE partitions ADD COLUMN last_requests BIGINT;
ALTER TABLE partitions ADD COLUMN last_peak_memory_bytes BIGINT;
ALTER TABLE partitions ADD COLUMN content_version TEXT;
ALTER TABLE partitions ADD COLUMN content_reads_json TEXT;
UPDATE partitions SET last_started_at = r.started_at, last_finished_at = r.finished_at,
    last_attempt = r.attempt, last_run_state = r.state, last_cpu_us = r.cpu_us,
    last_bytes_read = r.bytes_read, last_bytes_written = r.bytes_written,
    last_requests = r.requests, last_peak_memory_bytes = r.peak_memory_bytes
  FROM runs r WHERE r.run_id = partitions.last_run_id;
UPDATE partitions SET content_version = c.data_version, content_reads_json = c.reads_json
  FROM runs c WHERE c.run_id = partitions.content_run_id;
