//! The document store: records, secondary indexes, the change log and
//! collection metadata on sled, behind Basalt's own types.
//!
//! Nothing of sled leaks out of this module, so a second engine (PostgreSQL +
//! NATS for scale-out) can replace it without touching handlers.
//!
//! Layout (sled trees):
//! - `meta`: `coll/<id>` → collection JSON, `count/<id>` → u64 record count,
//!   `seq` → u64 head sequence number, `secret` → server signing secret,
//!   `settings` → settings JSON.
//! - `rec/<collection id>`: record id → `rev (u64 BE) ++ record JSON`, where
//!   `rev` is the `seq` of the record's last write (used for optimistic
//!   concurrency on updates).
//! - `idx/<collection id>/<index name>`: see [`index`].
//! - `changes`: `seq (u64 BE)` → [`Change`] JSON, bounded by age, count
//!   and bytes: `meta` `changes/bytes` holds the bytes it takes (keys +
//!   values), kept by the writer in the same transactions, and the writer
//!   trims the oldest entries in every group that ends over the budget.
//! - `logs`: the request log, written by its own thread (see [`logs`]).
//!
//! Reads go straight to sled (lock-free, never wait for writes). Every write
//! goes through the single [`writer`] thread, which commits groups atomically
//! and fsyncs once per group before anyone is answered.

pub mod backup;
pub mod index;
pub mod logs;
pub mod meta;
mod writer;

use std::fs::File;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{broadcast, oneshot};

pub use index::IndexDef;
use writer::{Job, Writer};

/// The name under which the primary tree (records by id) is offered to the
/// planner as an index on `id`.
pub const PRIMARY_INDEX: &str = "_id";

/// How many jobs may wait for the writer. Beyond this a write is refused with
/// [`WriteError::Overloaded`] (503) instead of queueing without bound: memory
/// stays bounded and clients learn to back off.
const WRITE_QUEUE: usize = 8192;

/// The change log's byte budget until the settings set one (the default
/// of `realtime.maxBytes`).
pub const DEFAULT_CHANGE_BUDGET: u64 = 128 * 1024 * 1024;

/// How many changes the realtime hub buffers for slow subscribers before they
/// lag (they then resync from the change log).
const HUB_CAPACITY: usize = 16_384;

/// Errors from opening or reading the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("data dir {0} is already in use by another process")]
    Locked(PathBuf),
    #[error("storage error: {0}")]
    Io(String),
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// A change-log replay found its next entry trimmed away (retention ran
    /// while it was reading): the reader must resync instead of going on
    /// with a gap.
    #[error("the change log was trimmed past seq {0} during the replay")]
    Trimmed(u64),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

/// Why a write was not committed. Each variant is a client-visible outcome,
/// except `Storage`, which means the disk failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error("the collection does not exist")]
    NoCollection,
    #[error("the record does not exist")]
    NotFound,
    #[error("a record with this id already exists")]
    IdTaken,
    /// A [`WriteOp::RequireAbsent`] found the id in another collection.
    #[error("the id is used by a record of another collection")]
    IdInUse,
    #[error("value must be unique (index {index})")]
    NotUnique { index: String, fields: Vec<String> },
    #[error("the record changed concurrently")]
    Conflict,
    #[error("the write queue is full")]
    Overloaded,
    #[error("the store is shutting down")]
    ShuttingDown,
    #[error("storage failure: {0}")]
    Storage(String),
}

/// What a write expects of the record's current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Create: the id must be free.
    Absent,
    /// Update/delete: the record must exist at exactly this revision.
    Rev(u64),
    /// Upsert/delete without a concurrency check; the record must exist for a delete.
    Any,
}

/// The parts of a collection the store needs to write its records.
#[derive(Debug, Clone)]
pub struct CollectionSpec {
    pub id: String,
    pub name: String,
    pub indexes: Vec<IndexDef>,
}

