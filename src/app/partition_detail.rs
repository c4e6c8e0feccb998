//! One partition's whole story, as its web page and `sluice status JOB --partition P` show
//! it: its catalog row, why it is stale, what its content read, its runs, the last run's
//! checks and profile beside the baseline of earlier partitions, and its dead letters.
//! Gathered here once so the two front doors cannot tell it differently.

use crate::catalog::{Catalog, CatalogError, PartitionStatus, RunRow};
use crate::dead_letters::DeadLetter;
use crate::job::Job;
use crate::partition::PartitionKey;
use crate::project::Project;
use crate::provenance::{Reads, StaleBecause, Staleness};
use crate::quality::{Profile, Quality, median, profiles_from_json};

/// How many earlier partitions a profile is compared with.
pub const BASELINE_PARTITIONS: u32 = 7;

pub struct PartitionDetail {
    pub key: PartitionKey,
    /// The catalog's row; `None` before its first run.
    pub status: Option<PartitionStatus>,
    /// The fingerprint of the code as it is now (`-` before the table exists).
    pub current_fingerprint: String,
    /// Why its complete content is stale, when it is.
    pub stale: Option<StaleBecause>,
    /// What the run that wrote its content read.
    pub reads: Reads,
    /// Every run, oldest first.
    pub runs: Vec<RunRow>,
    /// The last run's checks and profile.
    pub quality: Quality,
    /// The profiles of the partitions before it, for the baseline.
    pub baseline: Vec<Profile>,
    pub letters: Vec<DeadLetter>,
    /// Why the dead letters could not be read (redacted), when they could not.
    pub letters_error: Option<String>,
}

impl PartitionDetail {
    /// The error of a partition that is not complete, said once (redacted): the last
    /// run's, which each failed run's row points at rather than repeats.
    pub fn error(&self) -> Option<String> {
        self.status
            .as_ref()
            .filter(|s| s.state != crate::catalog::PartitionState::Complete)
            .and_then(|s| s.error.as_deref())
            .map(crate::redact::redact_text)
    }

    /// The upstream tables a run read, one line each: version, partitions and their data
    /// versions.
    pub fn tables_read(&self) -> Vec<String> {
        self.reads
            .upstream
            .iter()
            .map(|t| {
                let which = match &t.partitions {
                    Some(p) => {
                        let shown: Vec<String> = p
                            .iter()
                            .map(|(k, v)| format!("{k} (data version {v})"))
                            .collect();
                        crate::text::shorten(&shown, 8)
                    }
                    None => format!(
                        "every partition (data version {})",
                        t.whole.as_deref().unwrap_or("-")
                    ),
                };
                format!("{} v{}: {which}", t.table, t.version)
            })
            .collect()
    }

    /// The median of a metric over the baseline's profiles, when any has it.
    pub fn baseline_of(&self, metric: impl Fn(&Profile) -> Option<f64>) -> Option<f64> {
        let mut v: Vec<f64> = self.baseline.iter().filter_map(metric).collect();
        (!v.is_empty()).then(|| median(&mut v))
    }
}

/// Partition `key` of `job`, everything known of it.
pub async fn detail(
    project: &Project,
    catalog: &Catalog,
    job: &Job,
    key: PartitionKey,
) -> Result<PartitionDetail, CatalogError> {
    let text = key.to_string();
    let (table, version) = (job.table.as_str(), i64::from(job.version));
    let current_fingerprint = match catalog.table(table).await? {
        Some(t) => crate::fingerprint::fingerprint(job, &t.schema),
        None => "-".into(),
    };
    let status = catalog.partition_status(table, version, &text).await?;
    let reads = match status.as_ref().and_then(|s| s.content_run_id.as_deref()) {
        Some(run) => Reads::from_json(catalog.run_reads(run).await?.as_deref()),
        None => None,
    };
    let stale = match &status {
        Some(s) => {
            Staleness::new(project, catalog)
                .of(job, &current_fingerprint, s, reads.as_ref())
                .await?
        }
        None => None,
    };
    let runs = catalog.runs_of_partition(table, version, &text).await?;
    let quality: Quality = match runs.last() {
        Some(r) => catalog
            .run_quality(&r.run_id)
            .await?
            .and_then(|j| serde_json::from_str(&j).ok())
            .unwrap_or_default(),
        None => Quality::default(),
    };
    let baseline = profiles_from_json(
        &catalog
            .quality_before(table, version, &key, BASELINE_PARTITIONS)
            .await?,
    );
    let url = crate::dead_letters::table_url(&project.settings.warehouse, &job.name, job.version);
    let (letters, letters_error) = match crate::dead_letters::list(&url, Some(&text)).await {
        Ok(l) => (l, None),
        Err(e) => (Vec::new(), Some(crate::redact::redact_text(&e.to_string()))),
    };
    Ok(PartitionDetail {
        key,
        status,
        current_fingerprint,
        stale,
        reads: reads.unwrap_or_default(),
        runs,
        quality,
        baseline,
        letters,
        letters_error,
    })
}
