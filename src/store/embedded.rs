//! The embedded engine: sled in the data dir. Reads go straight to sled
//! (lock-free, never waiting for writes); the writer commits each group as
//! one multi-tree sled transaction and the flusher fsyncs once per batch of
//! groups (see `writer.rs` and DESIGN.md for the measurements behind it).

use std::collections::{HashMap, HashSet};
use std::ops::Bound;

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::writer::{Backend, Durable, Overlay};
use super::{
    backup, decode_record, read_u64, records_tree, Change, IndexDef, IndexEntries, RawRecord, StoreError, StoredRecord,
    WriteError, PRIMARY_INDEX,
};

/// Values at least this large count as written out of line: sled writes a
/// log message over a quarter segment (~128 KiB; a leaf holds up to 16
/// values) to a blob file of its own and puts only a pointer in the log.
const LARGE_VALUE: usize = 64 * 1024;

/// After this many bytes of large values the writer moves sled's log on
/// to a new segment (see [`SledBackend::advance_log`]).
const ADVANCE_EVERY: u64 = 8 * 1024 * 1024;

/// The filler that moves the log on: this many inline writes of
/// [`PAD_VALUE`] bytes, more than one 512 KiB segment in all.
const PAD_WRITES: u8 = 6;
const PAD_VALUE: usize = 100 * 1024;

/// The tree the filler goes to (empty between groups; not backed up).
pub(super) const PAD_TREE: &str = "pad";

/// The read side: the database and the two trees every request reads.
pub(super) struct Sled {
    pub(super) db: sled::Db,
    pub(super) meta: sled::Tree,
    pub(super) changes: sled::Tree,
}

/// How long [`open_db`] waits for sled's own lock to be let go.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens a sled database, waiting (at most 5 s) for a database this
/// process closed a moment ago to let go of its lock.
///
/// sled holds an exclusive `flock` on `<path>/db` until the last of its IO
/// threads has dropped the file, which can be just *after* the last `Db`
/// handle is gone: a store stopped and opened again at once (a restore
/// followed by a start, a test server stopped before `store copy` reads its
/// dir) found it "in use" in CI. Callers have either taken the data dir's
/// own `LOCK` first (so no other Basalt process can hold sled's) or made
/// the directory themselves, so a lock still held here is a closing
/// handle, and waiting for it is bounded. sled gives no notification when
/// its threads end, hence a poll; and its own refusal is an `Other` error
/// known only by its text, hence the probe with a lock of our own first.
/// Still held after the wait: a `WouldBlock` error (a store in use).
pub(crate) fn open_db(config: sled::Config) -> sled::Result<sled::Db> {
    wait_unlocked(&config.path.join("db"))?;
    config.open()
}

