//! The temporary copies of inputs without their bad rows (`bad_rows::copy_without_bad_rows`)
//! that killed processes left behind. A copy is deleted when the query that reads it ends,
//! but a process killed with SIGKILL deletes nothing; so a copy's name carries the id of
//! its process, and making a copy first removes those whose process is gone.
//!
//! The one module outside `delta/` that removes files (the architecture test names it): only
//! these copies, only in the local temporary folder, never the warehouse's objects.

use std::path::Path;

/// What every copy's name starts with; then the id of the process that made it, and `-`.
const COPY_PREFIX: &str = "sluice-without-bad-rows-";

/// What a copy's name starts with, for this process.
pub(super) fn prefix() -> String {
    format!("{COPY_PREFIX}{}-", std::process::id())
}

/// Removes the copies in `dir` whose process is no longer running: one killed with SIGKILL
/// could not remove its own. Best effort: whatever cannot be removed stays.
pub(super) fn sweep(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(COPY_PREFIX))
            // Names made before the id was in them have no `-` after the prefix.
            .and_then(|rest| rest.split_once('-'))
            .map(|(pid, _)| pid)
            .and_then(|p| p.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        if !process_running(pid) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether process `pid` exists (of any user). A pid reused since leaves a copy behind,
/// never removes a live one.
fn process_running(pid: libc::pid_t) -> bool {
    // 0 and negative ids name process groups to kill(2), not a process.
    if pid <= 0 {
        return true;
    }
    // SAFETY: signal 0 sends nothing; kill only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_copies_of_processes_gone_are_swept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gone = {
            let mut c = std::process::Command::new("true").spawn().expect("spawn");
            let id = c.id();
            c.wait().expect("wait");
            id
        };
        let names = [
            format!("{COPY_PREFIX}{gone}-a.csv"),
            format!("{COPY_PREFIX}{}-b.csv", std::process::id()),
            format!("{COPY_PREFIX}0-c.csv"),
            format!("{COPY_PREFIX}x-d.csv"),
            format!("{COPY_PREFIX}{gone}.csv"),
            "other.csv".to_string(),
        ];
        for n in &names {
            std::fs::write(dir.path().join(n), "x").expect("write");
        }
        sweep(dir.path());
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want: Vec<String> = names[1..].to_vec();
        want.sort();
        assert_eq!(left, want);
    }
}
