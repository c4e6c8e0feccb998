-- What a run found about the content it wrote: its profile (rows; per column null fraction,
-- distinct estimate, min, max, mean) and the result of each data-quality check, as JSON.
-- A partition's profile is its content run's; baselines read the profiles of the partitions
-- before it.
ALTER TABLE runs ADD COLUMN quality_json TEXT;
