//! Picking up new code without a restart: the project is re-read when its files change (or
//! on SIGHUP), and each job's schedule state carried over or started.

use super::Daemon;
use super::queue::JobState;
use super::schedule::Cadence;
use crate::names::Name;
use crate::project::Project;
use chrono::{DateTime, Utc};
use std::path::Path;
use std::sync::Arc;
use tracing::{error, info, warn};

impl Daemon {
    pub(super) async fn reload_if_changed(&mut self, now: DateTime<Utc>) {
        let root = self.runner.project().settings.root.clone();
        let hash = project_files_hash(&root);
        // Which versions the jobs write follows production's aliases too (an `env
        // promote`): one small read per poll. Unread, the jobs keep writing where they do.
        let built = match self.catalog.env_built_live().await {
            Ok(b) => Some(b),
            Err(e) => {
                warn!(error = %e, "could not read which aliases point at versions environments built; trying again at the next poll");
                None
            }
        };
        let moved = built.is_some() && self.env_built.is_some() && built != self.env_built;
        if let Some(b) = built {
            self.env_built = Some(b);
        }
        if self.files_hash == Some(hash)
            && !self.reload_requested
            && !self.jobs.is_empty()
            && !moved
        {
            return;
        }
        let first = self.files_hash.is_none();
        let changed = self.files_hash.is_some_and(|h| h != hash);
        self.files_hash = Some(hash);
        self.reload_requested = false;
        let project = if first {
            self.runner.project()
        } else {
            let settings = self.runner.project().settings.clone();
            let loaded = Project::load_with(settings);
            let p = Arc::new(match &self.env_built {
                Some(b) => loaded.at_live_versions(b),
                None => loaded,
            });
            self.runner.set_project(p.clone());
            if moved {
                info!(
                    "aliases moved to or from versions an environment built; the next runs write where they point"
                );
            }
            if changed {
                info!("project files changed; the next runs use the new specs, SQL and migrations");
            }
            p
        };
        // A job's code may have changed: its partitions' staleness by code with it.
        self.stale_recheck_code = true;
        self.apply_project(&project, now, first || changed);
    }

    pub(super) fn apply_project(
        &mut self,
        project: &Project,
        now: DateTime<Utc>,
        log_problems: bool,
    ) {
        for (name, job) in &project.jobs {
            let cadence = match Cadence::of(job) {
                None => {
                    if self.jobs.remove(name).is_some() {
                        info!(job = %name, "the job has no schedule any more; the daemon no longer runs it");
                        self.queue.retain(|p| &p.job != name);
                    }
                    continue;
                }
                Some(Err(m)) => {
                    error!(job = %name, error = %m, "the job's cron does not parse");
                    continue;
                }
                Some(Ok(c)) => c,
            };
            match self.jobs.get_mut(name) {
                Some(st) => {
                    if st.invalid.take().is_some() {
                        info!(job = %name, "the job's spec validates again");
                    }
                    let added: Vec<_> = job
                        .keys()
                        .iter()
                        .filter(|k| !st.job.keys().contains(k))
                        .copied()
                        .collect();
                    if !added.is_empty() {
                        info!(job = %name, keys = %crate::text::shorten(&added, 12), "partition keys added; their missed partitions are caught up");
                        st.added_keys.extend(added);
                    }
                    st.job = job.clone();
                    st.cadence = cadence;
                }
                None => {
                    info!(job = %name, cron = %cadence.schedule.cron, time_zone = %cadence.schedule.time_zone, "scheduling job");
                    self.jobs.insert(
                        name.clone(),
                        JobState {
                            job: job.clone(),
                            cadence,
                            invalid: None,
                            cursor: now,
                            last_scheduled: None,
                            started: false,
                            added_keys: Vec::new(),
                            running: 0,
                            deadline_judged: None,
                        },
                    );
                }
            }
            // A key removed from the spec: its queued partitions are not run (its data stays).
            self.queue
                .retain(|p| &p.job != name || job.declares(&p.key));
        }
        let gone: Vec<Name> = self
            .jobs
            .keys()
            .filter(|n| !project.jobs.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            let spec = project.settings.jobs_dir().join(format!("{name}.toml"));
            if !spec.exists() {
                info!(job = %name, "the job's spec was removed; the daemon no longer runs it");
                self.jobs.remove(&name);
                self.queue.retain(|p| p.job != name);
                continue;
            }
            let why = match project.job(name.as_str()) {
                Err(errs) => errs
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
                Ok(_) => "the spec does not validate".into(),
            };
            if let Some(st) = self.jobs.get_mut(&name) {
                if st.invalid.as_deref() != Some(why.as_str()) {
                    error!(job = %name, error = %why, "the job's spec no longer validates; its partitions fail until it is fixed, the other jobs go on");
                }
                st.invalid = Some(why);
            }
        }
        if log_problems {
            for p in &project.problems {
                let known = self.jobs.keys().any(|n| p.file == format!("jobs/{n}.toml"));
                if !known {
                    error!(file = %p.file, error = %p.message, "not scheduled: the spec does not validate");
                }
            }
        }
    }

    // ---- scheduling ---------------------------------------------------------------------
}

/// A hash of what the daemon reloads: the job specs, their SQL and the migrations.
fn project_files_hash(root: &Path) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    for dir in ["jobs", "migrations"] {
        let mut paths: Vec<_> = std::fs::read_dir(root.join(dir))
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        paths.sort();
        for p in paths {
            h.update(p.to_string_lossy().as_bytes());
            h.update(&[0]);
            if let Ok(bytes) = std::fs::read(&p) {
                h.update(&(bytes.len() as u64).to_le_bytes());
                h.update(&bytes);
            }
        }
    }
    h.finalize()
}
