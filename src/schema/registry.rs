//! The in-memory cache of compiled collections.
//!
//! Validators and rules are compiled once per collection change and shared as
//! `Arc<CompiledCollection>`: a request clones the `Arc` under a read lock
//! held for nanoseconds and then works lock-free. A std `RwLock` (not tokio's)
//! because the lock is never held across an `.await`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use jsonschema::Validator;
use serde_json::Value;

use super::{compile, Collection, CollectionType, SchemaError};
use crate::query::{parse_filter, Filter};
use crate::store::CollectionSpec;

/// A field holding record ids of another collection (`x-relation`).
#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    /// Target collection name or id.
    pub collection: String,
    /// An array of ids rather than one id.
    pub multiple: bool,
    /// Deleting the target deletes the referencing record too.
    pub cascade_delete: bool,
}

/// A collection's rules, parsed. `None` = locked (superusers only);
/// an empty filter = anyone.
#[derive(Debug, Clone, Default)]
pub struct CompiledRules {
    pub list: Option<Filter>,
    pub view: Option<Filter>,
    pub create: Option<Filter>,
    pub update: Option<Filter>,
    pub delete: Option<Filter>,
    pub auth: Option<Filter>,
    pub manage: Option<Filter>,
}

/// A collection ready to serve: its definition, compiled validator and
/// rules, and the store's view of it.
pub struct CompiledCollection {
    pub def: Collection,
    pub validator: Validator,
    pub rules: CompiledRules,
    pub spec: Arc<CollectionSpec>,
    /// Top-level properties marked `x-hidden: true`: never shown to non-superusers.
    pub hidden: Vec<String>,
    /// Top-level properties with `x-relation`.
    pub relations: HashMap<String, Relation>,
    /// Top-level properties with `x-file` (few: a list, in schema order).
    pub files: Vec<(String, super::files::FileSpec)>,
    /// `{"collectionId":"…","collectionName":"…"` — the prefix every exported
    /// record starts with (see `record::export_raw`).
    pub export_prefix: String,
}

fn compile_rule(field: &str, rule: &Option<String>) -> Result<Option<Filter>, SchemaError> {
    match rule {
        None => Ok(None),
        Some(text) => parse_filter(text).map(Some).map_err(|e| SchemaError::Invalid {
            field: field.to_owned(),
            code: "validation_invalid_rule".into(),
            message: e.to_string(),
        }),
    }
}

fn relation_of(prop: &Value) -> Result<Option<Relation>, String> {
    let Some(rel) = prop.get("x-relation") else {
        return Ok(None);
    };
    let collection = rel
        .get("collection")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or("x-relation needs {\"collection\": \"<name or id>\"}")?;
    let multiple = prop.get("type").and_then(Value::as_str) == Some("array");
    let single = prop.get("type").and_then(Value::as_str) == Some("string");
    if !multiple && !single {
        return Err("a property with x-relation must be {\"type\":\"string\"} or {\"type\":\"array\",\"items\":{\"type\":\"string\"}}".into());
    }
    Ok(Some(Relation {
        collection: collection.to_owned(),
        multiple,
        cascade_delete: rel.get("cascadeDelete").and_then(Value::as_bool).unwrap_or(false),
    }))
}

