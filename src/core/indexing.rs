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

use std::ops::Bound;

use crate::state::{AppState, BuildStatus};
use crate::store::index::IndexField;
use crate::store::{IndexDef, WriteError, WriteOp, PRIMARY_INDEX};

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

/// Runs a build to completion in the background.
pub fn spawn_build(state: AppState, collection_id: String, index: String) {
    mark_building(&state, &collection_id, &index);
    actix_web::rt::spawn(async move {
        build(&state, &collection_id, &index).await;
    });
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
    loop {
        let lower = after.clone().map_or(Bound::Unbounded, Bound::Excluded);
        let ids: Vec<String> = match state.store.index_range(cid, &primary, lower, Bound::Unbounded, false) {
            Ok(iter) => iter.take(CHUNK).filter_map(Result::ok).map(|(_, id)| id).collect(),
            Err(e) => return fail(state, cid, index, done, e.to_string()).await,
        };
        let Some(last) = ids.last() else { break };
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
