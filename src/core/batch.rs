//! `POST /api/batch`: several record writes, all or nothing.
//!
//! Every sub-request is planned in order — parsed, validated, rules checked,
//! passwords hashed — against the stored records *as earlier sub-requests
//! left them* (an overlay), so "create A, then update A" works. If any
//! sub-request is refused, the batch answers 400 and nothing is written. The
//! planned writes then go to the store as **one** job: one transaction, one
//! fsync, one seq per write, and a unique clash or concurrent change inside
//! the writer still fails the whole batch.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::records::{answer, auth_id_guard, check_delete, check_relations, plan_create, plan_update};
use super::RequestInfo;
use crate::error::ApiError;
use crate::schema::CompiledCollection;
use crate::state::AppState;
use crate::store::{Committed, Expect, WriteOp};

/// Longest accepted sub-request URL (as PocketBase).
const MAX_URL: usize = 2000;

enum Kind {
    Create,
    Upsert,
    Update(String),
    Delete(String),
}

struct Planned {
    coll: Arc<CompiledCollection>,
    expand: String,
    status: u16,
}

fn failed(index: usize, err: ApiError) -> ApiError {
    let mut e = ApiError::bad_request("Batch transaction failed.");
    let response = json!({"status": err.status, "message": err.message, "data": err.data});
    e.data.insert(
        "requests".into(),
        json!({ index.to_string(): {"code": "batch_request_failed", "message": "Batch request failed.", "response": response} }),
    );
    e
}

/// Splits `/api/collections/{c}/records[/{id}][?query]` into its parts.
fn route(method: &str, url: &str) -> Result<(String, Kind, HashMap<String, String>), ApiError> {
    if url.len() > MAX_URL {
        return Err(ApiError::bad_request("The request URL is too long."));
    }
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let params: HashMap<String, String> = actix_web::web::Query::<HashMap<String, String>>::from_query(query)
        .map(|q| q.into_inner())
        .unwrap_or_default();
    let rest = path
        .strip_prefix("/api/collections/")
        .ok_or_else(|| ApiError::bad_request(format!("Unsupported batch URL '{path}'.")))?;
    let parts: Vec<&str> = rest.split('/').collect();
    let kind = match (method.to_ascii_uppercase().as_str(), parts.as_slice()) {
        ("POST", [_, "records"]) => Kind::Create,
        ("PUT", [_, "records"]) => Kind::Upsert,
        ("PATCH", [_, "records", id]) if !id.is_empty() => Kind::Update((*id).to_owned()),
        ("DELETE", [_, "records", id]) if !id.is_empty() => Kind::Delete((*id).to_owned()),
        _ => {
            return Err(ApiError::bad_request(format!(
                "Unsupported batch action {method} {path}: use POST/PUT …/records, PATCH/DELETE …/records/{{id}}."
            )))
        }
    };
    Ok((parts[0].to_owned(), kind, params))
}