impl CompiledCollection {
    pub fn compile(def: Collection) -> Result<CompiledCollection, SchemaError> {
        def.check()?;
        let validator = compile::compile(&def.schema)?;
        let rules = CompiledRules {
            list: compile_rule("listRule", &def.list_rule)?,
            view: compile_rule("viewRule", &def.view_rule)?,
            create: compile_rule("createRule", &def.create_rule)?,
            update: compile_rule("updateRule", &def.update_rule)?,
            delete: compile_rule("deleteRule", &def.delete_rule)?,
            auth: compile_rule("authRule", &def.auth_rule)?,
            manage: compile_rule("manageRule", &def.manage_rule)?,
        };
        let mut hidden = Vec::new();
        let mut relations = HashMap::new();
        let mut files = Vec::new();
        let required: Vec<&str> = def
            .schema
            .get("required")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(props) = def.schema.get("properties").and_then(Value::as_object) {
            for (name, prop) in props {
                match super::files::file_spec(prop, required.contains(&name.as_str())) {
                    Ok(Some(spec)) if prop.get("x-relation").is_some() => {
                        let _ = spec;
                        return Err(SchemaError::Invalid {
                            field: "schema".into(),
                            code: "validation_invalid_file".into(),
                            message: format!("property '{name}': a property cannot hold both x-file and x-relation"),
                        });
                    }
                    Ok(Some(spec)) => files.push((name.clone(), spec)),
                    Ok(None) => {}
                    Err(message) => {
                        return Err(SchemaError::Invalid {
                            field: "schema".into(),
                            code: "validation_invalid_file".into(),
                            message: format!("property '{name}': {message}"),
                        })
                    }
                }
                if prop.get("x-hidden").and_then(Value::as_bool) == Some(true) {
                    hidden.push(name.clone());
                }
                match relation_of(prop) {
                    Ok(Some(rel)) => {
                        relations.insert(name.clone(), rel);
                    }
                    Ok(None) => {}
                    Err(message) => {
                        return Err(SchemaError::Invalid {
                            field: "schema".into(),
                            code: "validation_invalid_relation".into(),
                            message: format!("property '{name}': {message}"),
                        })
                    }
                }
            }
        }
        let spec = Arc::new(CollectionSpec {
            id: def.id.clone(),
            name: def.name.clone(),
            indexes: def.index_defs(),
        });
        let export_prefix = format!(
            "{{\"collectionId\":{},\"collectionName\":{}",
            serde_json::to_string(&def.id).expect("serialize string"),
            serde_json::to_string(&def.name).expect("serialize string")
        );
        Ok(CompiledCollection {
            def,
            validator,
            rules,
            spec,
            hidden,
            relations,
            files,
            export_prefix,
        })
    }

    /// The options of file field `name`, if it is one.
    pub fn file_field(&self, name: &str) -> Option<&super::files::FileSpec> {
        self.files.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }

    pub fn is_auth(&self) -> bool {
        self.def.kind == CollectionType::Auth
    }

    /// Whether stored records can be shown as they are (no secrets, hidden
    /// fields or emails to strip), so answers can splice the stored bytes.
    pub fn exports_verbatim(&self) -> bool {
        !self.is_auth() && self.hidden.is_empty()
    }
}

/// A stored collection definition's index set, as [`CompiledCollection`]
/// has it, without compiling its validator and rules: the writer reloads
/// index sets with this when another node changed collections.
pub fn stored_spec(raw: &[u8]) -> Result<Arc<CollectionSpec>, String> {
    let def: Collection = serde_json::from_slice(raw).map_err(|e| format!("a stored collection: {e}"))?;
    Ok(Arc::new(CollectionSpec {
        indexes: def.index_defs(),
        id: def.id,
        name: def.name,
    }))
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
        maps.ids.get(name_or_id).and_then(|n| maps.by_name.get(n)).cloned()
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

    /// Replaces the whole cache by `all` (a reload after another node
    /// changed collections).
    pub fn replace_all(&self, all: Vec<Arc<CompiledCollection>>) {
        let mut maps = Maps::default();
        for c in all {
            maps.ids.insert(c.def.id.clone(), c.def.name.clone());
            maps.by_name.insert(c.def.name.clone(), c);
        }
        *self.maps.write().unwrap_or_else(|e| e.into_inner()) = maps;
    }

    pub fn remove(&self, id: &str) {
        let mut maps = self.maps.write().unwrap_or_else(|e| e.into_inner());
        if let Some(name) = maps.ids.remove(id) {
            maps.by_name.remove(&name);
        }
    }
}

impl CompiledCollection {
    /// Whether values at `path` can never be arrays (so an index on it answers
    /// `=`/range terms exactly, see `query::planner`). System fields are
    /// scalar; user fields must declare a `type` without `"array"`, through
    /// object-typed parents.
    pub fn is_scalar_path(&self, path: &[String]) -> bool {
        let [first, rest @ ..] = path else { return false };
        if rest.is_empty()
            && (matches!(first.as_str(), "id" | "created" | "updated")
                || (self.is_auth() && matches!(first.as_str(), "email" | "verified" | "emailVisibility")))
        {
            return true;
        }
        let mut node = &self.def.schema;
        for (i, seg) in path.iter().enumerate() {
            let Some(prop) = node.get("properties").and_then(|p| p.get(seg)) else {
                return false;
            };
            let types: Vec<&str> = match prop.get("type") {
                Some(Value::String(t)) => vec![t.as_str()],
                Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
                _ => return false,
            };
            if i + 1 < path.len() {
                if types != ["object"] {
                    return false;
                }
                node = prop;
            } else {
                return !types.is_empty() && !types.contains(&"array");
            }
        }
        false
    }
}
