//! Telling people: the events sluice sends (`EventKind`), the payload every target gets
//! (`Payload`, versioned and documented in the README), the targets of `[[notify]]`
//! (`settings`) and how a message reaches each (`send`: a signed webhook, a Slack message,
//! a command).

pub mod send;
pub mod settings;

pub use send::{SendError, send};
pub use settings::{Channel, NotifySection, NotifyTarget, Secret, targets, wanting};

crate::spelling::spelled_enum! {
    /// What happened: the events a target may ask for (`events = [...]`).
    pub enum EventKind {
        /// A partition failed after its retries.
        Failed => "failed",
        /// A check of severity `error` failed (nothing was published).
        CheckFailed => "check_failed",
        /// A check of severity `warn` failed (the partition was published).
        CheckWarned => "check_warned",
        /// More dead letters than the threshold.
        DeadLetters => "dead_letters",
        /// A partition was not complete by its job's deadline.
        DeadlineMissed => "deadline_missed",
        /// A lease was taken over from a worker that stopped.
        LeaseLost => "lease_lost",
        /// A partition that had failed succeeded.
        Recovered => "recovered",
        DaemonStarted => "daemon_started",
        DaemonStopped => "daemon_stopped",
    }
}

/// The payload's format; a change that is not an added field raises it.
pub const PAYLOAD_VERSION: u32 = 1;

/// What every target is sent (as JSON to a webhook and a command; as text to Slack).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Payload {
    /// [`PAYLOAD_VERSION`].
    pub version: u32,
    /// Unique per event, the same on every retry of its delivery: a receiver drops repeats
    /// by it.
    pub id: String,
    /// An [`EventKind`]'s spelling, or `test` (`sluice notify test`).
    pub event: String,
    pub job: Option<String>,
    pub partition: Option<String>,
    pub run_id: Option<String>,
    /// What went wrong, redacted.
    pub error: Option<String>,
    /// When it happened: RFC 3339, UTC.
    pub at: String,
    /// The partition's page (or the grid), when `[ui] public_url` is set.
    pub link: Option<String>,
    /// The project's folder name, to tell projects apart in one channel.
    pub project: String,
}

impl Payload {
    /// What `sluice notify test` sends.
    pub fn test(project: &str, at_ms: i64, public_url: Option<&url::Url>) -> Payload {
        Payload {
            version: PAYLOAD_VERSION,
            id: uuid::Uuid::now_v7().to_string(),
            event: "test".into(),
            job: None,
            partition: None,
            run_id: None,
            error: None,
            at: crate::clock::rfc3339(at_ms),
            link: public_url.map(|u| u.to_string()),
            project: project.to_string(),
        }
    }

    /// One readable line for people (Slack): what, where, why, and the page.
    pub fn text(&self) -> String {
        let what = match self.event.as_str() {
            "test" => "a test message from sluice: this target is reached".to_string(),
            e => {
                let mut s = e.replace('_', " ");
                if let Some(j) = &self.job {
                    s = format!("{j} {}: {s}", self.partition.as_deref().unwrap_or_default());
                }
                s
            }
        };
        let mut text = format!("[{}] {what}", self.project);
        if let Some(e) = &self.error {
            text.push_str(&format!(": {}", crate::text::one_line(e, 300)));
        }
        if let Some(r) = &self.run_id {
            text.push_str(&format!(" (run {r})"));
        }
        if let Some(l) = &self.link {
            text.push_str(&format!(" <{l}|open>"));
        }
        text
    }
}
