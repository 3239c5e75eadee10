//! Index-build bookkeeping: which secondary indexes are still being built
//! (the planner skips them) and how far each build got. The builds
//! themselves are `core::indexing`'s; this is only the shared record of them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// Progress of one index build.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BuildStatus {
    /// `building` or `failed`.
    pub state: &'static str,
    pub done: u64,
    pub total: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Builds in progress (or failed), by `(collection id, index name)`. An
/// index absent from here is ready. A std mutex: held for map operations only.
#[derive(Clone, Default)]
pub struct IndexBuilds {
    inner: Arc<Mutex<HashMap<(String, String), BuildStatus>>>,
    /// The builds running in this process: one per index (several nodes:
    /// a build is started once however often its marker is seen; a save
    /// while it runs is caught by the running build, see `core::indexing`).
    running: Arc<Mutex<HashSet<(String, String)>>>,
}

impl IndexBuilds {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), BuildStatus>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_ready(&self, collection_id: &str, index: &str) -> bool {
        !self.lock().contains_key(&(collection_id.to_owned(), index.to_owned()))
    }

    /// Statuses of a collection's unfinished builds, by index name.
    pub fn of(&self, collection_id: &str) -> HashMap<String, BuildStatus> {
        self.lock()
            .iter()
            .filter(|((c, _), _)| c == collection_id)
            .map(|((_, n), s)| (n.clone(), s.clone()))
            .collect()
    }

    /// `(collection id, index)` of every build in progress (not failed).
    pub fn building(&self) -> Vec<(String, String)> {
        self.lock()
            .iter()
            .filter(|(_, s)| s.state == "building")
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Whether a status (building or failed) is known for this index.
    pub fn is_known(&self, collection_id: &str, index: &str) -> bool {
        !self.is_ready(collection_id, index)
    }

    /// Counts a build as running here; false if one already runs (one
    /// build per index and process at a time).
    pub fn claim(&self, collection_id: &str, index: &str) -> bool {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.insert((collection_id.to_owned(), index.to_owned()))
    }

    /// A build ended here (finished, failed or abandoned).
    pub fn release(&self, collection_id: &str, index: &str) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.remove(&(collection_id.to_owned(), index.to_owned()));
    }

    /// Whether this process runs a build of the index.
    pub fn is_running(&self, collection_id: &str, index: &str) -> bool {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.contains(&(collection_id.to_owned(), index.to_owned()))
    }

    /// A build ended without failing (or found nothing left to build):
    /// clears its status if it is still "building". A failed status stays
    /// until dismissed or replaced by a new save's build: a build that
    /// finds the marker gone after a failure must not erase its reason.
    pub fn finish(&self, collection_id: &str, index: &str) {
        let key = (collection_id.to_owned(), index.to_owned());
        let mut map = self.lock();
        if map.get(&key).is_some_and(|s| s.state == "building") {
            map.remove(&key);
        }
    }

    /// Sets (or, with `None`, clears) one build's status.
    pub fn set(&self, collection_id: &str, index: &str, status: Option<BuildStatus>) {
        let key = (collection_id.to_owned(), index.to_owned());
        match status {
            Some(s) => self.lock().insert(key, s),
            None => self.lock().remove(&key),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: &'static str) -> Option<BuildStatus> {
        Some(BuildStatus {
            state,
            done: 0,
            total: 1,
            error: (state == "failed").then(|| "two records have the same value for n".into()),
        })
    }

    #[test]
    fn a_build_ending_after_another_failed_keeps_the_failure() {
        let b = IndexBuilds::default();
        b.set("c", "i", status("failed"));
        b.finish("c", "i");
        assert_eq!(b.of("c")["i"].state, "failed");
        b.set("c", "i", status("building"));
        b.finish("c", "i");
        assert!(b.is_ready("c", "i"));
    }
}
