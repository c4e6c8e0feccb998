//! `sluice tables`, `resolve`, `history`: the versions of each table and the alias readers
//! go through.

use super::context::Context;
use super::{EXIT_OK, EXIT_UNUSABLE, Globals, Outcome, output};
use crate::catalog::Catalog;

async fn catalog(g: &Globals) -> anyhow::Result<Catalog> {
    Ok(Context::open(&g.overrides).await?.catalog)
}

pub async fn tables(g: &Globals) -> Outcome {
    let c = catalog(g).await?;
    let mut rows = Vec::new();
    let mut json = Vec::new();
    for t in c.tables().await? {
        let name = t.schema.name.to_string();
        let coverage = crate::app::coverage::of_table(&c, &name).await?;
        if coverage.versions.is_empty() {
            // Migrated, never written: listed, with nothing in it yet.
            json.push(serde_json::json!({
                "table": name, "version": null, "live": false, "uri": null,
                "partitions": 0, "complete": 0, "failed": 0,
                "first": "", "last": "", "rows": 0,
            }));
            rows.push(vec![
                name.clone(),
                "-".into(),
                String::new(),
                "0/0".into(),
                "0".into(),
                "-".into(),
                "0".into(),
                "(nothing written yet: the first run of its job creates a version)".into(),
            ]);
        }
        for v in coverage.versions {
            let first = v.first.as_deref().unwrap_or("");
            let last = v.last.as_deref().unwrap_or("");
            let is_live = coverage.live == Some(v.version);
            json.push(serde_json::json!({
                "table": name, "version": v.version, "live": is_live, "uri": v.uri, "owner_env": v.owner_env,
                "partitions": v.partitions, "complete": v.complete, "failed": v.failed,
                "first": first, "last": last, "rows": v.rows,
            }));
            rows.push(vec![
                name.clone(),
                match &v.owner_env {
                    Some(env) => format!("v{} ({env})", v.version),
                    None => format!("v{}", v.version),
                },
                if is_live {
                    "live".into()
                } else {
                    String::new()
                },
                format!("{}/{}", v.complete, v.partitions),
                v.failed.to_string(),
                if first.is_empty() {
                    "-".into()
                } else {
                    format!("{first} .. {last}")
                },
                v.rows.to_string(),
                v.uri.clone(),
            ]);
        }
    }
    if g.output == output::Format::Json {
        println!("{}", output::json(&json));
    } else if rows.is_empty() {
        println!(
            "no tables yet: add a CREATE TABLE migration to migrations/ and run `sluice migrate`"
        );
    } else {
        print!(
            "{}",
            output::table(
                &[
                    "table",
                    "version",
                    "alias",
                    "complete",
                    "failed",
                    "partitions",
                    "rows",
                    "location"
                ],
                &rows
            )
        );
    }
    Ok(EXIT_OK)
}

#[derive(Debug, clap::Args)]
pub struct ResolveArgs {
    /// The table (its alias).
    table: String,
    /// This physical version instead of the live one.
    #[arg(long, value_name = "N")]
    version: Option<i64>,
}

pub async fn resolve(g: &Globals, args: ResolveArgs) -> Outcome {
    let (table, version) = (args.table.as_str(), args.version);
    let cx = Context::open(&g.overrides).await?;
    cx.known_table(table).await?;
    let c = cx.catalog;
    let v = match version {
        Some(v) => v,
        None => match c.alias(table).await? {
            Some(v) => v,
            None => {
                eprintln!("error: table `{table}` has no live version; see `sluice tables`");
                return Ok(EXIT_UNUSABLE);
            }
        },
    };
    let Some(tv) = c.table_version(table, v).await? else {
        eprintln!("error: {table} has no version v{v}; see `sluice tables`");
        return Ok(EXIT_UNUSABLE);
    };
    if g.output == output::Format::Json {
        println!(
            "{}",
            output::json(&serde_json::json!({"table": table, "version": v, "uri": tv.uri}))
        );
    } else {
        println!("{}", tv.uri);
    }
    Ok(EXIT_OK)
}

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// The table (its alias).
    table: String,
}

pub async fn history(g: &Globals, args: HistoryArgs) -> Outcome {
    let table = args.table.as_str();
    let cx = Context::open(&g.overrides).await?;
    cx.known_table(table).await?;
    let c = cx.catalog;
    let h = c.alias_history(table).await?;
    if g.output == output::Format::Json {
        println!("{}", output::json(&h));
        return Ok(EXIT_OK);
    }
    if h.is_empty() {
        println!("{table} has no alias yet");
        return Ok(EXIT_OK);
    }
    let rows: Vec<Vec<String>> = h
        .iter()
        .map(|f| {
            vec![
                output::time(Some(f.at)),
                f.from_version
                    .map(|v| format!("v{v}"))
                    .unwrap_or("-".into()),
                format!("v{}", f.to_version),
                f.by_whom.clone(),
                f.message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(&["at (UTC)", "from", "to", "by", "message"], &rows)
    );
    Ok(EXIT_OK)
}
