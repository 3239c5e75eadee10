//! The request log: one entry per HTTP request, kept in the `logs` tree of
//! the same sled database, bounded by age, by count and by bytes.
//!
//! The request path pays for one `try_send` into a bounded channel and
//! nothing else: when the channel is full the entry is dropped and counted
//! (a log must never slow down or fail a request). One background thread
//! drains the channel and inserts what it got as one `sled::Batch`. It does
//! not go through the store's writer: log entries are not part of record
//! transactions and must not cost an fsync of their own (they reach disk
//! with the next group commit's flush, or sled's periodic one).
//!
//! The drain thread polls (sleeps [`POLL`], then takes everything queued)
//! while there is traffic, and blocks on the channel only when idle: a
//! sender then never has to wake a sleeping thread, except the first one
//! after a quiet period.
//!
//! Entries are stored in **blocks** of up to [`BLOCK`] entries and
//! [`BLOCK_BYTES`] bytes, one sled key each: one sled insert per entry cost
//! ~8 µs of the drain thread's time (a third of a core at 40k requests/s,
//! measured), which the request path paid for in throughput; a block costs
//! one insert for dozens to hundreds of entries. The byte limit keeps every
//! block well under sled's blob threshold (a log message over a quarter
//! segment, ~128 KiB, is written to a file of its own with only a pointer
//! in the log): blocks of 256 long entries (~540 KB) were each a blob file,
//! and as they added almost nothing to the log, sled did not get to delete
//! the replaced ones (193 MB of blob files after 100k 404s with 8 KB
//! paths). Every block is written inline now; a consolidated leaf (up to
//! 17 blocks) may still be a blob file, which sled deletes as the blocks
//! move its log on (smaller blocks, keeping leaves inline too, were
//! measured: the inline rewrites of whole leaves grew the data dir by
//! ~15% under ordinary traffic). Paths are stored cut to [`MAX_PATH`]
//! bytes. Every entry still has its own [`LogKey`]
//! (`timestamp µs ++ sequence`), so readers page by entry; a block's tree
//! key is the key of its first (oldest) entry, so blocks sort by time.
//! Value: `2 ++ count u16 ++ count × (ts u64 ++ seq u32 ++ len u16 ++
//! entry)`, each entry in a small binary encoding (see [`encode`]).
//!
//! Retention (at most `max_entries` entries and `max_bytes` bytes of keys
//! and values, none older than `max_age`) is applied by the same thread
//! after each batch: whole blocks go, and the oldest block left is cut down
//! to the entries still wanted, at most [`TRIM_BATCH`] entries per round, so
//! no single sled batch is ever large. The tree is over its byte cap by at
//! most one drain's entries, and only until the trim that follows it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

use super::StoreError;

/// How many entries may wait for the drain thread; beyond that they are
/// dropped (and counted). At 50k requests/s this is ~300 ms of traffic,
/// far more than one [`POLL`] interval.
pub const QUEUE: usize = 16_384;

/// How long the drain thread sleeps between rounds while there is traffic.
const POLL: Duration = Duration::from_millis(10);

/// How long it blocks when idle before applying age-based retention anyway.
const IDLE_TICK: Duration = Duration::from_secs(5);

/// Most entries taken from the queue before they are written.
const INSERT_BATCH: usize = 4096;

/// Most entries in one stored block.
pub const BLOCK: usize = 256;

/// Most bytes in one stored block (unless one entry alone is larger; no
/// entry is over ~900 bytes): a quarter of sled's ~128 KiB blob threshold.
/// Ordinary entries (~100 bytes) fill [`BLOCK`] first, as before the limit.
pub const BLOCK_BYTES: usize = 32 * 1024;

/// The request log's byte cap until the settings set one (the default of
/// `logs.maxBytes`): 64 MiB holds the default 100,000 entries at their
/// usual ~100-300 bytes, so it binds only when entries are abnormally long.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Most entries removed by one retention round (one sled batch).
pub const TRIM_BATCH: usize = 4096;

