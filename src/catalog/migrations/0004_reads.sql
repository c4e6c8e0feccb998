-- What a run read: per upstream table the physical version, the Delta version of the
-- snapshot and the partitions; per input file its path, size, modification time and ETag.
-- Compact JSON (see src/provenance). A partition's content is stale when what its content
-- run read has changed since.
ALTER TABLE runs ADD COLUMN reads_json TEXT;
