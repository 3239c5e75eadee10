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
//! | number  | `04` + 8 bytes big-endian of the sign-flipped `f64`          |
//! | string  | `05` + UTF-8 with `00` escaped as `00 FF`, then `00 00`      |
//! | array   | `06` + element encodings + `00` (smaller than any tag)       |
//! | object  | `07` + its JSON text encoded like a string body              |
//!
//! Numbers go through `f64`: integers beyond 2^53 lose precision in the
//! ordering (as they do in `compare_json`, which shares that conversion).

use serde_json::Value;

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
                    out.extend_from_slice(&encode_f64(n.as_f64().unwrap_or(0.0)));
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

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
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
