//! PocketBase's collection format ↔ Basalt's, both ways (pure: no I/O).
//!
//! A PocketBase collection lists its fields (`fields: [{name, type, ...}]`)
//! and SQL index statements; Basalt's source of truth is one JSON Schema plus
//! index definitions. Each field becomes one top-level property:
//!
//! | PocketBase | JSON Schema property |
//! |---|---|
//! | text `{min,max,pattern,autogeneratePattern}` | string `minLength`/`maxLength`/`pattern`, `x-autogenerate` |
//! | editor `{maxSize}` | string, `x-maxSize` |
//! | number `{min,max,onlyInt}` | `number` (`integer` if onlyInt), `minimum`/`maximum` |
//! | bool | boolean |
//! | email / url `{onlyDomains,exceptDomains}` | string `format: email`/`uri`, `x-onlyDomains`/`x-exceptDomains` |
//! | date `{min,max}` | string, `x-date: {min,max}` |
//! | autodate `{onCreate,onUpdate}` | string, `x-autodate` (the server sets it) |
//! | select `{values,maxSelect}` | string `enum`, or array of them with `maxItems` + `uniqueItems` |
//! | relation `{collectionId,cascadeDelete,minSelect,maxSelect}` | string or array with `x-relation`, `minItems`/`maxItems` |
//! | json `{maxSize}` | any value, `x-maxSize` |
//! | geoPoint | object `{lon, lat}` in range |
//!
//! Common options: `required` is PocketBase's "not blank" (the property is
//! in the root `required` list and has `not: {const: <blank>}`); an optional
//! field whose constraints would refuse its blank value gets `x-blank` (see
//! `keywords`); `hidden` is `x-hidden`; the rest (`id` when not the default,
//! `system`, `presentable`, `help`, `convertURLs`, the type when it cannot be
//! inferred) is kept in the annotation `x-field`. `file` fields are
//! `x-file` properties (see `schema::files`). Custom `password` fields
//! cannot be expressed yet and are refused with a 400.

use serde_json::{json, Map, Value};

use super::collection::{AuthOptions, CollectionType, IndexSpec};
use super::files::FILE;
use super::keywords::{AUTODATE, AUTOGENERATE, BLANK, DATE, EXCEPT_DOMAINS, MAX_SIZE, ONLY_DOMAINS};
use super::SchemaError;

/// The annotation keeping PocketBase-only field metadata.
pub const FIELD_META: &str = "x-field";

/// Auth-collection options PocketBase has at the top level of a collection.
pub const AUTH_KEYS: &[&str] = &[
    "passwordAuth",
    "authToken",
    "passwordResetToken",
    "emailChangeToken",
    "verificationToken",
    "fileToken",
    "otp",
    "mfa",
    "oauth2",
    "authAlert",
    "verificationTemplate",
    "resetPasswordTemplate",
    "confirmEmailChangeTemplate",
];

/// Most fields one collection may list (each is compiled on save: bounded work).
pub const MAX_FIELDS: usize = 1000;

/// Maps a relation target (name or id) to the id PocketBase shows.
pub type RelationIds<'a> = &'a dyn Fn(&str) -> String;

fn invalid(field: impl Into<String>, message: impl Into<String>) -> SchemaError {
    SchemaError::Invalid {
        field: field.into(),
        code: "validation_invalid_value".into(),
        message: message.into(),
    }
}

/// CRC-32 (IEEE), as PocketBase uses for default field ids.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// PocketBase's default id of a field: its type followed by the CRC-32 of its name.
pub fn default_field_id(kind: &str, name: &str) -> String {
    format!("{kind}{}", crc32(name.as_bytes()))
}

/// Field names Basalt manages itself, per collection type, with the
/// PocketBase type each must have (a PocketBase body lists them; they are
/// skipped when building the schema).
fn system_field_type(name: &str, kind: CollectionType) -> Option<&'static str> {
    match (name, kind) {
        ("id", _) => Some("text"),
        ("created" | "updated", _) => Some("autodate"),
        ("password", CollectionType::Auth) => Some("password"),
        ("tokenKey", CollectionType::Auth) => Some("text"),
        ("email", CollectionType::Auth) => Some("email"),
        ("emailVisibility" | "verified", CollectionType::Auth) => Some("bool"),
        _ => None,
    }
}

/// Names no field may take (Basalt's record envelope).
const RESERVED: &[&str] = &[
    "collectionId",
    "collectionName",
    "expand",
    "passwordConfirm",
    "oldPassword",
];

const COMMON: &[&str] = &[
    "name",
    "id",
    "type",
    "system",
    "hidden",
    "presentable",
    "required",
    "help",
];

fn options_of(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "text" => &["min", "max", "pattern", "autogeneratePattern", "primaryKey"],
        "editor" => &["maxSize", "convertURLs"],
        "number" => &["min", "max", "onlyInt"],
        "bool" | "geoPoint" => &[],
        "email" | "url" => &["onlyDomains", "exceptDomains"],
        "date" => &["min", "max"],
        "autodate" => &["onCreate", "onUpdate"],
        "select" => &["values", "maxSelect"],
        "relation" => &["collectionId", "cascadeDelete", "minSelect", "maxSelect"],
        "json" => &["maxSize"],
        "password" => &["min", "max", "pattern", "cost"],
        "file" => &["maxSelect", "maxSize", "mimeTypes", "thumbs", "protected"],
        _ => return None,
    })
}

/// Reads one field's options with errors naming `fields.N.option`.
struct Opts<'a> {
    at: String,
    map: &'a Map<String, Value>,
}

