//! The SQL engine: DataFusion over one partition's inputs.
//!
//! For a partition, only that partition's inputs are registered: file templates resolved for
//! its key, upstream tables through their alias with the partition filter pushed into the
//! Delta scan. `$partition`, `$partition_start` and `$partition_end` are bound as typed
//! parameters, never pasted into SQL text (promise 6). The engine knows nothing of the
//! catalog or of cron: the runner hands it resolved inputs.

pub mod bad_row_log;
pub mod bad_rows;
pub mod conform;
mod error;
pub mod fit;
mod inputs;
mod left_copies;
pub mod output;
pub mod record_id;
mod scratch;
mod upstream;

use crate::config::{EngineKind, EngineSettings};
use crate::job::{CsvOptions, FileFormat, InputSource, Job};
use crate::names::Name;
use crate::partition::PartitionKey;
use crate::schema::{Column, TableSchema};
use deltalake::arrow::datatypes::{Field, Schema, SchemaRef};
use deltalake::datafusion::catalog::{CatalogProviderList as _, MemoryCatalogProviderList};
use deltalake::datafusion::common::ParamValues;
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::SendableRecordBatchStream;
use deltalake::datafusion::execution::memory_pool::{
    FairSpillPool, MemoryConsumer, MemoryReservation,
};
use deltalake::datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use deltalake::datafusion::execution::{SessionState, SessionStateDefaults};
use deltalake::datafusion::prelude::{DataFrame, SQLOptions, SessionConfig, SessionContext};
use deltalake::datafusion::scalar::ScalarValue;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use bad_row_log::{BadRowError, BadRowLog};
pub use bad_rows::BadRow;
pub(crate) use error::clean as clean_message;
pub use error::{EngineError, execution_error};
use error::{clean, input_err};
use inputs::Registered;
pub use scratch::Scratch;
pub use upstream::{PartitionFilter, UpstreamData, UpstreamInput, upstream_filter};

/// What a job test gives a file input in place of the file its template names.
#[derive(Debug, Clone)]
pub enum FileFixture {
    /// A file in the input's format, read exactly as the real file would be (with the
    /// bad-row scan).
    File(PathBuf),
    /// Rows typed by the input's schema.
    Rows(Arc<MemTable>),
}

/// What the engine needs to run one partition of one job.
pub struct PartitionQuery<'a> {
    pub job: &'a Job,
    pub key: PartitionKey,
    pub upstream: Vec<UpstreamInput>,
    /// Bad rows of file inputs, found by a scan, to be left out.
    pub without_bad_rows: Option<BadRowLog>,
    /// File inputs a job test gives in place of their template's files, by input name.
    pub file_fixtures: HashMap<Name, FileFixture>,
    /// What each command input's program wrote, by input name (kept until the query ends).
    pub command_outputs: HashMap<Name, crate::command_input::CommandOutput>,
}

impl<'a> PartitionQuery<'a> {
    /// A run's query: the template's files and the upstream snapshots.
    pub fn new(job: &'a Job, key: PartitionKey, upstream: Vec<UpstreamInput>) -> Self {
        PartitionQuery {
            job,
            key,
            upstream,
            without_bad_rows: None,
            file_fixtures: HashMap::new(),
            command_outputs: HashMap::new(),
        }
    }
}

/// A planned partition query, ready to stream its output.
pub struct Prepared {
    pub df: DataFrame,
    /// The CSV and JSON files read, for the bad-row scan if execution fails on a parse
    /// error.
    pub text_files: Vec<TextFile>,
    /// Files the query reads that exist only for it (an input's copy without its bad
    /// rows): deleted when dropped, so they are kept as long as the query runs. On a
    /// cluster, in the warehouse's scratch prefix, where every executor reads them.
    pub scratch: Scratch,
}

/// A CSV or newline-delimited JSON input file with a declared schema: the files whose
/// unusable rows can be found by file and line, and left out.
#[derive(Debug, Clone)]
pub struct TextFile {
    pub input: Name,
    pub path: PathBuf,
    /// How its rows' file is named in dead letters, when not by its path (a command's
    /// output, read from a scratch file).
    pub shown: Option<String>,
    pub schema: SchemaRef,
    pub format: FileFormat,
    /// Header and delimiter (CSV only).
    pub options: CsvOptions,
}

/// See [`Engine::audit_reservation`].
pub struct AuditReservation {
    reservation: MemoryReservation,
    cap: usize,
}

