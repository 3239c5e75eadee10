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
//! A second thread, the flusher, makes committed groups durable and only then
//! answers their waiters (see [`run_flusher`]).
//!
//! The planning here is the same for every engine: it reads through the
//! overlays and then the engine's [`Backend`], which is a type parameter
//! (monomorphised, so the embedded engine's hot path pays no dispatch).
//! `embedded.rs` applies a group as one sled transaction and fsyncs in the
//! flusher; `postgres/` takes the cluster's write turn when a group starts
//! and applies it as one PostgreSQL transaction.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{broadcast, oneshot};

use super::meta;
use super::{
    decode_record, encode_record, records_tree, Action, Change, ChangeLogBytes, CollectionSpec, Committed, Expect,
    SpecLoader, WriteError, WriteOp,
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

pub(super) type Reply = oneshot::Sender<Result<Vec<Committed>, WriteError>>;

pub(super) enum Job {
    Write {
        ops: Vec<WriteOp>,
        reply: Reply,
    },
    /// A snapshot, between two groups (see `backup.rs`): the job gets the
    /// engine's committed state and writes it out (and answers its caller)
    /// itself.
    Backup(super::backup::SnapshotJob),
    /// The collections' index sets, sent once at start, and how to read
    /// a stored definition's (to reload them when another node changed
    /// them).
    SetSpecs {
        specs: Vec<Arc<CollectionSpec>>,
        loader: SpecLoader,
        reply: Reply,
    },
    Shutdown,
}

/// Pending writes per tree: key → new value (`None` = remove).
pub(super) type Overlay = HashMap<String, HashMap<Vec<u8>, Option<Vec<u8>>>>;

/// Pending collection changes: id → new spec (`None` = deleted).
type SpecChanges = HashMap<String, Option<Arc<CollectionSpec>>>;

/// What an engine gives the writer: committed state to plan against, and
/// a way to commit a planned group atomically. Trees and keys are the
/// embedded layout's (`meta`, `changes`, `rec/<id>`, `idx/...`; see
/// `store/mod.rs`), which each engine maps onto its own storage.
pub(super) trait Backend: Send + 'static {
    /// What the flusher uses to make applied groups durable.
    type Durable: Durable;
    fn durable(&self) -> Self::Durable;
    /// Starts a group. An engine other nodes also write to takes the
    /// cluster's write turn here and returns the committed head seq and
    /// change-log bytes; `None` means the writer's own figures are current.
    fn begin(&mut self) -> Result<Option<(u64, u64)>, WriteError>;
    /// The collections/settings version as the group found it (engines
    /// other nodes write to; `None`: only this writer changes them).
    fn specs_version(&self) -> Option<u64> {
        None
    }
    /// Committed `meta` entries under `prefix` (within the group's turn;
    /// needed only where `specs_version` is given).
    fn meta_scan(&mut self, _prefix: &str) -> Result<Vec<(String, Vec<u8>)>, WriteError> {
        Ok(Vec::new())
    }
    /// A committed value (within the group's turn).
    fn read(&mut self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, WriteError>;
    /// Calls `f(key, bytes)` for the change log's entries, oldest first,
    /// until it returns false (`bytes`: what the entry counts against the
    /// byte budget).
    fn oldest_changes(&mut self, f: &mut dyn FnMut(&[u8], u64) -> bool) -> Result<(), WriteError>;
    /// Commits the group's writes, all or none, and ends the group (also
    /// when `overlay` is empty).
    fn apply(&mut self, overlay: Overlay) -> Result<(), WriteError>;
    /// Removes the records and index entries of trees not in `live`, of the
    /// collections in `only` (of every collection when `None`).
    fn drop_unreferenced(&mut self, live: &HashSet<String>, only: Option<&HashSet<String>>);
    /// Hands a consistent view of the committed state to a snapshot job.
    fn snapshot(&mut self, job: super::backup::SnapshotJob);
    /// Called once when the writer stops.
    fn close(&mut self);
    /// Whether strings may hold U+0000 (PostgreSQL's JSONB cannot).
    const ACCEPTS_NUL: bool;
    /// Whether the engine publishes committed changes to the realtime hub
    /// itself, by following the change log (PostgreSQL, where other nodes
    /// commit too): the writer then publishes nothing.
    const TAILED: bool = false;
}

/// Makes applied groups durable (the embedded engine's fsync; a no-op
/// where the commit itself is durable).
pub(super) trait Durable: Send + 'static {
    fn sync(&self) -> Result<(), WriteError>;
}

