//! A project loaded from disk: settings, job specs, migrations and the graph between them.
//!
//! Loading never stops at the first problem: every problem is collected with its file, the
//! jobs without problems stay usable (the daemon goes on with them; `validate` lists all).

pub mod migration_files;

use crate::config::{ConfigError, Overrides, Settings};
use crate::job::graph::Graph;
use crate::job::{InputSource, Job, SpecError, UpstreamPartitions};
use crate::names::Name;
use crate::partition::PartitionKey;
use crate::schema::TableSchema;
use migration_files::MigrationFile;
use std::collections::BTreeMap;

/// What one partition of a job reads of one upstream table.
#[derive(Debug, Clone)]
pub struct UpstreamRead<'p> {
    /// The input's name in the job's SQL.
    pub input: &'p Name,
    pub table: &'p Name,
    /// The job that writes the table, when the project has a valid one.
    pub writer: Option<&'p Job>,
    /// The upstream partitions read; `None` when the whole table is read.
    pub keys: Option<Vec<PartitionKey>>,
}

#[derive(Debug, Clone)]
pub struct Project {
    pub settings: Settings,
    /// Jobs that passed every check.
    pub jobs: BTreeMap<Name, Job>,
    pub migrations: Vec<MigrationFile>,
    /// Table schemas as the migration files declare them (applied or not).
    pub declared: BTreeMap<Name, TableSchema>,
    pub graph: Graph,
    /// Everything wrong with the project, one entry per problem.
    pub problems: Vec<SpecError>,
}

impl Project {
    pub fn load(o: &Overrides) -> Result<Project, ConfigError> {
        let settings = Settings::load(o)?;
        Ok(Self::load_with(settings))
    }

    pub fn load_with(settings: Settings) -> Project {
        let root = settings.root.clone();
        let mut problems = Vec::new();
        let (migrations, errs) = migration_files::load(&root);
        problems.extend(errs);
        let (declared, errs) = migration_files::declared_schemas(&migrations);
        problems.extend(errs);

        let mut jobs = BTreeMap::new();
        let jobs_dir = settings.jobs_dir();
        let mut spec_paths: Vec<_> = match std::fs::read_dir(&jobs_dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect(),
            Err(e) => {
                problems.push(SpecError {
                    file: "jobs/".into(),
                    message: format!("cannot list the job specs: {e}"),
                });
                Vec::new()
            }
        };
        spec_paths.sort();
        for p in spec_paths {
            match Job::load(&root, &p) {
                Ok(job) => {
                    jobs.insert(job.name.clone(), job);
                }
                Err(errs) => problems.extend(errs),
            }
        }
        let (graph, errs) = Graph::build(&root, &mut jobs, &declared);
        problems.extend(errs);
        // A target's `jobs` naming no job would quietly never be told anything.
        for t in &settings.notify {
            for j in t.jobs.iter().flatten() {
                if !jobs.contains_key(j.as_str())
                    && !settings.jobs_dir().join(format!("{j}.toml")).is_file()
                {
                    problems.push(SpecError {
                        file: crate::config::CONFIG_FILE.into(),
                        message: format!(
                            "[[notify]] `{}`: {}",
                            t.name,
                            crate::names::unknown("job", j, jobs.keys().map(Name::as_str))
                        ),
                    });
                }
            }
        }
        Project {
            settings,
            jobs,
            migrations,
            declared,
            graph,
            problems,
        }
    }

    /// This project with the jobs of `versions` writing those physical versions instead of
    /// the ones their specs name: an environment's build (`app::env_apply`). Only where a
    /// run writes changes; the code, and so its fingerprint, is the spec's.
    pub fn at_versions(&self, versions: &BTreeMap<Name, u32>) -> Project {
        let mut moved = self.clone();
        for (name, v) in versions {
            if let Some(job) = moved.jobs.get_mut(name) {
                job.version = *v;
            }
        }
        moved
    }

    /// This project with each job writing the version an alias points at when that version
    /// was built by an environment for the `version` the job's spec names (`built`: table
    /// to such a version and the spec version it stands for, as `Catalog::env_built_live`
    /// reads them). After `env promote`, production's runs write the promoted tables, not
    /// the numbers in the specs; a spec that names another number builds that one, beside.
    pub fn at_live_versions(&self, built: &BTreeMap<String, (i64, i64)>) -> Project {
        let versions: BTreeMap<Name, u32> = self
            .jobs
            .values()
            .filter_map(|job| {
                let (version, stands_for) = built.get(job.table.as_str())?;
                let version = u32::try_from(*version).ok()?;
                (*stands_for == i64::from(job.spec_version)).then(|| (job.name.clone(), version))
            })
            .collect();
        self.at_versions(&versions)
    }

    /// The valid job that writes `table`, if any.
    pub fn writer_of(&self, table: &str) -> Option<&Job> {
        self.graph.writer.get(table).and_then(|w| self.jobs.get(w))
    }

