//! The rows of a database input on their way to the scratch file: a batch of vectors, one
//! per declared column, in the type the system sends it as (`Kind`), made into an Arrow
//! batch of the declared types and appended to an Arrow IPC stream that is hashed as it is
//! written. Memory is one batch, whatever the partition's size.

use crate::schema::Column;
use deltalake::arrow::array::{
    Array as _, ArrayRef, BinaryArray, BooleanArray, Float32Array, Float64Array, Int16Array,
    Int32Array, Int64Array, StringArray,
};
use deltalake::arrow::datatypes::{DataType, SchemaRef};
use deltalake::arrow::error::ArrowError;
use deltalake::arrow::ipc::writer::StreamWriter;
use deltalake::arrow::record_batch::RecordBatch;
use sha2::Digest as _;
use std::io::Write;
use std::sync::Arc;

/// Rows a batch holds before it is written out.
const BATCH_ROWS: usize = 65_536;

/// The Rust type a column's values are decoded as, before the cast to the declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    I16,
    I32,
    I64,
    F32,
    F64,
    Text,
    Bytes,
}

/// A value type the database's driver decodes.
pub trait Decodes<DB: sqlx::Database>: for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB> {}
impl<DB: sqlx::Database, T: for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>> Decodes<DB> for T {}

/// Why the rows could not be kept: the query failed or a row could not be decoded, or a
/// batch could not be written.
pub enum Failure {
    Query(sqlx::Error),
    /// A value the stream holds that its column cannot take.
    Decode(String),
    Write(ArrowError),
}

/// The batch being filled and the stream it goes to.
pub struct Sink {
    schema: SchemaRef,
    columns: Vec<Values>,
    len: usize,
    writer: StreamWriter<Hashing>,
    pub rows: u64,
}

/// A column's values so far, as decoded.
pub enum Values {
    Bool(Vec<Option<bool>>),
    I16(Vec<Option<i16>>),
    I32(Vec<Option<i32>>),
    I64(Vec<Option<i64>>),
    F32(Vec<Option<f32>>),
    F64(Vec<Option<f64>>),
    Text(Vec<Option<String>>),
    Bytes(Vec<Option<Vec<u8>>>),
}

impl Sink {
    /// A stream of `declared` into `file`, each column decoded as `kind` says.
    pub fn new(
        file: std::fs::File,
        declared: &[Column],
        kind: fn(&Column) -> Kind,
    ) -> Result<Sink, ArrowError> {
        let schema = crate::engine::columns_schema(declared);
        let writer = StreamWriter::try_new(Hashing::new(file), &schema)?;
        let columns = declared
            .iter()
            .map(|c| match kind(c) {
                Kind::Bool => Values::Bool(Vec::new()),
                Kind::I16 => Values::I16(Vec::new()),
                Kind::I32 => Values::I32(Vec::new()),
                Kind::I64 => Values::I64(Vec::new()),
                Kind::F32 => Values::F32(Vec::new()),
                Kind::F64 => Values::F64(Vec::new()),
                Kind::Text => Values::Text(Vec::new()),
                Kind::Bytes => Values::Bytes(Vec::new()),
            })
            .collect();
        Ok(Sink {
            schema,
            columns,
            len: 0,
            writer,
            rows: 0,
        })
    }

    /// Takes every row of `rows`, writing each full batch out.
    pub async fn take_all<R, S>(&mut self, mut rows: S) -> Result<(), Failure>
    where
        S: futures::Stream<Item = Result<R, sqlx::Error>> + Unpin,
        R: sqlx::Row,
        usize: sqlx::ColumnIndex<R>,
        bool: Decodes<R::Database>,
        i16: Decodes<R::Database>,
        i32: Decodes<R::Database>,
        i64: Decodes<R::Database>,
        f32: Decodes<R::Database>,
        f64: Decodes<R::Database>,
        String: Decodes<R::Database>,
        Vec<u8>: Decodes<R::Database>,
    {
        use futures::TryStreamExt as _;
        while let Some(row) = rows.try_next().await.map_err(Failure::Query)? {
            for (i, v) in self.columns.iter_mut().enumerate() {
                let decoded = match v {
                    Values::Bool(v) => row.try_get(i).map(|x| v.push(x)),
                    Values::I16(v) => row.try_get(i).map(|x| v.push(x)),
                    Values::I32(v) => row.try_get(i).map(|x| v.push(x)),
                    Values::I64(v) => row.try_get(i).map(|x| v.push(x)),
                    Values::F32(v) => row.try_get(i).map(|x| v.push(x)),
                    Values::F64(v) => row.try_get(i).map(|x| v.push(x)),
                    Values::Text(v) => row.try_get(i).map(|x| v.push(x)),
                    Values::Bytes(v) => row.try_get(i).map(|x| v.push(x)),
                };
                decoded.map_err(Failure::Query)?;
            }
            self.row_done()?;
        }
        Ok(())
    }

    /// Adds a row whose cells `fill` pushes, one onto each column in order.
    pub fn push_with(
        &mut self,
        fill: impl FnOnce(&mut [Values]) -> Result<(), String>,
    ) -> Result<(), Failure> {
        fill(&mut self.columns).map_err(Failure::Decode)?;
        self.row_done()
    }

