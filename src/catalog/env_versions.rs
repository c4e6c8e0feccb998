//! The physical versions an environment builds (`sluice apply --env NAME`): numbered from
//! [`FIRST_ENV_VERSION`], owned by the environment that made them, and written by no one
//! else. A claim checks the owner in its own transaction ([`check_owner`]), so neither a
//! production run nor another environment's can write a version that is not its own.

use super::{Catalog, CatalogError, query_err};

/// The first version number an environment's build takes; a spec's `version` stays below.
pub const FIRST_ENV_VERSION: i64 = 1_000_000;

/// The version production's alias of a table without one is expected at, in a flip: an
/// environment's base for a table production had no version of when it was copied.
pub const NO_VERSION: i64 = 0;

/// What [`Catalog::env_build_version`] is asked.
pub struct EnvBuild<'a> {
    pub table: &'a str,
    /// The `version` the job's spec names (what the build stands for).
    pub spec_version: i64,
    pub schema_json: &'a str,
    /// Where a version would live, by its number.
    pub uri_of: &'a dyn Fn(i64) -> String,
    pub now_ms: i64,
}

/// How a scope is named in messages.
fn scope_name(env: Option<&str>) -> String {
    match env {
        None => "production".to_string(),
        Some(e) => format!("environment {e}"),
    }
}

impl Catalog {
    /// The version the environment this catalog is scoped to builds `b.table` into, with
    /// its alias pointed at it, in one transaction: the version it already points at, if
    /// the environment made it and no other alias (production's or another environment's)
    /// points there; else a new one, numbered after every version of the table. Its alias
    /// moves before the build, so that what the build reads downstream is what it built.
    pub async fn env_build_version(&self, b: &EnvBuild<'_>) -> Result<i64, CatalogError> {
        let Some(env) = self.env.as_deref() else {
            return Err(CatalogError::Lost(
                "an environment's build was asked of production's catalog",
            ));
        };
        let mut tx = self.begin_write().await?;
        let current: Option<(i64, i64)> = sqlx::query_as(
            "SELECT version, base_version FROM env_aliases WHERE env = $1 AND name = $2",
        )
        .bind(env)
        .bind(b.table)
        .fetch_optional(&mut *tx)
        .await
        .map_err(query_err("read environment alias"))?;
        let reusable = match current {
            Some((v, _)) => own_alone(&mut tx, env, b.table, v).await?,
            None => false,
        };
        let version = match (reusable, current) {
            (true, Some((v, _))) => v,
            _ => new_version(&mut tx, env, b).await?,
        };
        let base: i64 = match current {
            Some((_, base)) => base,
            None => sqlx::query_scalar("SELECT version FROM aliases WHERE name = $1")
                .bind(b.table)
                .fetch_optional(&mut *tx)
                .await
                .map_err(query_err("read alias"))?
                .unwrap_or(NO_VERSION),
        };
        sqlx::query(
            "INSERT INTO env_aliases (env, name, version, base_version, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (env, name) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at",
        )
        .bind(env)
        .bind(b.table)
        .bind(version)
        .bind(base)
        .bind(b.now_ms)
        .execute(&mut *tx)
        .await
        .map_err(query_err("point environment alias"))?;
        super::changes::bump_in(&mut tx, b.table, super::changes::Followed::Reset).await?;
        tx.commit()
            .await
            .map_err(query_err("commit environment version"))?;
        Ok(version)
    }
}

impl Catalog {
    /// Each table whose alias (in this catalog's scope) points at a version an environment
    /// built: that version and the spec `version` it stands for.
    pub async fn env_built_live(
        &self,
    ) -> Result<std::collections::BTreeMap<String, (i64, i64)>, CatalogError> {
        let rows: Vec<(String, i64, i64)> = match self.env.as_deref() {
            None => sqlx::query_as(
                "SELECT a.name, a.version, v.spec_version FROM aliases a \
                 JOIN table_versions v ON v.table_name = a.name AND v.version = a.version \
                 WHERE v.spec_version IS NOT NULL",
            )
            .fetch_all(&self.pool),
            Some(env) => sqlx::query_as(
                "SELECT a.name, a.version, v.spec_version FROM env_aliases a \
                 JOIN table_versions v ON v.table_name = a.name AND v.version = a.version \
                 WHERE a.env = $1 AND v.spec_version IS NOT NULL \
                 UNION ALL \
                 SELECT a.name, a.version, v.spec_version FROM aliases a \
                 JOIN table_versions v ON v.table_name = a.name AND v.version = a.version \
                 WHERE v.spec_version IS NOT NULL \
                 AND a.name NOT IN (SELECT name FROM env_aliases WHERE env = $1)",
            )
            .bind(env)
            .fetch_all(&self.pool),
        }
        .await
        .map_err(query_err("read the versions environments built"))?;
        Ok(rows.into_iter().map(|(t, v, s)| (t, (v, s))).collect())
    }

