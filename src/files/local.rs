//! The local-disk backend: `<dir>/storage/<key>`. Writes are durable before
//! they return (the file and its directory are synced), because a record
//! that names a file commits right after.

use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;

use super::{Body, Object, ObjectMeta};

pub struct Local {
    root: PathBuf,
}

/// Runs blocking file work off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io::Error::other(format!("storage task failed: {e}")))?
}

fn meta_of(m: &fs::Metadata) -> ObjectMeta {
    ObjectMeta {
        size: m.len(),
        modified: m.modified().unwrap_or(std::time::UNIX_EPOCH),
    }
}

/// Whether a temporary `.part` file is older than any write takes.
fn is_stale(meta: &fs::Metadata) -> bool {
    meta.modified()
        .ok()
        .and_then(|m| m.elapsed().ok())
        .is_some_and(|age| age > std::time::Duration::from_secs(3600))
}

/// Creates `file` in `dir`, making the directory first. A cleanup may
/// remove the directory in between when it looks empty, so creation is
/// retried a few times.
fn create_in(dir: &Path, file: &Path) -> io::Result<File> {
    let mut attempt = 0;
    loop {
        fs::create_dir_all(dir)?;
        match File::create(file) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < 5 => attempt += 1,
            other => return other,
        }
    }
}

