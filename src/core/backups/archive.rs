//! The backup file: the store's snapshot and the stored files in one
//! stream, and restoring it into a new data dir.
//!
//! Format (version 2; integers big-endian):
//!
//! ```text
//! MAGIC ++ version u32 (2) ++ created ms i64 ++ files byte ('L': the local
//!   storage is in the file; 'R': files were in a remote bucket, not here)
//! 'S' ++ a whole store snapshot (`store::backup`'s format, with its own
//!   checksum; it ends itself)
//! per stored file: 'F' ++ key len u16 ++ key ++ size u64 ++ modified ms i64
//!   ++ bytes ++ sha256(bytes)
//! 'Z' ++ sha256 of every byte before it
//! ```
//!
//! Version 1 files (made before files were backed up) are a bare store
//! snapshot, with the same magic: they still restore, with no files.
//!
//! Consistency: the store snapshot is a point in time; the files are copied
//! after it, under a [`Retention`](crate::files::backup::Retention) taken
//! before it, so every file a record in the snapshot names is in the file
//! (see `files::backup`). Files newer than the snapshot may come along:
//! orphans after a restore, which the orphan sweep removes.
//!
//! Restoring reads the whole file once to verify it (structure, each file's
//! size and checksum, the final checksum, every key a plain relative path)
//! before anything is written, then again into `<dir>/.restoring`, and only
//! then moves `storage` and `db` into the data dir (`db` last: its presence
//! is what marks a data dir as restored).

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::files::backup::{refused_key, Unpack};
use crate::files::{Storage, LOCAL_DIR};
use crate::store::backup::{self as snapshot, BackupError, MAGIC};
use crate::store::Store;

/// This format's version (1 is a bare store snapshot).
const VERSION: u32 = 2;
/// A store's database directory under the data dir.
const DB_DIR: &str = "db";
/// Where a restore is staged inside the target data dir.
const STAGING: &str = ".restoring";
/// Copy buffer: memory per backup or restore, whatever the file sizes.
const CHUNK: usize = 256 * 1024;

/// What a backup file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveInfo {
    pub path: PathBuf,
    /// The backup file's size.
    pub bytes: u64,
    pub trees: usize,
    pub entries: u64,
    /// Stored files in it, and their bytes.
    pub files: u64,
    pub file_bytes: u64,
    pub kept: FilesKept,
}

/// Where the files of a backed-up server are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilesKept {
    /// In the backup file (local storage).
    InBackup,
    /// In the S3 bucket, which backups leave alone (as PocketBase).
    InBucket,
    /// A version 1 backup, from before files were backed up.
    NotBackedUp,
}

fn io_err(what: &str, path: &Path, e: impl std::fmt::Display) -> BackupError {
    BackupError::Io(format!("{what} {}: {e}", path.display()))
}

