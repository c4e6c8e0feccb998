//! `sluice status JOB --partition P`: one partition whole in the terminal, as its web page
//! shows it (both from `app::partition_detail`).

use super::context::Context;
use super::{EXIT_OK, Globals, Outcome, output};
use crate::app::partition_detail::{self, BASELINE_PARTITIONS, PartitionDetail};
use crate::quality::CheckResult;

pub async fn show(g: &Globals, cx: &Context, job: &str, partition: &str) -> Outcome {
    let project = &cx.project;
    let job = crate::app::partition::job(project, job)?;
    let key = crate::app::partition::parsed(job, partition)?;
    let d = partition_detail::detail(project, &cx.catalog, job, key).await?;
    if g.output == output::Format::Json {
        println!("{}", output::json(&json_of(job, &d)));
        return Ok(EXIT_OK);
    }
    print!("{}", text_of(job, &d));
    Ok(EXIT_OK)
}

fn json_of(job: &crate::job::Job, d: &PartitionDetail) -> serde_json::Value {
    let s = d.status.as_ref();
    serde_json::json!({
        "job": job.name, "table": job.table, "table_version": job.version,
        "partition": d.key.to_string(),
        "state": s.map(|s| s.state),
        "stale_because": d.stale,
        "rows": s.and_then(|s| s.content_rows),
        "rows_from_earlier_run": s.is_some_and(|s| s.keeps_earlier_content()),
        "content_run_id": s.and_then(|s| s.content_run_id.clone()),
        "fingerprint": s.and_then(|s| s.content_fingerprint.clone()),
        "current_fingerprint": d.current_fingerprint,
        "error": d.error(),
        "read": d.reads,
        "runs": d.runs,
        "checks": d.quality.checks,
        "profile": d.quality.profile,
        "baseline_partitions": d.baseline.len(),
        "dead_letters": d.letters.iter().map(|l| serde_json::json!({
            "file": l.file, "line": l.line, "error": l.error, "raw": l.raw, "run_id": l.run_id,
        })).collect::<Vec<_>>(),
        "dead_letters_error": d.letters_error,
    })
}

/// The partition as text: facts, the error once, runs (newest first, each failed run
/// pointing at the error rather than repeating it), checks with their samples, profile
/// against the baseline, dead letters.
fn text_of(job: &crate::job::Job, d: &PartitionDetail) -> String {
    let mut out = String::new();
    let s = d.status.as_ref();
    let state = match (&d.stale, s) {
        (Some(why), _) => format!("stale ({why})"),
        (None, Some(s)) => s.state.to_string(),
        (None, None) => "not run yet".into(),
    };
    out.push_str(&format!("{} {}: {state}\n", job.name, d.key));
    let mut facts = vec![("table", format!("{} v{}", job.table, job.version))];
    if let Some(s) = s {
        let mut rows = output::opt(&s.content_rows);
        if s.keeps_earlier_content() {
            rows.push_str(
                " (written by an earlier run and kept: the last run failed and changed nothing)",
            );
        }
        facts.push(("rows", rows));
        facts.push(("Delta version", output::opt(&s.content_delta_version)));
        facts.push(("fingerprint", output::opt(&s.content_fingerprint)));
    }
    facts.push(("current code", d.current_fingerprint.clone()));
    for t in d.tables_read() {
        facts.push(("read", t));
    }
    for f in &d.reads.files {
        facts.push(("read", format!("{} ({} bytes)", f.path, f.size)));
    }
    for c in &d.reads.commands {
        let rows = c.rows.map(|r| format!("{r} rows, ")).unwrap_or_default();
        let hash = c.sha256.get(..12).unwrap_or(&c.sha256);
        facts.push((
            "read",
            format!("input {} ({rows}{} bytes, sha256 {hash})", c.input, c.bytes),
        ));
    }
    for (k, v) in facts {
        out.push_str(&format!("  {k:<14}{v}\n"));
    }
    let error = d.error();
    if let Some(e) = &error {
        out.push_str(&format!("\nerror:\n  {}\n", e.replace('\n', "\n  ")));
    }
    out.push_str(&runs_text(d, error.as_deref()));
    out.push_str(&checks_text(&d.quality.checks));
    out.push_str(&profile_text(d));
    out.push_str(&letters_text(d));
    out
}

