//! OpenLineage run events as JSON (spec 2-0-2): the run, the job, the datasets read and
//! written, and the facets sluice knows (parent run, nominal time, error, processing
//! engine, job type, SQL, output schema, Delta version, row count).

use crate::spelling::spelled_enum;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::path::Path;
use url::Url;

const SCHEMA_URL: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
const FACETS: &str = "https://openlineage.io/spec/facets";

/// Who made the events: this program and its version, as a URI.
pub fn producer() -> String {
    format!("urn:sluice:{}", env!("CARGO_PKG_VERSION"))
}

spelled_enum! {
    /// A run's transition, as OpenLineage names it.
    pub enum EventType {
        Start => "START",
        Complete => "COMPLETE",
        Fail => "FAIL",
        /// Cancelled (a daemon's shutdown past its grace period).
        Abort => "ABORT",
    }
}

/// A dataset as OpenLineage names it: a local path is namespace `file` and its absolute
/// path; an object-store location is namespace `scheme://bucket` and the path in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    pub namespace: String,
    pub name: String,
    /// The dataset's version facet, when it has one (a command input: its program's).
    pub version: Option<String>,
}

impl Dataset {
    pub fn of_url(url: &Url) -> Dataset {
        if url.scheme() == "file"
            && let Ok(p) = url.to_file_path()
        {
            return Dataset::of_path(&p);
        }
        Dataset {
            namespace: format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default()),
            name: url.path().trim_matches('/').to_string(),
            version: None,
        }
    }

    pub fn of_path(path: &Path) -> Dataset {
        let shown = path.display().to_string();
        Dataset {
            namespace: "file".into(),
            name: match shown.trim_end_matches('/') {
                "" => "/".into(),
                p => p.to_string(),
            },
            version: None,
        }
    }

    /// A command input: namespace `command`, named by its argv; its version the SHA-256
    /// of the files under `root` its arguments name (the script), when any do.
    pub fn of_command(root: &Path, argv: &[String]) -> Dataset {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        let mut any = false;
        for arg in argv {
            let p = root.join(arg);
            if p.is_file()
                && let Ok(bytes) = std::fs::read(&p)
            {
                h.update(arg.as_bytes());
                h.update(b"\n");
                h.update(sha2::Sha256::digest(&bytes));
                any = true;
            }
        }
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        Dataset {
            namespace: "command".into(),
            name: argv.join(" "),
            version: any.then(|| hex(&h.finalize())[..16].to_string()),
        }
    }

    /// A database input: namespace `postgres://HOST:PORT` or `mysql://HOST:PORT` (no user
    /// or password), named by the database and the input; the system's name alone
    /// (`system`) when its connection string cannot be read.
    pub fn of_database(url: Option<&Url>, system: &str, default_port: u16, input: &str) -> Dataset {
        let namespace = match url {
            Some(u) => format!(
                "{}://{}:{}",
                u.scheme(),
                u.host_str().unwrap_or_default(),
                u.port().unwrap_or(default_port)
            ),
            None => system.into(),
        };
        let database = url.map(|u| u.path().trim_matches('/').to_string());
        Dataset {
            namespace,
            name: format!("{}.{input}", database.unwrap_or_default()),
            version: None,
        }
    }

    fn json(&self) -> Value {
        let mut v = json!({ "namespace": self.namespace, "name": self.name });
        if let Some(version) = &self.version {
            v["facets"] = json!({ "version": version_facet(version) });
        }
        v
    }
}

/// A column of the output table, for the schema facet.
#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub ty: String,
    pub description: Option<String>,
}

/// The table a run writes.
#[derive(Debug, Clone)]
pub struct Output {
    pub dataset: Dataset,
    pub fields: Vec<Field>,
    /// The Delta version that holds the run's commit (once committed).
    pub delta_version: Option<u64>,
    pub rows: Option<u64>,
}

/// The run that a partition's run belongs to: a backfill, or a daemon.
#[derive(Debug, Clone)]
pub struct Parent {
    pub job: String,
    pub run_id: String,
}

/// One event about one run.
#[derive(Debug, Clone)]
pub struct RunEvent {
    pub kind: EventType,
    pub at: DateTime<Utc>,
    pub job: String,
    pub run_id: String,
    /// The partition's bounds.
    pub nominal: Option<(DateTime<Utc>, DateTime<Utc>)>,
    pub sql: Option<String>,
    pub inputs: Vec<Dataset>,
    pub output: Option<Output>,
    /// Why the run failed (on FAIL), already free of secrets.
    pub error: Option<String>,
    /// What the run used (on its end), as the `sluice_cost` run facet.
    pub cost: Option<crate::cost::RunCost>,
}

impl RunEvent {
    /// An event of a parent run itself (a backfill, a daemon): no datasets, no partition.
    pub fn of_parent(
        p: &Parent,
        kind: EventType,
        at: DateTime<Utc>,
        error: Option<String>,
    ) -> RunEvent {
        RunEvent {
            kind,
            at,
            job: p.job.clone(),
            run_id: p.run_id.clone(),
            nominal: None,
            sql: None,
            inputs: Vec::new(),
            output: None,
            error,
            cost: None,
        }
    }
}

fn version_facet(version: &str) -> Value {
    facet(
        "DatasetVersionDatasetFacet",
        "1-0-1",
        json!({ "datasetVersion": version }),
    )
}

