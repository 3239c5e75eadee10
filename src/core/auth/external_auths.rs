//! `_externalAuths`: the links between an OAuth2 provider's account and an
//! auth record, PocketBase's system collection of the same name and shape
//! (`collectionRef`, `recordRef`, `provider`, `providerId`). It is an
//! ordinary collection to the records API: its owner may list, view and
//! delete (unlink) their own links, nobody but a superuser may create or
//! change one (`auth-with-oauth2` writes them). Deleting a user removes
//! its links in the same write (see [`unlink_deleted`]).

use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::schema::{Collection, CollectionType, CompiledCollection, Registry};
use crate::state::AppState;
use crate::store::{Expect, Store, StoreError, WriteOp};

/// The collection's name (PocketBase's).
pub const EXTERNAL_AUTHS: &str = "_externalAuths";
/// Unique: one link per provider account and auth collection.
const BY_ACCOUNT: &str = "idx_externalAuths_account";
/// The links of one record (unlinking on delete).
const BY_RECORD: &str = "idx_externalAuths_record";

fn definition() -> Collection {
    let owner = Some(
        "@request.auth.id != '' && recordRef = @request.auth.id && collectionRef = @request.auth.collectionId"
            .to_owned(),
    );
    let text = json!({"type": "string", "minLength": 1, "maxLength": 255});
    let body = json!({
        "name": EXTERNAL_AUTHS, "type": "base",
        "schema": {"type": "object",
                   "properties": {"collectionRef": text, "recordRef": text, "provider": text, "providerId": text},
                   "required": ["collectionRef", "recordRef", "provider", "providerId"],
                   "additionalProperties": false},
        "indexes": [
            {"name": BY_ACCOUNT, "fields": ["collectionRef", "provider", "providerId"], "unique": true},
            {"name": BY_RECORD, "fields": ["recordRef", "collectionRef"]},
        ],
        "listRule": owner, "viewRule": owner, "deleteRule": owner,
        "createRule": null, "updateRule": null,
    });
    let Value::Object(body) = body else { unreachable!() };
    let now = crate::clock::now_string();
    let mut c = Collection::from_create(body, crate::ids::collection_id(), now).expect("_externalAuths is valid");
    c.system = true;
    c
}

/// Creates `_externalAuths` in a store that does not have it yet (first
/// start, or a data dir from before OAuth2), before the registry's specs
/// are handed to the store.
pub async fn ensure_collection(store: &Store, registry: &Registry) -> Result<(), StoreError> {
    if registry.get(EXTERNAL_AUTHS).is_some() {
        return Ok(());
    }
    let def = definition();
    let value = serde_json::to_value(&def).expect("serialize collection");
    let compiled = CompiledCollection::compile(def).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    store
        .write(vec![WriteOp::PutCollection {
            spec: compiled.spec.clone(),
            def: value,
        }])
        .await
        .map_err(|e| StoreError::Io(e.to_string()))?;
    registry.put(Arc::new(compiled));
    Ok(())
}

fn links(state: &AppState) -> Result<Arc<CompiledCollection>, ApiError> {
    state
        .registry
        .get(EXTERNAL_AUTHS)
        .ok_or_else(|| ApiError::internal("the _externalAuths collection is missing"))
}

/// A stored link: its id and revision, and the record it points at.
pub(super) struct Link {
    pub id: String,
    pub rev: u64,
    pub record_id: String,
}

/// The link of `provider`'s account `provider_id` into `collection`.
pub(super) fn find(
    state: &AppState,
    collection: &CompiledCollection,
    provider: &str,
    provider_id: &str,
) -> Result<Option<Link>, ApiError> {
    let coll = links(state)?;
    let Some(index) = coll.spec.indexes.iter().find(|i| i.name == BY_ACCOUNT) else {
        return Ok(None);
    };
    let key = [
        Value::String(collection.def.id.clone()),
        Value::String(provider.to_owned()),
        Value::String(provider_id.to_owned()),
    ];
    let Some(id) = state
        .store
        .unique_lookup(&coll.def.id, index, &[&key[0], &key[1], &key[2]])?
    else {
        return Ok(None);
    };
    Ok(state.store.get(&coll.def.id, &id)?.map(|r| Link {
        id,
        rev: r.rev,
        record_id: r
            .data
            .get("recordRef")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    }))
}

/// The op that creates a link of `record_id` (of `collection`).
pub(super) fn create_op(
    state: &AppState,
    collection: &CompiledCollection,
    record_id: &str,
    provider: &str,
    provider_id: &str,
) -> Result<WriteOp, ApiError> {
    let coll = links(state)?;
    let now = crate::clock::now_string();
    let id = crate::ids::record_id();
    let mut data = Map::new();
    data.insert("id".into(), json!(id));
    data.insert("collectionRef".into(), json!(collection.def.id));
    data.insert("recordRef".into(), json!(record_id));
    data.insert("provider".into(), json!(provider));
    data.insert("providerId".into(), json!(provider_id));
    data.insert("created".into(), json!(now));
    data.insert("updated".into(), json!(now));
    Ok(WriteOp::PutRecord {
        collection_id: coll.def.id.clone(),
        id,
        data: Value::Object(data),
        expect: Expect::Absent,
    })
}

