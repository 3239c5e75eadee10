//! What a client may touch: the one place that turns a client's `filter` or
//! `sort` into something evaluable for one caller (SPEC §4).
//!
//! Every place that takes a filter or sort from a client — REST lists,
//! realtime subscriptions (WebSocket and SSE), the dashboard, `explain` —
//! goes through [`ClientFilter::parse`] / [`ClientSort::parse`]; there is
//! no other way to evaluate a client's filter. Two layers, as PocketBase:
//!
//! 1. **Refused before evaluation** (the same answer whatever the data):
//!    `password` and `tokenKey` anywhere (superusers too); for everyone but
//!    superusers `x-hidden` fields, `@collection.*`, and any hop into a
//!    collection whose listRule is `null`; a back-relation `X_via_F` whose
//!    `F` is not a relation to the collection it is used on; relation
//!    chains deeper than [`MAX_RELATION_DEPTH`].
//! 2. **Resolved under the caller's view** (a guarded [`StoreResolver`]):
//!    every relation and back-relation hop only reaches records the caller
//!    may list under the listRule of the collection it lands in; an auth
//!    record's `email` only when its `emailVisibility` is on.
//!
//! A client filter's paths are checked against the schema when it is
//! parsed, so a subscription or list never runs a filter it should have
//! refused. The caller is fixed at parse time: a realtime connection whose
//! caller changes parses its filters again.

use serde_json::{Map, Value};

use super::resolver::{parse_via, MAX_RELATION_DEPTH};
use super::{Caller, Data, StoreResolver};
use crate::clock::now_millis;
use crate::error::ApiError;
use crate::query::{
    compare_records, evaluate, parse_filter, parse_sort, Expr, Filter, Identifier, Operand, Resolved, Resolver, Root,
    SortKey,
};
use crate::schema::{CompiledCollection, Registry};

/// Fields no client reaches through any filter, sort or path.
fn is_secret(field: &str) -> bool {
    field == "password" || field == "tokenKey"
}

/// Why a path was refused: forbidden (403) or malformed (400).
enum Refusal {
    Forbidden(String),
    Invalid(String),
}

/// What one checked path needs at evaluation time.
#[derive(Default, Clone, Copy)]
struct PathNeeds {
    /// It leaves the record (relation or back-relation hop).
    hops: bool,
    /// It needs per-record checks an index cannot answer (hops, emails).
    per_record: bool,
}

/// Walks `path` from `coll` through the schema, refusing what the caller
/// may never reach (module docs, layer 1).
fn check_path(
    registry: &Registry,
    coll: &CompiledCollection,
    path: &[String],
    superuser: bool,
    hops: usize,
) -> Result<PathNeeds, Refusal> {
    let Some((seg, rest)) = path.split_first() else {
        return Ok(PathNeeds::default());
    };
    let shown = path.join(".");
    if is_secret(seg) || (!superuser && coll.hidden.iter().any(|h| h == seg)) {
        return Err(Refusal::Forbidden(format!(
            "'{seg}' of '{}' cannot be used in a filter or sort.",
            coll.def.name
        )));
    }
    let email = !superuser && coll.is_auth() && seg == "email";
    if rest.is_empty() {
        return Ok(PathNeeds {
            hops: false,
            per_record: email,
        });
    }
    let target = if let Some(rel) = coll.relations.get(seg) {
        match registry.get(&rel.collection) {
            Some(t) => t,
            // A dangling relation resolves to nothing.
            None => return Ok(PathNeeds::default()),
        }
    } else if let Some((other, field)) = parse_via(seg) {
        let back = registry
            .get(other)
            .ok_or_else(|| Refusal::Invalid(format!("Unknown collection '{other}' in '{shown}'.")))?;
        let points_here = back
            .relations
            .get(field)
            .and_then(|rel| registry.get(&rel.collection))
            .is_some_and(|t| t.def.id == coll.def.id);
        if !points_here {
            return Err(Refusal::Invalid(format!(
                "'{other}.{field}' is not a relation to '{}'.",
                coll.def.name
            )));
        }
        if is_secret(field) || (!superuser && back.hidden.iter().any(|h| h == field)) {
            return Err(Refusal::Forbidden(format!(
                "'{field}' of '{other}' cannot be used in a filter or sort."
            )));
        }
        back
    } else {
        // A path inside the record's own JSON.
        return Ok(PathNeeds {
            hops: false,
            per_record: email,
        });
    };
    if hops + 1 > MAX_RELATION_DEPTH {
        return Err(Refusal::Invalid(format!(
            "'{shown}' follows more than {MAX_RELATION_DEPTH} relations."
        )));
    }
    if !superuser && target.rules.list.is_none() {
        return Err(Refusal::Forbidden(format!(
            "'{seg}' leads to '{}', which only superusers can list.",
            target.def.name
        )));
    }
    check_path(registry, &target, rest, superuser, hops + 1)?;
    Ok(PathNeeds {
        hops: true,
        per_record: true,
    })
}

