-- What each run used (`cost::RunCost`): CPU time of its compute and audit, bytes it read
-- and wrote through object stores, the object-store calls it made, and the most of the
-- engine's memory pool it held. NULL for runs recorded before this, and for runs that
-- never computed (refused, done elsewhere).
ALTER TABLE runs ADD COLUMN cpu_us BIGINT;
ALTER TABLE runs ADD COLUMN bytes_read BIGINT;
ALTER TABLE runs ADD COLUMN bytes_written BIGINT;
ALTER TABLE runs ADD COLUMN requests BIGINT;
ALTER TABLE runs ADD COLUMN peak_memory_bytes BIGINT;
