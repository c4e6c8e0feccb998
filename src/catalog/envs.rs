//! Environments: named sets of aliases beside production's. Made by copying pointers in
//! one statement (never data), read through [`Catalog::alias`] once a catalog is scoped to
//! one ([`Catalog::in_env`]), dropped by deleting their rows: the physical versions they
//! point at stay for `gc` to judge.

use super::{Catalog, CatalogError, query_err};

/// The name of production's aliases, which no environment may take.
pub const PROD: &str = "prod";

/// One environment, as `env list` shows it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct EnvRow {
    pub name: String,
    pub source: String,
    pub created_at: i64,
    pub created_by: String,
    pub expires_at: Option<i64>,
    /// Its aliases.
    pub tables: i64,
    /// Of those, the ones that point elsewhere than production did when copied.
    pub own_versions: i64,
}

impl EnvRow {
    pub fn expired(&self, now_ms: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now_ms)
    }
}

/// What `env create` asks.
#[derive(Debug, Clone)]
pub struct NewEnv<'a> {
    pub name: &'a str,
    /// `prod`, or an environment to copy.
    pub from: &'a str,
    pub by: &'a str,
    pub now_ms: i64,
    pub expires_at: Option<i64>,
}

/// Why `env create` made nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotCreated {
    Exists,
    NoSource,
}

/// The environments with their counts of aliases, then `$rest` (a filter, the grouping).
macro_rules! env_rows {
    ($rest:literal) => {
        concat!(
            "SELECT e.name, e.source, e.created_at, e.created_by, e.expires_at, ",
            "COUNT(a.name) AS tables, ",
            "COALESCE(SUM(CASE WHEN a.version <> a.base_version THEN 1 ELSE 0 END), 0) AS own_versions ",
            "FROM environments e LEFT JOIN env_aliases a ON a.env = e.name ",
            $rest,
            " GROUP BY e.name, e.source, e.created_at, e.created_by, e.expires_at"
        )
    };
}

impl Catalog {
    /// This catalog, its alias reads scoped to the environment `name` (`prod`: none).
    pub fn in_env(&self, name: &str) -> Catalog {
        let mut scoped = self.clone();
        scoped.env = (name != PROD).then(|| std::sync::Arc::from(name));
        scoped
    }

    /// The environment alias reads are scoped to; `None` is production.
    pub fn env(&self) -> Option<&str> {
        self.env.as_deref()
    }

    /// Creates the environment `new.name` with a copy of `new.from`'s aliases (production's
    /// or another environment's), all in one transaction: its pointers, no data.
    pub async fn create_env(
        &self,
        new: &NewEnv<'_>,
    ) -> Result<Result<i64, NotCreated>, CatalogError> {
        let mut tx = self.begin_write().await?;
        let refused = if env_exists(&mut tx, new.name).await? {
            Some(NotCreated::Exists)
        } else if new.from != PROD && !env_exists(&mut tx, new.from).await? {
            Some(NotCreated::NoSource)
        } else {
            None
        };
        if let Some(why) = refused {
            tx.rollback().await.map_err(query_err("rollback"))?;
            return Ok(Err(why));
        }
        sqlx::query(
            "INSERT INTO environments (name, source, created_at, created_by, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(new.name)
        .bind(new.from)
        .bind(new.now_ms)
        .bind(new.by)
        .bind(new.expires_at)
        .execute(&mut *tx)
        .await
        .map_err(query_err("create environment"))?;
        // An environment copied from another keeps that one's own versions, and its base.
        let copy = match new.from {
            PROD => sqlx::query(
                "INSERT INTO env_aliases (env, name, version, base_version, updated_at) \
                 SELECT $1, name, version, version, $2 FROM aliases",
            )
            .bind(new.name)
            .bind(new.now_ms),
            from => sqlx::query(
                "INSERT INTO env_aliases (env, name, version, base_version, updated_at) \
                 SELECT $1, name, version, base_version, $2 FROM env_aliases WHERE env = $3",
            )
            .bind(new.name)
            .bind(new.now_ms)
            .bind(from),
        };
        let copied = copy
            .execute(&mut *tx)
            .await
            .map_err(query_err("copy aliases"))?
            .rows_affected();
        tx.commit().await.map_err(query_err("commit environment"))?;
        Ok(Ok(copied as i64))
    }

    /// Every environment, by name.
    pub async fn envs(&self) -> Result<Vec<EnvRow>, CatalogError> {
        sqlx::query_as::<_, EnvRow>(concat!(env_rows!(""), " ORDER BY e.name"))
            .fetch_all(&self.pool)
            .await
            .map_err(query_err("list environments"))
    }

    /// The environment `name`, if there is one.
    pub async fn env_row(&self, name: &str) -> Result<Option<EnvRow>, CatalogError> {
        sqlx::query_as::<_, EnvRow>(env_rows!("WHERE e.name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_err("read environment"))
    }

    /// Drops the environment `name` and its aliases; false when there was none. The
    /// versions it pointed at stay, for `gc`.
    pub async fn drop_env(&self, name: &str) -> Result<bool, CatalogError> {
        self.drop_env_lapsed_by(name, None).await
    }

    /// [`Catalog::drop_env`], only if the environment has lapsed by `now_ms` (its `--ttl`),
    /// decided in the dropping transaction.
    pub async fn drop_env_if_lapsed(&self, name: &str, now_ms: i64) -> Result<bool, CatalogError> {
        self.drop_env_lapsed_by(name, Some(now_ms)).await
    }

    async fn drop_env_lapsed_by(
        &self,
        name: &str,
        lapsed_by: Option<i64>,
    ) -> Result<bool, CatalogError> {
        let mut tx = self.begin_write().await?;
        let found: Option<Option<i64>> =
            sqlx::query_scalar("SELECT expires_at FROM environments WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(query_err("read environment"))?;
        let drop = match (found, lapsed_by) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(expires_at), Some(now_ms)) => expires_at.is_some_and(|at| at <= now_ms),
        };
        if !drop {
            tx.rollback().await.map_err(query_err("rollback"))?;
            return Ok(false);
        }
        // Its aliases first: they refer to it.
        for (sql, op) in [
            (
                "DELETE FROM env_aliases WHERE env = $1",
                "drop environment aliases",
            ),
            (
                "DELETE FROM environments WHERE name = $1",
                "drop environment",
            ),
        ] {
            sqlx::query(sql)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(query_err(op))?;
        }
        tx.commit()
            .await
            .map_err(query_err("commit environment drop"))?;
        Ok(true)
    }

    /// The environments whose alias of `table` points at `version`.
    pub async fn envs_pointing_at(
        &self,
        table: &str,
        version: i64,
    ) -> Result<Vec<String>, CatalogError> {
        sqlx::query_scalar(
            "SELECT env FROM env_aliases WHERE name = $1 AND version = $2 ORDER BY env",
        )
        .bind(table)
        .bind(version)
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("read environment aliases"))
    }
}

async fn env_exists(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    name: &str,
) -> Result<bool, CatalogError> {
    let found: Option<String> = sqlx::query_scalar("SELECT name FROM environments WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await
        .map_err(query_err("read environment"))?;
    Ok(found.is_some())
}
