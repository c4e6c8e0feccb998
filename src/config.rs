//! Project settings: `sluice.toml`, then `SLUICE_*` environment variables, then command-line
//! flags, each overriding the one before. Relative paths are read from the project folder.

pub use crate::job::EngineKind;
use crate::redact::redact_url;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use url::Url;

pub const CONFIG_FILE: &str = "sluice.toml";
pub const DEFAULT_CATALOG: &str = "sqlite://.sluice/catalog.db";
pub const DEFAULT_WAREHOUSE: &str = "./warehouse";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("project folder {0} does not exist; pass --project DIR or run inside a project")]
    NoProject(PathBuf),
    #[error(
        "{0} is not a sluice project: it has no sluice.toml{above}. Run sluice inside a project \
         folder, pass --project DIR, or create one with `sluice init DIR`",
        above = if *.1 { " (nor has any folder above it)" } else { "" }
    )]
    NoConfig(PathBuf, bool),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("catalog URL `{url}` is not supported: use sqlite://PATH or postgres://HOST/DB")]
    CatalogScheme { url: String },
    #[error("warehouse `{url}` is not a path or a URL: {message}")]
    Warehouse { url: String, message: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    catalog: CatalogSection,
    #[serde(default)]
    warehouse: WarehouseSection,
    #[serde(default)]
    engine: EngineSection,
    #[serde(default)]
    runner: RunnerSection,
    #[serde(default)]
    daemon: DaemonSection,
    #[serde(default)]
    lineage: LineageSection,
    #[serde(default)]
    ui: UiSection,
    #[serde(default)]
    notify: Vec<crate::notify::NotifySection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UiSection {
    address: Option<String>,
    token_file: Option<String>,
    public_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LineageSection {
    transport: Option<String>,
    url: Option<String>,
    endpoint: Option<String>,
    path: Option<String>,
    namespace: Option<String>,
    timeout_seconds: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DaemonSection {
    max_concurrency: Option<usize>,
    grace_seconds: Option<f64>,
    metrics_address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunnerSection {
    lease_ttl_seconds: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogSection {
    url: Option<String>,
    /// How long run history is kept in full (`"90d"`); unset: forever.
    retention: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WarehouseSection {
    url: Option<String>,
    /// Opt out of the atomic-commit check for object stores that cannot refuse a second
    /// writer of one Delta log entry: only safe when a single process ever writes.
    allow_unsafe_commits: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EngineSection {
    memory_limit_mb: Option<usize>,
    target_partitions: Option<usize>,
    batch_size: Option<usize>,
    kind: Option<EngineKind>,
    scheduler: Option<String>,
    measure_cost: Option<bool>,
}

/// The Ballista scheduler that jobs of kind `ballista` send their queries to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheduler {
    /// A scheduler and an executor inside this process, started when first needed
    /// (`scheduler = "standalone"`): for trying Ballista out and for tests.
    Standalone,
    /// `df://host:port` (or `http://`): a running scheduler.
    At(String),
}

/// `[engine]`: the memory pool, the parallelism, and where jobs' queries run.
fn engine_settings(e: &EngineSection, path: &Path) -> Result<EngineSettings, ConfigError> {
    let parse = |message: String| ConfigError::Parse {
        path: path.to_path_buf(),
        message,
    };
    let engine = EngineSettings {
        memory_limit_bytes: e.memory_limit_mb.unwrap_or(2048) * 1024 * 1024,
        target_partitions: e.target_partitions.unwrap_or(2).max(1),
        batch_size: e.batch_size.unwrap_or(8192).max(1),
        kind: e.kind.unwrap_or_default(),
        scheduler: e
            .scheduler
            .as_deref()
            .map(Scheduler::parse)
            .transpose()
            .map_err(parse)?,
        measure_cost: e.measure_cost.unwrap_or(true),
    };
    if engine.kind == EngineKind::Ballista && engine.scheduler.is_none() {
        return Err(parse("engine.kind = \"ballista\" needs engine.scheduler: the scheduler's address (df://HOST:50050), or \"standalone\" for one inside this process".into()));
    }
    Ok(engine)
}

impl Scheduler {
    fn parse(text: &str) -> Result<Scheduler, String> {
        if text == "standalone" {
            return Ok(Scheduler::Standalone);
        }
        let url = Url::parse(text).map_err(|e| {
            format!("engine.scheduler = {text:?} is not a URL ({e}): use df://HOST:PORT, or \"standalone\"")
        })?;
        if !matches!(url.scheme(), "df" | "http") || url.host_str().is_none() {
            return Err(format!(
                "engine.scheduler = {text:?}: use df://HOST:PORT (the scheduler's gRPC address), or \"standalone\""
            ));
        }
        Ok(Scheduler::At(text.to_string()))
    }
}

impl std::fmt::Display for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scheduler::Standalone => f.write_str("standalone"),
            Scheduler::At(url) => f.write_str(url),
        }
    }
}

/// What the command line says about settings; `None` leaves the lower layers in charge.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub project: Option<PathBuf>,
    pub catalog: Option<String>,
    pub warehouse: Option<String>,
    /// The environment whose aliases readers see (`--env`); `None`: production's.
    pub env: Option<String>,
}

#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// DataFusion's memory pool; operators that can spill do so beyond it.
    pub memory_limit_bytes: usize,
    pub target_partitions: usize,
    pub batch_size: usize,
    /// Where jobs run unless their spec says otherwise.
    pub kind: EngineKind,
    /// The Ballista scheduler, when one is set.
    pub scheduler: Option<Scheduler>,
    /// Whether runs measure what they use (`cost`); off, they record no cost.
    pub measure_cost: bool,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub root: PathBuf,
    /// The catalog URL with relative SQLite paths made absolute. May hold a password: show
    /// it only through [`Settings::catalog_display`].
    pub catalog_url: String,
    /// The warehouse root as a URL (`file:///abs/path/` for a local folder).
    pub warehouse: Url,
    /// `[warehouse] allow_unsafe_commits` or `SLUICE_ALLOW_UNSAFE_COMMITS=1`: write even where
    /// the store cannot make a Delta commit atomic (see [`crate::delta::store::check_atomic_commits`]).
    pub allow_unsafe_commits: bool,
    pub engine: EngineSettings,
    /// How long a partition lease lasts without a heartbeat: how soon a killed worker's
    /// partitions can be taken over.
    pub lease_ttl: std::time::Duration,
    pub daemon: DaemonSettings,
    pub lineage: LineageSettings,
    pub ui: UiSettings,
    /// `[[notify]]`: where messages go.
    pub notify: Vec<crate::notify::NotifyTarget>,
    /// `[catalog] retention`: beyond this age only what the catalog needs to be correct
    /// is kept (`catalog::retention`); none: everything, forever.
    pub retention: Option<std::time::Duration>,
}

/// `[ui]` in sluice.toml and `SLUICE_UI_TOKEN`: where `sluice ui` listens, and the token
/// that guards the pages (required on any address but loopback).
#[derive(Clone)]
pub struct UiSettings {
    pub address: std::net::SocketAddr,
    /// `SLUICE_UI_TOKEN`; it wins over the file.
    pub token: Option<String>,
    /// `[ui] token_file`, relative to the project; read when the pages are served.
    pub token_file: Option<PathBuf>,
    /// `[ui] public_url`: where people reach the pages, for the links in messages.
    pub public_url: Option<Url>,
}

impl std::fmt::Debug for UiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UiSettings")
            .field("address", &self.address)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("token_file", &self.token_file)
            .finish()
    }
}