#[cfg(unix)]
fn wait_unlocked(file: &std::path::Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let Ok(f) = std::fs::File::open(file) else {
        return Ok(()); // a new database: nothing can hold it
    };
    let deadline = std::time::Instant::now() + RELEASE_WAIT;
    // SAFETY: flock on a descriptor owned here; the lock it takes is let go
    // when `f` is closed on return, before sled takes its own.
    while unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        if std::time::Instant::now() >= deadline {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    Ok(())
}

#[cfg(not(unix))]
fn wait_unlocked(_file: &std::path::Path) -> std::io::Result<()> {
    Ok(())
}

fn storage(e: sled::Error) -> WriteError {
    WriteError::Storage(e.to_string())
}

impl Sled {
    fn tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree(name)?)
    }

    #[inline]
    pub(super) fn get(&self, collection_id: &str, id: &str) -> Result<Option<StoredRecord>, StoreError> {
        match self.tree(&records_tree(collection_id))?.get(id)? {
            Some(bytes) => Ok(Some(decode_record(&bytes)?)),
            None => Ok(None),
        }
    }

    #[inline]
    pub(super) fn get_raw(&self, collection_id: &str, id: &str) -> Result<Option<RawRecord>, StoreError> {
        Ok(self.tree(&records_tree(collection_id))?.get(id)?.map(RawRecord::sled))
    }

    pub(super) fn scan(
        &self,
        collection_id: &str,
        reverse: bool,
    ) -> Result<Box<dyn Iterator<Item = Result<StoredRecord, StoreError>> + Send>, StoreError> {
        let tree = self.tree(&records_tree(collection_id))?;
        let map = |kv: sled::Result<(sled::IVec, sled::IVec)>| match kv {
            Ok((_, v)) => decode_record(&v),
            Err(e) => Err(StoreError::from(e)),
        };
        Ok(if reverse {
            Box::new(tree.iter().rev().map(map))
        } else {
            Box::new(tree.iter().map(map))
        })
    }

    pub(super) fn index_range(
        &self,
        collection_id: &str,
        index: &IndexDef,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
        reverse: bool,
    ) -> Result<IndexEntries, StoreError> {
        let primary = index.name == PRIMARY_INDEX;
        let tree = if primary {
            self.tree(&records_tree(collection_id))?
        } else {
            self.tree(&index.tree(collection_id))?
        };
        let map = move |kv: sled::Result<(sled::IVec, sled::IVec)>| match kv {
            Ok((k, v)) => {
                // Ids are written by this store as ASCII; lossy only for a
                // damaged key, without a second copy when it is not.
                let raw = if primary { &k } else { &v };
                let id =
                    std::str::from_utf8(raw).map_or_else(|_| String::from_utf8_lossy(raw).into_owned(), str::to_owned);
                Ok((k.to_vec(), id))
            }
            Err(e) => Err(StoreError::from(e)),
        };
        let range = tree.range::<Vec<u8>, _>((lower, upper));
        Ok(if reverse {
            Box::new(range.rev().map(map))
        } else {
            Box::new(range.map(map))
        })
    }

    pub(super) fn unique_lookup(&self, tree: &str, key: Vec<u8>) -> Result<Option<String>, StoreError> {
        Ok(self
            .tree(tree)?
            .get(key)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Changes with `seq >= from` in seq order, undecoded.
    pub(super) fn changes_from(
        &self,
        from: u64,
    ) -> impl Iterator<Item = Result<(u64, Vec<u8>), StoreError>> + Send + 'static {
        self.changes.range(from.to_be_bytes()..).map(|kv| {
            let (k, v) = kv?;
            Ok((k.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0), v.to_vec()))
        })
    }

    pub(super) fn recent_changes(&self, scan: usize) -> Vec<Vec<u8>> {
        self.changes
            .iter()
            .rev()
            .take(scan)
            .map_while(|kv| kv.ok().map(|(_, v)| v.to_vec()))
            .collect()
    }

    pub(super) fn first_change_seq(&self) -> Option<u64> {
        let (k, _) = self.changes.first().ok()??;
        k.as_ref().try_into().ok().map(u64::from_be_bytes)
    }

    /// Every change-log entry's seq and value, oldest first.
    pub(super) fn each_change(&self, f: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<(), StoreError> {
        for kv in self.changes.iter() {
            let (k, v) = kv?;
            let seq = k.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0);
            if !f(seq, &v) {
                break;
            }
        }
        Ok(())
    }

    pub(super) fn recount_change_log_bytes(&self) -> Result<u64, StoreError> {
        let mut n = 0u64;
        for kv in self.changes.iter() {
            let (k, v) = kv?;
            n += (k.len() + v.len()) as u64;
        }
        Ok(n)
    }

    pub(super) fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(key)?.map(|v| v.to_vec()))
    }

    #[inline]
    pub(super) fn meta_u64(&self, key: &str) -> u64 {
        read_u64(self.meta.get(key).ok().flatten())
    }

    pub(super) fn meta_init(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        let _ = self.meta.compare_and_swap(key, None as Option<&[u8]>, Some(value))?;
        self.db.flush()?;
        Ok(self.meta.get(key)?.map(|v| v.to_vec()).unwrap_or_default())
    }

    pub(super) fn meta_scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.meta.scan_prefix(prefix) {
            let (k, v) = kv?;
            out.push((String::from_utf8_lossy(&k).into_owned(), v.to_vec()));
        }
        Ok(out)
    }

    pub(super) fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

/// Decodes a change-log value.
pub(super) fn decode_change(v: &[u8]) -> Result<Change, StoreError> {
    serde_json::from_slice::<Change>(v).map_err(|e| StoreError::Corrupt(format!("change JSON: {e}")))
}

/// The writer's side of the embedded engine.
pub(super) struct SledBackend {
    db: sled::Db,
    meta: sled::Tree,
    changes: sled::Tree,
    /// Open tree handles (sled caches them too, but this avoids the name lookup).
    trees: HashMap<String, sled::Tree>,
    /// Bytes of large values committed since the log last moved on.
    large_since_advance: u64,
}

impl SledBackend {
    pub(super) fn new(sled: &Sled) -> SledBackend {
        SledBackend {
            db: sled.db.clone(),
            meta: sled.meta.clone(),
            changes: sled.changes.clone(),
            trees: HashMap::new(),
            large_since_advance: 0,
        }
    }

    fn tree(&mut self, name: &str) -> Result<sled::Tree, WriteError> {
        if let Some(t) = self.trees.get(name) {
            return Ok(t.clone());
        }
        let t = match name {
            "meta" => self.meta.clone(),
            "changes" => self.changes.clone(),
            _ => self.db.open_tree(name).map_err(storage)?,
        };
        self.trees.insert(name.to_owned(), t.clone());
        Ok(t)
    }

