//! The in-memory cache of compiled collections.
//!
//! Validators are compiled once per collection change and shared as
//! `Arc<CompiledCollection>`: a request clones the `Arc` under a read lock
//! held for nanoseconds and then works lock-free. A std `RwLock` (not tokio's)
//! because the lock is never held across an `.await`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use jsonschema::Validator;
use serde_json::Value;

use super::{compile, Collection, CollectionType, SchemaError};
use crate::store::CollectionSpec;

/// A collection ready to serve: its definition, compiled validator and the
/// store's view of it.
pub struct CompiledCollection {
    pub def: Collection,
    pub validator: Validator,
    pub spec: Arc<CollectionSpec>,
    /// Top-level properties marked `x-hidden: true`: never shown to non-superusers.
    pub hidden: Vec<String>,
}

impl CompiledCollection {
    pub fn compile(def: Collection) -> Result<CompiledCollection, SchemaError> {
        def.check()?;
        let validator = compile::compile(&def.schema)?;
        let hidden = def
            .schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|props| {
                props
                    .iter()
                    .filter(|(_, p)| p.get("x-hidden").and_then(Value::as_bool) == Some(true))
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        let spec = Arc::new(CollectionSpec {
            id: def.id.clone(),
            name: def.name.clone(),
            indexes: def.index_defs(),
        });
        Ok(CompiledCollection {
            def,
            validator,
            spec,
            hidden,
        })
    }

    pub fn is_auth(&self) -> bool {
        self.def.kind == CollectionType::Auth
    }
}

#[derive(Default)]
struct Maps {
    by_name: HashMap<String, Arc<CompiledCollection>>,
    /// id → name
    ids: HashMap<String, String>,
}

/// Cheap-clone handle to the collection cache.
#[derive(Clone, Default)]
pub struct Registry {
    maps: Arc<RwLock<Maps>>,
}

impl Registry {
    /// Finds a collection by name or id (PocketBase accepts either in URLs).
    pub fn get(&self, name_or_id: &str) -> Option<Arc<CompiledCollection>> {
        let maps = self.maps.read().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = maps.by_name.get(name_or_id) {
            return Some(c.clone());
        }
        maps.ids
            .get(name_or_id)
            .and_then(|n| maps.by_name.get(n))
            .cloned()
    }

    /// All collections, system ones first, then by name.
    pub fn all(&self) -> Vec<Arc<CompiledCollection>> {
        let maps = self.maps.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = maps.by_name.values().cloned().collect();
        v.sort_by(|a, b| (!a.def.system, &a.def.name).cmp(&(!b.def.system, &b.def.name)));
        v
    }

    /// Inserts or replaces a collection (a rename drops the old name).
    pub fn put(&self, c: Arc<CompiledCollection>) {
        let mut maps = self.maps.write().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = maps.ids.insert(c.def.id.clone(), c.def.name.clone()) {
            maps.by_name.remove(&old);
        }
        maps.by_name.insert(c.def.name.clone(), c);
    }

    pub fn remove(&self, id: &str) {
        let mut maps = self.maps.write().unwrap_or_else(|e| e.into_inner());
        if let Some(name) = maps.ids.remove(id) {
            maps.by_name.remove(&name);
        }
    }
}
