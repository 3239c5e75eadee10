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

    /// Sets (or, with `None`, clears) one build's status.
    pub fn set(&self, collection_id: &str, index: &str, status: Option<BuildStatus>) {
        let key = (collection_id.to_owned(), index.to_owned());
        match status {
            Some(s) => self.lock().insert(key, s),
            None => self.lock().remove(&key),
        };
    }
}
