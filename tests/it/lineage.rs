//! OpenLineage: the events of real runs, received on a local HTTP sink or read from the file
//! transport, and validated against the OpenLineage JSON schema kept in tests/openlineage/
//! by Python's `jsonschema` (an independent validator).

use crate::util::{REPO, TestProject, stdout_of};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};

/// One request the sink received.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    authorization: Option<String>,
    body: Value,
}

/// A minimal HTTP/1.1 server on loopback that answers 200 to every POST and keeps what it
/// received. Returns its base URL.
fn http_sink() -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let sink = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let sink = sink.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                // Several requests per connection (keep-alive), until the client closes it.
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = request_line
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or_default()
                        .to_string();
                    let mut length = 0usize;
                    let mut authorization = None;
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        let (name, value) = h.split_once(':').unwrap_or((h, ""));
                        match name.to_ascii_lowercase().as_str() {
                            "content-length" => length = value.trim().parse().unwrap_or(0),
                            "authorization" => authorization = Some(value.trim().to_string()),
                            _ => {}
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    sink.lock().unwrap().push(Received {
                        path,
                        authorization,
                        body,
                    });
                    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                }
            });
        }
    });
    (url, got)
}

/// Validates `events` with tests/openlineage/validate.py; fails the test on any problem.
pub fn assert_valid_openlineage(p: &TestProject, events: &[Value]) {
    let file = p.file("events-to-validate.ndjson");
    let text: String = events.iter().map(|e| format!("{e}\n")).collect();
    std::fs::write(&file, text).unwrap();
    let out = stdout_of(
        Command::new("python3")
            .arg(format!("{REPO}/tests/openlineage/validate.py"))
            .arg(&file),
        "the OpenLineage schema check (bash .ci/run installs jsonschema)",
    );
    assert!(out.contains(", 0 problem(s)"), "{out}");
}

#[test]
fn a_backfill_sends_start_and_complete_or_fail_for_every_partition_to_an_http_sink() {
    let p = TestProject::migrated();
    // 2024-01-03's export is missing: that partition fails after it started.
    std::fs::remove_file(p.file("sample-data/orders/dt=2024-01-03/orders.csv")).unwrap();
    let (url, got) = http_sink();
    let out = p.run_env(
        &[
            "backfill",
            "clean_orders",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-04",
            "-vv",
        ],
        &[
            ("OPENLINEAGE_URL", url.as_str()),
            ("OPENLINEAGE_API_KEY", "sekrit-lineage-key"),
        ],
    );
    assert_eq!(out.code, 1, "one partition fails{}", out.context());
    assert!(
        !out.stderr.contains("sekrit-lineage-key"),
        "the API key is in the logs{}",
        out.context()
    );
    let received = got.lock().unwrap().clone();
    assert!(
        !received.is_empty(),
        "the sink received nothing{}",
        out.context()
    );
    for r in &received {
        assert_eq!(r.path, "/api/v1/lineage");
        assert_eq!(
            r.authorization.as_deref(),
            Some("Bearer sekrit-lineage-key")
        );
    }
    let events: Vec<Value> = received.into_iter().map(|r| r.body).collect();
    assert_valid_openlineage(&p, &events);

    // The backfill is the parent run: its own START, then FAIL (a partition failed).
    let parent: Vec<&Value> = events
        .iter()
        .filter(|e| e["job"]["name"] == "sluice.backfill")
        .collect();
    let kinds: Vec<&str> = parent
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["START", "FAIL"]);
    let parent_run = parent[0]["run"]["runId"].as_str().unwrap();

    // Per partition (by nominal start), the event types in order, and the runs' own ids.
    let status: BTreeMap<String, Value> = p
        .ok(&["status", "clean_orders", "--output", "json"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["partition"].as_str().unwrap().to_string(), r.clone()))
        .collect();
    let partition_of: BTreeMap<&str, &str> = status
        .iter()
        .map(|(day, r)| (r["run_id"].as_str().unwrap(), day.as_str()))
        .collect();
    let mut by_partition: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for e in events.iter().filter(|e| e["job"]["name"] == "clean_orders") {
        let run_id = e["run"]["runId"].as_str().unwrap();
        let day = partition_of
            .get(run_id)
            .unwrap_or_else(|| panic!("run {run_id} is not any partition's last run"));
        assert!(
            e["run"]["facets"]["nominalTime"]["nominalStartTime"].is_string(),
            "{e}"
        );
        by_partition.entry(day.to_string()).or_default().push(e);
    }
    assert_eq!(
        by_partition.keys().cloned().collect::<Vec<_>>(),
        ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]
    );
    for (day, evs) in &by_partition {
        let kinds: Vec<&str> = evs
            .iter()
            .map(|e| e["eventType"].as_str().unwrap())
            .collect();
        let run_id = evs[0]["run"]["runId"].as_str().unwrap();
        assert!(evs.iter().all(|e| e["run"]["runId"] == run_id), "{day}");
        assert!(
            evs.iter()
                .all(|e| e["run"]["facets"]["parent"]["run"]["runId"] == parent_run),
            "{day}: not linked to the backfill"
        );
        assert_eq!(status[day]["run_id"], run_id, "{day}");
        let output = &evs[1]["outputs"][0];
        assert!(
            output["name"]
                .as_str()
                .unwrap()
                .ends_with("clean_orders/v1"),
            "{output}"
        );
        let input = &evs[0]["inputs"][0]["name"];
        assert!(
            input
                .as_str()
                .unwrap()
                .ends_with(&format!("dt={day}/orders.csv")),
            "{input}"
        );
        if day == "2024-01-03" {
            assert_eq!(kinds, ["START", "FAIL"], "{day}");
            let message = evs[1]["run"]["facets"]["errorMessage"]["message"]
                .as_str()
                .unwrap();
            assert!(message.contains("no file at"), "{message}");
        } else {
            assert_eq!(kinds, ["START", "COMPLETE"], "{day}");
            assert_eq!(
                output["facets"]["version"]["datasetVersion"],
                status[day]["delta_version"].to_string(),
                "{day}"
            );
            assert_eq!(
                output["outputFacets"]["outputStatistics"]["rowCount"], status[day]["rows"],
                "{day}"
            );
            // What the run used, as `status` shows it (sluice's own run facet).
            let used = &evs[1]["run"]["facets"]["sluice_cost"];
            let cost = &status[day]["cost"];
            assert_eq!(used["bytesWritten"], cost["bytes_written"], "{day}: {used}");
            assert_eq!(
                used["objectStoreRequests"], cost["requests"],
                "{day}: {used}"
            );
            assert_eq!(used["rows"], status[day]["rows"], "{day}: {used}");
            let cpu = cost["cpu_us"].as_u64().unwrap() as f64 / 1e6;
            assert!(
                (used["cpuSeconds"].as_f64().unwrap() - cpu).abs() < 1e-6 && cpu > 0.0,
                "{day}: {used}"
            );
            let fields: Vec<&str> = output["facets"]["schema"]["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["name"].as_str().unwrap())
                .collect();
            assert!(
                fields.contains(&"amount") && fields.contains(&"dt"),
                "{fields:?}"
            );
        }
    }
}

