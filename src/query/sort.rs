//! `?sort=` parsing, the total order on JSON values, and record comparison.
//!
//! One total order ([`compare_json`]) is shared by in-memory sorting and by
//! the index key encoding in `keys.rs`, so a list sorted in memory and a
//! list read from an index come out identical.

use crate::query::ident::parse_path;
use crate::query::lexer::is_ident_start;
use crate::query::QueryError;
use serde_json::{Number, Value};
use std::cmp::Ordering;

/// Most sort keys accepted in one `?sort=` value.
pub const MAX_SORT_KEYS: usize = 8;
/// Longest accepted sort string, in characters (same cap as filters).
pub const MAX_SORT_CHARS: usize = 3500;

/// One `?sort=` component: a record field path and its direction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SortKey {
    pub path: Vec<String>,
    pub desc: bool,
}

fn err(position: usize, message: impl Into<String>) -> QueryError {
    QueryError {
        position,
        message: message.into(),
    }
}

/// Parses `-created,+title,author.name`. A leading `-` sorts descending, `+`
/// (or nothing) ascending. The empty string means "no explicit sort" and
/// yields an empty list; an empty component (`a,,b` or a trailing comma) is
/// an error because it is almost certainly a client bug. `@random` is
/// rejected: it has no deterministic meaning for an in-memory sort or an
/// index and must be handled by the caller if ever supported.
pub fn parse_sort(s: &str) -> Result<Vec<SortKey>, QueryError> {
    if s.chars().nth(MAX_SORT_CHARS).is_some() {
        return Err(err(
            MAX_SORT_CHARS,
            format!("sort is longer than the maximum of {MAX_SORT_CHARS} characters"),
        ));
    }
    if s.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut keys = Vec::new();
    let mut pos = 0;
    for raw in s.split(',') {
        let lead = raw.chars().take_while(|c| c.is_whitespace()).count();
        let item = raw.trim();
        let item_pos = pos + lead;
        pos += raw.chars().count() + 1;
        if item.is_empty() {
            return Err(err(item_pos, "empty sort field (expected a field name)"));
        }
        if keys.len() == MAX_SORT_KEYS {
            return Err(err(
                item_pos,
                format!("too many sort fields: at most {MAX_SORT_KEYS} are allowed"),
            ));
        }
        let (desc, name, name_pos) = match item.strip_prefix('-') {
            Some(rest) => (true, rest, item_pos + 1),
            None => match item.strip_prefix('+') {
                Some(rest) => (false, rest, item_pos + 1),
                None => (false, item, item_pos),
            },
        };
        if name == "@random" {
            return Err(err(name_pos, "sorting by @random is not supported"));
        }
        match name.chars().next() {
            Some(c) if is_ident_start(c) && c != '@' && c != '#' => {}
            _ => {
                return Err(err(
                    name_pos,
                    format!("invalid sort field '{name}' (expected a field name)"),
                ))
            }
        }
        keys.push(SortKey {
            path: parse_path(name, name_pos)?,
            desc,
        });
    }
    Ok(keys)
}

/// Follows a dotted path through nested objects; numeric segments index
/// arrays. Anything else (a key on a string, an index out of range) is
/// `None`.
pub(crate) fn lookup_path<'v>(root: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(root, |v, seg| match v {
        Value::Object(map) => map.get(seg),
        Value::Array(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// Orders two records by `keys`, then by their `id` so the order is total
/// and stable across pages. A missing field sorts exactly like `null`
/// (first ascending, last descending). The `id` tie-break runs in the
/// direction of the last sort key (ascending without keys): that is the
/// order an index walk produces (index entries end with the id encoded in
/// the last field's direction), so streamed and in-memory sorts agree.
pub fn compare_records(a: &Value, b: &Value, keys: &[SortKey]) -> Ordering {
    for key in keys {
        let va = lookup_path(a, &key.path).unwrap_or(&Value::Null);
        let vb = lookup_path(b, &key.path).unwrap_or(&Value::Null);
        let ord = compare_json(va, vb);
        let ord = if key.desc { ord.reverse() } else { ord };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    let ida = a.get("id").unwrap_or(&Value::Null);
    let idb = b.get("id").unwrap_or(&Value::Null);
    let ord = compare_json(ida, idb);
    if keys.last().is_some_and(|k| k.desc) {
        ord.reverse()
    } else {
        ord
    }
}

/// Rank of each JSON type in the total order.
fn type_rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(false) => 1,
        Value::Bool(true) => 2,
        Value::Number(_) => 3,
        Value::String(_) => 4,
        Value::Array(_) => 5,
        Value::Object(_) => 6,
    }
}

