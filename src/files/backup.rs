//! What backups need from the local file storage (and nothing of the
//! store: `core::backups` composes the two).
//!
//! **Removed files are retained while a backup runs.** A backup snapshots
//! the store first and copies the files after, so a file that a record in
//! the snapshot names could be removed in between (the record was updated
//! or deleted after the snapshot). While a [`Retention`] lives, every
//! removal first hard-links the file into `<dir>/.retained/<key>` and only
//! then unlinks it: removals never wait for a backup, and the backup still
//! finds every file that was stored when it began. [`Retention::files`]
//! walks the live tree, then the retained one, so it yields each such file
//! at least once (a file removed mid-walk may come twice: same key, same
//! bytes, since stored files are immutable; the restore keeps the first).
//!
//! Why this is enough: a removal that saw no retention started before the
//! backup did, so the record change that let go of the file committed
//! before the snapshot, which therefore does not name the file.
//!
//! **Restoring** writes into a new directory only ([`Unpack`]), refusing
//! any key that is not a plain relative path.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Where retained files go while a backup runs, under the data dir.
pub(super) const RETAINED_DIR: &str = ".retained";
/// The longest key a restore accepts (Basalt's keys are ids and stored
/// names: about 150 bytes with a thumbnail's size in them).
const MAX_KEY: usize = 1024;
/// The deepest key a restore accepts (`<collection>/<record>/thumbs_<name>/<size>_<name>` is 4).
const MAX_DEPTH: usize = 8;

/// How many backups hold removals now, and where removed files go meanwhile.
/// One per [`super::Storage`] (shared by its clones).
pub(super) struct Holds {
    count: Mutex<usize>,
    dir: PathBuf,
}

impl Holds {
    /// Clears what a previous run left (a crash during a backup).
    pub(super) fn new(dir: PathBuf) -> Holds {
        let _ = fs::remove_dir_all(&dir);
        Holds {
            count: Mutex::new(0),
            dir,
        }
    }

    /// The directory to keep a removed file in, if a backup runs now.
    pub(super) fn retaining(&self) -> Option<PathBuf> {
        let count = self.count.lock().unwrap_or_else(|e| e.into_inner());
        (*count > 0).then(|| self.dir.clone())
    }
}

/// A backup's hold on removals (see the module doc). Made by
/// [`super::Storage::retain`] before the store snapshot is taken, dropped
/// after the files are copied; the retained copies go then.
pub struct Retention {
    holds: Arc<Holds>,
    live: PathBuf,
}

impl Retention {
    pub(super) fn start(holds: Arc<Holds>, live: PathBuf) -> Retention {
        let mut count = holds.count.lock().unwrap_or_else(|e| e.into_inner());
        if *count == 0 {
            // Leftovers of an earlier backup are not needed by this one: a
            // file removed before this point is named by no later snapshot.
            let _ = fs::remove_dir_all(&holds.dir);
        }
        *count += 1;
        drop(count);
        Retention { holds, live }
    }

    /// Every stored file, live or retained since this retention began, as
    /// an iterator that holds one open directory per level, never the list.
    /// Call it off the async workers (it reads the disk).
    pub fn files(&self) -> Files<'_> {
        Files {
            retention: self,
            retained_pass: false,
            stack: Vec::new(),
            started: false,
        }
    }
}

impl Drop for Retention {
    fn drop(&mut self) {
        let mut count = self.holds.count.lock().unwrap_or_else(|e| e.into_inner());
        *count = count.saturating_sub(1);
        if *count == 0 {
            let _ = fs::remove_dir_all(&self.holds.dir);
        }
    }
}

/// Opens a file for reading without following a symlink at its name
/// (storage holds only regular files; anything else is skipped).
fn open_plain(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    options.open(path)
}

/// Keeps the file at `path` (the live copy of `key`) under `dir` by a hard
/// link, before it is removed. `false`: it could not be kept (another
/// filesystem, no hard links), so the caller must leave it in place: an
/// orphan the sweep removes later is better than a backup missing a file.
pub(super) fn keep(dir: &Path, path: &Path, key: &str) -> bool {
    let target = dir.join(key);
    let linked = match target.parent() {
        Some(parent) => fs::create_dir_all(parent).and_then(|()| fs::hard_link(path, &target)),
        None => Err(io::Error::other("no directory")),
    };
    match linked {
        Ok(()) => true,
        // Removed (and kept) once already in this backup: the first copy
        // stays, it is the one that was there when the backup began.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => true,
        // Nothing to keep: already gone.
        Err(e) if e.kind() == io::ErrorKind::NotFound && fs::symlink_metadata(path).is_err() => true,
        Err(e) => {
            tracing::warn!(key, error = %e, "cannot keep a removed file for the running backup; left in place");
            false
        }
    }
}

