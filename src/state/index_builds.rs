//! Index-build bookkeeping: which secondary indexes are still being built
//! (the planner skips them) and how far each build got. The builds
//! themselves are `core::indexing`'s; this is only the shared record of them.

use std::collections::HashMap;
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
    /// The builds running in this process (several nodes: a build is
    /// started once per node however often its marker is seen).
    /// How many builds of each index run here (a definition changed while
    /// its build ran starts a second one, as a restart would).
    running: Arc<Mutex<HashMap<(String, String), usize>>>,
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

    /// Counts a build as running here.
    pub fn claim(&self, collection_id: &str, index: &str) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        *running.entry((collection_id.to_owned(), index.to_owned())).or_default() += 1;
    }

    /// A build ended here (finished, failed or abandoned).
    pub fn release(&self, collection_id: &str, index: &str) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let key = (collection_id.to_owned(), index.to_owned());
        if let Some(n) = running.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                running.remove(&key);
            }
        }
    }

    /// Whether this process runs a build of the index.
    pub fn is_running(&self, collection_id: &str, index: &str) -> bool {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.contains_key(&(collection_id.to_owned(), index.to_owned()))
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
