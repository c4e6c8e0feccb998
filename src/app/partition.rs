//! A partition named by text, as a front door receives it: the job it belongs to, parsed
//! by the job's partitioning, and declared by the job (a key its spec lists).

use crate::job::{Job, SpecError};
use crate::partition::{PartitionKey, PartitionParseError};
use crate::project::Project;

#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// The job is not loaded: what the project says about it (a spec with problems, or
    /// no such job), one problem each.
    #[error("{}", .0.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
    Job(Vec<SpecError>),
    #[error("{source} (job `{job}` is partitioned {partitioning})")]
    Unparsable {
        job: String,
        partitioning: String,
        source: PartitionParseError,
    },
    #[error("{key}: {why}")]
    Undeclared { key: PartitionKey, why: String },
}

/// The job named `job`, from the project as loaded.
pub fn job<'p>(project: &'p Project, job: &str) -> Result<&'p Job, PartitionError> {
    project.job(job).map_err(PartitionError::Job)
}

/// `text` as a partition of `job`, in its canonical form (only that reaches the catalog),
/// declared or not: what a page that shows a partition needs.
pub fn parsed(job: &Job, text: &str) -> Result<PartitionKey, PartitionError> {
    job.parse_partition(text)
        .map_err(|source| PartitionError::Unparsable {
            job: job.name.to_string(),
            partitioning: job.partitioning_text(),
            source,
        })
}

/// The job named `job` and the partition `text` names, which the job must declare: what
/// running a partition needs (`sluice run`, the web view's "run again").
pub fn declared(
    project: &Project,
    job_name: &str,
    text: &str,
) -> Result<(Job, PartitionKey), PartitionError> {
    let job = job(project, job_name)?;
    let key = parsed(job, text)?;
    job.check_declared(&key)
        .map_err(|why| PartitionError::Undeclared { key, why })?;
    Ok((job.clone(), key))
}
