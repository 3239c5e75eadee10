//! Record operations: view, create, update, delete, with rules applied
//! (listing lives in `list.rs`).

use std::sync::Arc;

use serde_json::{Map, Value};

use super::expand::{expand_records, ExpandTree};
use super::{Caller, RequestInfo, SUPERUSERS};
use crate::auth::password;
use crate::clock::now_string;
use crate::error::ApiError;
use crate::query::Filter;
use crate::rules::{self, Access};
use crate::schema::record::{assemble_create, assemble_update, draft_create, draft_update, export, export_raw};
use crate::schema::CompiledCollection;
use crate::state::AppState;
use crate::store::{Committed, Expect, WriteError, WriteOp};

/// A JSON answer, possibly spliced from stored bytes.
pub type RawJson = Box<serde_json::value::RawValue>;

/// Serialises a value into a [`RawJson`].
pub fn raw(v: Value) -> Result<RawJson, ApiError> {
    serde_json::value::to_raw_value(&v).map_err(|e| ApiError::internal(e.to_string()))
}

fn locked() -> ApiError {
    ApiError::forbidden("Only superusers can perform this action.")
}

/// Checks a view/update/delete rule on a stored record: locked → 403,
/// unsatisfied → 404 (so existence is not revealed).
fn check_record_rule(
    state: &AppState,
    coll: &CompiledCollection,
    rule: &Option<Filter>,
    req: &RequestInfo,
    record: &Value,
    body: &Value,
) -> Result<(), ApiError> {
    match rules::access(rule, &req.caller) {
        Access::Allow => Ok(()),
        Access::Locked => Err(locked()),
        Access::Conditional => {
            let holds = rule
                .as_ref()
                .is_some_and(|r| rules::holds(state, coll, r, record, &req.to_json(body)));
            if holds {
                Ok(())
            } else {
                Err(ApiError::missing())
            }
        }
    }
}

/// Exports one record for the caller and applies `expand`.
fn exported(
    state: &AppState,
    coll: &CompiledCollection,
    data: Value,
    tree: &ExpandTree,
    req: &RequestInfo,
) -> Result<Value, ApiError> {
    let mut items = vec![export(coll, &data, &req.caller.viewer())];
    if !tree.is_empty() {
        expand_records(state, coll, std::slice::from_ref(&data), &mut items, tree, req)?;
    }
    Ok(items.pop().unwrap_or(Value::Null))
}

/// One record, if the viewRule allows, with `expand` applied.
pub fn view(
    state: &AppState,
    coll: &CompiledCollection,
    id: &str,
    expand: &str,
    req: &RequestInfo,
) -> Result<RawJson, ApiError> {
    let access = rules::access(&coll.rules.view, &req.caller);
    if access == Access::Locked {
        return Err(locked());
    }
    let tree = ExpandTree::parse(expand)?;
    if access == Access::Allow && tree.is_empty() {
        // Hot path: splice the stored bytes, no parse.
        let raw = state.store.get_raw(&coll.def.id, id)?.ok_or_else(ApiError::missing)?;
        if let Some(out) = export_raw(coll, raw.json()) {
            return Ok(out);
        }
    }
    let stored = state.store.get(&coll.def.id, id)?.ok_or_else(ApiError::missing)?;
    check_record_rule(state, coll, &coll.rules.view, req, &stored.data, &Value::Null)?;
    raw(exported(state, coll, stored.data, &tree, req)?)
}

async fn hash_password(password: Option<String>) -> Result<Option<String>, ApiError> {
    match password {
        None => Ok(None),
        Some(p) => actix_web::web::block(move || password::hash(&p))
            .await
            .map_err(|_| ApiError::internal("password hashing failed"))?
            .map(Some)
            .map_err(ApiError::internal),
    }
}

fn committed_record(results: Vec<Committed>) -> Result<Value, ApiError> {
    match results.into_iter().next() {
        Some(Committed::Record { data, .. }) => Ok(data),
        _ => Err(ApiError::internal("unexpected write result")),
    }
}

/// Creates a record; the createRule must hold for the new record (else 400).
pub async fn create(
    state: &AppState,
    coll: &Arc<CompiledCollection>,
    body: Map<String, Value>,
    expand: &str,
    req: &RequestInfo,
) -> Result<Value, ApiError> {
    let caller = &req.caller;
    let access = rules::access(&coll.rules.create, caller);
    if access == Access::Locked {
        return Err(locked());
    }
    let tree = ExpandTree::parse(expand)?;
    let body_json = if access == Access::Conditional {
        Value::Object(body.clone())
    } else {
        Value::Null
    };
    let draft = draft_create(coll, body, caller.is_superuser()).map_err(ApiError::validation)?;
    let hash = hash_password(draft.auth.password.clone()).await?;
    let data = assemble_create(coll, draft, hash, &now_string());
    if access == Access::Conditional {
        let holds = coll
            .rules
            .create
            .as_ref()
            .is_some_and(|r| rules::holds(state, coll, r, &data, &req.to_json(&body_json)));
        if !holds {
            return Err(ApiError::bad_request("Failed to create record."));
        }
    }
    let results = state
        .store
        .write(vec![WriteOp::PutRecord {
            collection_id: coll.def.id.clone(),
            id: data.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
            data,
            expect: Expect::Absent,
        }])
        .await?;
    exported(state, coll, committed_record(results)?, &tree, req)
}

