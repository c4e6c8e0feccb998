//! Small text rules for what sluice shows people.

/// `a, b, c ... (n more)`: the first `keep` items of a long list, and how many were left
/// out.
pub fn shorten<T: std::fmt::Display>(items: &[T], keep: usize) -> String {
    let mut s = items
        .iter()
        .take(keep)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > keep {
        s.push_str(&format!(" ... ({} more)", items.len() - keep));
    }
    s
}

/// `s` on one line (newlines as spaces), cut after `max` characters with `...`: a long
/// message in a table's cell or a row's summary, whose whole text is shown elsewhere.
pub fn one_line(s: &str, max: usize) -> String {
    let s = s.replace('\n', " ");
    if s.chars().count() > max {
        format!("{}...", s.chars().take(max).collect::<String>())
    } else {
        s
    }
}

/// A metric for people: a whole number without decimals, else four; `-` when unknown.
pub fn metric(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{x:.0}"),
        Some(x) => format!("{x:.4}"),
    }
}

/// A byte count for a person: `512 B`, `12.3 KiB`, `4.0 MiB`, `1.2 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// What a run used, on one line: `CPU 0.012 s, read 12.1 KiB, wrote 9.1 KiB, 3 requests,
/// peak 370.0 KiB`.
pub fn cost(c: &crate::cost::RunCost) -> String {
    format!(
        "CPU {:.3} s, read {}, wrote {}, {} request(s), peak {}",
        c.cpu_seconds(),
        bytes(c.bytes_read),
        bytes(c.bytes_written),
        c.requests,
        bytes(c.peak_memory_bytes)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_lists_say_how_many_were_left_out() {
        assert_eq!(super::shorten(&["a", "b"], 3), "a, b");
        assert_eq!(super::shorten(&[1, 2, 3, 4, 5], 3), "1, 2, 3 ... (2 more)");
    }

    #[test]
    fn a_long_message_is_one_cut_line_and_a_metric_has_no_needless_decimals() {
        assert_eq!(super::one_line("a\nb", 10), "a b");
        assert_eq!(super::one_line("abcdef", 3), "abc...");
        assert_eq!(super::metric(Some(3.0)), "3");
        assert_eq!(super::metric(Some(0.25)), "0.2500");
        assert_eq!(super::metric(None), "-");
        assert_eq!(super::bytes(512), "512 B");
        assert_eq!(super::bytes(1536), "1.5 KiB");
        assert_eq!(super::bytes(5 << 30), "5.0 GiB");
    }
}
