//! The catalog out of reach: a PostgreSQL server of the test's own, stopped under a
//! running daemon for longer than the lease, with real processes.

use crate::util::{TestProject, is_root, stdout_of};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A PostgreSQL server of the test's own, on loopback, that the test can stop and start
/// (the suite's server is shared by the tests running beside this one). Stopped (by
/// `pg_ctl`) and its files removed when dropped.
struct OwnPostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl OwnPostgres {
    fn start() -> OwnPostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's server (bash .ci/run installs Debian's postgresql)")
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists())
            .max()
            .expect("an initdb under /usr/lib/postgresql/*/bin");
        let dir = tempfile::Builder::new()
            .prefix("sluice-own-pg-")
            .tempdir()
            .unwrap();
        let pg = OwnPostgres {
            bin,
            dir,
            port: crate::daemon_process::free_port(),
        };
        if is_root() {
            // PostgreSQL refuses to run as root: the cluster belongs to the postgres user.
            stdout_of(
                Command::new("chown").arg("postgres").arg(pg.dir.path()),
                "chown the cluster's folder",
            );
        }
        let data = pg.dir.path().join("data");
        stdout_of(
            &mut pg.as_owner(
                &pg.bin.join("initdb"),
                &["-D", data.to_str().unwrap(), "-U", "sluice", "-A", "trust"],
            ),
            "initdb",
        );
        pg.ctl("start");
        pg
    }

    fn as_owner(&self, program: &Path, args: &[&str]) -> Command {
        let mut c = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        c.args(args).current_dir(self.dir.path());
        c
    }

    /// `pg_ctl start` (waiting until it accepts connections) or `stop` (at once).
    fn ctl(&self, verb: &str) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("pg.log");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let mut args = vec!["-D", data.to_str().unwrap(), "-w"];
        match verb {
            "start" => args.extend(["-l", log.to_str().unwrap(), "-o", &opts, "start"]),
            _ => args.extend(["-m", "immediate", "stop"]),
        }
        stdout_of(
            &mut self.as_owner(&self.bin.join("pg_ctl"), &args),
            &format!("pg_ctl {verb}"),
        );
    }

    fn url(&self) -> String {
        format!("postgres://sluice@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self
            .as_owner(
                &self.bin.join("pg_ctl"),
                &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"],
            )
            .output();
    }
}

/// PostgreSQL stopped under a running daemon for longer than the lease (and than the
/// catalog pool's 30-second wait for a connection): the commit that could not confirm its
/// lease says so (not "taken over by another worker": there was none), nothing is
/// committed, and the daemon queues the partition again as a transient failure, which
/// then completes once the catalog is back.
#[test]
fn a_catalog_outage_longer_than_the_lease_is_said_and_run_again_by_the_daemon() {
    let pg = OwnPostgres::start();
    let today = chrono::Utc::now().date_naive();
    let from = (today - chrono::Duration::days(2)).to_string();
    let job = crate::daemon::daily_job("ticks", "cron = \"0 0 * * *\"\ntime_zone = \"UTC\"", &from);
    let mut files: Vec<(&str, &str)> = job.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    // No retry inside a run: the daemon's own requeue is what brings the partition back.
    let spec = job[0]
        .1
        .replace("time_zone = \"Europe/Berlin\"\n\n[output]", "\n[output]")
        + "\n[retry]\nmax_attempts = 1\nbackoff_seconds = 1\nmax_backoff_seconds = 2\n";
    files[0].1 = &spec;
    files.push(("sluice.toml", "[runner]\nlease_ttl_seconds = 2\n"));
    let mut p = TestProject::with_files(&files);
    p.catalog = Some(pg.url());
    p.ok(&["migrate"]);
    let (mut daemon, log) = p.spawn(
        &[
            "daemon",
            "--metrics-address",
            "off",
            "--max-concurrency",
            "1",
        ],
        &[
            ("SLUICE_FAILPOINT", "slow_commit"),
            ("SLUICE_FAILPOINT_DELAY_MS", "3000"),
        ],
    );
    crate::util::wait_for_text(&log, "delaying at failpoint", Duration::from_secs(60));
    pg.ctl("stop");
    // Longer than the lease, and than the pool's wait for a connection.
    std::thread::sleep(Duration::from_secs(35));
    pg.ctl("start");
    crate::daemon_process::wait_complete(&p, 2, Duration::from_secs(120));
    crate::util::sigterm(&daemon);
    crate::util::wait_exit(&mut daemon, Duration::from_secs(30));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("could not be reached to confirm this worker's lease"),
        "the failed commit says what happened:\n{text}"
    );
    assert!(
        !text.contains("taken over by another worker"),
        "no other worker existed:\n{text}"
    );
    assert!(
        text.contains("queued again"),
        "the daemon ran the partition again:\n{text}"
    );
    let dir = p.warehouse_table("ticks", 1);
    let commits = crate::util::commits_per_partition(&dir);
    assert_eq!(commits.len(), 2, "{commits:?}");
    assert!(
        commits.values().all(|n| *n == 1),
        "each day committed once: {commits:?}"
    );
}