/// Runs a batch; returns `[{status, body}]`.
pub async fn run(state: &AppState, body: Map<String, Value>, req: &RequestInfo) -> Result<Value, ApiError> {
    let settings = state.settings.get();
    if !settings.batch.enabled {
        return Err(ApiError::forbidden("Batch requests are not allowed."));
    }
    let requests = match body.get("requests") {
        Some(Value::Array(r)) => r,
        _ => {
            return Err(ApiError::field(
                "requests",
                "validation_required",
                "Missing the requests array.",
            ))
        }
    };
    if requests.is_empty() || requests.len() > settings.batch.max_requests as usize {
        return Err(ApiError::field(
            "requests",
            "validation_length_out_of_range",
            &format!("A batch holds 1 to {} requests.", settings.batch.max_requests),
        ));
    }
    // (collection id, record id) → the record as earlier sub-requests left it
    // (`None` = deleted), plus whether it exists in the store already.
    let mut overlay: HashMap<(String, String), Option<Value>> = HashMap::new();
    let mut ops = Vec::with_capacity(requests.len());
    let mut planned = Vec::with_capacity(requests.len());
    // Checks the writer makes after all the writes (auth ids unique across
    // auth collections); appended last, so answers still match requests.
    let mut guards = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        let step = async {
            let method = r.get("method").and_then(Value::as_str).unwrap_or_default();
            let url = r.get("url").and_then(Value::as_str).unwrap_or_default();
            let (name, kind, params) = route(method, url)?;
            let coll = state.registry.get(&name).ok_or_else(ApiError::missing)?;
            let body = match r.get("body") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(m)) => m.clone(),
                Some(_) => return Err(ApiError::bad_request("A request body must be a JSON object.")),
            };
            let current = |id: &str| -> Result<Option<Value>, ApiError> {
                match overlay.get(&(coll.def.id.clone(), id.to_owned())) {
                    Some(v) => Ok(v.clone()),
                    None => Ok(state.store.get(&coll.def.id, id)?.map(|r| r.data)),
                }
            };
            let kind = match kind {
                Kind::Upsert => {
                    let id = body.get("id").and_then(Value::as_str).unwrap_or_default();
                    if !id.is_empty() && current(id)?.is_some() {
                        Kind::Update(id.to_owned())
                    } else {
                        Kind::Create
                    }
                }
                k => k,
            };
            let expand = params.get("expand").cloned().unwrap_or_default();
            let (op, status, id, data) = match kind {
                Kind::Create => {
                    let data = plan_create(state, &coll, body, req).await?;
                    check_relations(state, &coll, &data, &|c, id| {
                        overlay.get(&(c.to_owned(), id.to_owned())).map(Option::is_some)
                    })?;
                    let id = data.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
                    if current(&id)?.is_some() {
                        return Err(ApiError::field(
                            "id",
                            "validation_not_unique",
                            "The id is already taken.",
                        ));
                    }
                    guards.extend(auth_id_guard(state, &coll, &id, &|c, id| {
                        overlay.get(&(c.to_owned(), id.to_owned())).map(Option::is_some)
                    })?);
                    (
                        WriteOp::PutRecord {
                            collection_id: coll.def.id.clone(),
                            id: id.clone(),
                            data: data.clone(),
                            expect: Expect::Absent,
                        },
                        200,
                        id,
                        Some(data),
                    )
                }
                Kind::Update(id) => {
                    let cur = current(&id)?.ok_or_else(ApiError::missing)?;
                    let data = plan_update(state, &coll, &cur, body, req).await?;
                    check_relations(state, &coll, &data, &|c, id| {
                        overlay.get(&(c.to_owned(), id.to_owned())).map(Option::is_some)
                    })?;
                    (
                        WriteOp::PutRecord {
                            collection_id: coll.def.id.clone(),
                            id: id.clone(),
                            data: data.clone(),
                            expect: Expect::Any,
                        },
                        200,
                        id,
                        Some(data),
                    )
                }
                Kind::Delete(id) => {
                    let cur = current(&id)?.ok_or_else(ApiError::missing)?;
                    check_delete(state, &coll, &cur, req)?;
                    (
                        WriteOp::DeleteRecord {
                            collection_id: coll.def.id.clone(),
                            id: id.clone(),
                            expect: Expect::Any,
                        },
                        204,
                        id,
                        None,
                    )
                }
                Kind::Upsert => unreachable!("resolved above"),
            };
            Ok::<_, ApiError>((
                op,
                Planned {
                    coll: coll.clone(),
                    expand,
                    status,
                },
                (coll.def.id.clone(), id),
                data,
            ))
        };
        match step.await {
            Ok((op, p, key, data)) => {
                overlay.insert(key, data);
                ops.push(op);
                planned.push(p);
            }
            Err(e) => return Err(failed(i, e)),
        }
    }
    // Deletes also update (or cascade to) the records pointing at what they
    // delete, seen as this batch leaves them; appended after the requests'
    // own ops, whose results are the answers.
    let roots: Vec<(String, String)> = overlay
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| k.clone())
        .collect();
    if !roots.is_empty() {
        let current = |cid: &str, rid: &str| -> Result<super::references::Current, ApiError> {
            match overlay.get(&(cid.to_owned(), rid.to_owned())) {
                Some(v) => Ok(v.clone().map(|d| (d, Expect::Any))),
                None => Ok(state.store.get(cid, rid)?.map(|r| (r.data, Expect::Rev(r.rev)))),
            }
        };
        let pending = |cid: &str| -> Vec<String> {
            overlay
                .iter()
                .filter(|((c, _), v)| c == cid && v.is_some())
                .map(|((_, id), _)| id.clone())
                .collect()
        };
        // A refusal is reported on the first delete request.
        let first_delete = planned.iter().position(|p| p.status == 204).unwrap_or(0);
        let effects =
            super::references::on_delete(state, &roots, &current, &pending).map_err(|e| failed(first_delete, e))?;
        ops.extend(effects);
    }
    ops.extend(guards);
    let results = state.store.write(ops).await.map_err(|e| {
        let e = ApiError::from(e);
        let mut out = ApiError::new(e.status.max(400), "Batch transaction failed.");
        out.data.insert(
            "requests".into(),
            json!({"": {"code": "batch_request_failed", "message": e.message, "response": e.data}}),
        );
        out
    })?;
    let mut out = Vec::with_capacity(results.len());
    for (result, p) in results.into_iter().zip(planned) {
        let body = match result {
            Committed::Record { data, .. } => answer(state, &p.coll, data, &p.expand, req)?,
            _ => Value::Null,
        };
        out.push(json!({"status": p.status, "body": body}));
    }
    Ok(Value::Array(out))
}
