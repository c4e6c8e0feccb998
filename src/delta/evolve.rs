//! Migrations on a physical version: additive as one metadata commit, destructive as a
//! rewrite of every file in one commit.

use super::{Below, DeltaError, Doing, below, open};
use deltalake::DeltaTable;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, StructType};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter as _, RecordBatchWriter};
use futures::TryStreamExt as _;
use url::Url;

/// What [`evolve`] did to one physical version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Evolved {
    /// The Delta table already had the target schema (a re-run, or a change that only the
    /// catalog keeps, such as a column default).
    Unchanged,
    /// One commit of new metadata; no data file was touched.
    Metadata,
    /// Every data file was rewritten to the new schema, in one commit.
    Rewritten,
    /// The physical version has no Delta table (yet).
    Missing,
}

/// Brings a physical version's Delta table in line with `actions` (one migration's changes
/// to its table), in one commit. Additive changes are metadata only: a new column is added
/// nullable in Delta whatever the catalog says, because the rows already written have no
/// value for it, and readers see them as null. Destructive ones (drop, rename, narrowing,
/// NOT NULL) rewrite every file and check every value on the way: a value that does not fit
/// fails the whole change and nothing is committed.
///
/// Idempotent: an action already reflected in the table is skipped, so re-running a
/// migration that stopped half-way completes it.
pub async fn evolve(
    ctx: &SessionContext,
    url: &Url,
    actions: &[crate::schema::ddl::AlterAction],
    properties: &std::collections::BTreeMap<String, String>,
) -> Result<Evolved, DeltaError> {
    use deltalake::arrow::datatypes::Schema;
    use deltalake::kernel::MetadataExt as _;
    let fail = |e: Below| DeltaError::below_shown(Doing::Commit, crate::warehouse::display(url), e);
    let probe = DeltaTable::try_from_url(url.clone())
        .await
        .map_err(|e| fail(below(e)))?;
    if !probe
        .verify_deltatable_existence()
        .await
        .map_err(|e| fail(below(e)))?
    {
        return Ok(Evolved::Missing);
    }
    let table = open(url).await?;
    let snapshot = table.snapshot().map_err(|e| fail(below(e)))?;
    let metadata = snapshot.metadata().clone();
    let current: Schema = snapshot.snapshot().arrow_schema().as_ref().clone();
    let (fields, rewrite, description) = apply_actions(
        &current,
        actions,
        metadata.description().map(str::to_string),
    );
    let target = Schema::new(fields.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>());
    let config = metadata.configuration();
    let new_config: Vec<(&String, &String)> = properties
        .iter()
        .filter(|(k, v)| k.starts_with("delta.") && config.get(*k) != Some(*v))
        .collect();
    if target == current
        && new_config.is_empty()
        && description.as_deref() == metadata.description()
    {
        return Ok(Evolved::Unchanged);
    }
    let kernel: StructType = (&target).try_into_kernel().map_err(|e| fail(below(e)))?;
    let mut new_metadata = metadata
        .clone()
        .with_schema(&kernel)
        .map_err(|e| fail(below(e)))?;
    if let Some(d) = &description {
        new_metadata = new_metadata
            .with_description(d.clone())
            .map_err(|e| fail(below(e)))?;
    }
    for (k, v) in &new_config {
        new_metadata = new_metadata
            .add_config_key((*k).clone(), (*v).clone())
            .map_err(|e| fail(below(e)))?;
    }
    let mut actions: Vec<Action> = vec![Action::Metadata(new_metadata)];
    let partition_by = metadata.partition_columns().to_vec();
    let op = if rewrite {
        let sources: Vec<Option<String>> = fields.iter().map(|(_, s)| s.clone()).collect();
        let adds = rewrite_files(ctx, &table, &target, &sources, &partition_by).await?;
        let removes: Vec<Action> = table
            .get_active_add_actions_by_partitions(&[])
            .map_ok(|f| Action::Remove(f.remove_action(true)))
            .try_collect()
            .await
            .map_err(|e| fail(below(e)))?;
        actions.extend(removes);
        actions.extend(adds.into_iter().map(Action::Add));
        DeltaOperation::Write {
            mode: SaveMode::Overwrite,
            partition_by: Some(partition_by),
            predicate: None,
        }
    } else {
        DeltaOperation::SetTableProperties {
            properties: new_config
                .iter()
                .map(|(k, v)| ((*k).clone(), (*v).clone()))
                .collect(),
        }
    };
    CommitBuilder::from(CommitProperties::default().with_max_retries(3))
        .with_actions(actions)
        .build(Some(snapshot), table.log_store(), op)
        .await
        .map_err(|e| fail(below(e)))?;
    Ok(if rewrite {
        Evolved::Rewritten
    } else {
        Evolved::Metadata
    })
}

/// A field of the evolved table and the current column it is read from (none for a new
/// column).
type SourcedField = (deltalake::arrow::datatypes::Field, Option<String>);

