//! Access rules: who may list, view, create, update or delete records.
//!
//! A rule is `null` (superusers only), `""` (anyone) or a filter expression
//! over the record and `@request.*`. Superusers bypass every rule.

use crate::core::Caller;

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

/// Classifies `rule` for `caller`.
pub fn access(rule: &Option<String>, caller: &Caller) -> Access {
    if caller.is_superuser() {
        return Access::Allow;
    }
    match rule.as_deref() {
        None => Access::Locked,
        Some(r) if r.trim().is_empty() => Access::Allow,
        Some(_) => Access::Conditional,
    }
}

/// Whether a conditional rule holds for `record`.
///
/// Rule expressions are evaluated by the query engine (the users-and-access
/// issue); until then a non-empty expression denies non-superusers: failing
/// closed never leaks data.
pub fn holds(_rule: &str, _caller: &Caller, _record: &serde_json::Value) -> bool {
    false
}
