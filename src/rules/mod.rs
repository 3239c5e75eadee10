//! Access rules: who may list, view, create, update or delete records.
//!
//! A rule is `null` (superusers only), `""` (anyone) or a filter expression
//! over the record and `@request.*`, in the same language as `?filter=`
//! (parsed once per collection change, see `schema::CompiledRules`).
//! Superusers bypass every rule.

mod context;
mod resolver;

pub use context::{Caller, RequestInfo, SUPERUSERS};
pub(crate) use resolver::ids_of;
pub use resolver::{StoreResolver, MAX_RELATION_DEPTH, MAX_SCAN};

use serde_json::Value;

use crate::clock::now_millis;
use crate::query::{evaluate, Filter};
use crate::schema::CompiledCollection;
use crate::state::AppState;

/// The outcome of checking a rule for one caller, before looking at records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Allowed unconditionally.
    Allow,
    /// Locked (`null`) and the caller is not a superuser: 403.
    Locked,
    /// An expression the caller must satisfy per record.
    Conditional,
}

/// Classifies a compiled rule for `caller`.
pub fn access(rule: &Option<Filter>, caller: &Caller) -> Access {
    if caller.is_superuser() {
        return Access::Allow;
    }
    match rule {
        None => Access::Locked,
        Some(f) if f.is_empty() => Access::Allow,
        Some(_) => Access::Conditional,
    }
}

/// Whether `filter` holds for `record` of `coll`, given the `@request` object.
pub fn holds(state: &AppState, coll: &CompiledCollection, filter: &Filter, record: &Value, request: &Value) -> bool {
    evaluate(
        filter,
        &StoreResolver {
            state,
            coll,
            record,
            request,
            now: now_millis(),
        },
    )
}
