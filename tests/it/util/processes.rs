//! Helper programs, signals by process id, and waiting for a process or a line of its log.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Runs a helper program (psql, python3, curl) to the end and returns its stdout; the test
/// fails with `what` and the program's stderr if it cannot start or fails.
pub fn stdout_of(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until `path` contains `needle`, or panics after `timeout` with the file's text.
pub fn wait_for_text(path: &Path, needle: &str, timeout: Duration) {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return;
        }
        if start.elapsed() > timeout {
            panic!(
                "`{needle}` did not appear in {} within {timeout:?}:\n{text}",
                path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILL, by process id: the process gets no chance to clean up.
pub fn sigkill(child: &mut Child) {
    let status = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let _ = child.wait();
}

/// Whether the tests run as root (CI does): mounting a tmpfs and running PostgreSQL as its
/// own user need it.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// SIGTERM, by process id: the polite stop.
pub fn sigterm(child: &Child) {
    signal(child, "TERM");
}

/// Sends `sig` (TERM, STOP, CONT...) to the child, by process id.
pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {}", child.id());
}

pub fn wait_exit(child: &mut std::process::Child, within: Duration) -> i32 {
    let start = std::time::Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        assert!(
            start.elapsed() < within,
            "the daemon did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
