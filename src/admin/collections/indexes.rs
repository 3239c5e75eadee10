//! Index rows for the pages: each declared index with its build status
//! (what `core::collections::export` reports as `indexStatus`), plus builds
//! that failed, whose index core has already removed again.

use crate::schema::CompiledCollection;
use crate::state::{AppState, BuildStatus};

/// One index as the edit page shows it.
pub struct IndexRow {
    pub name: String,
    pub fields: Vec<String>,
    pub unique: bool,
    /// `ready`, `building` or `failed`.
    pub state: &'static str,
    pub done: u64,
    pub total: u64,
    pub error: String,
}

impl IndexRow {
    /// Build progress in whole percent.
    pub fn percent(&self) -> u64 {
        (self.done * 100).checked_div(self.total).unwrap_or(0).min(100)
    }
}

/// A collection's indexes and their statuses, plus a summary for the list.
pub struct IndexView {
    pub rows: Vec<IndexRow>,
    pub building: usize,
    pub failed: usize,
}

pub fn of(state: &AppState, c: &CompiledCollection) -> IndexView {
    let mut builds = state.index_builds.of(&c.def.id);
    let row = |name: &str, fields: Vec<String>, unique: bool, status: Option<BuildStatus>| {
        let status = status.unwrap_or(BuildStatus {
            state: "ready",
            done: 0,
            total: 0,
            error: None,
        });
        IndexRow {
            name: name.to_owned(),
            fields,
            unique,
            state: status.state,
            done: status.done,
            total: status.total,
            error: status.error.unwrap_or_default(),
        }
    };
    let mut rows: Vec<IndexRow> = c
        .def
        .indexes
        .iter()
        .map(|i| row(&i.name, i.fields.clone(), i.unique, builds.remove(&i.name)))
        .collect();
    // What is left are failed builds of indexes no longer defined.
    let mut gone: Vec<_> = builds.into_iter().collect();
    gone.sort_by(|a, b| a.0.cmp(&b.0));
    rows.extend(gone.into_iter().map(|(name, s)| row(&name, Vec::new(), false, Some(s))));
    IndexView {
        building: rows.iter().filter(|r| r.state == "building").count(),
        failed: rows.iter().filter(|r| r.state == "failed").count(),
        rows,
    }
}
