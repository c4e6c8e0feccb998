-- What changed in a table since a reader last looked, without reading its partitions: the
-- daemon's poll reads one row per table, and then only the partitions written since.
-- `seq` counts the writes of the table's partitions (a run's start, its end, an abandon);
-- each write stamps its partitions row with the count it made (`change_seq`).
-- `reset_seq` is the count at the last change a reader cannot follow partition by
-- partition (an alias moved, a version dropped): a reader behind it reads the whole table
-- again. Rows are never pruned: a reader's mark must stay comparable.
CREATE TABLE table_changes (
    table_name TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    reset_seq BIGINT NOT NULL
);
ALTER TABLE partitions ADD COLUMN change_seq BIGINT NOT NULL DEFAULT 0;
CREATE INDEX partitions_by_change ON partitions (table_name, change_seq);
