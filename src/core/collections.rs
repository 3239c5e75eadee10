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

/// Maps a relation target (name or id) to the collection's id, for
/// PocketBase's `fields` view (`collectionId`); unknown targets as given.
pub fn relation_id(state: &AppState, target: &str) -> String {
    state
        .registry
        .get(target)
        .map(|c| c.def.id.clone())
        .unwrap_or_else(|| target.to_owned())
}

/// The collection as the API returns it (both `schema` and PocketBase's
/// `fields`), plus `indexStatus` for indexes still building (or whose build
/// failed).
pub fn export(state: &AppState, c: &CompiledCollection) -> Value {
    let mut v = c.def.to_api(&|t: &str| relation_id(state, t));
    let builds = state.index_builds.of(&c.def.id);
    if !builds.is_empty() {
        if let Some(obj) = v.as_object_mut() {
            obj.insert("indexStatus".into(), json!(builds));
        }
    }
    v
}

/// Whether another collection has this name (case-insensitively) or this
/// name as its id (PocketBase refuses both: `{c}` in a URL is either).
fn name_taken(state: &AppState, name: &str, except_id: &str) -> bool {
    state
        .registry
        .all()
        .iter()
        .any(|c| c.def.id != except_id && (c.def.name.eq_ignore_ascii_case(name) || c.def.id == name))
}

/// A collection id a client may choose (PocketBase tools send their ids so
/// relations keep pointing at the right collection): 1-100 characters of
/// `A-Z a-z 0-9 _`, not taken as another collection's id or name.
fn client_id(state: &AppState, body: &mut Map<String, Value>) -> Result<String, ApiError> {
    match body.remove("id") {
        None | Some(Value::Null) => Ok(ids::collection_id()),
        Some(Value::String(s)) if s.is_empty() => Ok(ids::collection_id()),
        Some(Value::String(s)) if s.len() <= 100 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
            if state.registry.get(&s).is_some() {
                return Err(ApiError::field(
                    "id",
                    "validation_not_unique",
                    "The id is already taken by another collection.",
                ));
            }
            Ok(s)
        }
        Some(_) => Err(ApiError::field(
            "id",
            "validation_invalid_value",
            "A collection id must be 1-100 characters of A-Z, a-z, 0-9 and _.",
        )),
    }
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
pub async fn create(state: &AppState, mut body: Map<String, Value>) -> Result<Value, ApiError> {
    let _guard = state.collection_lock.lock().await;
    let id = client_id(state, &mut body)?;
    let def = Collection::from_create_with(body, id, now_string(), &|t: &str| relation_id(state, t))?;
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
    def.apply_with(body, &|t: &str| relation_id(state, t))?;
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
    let (mut ops, plan) = plan_indexes(state, Some(&current), &compiled);
    ops.insert(
        0,
        WriteOp::PutCollection {
            spec: compiled.spec.clone(),
            def: to_value(&compiled.def),
        },
    );
    if let Err(e) = state.store.write(ops).await {
        plan.abandon(state);
        return Err(e.into());
    }
    state.registry.put(compiled.clone());
    plan.start(state);
    Ok(export(state, &compiled))
}

/// The index work a collection change brings: markers to write, builds to
/// start once the new definition is visible, entries to forget.
struct IndexPlan {
    cid: String,
    to_build: Vec<String>,
    removed: Vec<String>,
}

/// Plans the index side of replacing `current` (if any) by `compiled`: new
/// or changed indexes are built in the background over existing records
/// (see `indexing`), marked before the new definition is visible.
fn plan_indexes(
    state: &AppState,
    current: Option<&CompiledCollection>,
    compiled: &CompiledCollection,
) -> (Vec<WriteOp>, IndexPlan) {
    let cid = compiled.def.id.clone();
    let old_defs = current.map(|c| c.spec.indexes.clone()).unwrap_or_default();
    let new_defs = &compiled.spec.indexes;
    let removed: Vec<String> = old_defs
        .iter()
        .filter(|d| !new_defs.iter().any(|n| n.name == d.name))
        .map(|d| d.name.clone())
        .collect();
    let has_records = current.is_some() && state.store.count(&cid) > 0;
    let to_build: Vec<String> = if has_records {
        new_defs
            .iter()
            .filter(|d| !old_defs.contains(d))
            .map(|d| d.name.clone())
            .collect()
    } else {
        vec![]
    };
    let mut ops = Vec::new();
    for name in &removed {
        ops.push(WriteOp::PutMeta {
            key: indexing::marker(&cid, name),
            value: None,
        });
    }
    for name in &to_build {
        indexing::mark_building(state, &cid, name);
        ops.push(WriteOp::PutMeta {
            key: indexing::marker(&cid, name),
            value: Some(indexing::new_token()),
        });
    }
    (ops, IndexPlan { cid, to_build, removed })
}