fn refusal(key: &str, r: Refusal) -> ApiError {
    match r {
        Refusal::Forbidden(m) => ApiError::forbidden(m),
        Refusal::Invalid(m) => ApiError::field(key, &format!("validation_invalid_{key}"), &m),
    }
}

/// Every identifier of a filter, with its root.
fn identifiers(filter: &Filter) -> Vec<&Identifier> {
    let mut out = Vec::new();
    let mut stack: Vec<&Expr> = filter.expr().into_iter().collect();
    while let Some(e) = stack.pop() {
        match e {
            Expr::And(items) | Expr::Or(items) => stack.extend(items),
            Expr::Cmp(c) => {
                for side in [&c.left, &c.right] {
                    if let Operand::Ident(id) = side {
                        out.push(id);
                    }
                }
            }
        }
    }
    out
}

/// A client's filter, checked for one caller. Evaluate it only with
/// [`ClientFilter::matches`]; [`ClientFilter::for_planning`] hands the
/// expression to the planner, which only chooses index bounds.
#[derive(Debug, Clone, Default)]
pub struct ClientFilter {
    filter: Filter,
    text: String,
    /// Checked for a non-superuser: evaluated under the caller's view.
    guarded: bool,
    per_record: bool,
}

impl ClientFilter {
    /// Parses and checks `text` for `caller` filtering `coll`.
    pub fn parse(
        registry: &Registry,
        coll: &CompiledCollection,
        text: &str,
        caller: &Caller,
    ) -> Result<ClientFilter, ApiError> {
        let filter =
            parse_filter(text).map_err(|e| ApiError::field("filter", "validation_invalid_filter", &e.to_string()))?;
        let superuser = caller.is_superuser();
        let mut per_record = false;
        for id in identifiers(&filter) {
            let needs = match &id.root {
                Root::Record => check_path(registry, coll, &id.path, superuser, 0),
                Root::Collection { name, .. } => {
                    if !superuser {
                        return Err(ApiError::forbidden("Only superusers can filter by '@collection.*'."));
                    }
                    let Some(other) = registry.get(name) else {
                        continue;
                    };
                    check_path(registry, &other, &id.path, superuser, 0)
                }
                _ => Ok(PathNeeds::default()),
            }
            .map_err(|r| refusal("filter", r))?;
            per_record |= needs.per_record;
        }
        Ok(ClientFilter {
            filter,
            text: text.to_owned(),
            guarded: !superuser,
            per_record,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.filter.is_empty()
    }

    /// The text it was parsed from (realtime re-parses it when the caller changes).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether records must be checked one by one: relation hops and emails
    /// depend on other records and settings, so no index answers them exactly.
    pub fn per_record(&self) -> bool {
        self.per_record
    }

    /// The expression, for choosing an access path only (never to evaluate).
    pub fn for_planning(&self) -> &Filter {
        &self.filter
    }

    /// [`ClientFilter::matches`] for a caller that may have changed since the
    /// filter was checked (a realtime connection whose token expired): a
    /// filter checked for a superuser matches nothing for anyone else.
    pub fn matches_for(
        &self,
        data: Data,
        coll: &CompiledCollection,
        record: &Value,
        request: &Value,
        caller: &Caller,
    ) -> bool {
        if !self.guarded && !caller.is_superuser() {
            return false;
        }
        self.matches(data, coll, record, request)
    }

    /// Whether `record` of `coll` matches, resolved as the caller it was
    /// checked for sees it.
    pub fn matches(&self, data: Data, coll: &CompiledCollection, record: &Value, request: &Value) -> bool {
        self.filter.is_empty()
            || evaluate(
                &self.filter,
                &StoreResolver {
                    data,
                    coll,
                    record,
                    request,
                    now: now_millis(),
                    guarded: self.guarded,
                },
            )
    }
}

/// A client's sort, checked for one caller: plain fields, or relation paths
/// (`author.name`) resolved under the caller's view.
#[derive(Debug, Clone, Default)]
pub struct ClientSort {
    keys: Vec<SortKey>,
    guarded: bool,
    through_relations: bool,
}

impl ClientSort {
    pub fn parse(
        registry: &Registry,
        coll: &CompiledCollection,
        text: &str,
        caller: &Caller,
    ) -> Result<ClientSort, ApiError> {
        let keys = parse_sort(text).map_err(|e| ApiError::field("sort", "validation_invalid_sort", &e.to_string()))?;
        let superuser = caller.is_superuser();
        let mut through_relations = false;
        for k in &keys {
            let needs = check_path(registry, coll, &k.path, superuser, 0).map_err(|r| refusal("sort", r))?;
            // Hops, and emails that are not public: resolved per record as
            // the caller sees them, or the order would leak them.
            through_relations |= needs.hops || needs.per_record;
        }
        Ok(ClientSort {
            keys,
            guarded: !superuser,
            through_relations,
        })
    }

    pub fn keys(&self) -> &[SortKey] {
        &self.keys
    }

    /// Sorts by `created` when the client asked for no order.
    pub fn or_default(mut self) -> ClientSort {
        if self.keys.is_empty() {
            self.keys.push(SortKey {
                path: vec!["created".into()],
                desc: false,
            });
        }
        self
    }

    /// Whether a key is resolved per record (leaves the record, or is a
    /// guarded email): no index serves such a sort.
    pub fn through_relations(&self) -> bool {
        self.through_relations
    }

    /// Sorts `records` of `coll` in place (ties broken by id).
    pub fn sort(&self, data: Data, coll: &CompiledCollection, records: &mut Vec<Value>, request: &Value) {
        if !self.through_relations {
            records.sort_by(|a, b| compare_records(a, b, &self.keys));
            return;
        }
        // Resolve each record's key values once, then sort stand-ins that
        // hold them as k0, k1, … next to the id.
        let now = now_millis();
        let stand_in_keys: Vec<SortKey> = (0..self.keys.len())
            .map(|i| SortKey {
                path: vec![format!("k{i}")],
                desc: self.keys[i].desc,
            })
            .collect();
        let mut decorated: Vec<(Value, Value)> = std::mem::take(records)
            .into_iter()
            .map(|rec| {
                let resolver = StoreResolver {
                    data,
                    coll,
                    record: &rec,
                    request,
                    now,
                    guarded: self.guarded,
                };
                let mut m = Map::new();
                m.insert("id".into(), rec.get("id").cloned().unwrap_or(Value::Null));
                for (i, k) in self.keys.iter().enumerate() {
                    let v = match resolver.resolve(&Identifier::record(k.path.clone())) {
                        Resolved::One(v) => v,
                        Resolved::Many(vs) => vs.into_iter().next().unwrap_or(Value::Null),
                        Resolved::Missing => Value::Null,
                    };
                    m.insert(format!("k{i}"), v);
                }
                (Value::Object(m), rec)
            })
            .collect();
        decorated.sort_by(|a, b| compare_records(&a.0, &b.0, &stand_in_keys));
        records.extend(decorated.into_iter().map(|(_, rec)| rec));
    }
}