impl Opts<'_> {
    fn err(&self, key: &str, message: &str) -> SchemaError {
        invalid(format!("{}.{key}", self.at), message)
    }
    fn bool(&self, key: &str) -> Result<bool, SchemaError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            _ => Err(self.err(key, "must be true or false")),
        }
    }
    fn count(&self, key: &str) -> Result<u64, SchemaError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(0),
            Some(v) => v
                .as_u64()
                .or_else(|| {
                    v.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1e15)
                        .map(|f| f as u64)
                })
                .ok_or_else(|| self.err(key, "must be a non-negative integer")),
        }
    }
    fn number(&self, key: &str) -> Result<Option<Value>, SchemaError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v @ Value::Number(_)) => Ok(Some(v.clone())),
            _ => Err(self.err(key, "must be a number or null")),
        }
    }
    fn string(&self, key: &str) -> Result<String, SchemaError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            _ => Err(self.err(key, "must be a string")),
        }
    }
    fn strings(&self, key: &str) -> Result<Vec<String>, SchemaError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(vec![]),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| self.err(key, "must be a list of strings")),
            _ => Err(self.err(key, "must be a list of strings")),
        }
    }
}

fn is_field_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// One PocketBase field → `(name, property, required)`; `None` for a
/// system field Basalt manages itself.
fn field_to_property(
    i: usize,
    field: &Value,
    kind: CollectionType,
) -> Result<Option<(String, Value, bool)>, SchemaError> {
    let at = format!("fields.{i}");
    let map = field
        .as_object()
        .ok_or_else(|| invalid(&at, "a field must be an object {name, type, ...}"))?;
    let o = Opts { at: at.clone(), map };
    let name = o.string("name")?;
    if !is_field_name(&name) {
        return Err(o.err("name", "a field name must be 1-255 characters of A-Z, a-z, 0-9 and _"));
    }
    let ty = o.string("type")?;
    let allowed = options_of(&ty).ok_or_else(|| {
        o.err(
            "type",
            &format!("unknown field type '{ty}' (known: text, editor, number, bool, email, url, date, autodate, select, relation, json, geoPoint, password, file)"),
        )
    })?;
    if let Some(k) = map
        .keys()
        .find(|k| !COMMON.contains(&k.as_str()) && !allowed.contains(&k.as_str()))
    {
        return Err(o.err(k, &format!("unknown option '{k}' for a {ty} field")));
    }
    if let Some(expected) = system_field_type(&name, kind) {
        if ty != expected {
            return Err(o.err(
                "type",
                &format!("'{name}' is a system field of type {expected}; it cannot be a {ty} field"),
            ));
        }
        return Ok(None);
    }
    if RESERVED.contains(&name.as_str()) {
        return Err(o.err("name", &format!("'{name}' is reserved")));
    }
    let required = o.bool("required")? && ty != "autodate";
    let (mut prop, blank, needs_blank) = typed_property(&o, &ty, &name)?;
    let p = prop.as_object_mut().expect("an object property");
    if required {
        p.insert("not".into(), json!({ "const": blank }));
    } else if needs_blank {
        p.insert(BLANK.into(), blank);
    }
    if o.bool("hidden")? {
        p.insert("x-hidden".into(), Value::Bool(true));
    }
    let meta = field_meta(&o, &ty, &name, &prop)?;
    if !meta.is_empty() {
        prop.as_object_mut()
            .expect("object")
            .insert(FIELD_META.into(), Value::Object(meta));
    }
    Ok(Some((name, prop, required)))
}

/// The property of one field by type, its blank value, and whether the
/// blank value needs `x-blank` to pass the property's constraints.
fn typed_property(o: &Opts, ty: &str, name: &str) -> Result<Built, SchemaError> {
    Ok(match ty {
        "text" => text_property(o)?,
        "editor" => {
            let mut p = json!({"type": "string"});
            put_nonzero(&mut p, MAX_SIZE, o.count("maxSize")?);
            (p, json!(""), false)
        }
        "number" => number_property(o)?,
        "bool" => (json!({"type": "boolean"}), json!(false), false),
        "email" | "url" => domain_property(o, ty)?,
        "date" => {
            let mut bounds = Map::new();
            for key in ["min", "max"] {
                let v = o.string(key)?;
                if !v.is_empty() {
                    if super::keywords::normal_date(&v).is_none() {
                        return Err(o.err(key, "must be a date as YYYY-MM-DD HH:MM:SS.mmmZ"));
                    }
                    bounds.insert(key.into(), Value::String(v));
                }
            }
            (json!({"type": "string", DATE: bounds}), json!(""), true)
        }
        "autodate" => {
            let (on_create, on_update) = (o.bool("onCreate")?, o.bool("onUpdate")?);
            let p = json!({"type": "string", AUTODATE: {"onCreate": on_create, "onUpdate": on_update}});
            (p, Value::Null, false)
        }
        "select" => select_property(o)?,
        "relation" => relation_property(o)?,
        "json" => {
            let mut p = json!({});
            put_nonzero(&mut p, MAX_SIZE, o.count("maxSize")?);
            (p, Value::Null, false)
        }
        "geoPoint" => (
            json!({"type": "object", "properties": {
                "lon": {"type": "number", "minimum": -180, "maximum": 180},
                "lat": {"type": "number", "minimum": -90, "maximum": 90}},
                "required": ["lon", "lat"], "additionalProperties": false}),
            json!({"lon": 0, "lat": 0}),
            false,
        ),
        "file" => file_property(o)?,
        _ => {
            return Err(o.err(
                "type",
                &format!("field '{name}': password fields exist only as the auth collections' own 'password' (Basalt does not hash other fields)"),
            ))
        }
    })
}