/// How often an update is re-planned when the record changed underneath it.
const UPDATE_ATTEMPTS: usize = 8;

/// Updates a record (merge + modifiers); the updateRule is checked on the stored record.
pub async fn update(
    state: &AppState,
    coll: &Arc<CompiledCollection>,
    id: &str,
    body: Map<String, Value>,
    expand: &str,
    req: &RequestInfo,
) -> Result<Value, ApiError> {
    let caller = &req.caller;
    if rules::access(&coll.rules.update, caller) == Access::Locked {
        return Err(locked());
    }
    let tree = ExpandTree::parse(expand)?;
    let body_json = Value::Object(body.clone());
    for _ in 0..UPDATE_ATTEMPTS {
        let stored = state.store.get(&coll.def.id, id)?.ok_or_else(ApiError::missing)?;
        check_record_rule(state, coll, &coll.rules.update, req, &stored.data, &body_json)?;
        let draft =
            draft_update(coll, &stored.data, body.clone(), caller.is_superuser()).map_err(ApiError::validation)?;
        if let (Some(old), false) = (&draft.auth.old_password, caller.is_superuser()) {
            let current = stored
                .data
                .get("password")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let old = old.clone();
            let ok = actix_web::web::block(move || password::verify(&old, &current))
                .await
                .map_err(|_| ApiError::internal("password check failed"))?;
            if !ok {
                return Err(ApiError::field(
                    "oldPassword",
                    "validation_invalid_old_password",
                    "Missing or invalid old password.",
                ));
            }
        }
        let hash = hash_password(draft.auth.password.clone()).await?;
        let data = assemble_update(draft, hash, &now_string());
        let result = state
            .store
            .write(vec![WriteOp::PutRecord {
                collection_id: coll.def.id.clone(),
                id: id.to_owned(),
                data,
                expect: Expect::Rev(stored.rev),
            }])
            .await;
        match result {
            Err(WriteError::Conflict) => continue,
            other => return exported(state, coll, committed_record(other?)?, &tree, req),
        }
    }
    Err(WriteError::Conflict.into())
}

/// Deletes a record; the deleteRule is checked on the stored record.
pub async fn delete(
    state: &AppState,
    coll: &Arc<CompiledCollection>,
    id: &str,
    req: &RequestInfo,
) -> Result<(), ApiError> {
    if rules::access(&coll.rules.delete, &req.caller) == Access::Locked {
        return Err(locked());
    }
    let stored = state.store.get(&coll.def.id, id)?.ok_or_else(ApiError::missing)?;
    check_record_rule(state, coll, &coll.rules.delete, req, &stored.data, &Value::Null)?;
    if coll.def.name == SUPERUSERS && state.store.count(&coll.def.id) <= 1 {
        return Err(ApiError::bad_request("The last superuser cannot be deleted."));
    }
    state
        .store
        .write(vec![WriteOp::DeleteRecord {
            collection_id: coll.def.id.clone(),
            id: id.to_owned(),
            expect: Expect::Rev(stored.rev),
        }])
        .await?;
    Ok(())
}

/// Creates or updates a superuser by email (the `superuser upsert` command).
pub async fn upsert_superuser(state: &AppState, email: &str, password_plain: &str) -> Result<Value, ApiError> {
    let coll = state
        .registry
        .get(SUPERUSERS)
        .ok_or_else(|| ApiError::internal("missing _superusers collection"))?;
    let index = coll
        .spec
        .indexes
        .iter()
        .find(|i| i.name == "_sys_email")
        .ok_or_else(|| ApiError::internal("missing email index"))?;
    let root = RequestInfo::internal(
        Caller::Auth {
            collection: coll.clone(),
            record: Value::Null,
            refreshable: false,
        },
        "POST",
        "default",
    );
    let mut body = Map::new();
    body.insert("password".into(), Value::String(password_plain.into()));
    body.insert("passwordConfirm".into(), Value::String(password_plain.into()));
    match state
        .store
        .unique_lookup(&coll.def.id, index, &[&Value::String(email.into())])?
    {
        Some(id) => update(state, &coll, &id, body, "", &root).await,
        None => {
            body.insert("email".into(), Value::String(email.into()));
            body.insert("verified".into(), Value::Bool(true));
            create(state, &coll, body, "", &root).await
        }
    }
}