/// Magnitude from which not every integer is an `f64`: 2^53.
pub(crate) const EXACT_F64_LIMIT: f64 = 9_007_199_254_740_992.0;

/// A JSON number as an exact point of one number line shared by integers
/// and floats: `(base, offset)` where `base` is the largest `f64` not above
/// the value and `offset` the (integer) distance from it, so the value is
/// exactly `base + offset`. Floats, and integers below 2^53 in magnitude,
/// are their own base (`offset` 0; `-0.0` becomes `0.0`). An integer beyond
/// 2^53 lies at most one `f64` gap above its base: that gap is at most 2^11
/// for anything up to 2^64 (`u64::MAX`), so `offset` fits a `u16`.
///
/// Pairs order lexicographically exactly like the values they stand for;
/// this is the one definition both [`compare_numbers`] and the index key
/// encoding (`keys.rs`) use, so the two cannot disagree.
pub(crate) fn number_parts(n: &Number) -> (f64, u16) {
    if let Some(i) = n.as_i64() {
        if i.unsigned_abs() < 1 << 53 {
            return (i as f64, 0);
        }
        return integer_parts(i128::from(i));
    }
    if let Some(u) = n.as_u64() {
        return integer_parts(i128::from(u));
    }
    // `+ 0.0` turns `-0.0` into `0.0`.
    (n.as_f64().unwrap_or(0.0) + 0.0, 0)
}

fn integer_parts(v: i128) -> (f64, u16) {
    // Round to nearest, then step down if that went above the value. Both
    // conversions to `i128` are exact: the floats are integers of magnitude
    // at most 2^64.
    let mut base = v as f64;
    if base as i128 > v {
        base = base.next_down();
    }
    let offset = v - base as i128;
    (base, u16::try_from(offset).unwrap_or(u16::MAX))
}

/// Exact numeric comparison, with `-0.0 == 0.0`: integers (`i64` and `u64`)
/// compare as integers, an integer and a float by their exact values (so
/// 2^53 + 1 is above the float 2^53, and equal to no float at all). Agrees
/// with the index key encoding, which stores the same `(base, offset)`
/// pairs ([`number_parts`]).
pub(crate) fn compare_numbers(a: &Number, b: &Number) -> Ordering {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x.cmp(&y);
    }
    let (x, ox) = number_parts(a);
    let (y, oy) = number_parts(b);
    x.partial_cmp(&y).unwrap_or(Ordering::Equal).then(ox.cmp(&oy))
}

