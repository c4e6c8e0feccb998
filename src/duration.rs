//! Durations as specs and config write them: `90s`, `15m`, `6h`, `2d`.

/// A duration written `90s`, `15m`, `6h` or `2d` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{t}` is not a duration; write e.g. `90s`, `15m`, `6h` or `2d`"))?;
    let scale = match unit.trim() {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{t}`; use s, m, h or d (e.g. `6h`)"
            ));
        }
    };
    let secs = n * scale;
    if !secs.is_finite() || !(0.0..=366.0 * 86400.0).contains(&secs) {
        return Err(format!("`{t}` is out of range (0 to 366d)"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}
