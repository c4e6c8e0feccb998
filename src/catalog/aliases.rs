//! Aliases: which physical version readers see, and the one place it changes.

use super::{AliasFlip, Backend, Catalog, CatalogError, NO_VERSION, PartitionState, query_err};

/// One alias change asked of [`Catalog::flip_aliases`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Flip {
    pub table: String,
    /// The version the alias must still point at.
    pub expect: i64,
    pub to: i64,
}

/// Why a flip was refused.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum FlipRefusal {
    /// The alias no longer points where the caller expected (another flip won).
    Moved {
        table: String,
        expected: i64,
        actual: Option<i64>,
    },
    NoSuchVersion {
        table: String,
        version: i64,
    },
    /// Partitions the live version has and the new one lacks.
    Missing {
        table: String,
        live: i64,
        version: i64,
        partitions: Vec<String>,
    },
    /// Partitions of the new version whose last run failed or is still running.
    Unfinished {
        table: String,
        version: i64,
        partitions: Vec<(String, PartitionState)>,
    },
}

impl FlipRefusal {
    /// The refusal as a page says it: its forms have no `--partial`, so the way around a
    /// coverage refusal is named as the command it is.
    pub fn for_the_web(&self) -> String {
        let text = self.to_string();
        match self {
            FlipRefusal::Missing { table, version, .. }
            | FlipRefusal::Unfinished { table, version, .. } => text.replace(
                "or pass --partial",
                &format!(
                    "or, to flip without them, run `sluice promote {table} --version {version} --partial`"
                ),
            ),
            _ => text,
        }
    }
}

impl std::fmt::Display for FlipRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |items: &[String]| crate::text::shorten(items, 20);
        match self {
            FlipRefusal::Moved {
                table,
                expected,
                actual,
            } => write!(
                f,
                "{table}: the alias points at {} now, not v{expected}: another promote or rollback changed it first; check `sluice history {table}` and try again",
                actual
                    .map(|v| format!("v{v}"))
                    .unwrap_or_else(|| "nothing".into())
            ),
            FlipRefusal::NoSuchVersion { table, version } => write!(
                f,
                "{table}: version v{version} does not exist; build it first (bump the job's `version` and backfill)"
            ),
            FlipRefusal::Missing {
                table,
                live,
                version,
                partitions,
            } => write!(
                f,
                "{table}: v{version} lacks {} partition(s) that v{live} has: {}; backfill them into v{version}, or pass --partial",
                partitions.len(),
                list(partitions)
            ),
            FlipRefusal::Unfinished {
                table,
                version,
                partitions,
            } => write!(
                f,
                "{table}: v{version} has {} partition(s) not complete: {}; rerun them (`sluice backfill --only-failed`), or pass --partial",
                partitions.len(),
                list(
                    &partitions
                        .iter()
                        .map(|(p, s)| format!("{p} ({s})"))
                        .collect::<Vec<_>>()
                )
            ),
        }
    }
}

