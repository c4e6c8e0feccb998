-- Environments: named sets of aliases beside production's (`aliases`), made by copying
-- production's pointers (`sluice env create`), never its data. Readers given `--env NAME`
-- see a table through the environment's alias, or production's when it has none (a table
-- created after the environment was).
CREATE TABLE environments (
    name TEXT PRIMARY KEY,
    -- What it was copied from: 'prod' or another environment's name (which may be gone).
    source TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    -- When it lapses (`--ttl`); NULL: never.
    expires_at BIGINT
);

CREATE TABLE env_aliases (
    env TEXT NOT NULL REFERENCES environments (name),
    name TEXT NOT NULL REFERENCES tables (name),
    version BIGINT NOT NULL,
    -- Production's version when the alias was copied: where production must still point
    -- for the environment's own version to replace it.
    base_version BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (env, name)
);
-- Which environments point at a physical version (gc, a version's drop).
CREATE INDEX env_aliases_by_version ON env_aliases (name, version);
