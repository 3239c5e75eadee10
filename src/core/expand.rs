//! `expand=author,comments_via_post.author`: embeds related records under
//! `expand`, through `x-relation` fields and back-relations
//! (`<collection>_via_<field>`), up to 6 levels, each related record
//! subject to its own collection's viewRule.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::rules::{self, ids_of, Access, RequestInfo, MAX_RELATION_DEPTH, MAX_SCAN};
use crate::schema::record::export;
use crate::schema::CompiledCollection;
use crate::state::AppState;

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

fn can_view(state: &AppState, coll: &CompiledCollection, rec: &Value, req: &RequestInfo, request: &Value) -> bool {
    match rules::access(&coll.rules.view, &req.caller) {
        Access::Allow => true,
        Access::Locked => false,
        Access::Conditional => coll
            .rules
            .view
            .as_ref()
            .is_some_and(|rule| rules::holds(crate::core::rule_data(state), coll, rule, rec, request)),
    }
}

/// Adds `expand` to each exported item (`raw[i]` is the stored form of `items[i]`).
pub fn expand_records(
    state: &AppState,
    coll: &CompiledCollection,
    raw: &[Value],
    items: &mut [Value],
    tree: &ExpandTree,
    req: &RequestInfo,
) -> Result<(), ApiError> {
    let request = req.to_json(&Value::Null);
    let viewer = req.caller.viewer();
    for (rec, item) in raw.iter().zip(items.iter_mut()) {
        let mut expanded = Map::new();
        for (field, sub) in &tree.children {
            let (target, related, multiple) = if let Some(rel) = coll.relations.get(field) {
                let Some(target) = state.registry.get(&rel.collection) else {
                    continue;
                };
                let mut related = Vec::new();
                for id in ids_of(rec.get(field)) {
                    if let Some(r) = state.store.get(&target.def.id, id)? {
                        related.push(r.data);
                    }
                }
                (target, related, rel.multiple)
            } else if let Some((other, fk)) = field.split_once("_via_") {
                let Some(target) = state.registry.get(other) else {
                    continue;
                };
                let Some(id) = rec.get("id").and_then(Value::as_str) else {
                    continue;
                };
                let mut related = Vec::new();
                for r in state.store.scan(&target.def.id, false)?.take(MAX_SCAN) {
                    let r = r?;
                    if ids_of(r.data.get(fk)).contains(&id) {
                        related.push(r.data);
                    }
                }
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
                (target, related, true)
            } else {
                // Like PocketBase, an unknown expand field is silently skipped.
                continue;
            };
            let visible: Vec<Value> = related
                .into_iter()
                .filter(|r| can_view(state, &target, r, req, &request))
                .collect();
            let mut out: Vec<Value> = visible.iter().map(|r| export(&target, r, &viewer)).collect();
            if !sub.is_empty() {
                expand_records(state, &target, &visible, &mut out, sub, req)?;
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
    Ok(())
}