    /// Which upstream partitions partition `key` of `job` reads, per table input: the one
    /// rule that the run's input filters, the daemon's waits and a backfill's dependencies
    /// follow. `partitions = "same"` reads the upstream partitions that cover the same
    /// time (an hourly upstream under a daily job: its 24 hours), from the writer's `start`
    /// on, and of the same key when both have the same key column (`"all_keys"`: of every
    /// key); `"all"`, or an upstream no valid job writes, the whole table.
    pub fn upstream_reads<'p>(&'p self, job: &'p Job, key: &PartitionKey) -> Vec<UpstreamRead<'p>> {
        job.inputs
            .iter()
            .filter_map(|input| match &input.source {
                InputSource::Table {
                    table,
                    partitions,
                    window,
                } => {
                    let writer = self.writer_of(table.as_str());
                    let keys = match (partitions, writer) {
                        (UpstreamPartitions::All, _) | (_, None) => None,
                        (UpstreamPartitions::Same | UpstreamPartitions::AllKeys, Some(w)) => {
                            let mut keys = Vec::new();
                            for at in window_of(key, *window) {
                                for k in same_time(job, &at, w, *partitions) {
                                    if !keys.contains(&k) {
                                        keys.push(k);
                                    }
                                }
                            }
                            Some(keys)
                        }
                    };
                    Some(UpstreamRead {
                        input: &input.name,
                        table,
                        writer,
                        keys,
                    })
                }
                InputSource::Files { .. } | InputSource::Command(_) | InputSource::Database(_) => {
                    None
                }
            })
            .collect()
    }

    /// Whether `name` is a job of this project: loaded, or with a spec file that has
    /// problems (its history is still shown); else what to say, with a suggestion.
    pub fn knows_job(&self, name: &str) -> Result<(), String> {
        let spec = self.settings.jobs_dir().join(format!("{name}.toml"));
        match self.jobs.contains_key(name) || (Name::new(name).is_ok() && spec.is_file()) {
            true => Ok(()),
            false => Err(self.unknown_job(name)),
        }
    }

    fn unknown_job(&self, name: &str) -> String {
        crate::names::unknown("job", name, self.jobs.keys().map(Name::as_str))
    }

    /// Whether `name` is a table of this project (a migration declares it or a job writes
    /// it); else what to say, with a suggestion.
    pub fn knows_table(&self, name: &str) -> Result<(), String> {
        let known: std::collections::BTreeSet<&str> = self
            .declared
            .keys()
            .map(Name::as_str)
            .chain(self.graph.writer.keys().map(|t| t.as_str()))
            .collect();
        match known.contains(name) {
            true => Ok(()),
            false => Err(crate::names::unknown("table", name, known)),
        }
    }

    /// The job named `name`, or the problems that keep it from running.
    pub fn job(&self, name: &str) -> Result<&Job, Vec<SpecError>> {
        if let Some(j) = self.jobs.get(name) {
            return Ok(j);
        }
        let file = format!("jobs/{name}.toml");
        let mine: Vec<SpecError> = self
            .problems
            .iter()
            .filter(|p| p.file == file)
            .cloned()
            .collect();
        if !mine.is_empty() {
            return Err(mine);
        }
        if self
            .settings
            .jobs_dir()
            .join(format!("{name}.toml"))
            .exists()
        {
            return Err(vec![SpecError {
                file,
                message: "the job cannot run because a job it reads from is invalid; run `sluice validate`".into(),
            }]);
        }
        Err(vec![SpecError {
            file,
            message: self.unknown_job(name),
        }])
    }
}

/// The partitions of upstream job `w` that partition `key` of `job` reads: those covering
/// its time (from the writer's `start` on: earlier ones never exist, and nothing waits for
/// them), of the same key when both jobs have the same key column and `partitions` is
/// `same`, else of every key the writer declares.
/// The partitions of this job a window names around `key` (just `key` without one), oldest
/// first; a window that reaches past the calendar's ends is cut there.
fn window_of(key: &PartitionKey, window: Option<crate::job::Window>) -> Vec<PartitionKey> {
    let Some(w) = window else {
        return vec![*key];
    };
    let shift = |n: i32| {
        let mut t = Some(key.time);
        for _ in 0..n.unsigned_abs() {
            t = t.and_then(|t| if n < 0 { t.prev() } else { t.next() });
        }
        t
    };
    (w.from..=w.to)
        .filter_map(shift)
        .map(|time| PartitionKey::new(time, key.key))
        .collect()
}

fn same_time(
    job: &Job,
    key: &PartitionKey,
    w: &Job,
    partitions: UpstreamPartitions,
) -> Vec<PartitionKey> {
    let same_key = partitions == UpstreamPartitions::Same
        && key.key.is_some()
        && job.key_column() == w.key_column();
    key.covering(w.granularity)
        .into_iter()
        .filter(|t| w.start.is_none_or(|s| *t >= s))
        .flat_map(|t| w.partitions_at(t))
        .filter(|p| !same_key || p.key == key.key)
        .collect()
}
