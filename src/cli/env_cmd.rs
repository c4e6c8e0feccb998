//! `sluice env create | list | drop`: environments, named sets of aliases beside
//! production's. Creating one copies pointers in one catalog transaction and writes no data
//! file; reading commands given `--env NAME` then see its tables.

use super::context::Context;
use super::{EXIT_OK, Globals, Outcome, output};
use crate::catalog::{NewEnv, NotCreated, PROD};
use anyhow::{Context as _, bail};

#[derive(Debug, clap::Subcommand)]
pub enum EnvSub {
    /// Create environment NAME as a copy of production's aliases (or of another
    /// environment's): pointers only, no data copied or written.
    Create {
        /// Its name: lowercase letters, digits and `_` (not `prod`).
        name: String,
        /// What to copy: `prod` or an environment's name.
        #[arg(long, default_value = PROD, value_name = "ENV")]
        from: String,
        /// It lapses after this long (e.g. 7d, 12h): reading commands then refuse it, and
        /// `sluice env drop` removes it.
        #[arg(long, value_name = "DURATION")]
        ttl: Option<String>,
    },
    /// The environments: what each was copied from, when, until when, and how many of
    /// its tables point at versions of their own.
    List,
    /// Drop environment NAME: its aliases go; the physical versions they pointed at stay
    /// until `sluice gc` finds no alias needs them.
    Drop {
        /// Its name.
        name: String,
    },
    /// Point production's aliases at the tables environment NAME built (`apply`), all in
    /// one catalog transaction, with the checks of `promote`: production must still point
    /// where it did when NAME was copied, and each table must hold every partition
    /// production's has, none failed. Nothing is recomputed; `rollback` undoes it.
    Promote {
        /// Its name.
        name: String,
        /// Compare each table first (as `diff --env NAME` does, over the partitions
        /// NAME's holds) and promote nothing when more than this fraction of its rows
        /// differ from production's.
        #[arg(long, value_name = "FRACTION")]
        fail_above: Option<f64>,
        #[command(flatten)]
        flags: super::promote_cmd::FlipFlags,
    },
}

pub async fn env(g: &Globals, sub: EnvSub) -> Outcome {
    // The environment commands name theirs; a global `--env` would be a second name.
    if g.overrides.env.is_some() {
        bail!("`sluice env` takes the environment as its argument, not --env: drop --env");
    }
    let cx = Context::open(&g.overrides).await?;
    match sub {
        EnvSub::Create { name, from, ttl } => create(g, &cx, &name, &from, ttl.as_deref()).await,
        EnvSub::List => list(g, &cx).await,
        EnvSub::Drop { name } => drop_env(g, &cx, &name).await,
        EnvSub::Promote {
            name,
            fail_above,
            flags,
        } => promote(g, &cx, &name, fail_above, flags).await,
    }
}

async fn create(g: &Globals, cx: &Context, name: &str, from: &str, ttl: Option<&str>) -> Outcome {
    crate::names::Name::new(name).with_context(|| format!("environment name `{name}`"))?;
    if name == PROD {
        bail!("`{PROD}` is production's aliases, not an environment; pick another name");
    }
    let now_ms = cx.clock.now_ms();
    let expires_at = match ttl {
        None => None,
        Some(t) => {
            let d = crate::duration::parse_duration(t)
                .map_err(|e| anyhow::anyhow!("--ttl {t}: {e}"))?;
            Some(now_ms.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
        }
    };
    let new = NewEnv {
        name,
        from,
        by: &crate::actor::who(),
        now_ms,
        expires_at,
    };
    let copied = match cx.catalog.create_env(&new).await? {
        Ok(n) => n,
        Err(NotCreated::Exists) => {
            bail!(
                "environment `{name}` exists already; drop it first (`sluice env drop {name}`) or pick another name"
            )
        }
        Err(NotCreated::NoSource) => {
            bail!(
                "--from: {}",
                super::context::unknown_env(&cx.catalog, from).await?
            )
        }
    };
    if g.output == output::Format::Json {
        let shown = serde_json::json!({ "created": name, "from": from, "tables": copied, "expires_at": expires_at });
        println!("{}", output::json(&shown));
    } else {
        println!(
            "created environment {name} from {from}: {copied} table alias(es) copied, no data written"
        );
    }
    Ok(EXIT_OK)
}

async fn list(g: &Globals, cx: &Context) -> Outcome {
    let envs = cx.catalog.envs().await?;
    if g.output == output::Format::Json {
        println!("{}", output::json(&envs));
        return Ok(EXIT_OK);
    }
    if envs.is_empty() {
        println!("no environments (create one with `sluice env create NAME`)");
        return Ok(EXIT_OK);
    }
    let now_ms = cx.clock.now_ms();
    let rows: Vec<Vec<String>> = envs
        .iter()
        .map(|e| {
            let expires = match e.expires_at {
                None => "-".to_string(),
                Some(_) if e.expired(now_ms) => format!("expired {}", output::time(e.expires_at)),
                Some(_) => output::time(e.expires_at),
            };
            vec![
                e.name.clone(),
                e.source.clone(),
                output::time(Some(e.created_at)),
                e.created_by.clone(),
                expires,
                e.tables.to_string(),
                e.own_versions.to_string(),
            ]
        })
        .collect();
    let headers = [
        "name",
        "from",
        "created (UTC)",
        "by",
        "expires (UTC)",
        "tables",
        "own versions",
    ];
    print!("{}", output::table(&headers, &rows));
    Ok(EXIT_OK)
}

async fn drop_env(g: &Globals, cx: &Context, name: &str) -> Outcome {
    if !cx.catalog.drop_env(name).await? {
        bail!(super::context::unknown_env(&cx.catalog, name).await?);
    }
    if g.output == output::Format::Json {
        println!("{}", output::json(&serde_json::json!({ "dropped": name })));
    } else {
        println!("dropped environment {name}; `sluice gc` removes the versions no alias needs");
    }
    Ok(EXIT_OK)
}

/// `env promote NAME`: production's aliases flip to the versions NAME built, as one flip.
async fn promote(
    g: &Globals,
    cx: &Context,
    name: &str,
    fail_above: Option<f64>,
    a: super::promote_cmd::FlipFlags,
) -> Outcome {
    if cx.catalog.env_row(name).await?.is_none() {
        bail!(super::context::unknown_env(&cx.catalog, name).await?);
    }
    let flips = cx.catalog.env_promotion(name).await?;
    if flips.is_empty() {
        bail!(
            "environment {name} has no tables of its own to promote: it reads production's; `sluice apply --env {name}` builds what the checkout changed"
        );
    }
    if let Some(limit) = fail_above {
        let engine = cx.engine()?;
        let compared =
            crate::app::env_gate::compare(&cx.project, &cx.catalog, &engine, &flips).await?;
        let over: Vec<_> = compared
            .iter()
            .filter(|c| c.changed_fraction > limit)
            .collect();
        for c in &compared {
            eprintln!(
                "{}: {:.4} of the rows differ between v{} and v{}",
                c.table, c.changed_fraction, c.from, c.to
            );
        }
        if !over.is_empty() {
            let tables: Vec<&str> = over.iter().map(|c| c.table.as_str()).collect();
            eprintln!(
                "error: {} above --fail-above {limit}: nothing changed (see `sluice diff TABLE --env {name}`)",
                tables.join(", ")
            );
            return Ok(super::EXIT_FAILED);
        }
    }
    let message = a
        .message
        .clone()
        .unwrap_or_else(|| format!("promote environment {name}"));
    super::promote_cmd::record(g, cx, &flips, "promote", &message, &a).await
}
