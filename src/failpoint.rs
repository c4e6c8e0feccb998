//! Named pause points for crash tests: with `SLUICE_FAILPOINT=before_commit` the process
//! stops right before the Delta commit (files uploaded, nothing visible) and waits to be
//! killed; `after_commit` stops between the Delta commit and the catalog update. Tests use
//! them to SIGKILL the real binary at the two moments that matter for promise 1.

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
