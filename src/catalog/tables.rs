//! Tables, their physical versions, the code that wrote them, and the migrations ledger.

use super::rows::table_row;
use super::{AppliedMigration, Catalog, CatalogError, TableRow, TableVersionRow, query_err};
use crate::schema::TableSchema;

impl Catalog {
    pub async fn applied_migrations(&self) -> Result<Vec<AppliedMigration>, CatalogError> {
        sqlx::query_as::<_, AppliedMigration>(
            "SELECT name, checksum, applied_at, applied_by FROM applied_migrations ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("list applied migrations"))
    }

    /// Starts applying migration `name`: records it in the ledger inside a write
    /// transaction that stays open while the migration changes the tables, and commits with
    /// them. `None` when another process applied it first: the ledger row is the claim, so
    /// of two `migrate` processes exactly one applies each migration (the other waits for
    /// the first transaction to end, then finds the row).
    pub async fn begin_migration(
        &self,
        name: &str,
        checksum: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<Option<MigrationTx>, CatalogError> {
        // Another migrate may hold the write lock for as long as its rewrite takes.
        let mut waited = std::time::Duration::ZERO;
        let mut tx = loop {
            match self.begin_write().await {
                Ok(tx) => break tx,
                Err(e) if e.is_transient() && waited < std::time::Duration::from_secs(600) => {
                    tracing::info!(
                        migration = name,
                        "waiting for another writer of the catalog"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    waited += std::time::Duration::from_millis(200);
                }
                Err(e) => return Err(e),
            }
        };
        let inserted = sqlx::query(
            "INSERT INTO applied_migrations (name, checksum, applied_at, applied_by) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(checksum)
        .bind(now_ms)
        .bind(by)
        .execute(&mut *tx)
        .await
        .map_err(query_err("record migration"))?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await.map_err(query_err("rollback"))?;
            return Ok(None);
        }
        Ok(Some(MigrationTx { tx, now_ms }))
    }

    pub async fn table(&self, name: &str) -> Result<Option<TableRow>, CatalogError> {
        let row =
            sqlx::query("SELECT schema_json, created_at, updated_at FROM tables WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(query_err("read table"))?;
        row.map(|r| table_row(&r)).transpose()
    }

    pub async fn tables(&self) -> Result<Vec<TableRow>, CatalogError> {
        let rows =
            sqlx::query("SELECT schema_json, created_at, updated_at FROM tables ORDER BY name")
                .fetch_all(&self.pool)
                .await
                .map_err(query_err("list tables"))?;
        rows.iter().map(table_row).collect()
    }

    pub async fn table_version(
        &self,
        table: &str,
        version: i64,
    ) -> Result<Option<TableVersionRow>, CatalogError> {
        sqlx::query_as::<_, TableVersionRow>(
            "SELECT table_name, version, uri, schema_json, created_at, owner_env, spec_version FROM table_versions WHERE table_name = $1 AND version = $2",
        )
        .bind(table)
        .bind(version)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_err("read table version"))
    }

    pub async fn table_versions(&self, table: &str) -> Result<Vec<TableVersionRow>, CatalogError> {
        sqlx::query_as::<_, TableVersionRow>(
            "SELECT table_name, version, uri, schema_json, created_at, owner_env, spec_version FROM table_versions WHERE table_name = $1 ORDER BY version",
        )
        .bind(table)
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("list table versions"))
    }

    /// Every physical version of `table` with what it holds, in version order: one query,
    /// however many versions and partitions (a table's page and `sluice tables` show it).
    pub async fn version_coverage(
        &self,
        table: &str,
    ) -> Result<Vec<super::VersionCoverage>, CatalogError> {
        use super::PartitionState as S;
        sqlx::query_as::<_, super::VersionCoverage>(
            "SELECT v.version, v.uri, v.created_at, v.owner_env, \
               CAST(COUNT(p.partition_key) AS BIGINT) AS partitions, \
               CAST(COALESCE(SUM(CASE WHEN p.state = $2 THEN 1 ELSE 0 END), 0) AS BIGINT) AS complete, \
               CAST(COALESCE(SUM(CASE WHEN p.state = $3 THEN 1 ELSE 0 END), 0) AS BIGINT) AS failed, \
               CAST(COALESCE(SUM(CASE WHEN p.state = $4 THEN 1 ELSE 0 END), 0) AS BIGINT) AS running, \
               CAST(COALESCE(SUM(p.content_rows), 0) AS BIGINT) AS rows, \
               MIN(p.partition_key) AS first, MAX(p.partition_key) AS last \
             FROM table_versions v LEFT JOIN partitions p \
               ON p.table_name = v.table_name AND p.table_version = v.version \
             WHERE v.table_name = $1 \
             GROUP BY v.version, v.uri, v.created_at, v.owner_env ORDER BY v.version",
        )
        .bind(table)
        .bind(S::Complete.as_str())
        .bind(S::Failed.as_str())
        .bind(S::Running.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(query_err("read the coverage of each version"))
    }

    /// Registers a physical version (idempotent). The first version of a table also gets
    /// the table's alias, since there is nothing else for readers to see; not one an
    /// environment builds (registered by [`Catalog::env_build_version`], its alias the
    /// environment's).
    pub async fn register_table_version(
        &self,
        table: &str,
        version: i64,
        uri: &str,
        schema_json: &str,
        by: &str,
        now_ms: i64,
    ) -> Result<TableVersionRow, CatalogError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO table_versions (table_name, version, uri, schema_json, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (table_name, version) DO NOTHING",
        )
        .bind(table)
        .bind(version)
        .bind(uri)
        .bind(schema_json)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(query_err("register table version"))?;
        let aliased = match self.env {
            Some(_) => 0,
            None => sqlx::query(
                "INSERT INTO aliases (name, version, updated_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
            )
            .bind(table)
            .bind(version)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(query_err("create alias"))?
            .rows_affected(),
        };
        if aliased == 1 {
            sqlx::query(
                "INSERT INTO alias_history (id, alias, from_version, to_version, at, by_whom, message) VALUES ($1, $2, NULL, $3, $4, $5, $6)",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(table)
            .bind(version)
            .bind(now_ms)
            .bind(by)
            .bind("first version of the table")
            .execute(&mut *tx)
            .await
            .map_err(query_err("record alias history"))?;
            super::changes::bump_in(&mut tx, table, super::changes::Followed::Reset).await?;
        }
        let row = sqlx::query_as::<_, TableVersionRow>(
            "SELECT table_name, version, uri, schema_json, created_at, owner_env, spec_version FROM table_versions WHERE table_name = $1 AND version = $2",
        )
        .bind(table)
        .bind(version)
        .fetch_one(&mut *tx)
        .await
        .map_err(query_err("read table version"))?;
        tx.commit()
            .await
            .map_err(query_err("commit table version"))?;
        Ok(row)
    }

    /// Records the code that wrote `version` of `job`'s table (replacing what was there).
    pub async fn record_job_code(
        &self,
        job: &str,
        version: i64,
        fingerprint: &str,
        spec_text: &str,
        sql_text: &str,
        now_ms: i64,
    ) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO job_code (job, table_version, fingerprint, spec_text, sql_text, recorded_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (job, table_version) DO UPDATE SET fingerprint = excluded.fingerprint, spec_text = excluded.spec_text, \
             sql_text = excluded.sql_text, recorded_at = excluded.recorded_at",
        )
        .bind(job)
        .bind(version)
        .bind(fingerprint)
        .bind(spec_text)
        .bind(sql_text)
        .bind(now_ms)
        .execute(&self.writer)
        .await
        .map_err(query_err("record job code"))?;
        Ok(())
    }

    /// The spec and SQL text that last wrote `version` of `job`'s table.
    pub async fn job_code(
        &self,
        job: &str,
        version: i64,
    ) -> Result<Option<(String, String)>, CatalogError> {
        sqlx::query_as(
            "SELECT spec_text, sql_text FROM job_code WHERE job = $1 AND table_version = $2",
        )
        .bind(job)
        .bind(version)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_err("read job code"))
    }

    /// Forgets a physical version whose files were deleted: its partition states, leases
    /// and recorded code (run history stays). Refused, returning false, if an alias points
    /// at it (a promote or rollback raced the removal).
    pub async fn drop_table_version(
        &self,
        table: &str,
        version: i64,
    ) -> Result<bool, CatalogError> {
        let mut tx = self.begin_write().await?;
        let live: Option<i64> = sqlx::query_scalar("SELECT version FROM aliases WHERE name = $1")
            .bind(table)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_err("read alias"))?;
        // An environment's alias keeps a version as production's does.
        let in_env: Option<String> = sqlx::query_scalar(
            "SELECT env FROM env_aliases WHERE name = $1 AND version = $2 LIMIT 1",
        )
        .bind(table)
        .bind(version)
        .fetch_optional(&mut *tx)
        .await
        .map_err(query_err("read environment aliases"))?;
        if live == Some(version) || in_env.is_some() {
            tx.rollback().await.map_err(query_err("rollback"))?;
            return Ok(false);
        }
        super::changes::bump_in(&mut tx, table, super::changes::Followed::Reset).await?;
        for sql in [
            "DELETE FROM partitions WHERE table_name = $1 AND table_version = $2",
            "DELETE FROM leases WHERE table_name = $1 AND table_version = $2",
            "DELETE FROM table_versions WHERE table_name = $1 AND version = $2",
        ] {
            sqlx::query(sql)
                .bind(table)
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(query_err("drop table version"))?;
        }
        sqlx::query("DELETE FROM job_code WHERE table_version = $1 AND job IN (SELECT DISTINCT job FROM runs WHERE table_name = $2)")
            .bind(version)
            .bind(table)
            .execute(&mut *tx)
            .await
            .map_err(query_err("drop job code"))?;
        tx.commit().await.map_err(query_err("commit drop"))?;
        Ok(true)
    }
}

