//! Why a storage operation failed, read from the error's source chain by type (an
//! `std::io::Error`'s kind, an HTTP status), never from its text: whether a retry can help,
//! and what to tell the user.

use crate::spelling::spelled_enum;
use std::error::Error;

spelled_enum! {
    /// The kind of a storage failure.
    pub enum StorageCause {
        /// The warehouse (or a folder in it) is not writable for this user, or read-only.
        PermissionDenied => "permission denied",
        NotFound => "not found",
        /// The store asks to slow down (HTTP 429 or 503): worth a retry.
        Throttled => "throttled",
        /// The connection failed or timed out: worth a retry.
        Network => "network",
        /// The disk under the warehouse (or the temporary folder) is full.
        Full => "no space left",
    }
}

impl StorageCause {
    pub fn is_transient(self) -> bool {
        matches!(self, StorageCause::Throttled | StorageCause::Network)
    }

    pub fn hint(self) -> &'static str {
        match self {
            StorageCause::PermissionDenied => {
                "the warehouse is not writable here: give this user write access (or the store's credentials the right to write), or point --warehouse elsewhere"
            }
            StorageCause::NotFound => "check the warehouse URL (bucket, container, folder)",
            StorageCause::Throttled => "the store asked to slow down; the run is retried",
            StorageCause::Network => "the store could not be reached; the run is retried",
            StorageCause::Full => {
                "free space where the warehouse lives (or point --warehouse elsewhere), then run the partition again: nothing was published"
            }
        }
    }
}

/// The cause of `e`, and the message of the error that says it best (the one just above
/// the I/O error, which names the path), when the chain holds a known one.
pub fn storage_cause(e: &(dyn Error + 'static)) -> Option<(StorageCause, String)> {
    let mut above: Option<&(dyn Error + 'static)> = None;
    let mut current = Some(e);
    while let Some(err) = current {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            let cause = match io.kind() {
                K::PermissionDenied | K::ReadOnlyFilesystem => Some(StorageCause::PermissionDenied),
                K::NotFound => Some(StorageCause::NotFound),
                K::TimedOut
                | K::ConnectionRefused
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::BrokenPipe
                | K::HostUnreachable
                | K::NetworkUnreachable => Some(StorageCause::Network),
                // An I/O error wrapping another (a writer's view of an object-store
                // error): the cause is further down.
                _ => None,
            };
            if let Some(cause) = cause {
                return Some((cause, above.unwrap_or(err).to_string()));
            }
            // Said by the I/O error itself: the layers above it (a Parquet writer's "failed
            // to parse") would only mislead.
            if io.kind() == K::StorageFull {
                return Some((StorageCause::Full, io.to_string()));
            }
        }
        if let Some(http) = err.downcast_ref::<reqwest::Error>() {
            let cause = match http.status().map(|s| s.as_u16()) {
                Some(429 | 503) => StorageCause::Throttled,
                Some(401 | 403) => StorageCause::PermissionDenied,
                Some(404) => StorageCause::NotFound,
                // A connection that broke while the request or its answer was under
                // way: the request may or may not have taken effect, and a retry can help.
                _ if http.is_timeout()
                    || http.is_connect()
                    || http.is_request()
                    || http.is_body() =>
                {
                    StorageCause::Network
                }
                _ => return None,
            };
            return Some((cause, err.to_string()));
        }
        above = Some(err);
        current = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("Unable to create dir /w/t/v1/dt=2024-01-25")]
    struct Local {
        #[source]
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("Failed to parse parquet: External: {0}")]
    struct Outer(#[source] Local);

    #[test]
    fn an_io_error_that_wraps_another_is_looked_through() {
        let wrapped = std::io::Error::other(Local {
            source: std::io::Error::from(std::io::ErrorKind::ReadOnlyFilesystem),
        });
        let (cause, _) = storage_cause(&wrapped).unwrap();
        assert_eq!(cause, StorageCause::PermissionDenied);
    }

    #[test]
    fn the_cause_is_read_from_the_chain_by_kind() {
        let e = Outer(Local {
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        });
        let (cause, said) = storage_cause(&e).unwrap();
        assert_eq!(cause, StorageCause::PermissionDenied);
        assert!(!cause.is_transient());
        assert_eq!(said, "Unable to create dir /w/t/v1/dt=2024-01-25");
        let other = Outer(Local {
            source: std::io::Error::other("disk on fire"),
        });
        assert!(storage_cause(&other).is_none());
    }
}