pub const DEFAULT_UI_ADDRESS: &str = "127.0.0.1:9465";

/// `[lineage]` in sluice.toml, then the OpenLineage client's environment variables
/// (`OPENLINEAGE_URL`, `OPENLINEAGE_API_KEY`, `OPENLINEAGE_ENDPOINT`,
/// `OPENLINEAGE_NAMESPACE`, `OPENLINEAGE_DISABLED`): where each run's OpenLineage events go.
#[derive(Debug, Clone)]
pub struct LineageSettings {
    pub transport: LineageTransport,
    /// The namespace of sluice's jobs in the events.
    pub namespace: String,
    /// How long one HTTP request may take; also the flush at exit.
    pub timeout: std::time::Duration,
}

#[derive(Clone)]
pub enum LineageTransport {
    /// No events (the default without `OPENLINEAGE_URL` or a `[lineage]` transport).
    None,
    /// POST each event as JSON to `url` + `endpoint`; `api_key` (from the environment only,
    /// never the file) as a bearer token.
    Http { url: Url, api_key: Option<String> },
    /// Append each event as one JSON line to a file.
    File { path: PathBuf },
    /// Each event as one JSON line on stderr.
    Console,
}

impl std::fmt::Debug for LineageTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineageTransport::None => write!(f, "None"),
            // The key is a secret: never shown.
            LineageTransport::Http { url, api_key } => write!(
                f,
                "Http {{ url: {}, api_key: {} }}",
                redact_url(url.as_str()),
                if api_key.is_some() { "(set)" } else { "(none)" }
            ),
            LineageTransport::File { path } => write!(f, "File {{ path: {} }}", path.display()),
            LineageTransport::Console => write!(f, "Console"),
        }
    }
}

