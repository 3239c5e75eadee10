//! What deleting a record does to the records that point at it through
//! `x-relation` fields, as in PocketBase:
//!
//! - `cascadeDelete: true` on the pointing field: the pointing record is
//!   deleted too (and, in turn, whatever points at it);
//! - otherwise the deleted id is removed from the pointing field (a single
//!   relation loses the field, an array loses that element) and the record's
//!   `updated` time moves;
//! - unless that would leave the pointing record invalid (the field is
//!   `required`, or an array drops below `minItems`): then the delete is
//!   refused with 400 and nothing changes.
//!
//! All of it is planned here and committed by the caller in the same
//! transaction as the delete itself, with revision checks, so a concurrent
//! write to a pointing record makes the whole delete retry instead of
//! overwriting it. Finding pointing records uses an index whose first field
//! is the relation when one is ready, else a scan of that collection (only
//! collections with a relation to the deleted record's collection pay).

use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use serde_json::Value;

use crate::clock::now_string;
use crate::error::ApiError;
use crate::rules::ids_of;
use crate::schema::CompiledCollection;
use crate::state::AppState;
use crate::store::{Expect, WriteOp};

/// A record's current version as the planner sees it: its data and the
/// revision a write must expect (`Expect::Any` for versions that only
/// exist inside the caller's own pending job, e.g. a batch).
pub type Current = Option<(Value, Expect)>;

/// Plans the effects of deleting `roots` (collection id, record id). The
/// returned ops do not include the deletes of `roots` themselves.
///
/// `current` gives a record's version (the store's, or a pending one);
/// `pending` lists records that exist only in the caller's pending job,
/// so they are searched too. Deleted records are walked one at a time,
/// each pointing record cascading, losing its reference or refusing.
pub fn on_delete(
    state: &AppState,
    roots: &[(String, String)],
    current: &dyn Fn(&str, &str) -> Result<Current, ApiError>,
    pending: &dyn Fn(&str) -> Vec<String>,
) -> Result<Vec<WriteOp>, ApiError> {
    let mut ops = relation_effects(state, roots, current, pending)?;
    // Deleted users (roots and cascades) lose their OAuth2 links.
    let cascaded = ops.iter().filter_map(|op| match op {
        WriteOp::DeleteRecord { collection_id, id, .. } => Some((collection_id.clone(), id.clone())),
        _ => None,
    });
    let deleted: Vec<(String, String)> = roots.iter().cloned().chain(cascaded).collect();
    ops.extend(super::auth::unlink_deleted(state, &deleted)?);
    Ok(ops)
}

/// [`on_delete`]'s relation part: cascades and dropped references.
fn relation_effects(
    state: &AppState,
    roots: &[(String, String)],
    current: &dyn Fn(&str, &str) -> Result<Current, ApiError>,
    pending: &dyn Fn(&str) -> Vec<String>,
) -> Result<Vec<WriteOp>, ApiError> {
    let pointing = relation_fields(state);
    if pointing.is_empty() {
        return Ok(Vec::new());
    }
    let mut walk = Walk {
        deleted: roots.iter().cloned().collect(),
        cascaded: Vec::new(),
        edits: HashMap::new(),
        work: roots.to_vec(),
    };
    while let Some((target_cid, target_id)) = walk.work.pop() {
        for (coll, field, _) in pointing.iter().filter(|(_, _, target)| *target == target_cid) {
            let rel = &coll.relations[field];
            let mut ids = referencing(state, coll, field, rel.multiple, &target_id)?;
            ids.extend(pending(&coll.def.id));
            ids.sort();
            ids.dedup();
            for rid in ids {
                walk.visit(coll, field, rid, &target_id, current)?;
            }
        }
    }
    Ok(walk.into_ops())
}

/// Every relation field of every collection: (its collection, field,
/// target collection id).
fn relation_fields(state: &AppState) -> Vec<(Arc<CompiledCollection>, String, String)> {
    state
        .registry
        .all()
        .into_iter()
        .flat_map(|c| {
            let fields: Vec<(String, String)> = c
                .relations
                .iter()
                .filter_map(|(f, r)| Some((f.clone(), state.registry.get(&r.collection)?.def.id.clone())))
                .collect();
            fields.into_iter().map(move |(f, target)| (c.clone(), f, target))
        })
        .collect()
}

/// The walk over deleted records and what it decided so far.
struct Walk {
    deleted: HashSet<(String, String)>,
    /// Records deleted by a cascade, with the revision they must still have.
    cascaded: Vec<(String, String, Expect)>,
    /// Records that lose a reference: their new data.
    edits: HashMap<(String, String), (Value, Expect)>,
    /// Deleted records whose pointing records are still to be visited.
    work: Vec<(String, String)>,
}

