//! A temp copy of the sample project (or a project of given files), and the real binary
//! run inside it.

use super::json::strict_json;
use super::stores::{COPY_DIR, COPY_SOURCE, fetch_copy};
use super::stores::{create_database, remote_catalog, remote_warehouse, s3_objects};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_sluice");
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

pub struct TestProject {
    pub dir: tempfile::TempDir,
    /// This project's own PostgreSQL database, when the suite runs on PostgreSQL.
    pub catalog: Option<String>,
    /// This project's own bucket (`s3://NAME-<id>/`), when the warehouse is remote.
    pub warehouse: Option<String>,
    /// When the project was made: with `SLUICE_TEST_TIMES=FILE`, its lifetime is appended
    /// to FILE under its test's name, to find what makes the suite slow.
    made: std::time::Instant,
}

impl Drop for TestProject {
    fn drop(&mut self) {
        let Some(file) = std::env::var_os("SLUICE_TEST_TIMES") else {
            return;
        };
        let test = std::thread::current().name().unwrap_or("?").to_string();
        let line = format!("{:.1}\t{test}\n", self.made.elapsed().as_secs_f64());
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
    }
}

#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub cmd: String,
    pub dir: PathBuf,
}

impl Output {
    pub fn context(&self) -> String {
        format!(
            "\n--- command: {}\n--- folder: {}\n--- exit code: {}\n--- stdout:\n{}\n--- stderr:\n{}\n",
            self.cmd,
            self.dir.display(),
            self.code,
            self.stdout,
            self.stderr
        )
    }

    /// Asserts stdout holds `needle`; on failure shows the command and both streams.
    #[track_caller]
    pub fn says(&self, needle: &str) -> &Output {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}{}",
            self.context()
        );
        self
    }

    /// Asserts stderr holds `needle`; on failure shows the command and both streams.
    #[track_caller]
    pub fn complains(&self, needle: &str) -> &Output {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}{}",
            self.context()
        );
        self
    }

    /// stdout as JSON, parsed strictly: a key twice in one object fails the test (most
    /// parsers would keep one of the two silently).
    pub fn json(&self) -> serde_json::Value {
        strict_json(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not strict JSON ({e}){}", self.context()))
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let t = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &t);
        } else {
            std::fs::copy(&p, &t).unwrap();
        }
    }
}

impl TestProject {
    /// A fresh copy of the sample project (sluice.toml, jobs/, migrations/, sample-data/).
    pub fn sample() -> TestProject {
        let dir = tempfile::Builder::new()
            .prefix("sluice-it-")
            .tempdir()
            .unwrap();
        let repo = Path::new(REPO);
        for d in ["jobs", "migrations", "sample-data", "scripts"] {
            copy_dir(&repo.join(d), &dir.path().join(d));
        }
        std::fs::copy(repo.join("sluice.toml"), dir.path().join("sluice.toml")).unwrap();
        TestProject::in_dir(dir)
    }

    /// A project in `dir` with its own catalog and warehouse on the servers the suite runs
    /// against (none: SQLite and a local folder, from sluice.toml's defaults).
    fn in_dir(dir: tempfile::TempDir) -> TestProject {
        let catalog = remote_catalog().map(|admin| create_database(&admin));
        let warehouse = remote_warehouse().map(|root| {
            // A bucket of its own (see s3_objects.py), named after the suite's.
            let base = root.trim_end_matches('/');
            let bucket = format!("{base}-{}/", uuid::Uuid::now_v7().simple());
            s3_objects(&["bucket", &bucket]);
            bucket
        });
        TestProject {
            dir,
            catalog,
            warehouse,
            made: std::time::Instant::now(),
        }
    }

