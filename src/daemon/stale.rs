//! Partitions made stale by their data, found at each poll: a complete partition whose
//! upstream partitions were rewritten since it read them is rerun (unless its job says
//! `on_upstream_change = "mark"`); one whose input files changed is rerun when it lies
//! within the job's `watch_inputs` window, which is looked at by listing each input
//! template's folder once per poll (metadata only).
//!
//! Exactly once per change: a stale partition is queued with the run whose content was
//! judged stale, and under the lease a content by another run counts as done (a rerun by
//! another worker since: by content, not time, so a replay's simulated clock is no matter);
//! it waits while an upstream partition it reads is queued or running here, or is stale and
//! to be run again, here or by another daemon (whose rerun of it, once under way, still
//! counts until it ends) (day, then month); once rerun it read the new content and is no longer stale. Upstream staleness is
//! judged again only when the partitions of the job's table or of its upstream tables, or
//! their aliases, changed since the last look (`Catalog::change_mark`).

use super::Daemon;
use super::queue::{Due, Pending};
use crate::catalog::CatalogError;
use crate::job::{Job, OnUpstreamChange};
use crate::names::Name;
use crate::partition::PartitionKey;
use crate::provenance::{Reads, StaleKind, Staleness};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use tracing::info;

/// How many complete partitions of a job are stale, by kind, as of the daemon's last look.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StaleCounts {
    pub code: usize,
    pub upstream: usize,
    pub input: usize,
}

impl Daemon {
    /// Queues the partitions stale because of their data, per each job's policy.
    pub(super) async fn queue_stale(&mut self, now: DateTime<Utc>) -> Result<(), CatalogError> {
        let project = self.runner.project();
        let order: Vec<Name> = project
            .graph
            .order
            .iter()
            .filter(|n| self.jobs.get(*n).is_some_and(|st| st.invalid.is_none()))
            .cloned()
            .collect();
        for name in order {
            let Some(job) = project.jobs.get(&name) else {
                continue;
            };
            let watch = job.schedule.as_ref().and_then(|s| s.watch_inputs);
            let mut tables = vec![job.table.to_string()];
            tables.extend(job.upstream_tables().map(|(t, _)| t.to_string()));
            let mark = self.catalog.change_mark(&tables).await?;
            if watch.is_none() && self.stale_marks.get(&name) == Some(&mark) {
                continue;
            }
            let Some(table) = self.catalog.table(job.table.as_str()).await? else {
                continue;
            };
            let fp = crate::fingerprint::fingerprint(job, &table.schema);
            let statuses = self
                .catalog
                .partitions_of(job.table.as_str(), i64::from(job.version))
                .await?;
            let reads = self
                .catalog
                .content_reads(job.table.as_str(), i64::from(job.version))
                .await?;
            let floor =
                watch.map(|w| now.naive_utc() - chrono::Duration::from_std(w).unwrap_or_default());
            let mut counts = StaleCounts::default();
            let mut stale = Vec::new();
            {
                let mut with_files = Staleness::new(&project, &self.catalog);
                let mut without = Staleness::new(&project, &self.catalog).without_files();
                // What every partition read, parsed once; the upstream partitions they
                // name looked up together rather than one query each.
                let reads: HashMap<&str, Reads> = reads
                    .iter()
                    .filter_map(|(k, t)| Some((k.as_str(), Reads::from_json(t.as_deref())?)))
                    .collect();
                without.prefetch(reads.values()).await?;
                if floor.is_some() {
                    with_files.prefetch(reads.values()).await?;
                }
                for p in &statuses {
                    let Ok(key) = job.parse_partition(&p.partition_key) else {
                        continue;
                    };
                    let watched = floor.is_some_and(|f| key.time.start().is_some_and(|s| s >= f));
                    let r = reads.get(p.partition_key.as_str());
                    let judge = if watched {
                        &mut with_files
                    } else {
                        &mut without
                    };
                    let Some(why) = judge.of(job, &fp, p, r).await? else {
                        continue;
                    };
                    match why.kind {
                        StaleKind::Code => counts.code += 1,
                        StaleKind::Upstream => counts.upstream += 1,
                        StaleKind::Input => counts.input += 1,
                    }
                    let rerun = match why.kind {
                        StaleKind::Code => false,
                        StaleKind::Upstream => job
                            .schedule
                            .as_ref()
                            .is_none_or(|s| s.on_upstream_change == OnUpstreamChange::Rerun),
                        StaleKind::Input => true,
                    };
                    if rerun && let Some(run) = p.content_run_id.clone() {
                        stale.push((key, why, run));
                    }
                }
            }
            let judged = stale.iter().map(|(key, _, _)| *key);
            let reruns = self.to_run_again(job, judged, &statuses);
            self.stale_reruns.insert(name.clone(), reruns);
            for (key, why, run) in stale {
                if self.queue_stale_one(job, key, now, run) {
                    info!(job = %name, partition = %key, why = %why, "partition is stale; running it again");
                }
            }
            self.stale_counts.insert(name.clone(), counts);
            self.stale_marks.insert(name, mark);
        }
        Ok(())
    }

