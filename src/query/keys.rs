//! Order-preserving, self-delimiting byte encoding of JSON values for index
//! keys.
//!
//! Guarantee: for ascending components, comparing two encodings bytewise
//! gives the same result as [`compare_json`](crate::query::compare_json) on
//! the values, and equal values encode to identical bytes. Because every
//! encoding is self-delimiting (no encoding is a proper prefix of another),
//! concatenating components preserves lexicographic tuple order, and
//! inverting every byte of a component reverses its order (descending).
//!
//! Layout (one tag byte first, tags ordered like the type ranks):
//!
//! | value   | bytes                                                        |
//! |---------|--------------------------------------------------------------|
//! | null    | `01`                                                         |
//! | false   | `02`                                                         |
//! | true    | `03`                                                         |
//! | number  | `04` + 8 bytes BE of the sign-flipped `f64` base (+ 2 bytes BE offset from 2^53 on, below) |
//! | string  | `05` + UTF-8 with `00` escaped as `00 FF`, then `00 00`      |
//! | array   | `06` + element encodings + `00` (smaller than any tag)       |
//! | object  | `07` + its JSON text encoded like a string body              |
//!
//! Numbers are exact over `i64`, `u64` and `f64` mixed: a number is the pair
//! `(base, offset)` of `sort::number_parts` (the largest `f64` not above it,
//! and the integer distance to it), which is also what `compare_json`
//! compares. Below 2^53 in magnitude every integer is an `f64`, the offset
//! is always 0 and is left out: those keys are byte-for-byte what the first
//! key format (every number as one `f64`) wrote. From 2^53 on, every key
//! carries the offset, so 2^53 and 2^53 + 1 get distinct keys (one `f64`
//! apart they used to collide) and the encoding stays prefix-free: the two
//! lengths never share their first 9 bytes, because the `f64` bases of the
//! two ranges differ. Keys of the first format with a number of 2^53 or
//! more are rebuilt once at start (see [`legacy_key_needs_rebuild`]).

use serde_json::Value;

use super::sort::{number_parts, EXACT_F64_LIMIT};

const TAG_END: u8 = 0x00;
const TAG_NULL: u8 = 0x01;
const TAG_FALSE: u8 = 0x02;
const TAG_TRUE: u8 = 0x03;
/// Tag of numbers: the smallest key of any number starts with it.
pub const TAG_NUMBER: u8 = 0x04;
/// Tag of strings (also the end of the number range).
pub const TAG_STRING: u8 = 0x05;
const TAG_ARRAY: u8 = 0x06;
const TAG_OBJECT: u8 = 0x07;

/// Appends the encoding of `v` to `out`; with `desc` the appended bytes are
/// inverted so the component sorts in reverse.
pub fn encode_value(out: &mut Vec<u8>, v: &Value, desc: bool) {
    let start = out.len();
    encode_asc(out, v);
    if desc {
        for b in &mut out[start..] {
            *b = !*b;
        }
    }
}

