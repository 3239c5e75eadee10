//! `expand=author,comments_via_post.author`: embeds related records under
//! `expand`, through `x-relation` fields and back-relations
//! (`<collection>_via_<field>`), up to 6 levels, each related record
//! subject to its own collection's viewRule.

use std::collections::BTreeMap;

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::rules::{self, ids_of, Access, Data, RequestInfo, MAX_RELATION_DEPTH};
use crate::schema::record::export;
use crate::schema::CompiledCollection;

/// The parsed `expand` parameter: a tree of field names.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ExpandTree {
    pub children: BTreeMap<String, ExpandTree>,
}

impl ExpandTree {
    pub fn parse(spec: &str) -> Result<ExpandTree, ApiError> {
        let mut root = ExpandTree::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let segs: Vec<&str> = item.split('.').collect();
            if segs.len() > MAX_RELATION_DEPTH {
                return Err(ApiError::field(
                    "expand",
                    "validation_invalid_expand",
                    "Expand reaches at most 6 levels deep.",
                ));
            }
            let mut node = &mut root;
            for seg in segs {
                if seg.is_empty() || !seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(ApiError::field(
                        "expand",
                        "validation_invalid_expand",
                        &format!("Invalid expand path '{item}'."),
                    ));
                }
                node = node.children.entry(seg.to_owned()).or_default();
            }
        }
        Ok(root)
    }

    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }
}

fn can_view(data: Data, coll: &CompiledCollection, rec: &Value, req: &RequestInfo, request: &Value) -> bool {
    match rules::access(&coll.rules.view, &req.caller) {
        Access::Allow => true,
        Access::Locked => false,
        Access::Conditional => coll
            .rules
            .view
            .as_ref()
            .is_some_and(|rule| rules::holds(data, coll, rule, rec, request)),
    }
}

/// The records `field` of `rec` points at (through a relation or a
/// back-relation), each read drawn from the budget; `None` for a field
/// that is neither (skipped silently, as PocketBase).
fn related(
    data: Data,
    coll: &CompiledCollection,
    rec: &Value,
    field: &str,
) -> Option<(Arc<CompiledCollection>, Vec<Value>, bool)> {
    if let Some(rel) = coll.relations.get(field) {
        let target = data.registry.get(&rel.collection)?;
        let related = ids_of(rec.get(field))
            .into_iter()
            .filter_map(|id| data.get(&target.def.id, id))
            .collect();
        return Some((target, related, rel.multiple));
    }
    let (other, fk) = field.split_once("_via_")?;
    let target = data.registry.get(other)?;
    // As in filters: the back-relation must point at this collection.
    let points_here = target
        .relations
        .get(fk)
        .and_then(|rel| data.registry.get(&rel.collection))
        .is_some_and(|t| t.def.id == coll.def.id);
    if !points_here {
        return None;
    }
    let id = rec.get("id").and_then(Value::as_str)?;
    let mut related: Vec<Value> = data
        .scan(&target.def.id)
        .filter(|r| ids_of(r.get(fk)).contains(&id))
        .collect();
    // Creation order, as PocketBase (the scan is in id order).
    related.sort_by(|a, b| {
        let key = |v: &Value| {
            (
                v.get("created").and_then(Value::as_str).map(str::to_owned),
                v.get("id").and_then(Value::as_str).map(str::to_owned),
            )
        };
        key(a).cmp(&key(b))
    });
    Some((target, related, true))
}

/// Adds `expand` to each exported item (`raw[i]` is the stored form of
/// `items[i]`). Every related record read and every record embedded draws
/// from the request's budget (`data.budget`); once it is spent nothing
/// more is embedded and the caller's `Budget::check` fails the request.
pub fn expand_records(
    data: Data,
    coll: &CompiledCollection,
    raw: &[Value],
    items: &mut [Value],
    tree: &ExpandTree,
    req: &RequestInfo,
) {
    let request = req.to_json(&Value::Null);
    let viewer = req.caller.viewer();
    for (rec, item) in raw.iter().zip(items.iter_mut()) {
        let mut expanded = Map::new();
        for (field, sub) in &tree.children {
            let Some((target, related, multiple)) = related(data, coll, rec, field) else {
                continue;
            };
            let visible: Vec<Value> = related
                .into_iter()
                .filter(|r| can_view(data, &target, r, req, &request))
                .take_while(|r| data.budget.embed(rules::json_size(r)))
                .collect();
            let mut out: Vec<Value> = visible.iter().map(|r| export(&target, r, &viewer)).collect();
            if !sub.is_empty() {
                expand_records(data, &target, &visible, &mut out, sub, req);
            }
            if multiple {
                // As PocketBase: nothing visible to expand → no key.
                if !out.is_empty() {
                    expanded.insert(field.clone(), Value::Array(out));
                }
            } else if let Some(one) = out.into_iter().next() {
                expanded.insert(field.clone(), one);
            }
        }
        // As PocketBase: an expand was asked for, so `expand` is there even
        // when nothing could be expanded (client code reads `record.expand.x`).
        if let Some(obj) = item.as_object_mut() {
            obj.insert("expand".into(), Value::Object(expanded));
        }
    }
}
