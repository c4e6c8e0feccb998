//! What became of one partition: the report a run returns to its caller.

use crate::engine::BadRow;
use crate::spelling::spelled_enum;

spelled_enum! {
    /// How a call to run a partition ended, for the caller (the catalog's run states are
    /// [`crate::catalog::RunState`]).
    pub enum RunOutcome {
        Succeeded => "succeeded",
        Failed => "failed",
        /// Another worker holds the partition's lease; nothing was done.
        Held => "held",
        /// Another worker completed the partition after the caller's cut-off; nothing was done.
        DoneElsewhere => "done_elsewhere",
    }
}

/// What became of one partition.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    pub job: String,
    pub table: String,
    pub table_version: u32,
    pub partition: String,
    pub state: RunOutcome,
    /// The run id of the last attempt (absent when the lease was held elsewhere).
    pub run_id: Option<String>,
    pub attempts: u32,
    pub rows: Option<u64>,
    pub delta_version: Option<u64>,
    pub fingerprint: String,
    pub error: Option<String>,
    pub transient: bool,
    /// The first [`SHOWN`](crate::engine::bad_row_log::SHOWN) rows left out (input rows
    /// that do not fit their schema, output rows that do not fit the table); all are in
    /// the dead letters.
    pub bad_rows_skipped: Vec<BadRow>,
    /// How many rows were left out in all.
    pub bad_rows_skipped_total: u64,
    /// The new content's profile and check results (absent when no content was made).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<crate::quality::Quality>,
    pub held_by: Option<String>,
    /// What the last attempt used (absent when it computed nothing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<crate::cost::RunCost>,
    /// From the call to its end: lease, run, write, commit, catalog, retries included.
    pub duration_ms: f64,
    /// What the last attempt's command inputs wrote: part of what the partition read.
    #[serde(skip)]
    pub command_reads: Vec<crate::provenance::CommandRead>,
}

impl RunReport {
    /// A report for an attempt about to start: failed until it says otherwise.
    pub(super) fn new(
        job: &crate::job::Job,
        key: &crate::partition::PartitionKey,
        attempt: u32,
    ) -> RunReport {
        RunReport {
            job: job.name.to_string(),
            table: job.table.to_string(),
            table_version: job.version,
            partition: key.to_string(),
            state: RunOutcome::Failed,
            run_id: None,
            attempts: attempt,
            rows: None,
            delta_version: None,
            fingerprint: String::new(),
            error: None,
            transient: false,
            bad_rows_skipped: Vec::new(),
            bad_rows_skipped_total: 0,
            quality: None,
            held_by: None,
            cost: None,
            duration_ms: 0.0,
            command_reads: Vec::new(),
        }
    }
}

impl RunReport {
    /// Records the rows left out: how many, and the first ones.
    pub(super) fn set_bad_rows_skipped(&mut self, log: &crate::engine::BadRowLog) {
        self.bad_rows_skipped = log.shown().to_vec();
        self.bad_rows_skipped_total = log.len();
    }
}