fn facet(name: &str, version: &str, body: Value) -> Value {
    let mut v = body;
    if let Value::Object(m) = &mut v {
        m.insert("_producer".into(), producer().into());
        m.insert(
            "_schemaURL".into(),
            format!("{FACETS}/{version}/{name}.json#/$defs/{name}").into(),
        );
    }
    v
}

/// sluice's own run facet: what the run used (its schema is kept in the repository, in
/// `tests/openlineage/facets/SluiceRunCostRunFacet.json`).
fn cost_facet(c: &crate::cost::RunCost, rows: Option<u64>) -> Value {
    const NAME: &str = "SluiceRunCostRunFacet";
    let mut v = json!({
        "cpuSeconds": c.cpu_seconds(),
        "bytesRead": c.bytes_read,
        "bytesWritten": c.bytes_written,
        "objectStoreRequests": c.requests,
        "peakMemoryBytes": c.peak_memory_bytes,
        "_producer": producer(),
        "_schemaURL": format!("urn:sluice:openlineage:facets:1-0-0:{NAME}.json#/$defs/{NAME}"),
    });
    if let Some(r) = rows {
        v["rows"] = r.into();
    }
    v
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl RunEvent {
    /// The event as OpenLineage JSON, its job in `namespace`, linked to `parent` if given.
    pub fn to_json(&self, namespace: &str, parent: Option<&Parent>) -> Value {
        let mut run_facets = serde_json::Map::new();
        run_facets.insert(
            "processing_engine".into(),
            facet(
                "ProcessingEngineRunFacet",
                "1-1-1",
                json!({ "name": "sluice", "version": env!("CARGO_PKG_VERSION") }),
            ),
        );
        if let Some(p) = parent {
            run_facets.insert(
                "parent".into(),
                facet(
                    "ParentRunFacet",
                    "1-2-0",
                    json!({
                        "run": { "runId": p.run_id },
                        "job": { "namespace": namespace, "name": p.job },
                    }),
                ),
            );
        }
        if let Some((start, end)) = &self.nominal {
            run_facets.insert(
                "nominalTime".into(),
                facet(
                    "NominalTimeRunFacet",
                    "1-0-1",
                    json!({ "nominalStartTime": time(start), "nominalEndTime": time(end) }),
                ),
            );
        }
        if let Some(message) = &self.error {
            run_facets.insert(
                "errorMessage".into(),
                facet(
                    "ErrorMessageRunFacet",
                    "1-0-1",
                    json!({ "message": message, "programmingLanguage": "SQL" }),
                ),
            );
        }
        if let Some(c) = &self.cost {
            let rows = self.output.as_ref().and_then(|o| o.rows);
            run_facets.insert("sluice_cost".into(), cost_facet(c, rows));
        }
        let mut job_facets = serde_json::Map::new();
        job_facets.insert(
            "jobType".into(),
            facet(
                "JobTypeJobFacet",
                "2-0-4",
                json!({ "processingType": "BATCH", "integration": "SLUICE", "jobType": "JOB" }),
            ),
        );
        if let Some(sql) = &self.sql {
            job_facets.insert(
                "sql".into(),
                facet(
                    "SQLJobFacet",
                    "1-1-0",
                    json!({ "query": sql, "dialect": "datafusion" }),
                ),
            );
        }
        let outputs: Vec<Value> = self.output.iter().map(output_json).collect();
        json!({
            "eventType": self.kind.as_str(),
            "eventTime": time(&self.at),
            "producer": producer(),
            "schemaURL": SCHEMA_URL,
            "run": { "runId": self.run_id, "facets": run_facets },
            "job": { "namespace": namespace, "name": self.job, "facets": job_facets },
            "inputs": self.inputs.iter().map(Dataset::json).collect::<Vec<_>>(),
            "outputs": outputs,
        })
    }
}

fn output_json(o: &Output) -> Value {
    let mut v = o.dataset.json();
    let fields: Vec<Value> = o
        .fields
        .iter()
        .map(|f| {
            let mut field = json!({ "name": f.name, "type": f.ty });
            if let Some(d) = &f.description {
                field["description"] = d.clone().into();
            }
            field
        })
        .collect();
    let mut facets = serde_json::Map::new();
    facets.insert(
        "schema".into(),
        facet("SchemaDatasetFacet", "1-2-0", json!({ "fields": fields })),
    );
    if let Some(dv) = o.delta_version {
        facets.insert("version".into(), version_facet(&dv.to_string()));
    }
    v["facets"] = Value::Object(facets);
    if let Some(rows) = o.rows {
        v["outputFacets"] = json!({
            "outputStatistics": facet(
                "OutputStatisticsOutputDatasetFacet",
                "1-0-2",
                json!({ "rowCount": rows }),
            ),
        });
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datasets_are_named_as_openlineage_names_them() {
        let s3 = Url::parse("s3://lake/prod/clean_orders/v1/").unwrap();
        assert_eq!(
            Dataset::of_url(&s3),
            Dataset {
                namespace: "s3://lake".into(),
                name: "prod/clean_orders/v1".into(),
                version: None,
            }
        );
        let local = Url::parse("file:///srv/warehouse/clean_orders/v1/").unwrap();
        assert_eq!(
            Dataset::of_url(&local),
            Dataset {
                namespace: "file".into(),
                name: "/srv/warehouse/clean_orders/v1".into(),
                version: None,
            }
        );
    }
}
