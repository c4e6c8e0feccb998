//! `sluice init DIR`: a new project that validates, migrates and backfills as created —
//! settings, one daily job over a CSV input, its migration and three days of sample data;
//! with `--template command`, the job's input is a script's output instead (an extract
//! step). The files are the ones in `template/`, built into the binary.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The job's name: its spec is `jobs/<JOB>.toml`.
pub const JOB: &str = "page_visits";
/// The days the sample data covers, for the first backfill.
pub const FIRST_DAY: &str = "2024-01-01";
pub const LAST_DAY: &str = "2024-01-03";

/// Every file of a new project: its path in the project and its content.
const FILES: &[(&str, &str)] = &[
    ("sluice.toml", include_str!("template/sluice.toml")),
    (".gitignore", include_str!("template/gitignore")),
    ("jobs/page_visits.toml", include_str!("template/job.toml")),
    ("jobs/page_visits.sql", include_str!("template/job.sql")),
    (
        "jobs/tests/page_visits.toml",
        include_str!("template/job_test.toml"),
    ),
    (
        "migrations/0001_create_page_visits.sql",
        include_str!("template/migration.sql"),
    ),
    (
        "data/visits/dt=2024-01-01/visits.csv",
        include_str!("template/visits-2024-01-01.csv"),
    ),
    (
        "data/visits/dt=2024-01-02/visits.csv",
        include_str!("template/visits-2024-01-02.csv"),
    ),
    (
        "data/visits/dt=2024-01-03/visits.csv",
        include_str!("template/visits-2024-01-03.csv"),
    ),
];

/// What the new project's job reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Template {
    /// One CSV file per day.
    #[default]
    Files,
    /// What a script writes to its standard output (`scripts/fetch_visits.sh`).
    Command,
}

/// The files of a new project of `template`.
fn files(template: Template) -> Vec<(&'static str, &'static str)> {
    let mut files = FILES.to_vec();
    if template == Template::Command {
        for f in files.iter_mut().filter(|f| f.0 == "jobs/page_visits.toml") {
            f.1 = include_str!("template/job_command.toml");
        }
        files.push((
            "scripts/fetch_visits.sh",
            include_str!("template/fetch_visits.sh"),
        ));
    }
    files
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(
        "{dir} is not empty (it holds {first}{more}); sluice init only writes into a new or empty folder, so that it never overwrites a file: name another folder"
    )]
    NotEmpty {
        dir: String,
        first: String,
        more: String,
    },
    #[error("cannot create {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> InitError + '_ {
    move |source| InitError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes a new project into `dir`, which must not exist or be empty. Returns the files
/// written, relative to `dir`. Every file is created new, so nothing is ever overwritten,
/// even by a folder filled between the check and the write.
pub fn init(dir: &Path, template: Template) -> Result<Vec<PathBuf>, InitError> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        if let Some(first) = names.first() {
            return Err(InitError::NotEmpty {
                dir: dir.display().to_string(),
                first: first.clone(),
                more: match names.len() {
                    1 => String::new(),
                    n => format!(" and {} more", n - 1),
                },
            });
        }
    }
    let files = files(template);
    let mut written = Vec::with_capacity(files.len());
    for (rel, content) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut f| f.write_all(content.as_bytes()))
            .map_err(io_err(&path))?;
        written.push(PathBuf::from(rel));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_folder_with_files_and_leaves_them_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        let e = init(dir.path(), Template::Files).unwrap_err();
        assert!(e.to_string().contains("notes.txt"), "{e}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("notes.txt")).unwrap(),
            "mine"
        );
        assert!(!dir.path().join("sluice.toml").exists());
    }

    #[test]
    fn the_job_file_names_match_the_job() {
        assert!(FILES.iter().any(|(p, _)| *p == format!("jobs/{JOB}.toml")));
        let command = files(Template::Command);
        assert!(command.iter().any(
            |(p, c)| *p == format!("jobs/{JOB}.toml") && c.contains("scripts/fetch_visits.sh")
        ));
        assert!(command.iter().any(|(p, _)| *p == "scripts/fetch_visits.sh"));
        assert!(
            FILES
                .iter()
                .any(|(p, _)| p.contains(FIRST_DAY) && p.ends_with(".csv"))
        );
        assert!(FILES.iter().any(|(p, _)| p.contains(LAST_DAY)));
    }
}
