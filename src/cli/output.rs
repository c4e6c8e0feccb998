//! Printing results: aligned text tables for people, JSON for CI (`--output json`).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// Prints `rows` under `headers`, each column as wide as its widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::with_capacity((rows.len() + 1) * (widths.iter().sum::<usize>() + 16));
    push_line(&mut out, headers.iter().copied(), &widths);
    for r in rows {
        push_line(&mut out, r.iter().map(String::as_str), &widths);
    }
    out
}

/// One line of [`table`]: each cell but the last padded to its column's width, two spaces
/// between, no space at the end. Written into `out` in place: a table of a job's ten
/// thousand partitions is one string, not one per cell.
fn push_line<'a>(
    out: &mut String,
    cells: impl ExactSizeIterator<Item = &'a str>,
    widths: &[usize],
) {
    let start = out.len();
    let n = cells.len();
    for (i, c) in cells.enumerate() {
        if i > 0 {
            out.push_str("  ");
        }
        out.push_str(c);
        if i + 1 < n {
            let width = widths.get(i).copied().unwrap_or(0);
            out.extend(std::iter::repeat_n(
                ' ',
                width.saturating_sub(c.chars().count()),
            ));
        }
    }
    let kept = out[start..].trim_end().len();
    out.truncate(start + kept);
    out.push('\n');
}

/// Prints `value` as [`json`] does, written to stdout as it is serialized: a plan of a
/// million partitions is never a string in memory first.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, value)
        .map_err(std::io::Error::from)
        .and_then(|()| writeln!(out))
        .and_then(|()| out.flush())
        .map_err(|e| anyhow::anyhow!("could not write the output: {e}"))
}

pub fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

pub use crate::clock::{shown_duration as duration, shown_time as time};

pub fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref()
        .map(|x| x.to_string())
        .unwrap_or_else(|| "-".into())
}

/// serde_json's pretty layout one level in: each element of an array written on its own
/// as it comes (`status --output json` prints a job's partitions as they are judged),
/// straight to the output, with no copy of it to indent.
pub struct ElementFormatter {
    indent: usize,
    has_value: bool,
}

impl ElementFormatter {
    pub fn one_level_in() -> ElementFormatter {
        ElementFormatter::at_level(1)
    }

    /// A value whose lines after the first are `indent` levels in.
    pub fn at_level(indent: usize) -> ElementFormatter {
        ElementFormatter {
            indent,
            has_value: false,
        }
    }

    /// An array or object begins: what it holds goes one level further in.
    fn open<W: ?Sized + std::io::Write>(&mut self, w: &mut W, b: &[u8]) -> std::io::Result<()> {
        self.indent += 1;
        self.has_value = false;
        w.write_all(b)
    }

    /// It ends: on a line of its own at its level, unless it held nothing.
    fn close<W: ?Sized + std::io::Write>(&mut self, w: &mut W, b: &[u8]) -> std::io::Result<()> {
        self.indent -= 1;
        if self.has_value {
            new_line(w, self.indent)?;
        }
        w.write_all(b)
    }
}

fn new_line<W: ?Sized + std::io::Write>(w: &mut W, indent: usize) -> std::io::Result<()> {
    // One write for the usual depths: `status` writes some thirty lines per partition.
    const SPACES: &[u8] = b"\n                ";
    match SPACES.get(..1 + 2 * indent) {
        Some(line) => w.write_all(line),
        None => {
            w.write_all(b"\n")?;
            (0..indent).try_for_each(|_| w.write_all(b"  "))
        }
    }
}

impl serde_json::ser::Formatter for ElementFormatter {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open(w, b"[")
    }

    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"]")
    }

    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if !first {
            w.write_all(b",")?;
        }
        new_line(w, self.indent)
    }

    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open(w, b"{")
    }

    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"}")
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.begin_array_value(w, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }

    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, _: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    /// An element written one level in is serde_json's pretty text with every line after
    /// the first indented by two spaces, empty arrays and objects included.
    #[test]
    fn an_element_is_the_pretty_text_one_level_in() {
        use serde::Serialize as _;
        let value = serde_json::json!({
            "a": 1,
            "cost": {"cpu_us": 3, "nested": [1, [], {}, {"x": null}]},
            "empty": {},
            "list": [],
            "text": "two\nlines",
        });
        let mut written = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(
            &mut written,
            super::ElementFormatter::one_level_in(),
        );
        value.serialize(&mut ser).expect("serialize");
        let pretty = serde_json::to_string_pretty(&value).expect("pretty");
        assert_eq!(
            String::from_utf8(written).expect("utf-8"),
            pretty.replace('\n', "\n  ")
        );
    }
}
