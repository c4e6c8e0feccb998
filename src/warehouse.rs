//! Where table data lives: `<warehouse>/<table>/v<N>/`, one Delta table per physical version.
//!
//! Paths are built only from validated [`Name`]s and version numbers (promise 6), so a table
//! can never be written outside its own folder.

use crate::names::Name;
use url::Url;

/// The location of physical version `version` of `table`.
pub fn version_url(warehouse: &Url, table: &Name, version: u32) -> Url {
    // `join` on a URL ending in `/` appends; the segments are checked names and a number.
    let mut u = warehouse.clone();
    let base = u.path().trim_end_matches('/').to_string();
    u.set_path(&format!("{base}/{table}/v{version}/"));
    u
}

/// A URL for display and for other readers: a local path for `file://`, else the URL.
/// [`display`] for a location stored as text.
pub fn display_str(uri: &str) -> String {
    match Url::parse(uri) {
        Ok(u) => display(&u),
        Err(_) => crate::redact::redact_url(uri),
    }
}

pub fn display(url: &Url) -> String {
    if url.scheme() == "file" {
        if let Ok(p) = url.to_file_path() {
            return p.display().to_string();
        }
    }
    url.to_string()
}

/// Why the warehouse cannot take writes safely.
#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    #[error(
        "warehouse {url}: Delta commits would not be atomic: {why}. Two writers of one table could both think they committed the same log entry, and one partition's data would be lost. Fix: {fix}. If only one process ever writes this warehouse, opt out with `allow_unsafe_commits = true` under [warehouse] in sluice.toml (or SLUICE_ALLOW_UNSAFE_COMMITS=1)"
    )]
    UnsafeCommits {
        url: String,
        why: String,
        fix: &'static str,
    },
    #[error("warehouse {url}: cannot use the object store: {message}")]
    Store { url: String, message: String },
}

/// Refuses an object-store warehouse whose Delta commits would not be atomic under
/// concurrent writers, unless `allow_unsafe_commits` is set.
///
/// A Delta commit is "create `_delta_log/N.json` if it does not exist"; on an object store
/// that is a conditional put (`If-None-Match: *`). Some S3-compatible servers ignore the
/// header and overwrite silently, and delta-rs's `AWS_S3_ALLOW_UNSAFE_RENAME` or
/// `AWS_CONDITIONAL_PUT=disabled` turn it off; so the setting is checked and then the store
/// itself is asked: the same probe object is created twice, and the second create must be
/// refused. A local folder needs no probe: the commit is a hard link, which refuses an
/// existing name.
pub async fn check_atomic_commits(
    settings: &crate::config::Settings,
) -> Result<(), WarehouseError> {
    let url = &settings.warehouse;
    if url.scheme() == "file" || settings.allow_unsafe_commits {
        return Ok(());
    }
    let shown = display(url);
    let unsafe_env = |k: &str| std::env::var(k).ok().map(|v| v.trim().to_ascii_lowercase());
    if unsafe_env("AWS_S3_ALLOW_UNSAFE_RENAME").is_some_and(|v| v == "true" || v == "1") {
        return Err(WarehouseError::UnsafeCommits {
            url: shown,
            why: "AWS_S3_ALLOW_UNSAFE_RENAME is set, which makes commits plain overwrites".into(),
            fix: "unset AWS_S3_ALLOW_UNSAFE_RENAME",
        });
    }
    if unsafe_env("AWS_CONDITIONAL_PUT").is_some_and(|v| v == "disabled") {
        return Err(WarehouseError::UnsafeCommits {
            url: shown,
            why: "AWS_CONDITIONAL_PUT=disabled turns off create-if-absent".into(),
            fix: "unset AWS_CONDITIONAL_PUT (the default, `etag`, uses If-None-Match)",
        });
    }
    probe_conditional_put(url).await
}

async fn probe_conditional_put(url: &Url) -> Result<(), WarehouseError> {
    use deltalake::logstore::object_store::{Error as StoreError, PutMode, PutOptions, PutPayload};
    let shown = display(url);
    let store_err = |message: String| WarehouseError::Store {
        url: shown.clone(),
        message: crate::redact::redact_text(&message),
    };
    let table = deltalake::DeltaTable::try_from_url(url.clone())
        .await
        .map_err(|e| store_err(e.to_string()))?;
    let store = table.log_store().object_store(None);
    let path = deltalake::Path::from(format!("_sluice/commit-probe/{}", uuid::Uuid::now_v7()));
    let create = || PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    let first = store
        .put_opts(&path, PutPayload::from_static(b"1"), create())
        .await;
    let verdict = match first {
        Ok(_) => match store
            .put_opts(&path, PutPayload::from_static(b"2"), create())
            .await
        {
            Err(StoreError::AlreadyExists { .. }) | Err(StoreError::Precondition { .. }) => Ok(()),
            Ok(_) => Err(WarehouseError::UnsafeCommits {
                url: shown.clone(),
                why: "the object store accepted a second create of the same object (it ignores If-None-Match)".into(),
                fix: "use a store that supports conditional writes (AWS S3, MinIO, Cloudflare R2, GCS, Azure do)",
            }),
            Err(e) => Err(store_err(e.to_string())),
        },
        Err(StoreError::NotImplemented { .. }) => Err(WarehouseError::UnsafeCommits {
            url: shown.clone(),
            why: "the object store client has conditional put turned off".into(),
            fix: "unset AWS_CONDITIONAL_PUT, or set it to `etag`",
        }),
        Err(e) => Err(store_err(e.to_string())),
    };
    // The probe object is ours alone (a fresh id); leaving it behind would be harmless.
    {
        use futures::{StreamExt as _, TryStreamExt as _};
        let one = futures::stream::iter([Ok(path.clone())]).boxed();
        let _ = store.delete_stream(one).try_collect::<Vec<_>>().await;
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_live_under_their_table() {
        let w = Url::parse("file:///data/warehouse/").unwrap();
        let t = Name::new("daily_revenue").unwrap();
        assert_eq!(
            version_url(&w, &t, 2).as_str(),
            "file:///data/warehouse/daily_revenue/v2/"
        );
        let s = Url::parse("s3://bucket/prefix/").unwrap();
        assert_eq!(
            version_url(&s, &t, 1).as_str(),
            "s3://bucket/prefix/daily_revenue/v1/"
        );
    }
}