/// The `x-field` annotation: what the schema cannot say by itself.
fn field_meta(o: &Opts, ty: &str, name: &str, prop: &Value) -> Result<Map<String, Value>, SchemaError> {
    let mut meta = Map::new();
    if infer_type(prop) != ty {
        meta.insert("type".into(), json!(ty));
    }
    let id = o.string("id")?;
    if !id.is_empty() && id != default_field_id(ty, name) {
        meta.insert("id".into(), json!(id));
    }
    for key in ["system", "presentable", "convertURLs"] {
        if o.bool(key)? {
            meta.insert(key.into(), Value::Bool(true));
        }
    }
    let help = o.string("help")?;
    if !help.is_empty() {
        meta.insert("help".into(), json!(help));
    }
    Ok(meta)
}

fn put_nonzero(p: &mut Value, key: &str, n: u64) {
    if n > 0 {
        p.as_object_mut().expect("object").insert(key.into(), json!(n));
    }
}

type Built = (Value, Value, bool);

fn text_property(o: &Opts) -> Result<Built, SchemaError> {
    if o.bool("primaryKey")? {
        return Err(o.err("primaryKey", "only the id field is the primary key"));
    }
    let (min, max) = (o.count("min")?, o.count("max")?);
    if max > 0 && min > max {
        return Err(o.err("min", "must not be greater than max"));
    }
    let mut p = json!({"type": "string"});
    put_nonzero(&mut p, "minLength", min);
    put_nonzero(&mut p, "maxLength", max);
    let pattern = o.string("pattern")?;
    if !pattern.is_empty() {
        p["pattern"] = json!(pattern);
    }
    let auto = o.string("autogeneratePattern")?;
    if !auto.is_empty() {
        generate(&auto).map_err(|e| o.err("autogeneratePattern", &e))?;
        p[AUTOGENERATE] = json!(auto);
    }
    Ok((p, json!(""), min > 0 || !pattern.is_empty()))
}

fn number_property(o: &Opts) -> Result<Built, SchemaError> {
    let ty = if o.bool("onlyInt")? { "integer" } else { "number" };
    let mut p = json!({ "type": ty });
    let (min, max) = (o.number("min")?, o.number("max")?);
    let below_zero = |v: &Option<Value>, sign: f64| v.as_ref().and_then(Value::as_f64).is_some_and(|f| f * sign > 0.0);
    let needs_blank = below_zero(&min, 1.0) || below_zero(&max, -1.0);
    if let (Some(a), Some(b)) = (
        min.as_ref().and_then(Value::as_f64),
        max.as_ref().and_then(Value::as_f64),
    ) {
        if a > b {
            return Err(o.err("min", "must not be greater than max"));
        }
    }
    if let Some(v) = min {
        p["minimum"] = v;
    }
    if let Some(v) = max {
        p["maximum"] = v;
    }
    Ok((p, json!(0), needs_blank))
}

fn domain_property(o: &Opts, ty: &str) -> Result<Built, SchemaError> {
    let format = if ty == "email" { "email" } else { "uri" };
    let mut p = json!({"type": "string", "format": format});
    let (only, except) = (o.strings("onlyDomains")?, o.strings("exceptDomains")?);
    if !only.is_empty() && !except.is_empty() {
        return Err(o.err("onlyDomains", "onlyDomains and exceptDomains cannot both be set"));
    }
    if !only.is_empty() {
        p[ONLY_DOMAINS] = json!(only);
    }
    if !except.is_empty() {
        p[EXCEPT_DOMAINS] = json!(except);
    }
    Ok((p, json!(""), true))
}

fn select_property(o: &Opts) -> Result<Built, SchemaError> {
    let values = o.strings("values")?;
    if values.is_empty() {
        return Err(o.err("values", "a select field needs at least one value"));
    }
    let mut seen = std::collections::HashSet::new();
    if values.iter().any(|v| v.is_empty() || !seen.insert(v)) {
        return Err(o.err("values", "values must be distinct and not empty"));
    }
    let max = o.count("maxSelect")?;
    if max as usize > values.len() {
        return Err(o.err("maxSelect", "must not exceed the number of values"));
    }
    if max <= 1 {
        return Ok((json!({"type": "string", "enum": values}), json!(""), true));
    }
    let p = json!({"type": "array", "items": {"type": "string", "enum": values}, "maxItems": max, "uniqueItems": true});
    Ok((p, json!([]), false))
}

/// A `file` field: one name (`maxSelect` ≤ 1) or a list of names.
fn file_property(o: &Opts) -> Result<Built, SchemaError> {
    let max = o.count("maxSelect")?;
    let mut opts = Map::new();
    put_nonzero_in(&mut opts, "maxSize", o.count("maxSize")?);
    let mime_types = o.strings("mimeTypes")?;
    if !mime_types.is_empty() {
        opts.insert("mimeTypes".into(), json!(mime_types));
    }
    let thumbs = o.strings("thumbs")?;
    if !thumbs.is_empty() {
        opts.insert("thumbs".into(), json!(thumbs));
    }
    if o.bool("protected")? {
        opts.insert("protected".into(), json!(true));
    }
    let built = if max <= 1 {
        (json!({"type": "string", FILE: opts}), json!(""), false)
    } else {
        opts.insert("maxSelect".into(), json!(max));
        let p = json!({"type": "array", "items": {"type": "string"}, "maxItems": max, FILE: opts});
        (p, json!([]), false)
    };
    // The options are checked as any x-file is (sizes, types, thumbs).
    super::files::file_spec(&built.0, false).map_err(|e| {
        // "x-file.thumbs: ..." names the option at fault.
        let key = e
            .strip_prefix("x-file.")
            .and_then(|r| r.split([':', ' ']).next())
            .unwrap_or("maxSelect");
        o.err(key, &e)
    })?;
    Ok(built)
}

