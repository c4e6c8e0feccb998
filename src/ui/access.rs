//! Who may see the pages: anyone on a loopback address when no token is configured; with
//! a token (`SLUICE_UI_TOKEN` or `[ui] token_file`), only a request that carries it, as a
//! bearer header or as the session cookie a sign-in sets. There is no default secret: a
//! non-loopback address without a token is refused before anything listens.

use super::UiError;
use crate::config::UiSettings;
use std::net::SocketAddr;

/// The session cookie's name.
pub const COOKIE: &str = "sluice_session";

#[derive(Clone)]
pub struct Access {
    token: Option<String>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.debug_struct("Access")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl Access {
    /// The token the settings name: the environment's, else the token file's first line.
    pub fn from_settings(ui: &UiSettings) -> Result<Access, UiError> {
        if let Some(t) = &ui.token {
            return Access::with_token(t.clone(), "SLUICE_UI_TOKEN");
        }
        let Some(path) = &ui.token_file else {
            return Ok(Access { token: None });
        };
        let text = std::fs::read_to_string(path).map_err(|e| UiError::Token {
            source_name: path.display().to_string(),
            message: format!("cannot read it: {e}"),
        })?;
        let token = text.lines().next().unwrap_or_default().trim().to_string();
        Access::with_token(token, &path.display().to_string())
    }

    fn with_token(token: String, source_name: &str) -> Result<Access, UiError> {
        // A guessable token is no better than none.
        if token.chars().count() < 16 {
            return Err(UiError::Token {
                source_name: source_name.to_string(),
                message: "a token needs at least 16 characters (e.g. `openssl rand -hex 24`)"
                    .into(),
            });
        }
        Ok(Access { token: Some(token) })
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// Refuses to serve on a non-loopback address without a token.
    pub fn check_address(&self, addr: SocketAddr) -> Result<(), UiError> {
        if addr.ip().is_loopback() || self.token.is_some() {
            return Ok(());
        }
        Err(UiError::Exposed { addr })
    }

    /// Whether a request with these headers may see the pages.
    pub fn allows(&self, headers: &axum::http::HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let bearer = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer.is_some_and(|b| same(b.as_bytes(), token.as_bytes())) {
            return true;
        }
        cookie(headers, COOKIE).is_some_and(|c| same(c.as_bytes(), self.session_proof().as_bytes()))
    }

    /// Whether `offered` is the token (a sign-in).
    pub fn is_token(&self, offered: &str) -> bool {
        self.token
            .as_ref()
            .is_some_and(|t| same(offered.as_bytes(), t.as_bytes()))
    }

    /// What the session cookie holds: derived from the token, so a stolen cookie is not the
    /// token, and a new token ends every session.
    pub fn session_proof(&self) -> String {
        self.derived("sluice ui session")
    }

    /// The CSRF token a signed-in page puts in its forms.
    pub fn csrf_token(&self) -> String {
        self.derived("sluice ui csrf")
    }

    /// Whether a form's CSRF token is this server's (and a token is set at all).
    pub fn is_csrf(&self, offered: &str) -> bool {
        self.token.is_some() && same(offered.as_bytes(), self.csrf_token().as_bytes())
    }

    fn derived(&self, context: &str) -> String {
        let token = self.token.as_deref().unwrap_or_default();
        blake3::derive_key(context, token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Equality in time that does not depend on where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(token: &str) -> Access {
        Access::with_token(token.into(), "test").expect("token")
    }

    #[test]
    fn a_non_loopback_address_needs_a_token() {
        let outside: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert!(Access { token: None }.check_address(outside).is_err());
        assert!(Access { token: None }.check_address(local).is_ok());
        assert!(with("0123456789abcdef-long").check_address(outside).is_ok());
    }

    #[test]
    fn a_short_token_is_refused() {
        assert!(Access::with_token("short".into(), "test").is_err());
    }

    #[test]
    fn the_bearer_or_the_session_cookie_lets_a_request_in() {
        let a = with("0123456789abcdef-long");
        let mut h = axum::http::HeaderMap::new();
        assert!(!a.allows(&h));
        h.insert(
            "authorization",
            "Bearer 0123456789abcdef-long".parse().unwrap(),
        );
        assert!(a.allows(&h));
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            "cookie",
            format!("x=1; {COOKIE}={}", a.session_proof())
                .parse()
                .unwrap(),
        );
        assert!(a.allows(&h));
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            "cookie",
            format!("{COOKIE}=0123456789abcdef-long").parse().unwrap(),
        );
        assert!(!a.allows(&h), "the token itself is not a session");
    }
}
