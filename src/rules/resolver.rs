//! Resolving filter identifiers against stored data: record fields,
//! relations (`author.name` through `x-relation`), back-relations
//! (`comments_via_post.text`), `@collection.NAME.field` and `@request.*`.
//!
//! Two modes, chosen by [`StoreResolver::guarded`]:
//! * **trusted** (rules, written by superusers): every field of every
//!   collection resolves;
//! * **guarded** (a non-superuser's own filter or sort, see `rules::client`):
//!   each relation or back-relation hop only reaches records the caller may
//!   list under *that* collection's listRule, and an auth record's `email`
//!   resolves only when its `emailVisibility` is on (as PocketBase). What
//!   can never be reached at all (secrets, hidden fields, locked
//!   collections) is refused before evaluation by `rules::client`.
//!
//! Cross-record lookups are bounded so a rule or filter can never turn one
//! request into unbounded work: relations are followed at most
//! [`MAX_RELATION_DEPTH`] levels deep, each related id once, and every
//! record read draws from the request's [`super::Budget`] (through
//! [`Data`]); a spent budget resolves to nothing and fails the request.

use serde_json::Value;

use super::Data;
use crate::query::{evaluate, walk, Identifier, JsonResolver, Resolved, Resolver, Root};
use crate::schema::CompiledCollection;

/// How deep `a.b.c.d` may follow relations (PocketBase: 6).
pub const MAX_RELATION_DEPTH: usize = 6;

/// A [`Resolver`] over one stored (or about-to-be-stored) record.
pub struct StoreResolver<'a> {
    pub data: Data<'a>,
    pub coll: &'a CompiledCollection,
    pub record: &'a Value,
    /// The `@request` object (see `RequestInfo::to_json`).
    pub request: &'a Value,
    pub now: i64,
    /// Resolve as a non-superuser client sees (module docs).
    pub guarded: bool,
}

fn push(out: &mut Vec<Value>, r: Resolved) {
    match r {
        Resolved::Missing => {}
        Resolved::One(v) => out.push(v),
        Resolved::Many(vs) => out.extend(vs),
    }
}

/// `comments_via_post` → (`comments`, `post`).
pub(crate) fn parse_via(seg: &str) -> Option<(&str, &str)> {
    let (coll, field) = seg.split_once("_via_")?;
    (!coll.is_empty() && !field.is_empty()).then_some((coll, field))
}

/// The record ids a relation field holds (one id or an array of ids),
/// each once, in order: a stored `[a, a, a]` must not multiply the work of
/// every hop through it.
pub(crate) fn ids_of(v: Option<&Value>) -> Vec<&str> {
    match v {
        Some(Value::String(s)) if !s.is_empty() => vec![s.as_str()],
        Some(Value::Array(items)) => {
            let mut out: Vec<&str> = Vec::with_capacity(items.len());
            for id in items.iter().filter_map(Value::as_str) {
                if !id.is_empty() && !out.contains(&id) {
                    out.push(id);
                }
            }
            out
        }
        _ => Vec::new(),
    }
}

/// Whether a caller who is not a superuser may see `record` of `coll` in a
/// search (its listRule, evaluated trusted with the same `@request`). The
/// one definition of "reachable through a relation" for client filters.
pub(crate) fn listable(data: Data, coll: &CompiledCollection, record: &Value, request: &Value, now: i64) -> bool {
    match &coll.rules.list {
        None => false,
        Some(rule) if rule.is_empty() => true,
        Some(rule) => evaluate(
            rule,
            &StoreResolver {
                data,
                coll,
                record,
                request,
                now,
                guarded: false,
            },
        ),
    }
}

impl StoreResolver<'_> {
    fn visible(&self, coll: &CompiledCollection, record: &Value) -> bool {
        !self.guarded || listable(self.data, coll, record, self.request, self.now)
    }

    fn record_path(&self, coll: &CompiledCollection, record: &Value, path: &[String], depth: usize) -> Resolved {
        if path.len() >= 2 && depth < MAX_RELATION_DEPTH {
            if let Some(rel) = coll.relations.get(&path[0]) {
                let Some(target) = self.data.registry.get(&rel.collection) else {
                    return Resolved::Missing;
                };
                let mut out = Vec::new();
                for id in ids_of(record.get(&path[0])) {
                    if let Some(r) = self.data.get(&target.def.id, id) {
                        if self.visible(&target, &r) {
                            push(&mut out, self.record_path(&target, &r, &path[1..], depth + 1));
                        }
                    }
                }
                return if rel.multiple || out.len() > 1 {
                    Resolved::Many(out)
                } else {
                    out.pop().map_or(Resolved::Missing, Resolved::One)
                };
            }
            if let Some((other, field)) = parse_via(&path[0]) {
                return self.back_relation(coll, record, other, field, &path[1..], depth);
            }
        }
        if self.guarded
            && coll.is_auth()
            && path.first().is_some_and(|f| f == "email")
            && record.get("emailVisibility") != Some(&Value::Bool(true))
        {
            // As PocketBase: others' addresses are searchable only when public.
            return Resolved::Missing;
        }
        walk(record, path)
    }

    /// `other_via_field.rest`: the records of `other` whose relation `field`
    /// points at `record`. The relation must target `coll` (as PocketBase),
    /// otherwise a client-chosen id could join any collection to any record.
    fn back_relation(
        &self,
        coll: &CompiledCollection,
        record: &Value,
        other: &str,
        field: &str,
        rest: &[String],
        depth: usize,
    ) -> Resolved {
        let Some(target) = self.data.registry.get(other) else {
            return Resolved::Missing;
        };
        let points_here = target
            .relations
            .get(field)
            .and_then(|rel| self.data.registry.get(&rel.collection))
            .is_some_and(|t| t.def.id == coll.def.id);
        let Some(id) = record.get("id").and_then(Value::as_str) else {
            return Resolved::Missing;
        };
        if !points_here {
            return Resolved::Missing;
        }
        let mut out = Vec::new();
        for r in self.data.scan(&target.def.id) {
            if ids_of(r.get(field)).contains(&id) && self.visible(&target, &r) {
                push(&mut out, self.record_path(&target, &r, rest, depth + 1));
            }
        }
        Resolved::Many(out)
    }
}

impl Resolver for StoreResolver<'_> {
    fn resolve(&self, ident: &Identifier) -> Resolved {
        match &ident.root {
            Root::Record => self.record_path(self.coll, self.record, &ident.path, 0),
            Root::Collection { name, .. } => {
                let Some(target) = self.data.registry.get(name) else {
                    return Resolved::Missing;
                };
                let mut out = Vec::new();
                for r in self.data.scan(&target.def.id) {
                    if self.visible(&target, &r) {
                        push(&mut out, self.record_path(&target, &r, &ident.path, 0));
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