impl Catalog {
    /// The version the alias `name` points at.
    /// In an environment ([`Catalog::in_env`]): its alias, or production's when it has
    /// none (a table created after it was).
    pub async fn alias(&self, name: &str) -> Result<Option<i64>, CatalogError> {
        let Some(env) = &self.env else {
            let v: Option<i64> = sqlx::query_scalar("SELECT version FROM aliases WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(query_err("read alias"))?;
            return Ok(v);
        };
        let v: Option<i64> = sqlx::query_scalar(
            "SELECT COALESCE((SELECT version FROM env_aliases WHERE env = $1 AND name = $2), \
             (SELECT version FROM aliases WHERE name = $2))",
        )
        .bind(env.as_ref())
        .bind(name)
        .fetch_one(&self.pool)
        .await
        .map_err(query_err("read alias"))?;
        Ok(v)
    }

    /// Flips aliases, all or none, in one transaction: each alias must still point at the
    /// version the caller expects (compare-and-swap), the target version must exist, and
    /// unless `partial`, the target must hold every partition the version it replaces has,
    /// with no partition failed or running. Returns the refusals when any precondition
    /// fails; then nothing changed. A `dry_run` goes the same way, every check and the
    /// compare-and-swap included, and rolls back where the real flip commits: a dry run
    /// cannot approve what the flip would refuse.
    pub async fn flip_aliases(
        &self,
        flips: &[Flip],
        partial: bool,
        by: &str,
        message: &str,
        now_ms: i64,
        dry_run: bool,
    ) -> Result<Vec<FlipRefusal>, CatalogError> {
        let mut tx = self.begin_write().await?;
        let mut refusals = Vec::new();
        // SQLite's BEGIN IMMEDIATE already serialises writers; on PostgreSQL the alias rows
        // are locked as they are read, so that a racing flip waits and then sees ours.
        let read_alias = match self.backend {
            Backend::Sqlite => "SELECT version FROM aliases WHERE name = $1",
            Backend::Postgres => "SELECT version FROM aliases WHERE name = $1 FOR UPDATE",
        };
        for f in flips {
            self.check_flip(&mut tx, f, read_alias, partial, &mut refusals)
                .await?;
        }
        if !refusals.is_empty() {
            tx.rollback().await.map_err(query_err("rollback"))?;
            return Ok(refusals);
        }
        for (i, f) in flips.iter().enumerate() {
            if i == 1 {
                // A kill here leaves one alias changed in a transaction never committed.
                crate::failpoint::pause_if_set("flip_midway").await;
            }
            // A table production has no version of (an environment's new one) gets its alias.
            let flip = match f.expect {
                NO_VERSION => {
                    "INSERT INTO aliases (name, version, updated_at) SELECT $3, $1, $2 WHERE $4 = 0 \
                     ON CONFLICT (name) DO NOTHING"
                }
                _ => {
                    "UPDATE aliases SET version = $1, updated_at = $2 WHERE name = $3 AND version = $4"
                }
            };
            let flipped = sqlx::query(flip)
                .bind(f.to)
                .bind(now_ms)
                .bind(&f.table)
                .bind(f.expect)
                .execute(&mut *tx)
                .await
                .map_err(query_err("flip alias"))?
                .rows_affected();
            // The compare-and-swap itself: whatever was read above, only a row still at the
            // expected version changes.
            if flipped != 1 {
                tx.rollback().await.map_err(query_err("rollback"))?;
                let actual = self.alias(&f.table).await?;
                return Ok(vec![FlipRefusal::Moved {
                    table: f.table.clone(),
                    expected: f.expect,
                    actual,
                }]);
            }
            sqlx::query(
                "INSERT INTO alias_history (id, alias, from_version, to_version, at, by_whom, message) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(&f.table)
            .bind((f.expect != NO_VERSION).then_some(f.expect))
            .bind(f.to)
            .bind(now_ms)
            .bind(by)
            .bind(message)
            .execute(&mut *tx)
            .await
            .map_err(query_err("record alias history"))?;
            // A version production's alias points at is production's to write: one an
            // environment built is handed over with the flip, never before or after it.
            sqlx::query(
                "UPDATE table_versions SET owner_env = NULL WHERE table_name = $1 AND version = $2 AND owner_env IS NOT NULL",
            )
            .bind(&f.table)
            .bind(f.to)
            .execute(&mut *tx)
            .await
            .map_err(query_err("hand a version to production"))?;
            // What read the table must be judged again against the version it points at.
            super::changes::bump_in(&mut tx, &f.table, super::changes::Followed::Reset).await?;
        }
        if dry_run {
            tx.rollback().await.map_err(query_err("rollback"))?;
        } else {
            tx.commit().await.map_err(query_err("commit alias flip"))?;
        }
        Ok(Vec::new())
    }

    /// Adds to `refusals` every precondition `f` fails, read inside the flip's transaction.
    async fn check_flip(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        f: &Flip,
        read_alias: &'static str,
        partial: bool,
        refusals: &mut Vec<FlipRefusal>,
    ) -> Result<(), CatalogError> {
        let actual: Option<i64> = sqlx::query_scalar(read_alias)
            .bind(&f.table)
            .fetch_optional(&mut **tx)
            .await
            .map_err(query_err("read alias"))?;
        if actual.unwrap_or(NO_VERSION) != f.expect {
            refusals.push(FlipRefusal::Moved {
                table: f.table.clone(),
                expected: f.expect,
                actual,
            });
            return Ok(());
        }
        let exists: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM table_versions WHERE table_name = $1 AND version = $2",
        )
        .bind(&f.table)
        .bind(f.to)
        .fetch_optional(&mut **tx)
        .await
        .map_err(query_err("read table version"))?;
        if exists.is_none() {
            refusals.push(FlipRefusal::NoSuchVersion {
                table: f.table.clone(),
                version: f.to,
            });
            return Ok(());
        }
        if partial {
            return Ok(());
        }
        let missing: Vec<String> = sqlx::query_scalar(
            "SELECT partition_key FROM partitions WHERE table_name = $1 AND table_version = $2 AND content_run_id IS NOT NULL \
             AND partition_key NOT IN (SELECT partition_key FROM partitions WHERE table_name = $1 AND table_version = $3 AND content_run_id IS NOT NULL) \
             ORDER BY partition_key",
        )
        .bind(&f.table)
        .bind(f.expect)
        .bind(f.to)
        .fetch_all(&mut **tx)
        .await
        .map_err(query_err("compare partitions"))?;
        if !missing.is_empty() {
            refusals.push(FlipRefusal::Missing {
                table: f.table.clone(),
                live: f.expect,
                version: f.to,
                partitions: missing,
            });
        }
        let unfinished: Vec<(String, String)> = sqlx::query_as(
            "SELECT partition_key, state FROM partitions WHERE table_name = $1 AND table_version = $2 AND state <> $3 ORDER BY partition_key",
        )
        .bind(&f.table)
        .bind(f.to)
        .bind(PartitionState::Complete.as_str())
        .fetch_all(&mut **tx)
        .await
        .map_err(query_err("read partitions"))?;
        let unfinished = unfinished
            .into_iter()
            .map(|(p, s)| Ok((p, s.parse::<PartitionState>()?)))
            .collect::<Result<Vec<_>, crate::spelling::UnknownSpelling>>()
            .map_err(|e| CatalogError::Corrupt(e.to_string()))?;
        if !unfinished.is_empty() {
            refusals.push(FlipRefusal::Unfinished {
                table: f.table.clone(),
                version: f.to,
                partitions: unfinished,
            });
        }
        Ok(())
    }

    /// Every flip of `alias`, oldest first.
    pub async fn alias_history(&self, alias: &str) -> Result<Vec<AliasFlip>, CatalogError> {
        sqlx::query_as::<_, AliasFlip>(
            "SELECT alias, from_version, to_version, at, by_whom, message FROM alias_history WHERE alias = $1 ORDER BY at, id",
        )
        .bind(alias)
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("read alias history"))
    }
}
