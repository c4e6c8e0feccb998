-- The catalog's own schema. Portable SQL: the same text runs on SQLite and PostgreSQL.
-- Times are BIGINT milliseconds since the Unix epoch (UTC).

-- Logical tables and their current schema, as `sluice migrate` left it.
CREATE TABLE tables (
    name TEXT PRIMARY KEY,
    schema_json TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Physical versions: one Delta table each, under <warehouse>/<table>/v<version>/.
CREATE TABLE table_versions (
    table_name TEXT NOT NULL REFERENCES tables (name),
    version BIGINT NOT NULL,
    uri TEXT NOT NULL,
    schema_json TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (table_name, version)
);

-- An alias names the one physical version readers see.
CREATE TABLE aliases (
    name TEXT PRIMARY KEY REFERENCES tables (name),
    version BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE alias_history (
    id TEXT PRIMARY KEY,
    alias TEXT NOT NULL,
    from_version BIGINT,
    to_version BIGINT NOT NULL,
    at BIGINT NOT NULL,
    by_whom TEXT NOT NULL,
    message TEXT
);
CREATE INDEX alias_history_by_alias ON alias_history (alias, at);

-- The ledger of applied user migrations (migrations/NNNN_name.sql).
CREATE TABLE applied_migrations (
    name TEXT PRIMARY KEY,
    checksum TEXT NOT NULL,
    applied_at BIGINT NOT NULL,
    applied_by TEXT NOT NULL
);

-- One row per attempt at one partition of one job version.
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    table_name TEXT NOT NULL,
    table_version BIGINT NOT NULL,
    partition_key TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    state TEXT NOT NULL,
    trigger_kind TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    lease_token BIGINT NOT NULL,
    rows_written BIGINT,
    delta_version BIGINT,
    error TEXT,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX runs_by_partition ON runs (table_name, table_version, partition_key, started_at);
CREATE INDEX runs_by_job ON runs (job, started_at);

-- The state of each partition of each physical version: what the last run did, and which
-- run and code wrote the content that is there now.
CREATE TABLE partitions (
    table_name TEXT NOT NULL,
    table_version BIGINT NOT NULL,
    partition_key TEXT NOT NULL,
    job TEXT NOT NULL,
    state TEXT NOT NULL,
    last_run_id TEXT NOT NULL,
    content_run_id TEXT,
    content_fingerprint TEXT,
    content_rows BIGINT,
    content_delta_version BIGINT,
    error TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (table_name, table_version, partition_key)
);

-- Leases: who may write a (table version, partition) now. The row outlives the lease so
-- that its fencing token only ever grows.
CREATE TABLE leases (
    table_name TEXT NOT NULL,
    table_version BIGINT NOT NULL,
    partition_key TEXT NOT NULL,
    token BIGINT NOT NULL,
    holder TEXT,
    run_id TEXT,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (table_name, table_version, partition_key)
);
