//! Building a new secondary index over a collection's existing records, in
//! the background, with progress.
//!
//! From the moment an index is saved, every write maintains it (the writer
//! uses the collection's current index set). The builder walks the existing
//! records in id order, 1,000 ids per job, and has the writer write their
//! entries from the records' *current* state, so it never races with
//! concurrent updates. Until the build finishes, the planner does not use
//! the index. A unique index that finds two records with the same value
//! fails the build and is removed again, with the reason kept in its status.
//! A build interrupted by a restart resumes from the start (entries are
//! idempotent) thanks to a marker in `meta`.
//!
//! The marker holds a token that every save of the index renews. A build
//! removes the marker (and a failed one the index) only if it still holds
//! the token the build started from, as one compare-and-delete in the
//! writer (`WriteOp::RequireMeta`); otherwise the index was saved again
//! meanwhile, here or on another node, and the build runs again for that
//! save. One build per index runs in a process at a time.
//!
//! Several nodes on one database (PostgreSQL): builds run on the node
//! holding the [`Lease::IndexBuilds`] lease, which starts every build
//! whose marker it sees ([`run_pending`], called by `core::nodes` after
//! each change and each second); the other nodes only mark them building
//! (so their planners skip the index too) and forget them when the marker
//! is gone ([`sync_markers`]). A holder that dies leaves its markers: the
//! next holder builds them from the start.

use std::ops::Bound;

use crate::state::{AppState, BuildStatus};
use crate::store::{IndexDef, Lease, StoreError, WriteError, WriteOp};

/// Ids per builder job: large enough to amortise the commit, small enough
/// not to delay other writers' groups.
const CHUNK: usize = 1000;

/// The `meta` key marking an unfinished build.
pub fn marker(collection_id: &str, index: &str) -> String {
    crate::store::meta::index_build(collection_id, index)
}

/// Marks a build as started (so the planner ignores the index at once).
pub fn mark_building(state: &AppState, collection_id: &str, index: &str) {
    state.index_builds.set(
        collection_id,
        index,
        Some(BuildStatus {
            state: "building",
            done: 0,
            total: state.store.count(collection_id),
            error: None,
        }),
    );
}

/// Forgets the status of a removed index.
pub fn forget(state: &AppState, collection_id: &str, index: &str) {
    state.index_builds.set(collection_id, index, None);
}

/// A new value for a build's marker. Every save of an index writes a new
/// one, so a build finishing can tell whether the index was saved again
/// while it ran (its marker then holds another token, and it builds again)
/// instead of removing the newer save's marker.
pub fn new_token() -> Vec<u8> {
    crate::ids::record_id().into_bytes()
}

/// Runs a build to completion in the background (on another node when
/// that one holds the builds' lease: here it is only marked building).
/// One build per index runs here at a time: a save while it runs changes
/// the marker's token, which that build sees when it finishes and builds
/// again; a save it could no longer see is started when it ends.
pub fn spawn_build(state: AppState, collection_id: String, index: String) {
    if !state.store.holds_lease(Lease::IndexBuilds) {
        mark_building(&state, &collection_id, &index);
        return;
    }
    if !state.index_builds.claim(&collection_id, &index) {
        return;
    }
    mark_building(&state, &collection_id, &index);
    actix_web::rt::spawn(async move {
        let seen = build(&state, &collection_id, &index).await;
        state.index_builds.release(&collection_id, &index);
        // Saved again after this build's last look at the marker: the save's
        // own start found this build still running, so start it here.
        let now = state.store.meta_get(&marker(&collection_id, &index)).ok().flatten();
        if now.is_some() && now != seen && current_def(&state, &collection_id, &index).is_some() {
            spawn_build(state, collection_id, index);
        }
    });
}

/// The unfinished builds' markers: `(collection id, index)`.
fn markers(state: &AppState) -> Result<Vec<(String, String)>, StoreError> {
    let prefix = crate::store::meta::INDEX_BUILD_PREFIX;
    Ok(state
        .store
        .meta_keys(prefix)?
        .iter()
        .filter_map(|k| {
            let (cid, index) = k.strip_prefix(prefix)?.split_once('/')?;
            Some((cid.to_owned(), index.to_owned()))
        })
        .collect())
}

