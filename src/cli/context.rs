//! The composition root: the one place that turns settings into the program's parts (the
//! loaded project, the catalog connection, the clock, the engine, the runner) and hands
//! them to the library explicitly. Every command starts here, and so do the in-process
//! tests (with a manual clock).

use crate::catalog::Catalog;
use crate::clock::{SharedClock, SystemClock};
use crate::config::Overrides;
use crate::engine::Engine;
use crate::lineage::{Emitter, EventType, Parent, RunEvent};
use crate::project::Project;
use crate::run::{Runner, holder_id};
use std::sync::Arc;

pub struct Context {
    pub project: Arc<Project>,
    pub catalog: Catalog,
    pub clock: SharedClock,
    /// Where runs send OpenLineage events; linked to a parent run by [`Context::lineage_parent`].
    pub lineage: Emitter,
}

impl Context {
    /// Parts already made: the tests' way in (a project on disk, a catalog, a manual clock).
    pub fn new(project: Arc<Project>, catalog: Catalog, clock: SharedClock) -> Context {
        Context {
            project,
            catalog,
            clock,
            lineage: Emitter::disabled(),
        }
    }

    /// Sends OpenLineage events as the project's settings say (`[lineage]`).
    fn with_lineage(mut self) -> Context {
        self.lineage = Emitter::start(&self.project.settings.lineage);
        self
    }

    /// Links the runs of this process's runner to one parent run, `job` (a backfill, the
    /// daemon), and sends that run's START; [`Context::lineage_parent_end`] sends its end.
    pub fn lineage_parent(&mut self, job: &str) {
        let parent = Parent {
            job: job.to_string(),
            run_id: uuid::Uuid::now_v7().to_string(),
        };
        self.lineage = self.lineage.with_parent(parent.clone());
        self.lineage.emit(&RunEvent::of_parent(
            &parent,
            EventType::Start,
            self.clock.now(),
            None,
        ));
    }

    /// The parent run's end: COMPLETE, or FAIL with `error`.
    pub fn lineage_parent_end(&self, error: Option<String>) {
        if let Some(p) = self.lineage.parent() {
            let kind = match error {
                None => EventType::Complete,
                Some(_) => EventType::Fail,
            };
            self.lineage
                .emit(&RunEvent::of_parent(p, kind, self.clock.now(), error));
        }
    }

    /// The project as the flags, environment and sluice.toml say, its catalog opened, the
    /// system clock: what reading commands need.
    /// With `--env NAME`, its alias reads are the environment's.
    pub async fn open(overrides: &Overrides) -> anyhow::Result<Context> {
        let project = Project::load(overrides)?;
        let catalog = Catalog::connect(&project.settings.catalog_url).await?;
        let clock: SharedClock = Arc::new(SystemClock);
        let (project, catalog) = scoped(project, catalog, overrides, clock.now_ms()).await?;
        Ok(Context::new(Arc::new(project), catalog, clock))
    }

    /// Like [`Context::open`], for commands that change production's aliases or schemas
    /// but write no table (`promote`, `rollback`, `migrate`, `gc`): no `--env`.
    pub async fn open_production(overrides: &Overrides) -> anyhow::Result<Context> {
        production_only(overrides)?;
        Context::open(overrides).await
    }

    /// Like [`Context::open`], for commands that write to the warehouse: an object store
    /// that cannot refuse a second create is refused first (see `delta::store`).
    /// Production's: they take no `--env`.
    pub async fn open_for_writing(overrides: &Overrides) -> anyhow::Result<Context> {
        production_only(overrides)?;
        Context::open_env_for_writing(overrides).await
    }

    /// Like [`Context::open_for_writing`], for the one command that writes in an
    /// environment (`apply --env NAME`): the catalog scoped to it.
    pub async fn open_env_for_writing(overrides: &Overrides) -> anyhow::Result<Context> {
        let project = Project::load(overrides)?;
        crate::delta::store::check_atomic_commits(&project.settings).await?;
        let catalog = Catalog::connect(&project.settings.catalog_url).await?;
        let clock: SharedClock = Arc::new(SystemClock);
        let (project, catalog) = scoped(project, catalog, overrides, clock.now_ms()).await?;
        Ok(Context::new(Arc::new(project), catalog, clock).with_lineage())
    }

    /// The same parts, with `project` in place of this one's (an environment's build).
    pub fn with_project(&self, project: Project) -> Context {
        Context {
            project: Arc::new(project),
            catalog: self.catalog.clone(),
            clock: self.clock.clone(),
            lineage: self.lineage.clone(),
        }
    }