impl IndexPlan {
    /// The write failed: nothing is building.
    fn abandon(&self, state: &AppState) {
        for name in &self.to_build {
            indexing::forget(state, &self.cid, name);
        }
    }

    /// The write succeeded: forget removed indexes, start the builds.
    fn start(self, state: &AppState) {
        for name in &self.removed {
            indexing::forget(state, &self.cid, name);
        }
        for name in self.to_build {
            indexing::spawn_build(state.clone(), self.cid.clone(), name);
        }
    }
}

/// Removes one index from a collection (a failed build), unless it was
/// saved again since the build read `token` from its marker: then the
/// write is refused with a 409 and nothing changes.
pub async fn remove_index(state: &AppState, collection_id: &str, index: &str, token: &[u8]) -> Result<(), ApiError> {
    let _guard = state.collection_lock.lock().await;
    let current = state.registry.get(collection_id).ok_or_else(ApiError::missing)?;
    let mut def = current.def.clone();
    def.indexes.retain(|i| i.name != index);
    def.updated = now_string();
    let compiled = Arc::new(CompiledCollection::compile(def)?);
    let key = indexing::marker(collection_id, index);
    state
        .store
        .write(vec![
            WriteOp::RequireMeta {
                key: key.clone(),
                value: Some(token.to_vec()),
            },
            WriteOp::PutCollection {
                spec: compiled.spec.clone(),
                def: to_value(&compiled.def),
            },
            WriteOp::PutMeta { key, value: None },
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
    super::files::remove_collection(state, &cid).await;
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

/// Reloads the collections from the store (another node changed them):
/// unchanged definitions keep their compiled form, changed ones are
/// compiled again, and index builds in progress anywhere are marked
/// before the new definitions become visible. Takes the collection lock,
/// so it never interleaves with this node's own collection changes.
pub async fn reload(state: &AppState) -> Result<(), ApiError> {
    let _guard = state.collection_lock.lock().await;
    let st = state.clone();
    state.work.run(move || reload_now(&st)).await?
}

fn reload_now(state: &AppState) -> Result<(), ApiError> {
    let mut all = Vec::new();
    for raw in state.store.collections()? {
        let def: Collection = serde_json::from_value(raw)
            .map_err(|e| ApiError::internal(format!("a stored collection cannot be read: {e}")))?;
        match state.registry.get(&def.id).filter(|c| c.def.id == def.id) {
            Some(c) if c.def == def => all.push(c),
            _ => all.push(Arc::new(CompiledCollection::compile(def)?)),
        }
    }
    // The markers are read after the definitions (see `sync_markers`).
    indexing::sync_markers(state)?;
    let gone: Vec<String> = state
        .registry
        .all()
        .iter()
        .filter(|c| !all.iter().any(|n| n.def.id == c.def.id))
        .map(|c| c.def.id.clone())
        .collect();
    state.registry.replace_all(all);
    for cid in gone {
        for (index, _) in state.index_builds.of(&cid) {
            indexing::forget(state, &cid, &index);
        }
    }
    Ok(())
}

/// Resumes index builds a restart interrupted.
pub fn resume_builds(state: &AppState) -> Result<(), ApiError> {
    for key in state.store.meta_keys(crate::store::meta::INDEX_BUILD_PREFIX)? {
        let mut parts = key
            .trim_start_matches(crate::store::meta::INDEX_BUILD_PREFIX)
            .splitn(2, '/');
        if let (Some(cid), Some(index)) = (parts.next(), parts.next()) {
            if state.registry.get(cid).is_some() {
                indexing::spawn_build(state.clone(), cid.to_owned(), index.to_owned());
            }
        }
    }
    Ok(())
}

// ---- PocketBase's admin extras: import, truncate, list -------------------

/// Most collections one import may carry (bounds the work of one request).
const MAX_IMPORT: usize = 1000;

/// PocketBase's internal collections, which Basalt does not have (MFA,
/// OTP codes, OAuth2 links, auth origins): skipped by an import.
const PB_INTERNAL: &[&str] = &["_mfas", "_otps", "_externalAuths", "_authOrigins"];

fn prefixed(i: usize, e: impl Into<ApiError>) -> ApiError {
    let mut e = e.into();
    let old = std::mem::take(&mut e.data);
    for (k, v) in old {
        e.data.insert(format!("collections.{i}.{k}"), v);
    }
    if e.data.is_empty() {
        e.message = format!("collections.{i}: {}", e.message);
    }
    e
}

/// One imported collection: the stored one it replaces (if any) and the new one.
type Planned = (Option<Arc<CompiledCollection>>, Arc<CompiledCollection>);

/// Builds the new definition of one import entry; `None` for an entry that
/// is skipped (PocketBase's internal collections).
fn plan_one(state: &AppState, item: &Value, now: &str) -> Result<Option<Planned>, ApiError> {
    let mut obj = item
        .as_object()
        .cloned()
        .ok_or_else(|| ApiError::bad_request("Each imported collection must be an object."))?;
    let name = obj.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
    if PB_INTERNAL.contains(&name.as_str()) {
        return Ok(None);
    }
    let by_id = obj
        .get("id")
        .and_then(Value::as_str)
        .and_then(|id| state.registry.get(id).filter(|c| c.def.id == id));
    let existing = by_id.or_else(|| state.registry.get(&name).filter(|c| c.def.name == name));
    let ids = |t: &str| relation_id(state, t);
    let def = match &existing {
        Some(cur) => {
            obj.remove("id");
            let mut def = cur.def.clone();
            def.apply_with(obj, &ids)?;
            if def.name != cur.def.name && cur.def.system {
                return Err(ApiError::field(
                    "name",
                    "validation_system_collection",
                    "System collections cannot be renamed.",
                ));
            }
            // As in update: `_` names are the system collections' own.
            if def.name != cur.def.name && def.name.starts_with('_') {
                return Err(reserved_name());
            }
            if def != cur.def {
                def.updated = now.to_owned();
            }
            def
        }
        None => {
            let id = client_id(state, &mut obj)?;
            let def = Collection::from_create_with(obj, id, now.to_owned(), &ids)?;
            if def.name.starts_with('_') {
                return Err(reserved_name());
            }
            def
        }
    };
    Ok(Some((existing, Arc::new(CompiledCollection::compile(def)?))))
}

/// Names unique (case-insensitively, and not another collection's id) and
/// relations pointing inside the final set of collections.
fn check_final_set(finals: &[&Collection]) -> Result<(), ApiError> {
    for (i, c) in finals.iter().enumerate() {
        let clash = finals[..i]
            .iter()
            .any(|o| o.id == c.id || o.name.eq_ignore_ascii_case(&c.name) || o.id == c.name || o.name == c.id);
        if clash {
            return Err(ApiError::field(
                "collections",
                "validation_not_unique",
                &format!("Collection '{}' clashes with another one by name or id.", c.name),
            ));
        }
    }
    for c in finals {
        let Some(props) = c.schema.get("properties").and_then(Value::as_object) else {
            continue;
        };
        for (field, p) in props {
            let Some(target) = p.pointer("/x-relation/collection").and_then(Value::as_str) else {
                continue;
            };
            if !finals.iter().any(|o| o.id == target || o.name == target) {
                return Err(ApiError::field(
                    "collections",
                    "validation_invalid_relation",
                    &format!(
                        "Collection '{}', field '{field}': relation to unknown collection '{target}'.",
                        c.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `PUT /api/collections/import`: creates or replaces every listed
/// collection (matched by id, else by name) and, with `deleteMissing`,
/// deletes the others (never system ones); all or nothing, in one write.
pub async fn import(state: &AppState, body: Map<String, Value>) -> Result<(), ApiError> {
    let items = match body.get("collections") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        _ => {
            return Err(ApiError::field(
                "collections",
                "validation_required",
                "A non-empty list of collections is required.",
            ))
        }
    };
    if items.len() > MAX_IMPORT {
        return Err(ApiError::field(
            "collections",
            "validation_too_many",
            &format!("At most {MAX_IMPORT} collections per import."),
        ));
    }
    let delete_missing = match body.get("deleteMissing") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::field(
                "deleteMissing",
                "validation_invalid_type",
                "Must be a boolean.",
            ))
        }
    };
    let _guard = state.collection_lock.lock().await;
    let now = now_string();
    // Compiling up to MAX_IMPORT schemas is CPU work: on the blocking pool,
    // never on the HTTP workers.
    let (st, owned, at) = (state.clone(), items.clone(), now.clone());
    let planned: Vec<Planned> = state
        .work
        .run(move || -> Result<Vec<Planned>, ApiError> {
            let mut planned = Vec::new();
            for (i, item) in owned.iter().enumerate() {
                if let Some(p) = plan_one(&st, item, &at).map_err(|e| prefixed(i, e))? {
                    planned.push(p);
                }
            }
            Ok(planned)
        })
        .await??;
    let touched: Vec<&str> = planned.iter().map(|(_, c)| c.def.id.as_str()).collect();
    let all = state.registry.all();
    let untouched: Vec<&Arc<CompiledCollection>> =
        all.iter().filter(|c| !touched.contains(&c.def.id.as_str())).collect();
    let (deleted, kept): (Vec<_>, Vec<_>) = untouched.into_iter().partition(|c| delete_missing && !c.def.system);
    let finals: Vec<&Collection> = planned
        .iter()
        .map(|(_, c)| &c.def)
        .chain(kept.iter().map(|c| &c.def))
        .collect();
    check_final_set(&finals)?;
    let mut ops = Vec::new();
    let mut plans = Vec::new();
    for (current, compiled) in &planned {
        ops.push(WriteOp::PutCollection {
            spec: compiled.spec.clone(),
            def: to_value(&compiled.def),
        });
        let (index_ops, plan) = plan_indexes(state, current.as_deref(), compiled);
        ops.extend(index_ops);
        plans.push(plan);
    }
    for c in &deleted {
        ops.push(WriteOp::DeleteCollection { id: c.def.id.clone() });
        for idx in &c.def.indexes {
            ops.push(WriteOp::PutMeta {
                key: indexing::marker(&c.def.id, &idx.name),
                value: None,
            });
        }
    }
    if let Err(e) = state.store.write(ops).await {
        plans.iter().for_each(|p| p.abandon(state));
        return Err(e.into());
    }
    for (_, compiled) in planned {
        state.registry.put(compiled);
    }
    for c in deleted {
        state.registry.remove(&c.def.id);
        for idx in &c.def.indexes {
            indexing::forget(state, &c.def.id, &idx.name);
        }
    }
    plans.into_iter().for_each(|p| p.start(state));
    Ok(())
}

/// Records deleted per write by a truncate: each chunk goes through the
/// normal delete path (relations unset or cascaded), so the work of one
/// write stays bounded however large the collection.
const TRUNCATE_CHUNK: usize = 200;

/// `DELETE /api/collections/{c}/truncate`: deletes every record, chunk by
/// chunk, as deletes do (references unset, cascades followed). A record
/// that cannot go (a required relation points at it) stops the truncate
/// with a 400; the chunks before it stay deleted.
pub async fn truncate(state: &AppState, name_or_id: &str, req: &crate::rules::RequestInfo) -> Result<(), ApiError> {
    let coll = state.registry.get(name_or_id).ok_or_else(ApiError::missing)?;
    if coll.def.name == crate::rules::SUPERUSERS {
        return Err(ApiError::bad_request("The superusers collection cannot be truncated."));
    }
    loop {
        let mut ids = Vec::with_capacity(TRUNCATE_CHUNK);
        for r in state.store.scan(&coll.def.id, false)?.take(TRUNCATE_CHUNK) {
            if let Some(id) = r?.data.get("id").and_then(Value::as_str) {
                ids.push(id.to_owned());
            }
        }
        if ids.is_empty() {
            return Ok(());
        }
        let out = super::records::delete_many(state, &coll, &ids, req).await?;
        if let Some((id, reason)) = out.refused.first() {
            return Err(ApiError::bad_request(format!(
                "Failed to truncate: record '{id}' cannot be deleted: {reason}"
            )));
        }
        if out.deleted == 0 && out.missing == 0 {
            return Err(ApiError::bad_request("Failed to truncate the collection."));
        }
    }
}

/// `GET /api/collections` as PocketBase: `filter` and `sort` over each
/// collection's JSON (the filter language of records, evaluated in memory:
/// there are few collections), `page`/`perPage`/`skipTotal`.
pub fn list(state: &AppState, params: &super::list::ListParams) -> Result<Value, ApiError> {
    use crate::query::{compare_records, evaluate, parse_filter, parse_sort, JsonResolver};
    let filter = parse_filter(&params.filter)
        .map_err(|e| ApiError::field("filter", "validation_invalid_filter", &e.to_string()))?;
    let keys =
        parse_sort(&params.sort).map_err(|e| ApiError::field("sort", "validation_invalid_sort", &e.to_string()))?;
    let request = json!({});
    let now = crate::clock::now_millis();
    let mut all: Vec<Value> = state
        .registry
        .all()
        .iter()
        .map(|c| export(state, c))
        .filter(|c| {
            evaluate(
                &filter,
                &JsonResolver {
                    record: c,
                    request: &request,
                    now_millis: now,
                },
            )
        })
        .collect();
    // Without `sort`, the registry's order (by name), as before.
    if !keys.is_empty() {
        all.sort_by(|a, b| compare_records(a, b, &keys));
    }
    let total = all.len();
    let items: Vec<Value> = all
        .into_iter()
        .skip((params.page - 1).saturating_mul(params.per_page))
        .take(params.per_page)
        .collect();
    let (total_items, total_pages) = if params.skip_total {
        (-1, -1)
    } else {
        (total as i64, total.div_ceil(params.per_page) as i64)
    };
    Ok(json!({
        "page": params.page, "perPage": params.per_page,
        "totalItems": total_items, "totalPages": total_pages,
        "items": items,
    }))
}