fn put_nonzero_in(m: &mut Map<String, Value>, key: &str, n: u64) {
    if n > 0 {
        m.insert(key.into(), json!(n));
    }
}

fn relation_property(o: &Opts) -> Result<Built, SchemaError> {
    let target = o.string("collectionId")?;
    if target.is_empty() {
        return Err(o.err("collectionId", "a relation field needs the id of its collection"));
    }
    let mut rel = json!({ "collection": target });
    if o.bool("cascadeDelete")? {
        rel["cascadeDelete"] = json!(true);
    }
    let (min, max) = (o.count("minSelect")?, o.count("maxSelect")?);
    if min > max.max(1) {
        return Err(o.err("minSelect", "must not be greater than maxSelect"));
    }
    if max <= 1 {
        return Ok((json!({"type": "string", "x-relation": rel}), json!(""), false));
    }
    let mut p = json!({"type": "array", "items": {"type": "string"}, "x-relation": rel});
    put_nonzero(&mut p, "minItems", min);
    p["maxItems"] = json!(max);
    Ok((p, json!([]), min > 0))
}

/// Builds the schema for a PocketBase `fields` list. `base` is the schema
/// it replaces (or `{}`): its root keywords other than `properties` and
/// `required` are kept, and a property whose field is unchanged keeps its
/// exact form (descriptions and other hand-written keywords survive a
/// round trip through a PocketBase tool).
pub fn fields_to_schema(fields: &Value, kind: CollectionType, base: &Value) -> Result<Value, SchemaError> {
    let list = fields
        .as_array()
        .ok_or_else(|| invalid("fields", "fields must be a list of field objects"))?;
    if list.len() > MAX_FIELDS {
        return Err(invalid(
            "fields",
            format!("a collection has at most {MAX_FIELDS} fields"),
        ));
    }
    let old_props = base.get("properties").and_then(Value::as_object);
    let mut props = Map::new();
    let mut required = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, field) in list.iter().enumerate() {
        let Some((name, prop, req)) = field_to_property(i, field, kind)? else {
            continue;
        };
        if !names.insert(name.to_ascii_lowercase()) {
            return Err(invalid(
                format!("fields.{i}.name"),
                format!("duplicated field name '{name}'"),
            ));
        }
        super::compile::compile(&json!({"type": "object", "properties": {&name: &prop}}))
            .map_err(|e| invalid(format!("fields.{i}"), format!("field '{name}': {e}")))?;
        let keep = old_props.and_then(|m| m.get(&name)).filter(|old| {
            let same = |p: &Value| property_to_field(&name, p, req, &|s: &str| s.to_owned());
            same(old) == same(&prop)
        });
        props.insert(name.clone(), keep.cloned().unwrap_or(prop));
        if req {
            required.push(Value::String(name));
        }
    }
    let mut out = Map::new();
    out.insert("type".into(), json!("object"));
    if let Some(root) = base.as_object() {
        for (k, v) in root {
            if !matches!(k.as_str(), "type" | "properties" | "required") {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out.insert("properties".into(), Value::Object(props));
    if !required.is_empty() {
        out.insert("required".into(), Value::Array(required));
    }
    Ok(Value::Object(out))
}

/// The PocketBase type a property reads as (its `x-field.type` aside).
fn infer_type(p: &Value) -> &'static str {
    let ty = p.get("type").and_then(Value::as_str).unwrap_or_default();
    if p.get("x-relation").is_some() {
        return "relation";
    }
    if p.get(FILE).is_some() {
        return "file";
    }
    if p.get(AUTODATE).is_some() {
        return "autodate";
    }
    if p.get(DATE).is_some() {
        return "date";
    }
    match ty {
        "string" => match p.get("format").and_then(Value::as_str) {
            Some("email") => "email",
            Some("uri" | "url" | "iri") => "url",
            _ if p.get("enum").is_some() => "select",
            _ => "text",
        },
        "array" if p.pointer("/items/enum").is_some() => "select",
        "number" | "integer" => "number",
        "boolean" => "bool",
        "object" if is_geo(p) => "geoPoint",
        _ => "json",
    }
}

fn is_geo(p: &Value) -> bool {
    p.get("properties")
        .and_then(Value::as_object)
        .is_some_and(|m| m.len() == 2 && m.contains_key("lon") && m.contains_key("lat"))
}

fn num_or_zero(v: Option<&Value>) -> Value {
    v.filter(|n| n.is_number()).cloned().unwrap_or(json!(0))
}

/// One property → its PocketBase field (keys sorted, as PocketBase sends them).
fn property_to_field(name: &str, p: &Value, required: bool, ids: RelationIds) -> Value {
    let meta = p.get(FIELD_META).cloned().unwrap_or_default();
    let ty = meta
        .get("type")
        .and_then(Value::as_str)
        .and_then(|t| options_of(t).map(|_| t))
        .unwrap_or_else(|| infer_type(p));
    let flag = |k: &str| Value::Bool(meta.get(k).and_then(Value::as_bool).unwrap_or(false));
    let mut f = Map::new();
    f.insert("name".into(), json!(name));
    f.insert("type".into(), json!(ty));
    f.insert(
        "id".into(),
        meta.get("id")
            .cloned()
            .unwrap_or_else(|| json!(default_field_id(ty, name))),
    );
    f.insert("system".into(), flag("system"));
    f.insert(
        "hidden".into(),
        Value::Bool(p.get("x-hidden").and_then(Value::as_bool) == Some(true)),
    );
    f.insert("presentable".into(), flag("presentable"));
    if ty != "autodate" {
        f.insert("required".into(), Value::Bool(required));
        f.insert("help".into(), meta.get("help").cloned().unwrap_or(json!("")));
    }
    type_options(&mut f, ty, p, &meta, ids);
    sorted(f)
}

/// The type-specific options of a field, read back from its property.
fn type_options(f: &mut Map<String, Value>, ty: &str, p: &Value, meta: &Value, ids: RelationIds) {
    let flag = |k: &str| Value::Bool(meta.get(k).and_then(Value::as_bool).unwrap_or(false));
    let strings = |k: &str| p.get(k).cloned().unwrap_or(json!([]));
    match ty {
        "text" => {
            f.insert("min".into(), num_or_zero(p.get("minLength")));
            f.insert("max".into(), num_or_zero(p.get("maxLength")));
            f.insert("pattern".into(), p.get("pattern").cloned().unwrap_or(json!("")));
            f.insert(
                "autogeneratePattern".into(),
                p.get(AUTOGENERATE).cloned().unwrap_or(json!("")),
            );
            f.insert("primaryKey".into(), json!(false));
        }
        "editor" => {
            f.insert("maxSize".into(), num_or_zero(p.get(MAX_SIZE)));
            f.insert("convertURLs".into(), flag("convertURLs"));
        }
        "number" => {
            f.insert("min".into(), p.get("minimum").cloned().unwrap_or(Value::Null));
            f.insert("max".into(), p.get("maximum").cloned().unwrap_or(Value::Null));
            f.insert(
                "onlyInt".into(),
                json!(p.get("type").and_then(Value::as_str) == Some("integer")),
            );
        }
        "email" | "url" => {
            f.insert("onlyDomains".into(), strings(ONLY_DOMAINS));
            f.insert("exceptDomains".into(), strings(EXCEPT_DOMAINS));
        }
        "date" => {
            let bound = |k: &str| p.get(DATE).and_then(|d| d.get(k)).cloned().unwrap_or(json!(""));
            f.insert("min".into(), bound("min"));
            f.insert("max".into(), bound("max"));
        }
        "autodate" => {
            let flag = |k: &str| json!(p.get(AUTODATE).and_then(|d| d.get(k)).and_then(Value::as_bool) == Some(true));
            f.insert("onCreate".into(), flag("onCreate"));
            f.insert("onUpdate".into(), flag("onUpdate"));
        }
        "select" => {
            let multi = p.get("type").and_then(Value::as_str) == Some("array");
            let values = if multi { p.pointer("/items/enum") } else { p.get("enum") };
            f.insert("values".into(), values.cloned().unwrap_or(json!([])));
            let max = if multi {
                num_or_zero(p.get("maxItems"))
            } else {
                json!(1)
            };
            f.insert("maxSelect".into(), max);
        }
        "relation" => {
            let rel = p.get("x-relation").cloned().unwrap_or_default();
            let target = rel.get("collection").and_then(Value::as_str).unwrap_or_default();
            f.insert("collectionId".into(), json!(ids(target)));
            f.insert(
                "cascadeDelete".into(),
                json!(rel.get("cascadeDelete").and_then(Value::as_bool) == Some(true)),
            );
            let multi = p.get("type").and_then(Value::as_str) == Some("array");
            f.insert("minSelect".into(), num_or_zero(p.get("minItems")));
            let max = if multi {
                p.get("maxItems").cloned().unwrap_or(json!(999))
            } else {
                json!(1)
            };
            f.insert("maxSelect".into(), max);
        }
        "json" => {
            f.insert("maxSize".into(), num_or_zero(p.get(MAX_SIZE)));
        }
        "file" => file_options(f, p),
        _ => {}
    }
}

/// A file field's options, read back from its property as PocketBase
/// shows them (defaults filled in).
fn file_options(f: &mut Map<String, Value>, p: &Value) {
    let spec = super::files::file_spec(p, false).ok().flatten();
    let opts = p.get(FILE).cloned().unwrap_or_default();
    let list = |k: &str| opts.get(k).cloned().unwrap_or(json!([]));
    f.insert("maxSelect".into(), json!(spec.as_ref().map_or(1, |s| s.max_select)));
    f.insert("maxSize".into(), json!(spec.as_ref().map_or(0, |s| s.max_size)));
    f.insert("mimeTypes".into(), list("mimeTypes"));
    f.insert("thumbs".into(), list("thumbs"));
    f.insert(
        "protected".into(),
        json!(opts.get("protected").and_then(Value::as_bool) == Some(true)),
    );
}

fn sorted(m: Map<String, Value>) -> Value {
    let mut entries: Vec<(String, Value)> = m.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Value::Object(entries.into_iter().collect())
}

/// The system fields PocketBase shows before the user fields.
fn leading_system_fields(kind: CollectionType) -> Vec<Value> {
    let field = |v: Value| sorted(v.as_object().cloned().unwrap_or_default());
    let mut out = vec![field(json!({
        "autogeneratePattern": "[a-z0-9]{15}", "help": "", "hidden": false,
        "id": default_field_id("text", "id"), "max": 15, "min": 15, "name": "id",
        "pattern": "^[a-z0-9]+$", "presentable": false, "primaryKey": true,
        "required": true, "system": true, "type": "text"}))];
    if kind == CollectionType::Auth {
        out.push(field(json!({
            "cost": 0, "help": "", "hidden": true, "id": default_field_id("password", "password"),
            "max": 0, "min": 8, "name": "password", "pattern": "", "presentable": false,
            "required": true, "system": true, "type": "password"})));
        out.push(field(json!({
            "autogeneratePattern": "[a-zA-Z0-9]{50}", "help": "", "hidden": true,
            "id": default_field_id("text", "tokenKey"), "max": 60, "min": 30, "name": "tokenKey",
            "pattern": "", "presentable": false, "primaryKey": false, "required": true,
            "system": true, "type": "text"})));
        out.push(field(json!({
            "exceptDomains": [], "help": "", "hidden": false, "id": default_field_id("email", "email"),
            "name": "email", "onlyDomains": [], "presentable": false, "required": true,
            "system": true, "type": "email"})));
        for name in ["emailVisibility", "verified"] {
            out.push(field(json!({
                "help": "", "hidden": false, "id": default_field_id("bool", name), "name": name,
                "presentable": false, "required": false, "system": true, "type": "bool"})));
        }
    }
    out
}

/// `created` and `updated`, which PocketBase shows as autodate fields.
fn trailing_system_fields() -> Vec<Value> {
    [("created", false), ("updated", true)]
        .into_iter()
        .map(|(name, on_update)| {
            sorted(
                json!({"hidden": false, "id": default_field_id("autodate", name), "name": name,
                    "onCreate": true, "onUpdate": on_update, "presentable": false,
                    "system": false, "type": "autodate"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            )
        })
        .collect()
}

/// PocketBase's `fields` view of a collection's schema, system fields included.
pub fn schema_to_fields(schema: &Value, kind: CollectionType, ids: RelationIds) -> Vec<Value> {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out = leading_system_fields(kind);
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, p) in props {
            out.push(property_to_field(name, p, required.contains(&name.as_str()), ids));
        }
    }
    out.extend(trailing_system_fields());
    out
}

/// `fields` as the schema they build would show them (for comparing a sent
/// `fields` list with a sent `schema`); `None` if they do not map.
pub fn normalise_fields(fields: &Value, kind: CollectionType, ids: RelationIds) -> Option<Vec<Value>> {
    let schema = fields_to_schema(fields, kind, &json!({})).ok()?;
    Some(schema_to_fields(&schema, kind, ids))
}

// ---- indexes -------------------------------------------------------------

#[derive(Debug, PartialEq)]
enum Tok {
    Word(String),
    Quoted(String),
    Punct(char),
}

fn tokenize(sql: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = sql.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c.is_ascii_alphanumeric() || c == '_' {
            let mut w = String::new();
            while let Some(&c) = chars.peek().filter(|c| c.is_ascii_alphanumeric() || **c == '_') {
                w.push(c);
                chars.next();
            }
            out.push(Tok::Word(w));
        } else if let Some(close) = match c {
            '`' => Some('`'),
            '"' => Some('"'),
            '[' => Some(']'),
            _ => None,
        } {
            chars.next();
            let mut w = String::new();
            loop {
                match chars.next() {
                    Some(ch) if ch == close => break,
                    Some(ch) => w.push(ch),
                    None => return Err("an unterminated quoted name".into()),
                }
            }
            out.push(Tok::Quoted(w));
        } else if matches!(c, '(' | ')' | ',' | ';' | '!' | '=' | '\'' | '.') {
            out.push(Tok::Punct(c));
            chars.next();
        } else {
            return Err(format!("unexpected character '{c}'"));
        }
    }
    Ok(out)
}

