//! Typing form fields. A `multipart/form-data` body sends every plain part
//! as text; PocketBase types each by its field (`"42"` for a number is 42,
//! `"true"` for a bool is true, a JSON field's text is parsed), so the
//! same form means the same record on both servers. Here the property's
//! JSON Schema type decides. A text that does not parse stays text, so
//! validation answers with the field's usual error.

use serde_json::{Map, Value};

use super::CompiledCollection;

/// The schema type of a property (the first non-null one of a list).
fn prop_type(prop: &Value) -> Option<&str> {
    match prop.get("type")? {
        Value::String(s) => Some(s),
        Value::Array(a) => a.iter().filter_map(Value::as_str).find(|t| *t != "null"),
        _ => None,
    }
}

fn number(text: &str) -> Option<Value> {
    let t = text.trim();
    if t.is_empty() {
        return Some(Value::from(0));
    }
    if let Ok(i) = t.parse::<i64>() {
        return Some(Value::from(i));
    }
    // An integer literal outside i64 stays text (a clear type error), as a
    // JSON body's does (SPEC §7): never a rounded float.
    if t.trim_start_matches(['-', '+']).bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
}

fn boolean(text: &str) -> Option<Value> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "t" | "on" => Some(Value::Bool(true)),
        "false" | "0" | "f" | "off" | "" => Some(Value::Bool(false)),
        _ => None,
    }
}

/// One text typed by a property (`None`: leave it as text).
fn typed(prop: &Value, text: &str) -> Option<Value> {
    match prop_type(prop)? {
        "integer" | "number" => number(text),
        "boolean" => boolean(text),
        "object" => serde_json::from_str(text).ok(),
        "array" if text.trim().is_empty() => Some(Value::Array(vec![])),
        "array" => {
            let item = prop.get("items").cloned().unwrap_or_default();
            // A JSON list sent as one text, else one item.
            match serde_json::from_str::<Value>(text) {
                Ok(Value::Array(a)) if text.trim_start().starts_with('[') => Some(Value::Array(a)),
                _ => Some(Value::Array(vec![
                    typed(&item, text).unwrap_or(Value::String(text.into()))
                ])),
            }
        }
        "string" => None,
        _ => serde_json::from_str(text).ok(),
    }
}

/// Types the fields named in `plain` (plain form parts) by the collection's
/// properties. Keys may carry PocketBase's modifiers (`n+`, `+tags`,
/// `tags-`): they are typed by their field, a modifier's operand as one
/// item for list fields. File fields are left to `core::files`.
pub fn type_plain(coll: &CompiledCollection, fields: &mut Map<String, Value>, plain: &[String]) {
    let Some(props) = coll.def.schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for key in plain {
        let base = key.trim_end_matches(['+', '-']).trim_start_matches('+');
        let modifier = base.len() != key.len();
        if coll.file_field(base).is_some() {
            continue;
        }
        let Some(prop) = props.get(base) else { continue };
        let Some(value) = fields.get_mut(key) else { continue };
        let item_prop;
        let prop = if modifier && prop_type(prop) == Some("array") {
            item_prop = prop.get("items").cloned().unwrap_or_default();
            &item_prop
        } else {
            prop
        };
        match value {
            Value::String(text) => {
                if let Some(v) = typed(prop, text) {
                    *value = v;
                }
            }
            // Several parts of one name: a list field's items.
            Value::Array(items) if prop_type(prop) == Some("array") => {
                let item = prop.get("items").cloned().unwrap_or_default();
                for v in items.iter_mut() {
                    if let Some(t) = v.as_str().and_then(|text| typed(&item, text)) {
                        *v = t;
                    }
                }
            }
            _ => {}
        }
    }
}
