//! One message to one target. A webhook gets the payload as JSON, signed with HMAC-SHA256
//! over the body when it has a secret (`X-Sluice-Signature: sha256=<hex>`); Slack gets a
//! readable line; a command gets the JSON on its stdin. Whether a failure is worth a retry
//! is part of the answer: a network error, a 429 or a 5xx is; a 4xx is not.

use super::{Channel, NotifyTarget, Payload};
use hmac::{KeyInit, Mac};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// How long one delivery may take.
pub const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, thiserror::Error)]
#[error("{target}: {message}")]
pub struct SendError {
    pub target: String,
    /// Said without the URL (a Slack webhook's URL is its secret) or any secret.
    pub message: String,
    /// Worth a retry: the receiver was away or busy.
    pub transient: bool,
}

/// The header value that signs `body` with `key`: `sha256=<hex>`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Sends `payload` to `target` once.
pub async fn send(
    client: &reqwest::Client,
    target: &NotifyTarget,
    payload: &Payload,
) -> Result<(), SendError> {
    let fail = |message: String, transient: bool| SendError {
        target: target.name.clone(),
        message: crate::redact::redact_text(&message),
        transient,
    };
    let body = serde_json::to_vec(payload).map_err(|e| fail(e.to_string(), false))?;
    match &target.channel {
        Channel::Webhook { url, secret } => {
            let url = url.read().map_err(|m| fail(m, false))?;
            let mut req = client
                .post(&url)
                .header("content-type", "application/json")
                .header("x-sluice-event", &payload.event)
                .header("x-sluice-delivery", &payload.id);
            if let Some(s) = secret {
                let key = s.read().map_err(|m| fail(m, false))?;
                req = req.header("x-sluice-signature", signature(key.as_bytes(), &body));
            }
            post(req.body(body)).await.map_err(|(m, t)| fail(m, t))
        }
        Channel::Slack { url } => {
            let url = url.read().map_err(|m| fail(m, false))?;
            let text = serde_json::json!({ "text": payload.text() }).to_string();
            let req = client
                .post(&url)
                .header("content-type", "application/json")
                .body(text);
            post(req).await.map_err(|(m, t)| fail(m, t))
        }
        Channel::Command { argv } => run(argv, &body).await.map_err(|(m, t)| fail(m, t)),
    }
}

/// Sends a request; a failure as (what, worth a retry).
async fn post(req: reqwest::RequestBuilder) -> Result<(), (String, bool)> {
    let resp = req
        .timeout(TIMEOUT)
        .send()
        .await
        .map_err(|e| (e.without_url().to_string(), true))?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let transient = status.is_server_error() || status.as_u16() == 429;
    Err((format!("the receiver answered {status}"), transient))
}

/// Runs `argv` with `body` on its stdin; exit 0 is delivered, 75 (EX_TEMPFAIL) and a
/// signal are worth a retry.
async fn run(argv: &[String], body: &[u8]) -> Result<(), (String, bool)> {
    let mut child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| (format!("cannot start `{}`: {e}", argv[0]), false))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its stdin may close it: that is its business.
        let _ = stdin.write_all(body).await;
    }
    let out = tokio::time::timeout(TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| (format!("`{}` took longer than {TIMEOUT:?}", argv[0]), true))?
        .map_err(|e| (format!("`{}`: {e}", argv[0]), true))?;
    match out.status.code() {
        Some(0) => Ok(()),
        code => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let why = crate::text::one_line(stderr.trim(), 200);
            let transient = matches!(code, Some(75) | None);
            Err((
                format!("`{}` exited with {}: {why}", argv[0], out.status),
                transient,
            ))
        }
    }
}
