-- What a run read: per upstream table the physical version and the data version of each
-- partition read; per input file its path, size, modification time and ETag. Compact JSON
-- (see src/provenance). And the run's data version: a hash of its code fingerprint and of
-- what it read, which identifies the content it wrote. A partition's content is stale when
-- what its content run read has another data version now.
ALTER TABLE runs ADD COLUMN reads_json TEXT;
ALTER TABLE runs ADD COLUMN data_version TEXT;
