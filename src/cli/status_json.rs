//! One partition as `status --output json` prints it, written by hand into the output's
//! buffer. A million partitions are 800 MB of JSON, and serde's walk of each field (its
//! key escaped, its separator and indent written piece by piece, each through the writer)
//! was most of the thread that formats them. Here each key comes with its separator and
//! indent as one literal. The bytes are those serde_json writes for the same fields with
//! `output::ElementFormatter` one level in: the tests hold the two equal.

use crate::app::status::{PartitionView, ShownState};
use crate::cost::RunCost;
use crate::provenance::{Reads, StaleBecause};

/// One partition as `status --output json` prints it: its fields in the order of their
/// names, as the JSON object once built for each partition printed them.
#[cfg_attr(test, derive(serde::Serialize))]
pub struct PartitionJson<'a> {
    attempt: Option<i64>,
    content_run_id: Option<&'a str>,
    cost: Option<RunCost>,
    data_version: Option<&'a str>,
    declared: Option<bool>,
    delta_version: Option<i64>,
    duration_ms: Option<i64>,
    error: Option<&'a str>,
    finished_at: Option<String>,
    fingerprint: Option<&'a str>,
    job: &'a str,
    late: bool,
    partition: &'a str,
    read: Option<&'a Reads>,
    rows: Option<i64>,
    rows_from_earlier_run: bool,
    run_id: &'a str,
    stale_because: Option<&'a StaleBecause>,
    started_at: Option<String>,
    state: ShownState,
    table: &'a str,
    table_version: i64,
}

