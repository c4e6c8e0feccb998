//! `[[notify]]` in sluice.toml: where messages go and which events each target wants.
//! Read here, checked whole (every problem names its target and how to fix it); secrets
//! (a webhook's URL, an HMAC key) come from the environment or a file and are read when a
//! message is sent, so no setting holds them and nothing prints them.

use super::EventKind;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// One `[[notify]]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySection {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    url: Option<String>,
    url_env: Option<String>,
    url_file: Option<String>,
    command: Option<Vec<String>>,
    events: Option<Vec<String>>,
    jobs: Option<Vec<String>>,
    secret_env: Option<String>,
    secret_file: Option<String>,
    at_most_every: Option<String>,
    backfill: Option<String>,
    dead_letters_over: Option<u64>,
}

/// Where a secret is read from when a message is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    /// Written in sluice.toml (a URL that is not secret).
    Plain(String),
    Env(String),
    File(PathBuf),
}

impl Secret {
    /// The value now; the error names where it was looked for, never the value.
    pub fn read(&self) -> Result<String, String> {
        match self {
            Secret::Plain(v) => Ok(v.clone()),
            Secret::Env(var) => std::env::var(var)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(|v| v.trim().to_string())
                .ok_or_else(|| format!("the environment variable {var} is not set")),
            Secret::File(path) => std::fs::read_to_string(path)
                .map(|t| t.lines().next().unwrap_or_default().trim().to_string())
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
                .and_then(|v| match v.is_empty() {
                    true => Err(format!("{} is empty", path.display())),
                    false => Ok(v),
                }),
        }
    }
}

/// How a target is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// The event's JSON, POSTed; signed when a secret is set.
    Webhook { url: Secret, secret: Option<Secret> },
    /// A Slack incoming webhook: a readable message.
    Slack { url: Secret },
    /// A program run with the event's JSON on its stdin (an argv, never a shell line).
    Command { argv: Vec<String> },
}

/// One checked `[[notify]]` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyTarget {
    /// Its name in messages and lists: `name`, or its type and place (`webhook#1`).
    pub name: String,
    pub channel: Channel,
    /// The events it wants (all of them unless `events` says).
    pub events: Vec<EventKind>,
    /// Only these jobs' events (every job's unless `jobs` says).
    pub jobs: Option<Vec<String>>,
    /// At most one message per job this often (`at_most_every`, 10 minutes unless set;
    /// zero sends each event alone): what comes in between is one digest.
    pub at_most_every: std::time::Duration,
    /// How a backfill's failures are told.
    pub backfill: BackfillTelling,
    /// `dead_letters` is told of a run that set aside more rows than this (0 unless set).
    pub dead_letters_over: u64,
}

/// The window of [`NotifyTarget::at_most_every`] when a target does not set one.
pub const DEFAULT_AT_MOST_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

crate::spelling::spelled_enum! {
    /// How a target hears of a backfill's failures (`backfill = ...`).
    pub enum BackfillTelling {
        /// One message at the backfill's end, listing what failed (the default).
        Summary => "summary",
        /// Each failed partition as it fails, as for the daemon's runs.
        PerPartition => "per_partition",
    }
}

impl NotifyTarget {
    /// Whether it wants events of `kind` about `job` (`None`: an event of no job, such as
    /// a daemon's start, which a target's `jobs` does not narrow).
    pub fn wants(&self, kind: EventKind, job: Option<&str>) -> bool {
        self.events.contains(&kind)
            && match (job, &self.jobs) {
                (Some(j), Some(jobs)) => jobs.iter().any(|x| x == j),
                _ => true,
            }
    }
}

/// The names of the targets that want events of `kind` about `job`.
pub fn wanting(targets: &[NotifyTarget], kind: EventKind, job: Option<&str>) -> Vec<String> {
    targets
        .iter()
        .filter(|t| t.wants(kind, job))
        .map(|t| t.name.clone())
        .collect()
}

