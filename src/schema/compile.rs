//! Compiling a collection's JSON Schema and turning validation failures into
//! per-field errors keyed by record field path (`title`, `meta.lang`, `tags.0`).

use jsonschema::error::ValidationErrorKind;
use jsonschema::paths::LocationSegment;
use jsonschema::{PatternOptions, Validator};
use serde_json::Value;

use super::{keywords, numbers, SchemaError};

pub use crate::error::{FieldError, FieldErrors};

/// Keywords that would make the validator look outside the schema document.
const REF_KEYWORDS: &[&str] = &["$ref", "$dynamicRef", "$recursiveRef"];

/// Refuses references that are not local (`#…`), so saving a schema never
/// triggers a network request or a file read, whatever the crate's features.
fn check_refs(v: &Value, at: &str) -> Result<(), SchemaError> {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                if REF_KEYWORDS.contains(&k.as_str()) {
                    match child.as_str() {
                        Some(r) if r.starts_with('#') => {}
                        _ => {
                            return Err(SchemaError::Invalid {
                                field: "schema".into(),
                                code: "validation_remote_ref".into(),
                                message: format!(
                                    "{k} at {at} must point inside the schema (start with '#'); remote and file references are not allowed"
                                ),
                            })
                        }
                    }
                }
                check_refs(child, &format!("{at}/{k}"))?;
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                check_refs(child, &format!("{at}/{i}"))?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Every `x-autogenerate` (top-level properties: the record code reads only
/// those) must be a pattern the generator takes, so a bad one is refused at
/// save rather than failing each create.
fn check_autogenerate(schema: &Value) -> Result<(), SchemaError> {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Ok(());
    };
    for (name, p) in props {
        if let Some(pattern) = p.get(keywords::AUTOGENERATE) {
            let problem = match pattern.as_str() {
                Some(text) => super::pocketbase::generate(text).err(),
                None => Some("it must be a string".to_owned()),
            };
            if let Some(problem) = problem {
                return Err(SchemaError::Invalid {
                    field: "schema".into(),
                    code: "validation_invalid_schema".into(),
                    message: format!("property '{name}': x-autogenerate: {problem}"),
                });
            }
        }
    }
    Ok(())
}

/// Compiles `schema`: it must be an object schema (`"type":"object"`), use
/// only local references, and be valid for its draft. Format assertions are
/// on and patterns use the linear-time `regex` engine (no catastrophic
/// backtracking from a user-supplied pattern).
pub fn compile(schema: &Value) -> Result<Validator, SchemaError> {
    let invalid = |message: String| SchemaError::Invalid {
        field: "schema".into(),
        code: "validation_invalid_schema".into(),
        message,
    };
    let obj = schema
        .as_object()
        .ok_or_else(|| invalid("the schema must be a JSON object".into()))?;
    if obj.get("type").and_then(Value::as_str) != Some("object") {
        return Err(invalid(
            "the schema must describe an object: set \"type\": \"object\" at its root".into(),
        ));
    }
    check_refs(schema, "#")?;
    check_autogenerate(schema)?;
    // Integer fields hold exact `i64`s only (see `numbers`): a marker keyword
    // next to each `"type": "integer"`, in a copy (the stored schema, the
    // dashboard and OpenAPI see the schema as written).
    let mut marked = schema.clone();
    numbers::mark_integer_subschemas(&mut marked);
    keywords::expand_blank(&mut marked);
    let mut options = jsonschema::options()
        .should_validate_formats(true)
        .with_pattern_options(PatternOptions::regex())
        .with_keyword(numbers::INT64_KEYWORD, |_, _, _| Ok(Box::new(numbers::Int64)));
    for name in keywords::VALIDATING {
        options = options.with_keyword(*name, move |_, value, _| keywords::build(name, value));
    }
    options
        .build(&marked)
        .map_err(|e| invalid(format!("invalid JSON Schema: {e}")))
}

/// Joins an instance location into a dotted field path.
fn dotted<'a>(segments: impl Iterator<Item = LocationSegment<'a>>) -> String {
    let mut out = String::new();
    for seg in segments {
        if !out.is_empty() {
            out.push('.');
        }
        match seg {
            LocationSegment::Property(p) => out.push_str(&p),
            LocationSegment::Index(i) => out.push_str(&i.to_string()),
        }
    }
    out
}

fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_owned()
    } else {
        format!("{base}.{key}")
    }
}

/// Validates `doc`, returning one error per failing field path (the first
/// failure reported for a path wins, so each field shows one clear message).
pub fn validate(validator: &Validator, doc: &Value) -> Result<(), FieldErrors> {
    if validator.is_valid(doc) {
        return Ok(());
    }
    let mut errors = FieldErrors::new();
    for err in validator.iter_errors(doc) {
        let path = dotted(err.instance_path().iter());
        let (code, message) = describe(err.kind());
        match err.kind() {
            ValidationErrorKind::Required { property } => {
                let name = property
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| property.to_string());
                errors.entry(join(&path, &name)).or_insert(FieldError {
                    code: "validation_required".into(),
                    message: "Missing required value.".into(),
                });
            }
            ValidationErrorKind::AdditionalProperties { unexpected }
            | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
                for key in unexpected {
                    errors.entry(join(&path, key)).or_insert(FieldError {
                        code: "validation_unknown_field".into(),
                        message: "Unknown field: the collection's schema does not allow it.".into(),
                    });
                }
            }
            // A blank required value says so, whatever else it fails.
            ValidationErrorKind::Not { .. } if code == "validation_required" => {
                errors.insert(path, FieldError { code, message });
            }
            _ => {
                errors.entry(path).or_insert(FieldError { code, message });
            }
        }
    }
    if errors.is_empty() {
        errors.insert(
            String::new(),
            FieldError {
                code: "validation_invalid_value".into(),
                message: "The record does not match the collection's schema.".into(),
            },
        );
    }
    Err(errors)
}

