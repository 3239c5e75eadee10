//! In-memory evaluation of a parsed filter against one record.
//!
//! Evaluation is pure: everything it needs from the outside world (field
//! values, request data, the clock) comes through [`Resolver`], so the same
//! code serves realtime subscription checks, API rule checks on create, and
//! tests. See the module docs of `crate::query` for the semantics; this file
//! is their implementation.

use crate::query::ast::{Comparison, Expr, Identifier, Modifier, Op, Operand, Root};
use crate::query::datetime::macro_value;
use crate::query::sort::{compare_json, compare_numbers};
use crate::query::Filter;
use serde_json::Value;
use std::cmp::Ordering;

/// What the evaluator asks the outside world. Evaluation is pure; callers
/// implement this.
pub trait Resolver {
    /// The value(s) an identifier (ignoring its modifier) denotes.
    fn resolve(&self, ident: &Identifier) -> Resolved;
    /// "Now" for date macros (so tests control the clock): milliseconds
    /// since the Unix epoch.
    fn now_millis(&self) -> i64;
}

/// The outcome of resolving an identifier.
///
/// `Missing` (the key does not exist) is kept apart from `One(Null)` only so
/// that `:isset` can tell them apart; every comparison treats them alike.
/// `Many` is a multi-valued field (JSON array, multi-relation); plain
/// operators quantify over all of its items, `?` operators over any.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    Missing,
    One(Value),
    Many(Vec<Value>),
}

/// Evaluates `filter` for the record the resolver describes. The empty
/// filter matches everything.
pub fn evaluate(filter: &Filter, r: &dyn Resolver) -> bool {
    filter.expr().is_none_or(|e| eval_expr(e, r))
}

/// Recursion depth equals the expression depth, which the parser bounds
/// (at most 64 parenthesis levels, flattened same-kind nodes).
fn eval_expr(e: &Expr, r: &dyn Resolver) -> bool {
    match e {
        Expr::And(items) => items.iter().all(|i| eval_expr(i, r)),
        Expr::Or(items) => items.iter().any(|i| eval_expr(i, r)),
        Expr::Cmp(c) => eval_comparison(c, r),
    }
}

/// One side of a comparison after resolution: the items to quantify over,
/// and whether `:each` forced "every item" semantics.
struct Side {
    items: Vec<Value>,
    each: bool,
}

fn eval_comparison(c: &Comparison, r: &dyn Resolver) -> bool {
    if let Some(decided) = guest_auth_comparison(c, r) {
        return decided;
    }
    let left = side(&c.left, r);
    let right = side(&c.right, r);
    let base = c.op.base();
    // `:each` pins its side to "all"; otherwise `?` means "any".
    let any_left = c.op.is_any() && !left.each;
    let any_right = c.op.is_any() && !right.each;
    let inner = |l: &Value| {
        let test = |rv: &Value| compare_scalar(l, base, rv);
        if any_right {
            right.items.iter().any(test)
        } else {
            right.items.iter().all(test)
        }
    };
    if any_left {
        left.items.iter().any(inner)
    } else {
        left.items.iter().all(inner)
    }
}

/// A guest has no auth record, so a guest's `@request.auth.*` equals
/// nothing that is not written in the filter itself: `owner =
/// @request.auth.id` does not hold for a record whose owner was cleared
/// (SPEC §7, a deliberate difference from PocketBase, where empty equals
/// empty). Positive operators are false, negated ones (`!=`, `!~`) true.
/// Comparisons with literals (`@request.auth.id != ''`) are unaffected, and
/// so are `:isset` and `:length`.
fn guest_auth_comparison(c: &Comparison, r: &dyn Resolver) -> Option<bool> {
    let is_auth = |o: &Operand| {
        matches!(o, Operand::Ident(id) if id.root == Root::RequestAuth
            && !matches!(id.modifier, Some(Modifier::IsSet | Modifier::Length)))
    };
    let literal = |o: &Operand| matches!(o, Operand::Literal(_));
    let (l, rt) = (is_auth(&c.left), is_auth(&c.right));
    let applies = (l && !rt && !literal(&c.right)) || (rt && !l && !literal(&c.left));
    if !applies {
        return None;
    }
    let auth = r.resolve(&Identifier {
        root: Root::RequestAuth,
        path: Vec::new(),
        modifier: None,
    });
    if !matches!(auth, Resolved::Missing | Resolved::One(Value::Null)) {
        return None;
    }
    Some(matches!(c.op.base(), Op::Neq | Op::NotLike))
}