pub(super) struct Writer<B: Backend> {
    backend: B,
    /// The last assigned seq.
    head: u64,
    hub: broadcast::Sender<Arc<Change>>,
    /// The committed index set of every collection.
    specs: HashMap<String, Arc<CollectionSpec>>,
    /// Hands committed groups to the flusher thread.
    flusher: Option<SyncSender<Committable>>,
    /// The change log's bytes (keys + values) after the planned writes;
    /// `change_log.total` holds the committed figure, `change_log.budget`
    /// the limit.
    change_bytes: u64,
    change_log: Arc<ChangeLogBytes>,
    /// Reads a stored collection definition's index set.
    loader: Option<SpecLoader>,
    /// The collections/settings version `specs` was read at (engines other
    /// nodes write to): a group that finds another reloads them first.
    specs_version: Option<u64>,
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
fn run_flusher<D: Durable>(durable: D, hub: broadcast::Sender<Arc<Change>>, rx: Receiver<Committable>) {
    while let Ok(first) = rx.recv() {
        let mut batches = vec![first];
        while let Ok(more) = rx.try_recv() {
            batches.push(more);
        }
        finish(&durable, &hub, batches);
    }
}

/// Flushes, then publishes each change and answers each waiter, in order.
fn finish<D: Durable>(durable: &D, hub: &broadcast::Sender<Arc<Change>>, batches: Vec<Committable>) {
    tracing::trace!(
        groups = batches.len(),
        writes = batches.iter().map(|b| b.outcomes.len()).sum::<usize>(),
        "flush"
    );
    if let Err(err) = durable.sync() {
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

impl<B: Backend> Writer<B> {
    pub(super) fn new(
        backend: B,
        head: u64,
        hub: broadcast::Sender<Arc<Change>>,
        change_log: Arc<ChangeLogBytes>,
    ) -> Writer<B> {
        Writer {
            backend,
            head,
            hub,
            specs: HashMap::new(),
            flusher: None,
            change_bytes: change_log.total.load(Ordering::Relaxed),
            change_log,
            loader: None,
            specs_version: None,
        }
    }

    pub(super) fn run(mut self, rx: Receiver<Job>) {
        let (tx, flush_rx) = mpsc::sync_channel::<Committable>(FLUSH_QUEUE);
        let (durable, hub) = (self.backend.durable(), self.hub.clone());
        let flusher = std::thread::Builder::new()
            .name("basalt-flusher".into())
            .spawn(move || run_flusher(durable, hub, flush_rx));
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
        self.backend.close();
    }

    fn run_groups(&mut self, rx: Receiver<Job>) {
        'outer: while let Ok(first) = rx.recv() {
            let mut group = Vec::new();
            let mut stop = false;
            let mut backup = None;
            match first {
                Job::Shutdown => break,
                Job::SetSpecs { specs, loader, reply } => {
                    self.loader = Some(loader);
                    self.set_specs(specs);
                    let _ = reply.send(Ok(Vec::new()));
                    continue;
                }
                Job::Backup(snapshot) => {
                    self.backend.snapshot(snapshot);
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
                self.backend.snapshot(snapshot);
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
        self.backend.drop_unreferenced(&live, only);
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
        self.backend.read(tree, key)
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

    /// Reloads every collection's index set from the committed
    /// definitions (within the group's turn, so no node changes them
    /// meanwhile): another node changed them since this writer read them.
    fn reload_specs(&mut self) -> Result<(), WriteError> {
        let Some(loader) = self.loader.clone() else {
            return Ok(());
        };
        let mut specs = HashMap::new();
        for (_, raw) in self.backend.meta_scan(meta::COLLECTION_PREFIX)? {
            let spec = loader(&raw).map_err(WriteError::Storage)?;
            specs.insert(spec.id.clone(), spec);
        }
        tracing::debug!(
            collections = specs.len(),
            "index sets reloaded: another node changed collections"
        );
        self.specs = specs;
        Ok(())
    }

    /// Starts a group: takes the engine's turn, adopts the committed head,
    /// and (engines other nodes write to) reloads the index sets if they
    /// changed, so no group is ever planned against stale ones.
    fn begin_group(&mut self) -> Result<(), WriteError> {
        if let Some((head, bytes)) = self.backend.begin()? {
            (self.head, self.change_bytes) = (head, bytes);
            self.change_log.total.store(bytes, Ordering::Relaxed);
        }
        if let Some(version) = self.backend.specs_version() {
            if self.specs_version != Some(version) && self.loader.is_some() {
                if let Err(e) = self.reload_specs() {
                    // Ends the turn without writing.
                    let _ = self.backend.apply(Overlay::new());
                    return Err(e);
                }
                self.specs_version = Some(version);
            }
        }
        Ok(())
    }

    /// The new collections/settings version to commit with `merged`, if
    /// it changes collections, settings or index builds (engines other
    /// nodes write to; never on the embedded engine).
    fn bump_version(&self, merged: &Overlay) -> Option<u64> {
        let version = self.backend.specs_version()?;
        let shared = |k: &Vec<u8>| {
            k == meta::SETTINGS.as_bytes()
                || k.starts_with(meta::COLLECTION_PREFIX.as_bytes())
                || k.starts_with(meta::INDEX_BUILD_PREFIX.as_bytes())
        };
        merged
            .get("meta")
            .is_some_and(|m| m.keys().any(shared))
            .then_some(version + 1)
    }

    fn commit_group(&mut self, group: Vec<(Vec<WriteOp>, Reply)>) {
        if let Err(e) = self.begin_group() {
            tracing::warn!(error = %e, "cannot start a group; answering its writes with errors");
            for (_, reply) in group {
                let _ = reply.send(Err(e.clone()));
            }
            return;
        }
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
        let bumped = self.bump_version(&merged);
        if let Some(v) = bumped {
            merged
                .entry("meta".into())
                .or_default()
                .insert(meta::SPECS_VERSION.as_bytes().to_vec(), Some(v.to_be_bytes().to_vec()));
        }
        let in_step = self.specs_version.is_some() && self.specs_version == self.backend.specs_version();
        if let Err(e) = self.apply(merged) {
            tracing::error!(error = %e, "group commit failed; answering its writes with errors");
            // Whatever committed, the next group reads the version afresh.
            self.specs_version = None;
            for (reply, outcome) in outcomes {
                let _ = reply.send(outcome.and(Err(e.clone())));
            }
            return;
        }
        if let Some(v) = bumped {
            self.specs_version = in_step.then_some(v);
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
        let published = if B::TAILED { Vec::new() } else { published };
        let batch = Committable { outcomes, published };
        match &self.flusher {
            Some(tx) => {
                if let Err(mpsc::SendError(batch)) = tx.send(batch) {
                    finish(&self.backend.durable(), &self.hub, vec![batch]);
                }
            }
            None => finish(&self.backend.durable(), &self.hub, vec![batch]),
        }
    }

    /// Commits the overlay atomically (the flusher makes it durable).
    fn apply(&mut self, overlay: Overlay) -> Result<(), WriteError> {
        self.backend.apply(overlay)
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
                WriteOp::RequireMeta { key, value } => {
                    if self.read(g.overlay, &plan.overlay, "meta", key.as_bytes())? != value {
                        return Err(WriteError::Conflict);
                    }
                    Committed::Done
                }
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
        if !B::ACCEPTS_NUL {
            if let Some(field) = nul_in(&data) {
                return Err(WriteError::Unstorable { field });
            }
        }
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
        &mut self,
        group: &Overlay,
        local: &mut Overlay,
        up_to: u64,
        max: u64,
        change_bytes: &mut u64,
    ) -> Result<u64, WriteError> {
        let budget = self.change_log.budget.load(Ordering::Relaxed);
        let mut removed = 0u64;
        self.backend.oldest_changes(&mut |k, size| {
            if removed >= max {
                return false;
            }
            let seq = k.try_into().map(u64::from_be_bytes).unwrap_or(0);
            if seq > up_to && *change_bytes <= budget {
                return false;
            }
            let gone = |o: &Overlay| o.get("changes").and_then(|t| t.get(k)).is_some_and(Option::is_none);
            if gone(group) || gone(local) {
                return true;
            }
            set(local, "changes", k.to_vec(), None);
            *change_bytes = change_bytes.saturating_sub(size);
            removed += 1;
            true
        })?;
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

/// The top-level field of the first string (or object key) in `data`
/// that holds U+0000, if any.
fn nul_in(data: &Value) -> Option<String> {
    fn has(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(a) => a.iter().any(has),
            Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || has(v)),
            _ => false,
        }
    }
    match data {
        Value::Object(m) => m
            .iter()
            .find(|(k, v)| k.contains('\0') || has(v))
            .map(|(k, _)| k.replace('\0', "")),
        other => has(other).then(String::new),
    }
}

fn set(overlay: &mut Overlay, tree: &str, key: Vec<u8>, value: Option<Vec<u8>>) {
    overlay.entry(tree.to_owned()).or_default().insert(key, value);
}