impl AuditReservation {
    /// Takes `bytes` more; `false` (and nothing taken) when they do not fit.
    pub fn try_grow(&mut self, bytes: usize) -> bool {
        self.reservation.size() + bytes <= self.cap && self.reservation.try_grow(bytes).is_ok()
    }

    /// Gives everything back.
    pub fn free(&mut self) {
        self.reservation.free();
    }
}

pub struct Engine {
    runtime: Arc<RuntimeEnv>,
    settings: EngineSettings,
    root: PathBuf,
    /// A session as built once: each query's session starts from a copy of it, with a
    /// catalog of its own. Building one registers every built-in function, which cost a
    /// no-op partition more than planning its SQL.
    template: SessionState,
    /// Where a query on a cluster finds the files made for it: the warehouse (see
    /// [`Engine::with_shared_scratch`]).
    shared_scratch: Option<url::Url>,
}

impl Engine {
    /// Files made for a query on a cluster (an input's copy without its bad rows) go under
    /// `warehouse`'s `_sluice/scratch/`, where executors on other hosts read them.
    pub fn with_shared_scratch(mut self, warehouse: url::Url) -> Engine {
        self.shared_scratch = Some(warehouse);
        self
    }

    pub fn new(settings: &EngineSettings, root: &Path) -> Result<Engine, EngineError> {
        let runtime = RuntimeEnvBuilder::new()
            // Operators that can spill (sorts, aggregations, joins) do so past this limit,
            // so memory is bounded by configuration, not by partition size.
            // Metered: what a run's work reserves is counted against it (`cost`).
            .with_memory_pool(Arc::new(crate::cost::MeteredPool::new(Arc::new(
                FairSpillPool::new(settings.memory_limit_bytes),
            ))))
            .build_arc()
            .map_err(|e| EngineError::Setup(e.to_string()))?;
        // Local input files are read through a metered store too (`cost`).
        if let Ok(local) = url::Url::parse("file://") {
            let files = deltalake::logstore::object_store::local::LocalFileSystem::new();
            runtime.register_object_store(
                &local,
                Arc::new(crate::delta::MeteredStore::new(Arc::new(files))),
            );
        }
        let config = SessionConfig::new()
            .with_target_partitions(settings.target_partitions)
            .with_batch_size(settings.batch_size)
            // Line numbers in CSV errors stay meaningful when a file is read whole.
            .with_repartition_file_scans(false)
            .with_information_schema(false);
        let template = SessionContext::new_with_config_rt(config, runtime.clone()).state();
        Ok(Engine {
            runtime,
            settings: settings.clone(),
            root: root.to_path_buf(),
            template,
            shared_scratch: None,
        })
    }

    /// Room for a partition's new rows kept for its audit, taken from the engine's memory
    /// pool, so that the rows kept by partitions running at once and their queries share
    /// one budget (`[engine] memory_limit_mb`) instead of multiplying it. At most an eighth
    /// of the pool, and a fair share of what the queries leave: a reservation that cannot
    /// grow tells the runner to keep nothing and have the checks read the uploaded files
    /// back.
    pub fn audit_reservation(&self, what: String) -> AuditReservation {
        AuditReservation {
            reservation: MemoryConsumer::new(what)
                .with_can_spill(true)
                .register(&self.runtime.memory_pool),
            cap: self.settings.memory_limit_bytes / 8,
        }
    }

    /// A fresh session: the template's functions and settings, and an empty catalog of its
    /// own (a copy of the template shares the template's catalog, and the tables one
    /// partition registers must not be seen by another).
    pub(crate) fn session(&self) -> SessionContext {
        let ctx = SessionContext::new_with_state(self.template.clone());
        ctx.register_catalog_list(self.own_catalogs());
        ctx
    }

    /// A session for reading or rewriting one table outside a run (the dead letters, a
    /// migration's rewrite of a version's files), with DataFusion's defaults: what these
    /// read streams, and a run's memory pool is for runs. Sessions are made here only, so
    /// that what a session may hold is decided in one place.
    pub fn table_session() -> SessionContext {
        SessionContext::new()
    }

    /// A [`Engine::table_session`] whose operators give batches of `rows`: tests of what
    /// streams across batch boundaries.
    #[cfg(test)]
    pub fn table_session_in_batches_of(rows: usize) -> SessionContext {
        SessionContext::new_with_config(SessionConfig::new().with_batch_size(rows))
    }

