//! The single writer: drains queued jobs, commits each drained group as one
//! multi-tree sled transaction, fsyncs once, publishes, then answers.
//!
//! Why one writer: measured on this machine (see DESIGN.md), per-write
//! `flush()` caps at ~4k durable writes/s, and awaiting `flush_async` from many
//! tasks hung; one writer committing groups of 16–64 reaches 25k–42k/s. Having
//! one writer also makes every check that needs the latest state (id taken,
//! unique index, revision, the current index set) race-free without locks.
//!
//! A job is atomic: it is first planned into its own overlay, reading through
//! the group's overlay and then sled; if any op is refused the job's overlay is
//! discarded and only that job is answered with the error. Successful jobs'
//! writes are merged into the group overlay, and the group commits as one.
//! A second thread, the flusher, fsyncs committed groups and only then
//! answers their waiters (see [`run_flusher`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;

use serde_json::Value;
use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use tokio::sync::{broadcast, oneshot};

use super::meta;
use super::{
    decode_record, encode_record, records_tree, Action, Change, ChangeLogBytes, CollectionSpec, Committed, Expect,
    WriteError, WriteOp,
};
use crate::clock::now_millis;

/// Upper bound on jobs per group: bigger groups amortise the fsync further but
/// delay the first waiter; 256 keeps a group's commit well under a few ms.
const MAX_GROUP: usize = 256;

/// Change-log entries removed per trim job, so trimming a large backlog never
/// holds up client writes for long.
const TRIM_BATCH: u64 = 10_000;

/// Most change-log entries a group removes to get back under the byte
/// budget. In the steady state a group removes about as many bytes as it
/// added (a few entries); the cap only binds when a group of large records
/// displaces many small ones, and the groups after it (and retention's
/// trim jobs) take the rest.
const GROUP_TRIM: u64 = 4096;

/// Values at least this large count as written out of line: sled writes a
/// log message over a quarter segment (~128 KiB; a leaf holds up to 16
/// values) to a blob file of its own and puts only a pointer in the log.
const LARGE_VALUE: usize = 64 * 1024;

/// After this many bytes of large values the writer moves sled's log on
/// to a new segment (see [`Writer::advance_log`]).
const ADVANCE_EVERY: u64 = 8 * 1024 * 1024;

/// The filler that moves the log on: this many inline writes of
/// [`PAD_VALUE`] bytes, more than one 512 KiB segment in all.
const PAD_WRITES: u8 = 6;
const PAD_VALUE: usize = 100 * 1024;

/// The tree the filler goes to (empty between groups; not backed up).
pub(super) const PAD_TREE: &str = "pad";

pub(super) type Reply = oneshot::Sender<Result<Vec<Committed>, WriteError>>;

pub(super) enum Job {
    Write {
        ops: Vec<WriteOp>,
        reply: Reply,
    },
    /// A snapshot, between two groups (see `backup.rs`): the job gets the
    /// database and writes it out (and answers its caller) itself.
    Backup(Box<dyn FnOnce(&sled::Db) + Send>),
    /// The collections' index sets, sent once at start.
    SetSpecs {
        specs: Vec<Arc<CollectionSpec>>,
        reply: Reply,
    },
    Shutdown,
}

/// Pending writes per tree: key → new value (`None` = remove).
type Overlay = HashMap<String, HashMap<Vec<u8>, Option<Vec<u8>>>>;

/// Pending collection changes: id → new spec (`None` = deleted).
type SpecChanges = HashMap<String, Option<Arc<CollectionSpec>>>;

pub(super) struct Writer {
    db: sled::Db,
    meta: sled::Tree,
    changes: sled::Tree,
    /// The last assigned seq.
    head: u64,
    hub: broadcast::Sender<Arc<Change>>,
    /// Open tree handles (sled caches them too, but this avoids the name lookup).
    trees: HashMap<String, sled::Tree>,
    /// The committed index set of every collection.
    specs: HashMap<String, Arc<CollectionSpec>>,
    /// Hands committed groups to the flusher thread.
    flusher: Option<SyncSender<Committable>>,
    /// The change log's bytes (keys + values) after the planned writes;
    /// `change_log.total` holds the committed figure, `change_log.budget`
    /// the limit.
    change_bytes: u64,
    change_log: Arc<ChangeLogBytes>,
    /// Bytes of large values committed since the log last moved on.
    large_since_advance: u64,
}

