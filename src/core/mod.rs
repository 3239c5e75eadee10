//! Operations shared by every entry point (REST, batch, dashboard, CLI):
//! handlers parse and shape, these functions decide and write.

pub mod auth;
pub mod backups;
pub mod batch;
pub mod bootstrap;
pub mod collections;
pub mod expand;
pub mod indexing;
pub mod list;
pub mod records;
pub mod references;

pub use crate::rules::{Caller, RequestInfo, SUPERUSERS};

/// The part of the server's state rules read: records and collections.
pub fn rule_data(state: &crate::state::AppState) -> crate::rules::Data<'_> {
    crate::rules::Data::new(&state.store, &state.registry)
}
