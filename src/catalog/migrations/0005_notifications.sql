-- The outbox of notifications: an event is recorded in the transaction of the state change
-- that causes it (a run's end), with one delivery row per target that wants it; a daemon
-- claims due deliveries, sends them and records how each went. `dedup_key` makes an event
-- recorded twice (a retried transaction) one event.
CREATE TABLE events (
    id TEXT PRIMARY KEY,
    dedup_key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    job TEXT,
    partition_key TEXT,
    run_id TEXT,
    error TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX events_by_partition ON events (job, partition_key, created_at);
CREATE INDEX events_by_time ON events (created_at);

CREATE TABLE deliveries (
    event_id TEXT NOT NULL,
    target TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT NOT NULL,
    claimed_by TEXT,
    claimed_until BIGINT,
    last_error TEXT,
    delivered_at BIGINT,
    PRIMARY KEY (event_id, target)
);
CREATE INDEX deliveries_due ON deliveries (state, next_at);
