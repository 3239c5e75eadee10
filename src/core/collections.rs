//! Collection operations (superusers only; the handlers check that).

use std::sync::Arc;

use serde_json::{json, Map, Value};

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

/// The collection as the API returns it.
pub fn export(c: &CompiledCollection) -> Value {
    to_value(&c.def)
}

fn name_taken(state: &AppState, name: &str, except_id: &str) -> bool {
    state
        .registry
        .all()
        .iter()
        .any(|c| c.def.id != except_id && c.def.name.eq_ignore_ascii_case(name))
}

/// Creates a collection from a request body.
pub async fn create(state: &AppState, body: Map<String, Value>) -> Result<Value, ApiError> {
    let _guard = state.collection_lock.lock().await;
    let def = Collection::from_create(body, ids::collection_id(), now_string())?;
    if def.name.starts_with('_') {
        return Err(ApiError::field(
            "name",
            "validation_invalid_name",
            "Names starting with '_' are reserved for system collections.",
        ));
    }
    if name_taken(state, &def.name, &def.id) {
        return Err(ApiError::field(
            "name",
            "validation_not_unique",
            "A collection with this name already exists.",
        ));
    }
    let compiled = Arc::new(CompiledCollection::compile(def)?);
    state
        .store
        .write(vec![WriteOp::PutCollection {
            id: compiled.def.id.clone(),
            def: to_value(&compiled.def),
        }])
        .await?;
    state.registry.put(compiled.clone());
    Ok(export(&compiled))
}

/// Applies a PATCH body to a collection.
pub async fn update(state: &AppState, name_or_id: &str, body: Map<String, Value>) -> Result<Value, ApiError> {
    let _guard = state.collection_lock.lock().await;
    let current = state.registry.get(name_or_id).ok_or_else(ApiError::missing)?;
    let mut def = current.def.clone();
    def.apply(body)?;
    if def == current.def {
        return Ok(export(&current));
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
            return Err(ApiError::field(
                "name",
                "validation_invalid_name",
                "Names starting with '_' are reserved for system collections.",
            ));
        }
        if name_taken(state, &def.name, &def.id) {
            return Err(ApiError::field(
                "name",
                "validation_not_unique",
                "A collection with this name already exists.",
            ));
        }
    }
    if def.indexes != current.def.indexes && state.store.count(&def.id) > 0 {
        return Err(ApiError::field(
            "indexes",
            "validation_not_supported",
            "Indexes can only be changed on an empty collection in this version (building them over existing records comes with the query engine).",
        ));
    }
    def.updated = now_string();
    let compiled = Arc::new(CompiledCollection::compile(def)?);
    state
        .store
        .write(vec![WriteOp::PutCollection {
            id: compiled.def.id.clone(),
            def: to_value(&compiled.def),
        }])
        .await?;
    state.registry.put(compiled.clone());
    Ok(export(&compiled))
}

/// Deletes a collection and all its records.
pub async fn delete(state: &AppState, name_or_id: &str) -> Result<(), ApiError> {
    let _guard = state.collection_lock.lock().await;
    let current = state.registry.get(name_or_id).ok_or_else(ApiError::missing)?;
    if current.def.system {
        return Err(ApiError::bad_request("System collections cannot be deleted."));
    }
    state
        .store
        .write(vec![WriteOp::DeleteCollection {
            id: current.def.id.clone(),
        }])
        .await?;
    state.registry.remove(&current.def.id);
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
