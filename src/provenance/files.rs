//! Input files as a local object store reports them: path, size, last-modified time and
//! ETag (object_store's for a local file: inode, modification time in microseconds and
//! size, in hex), read from metadata only, never the data. A run lists its own partition's
//! files; a poll or `status` over many partitions lists each input template's folder once
//! (`Listings::shared`) and looks each partition's files up in that listing.

use crate::job::Job;
use crate::partition::PartitionKey;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

/// One input file as a run read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRead {
    /// The job's input name.
    pub input: String,
    /// Relative to the project, with `/`.
    pub path: String,
    pub size: u64,
    /// Last modified, milliseconds since the Unix epoch.
    pub modified: i64,
    pub etag: String,
}

/// A file's metadata, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Meta {
    size: u64,
    modified: i64,
    etag: String,
}

fn meta_of(m: &std::fs::Metadata) -> Meta {
    let since = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default();
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(m);
    #[cfg(not(unix))]
    let inode = 0u64;
    let size = m.len();
    Meta {
        size,
        modified: since.as_millis() as i64,
        etag: format!("{inode:x}-{:x}-{size:x}", since.as_micros()),
    }
}

/// The files under `dir` (relative to `root`), recursively, by path relative to `root`.
/// A folder that does not exist lists nothing; one that cannot be read is skipped (the
/// run that reads it says why).
fn walk(root: &Path, dir: &str) -> BTreeMap<String, Meta> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.trim_end_matches('/').to_string()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(root.join(&d)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let rel = if d.is_empty() {
                name
            } else {
                format!("{d}/{name}")
            };
            // Follows links, as reading the file does.
            let Ok(m) = std::fs::metadata(e.path()) else {
                continue;
            };
            if m.is_dir() {
                todo.push(rel);
            } else {
                out.insert(rel, meta_of(&m));
            }
        }
    }
    out
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The folder a path's fixed part ends in: `a/b/dt={partition}/x.csv` lists `a/b/`.
fn fixed_folder(path: &str) -> &str {
    let end = path.find(['{', '*', '?', '[']).unwrap_or(path.len());
    match path[..end].rfind('/') {
        Some(i) => &path[..i],
        None => "",
    }
}

/// Listings of input folders, each made once and shared by every partition asked about.
pub struct Listings<'r> {
    root: &'r Path,
    /// List each template's whole folder once (many partitions), or only what one
    /// partition names (a run).
    shared: bool,
    folders: HashMap<String, Arc<BTreeMap<String, Meta>>>,
}

