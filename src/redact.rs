//! Keeping secrets out of logs, errors and status output (promise 8).

/// Replaces the password of a URL (and any `password=` / `secret` query parameter) with `***`.
pub fn redact_url(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        return redact_text(url);
    };
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            let secret = is_secret_key(&k);
            (
                k.into_owned(),
                if secret { "***".into() } else { v.into_owned() },
            )
        })
        .collect();
    if !pairs.is_empty() {
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

fn is_secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    ["password", "secret", "token", "key"]
        .iter()
        .any(|s| k.contains(s))
}

/// Best effort for text that is not a URL: hides `user:password@` forms.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_inclusive(char::is_whitespace) {
        if let Some(at) = word.find('@')
            && let Some(scheme_end) = word.find("://")
        {
            let cred = &word[scheme_end + 3..at];
            if let Some(colon) = cred.find(':') {
                out.push_str(&word[..scheme_end + 3 + colon + 1]);
                out.push_str("***");
                out.push_str(&word[at..]);
                continue;
            }
        }
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_passwords_and_secret_parameters() {
        let r = redact_url("postgres://sluice:hunter2@db:5432/cat?sslmode=require&password=x");
        assert!(!r.contains("hunter2") && !r.contains("password=x"), "{r}");
        assert!(r.contains("sluice:***@db"), "{r}");
        let t = redact_text("cannot connect to postgres://u:s3cr3t@h/db: refused");
        assert!(!t.contains("s3cr3t"), "{t}");
    }
}
