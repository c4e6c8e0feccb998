//! Uploading a partition's new Parquet files: invisible until a commit adds them.

use super::DeltaError;
use deltalake::DeltaTable;
use deltalake::arrow::array::{Array, Scalar as ArrowScalar};
use deltalake::arrow::compute::kernels::cmp::distinct;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::scalars::ScalarExt;
use deltalake::kernel::{Add, DataType as DeltaDataType, PrimitiveType};
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::writer::{DeltaWriter as _, RecordBatchWriter, WriteMode};
use indexmap::IndexMap;
use url::Url;

/// Writes a partition's new files. Nothing is visible until [`commit_partition`].
pub struct PartitionWriter {
    url: Url,
    writer: RecordBatchWriter,
    /// The table's partition columns, in the table's order.
    partition_columns: Vec<String>,
    rows: u64,
    /// Where the uploads the writer spawns run, so that they count as the run's (`cost`).
    spawns: crate::cost::Spawns,
}

/// How a table's files are written, read from its snapshot once: plain values that a
/// cluster's executors receive in the plan, so that they write the files this process
/// would.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct WriterLayout {
    pub partition_columns: Vec<String>,
    /// The table's schema the files are written under, as Delta JSON (see
    /// [`PartitionCommit::written_under`](super::PartitionCommit)).
    pub schema_json: String,
    /// Columns written without a dictionary.
    pub plain_columns: Vec<String>,
    /// Files read once by this run and then deleted (a merge's changes): written fast
    /// rather than small.
    #[serde(default)]
    pub scratch: bool,
}

impl WriterLayout {
    pub fn of(table: &DeltaTable) -> WriterLayout {
        let Ok(snapshot) = table.snapshot() else {
            return WriterLayout::default();
        };
        // Numbers, dates and times are written plain: ids, amounts and timestamps are mostly
        // distinct, and interning each value into a dictionary that zstd then makes
        // redundant was the larger part of writing a file. Text and booleans keep one.
        let plain_columns = snapshot
            .schema()
            .fields()
            .filter(|f| match f.data_type() {
                DeltaDataType::Primitive(p) => !matches!(
                    p,
                    PrimitiveType::String | PrimitiveType::Binary | PrimitiveType::Boolean
                ),
                _ => false,
            })
            .map(|f| f.name().to_string())
            .collect();
        WriterLayout {
            partition_columns: snapshot.metadata().partition_columns().to_vec(),
            schema_json: serde_json::to_string(snapshot.schema().as_ref()).unwrap_or_default(),
            plain_columns,
            scratch: false,
        }
    }

    /// This layout for files read once and deleted: LZ4 and no dictionaries, which cost
    /// more time than their bytes save (zstd and dictionaries were a third of the time a
    /// merge took to upload its changes).
    pub fn scratch(self) -> WriterLayout {
        WriterLayout {
            scratch: true,
            ..self
        }
    }

    fn properties(&self) -> WriterProperties {
        let created_by = format!("sluice {}", env!("CARGO_PKG_VERSION"));
        if self.scratch {
            return WriterProperties::builder()
                .set_compression(Compression::LZ4_RAW)
                .set_dictionary_enabled(false)
                .set_created_by(created_by)
                .build();
        }
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
            .set_created_by(created_by);
        for c in &self.plain_columns {
            props = props.set_column_dictionary_enabled(ColumnPath::from(c.as_str()), false);
        }
        props.build()
    }
}

impl PartitionWriter {
    pub fn new(url: &Url, table: &DeltaTable) -> Result<PartitionWriter, DeltaError> {
        Self::with_layout(url, table, WriterLayout::of(table))
    }

    /// A writer of `table`'s files laid out as `layout` says (made from the table's).
    pub fn with_layout(
        url: &Url,
        table: &DeltaTable,
        layout: WriterLayout,
    ) -> Result<PartitionWriter, DeltaError> {
        let writer = RecordBatchWriter::for_table(table)
            .map_err(|e| DeltaError::below(super::Doing::Write, url, e))?;
        Ok(Self::with(url, writer, layout))
    }

    /// A writer of files of the table at `url` whose rows have `schema`, without opening
    /// the table: what an executor of a cluster does with the layout it was sent.
    pub fn at(
        url: &Url,
        schema: SchemaRef,
        layout: WriterLayout,
    ) -> Result<PartitionWriter, DeltaError> {
        let partitions = Some(layout.partition_columns.clone());
        let writer = RecordBatchWriter::try_new(url.as_str(), schema, partitions, None)
            .map_err(|e| DeltaError::below(super::Doing::Write, url, e))?;
        Ok(Self::with(url, writer, layout))
    }

    fn with(url: &Url, writer: RecordBatchWriter, layout: WriterLayout) -> PartitionWriter {
        PartitionWriter {
            url: url.clone(),
            writer: writer.with_writer_properties(layout.properties()),
            partition_columns: layout.partition_columns,
            rows: 0,
            spawns: crate::cost::Spawns::for_this_run(),
        }
    }

