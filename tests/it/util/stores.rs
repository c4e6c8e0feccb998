//! The servers the suite may run against instead of SQLite and a local folder, and the
//! local copies the tests read of a remote warehouse.

use super::processes::stdout_of;
use super::project::REPO;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The PostgreSQL server the suite runs against instead of SQLite: a URL whose user may
/// create databases (`SLUICE_TEST_CATALOG`, set by .ci/run). Each project gets its own.
pub fn remote_catalog() -> Option<String> {
    std::env::var("SLUICE_TEST_CATALOG")
        .ok()
        .filter(|v| !v.is_empty())
}

/// The object-store warehouse root the suite runs against instead of a local folder
/// (`SLUICE_TEST_WAREHOUSE`, `s3://NAME`: each project gets a new bucket `NAME-<id>`;
/// endpoint and keys in the AWS_* variables).
pub fn remote_warehouse() -> Option<String> {
    std::env::var("SLUICE_TEST_WAREHOUSE")
        .ok()
        .filter(|v| !v.is_empty())
}

/// A new, empty database on the test server, as a URL.
pub fn create_database(admin: &str) -> String {
    let name = format!("sluice_it_{}", uuid::Uuid::now_v7().simple());
    stdout_of(
        Command::new("psql")
            .args([admin, "-v", "ON_ERROR_STOP=1", "-q", "-c"])
            .arg(format!("CREATE DATABASE {name}")),
        "psql creating a test database (installed with PostgreSQL by .ci/run)",
    );
    let mut u = url::Url::parse(admin).expect("SLUICE_TEST_CATALOG is a URL");
    u.set_path(&format!("/{name}"));
    u.to_string()
}

/// Where a project keeps local copies of its remote warehouse, and the file naming the
/// remote root they come from.
pub(super) const COPY_DIR: &str = "warehouse-copy";
pub(super) const COPY_SOURCE: &str = "warehouse-copy.source";

/// Replaces `copy` with the objects under `<root><rel>` (absent when there are none).
pub(super) fn fetch_copy(root: &str, rel: &str, copy: &Path) {
    let _ = std::fs::remove_dir_all(copy);
    s3_objects(&["download", &format!("{root}{rel}"), copy.to_str().unwrap()]);
}

/// With a remote warehouse the tests read local copies of it; every reader below fetches
/// its copy again first, so that it shows the store as it is now, not as it was when the
/// test took the path. A path outside a copy (a local warehouse) is left alone.
pub fn refresh(dir: &Path) {
    let parts: Vec<_> = dir.components().collect();
    let Some(i) = parts.iter().position(|c| c.as_os_str() == COPY_DIR) else {
        return;
    };
    let project: PathBuf = parts[..i].iter().collect();
    let rel: PathBuf = parts[i + 1..].iter().collect();
    let root = std::fs::read_to_string(project.join(COPY_SOURCE)).unwrap();
    fetch_copy(&root, rel.to_str().unwrap(), dir);
}

/// Runs tests/it/s3_objects.py (boto3, installed by .ci/run with the S3-compatible server).
pub(super) fn s3_objects(args: &[&str]) -> u64 {
    stdout_of(
        Command::new("python3")
            .arg(Path::new(REPO).join("tests/it/s3_objects.py"))
            .args(args),
        &format!("s3_objects.py {args:?}"),
    )
    .trim()
    .parse()
    .unwrap_or(0)
}