/// Encodes a tuple of `(value, descending)` components into one key whose
/// bytewise order is the lexicographic order of the tuples.
pub fn encode_key(values: &[(&Value, bool)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (v, desc) in values {
        encode_value(&mut out, v, *desc);
    }
    out
}

/// Ascending encoding. Arrays are walked with an explicit stack (no
/// recursion) so deeply nested values cannot overflow the stack.
fn encode_asc(out: &mut Vec<u8>, v: &Value) {
    let mut stack: Vec<std::slice::Iter<'_, Value>> = Vec::new();
    let mut next = Some(v);
    loop {
        if let Some(v) = next.take() {
            match v {
                Value::Null => out.push(TAG_NULL),
                Value::Bool(false) => out.push(TAG_FALSE),
                Value::Bool(true) => out.push(TAG_TRUE),
                Value::Number(n) => {
                    out.push(TAG_NUMBER);
                    let (base, offset) = number_parts(n);
                    out.extend_from_slice(&encode_f64(base));
                    if base.abs() >= EXACT_F64_LIMIT {
                        out.extend_from_slice(&offset.to_be_bytes());
                    }
                }
                Value::String(s) => {
                    out.push(TAG_STRING);
                    encode_str(out, s);
                }
                Value::Array(items) => {
                    out.push(TAG_ARRAY);
                    stack.push(items.iter());
                }
                Value::Object(_) => {
                    out.push(TAG_OBJECT);
                    encode_str(out, &v.to_string());
                }
            }
        }
        let Some(iter) = stack.last_mut() else {
            return;
        };
        match iter.next() {
            Some(item) => next = Some(item),
            None => {
                out.push(TAG_END);
                stack.pop();
            }
        }
    }
}

/// The classic sign-flip: for non-negative floats set the sign bit, for
/// negative ones invert all bits. The resulting big-endian integers order
/// exactly like the floats. `-0.0` is normalised to `0.0` first so the two
/// zeros (equal under `compare_json`) encode identically.
fn encode_f64(f: f64) -> [u8; 8] {
    let f = if f == 0.0 { 0.0 } else { f };
    let bits = f.to_bits();
    let flipped = if bits >> 63 == 1 { !bits } else { bits | (1 << 63) };
    flipped.to_be_bytes()
}

/// String body: `00` → `00 FF`, then the `00 00` terminator. Since the
/// terminator's second byte is smaller than the escape's, a string sorts
/// before every extension of itself, matching bytewise string order.
fn encode_str(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0x00, 0x00]);
}

/// Whether an index key written in the first key format (every number as
/// `04` + 8 bytes of its `f64`) differs from what [`encode_value`] writes
/// now: true when it holds a number of magnitude 2^53 or more (those keys
/// gained an offset), or when it cannot be read as first-format components
/// at all (rebuilding is the safe answer). Reads ascending and descending
/// (inverted) components alike, in any number, so it works for every index
/// tree: values, then the id suffix of non-unique entries.
pub fn legacy_key_needs_rebuild(key: &[u8]) -> bool {
    let mut pos = 0;
    while pos < key.len() {
        // Ascending components start with a tag (01-07); descending ones
        // with its inverse (F8-FE).
        let desc = key[pos] >= 0x80;
        match legacy_component(key, &mut pos, desc) {
            Some(false) => {}
            Some(true) | None => return true,
        }
    }
    false
}

