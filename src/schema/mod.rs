//! Table schemas as migrations declare them, and their mapping to Arrow.
//!
//! The catalog stores a table's current [`TableSchema`]; every physical version's Delta
//! schema is derived from it. Only `migrate` produces a new one (promise 5).

pub mod alter;
pub mod ddl;
pub mod types;

use crate::names::Name;
use deltalake::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A column type in the SQL spelling migrations use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ColumnType {
    Boolean,
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Float,
    Double,
    Decimal {
        precision: u8,
        scale: i8,
    },
    String,
    Binary,
    Date,
    /// An instant, stored in UTC (Delta `timestamp`).
    Timestamp,
    /// A wall-clock time without zone (Delta `timestamp_ntz`).
    TimestampNtz,
}

impl ColumnType {
    pub fn to_arrow(self) -> DataType {
        match self {
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::TinyInt => DataType::Int8,
            ColumnType::SmallInt => DataType::Int16,
            ColumnType::Int => DataType::Int32,
            ColumnType::BigInt => DataType::Int64,
            ColumnType::Float => DataType::Float32,
            ColumnType::Double => DataType::Float64,
            ColumnType::Decimal { precision, scale } => DataType::Decimal128(precision, scale),
            ColumnType::String => DataType::Utf8,
            ColumnType::Binary => DataType::Binary,
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ColumnType::TimestampNtz => DataType::Timestamp(TimeUnit::Microsecond, None),
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnType::Boolean => f.write_str("BOOLEAN"),
            ColumnType::TinyInt => f.write_str("TINYINT"),
            ColumnType::SmallInt => f.write_str("SMALLINT"),
            ColumnType::Int => f.write_str("INT"),
            ColumnType::BigInt => f.write_str("BIGINT"),
            ColumnType::Float => f.write_str("FLOAT"),
            ColumnType::Double => f.write_str("DOUBLE"),
            ColumnType::Decimal { precision, scale } => write!(f, "DECIMAL({precision},{scale})"),
            ColumnType::String => f.write_str("STRING"),
            ColumnType::Binary => f.write_str("BINARY"),
            ColumnType::Date => f.write_str("DATE"),
            ColumnType::Timestamp => f.write_str("TIMESTAMP"),
            ColumnType::TimestampNtz => f.write_str("TIMESTAMP_NTZ"),
        }
    }
}

impl Serialize for ColumnType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ColumnType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ddl::parse_type(&s).map_err(serde::de::Error::custom)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Column {
    pub name: Name,
    #[serde(rename = "type")]
    pub ty: ColumnType,
    pub nullable: bool,
    /// The SQL literal of the default, as written in the migration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl Column {
    pub fn to_arrow(&self) -> Field {
        Field::new(self.name.as_str(), self.ty.to_arrow(), self.nullable)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableSchema {
    pub name: Name,
    pub columns: Vec<Column>,
    #[serde(default)]
    pub partition_by: Vec<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

impl TableSchema {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name.as_str() == name)
    }

    pub fn to_arrow(&self) -> Arc<Schema> {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(Column::to_arrow)
                .collect::<Vec<_>>(),
        ))
    }

    /// The one partition column of a time-partitioned table, if the table has exactly one.
    pub fn partition_column(&self) -> Option<&Column> {
        match self.partition_by.as_slice() {
            [one] => self.column(one.as_str()),
            _ => None,
        }
    }

    /// Canonical JSON: what the code fingerprint hashes and the catalog stores.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The value of a column default (a literal as a migration writes it: `0`, `'text'`, `TRUE`,
/// `NULL`) in the column's type. Checked when the migration is read, used when a run's SQL
/// leaves the column out.
pub fn default_value(
    ty: ColumnType,
    literal: &str,
) -> Result<deltalake::datafusion::scalar::ScalarValue, String> {
    use deltalake::datafusion::scalar::ScalarValue;
    let dt = ty.to_arrow();
    if literal.eq_ignore_ascii_case("NULL") {
        return ScalarValue::try_from(&dt).map_err(|e| e.to_string());
    }
    let text = match literal
        .strip_prefix('\'')
        .and_then(|l| l.strip_suffix('\''))
    {
        Some(inner) => inner.replace("''", "'"),
        None => literal.to_string(),
    };
    let text = match (ty, text.to_ascii_uppercase().as_str()) {
        (ColumnType::Boolean, "TRUE" | "FALSE") => text.to_ascii_lowercase(),
        _ => text,
    };
    ScalarValue::try_from_string(text.clone(), &dt)
        .ok()
        .filter(|v| !v.is_null())
        .ok_or_else(|| format!("DEFAULT {literal} is not a value of type {ty}"))
}