/// Resolves an operand and turns it into a non-empty item list: missing and
/// empty multi-values become a single `null` item, so "nothing" behaves like
/// `null` under every operator (and quantifiers never hold vacuously).
fn side(op: &Operand, r: &dyn Resolver) -> Side {
    let (resolved, each) = match op {
        Operand::Literal(v) => (Resolved::One(v.clone()), false),
        Operand::Ident(id) => (resolve_with_modifier(id, r), id.modifier == Some(Modifier::Each)),
    };
    let items = match resolved {
        Resolved::Missing => vec![Value::Null],
        Resolved::One(v) => vec![v],
        Resolved::Many(v) if v.is_empty() => vec![Value::Null],
        Resolved::Many(v) => v,
    };
    Side { items, each }
}

/// Resolves an identifier and applies its modifier.
pub(crate) fn resolve_with_modifier(id: &Identifier, r: &dyn Resolver) -> Resolved {
    let bare = id.without_modifier();
    let raw = match &id.root {
        Root::Macro(m) => Resolved::One(macro_value(*m, r.now_millis())),
        _ => r.resolve(&bare),
    };
    match id.modifier {
        None | Some(Modifier::Each) => raw,
        Some(Modifier::IsSet) => Resolved::One(Value::Bool(raw != Resolved::Missing)),
        Some(Modifier::Changed) => {
            let changed = match raw {
                Resolved::Missing => false,
                submitted => {
                    let stored = r.resolve(&Identifier::record(id.path.clone()));
                    !same_value(&submitted, &stored)
                }
            };
            Resolved::One(Value::Bool(changed))
        }
        Some(Modifier::Length) => match raw {
            Resolved::Missing | Resolved::One(Value::Null) => Resolved::One(Value::from(0)),
            Resolved::One(Value::Array(a)) => Resolved::One(Value::from(a.len())),
            Resolved::Many(v) => Resolved::One(Value::from(v.len())),
            Resolved::One(_) => Resolved::Missing,
        },
        Some(Modifier::Lower) => match raw {
            Resolved::Missing => Resolved::Missing,
            Resolved::One(v) => Resolved::One(lower_value(v)),
            Resolved::Many(v) => Resolved::Many(v.into_iter().map(lower_value).collect()),
        },
    }
}

/// Equality for `:changed`: a submitted single value equals a stored
/// one-element list and vice versa, since a client may send `"id"` for a
/// single relation the store keeps as `["id"]`; missing equals null.
fn same_value(a: &Resolved, b: &Resolved) -> bool {
    fn items(r: &Resolved) -> Vec<&Value> {
        match r {
            Resolved::Missing => vec![&Value::Null],
            Resolved::One(Value::Array(a)) | Resolved::Many(a) => a.iter().collect(),
            Resolved::One(v) => vec![v],
        }
    }
    let (x, y) = (items(a), items(b));
    x.len() == y.len()
        && x.iter()
            .zip(y.iter())
            .all(|(p, q)| compare_json(p, q) == Ordering::Equal)
}

fn lower_value(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(lowercase(&s)),
        other => other,
    }
}

