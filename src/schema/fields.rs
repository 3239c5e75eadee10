//! `?fields=`: trims any JSON answer to the listed keys, as PocketBase does.
//!
//! `fields=id,title,expand.author.name` keeps those paths; `*` keeps every
//! key at its level (`expand.author.*`); `field:excerpt(n[,ellipsis])` keeps
//! a plain-text excerpt of a string. On a list answer the paths apply to each
//! item (the paging keys are always kept), everywhere else to the object.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::ApiError;

/// A parsed `fields` parameter.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FieldsTree {
    all: bool,
    excerpt: Option<(usize, bool)>,
    children: BTreeMap<String, FieldsTree>,
}

fn parse_excerpt(m: &str) -> Option<(usize, bool)> {
    let args = m.strip_prefix("excerpt(")?.strip_suffix(')')?;
    let mut parts = args.split(',').map(str::trim);
    let max = parts.next()?.parse::<usize>().ok()?;
    let ellipsis = match parts.next() {
        None => false,
        Some(b) => b.parse::<bool>().ok()?,
    };
    parts.next().is_none().then_some((max, ellipsis))
}

impl FieldsTree {
    pub fn parse(spec: &str) -> Result<FieldsTree, ApiError> {
        let mut root = FieldsTree::default();
        for item in split_top(spec) {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (path, modifier) = match item.split_once(':') {
                Some((p, m)) => (p, Some(m)),
                None => (item, None),
            };
            let bad = || {
                ApiError::field(
                    "fields",
                    "validation_invalid_fields",
                    &format!("Invalid fields entry '{item}'."),
                )
            };
            let mut node = &mut root;
            for seg in path.split('.') {
                if seg.is_empty() {
                    return Err(bad());
                }
                if seg == "*" {
                    node.all = true;
                    break;
                }
                node = node.children.entry(seg.to_owned()).or_default();
            }
            if let Some(m) = modifier {
                node.excerpt = Some(parse_excerpt(m).ok_or_else(bad)?);
            }
        }
        Ok(root)
    }

    pub fn is_empty(&self) -> bool {
        !self.all && self.children.is_empty()
    }

    /// Trims an answer (list-aware).
    pub fn apply_response(&self, v: &mut Value) {
        let is_list = v
            .as_object()
            .is_some_and(|o| o.contains_key("items") && o.contains_key("perPage"));
        if is_list {
            if let Some(Value::Array(items)) = v.get_mut("items") {
                for item in items {
                    self.apply(item);
                }
            }
            return;
        }
        if let Value::Array(items) = v {
            for item in items {
                self.apply(item);
            }
            return;
        }
        self.apply(v);
    }

    fn apply(&self, v: &mut Value) {
        if let Some((max, ellipsis)) = self.excerpt {
            if let Value::String(s) = v {
                *s = excerpt(s, max, ellipsis);
            }
            return;
        }
        if self.is_empty() {
            return;
        }
        match v {
            Value::Object(map) => {
                let old = std::mem::take(map);
                let mut kept = Map::new();
                for (k, mut child) in old {
                    match self.children.get(&k) {
                        Some(sub) => {
                            sub.apply(&mut child);
                            kept.insert(k, child);
                        }
                        None if self.all => {
                            kept.insert(k, child);
                        }
                        None => {}
                    }
                }
                *map = kept;
            }
            Value::Array(items) => {
                for item in items {
                    self.apply(item);
                }
            }
            _ => {}
        }
    }
}

/// Splits on commas outside parentheses (`title:excerpt(10,true),id`).
fn split_top(spec: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in spec.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth <= 0 => {
                out.push(&spec[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&spec[start..]);
    out
}

/// The first `max` characters of `s` with HTML tags removed and whitespace
/// collapsed, plus `...` when cut and `ellipsis` is set.
fn excerpt(s: &str, max: usize, ellipsis: bool) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    let mut last_space = true;
    for c in s.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if in_tag => {}
            c if c.is_whitespace() => {
                if !last_space {
                    text.push(' ');
                    last_space = true;
                }
            }
            c => {
                text.push(c);
                last_space = false;
            }
        }
    }
    let text = text.trim();
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max).collect();
    if ellipsis {
        cut.push_str("...");
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn trims_objects_lists_and_excerpts() {
        let t = FieldsTree::parse("id,expand.author.name,body:excerpt(5,true)").unwrap();
        let mut v = json!({"id": "1", "title": "x", "body": "<p>Hello   world</p>", "expand": {"author": {"name": "n", "age": 3}, "other": {}}});
        t.apply_response(&mut v);
        assert_eq!(
            v,
            json!({"id": "1", "body": "Hello...", "expand": {"author": {"name": "n"}}})
        );
        let mut list =
            json!({"page": 1, "perPage": 2, "totalItems": 1, "totalPages": 1, "items": [{"id": "a", "title": "t"}]});
        FieldsTree::parse("title").unwrap().apply_response(&mut list);
        assert_eq!(list["items"], json!([{"title": "t"}]));
        assert_eq!(list["page"], 1);
        let mut star = json!({"a": 1, "expand": {"x": {"p": 1, "q": 2}}});
        FieldsTree::parse("expand.x.*").unwrap().apply_response(&mut star);
        assert_eq!(star, json!({"expand": {"x": {"p": 1, "q": 2}}}));
        assert!(FieldsTree::parse("a..b").is_err());
        assert!(FieldsTree::parse("a:excerpt(x)").is_err());
    }
}
