//! Record operations: view, create, update, delete, with rules applied
//! (listing lives in `list.rs`).

use std::sync::Arc;

use serde_json::{Map, Value};

use super::expand::{expand_records, ExpandTree};
use super::files::{NewFiles, Staged};
use super::replan::{self, Replan};
use super::{Caller, RequestInfo, SUPERUSERS};
use crate::auth::password;
use crate::clock::now_string;
use crate::error::ApiError;
use crate::files::upload::Upload;
use crate::query::Filter;
use crate::rules::{self, Access};
use crate::schema::record::{
    assemble_create, assemble_update, draft_create, draft_update, export, export_raw, resolved_body,
};
use crate::schema::CompiledCollection;
use crate::state::AppState;
use crate::store::{Committed, Expect, WriteOp};

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
            let holds = rule.as_ref().is_some_and(|r| {
                rules::holds(
                    crate::core::rule_data(state, &req.budget),
                    coll,
                    r,
                    record,
                    &req.to_json(body),
                )
            });
            req.budget.check()?;
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
        let rule_data = crate::core::rule_data(state, &req.budget);
        expand_records(rule_data, coll, std::slice::from_ref(&data), &mut items, tree, req);
        req.budget.check()?;
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
    check_view(state, coll, req, &stored.data)?;
    raw(exported(state, coll, stored.data, &tree, req)?)
}

/// Whether `req` may view `record` (the viewRule): locked → 403,
/// unsatisfied → 404. Shared with `file_access` (protected files).
pub(crate) fn check_view(
    state: &AppState,
    coll: &CompiledCollection,
    req: &RequestInfo,
    record: &Value,
) -> Result<(), ApiError> {
    check_record_rule(state, coll, &coll.rules.view, req, record, &Value::Null)
}

async fn hash_password(password: Option<String>) -> Result<Option<String>, ApiError> {
    match password {
        None => Ok(None),
        Some(p) => password::hash_async(p).await.map(Some).map_err(ApiError::internal),
    }
}

/// The answer for a written record: spliced from the bytes the writer
/// stored when nothing needs shaping, otherwise exported and expanded.
fn committed_answer(
    state: &AppState,
    coll: &CompiledCollection,
    results: Vec<Committed>,
    tree: &ExpandTree,
    req: &RequestInfo,
) -> Result<RawJson, ApiError> {
    match results.into_iter().next() {
        Some(Committed::Record { data, json, .. }) => {
            if tree.is_empty() {
                if let Some(out) = export_raw(coll, &json) {
                    return Ok(out);
                }
            }
            raw(committed_value(state, coll, data, tree, req))
        }
        _ => Err(ApiError::internal("unexpected write result")),
    }
}

/// Shapes a record that is already written. A spent budget cannot undo
/// the write, so the answer then leaves `expand` out instead of failing.
fn committed_value(
    state: &AppState,
    coll: &CompiledCollection,
    data: Value,
    tree: &ExpandTree,
    req: &RequestInfo,
) -> Value {
    if tree.is_empty() {
        return export(coll, &data, &req.caller.viewer());
    }
    let plain = export(coll, &data, &req.caller.viewer());
    exported(state, coll, data, tree, req).unwrap_or(plain)
}