    /// Refuses a table name neither the project nor the catalog knows, with the one
    /// answer every command gives (`names::unknown`: a suggestion and the known names).
    pub async fn known_table(&self, table: &str) -> anyhow::Result<()> {
        match self.project.knows_table(table) {
            Ok(()) => Ok(()),
            Err(_) if self.catalog.table(table).await?.is_some() => Ok(()),
            Err(unknown) => Err(anyhow::anyhow!(unknown)),
        }
    }

    pub fn engine(&self) -> anyhow::Result<Engine> {
        Ok(Context::engine_of(&self.project)?
            .with_shared_scratch(self.project.settings.warehouse.clone()))
    }

    /// The project alone, for commands that need no catalog (`validate`, `test`, `notify`).
    pub fn load_project(overrides: &Overrides) -> anyhow::Result<Arc<Project>> {
        Ok(Arc::new(Project::load(overrides)?))
    }

    /// The engine of `project`, for commands that run SQL without a catalog.
    pub fn engine_of(project: &Project) -> anyhow::Result<Engine> {
        Ok(Engine::new(
            &project.settings.engine,
            &project.settings.root,
        )?)
    }

    /// A runner over this context's parts, leasing as this process.
    pub fn runner(&self) -> anyhow::Result<Runner> {
        Ok(Runner::new(
            self.project.clone(),
            self.catalog.clone(),
            self.engine()?,
            self.clock.clone(),
            holder_id(),
        )
        .with_lineage(self.lineage.clone()))
    }

    /// A daemon over this context's parts.
    pub fn daemon(
        &self,
        runner: Arc<Runner>,
        opts: crate::daemon::Options,
    ) -> crate::daemon::Daemon {
        crate::daemon::Daemon::new(runner, self.catalog.clone(), self.clock.clone(), opts)
    }

    /// Sends the notifications due now when the project has targets: a `run`'s or a
    /// `backfill`'s own news leaves at its end, daemon or not; what fails to go is retried
    /// by a daemon.
    pub async fn deliver_now(&self) {
        if self.project.settings.notify.is_empty() {
            return;
        }
        let client = reqwest::Client::new();
        let holder = holder_id();
        let passed = crate::app::deliver::deliver_due(
            &self.catalog,
            &client,
            &self.project,
            &holder,
            &*self.clock,
        );
        if let Err(e) = passed.await {
            tracing::warn!(error = %e, "could not send the notifications; a daemon sends them later");
        }
    }

    /// Sends what OpenLineage events are left (for a moment at most) and closes the catalog.
    pub async fn close(&self) {
        self.lineage.flush().await;
        self.catalog.close().await;
    }
}

/// Refuses an `--env` other than production's, for commands that change production.
fn production_only(overrides: &Overrides) -> anyhow::Result<()> {
    match overrides
        .env
        .as_deref()
        .filter(|e| *e != crate::catalog::PROD)
    {
        None => Ok(()),
        Some(env) => anyhow::bail!(
            "--env {env}: this command changes production; --env is for commands that read (query, resolve, diff, tables): drop it"
        ),
    }
}

/// `catalog` scoped to `--env` (production without), and `project` writing the versions
/// the aliases there stand for (`Project::at_live_versions`).
async fn scoped(
    project: Project,
    catalog: Catalog,
    overrides: &Overrides,
    now_ms: i64,
) -> anyhow::Result<(Project, Catalog)> {
    let catalog = match &overrides.env {
        None => catalog,
        Some(name) => in_env(catalog, name, now_ms).await?,
    };
    let project = project.at_live_versions(&catalog.env_built_live().await?);
    Ok((project, catalog))
}

/// `catalog`, its alias reads scoped to the environment `name`: refused when there is no
/// such environment, or it has lapsed.
async fn in_env(catalog: Catalog, name: &str, now_ms: i64) -> anyhow::Result<Catalog> {
    if name == crate::catalog::PROD {
        return Ok(catalog);
    }
    match catalog.env_row(name).await? {
        Some(e) if e.expired(now_ms) => anyhow::bail!(
            "--env {name}: the environment lapsed at {} (its --ttl); drop it (`sluice env drop {name}`) and create it again",
            crate::clock::shown_time(e.expires_at)
        ),
        Some(_) => Ok(catalog.in_env(name)),
        None => anyhow::bail!("--env: {}", unknown_env(&catalog, name).await?),
    }
}

/// The one answer to an environment name nobody knows: the nearest known name, and them all.
pub async fn unknown_env(catalog: &Catalog, name: &str) -> anyhow::Result<String> {
    let known: Vec<String> = catalog.envs().await?.into_iter().map(|e| e.name).collect();
    let known = known
        .iter()
        .map(String::as_str)
        .chain([crate::catalog::PROD]);
    Ok(crate::names::unknown("environment", name, known))
}