    /// Counts a row pushed; a full batch is written out.
    fn row_done(&mut self) -> Result<(), Failure> {
        self.len += 1;
        self.rows += 1;
        if self.len == BATCH_ROWS {
            self.flush().map_err(Failure::Write)?;
        }
        Ok(())
    }

    /// Writes the last batch and ends the stream: its size in bytes and SHA-256.
    pub fn finish(mut self) -> Result<(u64, String), ArrowError> {
        self.flush()?;
        self.writer.finish()?;
        let sink = self.writer.into_inner()?;
        sink.done().map_err(ArrowError::from)
    }

    fn flush(&mut self) -> Result<(), ArrowError> {
        let mut arrays = Vec::with_capacity(self.columns.len());
        for (v, field) in self.columns.iter_mut().zip(self.schema.fields()) {
            let a: ArrayRef = match v {
                Values::Bool(v) => Arc::new(BooleanArray::from(std::mem::take(v))),
                Values::I16(v) => Arc::new(Int16Array::from(std::mem::take(v))),
                Values::I32(v) => Arc::new(Int32Array::from(std::mem::take(v))),
                Values::I64(v) => Arc::new(Int64Array::from(std::mem::take(v))),
                Values::F32(v) => Arc::new(Float32Array::from(std::mem::take(v))),
                Values::F64(v) => Arc::new(Float64Array::from(std::mem::take(v))),
                Values::Text(v) => Arc::new(StringArray::from(std::mem::take(v))),
                Values::Bytes(v) => {
                    let v = std::mem::take(v);
                    Arc::new(BinaryArray::from_iter(v.iter().map(|b| b.as_deref())))
                }
            };
            arrays.push(as_declared(a, field.data_type())?);
        }
        self.len = 0;
        let batch = RecordBatch::try_new(self.schema.clone(), arrays)?;
        self.writer.write(&batch)
    }
}

/// An array as read (days and microseconds since the epoch, a decimal as text, any
/// integer as the system sends it) in its declared type.
pub fn as_declared(a: ArrayRef, to: &DataType) -> Result<ArrayRef, ArrowError> {
    use deltalake::arrow::datatypes::{Date32Type, TimestampMicrosecondType};
    match to {
        DataType::Date32 => {
            let days = strict_cast(&a, &DataType::Int32)?;
            match days.as_any().downcast_ref::<Int32Array>() {
                Some(days) => Ok(Arc::new(days.reinterpret_cast::<Date32Type>())),
                None => strict_cast(&a, to),
            }
        }
        DataType::Timestamp(_, zone) => match a.as_any().downcast_ref::<Int64Array>() {
            Some(micros) => {
                let ts = micros
                    .reinterpret_cast::<TimestampMicrosecondType>()
                    .with_timezone_opt(zone.clone());
                strict_cast(&ts, to)
            }
            None => strict_cast(&a, to),
        },
        other if a.data_type() == other => Ok(a),
        other => strict_cast(&a, other),
    }
}

/// A cast that fails on a value it cannot carry (an integer past TINYINT, text that is no
/// decimal) rather than making it NULL: a row read must be the row the server holds.
fn strict_cast(
    a: &dyn deltalake::arrow::array::Array,
    to: &DataType,
) -> Result<ArrayRef, ArrowError> {
    let strict = deltalake::arrow::compute::CastOptions {
        safe: false,
        ..Default::default()
    };
    deltalake::arrow::compute::cast_with_options(a, to, &strict)
}

/// A file writer that hashes what it writes and counts it.
struct Hashing {
    file: std::io::BufWriter<std::fs::File>,
    hash: sha2::Sha256,
    bytes: u64,
}

impl Hashing {
    fn new(file: std::fs::File) -> Hashing {
        Hashing {
            file: std::io::BufWriter::new(file),
            hash: sha2::Sha256::new(),
            bytes: 0,
        }
    }

    fn done(mut self) -> std::io::Result<(u64, String)> {
        self.file.flush()?;
        let hex = self
            .hash
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok((self.bytes, hex))
    }
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_the_declared_type_cannot_carry_fails_rather_than_turning_null() {
        let big: ArrayRef = Arc::new(Int16Array::from(vec![Some(300)]));
        assert!(as_declared(big, &DataType::Int8).is_err());
        let wide: ArrayRef = Arc::new(Int64Array::from(vec![Some(1 << 40)]));
        assert!(as_declared(wide, &DataType::Date32).is_err());
        let text: ArrayRef = Arc::new(StringArray::from(vec![Some("12.5x")]));
        assert!(as_declared(text, &DataType::Decimal128(12, 2)).is_err());
        let fine: ArrayRef = Arc::new(StringArray::from(vec![Some("12.50"), None]));
        let d = as_declared(fine, &DataType::Decimal128(12, 2)).unwrap();
        assert_eq!(d.null_count(), 1);
    }

    #[test]
    fn integers_as_mysql_sends_them_become_the_declared_types() {
        let days: ArrayRef = Arc::new(Int64Array::from(vec![Some(19723), None]));
        let d = as_declared(days, &DataType::Date32).unwrap();
        assert_eq!(d.data_type(), &DataType::Date32);
        assert_eq!(d.null_count(), 1);
        let flags: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), Some(0)]));
        let b = as_declared(flags, &DataType::Boolean).unwrap();
        let b = b.as_any().downcast_ref::<BooleanArray>().unwrap();
        assert!(b.value(0) && !b.value(1));
    }
}
