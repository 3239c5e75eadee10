//! The document store: records, secondary indexes, the change log and
//! collection metadata, behind Basalt's own types.
//!
//! Two engines sit behind [`Store`]: sled in the data dir (`embedded.rs`,
//! the default) and PostgreSQL (`postgres/`, `--store postgres://…`, for
//! several nodes on one database). Nothing of either leaks out of this
//! module: handlers, planner, rules, realtime and dashboard call the same
//! methods whichever runs. The engine is an enum, not a trait object: a
//! read is one well-predicted branch before the engine's own code, which
//! the compiler inlines as before (callgrind figures in BENCHMARKS.md).
//!
//! Layout (sled trees; the PostgreSQL engine maps the same trees and keys
//! onto tables, see `postgres/`):
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
//! Reads go straight to the engine (sled: lock-free, never wait for writes).
//! Every write goes through the single [`writer`] thread, which commits
//! groups atomically and makes them durable before anyone is answered.

pub mod backup;
pub mod copy;
mod embedded;
pub mod index;
pub mod logs;
pub mod meta;
pub mod pg_import;
mod pg_sync;
mod pg_tls;
mod postgres;
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
    /// The database cannot be reached (PostgreSQL down or failing over).
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
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
    /// A string the engine cannot store (U+0000 in PostgreSQL's JSONB),
    /// in this top-level field.
    #[error("field {field} holds a character the database cannot store (U+0000)")]
    Unstorable { field: String },
    /// The database cannot be reached (PostgreSQL down or failing over):
    /// nothing of the job was committed; a retry may succeed.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
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

/// Reads a stored collection definition (`meta` `coll/<id>`) into its
/// index set: given by the layer that knows collections, so the writer
/// can reload the index sets when another node changed them.
pub type SpecLoader = Arc<dyn Fn(&[u8]) -> Result<Arc<CollectionSpec>, String> + Send + Sync>;

/// Background work that must run on one node at a time when several
/// nodes share a database (see [`Store::holds_lease`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// Building new indexes over existing records.
    IndexBuilds,
    /// Change-log retention.
    Retention,
    /// The orphan-file sweep of shared (S3) file storage.
    FileSweep,
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
    /// Writes nothing; fails the job with [`WriteError::Conflict`] unless
    /// the `meta` key holds `value` as the job leaves it (ops before it
    /// included). A compare-and-set for bookkeeping that several nodes or
    /// tasks touch: an index build removes its marker only if no newer save
    /// of the index replaced it meanwhile.
    RequireMeta { key: String, value: Option<Vec<u8>> },
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
pub struct RawRecord(Raw);

enum Raw {
    /// `rev ++ JSON` as sled holds it.
    Sled(sled::IVec),
    /// The JSON alone.
    Json(Vec<u8>),
}

impl RawRecord {
    fn sled(bytes: sled::IVec) -> RawRecord {
        RawRecord(Raw::Sled(bytes))
    }

    /// The record JSON, as the engine holds it.
    #[inline]
    pub fn json(&self) -> &[u8] {
        match &self.0 {
            Raw::Sled(b) => b.get(8..).unwrap_or_default(),
            Raw::Json(j) => j,
        }
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

/// `(seq, change JSON)` pairs of a change-log walk, undecoded.
type ChangeEntries = Box<dyn Iterator<Item = Result<(u64, Vec<u8>), StoreError>> + Send>;

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

/// Which engine holds the data.
enum Engine {
    Sled(embedded::Sled),
    Postgres(postgres::Pg),
}

struct Shared {
    engine: Engine,
    /// Std `SyncSender`: the writer is a plain thread (it blocks on fsync), and
    /// `try_send` lets async handlers enqueue without blocking the runtime.
    jobs: SyncSender<Job>,
    writer: Mutex<Option<JoinHandle<()>>>,
    hub: Arc<Hub>,
    /// The change log's byte budget and committed byte total, shared with
    /// the writer (which enforces the one and keeps the other).
    change_log: Arc<ChangeLogBytes>,
    /// The request log (its own tree and thread; not part of transactions).
    logs: logs::RequestLog,
    /// The node-local sled database of the request log on PostgreSQL
    /// (flushed at shutdown; the embedded engine's is its main database).
    log_db: Option<sled::Db>,
    /// Held until [`Store::shutdown`] (or the last handle's drop): an OS
    /// lock on `<dir>/LOCK` so a second process gets a clear message
    /// instead of sled's internal error. Let go at shutdown, not at the
    /// last drop: handles can outlive a stopped server for a moment (its
    /// workers' threads end after the stop), and the next process must not
    /// be refused for that; sled's own lock still guards the files until
    /// the database is closed, and [`embedded::open_db`] waits that out.
    lock: Mutex<Option<File>>,
}

/// The realtime hub: committed changes in seq order, for every subscriber
/// of this node. On sled the writer's flusher publishes into it; on
/// PostgreSQL the node's tail of `basalt.changes` does (`postgres/tail.rs`),
/// for its own commits and every other node's alike.
///
/// The sender can be replaced ([`Hub::reset`]): every receiver of the old
/// one then gets the changes it still holds and `RecvError::Closed`. That
/// is how a PostgreSQL node that lost its place in the change log (the
/// database out of reach, the log trimmed past it) tells its clients to
/// resume with `since` instead of skipping events silently. Never on sled.
pub(crate) struct Hub(std::sync::RwLock<broadcast::Sender<Arc<Change>>>);

impl Hub {
    fn new() -> Arc<Hub> {
        Arc::new(Hub(std::sync::RwLock::new(broadcast::channel(HUB_CAPACITY).0)))
    }

    fn sender(&self) -> broadcast::Sender<Arc<Change>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).subscribe()
    }

