-- A run's quality (profile and check results) stored packed (`catalog/packed.rs`): zstd
-- against a dictionary, about a fifth of the JSON. Runs written from now on fill this and
-- leave `quality_json` NULL; runs written before keep their text, read as before.
-- BYTEA: PostgreSQL's bytes; SQLite stores a BLOB as it is whatever the declared type.
ALTER TABLE runs ADD COLUMN quality_packed BYTEA;