/// The table's fields after `actions`; whether the files must be rewritten; the table's
/// description.
fn apply_actions(
    current: &deltalake::arrow::datatypes::Schema,
    actions: &[crate::schema::ddl::AlterAction],
    mut description: Option<String>,
) -> (Vec<SourcedField>, bool, Option<String>) {
    use crate::schema::ddl::AlterAction;
    use deltalake::arrow::datatypes::Field;
    // (field, the current column it is read from)
    let mut fields: Vec<SourcedField> = current
        .fields()
        .iter()
        .map(|f| (f.as_ref().clone(), Some(f.name().clone())))
        .collect();
    let mut rewrite = false;
    let find =
        |fields: &Vec<SourcedField>, name: &str| fields.iter().position(|(f, _)| f.name() == name);
    let with_comment = |f: Field, comment: &str| {
        let mut m = f.metadata().clone();
        m.insert("comment".into(), comment.to_string());
        f.with_metadata(m)
    };
    for action in actions {
        match action {
            AlterAction::AddColumn { column } => {
                if find(&fields, column.name.as_str()).is_none() {
                    let mut f = Field::new(column.name.as_str(), column.ty.to_arrow(), true);
                    if let Some(c) = &column.comment {
                        f = with_comment(f, c);
                    }
                    fields.push((f, None));
                }
            }
            AlterAction::SetType { column, ty } => {
                if let Some(i) = find(&fields, column.as_str()) {
                    let to = ty.to_arrow();
                    let from = fields[i].0.data_type().clone();
                    if from != to {
                        if !crate::schema::types::widens_to(&from, &to) {
                            rewrite = true;
                        }
                        fields[i].0 = fields[i].0.clone().with_data_type(to);
                    }
                }
            }
            AlterAction::SetNotNull { column } => {
                if let Some(i) = find(&fields, column.as_str())
                    && fields[i].0.is_nullable()
                {
                    // Every value is checked on the rewrite.
                    rewrite = true;
                    fields[i].0 = fields[i].0.clone().with_nullable(false);
                }
            }
            AlterAction::DropNotNull { column } => {
                if let Some(i) = find(&fields, column.as_str()) {
                    fields[i].0 = fields[i].0.clone().with_nullable(true);
                }
            }
            AlterAction::SetColumnComment { column, comment } => {
                if let Some(i) = find(&fields, column.as_str()) {
                    fields[i].0 = with_comment(fields[i].0.clone(), comment);
                }
            }
            AlterAction::DropColumn { column } => {
                if let Some(i) = find(&fields, column.as_str()) {
                    fields.remove(i);
                    rewrite = true;
                }
            }
            AlterAction::RenameColumn { from, to } => {
                if let Some(i) = find(&fields, from.as_str()) {
                    fields[i].0 = fields[i].0.clone().with_name(to.as_str());
                    rewrite = true;
                }
            }
            AlterAction::SetProperties { .. } => {}
            AlterAction::SetComment { comment } => description = Some(comment.clone()),
        }
    }
    (fields, rewrite, description)
}

/// Reads every row of `table` and writes it again in `target`'s shape: each target column
/// from the current column named in `sources` (none: null), cast without loss.
async fn rewrite_files(
    ctx: &SessionContext,
    table: &DeltaTable,
    target: &deltalake::arrow::datatypes::Schema,
    sources: &[Option<String>],
    partition_by: &[String],
) -> Result<Vec<Add>, DeltaError> {
    use deltalake::arrow::array::{ArrayRef, new_null_array};
    use deltalake::arrow::compute::kernels::cast::{CastOptions, cast_with_options};
    let url = table.table_url().clone();
    let shown = crate::warehouse::display(&url);
    let fail = |e: Below| DeltaError::below_shown(Doing::Write, shown.clone(), e);
    let target = std::sync::Arc::new(target.clone());
    let provider = table.table_provider().await.map_err(|e| fail(below(e)))?;
    let mut stream = ctx
        .read_table(provider)
        .map_err(|e| fail(below(e)))?
        .execute_stream()
        .await
        .map_err(|e| fail(below(e)))?;
    let mut writer = RecordBatchWriter::try_new(
        url.clone(),
        target.clone(),
        Some(partition_by.to_vec()),
        None,
    )
    .map_err(|e| fail(below(e)))?;
    let opts = CastOptions {
        safe: false,
        ..Default::default()
    };
    use futures::StreamExt as _;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| fail(below(e)))?;
        let rows = batch.num_rows();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(target.fields().len());
        for (field, source) in target.fields().iter().zip(sources) {
            let array = match source.as_deref().and_then(|s| batch.column_by_name(s)) {
                Some(a) if a.data_type() == field.data_type() => a.clone(),
                Some(a) => cast_with_options(a, field.data_type(), &opts).map_err(|e| {
                    DeltaError::DoesNotFit {
                        url: shown.clone(),
                        column: field.name().clone(),
                        sql_type: crate::schema::types::sql_name(field.data_type()),
                        source: below(e),
                    }
                })?,
                None => new_null_array(field.data_type(), rows),
            };
            if !field.is_nullable() && array.null_count() > 0 {
                return Err(DeltaError::NullsInNotNull {
                    url: shown,
                    column: field.name().clone(),
                    nulls: array.null_count(),
                });
            }
            columns.push(array);
        }
        let batch = RecordBatch::try_new(target.clone(), columns).map_err(|e| fail(below(e)))?;
        writer.write(batch).await.map_err(|e| fail(below(e)))?;
    }
    writer.flush().await.map_err(|e| fail(below(e)))
}
