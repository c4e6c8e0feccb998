//! The code fingerprint: which code wrote a partition. A hash of the job spec's text, the
//! SQL's text and the output table's schema, recorded with every partition written.
//!
//! The spec's list of partition keys is not code: adding a region must not make the other
//! regions' partitions stale, so `partitioning.keys` and `keys_file` are left out of the
//! hash (a spec without them hashes as it is written). Nor is `[engine]`: the same SQL
//! writes the same rows in the process or on a cluster. Nor is what the daemon does when
//! data changes (`schedule.watch_inputs`, `schedule.on_upstream_change`): turning a watch
//! on must not make every partition stale.

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

/// The spec's text without `partitioning.keys`, `partitioning.keys_file`, `[engine]`, what
/// the daemon does when data changes (`schedule.on_upstream_change`,
/// `schedule.watch_inputs`) and when a partition is late (`schedule.deadline`): none of them
/// changes the rows a partition holds.
pub(crate) fn code_of(spec_text: &str) -> std::borrow::Cow<'_, str> {
    let Ok(mut doc) = spec_text.parse::<toml_edit::DocumentMut>() else {
        return spec_text.into();
    };
    let mut removed = Vec::new();
    if let Some(p) = doc
        .get_mut("partitioning")
        .and_then(|p| p.as_table_like_mut())
    {
        removed.extend([p.remove("keys"), p.remove("keys_file")]);
    }
    if let Some(s) = doc.get_mut("schedule").and_then(|s| s.as_table_like_mut()) {
        removed.extend([
            s.remove("on_upstream_change"),
            s.remove("watch_inputs"),
            s.remove("deadline"),
        ]);
    }
    removed.push(doc.remove("engine"));
    if removed.iter().all(Option::is_none) {
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
    fn what_the_daemon_does_when_data_changes_is_not_part_of_the_code() {
        let spec = "version = 1\n[schedule]\ncron = \"0 3 * * *\"\n[partitioning]\ngranularity = \"daily\"\n";
        let watching = spec.replace(
            "[partitioning]",
            "watch_inputs = \"7d\"   # late files\non_upstream_change = \"mark\"\ndeadline = \"07:00\"\n[partitioning]",
        );
        assert_eq!(super::code_of(spec), super::code_of(&watching));
        let other = spec.replace("0 3", "0 4");
        assert_ne!(super::code_of(spec), super::code_of(&other));
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
