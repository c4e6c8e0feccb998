//! The rules ARCHITECTURE.md states that a reading of the source can check (in the manner
//! of rust-analyzer's tidy tests): which room may use which crate or write objects, no
//! import circle between top-level modules, files and functions of a readable size.

use crate::util::REPO;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/`, as (path relative to `src/`, code). Comments, string
/// literals and `#[cfg(test)]` modules are blanked, so that only code is checked.
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("src/ is readable") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let root = Path::new(REPO).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("source is UTF-8");
            let rel = p
                .strip_prefix(&root)
                .expect("under src")
                .to_string_lossy()
                .replace('\\', "/");
            (rel, code_only(&text))
        })
        .collect()
}

/// The text with comments and string contents replaced by spaces (line structure kept),
/// and everything from the first `#[cfg(test)]` on dropped (a whole file of tests,
/// `#![cfg(test)]`, is all dropped).
fn code_only(text: &str) -> String {
    let cut = ["#[cfg(test)]", "#![cfg(test)]"]
        .iter()
        .filter_map(|m| text.find(m))
        .min();
    let text = match cut {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let (mut in_str, mut in_line_comment, mut block_depth) = (false, false, 0u32);
    while let Some(c) = chars.next() {
        if in_line_comment {
            if c == '\n' {
                in_line_comment = false;
                out.push('\n');
            }
            continue;
        }
        if block_depth > 0 {
            if c == '*' && chars.peek() == Some(&'/') {
                chars.next();
                block_depth -= 1;
            } else if c == '\n' {
                out.push('\n');
            }
            continue;
        }
        if in_str {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    in_str = false;
                    out.push('"');
                }
                '\n' => out.push('\n'),
                _ => {}
            }
            continue;
        }
        match (c, chars.peek()) {
            ('/', Some('/')) => in_line_comment = true,
            ('/', Some('*')) => {
                chars.next();
                block_depth += 1;
            }
            ('"', _) => {
                in_str = true;
                out.push('"');
            }
            _ => out.push(c),
        }
    }
    out
}

/// The top-level module a source file belongs to (`run/attempt.rs` -> `run`).
fn room(rel: &str) -> &str {
    rel.split('/').next().unwrap_or(rel).trim_end_matches(".rs")
}

/// Files that mention `word` (as a path segment) outside the rooms allowed to.
fn used_outside(word: &str, allowed: &[&str]) -> Vec<String> {
    sources()
        .into_iter()
        .filter(|(rel, _)| !allowed.contains(&room(rel)))
        .filter(|(_, code)| {
            code.match_indices(word).any(|(i, _)| {
                let before = code[..i].chars().next_back();
                let after = code[i + word.len()..].chars().next();
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                    && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
            })
        })
        .map(|(rel, _)| rel)
        .collect()
}

#[test]
fn only_catalog_uses_sqlx() {
    // And a PostgreSQL input, which reads a source database (never the catalog).
    assert_eq!(
        used_outside("sqlx", &["catalog", "database_input"]),
        Vec::<String>::new()
    );
    // Reads of a SQLite catalog's file straight (catalog/sqlite_file.rs).
    assert_eq!(used_outside("rusqlite", &["catalog"]), Vec::<String>::new());
}

#[test]
fn only_cli_uses_clap() {
    assert_eq!(used_outside("clap", &["cli"]), Vec::<String>::new());
}

#[test]
fn only_ui_knows_the_http_stack_and_the_templates() {
    for word in ["axum", "askama"] {
        assert_eq!(used_outside(word, &["ui"]), Vec::<String>::new(), "{word}");
    }
}

#[test]
fn only_daemon_knows_tokio_cron_scheduler() {
    assert_eq!(
        used_outside("tokio_cron_scheduler", &["daemon"]),
        Vec::<String>::new()
    );
}

#[test]
fn cron_stays_with_job_specs_and_the_daemon() {
    assert_eq!(
        used_outside("croner", &["job", "daemon"]),
        Vec::<String>::new()
    );
}

#[test]
fn only_delta_writes_or_deletes_objects() {
    // Object-store puts, deletes, copies and renames; local file deletes and writes; Delta's
    // commit builder, writers and operations.
    let writes = [
        ".put(",
        ".put_opts(",
        ".put_multipart(",
        ".delete(",
        ".delete_stream(",
        ".copy(",
        ".copy_if_not_exists(",
        ".rename(",
        ".rename_if_not_exists(",
        ".vacuum(",
        "remove_file(",
        "remove_dir_all(",
        "fs::write(",
        "CommitBuilder",
        "RecordBatchWriter",
        "DeltaOps",
        "write_deltalake",
    ];
    let mut found = BTreeMap::new();
    for (rel, code) in sources() {
        // `job_tests` writes the project's own files (a test's expected rows, the JUnit
        // report), never the warehouse; `engine/left_copies.rs` removes the local temporary
        // copies of inputs that killed processes left, nothing else.
        if room(&rel) == "delta" || room(&rel) == "job_tests" || rel == "engine/left_copies.rs" {
            continue;
        }
        let hits: Vec<&str> = writes
            .iter()
            .copied()
            .filter(|w| code.contains(w))
            .collect();
        if !hits.is_empty() {
            found.insert(rel, hits);
        }
    }
    assert!(found.is_empty(), "object writes outside delta/: {found:?}");
}

