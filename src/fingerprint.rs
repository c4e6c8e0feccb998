//! The code fingerprint: which code wrote a partition. A hash of the job spec's text, the
//! SQL's text and the output table's schema, recorded with every partition written.

use crate::job::Job;
use crate::schema::TableSchema;

/// Hex blake3 of the three parts, each length-prefixed so that moving text from one part to
/// another changes the hash.
pub fn fingerprint(job: &Job, schema: &TableSchema) -> String {
    let mut h = blake3::Hasher::new();
    for part in [
        job.spec_text.as_bytes(),
        job.sql.as_bytes(),
        schema.to_json().as_bytes(),
    ] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.finalize().to_hex()[..16].to_string()
}
