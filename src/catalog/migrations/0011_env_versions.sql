-- Physical versions an environment builds (`sluice apply --env NAME`). They are numbered
-- from 1000000 up (a spec's `version` stays below), so a checkout's version numbers never
-- meet them. `owner_env` is the environment that may write one (NULL: production); a
-- promote hands it to production. `spec_version` is the spec's `version` the build was
-- made for: production, once its alias points at such a version, writes there for a spec
-- naming that number (see `Catalog::physical_versions`).
ALTER TABLE table_versions ADD COLUMN owner_env TEXT;
ALTER TABLE table_versions ADD COLUMN spec_version BIGINT;
