//! Collection operations (superusers only; the handlers check that).

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::indexing;
use crate::clock::now_string;
use crate::error::ApiError;
use crate::ids;
use crate::schema::compile::{compile, validate};
use crate::schema::{Collection, CompiledCollection};
use crate::state::AppState;
use crate::store::WriteOp;

fn to_value(c: &Collection) -> Value {
    serde_json::to_value(c).expect("serialize collection")
}

/// The collection as the API returns it, plus `indexStatus` for indexes
/// still building (or whose build failed).
pub fn export(state: &AppState, c: &CompiledCollection) -> Value {
    let mut v = to_value(&c.def);
    let builds = state.index_builds.of(&c.def.id);
    if !builds.is_empty() {
        if let Some(obj) = v.as_object_mut() {
            obj.insert("indexStatus".into(), json!(builds));
        }
    }
    v
}

fn name_taken(state: &AppState, name: &str, except_id: &str) -> bool {
    state
        .registry
        .all()
        .iter()
        .any(|c| c.def.id != except_id && c.def.name.eq_ignore_ascii_case(name))
}

fn reserved_name() -> ApiError {
    ApiError::field(
        "name",
        "validation_invalid_name",
        "Names starting with '_' are reserved for system collections.",
    )
}

fn taken_name() -> ApiError {
    ApiError::field(
        "name",
        "validation_not_unique",
        "A collection with this name already exists.",
    )
}

/// Every `x-relation` must point at an existing collection (or at itself).
fn check_relations(state: &AppState, c: &CompiledCollection) -> Result<(), ApiError> {
    for (field, rel) in &c.relations {
        let own = rel.collection == c.def.name || rel.collection == c.def.id;
        if !own && state.registry.get(&rel.collection).is_none() {
            return Err(ApiError::field(
                "schema",
                "validation_invalid_relation",
                &format!(
                    "property '{field}': x-relation points at unknown collection '{}'",
                    rel.collection
                ),
            ));
        }
    }
    Ok(())
}

/// Creates a collection from a request body.
pub async fn create(state: &AppState, body: Map<String, Value>) -> Result<Value, ApiError> {
    let _guard = state.collection_lock.lock().await;
    let def = Collection::from_create(body, ids::collection_id(), now_string())?;
    if def.name.starts_with('_') {
        return Err(reserved_name());
    }
    if name_taken(state, &def.name, &def.id) {
        return Err(taken_name());
    }
    let compiled = Arc::new(CompiledCollection::compile(def)?);
    check_relations(state, &compiled)?;
    state
        .store
        .write(vec![WriteOp::PutCollection {
            spec: compiled.spec.clone(),
            def: to_value(&compiled.def),
        }])
        .await?;
    state.registry.put(compiled.clone());
    Ok(export(state, &compiled))
}

/// Applies a PATCH body to a collection. New or changed indexes are built in
/// the background over existing records (see `indexing`).
pub async fn update(state: &AppState, name_or_id: &str, body: Map<String, Value>) -> Result<Value, ApiError> {
    let _guard = state.collection_lock.lock().await;
    let current = state.registry.get(name_or_id).ok_or_else(ApiError::missing)?;
    let mut def = current.def.clone();
    def.apply(body)?;
    if def == current.def {
        return Ok(export(state, &current));
    }
    if def.name != current.def.name {
        if current.def.system {
            return Err(ApiError::field(
                "name",
                "validation_system_collection",
                "System collections cannot be renamed.",
            ));
        }
        if def.name.starts_with('_') {
            return Err(reserved_name());
        }
        if name_taken(state, &def.name, &def.id) {
            return Err(taken_name());
        }
    }
    def.updated = now_string();
    let compiled = Arc::new(CompiledCollection::compile(def)?);
    check_relations(state, &compiled)?;
    let cid = compiled.def.id.clone();
    let old_defs = current.spec.indexes.clone();
    let new_defs = compiled.spec.indexes.clone();
    let to_build: Vec<String> = new_defs
        .iter()
        .filter(|d| !old_defs.contains(d))
        .map(|d| d.name.clone())
        .collect();
    let removed: Vec<String> = old_defs
        .iter()
        .filter(|d| !new_defs.iter().any(|n| n.name == d.name))
        .map(|d| d.name.clone())
        .collect();
    let has_records = state.store.count(&cid) > 0;
    let mut ops = vec![WriteOp::PutCollection {
        spec: compiled.spec.clone(),
        def: to_value(&compiled.def),
    }];
    for name in &removed {
        ops.push(WriteOp::PutMeta {
            key: indexing::marker(&cid, name),
            value: None,
        });
    }
    if has_records {
        for name in &to_build {
            // Not usable until built: mark before the new definition is visible.
            indexing::mark_building(state, &cid, name);
            ops.push(WriteOp::PutMeta {
                key: indexing::marker(&cid, name),
                value: Some(b"1".to_vec()),
            });
        }
    }
    if let Err(e) = state.store.write(ops).await {
        for name in &to_build {
            indexing::forget(state, &cid, name);
        }
        return Err(e.into());
    }
    state.registry.put(compiled.clone());
    for name in &removed {
        indexing::forget(state, &cid, name);
    }
    if has_records {
        for name in to_build {
            indexing::spawn_build(state.clone(), cid.clone(), name);
        }
    }
    Ok(export(state, &compiled))
}