/// Keeps every file under `path` (the live directory of `prefix`), as
/// [`keep`]; `false` if any could not be kept.
pub(super) fn keep_tree(dir: &Path, path: &Path, prefix: &str) -> bool {
    let mut all = true;
    let mut stack = vec![(path.to_path_buf(), prefix.trim_end_matches('/').to_owned())];
    while let Some((at, key)) = stack.pop() {
        let entries = match fs::read_dir(&at) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                tracing::warn!(key, error = %e, "cannot list removed files for the running backup; left in place");
                return false;
            }
        };
        for entry in entries {
            let Ok(entry) = entry else { return false };
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Ok(ty) = entry.file_type() else { return false };
            let child = format!("{key}/{name}");
            if ty.is_dir() {
                stack.push((entry.path(), child));
            } else if ty.is_file() && !name.starts_with('.') {
                all &= keep(dir, &entry.path(), &child);
            }
        }
    }
    all
}

/// A stored file, open for reading.
pub struct StoredFile {
    pub key: String,
    pub file: File,
    /// Its size when opened (files are immutable once stored).
    pub size: u64,
    /// When it was stored (a restore gives it back: `Last-Modified`
    /// and the sweep's grace period read it).
    pub modified: std::time::SystemTime,
}

/// The walk of [`Retention::files`]: the live tree, then the retained one.
pub struct Files<'a> {
    retention: &'a Retention,
    retained_pass: bool,
    started: bool,
    /// Open directories, with the key prefix of each.
    stack: Vec<(String, fs::ReadDir)>,
}

