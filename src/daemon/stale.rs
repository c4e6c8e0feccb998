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
//! counts until it ends) (day, then month); once rerun it read the new content and is no
//! longer stale. A poll judges again only what changed since the last (`stale_watch`).

use super::Daemon;
use super::queue::{Due, Pending};
use super::stale_watch::{JobWatch, Judge, marks_of};
use crate::catalog::CatalogError;
use crate::job::{Job, OnUpstreamChange};
use crate::partition::PartitionKey;
use crate::provenance::{Reads, StaleKind, Staleness};
use chrono::{DateTime, Utc};
use std::collections::{BTreeSet, HashMap};
use tracing::info;

impl Daemon {
    /// Queues the partitions stale because of their data, per each job's policy.
    pub(super) async fn queue_stale(&mut self, now: DateTime<Utc>) -> Result<(), CatalogError> {
        let project = self.runner.project();
        let changes = self.catalog.table_changes().await?;
        let recheck_code = std::mem::take(&mut self.stale_recheck_code);
        for name in project.graph.order.iter() {
            if self.jobs.get(name).is_none_or(|st| st.invalid.is_some()) {
                continue;
            }
            let Some(job) = project.jobs.get(name) else {
                continue;
            };
            let watch = job.schedule.as_ref().and_then(|s| s.watch_inputs);
            let mut tables = vec![job.table.to_string()];
            tables.extend(job.upstream_tables().map(|(t, _)| t.to_string()));
            let marks = marks_of(&tables, &changes);
            let known = self.stale_watch.get(name);
            let moved = known.is_none_or(|w| w.moved(&marks));
            if watch.is_none() && !moved && !recheck_code {
                continue;
            }
            let Some(table) = self.catalog.table(job.table.as_str()).await? else {
                continue;
            };
            let fp = crate::fingerprint::fingerprint(job, &table.schema);
            let judge = match known {
                Some(w) if watch.is_none() && w.judged_code(job, &fp) => {
                    w.to_judge(&self.catalog, job, &marks).await?
                }
                _ => Judge::All,
            };
            let keys = match judge {
                Judge::Nothing => continue,
                Judge::Some(keys) => Some(keys.into_iter().collect::<Vec<_>>()),
                Judge::All => None,
            };
            self.judge_stale(job, fp, keys, marks, watch, now).await?;
        }
        Ok(())
    }

    /// Judges the partitions `keys` of `job` (all of them when `None`), queues those to run
    /// again and records the judging.
    async fn judge_stale(
        &mut self,
        job: &Job,
        fp: String,
        keys: Option<Vec<String>>,
        marks: std::collections::BTreeMap<String, crate::catalog::TableChange>,
        watch: Option<std::time::Duration>,
        now: DateTime<Utc>,
    ) -> Result<(), CatalogError> {
        let project = self.runner.project();
        let (table, version) = (job.table.as_str(), i64::from(job.version));
        let statuses = match &keys {
            None => self.catalog.partitions_of(table, version).await?,
            Some(k) if k.is_empty() => Vec::new(),
            Some(k) => self.catalog.partitions_named(table, version, k).await?,
        };
        let reads = match &keys {
            Some(k) if k.is_empty() => HashMap::new(),
            k => {
                self.catalog
                    .content_reads_named(table, version, k.as_deref())
                    .await?
            }
        };
        let judged: Option<BTreeSet<PartitionKey>> = keys.as_ref().map(|k| {
            k.iter()
                .filter_map(|k| job.parse_partition(k).ok())
                .collect()
        });
        let floor =
            watch.map(|w| now.naive_utc() - chrono::Duration::from_std(w).unwrap_or_default());
        let mut stale = Vec::new();
        // What every partition read, parsed once; the upstream partitions they name looked
        // up together rather than one query each.
        let reads: HashMap<&str, Reads> = reads
            .iter()
            .filter_map(|(k, t)| Some((k.as_str(), Reads::from_json(t.as_deref())?)))
            .collect();
        {
            let mut with_files = Staleness::new(&project, &self.catalog);
            let mut without = Staleness::new(&project, &self.catalog).without_files();
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
                if let Some(why) = judge.of(job, &fp, p, r).await? {
                    stale.push((key, why, p.content_run_id.clone()));
                }
            }
        }
        let name = job.name.clone();
        let rerun_of = |kind: StaleKind| match kind {
            StaleKind::Code => false,
            StaleKind::Upstream => job
                .schedule
                .as_ref()
                .is_none_or(|s| s.on_upstream_change == OnUpstreamChange::Rerun),
            StaleKind::Input => true,
        };
        let judged_stale = stale
            .iter()
            .filter(|(_, why, run)| rerun_of(why.kind) && run.is_some())
            .map(|(key, _, _)| *key);
        let reruns = self.to_run_again(job, judged_stale, &statuses, judged.as_ref());
        self.stale_reruns.insert(name.clone(), reruns);
        let kinds: Vec<(PartitionKey, StaleKind)> =
            stale.iter().map(|(k, why, _)| (*k, why.kind)).collect();
        for (key, why, run) in stale {
            let Some(run) = run.filter(|_| rerun_of(why.kind)) else {
                continue;
            };
            if self.queue_stale_one(job, key, now, run) {
                info!(job = %name, partition = %key, why = %why, "partition is stale; running it again");
            }
        }
        let w = self
            .stale_watch
            .entry(name)
            .or_insert_with(|| JobWatch::new(job, fp.clone(), marks.clone()));
        if !w.judged_code(job, &fp) {
            *w = JobWatch::new(job, fp, marks.clone());
        }
        w.record(judged.as_ref(), kinds.into_iter(), &reads, job, marks);
        Ok(())
    }

    /// The partitions of `job` still to run again: those `judged` stale now, and those
    /// judged stale before that are running now (another daemon's rerun, most likely) until
    /// that run ends, so that what reads them waits for their new content instead of
    /// reading the old and running twice. When only `some` partitions were judged (their
    /// `statuses`), the others stay as they were.
    fn to_run_again(
        &self,
        job: &Job,
        judged: impl Iterator<Item = PartitionKey>,
        statuses: &[crate::catalog::PartitionStatus],
        some: Option<&BTreeSet<PartitionKey>>,
    ) -> BTreeSet<PartitionKey> {
        let before = self.stale_reruns.get(&job.name);
        let mut reruns: BTreeSet<PartitionKey> = match (some, before) {
            (Some(some), Some(before)) => before.difference(some).copied().collect(),
            _ => BTreeSet::new(),
        };
        reruns.extend(judged.filter(|key| job.declares(key)));
        if let Some(before) = before {
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
