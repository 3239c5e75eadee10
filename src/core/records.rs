//! Record operations: list, view, create, update, delete, with rules applied.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use super::{Caller, SUPERUSERS};
use crate::auth::password;
use crate::clock::now_string;
use crate::error::ApiError;
use crate::rules::{self, Access};
use crate::schema::record::{
    self, assemble_create, assemble_update, draft_create, draft_update, export,
};
use crate::schema::CompiledCollection;
use crate::state::AppState;
use crate::store::{Committed, Expect, StoredRecord, WriteError, WriteOp};

/// PocketBase's paging limits.
pub const DEFAULT_PER_PAGE: usize = 30;
pub const MAX_PER_PAGE: usize = 1000;

/// Parsed list query parameters.
#[derive(Debug, Clone)]
pub struct ListParams {
    pub page: usize,
    pub per_page: usize,
    pub sort: String,
    pub filter: String,
    pub skip_total: bool,
}

fn parse_positive(
    q: &HashMap<String, String>,
    key: &str,
    default: usize,
) -> Result<usize, ApiError> {
    match q.get(key).map(|s| s.trim()) {
        None | Some("") => Ok(default),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(ApiError::bad_request(format!(
                "'{key}' must be a positive integer."
            ))),
        },
    }
}

impl ListParams {
    pub fn from_query(q: &HashMap<String, String>) -> Result<ListParams, ApiError> {
        Ok(ListParams {
            page: parse_positive(q, "page", 1)?,
            // Like PocketBase: a perPage above the maximum is clamped, not refused.
            per_page: parse_positive(q, "perPage", DEFAULT_PER_PAGE)?.min(MAX_PER_PAGE),
            sort: q.get("sort").cloned().unwrap_or_default(),
            filter: q.get("filter").cloned().unwrap_or_default(),
            skip_total: matches!(q.get("skipTotal").map(String::as_str), Some("1" | "true")),
        })
    }
}

/// The list response shape (`totalItems`/`totalPages` are -1 with `skipTotal`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListResult {
    pub page: usize,
    pub per_page: usize,
    pub total_items: i64,
    pub total_pages: i64,
    pub items: Vec<Value>,
}

/// Which way a list is read from the store.
enum Order {
    /// Through the `created` index (the default order).
    Created { desc: bool },
    /// Through the primary tree.
    Id { desc: bool },
    /// Load every record and sort in memory.
    Updated { desc: bool },
}

fn parse_order(sort: &str) -> Result<Order, ApiError> {
    let keys: Vec<&str> = sort
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let key = match keys.as_slice() {
        [] => return Ok(Order::Created { desc: false }),
        [k] => *k,
        _ => {
            return Err(ApiError::bad_request(
                "Sorting by several keys needs the query engine; only one of created, updated or id (optionally with '-') is supported for now.",
            ))
        }
    };
    let (desc, field) = match key.strip_prefix('-') {
        Some(f) => (true, f),
        None => (false, key.strip_prefix('+').unwrap_or(key)),
    };
    match field {
        "created" => Ok(Order::Created { desc }),
        "id" => Ok(Order::Id { desc }),
        "updated" => Ok(Order::Updated { desc }),
        other => Err(ApiError::bad_request(format!(
            "Invalid sort field '{other}': only created, updated and id are supported for now."
        ))),
    }
}

fn list_access(coll: &CompiledCollection, caller: &Caller) -> Result<Access, ApiError> {
    match rules::access(&coll.def.list_rule, caller) {
        Access::Locked => Err(ApiError::forbidden(
            "Only superusers can perform this action.",
        )),
        a => Ok(a),
    }
}