    /// Another checkout of this project (a pull request's working copy beside main's): its
    /// files copied to a folder of its own, on this project's catalog and warehouse. Read
    /// the tables through this project, whose helpers know where they are.
    pub fn checkout(&self) -> TestProject {
        let dir = tempfile::Builder::new()
            .prefix("sluice-it-checkout-")
            .tempdir()
            .unwrap();
        for d in ["jobs", "migrations", "sample-data", "scripts"] {
            if self.path().join(d).is_dir() {
                copy_dir(&self.path().join(d), &dir.path().join(d));
            }
        }
        std::fs::copy(self.file("sluice.toml"), dir.path().join("sluice.toml")).unwrap();
        let catalog = self.catalog.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}",
                self.path().join(".sluice/catalog.db").display()
            )
        });
        let warehouse = self
            .warehouse
            .clone()
            .unwrap_or_else(|| self.path().join("warehouse").display().to_string());
        TestProject {
            dir,
            catalog: Some(catalog),
            warehouse: Some(warehouse),
            made: std::time::Instant::now(),
        }
    }

    /// Whether the warehouse is on an object store (so the tests read copies of its files).
    pub fn remote(&self) -> bool {
        self.warehouse.is_some()
    }

    /// The settings overrides a process started on this project would get from the
    /// environment: for tests that build sluice's parts in-process.
    pub fn overrides(&self) -> sluice::config::Overrides {
        sluice::config::Overrides {
            project: Some(self.path().to_path_buf()),
            catalog: self.catalog.clone(),
            warehouse: self.warehouse.clone(),
            env: None,
        }
    }

    /// A fresh copy of the sample project with its migrations applied: where most tests
    /// start.
    pub fn migrated() -> TestProject {
        let p = TestProject::sample();
        p.ok(&["migrate"]);
        p
    }

    /// `sluice backfill --from FROM --to TO` of every job, insisting on success.
    pub fn backfill(&self, from: &str, to: &str) -> Output {
        self.ok(&["backfill", "--from", from, "--to", to])
    }

    /// A project made of just `files` (path, content), and a `sluice.toml` of defaults
    /// unless they give one: a folder without one is not a project.
    pub fn with_files(files: &[(&str, &str)]) -> TestProject {
        let p = TestProject::empty();
        if !files.iter().any(|(rel, _)| *rel == "sluice.toml") {
            p.write(
                "sluice.toml",
                "# a test project: every setting its default\n",
            );
        }
        for (rel, content) in files {
            p.write(rel, content);
        }
        p
    }

    /// [`TestProject::with_files`] of files a test made as strings of its own.
    pub fn with_owned_files(files: &[(String, String)]) -> TestProject {
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        TestProject::with_files(&refs)
    }

    /// An empty folder: not a project yet (for `init`, and for commands run outside one).
    pub fn empty() -> TestProject {
        let dir = tempfile::Builder::new()
            .prefix("sluice-it-")
            .tempdir()
            .unwrap();
        TestProject::in_dir(dir)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, rel: &str) -> PathBuf {
        self.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.file(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(p, content).unwrap();
    }

    /// Leaves the sample's jobs other than the order jobs out (the customer jobs and the
    /// exchange rates: their specs, SQL and tests): for the tests of the order jobs that run
    /// whole months, where 93 more partitions only cost time.
    pub fn only_order_jobs(&self) {
        for job in ["customers", "customers_history", "exchange_rates"] {
            for f in [
                format!("jobs/{job}.toml"),
                format!("jobs/{job}.sql"),
                format!("jobs/tests/{job}.toml"),
            ] {
                std::fs::remove_file(self.file(&f)).unwrap();
            }
        }
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.file(rel)).unwrap()
    }

    /// Gives the sample export of `day` (`2024-01-05`) an order whose status clean_orders'
    /// `accepted_values` check refuses, so that the day fails its check; returns the export
    /// as it was, to put back.
    pub fn break_export(&self, day: &str) -> String {
        let f = format!("sample-data/orders/dt={day}/orders.csv");
        let good = self.read(&f);
        self.write(&f, &good.replacen(",paid\n", ",lost\n", 1));
        good
    }

    /// Points a command at this project's catalog and warehouse: its own database and
    /// prefix on the remote servers, or (variables removed) sluice.toml's local defaults.
    pub fn set_stores(&self, c: &mut Command) {
        match &self.catalog {
            Some(url) => c.env("SLUICE_CATALOG", url),
            None => c.env_remove("SLUICE_CATALOG"),
        };
        match &self.warehouse {
            Some(url) => c.env("SLUICE_WAREHOUSE", url),
            None => c.env_remove("SLUICE_WAREHOUSE"),
        };
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(self.path()).args(args);
        self.set_stores(&mut c);
        c.env_remove("SLUICE_LOG")
            .env_remove("RUST_LOG")
            .env_remove("SLUICE_LOG_FORMAT")
            .env_remove("SLUICE_FAILPOINT")
            .env_remove("SLUICE_UI_TOKEN")
            .env_remove("OPENLINEAGE_URL")
            .env_remove("OPENLINEAGE_API_KEY")
            .env_remove("OPENLINEAGE_NAMESPACE")
            .env_remove("OPENLINEAGE_ENDPOINT");
        c
    }

    /// Runs sluice to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().expect("cannot start the sluice binary");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            cmd: format!("sluice {}", args.join(" ")),
            dir: self.path().to_path_buf(),
        }
    }

    /// Runs sluice to completion, and returns its peak resident memory (KiB) as the OS
    /// counts it: the process is run by a Python parent that reads `getrusage` of its
    /// children once it has exited.
    pub fn run_measuring_peak_rss(&self, args: &[&str]) -> (Output, u64) {
        let (out, usage) = self.run_measuring(args);
        (out, usage.peak_rss_kib)
    }

    /// Runs sluice to completion, and returns what the OS counted it used (`getrusage` of
    /// a Python parent's children once it has exited).
    pub fn run_measuring(&self, args: &[&str]) -> (Output, Usage) {
        const MARK: &str = "usage=";
        let c = self.command(args);
        let mut wrapped = Command::new("python3");
        wrapped
            .arg("-c")
            .arg(format!(
                "import resource, subprocess, sys\n\
                 r = subprocess.run(sys.argv[1:])\n\
                 u = resource.getrusage(resource.RUSAGE_CHILDREN)\n\
                 sys.stderr.write('\\n{MARK}%d %.6f\\n' % (u.ru_maxrss, u.ru_utime + u.ru_stime))\n\
                 sys.exit(r.returncode)"
            ))
            .arg(c.get_program())
            .args(c.get_args())
            .current_dir(self.path());
        for (k, v) in c.get_envs() {
            match v {
                Some(v) => wrapped.env(k, v),
                None => wrapped.env_remove(k),
            };
        }
        let out = wrapped.output().expect("cannot start python3");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let (stderr, usage) = match stderr.rsplit_once(MARK) {
            Some((before, said)) => {
                let mut said = said.split_whitespace();
                let usage = Usage {
                    peak_rss_kib: said.next().and_then(|v| v.parse().ok()).unwrap_or(0),
                    cpu_seconds: said.next().and_then(|v| v.parse().ok()).unwrap_or(0.0),
                };
                (before.to_string(), usage)
            }
            None => (stderr, Usage::default()),
        };
        assert!(
            usage.peak_rss_kib > 0,
            "no usage reported; stderr: {stderr}"
        );
        let out = Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
            cmd: format!("sluice {}", args.join(" ")),
            dir: self.path().to_path_buf(),
        };
        (out, usage)
    }

    /// Runs sluice and insists on exit code 0.
    pub fn ok(&self, args: &[&str]) -> Output {
        let o = self.run(args);
        assert_eq!(o.code, 0, "expected success{}", o.context());
        o
    }

    /// Starts sluice in the background, stderr to a file the test can watch.
    pub fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> (Child, PathBuf) {
        let log = self
            .path()
            .join(format!("spawn-{}.log", uuid::Uuid::now_v7()));
        let f = std::fs::File::create(&log).unwrap();
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c
            .stdout(Stdio::null())
            .stderr(Stdio::from(f))
            .spawn()
            .expect("cannot start the sluice binary");
        (child, log)
    }

    /// `sluice query SQL --output json`, as rows of JSON objects.
    pub fn query(&self, sql: &str) -> Vec<serde_json::Value> {
        self.ok(&["query", sql, "--output", "json"])
            .json()
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// A table version's folder. With a remote warehouse, a fresh local copy of its objects
    /// (absent when it has none), so that readers see exactly what sluice wrote.
    pub fn warehouse_table(&self, table: &str, version: u32) -> PathBuf {
        self.warehouse_dir(&format!("{table}/v{version}"))
    }

    /// The warehouse root; with a remote warehouse, a fresh local copy of all of it.
    pub fn warehouse_root(&self) -> PathBuf {
        self.warehouse_dir("")
    }

    /// The folder of a table location sluice printed (`sluice resolve`): the path of a
    /// `file://` URL, or a fresh local copy of an object-store prefix of this project.
    pub fn location_dir(&self, uri: &str) -> PathBuf {
        let u = url::Url::parse(uri).unwrap_or_else(|e| panic!("`{uri}` is not a URL: {e}"));
        if u.scheme() == "file" {
            return u.to_file_path().unwrap();
        }
        let root = self.warehouse.as_deref().unwrap_or_default();
        let rel = uri
            .strip_prefix(root)
            .unwrap_or_else(|| panic!("`{uri}` is outside this project's warehouse {root}"));
        self.warehouse_dir(rel.trim_end_matches('/'))
    }

    /// The folder of a job's dead-letter table (a fresh local copy on an object store).
    pub fn dead_letters_dir(&self, job: &str) -> PathBuf {
        self.warehouse_dir(&format!("_dead_letters/{job}"))
    }

    fn warehouse_dir(&self, rel: &str) -> PathBuf {
        let Some(root) = &self.warehouse else {
            return self.path().join("warehouse").join(rel);
        };
        std::fs::write(self.path().join(COPY_SOURCE), root).unwrap();
        let copy = self.path().join(COPY_DIR).join(rel);
        fetch_copy(root, rel, &copy);
        copy
    }

    /// Writes `content` at `rel` in the warehouse (a local file, or an object): for tests
    /// that damage a table on purpose.
    pub fn put_warehouse_object(&self, rel: &str, content: &str) {
        match &self.warehouse {
            None => {
                let path = self.path().join("warehouse").join(rel);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, content).unwrap();
            }
            Some(root) => {
                s3_objects(&["put", &format!("{root}{rel}"), content]);
            }
        }
    }

    /// Overwrites every data file of one partition of a table version with `content`: for
    /// tests that damage a file on purpose.
    pub fn overwrite_partition_files(
        &self,
        table: &str,
        version: u32,
        partition: &str,
        content: &str,
    ) {
        let rel = format!("{table}/v{version}/{partition}");
        match &self.warehouse {
            None => {
                let dir = self.path().join("warehouse").join(&rel);
                for f in std::fs::read_dir(&dir).unwrap().flatten() {
                    std::fs::write(f.path(), content).unwrap();
                }
            }
            Some(root) => {
                let n = s3_objects(&["overwrite", &format!("{root}{rel}"), content]);
                assert!(n > 0, "no objects under {root}{rel}");
            }
        }
    }
}