/// Starts every build whose marker is in the store and that does not run
/// here yet (the builds' lease holder; also at start).
pub fn run_pending(state: &AppState) -> Result<(), StoreError> {
    for (cid, index) in markers(state)? {
        // An index this node's registry does not show yet (saved on another
        // node, not reloaded yet) is left for the next round.
        if current_def(state, &cid, &index).is_some() && !state.index_builds.is_running(&cid, &index) {
            spawn_build(state.clone(), cid, index);
        }
    }
    Ok(())
}

/// Follows the markers other nodes wrote or removed: builds in progress
/// anywhere are marked building here (the planner skips their index),
/// builds finished elsewhere are forgotten. Called with the collections
/// read *before* the markers, so an index this node can see is never
/// taken for ready while its build's marker exists.
pub fn sync_markers(state: &AppState) -> Result<(), StoreError> {
    let live = markers(state)?;
    for (cid, index) in &live {
        if !state.index_builds.is_known(cid, index) {
            mark_building(state, cid, index);
        }
    }
    for (cid, index) in state.index_builds.building() {
        let listed = live.iter().any(|(c, i)| *c == cid && *i == index);
        if !listed && !state.index_builds.is_running(&cid, &index) {
            forget(state, &cid, &index);
        }
    }
    Ok(())
}

/// How one pass over the records ended.
enum Pass {
    /// Every record's entry is written (this many records).
    Built(u64),
    /// The index is no longer in the collection: removed, or the
    /// collection deleted (whoever did it removed the marker too).
    Gone,
    /// The build failed and the reason is recorded (or it was saved again
    /// meanwhile: `fail` says which).
    Failed { saved_again: bool },
    /// The store is out of reach (or shutting down): the marker stays, and
    /// the build starts again later (at the next start; on PostgreSQL, at
    /// the lease holder's next round). A passing outage never removes the
    /// index a user saved.
    Paused,
}

/// Builds the index until its marker is gone; returns the last marker
/// token it saw. Each pass builds for the token read at its start and
/// removes the marker only if it still holds that token (compare and
/// delete, in the writer): a save meanwhile wrote a new token, and the
/// build runs again for it.
async fn build(state: &AppState, cid: &str, index: &str) -> Option<Vec<u8>> {
    let key = marker(cid, index);
    let mut seen = None;
    loop {
        let token = match state.store.meta_get(&key) {
            Ok(Some(t)) => t,
            // Gone (removed with the index, or built): nothing left to do.
            Ok(None) => {
                state.index_builds.finish(cid, index);
                return seen;
            }
            // The store is out of reach: the marker stays, and the build
            // resumes later (PostgreSQL: the lease holder's next round).
            Err(e) => {
                paused(cid, index, &e.to_string());
                return seen;
            }
        };
        seen = Some(token.clone());
        let finish = vec![
            WriteOp::RequireMeta {
                key: key.clone(),
                value: Some(token.clone()),
            },
            WriteOp::PutMeta {
                key: key.clone(),
                value: None,
            },
        ];
        let done = match pass(state, cid, index, &token).await {
            Pass::Built(done) => done,
            // Whoever removed the index removed its marker in the same
            // write; one left behind (a marker without its index) goes too.
            Pass::Gone => {
                let _ = write_retrying(state, finish).await;
                state.index_builds.finish(cid, index);
                return seen;
            }
            Pass::Failed { saved_again: true } => continue,
            Pass::Failed { saved_again: false } | Pass::Paused => return seen,
        };
        match write_retrying(state, finish).await {
            Ok(()) => {
                tracing::info!(collection = cid, index, records = done, "index built");
                state.index_builds.finish(cid, index);
                return seen;
            }
            // Saved again while this pass ran: build for the new save.
            Err(WriteError::Conflict) => continue,
            Err(e @ (WriteError::Unavailable(_) | WriteError::ShuttingDown)) => {
                paused(cid, index, &e.to_string());
                return seen;
            }
            Err(e) => {
                if fail(state, cid, index, &token, done, e.to_string()).await {
                    return seen;
                }
            }
        }
    }
}

