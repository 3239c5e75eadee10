//! Integers that round-trip exactly: the signed 64-bit range (SPEC §7).
//!
//! Two checks, because a parsed `serde_json::Value` has already lost what
//! the first one needs:
//!
//! - [`out_of_range_integer`] reads a JSON *text*: an integer literal (no
//!   fraction, no exponent) outside `i64` anywhere in it would be stored as
//!   a `u64` no index or client can hold, or silently rounded to an `f64`
//!   (`18446744073709551616` → `1.8446744073709552e19`). Request bodies are
//!   refused with it before they are used (REST and batch JSON bodies, the
//!   dashboard's JSON inputs). A decimal or exponent literal (`1.5e19`) is a
//!   float and stays allowed where the schema allows a number.
//! - [`INT64_KEYWORD`], added by `compile` to every subschema whose `type`
//!   is `integer`, refuses values of such fields that are not exact `i64`s
//!   however they arrived: a `u64` above `i64::MAX`, or an integral float
//!   of magnitude 2^53 or more (JSON Schema counts `1e19` as an integer,
//!   but a float that large may be a rounded literal: such integers must be
//!   written as integer literals). Floats with a fraction are left to the
//!   `type` keyword.

use jsonschema::{Keyword, ValidationError};
use serde_json::Value;

use super::FieldError;

/// The error code of both checks (as `data.<field>.code`).
pub const INVALID_NUMBER: &str = "validation_invalid_number";

/// Message of an integer outside the signed 64-bit range.
pub const OUT_OF_RANGE: &str =
    "Must be an integer from -9223372036854775808 to 9223372036854775807 (signed 64-bit); send a decimal such as 1.5e19 for a float.";

const WIDE_FLOAT: &str =
    "Integers of magnitude 2^53 (9007199254740992) or more must be sent as integer literals, without a fraction or exponent.";

/// The field error for an integer outside `i64`.
pub fn out_of_range() -> FieldError {
    FieldError {
        code: INVALID_NUMBER.into(),
        message: OUT_OF_RANGE.into(),
    }
}

/// The dotted path (`n`, `meta.n`, `list.2`) of the first integer literal
/// outside the `i64` range in `json`, which must be valid JSON (parse it
/// first). Such a literal has at least 19 digits in a row; text without a
/// run that long (nearly every body) is answered by a skipping search that
/// reads about one byte in 19, and only otherwise is it tokenized.
pub fn out_of_range_integer(json: &[u8]) -> Option<String> {
    if has_digit_run(json, 19) {
        find_out_of_range(json)
    } else {
        None
    }
}

/// Whether `text` has `n` (> 0) ASCII digits in a row. Any such run covers
/// the last byte of every window of `n` bytes it overlaps, so a window whose
/// last byte is not a digit is skipped whole.
fn has_digit_run(text: &[u8], n: usize) -> bool {
    let mut i = 0;
    while i + n <= text.len() {
        let last = i + n - 1;
        if !text[last].is_ascii_digit() {
            i = last + 1;
            continue;
        }
        // The run through `last`: where it starts (within the window)…
        let mut start = last;
        while start > i && text[start - 1].is_ascii_digit() {
            start -= 1;
        }
        if start == i {
            return true;
        }
        // …and how far it goes.
        let mut end = last + 1;
        while end < text.len() && text[end].is_ascii_digit() {
            end += 1;
            if end - start >= n {
                return true;
            }
        }
        i = end + 1;
    }
    false
}

enum Frame {
    /// The current member's key, as the byte range of its JSON string.
    Object {
        key: (usize, usize),
        expect_key: bool,
    },
    Array {
        index: usize,
    },
}

fn path_of(json: &[u8], stack: &[Frame]) -> String {
    let mut out = String::new();
    for frame in stack {
        if !out.is_empty() {
            out.push('.');
        }
        match frame {
            Frame::Object { key: (start, end), .. } => {
                let raw = &json[*start..*end];
                let key =
                    serde_json::from_slice::<String>(raw).unwrap_or_else(|_| String::from_utf8_lossy(raw).into_owned());
                out.push_str(&key);
            }
            Frame::Array { index } => out.push_str(&index.to_string()),
        }
    }
    out
}

/// Whether the integer literal `digits` (no sign, no leading zeros, as JSON
/// writes them) fits `i64` with the given sign.
fn fits_i64(negative: bool, digits: &[u8]) -> bool {
    let limit: &[u8] = if negative {
        b"9223372036854775808"
    } else {
        b"9223372036854775807"
    };
    digits.len() < limit.len() || (digits.len() == limit.len() && digits <= limit)
}

