//! Jobs on Apache Ballista: the same SQL, the same rows. `[engine] kind = "ballista"` sends
//! a job's partition to a scheduler (`scheduler = "standalone"`: one in the sluice
//! process), whose executors compute it and write its files; upstream tables reach them as
//! their snapshot's Parquet files, and sluice commits.

use crate::util::{TestProject, python_rows, stdout_of};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const TABLES: [&str; 4] = [
    "clean_orders",
    "daily_revenue",
    "monthly_region_revenue",
    "regional_orders",
];

/// How many files the table's current version holds, as Python's deltalake reads it.
fn python_file_count(dir: &Path) -> usize {
    let script = r#"
import sys
from deltalake import DeltaTable
print(len(DeltaTable(sys.argv[1]).file_uris()), flush=True)
import os; os._exit(0)
"#;
    stdout_of(
        Command::new("python3").args(["-c", script]).arg(dir),
        "the Python deltalake reader",
    )
    .trim()
    .parse()
    .expect("a file count")
}

/// The sample month, every job, once on the embedded engine and once on Ballista's
/// standalone mode: each table holds the same rows, read by Python's deltalake.
#[test]
fn the_sample_month_on_ballista_writes_what_the_embedded_engine_writes() {
    let embedded = TestProject::sample();
    let cluster = TestProject::sample();
    for p in [&embedded, &cluster] {
        p.only_order_jobs();
    }
    cluster.write(
        "sluice.toml",
        &format!(
            "{}kind = \"ballista\"\nscheduler = \"standalone\"\n",
            cluster.read("sluice.toml")
        ),
    );
    for p in [&embedded, &cluster] {
        p.ok(&["migrate"]);
        let out = p.backfill("2024-01-01", "2024-01-31");
        // Nothing failed: no line at error level (deltalake's resolved conflicts,
        // Ballista's failed job whose bad rows sluice then sets aside, are not errors).
        let errors: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.contains(" ERROR "))
            .collect();
        assert!(errors.is_empty(), "{errors:#?}{}", out.context());
    }
    for t in TABLES {
        let want = python_rows(&embedded.warehouse_table(t, 1));
        assert!(!want.is_empty(), "{t} is empty on the embedded engine");
        let got = python_rows(&cluster.warehouse_table(t, 1));
        crate::util::assert_same_rows(t, &got, &want);
    }
}

/// A scheduler that cannot be reached fails the partition naming its address, and
/// nothing is written.
#[test]
fn an_unreachable_scheduler_is_named() {
    let p = TestProject::sample();
    p.write(
        "sluice.toml",
        &format!(
            "{}kind = \"ballista\"\nscheduler = \"df://127.0.0.1:9\"\n",
            p.read("sluice.toml")
        ),
    );
    p.ok(&["migrate"]);
    let out = p.run(&["run", "clean_orders", "--partition", "2024-01-05"]);
    assert_eq!(out.code, 1, "{}", out.context());
    out.complains("127.0.0.1:9");
    assert!(
        crate::util::data_files(&p.warehouse_table("clean_orders", 1)).is_empty(),
        "{}",
        out.context()
    );
}

/// `kind = "ballista"` without a scheduler, or a scheduler that is not an address, is
/// refused when the settings are read, saying what to write.
#[test]
fn a_ballista_engine_without_a_scheduler_is_refused() {
    let p = TestProject::sample();
    let base = p.read("sluice.toml");
    p.write("sluice.toml", &format!("{base}kind = \"ballista\"\n"));
    let out = p.run(&["validate"]);
    assert_eq!(out.code, 2, "{}", out.context());
    out.complains("engine.scheduler");
    p.write(
        "sluice.toml",
        &format!("{base}kind = \"ballista\"\nscheduler = \"scheduler-host\"\n"),
    );
    let out = p.run(&["validate"]);
    assert_eq!(out.code, 2, "{}", out.context());
    out.complains("df://HOST:PORT");
}

