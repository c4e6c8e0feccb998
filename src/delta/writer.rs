//! Uploading a partition's new Parquet files: invisible until a commit adds them.

use super::DeltaError;
use deltalake::DeltaTable;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::kernel::{Add, DataType as DeltaDataType, PrimitiveType};
use deltalake::parquet::basic::{Compression, ZstdLevel};
use deltalake::parquet::file::properties::WriterProperties;
use deltalake::parquet::schema::types::ColumnPath;
use deltalake::writer::{DeltaWriter as _, RecordBatchWriter};
use url::Url;

/// Writes a partition's new files. Nothing is visible until [`commit_partition`].
pub struct PartitionWriter {
    url: Url,
    writer: RecordBatchWriter,
    rows: u64,
    /// The table's schema the files are written under, as Delta JSON (see
    /// [`PartitionCommit::written_under`](super::PartitionCommit)).
    schema_json: String,
}

impl PartitionWriter {
    pub fn new(url: &Url, table: &DeltaTable) -> Result<PartitionWriter, DeltaError> {
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
            .set_created_by(format!("sluice {}", env!("CARGO_PKG_VERSION")));
        // Numbers, dates and times are written plain: ids, amounts and timestamps are mostly
        // distinct, and interning each value into a dictionary that zstd then makes
        // redundant was the larger part of writing a file. Text and booleans keep one.
        if let Ok(snapshot) = table.snapshot() {
            for field in snapshot.schema().fields() {
                let text = matches!(
                    field.data_type(),
                    DeltaDataType::Primitive(
                        PrimitiveType::String | PrimitiveType::Binary | PrimitiveType::Boolean
                    )
                );
                if matches!(field.data_type(), DeltaDataType::Primitive(_)) && !text {
                    props = props.set_column_dictionary_enabled(
                        ColumnPath::from(field.name().as_str()),
                        false,
                    );
                }
            }
        }
        let props = props.build();
        let writer = RecordBatchWriter::for_table(table)
            .map_err(|e| write_error(url, &e))?
            .with_writer_properties(props);
        let schema_json = table
            .snapshot()
            .ok()
            .and_then(|s| serde_json::to_string(s.schema().as_ref()).ok())
            .unwrap_or_default();
        Ok(PartitionWriter {
            url: url.clone(),
            writer,
            rows: 0,
            schema_json,
        })
    }

    pub async fn write(&mut self, batch: RecordBatch) -> Result<(), DeltaError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.rows += batch.num_rows() as u64;
        self.writer
            .write(batch)
            .await
            .map_err(|e| write_error(&self.url, &e))
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn schema_json(&self) -> &str {
        &self.schema_json
    }

    /// Finishes the files; returns their `add` actions.
    pub async fn finish(mut self) -> Result<Vec<Add>, DeltaError> {
        self.writer
            .flush()
            .await
            .map_err(|e| write_error(&self.url, &e))
    }
}

/// A failed write, with its storage cause when the error chain says one (then it is
/// retried only if a retry can help, and the user reads the cause, not the layers above).
fn write_error(url: &Url, e: &deltalake::DeltaTableError) -> DeltaError {
    let url = crate::warehouse::display(url);
    match super::storage_cause(e) {
        Some((cause, message)) => DeltaError::Storage {
            url,
            cause,
            message,
        },
        None => DeltaError::Write {
            url,
            message: e.to_string(),
        },
    }
}
