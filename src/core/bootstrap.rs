//! First-start setup: the server secret and the default collections.

use std::sync::Arc;

use rand::RngCore;
use serde_json::{json, Value};

use crate::clock::now_string;
use crate::ids;
use crate::schema::{Collection, CompiledCollection, Registry};
use crate::store::{meta, Store, StoreError, WriteOp};

/// Loads (creating on first start) the per-install token signing secret.
pub fn secret(store: &Store) -> Result<Vec<u8>, StoreError> {
    if let Some(s) = store.meta_get(meta::SECRET)? {
        return Ok(s);
    }
    let mut fresh = vec![0u8; 32];
    rand::thread_rng().fill_bytes(&mut fresh);
    store.meta_init(meta::SECRET, &fresh)
}

fn default_collections() -> Vec<Collection> {
    let now = now_string();
    let owner = Some("id = @request.auth.id".to_owned());
    let superusers = json!({
        "name": "_superusers", "type": "auth",
        "schema": {"type": "object", "properties": {}, "additionalProperties": false},
    });
    let users = json!({
        "name": "users", "type": "auth",
        "schema": {"type": "object",
                   "properties": {"name": {"type": "string", "maxLength": 255}},
                   "additionalProperties": false},
        "createRule": "",
        "listRule": owner, "viewRule": owner, "updateRule": owner, "deleteRule": owner,
    });
    let mut out = Vec::new();
    for (body, system) in [(superusers, true), (users, false)] {
        let Value::Object(body) = body else { unreachable!() };
        let mut c =
            Collection::from_create(body, ids::collection_id(), now.clone()).expect("default collection is valid");
        c.system = system;
        out.push(c);
    }
    out
}

/// Loads every collection into a registry; on the very first start, creates
/// `_superusers` and `users` (a `users` deleted later is not recreated).
pub async fn load_collections(store: &Store) -> Result<Registry, StoreError> {
    if store.meta_get(meta::BOOTSTRAPPED)?.is_none() {
        let mut ops = Vec::new();
        for c in default_collections() {
            let def = serde_json::to_value(&c).expect("serialize collection");
            let compiled = CompiledCollection::compile(c).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            ops.push(WriteOp::PutCollection {
                spec: compiled.spec.clone(),
                def,
            });
        }
        ops.push(WriteOp::PutMeta {
            key: meta::BOOTSTRAPPED.into(),
            value: Some(b"1".to_vec()),
        });
        store.write(ops).await.map_err(|e| StoreError::Io(e.to_string()))?;
    }
    let registry = Registry::default();
    for raw in store.collections()? {
        let def: Collection =
            serde_json::from_value(raw).map_err(|e| StoreError::Corrupt(format!("collection: {e}")))?;
        let name = def.name.clone();
        let compiled = CompiledCollection::compile(def)
            .map_err(|e| StoreError::Corrupt(format!("collection {name} no longer compiles: {e}")))?;
        registry.put(Arc::new(compiled));
    }
    crate::core::auth::ensure_external_auths(store, &registry).await?;
    store
        .set_specs(
            registry.all().iter().map(|c| c.spec.clone()).collect(),
            Arc::new(crate::schema::stored_spec),
        )
        .await
        .map_err(|e| StoreError::Io(e.to_string()))?;
    Ok(registry)
}
