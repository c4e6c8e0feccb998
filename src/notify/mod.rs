//! Telling people: the events sluice sends (`EventKind`), the payload every target gets
//! (`Payload`, versioned and documented in the README), the targets of `[[notify]]`
//! (`settings`) and how a message reaches each (`send`: a signed webhook, a Slack message,
//! a command).

pub mod send;
pub mod settings;

pub use send::{SendError, send};
pub use settings::{
    BackfillTelling, Channel, DEFAULT_AT_MOST_EVERY, NotifySection, NotifyTarget, Secret, targets,
    wanting,
};

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
    /// A digest's events (`event = "digest"`): what came about one job while the target's
    /// window (`at_most_every`) was shut, each as it would have been sent alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Payload>,
    /// A digest's one line: "12 partitions of clean_orders failed: ...".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

/// The event of a digest's payload.
pub const DIGEST: &str = "digest";

/// How a digest's line names what its partitions did.
fn did(kind: &str) -> &str {
    match kind {
        "failed" => "failed",
        "check_failed" => "failed a check",
        "check_warned" => "warned on a check",
        "dead_letters" => "set rows aside",
        "deadline_missed" => "missed the deadline",
        "lease_lost" => "lost their worker",
        "recovered" => "recovered",
        other => other,
    }
}

/// Partitions listed by name in a digest's line; the rest are counted.
const LISTED: usize = 10;

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
            events: Vec::new(),
            summary: None,
        }
    }

    /// The payload of a message carrying `events` of `job` (at least two), under the
    /// message's `id`: one line says them all, each is kept whole.
    pub fn digest(id: String, job: &str, events: Vec<Payload>, at: String) -> Payload {
        let mut kinds: Vec<(&str, Vec<&str>)> = Vec::new();
        for e in &events {
            let p = e.partition.as_deref().unwrap_or("-");
            match kinds.iter_mut().find(|(k, _)| *k == e.event) {
                Some((_, ps)) => ps.push(p),
                None => kinds.push((e.event.as_str(), vec![p])),
            }
        }
        let said: Vec<String> = kinds
            .iter()
            .map(|(k, ps)| {
                let mut names = ps
                    .iter()
                    .take(LISTED)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ");
                if ps.len() > LISTED {
                    names.push_str(&format!(" and {} more", ps.len() - LISTED));
                }
                let n = ps.len();
                let what = if n == 1 { "partition" } else { "partitions" };
                format!("{n} {what} of {job} {}: {names}", did(k))
            })
            .collect();
        let first = &events[0];
        Payload {
            version: PAYLOAD_VERSION,
            id,
            event: DIGEST.into(),
            job: Some(job.to_string()),
            partition: None,
            run_id: None,
            error: None,
            at,
            link: first.link.clone(),
            project: first.project.clone(),
            summary: Some(said.join("; ")),
            events,
        }
    }

    /// One readable line for people (Slack): what, where, why, and the page.
    pub fn text(&self) -> String {
        let what = match self.event.as_str() {
            "test" => "a test message from sluice: this target is reached".to_string(),
            DIGEST => self.summary.clone().unwrap_or_default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, partition: &str) -> Payload {
        Payload {
            event: kind.into(),
            job: Some("clean_orders".into()),
            partition: Some(partition.into()),
            ..Payload::test("shop", 0, None)
        }
    }

    #[test]
    fn a_digest_says_each_kind_once_and_counts_what_it_does_not_name() {
        let mut events: Vec<Payload> = (1..=12)
            .map(|d| event("failed", &format!("2024-01-{d:02}")))
            .collect();
        events.push(event("recovered", "2024-01-03"));
        let d = Payload::digest(
            "m1".into(),
            "clean_orders",
            events,
            "2024-01-13T00:00:00.000Z".into(),
        );
        assert_eq!(d.event, DIGEST);
        assert_eq!(d.events.len(), 13);
        assert_eq!(
            d.summary.as_deref(),
            Some(
                "12 partitions of clean_orders failed: 2024-01-01, 2024-01-02, 2024-01-03, 2024-01-04, \
                 2024-01-05, 2024-01-06, 2024-01-07, 2024-01-08, 2024-01-09, 2024-01-10 and 2 more; \
                 1 partition of clean_orders recovered: 2024-01-03"
            )
        );
        assert!(
            d.text()
                .starts_with("[shop] 12 partitions of clean_orders failed: ")
        );
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["events"][12]["event"], "recovered");
        // A single event's payload has neither field.
        let one = serde_json::to_value(event("failed", "2024-01-01")).unwrap();
        assert!(one.get("events").is_none() && one.get("summary").is_none());
    }
}