/// Lists records, applying the listRule (records failing it are left out).
pub fn list(
    state: &AppState,
    coll: &CompiledCollection,
    params: &ListParams,
    caller: &Caller,
) -> Result<ListResult, ApiError> {
    let access = list_access(coll, caller)?;
    if !params.filter.trim().is_empty() {
        return Err(ApiError::bad_request(
            "Filtering is not available yet in this version: remove the 'filter' parameter.",
        ));
    }
    let order = parse_order(&params.sort)?;
    let viewer = caller.viewer();
    let offset = (params.page - 1).saturating_mul(params.per_page);
    let store = &state.store;
    let cid = &coll.def.id;
    let visible = |r: &StoredRecord| {
        access == Access::Allow
            || rules::holds(coll.def.list_rule.as_deref().unwrap_or(""), caller, &r.data)
    };

    let mut items = Vec::with_capacity(params.per_page);
    let mut total: u64;
    match order {
        Order::Created { desc } | Order::Id { desc } => {
            let iter: Box<dyn Iterator<Item = Result<StoredRecord, crate::store::StoreError>>> =
                match order {
                    Order::Created { .. } => {
                        let index = coll
                            .spec
                            .indexes
                            .iter()
                            .find(|i| i.name == "_sys_created")
                            .ok_or_else(|| {
                                ApiError::internal("collection without created index")
                            })?;
                        let ids = store.index_ids(cid, index, desc)?;
                        Box::new(ids.filter_map(move |id| match id {
                            Ok(id) => store.get(cid, &id).transpose(),
                            Err(e) => Some(Err(e)),
                        }))
                    }
                    _ => store.scan(cid, desc)?,
                };
            if access == Access::Allow {
                total = store.count(cid);
                for r in iter.skip(offset).take(params.per_page) {
                    items.push(export(coll, &r?.data, &viewer));
                }
            } else {
                total = 0;
                for r in iter {
                    let r = r?;
                    if visible(&r) {
                        if total as usize >= offset && items.len() < params.per_page {
                            items.push(export(coll, &r.data, &viewer));
                        }
                        total += 1;
                    }
                }
            }
        }
        Order::Updated { desc } => {
            let mut all = Vec::new();
            for r in store.scan(cid, false)? {
                let r = r?;
                if visible(&r) {
                    all.push(r.data);
                }
            }
            let key = |v: &Value| {
                (
                    v.get("updated")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    v.get("id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                )
            };
            all.sort_by_cached_key(key);
            if desc {
                all.reverse();
            }
            total = all.len() as u64;
            items.extend(
                all.iter()
                    .skip(offset)
                    .take(params.per_page)
                    .map(|r| export(coll, r, &viewer)),
            );
        }
    }
    let (total_items, total_pages) = if params.skip_total {
        (-1, -1)
    } else {
        (total as i64, total.div_ceil(params.per_page as u64) as i64)
    };
    Ok(ListResult {
        page: params.page,
        per_page: params.per_page,
        total_items,
        total_pages,
        items,
    })
}

/// Checks a view/update/delete rule on a stored record: locked → 403,
/// unsatisfied → 404 (so existence is not revealed).
fn check_record_rule(
    rule: &Option<String>,
    caller: &Caller,
    record: &Value,
) -> Result<(), ApiError> {
    match rules::access(rule, caller) {
        Access::Allow => Ok(()),
        Access::Locked => Err(ApiError::forbidden(
            "Only superusers can perform this action.",
        )),
        Access::Conditional => {
            if rules::holds(rule.as_deref().unwrap_or(""), caller, record) {
                Ok(())
            } else {
                Err(ApiError::missing())
            }
        }
    }
}

/// One record, if the viewRule allows.
pub fn view(
    state: &AppState,
    coll: &CompiledCollection,
    id: &str,
    caller: &Caller,
) -> Result<Value, ApiError> {
    if rules::access(&coll.def.view_rule, caller) == Access::Locked {
        return Err(ApiError::forbidden(
            "Only superusers can perform this action.",
        ));
    }
    let stored = state
        .store
        .get(&coll.def.id, id)?
        .ok_or_else(ApiError::missing)?;
    check_record_rule(&coll.def.view_rule, caller, &stored.data)?;
    Ok(export(coll, &stored.data, &caller.viewer()))
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
    caller: &Caller,
) -> Result<Value, ApiError> {
    let access = rules::access(&coll.def.create_rule, caller);
    if access == Access::Locked {
        return Err(ApiError::forbidden(
            "Only superusers can perform this action.",
        ));
    }
    let draft = draft_create(coll, body, caller.is_superuser()).map_err(ApiError::validation)?;
    let hash = hash_password(draft.auth.password.clone()).await?;
    let data = assemble_create(coll, draft, hash, &now_string());
    if access == Access::Conditional
        && !rules::holds(coll.def.create_rule.as_deref().unwrap_or(""), caller, &data)
    {
        return Err(ApiError::bad_request("Failed to create record."));
    }
    let results = state
        .store
        .write(vec![WriteOp::PutRecord {
            collection: coll.spec.clone(),
            id: data
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            data,
            expect: Expect::Absent,
        }])
        .await?;
    Ok(export(coll, &committed_record(results)?, &caller.viewer()))
}

/// How often an update is re-planned when the record changed underneath it.
const UPDATE_ATTEMPTS: usize = 8;

/// Updates a record (merge + modifiers); the updateRule is checked on the stored record.
pub async fn update(
    state: &AppState,
    coll: &Arc<CompiledCollection>,
    id: &str,
    body: Map<String, Value>,
    caller: &Caller,
) -> Result<Value, ApiError> {
    if rules::access(&coll.def.update_rule, caller) == Access::Locked {
        return Err(ApiError::forbidden(
            "Only superusers can perform this action.",
        ));
    }
    for _ in 0..UPDATE_ATTEMPTS {
        let stored = state
            .store
            .get(&coll.def.id, id)?
            .ok_or_else(ApiError::missing)?;
        check_record_rule(&coll.def.update_rule, caller, &stored.data)?;
        let draft = draft_update(coll, &stored.data, body.clone(), caller.is_superuser())
            .map_err(ApiError::validation)?;
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
                collection: coll.spec.clone(),
                id: id.to_owned(),
                data,
                expect: Expect::Rev(stored.rev),
            }])
            .await;
        match result {
            Err(WriteError::Conflict) => continue,
            other => return Ok(export(coll, &committed_record(other?)?, &caller.viewer())),
        }
    }
    Err(WriteError::Conflict.into())
}