#[test]
fn no_import_circle_between_top_level_modules() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, code) in sources() {
        let from = room(&rel).to_string();
        if from == "lib" || from == "main" {
            continue;
        }
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let mut targets = Vec::new();
            if let Some(group) = rest.strip_prefix('{') {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                targets.extend(
                    group
                        .split(',')
                        .map(|p| p.trim().split("::").next().unwrap_or("")),
                );
            } else {
                targets.push(
                    rest.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .next()
                        .unwrap_or(""),
                );
            }
            for t in targets {
                if !t.is_empty()
                    && t != from
                    && t.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                {
                    edges.entry(from.clone()).or_default().insert(t.to_string());
                }
            }
        }
    }
    if let Some(circle) = find_circle(&edges) {
        panic!("import circle: {}", circle.join(" -> "));
    }
}

/// A circle in `edges`, if there is one: depth-first search for a back edge.
fn find_circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut circle = path[i..].to_vec();
            circle.push(m.to_string());
            return Some(circle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for next in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|m| visit(m, edges, &mut Vec::new(), &mut done))
}

/// The first path segment after each `prefix` in `code` (each item of a `prefix{..}`
/// group).
fn segments_after(code: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices(prefix) {
        let rest = &code[i + prefix.len()..];
        let ident = |t: &str| -> String {
            t.trim()
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .next()
                .unwrap_or("")
                .to_string()
        };
        match rest.strip_prefix('{') {
            Some(group) => {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                out.extend(group.split(',').map(ident));
            }
            None => out.push(ident(rest)),
        }
    }
    out
}

#[test]
fn no_import_circle_between_files_of_one_folder() {
    // The modules of one folder (its files and subfolders, `mod.rs` aside: a parent uses
    // its children) form no circle: a step that needs another's type finds it in a file
    // both import, not in each other.
    let all = sources();
    let mut circles = Vec::new();
    let folders: BTreeSet<String> = all
        .iter()
        .filter_map(|(rel, _)| rel.rsplit_once('/').map(|(dir, _)| dir.to_string()))
        .collect();
    for folder in folders {
        let prefix = format!("{folder}/");
        let node = |rel: &str| -> Option<String> {
            let rest = rel.strip_prefix(&prefix)?;
            let first = rest.split('/').next()?.trim_end_matches(".rs");
            (first != "mod").then(|| first.to_string())
        };
        let nodes: BTreeSet<String> = all.iter().filter_map(|(rel, _)| node(rel)).collect();
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (rel, code) in &all {
            let Some(from) = node(rel) else { continue };
            let direct = !rel[prefix.len()..].contains('/');
            let mut named =
                segments_after(code, &format!("crate::{}::", folder.replace('/', "::")));
            if direct {
                named.extend(segments_after(code, "super::"));
            }
            for to in named {
                if to != from && nodes.contains(&to) {
                    edges.entry(from.clone()).or_default().insert(to);
                }
            }
        }
        if let Some(circle) = find_circle(&edges) {
            circles.push(format!("{folder}/: {}", circle.join(" -> ")));
        }
    }
    assert!(circles.is_empty(), "import circles: {circles:#?}");
}

#[test]
fn no_source_file_over_700_lines() {
    let root = Path::new(REPO).join("src");
    let long: Vec<(String, usize)> = sources()
        .into_iter()
        .map(|(rel, _)| {
            let n = std::fs::read_to_string(root.join(&rel))
                .map(|t| t.lines().count())
                .unwrap_or(0);
            (rel, n)
        })
        .filter(|(_, n)| *n > 700)
        .collect();
    assert!(
        long.is_empty(),
        "split these along a seam they have: {long:?}"
    );
}

#[test]
fn anyhow_only_in_cli() {
    // Below the CLI, errors are typed per layer and say what a user needs; `anyhow` joins
    // them at the top only.
    assert_eq!(used_outside("anyhow", &["cli"]), Vec::<String>::new());
}

#[test]
fn only_the_engine_makes_datafusion_sessions() {
    // What a session may hold (its memory pool, its catalog, Ballista's settings) is
    // decided in one place.
    let makers = ["SessionContext::new", "SessionStateBuilder"];
    // Ballista's processes build their sessions through Ballista's own builder callbacks.
    let found: Vec<(String, &str)> = sources()
        .into_iter()
        .filter(|(rel, _)| room(rel) != "engine" && rel != "cluster/processes.rs")
        .flat_map(|(rel, code)| {
            makers
                .iter()
                .filter(move |m| code.contains(**m))
                .map(move |m| (rel.clone(), *m))
        })
        .collect();
    assert!(found.is_empty(), "sessions made outside engine/: {found:?}");
}