    pub async fn write(&mut self, batch: RecordBatch) -> Result<(), DeltaError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.rows += batch.num_rows() as u64;
        let written = match self.one_partition(&batch) {
            Some(values) => {
                let write = self
                    .writer
                    .write_partition(batch, &values, WriteMode::Default);
                self.spawns.run(write).await.map(|_| ())
            }
            None => self.spawns.run(self.writer.write(batch)).await,
        };
        written.map_err(|e| DeltaError::below(super::Doing::Write, &self.url, e))
    }

    /// The partition values of a batch whose rows all lie in one partition, as a run's
    /// batches do (the conformer fills or checks the partition columns). The writer then
    /// streams it to that partition's file as it is; otherwise it groups the rows by
    /// partition, hashing every row's partition values and copying every column. Checked
    /// here, not assumed: the check reads only the partition columns. A null partition
    /// value takes the grouping path, which names its folder. (`S` is delta_kernel's `Scalar`, which deltalake does not re-export; the
    /// caller's `write_partition` names it.)
    fn one_partition<S: ScalarExt>(&self, batch: &RecordBatch) -> Option<IndexMap<String, S>> {
        if self.partition_columns.is_empty() {
            return None;
        }
        let mut values = IndexMap::with_capacity(self.partition_columns.len());
        for name in &self.partition_columns {
            let column = batch.column_by_name(name)?;
            let first = ArrowScalar::new(column.slice(0, 1));
            if column.null_count() > 0 || distinct(column, &first).ok()?.true_count() > 0 {
                return None;
            }
            values.insert(name.clone(), S::from_array(column.as_ref(), 0)?);
        }
        Some(values)
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Finishes the files; returns their `add` actions.
    pub async fn finish(mut self) -> Result<Vec<Add>, DeltaError> {
        self.spawns
            .run(self.writer.flush())
            .await
            .map_err(|e| DeltaError::below(super::Doing::Write, &self.url, e))
    }
}

/// A [`PartitionWriter`] on a task of its own, fed through a channel of two batches: the
/// files are encoded and uploaded on one core while the rows are computed on the other (a
/// run's query, a merge's pass over its sorted candidates). The task starts with the
/// first rows: a partition of none (a no-op) finishes its writer where it is, without a
/// task's cost. Dropped unfinished, it writes nothing more.
pub struct WriterTask {
    url: Url,
    /// The writer until the first rows come.
    idle: Option<Idle>,
    tx: Option<tokio::sync::mpsc::Sender<RecordBatch>>,
    task: Option<tokio::task::JoinHandle<Result<Vec<Add>, DeltaError>>>,
}

struct Idle {
    writer: PartitionWriter,
    meter: std::sync::Arc<crate::cost::RunMeter>,
    measure: bool,
}

impl WriterTask {
    /// `writer`, whose task (once started) has its CPU time counted against `meter`'s run
    /// when `measure`.
    pub fn spawn(
        writer: PartitionWriter,
        meter: std::sync::Arc<crate::cost::RunMeter>,
        measure: bool,
    ) -> WriterTask {
        WriterTask {
            url: writer.url.clone(),
            idle: Some(Idle {
                writer,
                meter,
                measure,
            }),
            tx: None,
            task: None,
        }
    }

    fn start(&mut self, idle: Idle) {
        let Idle {
            mut writer,
            meter,
            measure,
        } = idle;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<RecordBatch>(2);
        let task = tokio::spawn(async move {
            let written = async {
                while let Some(batch) = rx.recv().await {
                    writer.write(batch).await?;
                }
                writer.finish().await
            };
            crate::cost::measure(&meter, measure, written).await
        });
        self.tx = Some(tx);
        self.task = Some(task);
    }

    pub async fn write(&mut self, batch: RecordBatch) -> Result<(), DeltaError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if let Some(idle) = self.idle.take() {
            self.start(idle);
        }
        let sent = match &self.tx {
            Some(tx) => tx.send(batch).await.is_ok(),
            None => false,
        };
        match sent {
            true => Ok(()),
            // The task stopped early: its outcome says why.
            false => Err(match self.outcome().await {
                Err(e) => e,
                Ok(_) => DeltaError::below(
                    super::Doing::Write,
                    &self.url,
                    super::Said(
                        "the writer's task ended before its rows were all written (this is likely a bug)",
                    ),
                ),
            }),
        }
    }

    /// Finishes the files; returns their `add` actions.
    pub async fn finish(mut self) -> Result<Vec<Add>, DeltaError> {
        if let Some(idle) = self.idle.take() {
            return idle.writer.finish().await;
        }
        self.tx = None;
        self.outcome().await
    }

    async fn outcome(&mut self) -> Result<Vec<Add>, DeltaError> {
        let Some(task) = self.task.take() else {
            return Err(DeltaError::below(
                super::Doing::Write,
                &self.url,
                super::Said("the writer's task was already ended (this is likely a bug)"),
            ));
        };
        match task.await {
            Ok(outcome) => outcome,
            Err(e) => Err(DeltaError::below(super::Doing::Write, &self.url, e)),
        }
    }
}

impl Drop for WriterTask {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ddl::{Statement, parse};
    use deltalake::arrow::array::{Date32Array, Int64Array};
    use std::sync::Arc;