impl<'r> Listings<'r> {
    /// For one partition's run: a file is looked at alone, a glob's folder is listed.
    pub fn one(root: &'r Path) -> Listings<'r> {
        Listings {
            root,
            shared: false,
            folders: HashMap::new(),
        }
    }

    /// For many partitions: one listing per input template.
    pub fn shared(root: &'r Path) -> Listings<'r> {
        Listings {
            root,
            shared: true,
            folders: HashMap::new(),
        }
    }

    fn folder(&mut self, dir: &str) -> Arc<BTreeMap<String, Meta>> {
        self.folders
            .entry(dir.to_string())
            .or_insert_with(|| Arc::new(walk(self.root, dir)))
            .clone()
    }

    /// The files each file input of `job` names for `key` now. An input in an object
    /// store (a URL) or whose template does not resolve is not tracked.
    pub fn files_of(&mut self, job: &Job, key: &PartitionKey) -> Vec<FileRead> {
        let mut out = Vec::new();
        for input in &job.inputs {
            let crate::job::InputSource::Files { template, .. } = &input.source else {
                continue;
            };
            let Ok(rel) = Job::resolve_template(template, key) else {
                continue;
            };
            if rel.contains("://") {
                continue;
            }
            let rel = rel.trim_start_matches("./").to_string();
            let found = |path: &str, m: &Meta| FileRead {
                input: input.name.to_string(),
                path: path.to_string(),
                size: m.size,
                modified: m.modified,
                etag: m.etag.clone(),
            };
            if is_glob(&rel) {
                let Ok(pattern) = glob::Pattern::new(&rel) else {
                    continue;
                };
                let dir = if self.shared {
                    fixed_folder(template)
                } else {
                    fixed_folder(&rel)
                };
                let listed = self.folder(dir);
                let matched: Vec<FileRead> = listed
                    .iter()
                    .filter(|(p, _)| pattern.matches(p))
                    .map(|(p, m)| found(p, m))
                    .collect();
                out.extend(summarized(input.name.as_str(), &rel, matched));
            } else if self.shared {
                let listed = self.folder(fixed_folder(template));
                if let Some(m) = listed.get(&rel) {
                    out.push(found(&rel, m));
                }
            } else if let Ok(m) = std::fs::metadata(self.root.join(&rel))
                && m.is_file()
            {
                out.push(found(&rel, &meta_of(&m)));
            }
        }
        out
    }
}

/// The most files of one input recorded one by one; past it, the catalog keeps one entry
/// for them all (so a run over thousands of files costs the catalog a line, not a page),
/// and a change says only that one of them changed.
const FILES_KEPT: usize = 64;

/// `files` as recorded: each one, or past [`FILES_KEPT`] one entry named by the glob, with
/// the count as its size, the newest modification time, and a hash of every file's path,
/// size and ETag as its ETag.
fn summarized(input: &str, glob: &str, files: Vec<FileRead>) -> Vec<FileRead> {
    if files.len() <= FILES_KEPT {
        return files;
    }
    let mut h = blake3::Hasher::new();
    for f in &files {
        h.update(format!("{}:{}:{}\n", f.path, f.size, f.etag).as_bytes());
    }
    vec![FileRead {
        input: input.to_string(),
        path: glob.to_string(),
        size: files.len() as u64,
        modified: files.iter().map(|f| f.modified).max().unwrap_or_default(),
        etag: h.finalize().to_hex()[..16].to_string(),
    }]
}

/// What differs between the files a run read and those there now: `changed`, `gone` or
/// `new`, with the path.
pub fn differences(read: &[FileRead], now: &[FileRead]) -> Vec<String> {
    let then: BTreeMap<(&str, &str), &FileRead> = read
        .iter()
        .map(|f| ((f.input.as_str(), f.path.as_str()), f))
        .collect();
    let current: BTreeMap<(&str, &str), &FileRead> = now
        .iter()
        .map(|f| ((f.input.as_str(), f.path.as_str()), f))
        .collect();
    let mut out = Vec::new();
    for (k, f) in &then {
        match current.get(k) {
            None => out.push(format!("{} gone", k.1)),
            Some(n) if n.size != f.size || n.etag != f.etag || n.modified != f.modified => {
                out.push(format!("{} changed", k.1))
            }
            Some(_) => {}
        }
    }
    for k in current.keys() {
        if !then.contains_key(k) {
            out.push(format!("{} new", k.1));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixed_folder_of_a_template() {
        assert_eq!(
            fixed_folder("sample-data/orders/dt={partition}/orders.csv"),
            "sample-data/orders"
        );
        assert_eq!(fixed_folder("data/*.csv"), "data");
        assert_eq!(fixed_folder("{partition}.csv"), "");
    }

    fn f(path: &str, size: u64) -> FileRead {
        FileRead {
            input: "orders".into(),
            path: path.into(),
            size,
            modified: 1,
            etag: format!("e{size}"),
        }
    }

    #[test]
    fn many_files_are_kept_as_one_entry_that_changes_with_any_of_them() {
        let many: Vec<FileRead> = (0..100).map(|i| f(&format!("d/{i}.csv"), 1)).collect();
        let kept = summarized("orders", "d/*.csv", many.clone());
        assert_eq!(kept.len(), 1);
        assert_eq!((kept[0].path.as_str(), kept[0].size), ("d/*.csv", 100));
        let mut one_changed = many.clone();
        one_changed[50] = f("d/50.csv", 2);
        let again = summarized("orders", "d/*.csv", one_changed);
        assert_eq!(differences(&kept, &again), vec!["d/*.csv changed"]);
        assert_eq!(summarized("orders", "d/*.csv", many[..3].to_vec()).len(), 3);
    }

    #[test]
    fn differences_name_changed_gone_and_new_files() {
        let read = vec![f("a.csv", 1), f("b.csv", 2)];
        let now = vec![f("a.csv", 3), f("c.csv", 4)];
        assert_eq!(
            differences(&read, &now),
            vec!["a.csv changed", "b.csv gone", "c.csv new"]
        );
        assert!(differences(&read, &read).is_empty());
    }
}