impl<'a> PartitionJson<'a> {
    pub fn of(view: &'a PartitionView, declared: Option<bool>, late: bool) -> PartitionJson<'a> {
        let r = &view.status;
        PartitionJson {
            attempt: r.attempt,
            content_run_id: r.content_run_id.as_deref(),
            cost: r.last_run_cost.cost(),
            data_version: r.content_version.as_deref(),
            declared,
            delta_version: r.content_delta_version,
            duration_ms: match (r.started_at, r.finished_at) {
                (Some(s), Some(e)) => Some(e - s),
                _ => None,
            },
            error: r.error.as_deref(),
            finished_at: r.finished_at.map(crate::clock::rfc3339),
            fingerprint: r.content_fingerprint.as_deref(),
            job: &r.job,
            late,
            partition: &r.partition_key,
            read: view.reads.as_ref(),
            rows: r.content_rows,
            rows_from_earlier_run: r.keeps_earlier_content(),
            run_id: &r.last_run_id,
            stale_because: view.stale.as_ref(),
            started_at: r.started_at.map(crate::clock::rfc3339),
            state: view.state(),
            table: &r.table_name,
            table_version: r.table_version,
        }
    }

    /// Appends the object, from `{` to `}`, as an element of an array at the top level.
    pub fn write(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        // A field's separator, its key and its indent: the object's fields are two levels in.
        macro_rules! key {
            ($name:literal) => {
                out.extend_from_slice(concat!(",\n    \"", $name, "\": ").as_bytes())
            };
        }
        out.extend_from_slice(b"{\n    \"attempt\": ");
        int(out, self.attempt);
        key!("content_run_id");
        text(out, self.content_run_id)?;
        key!("cost");
        cost(out, self.cost.as_ref());
        key!("data_version");
        text(out, self.data_version)?;
        key!("declared");
        match self.declared {
            Some(d) => boolean(out, d),
            None => out.extend_from_slice(b"null"),
        }
        key!("delta_version");
        int(out, self.delta_version);
        key!("duration_ms");
        int(out, self.duration_ms);
        key!("error");
        text(out, self.error)?;
        key!("finished_at");
        text(out, self.finished_at.as_deref())?;
        key!("fingerprint");
        text(out, self.fingerprint)?;
        key!("job");
        text(out, Some(self.job))?;
        key!("late");
        boolean(out, self.late);
        key!("partition");
        text(out, Some(self.partition))?;
        key!("read");
        nested(out, self.read)?;
        key!("rows");
        int(out, self.rows);
        key!("rows_from_earlier_run");
        boolean(out, self.rows_from_earlier_run);
        key!("run_id");
        text(out, Some(self.run_id))?;
        key!("stale_because");
        nested(out, self.stale_because)?;
        key!("started_at");
        text(out, self.started_at.as_deref())?;
        key!("state");
        text(out, Some(self.state.as_str()))?;
        key!("table");
        text(out, Some(self.table))?;
        key!("table_version");
        int(out, Some(self.table_version));
        out.extend_from_slice(b"\n  }");
        Ok(())
    }
}

fn int(out: &mut Vec<u8>, n: Option<i64>) {
    match n {
        Some(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
}

fn boolean(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

/// A JSON string: copied between quotes when it holds nothing JSON escapes (the usual:
/// ids, hashes, times, names), else escaped by serde_json.
fn text(out: &mut Vec<u8>, s: Option<&str>) -> serde_json::Result<()> {
    let Some(s) = s else {
        out.extend_from_slice(b"null");
        return Ok(());
    };
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return Ok(());
    }
    serde_json::to_writer(out, s)
}

/// The run's cost, five counts one level further in.
fn cost(out: &mut Vec<u8>, c: Option<&RunCost>) {
    let Some(c) = c else {
        out.extend_from_slice(b"null");
        return;
    };
    let counts = [
        ("{\n      \"cpu_us\": ", c.cpu_us),
        (",\n      \"bytes_read\": ", c.bytes_read),
        (",\n      \"bytes_written\": ", c.bytes_written),
        (",\n      \"requests\": ", c.requests),
        (",\n      \"peak_memory_bytes\": ", c.peak_memory_bytes),
    ];
    let mut digits = itoa::Buffer::new();
    for (key, n) in counts {
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(digits.format(n).as_bytes());
    }
    out.extend_from_slice(b"\n    }");
}

/// A value of many shapes (what was read, why stale), by serde, at the fields' level.
fn nested<T: serde::Serialize>(out: &mut Vec<u8>, value: Option<&T>) -> serde_json::Result<()> {
    let Some(value) = value else {
        out.extend_from_slice(b"null");
        return Ok(());
    };
    let mut ser =
        serde_json::Serializer::with_formatter(out, super::output::ElementFormatter::at_level(2));
    value.serialize(&mut ser)
}

#[cfg(test)]
mod tests {
    use super::PartitionJson;
    use crate::app::status::PartitionView;
    use crate::catalog::{PartitionState, PartitionStatus};
    use crate::provenance::{Reads, StaleBecause, StaleKind};

    /// What serde_json writes for the same fields, one level in.
    fn by_serde(json: &PartitionJson) -> String {
        use serde::Serialize as _;
        let mut written = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(
            &mut written,
            super::super::output::ElementFormatter::one_level_in(),
        );
        json.serialize(&mut ser).expect("serialize");
        String::from_utf8(written).expect("utf-8")
    }

    fn by_hand(json: &PartitionJson) -> String {
        let mut written = Vec::new();
        json.write(&mut written).expect("write");
        String::from_utf8(written).expect("utf-8")
    }

    fn view(job: &str, key: &str, state: PartitionState) -> PartitionView {
        let status = PartitionStatus::bare(job, 2, key, state);
        PartitionView {
            status,
            stale: None,
            reads: None,
        }
    }

    /// Every shape a field takes: nulls, strings JSON escapes (quotes, a newline, a
    /// control character, non-ASCII), a cost, what was read, why stale.
    #[test]
    fn written_by_hand_is_what_serde_writes() {
        let bare = view("orders", "2024-01-05", PartitionState::Running);
        let mut failed = view(
            "ö \"quoted\" job",
            "2024-01-05:emea",
            PartitionState::Failed,
        );
        failed.status.error = Some("line one\nline \"two\" \\ \u{1} end".into());
        failed.status.attempt = Some(3);
        failed.status.started_at = Some(1_704_412_800_000);
        failed.status.finished_at = Some(1_704_412_801_234);
        let mut stale = view("totals", "2024-01", PartitionState::Complete);
        stale.status.content_run_id = Some("run-1".into());
        stale.status.content_rows = Some(-1);
        stale.status.content_fingerprint = Some("5a55".into());
        stale.status.content_delta_version = Some(i64::MAX);
        stale.stale = Some(StaleBecause {
            kind: StaleKind::Upstream,
            changed: vec!["orders 2024-01-05".into(), "tab\there".into()],
        });
        stale.reads = Some(Reads::default());
        let read = Reads::from_json(Some(
            r#"{"upstream":[{"table":"orders","version":1,"partitions":{"2024-01-05":"d7b0"}}]}"#,
        ));
        assert!(read.is_some(), "the reads' text is one Reads parses");
        let mut reader = view("totals", "2024-01-06", PartitionState::Complete);
        reader.reads = read;
        let costs = [
            None,
            Some(crate::cost::RunCost {
                cpu_us: 9955,
                bytes_read: 0,
                bytes_written: u64::MAX,
                requests: 1,
                peak_memory_bytes: 392,
            }),
        ];
        for v in [&bare, &failed, &stale, &reader] {
            for (declared, late) in [(None, false), (Some(true), true), (Some(false), false)] {
                for cost in costs {
                    let mut json = PartitionJson::of(v, declared, late);
                    json.cost = cost;
                    assert_eq!(by_hand(&json), by_serde(&json));
                }
            }
        }
    }
}
