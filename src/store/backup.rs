//! Backups: a consistent snapshot of every tree in one file, and restoring
//! one into an empty data dir.
//!
//! A snapshot is taken by the writer thread between two commit groups
//! (see `writer.rs`), so it holds exactly the writes committed before it and
//! none after: writes wait while it is written (they queue, nothing is
//! refused unless the queue fills). The request log (`logs`) is left out: it
//! is not data, and it is written outside the writer.
//!
//! File format (version 1), all integers big-endian:
//! `MAGIC ++ version u32 ++ created ms u64`, then per tree
//! `b'T' ++ name len u32 ++ name` and its entries
//! `b'E' ++ key len u32 ++ key ++ value len u32 ++ value`, then
//! `b'Z' ++ sha256 of everything before the digest`. Restoring checks the digest
//! before it writes anything.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The first bytes of every backup file.
pub const MAGIC: &[u8; 14] = b"BASALT-BACKUP\n";
const VERSION: u32 = 1;
/// Trees not backed up (the request log; the writer's filler, empty).
const SKIP: &[&str] = &["logs", super::writer::PAD_TREE];
/// Largest key or value accepted when reading (sled's own limit is far
/// above any Basalt record; this only stops a corrupt length early).
const MAX_ITEM: u32 = 256 * 1024 * 1024;

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    pub path: PathBuf,
    pub bytes: u64,
    pub trees: usize,
    pub entries: u64,
}

/// A backup could not be written or read; one clear line for the operator.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Io(String),
    #[error("{0} is not a Basalt backup")]
    NotABackup(PathBuf),
    #[error("{0} is damaged ({1}); nothing was restored")]
    Damaged(PathBuf, String),
    #[error("{0} already holds a database; restore into a new, empty data dir")]
    NotEmpty(PathBuf),
}

fn io(what: &str, path: &Path, e: impl std::fmt::Display) -> BackupError {
    BackupError::Io(format!("{what} {}: {e}", path.display()))
}

/// A writer that hashes everything it writes.
struct Hashing<W: Write> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a snapshot of `db` to `path` (through a temporary file, then
/// fsync and rename, so `path` is either absent or whole). Call it only
/// where no write can happen meanwhile (the writer thread).
pub fn write(db: &sled::Db, path: &Path, created_ms: i64) -> Result<BackupInfo, BackupError> {
    let tmp = path.with_extension("partial");
    let file = File::create(&tmp).map_err(|e| io("cannot create", &tmp, e))?;
    let result = write_into(db, file, created_ms);
    let (bytes, trees, entries) = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(io("cannot write", &tmp, e));
        }
    };
    std::fs::rename(&tmp, path).map_err(|e| io("cannot rename to", path, e))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(BackupInfo {
        path: path.to_path_buf(),
        bytes,
        trees,
        entries,
    })
}

fn write_into(db: &sled::Db, file: File, created_ms: i64) -> Result<(u64, usize, u64), Box<dyn std::error::Error>> {
    let mut out = Hashing {
        inner: BufWriter::with_capacity(1 << 20, file),
        hash: Sha256::new(),
        bytes: 0,
    };
    out.write_all(MAGIC)?;
    out.write_all(&VERSION.to_be_bytes())?;
    out.write_all(&created_ms.to_be_bytes())?;
    let (mut trees, mut entries) = (0usize, 0u64);
    for name in db.tree_names() {
        if SKIP.iter().any(|s| s.as_bytes() == name.as_ref()) {
            continue;
        }
        let tree = db.open_tree(&name)?;
        out.write_all(b"T")?;
        out.write_all(&(name.len() as u32).to_be_bytes())?;
        out.write_all(&name)?;
        trees += 1;
        for kv in tree.iter() {
            let (k, v) = kv?;
            out.write_all(b"E")?;
            out.write_all(&(k.len() as u32).to_be_bytes())?;
            out.write_all(&k)?;
            out.write_all(&(v.len() as u32).to_be_bytes())?;
            out.write_all(&v)?;
            entries += 1;
        }
    }
    // The digest covers everything up to and including the end tag.
    out.write_all(b"Z")?;
    let digest = out.hash.clone().finalize();
    out.inner.write_all(&digest)?;
    let bytes = out.bytes + digest.len() as u64;
    let file = out.inner.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok((bytes, trees, entries))
}

/// One parsed item of a backup file.
enum Item {
    Tree(Vec<u8>),
    Entry(Vec<u8>, Vec<u8>),
}

/// Reads a backup file item by item, hashing as it goes.
struct Reader {
    input: BufReader<File>,
    hash: Sha256,
    path: PathBuf,
}