    /// A fresh session like [`Engine::session`] whose settings `adapt` changes (a
    /// cluster's: Ballista's settings and codec).
    pub fn session_with(
        &self,
        adapt: impl FnOnce(SessionConfig) -> SessionConfig,
    ) -> SessionContext {
        let config = adapt(self.template.config().clone());
        let state = deltalake::datafusion::execution::SessionStateBuilder::new_from_existing(
            self.template.clone(),
        )
        .with_config(config)
        .build();
        let ctx = SessionContext::new_with_state(state);
        ctx.register_catalog_list(self.own_catalogs());
        ctx
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// An empty catalog like the template's, for one session.
    fn own_catalogs(&self) -> Arc<MemoryCatalogProviderList> {
        let t = &self.template;
        let catalogs = MemoryCatalogProviderList::new();
        catalogs.register_catalog(
            t.config().options().catalog.default_catalog.clone(),
            Arc::new(SessionStateDefaults::default_catalog(
                t.config(),
                t.table_factories(),
                t.runtime_env(),
            )),
        );
        Arc::new(catalogs)
    }

    /// Where `job`'s query runs: its spec's `[engine] kind`, else the project's.
    pub fn kind_of(&self, job: &Job) -> EngineKind {
        job.engine.unwrap_or(self.settings.kind)
    }

    /// The bound parameters of a partition: `$partition` (its time's text), its bounds,
    /// and `$key` for a job with a static dimension.
    pub fn params(job: &Job, key: &PartitionKey) -> HashMap<String, ScalarValue> {
        let ts = |t: Option<i64>| ScalarValue::TimestampMicrosecond(t, Some("UTC".into()));
        let (start, end) = match key.instant_bounds(job.partition_time_zone) {
            Some((s, e)) => (Some(s.timestamp_micros()), Some(e.timestamp_micros())),
            None => (None, None),
        };
        let mut params = HashMap::from([
            (
                "partition".to_string(),
                ScalarValue::Utf8(Some(key.time.to_string())),
            ),
            ("partition_start".to_string(), ts(start)),
            ("partition_end".to_string(), ts(end)),
        ]);
        if job.static_keys.is_some() {
            let k = key.key.map(|k| k.to_string());
            params.insert("key".to_string(), ScalarValue::Utf8(k));
        }
        params
    }

    /// Registers the partition's inputs and plans its SQL.
    pub async fn prepare(&self, q: &PartitionQuery<'_>) -> Result<Prepared, EngineError> {
        self.prepare_in(self.session(), q).await
    }

    /// [`Engine::prepare`] in `ctx`: a session made for a cluster plans the query the same
    /// way, with the cluster's settings.
    pub async fn prepare_in(
        &self,
        ctx: SessionContext,
        q: &PartitionQuery<'_>,
    ) -> Result<Prepared, EngineError> {
        let Registered {
            text_files,
            scratch,
        } = self.register_inputs(&ctx, q).await?;
        let df = plan_sql(&ctx, q.job, &Self::params(q.job, &q.key)).await?;
        Ok(Prepared {
            df,
            text_files,
            scratch,
        })
    }

    /// The first `limit` rows of each of the partition's inputs, as a run would read them
    /// (`sluice test --create` samples them).
    pub async fn sample_inputs(
        &self,
        q: &PartitionQuery<'_>,
        limit: usize,
    ) -> Result<
        Vec<(
            Name,
            SchemaRef,
            Vec<deltalake::arrow::record_batch::RecordBatch>,
        )>,
        (EngineError, Vec<TextFile>),
    > {
        let ctx = self.session();
        let Registered {
            text_files,
            scratch: _scratch,
        } = self
            .register_inputs(&ctx, q)
            .await
            .map_err(|e| (e, Vec::new()))?;
        let mut out = Vec::new();
        for input in &q.job.inputs {
            let df = ctx
                .table(input.name.as_str())
                .await
                .and_then(|df| df.limit(0, Some(limit)))
                .map_err(|e| (input_err(&input.name, e), text_files.clone()))?;
            let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
            let batches = df
                .collect()
                .await
                .map_err(|e| (execution_error(e), text_files.clone()))?;
            out.push((input.name.clone(), schema, batches));
        }
        Ok(out)
    }

    /// Finds the rows of the partition's CSV and JSON inputs that do not fit their declared
    /// schema.
    pub fn find_bad_rows(files: &[TextFile], root: &Path) -> Result<BadRowLog, EngineError> {
        let mut out = BadRowLog::default();
        for f in files {
            let shown = f.shown.clone().unwrap_or_else(|| {
                f.path
                    .strip_prefix(root)
                    .unwrap_or(&f.path)
                    .display()
                    .to_string()
            });
            bad_rows::scan(
                &f.path, &shown, &f.input, &f.schema, f.format, &f.options, &mut out,
            )
            .map_err(|source| EngineError::BadRowScan {
                input: f.input.to_string(),
                source,
            })?;
        }
        Ok(out)
    }

    /// How many records the text files hold (the denominator of a `max_bad_rows` fraction).
    pub fn count_records(files: &[TextFile]) -> u64 {
        files
            .iter()
            .filter_map(|f| bad_rows::count_records(&f.path, f.format, &f.options).ok())
            .sum()
    }

    /// Plans the job's SQL against empty tables of the declared schemas: what `validate`
    /// checks without reading data. Returns the output schema, or `None` when an input has
    /// no declared schema to plan against.
    pub async fn plan_against_schemas(
        &self,
        job: &Job,
        tables: &BTreeMap<Name, TableSchema>,
    ) -> Result<Option<SchemaRef>, EngineError> {
        let ctx = self.session();
        for input in &job.inputs {
            let schema = match &input.source {
                InputSource::Files { schema: None, .. } => return Ok(None),
                InputSource::Files {
                    schema: Some(cols), ..
                } => columns_schema(cols),
                InputSource::Table { table, .. } => match tables.get(table) {
                    Some(t) => t.to_arrow(),
                    None => return Ok(None),
                },
                InputSource::Command(c) => columns_schema(&c.schema),
                InputSource::Database(db) => columns_schema(&db.schema),
            };
            let empty =
                MemTable::try_new(schema, vec![vec![]]).map_err(|e| input_err(&input.name, e))?;
            ctx.register_table(input.name.as_str(), Arc::new(empty))
                .map_err(|e| input_err(&input.name, e))?;
        }
        let key = job.representative_partition();
        let df = plan_sql(&ctx, job, &Self::params(job, &key)).await?;
        // Type coercion runs in the optimizer: build the physical plan to see final types.
        let plan = df
            .create_physical_plan()
            .await
            .map_err(|e| EngineError::Sql {
                file: sql_file(job),
                message: clean(&e),
            })?;
        Ok(Some(plan.schema()))
    }
}

fn sql_file(job: &Job) -> String {
    format!(
        "jobs/{}",
        job.sql_path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
    )
}

async fn plan_sql(
    ctx: &SessionContext,
    job: &Job,
    params: &HashMap<String, ScalarValue>,
) -> Result<DataFrame, EngineError> {
    // A job is one query: no DDL, no DML, no SET. The table it writes is sluice's business.
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let sql_err = |e: DataFusionError| EngineError::Sql {
        file: sql_file(job),
        message: clean(&e),
    };
    let df = ctx
        .sql_with_options(&job.sql, options)
        .await
        .map_err(sql_err)?;
    df.with_param_values(ParamValues::from(params.clone()))
        .map_err(sql_err)
}

/// Runs the planned query; the output streams batch by batch.
pub async fn execute(df: DataFrame) -> Result<SendableRecordBatchStream, EngineError> {
    df.execute_stream().await.map_err(execution_error)
}

/// A file's extension with its dot (`.csv`), or nothing.
/// Where an input's files are, as DataFusion takes them: a path or an object's URL, and
/// the extension to accept (DataFusion filters files by it; any the template names goes).
pub(crate) struct FilesAt {
    location: String,
    extension: String,
}

impl FilesAt {
    fn path(path: &Path) -> FilesAt {
        FilesAt {
            location: path.to_string_lossy().to_string(),
            extension: file_extension(path),
        }
    }
}

pub(crate) fn file_extension(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.rfind('.').map(|i| n[i..].to_string()))
        .unwrap_or_default()
}

pub fn columns_schema(cols: &[Column]) -> SchemaRef {
    Arc::new(Schema::new(
        cols.iter()
            .map(|c| Field::new(c.name.as_str(), c.ty.to_arrow(), c.nullable))
            .collect::<Vec<_>>(),
    ))
}
