//! The JUnit XML report CI systems read: one `<testsuite>` per test file, one
//! `<testcase>` per test, a `<failure>` holding the diff, an `<error>` for a test that
//! could not run.

use std::fmt::Write as _;

/// How one test ended.
#[derive(Debug, Clone)]
pub enum Verdict {
    Passed,
    /// Ran, and something differed: the diff, a line each.
    Failed(Vec<String>),
    /// Could not run (its rows could not be typed, say).
    Broken(String),
}

#[derive(Debug, Clone)]
pub struct CaseReport {
    pub job: String,
    pub name: String,
    pub file: String,
    pub seconds: f64,
    pub verdict: Verdict,
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 cannot hold other control characters at all.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// The report of `cases`, grouped by file in the order they ran.
pub fn render(cases: &[CaseReport]) -> String {
    let count = |f: &dyn Fn(&Verdict) -> bool, cs: &[&CaseReport]| {
        cs.iter().filter(|c| f(&c.verdict)).count()
    };
    let failed = |v: &Verdict| matches!(v, Verdict::Failed(_));
    let broken = |v: &Verdict| matches!(v, Verdict::Broken(_));
    let all: Vec<&CaseReport> = cases.iter().collect();
    let mut files: Vec<&str> = Vec::new();
    for c in cases {
        if !files.contains(&c.file.as_str()) {
            files.push(&c.file);
        }
    }
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"sluice test\" tests=\"{}\" failures=\"{}\" errors=\"{}\" time=\"{:.3}\">",
        all.len(),
        count(&failed, &all),
        count(&broken, &all),
        cases.iter().map(|c| c.seconds).sum::<f64>()
    );
    for file in files {
        let mine: Vec<&CaseReport> = cases.iter().filter(|c| c.file == file).collect();
        let _ = writeln!(
            x,
            "  <testsuite name=\"{}\" file=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" time=\"{:.3}\">",
            escape(&mine[0].job),
            escape(file),
            mine.len(),
            count(&failed, &mine),
            count(&broken, &mine),
            mine.iter().map(|c| c.seconds).sum::<f64>()
        );
        for c in mine {
            let _ = write!(
                x,
                "    <testcase classname=\"{}\" name=\"{}\" file=\"{}\" time=\"{:.3}\"",
                escape(&c.job),
                escape(&c.name),
                escape(&c.file),
                c.seconds
            );
            match &c.verdict {
                Verdict::Passed => x.push_str("/>\n"),
                Verdict::Failed(lines) => {
                    let _ = writeln!(
                        x,
                        ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                        escape(lines.first().map(String::as_str).unwrap_or("failed")),
                        escape(&lines.join("\n"))
                    );
                }
                Verdict::Broken(why) => {
                    let _ = writeln!(
                        x,
                        ">\n      <error message=\"{}\">{}</error>\n    </testcase>",
                        escape(why),
                        escape(why)
                    );
                }
            }
        }
        x.push_str("  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

/// Writes the report of `cases` to `path`.
pub fn write(path: &std::path::Path, cases: &[CaseReport]) -> std::io::Result<()> {
    std::fs::write(path, render(cases))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_names_and_diffs_is_escaped() {
        let x = render(&[CaseReport {
            job: "j".into(),
            name: "a <b> & \"c\"".into(),
            file: "jobs/tests/j.toml".into(),
            seconds: 0.5,
            verdict: Verdict::Failed(vec!["x < y".into(), "\u{1}".into()]),
        }]);
        assert!(
            x.contains("name=\"a &lt;b&gt; &amp; &quot;c&quot;\""),
            "{x}"
        );
        assert!(x.contains("x &lt; y\n\\x01</failure>"), "{x}");
        assert!(x.contains("tests=\"1\" failures=\"1\" errors=\"0\""), "{x}");
    }
}
