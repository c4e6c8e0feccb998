//! The code fingerprint: which code wrote a partition. A hash of the job spec's text, the
//! SQL's text and the output table's schema, recorded with every partition written.
//!
//! The spec's list of partition keys is not code: adding a region must not make the other
//! regions' partitions stale, so `partitioning.keys` and `keys_file` are left out of the
//! hash (a spec without them hashes as it is written). Nor is `[engine]`: the same SQL
//! writes the same rows in the process or on a cluster.

use crate::job::Job;
use crate::schema::TableSchema;

/// Hex blake3 of the three parts, each length-prefixed so that moving text from one part to
/// another changes the hash.
pub fn fingerprint(job: &Job, schema: &TableSchema) -> String {
    let mut h = blake3::Hasher::new();
    let spec = code_of(&job.spec_text);
    for part in [
        spec.as_bytes(),
        job.sql.as_bytes(),
        schema.to_json().as_bytes(),
    ] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.finalize().to_hex()[..16].to_string()
}

/// The spec's text without `partitioning.keys`, `partitioning.keys_file` and `[engine]`.
fn code_of(spec_text: &str) -> std::borrow::Cow<'_, str> {
    let Ok(mut doc) = spec_text.parse::<toml_edit::DocumentMut>() else {
        return spec_text.into();
    };
    let keys = doc
        .get_mut("partitioning")
        .and_then(|p| p.as_table_like_mut())
        .map(|p| [p.remove("keys"), p.remove("keys_file")]);
    let engine = doc.remove("engine");
    if engine.is_none() && keys.is_none_or(|k| k.iter().all(Option::is_none)) {
        return spec_text.into();
    }
    doc.to_string().into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_engine_is_not_part_of_the_code() {
        let spec = "version = 1\n[partitioning]\ngranularity = \"daily\"\n";
        let on_a_cluster = format!("{spec}[engine]\nkind = \"ballista\"\n");
        assert_eq!(super::code_of(spec), super::code_of(&on_a_cluster));
    }

    #[test]
    fn the_keys_are_not_part_of_the_code() {
        let spec = "version = 1\n[partitioning]\ngranularity = \"daily\"\nkey_column = \"r\"\nkeys = [\"a\"]\n";
        let more = spec.replace("[\"a\"]", "[\"a\", \"b\"]");
        assert_eq!(super::code_of(spec), super::code_of(&more));
        let other = spec.replace("daily", "monthly");
        assert_ne!(super::code_of(spec), super::code_of(&other));
        let plain = "version = 1\n[partitioning]\ngranularity = \"daily\"\n";
        assert_eq!(
            super::code_of(plain),
            plain,
            "a spec without keys hashes as written"
        );
    }
}
