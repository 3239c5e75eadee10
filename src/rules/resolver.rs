//! Resolving filter identifiers against stored data: record fields,
//! relations (`author.name` through `x-relation`), back-relations
//! (`comments_via_post.text`), `@collection.NAME.field` and `@request.*`.
//!
//! Cross-record lookups are bounded so a rule or filter can never turn one
//! request into unbounded work: relations are followed at most
//! [`MAX_RELATION_DEPTH`] levels deep, and back-relation / `@collection`
//! lookups read at most [`MAX_SCAN`] records each.

use serde_json::Value;

use crate::query::{walk, Identifier, JsonResolver, Resolved, Resolver, Root};
use crate::schema::CompiledCollection;
use crate::state::AppState;

/// How deep `a.b.c.d` may follow relations (PocketBase: 6).
pub const MAX_RELATION_DEPTH: usize = 6;
/// How many records a back-relation or `@collection` lookup reads at most.
pub const MAX_SCAN: usize = 10_000;

/// A [`Resolver`] over one stored (or about-to-be-stored) record.
pub struct StoreResolver<'a> {
    pub state: &'a AppState,
    pub coll: &'a CompiledCollection,
    pub record: &'a Value,
    /// The `@request` object (see `RequestInfo::to_json`).
    pub request: &'a Value,
    pub now: i64,
}

fn push(out: &mut Vec<Value>, r: Resolved) {
    match r {
        Resolved::Missing => {}
        Resolved::One(v) => out.push(v),
        Resolved::Many(vs) => out.extend(vs),
    }
}

/// `comments_via_post` → (`comments`, `post`).
fn parse_via(seg: &str) -> Option<(&str, &str)> {
    let (coll, field) = seg.split_once("_via_")?;
    (!coll.is_empty() && !field.is_empty()).then_some((coll, field))
}

/// The record ids a relation field holds (one id or an array of ids).
pub(crate) fn ids_of(v: Option<&Value>) -> Vec<&str> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => vec![s.as_str()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

impl StoreResolver<'_> {
    fn record_path(&self, coll: &CompiledCollection, record: &Value, path: &[String], depth: usize) -> Resolved {
        if path.len() >= 2 && depth < MAX_RELATION_DEPTH {
            if let Some(rel) = coll.relations.get(&path[0]) {
                let Some(target) = self.state.registry.get(&rel.collection) else {
                    return Resolved::Missing;
                };
                let mut out = Vec::new();
                for id in ids_of(record.get(&path[0])) {
                    if let Ok(Some(r)) = self.state.store.get(&target.def.id, id) {
                        push(&mut out, self.record_path(&target, &r.data, &path[1..], depth + 1));
                    }
                }
                return if rel.multiple || out.len() > 1 {
                    Resolved::Many(out)
                } else {
                    out.pop().map_or(Resolved::Missing, Resolved::One)
                };
            }
            if let Some((other, field)) = parse_via(&path[0]) {
                let Some(target) = self.state.registry.get(other) else {
                    return Resolved::Missing;
                };
                let Some(id) = record.get("id").and_then(Value::as_str) else {
                    return Resolved::Missing;
                };
                let mut out = Vec::new();
                if let Ok(scan) = self.state.store.scan(&target.def.id, false) {
                    for r in scan.take(MAX_SCAN).flatten() {
                        if ids_of(r.data.get(field)).contains(&id) {
                            push(&mut out, self.record_path(&target, &r.data, &path[1..], depth + 1));
                        }
                    }
                }
                return Resolved::Many(out);
            }
        }
        walk(record, path)
    }
}

impl Resolver for StoreResolver<'_> {
    fn resolve(&self, ident: &Identifier) -> Resolved {
        match &ident.root {
            Root::Record => self.record_path(self.coll, self.record, &ident.path, 0),
            Root::Collection { name, .. } => {
                let Some(target) = self.state.registry.get(name) else {
                    return Resolved::Missing;
                };
                let mut out = Vec::new();
                if let Ok(scan) = self.state.store.scan(&target.def.id, false) {
                    for r in scan.take(MAX_SCAN).flatten() {
                        push(&mut out, self.record_path(&target, &r.data, &ident.path, 0));
                    }
                }
                Resolved::Many(out)
            }
            _ => JsonResolver {
                record: self.record,
                request: self.request,
                now_millis: self.now,
            }
            .resolve(ident),
        }
    }

    fn now_millis(&self) -> i64 {
        self.now
    }
}