/// A parsed PocketBase index statement.
struct Statement {
    unique: bool,
    name: String,
    columns: Vec<String>,
    /// Tokens after the column list (a `WHERE` clause), if any.
    has_where: bool,
}

fn parse_statement(sql: &str) -> Result<Statement, String> {
    let toks = tokenize(sql)?;
    let mut it = toks.into_iter().peekable();
    let keyword = |it: &mut std::iter::Peekable<std::vec::IntoIter<Tok>>, kw: &str| -> bool {
        match it.peek() {
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw) => {
                it.next();
                true
            }
            _ => false,
        }
    };
    if !keyword(&mut it, "CREATE") {
        return Err("an index must start with CREATE [UNIQUE] INDEX".into());
    }
    let unique = keyword(&mut it, "UNIQUE");
    if !keyword(&mut it, "INDEX") {
        return Err("expected INDEX after CREATE [UNIQUE]".into());
    }
    if keyword(&mut it, "IF") && !(keyword(&mut it, "NOT") && keyword(&mut it, "EXISTS")) {
        return Err("expected IF NOT EXISTS".into());
    }
    let name = match it.next() {
        Some(Tok::Word(w) | Tok::Quoted(w)) => w,
        _ => return Err("expected the index name".into()),
    };
    if !keyword(&mut it, "ON") {
        return Err("expected ON <collection>".into());
    }
    match it.next() {
        Some(Tok::Word(_) | Tok::Quoted(_)) => {}
        _ => return Err("expected the collection name after ON".into()),
    }
    if it.next() != Some(Tok::Punct('(')) {
        return Err("expected '(' and the indexed columns".into());
    }
    let mut columns = Vec::new();
    loop {
        let col = match it.next() {
            Some(Tok::Word(w) | Tok::Quoted(w)) if !w.is_empty() => w,
            _ => return Err("expected a column name (expressions are not supported)".into()),
        };
        let desc = if keyword(&mut it, "DESC") {
            true
        } else {
            keyword(&mut it, "ASC");
            false
        };
        columns.push(if desc { format!("-{col}") } else { col });
        match it.next() {
            Some(Tok::Punct(',')) => continue,
            Some(Tok::Punct(')')) => break,
            _ => return Err("expected ',' or ')' after a column (COLLATE and expressions are not supported)".into()),
        }
    }
    let has_where = keyword(&mut it, "WHERE");
    if !has_where {
        while it.peek() == Some(&Tok::Punct(';')) {
            it.next();
        }
        if it.next().is_some() {
            return Err("unexpected text after the column list".into());
        }
    }
    Ok(Statement {
        unique,
        name,
        columns,
        has_where,
    })
}