    /// Stands for delta_kernel's `Scalar`, which cannot be named here.
    struct Probe;
    impl ScalarExt for Probe {
        fn serialize(&self) -> String {
            String::new()
        }
        fn serialize_encoded(&self) -> String {
            String::new()
        }
        fn from_array(arr: &dyn Array, index: usize) -> Option<Self> {
            (index < arr.len()).then_some(Probe)
        }
        fn to_json(&self) -> serde_json::Value {
            serde_json::Value::Null
        }
    }

    /// A new table of `ddl` in a temporary folder.
    async fn new_table(
        ddl: &str,
    ) -> (
        tempfile::TempDir,
        Url,
        crate::schema::TableSchema,
        DeltaTable,
    ) {
        let Statement::CreateTable { schema, .. } = parse(ddl).expect("ddl").remove(0) else {
            panic!("a CREATE TABLE");
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let url = Url::from_directory_path(dir.path()).expect("url");
        let table = crate::delta::ensure_table(&url, &schema)
            .await
            .expect("table");
        (dir, url, schema, table)
    }

    /// A batch of one partition goes straight to that partition's file; a batch of two
    /// (which a run never writes) is still split by the writer. Either way each file
    /// holds only its partition's rows, under its `dt=` folder.
    #[tokio::test]
    async fn a_batch_is_written_to_the_partitions_its_rows_lie_in() {
        let (_dir, url, schema, table) =
            new_table("CREATE TABLE t (id BIGINT, dt DATE NOT NULL) PARTITIONED BY (dt)").await;
        let batch = |ids: Vec<i64>, days: Vec<i32>| {
            RecordBatch::try_new(
                schema.to_arrow(),
                vec![
                    Arc::new(Int64Array::from(ids)),
                    Arc::new(Date32Array::from(days)),
                ],
            )
            .expect("batch")
        };
        let mut w = PartitionWriter::new(&url, &table).expect("writer");
        let one = batch(vec![1, 2, 3], vec![19723; 3]);
        let values = w.one_partition::<Probe>(&one);
        assert_eq!(
            values.map(|v| v.keys().cloned().collect::<Vec<_>>()),
            Some(vec!["dt".to_string()])
        );
        let two = batch(vec![4, 5], vec![19723, 19724]);
        assert!(w.one_partition::<Probe>(&two).is_none());
        w.write(one).await.expect("write one");
        w.write(two).await.expect("write two");
        assert_eq!(w.rows(), 5);
        let mut adds = w.finish().await.expect("finish");
        adds.sort_by(|a, b| a.path.cmp(&b.path));
        let found: Vec<(String, Option<String>, i64)> = adds
            .iter()
            .map(|a| {
                let records = a.get_stats().ok().flatten().map_or(-1, |s| s.num_records);
                (
                    a.path.split('/').next().unwrap_or_default().to_string(),
                    a.partition_values.get("dt").cloned().flatten(),
                    records,
                )
            })
            .collect();
        assert_eq!(
            found,
            vec![
                ("dt=2024-01-01".into(), Some("2024-01-01".into()), 4),
                ("dt=2024-01-02".into(), Some("2024-01-02".into()), 1),
            ]
        );
    }

    /// A writer on a task starts the task with its first rows: one that gets none finishes
    /// where it is, with no file. A scratch layout's files (LZ4, no dictionary) read back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_task_starts_with_its_first_rows_and_scratch_files_read_back() {
        let (dir, url, schema, table) = new_table("CREATE TABLE t (id BIGINT, name STRING)").await;
        let writer = |layout: WriterLayout| {
            let w = PartitionWriter::with_layout(&url, &table, layout).expect("writer");
            WriterTask::spawn(w, crate::cost::RunMeter::new(), false)
        };
        let mut none = writer(WriterLayout::of(&table));
        let empty = RecordBatch::new_empty(schema.to_arrow());
        none.write(empty).await.expect("no rows");
        assert!(none.task.is_none(), "a task started for no rows");
        assert!(none.finish().await.expect("finish").is_empty());

        let mut scratch = writer(WriterLayout::of(&table).scratch());
        let ids: Vec<i64> = (0..1000).collect();
        let names: Vec<String> = ids.iter().map(|i| format!("n{i}")).collect();
        let batch = RecordBatch::try_new(
            schema.to_arrow(),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(deltalake::arrow::array::StringArray::from(names)),
            ],
        )
        .expect("batch");
        scratch.write(batch.clone()).await.expect("write");
        let adds = scratch.finish().await.expect("finish");
        assert_eq!(adds.len(), 1);
        let file = std::fs::File::open(dir.path().join(&adds[0].path)).expect("file");
        let reader =
            deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                .expect("parquet");
        let column = &reader.metadata().row_group(0).columns()[1];
        assert_eq!(column.compression(), Compression::LZ4_RAW);
        assert!(column.dictionary_page_offset().is_none(), "a dictionary");
        let read: Vec<RecordBatch> = reader
            .build()
            .expect("reader")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(read, vec![batch]);
    }
}
