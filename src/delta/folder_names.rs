//! The names a local folder holds, kept in memory and current by the kernel's notices of
//! what changes in it (inotify), so that listing a table's `_delta_log` after an offset does
//! not read the whole folder every time.
//!
//! Delta lists its log after a version on every commit and every open. Reading the folder
//! costs time in proportion to what it holds: 4.3 ms for the 12,800 entries a backfill of
//! 300,000 hourly partitions leaves, about two listings a commit, which was most of why a
//! partition's cost grew with the table (measured with perf and strace). Here a folder is
//! read once, when it is first listed, after the kernel has been asked to report every
//! name created, removed or moved in it; each later listing applies the reports queued
//! since and answers from memory.
//!
//! The answer is what reading the folder would give. The kernel queues a report before the
//! call that made the change returns, so every change that finished before a listing is in
//! the queue when the listing drains it. Whatever the reports cannot vouch for falls back
//! to reading the folder: a queue that overflowed (every folder is read again), a folder
//! removed or moved, a folder that cannot be watched (the kernel's limit of watches, a
//! file system whose changes on other hosts it does not see: only local file systems
//! known to report every change are watched).

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::ops::ControlFlow;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What a watched folder holds after a name.
pub(super) enum Names {
    /// The files after the name, sorted.
    After(Vec<String>),
    /// The folder holds something a name alone does not place (a sub-folder, a link, a
    /// name that needs escaping).
    NotFlat,
}

/// The process's one watcher: `None` once it could not be made (then every folder is read).
static WATCHER: Mutex<Option<Option<Watcher>>> = Mutex::new(None);

/// The names in `dir` after `after`, from memory; `None` when the folder cannot be
/// watched (the caller reads it).
pub(super) fn after(dir: &Path, after: &str) -> Option<std::io::Result<Names>> {
    let mut held = WATCHER.lock().unwrap_or_else(|e| e.into_inner());
    let watcher = held.get_or_insert_with(Watcher::new).as_mut()?;
    if watcher.drain().is_err() {
        // Nothing vouches for any folder now (every one is forgotten): read this one.
        return None;
    }
    match watcher.watch(dir) {
        Watched::Yes => {}
        Watched::Missing => return Some(Ok(Names::After(Vec::new()))),
        Watched::No => return None,
        Watched::Failed(e) => return Some(Err(e)),
    }
    let folder = watcher.folders.get(dir)?;
    if !folder.odd.is_empty() {
        return Some(Ok(Names::NotFlat));
    }
    let after: String = after.to_string();
    let names = folder
        .names
        .range::<String, _>((
            std::ops::Bound::Excluded(&after),
            std::ops::Bound::Unbounded,
        ))
        .cloned()
        .collect();
    Some(Ok(Names::After(names)))
}

/// Forgets every folder, as a queue overflow does: the next listing of each reads it.
#[cfg(test)]
pub(super) fn forget_all() {
    let mut held = WATCHER.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(Some(w)) = held.as_mut() {
        w.forget();
    }
}

struct Watcher {
    fd: OwnedFd,
    /// Where reports are read into, kept between listings.
    buf: Vec<u8>,
    /// The folder each watch reports on.
    paths: HashMap<i32, PathBuf>,
    folders: HashMap<PathBuf, Folder>,
}

struct Folder {
    wd: i32,
    /// Its files, as a listing shows them.
    names: BTreeSet<String>,
    /// Entries that make it not flat.
    odd: BTreeSet<Vec<u8>>,
}

enum Watched {
    /// Watched: `folders` holds it.
    Yes,
    /// No such folder: it lists nothing.
    Missing,
    /// Not watched: read it.
    No,
    Failed(std::io::Error),
}

/// What a watch reports: names created, removed or moved in and out, and the folder itself
/// going (`IN_ONLYDIR`: a path that is no folder is not watched).
const MASK: u32 = libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR;