/// Parses PocketBase's `CREATE [UNIQUE] INDEX [IF NOT EXISTS] name ON coll
/// (a, b DESC)`. `Ok(None)` for the indexes PocketBase gives every auth
/// collection (unique `tokenKey`, unique `email`), which Basalt keeps itself.
/// Partial indexes (`WHERE`), expressions and `COLLATE` are refused.
pub fn parse_index(sql: &str, kind: CollectionType) -> Result<Option<IndexSpec>, String> {
    let st = parse_statement(sql)?;
    let system = kind == CollectionType::Auth
        && st.unique
        && st.columns.len() == 1
        && (st.columns[0] == "tokenKey" || st.columns[0] == "email");
    if system {
        return Ok(None);
    }
    if st.has_where {
        return Err("partial indexes (WHERE) are not supported".into());
    }
    Ok(Some(IndexSpec {
        name: st.name,
        fields: st.columns,
        unique: st.unique,
    }))
}

/// An index definition as PocketBase's SQL statement.
pub fn index_sql(idx: &IndexSpec, collection: &str) -> String {
    let cols: Vec<String> = idx
        .fields
        .iter()
        .map(|f| match f.strip_prefix('-') {
            Some(p) => format!("`{p}` DESC"),
            None => format!("`{f}`"),
        })
        .collect();
    format!(
        "CREATE {}INDEX `{}` ON `{collection}` ({})",
        if idx.unique { "UNIQUE " } else { "" },
        idx.name,
        cols.join(", ")
    )
}

