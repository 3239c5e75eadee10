//! Operations shared by every entry point (REST, batch, dashboard, CLI):
//! handlers parse and shape, these functions decide and write.

pub mod auth;
pub mod backups;
pub mod batch;
pub mod bootstrap;
pub mod collections;
pub mod expand;
pub mod file_access;
pub mod files;
pub mod indexing;
pub mod list;
pub mod nodes;
pub mod records;
pub mod references;
pub mod replan;
pub mod sessions;
pub mod settings;

pub use crate::rules::{Caller, RequestInfo, SUPERUSERS};

/// The part of the server's state rules read (records and collections),
/// drawing on `budget`.
pub fn rule_data<'a>(state: &'a crate::state::AppState, budget: &'a crate::rules::Budget) -> crate::rules::Data<'a> {
    crate::rules::Data::new(&state.store, &state.registry, budget)
}

/// A fresh budget for one request, from the settings (`budget`).
pub fn budget(state: &crate::state::AppState) -> crate::rules::Budget {
    crate::rules::Budget::new(state.settings.get().budget.limits())
}