#[test]
fn only_the_composition_root_builds_the_parts() {
    // The project, catalog, engine and clock are built by `cli/context.rs` (and the
    // daemon's reload, which loads a changed project); everything else is handed them,
    // so that a test can hand in a temporary catalog or a manual clock.
    let builders = [
        "Project::load",
        "Catalog::connect",
        "Engine::new(",
        "SystemClock",
    ];
    let allowed = ["cli/context.rs", "daemon/reload.rs", "clock.rs"];
    let found: Vec<(String, &str)> = sources()
        .into_iter()
        .filter(|(rel, _)| !allowed.contains(&rel.as_str()))
        .flat_map(|(rel, code)| {
            builders
                .iter()
                .filter(move |b| code.contains(**b))
                .map(move |b| (rel.clone(), *b))
        })
        .collect();
    assert!(
        found.is_empty(),
        "parts built outside the composition root: {found:?}"
    );
}

#[test]
fn the_runner_is_implemented_in_two_files_only() {
    // The runner keeps the retry loop (run/mod.rs) and the order of an attempt
    // (run/attempt.rs); every step is a type of its own with only what it uses.
    let found: Vec<String> = sources()
        .into_iter()
        .filter(|(rel, code)| {
            code.contains("impl Runner") && rel != "run/mod.rs" && rel != "run/attempt.rs"
        })
        .map(|(rel, _)| rel)
        .collect();
    assert!(
        found.is_empty(),
        "give the step a type of its own: {found:?}"
    );
}

#[test]
fn no_test_file_over_700_lines() {
    fn walk(dir: &Path, long: &mut Vec<(String, usize)>) {
        for e in std::fs::read_dir(dir).expect("tests/it is readable") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(&p, long);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let n = std::fs::read_to_string(&p)
                    .map(|t| t.lines().count())
                    .unwrap_or(0);
                if n > 700 {
                    long.push((p.display().to_string(), n));
                }
            }
        }
    }
    let mut long = Vec::new();
    walk(&Path::new(REPO).join("tests/it"), &mut long);
    long.sort();
    assert!(
        long.is_empty(),
        "split these along a seam they have: {long:?}"
    );
}

#[test]
fn no_too_many_arguments_allowance() {
    let found: Vec<String> = sources()
        .into_iter()
        .filter(|(_, code)| code.contains("too_many_arguments"))
        .map(|(rel, _)| rel)
        .collect();
    assert!(found.is_empty(), "pass a context struct instead: {found:?}");
}

/// Functions of more than this many lines are asked to split, unless they are one table
/// or one match (listed in `ONE_TABLE_OR_MATCH`).
const MAX_FN_LINES: usize = 100;

/// Long functions that are one table or one match: splitting them would scatter one rule.
const ONE_TABLE_OR_MATCH: &[&str] = &[
    // The DDL lexer: one match over the next character.
    "schema/ddl/lex.rs::lex",
    // A check as written: one match over its type.
    "quality/mod.rs::parse",
];

/// Every function with a body, as (`file::name`, lines from `fn` to its closing brace).
fn function_lengths() -> Vec<(String, usize)> {
    let root = Path::new(REPO).join("src");
    let mut out = Vec::new();
    for (rel, _) in sources() {
        let text = std::fs::read_to_string(root.join(&rel)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let indent = &line[..line.len() - trimmed.len()];
            let Some(at) = trimmed.find("fn ") else {
                continue;
            };
            let head = &trimmed[..at];
            let is_fn = head.is_empty()
                || head.split_whitespace().all(|w| {
                    [
                        "pub",
                        "pub(crate)",
                        "pub(super)",
                        "async",
                        "const",
                        "unsafe",
                    ]
                    .contains(&w)
                });
            if !is_fn || trimmed.starts_with("//") {
                continue;
            }
            let name: String = trimmed[at + 3..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            // A declaration without a body (a trait's) ends with `;` before any `{`.
            let mut end = None;
            for (j, l) in lines.iter().enumerate().skip(i) {
                if l.trim_end().ends_with(';') && !lines[i..=j].iter().any(|x| x.contains('{')) {
                    break;
                }
                if j > i && *l == format!("{indent}}}") {
                    end = Some(j);
                    break;
                }
            }
            if let Some(j) = end {
                out.push((format!("{rel}::{name}"), j - i + 1));
            }
        }
    }
    out
}

#[test]
fn functions_stay_under_100_lines_unless_one_table_or_match() {
    let long: Vec<(String, usize)> = function_lengths()
        .into_iter()
        .filter(|(f, n)| *n > MAX_FN_LINES && !ONE_TABLE_OR_MATCH.contains(&f.as_str()))
        .collect();
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines; split them along their steps: {long:?}"
    );
}