/// One operation inside an atomic write job.
///
/// Record ops name their collection by id only: the writer holds the
/// authoritative index set of every collection (updated by `PutCollection`
/// when it commits), so a write always maintains exactly the indexes that
/// exist at its commit, even if the handler saw an older definition.
#[derive(Debug, Clone)]
pub enum WriteOp {
    PutRecord {
        collection_id: String,
        id: String,
        data: Value,
        expect: Expect,
    },
    DeleteRecord {
        collection_id: String,
        id: String,
        expect: Expect,
    },
    /// Creates or replaces a collection definition (and its index set).
    PutCollection { spec: Arc<CollectionSpec>, def: Value },
    /// Removes a collection, its records and its index trees.
    DeleteCollection { id: String },
    /// Writes the entries of one index for existing records (index builds).
    /// Records that no longer exist are skipped; a unique clash fails the job.
    IndexRecords {
        collection_id: String,
        index: String,
        ids: Vec<String>,
    },
    /// Removes change-log entries with `seq <= up_to` (at most a bounded
    /// number per job; retention calls it until done).
    TrimChanges { up_to: u64 },
    /// Sets a `meta` key (settings); `None` removes it.
    PutMeta { key: String, value: Option<Vec<u8>> },
    /// Writes nothing; fails the job with [`WriteError::IdInUse`] if a
    /// record `id` exists in any of these collections as the job leaves
    /// them (ops before it included; collections that are gone are
    /// skipped). Put after the op that creates the record, it makes an id
    /// unique across several collections (auth records, as PocketBase)
    /// with no window between check and commit.
    RequireAbsent { collection_ids: Vec<String>, id: String },
}

/// What a committed operation produced.
#[derive(Debug, Clone)]
pub enum Committed {
    /// `json` is `data` as stored (serialised once by the writer).
    Record {
        seq: u64,
        rev: u64,
        data: Value,
        json: Arc<[u8]>,
    },
    Deleted {
        seq: u64,
        last: Value,
    },
    Trimmed {
        removed: u64,
    },
    Done,
}

/// A record change as the change log and the realtime hub carry it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Change {
    pub seq: u64,
    pub action: Action,
    #[serde(rename = "collectionId")]
    pub collection_id: String,
    #[serde(rename = "collectionName")]
    pub collection_name: String,
    /// The record after the write; for a delete, its last state.
    pub record: Value,
    /// Commit time, milliseconds since the epoch (for retention).
    pub ts: i64,
    /// The record serialised once, shared by every subscriber that may see
    /// it unchanged (filled lazily by the realtime layer).
    #[serde(skip)]
    pub record_json: std::sync::OnceLock<Vec<u8>>,
}

