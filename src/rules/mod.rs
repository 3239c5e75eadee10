//! Access rules: who may list, view, create, update or delete records.
//!
//! A rule is `null` (superusers only), `""` (anyone) or a filter expression
//! over the record and `@request.*`, in the same language as `?filter=`
//! (parsed once per collection change, see `schema::CompiledRules`).
//! Superusers bypass every rule.

mod client;
mod context;
mod resolver;

pub use client::{ClientFilter, ClientSort};
pub use context::{Caller, RequestInfo, SUPERUSERS};
pub(crate) use resolver::ids_of;
pub use resolver::{StoreResolver, MAX_RELATION_DEPTH, MAX_SCAN};

use serde_json::Value;

use crate::clock::now_millis;
use crate::query::{evaluate, Filter};
use crate::schema::{CompiledCollection, Registry};
use crate::store::Store;

/// What rules read besides the record and the request: the stored records
/// and the compiled collections, nothing else of the server's state.
#[derive(Clone, Copy)]
pub struct Data<'a> {
    pub store: &'a Store,
    pub registry: &'a Registry,
}

impl<'a> Data<'a> {
    pub fn new(store: &'a Store, registry: &'a Registry) -> Data<'a> {
        Data { store, registry }
    }
}

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

/// Whether the rule `filter` holds for `record` of `coll`, given the
/// `@request` object. Rules are trusted: every path resolves. A client's
/// own filter goes through [`ClientFilter`] instead.
pub fn holds(data: Data, coll: &CompiledCollection, filter: &Filter, record: &Value, request: &Value) -> bool {
    evaluate(
        filter,
        &StoreResolver {
            data,
            coll,
            record,
            request,
            now: now_millis(),
            guarded: false,
        },
    )
}