/// Every `[[notify]]` target, checked; `root` resolves relative files.
pub fn targets(root: &Path, sections: Vec<NotifySection>) -> Result<Vec<NotifyTarget>, String> {
    let mut out: Vec<NotifyTarget> = Vec::new();
    for (i, s) in sections.into_iter().enumerate() {
        let t = target(root, i + 1, s)?;
        if out.iter().any(|o| o.name == t.name) {
            return Err(format!(
                "two [[notify]] targets are named `{}`: give each its own `name`",
                t.name
            ));
        }
        out.push(t);
    }
    Ok(out)
}

fn target(root: &Path, place: usize, s: NotifySection) -> Result<NotifyTarget, String> {
    let kind = s.kind.as_deref().unwrap_or_default();
    let name = s.name.clone().unwrap_or_else(|| format!("{kind}#{place}"));
    let at = |m: String| format!("[[notify]] `{name}` (the {place}. target): {m}");
    let url = || -> Result<Secret, String> {
        match (&s.url, &s.url_env, &s.url_file) {
            (Some(u), None, None) => {
                url::Url::parse(u).map_err(|e| at(format!("url = `{u}` is not a URL: {e}")))?;
                Ok(Secret::Plain(u.clone()))
            }
            (None, Some(v), None) => Ok(Secret::Env(v.clone())),
            (None, None, Some(f)) => Ok(Secret::File(root.join(f))),
            (None, None, None) => Err(at(
                "needs `url`, or `url_env`/`url_file` naming where the URL is kept (a Slack webhook's URL is a secret)".into(),
            )),
            _ => Err(at("give one of `url`, `url_env` and `url_file`".into())),
        }
    };
    let secret = match (&s.secret_env, &s.secret_file) {
        (None, None) => None,
        (Some(v), None) => Some(Secret::Env(v.clone())),
        (None, Some(f)) => Some(Secret::File(root.join(f))),
        _ => return Err(at("give one of `secret_env` and `secret_file`".into())),
    };
    let channel = match kind {
        "webhook" => Channel::Webhook {
            url: url()?,
            secret,
        },
        "slack" if secret.is_some() => {
            return Err(at(
                "a Slack webhook is not signed: remove `secret_env`/`secret_file`".into(),
            ));
        }
        "slack" => Channel::Slack { url: url()? },
        "command" => match &s.command {
            Some(argv) if !argv.is_empty() && !argv[0].trim().is_empty() => {
                Channel::Command { argv: argv.clone() }
            }
            _ => return Err(at("needs `command = [\"program\", \"arg\", ...]`".into())),
        },
        "" => {
            return Err(at(
                "needs `type = \"webhook\"`, `\"slack\"` or `\"command\"`".into(),
            ));
        }
        other => {
            return Err(at(format!(
                "type = `{other}` is not one of webhook, slack, command"
            )));
        }
    };
    if !matches!(channel, Channel::Command { .. }) && s.command.is_some() {
        return Err(at("`command` is for `type = \"command\"`".into()));
    }
    let events = match s.events {
        None => EventKind::ALL.to_vec(),
        Some(names) => names
            .iter()
            .map(|e| {
                e.parse::<EventKind>().map_err(|_| {
                    let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                    at(format!("event `{e}` is not one of {}", known.join(", ")))
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let at_most_every = match &s.at_most_every {
        None => DEFAULT_AT_MOST_EVERY,
        Some(t) => crate::duration::parse_duration(t).map_err(|e| {
            at(format!(
                "at_most_every = `{t}`: {e} (\"10m\", \"0s\" for no digests)"
            ))
        })?,
    };
    let backfill = match &s.backfill {
        None => BackfillTelling::Summary,
        Some(b) => b.parse().map_err(|_| {
            at(format!(
                "backfill = `{b}` is not `summary` (one message at the backfill's end) or `per_partition`"
            ))
        })?,
    };
    Ok(NotifyTarget {
        name,
        channel,
        events,
        jobs: s.jobs,
        at_most_every,
        backfill,
        dead_letters_over: s.dead_letters_over.unwrap_or(0),
    })
}