    /// Publishes one change (no receivers is fine: nobody listens yet).
    pub(crate) fn publish(&self, change: Arc<Change>) {
        let _ = self.0.read().unwrap_or_else(|e| e.into_inner()).send(change);
    }

    /// Ends every current receiver (after what it holds); later
    /// subscribers get the new channel.
    pub(crate) fn reset(&self) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = broadcast::channel(HUB_CAPACITY).0;
    }
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

pub(crate) fn read_u64(v: Option<sled::IVec>) -> u64 {
    v.and_then(|b| b.as_ref().try_into().ok().map(u64::from_be_bytes))
        .unwrap_or(0)
}

/// Where the data lives: `None` = the embedded engine in the data dir, or
/// a `postgres://…` URL, with how long to wait for the database at start.
#[derive(Debug, Clone, Default)]
pub struct EngineChoice {
    pub url: Option<String>,
    pub wait: std::time::Duration,
}

/// Takes the data dir's OS lock (a second process gets a clear message).
fn lock_dir(dir: &Path) -> Result<File, StoreError> {
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
    Ok(lock)
}

impl Store {
    /// Opens (creating if needed) the embedded store in `dir` and starts
    /// its writer.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(dir, &EngineChoice::default())
    }

    /// Opens the store `engine` names (the data dir still holds the lock,
    /// the control socket and, on PostgreSQL, this node's request log).
    pub fn open_with(dir: &Path, engine: &EngineChoice) -> Result<Store, StoreError> {
        let lock = lock_dir(dir)?;
        match &engine.url {
            None => Store::open_sled(dir, lock),
            Some(url) => Store::open_postgres(dir, lock, url, engine.wait),
        }
    }

    fn open_sled(dir: &Path, lock: File) -> Result<Store, StoreError> {
        // sled holds a lock of its own, which a store closed a moment ago in
        // this process can still hold (its background threads let go last):
        // `open_db` waits for it; still held after that, it is a data dir in
        // use, not a storage failure.
        let config = sled::Config::new()
            .path(dir.join("db"))
            .cache_capacity(256 * 1024 * 1024);
        let db = match embedded::open_db(config) {
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
        let logs = logs::RequestLog::open(&db)?;
        let sled = embedded::Sled { db, meta, changes };
        let backend = embedded::SledBackend::new(&sled);
        Store::start(Engine::Sled(sled), backend, head, bytes, logs, None, lock, Hub::new())
    }

    fn open_postgres(dir: &Path, lock: File, url: &str, wait: std::time::Duration) -> Result<Store, StoreError> {
        let (pg, backend, head, bytes) = postgres::open(url, wait)?;
        // Realtime across nodes: the hub follows the change log from here.
        let hub = Hub::new();
        postgres::tail(&pg, &backend, hub.clone(), head);
        // The request log is this node's own (not data; see docs/scale-out.md).
        let log_db = embedded::open_db(sled::Config::new().path(dir.join("nodelog")))?;
        let logs = logs::RequestLog::open(&log_db)?;
        Store::start(
            Engine::Postgres(pg),
            backend,
            head,
            bytes,
            logs,
            Some(log_db),
            lock,
            hub,
        )
    }

    /// Starts the writer over `backend` and assembles the handle.
    #[allow(clippy::too_many_arguments)]
    fn start<B: writer::Backend>(
        engine: Engine,
        backend: B,
        head: u64,
        change_bytes: u64,
        logs: logs::RequestLog,
        log_db: Option<sled::Db>,
        lock: File,
        hub: Arc<Hub>,
    ) -> Result<Store, StoreError> {
        let change_log = Arc::new(ChangeLogBytes {
            budget: AtomicU64::new(DEFAULT_CHANGE_BUDGET),
            total: AtomicU64::new(change_bytes),
        });
        let (jobs, rx) = mpsc::sync_channel(WRITE_QUEUE);
        // A tailed engine's writer publishes nothing (the tail does), and
        // holds no sender of the hub, so a reset ends its receivers.
        let writer_hub = if B::TAILED {
            broadcast::channel(1).0
        } else {
            hub.sender()
        };
        let writer = Writer::new(backend, head, writer_hub, change_log.clone());
        let handle = std::thread::Builder::new()
            .name("basalt-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok(Store {
            shared: Arc::new(Shared {
                engine,
                jobs,
                writer: Mutex::new(Some(handle)),
                hub,
                change_log,
                logs,
                log_db,
                lock: Mutex::new(Some(lock)),
            }),
        })
    }

    /// Which engine runs: "embedded" or "postgres" (for logs and the
    /// dashboard; nothing decides on it).
    pub fn engine_name(&self) -> &'static str {
        match self.shared.engine {
            Engine::Sled(_) => "embedded",
            Engine::Postgres(_) => "postgres",
        }
    }

    /// Tells the writer the index set of every collection (once, at start,
    /// after the collections are loaded). The writer also drops trees no
    /// collection references (left over when a crash hit between a delete's
    /// commit and its cleanup).
    /// `loader` reads a stored definition's index set, for the writer to
    /// reload them when another node changed them (PostgreSQL).
    pub async fn set_specs(&self, specs: Vec<Arc<CollectionSpec>>, loader: SpecLoader) -> Result<(), WriteError> {
        let (reply, rx) = oneshot::channel();
        self.shared
            .jobs
            .send(Job::SetSpecs { specs, loader, reply })
            .map_err(|_| WriteError::ShuttingDown)?;
        rx.await.unwrap_or(Err(WriteError::ShuttingDown)).map(|_| ())
    }

    /// Whether other nodes may write to the same data (PostgreSQL): then
    /// collections and settings are reloaded when they change
    /// ([`Store::shared_changes`]) and once-only work takes a lease.
    pub fn is_shared(&self) -> bool {
        matches!(self.shared.engine, Engine::Postgres(_))
    }

    /// Whether this node may run the once-only job `job` now: always on
    /// the embedded engine; on PostgreSQL while this node holds the job's
    /// lease (a session advisory lock, taken by a poll every 250 ms and
    /// released by PostgreSQL when the node dies; see `pg_sync.rs`).
    pub fn holds_lease(&self, job: Lease) -> bool {
        match &self.shared.engine {
            Engine::Sled(_) => true,
            Engine::Postgres(pg) => pg.holds_lease(job),
        }
    }

    /// Changes whenever any node committed a collection, settings or
    /// index-build change (PostgreSQL, within ~250 ms); `None` on the
    /// embedded engine, where every change is this process's own.
    pub fn shared_changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        match &self.shared.engine {
            Engine::Sled(_) => None,
            Engine::Postgres(pg) => Some(pg.shared_changes()),
        }
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
        let snapshot = move |db: &mut dyn backup::Source| {
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
        match &self.shared.engine {
            Engine::Sled(s) => {
                let _ = s.db.flush();
            }
            Engine::Postgres(pg) => pg.stop_sync(),
        }
        if let Some(db) = &self.shared.log_db {
            let _ = db.flush();
        }
        drop(self.shared.lock.lock().ok().and_then(|mut l| l.take()));
    }

    /// The request log.
    pub fn logs(&self) -> &logs::RequestLog {
        &self.shared.logs
    }

    /// A non-owning handle (see [`WeakStore`]).
    pub fn downgrade(&self) -> WeakStore {
        WeakStore(Arc::downgrade(&self.shared))
    }

    /// Subscribes to committed changes, in seq order, after they are
    /// durable (on PostgreSQL: every node's, as this node's tail reads
    /// them). The receiver ends (`Closed`) when the feed was interrupted
    /// (see [`Hub`]): its holder resumes from the change log.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.shared.hub.subscribe()
    }

    /// The seq of the newest committed change.
    pub fn head_seq(&self) -> u64 {
        self.meta_u64(meta::SEQ)
    }

    #[inline]
    fn meta_u64(&self, key: &str) -> u64 {
        match &self.shared.engine {
            Engine::Sled(s) => s.meta_u64(key),
            Engine::Postgres(pg) => pg.meta_u64(key),
        }
    }

    /// Reads a `meta` key.
    pub fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match &self.shared.engine {
            Engine::Sled(s) => s.meta_get(key),
            Engine::Postgres(pg) => pg.meta_get(key),
        }
    }

    /// Sets a `meta` key only if absent (used once, for the server secret);
    /// returns the value that is stored afterwards. Durable before returning.
    pub fn meta_init(&self, key: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        match &self.shared.engine {
            Engine::Sled(s) => s.meta_init(key, value),
            Engine::Postgres(pg) => pg.meta_init(key, value),
        }
    }

    fn meta_scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        match &self.shared.engine {
            Engine::Sled(s) => s.meta_scan(prefix),
            Engine::Postgres(pg) => pg.meta_scan(prefix),
        }
    }

    /// `meta` keys starting with `prefix`.
    pub fn meta_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.meta_scan(prefix)?.into_iter().map(|(k, _)| k).collect())
    }

    /// All collection definitions as stored.
    pub fn collections(&self) -> Result<Vec<Value>, StoreError> {
        let mut out = Vec::new();
        for (_, v) in self.meta_scan(meta::COLLECTION_PREFIX)? {
            out.push(serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt(format!("collection JSON: {e}")))?);
        }
        Ok(out)
    }

    /// The number of records in a collection (kept by the writer, O(1)).
    pub fn count(&self, collection_id: &str) -> u64 {
        self.meta_u64(&meta::count(collection_id))
    }

    /// One record by id.
    #[inline]
    pub fn get(&self, collection_id: &str, id: &str) -> Result<Option<StoredRecord>, StoreError> {
        match &self.shared.engine {
            Engine::Sled(s) => s.get(collection_id, id),
            Engine::Postgres(pg) => pg.get(collection_id, id),
        }
    }

    /// One record by id, unparsed.
    #[inline]
    pub fn get_raw(&self, collection_id: &str, id: &str) -> Result<Option<RawRecord>, StoreError> {
        match &self.shared.engine {
            Engine::Sled(s) => s.get_raw(collection_id, id),
            Engine::Postgres(pg) => pg.get_raw(collection_id, id),
        }
    }

    /// Iterates a collection's records in id order, optionally in reverse.
    pub fn scan(
        &self,
        collection_id: &str,
        reverse: bool,
    ) -> Result<Box<dyn Iterator<Item = Result<StoredRecord, StoreError>> + Send>, StoreError> {
        match &self.shared.engine {
            Engine::Sled(s) => s.scan(collection_id, reverse),
            Engine::Postgres(pg) => pg.scan(collection_id, reverse),
        }
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
        match &self.shared.engine {
            Engine::Sled(s) => s.index_range(collection_id, index, lower, upper, reverse),
            Engine::Postgres(pg) => pg.index_range(collection_id, index, lower, upper, reverse),
        }
    }

    /// Looks up a record id by the exact key of a unique index.
    pub fn unique_lookup(
        &self,
        collection_id: &str,
        index: &IndexDef,
        values: &[&Value],
    ) -> Result<Option<String>, StoreError> {
        let key = index.key_of_values(values);
        let tree = index.tree(collection_id);
        match &self.shared.engine {
            Engine::Sled(s) => s.unique_lookup(&tree, key),
            Engine::Postgres(pg) => pg.unique_lookup(&tree, key),
        }
    }

    /// Changes with `seq > after`, oldest first, without a gap: seqs are
    /// consecutive, so when the next one is missing (trimmed before or
    /// while this reads) the iterator yields [`StoreError::Trimmed`] and
    /// ends, and the reader must resync.
    pub fn changes_since(&self, after: u64) -> impl Iterator<Item = Result<Change, StoreError>> + Send {
        let mut next = after.saturating_add(1);
        let mut done = false;
        let entries: ChangeEntries = match &self.shared.engine {
            Engine::Sled(s) => Box::new(s.changes_from(next)),
            Engine::Postgres(pg) => Box::new(pg.changes_from(next)),
        };
        entries.map_while(move |kv| {
            if done {
                return None;
            }
            let item = kv.and_then(|(seq, v)| {
                if seq != next {
                    return Err(StoreError::Trimmed(next));
                }
                embedded::decode_change(&v)
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
        let entries = match &self.shared.engine {
            Engine::Sled(s) => s.recent_changes(scan),
            Engine::Postgres(pg) => pg.recent_changes(scan),
        };
        let mut out = Vec::new();
        for v in entries {
            let Ok(change) = embedded::decode_change(&v) else {
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
        match &self.shared.engine {
            Engine::Sled(s) => s.first_change_seq(),
            Engine::Postgres(pg) => pg.first_change_seq(),
        }
    }

    /// The seq of the last change committed before `ts` (ms), scanning from
    /// the oldest (used by retention; stops at the first newer entry).
    pub fn last_change_before(&self, ts: i64) -> Option<u64> {
        /// Only the commit time: the record is skipped, not built.
        #[derive(Deserialize)]
        struct Stamp {
            ts: i64,
        }
        let (mut last, mut corrupt) = (None, false);
        let mut visit = |seq: u64, v: &[u8]| match serde_json::from_slice::<Stamp>(v) {
            Ok(change) if change.ts < ts => {
                last = Some(seq);
                true
            }
            Ok(_) => false,
            Err(_) => {
                corrupt = true;
                false
            }
        };
        let walked = match &self.shared.engine {
            Engine::Sled(s) => s.each_change(&mut visit),
            Engine::Postgres(pg) => pg.each_change(&mut visit),
        };
        walked.ok()?;
        (!corrupt).then_some(last).flatten()
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
        match &self.shared.engine {
            Engine::Sled(s) => s.recount_change_log_bytes(),
            Engine::Postgres(pg) => pg.recount_change_log_bytes(),
        }
    }

    /// Approximate bytes on disk (for the dashboard and benchmarks).
    pub fn size_on_disk(&self) -> u64 {
        match &self.shared.engine {
            Engine::Sled(s) => s.size_on_disk(),
            Engine::Postgres(pg) => pg.size_on_disk(),
        }
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
        // Opened again at once: the store waits for sled's threads itself.
        let reopen = || Store::open(dir.path()).unwrap_or_else(|e| panic!("reopen: {e}"));
        // Kept in meta: the same after a restart, and recounted if missing.
        let store = reopen();
        assert_eq!(store.change_log_bytes(), total);
        match &store.shared.engine {
            Engine::Sled(s) => s.meta.remove(meta::CHANGE_BYTES).unwrap(),
            Engine::Postgres(_) => unreachable!("an embedded store"),
        };
        store.shutdown();
        drop(store);
        let store = reopen();
        assert_eq!(store.change_log_bytes(), total);
        store.shutdown();
    }

    #[test]
    fn a_shut_down_store_lets_the_next_one_in_while_handles_still_live() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .write_blocking(vec![WriteOp::PutMeta {
                key: "k".into(),
                value: Some(b"v".to_vec()),
            }])
            .unwrap();
        // A handle that outlives the stop, as a stopped server's worker
        // threads do for a moment.
        let late = store.clone();
        store.shutdown();
        drop(store);
        // The data dir's lock is free at once...
        drop(lock_dir(dir.path()).expect("the dir's lock is let go at shutdown"));
        // ...and the next store opens as soon as sled's own lock is let go
        // (the open below cannot finish while `late` holds the database).
        let path = dir.path().to_path_buf();
        let next = std::thread::spawn(move || Store::open(&path));
        drop(late);
        let next = next.join().unwrap().expect("opens once the last handle is gone");
        assert_eq!(next.meta_get("k").unwrap().as_deref(), Some(&b"v"[..]));
        next.shutdown();
    }

    #[test]
    fn require_meta_deletes_only_what_it_saw() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let put = |v: Option<&str>| WriteOp::PutMeta {
            key: "m".into(),
            value: v.map(|v| v.as_bytes().to_vec()),
        };
        let require = |v: Option<&str>| WriteOp::RequireMeta {
            key: "m".into(),
            value: v.map(|v| v.as_bytes().to_vec()),
        };
        store.write_blocking(vec![put(Some("a"))]).unwrap();
        // Saved again meanwhile: refused, nothing changes.
        assert!(matches!(
            store.write_blocking(vec![require(Some("b")), put(None)]),
            Err(WriteError::Conflict)
        ));
        assert_eq!(store.meta_get("m").unwrap().as_deref(), Some(&b"a"[..]));
        // The job's own earlier ops count.
        store.write_blocking(vec![put(Some("b")), require(Some("b"))]).unwrap();
        // Still the value seen: deleted.
        store.write_blocking(vec![require(Some("b")), put(None)]).unwrap();
        assert_eq!(store.meta_get("m").unwrap(), None);
        store.write_blocking(vec![require(None)]).unwrap();
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
