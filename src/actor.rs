//! Who changed something, as the catalog records it (a table's history, applied
//! migrations): one form everywhere, `USER@HOST` — the user from `USER` or `LOGNAME`
//! (`unknown` when neither is set, as under some service managers) and the machine's host
//! name. A run's worker id (`HOST:PID:ID`, see `run::holder_id`) names a process holding a
//! lease, which is another thing: it is shown as "held by", never as an actor.

/// The actor of this process: `USER@HOST`.
pub fn who() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "unknown".into());
    format!("{user}@{}", host())
}

/// This machine's host name (`localhost` when it cannot be read).
pub fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
