//! `sluice notify test`: a test message to each `[[notify]]` target, to see that it is
//! reached (and signed as the receiver expects) before anything fails for real; `sluice
//! notify list`: the recent events and how each delivery stands.

use super::context::Context;
use super::{EXIT_FAILED, EXIT_OK, EXIT_UNUSABLE, Globals, Outcome, output};
use crate::catalog::DeliveryState;
use crate::notify::{self, Payload};

#[derive(Debug, clap::Subcommand)]
pub enum NotifySub {
    /// Send a test message to each target of `[[notify]]` in sluice.toml (or to the one
    /// named); exit 1 if one is not reached.
    Test {
        /// Only this target (its `name`, or `TYPE#N` for the Nth target without one).
        #[arg(long, value_name = "NAME")]
        target: Option<String>,
    },
    /// The newest events and, per target, whether each was delivered, is being retried
    /// (with the last error) or was given up.
    List {
        /// How many events.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

pub async fn notify(g: &Globals, sub: NotifySub) -> Outcome {
    match sub {
        NotifySub::Test { target } => test(g, target).await,
        NotifySub::List { limit } => list(g, limit).await,
    }
}

async fn list(g: &Globals, limit: i64) -> Outcome {
    let cx = Context::open(&g.overrides).await?;
    let rows = cx.catalog.recent_deliveries(limit.max(1)).await?;
    if g.output == output::Format::Json {
        println!("{}", output::json(&rows));
        return Ok(EXIT_OK);
    }
    if rows.is_empty() {
        println!("no events yet");
        return Ok(EXIT_OK);
    }
    // A message shared by several shown deliveries is a digest.
    let mut carried: std::collections::HashMap<&str, usize> = Default::default();
    for m in rows.iter().filter_map(|r| r.message_id.as_deref()) {
        *carried.entry(m).or_default() += 1;
    }
    let text: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let how = match (r.state, r.message_id.as_deref()) {
                (DeliveryState::Pending, None) => "waiting for its window".to_string(),
                (s, Some(m)) if carried.get(m).copied().unwrap_or(0) > 1 => {
                    format!("{s} (in a digest)")
                }
                (s, _) => s.to_string(),
            };
            vec![
                output::time(Some(r.created_at)),
                r.kind.to_string(),
                format!(
                    "{} {}",
                    r.job.as_deref().unwrap_or("-"),
                    r.partition_key.as_deref().unwrap_or("")
                ),
                r.target.clone(),
                how,
                r.attempts.to_string(),
                crate::text::one_line(r.last_error.as_deref().unwrap_or_default(), 60),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &[
                "at (UTC)",
                "event",
                "partition",
                "target",
                "delivery",
                "tries",
                "last error"
            ],
            &text
        )
    );
    Ok(EXIT_OK)
}

async fn test(g: &Globals, target: Option<String>) -> Outcome {
    let project = Context::load_project(&g.overrides)?;
    let settings = &project.settings;
    let targets: Vec<&notify::NotifyTarget> = settings
        .notify
        .iter()
        .filter(|t| target.as_deref().is_none_or(|n| t.name == n))
        .collect();
    if targets.is_empty() {
        let known: Vec<&str> = settings.notify.iter().map(|t| t.name.as_str()).collect();
        match (&target, known.is_empty()) {
            (_, true) => eprintln!(
                "error: sluice.toml has no [[notify]] target; add one (README: Notifications)"
            ),
            (Some(n), false) => eprintln!(
                "error: no [[notify]] target named `{n}`; targets: {}",
                known.join(", ")
            ),
            (None, false) => unreachable!("targets exist and none was asked for by name"),
        }
        return Ok(EXIT_UNUSABLE);
    }
    let project_name = settings.project_name();
    let payload = Payload::test(
        &project_name,
        chrono::Utc::now().timestamp_millis(),
        settings.ui.public_url.as_ref(),
    );
    let client = reqwest::Client::new();
    let mut results = Vec::new();
    for t in targets {
        results.push((t.name.clone(), notify::send(&client, t, &payload).await));
    }
    if g.output == output::Format::Json {
        let v: Vec<_> = results
            .iter()
            .map(|(name, r)| {
                serde_json::json!({
                    "target": name, "delivered": r.is_ok(),
                    "error": r.as_ref().err().map(|e| e.message.clone()),
                    "id": payload.id,
                })
            })
            .collect();
        println!("{}", output::json(&v));
    } else {
        for (name, r) in &results {
            match r {
                Ok(()) => println!("{name}: delivered (id {})", payload.id),
                Err(e) => println!("{name}: NOT delivered: {}", e.message),
            }
        }
    }
    Ok(match results.iter().all(|(_, r)| r.is_ok()) {
        true => EXIT_OK,
        false => EXIT_FAILED,
    })
}