/// Syncs a directory so a new or renamed entry in it survives a crash.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Local {
    pub fn new(root: PathBuf) -> Local {
        Local { root }
    }

    /// The directory the keys live under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of `key` under the root. Keys are made by Basalt from ids
    /// and checked names, but this is the last line: anything that could
    /// leave the root (`..`, an absolute path, a NUL) is refused.
    pub(super) fn path(&self, key: &str) -> io::Result<PathBuf> {
        let rel = Path::new(key);
        let plain = !key.is_empty()
            && !key.contains('\0')
            && !key.contains('\\')
            && rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !plain {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "invalid storage key"));
        }
        Ok(self.root.join(rel))
    }

    /// Writes through a temporary name in the same directory, syncs, then
    /// renames: a reader never sees half a file.
    fn write_with(&self, key: &str, fill: impl FnOnce(&mut File) -> io::Result<()>) -> io::Result<()> {
        let path = self.path(key)?;
        let dir = path
            .parent()
            .ok_or_else(|| io::Error::other("storage key without a directory"))?;
        let tmp = dir.join(format!(".{}.part", crate::ids::record_id()));
        let result = (|| {
            let mut f = create_in(dir, &tmp)?;
            fill(&mut f)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            sync_dir(dir)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Stores a spooled upload: a hard link when the spool is on the same
    /// file system (the data dir: no second copy of the bytes), else a copy
    /// (also when a cleanup removed the directory meanwhile); synced and
    /// renamed into place either way.
    pub async fn put_file(&self, key: &str, src: &Path) -> io::Result<()> {
        let this = Local {
            root: self.root.clone(),
        };
        let (key, src) = (key.to_owned(), src.to_owned());
        blocking(move || {
            let path = this.path(&key)?;
            let dir = path
                .parent()
                .ok_or_else(|| io::Error::other("storage key without a directory"))?;
            fs::create_dir_all(dir)?;
            let tmp = dir.join(format!(".{}.part", crate::ids::record_id()));
            if fs::hard_link(&src, &tmp).is_ok() {
                let linked = (|| {
                    File::open(&tmp)?.sync_all()?;
                    fs::rename(&tmp, &path)?;
                    sync_dir(dir)
                })();
                if linked.is_err() {
                    let _ = fs::remove_file(&tmp);
                }
                return linked;
            }
            this.write_with(&key, |f| {
                let mut from = File::open(&src)?;
                io::copy(&mut from, f).map(|_| ())
            })
        })
        .await
    }

    /// Stores a thumbnail: written and renamed into place (a reader never
    /// sees half of it) but not synced — it is a cache, made again when
    /// missing, so the request that makes it need not wait for two syncs
    /// (BENCHMARKS.md "Files": 3 ms of a first thumbnail's median). What
    /// a crash can leave is an empty file (the rename committed before the
    /// data), which readers take for a missing thumbnail.
    ///
    /// `modified`, when given, becomes the file's modification time: the
    /// thumbnail maker answers its first requests from memory before the
    /// file is written, with a date (and so an `ETag`) the file then keeps.
    pub async fn put_bytes(&self, key: &str, bytes: Bytes, modified: Option<std::time::SystemTime>) -> io::Result<()> {
        let path = self.path(key)?;
        blocking(move || {
            let dir = path
                .parent()
                .ok_or_else(|| io::Error::other("storage key without a directory"))?;
            let tmp = dir.join(format!(".{}.part", crate::ids::record_id()));
            let written = create_in(dir, &tmp)
                .and_then(|mut f| {
                    f.write_all(&bytes)?;
                    match modified {
                        Some(t) => f.set_modified(t),
                        None => Ok(()),
                    }
                })
                .and_then(|_| fs::rename(&tmp, &path));
            if written.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            written
        })
        .await
    }

    pub async fn head(&self, key: &str) -> io::Result<Option<ObjectMeta>> {
        let path = self.path(key)?;
        blocking(move || match fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(meta_of(&m))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    pub async fn get(&self, key: &str, range: Option<Range<u64>>) -> io::Result<Option<Object>> {
        let path = self.path(key)?;
        blocking(move || {
            let mut file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let m = file.metadata()?;
            if !m.is_file() {
                return Ok(None);
            }
            let meta = meta_of(&m);
            let range = range.unwrap_or(0..meta.size);
            let range = range.start.min(meta.size)..range.end.min(meta.size);
            file.seek(SeekFrom::Start(range.start))?;
            let len = range.end.saturating_sub(range.start);
            Ok(Some(Object {
                meta,
                body: Body::File { file, len },
            }))
        })
        .await
    }

    /// Removes the file, then its directories while they are empty (a
    /// record's folder, a thumbnail folder), up to the root.
    pub async fn delete(&self, key: &str) -> io::Result<()> {
        let path = self.path(key)?;
        let root = self.root.clone();
        blocking(move || {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            let mut dir = path.parent();
            while let Some(d) = dir.filter(|d| *d != root && d.starts_with(&root)) {
                // Fails (and stops) at the first directory that is not empty.
                if fs::remove_dir(d).is_err() {
                    break;
                }
                dir = d.parent();
            }
            Ok(())
        })
        .await
    }

    pub async fn delete_prefix(&self, prefix: &str) -> io::Result<()> {
        let path = self.path(prefix.trim_end_matches('/'))?;
        blocking(move || match fs::remove_dir_all(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await
    }

    pub async fn list(&self, prefix: &str) -> io::Result<Vec<(String, ObjectMeta)>> {
        let root = self.root.clone();
        let start = if prefix.trim_end_matches('/').is_empty() {
            root.clone()
        } else {
            self.path(prefix.trim_end_matches('/'))?
        };
        blocking(move || {
            let mut out = Vec::new();
            let mut stack = vec![start];
            while let Some(dir) = stack.pop() {
                let entries = match fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => continue,
                    Err(e) => return Err(e),
                };
                for entry in entries {
                    let entry = entry?;
                    let ty = entry.file_type()?;
                    let path = entry.path();
                    if ty.is_dir() {
                        stack.push(path);
                    } else if ty.is_file() {
                        let name = entry.file_name();
                        let name = name.to_string_lossy();
                        let meta = entry.metadata()?;
                        // Files being written (`.<id>.part`: stored names never
                        // start with a dot) are not listed until they are old
                        // enough to be an interrupted write's leftovers.
                        if name.starts_with('.') && name.ends_with(".part") && !is_stale(&meta) {
                            continue;
                        }
                        if let Ok(rel) = path.strip_prefix(&root) {
                            let key = rel.to_string_lossy().replace(std::path::MAIN_SEPARATOR, "/");
                            out.push((key, meta_of(&meta)));
                        }
                    }
                }
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_leave_the_root() {
        let l = Local::new(PathBuf::from("/tmp/basalt-storage-test"));
        for bad in ["", "../x", "a/../../x", "/etc/passwd", "a\\b", "a/\0b", "./a"] {
            assert!(l.path(bad).is_err(), "{bad:?}");
        }
        assert!(l.path("c/r/a_b.png").is_ok());
    }
}