/// `sluice ballista` processes of a test, SIGKILLed when it ends, however it ends.
struct Cluster {
    processes: Vec<(Child, PathBuf)>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (child, _) in &mut self.processes {
            if matches!(child.try_wait(), Ok(None)) {
                crate::util::sigkill(child);
            }
        }
    }
}

impl Cluster {
    fn logs(&self) -> String {
        self.processes
            .iter()
            .map(|(_, log)| std::fs::read_to_string(log).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n----\n")
    }
}

/// Waits until something listens on `port` of the loopback.
fn wait_for_port(port: u16, cluster: &Cluster) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "nothing listens on port {port}:\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts an executor elsewhere than the client, as on another host: in a mount namespace
/// of its own where `hidden` (the client's temporary folder) is an empty tmpfs, with a
/// temporary folder and a working folder of its own. Needs root (CI runs as root).
fn spawn_elsewhere(
    p: &TestProject,
    args: &[&str],
    env: &[(&str, &str)],
    hidden: &Path,
) -> (Child, PathBuf) {
    let own = p
        .path()
        .join(format!("executor-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(own.join("tmp")).unwrap();
    let log = own.join("executor.log");
    let inner = p.command(args);
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs tmpfs \"$0\" && exec \"$@\"")
        .arg(hidden)
        .arg(inner.get_program())
        .args(inner.get_args())
        .current_dir(&own)
        .env("TMPDIR", own.join("tmp"));
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let child = c
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("unshare (util-linux) runs the executor in a mount namespace of its own");
    (child, log)
}

/// Starts a scheduler on loopback (executors taken for dead after 6 s of silence) and
/// two executors of one task slot each, the first with `failpoint` set, both away from
/// the client's temporary folder `hidden` (see [`spawn_elsewhere`]); returns the
/// scheduler's address.
fn start_cluster(p: &TestProject, failpoint: &str, hidden: &Path) -> (Cluster, String) {
    let port = crate::daemon_process::free_port;
    let scheduler = format!("127.0.0.1:{}", port());
    let mut cluster = Cluster {
        processes: Vec::new(),
    };
    cluster.processes.push(p.spawn(
        &[
            "ballista",
            "scheduler",
            "--bind",
            &scheduler,
            "--executor-timeout",
            "6",
        ],
        &[],
    ));
    wait_for_port(
        scheduler.rsplit_once(':').unwrap().1.parse().unwrap(),
        &cluster,
    );
    for env in [vec![("SLUICE_FAILPOINT", failpoint)], vec![]] {
        let (flight, grpc) = (port(), port());
        let (f, g) = (flight.to_string(), grpc.to_string());
        let args = [
            "ballista",
            "executor",
            "--scheduler",
            &scheduler,
            "--port",
            &f,
            "--grpc-port",
            &g,
            "--concurrent-tasks",
            "1",
            "--heartbeat",
            "1",
        ];
        cluster
            .processes
            .push(spawn_elsewhere(p, &args, &env, hidden));
        wait_for_port(flight, &cluster);
    }
    (cluster, scheduler)
}

/// A real cluster on loopback: a scheduler and two executor processes, all
/// `sluice ballista`. The sample month gives every table the embedded engine's rows; then
/// a day of about 2M orders runs while the executor writing it is SIGKILLed in the middle:
/// the partition ends complete and committed once, with the embedded engine's content
/// (rows, distinct ids, total), read by Python's deltalake. The executors run as on other
/// hosts: the client's temporary folder is not theirs (the copy of a day's orders without
/// its bad rows reaches them through the warehouse), nor is its working folder.
#[test]
fn a_real_cluster_writes_what_the_embedded_engine_writes_though_an_executor_dies() {
    let (embedded, on_cluster) = (TestProject::sample(), TestProject::sample());
    for p in [&embedded, &on_cluster] {
        p.only_order_jobs();
    }
    let client_tmp = on_cluster.path().join("client-tmp");
    std::fs::create_dir_all(&client_tmp).unwrap();
    let client_env = [("TMPDIR", client_tmp.to_str().unwrap())];
    let (mut cluster, scheduler) = start_cluster(&on_cluster, "executor_after_upload", &client_tmp);
    on_cluster.write(
        "sluice.toml",
        &format!(
            "{}kind = \"ballista\"\nscheduler = \"df://{scheduler}\"\n",
            on_cluster.read("sluice.toml")
        ),
    );
    for p in [&embedded, &on_cluster] {
        p.ok(&["migrate"]);
        let out = p.run_env(
            &["backfill", "--from", "2024-01-01", "--to", "2024-01-31"],
            &client_env,
        );
        assert_eq!(out.code, 0, "{}\n{}", out.context(), cluster.logs());
    }
    for t in TABLES {
        let want = python_rows(&embedded.warehouse_table(t, 1));
        let got = python_rows(&on_cluster.warehouse_table(t, 1));
        crate::util::assert_same_rows(t, &got, &want);
    }
    // The copies without bad rows were put in the warehouse's scratch prefix, and taken
    // away once read.
    let scratch = on_cluster.warehouse_root().join("_sluice/scratch");
    let left = std::fs::read_dir(&scratch).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "scratch objects left in {}", scratch.display());

    // About 2M orders on 2024-01-05, the only day run (other days would make its volume
    // check fail), read in two ranges: a task on each executor. The first executor stops
    // once its files are uploaded, before it reports them, and is killed; the scheduler
    // finds it lost and runs its task again on the other.
    const DAY: &str = "2024-01-05";
    // Here only this job goes to the cluster, by its spec's `[engine] kind`; sluice.toml
    // names the scheduler and keeps the embedded engine for the others.
    let (embedded, on_cluster) = (TestProject::sample(), TestProject::sample());
    on_cluster.write(
        "sluice.toml",
        &format!(
            "{}scheduler = \"df://{scheduler}\"\n",
            on_cluster.read("sluice.toml")
        ),
    );
    let spec = on_cluster.read("jobs/clean_orders.toml");
    on_cluster.write(
        "jobs/clean_orders.toml",
        &format!("{spec}\n[engine]\nkind = \"ballista\"\n"),
    );
    for p in [&embedded, &on_cluster] {
        crate::util::enlarge_orders(p, 11_000, Some(DAY));
        p.ok(&["migrate"]);
    }
    embedded.ok(&["run", "clean_orders", "--partition", DAY]);
    let (mut run, run_log) =
        on_cluster.spawn(&["run", "clean_orders", "--partition", DAY], &client_env);
    let doomed = cluster.processes[1].1.clone();
    crate::util::wait_for_text(&doomed, "paused at failpoint", Duration::from_secs(300));
    crate::util::sigkill(&mut cluster.processes[1].0);
    let code = crate::util::wait_exit(&mut run, Duration::from_secs(600));
    let log = std::fs::read_to_string(&run_log).unwrap_or_default();
    assert_eq!(code, 0, "{log}\n{}", cluster.logs());
    let scheduler_log = std::fs::read_to_string(&cluster.processes[0].1).unwrap_or_default();
    assert!(
        scheduler_log.contains("lost Executor"),
        "the scheduler did not see the executor go: {}",
        cluster.logs()
    );

    let summary = |p: &TestProject| {
        crate::util::python_delta_summary(
            &p.warehouse_table("clean_orders", 1),
            "dt",
            DAY,
            "order_id",
            "amount",
        )
    };
    let (want, got) = (summary(&embedded), summary(&on_cluster));
    assert!(want.0 > 1_900_000, "{want:?}");
    assert_eq!(got, want, "rows, distinct order ids, total amount");
    // Committed once, with the files of the tasks that finished; the dead task's files are
    // orphans beside them, in no commit (vacuum's to remove after the retention).
    let table = on_cluster.warehouse_table("clean_orders", 1);
    let commits = crate::util::commits_per_partition(&table);
    assert_eq!(commits.get(DAY), Some(&1), "{commits:?}");
    let on_disk = crate::util::data_files(&table).len();
    let committed = python_file_count(&table);
    assert_eq!(committed, 2, "one file per task");
    assert!(
        on_disk > committed,
        "{on_disk} files on disk, {committed} committed"
    );
}
