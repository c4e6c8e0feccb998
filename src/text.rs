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

#[cfg(test)]
mod tests {
    #[test]
    fn long_lists_say_how_many_were_left_out() {
        assert_eq!(super::shorten(&["a", "b"], 3), "a, b");
        assert_eq!(super::shorten(&[1, 2, 3, 4, 5], 3), "1, 2, 3 ... (2 more)");
    }
}