/// The total order on JSON values:
/// null < false < true < numbers (numeric) < strings (bytewise UTF-8) <
/// arrays (lexicographic by element) < objects.
///
/// Objects compare as their serialized JSON text. That is arbitrary but
/// total, cheap to mirror in the key encoding, and good enough for the rare
/// case of sorting by an object-valued field. Keys keep insertion order
/// (`preserve_order`), so `{"a":1,"b":2}` and `{"b":2,"a":1}` differ.
///
/// Arrays are compared with an explicit stack instead of recursion so that
/// deeply nested hostile JSON cannot overflow the stack.
pub fn compare_json(a: &Value, b: &Value) -> Ordering {
    let mut stack: Vec<(std::slice::Iter<'_, Value>, std::slice::Iter<'_, Value>)> = Vec::new();
    let mut pair = Some((a, b));
    loop {
        if let Some((x, y)) = pair.take() {
            let (rx, ry) = (type_rank(x), type_rank(y));
            if rx != ry {
                return rx.cmp(&ry);
            }
            let ord = match (x, y) {
                (Value::Number(p), Value::Number(q)) => compare_numbers(p, q),
                (Value::String(p), Value::String(q)) => p.as_bytes().cmp(q.as_bytes()),
                (Value::Array(p), Value::Array(q)) => {
                    stack.push((p.iter(), q.iter()));
                    Ordering::Equal
                }
                (Value::Object(_), Value::Object(_)) => x.to_string().cmp(&y.to_string()),
                _ => Ordering::Equal,
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        let Some((xs, ys)) = stack.last_mut() else {
            return Ordering::Equal;
        };
        match (xs.next(), ys.next()) {
            (Some(x), Some(y)) => pair = Some((x, y)),
            (None, None) => {
                stack.pop();
            }
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_sort_keys() {
        let keys = parse_sort(" -created, +title ,author.name").unwrap_or_default();
        assert_eq!(
            keys,
            vec![
                SortKey {
                    path: vec!["created".into()],
                    desc: true
                },
                SortKey {
                    path: vec!["title".into()],
                    desc: false
                },
                SortKey {
                    path: vec!["author".into(), "name".into()],
                    desc: false
                },
            ]
        );
        assert_eq!(parse_sort(""), Ok(vec![]));
    }

    #[test]
    fn rejects_bad_sorts() {
        let nine = (0..9).map(|i| format!("f{i}")).collect::<Vec<_>>().join(",");
        for (s, pos) in [
            (nine.as_str(), 24),
            ("a,,b", 2),
            ("a,", 2),
            ("-", 1),
            ("@random", 0),
            ("-@random", 1),
            ("a b", 1),
            ("a..b", 2),
            ("1a", 0),
            ("@rowid", 0),
            ("title:lower", 5),
        ] {
            match parse_sort(s) {
                Ok(k) => panic!("{s:?} parsed as {k:?}"),
                Err(e) => assert_eq!(e.position, pos, "{s:?}: {e}"),
            }
        }
        assert!(parse_sort(&"a".repeat(3501)).is_err());
    }

    #[test]
    fn total_order_examples() {
        let ordered = [
            json!(null),
            json!(false),
            json!(true),
            json!(-1.5),
            json!(0),
            json!(2),
            json!(""),
            json!("B"),
            json!("a"),
            json!("é"),
            json!([]),
            json!([1]),
            json!([1, 2]),
            json!([2]),
            // Objects order by their JSON text: `{"a":1}` < `{"b":0}` < `{}`
            // (since `"` < `}` in ASCII).
            json!({"a": 1}),
            json!({"b": 0}),
            json!({}),
        ];
        for (i, a) in ordered.iter().enumerate() {
            for (j, b) in ordered.iter().enumerate() {
                assert_eq!(compare_json(a, b), i.cmp(&j), "{a} vs {b}");
            }
        }
        assert_eq!(compare_json(&json!(-0.0), &json!(0)), Ordering::Equal);
        assert_eq!(compare_json(&json!(1), &json!(1.0)), Ordering::Equal);
    }

    #[test]
    fn deep_arrays_do_not_overflow() {
        let mut a = json!(1);
        let mut b = json!(2);
        for _ in 0..100_000 {
            a = Value::Array(vec![a]);
            b = Value::Array(vec![b]);
        }
        assert_eq!(compare_json(&a, &b), Ordering::Less);
        // Dropping deeply nested serde_json values recurses; leak them.
        std::mem::forget(a);
        std::mem::forget(b);
    }

    #[test]
    fn compares_records() {
        let keys = parse_sort("-views,title").unwrap_or_default();
        let a = json!({"id": "a", "views": 3, "title": "x"});
        let b = json!({"id": "b", "views": 3, "title": "x"});
        let c = json!({"id": "c", "title": "x"});
        let d = json!({"id": "d", "views": 5});
        let mut recs = [&c, &b, &d, &a];
        recs.sort_by(|x, y| compare_records(x, y, &keys));
        let ids: Vec<&str> = recs.iter().filter_map(|r| r["id"].as_str()).collect();
        assert_eq!(ids, vec!["d", "a", "b", "c"]);
        let nested = parse_sort("m.k").unwrap_or_default();
        let p = json!({"id": "p", "m": {"k": 2}});
        let q = json!({"id": "q", "m": {"k": 1}});
        assert_eq!(compare_records(&p, &q, &nested), Ordering::Greater);
    }
}
