//! The code that wrote each physical version: recorded after a successful run, and read
//! back as a `Job` when a shadow run writes the live version with the code it had.

use super::RunError;
use crate::catalog::Catalog;
use crate::clock::SharedClock;
use crate::job::Job;
use std::collections::HashMap;
use tracing::warn;

/// The catalog's `job_code`, and the fingerprint last recorded per (job, version) by this
/// process: it is written when it changes, not on every run.
pub(super) struct CodeLedger {
    catalog: Catalog,
    clock: SharedClock,
    recorded: std::sync::Mutex<HashMap<(String, u32), String>>,
}

impl CodeLedger {
    pub(super) fn new(catalog: Catalog, clock: SharedClock) -> CodeLedger {
        CodeLedger {
            catalog,
            clock,
            recorded: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Remembers in the catalog which code wrote this version, for shadow runs.
    pub(super) async fn record(&self, job: &Job, fp: &str) {
        let key = (job.name.to_string(), job.version);
        let known = self
            .recorded
            .lock()
            .map(|m| m.get(&key).is_some_and(|f| f == fp))
            .unwrap_or(false);
        if known {
            return;
        }
        match self
            .catalog
            .record_job_code(
                job.name.as_str(),
                i64::from(job.version),
                fp,
                &job.spec_text,
                &job.sql,
                self.clock.now_ms(),
            )
            .await
        {
            Ok(()) => {
                if let Ok(mut m) = self.recorded.lock() {
                    m.insert(key, fp.to_string());
                }
            }
            Err(e) => {
                warn!(error = %e, "could not record the job's code; shadow runs of this version use older code")
            }
        }
    }

    /// The job as the code that last wrote `version` of its table had it, when `version` is
    /// not the spec's own: what a shadow run of the live version executes.
    pub(super) async fn job_at_version(
        &self,
        root: &std::path::Path,
        job: &Job,
        version: u32,
    ) -> Result<Option<Job>, RunError> {
        if version == job.version {
            return Ok(Some(job.clone()));
        }
        let Some((spec, sql)) = self
            .catalog
            .job_code(job.name.as_str(), i64::from(version))
            .await?
        else {
            return Ok(None);
        };
        match Job::from_recorded(root, &job.spec_path, spec, sql) {
            Ok(j) if j.version == version => Ok(Some(j)),
            Ok(_) => Ok(None),
            Err(errs) => Err(RunError::NotRunnable(format!(
                "the recorded code of v{version} no longer validates: {}",
                errs.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            ))),
        }
    }
}