/// The backup file being written: counts and hashes every byte.
struct Out {
    inner: BufWriter<File>,
    hash: Sha256,
    bytes: u64,
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a backup of `store` and the local files of `storage` to `path`
/// (through `path.partial`, synced, then renamed: `path` is absent or
/// whole). Writes wait only while the store snapshot is taken; removals
/// never wait (see `files::backup`).
pub async fn write(store: &Store, storage: &Storage, path: &Path) -> Result<ArchiveInfo, BackupError> {
    // Before the snapshot: from here on, removed files are kept for us.
    let retention = storage.retain();
    let tmp = path.with_extension("partial");
    let kept = if retention.is_some() { b'L' } else { b'R' };
    let opened = (|| {
        let file = File::create(&tmp)?;
        let mut out = Out {
            inner: BufWriter::with_capacity(1 << 20, file),
            hash: Sha256::new(),
            bytes: 0,
        };
        out.write_all(MAGIC)?;
        out.write_all(&VERSION.to_be_bytes())?;
        out.write_all(&crate::clock::now_millis().to_be_bytes())?;
        out.write_all(&[kept, b'S'])?;
        Ok::<_, io::Error>(out)
    })();
    let out = opened.map_err(|e| io_err("cannot create", &tmp, e))?;
    let (out, counts) = match store.backup_into(out).await {
        Ok(v) => v,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let (tmp2, path2) = (tmp.clone(), path.to_path_buf());
    let copied = tokio::task::spawn_blocking(move || {
        let files = match &retention {
            Some(r) => copy_files(r, out)?,
            None => finish(out, 0, 0)?,
        };
        // The retained copies can go now.
        drop(retention);
        fs::rename(&tmp2, &path2)?;
        if let Some(dir) = path2.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok::<_, io::Error>(files)
    })
    .await
    .unwrap_or_else(|e| Err(io::Error::other(format!("backup task failed: {e}"))));
    let (bytes, files, file_bytes) = match copied {
        Ok(v) => v,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(io_err("cannot write", &tmp, e));
        }
    };
    Ok(ArchiveInfo {
        path: path.to_path_buf(),
        bytes,
        trees: counts.trees,
        entries: counts.entries,
        files,
        file_bytes,
        kept: if kept == b'L' {
            FilesKept::InBackup
        } else {
            FilesKept::InBucket
        },
    })
}

/// Appends every stored file, then the end; returns (file size, files,
/// their bytes).
fn copy_files(retention: &crate::files::backup::Retention, mut out: Out) -> io::Result<(u64, u64, u64)> {
    let (mut files, mut file_bytes) = (0u64, 0u64);
    let mut buf = vec![0u8; CHUNK];
    for stored in retention.files() {
        let mut stored = stored?;
        let key = stored.key.as_bytes();
        let key_len = u16::try_from(key.len()).map_err(|_| io::Error::other("a storage key is too long"))?;
        out.write_all(b"F")?;
        out.write_all(&key_len.to_be_bytes())?;
        out.write_all(key)?;
        out.write_all(&stored.size.to_be_bytes())?;
        out.write_all(&millis(stored.modified).to_be_bytes())?;
        let mut hash = Sha256::new();
        let mut left = stored.size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = stored.file.read(&mut buf[..want])?;
            if n == 0 {
                return Err(io::Error::other(format!("{} shrank while it was copied", stored.key)));
            }
            hash.update(&buf[..n]);
            out.write_all(&buf[..n])?;
            left -= n as u64;
        }
        out.write_all(&hash.finalize())?;
        files += 1;
        file_bytes += stored.size;
    }
    finish(out, files, file_bytes)
}

/// Milliseconds since the epoch (0 before it).
fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Writes the end tag and the checksum, syncs.
fn finish(mut out: Out, files: u64, file_bytes: u64) -> io::Result<(u64, u64, u64)> {
    out.write_all(b"Z")?;
    let digest = out.hash.clone().finalize();
    out.inner.write_all(&digest)?;
    let bytes = out.bytes + digest.len() as u64;
    let file = out.inner.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok((bytes, files, file_bytes))
}

/// A backup file being read: hashes and counts what is read.
struct In {
    inner: BufReader<File>,
    hash: Sha256,
    read: u64,
    len: u64,
    path: PathBuf,
}

impl Read for In {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

impl In {
    fn open(path: &Path) -> Result<In, BackupError> {
        let file = File::open(path).map_err(|e| io_err("cannot open", path, e))?;
        let len = file.metadata().map_err(|e| io_err("cannot read", path, e))?.len();
        Ok(In {
            inner: BufReader::with_capacity(1 << 20, file),
            hash: Sha256::new(),
            read: 0,
            len,
            path: path.to_path_buf(),
        })
    }

    fn damaged(&self, why: impl Into<String>) -> BackupError {
        BackupError::Damaged(self.path.clone(), why.into())
    }

    fn refused(&self, why: impl Into<String>) -> BackupError {
        BackupError::Refused(self.path.clone(), why.into())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], BackupError> {
        let mut b = [0u8; N];
        self.read_exact(&mut b).map_err(|_| self.damaged("it ends early"))?;
        Ok(b)
    }

    /// The header: `Some(files byte)` for this format, `None` for a bare
    /// store snapshot (version 1; the stream is then back at its start).
    fn header(&mut self) -> Result<Option<u8>, BackupError> {
        let magic: [u8; 14] = self.array().map_err(|_| BackupError::NotABackup(self.path.clone()))?;
        if &magic != MAGIC {
            return Err(BackupError::NotABackup(self.path.clone()));
        }
        match u32::from_be_bytes(self.array()?) {
            snapshot::VERSION => {
                *self = In::open(&self.path)?;
                Ok(None)
            }
            VERSION => {
                let [_created @ .., kept, section] = self.array::<10>()?;
                if !matches!(kept, b'L' | b'R') || section != b'S' {
                    return Err(self.damaged("its header is not one Basalt writes"));
                }
                Ok(Some(kept))
            }
            v => Err(self.damaged(format!("format version {v}, this Basalt reads 1 and {VERSION}"))),
        }
    }

