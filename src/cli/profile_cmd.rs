//! `sluice profile TABLE`: a table's profile history, partition by partition.

use super::context::Context;
use super::{EXIT_OK, EXIT_UNUSABLE, Globals, Outcome, output};
use crate::quality::Quality;

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// One character per value, scaled between the smallest and the largest; a gap for none.
fn sparkline(values: &[Option<f64>]) -> String {
    let present: Vec<f64> = values.iter().flatten().copied().collect();
    let (lo, hi) = present
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(*v), b.max(*v))
        });
    values
        .iter()
        .map(|v| match v {
            None => ' ',
            Some(_) if hi <= lo => BARS[3],
            Some(x) => BARS[(((x - lo) / (hi - lo)) * 7.0).round().clamp(0.0, 7.0) as usize],
        })
        .collect()
}

#[derive(Debug, clap::Args)]
pub struct ProfileArgs {
    /// The table (its alias).
    table: String,
    /// The physical version to show; default: the live one.
    #[arg(long)]
    version: Option<i64>,
    /// Only this column's metrics.
    #[arg(long)]
    column: Option<String>,
}

pub async fn profile(g: &Globals, args: ProfileArgs) -> Outcome {
    let (table, version, column) = (args.table.as_str(), args.version, args.column.as_deref());
    let cx = Context::open(&g.overrides).await?;
    cx.known_table(table).await?;
    let catalog = cx.catalog;
    let version = match version {
        Some(v) => v,
        None => match catalog.alias(table).await? {
            Some(v) => v,
            None => {
                eprintln!(
                    "error: table `{table}` has no live version; name one with --version N (`sluice tables` lists them)"
                );
                return Ok(EXIT_UNUSABLE);
            }
        },
    };
    let history: Vec<(String, Quality)> = catalog
        .quality_history(table, version)
        .await?
        .into_iter()
        .filter_map(|(k, j)| Some((k, serde_json::from_str::<Quality>(&j).ok()?)))
        .collect();
    if g.output == output::Format::Json {
        let v: Vec<_> = history
            .iter()
            .map(|(k, q)| serde_json::json!({"partition": k, "profile": q.profile, "checks": q.checks}))
            .collect();
        println!(
            "{}",
            output::json(&serde_json::json!({"table": table, "version": version, "partitions": v}))
        );
        return Ok(EXIT_OK);
    }
    if history.is_empty() {
        println!("no profiles for {table} v{version} yet");
        return Ok(EXIT_OK);
    }
    let metrics = metric_histories(&history, column);
    let rows: Vec<Vec<String>> = metrics
        .iter()
        .map(|(name, vals)| {
            let present: Vec<f64> = vals.iter().flatten().copied().collect();
            let lo = present.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = present.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            vec![
                name.clone(),
                sparkline(vals),
                crate::text::metric(present.first().map(|_| lo)),
                crate::text::metric(present.first().map(|_| hi)),
                crate::text::metric(vals.last().copied().flatten()),
            ]
        })
        .collect();
    println!(
        "{table} v{version}: {} partition(s), {} .. {}",
        history.len(),
        history[0].0,
        history[history.len() - 1].0
    );
    print!(
        "{}",
        output::table(&["metric", "history", "min", "max", "last"], &rows)
    );
    let warned: Vec<String> = history
        .iter()
        .flat_map(|(k, q)| {
            q.checks
                .iter()
                .filter(|c| !c.passed)
                .map(move |c| format!("{k}: {c}"))
        })
        .collect();
    for w in warned {
        println!("{w}");
    }
    Ok(EXIT_OK)
}

/// Each metric's value per partition, oldest first: rows (unless one column is asked
/// for), then each column's null fraction, distinct count and mean.
fn metric_histories(
    history: &[(String, Quality)],
    column: Option<&str>,
) -> Vec<(String, Vec<Option<f64>>)> {
    let profiles: Vec<_> = history
        .iter()
        .map(|(_, q)| q.profile.clone().unwrap_or_default())
        .collect();
    let mut metrics: Vec<(String, Vec<Option<f64>>)> = Vec::new();
    if column.is_none() {
        metrics.push((
            "rows".into(),
            profiles.iter().map(|p| Some(p.rows as f64)).collect(),
        ));
    }
    let mut columns: Vec<String> = profiles
        .iter()
        .flat_map(|p| p.columns.keys().cloned())
        .collect();
    columns.sort();
    columns.dedup();
    for c in columns
        .iter()
        .filter(|c| column.is_none_or(|only| only == c.as_str()))
    {
        let get = |f: &dyn Fn(&crate::quality::ColumnProfile) -> Option<f64>| -> Vec<Option<f64>> {
            profiles
                .iter()
                .map(|p| p.columns.get(c).and_then(f))
                .collect()
        };
        metrics.push((
            format!("{c}.null_fraction"),
            get(&|x| Some(x.null_fraction)),
        ));
        metrics.push((format!("{c}.distinct"), get(&|x| Some(x.distinct as f64))));
        let means = get(&|x| x.mean);
        if means.iter().any(Option::is_some) {
            metrics.push((format!("{c}.mean"), means));
        }
    }
    metrics
}
