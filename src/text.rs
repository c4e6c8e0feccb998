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
    }
}
