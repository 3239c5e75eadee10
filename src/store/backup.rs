//! Backups of the store: a consistent snapshot of every tree, written into
//! a stream, and restoring one into a new database directory.
//!
//! A snapshot is taken by the writer thread between two commit groups
//! (see `writer.rs`), so it holds exactly the writes committed before it and
//! none after: writes wait while it is written (they queue, nothing is
//! refused unless the queue fills). The request log (`logs`) is left out: it
//! is not data, and it is written outside the writer.
//!
//! Snapshot format (version 1), all integers big-endian:
//! `MAGIC ++ version u32 ++ created ms u64`, then per tree
//! `b'T' ++ name len u32 ++ name` and its entries
//! `b'E' ++ key len u32 ++ key ++ value len u32 ++ value`, then
//! `b'Z' ++ sha256 of everything before the digest`. A snapshot ends with its
//! digest, so it can be embedded in a larger file: the readers here stop
//! right after it and leave what follows to their caller (`core::backups`
//! writes backup files that hold a snapshot and more; backups made before
//! that are a bare snapshot).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The first bytes of every snapshot (and of every backup file).
pub const MAGIC: &[u8; 14] = b"BASALT-BACKUP\n";
/// The snapshot format's version. (A backup file whose header carries
/// another number is not a bare snapshot: see `core::backups`.)
pub const VERSION: u32 = 1;
/// Trees not backed up (the request log; the writer's filler, empty).
const SKIP: &[&str] = &["logs", super::embedded::PAD_TREE];
/// Largest key or value accepted when reading (sled's own limit is far
/// above any Basalt record; this only stops a corrupt length early).
const MAX_ITEM: u32 = 256 * 1024 * 1024;

/// What a snapshot holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
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
    /// Well-formed, but asks for something a restore must not do (a path
    /// out of the data dir, more bytes than the file holds).
    #[error("{0} is refused ({1}); nothing was restored")]
    Refused(PathBuf, String),
}

fn io(what: &str, path: &Path, e: impl std::fmt::Display) -> BackupError {
    BackupError::Io(format!("{what} {}: {e}", path.display()))
}

/// A writer that hashes everything it writes.
struct Hashing<'a, W: Write> {
    inner: &'a mut W,
    hash: Sha256,
}

impl<W: Write> Write for Hashing<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Receives a snapshot's entries, `(key, value)`, one tree at a time.
pub type Sink<'a> = dyn FnMut(&[u8], &[u8]) -> std::io::Result<()> + 'a;

/// A snapshot job: gets the engine's committed state (see [`Source`]).
pub type SnapshotJob = Box<dyn FnOnce(&mut dyn Source) + Send>;

/// A consistent view of an engine's committed state in the embedded
/// layout's trees (what a snapshot holds, whichever engine wrote it).
pub trait Source {
    /// The trees, in any order.
    fn tree_names(&mut self) -> std::io::Result<Vec<Vec<u8>>>;
    /// Calls `f(key, value)` for every entry of `tree`.
    fn entries(&mut self, tree: &[u8], f: &mut Sink) -> std::io::Result<()>;
}

/// Writes a whole snapshot of `db` into `out` (header to digest). Call it
/// only where no write can happen meanwhile (the writer thread). The caller
/// owns `out`: flushing, syncing and naming the file are its business.
pub fn write_into<W: Write>(db: &mut dyn Source, out: &mut W, created_ms: i64) -> std::io::Result<Counts> {
    let mut out = Hashing {
        inner: out,
        hash: Sha256::new(),
    };
    out.write_all(MAGIC)?;
    out.write_all(&VERSION.to_be_bytes())?;
    out.write_all(&created_ms.to_be_bytes())?;
    let mut counts = Counts::default();
    for name in db.tree_names()? {
        if SKIP.iter().any(|s| s.as_bytes() == name.as_slice()) {
            continue;
        }
        out.write_all(b"T")?;
        out.write_all(&(name.len() as u32).to_be_bytes())?;
        out.write_all(&name)?;
        counts.trees += 1;
        db.entries(&name, &mut |k, v| {
            out.write_all(b"E")?;
            out.write_all(&(k.len() as u32).to_be_bytes())?;
            out.write_all(k)?;
            out.write_all(&(v.len() as u32).to_be_bytes())?;
            out.write_all(v)?;
            counts.entries += 1;
            Ok(())
        })?;
    }
    // The digest covers everything up to and including the end tag.
    out.write_all(b"Z")?;
    let digest = out.hash.clone().finalize();
    out.inner.write_all(&digest)?;
    Ok(counts)
}

/// One parsed item of a snapshot.
enum Item {
    Tree(Vec<u8>),
    Entry(Vec<u8>, Vec<u8>),
}

/// Reads a snapshot item by item from the caller's stream, hashing as it
/// goes; it reads nothing past the snapshot's digest.
struct Reader<'a, R: Read> {
    input: &'a mut R,
    hash: Sha256,
    /// The backup file, for messages.
    path: PathBuf,
}

impl<'a, R: Read> Reader<'a, R> {
    fn open(input: &'a mut R, path: &Path) -> Result<Self, BackupError> {
        let mut r = Reader {
            input,
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
        let mut b = Vec::new();
        // `take` + `read_to_end`: memory grows with the bytes that are really
        // there, not with a length a damaged file claims.
        let got = (&mut *self.input)
            .take(u64::from(len))
            .read_to_end(&mut b)
            .map_err(|e| self.damaged(format!("it cannot be read: {e}")))?;
        if got != len as usize {
            return Err(self.damaged("it ends early"));
        }
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
                Ok(None)
            }
            _ => Err(self.damaged("an unknown item")),
        }
    }
}

