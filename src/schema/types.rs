//! The type rules every layer shares: SQL names of Arrow types, which conversions widen
//! without loss (what a run may do to output, what an additive migration may do to a
//! column), and a partition's value in its table's partition column, typed for filters and
//! checks or as Delta's partition string.

use super::ColumnType;
use crate::partition::{PartitionKey, TimeKey};
use deltalake::arrow::datatypes::DataType;
use deltalake::datafusion::scalar::ScalarValue;

/// A name for an Arrow type in the spelling a migration would use, where there is one.
pub fn sql_name(dt: &DataType) -> String {
    let t = match dt {
        DataType::Boolean => "BOOLEAN",
        DataType::Int8 => "TINYINT",
        DataType::Int16 => "SMALLINT",
        DataType::Int32 => "INT",
        DataType::Int64 => "BIGINT",
        DataType::Float32 => "FLOAT",
        DataType::Float64 => "DOUBLE",
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "STRING",
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BINARY",
        DataType::Date32 => "DATE",
        DataType::Timestamp(_, Some(_)) => "TIMESTAMP",
        DataType::Timestamp(_, None) => "TIMESTAMP_NTZ",
        DataType::Decimal128(p, s) => return format!("DECIMAL({p},{s})"),
        other => return format!("{other} (no table type)"),
    };
    t.to_string()
}

/// Whether a value of type `from` converts to `to` without losing information that a
/// reader would notice. Anything else must be cast in the SQL, on purpose.
pub fn widens_to(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    if from == to || *from == Null {
        return true;
    }
    match (from, to) {
        (Int8, Int16 | Int32 | Int64) | (Int16, Int32 | Int64) | (Int32, Int64) => true,
        (UInt8, Int16 | Int32 | Int64) | (UInt16, Int32 | Int64) | (UInt32, Int64) => true,
        (Float16 | Float32, Float64) | (Float16, Float32) => true,
        (Utf8 | LargeUtf8 | Utf8View, Utf8 | LargeUtf8 | Utf8View) => true,
        (Binary | LargeBinary | BinaryView, Binary | LargeBinary | BinaryView) => true,
        (Dictionary(_, v), t) => widens_to(v, t),
        (Timestamp(_, a), Timestamp(_, b)) => a.is_some() == b.is_some(),
        (Date64, Date32) => true,
        (Decimal128(p1, s1), Decimal128(p2, s2)) => s1 == s2 && p2 >= p1,
        _ => false,
    }
}

/// The value a partition holds in its table's partition column.
pub fn partition_value(
    ty: ColumnType,
    key: &PartitionKey,
    tz: chrono_tz::Tz,
) -> Option<ScalarValue> {
    let start = key.start()?;
    Some(match ty {
        ColumnType::String => ScalarValue::Utf8(Some(key.time.to_string())),
        ColumnType::Date => match key.time {
            TimeKey::Day(d) | TimeKey::Month(d) => {
                let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
                ScalarValue::Date32(Some((d - epoch).num_days() as i32))
            }
            _ => return None,
        },
        ColumnType::Timestamp => {
            let utc = crate::partition::local_to_utc(tz, start);
            ScalarValue::TimestampMicrosecond(Some(utc.timestamp_micros()), Some("UTC".into()))
        }
        ColumnType::TimestampNtz => {
            ScalarValue::TimestampMicrosecond(Some(start.and_utc().timestamp_micros()), None)
        }
        _ => return None,
    })
}

/// How Delta's log names a partition in its partition column: the string form of
/// [`partition_value`] (a date, a UTC timestamp, or the key itself).
pub fn partition_string(ty: ColumnType, key: &PartitionKey, tz: chrono_tz::Tz) -> String {
    match (ty, key.start()) {
        (ColumnType::Date, Some(s)) => s.date().format("%Y-%m-%d").to_string(),
        (ColumnType::Timestamp, Some(s)) => crate::partition::local_to_utc(tz, s)
            .format("%Y-%m-%d %H:%M:%S%.6f")
            .to_string(),
        (ColumnType::TimestampNtz, Some(s)) => s.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
        _ => key.time.to_string(),
    }
}