/// One walk over the collection's records in id order, writing the
/// index's entries chunk by chunk.
async fn pass(state: &AppState, cid: &str, index: &str, token: &[u8]) -> Pass {
    let mut after: Option<Vec<u8>> = None;
    let mut done = 0u64;
    let Some(mut def) = current_def(state, cid, index) else {
        return Pass::Gone;
    };
    loop {
        // The definition changed while building (saved again, here or on
        // another node): the chunks so far hold the old one's entries, so
        // start over.
        match current_def(state, cid, index) {
            None => return Pass::Gone,
            Some(now) if now != def => (def, after, done) = (now, None, 0),
            Some(_) => {}
        }
        let lower = after.clone().map_or(Bound::Unbounded, Bound::Excluded);
        let ids: Vec<String> = match state
            .store
            .index_range(cid, &IndexDef::primary(), lower, Bound::Unbounded, false)
        {
            Ok(iter) => iter.take(CHUNK).filter_map(Result::ok).map(|(_, id)| id).collect(),
            Err(e) => return paused(cid, index, &e.to_string()),
        };
        let Some(last) = ids.last() else {
            if current_def(state, cid, index).as_ref() == Some(&def) {
                return Pass::Built(done);
            }
            continue;
        };
        after = Some(last.as_bytes().to_vec());
        let n = ids.len() as u64;
        let job = vec![WriteOp::IndexRecords {
            collection_id: cid.to_owned(),
            index: index.to_owned(),
            ids,
        }];
        match write_retrying(state, job).await {
            Ok(()) => {}
            Err(WriteError::NoCollection) => return Pass::Gone,
            Err(WriteError::NotUnique { fields, .. }) => {
                let msg = format!("two records have the same value for {}", fields.join(", "));
                return failed(state, cid, index, token, done, msg).await;
            }
            Err(e @ (WriteError::Unavailable(_) | WriteError::ShuttingDown)) => {
                return paused(cid, index, &e.to_string())
            }
            Err(e) => return failed(state, cid, index, token, done, e.to_string()).await,
        }
        done += n;
        state.index_builds.set(
            cid,
            index,
            Some(BuildStatus {
                state: "building",
                done,
                total: state.store.count(cid).max(done),
                error: None,
            }),
        );
    }
}

/// Writes a builder's job, backing off while the queue is full: client
/// writes come first.
async fn write_retrying(state: &AppState, job: Vec<WriteOp>) -> Result<(), WriteError> {
    loop {
        match state.store.write(job.clone()).await {
            Err(WriteError::Overloaded) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            other => return other.map(|_| ()),
        }
    }
}

fn paused(cid: &str, index: &str, error: &str) -> Pass {
    tracing::warn!(
        collection = cid,
        index,
        error,
        "index build paused: the store is unavailable; it starts again later"
    );
    Pass::Paused
}

async fn failed(state: &AppState, cid: &str, index: &str, token: &[u8], done: u64, error: String) -> Pass {
    let removed = fail(state, cid, index, token, done, error).await;
    Pass::Failed { saved_again: !removed }
}

/// The index's definition as this node's registry has it now.
fn current_def(state: &AppState, cid: &str, index: &str) -> Option<IndexDef> {
    let c = state.registry.get(cid)?;
    c.spec.indexes.iter().find(|i| i.name == index).cloned()
}

/// Records the failure and removes the index from the collection, so writes
/// are not rejected by a unique index that was never valid. Only the save
/// this build ran for is undone: if the index was saved again meanwhile
/// (its marker holds another token), nothing is removed and this returns
/// false (the build runs again for the new save).
async fn fail(state: &AppState, cid: &str, index: &str, token: &[u8], done: u64, error: String) -> bool {
    match super::collections::remove_index(state, cid, index, token).await {
        Err(e) if e.status == 409 => return false,
        Err(e) => tracing::warn!(collection = cid, index, error = %e.message, "removing the failed index failed"),
        Ok(()) => {}
    }
    tracing::warn!(collection = cid, index, %error, "index build failed; the index is removed");
    state.index_builds.set(
        cid,
        index,
        Some(BuildStatus {
            state: "failed",
            done,
            total: state.store.count(cid),
            error: Some(error),
        }),
    );
    true
}