/// Checks the snapshot `input` is positioned at, end to end (structure and
/// checksum), writing nothing; `path` names the backup in messages. The
/// stream is left right after the snapshot.
pub fn verify_from<R: Read>(input: &mut R, path: &Path) -> Result<Counts, BackupError> {
    read_entries(input, path, &mut |_, _, _| Ok(()))
}

/// Receives a snapshot's entries as they are read: `(tree, key, value)`.
pub type EntrySink<'a> = dyn FnMut(&[u8], Vec<u8>, Vec<u8>) -> Result<(), BackupError> + 'a;

/// Reads the snapshot `input` is positioned at and hands every entry to
/// `f` with its tree. The checksum is checked at the end only: a caller
/// that writes what it gets must be able to undo it (a transaction) or
/// verify the snapshot first. The stream is left right after the snapshot.
pub fn read_entries<R: Read>(input: &mut R, path: &Path, f: &mut EntrySink) -> Result<Counts, BackupError> {
    let mut r = Reader::open(input, path)?;
    let mut counts = Counts::default();
    let mut tree: Option<Vec<u8>> = None;
    while let Some(item) = r.next()? {
        match item {
            Item::Tree(name) => {
                counts.trees += 1;
                tree = Some(name);
            }
            Item::Entry(k, v) => match &tree {
                None => return Err(r.damaged("an entry outside any tree")),
                Some(t) => {
                    counts.entries += 1;
                    f(t, k, v)?;
                }
            },
        }
    }
    Ok(counts)
}

/// Restores the snapshot `input` is positioned at into a new database at
/// `db_dir` (which must not exist). Verify first ([`verify_from`]): this
/// checks as it goes, but has written by the time it finds damage; then it
/// removes `db_dir` again. The stream is left right after the snapshot.
pub fn restore_from<R: Read>(input: &mut R, path: &Path, db_dir: &Path) -> Result<Counts, BackupError> {
    if db_dir.exists() {
        return Err(BackupError::NotEmpty(db_dir.parent().unwrap_or(db_dir).to_path_buf()));
    }
    let result = (|| -> Result<Counts, BackupError> {
        let db =
            super::embedded::open_db(sled::Config::new().path(db_dir)).map_err(|e| io("cannot open", db_dir, e))?;
        let mut r = Reader::open(input, path)?;
        let mut counts = Counts::default();
        let mut tree: Option<sled::Tree> = None;
        let mut batch = sled::Batch::default();
        let mut pending = 0usize;
        let apply = |tree: &Option<sled::Tree>, batch: &mut sled::Batch| match tree {
            Some(t) => t
                .apply_batch(std::mem::take(batch))
                .map_err(|e| io("cannot write", db_dir, e)),
            None => Ok(()),
        };
        while let Some(item) = r.next()? {
            match item {
                Item::Tree(name) => {
                    apply(&tree, &mut batch)?;
                    pending = 0;
                    counts.trees += 1;
                    tree = Some(db.open_tree(name).map_err(|e| io("cannot write", db_dir, e))?);
                }
                Item::Entry(..) if tree.is_none() => return Err(r.damaged("an entry outside any tree")),
                Item::Entry(k, v) => {
                    batch.insert(k, v);
                    counts.entries += 1;
                    pending += 1;
                    if pending >= 10_000 {
                        apply(&tree, &mut batch)?;
                        pending = 0;
                    }
                }
            }
        }
        apply(&tree, &mut batch)?;
        db.flush().map_err(|e| io("cannot flush", db_dir, e))?;
        Ok(counts)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(db_dir);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db_with(entries: &[(&str, &str)]) -> (tempfile::TempDir, sled::Db) {
        let tmp = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(tmp.path().join("db")).open().unwrap();
        let t = db.open_tree("records").unwrap();
        for (k, v) in entries {
            t.insert(k, *v).unwrap();
        }
        (tmp, db)
    }

    #[test]
    fn a_snapshot_embedded_in_a_stream_reads_back_and_stops_at_its_end() {
        let (tmp, db) = db_with(&[("a", "1"), ("b", "2")]);
        let mut buf = b"before".to_vec();
        let counts = write_into(&mut super::super::embedded::SledSource(&db), &mut buf, 7).unwrap();
        buf.extend_from_slice(b"after");
        let name = Path::new("x.backup");
        let mut input = &buf[6..];
        assert_eq!(verify_from(&mut input, name).unwrap(), counts);
        assert_eq!(input, b"after");
        let mut input = &buf[6..];
        let target = tmp.path().join("restored");
        assert_eq!(restore_from(&mut input, name, &target).unwrap(), counts);
        assert_eq!(input, b"after");
        let copy = super::super::embedded::open_db(sled::Config::new().path(&target)).unwrap();
        assert_eq!(copy.open_tree("records").unwrap().get("b").unwrap().unwrap(), "2");
    }

    #[test]
    fn damage_is_named_and_a_half_restore_is_removed() {
        let (tmp, db) = db_with(&[("a", "1")]);
        let mut buf = Vec::new();
        write_into(&mut super::super::embedded::SledSource(&db), &mut buf, 7).unwrap();
        let n = buf.len();
        buf[n - 40] ^= 0xff;
        let name = Path::new("x.backup");
        let err = verify_from(&mut &buf[..], name).unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
        let target = tmp.path().join("restored");
        assert!(restore_from(&mut &buf[..], name, &target).is_err());
        assert!(!target.exists());
        // A length far beyond the bytes there: refused without allocating it.
        let mut huge = buf[..18 + 8].to_vec();
        huge.extend_from_slice(b"T");
        huge.extend_from_slice(&(MAX_ITEM - 1).to_be_bytes());
        let err = verify_from(&mut &huge[..], name).unwrap_err().to_string();
        assert!(err.contains("ends early"), "{err}");
    }
}