fn runs_text(d: &PartitionDetail, shown: Option<&str>) -> String {
    if d.runs.is_empty() {
        return "\nruns: none yet\n".into();
    }
    let rows: Vec<Vec<String>> = d
        .runs
        .iter()
        .rev()
        .map(|r| {
            let error = match r.error.as_deref().map(crate::redact::redact_text) {
                None => String::new(),
                Some(e) if Some(e.as_str()) == shown => "(the error above)".into(),
                Some(e) => crate::text::one_line(&e, 70),
            };
            vec![
                r.attempt.to_string(),
                r.state.to_string(),
                r.trigger_kind.to_string(),
                output::time(Some(r.started_at)),
                output::duration(Some(r.started_at), r.finished_at),
                output::opt(&r.rows_written),
                r.cost
                    .cost()
                    .map_or("-".into(), |c| format!("{:.3} s", c.cpu_seconds())),
                r.cost.cost().map_or("-".into(), |c| {
                    let b = crate::text::bytes;
                    format!("{} / {}", b(c.bytes_read), b(c.bytes_written))
                }),
                r.run_id.clone(),
                error,
            ]
        })
        .collect();
    let table = output::table(
        &[
            "attempt",
            "state",
            "trigger",
            "started (UTC)",
            "duration",
            "rows",
            "cpu",
            "read / written",
            "run id",
            "error",
        ],
        &rows,
    );
    format!("\nruns, newest first:\n{}", indent(&table))
}

fn checks_text(checks: &[CheckResult]) -> String {
    if checks.is_empty() {
        return "\nchecks: no results for the last run\n".into();
    }
    let mut out = String::from("\nchecks of the last run:\n");
    for c in checks {
        out.push_str(&format!(
            "  {} {} ({}): {}\n",
            if c.passed { "passed" } else { "FAILED" },
            c.name,
            c.severity.as_str(),
            c.detail
        ));
        for sample in &c.samples {
            out.push_str(&format!("      sample: {sample}\n"));
        }
    }
    out
}

fn profile_text(d: &PartitionDetail) -> String {
    let Some(p) = &d.quality.profile else {
        return "\nprofile: none for the last run\n".into();
    };
    let num = crate::text::metric;
    let mut out = format!(
        "\nprofile of the last run: {} rows (baseline {}: the median of the {} partition(s) before it, at most {BASELINE_PARTITIONS})\n",
        p.rows,
        num(d.baseline_of(|b| Some(b.rows as f64))),
        d.baseline.len()
    );
    let rows: Vec<Vec<String>> = p
        .columns
        .iter()
        .map(|(name, c)| {
            let base = |f: fn(&crate::quality::ColumnProfile) -> Option<f64>| {
                num(d.baseline_of(|b| b.columns.get(name).and_then(f)))
            };
            vec![
                name.clone(),
                format!("{:.4}", c.null_fraction),
                base(|c| Some(c.null_fraction)),
                c.distinct.to_string(),
                base(|c| Some(c.distinct as f64)),
                c.min.clone().unwrap_or_else(|| "-".into()),
                c.max.clone().unwrap_or_else(|| "-".into()),
                num(c.mean),
                base(|c| c.mean),
            ]
        })
        .collect();
    let table = output::table(
        &[
            "column", "nulls", "baseline", "distinct", "baseline", "min", "max", "mean", "baseline",
        ],
        &rows,
    );
    out.push_str(&indent(&table));
    out
}

fn letters_text(d: &PartitionDetail) -> String {
    let mut out = String::new();
    if let Some(e) = &d.letters_error {
        out.push_str(&format!("\ndead letters: cannot read them: {e}\n"));
        return out;
    }
    if d.letters.is_empty() {
        return "\ndead letters: none\n".into();
    }
    let rows: Vec<Vec<String>> = d
        .letters
        .iter()
        .map(|l| {
            vec![
                l.file.clone(),
                l.line.to_string(),
                crate::text::one_line(&l.error, 60),
                crate::text::one_line(&l.raw, 60),
            ]
        })
        .collect();
    out.push_str(&format!("\ndead letters ({}):\n", d.letters.len()));
    out.push_str(&indent(&output::table(
        &["file", "line", "error", "raw record"],
        &rows,
    )));
    out
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}
