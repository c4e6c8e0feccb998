//! What changed in a table since a reader last looked (`table_changes`, migration 0012):
//! a counter per table, moved in the same transaction as every write of the table's
//! partitions, which stamps the rows it writes with the count. The daemon's poll reads
//! the counters (one row per table) and then only the partitions written since its last
//! look, instead of summarising every partition of every table at each poll.
//!
//! Why a counter row and not a sequence or a timestamp: the row is locked by the writing
//! transaction until it commits, so on PostgreSQL two writers of one table take their
//! counts in the order they commit. A reader that has seen count `n` has seen every write
//! stamped `n` or less; with a sequence, a write stamped 5 could commit after a reader saw
//! 6 and be missed for good.

use super::{Catalog, CatalogError, query_err};
use std::collections::HashMap;

/// A table's counters as last committed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableChange {
    /// Writes of the table's partitions so far.
    pub seq: i64,
    /// `seq` at the last change that cannot be followed partition by partition (an alias
    /// moved, a version or the table dropped): a reader whose mark is below it reads the
    /// whole table again.
    pub reset_seq: i64,
}

/// Whether a change can be followed by the partitions it stamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Followed {
    ByPartition,
    /// Readers read the whole table again.
    Reset,
}

/// Moves `table`'s counter inside the caller's transaction; the partition rows the
/// transaction writes next take it with [`STAMP`].
pub(super) async fn bump_in(
    conn: &mut sqlx::AnyConnection,
    table: &str,
    followed: Followed,
) -> Result<(), CatalogError> {
    let reset = i64::from(followed == Followed::Reset);
    sqlx::query(
        "INSERT INTO table_changes (table_name, seq, reset_seq) VALUES ($1, 1, $2) \
         ON CONFLICT (table_name) DO UPDATE SET seq = table_changes.seq + 1, \
           reset_seq = CASE WHEN $2 = 1 THEN table_changes.seq + 1 ELSE table_changes.reset_seq END",
    )
    .bind(table)
    .bind(reset)
    .execute(&mut *conn)
    .await
    .map_err(query_err("count a change of the table"))?;
    Ok(())
}

/// [`bump_in`] for each of `tables` once, in their order (the same order in every
/// transaction that moves several: none waits on another's counter in turn).
pub(super) async fn bump_each_in<'t>(
    conn: &mut sqlx::AnyConnection,
    tables: impl IntoIterator<Item = &'t str>,
    followed: Followed,
) -> Result<(), CatalogError> {
    let tables: std::collections::BTreeSet<&str> = tables.into_iter().collect();
    for table in tables {
        bump_in(&mut *conn, table, followed).await?;
    }
    Ok(())
}

/// The value of `partitions.change_seq` for a row of the table just bumped.
pub(super) const STAMP: &str =
    "(SELECT c.seq FROM table_changes c WHERE c.table_name = partitions.table_name)";

impl Catalog {
    /// Every table's counters. A table never written has no row: read it as zero.
    pub async fn table_changes(&self) -> Result<HashMap<String, TableChange>, CatalogError> {
        let rows: Vec<(String, i64, i64)> =
            sqlx::query_as("SELECT table_name, seq, reset_seq FROM table_changes")
                .fetch_all(&self.pool)
                .await
                .map_err(query_err("read what changed"))?;
        Ok(rows
            .into_iter()
            .map(|(t, seq, reset_seq)| (t, TableChange { seq, reset_seq }))
            .collect())
    }

    /// The partitions of `table` (of physical `version`, or any) written after count
    /// `since`, by key, each once.
    pub async fn changed_since(
        &self,
        table: &str,
        version: Option<i64>,
        since: i64,
    ) -> Result<Vec<String>, CatalogError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT partition_key FROM partitions \
             WHERE table_name = $1 AND change_seq > $2 AND ($3 IS NULL OR table_version = $3)",
        )
        .bind(table)
        .bind(since)
        .bind(version)
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("read the partitions that changed"))?;
        Ok(rows.into_iter().map(|(k,)| k).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::super::write_group::tests::start;
    use super::super::{Catalog, Claim, RunEnd};
    use super::TableChange;

    async fn changed(c: &Catalog, since: i64) -> Vec<String> {
        let mut keys = c.changed_since("t", Some(1), since).await.expect("changed");
        keys.sort();
        keys
    }

    /// Each write of a partition moves its table's counter and stamps the row; a reader
    /// holding a mark finds exactly the partitions written after it, and an alias's move
    /// is a reset.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_mark_finds_exactly_the_partitions_written_after_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
        let c = Catalog::connect(&url).await.expect("catalog");
        assert!(c.table_changes().await.expect("read").is_empty());
        let mut started = Vec::new();
        for p in ["a", "b", "c"] {
            let mut s = start(p, &format!("run-{p}"));
            match c.claim(&mut s, "me", (1_000, 60_000), None).await {
                Ok(Claim::Started(lease)) => started.push((s, lease)),
                other => panic!("{other:?}"),
            }
        }
        let mark = c.table_changes().await.expect("read")["t"];
        assert!(mark.seq >= 1, "{mark:?}");
        assert_eq!(changed(&c, 0).await, ["a", "b", "c"]);
        assert!(changed(&c, mark.seq).await.is_empty());
        let (s, lease) = &started[1];
        let end = RunEnd::Succeeded {
            rows: 1,
            delta_version: 1,
        };
        c.finish_run(s, &end, 2_000, Some(lease), &Default::default())
            .await
            .expect("finish");
        c.abandon_run("run-c", "gone", 2_000)
            .await
            .expect("abandon");
        let now = c.table_changes().await.expect("read")["t"];
        assert_eq!(now.seq, mark.seq + 2);
        assert_eq!(now.reset_seq, 0);
        assert_eq!(changed(&c, mark.seq).await, ["b", "c"]);
        assert_eq!(changed(&c, mark.seq + 1).await, ["c"]);
        // The table's first version gives it its alias: what read it reads it again.
        sqlx::query("INSERT INTO tables (name, schema_json, created_at, updated_at) VALUES ('t', '{}', 0, 0)")
            .execute(&c.pool)
            .await
            .expect("table");
        c.register_table_version("t", 1, "file:///t", "{}", "me", 3_000)
            .await
            .expect("version");
        let reset = c.table_changes().await.expect("read")["t"];
        assert_eq!(
            reset,
            TableChange {
                seq: now.seq + 1,
                reset_seq: now.seq + 1
            }
        );
    }
}