/// Deletes a record; the deleteRule is checked on the stored record.
pub async fn delete(
    state: &AppState,
    coll: &Arc<CompiledCollection>,
    id: &str,
    caller: &Caller,
) -> Result<(), ApiError> {
    if rules::access(&coll.def.delete_rule, caller) == Access::Locked {
        return Err(ApiError::forbidden(
            "Only superusers can perform this action.",
        ));
    }
    let stored = state
        .store
        .get(&coll.def.id, id)?
        .ok_or_else(ApiError::missing)?;
    check_record_rule(&coll.def.delete_rule, caller, &stored.data)?;
    if coll.def.name == SUPERUSERS && state.store.count(&coll.def.id) <= 1 {
        return Err(ApiError::bad_request(
            "The last superuser cannot be deleted.",
        ));
    }
    state
        .store
        .write(vec![WriteOp::DeleteRecord {
            collection: coll.spec.clone(),
            id: id.to_owned(),
            expect: Expect::Rev(stored.rev),
        }])
        .await?;
    Ok(())
}

/// Creates or updates a superuser by email (the `superuser upsert` command).
pub async fn upsert_superuser(
    state: &AppState,
    email: &str,
    password_plain: &str,
) -> Result<Value, ApiError> {
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
    let root = Caller::Auth {
        collection: coll.clone(),
        record: Value::Null,
    };
    let mut body = Map::new();
    body.insert("password".into(), Value::String(password_plain.into()));
    body.insert(
        "passwordConfirm".into(),
        Value::String(password_plain.into()),
    );
    match state
        .store
        .unique_lookup(&coll.def.id, index, &[&Value::String(email.into())])?
    {
        Some(id) => update(state, &coll, &id, body, &root).await,
        None => {
            body.insert("email".into(), Value::String(email.into()));
            body.insert("verified".into(), Value::Bool(true));
            create(state, &coll, body, &root).await
        }
    }
}

pub use record::Viewer;