impl Reader {
    fn open(path: &Path) -> Result<Reader, BackupError> {
        let file = File::open(path).map_err(|e| io("cannot open", path, e))?;
        let mut r = Reader {
            input: BufReader::with_capacity(1 << 20, file),
            hash: Sha256::new(),
            path: path.to_path_buf(),
        };
        let mut magic = [0u8; 14];
        if r.input.read_exact(&mut magic).is_err() || &magic != MAGIC {
            return Err(BackupError::NotABackup(path.to_path_buf()));
        }
        r.hash.update(magic);
        let version = u32::from_be_bytes(r.array()?);
        if version != VERSION {
            return Err(r.damaged(format!("format version {version}, this Basalt reads {VERSION}")));
        }
        let _created: [u8; 8] = r.array()?;
        Ok(r)
    }

    fn damaged(&self, why: impl Into<String>) -> BackupError {
        BackupError::Damaged(self.path.clone(), why.into())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], BackupError> {
        let mut b = [0u8; N];
        self.input
            .read_exact(&mut b)
            .map_err(|_| self.damaged("it ends early"))?;
        self.hash.update(b);
        Ok(b)
    }

    fn bytes(&mut self) -> Result<Vec<u8>, BackupError> {
        let len = u32::from_be_bytes(self.array()?);
        if len > MAX_ITEM {
            return Err(self.damaged("an item is impossibly large"));
        }
        let mut b = vec![0u8; len as usize];
        self.input
            .read_exact(&mut b)
            .map_err(|_| self.damaged("it ends early"))?;
        self.hash.update(&b);
        Ok(b)
    }

    /// The next item; `None` after the digest (checked).
    fn next(&mut self) -> Result<Option<Item>, BackupError> {
        let [tag] = self.array::<1>()?;
        match tag {
            b'T' => Ok(Some(Item::Tree(self.bytes()?))),
            b'E' => {
                let k = self.bytes()?;
                let v = self.bytes()?;
                Ok(Some(Item::Entry(k, v)))
            }
            b'Z' => {
                let expected = self.hash.clone().finalize();
                let mut got = [0u8; 32];
                self.input
                    .read_exact(&mut got)
                    .map_err(|_| self.damaged("its checksum is missing"))?;
                if got[..] != expected[..] {
                    return Err(self.damaged("its checksum does not match"));
                }
                let mut rest = [0u8; 1];
                if self.input.read(&mut rest).unwrap_or(0) != 0 {
                    return Err(self.damaged("there are bytes after its end"));
                }
                Ok(None)
            }
            _ => Err(self.damaged("an unknown item")),
        }
    }
}

/// Checks a backup file end to end (structure and checksum) without
/// writing anything; returns its tree and entry counts.
pub fn verify(path: &Path) -> Result<(usize, u64), BackupError> {
    let mut r = Reader::open(path)?;
    let (mut trees, mut entries) = (0usize, 0u64);
    let mut in_tree = false;
    while let Some(item) = r.next()? {
        match item {
            Item::Tree(_) => {
                trees += 1;
                in_tree = true;
            }
            Item::Entry(..) if !in_tree => return Err(r.damaged("an entry outside any tree")),
            Item::Entry(..) => entries += 1,
        }
    }
    Ok((trees, entries))
}

/// Restores `backup` into `dir`, which must not hold a database yet. The
/// file is verified first; a failure half-way removes what was written.
pub fn restore(backup: &Path, dir: &Path) -> Result<BackupInfo, BackupError> {
    let db_dir = dir.join("db");
    if db_dir.exists() {
        return Err(BackupError::NotEmpty(dir.to_path_buf()));
    }
    let (trees, entries) = verify(backup)?;
    std::fs::create_dir_all(dir).map_err(|e| io("cannot create", dir, e))?;
    let result = (|| -> Result<(), BackupError> {
        let db = sled::Config::new()
            .path(&db_dir)
            .open()
            .map_err(|e| io("cannot open", &db_dir, e))?;
        let mut r = Reader::open(backup)?;
        let mut tree: Option<sled::Tree> = None;
        let mut batch = sled::Batch::default();
        let mut pending = 0usize;
        while let Some(item) = r.next()? {
            match item {
                Item::Tree(name) => {
                    if let Some(t) = &tree {
                        t.apply_batch(std::mem::take(&mut batch))
                            .map_err(|e| io("cannot write", &db_dir, e))?;
                        pending = 0;
                    }
                    tree = Some(db.open_tree(name).map_err(|e| io("cannot write", &db_dir, e))?);
                }
                Item::Entry(k, v) => {
                    batch.insert(k, v);
                    pending += 1;
                    if pending >= 10_000 {
                        if let Some(t) = &tree {
                            t.apply_batch(std::mem::take(&mut batch))
                                .map_err(|e| io("cannot write", &db_dir, e))?;
                        }
                        pending = 0;
                    }
                }
            }
        }
        if let Some(t) = &tree {
            t.apply_batch(batch).map_err(|e| io("cannot write", &db_dir, e))?;
        }
        db.flush().map_err(|e| io("cannot flush", &db_dir, e))?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&db_dir);
        return Err(e);
    }
    let bytes = std::fs::metadata(backup).map(|m| m.len()).unwrap_or(0);
    Ok(BackupInfo {
        path: backup.to_path_buf(),
        bytes,
        trees,
        entries,
    })
}