/// Most retention rounds between two drains (when not flushing): a lowered
/// limit is caught up within a few polls without starving new entries.
const TRIM_ROUNDS: usize = 8;

/// Longest path kept (bytes); longer ones are cut at a character boundary
/// and end with [`CUT`]. Enough for any route and id; what is longer is
/// noise (or an attempt to fill the disk) and its start says what it was.
pub const MAX_PATH: usize = 512;

/// What a cut path ends with.
pub const CUT: &str = "…";

/// Longest auth label kept (bytes).
const MAX_AUTH: usize = 256;

/// One logged request. Plain data: the store knows nothing of HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// When the request finished, microseconds since the Unix epoch.
    pub ts_us: u64,
    pub method: String,
    /// The request path as received (percent-encoded, never the query).
    pub path: String,
    pub status: u16,
    /// Time to produce the response head, in microseconds.
    pub micros: u64,
    pub ip: String,
    /// `guest`, `superuser:<id>` or `<collection>:<id>`.
    pub auth: String,
}

/// Where an entry sits in the tree (also the dashboard's paging cursor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogKey {
    pub ts_us: u64,
    pub seq: u32,
}

impl LogKey {
    pub fn to_bytes(self) -> [u8; 12] {
        let mut k = [0u8; 12];
        k[..8].copy_from_slice(&self.ts_us.to_be_bytes());
        k[8..].copy_from_slice(&self.seq.to_be_bytes());
        k
    }

    pub fn from_bytes(b: &[u8]) -> Option<LogKey> {
        if b.len() != 12 {
            return None;
        }
        Some(LogKey {
            ts_us: u64::from_be_bytes(b[..8].try_into().ok()?),
            seq: u32::from_be_bytes(b[8..].try_into().ok()?),
        })
    }

    /// A URL-safe text form (`<ts>-<seq>`), for "older" links.
    pub fn to_cursor(self) -> String {
        format!("{}-{}", self.ts_us, self.seq)
    }

