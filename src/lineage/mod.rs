//! OpenLineage: each partition run sends START and then COMPLETE, FAIL or ABORT to the
//! transport `[lineage]` names (HTTP, a file, the console). Sending never blocks or fails
//! a run: events go into a bounded queue that one task drains; when the queue is full an
//! event is dropped and counted, and a failed send is logged and forgotten. At exit the
//! queue is flushed for at most the transport's timeout.

mod event;

pub use event::{Dataset, EventType, Field, Output, Parent, RunEvent, producer};

use crate::config::{LineageSettings, LineageTransport};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::{mpsc, oneshot};

/// Events waiting to be sent; more are dropped (and counted) rather than wait.
const QUEUE: usize = 4096;

enum Msg {
    Event(serde_json::Value),
    /// Answered once every event queued before it is sent (or given up on).
    Flush(oneshot::Sender<()>),
}

struct Queue {
    tx: mpsc::Sender<Msg>,
    namespace: String,
    timeout: Duration,
    dropped: AtomicU64,
}

/// Where a process's events go: cheap to clone; a disabled one does nothing.
#[derive(Clone, Default)]
pub struct Emitter {
    queue: Option<Arc<Queue>>,
    parent: Option<Parent>,
}

impl Emitter {
    /// An emitter that sends nothing (no transport configured, or a test).
    pub fn disabled() -> Emitter {
        Emitter::default()
    }

    /// Starts the task that sends events as `settings` say. Call inside the runtime.
    pub fn start(settings: &LineageSettings) -> Emitter {
        if matches!(settings.transport, LineageTransport::None) {
            return Emitter::disabled();
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(send_all(rx, settings.transport.clone(), settings.timeout));
        Emitter {
            queue: Some(Arc::new(Queue {
                tx,
                namespace: settings.namespace.clone(),
                timeout: settings.timeout,
                dropped: AtomicU64::new(0),
            })),
            parent: None,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.queue.is_some()
    }

    /// The same emitter, its events linked to the run `parent` (a backfill, a daemon).
    pub fn with_parent(&self, parent: Parent) -> Emitter {
        Emitter {
            queue: self.queue.clone(),
            parent: Some(parent),
        }
    }

    pub fn parent(&self) -> Option<&Parent> {
        self.parent.as_ref()
    }

    /// Queues `event`; never waits. The parent's own events are sent without a parent.
    pub fn emit(&self, event: &RunEvent) {
        let Some(q) = &self.queue else {
            return;
        };
        let parent = self.parent.as_ref().filter(|p| p.run_id != event.run_id);
        let json = event.to_json(&q.namespace, parent);
        if q.tx.try_send(Msg::Event(json)).is_err()
            && q.dropped.fetch_add(1, Ordering::Relaxed) == 0
        {
            tracing::warn!(
                "OpenLineage events are coming faster than the transport takes them; dropping some (the runs go on)"
            );
        }
    }

    /// Waits, at most the transport's timeout, for the events queued so far to be sent.
    pub async fn flush(&self) {
        let Some(q) = &self.queue else {
            return;
        };
        let (ack, done) = oneshot::channel();
        let flushed = async {
            if q.tx.send(Msg::Flush(ack)).await.is_ok() {
                let _ = done.await;
            }
        };
        if tokio::time::timeout(q.timeout, flushed).await.is_err() {
            tracing::warn!(
                timeout_s = q.timeout.as_secs_f64(),
                "OpenLineage events not all sent before exit"
            );
        }
        let dropped = q.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "OpenLineage events dropped because the queue was full"
            );
        }
    }
}

/// The sending task: one event at a time, in order.
async fn send_all(mut rx: mpsc::Receiver<Msg>, transport: LineageTransport, timeout: Duration) {
    let mut sink = match Sink::open(&transport, timeout).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "OpenLineage transport unusable; no events will be sent");
            None
        }
    };
    let mut failures = 0u64;
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Flush(ack) => {
                if let Some(Sink::File(f)) = &mut sink {
                    let _ = f.flush().await;
                }
                let _ = ack.send(());
            }
            Msg::Event(event) => {
                let Some(s) = &mut sink else { continue };
                if let Err(e) = s.send(&event).await {
                    failures += 1;
                    // The first failure says why; later ones only at debug, not once per run.
                    if failures == 1 {
                        tracing::warn!(error = %e, "could not send an OpenLineage event (the run is not affected; later failures are logged at debug level)");
                    } else {
                        tracing::debug!(error = %e, failures, "could not send an OpenLineage event");
                    }
                }
            }
        }
    }
}

enum Sink {
    Http {
        client: reqwest::Client,
        url: url::Url,
        api_key: Option<String>,
    },
    File(tokio::fs::File),
    Console,
}

impl Sink {
    async fn open(t: &LineageTransport, timeout: Duration) -> Result<Sink, String> {
        Ok(match t {
            LineageTransport::None => return Err("no transport".into()),
            LineageTransport::Http { url, api_key } => Sink::Http {
                client: reqwest::Client::builder()
                    .timeout(timeout)
                    .build()
                    .map_err(|e| e.to_string())?,
                url: url.clone(),
                api_key: api_key.clone(),
            },
            LineageTransport::File { path } => {
                if let Some(dir) = path.parent() {
                    let _ = tokio::fs::create_dir_all(dir).await;
                }
                Sink::File(
                    tokio::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .await
                        .map_err(|e| format!("cannot open {}: {e}", path.display()))?,
                )
            }
            LineageTransport::Console => Sink::Console,
        })
    }

    async fn send(&mut self, event: &serde_json::Value) -> Result<(), String> {
        let mut line = serde_json::to_string(event).map_err(|e| e.to_string())?;
        match self {
            Sink::Http {
                client,
                url,
                api_key,
            } => {
                let mut req = client
                    .post(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(line);
                if let Some(k) = api_key {
                    req = req.bearer_auth(k);
                }
                let resp = req
                    .send()
                    .await
                    .map_err(|e| crate::redact::redact_text(&e.to_string()))?;
                if !resp.status().is_success() {
                    return Err(format!(
                        "{} answered {}",
                        crate::redact::redact_url(url.as_str()),
                        resp.status()
                    ));
                }
            }
            Sink::File(f) => {
                line.push('\n');
                f.write_all(line.as_bytes())
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Sink::Console => eprintln!("{line}"),
        }
        Ok(())
    }
}