/// At most this many folders are watched by a process; more are read. Watches are the
/// user's, shared with every other program of theirs (8,192 on older kernels). A folder
/// keeps its watch until it goes: a daemon over more tables reads the later ones' logs,
/// as every folder was read before.
const MAX_FOLDERS: usize = 1024;

/// File systems whose every change, by whichever process on this host, the kernel reports
/// (a network file system's changes made on other hosts are not).
const REPORTED: [i64; 6] = [
    0xEF53,      // ext2/3/4
    0x5846_5342, // xfs
    0x9123_683E, // btrfs
    0x0102_1994, // tmpfs
    0x794C_7630, // overlayfs
    0x2FC1_2FC1, // zfs
];

impl Watcher {
    fn new() -> Option<Watcher> {
        // SAFETY: inotify_init1 takes flags only; a non-negative result is a new descriptor
        // this process owns.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return None;
        }
        Some(Watcher {
            // SAFETY: `fd` was just opened and nothing else owns it.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            buf: vec![0u8; 64 * 1024],
            paths: HashMap::new(),
            folders: HashMap::new(),
        })
    }

    fn forget(&mut self) {
        self.folders.clear();
        self.paths.clear();
    }

    /// Applies every report queued so far.
    fn drain(&mut self) -> std::io::Result<()> {
        // Taken out while reports are applied (they change the rest of `self`).
        let mut buf = std::mem::take(&mut self.buf);
        let drained = self.drain_into(&mut buf);
        self.buf = buf;
        drained
    }

    fn drain_into(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        loop {
            // SAFETY: the buffer is valid for `buf.len()` bytes and the descriptor is ours.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast::<libc::c_void>(),
                    buf.len(),
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                return match e.kind() {
                    std::io::ErrorKind::WouldBlock => Ok(()),
                    std::io::ErrorKind::Interrupted => continue,
                    _ => {
                        self.forget();
                        Err(e)
                    }
                };
            }
            let n = n as usize;
            let mut at = 0;
            // Each report: wd (i32), mask, cookie, len (u32s), then `len` bytes of name,
            // padded with NULs.
            while at + 16 <= n {
                let word = |i: usize| {
                    let b = &buf[at + 4 * i..at + 4 * i + 4];
                    u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
                };
                let (wd, mask, len) = (word(0) as i32, word(1), word(3) as usize);
                let end = (at + 16 + len).min(n);
                let raw = &buf[at + 16..end];
                let name = &raw[..raw.iter().position(|b| *b == 0).unwrap_or(raw.len())];
                self.apply(wd, mask, OsStr::from_bytes(name));
                at = end;
            }
        }
    }

    fn apply(&mut self, wd: i32, mask: u32, name: &OsStr) {
        if mask & libc::IN_Q_OVERFLOW != 0 {
            self.forget();
            return;
        }
        let Some(path) = self.paths.get(&wd).cloned() else {
            return;
        };
        if mask & (libc::IN_IGNORED | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0 {
            // The folder went, or moved: its path says nothing any more.
            if mask & libc::IN_IGNORED == 0 {
                // SAFETY: removing a watch of ours; an already removed one is an error only.
                unsafe { libc::inotify_rm_watch(self.fd.as_raw_fd(), wd) };
            }
            self.paths.remove(&wd);
            self.folders.remove(&path);
            return;
        }
        let Some(folder) = self.folders.get_mut(&path) else {
            return;
        };
        let bytes = name.as_bytes().to_vec();
        folder.odd.remove(&bytes);
        if let Some(s) = name.to_str() {
            folder.names.remove(s);
        }
        if mask & (libc::IN_CREATE | libc::IN_MOVED_TO) == 0 {
            return;
        }
        // What came in, looked at as the folder's listing would show it; gone again
        // already, it is not there (its removal is queued).
        let Ok(meta) = std::fs::symlink_metadata(path.join(name)) else {
            return;
        };
        match entry_kind(name, meta.file_type()) {
            Entry::File(n) => {
                folder.names.insert(n);
            }
            Entry::Skipped => {}
            Entry::Odd => {
                folder.odd.insert(bytes);
            }
        }
    }

    /// Watches and reads `dir` the first time it is asked for; after that, what it holds
    /// is in `folders`.
    fn watch(&mut self, dir: &Path) -> Watched {
        if self.folders.contains_key(dir) {
            return Watched::Yes;
        }
        if self.folders.len() >= MAX_FOLDERS {
            return Watched::No;
        }
        let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
            return Watched::No;
        };
        // SAFETY: `c` is a NUL-terminated path; `st` is written by statfs on success.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
            return match std::io::Error::last_os_error().kind() {
                std::io::ErrorKind::NotFound => Watched::Missing,
                _ => Watched::No,
            };
        }
        if !REPORTED.contains(&(st.f_type as i64)) {
            return Watched::No;
        }
        // The watch first, then the reading: a change made meanwhile is both seen and
        // reported, and applying a report twice changes nothing.
        // SAFETY: the descriptor is ours and `c` a NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), MASK) };
        if wd < 0 {
            return match std::io::Error::last_os_error().kind() {
                std::io::ErrorKind::NotFound => Watched::Missing,
                // No folder, no permission, the kernel's limit of watches: read it.
                _ => Watched::No,
            };
        }
        if self.paths.get(&wd).is_some_and(|p| p != dir) {
            // The folder is watched under another path (a link): its reports name that one.
            return Watched::No;
        }
        let mut folder = Folder {
            wd,
            names: BTreeSet::new(),
            odd: BTreeSet::new(),
        };
        let read = read_entries(dir, |entry, kind| {
            match kind {
                Entry::File(n) => {
                    folder.names.insert(n);
                }
                Entry::Skipped => {}
                Entry::Odd => {
                    folder.odd.insert(entry.file_name().as_bytes().to_vec());
                }
            }
            Ok(ControlFlow::Continue(()))
        });
        match read {
            Ok(true) => {}
            Ok(false) => return Watched::Missing,
            Err(e) => return Watched::Failed(e),
        }
        self.paths.insert(folder.wd, dir.to_path_buf());
        self.folders.insert(dir.to_path_buf(), folder);
        Watched::Yes
    }
}