    /// After the final checksum: nothing may follow.
    fn at_end(&mut self) -> Result<(), BackupError> {
        let mut rest = [0u8; 1];
        match self.inner.read(&mut rest) {
            Ok(0) => Ok(()),
            _ => Err(self.damaged("there are bytes after its end")),
        }
    }
}

/// Reads the file entries and the end (after the store snapshot), each
/// file's bytes checked against its size and checksum, and written into
/// `unpack` if given. Returns (files, their bytes).
fn read_files(input: &mut In, unpack: Option<&Unpack>) -> Result<(u64, u64), BackupError> {
    let (mut files, mut file_bytes) = (0u64, 0u64);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let [tag] = input.array::<1>()?;
        match tag {
            b'F' => {}
            b'Z' => {
                let expected = input.hash.clone().finalize();
                let mut got = [0u8; 32];
                input
                    .inner
                    .read_exact(&mut got)
                    .map_err(|_| input.damaged("its checksum is missing"))?;
                if got[..] != expected[..] {
                    return Err(input.damaged("its checksum does not match"));
                }
                input.at_end()?;
                return Ok((files, file_bytes));
            }
            _ => return Err(input.damaged("an unknown item")),
        }
        let key_len = u16::from_be_bytes(input.array()?);
        let mut key = vec![0u8; usize::from(key_len)];
        input.read_exact(&mut key).map_err(|_| input.damaged("it ends early"))?;
        let key = String::from_utf8(key).map_err(|_| input.refused("a file name that is not UTF-8"))?;
        if let Some(why) = refused_key(&key) {
            return Err(input.refused(format!("{why}: {key:?}")));
        }
        let size = u64::from_be_bytes(input.array()?);
        let modified = i64::from_be_bytes(input.array()?);
        // The bytes and the checksum after them must be in the file.
        if size.saturating_add(32) > input.len.saturating_sub(input.read) {
            return Err(input.refused(format!("file {key} claims {size} bytes, more than the backup holds")));
        }
        let mut sink = match unpack {
            Some(u) => u
                .file(&key)
                .map_err(|e| io_err("cannot restore a file into", &PathBuf::from(&key), e))?,
            None => None,
        };
        let mut hash = Sha256::new();
        let mut left = size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = input.read(&mut buf[..want]).map_err(|e| input.damaged(e.to_string()))?;
            if n == 0 {
                return Err(input.damaged("it ends early"));
            }
            hash.update(&buf[..n]);
            if let Some(f) = sink.as_mut() {
                f.write_all(&buf[..n])
                    .map_err(|e| io_err("cannot write", Path::new(&key), e))?;
            }
            left -= n as u64;
        }
        let sum: [u8; 32] = input.array()?;
        if sum[..] != hash.finalize()[..] {
            return Err(input.damaged(format!("file {key} does not match its checksum")));
        }
        if let Some(f) = sink {
            // Best effort: a time the filesystem cannot hold is no reason
            // to fail a restore.
            let when = UNIX_EPOCH.checked_add(Duration::from_millis(u64::try_from(modified).unwrap_or(0)));
            if let Some(when) = when {
                let _ = f.set_modified(when);
            }
            f.sync_all().map_err(|e| io_err("cannot write", Path::new(&key), e))?;
        }
        files += 1;
        file_bytes += size;
    }
}

/// Checks a backup file end to end, writing nothing.
pub fn verify(path: &Path) -> Result<ArchiveInfo, BackupError> {
    read_all(path, None, false)
}

/// One pass over the file: verify only (`into` is `None`), or restore into
/// the staging dir `into` (`storage` under it, and `db` unless the store
/// is loaded elsewhere: `with_db`).
fn read_all(path: &Path, into: Option<&Path>, with_db: bool) -> Result<ArchiveInfo, BackupError> {
    let mut input = In::open(path)?;
    let kept = input.header()?;
    let counts = match into {
        Some(dir) if with_db => snapshot::restore_from(&mut input, path, &dir.join(DB_DIR))?,
        _ => snapshot::verify_from(&mut input, path)?,
    };
    let (files, file_bytes, kept) = match kept {
        None => {
            input.at_end()?;
            (0, 0, FilesKept::NotBackedUp)
        }
        Some(kept) => {
            let unpack = match into {
                Some(dir) => {
                    let root = dir.join(LOCAL_DIR);
                    Some(Unpack::create(&root).map_err(|e| io_err("cannot create", &root, e))?)
                }
                None => None,
            };
            let (files, bytes) = read_files(&mut input, unpack.as_ref())?;
            if let (Some(u), Some(dir)) = (unpack, into) {
                u.finish().map_err(|e| io_err("cannot sync", dir, e))?;
            }
            let kept = match kept {
                b'L' => FilesKept::InBackup,
                _ => FilesKept::InBucket,
            };
            (files, bytes, kept)
        }
    };
    Ok(ArchiveInfo {
        path: path.to_path_buf(),
        bytes: input.len,
        trees: counts.trees,
        entries: counts.entries,
        files,
        file_bytes,
        kept,
    })
}