pub const DEFAULT_LINEAGE_NAMESPACE: &str = "sluice";
pub const DEFAULT_LINEAGE_ENDPOINT: &str = "api/v1/lineage";

/// `[daemon]` in sluice.toml; `sluice daemon` flags override each.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// Partitions running at once over all jobs (each job has its own limit too).
    pub max_concurrency: usize,
    /// After SIGTERM, how long running partitions may take to finish before they are
    /// cancelled (leaving nothing behind: a partition is one commit).
    pub grace: std::time::Duration,
    /// Where the pages, `/metrics` and `/health` are served; `None` serves nothing.
    pub metrics_address: Option<std::net::SocketAddr>,
}

pub const DEFAULT_METRICS_ADDRESS: &str = "127.0.0.1:9464";

/// The daemon's address (pages, `/metrics`, `/health`), or `off`. Any address but
/// loopback also needs a token (`[ui]`), which the server checks when it starts.
pub fn parse_metrics_address(text: &str) -> Result<Option<std::net::SocketAddr>, String> {
    if text.is_empty() || text == "off" {
        return Ok(None);
    }
    let addr: std::net::SocketAddr = text
        .parse()
        .map_err(|_| format!("`{text}` is not HOST:PORT (e.g. 127.0.0.1:9464), or `off`"))?;
    Ok(Some(addr))
}

/// The project's folder: `--project DIR` when given, else the nearest folder holding a
/// sluice.toml from the working folder up (as git and cargo find theirs). A folder without
/// one is refused: a command run in the wrong folder would otherwise start an empty
/// catalog there and report "nothing has run", which reads as lost data.
fn project_root(given: Option<&Path>, cwd: &Path) -> Result<PathBuf, ConfigError> {
    if let Some(p) = given {
        let root = cwd.join(p);
        if !root.is_dir() {
            return Err(ConfigError::NoProject(root));
        }
        let root = root.canonicalize().unwrap_or(root);
        return match root.join(CONFIG_FILE).is_file() {
            true => Ok(root),
            false => Err(ConfigError::NoConfig(root, false)),
        };
    }
    let cwd = cwd.canonicalize().unwrap_or_else(|_| cwd.to_path_buf());
    match cwd.ancestors().find(|d| d.join(CONFIG_FILE).is_file()) {
        Some(root) => Ok(root.to_path_buf()),
        None => Err(ConfigError::NoConfig(cwd, true)),
    }
}

