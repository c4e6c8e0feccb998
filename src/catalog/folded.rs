//! Partitions read as JSON the database folds, a thousand rows to a text: one partition,
//! some partitions by name (`named.rs`), and a version's or a job's partitions when neither
//! a SQLite catalog's file (`sqlite_file.rs`) nor PostgreSQL's own driver (`pg_rows.rs`)
//! serves them (a catalog in memory, a twin). Those two read the columns, in the order,
//! named here.
//!
//! Why: the driver's cost is per value, not per byte. Each value of each row is copied out
//! of SQLite, handed across a channel from its worker thread, converted to the `Any`
//! driver's value and decoded again: about 8 µs per partition row of 22 columns, where
//! SQLite itself takes under 1 µs. At a million partitions that was 9 of the whole
//! `status`'s 16 s. Folded, the database writes each row as a JSON array (SQLite's
//! `json_array`, PostgreSQL's `json_build_array`), a thousand to one text, and one parse
//! here reads them: about 2 µs per row in all.

use super::rows::{LastRunState, StoredCost};
use super::{Backend, CatalogError, PartitionState, PartitionStatus, query_err};

/// The partition row's columns, in [`Folded`]'s order.
pub(super) const COLUMNS: &str = "p.job, p.table_name, p.table_version, p.partition_key, p.state, \
    p.content_rows, p.content_run_id, p.content_fingerprint, p.content_delta_version, \
    p.last_run_id, p.error, p.last_started_at, p.last_finished_at, p.last_attempt, \
    p.content_version, p.last_run_state, p.last_cpu_us, p.last_bytes_read, \
    p.last_bytes_written, p.last_requests, p.last_peak_memory_bytes, p.content_reads_json";

/// Rows per text: a text of about 250 KB, a statement's memory bounded whatever it reads.
const ROWS_PER_TEXT: usize = 1_000;

/// A value bound to a statement's placeholder.
#[derive(Debug, Clone, Copy)]
pub(super) enum Bind<'a> {
    Text(&'a str),
    Int(i64),
}

/// The order rows are read in, by columns that tell every row of the read apart: each
/// text starts after the last row of the one before (a seek down the index, where a
/// numbering of every row would sort them all first).
#[derive(Debug, Clone, Copy)]
pub(super) enum Order {
    /// Of one physical version: by key.
    Key,
    /// Of one job: by version, then key (then table, should a job's table have changed).
    InJob,
    /// Of every job: by job, then as [`Order::InJob`].
    All,
}

impl Order {
    pub(super) fn columns(self) -> &'static str {
        match self {
            Order::Key => "p.partition_key",
            Order::InJob => "p.table_version, p.partition_key, p.table_name",
            Order::All => "p.job, p.table_version, p.partition_key, p.table_name",
        }
    }

    /// `a` against `b` by [`Order::columns`], as SQLite compares them.
    fn compare(self, a: &PartitionStatus, b: &PartitionStatus) -> std::cmp::Ordering {
        let in_job = || {
            (a.table_version, &a.partition_key, &a.table_name).cmp(&(
                b.table_version,
                &b.partition_key,
                &b.table_name,
            ))
        };
        match self {
            Order::Key => a.partition_key.cmp(&b.partition_key),
            Order::InJob => in_job(),
            Order::All => a.job.cmp(&b.job).then_with(in_job),
        }
    }

    /// Sorts the rows of one text, should they have come out of order (checked first:
    /// they seldom have).
    fn put_in_order(self, rows: &mut [PartitionStatus]) {
        if !rows.is_sorted_by(|a, b| self.compare(a, b).is_le()) {
            rows.sort_unstable_by(|a, b| self.compare(a, b));
        }
    }

    /// The values of [`Order::columns`] of `p`, to read on after it.
    fn after(self, p: &PartitionStatus) -> Vec<Bind<'_>> {
        let key = Bind::Text(&p.partition_key);
        let version = Bind::Int(p.table_version);
        let table = Bind::Text(&p.table_name);
        match self {
            Order::Key => vec![key],
            Order::InJob => vec![version, key, table],
            Order::All => vec![Bind::Text(&p.job), version, key, table],
        }
    }
}

