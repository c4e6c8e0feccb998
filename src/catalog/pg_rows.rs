//! Many partition rows of a PostgreSQL catalog, read as rows by the PostgreSQL driver
//! itself: what `status` of a whole project, the grid and the planner read by the thousand.
//!
//! Why: folded (`folded.rs`), the server builds a JSON array of each row, and
//! `json_build_array` looks up each argument's type and output function for every value. At
//! a million partitions that was about 5.4 s of the server's CPU, on one core, while the
//! client waited: most of a whole `status`. As rows, the server sends each value as it
//! holds it (the binary protocol), and the typed driver (not `Any`, which copies each value
//! into one of its own) decodes each where it lies in the message. One statement, so one
//! snapshot, as a folded read of one text is.

use super::folded::{Bind, COLUMNS, Folded, Order};
use super::{CatalogError, PartitionStatus, query_err};
use futures::TryStreamExt as _;
use sqlx::Row as _;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};

/// A pool of the driver's own beside the catalog's, for these reads: connects nothing
/// until the first.
pub(super) fn pool(url: &str) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(std::time::Duration::from_secs(30))
        .connect_lazy(url)
}

/// The partitions `filter` selects (`WHERE ...` over `partitions p`, its placeholders
/// `$1`... given by `binds`), in `order`: as `folded::read` reads them.
pub(super) async fn read(
    pool: &PgPool,
    (filter, order): (&str, Order),
    binds: &[Bind<'_>],
) -> Result<Vec<PartitionStatus>, CatalogError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM partitions p {filter} ORDER BY {}",
        order.columns()
    );
    // Its text is ours: the filter and order are constants, the values are bound.
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for b in binds {
        query = match *b {
            Bind::Text(t) => query.bind(t),
            Bind::Int(i) => query.bind(i),
        };
    }
    let op = "list partitions";
    let mut rows = query.fetch(pool);
    let mut out = Vec::new();
    while let Some(row) = rows.try_next().await.map_err(query_err(op))? {
        out.push(folded_of(&row).map_err(query_err(op))?.into_status()?);
    }
    Ok(out)
}

/// One row's [`COLUMNS`], as the database folding them would have written them.
fn folded_of(row: &PgRow) -> Result<Folded, sqlx::Error> {
    Ok(Folded(
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
        row.try_get(4)?,
        row.try_get(5)?,
        row.try_get(6)?,
        row.try_get(7)?,
        row.try_get(8)?,
        row.try_get(9)?,
        row.try_get(10)?,
        row.try_get(11)?,
        row.try_get(12)?,
        row.try_get(13)?,
        row.try_get(14)?,
        row.try_get(15)?,
        row.try_get(16)?,
        row.try_get(17)?,
        row.try_get(18)?,
        row.try_get(19)?,
        row.try_get(20)?,
        row.try_get(21)?,
    ))
}