/// What a finished process used, as the OS counted it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Usage {
    pub peak_rss_kib: u64,
    /// User and system CPU time.
    pub cpu_seconds: f64,
}

/// Each order of the sample export (of one day, or all) `times` times over, under new order
/// ids (a copy's id is the order's plus a multiple of 1,000,000); rows whose id is not a
/// number, once.
pub fn enlarge_orders(p: &TestProject, times: u64, only_day: Option<&str>) {
    let dir = p.file("sample-data/orders");
    for day in std::fs::read_dir(&dir).unwrap() {
        let day = day.unwrap().path();
        if only_day.is_some_and(|d| !day.ends_with(format!("dt={d}"))) {
            continue;
        }
        let file = day.join("orders.csv");
        let text = std::fs::read_to_string(&file).unwrap();
        let mut lines = text.lines();
        let mut out = format!("{}\n", lines.next().unwrap());
        for line in lines {
            let (id, rest) = line.split_once(',').unwrap_or((line, ""));
            match id.parse::<u64>() {
                Ok(id) => {
                    for k in 0..times {
                        out.push_str(&format!("{},{rest}\n", id + k * 1_000_000));
                    }
                }
                Err(_) => out.push_str(&format!("{line}\n")),
            }
        }
        std::fs::write(&file, out).unwrap();
    }
}
