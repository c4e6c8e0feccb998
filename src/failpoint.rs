//! Named fault points for tests of the real binary. With `SLUICE_FAILPOINT=before_commit`
//! the process stops right before the Delta commit (files uploaded, nothing visible) and
//! waits to be killed; `after_commit` stops between the Delta commit and the catalog
//! update: the two moments that matter for promise 1. `transient_commit_error` fails the
//! first commit with an I/O error, to see the retry policy at work. Unset, they cost one
//! environment lookup.

/// Pauses forever at `name` if `SLUICE_FAILPOINT` names it.
pub async fn pause_if_set(name: &str) {
    let Ok(points) = std::env::var("SLUICE_FAILPOINT") else {
        return;
    };
    if points.split(',').any(|p| p.trim() == name) {
        tracing::warn!(
            failpoint = name,
            "paused at failpoint; waiting to be killed"
        );
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        }
    }
}

/// True the first time `name` is reached in this process when `SLUICE_FAILPOINT` names it:
/// for injecting one transient failure, to see it retried.
pub fn fail_once(name: &str) -> bool {
    use std::sync::Mutex;
    static FIRED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let Ok(points) = std::env::var("SLUICE_FAILPOINT") else {
        return false;
    };
    if !points.split(',').any(|p| p.trim() == name) {
        return false;
    }
    let mut fired = FIRED.lock().unwrap_or_else(|e| e.into_inner());
    if fired.iter().any(|f| f == name) {
        return false;
    }
    fired.push(name.to_string());
    true
}
