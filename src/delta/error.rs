//! What went wrong with a table's storage. The error from below (deltalake, object_store,
//! Arrow, DataFusion, I/O) is kept whole, never turned into text: whether a retry can help
//! is read from its chain by type (`cause.rs`), and the user reads every layer of it.

use super::cause::{StorageCause, storage_cause};
use deltalake::DeltaTableError;
use std::error::Error;
use std::sync::Arc;
use url::Url;

/// An error from a library below, shared so that one failed commit can answer every
/// partition of its batch.
pub type Below = Arc<dyn Error + Send + Sync + 'static>;

pub fn below(e: impl Error + Send + Sync + 'static) -> Below {
    Arc::new(e)
}

/// sluice's own words for a failure no library reported (a table without a version, a
/// commit request whose answer was lost).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Said(pub &'static str);

/// A local file that could not be read, with its path.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", .path.display())]
pub struct LocalFile {
    pub path: std::path::PathBuf,
    pub source: std::io::Error,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum DeltaError {
    #[error("cannot create Delta table at {url}: {source}")]
    Create { url: String, source: Below },
    #[error("cannot open Delta table at {url}: {source}")]
    Open { url: String, source: Below },
    #[error(
        "Delta table at {url} has schema that differs from table `{table}` in the catalog: {message}"
    )]
    SchemaDrift {
        url: String,
        table: String,
        message: String,
    },
    #[error("cannot write data files to {url}: {source}")]
    Write { url: String, source: Below },
    /// A write that failed for a known storage cause (see [`StorageCause`]).
    #[error("cannot {doing} {url}: {}: {message}; {}", .cause.as_str(), .cause.hint())]
    Storage {
        /// What was being done: "write data files to", "commit to".
        doing: &'static str,
        url: String,
        cause: StorageCause,
        /// The layer of the error that says the cause best (the one naming the path).
        message: String,
        source: Below,
    },
    #[error(
        "partition {partition}: this worker's lease (fencing token {ours}) was taken over by another worker; this run's output is discarded"
    )]
    Fenced { partition: String, ours: i64 },
    #[error(
        "partition {partition}: the catalog could not be reached to confirm this worker's lease (fencing token {ours}) before the commit, and the lease may have lapsed meanwhile: {why}; nothing was committed, and the run is retried once the catalog answers"
    )]
    LeaseUnconfirmed {
        partition: String,
        ours: i64,
        why: String,
    },
    #[error(
        "partition {partition}: the schema of {url} changed since this run wrote its files (a migration was applied meanwhile); nothing was committed, and a retry writes under the new schema"
    )]
    SchemaChanged { url: String, partition: String },
    #[error("commit to {url} conflicted with a concurrent commit: {source}")]
    Conflict { url: String, source: Below },
    #[error(
        "cannot read {url} on a Ballista cluster: the table uses {features}, which a Ballista cluster cannot read from its Parquet files alone; run this job on the embedded engine (`[engine] kind = \"datafusion\"` in its spec)"
    )]
    NeedsDeltaReader { url: String, features: String },
    #[error(
        "cannot change the schema of {url}: column `{column}` has a value that does not fit {sql_type}: {source}"
    )]
    DoesNotFit {
        url: String,
        column: String,
        sql_type: String,
        source: Below,
    },
    #[error(
        "cannot change the schema of {url}: column `{column}` holds null values in the rows already written ({nulls} in one batch read); NOT NULL cannot apply until they are filled in"
    )]
    NullsInNotNull {
        url: String,
        column: String,
        nulls: usize,
    },
    #[error("commit to {url} failed: {source}")]
    Commit { url: String, source: Below },
}

/// What was being done when an error from below came: which variant tells it, and the
/// words [`DeltaError::Storage`] uses when the cause is known.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Doing {
    Create,
    Open,
    Write,
    Commit,
}

impl Doing {
    fn words(self) -> &'static str {
        match self {
            Doing::Create => "create the Delta table at",
            Doing::Open => "open the Delta table at",
            Doing::Write => "write data files to",
            Doing::Commit => "commit to",
        }
    }
}

impl DeltaError {
    /// `e` met while `doing` something to the table at `url`: by its storage cause when
    /// the error chain holds a known one (the user reads the cause and what to do), else
    /// as the library says it.
    pub(crate) fn below(
        doing: Doing,
        url: &Url,
        e: impl Error + Send + Sync + 'static,
    ) -> DeltaError {
        DeltaError::below_shown(doing, crate::warehouse::display(url), below(e))
    }

    pub(crate) fn below_shown(doing: Doing, url: String, source: Below) -> DeltaError {
        if let Some((cause, message)) = storage_cause(&*source) {
            return DeltaError::Storage {
                doing: doing.words(),
                url,
                cause,
                message,
                source,
            };
        }
        match doing {
            Doing::Create => DeltaError::Create { url, source },
            Doing::Open => DeltaError::Open { url, source },
            Doing::Write => DeltaError::Write { url, source },
            Doing::Commit => DeltaError::Commit { url, source },
        }
    }

    pub(crate) fn commit(url: &Url, e: DeltaTableError) -> DeltaError {
        DeltaError::below(Doing::Commit, url, e)
    }

    pub(crate) fn create(url: &Url, e: DeltaTableError) -> DeltaError {
        DeltaError::below(Doing::Create, url, e)
    }

    pub(crate) fn open(url: &Url, e: DeltaTableError) -> DeltaError {
        DeltaError::below(Doing::Open, url, e)
    }

    /// Storage hiccups are worth a retry, and so is a commit that lost a race or could not
    /// confirm its lease; a fenced writer or a schema drift is not. Read by type: the
    /// cause of an error from below is found in its chain, never in its words.
    pub fn is_transient(&self) -> bool {
        match self {
            DeltaError::Write { source, .. }
            | DeltaError::Commit { source, .. }
            | DeltaError::Open { source, .. }
            | DeltaError::Create { source, .. } => {
                storage_cause(&**source).is_some_and(|(cause, _)| cause.is_transient())
            }
            DeltaError::Storage { cause, .. } => cause.is_transient(),
            DeltaError::Conflict { .. }
            | DeltaError::SchemaChanged { .. }
            | DeltaError::LeaseUnconfirmed { .. } => true,
            DeltaError::SchemaDrift { .. }
            | DeltaError::Fenced { .. }
            | DeltaError::NeedsDeltaReader { .. }
            | DeltaError::DoesNotFit { .. }
            | DeltaError::NullsInNotNull { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> Url {
        Url::parse("s3://bucket/t/v1").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_broken_connection_below_a_commit_is_transient_and_said_by_cause() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let e = DeltaError::commit(&url(), DeltaTableError::from(reset));
        assert!(e.is_transient(), "{e}");
        assert!(
            matches!(
                e,
                DeltaError::Storage {
                    cause: StorageCause::Network,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.source().is_some(), "the error from below is kept");
    }

    #[test]
    fn words_that_sound_transient_do_not_make_an_error_transient() {
        // A table that says "connection" or "timed out" in its text, with nothing below it
        // that is a broken connection, is not retried: the word list is gone.
        let e = DeltaError::below(
            Doing::Open,
            &url(),
            Said("generic io error: connection timed out (said, not typed)"),
        );
        assert!(matches!(e, DeltaError::Open { .. }), "{e:?}");
        assert!(!e.is_transient(), "{e}");
    }

    #[test]
    fn a_full_disk_is_not_transient() {
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let e = DeltaError::below(Doing::Write, &url(), full);
        assert!(
            matches!(
                e,
                DeltaError::Storage {
                    cause: StorageCause::Full,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(!e.is_transient());
    }
}