/// A committed (applied, not yet durable) group: who to answer, what to publish.
struct Committable {
    outcomes: Vec<(Reply, Result<Vec<Committed>, WriteError>)>,
    published: Vec<Change>,
}

/// Committed groups waiting for the flusher. Small: if fsync falls behind,
/// the writer blocks here instead of racing ahead with unflushed groups.
const FLUSH_QUEUE: usize = 4;

/// The flusher: fsyncs once for every committed group that queued up while
/// the previous fsync ran, then publishes and answers them in order.
///
/// Running it beside the writer pipelines the two costs: while group N is
/// being fsynced, group N+1 is already being planned and applied. (Data
/// applied but not yet flushed is visible to readers for that moment, as it
/// is within any group; no write is *answered* before its flush.)
fn run_flusher(db: sled::Db, hub: broadcast::Sender<Arc<Change>>, rx: Receiver<Committable>) {
    while let Ok(first) = rx.recv() {
        let mut batches = vec![first];
        while let Ok(more) = rx.try_recv() {
            batches.push(more);
        }
        finish(&db, &hub, batches);
    }
}

/// Flushes, then publishes each change and answers each waiter, in order.
fn finish(db: &sled::Db, hub: &broadcast::Sender<Arc<Change>>, batches: Vec<Committable>) {
    tracing::trace!(
        groups = batches.len(),
        writes = batches.iter().map(|b| b.outcomes.len()).sum::<usize>(),
        "flush"
    );
    if let Err(e) = db.flush() {
        let err = storage(e);
        tracing::error!(error = %err, "flush failed; answering the unflushed writes with errors");
        for b in batches {
            for (reply, outcome) in b.outcomes {
                let _ = reply.send(outcome.and(Err(err.clone())));
            }
        }
        return;
    }
    for b in batches {
        for change in b.published {
            // No receivers is fine: nobody is listening yet.
            let _ = hub.send(Arc::new(change));
        }
        for (reply, outcome) in b.outcomes {
            // The waiter may have gone (client disconnected); the write stands.
            let _ = reply.send(outcome);
        }
    }
}

/// A job's planned effects.
struct Plan {
    overlay: Overlay,
    specs: SpecChanges,
    changes: Vec<Change>,
    results: Vec<Committed>,
    /// The last seq taken, counting this job's record writes: the group's
    /// head once the job is accepted (a refused job's seqs are never used).
    head: u64,
    /// The change log's byte total with this job's entries (and trims).
    change_bytes: u64,
}

impl Plan {
    /// An empty plan on top of the group so far.
    fn after(head: u64, change_bytes: u64) -> Plan {
        Plan {
            overlay: Overlay::new(),
            specs: SpecChanges::new(),
            changes: Vec::new(),
            results: Vec::new(),
            head,
            change_bytes,
        }
    }

    /// The seq of the next record write.
    fn next_seq(&mut self) -> u64 {
        self.head += 1;
        self.head
    }
}

/// What the jobs planned before this one in the same group left.
#[derive(Clone, Copy)]
struct Group<'g> {
    overlay: &'g Overlay,
    specs: &'g SpecChanges,
}

impl Writer {
    pub(super) fn new(
        db: sled::Db,
        meta: sled::Tree,
        changes: sled::Tree,
        head: u64,
        hub: broadcast::Sender<Arc<Change>>,
        change_log: Arc<ChangeLogBytes>,
    ) -> Writer {
        Writer {
            db,
            meta,
            changes,
            head,
            hub,
            trees: HashMap::new(),
            specs: HashMap::new(),
            flusher: None,
            change_bytes: change_log.total.load(Ordering::Relaxed),
            change_log,
            large_since_advance: 0,
        }
    }

    pub(super) fn run(mut self, rx: Receiver<Job>) {
        let (tx, flush_rx) = mpsc::sync_channel::<Committable>(FLUSH_QUEUE);
        let (db, hub) = (self.db.clone(), self.hub.clone());
        let flusher = std::thread::Builder::new()
            .name("basalt-flusher".into())
            .spawn(move || run_flusher(db, hub, flush_rx));
        match flusher {
            Ok(handle) => {
                self.flusher = Some(tx);
                self.run_groups(rx);
                self.flusher = None;
                let _ = handle.join();
            }
            Err(e) => {
                tracing::warn!(error = %e, "no flusher thread; committing and flushing in turn");
                self.run_groups(rx);
            }
        }
        if let Err(e) = self.db.flush() {
            tracing::error!(error = %e, "final flush failed");
        }
    }