impl Files<'_> {
    fn root(&self) -> &Path {
        if self.retained_pass {
            &self.retention.holds.dir
        } else {
            &self.retention.live
        }
    }

    /// Opens the directory the walk starts from; a missing one is empty.
    fn start(&mut self) -> io::Result<()> {
        self.started = true;
        match fs::read_dir(self.root()) {
            Ok(entries) => self.stack.push((String::new(), entries)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Opens `key`: in the live tree, else (removed meanwhile) in the
    /// retained one. `None`: gone from both, so it was removed before the
    /// backup began (see the module doc) and is not needed.
    fn open(&self, key: &str) -> io::Result<Option<StoredFile>> {
        let mut roots = vec![self.root()];
        if !self.retained_pass {
            roots.push(&self.retention.holds.dir);
        }
        for root in roots {
            match open_plain(&root.join(key)) {
                Ok(file) => {
                    let meta = file.metadata()?;
                    if !meta.is_file() {
                        return Ok(None);
                    }
                    return Ok(Some(StoredFile {
                        key: key.to_owned(),
                        file,
                        size: meta.len(),
                        modified: meta.modified().unwrap_or(std::time::UNIX_EPOCH),
                    }));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    fn step(&mut self) -> io::Result<Option<StoredFile>> {
        loop {
            if !self.started {
                self.start()?;
            }
            let Some((prefix, dir)) = self.stack.last_mut() else {
                if self.retained_pass {
                    return Ok(None);
                }
                self.retained_pass = true;
                self.started = false;
                continue;
            };
            let Some(entry) = dir.next() else {
                self.stack.pop();
                continue;
            };
            let entry = entry?;
            // Hidden names are a write's temporary files, never keys; a
            // name that is not UTF-8 was not made by Basalt.
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let key = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let ty = entry.file_type()?;
            if ty.is_dir() {
                let path = self.root().join(&key);
                match fs::read_dir(&path) {
                    Ok(entries) => self.stack.push((key, entries)),
                    // Removed since it was listed: its files were kept.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            } else if ty.is_file() {
                if let Some(file) = self.open(&key)? {
                    return Ok(Some(file));
                }
            }
        }
    }
}

impl Iterator for Files<'_> {
    type Item = io::Result<StoredFile>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.step() {
            Ok(Some(f)) => Some(Ok(f)),
            Ok(None) => None,
            Err(e) => {
                // One error ends the walk.
                self.stack.clear();
                self.retained_pass = true;
                self.started = true;
                Some(Err(e))
            }
        }
    }
}

/// Why a key in a backup is refused, if it is (`None`: a plain relative
/// path of ordinary names, safe to create under a new directory).
pub fn refused_key(key: &str) -> Option<&'static str> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Some("an empty or overlong file name");
    }
    if key.starts_with('/') {
        return Some("an absolute file path");
    }
    let parts: Vec<&str> = key.split('/').collect();
    if parts.len() > MAX_DEPTH {
        return Some("a file path nested too deep");
    }
    for part in parts {
        if part == ".." || part == "." {
            return Some("a file path with '..' or '.'");
        }
        if part.is_empty() || part.starts_with('.') || part.len() > 255 {
            return Some("a file path with an empty, hidden or overlong part");
        }
        if part.chars().any(|c| c == '\\' || c.is_control()) {
            return Some("a file path with a backslash or a control character");
        }
    }
    None
}

/// Writes restored files into a new directory (a restore's staging area):
/// nothing there but what this makes, so no symlink can redirect a write.
pub struct Unpack {
    root: PathBuf,
}

impl Unpack {
    /// Creates `root`, which must not exist yet.
    pub fn create(root: &Path) -> io::Result<Unpack> {
        fs::create_dir(root)?;
        Ok(Unpack {
            root: root.to_path_buf(),
        })
    }

    /// A new file for `key` (checked with [`refused_key`]); `None` if the
    /// key was restored already (a file removed during the backup can come
    /// twice; the first is kept).
    pub fn file(&self, key: &str) -> io::Result<Option<File>> {
        if let Some(why) = refused_key(key) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        }
        let path = self.root.join(key);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Syncs every directory made, so the restored names survive a crash
    /// (each file is synced by its writer).
    pub fn finish(self) -> io::Result<()> {
        let mut stack = vec![self.root];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir)? {
                let entry = entry?;
                if entry.file_type()?.is_dir() {
                    stack.push(entry.path());
                }
            }
            File::open(&dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_keys_are_restored() {
        assert_eq!(refused_key("c1/r1/a_b.png"), None);
        assert_eq!(refused_key("c1/r1/thumbs_a_b.png/100x100_a_b.png"), None);
        let long = "a".repeat(300);
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            ".hidden",
            "a/.b.part",
            "a\\..\\b",
            "a/\0b",
            "a/b\nc",
            &long,
            "1/2/3/4/5/6/7/8/9",
        ] {
            assert!(refused_key(bad).is_some(), "{bad:?}");
        }
    }

    fn write(path: &Path, bytes: &[u8]) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }

    fn walk(r: &Retention) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<(String, Vec<u8>)> = r
            .files()
            .map(|f| {
                let mut f = f.unwrap();
                let mut bytes = Vec::new();
                io::Read::read_to_end(&mut f.file, &mut bytes).unwrap();
                assert_eq!(bytes.len() as u64, f.size);
                (f.key, bytes)
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_file_removed_during_a_retention_is_still_walked_and_goes_after() {
        let tmp = tempfile::tempdir().unwrap();
        let live = tmp.path().join("storage");
        let holds = Arc::new(Holds::new(tmp.path().join(RETAINED_DIR)));
        write(&live.join("c/r1/a.txt"), b"one");
        write(&live.join("c/r2/b.txt"), b"two");
        write(&live.join("c/r2/.x.part"), b"half");
        assert_eq!(holds.retaining(), None);
        let r = Retention::start(holds.clone(), live.clone());
        let dir = holds.retaining().unwrap();
        // A removal while it holds: kept first, then unlinked.
        assert!(keep(&dir, &live.join("c/r1/a.txt"), "c/r1/a.txt"));
        fs::remove_file(live.join("c/r1/a.txt")).unwrap();
        assert!(keep_tree(&dir, &live.join("c/r2"), "c/r2/"));
        fs::remove_dir_all(live.join("c/r2")).unwrap();
        assert_eq!(
            walk(&r),
            vec![
                ("c/r1/a.txt".into(), b"one".to_vec()),
                ("c/r2/b.txt".into(), b"two".to_vec())
            ]
        );
        drop(r);
        assert!(!dir.exists());
        assert_eq!(holds.retaining(), None);
    }

    #[test]
    fn unpack_refuses_bad_keys_and_keeps_the_first_of_a_duplicate() {
        let tmp = tempfile::tempdir().unwrap();
        let u = Unpack::create(&tmp.path().join("storage")).unwrap();
        assert!(Unpack::create(&tmp.path().join("storage")).is_err());
        assert!(u.file("../escape").is_err());
        assert!(!tmp.path().join("escape").exists());
        io::Write::write_all(&mut u.file("c/r/a.txt").unwrap().unwrap(), b"first").unwrap();
        assert!(u.file("c/r/a.txt").unwrap().is_none());
        u.finish().unwrap();
        assert_eq!(fs::read(tmp.path().join("storage/c/r/a.txt")).unwrap(), b"first");
    }
}