/// Refuses a target that holds data: a database, or stored files.
fn check_target(dir: &Path) -> Result<(), BackupError> {
    if fs::symlink_metadata(dir.join(DB_DIR)).is_ok() {
        return Err(BackupError::NotEmpty(dir.to_path_buf()));
    }
    check_files_target(dir)
}

/// Refuses a data dir that holds stored files.
fn check_files_target(dir: &Path) -> Result<(), BackupError> {
    let storage = dir.join(LOCAL_DIR);
    let empty = match fs::symlink_metadata(&storage) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => true,
        Ok(m) if m.is_dir() => fs::read_dir(&storage).is_ok_and(|mut d| d.next().is_none()),
        _ => false,
    };
    if !empty {
        return Err(BackupError::Io(format!(
            "{} already holds stored files; restore into a new, empty data dir",
            storage.display()
        )));
    }
    Ok(())
}

/// Restores `backup` into the data dir `dir`, which must hold no database
/// and no stored files: verified whole first (a damaged or crafted file is
/// refused before anything is written), staged, then moved in. On any
/// failure the data dir is left as it was.
pub fn restore(backup: &Path, dir: &Path) -> Result<ArchiveInfo, BackupError> {
    check_target(dir)?;
    let info = verify(backup)?;
    fs::create_dir_all(dir).map_err(|e| io_err("cannot create", dir, e))?;
    let staging = dir.join(STAGING);
    // What a restore that crashed left behind.
    match fs::remove_dir_all(&staging) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err("cannot remove", &staging, e)),
        _ => {}
    }
    fs::create_dir(&staging).map_err(|e| io_err("cannot create", &staging, e))?;
    let result = read_all(backup, Some(&staging), true).and_then(|_| swap_in(&staging, dir));
    let _ = fs::remove_dir_all(&staging);
    result.map(|()| info)
}

/// Restores `backup` into the PostgreSQL database at `url`, which must be
/// empty (see `store::pg_import`: one transaction, refused if any node has
/// started on it), and its stored files into the data dir `dir`, which
/// must hold none. Verified whole first; the files are staged before the
/// database is loaded, and moved in after its COMMIT: a failure before
/// that leaves both as they were.
pub fn restore_into_postgres(backup: &Path, dir: &Path, url: &str) -> Result<ArchiveInfo, BackupError> {
    check_files_target(dir)?;
    let info = verify(backup)?;
    fs::create_dir_all(dir).map_err(|e| io_err("cannot create", dir, e))?;
    let staging = dir.join(STAGING);
    match fs::remove_dir_all(&staging) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err("cannot remove", &staging, e)),
        _ => {}
    }
    fs::create_dir(&staging).map_err(|e| io_err("cannot create", &staging, e))?;
    let result = read_all(backup, Some(&staging), false).and_then(|_| {
        let mut input = In::open(backup)?;
        input.header()?;
        crate::store::pg_import::load(url, &mut input, backup)?;
        swap_files_in(&staging, dir)
    });
    let _ = fs::remove_dir_all(&staging);
    result.map(|()| info)
}

/// Moves the staged `storage` (if any) into the data dir.
fn swap_files_in(staging: &Path, dir: &Path) -> Result<(), BackupError> {
    let storage = staging.join(LOCAL_DIR);
    if storage.exists() {
        let target = dir.join(LOCAL_DIR);
        let _ = fs::remove_dir(&target);
        fs::rename(&storage, &target).map_err(|e| io_err("cannot move files into", &target, e))?;
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("cannot sync", dir, e))
}

/// Moves the staged `storage` (if any), then `db`, into the data dir.
fn swap_in(staging: &Path, dir: &Path) -> Result<(), BackupError> {
    let storage = staging.join(LOCAL_DIR);
    if storage.exists() {
        let target = dir.join(LOCAL_DIR);
        // An empty one (checked before): replaced.
        let _ = fs::remove_dir(&target);
        fs::rename(&storage, &target).map_err(|e| io_err("cannot move files into", &target, e))?;
    }
    let db = dir.join(DB_DIR);
    if let Err(e) = fs::rename(staging.join(DB_DIR), &db) {
        // Leave the data dir as it was.
        let _ = fs::rename(dir.join(LOCAL_DIR), &storage);
        return Err(io_err("cannot move the database into", &db, e));
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("cannot sync", dir, e))
}