/// Ids and revisions of the links of record `record_id` of collection `cid`.
fn of_record(
    state: &AppState,
    coll: &CompiledCollection,
    cid: &str,
    record_id: &str,
) -> Result<Vec<(String, u64)>, ApiError> {
    let Some(index) = coll.spec.indexes.iter().find(|i| i.name == BY_RECORD) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for id in crate::core::references::ids_by_index_value(state, coll, index, record_id)? {
        if let Some(r) = state.store.get(&coll.def.id, &id)? {
            if r.data.get("collectionRef").and_then(Value::as_str) == Some(cid) {
                out.push((id, r.rev));
            }
        }
    }
    Ok(out)
}

/// The links of record `record_id` of `collection` (`_externalAuths`
/// records, oldest first), for the dashboard's record page.
pub fn linked(state: &AppState, collection: &CompiledCollection, record_id: &str) -> Result<Vec<Value>, ApiError> {
    let coll = links(state)?;
    let mut out = Vec::new();
    for (id, _) in of_record(state, &coll, &collection.def.id, record_id)? {
        if let Some(r) = state.store.get(&coll.def.id, &id)? {
            out.push(r.data);
        }
    }
    out.sort_by(|a, b| {
        a.get("created")
            .and_then(Value::as_str)
            .cmp(&b.get("created").and_then(Value::as_str))
    });
    Ok(out)
}

/// Removes the link `link_id` of record `record_id` of `collection` (the
/// dashboard's unlink), through the records API's delete as `req`'s
/// caller; false when there is no such link of that record.
pub async fn unlink(
    state: &AppState,
    collection: &CompiledCollection,
    record_id: &str,
    link_id: &str,
    req: &crate::rules::RequestInfo,
) -> Result<bool, ApiError> {
    let coll = links(state)?;
    let owned = of_record(state, &coll, &collection.def.id, record_id)?
        .iter()
        .any(|(id, _)| id == link_id);
    if !owned {
        return Ok(false);
    }
    crate::core::records::delete(state, &coll, link_id, req).await?;
    Ok(true)
}

/// The ops that delete every link of record `record_id` of `collection`.
pub(super) fn delete_all_ops(
    state: &AppState,
    collection: &CompiledCollection,
    record_id: &str,
) -> Result<Vec<WriteOp>, ApiError> {
    let coll = links(state)?;
    Ok(of_record(state, &coll, &collection.def.id, record_id)?
        .into_iter()
        .map(|(id, rev)| WriteOp::DeleteRecord {
            collection_id: coll.def.id.clone(),
            id,
            expect: Expect::Rev(rev),
        })
        .collect())
}

/// What a write that makes an auth record verified must also do, as
/// PocketBase: remove every provider link the record had while unverified
/// (and rotate its `tokenKey` when there were any), in the same write.
/// Without this, an attacker who registered the address first and linked
/// their own provider account (pre-hijacking) keeps signing in through
/// that link after the owner claims the account by a password reset, a
/// verification mail, an OTP or a superuser's edit. `old` is the stored
/// record, `new` the one about to be written; every update path calls this.
pub fn verified_upgrade(
    state: &AppState,
    collection: &CompiledCollection,
    old: &Value,
    new: &mut Value,
) -> Result<Vec<WriteOp>, ApiError> {
    let verified = |r: &Value| r.get("verified").and_then(Value::as_bool) == Some(true);
    if collection.def.kind != crate::schema::CollectionType::Auth || verified(old) || !verified(new) {
        return Ok(Vec::new());
    }
    let id = new.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
    let ops = delete_all_ops(state, collection, &id)?;
    if !ops.is_empty() {
        new["tokenKey"] = Value::String(crate::ids::token_key());
    }
    Ok(ops)
}

/// The ops that delete the links of the deleted records `deleted`
/// (collection id, record id) that are auth records: a user that is gone
/// keeps no provider account pointing at its id.
pub fn unlink_deleted(state: &AppState, deleted: &[(String, String)]) -> Result<Vec<WriteOp>, ApiError> {
    let Some(coll) = state.registry.get(EXTERNAL_AUTHS) else {
        return Ok(Vec::new());
    };
    let mut ops = Vec::new();
    for (cid, rid) in deleted {
        let is_auth = state
            .registry
            .get(cid)
            .is_some_and(|c| c.def.kind == CollectionType::Auth && c.def.id == *cid);
        if !is_auth {
            continue;
        }
        for (id, rev) in of_record(state, &coll, cid, rid)? {
            ops.push(WriteOp::DeleteRecord {
                collection_id: coll.def.id.clone(),
                id,
                expect: Expect::Rev(rev),
            });
        }
    }
    Ok(ops)
}