fn describe(kind: &ValidationErrorKind) -> (String, String) {
    use ValidationErrorKind as K;
    let (code, message) = match kind {
        K::Type { kind } => (
            "validation_invalid_type",
            format!("Must be of type {kind:?}.")
                .replace("Single(", "")
                .replace(')', ""),
        ),
        K::Format { format } => ("validation_invalid_format", format!("Must be a valid {format}.")),
        K::MinLength { limit } => ("validation_min_length", format!("Must be at least {limit} characters.")),
        K::MaxLength { limit } => ("validation_max_length", format!("Must be at most {limit} characters.")),
        K::Minimum { limit } => ("validation_min", format!("Must be at least {limit}.")),
        K::Maximum { limit } => ("validation_max", format!("Must be at most {limit}.")),
        K::ExclusiveMinimum { limit } => ("validation_min", format!("Must be greater than {limit}.")),
        K::ExclusiveMaximum { limit } => ("validation_max", format!("Must be less than {limit}.")),
        K::MinItems { limit } => ("validation_min_items", format!("Must have at least {limit} items.")),
        K::MaxItems { limit } => ("validation_max_items", format!("Must have at most {limit} items.")),
        K::Pattern { pattern } => (
            "validation_pattern_mismatch",
            format!("Must match the pattern {pattern}."),
        ),
        K::Enum { options } => ("validation_not_in_enum", format!("Must be one of {options}.")),
        K::Constant { expected_value } => ("validation_invalid_value", format!("Must be {expected_value}.")),
        K::UniqueItems => ("validation_duplicate_items", "Items must be unique.".to_owned()),
        K::Custom { keyword, message } if keyword == numbers::INT64_KEYWORD => {
            (numbers::INVALID_NUMBER, message.clone())
        }
        K::Custom { keyword, message } if keywords::VALIDATING.contains(&keyword.as_str()) => {
            match message.split_once(": ") {
                Some((code, text)) => (code, text.to_owned()),
                None => ("validation_invalid_value", message.clone()),
            }
        }
        K::Not { schema } if schema.get("const").is_some() => ("validation_required", "Cannot be blank.".to_owned()),
        K::MultipleOf { .. } => (
            "validation_invalid_value",
            "Must be a multiple of the allowed step.".to_owned(),
        ),
        _ => ("validation_invalid_value", String::new()),
    };
    let message = if message.is_empty() {
        "Invalid value.".to_owned()
    } else {
        message
    };
    (code.to_owned(), message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_one_entry_per_field() {
        let v = compile(&json!({
            "type":"object",
            "properties":{"title":{"type":"string","maxLength":3},"meta":{"type":"object","properties":{"lang":{"type":"string"}}},"tags":{"type":"array","items":{"type":"string"}}},
            "required":["title","n"],
            "additionalProperties": false
        }))
        .unwrap();
        let errs = validate(&v, &json!({"title":"long","meta":{"lang":1},"tags":["a",2],"x":1})).unwrap_err();
        assert_eq!(errs["title"].code, "validation_max_length");
        assert_eq!(errs["meta.lang"].code, "validation_invalid_type");
        assert_eq!(errs["tags.1"].code, "validation_invalid_type");
        assert_eq!(errs["n"].code, "validation_required");
        assert_eq!(errs["x"].code, "validation_unknown_field");
    }

    #[test]
    fn integer_fields_hold_exact_i64s() {
        let v = compile(&json!({
            "type":"object",
            "properties":{"n":{"type":"integer"},"f":{"type":"number"},"l":{"type":"array","items":{"$ref":"#/$defs/i"}}},
            "$defs":{"i":{"type":"integer"}}
        }))
        .unwrap();
        let p53 = 1i64 << 53;
        for ok in [
            json!({"n": i64::MAX, "l": [i64::MIN, p53 + 1]}),
            json!({"n": 5.0, "f": 1.8446744073709552e19}),
            json!({"f": u64::MAX}),
        ] {
            assert_eq!(validate(&v, &ok), Ok(()), "{ok}");
        }
        let errs = validate(&v, &json!({"n": i64::MAX as u64 + 1, "l": [1, 1e19]})).unwrap_err();
        assert_eq!(errs["n"].code, "validation_invalid_number");
        assert_eq!(errs["l.1"].code, "validation_invalid_number");
        let errs = validate(&v, &json!({"n": p53 as f64})).unwrap_err();
        assert_eq!(errs["n"].code, "validation_invalid_number");
        // A fraction is still the type's error.
        assert_eq!(
            validate(&v, &json!({"n": 1.5})).unwrap_err()["n"].code,
            "validation_invalid_type"
        );
    }

    #[test]
    fn refuses_remote_refs_and_non_object_schemas() {
        assert!(compile(&json!({"type":"object","properties":{"a":{"$ref":"https://example.com/s.json"}}})).is_err());
        assert!(compile(&json!({"type":"object","properties":{"a":{"$ref":"file:///etc/passwd"}}})).is_err());
        assert!(compile(&json!({"type":"string"})).is_err());
        assert!(compile(
            &json!({"type":"object","$defs":{"s":{"type":"string"}},"properties":{"a":{"$ref":"#/$defs/s"}}})
        )
        .is_ok());
    }
}