    fn run_groups(&mut self, rx: Receiver<Job>) {
        'outer: while let Ok(first) = rx.recv() {
            let mut group = Vec::new();
            let mut stop = false;
            let mut backup = None;
            match first {
                Job::Shutdown => break,
                Job::SetSpecs { specs, reply } => {
                    self.set_specs(specs);
                    let _ = reply.send(Ok(Vec::new()));
                    continue;
                }
                Job::Backup(snapshot) => {
                    snapshot(&self.db);
                    continue;
                }
                Job::Write { ops, reply } => group.push((ops, reply)),
            }
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(Job::Write { ops, reply }) => group.push((ops, reply)),
                    Ok(Job::SetSpecs { reply, .. }) => {
                        let _ = reply.send(Err(WriteError::Storage("collections were already loaded".into())));
                    }
                    // After this group, before anything queued later.
                    Ok(Job::Backup(snapshot)) => {
                        backup = Some(snapshot);
                        break;
                    }
                    Ok(Job::Shutdown) => {
                        stop = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group);
            // Every group before it is applied (the flusher may still be
            // syncing the last one; the snapshot's file is synced itself).
            if let Some(snapshot) = backup {
                snapshot(&self.db);
            }
            if stop {
                break 'outer;
            }
        }
    }

    fn set_specs(&mut self, specs: Vec<Arc<CollectionSpec>>) {
        self.specs = specs.into_iter().map(|s| (s.id.clone(), s)).collect();
        self.drop_unreferenced_trees(None);
    }

    /// Drops record and index trees that no collection references (only of
    /// `only` if given).
    fn drop_unreferenced_trees(&mut self, only: Option<&HashSet<String>>) {
        let mut live: HashSet<String> = HashSet::new();
        for (id, spec) in &self.specs {
            live.insert(records_tree(id));
            for idx in &spec.indexes {
                live.insert(idx.tree(id));
            }
        }
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

    /// Reads `key` of `tree` as it is after the planned writes.
    fn read(
        &mut self,
        group: &Overlay,
        local: &Overlay,
        tree: &str,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, WriteError> {
        for o in [local, group] {
            if let Some(v) = o.get(tree).and_then(|t| t.get(key)) {
                return Ok(v.clone());
            }
        }
        Ok(self.tree(tree)?.get(key).map_err(storage)?.map(|v| v.to_vec()))
    }

    /// The index set of a collection as it is after the planned changes.
    fn spec(&self, g: Group, local: &SpecChanges, id: &str) -> Result<Arc<CollectionSpec>, WriteError> {
        for changes in [local, g.specs] {
            if let Some(change) = changes.get(id) {
                return change.clone().ok_or(WriteError::NoCollection);
            }
        }
        self.specs.get(id).cloned().ok_or(WriteError::NoCollection)
    }

    fn commit_group(&mut self, group: Vec<(Vec<WriteOp>, Reply)>) {
        // The group's running head and change-log bytes: the writer's own
        // move on only once the group is applied.
        let (mut head, mut change_bytes) = (self.head, self.change_bytes);
        let mut merged = Overlay::new();
        let mut spec_changes = SpecChanges::new();
        let mut outcomes: Vec<(Reply, Result<Vec<Committed>, WriteError>)> = Vec::new();
        let mut published = Vec::new();
        for (ops, reply) in group {
            let so_far = Group {
                overlay: &merged,
                specs: &spec_changes,
            };
            match self.plan(so_far, ops, Plan::after(head, change_bytes)) {
                Ok(plan) => {
                    (head, change_bytes) = (plan.head, plan.change_bytes);
                    for (tree, entries) in plan.overlay {
                        merged.entry(tree).or_default().extend(entries);
                    }
                    spec_changes.extend(plan.specs);
                    published.extend(plan.changes);
                    outcomes.push((reply, Ok(plan.results)));
                }
                Err(e) => outcomes.push((reply, Err(e))),
            }
        }
        // Back under the change log's byte budget in the same transaction,
        // so the committed log never stays over it (see `GROUP_TRIM`).
        if change_bytes > self.change_log.budget.load(Ordering::Relaxed) {
            if let Err(e) = self.trim_oldest(&Overlay::new(), &mut merged, 0, GROUP_TRIM, &mut change_bytes) {
                tracing::warn!(error = %e, "change-log trim failed; retried with the next group");
            }
        }
        if head != self.head {
            merged
                .entry("meta".into())
                .or_default()
                .insert(meta::SEQ.as_bytes().to_vec(), Some(head.to_be_bytes().to_vec()));
        }
        if change_bytes != self.change_bytes || head != self.head {
            merged.entry("meta".into()).or_default().insert(
                meta::CHANGE_BYTES.as_bytes().to_vec(),
                Some(change_bytes.to_be_bytes().to_vec()),
            );
        }
        if let Err(e) = self.apply(merged) {
            tracing::error!(error = %e, "group commit failed; answering its writes with errors");
            for (reply, outcome) in outcomes {
                let _ = reply.send(outcome.and(Err(e.clone())));
            }
            return;
        }
        (self.head, self.change_bytes) = (head, change_bytes);
        self.change_log.total.store(self.change_bytes, Ordering::Relaxed);
        if !spec_changes.is_empty() {
            let touched: HashSet<String> = spec_changes.keys().cloned().collect();
            for (id, change) in spec_changes {
                match change {
                    Some(spec) => self.specs.insert(id, spec),
                    None => self.specs.remove(&id),
                };
            }
            self.drop_unreferenced_trees(Some(&touched));
        }
        let batch = Committable { outcomes, published };
        match &self.flusher {
            Some(tx) => {
                if let Err(mpsc::SendError(batch)) = tx.send(batch) {
                    finish(&self.db, &self.hub, vec![batch]);
                }
            }
            None => finish(&self.db, &self.hub, vec![batch]),
        }
    }

    /// Commits the overlay in one transaction over every touched tree (the
    /// flusher makes it durable).
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

    fn load(
        &mut self,
        group: &Overlay,
        local: &Overlay,
        tree: &str,
        id: &str,
    ) -> Result<Option<super::StoredRecord>, WriteError> {
        self.read(group, local, tree, id.as_bytes())?
            .map(|b| decode_record(&b).map_err(|e| WriteError::Storage(e.to_string())))
            .transpose()
    }

    /// Plans one job on top of what the group planned so far: each op's
    /// writes go into `plan`'s overlay, its result into `plan.results`.
    fn plan(&mut self, g: Group, ops: Vec<WriteOp>, mut plan: Plan) -> Result<Plan, WriteError> {
        let now = now_millis();
        for op in ops {
            let result = match op {
                WriteOp::PutRecord {
                    collection_id,
                    id,
                    data,
                    expect,
                } => self.put_record(g, &mut plan, &collection_id, id, data, expect, now)?,
                WriteOp::DeleteRecord {
                    collection_id,
                    id,
                    expect,
                } => self.delete_record(g, &mut plan, &collection_id, id, expect, now)?,
                WriteOp::PutCollection { spec, def } => {
                    let bytes = serde_json::to_vec(&def).map_err(|e| WriteError::Storage(e.to_string()))?;
                    set(
                        &mut plan.overlay,
                        "meta",
                        meta::collection(&spec.id).into_bytes(),
                        Some(bytes),
                    );
                    plan.specs.insert(spec.id.clone(), Some(spec));
                    Committed::Done
                }
                WriteOp::DeleteCollection { id } => {
                    self.spec(g, &plan.specs, &id)?;
                    set(&mut plan.overlay, "meta", meta::collection(&id).into_bytes(), None);
                    set(&mut plan.overlay, "meta", meta::count(&id).into_bytes(), None);
                    plan.specs.insert(id, None);
                    Committed::Done
                }
                WriteOp::IndexRecords {
                    collection_id,
                    index,
                    ids,
                } => self.index_records(g, &mut plan, &collection_id, &index, ids)?,
                WriteOp::TrimChanges { up_to } => {
                    let mut bytes = plan.change_bytes;
                    let removed = self.trim_oldest(g.overlay, &mut plan.overlay, up_to, TRIM_BATCH, &mut bytes)?;
                    plan.change_bytes = bytes;
                    Committed::Trimmed { removed }
                }
                WriteOp::PutMeta { key, value } => {
                    set(&mut plan.overlay, "meta", key.into_bytes(), value);
                    Committed::Done
                }
                WriteOp::RequireAbsent { collection_ids, id } => self.require_absent(g, &plan, &collection_ids, &id)?,
            };
            plan.results.push(result);
        }
        Ok(plan)
    }

    /// A record write: its revision expectation, its index entries (unique
    /// ones checked), the count for a create, its change-log entry.
    #[allow(clippy::too_many_arguments)]
    fn put_record(
        &mut self,
        g: Group,
        plan: &mut Plan,
        collection_id: &str,
        id: String,
        data: Value,
        expect: Expect,
        now: i64,
    ) -> Result<Committed, WriteError> {
        let spec = self.spec(g, &plan.specs, collection_id)?;
        let tree = records_tree(&spec.id);
        let old = self.load(g.overlay, &plan.overlay, &tree, &id)?;
        match (expect, &old) {
            (Expect::Absent, Some(_)) => return Err(WriteError::IdTaken),
            (Expect::Rev(_), None) => return Err(WriteError::NotFound),
            (Expect::Rev(r), Some(o)) if o.rev != r => return Err(WriteError::Conflict),
            _ => {}
        }
        for idx in &spec.indexes {
            if let Some(o) = &old {
                let (k, _) = idx.entry(&id, &o.data);
                set(&mut plan.overlay, &idx.tree(&spec.id), k, None);
            }
            self.claim(g, plan, idx, &spec.id, &id, &data)?;
        }
        let seq = plan.next_seq();
        // Serialise once: the stored record, the change log entry,
        // the realtime payload and the answer share these bytes.
        let stored = encode_record(seq, &data);
        let json: Arc<[u8]> = Arc::from(&stored[8..]);
        set(&mut plan.overlay, &tree, id.into_bytes(), Some(stored));
        let action = if old.is_none() {
            self.add_count(g.overlay, &mut plan.overlay, &spec.id, 1)?;
            Action::Create
        } else {
            Action::Update
        };
        plan.change_bytes += log_change(plan, seq, action, &spec, data.clone(), Some(json.clone()), now);
        Ok(Committed::Record {
            seq,
            rev: seq,
            data,
            json,
        })
    }

    /// A record delete: its revision expectation, its index entries, the
    /// count, its change-log entry.
    fn delete_record(
        &mut self,
        g: Group,
        plan: &mut Plan,
        collection_id: &str,
        id: String,
        expect: Expect,
        now: i64,
    ) -> Result<Committed, WriteError> {
        let spec = self.spec(g, &plan.specs, collection_id)?;
        let tree = records_tree(&spec.id);
        let old = self
            .load(g.overlay, &plan.overlay, &tree, &id)?
            .ok_or(WriteError::NotFound)?;
        if let Expect::Rev(r) = expect {
            if old.rev != r {
                return Err(WriteError::Conflict);
            }
        }
        for idx in &spec.indexes {
            let (k, _) = idx.entry(&id, &old.data);
            set(&mut plan.overlay, &idx.tree(&spec.id), k, None);
        }
        set(&mut plan.overlay, &tree, id.into_bytes(), None);
        self.add_count(g.overlay, &mut plan.overlay, &spec.id, -1)?;
        let seq = plan.next_seq();
        plan.change_bytes += log_change(plan, seq, Action::Delete, &spec, old.data.clone(), None, now);
        Ok(Committed::Deleted { seq, last: old.data })
    }

    /// Writes the entries of index `index` for `ids` from the records'
    /// current state (a background build's chunk).
    fn index_records(
        &mut self,
        g: Group,
        plan: &mut Plan,
        collection_id: &str,
        index: &str,
        ids: Vec<String>,
    ) -> Result<Committed, WriteError> {
        let spec = self.spec(g, &plan.specs, collection_id)?;
        // The index may have been removed meanwhile: nothing to do.
        if let Some(idx) = spec.indexes.iter().find(|i| i.name == index) {
            let tree = records_tree(&spec.id);
            for id in ids {
                let Some(rec) = self.load(g.overlay, &plan.overlay, &tree, &id)? else {
                    continue;
                };
                self.claim(g, plan, idx, &spec.id, &id, &rec.data)?;
            }
        }
        Ok(Committed::Done)
    }

    /// Puts record `id`'s entry of `idx`; a unique index refuses a key
    /// another record holds.
    fn claim(
        &mut self,
        g: Group,
        plan: &mut Plan,
        idx: &super::IndexDef,
        collection_id: &str,
        id: &str,
        data: &Value,
    ) -> Result<(), WriteError> {
        let name = idx.tree(collection_id);
        let (k, unique) = idx.entry(id, data);
        if unique {
            if let Some(holder) = self.read(g.overlay, &plan.overlay, &name, &k)? {
                if holder != id.as_bytes() {
                    return Err(not_unique(idx));
                }
            }
        }
        set(&mut plan.overlay, &name, k, Some(id.as_bytes().to_vec()));
        Ok(())
    }

    /// Refuses the job if `id` is a record of any of `collection_ids`.
    fn require_absent(
        &mut self,
        g: Group,
        plan: &Plan,
        collection_ids: &[String],
        id: &str,
    ) -> Result<Committed, WriteError> {
        for cid in collection_ids {
            let Ok(spec) = self.spec(g, &plan.specs, cid) else {
                continue;
            };
            let tree = records_tree(&spec.id);
            if self.read(g.overlay, &plan.overlay, &tree, id.as_bytes())?.is_some() {
                return Err(WriteError::IdInUse);
            }
        }
        Ok(Committed::Done)
    }

    /// Removes the oldest change-log entries that have `seq <= up_to` or
    /// leave the log over its byte budget, at most `max` of them, into
    /// `local`; entries already removed by the planned writes are passed
    /// over. Returns how many it removed.
    fn trim_oldest(
        &self,
        group: &Overlay,
        local: &mut Overlay,
        up_to: u64,
        max: u64,
        change_bytes: &mut u64,
    ) -> Result<u64, WriteError> {
        let budget = self.change_log.budget.load(Ordering::Relaxed);
        let mut removed = 0u64;
        for kv in self.changes.iter() {
            if removed >= max {
                break;
            }
            let (k, v) = kv.map_err(storage)?;
            let seq = k.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0);
            if seq > up_to && *change_bytes <= budget {
                break;
            }
            let gone = |o: &Overlay| {
                o.get("changes")
                    .and_then(|t| t.get(k.as_ref()))
                    .is_some_and(Option::is_none)
            };
            if gone(group) || gone(local) {
                continue;
            }
            set(local, "changes", k.to_vec(), None);
            *change_bytes = change_bytes.saturating_sub((k.len() + v.len()) as u64);
            removed += 1;
        }
        Ok(removed)
    }

    fn add_count(&mut self, group: &Overlay, local: &mut Overlay, id: &str, delta: i64) -> Result<(), WriteError> {
        let key = meta::count(id).into_bytes();
        let cur = self
            .read(group, local, "meta", &key)?
            .and_then(|b| b.as_slice().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0);
        let next = cur.saturating_add_signed(delta);
        set(local, "meta", key, Some(next.to_be_bytes().to_vec()));
        Ok(())
    }
}

