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
//! Several nodes on one database (PostgreSQL): builds run on the node
//! holding the [`Lease::IndexBuilds`] lease, which starts every build
//! whose marker it sees ([`run_pending`], called by `core::nodes` after
//! each change and each second); the other nodes only mark them building
//! (so their planners skip the index too) and forget them when the marker
//! is gone ([`sync_markers`]). A holder that dies leaves its markers: the
//! next holder builds them from the start.

use std::ops::Bound;

use crate::state::{AppState, BuildStatus};
use crate::store::index::IndexField;
use crate::store::{IndexDef, Lease, StoreError, WriteError, WriteOp, PRIMARY_INDEX};

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

/// Runs a build to completion in the background (on another node when
/// that one holds the builds' lease: here it is only marked building).
pub fn spawn_build(state: AppState, collection_id: String, index: String) {
    if !state.store.holds_lease(Lease::IndexBuilds) {
        mark_building(&state, &collection_id, &index);
        return;
    }
    state.index_builds.claim(&collection_id, &index);
    mark_building(&state, &collection_id, &index);
    actix_web::rt::spawn(async move {
        build(&state, &collection_id, &index).await;
        state.index_builds.release(&collection_id, &index);
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
        if state.registry.get(&cid).is_some_and(|c| c.def.id == cid) && !state.index_builds.is_running(&cid, &index) {
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

async fn build(state: &AppState, cid: &str, index: &str) {
    let primary = IndexDef {
        name: PRIMARY_INDEX.into(),
        unique: true,
        fields: vec![IndexField {
            path: vec!["id".into()],
            desc: false,
        }],
        lowercase: false,
    };
    let mut after: Option<Vec<u8>> = None;
    let mut done = 0u64;
    let mut def = current_def(state, cid, index);
    loop {
        // The definition changed while building (saved again, here or on
        // another node): the chunks so far hold the old one's entries, so
        // start over.
        let now = current_def(state, cid, index);
        // Removed meanwhile: nothing to build; the marker goes.
        if now.is_none() {
            break;
        }
        if now != def {
            (def, after, done) = (now, None, 0);
        }
        let lower = after.clone().map_or(Bound::Unbounded, Bound::Excluded);
        let ids: Vec<String> = match state.store.index_range(cid, &primary, lower, Bound::Unbounded, false) {
            Ok(iter) => iter.take(CHUNK).filter_map(Result::ok).map(|(_, id)| id).collect(),
            Err(e) => return fail(state, cid, index, done, e.to_string()).await,
        };
        let Some(last) = ids.last() else {
            if current_def(state, cid, index) == def {
                break;
            }
            continue;
        };
        after = Some(last.as_bytes().to_vec());
        let n = ids.len() as u64;
        loop {
            let job = vec![WriteOp::IndexRecords {
                collection_id: cid.to_owned(),
                index: index.to_owned(),
                ids: ids.clone(),
            }];
            match state.store.write(job).await {
                Ok(_) => break,
                Err(WriteError::Overloaded) => {
                    // Back off and retry the same chunk: client writes come first.
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(WriteError::NoCollection) => return forget(state, cid, index),
                Err(WriteError::NotUnique { fields, .. }) => {
                    let msg = format!("two records have the same value for {}", fields.join(", "));
                    return fail(state, cid, index, done, msg).await;
                }
                Err(e) => return fail(state, cid, index, done, e.to_string()).await,
            }
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
    let finish = state
        .store
        .write(vec![WriteOp::PutMeta {
            key: marker(cid, index),
            value: None,
        }])
        .await;
    match finish {
        Ok(_) => {
            tracing::info!(collection = cid, index, records = done, "index built");
            forget(state, cid, index);
        }
        Err(e) => fail(state, cid, index, done, e.to_string()).await,
    }
}

/// The index's definition as this node's registry has it now.
fn current_def(state: &AppState, cid: &str, index: &str) -> Option<IndexDef> {
    let c = state.registry.get(cid)?;
    c.spec.indexes.iter().find(|i| i.name == index).cloned()
}

/// Records the failure and removes the index from the collection, so writes
/// are not rejected by a unique index that was never valid.
async fn fail(state: &AppState, cid: &str, index: &str, done: u64, error: String) {
    tracing::warn!(collection = cid, index, %error, "index build failed; the index is removed");
    let _ = super::collections::remove_index(state, cid, index).await;
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
}