// ---- auth options --------------------------------------------------------

fn duration_slot<'a>(opts: &'a mut AuthOptions, key: &str) -> Option<&'a mut u64> {
    Some(match key {
        "authToken" => &mut opts.auth_token_duration,
        "passwordResetToken" => &mut opts.password_reset_token_duration,
        "emailChangeToken" => &mut opts.email_change_token_duration,
        "verificationToken" => &mut opts.verification_token_duration,
        "fileToken" => &mut opts.file_token_duration,
        _ => return None,
    })
}

/// PocketBase's view of one top-level auth option, from Basalt's options
/// and what was kept as given (`extra`).
pub fn auth_key_view(key: &str, opts: &AuthOptions, extra: &Map<String, Value>) -> Option<Value> {
    let mut o = opts.clone();
    if let Some(d) = duration_slot(&mut o, key) {
        return Some(json!({ "duration": *d }));
    }
    if let Some(v) = super::mail_templates::key_view(key, opts) {
        return Some(v);
    }
    let mut kept = extra.get(key).cloned();
    match key {
        "passwordAuth" => {
            let mut v = kept.unwrap_or_else(|| json!({"enabled": true}));
            v["identityFields"] = json!(opts.identity_fields);
            Some(v)
        }
        "otp" => {
            let mut v = kept.unwrap_or_else(|| json!({}));
            v["enabled"] = json!(opts.otp.enabled);
            v["duration"] = json!(opts.otp.duration);
            v["length"] = json!(opts.otp.length);
            v["emailTemplate"] = json!(super::mail_templates::TemplateKind::Otp.of(opts));
            Some(v)
        }
        "mfa" => Some(opts.mfa.view()),
        "oauth2" => Some(opts.oauth2.view()),
        _ => kept.take(),
    }
}

/// Applies one top-level PocketBase auth option: durations, identity fields
/// and OTP settings go to Basalt's options; the rest is kept as given.
pub fn apply_auth_key(
    key: &str,
    value: Value,
    opts: &mut AuthOptions,
    extra: &mut Map<String, Value>,
) -> Result<(), SchemaError> {
    let obj = value
        .as_object()
        .ok_or_else(|| invalid(key, format!("{key} must be an object")))?;
    let positive = |k: &str| -> Result<Option<u64>, SchemaError> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .filter(|n| *n > 0)
                .map(Some)
                .ok_or_else(|| invalid(format!("{key}.{k}"), "must be a positive integer")),
        }
    };
    if let Some(slot) = duration_slot(opts, key) {
        if let Some(d) = positive("duration")? {
            *slot = d;
        }
        return Ok(());
    }
    // A protection shown as on but not enforced is worse than a refusal:
    // the dashboard would show a sign-in method on that nothing serves.
    let enabled = obj.get("enabled").and_then(Value::as_bool);
    if let ("passwordAuth", Some(false)) = (key, enabled) {
        return Err(invalid(
            "passwordAuth.enabled",
            "password sign-in cannot be turned off in Basalt yet",
        ));
    }
    if super::mail_templates::apply_key(key, &value, opts)? {
        extra.remove(key);
        return Ok(());
    }
    match key {
        "mfa" => {
            opts.mfa.apply(obj)?;
            // Typed now: a copy kept from before MFA was built must not linger.
            extra.remove(key);
        }
        "passwordAuth" => {
            if let Some(f) = obj.get("identityFields") {
                opts.identity_fields = serde_json::from_value(f.clone())
                    .map_err(|_| invalid("passwordAuth.identityFields", "must be a list of field names"))?;
            }
            let mut kept = obj.clone();
            kept.remove("identityFields");
            extra.insert(key.into(), Value::Object(kept));
        }
        "otp" => {
            if let Some(b) = obj.get("enabled") {
                opts.otp.enabled = b
                    .as_bool()
                    .ok_or_else(|| invalid("otp.enabled", "must be true or false"))?;
            }
            if let Some(d) = positive("duration")? {
                opts.otp.duration = d;
            }
            if let Some(n) = positive("length")? {
                opts.otp.length = n as usize;
            }
            super::mail_templates::apply_otp_template(obj, opts)?;
            let mut kept = obj.clone();
            for k in ["enabled", "duration", "length", "emailTemplate"] {
                kept.remove(k);
            }
            extra.insert(key.into(), Value::Object(kept));
        }
        "oauth2" => {
            opts.oauth2 = super::oauth2::OAuth2Options::apply(obj, &opts.oauth2)?;
            extra.remove(key);
        }
        _ => {
            extra.insert(key.into(), value);
        }
    }
    Ok(())
}