fn not_unique(idx: &super::IndexDef) -> WriteError {
    WriteError::NotUnique {
        index: idx.name.clone(),
        fields: idx.fields.iter().map(|f| f.path.join(".")).collect(),
    }
}

/// Appends a change to the log; returns the bytes it adds (key + value).
/// With `json` (the record already serialised) the entry is assembled
/// around those bytes instead of serialising the record a second time.
fn log_change(
    plan: &mut Plan,
    seq: u64,
    action: Action,
    spec: &CollectionSpec,
    record: Value,
    json: Option<Arc<[u8]>>,
    ts: i64,
) -> u64 {
    let change = Change {
        seq,
        action,
        collection_id: spec.id.clone(),
        collection_name: spec.name.clone(),
        record,
        ts,
        record_json: match &json {
            Some(j) => std::sync::OnceLock::from(j.to_vec()),
            None => Default::default(),
        },
    };
    let bytes = match json {
        Some(j) => {
            let head = serde_json::json!({
                "seq": seq, "action": action, "collectionId": spec.id,
                "collectionName": spec.name, "ts": ts,
            });
            let mut out = serde_json::to_vec(&head).expect("serialize change");
            out.pop(); // the closing brace
            out.extend_from_slice(b",\"record\":");
            out.extend_from_slice(&j);
            out.push(b'}');
            out
        }
        None => serde_json::to_vec(&change).expect("serialize change"),
    };
    let added = (8 + bytes.len()) as u64;
    set(&mut plan.overlay, "changes", seq.to_be_bytes().to_vec(), Some(bytes));
    plan.changes.push(change);
    added
}

fn set(overlay: &mut Overlay, tree: &str, key: Vec<u8>, value: Option<Vec<u8>>) {
    overlay.entry(tree.to_owned()).or_default().insert(key, value);
}

fn storage(e: sled::Error) -> WriteError {
    WriteError::Storage(e.to_string())
}