    pub fn parse_cursor(s: &str) -> Option<LogKey> {
        let (ts, seq) = s.split_once('-')?;
        Some(LogKey {
            ts_us: ts.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

/// Retention and on/off, as the settings say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    pub enabled: bool,
    pub max_age_us: u64,
    pub max_entries: u64,
    /// Keys + values of the `logs` tree.
    pub max_bytes: u64,
    /// Keep the client's address (else stored empty).
    pub log_ip: bool,
    /// Keep the caller's label (else stored empty).
    pub log_auth: bool,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits {
            enabled: true,
            max_age_us: 7 * 24 * 3600 * 1_000_000,
            max_entries: 100_000,
            max_bytes: DEFAULT_MAX_BYTES,
            log_ip: true,
            log_auth: true,
        }
    }
}

/// The current microsecond since the Unix epoch (0 before 1970).
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

enum Msg {
    Entry(LogEntry),
    /// Answered once everything sent before it is written and retention
    /// has fully caught up.
    Flush(oneshot::Sender<()>),
    Stop,
}

/// What the request path and the drain thread share.
struct Shared {
    enabled: AtomicBool,
    max_age_us: AtomicU64,
    max_entries: AtomicU64,
    max_bytes: AtomicU64,
    dropped: AtomicU64,
    log_ip: AtomicBool,
    log_auth: AtomicBool,
    /// Entries in the tree (counted once at open, then kept by the thread).
    stored: AtomicU64,
    /// Bytes (keys + values) in the tree, kept the same way.
    bytes: AtomicU64,
}

/// Cheap-clone handle to the request log.
#[derive(Clone)]
pub struct RequestLog {
    tx: SyncSender<Msg>,
    tree: sled::Tree,
    shared: Arc<Shared>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl RequestLog {
    /// Opens the `logs` tree and starts the drain thread.
    pub(super) fn open(db: &sled::Db) -> Result<RequestLog, StoreError> {
        let tree = db.open_tree("logs")?;
        let (mut stored, mut bytes) = (0u64, 0u64);
        for kv in tree.iter() {
            let (k, v) = kv?;
            stored += LogKey::from_bytes(&k).map_or(0, |key| decode_block(key, &v).len() as u64);
            bytes += (k.len() + v.len()) as u64;
        }
        let next_seq = match tree.last()? {
            Some((k, v)) => LogKey::from_bytes(&k)
                .and_then(|key| decode_block(key, &v).last().map(|(key, _)| key.seq.wrapping_add(1)))
                .unwrap_or(0),
            None => 0,
        };
        let limits = LogLimits::default();
        let shared = Arc::new(Shared {
            enabled: AtomicBool::new(limits.enabled),
            max_age_us: AtomicU64::new(limits.max_age_us),
            max_entries: AtomicU64::new(limits.max_entries),
            max_bytes: AtomicU64::new(limits.max_bytes),
            dropped: AtomicU64::new(0),
            log_ip: AtomicBool::new(limits.log_ip),
            log_auth: AtomicBool::new(limits.log_auth),
            stored: AtomicU64::new(stored),
            bytes: AtomicU64::new(bytes),
        });
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let drain = Drain {
            tree: tree.clone(),
            shared: shared.clone(),
            seq: next_seq,
        };
        let handle = std::thread::Builder::new()
            .name("basalt-logs".into())
            .spawn(move || drain.run(rx))?;
        Ok(RequestLog {
            tx,
            tree,
            shared,
            thread: Arc::new(Mutex::new(Some(handle))),
        })
    }

    /// Whether requests should be logged (read on every request: one
    /// relaxed atomic load).
    pub fn enabled(&self) -> bool {
        self.shared.enabled.load(Ordering::Relaxed)
    }

    /// Queues an entry without ever blocking; drops it (and counts the drop)
    /// when the queue is full.
    pub fn record(&self, mut entry: LogEntry) {
        if !self.shared.log_ip.load(Ordering::Relaxed) {
            entry.ip.clear();
        }
        if !self.shared.log_auth.load(Ordering::Relaxed) {
            entry.auth.clear();
        }
        if let Err(TrySendError::Full(_)) = self.tx.try_send(Msg::Entry(entry)) {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Applies new settings; retention catches up in the background (or at
    /// the next [`RequestLog::flush`]).
    pub fn set_limits(&self, limits: LogLimits) {
        self.shared.enabled.store(limits.enabled, Ordering::Relaxed);
        self.shared.log_ip.store(limits.log_ip, Ordering::Relaxed);
        self.shared.log_auth.store(limits.log_auth, Ordering::Relaxed);
        self.shared
            .max_age_us
            .store(limits.max_age_us.max(1), Ordering::Relaxed);
        self.shared
            .max_entries
            .store(limits.max_entries.max(1), Ordering::Relaxed);
        self.shared.max_bytes.store(limits.max_bytes.max(1), Ordering::Relaxed);
    }

    /// Waits until every entry queued before this call is in the tree and
    /// retention has caught up (tests and "what I just did" views).
    pub async fn flush(&self) {
        let (reply, done) = oneshot::channel();
        match self.tx.try_send(Msg::Flush(reply)) {
            Ok(()) => {}
            Err(TrySendError::Disconnected(_)) => return,
            Err(TrySendError::Full(msg)) => {
                // Only under overload: wait for room off the async worker.
                let tx = self.tx.clone();
                if tokio::task::spawn_blocking(move || tx.send(msg)).await.is_err() {
                    return;
                }
            }
        }
        let _ = done.await;
    }

    /// Writes what is queued and stops the drain thread (at shutdown,
    /// before the store's final flush).
    pub(super) fn stop(&self) {
        let _ = self.tx.send(Msg::Stop);
        if let Some(h) = self.thread.lock().ok().and_then(|mut g| g.take()) {
            let _ = h.join();
        }
    }

    /// Entries currently stored.
    pub fn len(&self) -> u64 {
        self.shared.stored.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes (keys + values) the stored entries take.
    pub fn bytes(&self) -> u64 {
        self.shared.bytes.load(Ordering::Relaxed)
    }

    /// `(entries, bytes)` counted block by block (walks the whole tree: for
    /// checks and tests; [`RequestLog::len`] and [`RequestLog::bytes`] are
    /// the kept totals).
    pub fn recount(&self) -> Result<(u64, u64), StoreError> {
        let (mut entries, mut bytes) = (0u64, 0u64);
        for kv in self.tree.iter() {
            let (k, v) = kv?;
            entries += LogKey::from_bytes(&k).map_or(0, |key| decode_block(key, &v).len() as u64);
            bytes += (k.len() + v.len()) as u64;
        }
        Ok((entries, bytes))
    }

    /// Entries dropped because the queue was full, since start.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// The entry at `key`, if it is (still) in the log: one read of the
    /// block that would hold it (blocks are keyed by their oldest entry).
    pub fn get(&self, key: LogKey) -> Result<Option<LogEntry>, StoreError> {
        let Some((k, v)) = self.tree.range(..=key.to_bytes()).next_back().transpose()? else {
            return Ok(None);
        };
        let Some(block_key) = LogKey::from_bytes(&k) else {
            return Ok(None);
        };
        Ok(decode_block(block_key, &v)
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, e)| e))
    }

    /// Entries with `ts_us >= since_us`, newest first. Unreadable entries
    /// are skipped (they can only come from a newer encoding).
    pub fn newest_first(&self, since_us: u64) -> impl Iterator<Item = Result<(LogKey, LogEntry), StoreError>> {
        // Blocks are keyed by their oldest entry: walk back from the newest
        // until a block ends before `since_us`.
        let mut done = false;
        self.tree
            .iter()
            .rev()
            .map_while(move |kv| {
                if done {
                    return None;
                }
                Some(match kv {
                    Ok((k, v)) => {
                        let entries = LogKey::from_bytes(&k)
                            .map(|key| decode_block(key, &v))
                            .unwrap_or_default();
                        if entries.last().is_some_and(|(key, _)| key.ts_us < since_us) {
                            done = true;
                        }
                        Ok(entries)
                    }
                    Err(e) => {
                        done = true;
                        Err(StoreError::from(e))
                    }
                })
            })
            .flat_map(move |block| -> Vec<Result<(LogKey, LogEntry), StoreError>> {
                match block {
                    Ok(entries) => entries
                        .into_iter()
                        .rev()
                        .filter(|(key, _)| key.ts_us >= since_us)
                        .map(Ok)
                        .collect(),
                    Err(e) => vec![Err(e)],
                }
            })
    }
}

/// The drain thread's state.
struct Drain {
    tree: sled::Tree,
    shared: Arc<Shared>,
    seq: u32,
}

impl Drain {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut entries: Vec<LogEntry> = Vec::with_capacity(INSERT_BATCH);
        let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
        let mut busy = false;
        loop {
            let mut stop = false;
            let mut disconnected = false;
            if busy {
                std::thread::sleep(POLL);
            } else {
                // Idle: block (one wake-up for the next request).
                match rx.recv_timeout(IDLE_TICK) {
                    Ok(msg) => stop = self.take(msg, &mut entries, &mut waiters),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => disconnected = true,
                }
            }
            busy = false;
            while !stop && !disconnected {
                match rx.try_recv() {
                    Ok(msg) => {
                        busy = true;
                        stop = self.take(msg, &mut entries, &mut waiters);
                        if entries.len() >= INSERT_BATCH {
                            self.insert(&mut entries);
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => disconnected = true,
                }
            }
            busy |= !entries.is_empty();
            self.insert(&mut entries);
            // Catch up in bounded rounds; a flush (or the end) waits for all.
            let rounds = if waiters.is_empty() && !stop && !disconnected {
                TRIM_ROUNDS
            } else {
                usize::MAX
            };
            for _ in 0..rounds {
                if self.trim_round() < TRIM_BATCH {
                    break;
                }
            }
            for w in waiters.drain(..) {
                let _ = w.send(());
            }
            if stop || disconnected {
                return;
            }
        }
    }

    /// Files one message; returns true for `Stop`.
    fn take(&mut self, msg: Msg, entries: &mut Vec<LogEntry>, waiters: &mut Vec<oneshot::Sender<()>>) -> bool {
        match msg {
            Msg::Entry(e) => entries.push(e),
            Msg::Flush(w) => waiters.push(w),
            Msg::Stop => return true,
        }
        false
    }

    fn insert(&mut self, entries: &mut Vec<LogEntry>) {
        if entries.is_empty() {
            return;
        }
        // Requests finish on several workers: order by time first, so keys
        // (and blocks) follow the clock.
        entries.sort_by_key(|e| e.ts_us);
        let mut batch = sled::Batch::default();
        let n = entries.len() as u64;
        let mut keyed: Vec<(LogKey, LogEntry)> = Vec::with_capacity(entries.len());
        for e in entries.drain(..) {
            let key = LogKey {
                ts_us: e.ts_us,
                seq: self.seq,
            };
            self.seq = self.seq.wrapping_add(1);
            keyed.push((key, e));
        }
        let mut bytes = 0u64;
        let mut rest = keyed.as_slice();
        while !rest.is_empty() {
            let (block, after) = rest.split_at(block_len(rest));
            let value = encode_block(block);
            bytes += (12 + value.len()) as u64;
            batch.insert(&block[0].0.to_bytes(), value);
            rest = after;
        }
        match self.tree.apply_batch(batch) {
            Ok(()) => {
                self.shared.stored.fetch_add(n, Ordering::Relaxed);
                self.shared.bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, entries = n, "request log write failed; entries lost"),
        }
    }

    /// Removes up to [`TRIM_BATCH`] of the oldest entries that are over the
    /// count or byte limit or older than the age limit; returns how many
    /// went.
    fn trim_round(&mut self) -> usize {
        let stored = self.shared.stored.load(Ordering::Relaxed);
        let mut over = stored.saturating_sub(self.shared.max_entries.load(Ordering::Relaxed));
        let mut over_bytes =
            (self.shared.bytes.load(Ordering::Relaxed)).saturating_sub(self.shared.max_bytes.load(Ordering::Relaxed));
        let cutoff = now_micros().saturating_sub(self.shared.max_age_us.load(Ordering::Relaxed));
        let mut batch = sled::Batch::default();
        let mut n = 0usize;
        let mut freed = 0u64;
        let mut touched = false;
        for kv in self.tree.iter() {
            let Ok((k, v)) = kv else { break };
            let entries = LogKey::from_bytes(&k)
                .map(|key| decode_block(key, &v))
                .unwrap_or_default();
            // The oldest entries of this block that must go: those over the
            // count, those too old (entries are in time order), and enough
            // to free the bytes over the cap.
            let old = entries.iter().take_while(|(key, _)| key.ts_us < cutoff).count();
            let mut by_bytes = 0;
            let mut estimate = 0u64;
            while estimate < over_bytes && by_bytes < entries.len() {
                estimate += (14 + encoded_len(&entries[by_bytes].1)) as u64;
                by_bytes += 1;
            }
            let drop = (over.min(entries.len() as u64) as usize).max(old).max(by_bytes);
            if drop == 0 && !entries.is_empty() {
                break;
            }
            if n + drop > TRIM_BATCH && n > 0 {
                break;
            }
            batch.remove(k.as_ref());
            touched = true;
            let mut gone = (k.len() + v.len()) as u64;
            if drop < entries.len() {
                // Keep the newer part, re-keyed by its oldest entry.
                let rest = &entries[drop..];
                let value = encode_block(rest);
                gone = gone.saturating_sub((12 + value.len()) as u64);
                batch.insert(&rest[0].0.to_bytes(), value);
                n += drop;
                freed += gone;
                break;
            }
            n += drop;
            freed += gone;
            over = over.saturating_sub(drop as u64);
            over_bytes = over_bytes.saturating_sub(gone);
        }
        if !touched {
            return 0;
        }
        match self.tree.apply_batch(batch) {
            Ok(()) => {
                let less = |by: u64| move |s: u64| Some(s.saturating_sub(by));
                let _ = self
                    .shared
                    .stored
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, less(n as u64));
                let _ = self
                    .shared
                    .bytes
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, less(freed));
                // A round that only cut bytes off an unreadable block still
                // made progress.
                n.max(usize::from(freed > 0))
            }
            Err(e) => {
                tracing::warn!(error = %e, "request log trim failed; retried later");
                0
            }
        }
    }
}

/// Cuts `s` to at most `max` bytes at a character boundary.
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `s`, or its first bytes up to a character boundary followed by [`CUT`]
/// when it is longer than `max` bytes (`max` counts the marker too).
fn clip_marked(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    format!("{}{CUT}", clip(s, max - CUT.len())).into()
}

/// Version byte of the value encoding.
const V1: u8 = 1;

/// `1 ++ status u16 ++ micros u64 ++ (len u16 ++ bytes) × [method, path,
/// ip, auth]`, all big-endian: smaller than JSON (no field names, no
/// quoting) and decoded without a parser.
pub fn encode(e: &LogEntry) -> Vec<u8> {
    let path = clip_marked(&e.path, MAX_PATH);
    let fields = [clip(&e.method, 32), &path, clip(&e.ip, 64), clip(&e.auth, MAX_AUTH)];
    let mut out = Vec::with_capacity(11 + 8 + fields.iter().map(|f| f.len()).sum::<usize>());
    out.push(V1);
    out.extend_from_slice(&e.status.to_be_bytes());
    out.extend_from_slice(&e.micros.to_be_bytes());
    for f in fields {
        out.extend_from_slice(&(f.len() as u16).to_be_bytes());
        out.extend_from_slice(f.as_bytes());
    }
    out
}

/// `encode(e).len()`, without encoding.
fn encoded_len(e: &LogEntry) -> usize {
    let path = if e.path.len() <= MAX_PATH {
        e.path.len()
    } else {
        clip(&e.path, MAX_PATH - CUT.len()).len() + CUT.len()
    };
    11 + 8 + path + clip(&e.method, 32).len() + clip(&e.ip, 64).len() + clip(&e.auth, MAX_AUTH).len()
}

/// How many of `entries` (at least one) go into the next block: at most
/// [`BLOCK`] of them and, past the first, [`BLOCK_BYTES`] bytes.
fn block_len(entries: &[(LogKey, LogEntry)]) -> usize {
    let mut bytes = 3;
    let mut n = 0;
    for (_, e) in entries.iter().take(BLOCK) {
        bytes += 14 + encoded_len(e);
        if n > 0 && bytes > BLOCK_BYTES {
            break;
        }
        n += 1;
    }
    n.max(1).min(entries.len())
}

/// The inverse of [`encode`]; `None` for anything else.
pub fn decode(ts_us: u64, b: &[u8]) -> Option<LogEntry> {
    if b.first() != Some(&V1) || b.len() < 11 {
        return None;
    }
    let status = u16::from_be_bytes(b[1..3].try_into().ok()?);
    let micros = u64::from_be_bytes(b[3..11].try_into().ok()?);
    let mut rest = &b[11..];
    let mut next = || -> Option<String> {
        let len = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as usize;
        let s = std::str::from_utf8(rest.get(2..2 + len)?).ok()?.to_owned();
        rest = &rest[2 + len..];
        Some(s)
    };
    Some(LogEntry {
        ts_us,
        method: next()?,
        path: next()?,
        ip: next()?,
        auth: next()?,
        status,
        micros,
    })
}

/// Version byte of a block value.
const BLOCK_V2: u8 = 2;

/// A block: `2 ++ count u16 ++ count × (ts u64 ++ seq u32 ++ len u16 ++
/// entry)`, the entries in key order.
fn encode_block(entries: &[(LogKey, LogEntry)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 + entries.len() * 64);
    out.push(BLOCK_V2);
    out.extend_from_slice(&(entries.len() as u16).to_be_bytes());
    for (key, e) in entries {
        let one = encode(e);
        out.extend_from_slice(&key.ts_us.to_be_bytes());
        out.extend_from_slice(&key.seq.to_be_bytes());
        out.extend_from_slice(&(one.len() as u16).to_be_bytes());
        out.extend_from_slice(&one);
    }
    out
}

/// The entries of a stored value, oldest first: a block, or a single
/// entry (version 1) under `key`. Unreadable parts are left out.
fn decode_block(key: LogKey, b: &[u8]) -> Vec<(LogKey, LogEntry)> {
    match b.first() {
        Some(&V1) => decode(key.ts_us, b).map(|e| vec![(key, e)]).unwrap_or_default(),
        Some(&BLOCK_V2) => {
            let Some(count) = b.get(1..3).map(|c| u16::from_be_bytes([c[0], c[1]]) as usize) else {
                return Vec::new();
            };
            let mut out = Vec::with_capacity(count);
            let mut rest = &b[3..];
            for _ in 0..count {
                let Some(head) = rest.get(..14) else { break };
                let ts_us = u64::from_be_bytes(head[..8].try_into().expect("8 bytes"));
                let seq = u32::from_be_bytes(head[8..12].try_into().expect("4 bytes"));
                let len = u16::from_be_bytes([head[12], head[13]]) as usize;
                let Some(body) = rest.get(14..14 + len) else { break };
                if let Some(e) = decode(ts_us, body) {
                    out.push((LogKey { ts_us, seq }, e));
                }
                rest = &rest[14 + len..];
            }
            out
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ts_us: u64) -> LogEntry {
        LogEntry {
            ts_us,
            method: "GET".into(),
            path: "/api/héllo".into(),
            status: 404,
            micros: 1234,
            ip: "127.0.0.1".into(),
            auth: "users:abc".into(),
        }
    }

    #[test]
    fn encoding_round_trips_and_rejects_garbage() {
        let e = entry(42);
        assert_eq!(decode(42, &encode(&e)), Some(e));
        assert_eq!(decode(1, b""), None);
        assert_eq!(decode(1, b"{\"json\":1}"), None);
        let mut cut = encode(&entry(1));
        cut.pop();
        assert_eq!(decode(1, &cut), None);
    }

    #[test]
    fn blocks_round_trip_and_keep_key_order() {
        let entries: Vec<(LogKey, LogEntry)> = (0..5)
            .map(|i| {
                (
                    LogKey {
                        ts_us: 10 + i,
                        seq: i as u32,
                    },
                    entry(10 + i),
                )
            })
            .collect();
        let block = encode_block(&entries);
        assert_eq!(decode_block(entries[0].0, &block), entries);
        // A cut block yields the entries that are whole.
        assert_eq!(decode_block(entries[0].0, &block[..block.len() - 1]).len(), 4);
        assert!(decode_block(entries[0].0, b"\x07junk").is_empty());
    }

    #[test]
    fn long_fields_are_clipped_at_char_boundaries() {
        let mut e = entry(1);
        e.path = format!("/{}", "é".repeat(MAX_PATH));
        let back = decode(1, &encode(&e)).expect("decodes");
        assert!(back.path.len() <= MAX_PATH && back.path.starts_with("/é") && back.path.ends_with(CUT));
        // Exactly at the limit: kept whole, no marker.
        e.path = "x".repeat(MAX_PATH);
        assert_eq!(decode(1, &encode(&e)).expect("decodes").path, e.path);
        e.path.push('y');
        let cut = decode(1, &encode(&e)).expect("decodes").path;
        assert_eq!((cut.len(), cut.ends_with(CUT)), (MAX_PATH, true));
    }

    #[test]
    fn sizes_are_known_without_encoding_and_blocks_stay_small() {
        let mut e = entry(1);
        for path in ["/", "/api/héllo", &"é".repeat(300), &"a".repeat(9000)] {
            e.path = path.to_owned();
            e.auth = "x".repeat(path.len() % 700);
            assert_eq!(encoded_len(&e), encode(&e).len(), "{}", path.len());
        }
        let keyed = |path: &str, n: usize| -> Vec<(LogKey, LogEntry)> {
            (0..n)
                .map(|i| {
                    let mut e = entry(i as u64);
                    e.path = path.to_owned();
                    (
                        LogKey {
                            ts_us: i as u64,
                            seq: 0,
                        },
                        e,
                    )
                })
                .collect()
        };
        // Short entries: up to BLOCK of them; long ones: up to BLOCK_BYTES.
        let short = keyed("/a", 1000);
        assert_eq!(
            block_len(&short),
            BLOCK.min(BLOCK_BYTES / (14 + encoded_len(&short[0].1)))
        );
        let long = keyed(&"a".repeat(8192), 100);
        let n = block_len(&long);
        assert!(n >= 1 && encode_block(&long[..n]).len() <= BLOCK_BYTES, "{n}");
        assert!(encode_block(&long[..n + 1]).len() > BLOCK_BYTES);
        assert_eq!(block_len(&long[..1]), 1);
    }

    #[test]
    fn keys_sort_by_time_then_sequence_and_cursors_round_trip() {
        let a = LogKey {
            ts_us: 5,
            seq: u32::MAX,
        };
        let b = LogKey { ts_us: 6, seq: 0 };
        assert!(a.to_bytes() < b.to_bytes());
        assert_eq!(LogKey::from_bytes(&a.to_bytes()), Some(a));
        assert_eq!(LogKey::parse_cursor(&b.to_cursor()), Some(b));
        assert_eq!(LogKey::parse_cursor("x-1"), None);
    }

    #[test]
    fn drain_writes_batches_and_trims_to_the_limits() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let db = sled::Config::new().path(dir.path()).temporary(true).open().expect("db");
        let log = RequestLog::open(&db).expect("open");
        let now = now_micros();
        for i in 0..10 {
            log.record(entry(now + i));
        }
        // One very old entry: gone by age, whatever the count.
        log.record(entry(1));
        rt.block_on(log.flush());
        assert_eq!(log.len(), 10);
        let newest: Vec<u64> = log.newest_first(0).map(|r| r.expect("read").1.ts_us).collect();
        assert_eq!(newest, (0..10).rev().map(|i| now + i).collect::<Vec<_>>());
        log.set_limits(LogLimits {
            max_age_us: 3600 * 1_000_000,
            max_entries: 3,
            ..LogLimits::default()
        });
        rt.block_on(log.flush());
        assert_eq!(log.len(), 3);
        let kept: Vec<u64> = log.newest_first(0).map(|r| r.expect("read").1.ts_us).collect();
        assert_eq!(kept, vec![now + 9, now + 8, now + 7]);

        // By bytes: long paths are cut, and the oldest go past the cap.
        log.set_limits(LogLimits {
            max_bytes: 64 * 1024,
            ..LogLimits::default()
        });
        for i in 0..1000 {
            let mut e = entry(now + 100 + i);
            e.path = format!("/{i}/{}", "a".repeat(8000));
            log.record(e);
        }
        rt.block_on(log.flush());
        let (entries, bytes) = log.recount().expect("recount");
        assert_eq!((entries, bytes), (log.len(), log.bytes()));
        assert!(bytes <= 64 * 1024 && bytes > 60 * 1024, "{bytes}");
        let newest: Vec<LogEntry> = log.newest_first(0).map(|r| r.expect("read").1).collect();
        assert_eq!(newest.len() as u64, entries);
        assert!(newest[0].path.starts_with("/999/") && newest[0].path.len() <= MAX_PATH);
        log.stop();
    }
}