// ---- autogenerate ----------------------------------------------------------

/// Generates a string for PocketBase's `autogeneratePattern`. The supported
/// form is a sequence of literal characters and character classes
/// (`[a-z0-9_]`, `\d`, `\w`), each optionally repeated `{n}` or `{n,m}`
/// (at most 255); anything else is an error (refused when the collection is
/// saved).
pub fn generate(pattern: &str) -> Result<String, String> {
    use rand::Rng;
    let atoms = parse_generator(pattern)?;
    let mut rng = rand::thread_rng();
    let mut out = String::new();
    for (set, min, max) in atoms {
        let n = rng.gen_range(min..=max);
        for _ in 0..n {
            out.push(set[rng.gen_range(0..set.len())]);
        }
    }
    Ok(out)
}

type Atom = (Vec<char>, usize, usize);

/// Bounds on an autogenerate pattern (it runs on every create, maybe a guest's).
const MAX_CLASS: usize = 1024;
const MAX_ATOMS: usize = 256;

fn class_escape(c: char) -> Option<Vec<char>> {
    match c {
        'd' => Some(('0'..='9').collect()),
        'w' => Some(('a'..='z').chain('A'..='Z').chain('0'..='9').chain(['_']).collect()),
        _ => None,
    }
}

fn parse_generator(pattern: &str) -> Result<Vec<Atom>, String> {
    let unsupported =
        || format!("unsupported autogenerate pattern '{pattern}' (use literals and [classes] with {{n}} or {{n,m}})");
    let mut chars = pattern.chars().peekable();
    let mut atoms: Vec<Atom> = Vec::new();
    let mut total = 0usize;
    while let Some(c) = chars.next() {
        let set: Vec<char> = match c {
            '[' => {
                let mut set = Vec::new();
                loop {
                    match chars.next().ok_or_else(unsupported)? {
                        ']' => break,
                        '^' if set.is_empty() => return Err(unsupported()),
                        '\\' => {
                            let e = chars.next().ok_or_else(unsupported)?;
                            set.extend(class_escape(e).unwrap_or_else(|| vec![e]));
                        }
                        a if chars.peek() == Some(&'-') => {
                            chars.next();
                            match chars.next().ok_or_else(unsupported)? {
                                ']' => {
                                    set.extend([a, '-']);
                                    break;
                                }
                                // Counted before it is built: `[!-\u{10FFFF}…]`
                                // would otherwise allocate gigabytes first.
                                b if b >= a && set.len() + (b as usize - a as usize) < MAX_CLASS => set.extend(a..=b),
                                _ => return Err(unsupported()),
                            }
                        }
                        a => set.push(a),
                    }
                    if set.len() > MAX_CLASS {
                        return Err(unsupported());
                    }
                }
                set
            }
            '\\' => {
                let e = chars.next().ok_or_else(unsupported)?;
                class_escape(e).unwrap_or_else(|| vec![e])
            }
            '(' | ')' | '|' | '*' | '+' | '?' | '.' | '{' | '}' | '^' | '$' => return Err(unsupported()),
            c => vec![c],
        };
        if set.is_empty() || set.len() > MAX_CLASS {
            return Err(unsupported());
        }
        if atoms.len() >= MAX_ATOMS {
            return Err(format!("an autogenerate pattern may have at most {MAX_ATOMS} parts"));
        }
        let (min, max) = if chars.peek() == Some(&'{') {
            chars.next();
            let mut spec = String::new();
            for c in chars.by_ref() {
                if c == '}' {
                    break;
                }
                spec.push(c);
            }
            let parse = |s: &str| s.trim().parse::<usize>().ok().filter(|n| *n <= 255);
            match spec.split_once(',') {
                None => {
                    let n = parse(&spec).ok_or_else(unsupported)?;
                    (n, n)
                }
                Some((a, b)) => match (parse(a), parse(b)) {
                    (Some(a), Some(b)) if a <= b => (a, b),
                    _ => return Err(unsupported()),
                },
            }
        } else {
            (1, 1)
        };
        total += max;
        if total > 1024 {
            return Err("an autogenerate pattern may produce at most 1024 characters".into());
        }
        atoms.push((set, min, max));
    }
    Ok(atoms)
}

// ---- scaffolds -------------------------------------------------------------

/// `GET /api/collections/meta/scaffolds`: empty collections of each type as
/// PocketBase shows them (Basalt has no view collections; the `view`
/// scaffold is there for tools that read it).
pub fn scaffolds() -> Value {
    let base_of = |kind: CollectionType, ty: &str| {
        json!({
            "id": "", "listRule": null, "viewRule": null, "createRule": null,
            "updateRule": null, "deleteRule": null, "name": "", "type": ty,
            "fields": if ty == "view" { vec![] } else { leading_system_fields(kind) },
            "indexes": [], "created": "", "updated": "", "system": false,
        })
    };
    let mut auth = base_of(CollectionType::Auth, "auth");
    auth["authRule"] = json!("");
    auth["manageRule"] = Value::Null;
    let opts = AuthOptions::default();
    let extra = Map::new();
    for key in AUTH_KEYS {
        if let Some(v) = auth_key_view(key, &opts, &extra) {
            auth[*key] = v;
        }
    }
    let mut view = base_of(CollectionType::Base, "view");
    view["viewQuery"] = json!("");
    json!({"auth": auth, "base": base_of(CollectionType::Base, "base"), "view": view})
}

#[cfg(test)]
mod tests;
