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
    /// The primary index (record ids in order, the records tree itself):
    /// what the planner falls back to and what an index build walks.
    pub fn primary() -> IndexDef {
        IndexDef {
            name: super::PRIMARY_INDEX.into(),
            unique: true,
            fields: vec![IndexField {
                path: vec!["id".into()],
                desc: false,
            }],
            lowercase: false,
        }
    }

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

/// The current index key format: 2 since integers beyond 2^53 are exact
/// (keys of numbers of magnitude 2^53 or more gained an offset; see
/// `query::keys`). Format 1 (no `keyformat` in `meta`) stored every number
/// as one `f64`.
pub const KEY_FORMAT: u64 = 2;

/// Brings the index trees of a data dir written with key format 1 to the
/// current format, before the writer starts. Only trees holding a key that
/// changed (a number of magnitude 2^53 or more) need it, which is rare: each
/// is emptied and gets an unfinished-build marker (`idxbuild/<collection
/// id>/<index>`, `meta::index_build`), so the server
/// rebuilds it in the background at start, with progress, like a new index
/// (not used by the planner meanwhile). Every other key is byte-identical in
/// both formats and stays. Crash-safe: the markers are durable before any
/// tree is emptied, and the format is recorded last, so an interrupted run
/// just runs again. Returns how many index trees were reset.
pub(crate) fn migrate_key_format(db: &sled::Db, meta: &sled::Tree) -> Result<usize, sled::Error> {
    let current = meta
        .get(super::meta::KEY_FORMAT)?
        .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
        .unwrap_or(1);
    if current >= KEY_FORMAT {
        return Ok(0);
    }
    let mut stale = Vec::new();
    for name in db.tree_names() {
        let Some((collection_id, index)) = parse_tree_name(&name) else {
            continue;
        };
        let tree = db.open_tree(&name)?;
        let mut rebuild = false;
        for key in tree.iter().keys() {
            if crate::query::legacy_key_needs_rebuild(&key?) {
                rebuild = true;
                break;
            }
        }
        if rebuild {
            stale.push((tree, collection_id, index));
        }
    }
    for (_, collection_id, index) in &stale {
        meta.insert(super::meta::index_build(collection_id, index), b"1".as_slice())?;
    }
    db.flush()?;
    for (tree, collection_id, index) in &stale {
        tracing::info!(
            collection = %collection_id,
            index = %index,
            "index keys of integers beyond 2^53 changed format: the index is rebuilt"
        );
        tree.clear()?;
    }
    meta.insert(super::meta::KEY_FORMAT, KEY_FORMAT.to_be_bytes().as_slice())?;
    db.flush()?;
    Ok(stale.len())
}

/// `idx/<collection id>/<index name>-<8 hex digits>` (see [`IndexDef::tree`])
/// → `(collection id, index name)`.
fn parse_tree_name(name: &[u8]) -> Option<(String, String)> {
    let name = std::str::from_utf8(name).ok()?;
    let (collection_id, rest) = name.strip_prefix("idx/")?.split_once('/')?;
    let (index, hash) = rest.rsplit_once('-')?;
    (hash.len() == 8 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| (collection_id.to_owned(), index.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A first-format number component: `04` + the sign-flipped `f64`.
    fn legacy_number(f: f64) -> Vec<u8> {
        let bits = f.to_bits();
        let flipped = if bits >> 63 == 1 { !bits } else { bits | (1 << 63) };
        let mut out = vec![crate::query::TAG_NUMBER];
        out.extend_from_slice(&flipped.to_be_bytes());
        out
    }

    #[test]
    fn migrates_only_trees_whose_keys_changed() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let db = sled::Config::new()
            .path(dir.path())
            .open()
            .unwrap_or_else(|e| panic!("{e}"));
        let meta = db.open_tree("meta").unwrap_or_else(|e| panic!("{e}"));
        let def = |name: &str| IndexDef {
            name: name.into(),
            unique: false,
            fields: vec![IndexField {
                path: vec!["n".into()],
                desc: false,
            }],
            lowercase: false,
        };
        let (small, wide) = (def("by-small"), def("by_wide"));
        let small_tree = db.open_tree(small.tree("c1")).unwrap_or_else(|e| panic!("{e}"));
        let wide_tree = db.open_tree(wide.tree("c1")).unwrap_or_else(|e| panic!("{e}"));
        // Format 1 wrote `42` as today; 2^60 as 9 bytes (now 11).
        let (k42, _) = small.entry("r1", &json!({"n": 42}));
        small_tree
            .insert(&k42, b"r1".as_slice())
            .unwrap_or_else(|e| panic!("{e}"));
        let mut old_wide = legacy_number(2f64.powi(60));
        crate::query::encode_value(&mut old_wide, &json!("r2"), false);
        wide_tree
            .insert(&old_wide, b"r2".as_slice())
            .unwrap_or_else(|e| panic!("{e}"));
        wide_tree
            .insert(&k42, b"r1".as_slice())
            .unwrap_or_else(|e| panic!("{e}"));

        assert_eq!(migrate_key_format(&db, &meta).ok(), Some(1));
        assert_eq!(small_tree.len(), 1, "unchanged keys stay");
        assert!(
            wide_tree.is_empty(),
            "a tree with changed keys is emptied for its rebuild"
        );
        assert!(meta.get("idxbuild/c1/by_wide").ok().flatten().is_some());
        assert!(meta.get("idxbuild/c1/by-small").ok().flatten().is_none());
        // Done once: a new-format wide key is not taken for an old one.
        let (k_new, _) = wide.entry("r2", &json!({"n": 1u64 << 60}));
        wide_tree
            .insert(&k_new, b"r2".as_slice())
            .unwrap_or_else(|e| panic!("{e}"));
        meta.remove("idxbuild/c1/by_wide").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(migrate_key_format(&db, &meta).ok(), Some(0));
        assert_eq!(wide_tree.len(), 1);
        assert_eq!(
            parse_tree_name(b"idx/c1/a-b-0123abcd"),
            Some(("c1".into(), "a-b".into()))
        );
        assert_eq!(parse_tree_name(b"rec/c1"), None);
    }
}
