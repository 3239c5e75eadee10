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

use super::files::{NewFiles, Staged};
use super::records::{answer, auth_id_guard, check_delete, check_relations, plan_create, plan_update};
use super::RequestInfo;
use crate::error::ApiError;
use crate::files::upload::Upload;
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
    let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
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

/// Runs a batch; returns `[{status, body}]`: checks the request list, plans
/// every request in order against the overlay, adds what the deletes do to
/// the records pointing at them, commits it all as one job, and answers.
pub async fn run(
    state: &AppState,
    body: Map<String, Value>,
    uploads: Vec<Upload>,
    req: &RequestInfo,
) -> Result<Value, ApiError> {
    let requests = requests(state, &body)?;
    let mut uploads = uploads_by_request(uploads, requests.len())?;
    let mut batch = Batch {
        state,
        req,
        overlay: HashMap::new(),
        ops: Vec::with_capacity(requests.len()),
        planned: Vec::with_capacity(requests.len()),
        guards: Vec::new(),
        staged: Vec::new(),
    };
    for (i, r) in requests.iter().enumerate() {
        let files = uploads.remove(&i).unwrap_or_default();
        if let Err(e) = batch.plan(r, files).await {
            batch.discard().await;
            return Err(failed(i, e));
        }
    }
    if let Err(e) = batch.reference_effects() {
        batch.discard().await;
        return Err(e);
    }
    batch.commit().await
}

/// File parts of a multipart batch by request: PocketBase's SDKs name them
/// `requests.N.field` (or `requests[N].field`).
fn uploads_by_request(uploads: Vec<Upload>, count: usize) -> Result<HashMap<usize, Vec<Upload>>, ApiError> {
    let mut out: HashMap<usize, Vec<Upload>> = HashMap::new();
    for mut u in uploads {
        let parsed = u.field.strip_prefix("requests").and_then(|rest| {
            let (index, field) = match rest.strip_prefix('[') {
                Some(r) => r.split_once("].")?,
                None => rest.strip_prefix('.')?.split_once('.')?,
            };
            Some((index.parse::<usize>().ok()?, field.to_owned()))
        });
        match parsed {
            Some((i, field)) if i < count && !field.is_empty() => {
                u.field = field;
                out.entry(i).or_default().push(u);
            }
            _ => {
                return Err(ApiError::field(
                    &u.field,
                    "validation_invalid_file",
                    "A batch's file parts are named requests.N.field, N one of its requests.",
                ))
            }
        }
    }
    Ok(out)
}

/// The `requests` array, if batches are enabled and it has an allowed length.
fn requests<'b>(state: &AppState, body: &'b Map<String, Value>) -> Result<&'b Vec<Value>, ApiError> {
    let settings = state.settings.get();
    if !settings.batch.enabled {
        return Err(ApiError::forbidden("Batch requests are not allowed."));
    }
    let Some(Value::Array(requests)) = body.get("requests") else {
        return Err(ApiError::field(
            "requests",
            "validation_required",
            "Missing the requests array.",
        ));
    };
    if requests.is_empty() || requests.len() > settings.batch.max_requests as usize {
        return Err(ApiError::field(
            "requests",
            "validation_length_out_of_range",
            &format!("A batch holds 1 to {} requests.", settings.batch.max_requests),
        ));
    }
    Ok(requests)
}

/// A batch being planned.
struct Batch<'a> {
    state: &'a AppState,
    req: &'a RequestInfo,
    /// (collection id, record id) → the record as earlier sub-requests left
    /// it (`None` = deleted).
    overlay: HashMap<(String, String), Option<Value>>,
    /// The requests' own ops, one per request (their results are the answers).
    ops: Vec<WriteOp>,
    planned: Vec<Planned>,
    /// Checks the writer makes after all the writes (auth ids unique across
    /// auth collections); appended last, so answers still match requests.
    guards: Vec<WriteOp>,
    /// Files stored for the requests, kept or removed with the commit.
    staged: Vec<Staged>,
}