/// Reads `dir`, handing each entry and what it is to `each` until it breaks; `Ok(false)`
/// when there is no such folder. The entry's type comes with the folder's listing: no
/// stat per entry.
pub(super) fn read_entries(
    dir: &Path,
    mut each: impl FnMut(&std::fs::DirEntry, Entry) -> std::io::Result<ControlFlow<()>>,
) -> std::io::Result<bool> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let kind = entry_kind(&entry.file_name(), entry.file_type()?);
        if each(&entry, kind)?.is_break() {
            break;
        }
    }
    Ok(true)
}

/// Whether a name is one `Path` holds as it is (no escaping), so that comparing names is
/// comparing paths.
pub(super) fn plain(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && name != "."
        && name != ".."
}

/// `LocalFileSystem` leaves out its own unfinished uploads, named `<name>#<digits>`.
fn upload_in_progress(name: &str) -> bool {
    matches!(name.split_once('#'), Some((_, suffix)) if !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()))
}

/// What a folder's entry is to a flat listing.
pub(super) enum Entry {
    /// A file listed by its name.
    File(String),
    /// `LocalFileSystem`'s own unfinished upload, which it leaves out.
    Skipped,
    /// Something a name alone does not place: a sub-folder (its objects sort among the
    /// names in ways a name does not tell), a link (followed by `LocalFileSystem`), a name
    /// that needs escaping.
    Odd,
}

/// The one rule for what an entry of a folder is, for every way of listing it.
fn entry_kind(name: &std::ffi::OsStr, kind: std::fs::FileType) -> Entry {
    if !kind.is_file() {
        return Entry::Odd;
    }
    let Some(name) = name.to_str() else {
        return Entry::Odd;
    };
    if upload_in_progress(name) {
        return Entry::Skipped;
    }
    match plain(name) {
        true => Entry::File(name.to_string()),
        false => Entry::Odd,
    }
}
