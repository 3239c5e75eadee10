//! Access rules: who may list, view, create, update or delete records.
//!
//! A rule is `null` (superusers only), `""` (anyone) or a filter expression
//! over the record and `@request.*`, in the same language as `?filter=`
//! (parsed once per collection change, see `schema::CompiledRules`).
//! Superusers bypass every rule.

mod budget;
mod client;
mod context;
mod resolver;

pub use budget::{json_size, Budget, BudgetLimits};
pub use client::{ClientFilter, ClientSort};
pub use context::{Caller, RequestInfo, SUPERUSERS};
pub(crate) use resolver::ids_of;
pub use resolver::{StoreResolver, MAX_RELATION_DEPTH};

use serde_json::Value;

use crate::clock::now_millis;
use crate::query::{evaluate, Filter};
use crate::schema::{CompiledCollection, Registry};
use crate::store::Store;

/// What rules read besides the record and the request: the stored records
/// and the compiled collections, nothing else of the server's state, and
/// the budget of the request every read draws from.
#[derive(Clone, Copy)]
pub struct Data<'a> {
    pub store: &'a Store,
    pub registry: &'a Registry,
    pub budget: &'a Budget,
}

impl<'a> Data<'a> {
    pub fn new(store: &'a Store, registry: &'a Registry, budget: &'a Budget) -> Data<'a> {
        Data {
            store,
            registry,
            budget,
        }
    }

    /// One record by id, drawn from the budget (`None` once it is spent).
    pub fn get(&self, collection_id: &str, id: &str) -> Option<Value> {
        if !self.budget.read(1) {
            return None;
        }
        self.store.get(collection_id, id).ok().flatten().map(|r| r.data)
    }

    /// Every record of a collection, each drawn from the budget; the walk
    /// stops when it is spent.
    pub fn scan(&self, collection_id: &str) -> impl Iterator<Item = Value> + 'a {
        let budget = self.budget;
        self.store
            .scan(collection_id, false)
            .into_iter()
            .flatten()
            .map_while(move |r| budget.read(1).then_some(r))
            .filter_map(|r| r.ok().map(|r| r.data))
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
