//! [`JsonResolver`]: a ready-made [`Resolver`] over plain JSON, used for
//! realtime checks on already-loaded records and throughout the tests.

use crate::query::ast::{Identifier, Root};
use crate::query::eval::{Resolved, Resolver};
use serde_json::Value;

/// Resolves identifiers against JSON documents.
///
/// * `record` serves `Root::Record` paths.
/// * `request` is `{"auth": {..}|null, "body": {..}, "query": {..},
///   "headers": {..}, "method": "GET", "context": "default"}` and serves
///   `@request.*`. Header names are looked up verbatim; callers should store
///   them the PocketBase way (lowercase, `-` replaced by `_`).
/// * `@collection.*` always resolves to `Missing`: cross-collection lookups
///   need storage access, which this pure module does not have.
#[derive(Debug, Clone, Copy)]
pub struct JsonResolver<'a> {
    pub record: &'a Value,
    pub request: &'a Value,
    pub now_millis: i64,
}

impl Resolver for JsonResolver<'_> {
    fn resolve(&self, ident: &Identifier) -> Resolved {
        let (base, path): (Option<&Value>, &[String]) = match &ident.root {
            Root::Record => (Some(self.record), &ident.path),
            Root::RequestAuth => (self.request.get("auth"), &ident.path),
            Root::RequestBody => (self.request.get("body"), &ident.path),
            Root::RequestQuery => (self.request.get("query"), &ident.path),
            Root::RequestHeaders => (self.request.get("headers"), &ident.path),
            Root::RequestMethod => (self.request.get("method"), &[]),
            Root::RequestContext => (self.request.get("context"), &[]),
            Root::Collection { .. } | Root::Macro(_) => (None, &[]),
        };
        match base {
            Some(v) => walk(v, path),
            None => Resolved::Missing,
        }
    }

    fn now_millis(&self) -> i64 {
        self.now_millis
    }
}

/// Walks `path` from `root`.
///
/// * object + key → that member;
/// * array + numeric segment → that element;
/// * array + other segment → the member of every object element
///   ("fan-out", e.g. `authors.name` over an expanded multi-relation), which
///   makes the result multi-valued;
/// * anything else (a key on a string or number, a bad index) → nothing.
///
/// A walk that ends on an array yields `Many` of its items; a fanned-out walk
/// yields `Many` of everything collected (arrays flattened one level).
/// Iterative and linear in the size of the visited data.
pub fn walk(root: &Value, path: &[String]) -> Resolved {
    let mut current: Vec<&Value> = vec![root];
    let mut fanned = false;
    for seg in path {
        let index = seg.parse::<usize>().ok();
        let mut next = Vec::new();
        for v in current {
            match v {
                Value::Object(map) => next.extend(map.get(seg)),
                Value::Array(items) => match index {
                    Some(i) => next.extend(items.get(i)),
                    None => {
                        fanned = true;
                        next.extend(items.iter().filter_map(|item| item.get(seg.as_str())));
                    }
                },
                _ => {}
            }
        }
        current = next;
    }
    if fanned {
        let mut out = Vec::new();
        for v in current {
            match v {
                Value::Array(items) => out.extend(items.iter().cloned()),
                other => out.push(other.clone()),
            }
        }
        return Resolved::Many(out);
    }
    match current.as_slice() {
        [] => Resolved::Missing,
        [Value::Array(items)] => Resolved::Many(items.clone()),
        [single] => Resolved::One((*single).clone()),
        many => Resolved::Many(many.iter().map(|v| (*v).clone()).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> Vec<String> {
        s.split('.').map(str::to_string).collect()
    }

    #[test]
    fn walks_paths() {
        let doc = json!({
            "a": {"b": [10, 20]},
            "s": "text",
            "authors": [{"name": "x", "tags": ["t1"]}, {"name": "y", "tags": ["t2", "t3"]}, 5],
        });
        assert_eq!(walk(&doc, &p("a.b.1")), Resolved::One(json!(20)));
        assert_eq!(walk(&doc, &p("a.b")), Resolved::Many(vec![json!(10), json!(20)]));
        assert_eq!(walk(&doc, &p("a.b.7")), Resolved::Missing);
        assert_eq!(walk(&doc, &p("s.x")), Resolved::Missing);
        assert_eq!(walk(&doc, &p("s.0")), Resolved::Missing);
        assert_eq!(walk(&doc, &p("nope")), Resolved::Missing);
        assert_eq!(
            walk(&doc, &p("authors.name")),
            Resolved::Many(vec![json!("x"), json!("y")])
        );
        assert_eq!(
            walk(&doc, &p("authors.tags")),
            Resolved::Many(vec![json!("t1"), json!("t2"), json!("t3")])
        );
        assert_eq!(walk(&doc, &p("authors.zzz")), Resolved::Many(vec![]));
    }
}
