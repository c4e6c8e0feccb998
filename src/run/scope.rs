//! How a partition is named in its table: the one rule the attempt, the lease's
//! reconciling and the tests of fitted output share.

use crate::delta::Scope;
use crate::job::Job;
use crate::partition::PartitionKey;
use crate::schema::TableSchema;

/// How a partition is named in its table's partition column, for the Delta log (its
/// string form) and for filters and checks (its typed value).
pub fn partition_scope(schema: &TableSchema, job: &Job, key: &PartitionKey) -> Scope {
    let values: Vec<(String, String)> = job
        .partition_values(schema, key)
        .into_iter()
        .map(|v| (v.column, v.text))
        .collect();
    if values.is_empty() {
        Scope::WholeTable
    } else {
        Scope::Partition(values)
    }
}