    /// The flips `env promote` asks: each table whose alias in the environment points at
    /// a version the environment built, from the version production had when the
    /// environment was copied (production must still point there) to that one.
    pub async fn env_promotion(&self, env: &str) -> Result<Vec<super::Flip>, CatalogError> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT a.name, a.base_version, a.version FROM env_aliases a \
             JOIN table_versions v ON v.table_name = a.name AND v.version = a.version \
             WHERE a.env = $1 AND v.owner_env = $1 ORDER BY a.name",
        )
        .bind(env)
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("read the environment's own versions"))?;
        Ok(rows
            .into_iter()
            .map(|(table, expect, to)| super::Flip { table, expect, to })
            .collect())
    }
}

/// Whether `version` of `table` is `env`'s own and no other alias points at it.
async fn own_alone(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    env: &str,
    table: &str,
    version: i64,
) -> Result<bool, CatalogError> {
    let owner = owner_of(tx, table, version).await?;
    if owner.as_deref() != Some(env) {
        return Ok(false);
    }
    let others: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM aliases WHERE name = $1 AND version = $2) \
              + (SELECT COUNT(*) FROM env_aliases WHERE name = $1 AND version = $2 AND env <> $3)",
    )
    .bind(table)
    .bind(version)
    .bind(env)
    .fetch_one(&mut **tx)
    .await
    .map_err(query_err("read who points at a version"))?;
    Ok(others == 0)
}

/// Registers a new version of `b.table` owned by `env`, numbered after every other one.
async fn new_version(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    env: &str,
    b: &EnvBuild<'_>,
) -> Result<i64, CatalogError> {
    let highest: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM table_versions WHERE table_name = $1")
            .bind(b.table)
            .fetch_one(&mut **tx)
            .await
            .map_err(query_err("read the table's versions"))?;
    let mut version = highest.map_or(FIRST_ENV_VERSION, |h| (h + 1).max(FIRST_ENV_VERSION));
    // Another environment's build may take a number first (PostgreSQL): take the next.
    loop {
        let made = sqlx::query(
            "INSERT INTO table_versions (table_name, version, uri, schema_json, created_at, owner_env, spec_version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (table_name, version) DO NOTHING",
        )
        .bind(b.table)
        .bind(version)
        .bind((b.uri_of)(version))
        .bind(b.schema_json)
        .bind(b.now_ms)
        .bind(env)
        .bind(b.spec_version)
        .execute(&mut **tx)
        .await
        .map_err(query_err("register environment version"))?
        .rows_affected();
        if made == 1 {
            return Ok(version);
        }
        version += 1;
    }
}

async fn owner_of(
    conn: &mut sqlx::AnyConnection,
    table: &str,
    version: i64,
) -> Result<Option<String>, CatalogError> {
    let owner: Option<Option<String>> = sqlx::query_scalar(
        "SELECT owner_env FROM table_versions WHERE table_name = $1 AND version = $2",
    )
    .bind(table)
    .bind(version)
    .fetch_optional(&mut *conn)
    .await
    .map_err(query_err("read a version's owner"))?;
    Ok(owner.flatten())
}

/// Refuses a claim by the scope `env` (production: `None`) on a version another owns.
pub(super) async fn check_owner(
    conn: &mut sqlx::AnyConnection,
    table: &str,
    version: i64,
    env: Option<&str>,
) -> Result<(), CatalogError> {
    let owner = owner_of(conn, table, version).await?;
    if owner.as_deref() == env {
        return Ok(());
    }
    Err(CatalogError::NotOwned {
        table: table.to_string(),
        version,
        owner: scope_name(owner.as_deref()),
        writer: scope_name(env),
    })
}