#[test]
fn the_file_transport_writes_one_event_per_line_and_an_unreachable_sink_fails_no_run() {
    let p = TestProject::sample();
    let settings = p.read("sluice.toml");
    p.write(
        "sluice.toml",
        &format!(
            "{settings}\n[lineage]\ntransport = \"file\"\npath = \"lineage/events.ndjson\"\nnamespace = \"shop\"\n"
        ),
    );
    p.ok(&["migrate"]);
    p.ok(&["run", "clean_orders", "--partition", "2024-01-05"]);
    let events: Vec<Value> = p
        .read("lineage/events.ndjson")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["START", "COMPLETE"]);
    assert!(events.iter().all(|e| e["job"]["namespace"] == "shop"));
    assert_valid_openlineage(&p, &events);

    // Nothing listens on the URL: the run goes on and succeeds, with a warning.
    p.write("sluice.toml", &settings);
    let out = p.run_env(
        &["run", "clean_orders", "--partition", "2024-01-06"],
        &[
            ("OPENLINEAGE_URL", "http://127.0.0.1:9"),
            ("OPENLINEAGE_DISABLED", ""),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.context());
    out.complains("could not send an OpenLineage event");
}

#[test]
fn a_lineage_section_that_cannot_work_is_refused_with_the_fix() {
    let p = TestProject::sample();
    let settings = p.read("sluice.toml");
    p.write(
        "sluice.toml",
        &format!("{settings}\n[lineage]\ntransport = \"kafka\"\n"),
    );
    let out = p.run(&["validate"]);
    assert_eq!(out.code, 2, "{}", out.context());
    assert!(
        out.stderr
            .contains("[lineage] transport = \"kafka\" is not known"),
        "{}",
        out.context()
    );
    p.write(
        "sluice.toml",
        &format!("{settings}\n[lineage]\ntransport = \"http\"\n"),
    );
    let out = p.run(&["validate"]);
    assert_eq!(out.code, 2, "{}", out.context());
    out.complains("OPENLINEAGE_URL");
}