    /// Moves sled's log on to a new segment, so the blob files of replaced
    /// large values are deleted.
    ///
    /// sled deletes a replaced blob only when the log segment in which the
    /// replacement was logged is sealed, and a segment is sealed when the
    /// log has filled it. A write of large values puts only pointers into
    /// the log, so while clients rewrite large records the open segment
    /// fills with a few hundred bytes per write, and the dead blobs of
    /// hundreds of writes pile up before it is sealed (measured: the data
    /// dir grew by ~3.9x the bytes written, linearly, with a 2 MiB change
    /// log). Writing a little more than one segment of inline filler every
    /// [`ADVANCE_EVERY`] bytes of large values (7% more written for such
    /// writes, nothing for ordinary records) seals it; the filler is
    /// removed at once and its segment space reclaimed like any garbage.
    fn advance_log(&mut self) {
        let result = self.tree(PAD_TREE).and_then(|pad| {
            for i in 0..PAD_WRITES {
                pad.insert(b"pad", vec![i; PAD_VALUE]).map_err(storage)?;
            }
            pad.remove(b"pad").map_err(storage)?;
            Ok(())
        });
        if let Err(e) = result {
            tracing::warn!(error = %e, "moving the log on failed; replaced blobs are deleted later");
        }
    }
}

/// The flusher's handle: one `flush()` (fsync) per batch of groups.
pub(super) struct SledDurable(sled::Db);

impl Durable for SledDurable {
    #[inline]
    fn sync(&self) -> Result<(), WriteError> {
        self.0.flush().map(|_| ()).map_err(storage)
    }
}

impl Backend for SledBackend {
    type Durable = SledDurable;
    const ACCEPTS_NUL: bool = true;

    fn durable(&self) -> SledDurable {
        SledDurable(self.db.clone())
    }

    #[inline]
    fn begin(&mut self) -> Result<Option<(u64, u64)>, WriteError> {
        // One process holds the data dir: the writer's figures are current.
        Ok(None)
    }

    #[inline]
    fn read(&mut self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, WriteError> {
        Ok(self.tree(tree)?.get(key).map_err(storage)?.map(|v| v.to_vec()))
    }

    fn oldest_changes(&mut self, f: &mut dyn FnMut(&[u8], u64) -> bool) -> Result<(), WriteError> {
        for kv in self.changes.iter() {
            let (k, v) = kv.map_err(storage)?;
            if !f(&k, (k.len() + v.len()) as u64) {
                break;
            }
        }
        Ok(())
    }

    /// One transaction over every touched tree (the flusher makes it durable).
    fn apply(&mut self, overlay: Overlay) -> Result<(), WriteError> {
        if overlay.is_empty() {
            return Ok(());
        }
        let mut trees = Vec::with_capacity(overlay.len());
        let mut batches = Vec::with_capacity(overlay.len());
        let mut large = 0u64;
        for (name, entries) in overlay {
            trees.push(self.tree(&name)?);
            let mut batch = sled::Batch::default();
            for (k, v) in entries {
                match v {
                    Some(v) => {
                        if v.len() >= LARGE_VALUE {
                            large += v.len() as u64;
                        }
                        batch.insert(k, v)
                    }
                    None => batch.remove(k),
                }
            }
            batches.push(batch);
        }
        let refs: Vec<&sled::Tree> = trees.iter().collect();
        refs.as_slice()
            .transaction(|tx| {
                for (t, b) in tx.iter().zip(&batches) {
                    t.apply_batch(b)?;
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                TransactionError::Abort(()) => WriteError::Storage("transaction aborted".into()),
                TransactionError::Storage(e) => storage(e),
            })?;
        self.large_since_advance += large;
        if self.large_since_advance >= ADVANCE_EVERY {
            self.large_since_advance = 0;
            self.advance_log();
        }
        Ok(())
    }

    fn drop_unreferenced(&mut self, live: &HashSet<String>, only: Option<&HashSet<String>>) {
        for name in self.db.tree_names() {
            let name = String::from_utf8_lossy(&name).into_owned();
            let owner = name
                .strip_prefix("rec/")
                .or_else(|| name.strip_prefix("idx/").and_then(|r| r.split('/').next()));
            let Some(owner) = owner else { continue };
            if only.is_some_and(|o| !o.contains(owner)) || live.contains(&name) {
                continue;
            }
            self.trees.remove(&name);
            if let Err(e) = self.db.drop_tree(name.as_bytes()) {
                tracing::warn!(tree = %name, error = %e, "dropping an unused tree failed; it is retried at next start");
            }
        }
    }

    fn snapshot(&mut self, job: backup::SnapshotJob) {
        job(&mut SledSource(&self.db));
    }

    fn close(&mut self) {
        if let Err(e) = self.db.flush() {
            tracing::error!(error = %e, "final flush failed");
        }
    }
}

/// Every tree of the database, for a snapshot taken between two groups
/// (and for tests that snapshot a bare sled database).
pub(crate) struct SledSource<'a>(pub(crate) &'a sled::Db);

impl backup::Source for SledSource<'_> {
    fn tree_names(&mut self) -> std::io::Result<Vec<Vec<u8>>> {
        Ok(self.0.tree_names().into_iter().map(|n| n.to_vec()).collect())
    }

    fn entries(&mut self, tree: &[u8], f: &mut backup::Sink) -> std::io::Result<()> {
        let tree = self.0.open_tree(tree).map_err(std::io::Error::other)?;
        for kv in tree.iter() {
            let (k, v) = kv.map_err(std::io::Error::other)?;
            f(&k, &v)?;
        }
        Ok(())
    }
}
