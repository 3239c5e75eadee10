//! Secondary index entries: how a record maps to keys in an index tree.
//!
//! Key = the order-preserving encoding of the indexed values (see
//! [`crate::query::encode_key`]), so a forward scan of the tree is a sort by those
//! fields. The value is always the record id.
//!
//! - Non-unique index: key = `values ++ encoded id` (ties ordered by id, in
//!   the last field's direction).
//! - Unique index: key = `values`, so "is this taken?" is one point lookup.
//!   As with SQL unique indexes, "no value" does not clash: when any indexed
//!   value is null, missing or the empty string, the entry is stored as
//!   `values ++ id` and not checked for uniqueness (PocketBase's email index is
//!   `WHERE email != ''` for the same reason).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::query::encode_value;

/// One indexed field: a dotted path, descending when `desc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexField {
    pub path: Vec<String>,
    pub desc: bool,
}

/// An index definition as the store maintains it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexDef {
    pub name: String,
    pub unique: bool,
    pub fields: Vec<IndexField>,
    /// Compare strings case-insensitively (the auth `email` index).
    pub lowercase: bool,
}

static NULL: Value = Value::Null;

/// Follows a dotted path into a JSON document (numeric segments index arrays).
pub fn lookup<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = doc;
    for seg in path {
        cur = match cur {
            Value::Object(m) => m.get(seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

impl IndexDef {
    /// The sled tree holding this index for `collection_id`. The name carries
    /// a hash of the definition, so changing an index under the same name
    /// writes a fresh tree (the old one is dropped after the change commits).
    pub fn tree(&self, collection_id: &str) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        eat(&[u8::from(self.unique), u8::from(self.lowercase)]);
        for f in &self.fields {
            eat(&[u8::from(f.desc)]);
            for seg in &f.path {
                eat(seg.as_bytes());
                eat(&[0]);
            }
            eat(&[1]);
        }
        format!("idx/{collection_id}/{}-{:08x}", self.name, h as u32)
    }

    fn encode(&self, values: &[&Value]) -> (Vec<u8>, bool) {
        let mut key = Vec::with_capacity(32);
        let mut has_null = false;
        for (field, v) in self.fields.iter().zip(values) {
            has_null |= matches!(v, Value::Null) || v.as_str() == Some("");
            if self.lowercase {
                if let Value::String(s) = v {
                    encode_value(&mut key, &Value::String(s.to_lowercase()), field.desc);
                    continue;
                }
            }
            encode_value(&mut key, v, field.desc);
        }
        (key, has_null)
    }

    /// The exact key a unique lookup of `values` probes.
    pub fn key_of_values(&self, values: &[&Value]) -> Vec<u8> {
        self.encode(values).0
    }

    /// The values this index holds for `record`.
    pub fn values_of<'a>(&self, record: &'a Value) -> Vec<&'a Value> {
        self.fields
            .iter()
            .map(|f| lookup(record, &f.path).unwrap_or(&NULL))
            .collect()
    }

    /// The tree entry for `record`, and whether it must be unique.
    pub fn entry(&self, id: &str, record: &Value) -> (Vec<u8>, bool) {
        let (mut key, has_null) = self.encode(&self.values_of(record));
        let check_unique = self.unique && !has_null;
        if !check_unique {
            // The id suffix is encoded in the last field's direction so ties
            // come out in the same order `query::compare_records` uses.
            let desc = self.fields.last().is_some_and(|f| f.desc);
            encode_value(&mut key, &Value::String(id.to_owned()), desc);
        }
        (key, check_unique)
    }
}

/// The record id an index entry points to.
pub fn id_of_entry(_unique: bool, _key: &[u8], value: &[u8]) -> String {
    String::from_utf8_lossy(value).into_owned()
}
