//! Many rows of a SQLite catalog, read straight from its file: the partitions (and their
//! data versions) that `status` of a whole project, the grid and the planner read by the
//! thousand.
//!
//! Why: through sqlx, each value is copied out of SQLite and handed across its worker
//! thread, so large reads are folded into JSON by the database (`folded.rs`). At a million
//! partitions, SQLite building that JSON took 1.8 s of CPU on its own, and parsing it more
//! beside: most of the whole `status`. Here a connection of its own (read-only, opened for
//! the read, on a blocking thread) steps the statement and borrows each value where
//! SQLite holds it. Each read is one statement, so one snapshot of the catalog (WAL), as a
//! folded read of one text is. A catalog that is not a file on disk (in memory) is read
//! folded.

use super::folded::{COLUMNS, Folded, Order};
use super::{CatalogError, PartitionStatus};
use rusqlite::types::ValueRef;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The catalog's file, when `url` names one that exists: `None` for an in-memory catalog.
pub(super) fn file_of(url: &str) -> Option<PathBuf> {
    use std::str::FromStr as _;
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    let path = options.get_filename();
    path.is_file().then(|| path.to_path_buf())
}

/// A value bound to a statement's placeholder (`folded::Bind`, owned: it goes to another
/// thread).
#[derive(Debug, Clone)]
pub(super) enum Owned {
    Text(String),
    Int(i64),
}

/// The partitions `filter` selects (`WHERE ...` over `partitions p`, its placeholders
/// `$1`... given by `binds`), in `order`: as `folded::read` reads them.
pub(super) async fn read(
    file: &Path,
    (filter, order): (&str, Order),
    binds: Vec<Owned>,
) -> Result<Vec<PartitionStatus>, CatalogError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM partitions p {filter} ORDER BY {}",
        order.columns()
    );
    let each = |row: &rusqlite::Row<'_>| folded_of(row)?.into_status();
    rows_of(file, (&sql, "list partitions"), binds, each).await
}

/// The first two columns of `sql`'s rows, as text (the second may be NULL): a column of
/// every partition of a version, by key.
pub(super) async fn pairs(
    file: &Path,
    (sql, op): (&str, &'static str),
    binds: Vec<Owned>,
) -> Result<Vec<(String, Option<String>)>, CatalogError> {
    let each = move |row: &rusqlite::Row<'_>| {
        let value = |at| Ok::<_, CatalogError>((at, row.get_ref(at).map_err(file_err(op))?));
        Ok((text(value(0)?)?, opt_text(value(1)?)?))
    };
    rows_of(file, (sql, op), binds, each).await
}

/// Each row of `sql` (placeholders `$1`... given by `binds`) as `each` reads it, on a
/// blocking thread, through a read-only connection of its own.
async fn rows_of<T, F>(
    file: &Path,
    (sql, op): (&str, &'static str),
    binds: Vec<Owned>,
    each: F,
) -> Result<Vec<T>, CatalogError>
where
    T: Send + 'static,
    F: Fn(&rusqlite::Row<'_>) -> Result<T, CatalogError> + Send + 'static,
{
    let (file, sql) = (file.to_path_buf(), numbered(sql));
    let read = move || {
        use rusqlite::OpenFlags;
        let opening = file_err("open the catalog file to read from it");
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = rusqlite::Connection::open_with_flags(&file, flags).map_err(&opening)?;
        // As every connection of the catalog's own waits for a writer (`SQLITE_PRAGMAS`).
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(&opening)?;
        let mut statement = conn.prepare(&sql).map_err(file_err(op))?;
        let params = binds.into_iter().map(|b| match b {
            Owned::Text(t) => rusqlite::types::Value::Text(t),
            Owned::Int(i) => rusqlite::types::Value::Integer(i),
        });
        let mut rows = statement
            .query(rusqlite::params_from_iter(params))
            .map_err(file_err(op))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(file_err(op))? {
            out.push(each(row)?);
        }
        Ok(out)
    };
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|e| CatalogError::Corrupt(format!("a read of the catalog file stopped: {e}")))?
}

fn file_err(op: &'static str) -> impl Fn(rusqlite::Error) -> CatalogError {
    move |source| CatalogError::File { op, source }
}

/// One row's [`COLUMNS`], as the database folding them would have written them.
fn folded_of(row: &rusqlite::Row<'_>) -> Result<Folded, CatalogError> {
    let mut at = 0;
    let mut next = || {
        at += 1;
        let value = row.get_ref(at - 1).map_err(file_err("list partitions"))?;
        Ok::<_, CatalogError>((at - 1, value))
    };
    Ok(Folded(
        text(next()?)?,
        text(next()?)?,
        int(next()?)?,
        text(next()?)?,
        text(next()?)?,
        opt_int(next()?)?,
        opt_text(next()?)?,
        opt_text(next()?)?,
        opt_int(next()?)?,
        text(next()?)?,
        opt_text(next()?)?,
        opt_int(next()?)?,
        opt_int(next()?)?,
        opt_int(next()?)?,
        opt_text(next()?)?,
        opt_text(next()?)?,
        opt_int(next()?)?,
        opt_int(next()?)?,
        opt_int(next()?)?,
        opt_int(next()?)?,
        opt_int(next()?)?,
        opt_text(next()?)?,
    ))
}

fn wrong(at: usize, v: ValueRef<'_>, wanted: &str) -> CatalogError {
    CatalogError::Corrupt(format!(
        "a row of the catalog: column {at} holds {:?} where {wanted} belongs",
        v.data_type()
    ))
}

fn opt_text((at, v): (usize, ValueRef<'_>)) -> Result<Option<String>, CatalogError> {
    match v {
        ValueRef::Null => Ok(None),
        ValueRef::Text(t) => std::str::from_utf8(t)
            .map(|s| Some(s.to_string()))
            .map_err(|_| wrong(at, v, "UTF-8 text")),
        _ => Err(wrong(at, v, "text")),
    }
}

fn text(value: (usize, ValueRef<'_>)) -> Result<String, CatalogError> {
    let (at, v) = value;
    opt_text(value)?.ok_or_else(|| wrong(at, v, "text"))
}

fn opt_int((at, v): (usize, ValueRef<'_>)) -> Result<Option<i64>, CatalogError> {
    match v {
        ValueRef::Null => Ok(None),
        ValueRef::Integer(i) => Ok(Some(i)),
        _ => Err(wrong(at, v, "an integer")),
    }
}

fn int(value: (usize, ValueRef<'_>)) -> Result<i64, CatalogError> {
    let (at, v) = value;
    opt_int(value)?.ok_or_else(|| wrong(at, v, "an integer"))
}

/// `filter`'s `$N` placeholders as SQLite's `?N`: the same numbers, bound by position.
fn numbered(filter: &str) -> String {
    let mut out = String::with_capacity(filter.len());
    let mut chars = filter.chars().peekable();
    while let Some(c) = chars.next() {
        let digit_next = chars.peek().is_some_and(|n| n.is_ascii_digit());
        out.push(if c == '$' && digit_next { '?' } else { c });
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_keep_their_numbers() {
        assert_eq!(
            super::numbered("WHERE p.job = $1 AND (a, b) > ($2, $10) AND c = '$'"),
            "WHERE p.job = ?1 AND (a, b) > (?2, ?10) AND c = '$'"
        );
    }
}
