//! The outside world's controls: the once-a-minute wall-clock sweep and Unix signals.

use super::Control;
use tokio::sync::mpsc;
use tracing::info;

/// Starts the wall-clock sweep: a tokio-cron-scheduler job that sends [`Control::Wake`]
/// at every minute (every second when a job's cron has seconds).
pub async fn start_sweep(
    tx: mpsc::Sender<Control>,
    every_second: bool,
) -> Result<tokio_cron_scheduler::JobScheduler, tokio_cron_scheduler::JobSchedulerError> {
    let sched = tokio_cron_scheduler::JobScheduler::new().await?;
    let expr = if every_second {
        "* * * * * *"
    } else {
        "0 * * * * *"
    };
    let job = tokio_cron_scheduler::Job::new_async(expr, move |_id, _lock| {
        let tx = tx.clone();
        Box::pin(async move {
            // A full channel already holds a wake-up.
            let _ = tx.try_send(Control::Wake);
        })
    })?;
    sched.add(job).await?;
    sched.start().await?;
    Ok(sched)
}

/// Turns SIGTERM and SIGINT into [`Control::Stop`] and SIGHUP into [`Control::Reload`].
pub fn forward_signals(tx: mpsc::Sender<Control>) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            let c = tokio::select! {
                _ = term.recv() => Control::Stop,
                _ = int.recv() => Control::Stop,
                _ = hup.recv() => Control::Reload,
            };
            if c == Control::Stop {
                info!("stop signal received");
            }
            if tx.send(c).await.is_err() {
                return;
            }
        }
    });
    Ok(())
}
