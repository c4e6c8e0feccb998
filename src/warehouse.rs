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
    if url.scheme() == "file"
        && let Ok(p) = url.to_file_path()
    {
        return p.display().to_string();
    }
    url.to_string()
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