    /// The partitions of `job` still to run again: those `judged` stale now, and those
    /// judged stale before that are running now (another daemon's rerun, most likely) until
    /// that run ends, so that what reads them waits for their new content instead of
    /// reading the old and running twice.
    fn to_run_again(
        &self,
        job: &Job,
        judged: impl Iterator<Item = PartitionKey>,
        statuses: &[crate::catalog::PartitionStatus],
    ) -> std::collections::BTreeSet<PartitionKey> {
        let mut reruns: std::collections::BTreeSet<PartitionKey> =
            judged.filter(|key| job.declares(key)).collect();
        if let Some(before) = self.stale_reruns.get(&job.name) {
            let running = statuses
                .iter()
                .filter(|p| p.state == crate::catalog::PartitionState::Running)
                .filter_map(|p| job.parse_partition(&p.partition_key).ok())
                .filter(|k| before.contains(k));
            reruns.extend(running);
        }
        reruns
    }

    /// Queues `key` of `job` to run again, unless it is queued or running here already.
    fn queue_stale_one(
        &mut self,
        job: &Job,
        key: PartitionKey,
        now: DateTime<Utc>,
        content_run: String,
    ) -> bool {
        let known = self.queue.iter().any(|p| p.job == job.name && p.key == key)
            || self.running.contains_key(&(job.name.clone(), key));
        if known || !job.declares(&key) {
            return false;
        }
        self.queue.push(Pending {
            job: job.name.clone(),
            key,
            due: now,
            queued_ms: self.clock.now_ms(),
            tried_after_ms: self.clock.now_ms(),
            why: Due::Stale { content_run },
            not_before: None,
            waiting_on: Vec::new(),
            requeued: 0,
        });
        true
    }

    /// The upstream partitions `key` of `job` reads that this daemon has queued or is
    /// running, or that are stale and to be run again (by this daemon or another: with two
    /// daemons the other may hold the rerun), as `job/partition`: a partition runs after
    /// them, so that it reads their new content once (day, then month).
    pub(super) fn upstream_busy(&self, job: &Job, key: &PartitionKey) -> Vec<String> {
        let project = self.runner.project();
        let mut out = Vec::new();
        for read in project.upstream_reads(job, key) {
            let (Some(up), Some(keys)) = (read.writer, read.keys.as_ref()) else {
                continue;
            };
            for k in keys {
                if self.running.contains_key(&(up.name.clone(), *k)) {
                    out.push(format!("{}/{k} (running here)", up.name));
                } else if self.queue.iter().any(|p| p.job == up.name && p.key == *k) {
                    out.push(format!("{}/{k} (queued here)", up.name));
                } else if self
                    .stale_reruns
                    .get(&up.name)
                    .is_some_and(|s| s.contains(k))
                {
                    out.push(format!("{}/{k} (stale, to run again)", up.name));
                }
            }
        }
        out
    }
}