/// One request's planned write: its op and the record it leaves (`None`
/// for a delete).
struct Step {
    op: WriteOp,
    /// Writes this step implies beside its own (a verified upgrade's unlinks).
    extra: Vec<WriteOp>,
    status: u16,
    id: String,
    data: Option<Value>,
}

impl Batch<'_> {
    /// Plans one sub-request against the overlay and records its write.
    async fn plan(&mut self, r: &Value, uploads: Vec<Upload>) -> Result<(), ApiError> {
        let method = r.get("method").and_then(Value::as_str).unwrap_or_default();
        let url = r.get("url").and_then(Value::as_str).unwrap_or_default();
        let (name, kind, params) = route(method, url)?;
        let coll = self.state.registry.get(&name).ok_or_else(ApiError::missing)?;
        let body = match r.get("body") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(ApiError::bad_request("A request body must be a JSON object.")),
        };
        let kind = match kind {
            Kind::Upsert => {
                let id = body.get("id").and_then(Value::as_str).unwrap_or_default();
                if !id.is_empty() && self.current(&coll, id)?.is_some() {
                    Kind::Update(id.to_owned())
                } else {
                    Kind::Create
                }
            }
            k => k,
        };
        let files = super::files::prepare(&coll, uploads)?;
        if !files.0.is_empty() && matches!(kind, Kind::Delete(_)) {
            return Err(ApiError::bad_request("A delete request takes no files."));
        }
        let step = match kind {
            Kind::Create => self.create(&coll, body, &files).await?,
            Kind::Update(id) => self.update(&coll, id, body, &files).await?,
            Kind::Delete(id) => self.delete(&coll, id)?,
            Kind::Upsert => unreachable!("resolved above"),
        };
        if !files.0.is_empty() {
            let staged = Staged::store(&self.state.storage, &coll.def.id, &step.id, &files).await?;
            self.staged.push(staged);
        }
        self.overlay.insert((coll.def.id.clone(), step.id), step.data);
        self.ops.push(step.op);
        self.ops.extend(step.extra);
        self.planned.push(Planned {
            expand: params.get("expand").cloned().unwrap_or_default(),
            coll,
            status: step.status,
        });
        Ok(())
    }

    /// A record as earlier sub-requests left it, else as stored.
    fn current(&self, coll: &CompiledCollection, id: &str) -> Result<Option<Value>, ApiError> {
        Ok(self.current_expecting(coll, id)?.map(|(v, _)| v))
    }

    /// [`Batch::current`] and what the write must expect of it: the stored
    /// revision it was planned on (a record changed meanwhile fails the
    /// batch instead of being overwritten with a stale plan — which could
    /// name a file removed meanwhile, or drop a name another write added),
    /// or nothing for a record this batch already wrote.
    fn current_expecting(&self, coll: &CompiledCollection, id: &str) -> Result<Option<(Value, Expect)>, ApiError> {
        match self.overlay.get(&(coll.def.id.clone(), id.to_owned())) {
            Some(v) => Ok(v.clone().map(|v| (v, Expect::Any))),
            None => Ok(self
                .state
                .store
                .get(&coll.def.id, id)?
                .map(|r| (r.data, Expect::Rev(r.rev)))),
        }
    }

    /// Whether the overlay knows a record: `Some(exists)`, else `None`.
    fn pending(&self, cid: &str, id: &str) -> Option<bool> {
        self.overlay.get(&(cid.to_owned(), id.to_owned())).map(Option::is_some)
    }

    async fn create(
        &mut self,
        coll: &Arc<CompiledCollection>,
        body: Map<String, Value>,
        files: &NewFiles,
    ) -> Result<Step, ApiError> {
        let (state, req) = (self.state, self.req);
        let data = plan_create(state, coll, body, files, req).await?;
        check_relations(state, coll, &data, &|c, id| self.pending(c, id))?;
        let id = data.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
        if self.current(coll, &id)?.is_some() {
            return Err(ApiError::field(
                "id",
                "validation_not_unique",
                "The id is already taken.",
            ));
        }
        let guard = auth_id_guard(state, coll, &id, &|c, id| self.pending(c, id))?;
        self.guards.extend(guard);
        Ok(Step {
            op: WriteOp::PutRecord {
                collection_id: coll.def.id.clone(),
                id: id.clone(),
                data: data.clone(),
                expect: Expect::Absent,
            },
            extra: Vec::new(),
            status: 200,
            id,
            data: Some(data),
        })
    }

    async fn update(
        &mut self,
        coll: &Arc<CompiledCollection>,
        id: String,
        body: Map<String, Value>,
        files: &NewFiles,
    ) -> Result<Step, ApiError> {
        let (cur, expect) = self.current_expecting(coll, &id)?.ok_or_else(ApiError::missing)?;
        let mut data = plan_update(self.state, coll, &cur, body, files, self.req).await?;
        check_relations(self.state, coll, &data, &|c, id| self.pending(c, id))?;
        let extra = crate::core::auth::verified_upgrade(self.state, coll, &cur, &mut data)?;
        Ok(Step {
            op: WriteOp::PutRecord {
                collection_id: coll.def.id.clone(),
                id: id.clone(),
                data: data.clone(),
                expect,
            },
            extra,
            status: 200,
            id,
            data: Some(data),
        })
    }

    fn delete(&mut self, coll: &Arc<CompiledCollection>, id: String) -> Result<Step, ApiError> {
        let (cur, expect) = self.current_expecting(coll, &id)?.ok_or_else(ApiError::missing)?;
        check_delete(self.state, coll, &cur, self.req)?;
        Ok(Step {
            op: WriteOp::DeleteRecord {
                collection_id: coll.def.id.clone(),
                id: id.clone(),
                expect,
            },
            extra: Vec::new(),
            status: 204,
            id,
            data: None,
        })
    }

    /// Deletes also update (or cascade to) the records pointing at what they
    /// delete, seen as this batch leaves them; appended after the requests'
    /// own ops, whose results are the answers.
    fn reference_effects(&mut self) -> Result<(), ApiError> {
        let roots: Vec<(String, String)> = self
            .overlay
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        if roots.is_empty() {
            return Ok(());
        }
        let (state, overlay) = (self.state, &self.overlay);
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
        let first_delete = self.planned.iter().position(|p| p.status == 204).unwrap_or(0);
        let effects =
            super::references::on_delete(state, &roots, &current, &pending).map_err(|e| failed(first_delete, e))?;
        self.ops.extend(effects);
        Ok(())
    }

    /// Removes the files stored for a batch that will not commit.
    async fn discard(&mut self) {
        for staged in self.staged.drain(..) {
            staged.failed().await;
        }
    }

    /// Writes everything as one job and answers each request.
    async fn commit(mut self) -> Result<Value, ApiError> {
        self.ops.append(&mut self.guards);
        let written = self.state.store.write(std::mem::take(&mut self.ops)).await;
        if written.is_err() {
            self.discard().await;
        }
        for staged in self.staged.drain(..) {
            staged.committed();
        }
        let results = written.map_err(|e| {
            let e = ApiError::from(e);
            let mut out = ApiError::new(e.status.max(400), "Batch transaction failed.");
            out.data.insert(
                "requests".into(),
                json!({"": {"code": "batch_request_failed", "message": e.message, "response": e.data}}),
            );
            out
        })?;
        let mut out = Vec::with_capacity(results.len());
        for (result, p) in results.into_iter().zip(self.planned) {
            let body = match result {
                Committed::Record { data, .. } => answer(self.state, &p.coll, data, &p.expand, self.req)?,
                _ => Value::Null,
            };
            out.push(json!({"status": p.status, "body": body}));
        }
        Ok(Value::Array(out))
    }
}