/// One migration being applied: its ledger row and its catalog changes, committed together.
pub struct MigrationTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    now_ms: i64,
}

impl MigrationTx {
    pub async fn create_table(&mut self, schema: &TableSchema) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO tables (name, schema_json, created_at, updated_at) VALUES ($1, $2, $3, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(schema.name.as_str())
        .bind(schema.to_json())
        .bind(self.now_ms)
        .execute(&mut *self.tx)
        .await
        .map_err(query_err("create table"))?;
        Ok(())
    }

    /// The physical versions of `table` as of now (no version can be registered while the
    /// transaction holds the write lock on SQLite, or the table row on PostgreSQL).
    pub async fn table_versions(
        &mut self,
        table: &str,
    ) -> Result<Vec<TableVersionRow>, CatalogError> {
        sqlx::query_as::<_, TableVersionRow>(
            "SELECT table_name, version, uri, schema_json, created_at, owner_env, spec_version FROM table_versions WHERE table_name = $1 ORDER BY version",
        )
        .bind(table)
        .fetch_all(&mut *self.tx)
        .await
        .map_err(query_err("list table versions"))
    }

    /// The table's new schema, for the table and every physical version of it.
    pub async fn set_schema(&mut self, schema: &TableSchema) -> Result<(), CatalogError> {
        let json = schema.to_json();
        sqlx::query("UPDATE tables SET schema_json = $1, updated_at = $2 WHERE name = $3")
            .bind(&json)
            .bind(self.now_ms)
            .bind(schema.name.as_str())
            .execute(&mut *self.tx)
            .await
            .map_err(query_err("update table schema"))?;
        sqlx::query("UPDATE table_versions SET schema_json = $1 WHERE table_name = $2")
            .bind(&json)
            .bind(schema.name.as_str())
            .execute(&mut *self.tx)
            .await
            .map_err(query_err("update table version schema"))?;
        Ok(())
    }

    /// Removes the table, its alias and its versions from the catalog. Run history stays.
    pub async fn drop_table(&mut self, table: &str) -> Result<(), CatalogError> {
        super::changes::bump_in(&mut self.tx, table, super::changes::Followed::Reset).await?;
        for sql in [
            "DELETE FROM env_aliases WHERE name = $1",
            "DELETE FROM aliases WHERE name = $1",
            "DELETE FROM alias_history WHERE alias = $1",
            "DELETE FROM partitions WHERE table_name = $1",
            "DELETE FROM leases WHERE table_name = $1",
            "DELETE FROM table_versions WHERE table_name = $1",
            "DELETE FROM tables WHERE name = $1",
        ] {
            sqlx::query(sql)
                .bind(table)
                .execute(&mut *self.tx)
                .await
                .map_err(query_err("drop table"))?;
        }
        Ok(())
    }

    pub async fn commit(self) -> Result<(), CatalogError> {
        self.tx
            .commit()
            .await
            .map_err(query_err("commit migration"))
    }
}