/// The partitions `filter` selects (`WHERE ...` over `partitions p`, or nothing; its
/// placeholders numbered from `$1` and given by `binds`), in `order`.
pub(super) async fn read(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    (filter, order): (&str, Order),
    binds: &[Bind<'_>],
) -> Result<Vec<PartitionStatus>, CatalogError> {
    let columns = order.columns();
    let (fold, array, fold_order) = match backend {
        // SQLite compares these columns as Rust does (text byte by byte, BINARY): a text
        // whose rows came out of order is put back in order here, which costs less than
        // the aggregate's own sort did (a third of SQLite's time at a million rows). The
        // subquery's ORDER BY and LIMIT still choose which rows a text holds.
        Backend::Sqlite => ("json_group_array", "json_array", String::new()),
        // PostgreSQL's collation may order text otherwise than bytes: it orders them.
        Backend::Postgres => (
            "json_agg",
            "json_build_array",
            format!(" ORDER BY {columns}"),
        ),
    };
    let mut out: Vec<PartitionStatus> = Vec::new();
    loop {
        // The last row so far (a copy: `out` grows below), to read on after it.
        let last = out.last().cloned();
        let after = last.as_ref().map(|p| order.after(p)).unwrap_or_default();
        let mut filter = filter.to_string();
        if !after.is_empty() {
            let first = binds.len() + 1;
            let places = super::placeholders(first, after.len());
            let join = if filter.is_empty() { "WHERE" } else { "AND" };
            filter = format!("{filter} {join} ({columns}) > ({places})");
        }
        let sql = format!(
            "SELECT CAST({fold}({array}({COLUMNS}){fold_order}) AS TEXT) \
             FROM (SELECT p.* FROM partitions p {filter} ORDER BY {columns} LIMIT {ROWS_PER_TEXT}) p"
        );
        // Only fixed text and placeholders are written into it; values are bound.
        let mut q = sqlx::query_scalar::<_, Option<String>>(sqlx::AssertSqlSafe(sql));
        for b in binds.iter().chain(&after) {
            q = match *b {
                Bind::Text(t) => q.bind(t.to_string()),
                Bind::Int(i) => q.bind(i),
            };
        }
        let text = q
            .fetch_one(&mut *conn)
            .await
            .map_err(query_err("list partitions"))?;
        // No row: an empty array on SQLite, NULL on PostgreSQL.
        let rows: Vec<Folded> = match text {
            Some(t) => serde_json::from_str(&t).map_err(|e| {
                CatalogError::Corrupt(format!("partition rows read as JSON do not parse: {e}"))
            })?,
            None => Vec::new(),
        };
        let full = rows.len() == ROWS_PER_TEXT;
        let start = out.len();
        out.reserve(rows.len());
        for row in rows {
            out.push(row.into_status()?);
        }
        order.put_in_order(&mut out[start..]);
        if !full {
            return Ok(out);
        }
    }
}

/// One partition row as the database wrote it: [`COLUMNS`], in order.
#[derive(serde::Deserialize)]
pub(super) struct Folded(
    pub(super) String,
    pub(super) String,
    pub(super) i64,
    pub(super) String,
    pub(super) String,
    pub(super) Option<i64>,
    pub(super) Option<String>,
    pub(super) Option<String>,
    pub(super) Option<i64>,
    pub(super) String,
    pub(super) Option<String>,
    pub(super) Option<i64>,
    pub(super) Option<i64>,
    pub(super) Option<i64>,
    pub(super) Option<String>,
    pub(super) Option<String>,
    pub(super) Option<i64>,
    pub(super) Option<i64>,
    pub(super) Option<i64>,
    pub(super) Option<i64>,
    pub(super) Option<i64>,
    pub(super) Option<String>,
);

impl Folded {
    pub(super) fn into_status(self) -> Result<PartitionStatus, CatalogError> {
        let corrupt = |what: &str, text: &str| {
            CatalogError::Corrupt(format!(
                "partition {} of {} has {what} `{text}`",
                self.3, self.1
            ))
        };
        let state: PartitionState = self.4.parse().map_err(|_| corrupt("state", &self.4))?;
        let last_run_state = LastRunState::parse(self.15.as_deref())
            .map_err(|_| corrupt("last run state", self.15.as_deref().unwrap_or_default()))?;
        Ok(PartitionStatus {
            job: self.0,
            table_name: self.1,
            table_version: self.2,
            partition_key: self.3,
            state,
            content_rows: self.5,
            content_run_id: self.6,
            content_fingerprint: self.7,
            content_delta_version: self.8,
            last_run_id: self.9,
            error: self.10,
            started_at: self.11,
            finished_at: self.12,
            attempt: self.13,
            content_version: self.14,
            last_run_state,
            last_run_cost: StoredCost {
                cpu_us: self.16,
                bytes_read: self.17,
                bytes_written: self.18,
                requests: self.19,
                peak_memory_bytes: self.20,
            },
            content_reads_json: self.21,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::write_group::tests::start;
    use super::super::{Catalog, Claim, PartitionState, RunEnd, RunState};

    /// More partitions than one text holds are read each once, in order, with their last
    /// run's copies as the claim, the finish and the abandon wrote them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn partitions_past_one_text_are_read_each_once_in_order_with_their_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
        let c = Catalog::connect(&url).await.expect("catalog");
        let n = 2 * super::ROWS_PER_TEXT + 345;
        // Claimed out of key order: the order read is the catalog's, not the writes'.
        let mut keys: Vec<String> = (0..n).map(|i| format!("k{:05}", (i * 11) % n)).collect();
        let mut started = Vec::new();
        for k in &keys {
            let mut s = start(k, &format!("run-{k}"));
            s.reads_json = Some(format!("{{\"files\":[],\"of\":\"{k}\"}}"));
            s.data_version = Some(format!("dv-{k}"));
            match c.claim(&mut s, "me", (1_000, 60_000), None).await {
                Ok(Claim::Started(lease)) => started.push((s, lease)),
                other => panic!("{other:?}"),
            }
        }
        let end = RunEnd::Succeeded {
            rows: 3,
            delta_version: 7,
        };
        for (s, lease) in started.iter().filter(|(s, _)| s.partition.ends_with('0')) {
            c.finish_run(s, &end, 2_000, Some(lease), &Default::default())
                .await
                .expect("finish");
        }
        c.abandon_run("run-k00001", "gone", 3_000)
            .await
            .expect("abandon");

        keys.sort();
        for read in [
            c.partition_statuses(Some("j")).await.expect("of job"),
            c.partition_statuses(None).await.expect("all"),
            c.partitions_of("t", 1).await.expect("of version"),
        ] {
            let got: Vec<&str> = read.iter().map(|p| p.partition_key.as_str()).collect();
            assert_eq!(got, keys.iter().map(String::as_str).collect::<Vec<_>>());
        }
        // Those reads went to the file directly (`sqlite_file`); folded, the same rows.
        assert!(c.file.is_some(), "a catalog on disk is read from its file");
        let mut conn = c.reader().await.expect("conn");
        let folded = super::read(
            &mut conn,
            super::Backend::Sqlite,
            ("WHERE p.job = $1", super::Order::InJob),
            &[super::Bind::Text("j")],
        )
        .await
        .expect("folded");
        let direct = c.partition_statuses(Some("j")).await.expect("direct");
        assert_eq!(format!("{folded:?}"), format!("{direct:?}"));
        drop(conn);
        let named = [
            "k00010".to_string(),
            "k00001".into(),
            "k00002".into(),
            "nope".into(),
        ];
        let read = c.partitions_named("t", 1, &named).await.expect("named");
        assert_eq!(read.len(), 3);
        let by_key = |k: &str| read.iter().find(|p| p.partition_key == k).expect(k);
        let done = by_key("k00010");
        assert_eq!(done.state, PartitionState::Complete);
        assert_eq!(done.last_run_state.0, Some(RunState::Succeeded));
        assert_eq!(
            (done.started_at, done.finished_at),
            (Some(1_000), Some(2_000))
        );
        assert_eq!(done.content_rows, Some(3));
        assert_eq!(done.content_version.as_deref(), Some("dv-k00010"));
        let reads = done.content_reads_json.as_deref().expect("reads");
        assert!(reads.contains("k00010"), "{reads}");
        let gone = by_key("k00001");
        assert_eq!(gone.state, PartitionState::Failed);
        assert_eq!(gone.last_run_state.0, Some(RunState::Abandoned));
        assert_eq!(gone.finished_at, Some(3_000));
        assert_eq!(gone.content_version, None);
        let running = by_key("k00002");
        assert_eq!(running.state, PartitionState::Running);
        assert_eq!(running.last_run_state.0, Some(RunState::Running));
        assert_eq!((running.attempt, running.finished_at), (Some(1), None));
        let one = c.partition_status("t", 1, "k00010").await.expect("one");
        assert_eq!(one.map(|p| p.content_delta_version), Some(Some(7)));
    }

    /// Rows a text holds out of order are put in the order read on from, by each order's
    /// columns (the version as a number, text as bytes).
    #[test]
    fn rows_of_a_text_out_of_order_are_put_in_order() {
        use super::{Order, PartitionState, PartitionStatus};
        let row = |job: &str, version: i64, key: &str| {
            PartitionStatus::bare(job, version, key, PartitionState::Complete)
        };
        let shown = |rows: &[PartitionStatus]| -> Vec<String> {
            rows.iter()
                .map(|p| format!("{} v{} {}", p.job, p.table_version, p.partition_key))
                .collect()
        };
        let mut rows = vec![
            row("b", 2, "2024-01-01"),
            row("a", 10, "2024-01-01"),
            row("a", 9, "2024-01-02"),
            row("a", 9, "2024-01-01"),
            row("B", 1, "x"),
        ];
        Order::All.put_in_order(&mut rows);
        assert_eq!(
            shown(&rows),
            [
                "B v1 x",
                "a v9 2024-01-01",
                "a v9 2024-01-02",
                "a v10 2024-01-01",
                "b v2 2024-01-01"
            ]
        );
        let mut rows = vec![row("a", 10, "1"), row("a", 9, "2"), row("a", 9, "10")];
        Order::InJob.put_in_order(&mut rows);
        assert_eq!(shown(&rows), ["a v9 10", "a v9 2", "a v10 1"]);
        Order::Key.put_in_order(&mut rows);
        assert_eq!(shown(&rows), ["a v10 1", "a v9 10", "a v9 2"]);
    }
}