/// Per-character Unicode lowercasing. Deliberately not `str::to_lowercase`,
/// whose context-sensitive final-sigma rule would make a pattern and a text
/// lowercase differently depending on where they were cut.
pub(crate) fn lowercase(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

/// `null` and `""` are the same "blank" value for equality, as in
/// PocketBase (whose SQL compares both through `COALESCE(x, '')`).
fn is_blank(v: &Value) -> bool {
    matches!(v, Value::Null) || matches!(v, Value::String(s) if s.is_empty())
}

/// Compares two single items with a non-`?` operator.
fn compare_scalar(l: &Value, op: Op, r: &Value) -> bool {
    match op {
        Op::Eq => loose_eq(l, r),
        Op::Neq => !loose_eq(l, r),
        Op::Like => like(&stringify(l), &stringify(r)),
        Op::NotLike => !like(&stringify(l), &stringify(r)),
        _ => match ordering(l, r) {
            Some(ord) => match op {
                Op::Gt => ord == Ordering::Greater,
                Op::Gte => ord != Ordering::Less,
                Op::Lt => ord == Ordering::Less,
                _ => ord != Ordering::Greater,
            },
            None => false,
        },
    }
}

/// Type-aware equality: blanks are equal to each other, otherwise values of
/// different JSON types are never equal (`'1' = 1` is false).
fn loose_eq(l: &Value, r: &Value) -> bool {
    if is_blank(l) || is_blank(r) {
        return is_blank(l) && is_blank(r);
    }
    match (l, r) {
        (Value::Number(a), Value::Number(b)) => compare_numbers(a, b) == Ordering::Equal,
        (Value::String(a), Value::String(b)) => a == b,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Array(_), Value::Array(_)) | (Value::Object(_), Value::Object(_)) => {
            compare_json(l, r) == Ordering::Equal
        }
        _ => false,
    }
}

/// Ordering for `> >= < <=`: only number/number and string/string pairs are
/// ordered; anything else (bools, nulls, mixed types) makes them false.
fn ordering(l: &Value, r: &Value) -> Option<Ordering> {
    match (l, r) {
        (Value::Number(a), Value::Number(b)) => Some(compare_numbers(a, b)),
        (Value::String(a), Value::String(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
        _ => None,
    }
}

/// Text used by `~`: strings as-is, null as "", everything else as JSON.
fn stringify(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Case-insensitive LIKE with `%` wildcards; a pattern without any `%` is
/// wrapped as `%pattern%` ("contains"). `\%` is a literal percent sign.
///
/// Implemented by splitting the pattern at its wildcards into literal
/// pieces: the first must be a prefix, the last a suffix, and the middle
/// ones are found left-to-right (leftmost match is always safe for `%`-only
/// patterns). `str::find` is linear, so there is no backtracking blow-up on
/// hostile patterns like `%a%a%a%...b`.
pub(crate) fn like(text: &str, pattern: &str) -> bool {
    let text = lowercase(text);
    let mut pieces = vec![String::new()];
    let mut chars = lowercase(pattern).chars().collect::<Vec<_>>().into_iter();
    let mut has_wildcard = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.as_slice().first() == Some(&'%') => {
                chars.next();
                push_char(&mut pieces, '%');
            }
            '%' => {
                has_wildcard = true;
                pieces.push(String::new());
            }
            c => push_char(&mut pieces, c),
        }
    }
    if !has_wildcard {
        pieces.insert(0, String::new());
        pieces.push(String::new());
    }
    let (first, last) = match (pieces.first(), pieces.last()) {
        (Some(f), Some(l)) => (f.as_str(), l.as_str()),
        _ => return false,
    };
    if text.len() < first.len() + last.len() || !text.starts_with(first) || !text.ends_with(last) {
        return false;
    }
    let Some(mut rest) = text.get(first.len()..text.len() - last.len()) else {
        return false;
    };
    for piece in &pieces[1..pieces.len() - 1] {
        match rest.find(piece.as_str()) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

fn push_char(pieces: &mut [String], c: char) {
    if let Some(p) = pieces.last_mut() {
        p.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::like;

    #[test]
    fn like_patterns() {
        assert!(like("Hello World", "lo w"));
        assert!(like("école", "ÉCOLE"));
        assert!(like("abc", "a%c"));
        assert!(!like("abcd", "a%c"));
        assert!(like("abc", "%"));
        assert!(like("", ""));
        assert!(like("aXbXc", "%b%"));
        assert!(!like("ab", "a%%b%b"));
        assert!(like("abab", "a%%b%b"));
        assert!(like("100% pure", "100\\%"));
        assert!(!like("1000 pure", "100\\% p"));
        assert!(like("50% off", "50\\%%"));
        assert!(!like("x50% off", "50\\%%"));
        // Overlapping prefix/suffix must not both claim the same characters.
        assert!(!like("a", "a%a"));
        assert!(like("aa", "a%a"));
        let hostile = "%a".repeat(1000) + "b";
        assert!(!like(&"a".repeat(5000), &hostile));
    }
}