impl Settings {
    pub fn load(o: &Overrides) -> Result<Settings, ConfigError> {
        let cwd = std::env::current_dir().map_err(|source| ConfigError::Read {
            path: PathBuf::from("."),
            source,
        })?;
        let root = project_root(o.project.as_deref(), &cwd)?;
        let path = root.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let file: ConfigFile = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.clone(),
            message: crate::job::toml_message(&e, &text),
        })?;
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let catalog = o
            .catalog
            .clone()
            .or_else(|| env("SLUICE_CATALOG"))
            .or(file.catalog.url)
            .unwrap_or_else(|| DEFAULT_CATALOG.to_string());
        let warehouse = o
            .warehouse
            .clone()
            .or_else(|| env("SLUICE_WAREHOUSE"))
            .or(file.warehouse.url)
            .unwrap_or_else(|| DEFAULT_WAREHOUSE.to_string());
        let allow_unsafe_commits = match env("SLUICE_ALLOW_UNSAFE_COMMITS").as_deref() {
            Some("1" | "true" | "yes") => true,
            Some(_) => false,
            None => file.warehouse.allow_unsafe_commits.unwrap_or(false),
        };
        let engine = engine_settings(&file.engine, &path)?;
        let ttl = file.runner.lease_ttl_seconds.unwrap_or(30.0);
        if !(ttl.is_finite() && ttl >= 1.0) {
            return Err(ConfigError::Parse {
                path,
                message: format!("runner.lease_ttl_seconds = {ttl}: use at least 1 second"),
            });
        }
        let grace = file.daemon.grace_seconds.unwrap_or(30.0);
        if !(grace.is_finite() && grace >= 0.0) {
            return Err(ConfigError::Parse {
                path,
                message: format!("daemon.grace_seconds = {grace}: use 0 or more seconds"),
            });
        }
        let metrics_address = parse_metrics_address(
            file.daemon
                .metrics_address
                .as_deref()
                .unwrap_or(DEFAULT_METRICS_ADDRESS),
        )
        .map_err(|m| ConfigError::Parse {
            path: path.clone(),
            message: format!("daemon.metrics_address: {m}"),
        })?;
        let daemon = DaemonSettings {
            max_concurrency: file.daemon.max_concurrency.unwrap_or(2).max(1),
            grace: std::time::Duration::from_secs_f64(grace),
            metrics_address,
        };
        let lineage =
            lineage_settings(&root, file.lineage, &env).map_err(|m| ConfigError::Parse {
                path: path.clone(),
                message: format!("[lineage] {m}"),
            })?;
        let ui = ui_settings(&root, file.ui, &env).map_err(|m| ConfigError::Parse {
            path: path.clone(),
            message: format!("[ui] {m}"),
        })?;
        let notify =
            crate::notify::targets(&root, file.notify).map_err(|message| ConfigError::Parse {
                path: path.clone(),
                message,
            })?;
        let retention = retention_of(&path, file.catalog.retention.as_deref())?;
        Ok(Settings {
            notify,
            retention,
            daemon,
            lineage,
            ui,
            lease_ttl: std::time::Duration::from_secs_f64(ttl),
            catalog_url: resolve_catalog(&root, &catalog)?,
            warehouse: resolve_warehouse(&root, &warehouse)?,
            allow_unsafe_commits,
            root,
            engine,
        })
    }

    pub fn catalog_display(&self) -> String {
        redact_url(&self.catalog_url)
    }

    /// The project's name as pages and messages show it: its folder's.
    pub fn project_name(&self) -> String {
        self.root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    pub fn jobs_dir(&self) -> PathBuf {
        self.root.join("jobs")
    }

    pub fn migrations_dir(&self) -> PathBuf {
        self.root.join("migrations")
    }
}