impl Change {
    /// The record as JSON bytes, serialised on first use.
    pub fn record_bytes(&self) -> &[u8] {
        self.record_json
            .get_or_init(|| serde_json::to_vec(&self.record).expect("serialize JSON value"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Delete,
}

/// A stored record as bytes: read without parsing, for answers that can
/// be spliced from the stored JSON.
pub struct RawRecord(sled::IVec);

impl RawRecord {
    /// The record JSON, as the writer serialised it.
    pub fn json(&self) -> &[u8] {
        self.0.get(8..).unwrap_or_default()
    }
}

/// A stored record and its revision.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub rev: u64,
    pub data: Value,
}

/// `(raw index key, record id)` pairs from an index walk.
pub type IndexEntries = Box<dyn Iterator<Item = Result<(Vec<u8>, String), StoreError>> + Send>;

/// Cheap-clone handle to the store (mini-redis style `Db { shared }`).
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

/// A handle that does not keep the store open: background tasks that live
/// as long as the process hold this, so stopping the server releases the
/// data dir (its locks) even while they sleep.
#[derive(Clone)]
pub struct WeakStore(std::sync::Weak<Shared>);

impl WeakStore {
    /// The store, if it is still open.
    pub fn upgrade(&self) -> Option<Store> {
        self.0.upgrade().map(|shared| Store { shared })
    }
}

struct Shared {
    db: sled::Db,
    meta: sled::Tree,
    changes: sled::Tree,
    /// Std `SyncSender`: the writer is a plain thread (it blocks on fsync), and
    /// `try_send` lets async handlers enqueue without blocking the runtime.
    jobs: SyncSender<Job>,
    writer: Mutex<Option<JoinHandle<()>>>,
    hub: broadcast::Sender<Arc<Change>>,
    /// The change log's byte budget and committed byte total, shared with
    /// the writer (which enforces the one and keeps the other).
    change_log: Arc<ChangeLogBytes>,
    /// The request log (its own tree and thread; not part of transactions).
    logs: logs::RequestLog,
    /// Held for the store's lifetime: an OS lock on `<dir>/LOCK` so a second
    /// process gets a clear message instead of sled's internal error.
    _lock: File,
}

/// The change log's size and budget, in bytes (keys + values).
pub(crate) struct ChangeLogBytes {
    pub(crate) budget: AtomicU64,
    pub(crate) total: AtomicU64,
}

/// A name under a prefix (`rec/<id>`, `count/<id>`) without `format!`'s
/// machinery: these are built for every record read (profiled at ~4% of a
/// list's instructions through `format!`).
fn prefixed(prefix: &str, id: &str) -> String {
    let mut name = String::with_capacity(prefix.len() + id.len());
    name.push_str(prefix);
    name.push_str(id);
    name
}

pub(crate) fn records_tree(collection_id: &str) -> String {
    prefixed("rec/", collection_id)
}

pub(crate) fn decode_record(bytes: &[u8]) -> Result<StoredRecord, StoreError> {
    if bytes.len() < 8 {
        return Err(StoreError::Corrupt("record shorter than its header".into()));
    }
    let rev = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
    let data = serde_json::from_slice(&bytes[8..]).map_err(|e| StoreError::Corrupt(format!("record JSON: {e}")))?;
    Ok(StoredRecord { rev, data })
}

pub(crate) fn encode_record(rev: u64, data: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&rev.to_be_bytes());
    // Serialising a serde_json::Value into a Vec cannot fail.
    serde_json::to_writer(&mut out, data).expect("serialize JSON value");
    out
}

fn read_u64(v: Option<sled::IVec>) -> u64 {
    v.and_then(|b| b.as_ref().try_into().ok().map(u64::from_be_bytes))
        .unwrap_or(0)
}

impl Store {
    /// Opens (creating if needed) the store in `dir` and starts its writer.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)?;
        restrict_permissions(dir, 0o700);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))?;
        if lock.try_lock().is_err() {
            return Err(StoreError::Locked(dir.to_path_buf()));
        }
        // sled holds a lock of its own, which a store closed a moment ago in
        // this process can still hold (its background threads let go last):
        // that too is a data dir in use, not a storage failure.
        let db = match sled::Config::new()
            .path(dir.join("db"))
            .cache_capacity(256 * 1024 * 1024)
            .open()
        {
            Err(sled::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(StoreError::Locked(dir.to_path_buf()))
            }
            opened => opened?,
        };
        let meta = db.open_tree("meta")?;
        let changes = db.open_tree("changes")?;
        index::migrate_key_format(&db, &meta)?;
        // The head seq is kept in meta (the change log may be trimmed), but
        // trust the log's last key if it is ahead (it is written in the same
        // transaction, so they agree unless meta was lost).
        let mut head = read_u64(meta.get(meta::SEQ)?);
        if let Some((k, _)) = changes.last()? {
            if let Ok(b) = k.as_ref().try_into() {
                head = head.max(u64::from_be_bytes(b));
            }
        }
        // The log's byte total is kept in meta; a data dir from before it
        // was kept is counted once here (the writer stores it with its next
        // group).
        let bytes = match meta.get(meta::CHANGE_BYTES)? {
            Some(v) => read_u64(Some(v)),
            None => {
                let mut n = 0u64;
                for kv in changes.iter() {
                    let (k, v) = kv?;
                    n += (k.len() + v.len()) as u64;
                }
                n
            }
        };
        let change_log = Arc::new(ChangeLogBytes {
            budget: AtomicU64::new(DEFAULT_CHANGE_BUDGET),
            total: AtomicU64::new(bytes),
        });
        let logs = logs::RequestLog::open(&db)?;
        let (hub, _) = broadcast::channel(HUB_CAPACITY);
        let (jobs, rx) = mpsc::sync_channel(WRITE_QUEUE);
        let writer = Writer::new(
            db.clone(),
            meta.clone(),
            changes.clone(),
            head,
            hub.clone(),
            change_log.clone(),
        );
        let handle = std::thread::Builder::new()
            .name("basalt-writer".into())
            .spawn(move || writer.run(rx))?;
        let store = Store {
            shared: Arc::new(Shared {
                db,
                meta,
                changes,
                jobs,
                writer: Mutex::new(Some(handle)),
                hub,
                change_log,
                logs,
                _lock: lock,
            }),
        };
        Ok(store)
    }

    /// Tells the writer the index set of every collection (once, at start,
    /// after the collections are loaded). The writer also drops trees no
    /// collection references (left over when a crash hit between a delete's
    /// commit and its cleanup).
    pub async fn set_specs(&self, specs: Vec<Arc<CollectionSpec>>) -> Result<(), WriteError> {
        let (reply, rx) = oneshot::channel();
        self.shared
            .jobs
            .send(Job::SetSpecs { specs, reply })
            .map_err(|_| WriteError::ShuttingDown)?;
        rx.await.unwrap_or(Err(WriteError::ShuttingDown)).map(|_| ())
    }

    /// Submits an atomic job (all ops commit together or none do) and waits
    /// until it is durable on disk.
    pub async fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<Committed>, WriteError> {
        let (reply, rx) = oneshot::channel();
        match self.shared.jobs.try_send(Job::Write { ops, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(WriteError::Overloaded),
            Err(TrySendError::Disconnected(_)) => return Err(WriteError::ShuttingDown),
        }
        rx.await.unwrap_or(Err(WriteError::ShuttingDown))
    }

    /// Writes a consistent snapshot into `out` (see [`backup`]) and hands
    /// `out` back: taken by the writer between two commit groups, so it
    /// holds every write committed before this call and none after; writes
    /// wait meanwhile. The caller flushes and syncs `out`.
    pub async fn backup_into<W: std::io::Write + Send + 'static>(
        &self,
        mut out: W,
    ) -> Result<(W, backup::Counts), backup::BackupError> {
        let (reply, rx) = oneshot::channel();
        let snapshot = move |db: &sled::Db| {
            let result = backup::write_into(db, &mut out, crate::clock::now_millis());
            let _ = reply.send(result.map(|counts| (out, counts)));
        };
        let shutting_down = || backup::BackupError::Io("the store is shutting down".into());
        self.shared
            .jobs
            .send(Job::Backup(Box::new(snapshot)))
            .map_err(|_| shutting_down())?;
        rx.await
            .map_err(|_| shutting_down())?
            .map_err(|e| backup::BackupError::Io(format!("cannot write the snapshot: {e}")))
    }

    /// Stops the writer after it has committed everything queued before this
    /// call, then flushes. Later writes fail with `ShuttingDown`.
    pub fn shutdown(&self) {
        let _ = self.shared.jobs.send(Job::Shutdown);
        if let Some(h) = self.shared.writer.lock().ok().and_then(|mut g| g.take()) {
            let _ = h.join();
        }
        self.shared.logs.stop();
        let _ = self.shared.db.flush();
    }

    /// The request log.
    pub fn logs(&self) -> &logs::RequestLog {
        &self.shared.logs
    }

    /// A non-owning handle (see [`WeakStore`]).
    pub fn downgrade(&self) -> WeakStore {
        WeakStore(Arc::downgrade(&self.shared))
    }

    /// Subscribes to committed changes, in seq order, after they are durable.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.shared.hub.subscribe()
    }

    /// The seq of the newest committed change.
    pub fn head_seq(&self) -> u64 {
        read_u64(self.shared.meta.get(meta::SEQ).ok().flatten())
    }

    /// Reads a `meta` key.
    pub fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.shared.meta.get(key)?.map(|v| v.to_vec()))
    }

    /// Sets a `meta` key only if absent (used once, for the server secret);
    /// returns the value that is stored afterwards. Durable before returning.
    pub fn meta_init(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        let _ = self
            .shared
            .meta
            .compare_and_swap(key, None as Option<&[u8]>, Some(value))?;
        self.shared.db.flush()?;
        Ok(self.shared.meta.get(key)?.map(|v| v.to_vec()).unwrap_or_default())
    }

    /// `meta` keys starting with `prefix`.
    pub fn meta_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for kv in self.shared.meta.scan_prefix(prefix) {
            let (k, _) = kv?;
            out.push(String::from_utf8_lossy(&k).into_owned());
        }
        Ok(out)
    }

    /// All collection definitions as stored.
    pub fn collections(&self) -> Result<Vec<Value>, StoreError> {
        let mut out = Vec::new();
        for kv in self.shared.meta.scan_prefix(meta::COLLECTION_PREFIX) {
            let (_, v) = kv?;
            out.push(serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt(format!("collection JSON: {e}")))?);
        }
        Ok(out)
    }

    /// The number of records in a collection (kept by the writer, O(1)).
    pub fn count(&self, collection_id: &str) -> u64 {
        read_u64(self.shared.meta.get(meta::count(collection_id)).ok().flatten())
    }

    fn tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        Ok(self.shared.db.open_tree(name)?)
    }

    /// One record by id.
    pub fn get(&self, collection_id: &str, id: &str) -> Result<Option<StoredRecord>, StoreError> {
        match self.tree(&records_tree(collection_id))?.get(id)? {
            Some(bytes) => Ok(Some(decode_record(&bytes)?)),
            None => Ok(None),
        }
    }

    /// One record by id, unparsed.
    pub fn get_raw(&self, collection_id: &str, id: &str) -> Result<Option<RawRecord>, StoreError> {
        Ok(self.tree(&records_tree(collection_id))?.get(id)?.map(RawRecord))
    }

    /// Iterates a collection's records in id order, optionally in reverse.
    pub fn scan(
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

    /// Walks an index between raw key bounds, yielding `(key, record id)`.
    /// For the pseudo-index `_id` the primary tree is walked (keys are ids).
    pub fn index_range(
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

    /// Looks up a record id by the exact key of a unique index.
    pub fn unique_lookup(
        &self,
        collection_id: &str,
        index: &IndexDef,
        values: &[&Value],
    ) -> Result<Option<String>, StoreError> {
        let key = index.key_of_values(values);
        let tree = self.tree(&index.tree(collection_id))?;
        Ok(tree.get(key)?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Changes with `seq > after`, oldest first, without a gap: seqs are
    /// consecutive, so when the next one is missing (trimmed before or
    /// while this reads) the iterator yields [`StoreError::Trimmed`] and
    /// ends, and the reader must resync.
    pub fn changes_since(&self, after: u64) -> impl Iterator<Item = Result<Change, StoreError>> + Send {
        let mut next = after.saturating_add(1);
        let mut done = false;
        self.shared.changes.range(next.to_be_bytes()..).map_while(move |kv| {
            if done {
                return None;
            }
            let item = kv.map_err(StoreError::from).and_then(|(k, v)| {
                let seq = k.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0);
                if seq != next {
                    return Err(StoreError::Trimmed(next));
                }
                serde_json::from_slice::<Change>(&v).map_err(|e| StoreError::Corrupt(format!("change JSON: {e}")))
            });
            match &item {
                Ok(_) => next += 1,
                Err(_) => done = true,
            }
            Some(item)
        })
    }

    /// The newest retained changes (newest first) for which `keep` holds,
    /// at most `limit` of them, looking at no more than `scan` entries (the
    /// dashboard's live feed shows recent history without reading the whole
    /// log).
    pub fn recent_changes(&self, limit: usize, scan: usize, keep: impl Fn(&Change) -> bool) -> Vec<Change> {
        let mut out = Vec::new();
        for kv in self.shared.changes.iter().rev().take(scan) {
            let Ok((_, v)) = kv else { break };
            let Ok(change) = serde_json::from_slice::<Change>(&v) else {
                continue;
            };
            if keep(&change) {
                out.push(change);
                if out.len() >= limit {
                    break;
                }
            }
        }
        out
    }

    /// The oldest retained change's seq, if any.
    pub fn first_change_seq(&self) -> Option<u64> {
        let (k, _) = self.shared.changes.first().ok()??;
        k.as_ref().try_into().ok().map(u64::from_be_bytes)
    }

    /// The seq of the last change committed before `ts` (ms), scanning from
    /// the oldest (used by retention; stops at the first newer entry).
    pub fn last_change_before(&self, ts: i64) -> Option<u64> {
        /// Only the commit time: the record is skipped, not built.
        #[derive(Deserialize)]
        struct Stamp {
            ts: i64,
        }
        let mut last = None;
        for kv in self.shared.changes.iter() {
            let (k, v) = kv.ok()?;
            let change: Stamp = serde_json::from_slice(&v).ok()?;
            if change.ts >= ts {
                break;
            }
            last = k.as_ref().try_into().ok().map(u64::from_be_bytes);
        }
        last
    }

    /// Sets the change log's byte budget: the writer trims the oldest
    /// entries in every group that ends over it.
    pub fn set_change_budget(&self, bytes: u64) {
        self.shared.change_log.budget.store(bytes.max(1), Ordering::Relaxed);
    }

    /// The change log's byte budget.
    pub fn change_budget(&self) -> u64 {
        self.shared.change_log.budget.load(Ordering::Relaxed)
    }

    /// The bytes (keys + values) the retained change log takes, as of the
    /// last commit.
    pub fn change_log_bytes(&self) -> u64 {
        self.shared.change_log.total.load(Ordering::Relaxed)
    }

    /// The change log's bytes counted entry by entry (walks the whole log:
    /// for checks and tests; [`Store::change_log_bytes`] is the kept total).
    pub fn recount_change_log_bytes(&self) -> Result<u64, StoreError> {
        let mut n = 0u64;
        for kv in self.shared.changes.iter() {
            let (k, v) = kv?;
            n += (k.len() + v.len()) as u64;
        }
        Ok(n)
    }

    /// Approximate bytes on disk (for the dashboard and benchmarks).
    pub fn size_on_disk(&self) -> u64 {
        self.shared.db.size_on_disk().unwrap_or(0)
    }
}

/// Best effort: the data dir holds the signing secret and password hashes.
fn restrict_permissions(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    impl Store {
        /// [`Store::write`] from a plain test thread.
        fn write_blocking(&self, ops: Vec<WriteOp>) -> Result<Vec<Committed>, WriteError> {
            let (reply, rx) = oneshot::channel();
            self.shared
                .jobs
                .send(Job::Write { ops, reply })
                .map_err(|_| WriteError::ShuttingDown)?;
            rx.blocking_recv().unwrap_or(Err(WriteError::ShuttingDown))
        }
    }

    fn put(collection: &str, id: &str) -> WriteOp {
        WriteOp::PutRecord {
            collection_id: collection.into(),
            id: id.into(),
            data: json!({"id": id}),
            expect: Expect::Absent,
        }
    }

    fn absent_in(collections: &[&str], id: &str) -> WriteOp {
        WriteOp::RequireAbsent {
            collection_ids: collections.iter().map(|c| (*c).to_owned()).collect(),
            id: id.into(),
        }
    }

    #[test]
    fn the_change_log_keeps_its_byte_budget_and_its_total_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let spec = Arc::new(CollectionSpec {
            id: "c".into(),
            name: "c".into(),
            indexes: Vec::new(),
        });
        let budget = 64 * 1024;
        let write = |store: &Store, i: usize| {
            let data = json!({"id": "r", "text": format!("{i:04}{}", "x".repeat(10_000))});
            let expect = if i == 0 { Expect::Absent } else { Expect::Any };
            store
                .write_blocking(vec![WriteOp::PutRecord {
                    collection_id: "c".into(),
                    id: "r".into(),
                    data,
                    expect,
                }])
                .unwrap();
        };
        let total = {
            let store = Store::open(dir.path()).unwrap();
            store
                .write_blocking(vec![WriteOp::PutCollection {
                    spec: spec.clone(),
                    def: json!({"id": "c"}),
                }])
                .unwrap();
            store.set_change_budget(budget);
            for i in 0..40 {
                write(&store, i);
                let total = store.change_log_bytes();
                assert_eq!(total, store.recount_change_log_bytes().unwrap(), "write {i}");
                // One write per group here: at most the budget plus it.
                assert!(total <= budget + 10_200, "write {i}: {total}");
            }
            // The oldest went, the newest are consecutive and whole.
            let first = store.first_change_seq().unwrap();
            assert!(first > 30, "{first}");
            let kept: Vec<Change> = store.changes_since(first - 1).map(Result::unwrap).collect();
            assert_eq!(kept.last().unwrap().seq, store.head_seq());
            assert!(kept.windows(2).all(|w| w[1].seq == w[0].seq + 1));
            assert!(matches!(
                store.changes_since(first - 2).next(),
                Some(Err(StoreError::Trimmed(_)))
            ));
            // A lowered budget: the next group (here a trim job) catches up.
            store.set_change_budget(25_000);
            store.write_blocking(vec![WriteOp::TrimChanges { up_to: 0 }]).unwrap();
            assert!(store.change_log_bytes() <= 25_000);
            let total = store.change_log_bytes();
            store.shutdown();
            total
        };
        // sled lets go of the dir when its last background job does, which
        // can trail the drop a little on a loaded machine (bounded wait).
        let reopen = || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                match Store::open(dir.path()) {
                    Ok(store) => return store,
                    Err(e) if std::time::Instant::now() > deadline => panic!("reopen: {e}"),
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                }
            }
        };
        // Kept in meta: the same after a restart, and recounted if missing.
        let store = reopen();
        assert_eq!(store.change_log_bytes(), total);
        store.shared.meta.remove(meta::CHANGE_BYTES).unwrap();
        store.shutdown();
        drop(store);
        let store = reopen();
        assert_eq!(store.change_log_bytes(), total);
        store.shutdown();
    }

    #[test]
    fn require_absent_sees_the_store_the_job_and_concurrent_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for c in ["ca", "cb"] {
            let spec = Arc::new(CollectionSpec {
                id: c.into(),
                name: c.into(),
                indexes: Vec::new(),
            });
            store
                .write_blocking(vec![WriteOp::PutCollection {
                    spec,
                    def: json!({"id": c}),
                }])
                .unwrap();
        }
        store.write_blocking(vec![put("ca", "x")]).unwrap();
        // Taken in the store.
        let r = store.write_blocking(vec![put("cb", "x"), absent_in(&["ca"], "x")]);
        assert!(matches!(r, Err(WriteError::IdInUse)), "{r:?}");
        assert!(
            store.get("cb", "x").unwrap().is_none(),
            "nothing of a refused job is written"
        );
        // Taken earlier in the same job.
        let r = store.write_blocking(vec![put("ca", "y"), put("cb", "y"), absent_in(&["ca"], "y")]);
        assert!(matches!(r, Err(WriteError::IdInUse)), "{r:?}");
        // Free (a collection that does not exist is skipped).
        let r = store.write_blocking(vec![put("cb", "z"), absent_in(&["ca", "gone"], "z")]);
        assert_eq!(r.map(|r| r.len()).ok(), Some(2));
        // Two jobs racing for one id in two collections: one wins.
        for round in 0..20 {
            let id = format!("r{round}");
            let jobs = [("ca", "cb"), ("cb", "ca")].map(|(mine, other)| {
                let (store, id) = (store.clone(), id.clone());
                std::thread::spawn(move || store.write_blocking(vec![put(mine, &id), absent_in(&[other], &id)]))
            });
            let ok = jobs
                .into_iter()
                .map(|j| j.join().unwrap())
                .filter(|r| r.is_ok())
                .count();
            assert_eq!(ok, 1, "round {round}");
        }
    }
}
