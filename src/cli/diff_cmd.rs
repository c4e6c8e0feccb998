//! `sluice diff TABLE`: two versions side by side, before a promote.

use super::context::Context;
use super::{EXIT_FAILED, EXIT_OK, EXIT_UNUSABLE, Globals, Outcome, output};
use crate::diff::{self, Diff};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The table (its alias).
    table: String,
    /// The version compared from (v1 or 1); default: the live version. With --env NAME
    /// and neither --from nor --to: production's live version, compared to NAME's over
    /// the partitions NAME's holds.
    #[arg(long, value_name = "VERSION")]
    from: Option<String>,
    /// The version compared to; default: the newest other version.
    #[arg(long, value_name = "VERSION")]
    to: Option<String>,
    /// Only these partitions: a list (a,b,c) or a range (a..b, both included).
    #[arg(long)]
    partitions: Option<String>,
    /// Exit 1 when more than this fraction of rows differ (for CI).
    #[arg(long, value_name = "FRACTION")]
    fail_above: Option<f64>,
}

fn version(text: &str) -> Option<i64> {
    text.trim_start_matches('v')
        .parse()
        .ok()
        .filter(|v| *v >= 1)
}

pub async fn run(g: &Globals, mut a: Args) -> Outcome {
    let cx = Context::open(&g.overrides).await?;
    let (catalog, engine) = (&cx.catalog, cx.engine()?);
    let table_name = a.table.clone();
    let table = table_name.as_str();
    cx.known_table(table).await?;
    let versions = catalog.table_versions(table).await?;
    if versions.is_empty() {
        eprintln!("error: table `{table}` has no versions; see `sluice tables`");
        return Ok(EXIT_UNUSABLE);
    }
    let live = catalog.alias(table).await?;
    if !against_production(g, catalog, live, &mut a).await? {
        return Ok(EXIT_OK);
    }
    let from = match a.from.as_deref() {
        Some(t) => match version(t) {
            Some(v) => v,
            None => {
                eprintln!("error: --from {t}: write a version, e.g. v1");
                return Ok(EXIT_UNUSABLE);
            }
        },
        None => live.unwrap_or(versions[0].version),
    };
    let to = match a.to.as_deref() {
        Some(t) => match version(t) {
            Some(v) => v,
            None => {
                eprintln!("error: --to {t}: write a version, e.g. v2");
                return Ok(EXIT_UNUSABLE);
            }
        },
        None => match versions
            .iter()
            .map(|v| v.version)
            .filter(|v| *v != from)
            .max()
        {
            Some(v) => v,
            None => {
                eprintln!("error: {table} has only v{from}; nothing to compare it with");
                return Ok(EXIT_UNUSABLE);
            }
        },
    };
    let writer = cx.project.writer_of(table);
    let key: Vec<String> = writer
        .map(|j| j.key.iter().map(|k| k.to_string()).collect())
        .unwrap_or_default();
    let partitions = match (&a.partitions, writer) {
        (None, _) => None,
        (Some(text), Some(j)) => match catalog
            .table(table)
            .await?
            .ok_or_else(|| format!("table `{table}` is not in the catalog"))
            .and_then(|t| diff::parse_partitions(j, &t.schema, text))
        {
            Ok(p) => Some(p),
            Err(m) => {
                eprintln!("error: --partitions {text}: {m}");
                return Ok(EXIT_UNUSABLE);
            }
        },
        (Some(_), None) => {
            eprintln!("error: --partitions needs the job that writes `{table}` in jobs/");
            return Ok(EXIT_UNUSABLE);
        }
    };
    let d = diff::diff(catalog, &engine, table, from, to, partitions, &key).await?;
    let fraction = d.changed_fraction();
    let over = a.fail_above.is_some_and(|f| fraction > f);
    if g.output == output::Format::Json {
        let mut v = serde_json::to_value(&d)?;
        v["changed_fraction"] = serde_json::json!(fraction);
        v["over_threshold"] = serde_json::json!(over);
        println!("{}", output::json(&v));
    } else {
        print!("{}", text(&d));
        println!("changed: {:.4} of the rows", fraction);
    }
    if over {
        eprintln!(
            "error: {:.4} of the rows differ, above --fail-above {}",
            fraction,
            a.fail_above.unwrap_or_default()
        );
        return Ok(EXIT_FAILED);
    }
    Ok(EXIT_OK)
}

/// In an environment, without --from and --to: production's live version against the
/// environment's, over the partitions the environment's holds. False when the environment
/// reads production's version itself (said here): nothing to compare.
async fn against_production(
    g: &Globals,
    catalog: &crate::catalog::Catalog,
    live: Option<i64>,
    a: &mut Args,
) -> anyhow::Result<bool> {
    let Some(env) = catalog.env().filter(|_| a.from.is_none() && a.to.is_none()) else {
        return Ok(true);
    };
    let table = a.table.as_str();
    let prod = catalog.in_env(crate::catalog::PROD).alias(table).await?;
    match (prod, live) {
        (Some(p), Some(e)) if p == e => {
            if g.output == output::Format::Json {
                let same = serde_json::json!({ "table": table, "env": env, "same_version": p, "changed_fraction": 0.0, "over_threshold": false });
                println!("{}", output::json(&same));
            } else {
                println!("{table}: environment {env} reads production's v{p}; nothing differs");
            }
            return Ok(false);
        }
        (Some(p), Some(e)) => {
            if a.partitions.is_none() {
                a.partitions = crate::app::env_gate::held_span(catalog, table, e).await?;
            }
            a.from = Some(p.to_string());
            a.to = Some(e.to_string());
        }
        _ => {}
    }
    Ok(true)
}

fn text(d: &Diff) -> String {
    let mut s = format!(
        "{} v{} -> v{}{}\n",
        d.table,
        d.from,
        d.to,
        d.partitions
            .as_ref()
            .map(|p| format!(" ({} partitions)", p.len()))
            .unwrap_or_default()
    );
    s.push_str("\nschema: ");
    if d.schema.is_empty() {
        s.push_str("same\n");
    } else {
        s.push('\n');
        for c in &d.schema {
            s.push_str(&format!(
                "  {}: {} -> {}\n",
                c.column,
                c.from.as_deref().unwrap_or("(absent)"),
                c.to.as_deref().unwrap_or("(absent)")
            ));
        }
    }
    s.push_str(&format!("\nrows: {} -> {}\n", d.rows_from, d.rows_to));
    let differing: Vec<Vec<String>> = d
        .rows_per_partition
        .iter()
        .filter(|p| p.from != p.to)
        .map(|p| vec![p.partition.clone(), p.from.to_string(), p.to.to_string()])
        .collect();
    if !differing.is_empty() {
        s.push_str(&output::table(
            &["partition", "rows from", "rows to"],
            &differing,
        ));
    }
    match &d.rows {
        None => {
            s.push_str("\nno key columns (`output.key` in the job spec): rows are not matched\n")
        }
        Some(r) => {
            s.push_str(&format!(
                "\nby key ({}): {} added, {} removed, {} changed\n",
                r.key.join(", "),
                r.added,
                r.removed,
                r.changed
            ));
            for (kind, rows) in &r.samples {
                for row in rows {
                    s.push_str(&format!("  {kind}: {row}\n"));
                }
            }
        }
    }
    let cols: Vec<Vec<String>> = d.columns.iter().map(|c| c.shown()).collect();
    s.push('\n');
    s.push_str(&output::table(
        &[
            "column",
            "sum from",
            "sum to",
            "mean from",
            "mean to",
            "nulls from",
            "nulls to",
        ],
        &cols,
    ));
    s
}