/// Skips one first-format component at `*pos`; `Some(true)` when it is (or
/// contains) a number of magnitude 2^53 or more, `None` when malformed.
fn legacy_component(key: &[u8], pos: &mut usize, desc: bool) -> Option<bool> {
    let byte = |i: usize| key.get(i).map(|b| if desc { !b } else { *b });
    let mut depth = 0usize;
    loop {
        let tag = byte(*pos)?;
        *pos += 1;
        match tag {
            TAG_END if depth > 0 => depth -= 1,
            TAG_NULL | TAG_FALSE | TAG_TRUE => {}
            TAG_NUMBER => {
                let mut bits = [0u8; 8];
                for (i, b) in bits.iter_mut().enumerate() {
                    *b = byte(*pos + i)?;
                }
                *pos += 8;
                let flipped = u64::from_be_bytes(bits);
                let raw = if flipped >> 63 == 1 {
                    flipped & !(1 << 63)
                } else {
                    !flipped
                };
                if f64::from_bits(raw).abs() >= EXACT_F64_LIMIT {
                    return Some(true);
                }
            }
            TAG_STRING | TAG_OBJECT => loop {
                let b = byte(*pos)?;
                *pos += 1;
                if b == 0 {
                    let next = byte(*pos)?;
                    *pos += 1;
                    match next {
                        0x00 => break,
                        0xFF => {}
                        _ => return None,
                    }
                }
            },
            TAG_ARRAY => depth += 1,
            _ => return None,
        }
        if depth == 0 {
            return Some(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::compare_json;
    use proptest::prelude::*;
    use serde_json::json;
    use std::cmp::Ordering;

    fn enc(v: &Value, desc: bool) -> Vec<u8> {
        let mut out = Vec::new();
        encode_value(&mut out, v, desc);
        out
    }

    /// Numbers where `f64` runs out of integers: around ±2^53, ±2^63 and
    /// 2^64, as `i64`, `u64` and the `f64`s nearby, so that equal values
    /// of different representations and one-apart neighbours both show up.
    fn wide_number() -> impl Strategy<Value = Value> {
        let centre = prop::sample::select(vec![1u64 << 53, 1 << 54, 1 << 62, 1 << 63, u64::MAX]);
        (centre, -4100i64..4100, any::<bool>(), 0u8..3).prop_map(|(c, d, neg, kind)| {
            let v = i128::from(c) + i128::from(d);
            let v = if neg { -v } else { v };
            match kind {
                0 => match (i64::try_from(v), u64::try_from(v)) {
                    (Ok(i), _) => Value::from(i),
                    (_, Ok(u)) => Value::from(u),
                    _ => Value::from(v as f64),
                },
                1 => Value::from(v as f64),
                _ => Value::from((v as f64).next_up()),
            }
        })
    }

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            wide_number(),
            wide_number(),
            (-5i64..5).prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            prop_oneof![Just(0.0), Just(-0.0), Just(1.0), Just(-2.5)].prop_map(Value::from),
            "[a-c\u{0}\u{e9}]{0,4}".prop_map(Value::String),
            prop::collection::btree_map("[ab]", -2i64..2, 0..3).prop_map(|m| json!(m)),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        scalar().prop_recursive(3, 16, 4, |inner| {
            prop::collection::vec(inner, 0..4).prop_map(Value::Array)
        })
    }

    proptest! {
        #[test]
        fn encoding_order_matches_compare_json(a in value(), b in value()) {
            let ord = compare_json(&a, &b);
            prop_assert_eq!(enc(&a, false).cmp(&enc(&b, false)), ord);
            prop_assert_eq!(enc(&a, true).cmp(&enc(&b, true)), ord.reverse());
        }

        #[test]
        fn numbers_order_exactly(a in wide_number(), b in wide_number()) {
            // The reference: exact rationals would do, but every value here
            // is an integer (the `f64`s this large are integers), so i128.
            let exact = |v: &Value| v.as_i64().map(i128::from)
                .or(v.as_u64().map(i128::from))
                .unwrap_or_else(|| v.as_f64().unwrap_or(0.0) as i128);
            let ord = exact(&a).cmp(&exact(&b));
            prop_assert_eq!(compare_json(&a, &b), ord, "{} vs {}", a, b);
            prop_assert_eq!(enc(&a, false).cmp(&enc(&b, false)), ord, "{} vs {}", a, b);
            prop_assert_eq!(enc(&a, true).cmp(&enc(&b, true)), ord.reverse());
        }

        #[test]
        fn encodings_are_prefix_free(a in value(), b in value()) {
            // What the planner relies on: every key that starts with the
            // encoding of `v` holds `v` (so `successor` skips exactly the
            // keys equal to it).
            let (x, y) = (enc(&a, false), enc(&b, false));
            if x != y {
                prop_assert!(!y.starts_with(&x) && !x.starts_with(&y), "{} vs {}", a, b);
            }
        }

        #[test]
        fn first_format_keys_below_2_53_are_unchanged(a in value(), id in "[a-z]{1,3}") {
            let key = encode_key(&[(&a, false), (&Value::String(id), true)]);
            let legacy = legacy_key_needs_rebuild(&key);
            let wide = |v: &Value| v.as_f64().is_some_and(|f| f.abs() >= EXACT_F64_LIMIT);
            let has_wide = match &a {
                Value::Array(items) => has_wide_item(items, &wide),
                v => wide(v),
            };
            // Keys without wide numbers are what the first format wrote (and
            // read as such); keys with one are flagged for a rebuild.
            prop_assert_eq!(legacy, has_wide, "{}", a);
        }

        #[test]
        fn tuple_order_is_lexicographic(
            a in prop::collection::vec(value(), 1..=3),
            b in prop::collection::vec(value(), 1..=3),
            dirs in prop::collection::vec(any::<bool>(), 3),
        ) {
            // Compare equal-arity tuples (keys of one index have one arity).
            let n = a.len().min(b.len());
            let ka: Vec<(&Value, bool)> = a[..n].iter().zip(dirs.iter().copied()).collect();
            let kb: Vec<(&Value, bool)> = b[..n].iter().zip(dirs.iter().copied()).collect();
            let mut expected = Ordering::Equal;
            for ((x, d), (y, _)) in ka.iter().zip(kb.iter()) {
                let o = compare_json(x, y);
                let o = if *d { o.reverse() } else { o };
                if o != Ordering::Equal {
                    expected = o;
                    break;
                }
            }
            prop_assert_eq!(encode_key(&ka).cmp(&encode_key(&kb)), expected);
        }
    }

    fn has_wide_item(items: &[Value], wide: &dyn Fn(&Value) -> bool) -> bool {
        items.iter().any(|v| match v {
            Value::Array(inner) => has_wide_item(inner, wide),
            v => wide(v),
        })
    }

    /// The first key format: every number as its `f64`.
    fn legacy_number(f: f64) -> Vec<u8> {
        let mut out = vec![TAG_NUMBER];
        out.extend_from_slice(&encode_f64(f));
        out
    }

    #[test]
    fn wide_integers_get_distinct_keys() {
        let p53 = 1i64 << 53;
        let keys: Vec<Vec<u8>> = [
            json!(p53 - 1),
            json!(p53),
            json!(p53 + 1),
            json!(p53 + 2),
            json!(p53 + 3),
        ]
        .iter()
        .map(|v| enc(v, false))
        .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        // The float 2^53 and the integer 2^53 are one value, one key.
        assert_eq!(enc(&json!(p53 as f64), false), enc(&json!(p53), false));
        assert!(enc(&json!(i64::MAX), false) < enc(&json!(i64::MAX as u64 + 1), false));
        assert_eq!(
            enc(&json!(i64::MAX as u64 + 1), false),
            enc(&json!(9.223_372_036_854_776e18), false)
        );
        assert!(enc(&json!(u64::MAX), false) < enc(&json!(1.8446744073709552e19), false));
        assert!(enc(&json!(i64::MIN), false) < enc(&json!(i64::MIN + 1), false));
        assert!(enc(&json!(-9.3e18), false) < enc(&json!(i64::MIN), false));
        // Below 2^53 nothing changed from the first format.
        for f in [0.0, 1.0, -2.5, 1e15, (p53 - 1) as f64, -((p53 - 1) as f64)] {
            assert_eq!(enc(&json!(f), false), legacy_number(f));
            assert!(!legacy_key_needs_rebuild(&legacy_number(f)));
        }
        for f in [p53 as f64, -(p53 as f64), 1e300, -1e300] {
            assert!(legacy_key_needs_rebuild(&legacy_number(f)));
            let mut desc = legacy_number(f);
            desc.iter_mut().for_each(|b| *b = !*b);
            assert!(legacy_key_needs_rebuild(&desc));
        }
        assert!(legacy_key_needs_rebuild(&[TAG_NUMBER, 1, 2]), "truncated");
        assert!(legacy_key_needs_rebuild(&[0x42]), "unknown tag");
    }

    #[test]
    fn fixed_examples() {
        assert_eq!(enc(&json!(-0.0), false), enc(&json!(0), false));
        assert_eq!(enc(&json!(1), false), enc(&json!(1.0), false));
        assert!(enc(&json!("a"), false) < enc(&json!("a\u{0}"), false));
        assert!(enc(&json!("a\u{0}"), false) < enc(&json!("a\u{1}"), false));
        assert!(enc(&json!([]), false) < enc(&json!([null]), false));
        assert!(enc(&json!(["a"]), false) < enc(&json!(["a", 1]), false));
        assert!(enc(&json!(true), false) < enc(&json!(-1e300), false));
        assert_eq!(enc(&json!(null), false), vec![TAG_NULL]);
    }
}
