//! Pruning run history beyond `[catalog] retention` (`catalog::retention` says what is
//! kept): `sluice gc --runs` does a whole prune at once, the daemon a few batches per poll
//! (`Prune::step`), so that neither holds the catalog's write lock for long. The jobs'
//! dead-letter tables follow the same retention, one table per step after the catalog.
//!
//! A catalog error stops a prune (what it removed before stays removed: each batch is one
//! transaction); a dead-letter table that cannot be pruned is reported and passed over, so
//! that one damaged table does not keep every table after it from being pruned.

use crate::catalog::{Catalog, CatalogError, RunCursor};
use crate::names::Name;
use crate::project::Project;
use url::Url;

/// Rows looked at per batch: on SQLite a batch's transaction holds the write lock for a
/// few milliseconds (the longest is in the report).
pub const BATCH: i64 = 500;

/// What a prune did (or, dry, would do).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PruneReport {
    /// Runs that finished before this were looked at (RFC 3339).
    pub cutoff: String,
    pub runs_removed: u64,
    /// Runs older than the cutoff kept because a partition points at them (its content,
    /// or its last run: an unresolved failure).
    pub runs_kept: u64,
    pub events_removed: u64,
    pub messages_removed: u64,
    /// Dead letters recorded before the cutoff, removed from the jobs' dead-letter tables.
    pub dead_letters_removed: u64,
    /// The dead-letter tables that could not be pruned, and why (the others were).
    pub dead_letters_failed: Vec<LetterTableFailure>,
    pub batches: u64,
    /// The longest a batch held the catalog's write lock, in milliseconds.
    pub longest_lock_ms: f64,
    pub dry_run: bool,
}

/// A job's dead-letter table a prune passed over.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LetterTableFailure {
    pub job: Name,
    pub error: String,
}

/// A prune under way.
#[derive(Debug, Clone)]
pub struct Prune {
    cutoff_ms: i64,
    dry_run: bool,
    /// Where the walk over old runs has got to; none once it is over.
    runs_at: Option<RunCursor>,
    notifications_done: bool,
    /// Dead-letter tables still to prune, by job.
    letter_tables: Vec<(Name, Url)>,
    pub report: PruneReport,
}

impl Prune {
    /// A prune of the project's history older than `cutoff_ms`: the catalog's, and each
    /// job's dead letters.
    pub fn of_project(project: &Project, cutoff_ms: i64, dry_run: bool) -> Prune {
        let letters = project
            .jobs
            .values()
            .map(|job| {
                let url = crate::dead_letters::table_url(
                    &project.settings.warehouse,
                    &job.name,
                    job.version,
                );
                (job.name.clone(), url)
            })
            .collect();
        Prune::new(cutoff_ms, dry_run, letters)
    }

    /// A prune of what is older than `cutoff_ms`, in the catalog and in the jobs'
    /// dead-letter tables at `letter_tables`.
    pub fn new(cutoff_ms: i64, dry_run: bool, letter_tables: Vec<(Name, Url)>) -> Prune {
        Prune {
            cutoff_ms,
            dry_run,
            runs_at: Some(RunCursor::default()),
            notifications_done: false,
            letter_tables,
            report: PruneReport {
                cutoff: crate::clock::rfc3339(cutoff_ms),
                dry_run,
                ..Default::default()
            },
        }
    }

    /// Runs up to `budget` batches (none: until done); whether the prune is over.
    pub async fn step(
        &mut self,
        catalog: &Catalog,
        budget: Option<u64>,
    ) -> Result<bool, CatalogError> {
        let mut left = budget.unwrap_or(u64::MAX);
        while left > 0 {
            left -= 1;
            self.report.batches += 1;
            if let Some(at) = &self.runs_at {
                let b = catalog
                    .prune_runs(self.cutoff_ms, at, BATCH, self.dry_run)
                    .await?;
                self.report.runs_removed += b.removed;
                self.report.runs_kept += b.kept;
                self.note_lock(b.held_ms);
                self.runs_at = b.next;
                continue;
            }
            if self.notifications_done {
                let Some((job, url)) = self.letter_tables.pop() else {
                    self.report.batches -= 1;
                    return Ok(true);
                };
                self.prune_letters(job, &url).await;
                continue;
            }
            let (events, messages, held_ms) = catalog
                .prune_notifications(self.cutoff_ms, BATCH, self.dry_run)
                .await?;
            self.report.events_removed += events;
            self.report.messages_removed += messages;
            self.note_lock(held_ms);
            // A dry run counts them all at once; a real one is over when a batch is short.
            self.notifications_done =
                self.dry_run || (events < BATCH as u64 && messages < BATCH as u64);
        }
        Ok(self.runs_at.is_none() && self.notifications_done && self.letter_tables.is_empty())
    }

    /// One job's dead letters past the cutoff, then its removed files past the table's
    /// own retention (vacuum), as `gc` does for tables. A table that cannot be pruned is
    /// noted in the report; the next prune tries it again.
    async fn prune_letters(&mut self, job: Name, url: &Url) {
        match crate::dead_letters::prune(url, self.cutoff_ms, self.dry_run).await {
            Ok(n) => self.report.dead_letters_removed += n,
            Err(e) => {
                tracing::warn!(job = %job, error = %e, "could not prune a job's dead letters; the other jobs' are pruned");
                let error = e.to_string();
                self.report
                    .dead_letters_failed
                    .push(LetterTableFailure { job, error });
                return;
            }
        }
        if !self.dry_run
            && let Err(e) = crate::delta::store::vacuum(url.as_str()).await
        {
            // The letters are gone from the table; their files wait for the next vacuum.
            tracing::debug!(error = %e, "could not vacuum a dead-letter table");
        }
    }

    fn note_lock(&mut self, held_ms: f64) {
        self.report.longest_lock_ms = self.report.longest_lock_ms.max(held_ms);
    }
}