fn ui_settings(
    root: &Path,
    file: UiSection,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<UiSettings, String> {
    let address = file.address.as_deref().unwrap_or(DEFAULT_UI_ADDRESS);
    Ok(UiSettings {
        address: address
            .parse()
            .map_err(|_| format!("address = `{address}` is not HOST:PORT (e.g. 127.0.0.1:9465)"))?,
        token: env("SLUICE_UI_TOKEN"),
        token_file: file.token_file.map(|f| root.join(f)),
        public_url: file
            .public_url
            .map(|u| {
                Url::parse(&u).map_err(|e| {
                    format!(
                        "public_url = `{u}` is not a URL (e.g. https://sluice.example.com/): {e}"
                    )
                })
            })
            .transpose()?,
    })
}

fn lineage_settings(
    root: &Path,
    file: LineageSection,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<LineageSettings, String> {
    let timeout = file.timeout_seconds.unwrap_or(5.0);
    if !(timeout.is_finite() && timeout > 0.0) {
        return Err(format!(
            "timeout_seconds = {timeout}: use more than 0 seconds"
        ));
    }
    let namespace = env("OPENLINEAGE_NAMESPACE")
        .or(file.namespace)
        .unwrap_or_else(|| DEFAULT_LINEAGE_NAMESPACE.to_string());
    let url = env("OPENLINEAGE_URL").or(file.url);
    let disabled = matches!(
        env("OPENLINEAGE_DISABLED").as_deref(),
        Some("1" | "true" | "TRUE" | "yes")
    );
    let kind = match (disabled, file.transport.as_deref(), &url) {
        (true, _, _) => "none",
        (false, Some(kind), _) => kind,
        (false, None, Some(_)) => "http",
        (false, None, None) => "none",
    };
    let transport = match kind {
        "none" => LineageTransport::None,
        "console" => LineageTransport::Console,
        "file" => {
            let p = file
                .path
                .ok_or("transport = \"file\" needs `path` (e.g. path = \"lineage.ndjson\")")?;
            let p = PathBuf::from(p);
            LineageTransport::File {
                path: if p.is_absolute() { p } else { root.join(p) },
            }
        }
        "http" => {
            let base = url.ok_or(
                "transport = \"http\" needs `url` or OPENLINEAGE_URL (e.g. http://localhost:5000)",
            )?;
            let endpoint = env("OPENLINEAGE_ENDPOINT")
                .or(file.endpoint)
                .unwrap_or_else(|| DEFAULT_LINEAGE_ENDPOINT.to_string());
            let mut url = Url::parse(&base)
                .map_err(|e| format!("url `{}` is not a URL: {e}", redact_url(&base)))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!(
                    "url `{}` is not http:// or https://",
                    redact_url(&base)
                ));
            }
            let path = format!(
                "{}/{}",
                url.path().trim_end_matches('/'),
                endpoint.trim_start_matches('/')
            );
            url.set_path(&path);
            LineageTransport::Http {
                url,
                api_key: env("OPENLINEAGE_API_KEY"),
            }
        }
        other => {
            return Err(format!(
                "transport = \"{other}\" is not known; use \"http\", \"file\", \"console\" or \"none\""
            ));
        }
    };
    Ok(LineageSettings {
        transport,
        namespace,
        timeout: std::time::Duration::from_secs_f64(timeout),
    })
}

/// `[catalog] retention`, checked.
fn retention_of(
    path: &Path,
    text: Option<&str>,
) -> Result<Option<std::time::Duration>, ConfigError> {
    text.map(|t| {
        crate::duration::parse_duration(t).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: format!("[catalog] retention = `{t}`: {e} (for example \"90d\")"),
        })
    })
    .transpose()
}

fn resolve_catalog(root: &Path, url: &str) -> Result<String, ConfigError> {
    if let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        if path.is_empty() || path == ":memory:" {
            return Err(ConfigError::CatalogScheme {
                url: url.to_string(),
            });
        }
        let path = Path::new(path);
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            root.join(path)
        };
        // `mode=rwc` creates the file on first use (its folder: `Catalog::connect`).
        // Reading the settings creates nothing: `validate` and `test` leave no trace.
        let query = query
            .map(|q| format!("{q}&mode=rwc"))
            .unwrap_or_else(|| "mode=rwc".into());
        return Ok(format!("sqlite://{}?{query}", abs.display()));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(url.to_string());
    }
    Err(ConfigError::CatalogScheme {
        url: redact_url(url),
    })
}

fn resolve_warehouse(root: &Path, url: &str) -> Result<Url, ConfigError> {
    let bad = |message: String| ConfigError::Warehouse {
        url: redact_url(url),
        message,
    };
    let mut u = if url.contains("://") {
        Url::parse(url).map_err(|e| bad(e.to_string()))?
    } else {
        let p = Path::new(url);
        let abs = if p.is_absolute() {
            p.to_path_buf()
        } else {
            root.join(p)
        };
        // Created by the first write into it (`delta::ensure_table`, the object store).
        let abs = abs.canonicalize().unwrap_or(abs);
        Url::from_directory_path(&abs).map_err(|_| bad("not an absolute path".into()))?
    };
    if !u.path().ends_with('/') {
        let p = format!("{}/", u.path());
        u.set_path(&p);
    }
    Ok(u)
}
