-- The code (spec and SQL text) that last wrote each physical version of a job's table: while
-- a newer version shadows the live one, the daemon keeps writing the live one with it.
CREATE TABLE job_code (
    job TEXT NOT NULL,
    table_version BIGINT NOT NULL,
    fingerprint TEXT NOT NULL,
    spec_text TEXT NOT NULL,
    sql_text TEXT NOT NULL,
    recorded_at BIGINT NOT NULL,
    PRIMARY KEY (job, table_version)
);
