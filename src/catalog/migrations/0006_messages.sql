-- Messages: what a target is sent. A message carries one event, or a digest of the events
-- of one job that came while the target's window (`at_most_every`) was shut. Its retry
-- state lives here; its deliveries point at it and take its state when it settles.
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    job TEXT,
    created_at BIGINT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_at BIGINT NOT NULL,
    claimed_by TEXT,
    claimed_until BIGINT,
    last_error TEXT,
    delivered_at BIGINT
);
CREATE INDEX messages_due ON messages (state, next_at);
CREATE INDEX messages_by_window ON messages (target, job, state);

-- A delivery is now what one target is owed of one event; its retry state moved to its
-- message.
DROP INDEX deliveries_due;
ALTER TABLE deliveries DROP COLUMN next_at;
ALTER TABLE deliveries DROP COLUMN claimed_by;
ALTER TABLE deliveries DROP COLUMN claimed_until;
CREATE INDEX deliveries_by_state ON deliveries (state);
ALTER TABLE deliveries ADD COLUMN message_id TEXT;
CREATE INDEX deliveries_by_message ON deliveries (message_id);
CREATE INDEX deliveries_unsent ON deliveries (state, message_id);

-- The last message formed per target and job: a compare-and-set on its row lets one
-- daemon, and one only, open the next window.
CREATE TABLE notify_windows (
    target TEXT NOT NULL,
    job TEXT NOT NULL,
    last_sent_at BIGINT NOT NULL,
    PRIMARY KEY (target, job)
);