/// Removes one index from a collection (a failed build).
pub async fn remove_index(state: &AppState, collection_id: &str, index: &str) -> Result<(), ApiError> {
    let _guard = state.collection_lock.lock().await;
    let current = state.registry.get(collection_id).ok_or_else(ApiError::missing)?;
    let mut def = current.def.clone();
    def.indexes.retain(|i| i.name != index);
    def.updated = now_string();
    let compiled = Arc::new(CompiledCollection::compile(def)?);
    state
        .store
        .write(vec![
            WriteOp::PutCollection {
                spec: compiled.spec.clone(),
                def: to_value(&compiled.def),
            },
            WriteOp::PutMeta {
                key: indexing::marker(collection_id, index),
                value: None,
            },
        ])
        .await?;
    state.registry.put(compiled);
    Ok(())
}

/// Deletes a collection and all its records.
pub async fn delete(state: &AppState, name_or_id: &str) -> Result<(), ApiError> {
    let _guard = state.collection_lock.lock().await;
    let current = state.registry.get(name_or_id).ok_or_else(ApiError::missing)?;
    if current.def.system {
        return Err(ApiError::bad_request("System collections cannot be deleted."));
    }
    let cid = current.def.id.clone();
    let mut ops = vec![WriteOp::DeleteCollection { id: cid.clone() }];
    for idx in &current.def.indexes {
        ops.push(WriteOp::PutMeta {
            key: indexing::marker(&cid, &idx.name),
            value: None,
        });
    }
    state.store.write(ops).await?;
    state.registry.remove(&cid);
    for idx in &current.def.indexes {
        indexing::forget(state, &cid, &idx.name);
    }
    Ok(())
}

/// How many example failures a dry run reports.
const DRY_RUN_EXAMPLES: usize = 10;

/// Validates every stored record of a collection against a proposed schema,
/// without saving anything: `{total, invalid, examples:[{id, errors}]}`.
pub fn dry_run(state: &AppState, name_or_id: &str, schema: &Value) -> Result<Value, ApiError> {
    let current = state.registry.get(name_or_id).ok_or_else(ApiError::missing)?;
    let mut def = current.def.clone();
    def.schema = schema.clone();
    def.check()?;
    let validator = compile(schema)?;
    let (mut total, mut invalid, mut examples) = (0u64, 0u64, Vec::new());
    for r in state.store.scan(&current.def.id, false)? {
        let r = r?;
        total += 1;
        let user = crate::schema::record::user_fields(&current, &r.data);
        if let Err(errors) = validate(&validator, &user) {
            invalid += 1;
            if examples.len() < DRY_RUN_EXAMPLES {
                examples.push(json!({"id": r.data.get("id"), "errors": errors}));
            }
        }
    }
    Ok(json!({"total": total, "invalid": invalid, "examples": examples}))
}

/// Resumes index builds a restart interrupted.
pub fn resume_builds(state: &AppState) -> Result<(), ApiError> {
    for key in state.store.meta_keys("idxbuild/")? {
        let mut parts = key.trim_start_matches("idxbuild/").splitn(2, '/');
        if let (Some(cid), Some(index)) = (parts.next(), parts.next()) {
            if state.registry.get(cid).is_some() {
                indexing::spawn_build(state.clone(), cid.to_owned(), index.to_owned());
            }
        }
    }
    Ok(())
}