/// Every id in a relation field must name an existing record of the
/// target collection (PocketBase: `validation_missing_rel_records`).
/// `pending(collection id, id)` answers for records a batch has planned but
/// not written (`Some(exists)`), `None` to look in the store.
pub(crate) fn check_relations(
    state: &AppState,
    coll: &CompiledCollection,
    data: &Value,
    pending: &dyn Fn(&str, &str) -> Option<bool>,
) -> Result<(), ApiError> {
    let mut errors = crate::schema::FieldErrors::new();
    for (field, rel) in &coll.relations {
        let ids = crate::rules::ids_of(data.get(field));
        if ids.is_empty() {
            continue;
        }
        let Some(target) = state.registry.get(&rel.collection) else {
            continue;
        };
        for id in ids {
            let exists = if target.def.id == coll.def.id && data.get("id").and_then(Value::as_str) == Some(id) {
                true
            } else if let Some(known) = pending(&target.def.id, id) {
                known
            } else {
                state.store.get_raw(&target.def.id, id)?.is_some()
            };
            if !exists {
                errors.insert(
                    field.clone(),
                    crate::schema::FieldError {
                        code: "validation_missing_rel_records".into(),
                        message: "Failed to find all relation records with the provided ids.".into(),
                    },
                );
                break;
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation(errors))
    }
}

/// An auth record's id must not name a record of another auth collection
/// (as PocketBase: `validation_invalid_auth_id`), so nothing keyed on an
/// auth id alone (`@request.auth.id` in a rule, a realtime client's auth)
/// can take one account for another. Checked here for a clear error
/// (`pending` answers for records a batch planned, as in
/// [`check_relations`]) and again by the returned op, which the create's
/// write job must carry after the create: inside the writer, so two
/// concurrent creates cannot both pass. `None` for base collections.
pub(crate) fn auth_id_guard(
    state: &AppState,
    coll: &CompiledCollection,
    id: &str,
    pending: &dyn Fn(&str, &str) -> Option<bool>,
) -> Result<Option<WriteOp>, ApiError> {
    if !coll.is_auth() {
        return Ok(None);
    }
    let others: Vec<String> = (state.registry.all().iter())
        .filter(|c| c.is_auth() && c.def.id != coll.def.id)
        .map(|c| c.def.id.clone())
        .collect();
    for cid in &others {
        let taken = match pending(cid, id) {
            Some(known) => known,
            None => state.store.get_raw(cid, id)?.is_some(),
        };
        if taken {
            return Err(crate::error::invalid_auth_id());
        }
    }
    Ok(Some(WriteOp::RequireAbsent {
        collection_ids: others,
        id: id.to_owned(),
    }))
}

/// Validates a create body and checks the createRule: the record to write
/// (with `Expect::Absent`). Shared by create and batch.
pub async fn plan_create(
    state: &AppState,
    coll: &Arc<CompiledCollection>,
    mut body: Map<String, Value>,
    files: &NewFiles,
    req: &RequestInfo,
) -> Result<Value, ApiError> {
    let caller = &req.caller;
    let access = rules::access(&coll.rules.create, caller);
    if access == Access::Locked {
        return Err(locked());
    }
    super::files::apply(coll, files, None, &mut body)?;
    let body_json = if access == Access::Conditional {
        Value::Object(body.clone())
    } else {
        Value::Null
    };
    let draft = draft_create(coll, body, caller.is_superuser()).map_err(ApiError::validation)?;
    let hash = hash_password(draft.auth.password.clone()).await?;
    let data = assemble_create(coll, draft, hash, &now_string());
    if access == Access::Conditional {
        let holds = coll.rules.create.as_ref().is_some_and(|r| {
            rules::holds(
                crate::core::rule_data(state, &req.budget),
                coll,
                r,
                &data,
                &req.to_json(&body_json),
            )
        });
        req.budget.check()?;
        if !holds {
            return Err(ApiError::bad_request("Failed to create record."));
        }
    }
    Ok(data)
}

/// Checks the updateRule on `current` and applies the PATCH body: the
/// record to write. Shared by update and batch.
pub async fn plan_update(
    state: &AppState,
    coll: &Arc<CompiledCollection>,
    current: &Value,
    mut body: Map<String, Value>,
    files: &NewFiles,
    req: &RequestInfo,
) -> Result<Value, ApiError> {
    let caller = &req.caller;
    if rules::access(&coll.rules.update, caller) == Access::Locked {
        return Err(locked());
    }
    // File values become final names first: the rule sees what will be stored.
    super::files::apply(coll, files, Some(current), &mut body)?;
    check_record_rule(
        state,
        coll,
        &coll.rules.update,
        req,
        current,
        &Value::Object(resolved_body(coll, current, &body)),
    )?;
    let draft = draft_update(coll, current, body, caller.is_superuser()).map_err(ApiError::validation)?;
    if let (Some(old), false) = (&draft.auth.old_password, caller.is_superuser()) {
        // A wrong guess is a failed login (rate limited per account and address).
        super::auth::check_old_password(state, coll, current, old, req.ip).await?;
    }
    let hash = hash_password(draft.auth.password.clone()).await?;
    Ok(assemble_update(draft, hash, &now_string()))
}

/// Checks the deleteRule (and the last-superuser guard) on `current`.
pub fn check_delete(
    state: &AppState,
    coll: &CompiledCollection,
    current: &Value,
    req: &RequestInfo,
) -> Result<(), ApiError> {
    if rules::access(&coll.rules.delete, &req.caller) == Access::Locked {
        return Err(locked());
    }
    check_record_rule(state, coll, &coll.rules.delete, req, current, &Value::Null)?;
    if coll.def.name == SUPERUSERS && state.store.count(&coll.def.id) <= 1 {
        return Err(ApiError::bad_request("The last superuser cannot be deleted."));
    }
    Ok(())
}

/// Exports a written record for the caller, with `expand` (batch answers).
pub fn answer(
    state: &AppState,
    coll: &CompiledCollection,
    data: Value,
    expand: &str,
    req: &RequestInfo,
) -> Result<Value, ApiError> {
    Ok(committed_value(
        state,
        coll,
        data,
        &ExpandTree::parse(expand).unwrap_or_default(),
        req,
    ))
}

/// Creates a record; the createRule must hold for the new record (else
/// 400). Its uploads are stored before it commits (see `core::files`).
pub async fn create(
    state: &AppState,
    coll: &Arc<CompiledCollection>,
    body: Map<String, Value>,
    uploads: Vec<Upload>,
    expand: &str,
    req: &RequestInfo,
) -> Result<RawJson, ApiError> {
    let tree = ExpandTree::parse(expand)?;
    let files = super::files::prepare(coll, uploads)?;
    let data = plan_create(state, coll, body, &files, req).await?;
    check_relations(state, coll, &data, &|_, _| None)?;
    let id = data.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
    let guard = auth_id_guard(state, coll, &id, &|_, _| None)?;
    let mut ops = vec![WriteOp::PutRecord {
        collection_id: coll.def.id.clone(),
        id: id.clone(),
        data,
        expect: Expect::Absent,
    }];
    ops.extend(guard);
    let staged = Staged::store(&state.storage, &coll.def.id, &id, &files).await?;
    match state.store.write(ops).await {
        Ok(results) => {
            staged.committed();
            committed_answer(state, coll, results, &tree, req)
        }
        Err(e) => {
            staged.failed().await;
            Err(e.into())
        }
    }
}

/// Updates a record (merge + modifiers, uploads); the updateRule is
/// checked on the stored record.
pub async fn update(
    state: &AppState,
    coll: &Arc<CompiledCollection>,
    id: &str,
    body: Map<String, Value>,
    uploads: Vec<Upload>,
    expand: &str,
    req: &RequestInfo,
) -> Result<RawJson, ApiError> {
    update_unsetting(state, coll, id, body, uploads, &[], expand, req).await
}

/// [`update`] that also removes the user fields named in `unset` before the
/// body is merged. A PATCH body can only replace values, but a form (the
/// dashboard's record editor) must be able to clear an optional field, so
/// "absent" stays expressible. System fields are never removed. The
/// updateRule sees the record with those fields already removed (only the
/// dashboard, as a superuser, calls this with a non-empty `unset`).
#[allow(clippy::too_many_arguments)]
pub async fn update_unsetting(
    state: &AppState,
    coll: &Arc<CompiledCollection>,
    id: &str,
    body: Map<String, Value>,
    uploads: Vec<Upload>,
    unset: &[String],
    expand: &str,
    req: &RequestInfo,
) -> Result<RawJson, ApiError> {
    if rules::access(&coll.rules.update, &req.caller) == Access::Locked {
        return Err(locked());
    }
    let tree = ExpandTree::parse(expand)?;
    if !crate::ids::is_valid_record_id(id) {
        return Err(ApiError::missing());
    }
    let files = super::files::prepare(coll, uploads)?;
    let plan = async || {
        let stored = state.store.get(&coll.def.id, id)?.ok_or_else(ApiError::missing)?;
        let mut current = stored.data;
        if let Some(doc) = current.as_object_mut() {
            for key in unset {
                if !crate::schema::record::is_system_field(key, coll.is_auth()) {
                    doc.remove(key);
                }
            }
        }
        let mut data = plan_update(state, coll, &current, body.clone(), &files, req).await?;
        check_relations(state, coll, &data, &|_, _| None)?;
        let unlinks = super::auth::verified_upgrade(state, coll, &current, &mut data)?;
        let op = WriteOp::PutRecord {
            collection_id: coll.def.id.clone(),
            id: id.to_owned(),
            data,
            expect: Expect::Rev(stored.rev),
        };
        Ok((std::iter::once(op).chain(unlinks).collect(), ()))
    };
    // Uploads are stored only for a write that would pass (record there,
    // updateRule, validation: planned once first), and outside the record's
    // lock: storing costs what the upload did, and the names are new.
    let staged = if files.0.is_empty() {
        Staged::none(&state.storage)
    } else {
        plan().await?;
        Staged::store(&state.storage, &coll.def.id, id, &files).await?
    };
    // Updates of one record through this server queue here; the revision
    // check below then only retries against other writers (batch, auth flows).
    let _turn = state.record_lock(&coll.def.id, id).lock().await;
    match replan::write(state, Replan::OnConflict, plan).await {
        Ok((results, ())) => {
            staged.committed();
            committed_answer(state, coll, results, &tree, req)
        }
        Err(e) => {
            staged.failed().await;
            Err(e)
        }
    }
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
    // A pointing record changed meanwhile: plan again.
    let plan = async || {
        let stored = state.store.get(&coll.def.id, id)?.ok_or_else(ApiError::missing)?;
        check_delete(state, coll, &stored.data, req)?;
        let mut ops = vec![WriteOp::DeleteRecord {
            collection_id: coll.def.id.clone(),
            id: id.to_owned(),
            expect: Expect::Rev(stored.rev),
        }];
        // Records pointing here lose the reference, or go too (cascade).
        ops.extend(super::references::on_delete_in_store(
            state,
            &[(coll.def.id.clone(), id.to_owned())],
        )?);
        Ok((ops, ()))
    };
    replan::write(state, Replan::OnConflict, plan).await?;
    Ok(())
}

/// What [`delete_many`] did.
#[derive(Debug, Default)]
pub struct DeleteOutcome {
    pub deleted: usize,
    /// Ids that were already gone.
    pub missing: usize,
    /// Ids the deleteRule (or the last-superuser guard) kept, with the reason.
    pub refused: Vec<(String, String)>,
}

/// Deletes several records of one collection in **one** store write (one
/// transaction, one fsync, one realtime event per record), each checked like
/// [`delete`]. Records already gone are counted, refused ones reported; a
/// record changed while planning makes the write re-plan. Callers keep
/// `ids` to a few hundred (bulk deletes go chunk by chunk).
pub async fn delete_many(
    state: &AppState,
    coll: &Arc<CompiledCollection>,
    ids: &[String],
    req: &RequestInfo,
) -> Result<DeleteOutcome, ApiError> {
    let plan = async || {
        let mut out = DeleteOutcome::default();
        let mut ops = Vec::with_capacity(ids.len());
        let superusers = coll.def.name == SUPERUSERS;
        for id in ids {
            let Some(stored) = state.store.get(&coll.def.id, id)? else {
                out.missing += 1;
                continue;
            };
            // `check_delete` looks at the stored count, which does not yet
            // include this write's other deletions.
            let last_superuser = superusers && state.store.count(&coll.def.id) <= ops.len() as u64 + 1;
            let checked = if last_superuser {
                Err(ApiError::bad_request("The last superuser cannot be deleted."))
            } else {
                check_delete(state, coll, &stored.data, req)
            };
            match checked {
                Ok(()) => ops.push(WriteOp::DeleteRecord {
                    collection_id: coll.def.id.clone(),
                    id: id.clone(),
                    expect: Expect::Rev(stored.rev),
                }),
                Err(e) => out.refused.push((id.clone(), e.message)),
            }
        }
        // Records pointing at these lose the reference or go too; a delete
        // a required relation blocks is refused alone, the rest go ahead.
        let root = |op: &WriteOp| match op {
            WriteOp::DeleteRecord { collection_id, id, .. } => (collection_id.clone(), id.clone()),
            _ => unreachable!("only deletes are planned here"),
        };
        let roots: Vec<(String, String)> = ops.iter().map(root).collect();
        let effects = match super::references::on_delete_in_store(state, &roots) {
            Ok(effects) => effects,
            Err(_) => {
                let mut keep = Vec::with_capacity(ops.len());
                for op in ops.drain(..) {
                    let r = root(&op);
                    match super::references::on_delete_in_store(state, std::slice::from_ref(&r)) {
                        Ok(_) => keep.push(op),
                        Err(e) => out.refused.push((r.1, e.message)),
                    }
                }
                ops = keep;
                let roots: Vec<(String, String)> = ops.iter().map(root).collect();
                super::references::on_delete_in_store(state, &roots)?
            }
        };
        out.deleted = ops.len();
        ops.extend(effects);
        Ok((ops, out))
    };
    let (_, out) = replan::write(state, Replan::OnConflictOrGone, plan).await?;
    Ok(out)
}

/// Creates or updates a superuser by email (the `superuser upsert` command).
pub async fn upsert_superuser(state: &AppState, email: &str, password_plain: &str) -> Result<RawJson, ApiError> {
    match find_superuser(state, email)? {
        Some(id) => set_superuser_password(state, &id, password_plain).await,
        None => create_superuser(state, email, password_plain).await,
    }
}

/// The `_superusers` collection and a root caller for writing it: the CLI
/// acts as the operator, above every rule (the last-superuser guard still
/// holds).
fn superusers_as_root(state: &AppState, method: &str) -> Result<(Arc<CompiledCollection>, RequestInfo), ApiError> {
    let coll = state
        .registry
        .get(SUPERUSERS)
        .ok_or_else(|| ApiError::internal("missing _superusers collection"))?;
    let caller = Caller::Auth {
        collection: coll.clone(),
        record: Value::Null,
        refreshable: false,
    };
    Ok((coll, RequestInfo::internal(caller, method, "default")))
}

/// The id of the superuser with `email` (case-insensitive, as the unique
/// email index compares), if there is one.
pub fn find_superuser(state: &AppState, email: &str) -> Result<Option<String>, ApiError> {
    let (coll, _) = superusers_as_root(state, "GET")?;
    let index = coll
        .spec
        .indexes
        .iter()
        .find(|i| i.name == "_sys_email")
        .ok_or_else(|| ApiError::internal("missing email index"))?;
    Ok(state
        .store
        .unique_lookup(&coll.def.id, index, &[&Value::String(email.into())])?)
}

/// Creates a superuser (the `superuser create` command). An address that is
/// taken is refused by the unique email index, in the same write, so two
/// concurrent creates cannot both succeed.
pub async fn create_superuser(state: &AppState, email: &str, password_plain: &str) -> Result<RawJson, ApiError> {
    let (coll, root) = superusers_as_root(state, "POST")?;
    let mut body = Map::new();
    body.insert("email".into(), Value::String(email.into()));
    body.insert("password".into(), Value::String(password_plain.into()));
    body.insert("passwordConfirm".into(), Value::String(password_plain.into()));
    body.insert("verified".into(), Value::Bool(true));
    create(state, &coll, body, Vec::new(), "", &root).await
}

/// Sets the password of the superuser `id` (the `superuser update` command).
pub async fn set_superuser_password(state: &AppState, id: &str, password_plain: &str) -> Result<RawJson, ApiError> {
    let (coll, root) = superusers_as_root(state, "PATCH")?;
    let mut body = Map::new();
    body.insert("password".into(), Value::String(password_plain.into()));
    body.insert("passwordConfirm".into(), Value::String(password_plain.into()));
    update(state, &coll, id, body, Vec::new(), "", &root).await
}

/// Deletes the superuser `id` (the `superuser delete` command); the last
/// one is kept, as the API keeps it.
pub async fn delete_superuser(state: &AppState, id: &str) -> Result<(), ApiError> {
    let (coll, root) = superusers_as_root(state, "DELETE")?;
    delete(state, &coll, id, &root).await
}
