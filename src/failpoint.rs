//! Named fault points for tests of the real binary. With `SLUICE_FAILPOINT=before_commit`
//! the process stops right before the Delta commit (files uploaded, nothing visible) and
//! waits to be killed; `after_commit` stops between the Delta commit and the catalog
//! update: the two moments that matter for promise 1. `slow_commit` sleeps before the
//! commit (`SLUICE_FAILPOINT_DELAY_MS`, default 3 s), to stop a process mid-run. `transient_commit_error` fails the
//! first commit with an I/O error, to see the retry policy at work. `no_heartbeat` never
//! renews a run's lease, as when a starved runtime's heartbeat comes too late.
//! `dead_letters_write` fails the first write of a run's dead letters (rows set aside) with a
//! transient store error, to see that the partition is not published without them.
//! `executor_after_upload` stops a Ballista executor's write task of 100,000 rows or more
//! once its files are uploaded and before it reports them, for a test to kill the executor
//! in the middle of a partition and leave orphans. `merge_between_commits` stops a merge
//! job's run after its tombstones' commit and before its table's; `merge_after_another_commit`
//! holds a process's first merge, its files written, until another writer commits to the
//! table, so that its commit conflicts. `flip_midway` stops a
//! flip of several aliases after the first has changed, inside its transaction. Unset,
//! they cost one environment lookup.

/// Whether `SLUICE_FAILPOINT` names `name`.
pub fn is_set(name: &str) -> bool {
    std::env::var("SLUICE_FAILPOINT")
        .is_ok_and(|points| points.split(',').any(|p| p.trim() == name))
}

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

/// Sleeps `SLUICE_FAILPOINT_DELAY_MS` (default 3000) at `name` if `SLUICE_FAILPOINT` names
/// it: a run slow enough for a test to stop the process while it is under way.
pub async fn delay_if_set(name: &str) {
    let Ok(points) = std::env::var("SLUICE_FAILPOINT") else {
        return;
    };
    if points.split(',').any(|p| p.trim() == name) {
        let ms = std::env::var("SLUICE_FAILPOINT_DELAY_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(3000);
        tracing::warn!(failpoint = name, delay_ms = ms, "delaying at failpoint");
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
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