fn find_out_of_range(json: &[u8]) -> Option<String> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < json.len() && json[i] != b'"' {
                    i += if json[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                if let Some(Frame::Object { key, expect_key }) = stack.last_mut() {
                    if *expect_key {
                        *key = (start, i.min(json.len()));
                        *expect_key = false;
                    }
                }
            }
            b'{' => {
                stack.push(Frame::Object {
                    key: (0, 0),
                    expect_key: true,
                });
                i += 1;
            }
            b'[' => {
                stack.push(Frame::Array { index: 0 });
                i += 1;
            }
            b'}' | b']' => {
                stack.pop();
                i += 1;
            }
            b',' => {
                match stack.last_mut() {
                    Some(Frame::Object { expect_key, .. }) => *expect_key = true,
                    Some(Frame::Array { index }) => *index += 1,
                    None => {}
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let negative = json[i] == b'-';
                let start = if negative { i + 1 } else { i };
                let mut end = start;
                while end < json.len() && json[end].is_ascii_digit() {
                    end += 1;
                }
                let float = matches!(json.get(end), Some(b'.' | b'e' | b'E'));
                if !float && !fits_i64(negative, &json[start..end]) {
                    return Some(path_of(json, &stack));
                }
                i = end;
                while i < json.len() && matches!(json[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// The annotation `compile` adds next to `"type": "integer"`.
pub const INT64_KEYWORD: &str = "x-basalt-int64";

/// Adds [`INT64_KEYWORD`] to every subschema of `schema` whose `type` is
/// `integer` (alone or with others, but not with `number`). Walks only
/// keywords that hold subschemas, so `const`, `enum`, `default` and
/// `examples` values (instance data) are never changed. A subschema reached
/// only through a `$ref` to some non-standard location is not marked.
pub fn mark_integer_subschemas(schema: &mut Value) {
    let mut todo: Vec<&mut Value> = vec![schema];
    while let Some(node) = todo.pop() {
        let Value::Object(map) = node else { continue };
        let is_integer = match map.get("type") {
            Some(Value::String(t)) => t == "integer",
            Some(Value::Array(ts)) => ts.iter().any(|t| t == "integer") && !ts.iter().any(|t| t == "number"),
            _ => false,
        };
        if is_integer {
            map.insert(INT64_KEYWORD.into(), Value::Bool(true));
        }
        for (key, child) in map.iter_mut() {
            match key.as_str() {
                // Maps of name → subschema.
                "properties" | "patternProperties" | "$defs" | "definitions" | "dependentSchemas" | "dependencies" => {
                    if let Value::Object(m) = child {
                        todo.extend(m.values_mut());
                    }
                }
                // One subschema, or (older drafts' `items`) a list of them.
                "items"
                | "additionalItems"
                | "additionalProperties"
                | "contains"
                | "not"
                | "if"
                | "then"
                | "else"
                | "propertyNames"
                | "unevaluatedItems"
                | "unevaluatedProperties"
                | "contentSchema"
                | "allOf"
                | "anyOf"
                | "oneOf"
                | "prefixItems" => match child {
                    Value::Array(items) => todo.extend(items.iter_mut()),
                    other => todo.push(other),
                },
                _ => {}
            }
        }
    }
}

/// The custom keyword behind [`INT64_KEYWORD`].
pub(crate) struct Int64;

impl Int64 {
    fn problem(instance: &Value) -> Option<&'static str> {
        let Value::Number(n) = instance else {
            return None;
        };
        if n.is_i64() {
            None
        } else if n.is_u64() {
            Some(OUT_OF_RANGE)
        } else {
            let f = n.as_f64().unwrap_or(0.0);
            (f.fract() == 0.0 && f.abs() >= crate::query::EXACT_F64_LIMIT).then_some(WIDE_FLOAT)
        }
    }
}

impl<'i> Keyword<'i> for Int64 {
    fn validate(&self, instance: &'i Value) -> Result<(), ValidationError<'i>> {
        match Int64::problem(instance) {
            None => Ok(()),
            Some(message) => Err(ValidationError::custom(message)),
        }
    }

    fn is_valid(&self, instance: &'i Value) -> bool {
        Int64::problem(instance).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_integer_literals_outside_i64() {
        for (text, path) in [
            (r#"{"n": 18446744073709551616}"#, Some("n")),
            (r#"{"n": 9223372036854775808}"#, Some("n")),
            (r#"{"n": -9223372036854775809}"#, Some("n")),
            (r#"{"a": {"b": [1, 2, 99999999999999999999]}}"#, Some("a.b.2")),
            (
                r#"{"x": "18446744073709551616", "y\"z": [{"k": 1}, {"k": 1e400, "m": 100000000000000000000}]}"#,
                Some("y\"z.1.m"),
            ),
            (r#"{"n": 9223372036854775807, "m": -9223372036854775808}"#, None),
            (
                r#"{"n": 18446744073709551616.0, "m": 1.8446744073709552e19, "k": 18446744073709551616e0}"#,
                None,
            ),
            (r#"{"s": "99999999999999999999999"}"#, None),
            (r#"{"n": 1, "m": [true, null, false]}"#, None),
        ] {
            assert_eq!(out_of_range_integer(text.as_bytes()).as_deref(), path, "{text}");
        }
    }

    #[test]
    fn digit_runs_are_found_wherever_they_are() {
        for len in 0..60 {
            for at in 0..len {
                for run in [1, 18, 19, 20, 40] {
                    let mut text = vec![b'x'; len];
                    for b in text.iter_mut().skip(at).take(run) {
                        *b = b'7';
                    }
                    let longest = run.min(len - at);
                    assert_eq!(has_digit_run(&text, 19), longest >= 19, "len {len} at {at} run {run}");
                }
            }
        }
        assert!(has_digit_run(b"12345678901234567890", 19));
        assert!(!has_digit_run(b"123456789012345678 123456789012345678", 19));
    }

    #[test]
    fn marks_integer_subschemas_only() {
        let mut s = json!({
            "type": "object",
            "properties": {
                "n": {"type": "integer"},
                "enum": {"type": ["integer", "null"]},
                "f": {"type": ["number", "integer"]},
                "list": {"type": "array", "items": {"type": "integer"}},
                "c": {"const": {"type": "integer"}, "anyOf": [{"type": "integer"}]}
            },
            "$defs": {"d": {"type": "integer"}}
        });
        mark_integer_subschemas(&mut s);
        let marked = |p: &str| s.pointer(p).and_then(|v| v.get(INT64_KEYWORD)).is_some();
        assert!(marked("/properties/n"));
        assert!(marked("/properties/enum"));
        assert!(!marked("/properties/f"));
        assert!(marked("/properties/list/items"));
        assert!(!marked("/properties/c/const"), "instance data is never changed");
        assert!(marked("/properties/c/anyOf/0"));
        assert!(marked("/$defs/d"));
        assert!(!marked(""));
    }
}