impl Walk {
    /// Record `rid` of `coll` may point at `target_id` through `field`:
    /// cascades the delete to it, or drops the reference, or refuses.
    fn visit(
        &mut self,
        coll: &CompiledCollection,
        field: &str,
        rid: String,
        target_id: &str,
        current: &dyn Fn(&str, &str) -> Result<Current, ApiError>,
    ) -> Result<(), ApiError> {
        let k = (coll.def.id.clone(), rid);
        if self.deleted.contains(&k) {
            return Ok(());
        }
        let version = match self.edits.get(&k) {
            Some(v) => Some(v.clone()),
            None => current(&coll.def.id, &k.1)?,
        };
        let Some((mut data, expect)) = version else {
            return Ok(());
        };
        if !ids_of(data.get(field)).contains(&target_id) {
            return Ok(());
        }
        if coll.relations[field].cascade_delete {
            self.edits.remove(&k);
            self.deleted.insert(k.clone());
            self.cascaded.push((k.0.clone(), k.1.clone(), expect));
            self.work.push(k);
            return Ok(());
        }
        let was_valid = is_valid(coll, &data);
        drop_reference(&mut data, field, target_id);
        if was_valid && !is_valid(coll, &data) {
            return Err(ApiError::bad_request(format!(
                "The record cannot be deleted: record '{}' of '{}' needs it in its required relation '{field}'. Delete or change that record first.",
                k.1, coll.def.name
            )));
        }
        self.edits.insert(k, (data, expect));
        Ok(())
    }

    /// The cascaded deletes, then the edited records (their `updated` moved).
    fn into_ops(self) -> Vec<WriteOp> {
        let now = now_string();
        let mut ops = Vec::with_capacity(self.cascaded.len() + self.edits.len());
        for (collection_id, id, expect) in self.cascaded {
            ops.push(WriteOp::DeleteRecord {
                collection_id,
                id,
                expect,
            });
        }
        for ((collection_id, id), (mut data, expect)) in self.edits {
            if let Some(o) = data.as_object_mut() {
                o.insert("updated".into(), Value::String(now.clone()));
            }
            ops.push(WriteOp::PutRecord {
                collection_id,
                id,
                data,
                expect,
            });
        }
        ops
    }
}

/// [`on_delete`] against the store as committed (no pending job).
pub fn on_delete_in_store(state: &AppState, roots: &[(String, String)]) -> Result<Vec<WriteOp>, ApiError> {
    let from_store = |cid: &str, rid: &str| -> Result<Current, ApiError> {
        Ok(state.store.get(cid, rid)?.map(|r| (r.data, Expect::Rev(r.rev))))
    };
    on_delete(state, roots, &from_store, &|_| Vec::new())
}

/// Ids of the records of `coll` whose first `index` field is `value`, in
/// index order: one prefix range of the index, no other record read.
pub(crate) fn ids_by_index_value(
    state: &AppState,
    coll: &CompiledCollection,
    index: &crate::store::IndexDef,
    value: &str,
) -> Result<Vec<String>, ApiError> {
    let prefix = index.key_of_values(&[&Value::String(value.to_owned())]);
    let mut out = Vec::new();
    let entries = state.store.index_range(
        &coll.def.id,
        index,
        Bound::Included(prefix.clone()),
        Bound::Unbounded,
        false,
    )?;
    for entry in entries {
        let (key, id) = entry?;
        if !key.starts_with(&prefix) {
            break;
        }
        out.push(id);
    }
    Ok(out)
}

/// Ids of records of `coll` whose `field` may hold `target` (callers
/// re-check each one against its current version).
fn referencing(
    state: &AppState,
    coll: &CompiledCollection,
    field: &str,
    multiple: bool,
    target: &str,
) -> Result<Vec<String>, ApiError> {
    let index = (!multiple)
        .then(|| {
            coll.spec.indexes.iter().find(|i| {
                i.fields
                    .first()
                    .is_some_and(|f| f.path.len() == 1 && f.path[0] == field && !f.desc)
                    && !i.lowercase
                    && state.index_builds.is_ready(&coll.def.id, &i.name)
            })
        })
        .flatten();
    if let Some(index) = index {
        return ids_by_index_value(state, coll, index, target);
    }
    let mut out = Vec::new();
    for r in state.store.scan(&coll.def.id, false)? {
        let r = r?;
        if ids_of(r.data.get(field)).contains(&target) {
            if let Some(id) = r.data.get("id").and_then(Value::as_str) {
                out.push(id.to_owned());
            }
        }
    }
    Ok(out)
}

fn drop_reference(data: &mut Value, field: &str, target: &str) {
    let Some(o) = data.as_object_mut() else { return };
    match o.get_mut(field) {
        Some(Value::Array(items)) => items.retain(|v| v.as_str() != Some(target)),
        Some(_) => {
            o.remove(field);
        }
        None => {}
    }
}

/// Whether a record satisfies its collection's schema. Only a record that
/// was valid blocks the delete: one made invalid by a later schema change
/// is not the delete's doing.
fn is_valid(coll: &CompiledCollection, data: &Value) -> bool {
    let Some(doc) = data.as_object() else { return true };
    let user = crate::schema::record::user_doc(coll, doc);
    crate::schema::compile::validate(&coll.validator, &user).is_ok()
}
