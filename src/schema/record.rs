//! The record shape: which keys are system fields, how a create or a PATCH
//! body becomes the stored document, and what a given caller may see.
//!
//! A stored record is one JSON object: `id`, `created`, `updated`, for auth
//! collections `email`, `emailVisibility`, `verified`, `password` (argon2id
//! hash) and `tokenKey`, then the user fields. Only the user fields are
//! validated against the collection's JSON Schema; system fields are checked
//! here, so `additionalProperties: false` never trips over them.

use serde_json::{Map, Number, Value};

use super::collection::{AUTH_SYSTEM_FIELDS, BASE_SYSTEM_FIELDS};
use super::compile::{validate, FieldError, FieldErrors};
use super::keywords;
use super::CompiledCollection;
use crate::ids;

/// Who is looking at a record (decides hidden fields and emails).
#[derive(Debug, Clone, Default)]
pub struct Viewer {
    pub superuser: bool,
    /// `(collection id, record id)` of the authenticated caller, if any.
    pub auth: Option<(String, String)>,
}

/// Auth system fields a client sent (write-only ones are never stored as is).
#[derive(Debug, Default, Clone)]
pub struct AuthInput {
    pub email: Option<String>,
    pub email_visibility: Option<bool>,
    pub verified: Option<bool>,
    pub password: Option<String>,
    pub password_confirm: Option<String>,
    pub old_password: Option<String>,
}

/// A validated request body, ready for the caller to hash passwords and
/// submit: `doc` has the user fields (and, on update, the stored system fields).
#[derive(Debug)]
pub struct Draft {
    pub id: String,
    pub doc: Map<String, Value>,
    pub auth: AuthInput,
    /// `x-autodate` fields an update sets to its time (`onUpdate`).
    pub stamp_on_update: Vec<String>,
}

/// Minimum and maximum password length (the maximum bounds hashing work).
pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 256;

fn err(code: &str, message: &str) -> FieldError {
    FieldError {
        code: code.to_owned(),
        message: message.to_owned(),
    }
}

/// A pragmatic email check (the full grammar is not worth it: the only real
/// test of an address is the verification mail).
pub fn is_valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && s.len() <= 254
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && !domain.contains('@')
}

/// Takes the auth system fields out of `body`, type-checking them.
fn take_auth(body: &mut Map<String, Value>, errors: &mut FieldErrors) -> AuthInput {
    let mut auth = AuthInput::default();
    let mut string = |key: &str, errors: &mut FieldErrors| match body.remove(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            errors.insert(key.into(), err("validation_invalid_type", "Must be a string."));
            None
        }
    };
    auth.email = string("email", errors);
    auth.password = string("password", errors);
    auth.password_confirm = string("passwordConfirm", errors);
    auth.old_password = string("oldPassword", errors);
    for (key, slot) in [
        ("emailVisibility", &mut auth.email_visibility),
        ("verified", &mut auth.verified),
    ] {
        match body.remove(key) {
            None | Some(Value::Null) => {}
            Some(Value::Bool(b)) => *slot = Some(b),
            Some(_) => {
                errors.insert(key.into(), err("validation_invalid_type", "Must be a boolean."));
            }
        }
    }
    body.remove("tokenKey");
    auth
}

fn check_password(auth: &AuthInput, required: bool, errors: &mut FieldErrors) {
    match &auth.password {
        None if required => {
            errors.insert("password".into(), err("validation_required", "Missing required value."));
        }
        None => {}
        Some(p) => {
            let n = p.chars().count();
            if n < PASSWORD_MIN {
                errors.insert(
                    "password".into(),
                    err("validation_min_length", "Must be at least 8 characters."),
                );
            } else if n > PASSWORD_MAX {
                errors.insert(
                    "password".into(),
                    err("validation_max_length", "Must be at most 256 characters."),
                );
            }
            if auth.password_confirm.as_deref() != Some(p.as_str()) {
                errors.insert(
                    "passwordConfirm".into(),
                    err("validation_values_mismatch", "Values don't match."),
                );
            }
        }
    }
}

fn check_email(auth: &AuthInput, required: bool, errors: &mut FieldErrors) {
    match auth.email.as_deref() {
        None | Some("") if required => {
            errors.insert("email".into(), err("validation_required", "Missing required value."));
        }
        Some(e) if !e.is_empty() && !is_valid_email(e) => {
            errors.insert(
                "email".into(),
                err("validation_invalid_email", "Must be a valid email address."),
            );
        }
        _ => {}
    }
}

/// Removes server-managed keys a client may echo back (ignored, as PocketBase does).
fn strip_ignored(body: &mut Map<String, Value>) {
    for k in ["collectionId", "collectionName", "created", "updated", "expand"] {
        body.remove(k);
    }
}

/// The user fields of a stored record (what the JSON Schema describes).
pub fn user_fields(coll: &CompiledCollection, record: &Value) -> Value {
    match record.as_object() {
        Some(m) => user_doc(coll, m),
        None => Value::Object(Map::new()),
    }
}

/// Whether `key` is a server-managed field (not described by the schema).
pub fn is_system_field(key: &str, auth: bool) -> bool {
    BASE_SYSTEM_FIELDS.contains(&key) || (auth && AUTH_SYSTEM_FIELDS.contains(&key))
}

pub(crate) fn user_doc(coll: &CompiledCollection, doc: &Map<String, Value>) -> Value {
    let auth = coll.is_auth();
    Value::Object(
        doc.iter()
            .filter(|(k, _)| !is_system_field(k, auth))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

fn validate_user(coll: &CompiledCollection, doc: &Map<String, Value>, errors: &mut FieldErrors) {
    if let Err(e) = validate(&coll.validator, &user_doc(coll, doc)) {
        for (k, v) in e {
            errors.entry(k).or_insert(v);
        }
    }
}

/// Top-level properties carrying `keyword`, with its value.
fn props_with<'a>(coll: &'a CompiledCollection, keyword: &'a str) -> impl Iterator<Item = (&'a String, &'a Value)> {
    coll.def
        .schema
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(move |(name, p)| p.get(keyword).map(|v| (name, v)))
}

/// `x-autodate` fields are the server's: a value a client sends is ignored
/// (as PocketBase ignores it).
fn strip_autodates(coll: &CompiledCollection, body: &mut Map<String, Value>) {
    for (name, _) in props_with(coll, keywords::AUTODATE) {
        for key in [name.clone(), format!("{name}+"), format!("+{name}"), format!("{name}-")] {
            body.remove(&key);
        }
    }
}

/// Fills empty `x-autogenerate` text fields of a new record.
fn autogenerate(coll: &CompiledCollection, body: &mut Map<String, Value>, errors: &mut FieldErrors) {
    for (name, pattern) in props_with(coll, keywords::AUTOGENERATE) {
        let empty =
            matches!(body.get(name), None | Some(Value::Null)) || body.get(name) == Some(&Value::String(String::new()));
        if !empty {
            continue;
        }
        match pattern.as_str().map(super::pocketbase::generate) {
            Some(Ok(v)) => {
                body.insert(name.clone(), Value::String(v));
            }
            _ => {
                errors.insert(
                    name.clone(),
                    err(
                        "validation_invalid_value",
                        "The field's autogenerate pattern is invalid.",
                    ),
                );
            }
        }
    }
}

/// Sets the `x-autodate` fields whose `flag` (`onCreate`/`onUpdate`) is on.
fn stamp_autodates(coll: &CompiledCollection, doc: &mut Map<String, Value>, flag: &str, now: &str) {
    for (name, opts) in props_with(coll, keywords::AUTODATE) {
        if opts.get(flag).and_then(Value::as_bool) == Some(true) {
            doc.insert(name.clone(), Value::String(now.to_owned()));
        }
    }
}

/// Checks a create body. `superuser` may set `verified`.
pub fn draft_create(
    coll: &CompiledCollection,
    mut body: Map<String, Value>,
    superuser: bool,
) -> Result<Draft, FieldErrors> {
    let mut errors = FieldErrors::new();
    strip_ignored(&mut body);
    let id = match body.remove("id") {
        None | Some(Value::Null) => ids::record_id(),
        Some(Value::String(s)) if s.is_empty() => ids::record_id(),
        Some(Value::String(s)) if ids::is_valid_record_id(&s) => s,
        Some(_) => {
            errors.insert(
                "id".into(),
                err(
                    "validation_invalid_id",
                    "Must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'.",
                ),
            );
            String::new()
        }
    };
    let auth = if coll.is_auth() {
        let auth = take_auth(&mut body, &mut errors);
        check_email(&auth, true, &mut errors);
        check_password(&auth, true, &mut errors);
        if auth.verified.is_some() && !superuser {
            errors.insert(
                "verified".into(),
                err("validation_forbidden", "Only superusers can set verified."),
            );
        }
        auth
    } else {
        AuthInput::default()
    };
    reject_modifiers(&body, &mut errors);
    strip_autodates(coll, &mut body);
    autogenerate(coll, &mut body, &mut errors);
    dedupe_relations(coll, &mut body);
    validate_user(coll, &body, &mut errors);
    if errors.is_empty() {
        Ok(Draft {
            id,
            doc: body,
            auth,
            stamp_on_update: vec![],
        })
    } else {
        Err(errors)
    }
}

fn reject_modifiers(body: &Map<String, Value>, errors: &mut FieldErrors) {
    for k in body.keys() {
        if k.ends_with('+') || k.ends_with('-') || k.starts_with('+') {
            errors.insert(
                k.clone(),
                err(
                    "validation_invalid_value",
                    "Modifiers (field+, field-) only apply to updates.",
                ),
            );
        }
    }
}

/// Checks a PATCH body against the stored record: top-level keys replace
/// (merge), `field+`/`+field`/`field-` append/prepend/remove array items or
/// add/subtract numbers, then the merged user fields are validated.
pub fn draft_update(
    coll: &CompiledCollection,
    stored: &Value,
    mut body: Map<String, Value>,
    superuser: bool,
) -> Result<Draft, FieldErrors> {
    let mut errors = FieldErrors::new();
    strip_ignored(&mut body);
    let mut doc = stored.as_object().cloned().unwrap_or_default();
    let id = doc.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
    match body.remove("id") {
        None => {}
        Some(Value::String(s)) if s == id => {}
        Some(_) => {
            errors.insert(
                "id".into(),
                err("validation_invalid_value", "The id of a record cannot be changed."),
            );
        }
    }
    let auth = if coll.is_auth() {
        let auth = take_auth(&mut body, &mut errors);
        check_email(&auth, false, &mut errors);
        check_password(&auth, false, &mut errors);
        if auth.verified.is_some() && !superuser {
            errors.insert(
                "verified".into(),
                err("validation_forbidden", "Only superusers can change verified."),
            );
        }
        let current = doc.get("email").and_then(Value::as_str);
        if !superuser && auth.email.is_some() && auth.email.as_deref() != current {
            errors.insert(
                "email".into(),
                err(
                    "validation_forbidden",
                    "Use request-email-change to change the email address.",
                ),
            );
        }
        if !superuser && auth.password.is_some() && auth.old_password.is_none() {
            errors.insert(
                "oldPassword".into(),
                err("validation_required", "Missing required value."),
            );
        }
        auth
    } else {
        AuthInput::default()
    };
    strip_autodates(coll, &mut body);
    apply_fields(&mut doc, body, &mut errors);
    dedupe_relations(coll, &mut doc);
    validate_user(coll, &doc, &mut errors);
    if errors.is_empty() {
        let stamp_on_update = props_with(coll, keywords::AUTODATE)
            .filter(|(_, o)| o.get("onUpdate").and_then(Value::as_bool) == Some(true))
            .map(|(name, _)| name.clone())
            .collect();
        Ok(Draft {
            id,
            doc,
            auth,
            stamp_on_update,
        })
    } else {
        Err(errors)
    }
}

/// Relation arrays hold each id once, first occurrence first (PocketBase's
/// `list.ToUniqueStringSlice` on every relation save): `[a, a, b, a]` is
/// stored as `[a, b]`, and `links+: a` or `+links: a` never adds a second
/// `a` (a prepended id already present moves to the front, as there).
/// Applied to every create and update (REST, batch, dashboard all draft
/// here), after the modifiers and before validation, so `maxItems` and
/// `uniqueItems` judge the stored value. Single relations and non-string
/// items (refused by the schema) are left alone.
fn dedupe_relations(coll: &CompiledCollection, doc: &mut Map<String, Value>) {
    for (name, rel) in &coll.relations {
        if !rel.multiple {
            continue;
        }
        if let Some(Value::Array(items)) = doc.get_mut(name) {
            if items.len() < 2 {
                continue;
            }
            let mut seen = std::collections::HashSet::with_capacity(items.len());
            items.retain(|item| match item {
                Value::String(id) => seen.insert(id.clone()),
                _ => true,
            });
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Modify {
    Append,
    Prepend,
    Remove,
}

/// Applies a PATCH body's fields to `doc`: plain keys replace, `field+`,
/// `+field` and `field-` modify. Returns the names of the fields touched.
fn apply_fields(doc: &mut Map<String, Value>, body: Map<String, Value>, errors: &mut FieldErrors) -> Vec<String> {
    let mut touched = Vec::with_capacity(body.len());
    for (key, value) in body {
        let field = if let Some(field) = key.strip_suffix('+') {
            modify(doc, field, value, Modify::Append, errors);
            field
        } else if let Some(field) = key.strip_prefix('+') {
            modify(doc, field, value, Modify::Prepend, errors);
            field
        } else if let Some(field) = key.strip_suffix('-') {
            modify(doc, field, value, Modify::Remove, errors);
            field
        } else {
            doc.insert(key.clone(), value);
            &key
        };
        touched.push(field.to_owned());
    }
    touched
}

/// The body a rule sees as `@request.body` for a PATCH of `stored`: update
/// modifiers (`credits+`, `+tags`, `roles-`) resolved into the final values
/// of their fields (relation arrays deduplicated), as PocketBase does, so
/// `@request.body.credits:changed` and friends judge what will be written,
/// not how it was spelled.
/// Auth helpers (`oldPassword`, `passwordConfirm`) stay as sent.
pub fn resolved_body(coll: &CompiledCollection, stored: &Value, body: &Map<String, Value>) -> Map<String, Value> {
    let mut doc = stored.as_object().cloned().unwrap_or_default();
    let mut ignored = FieldErrors::new();
    let touched = apply_fields(&mut doc, body.clone(), &mut ignored);
    dedupe_relations(coll, &mut doc);
    let mut out = Map::with_capacity(touched.len());
    for field in touched {
        let value = doc.get(&field).cloned().unwrap_or(Value::Null);
        out.insert(field, value);
    }
    out
}

fn modify(doc: &mut Map<String, Value>, field: &str, value: Value, how: Modify, errors: &mut FieldErrors) {
    let bad = |errors: &mut FieldErrors, msg: &str| {
        errors.insert(field.to_owned(), err("validation_invalid_value", msg));
    };
    let current = doc.get(field).cloned().unwrap_or(Value::Null);
    match (current, &value) {
        (Value::Null | Value::Number(_), Value::Number(delta)) if how != Modify::Prepend => {
            let base = doc.get(field).and_then(Value::as_number).cloned();
            let sign = if how == Modify::Remove { -1 } else { 1 };
            let sum = match (
                base.as_ref()
                    .and_then(Number::as_i64)
                    .or(if base.is_none() { Some(0) } else { None }),
                delta.as_i64(),
            ) {
                (Some(a), Some(d)) => a.checked_add(sign * d).map(Number::from),
                _ => Number::from_f64(
                    base.and_then(|b| b.as_f64()).unwrap_or(0.0) + sign as f64 * delta.as_f64().unwrap_or(0.0),
                ),
            };
            match sum {
                Some(n) => {
                    doc.insert(field.to_owned(), Value::Number(n));
                }
                None => bad(errors, "The result is out of range."),
            }
        }
        (Value::Null | Value::Array(_), _) => {
            let mut items = match doc.remove(field) {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            };
            let given = match value {
                Value::Array(a) => a,
                v => vec![v],
            };
            match how {
                Modify::Append => items.extend(given),
                Modify::Prepend => {
                    let mut v = given;
                    v.extend(items);
                    items = v;
                }
                Modify::Remove => items.retain(|i| !given.contains(i)),
            }
            doc.insert(field.to_owned(), Value::Array(items));
        }
        _ => bad(
            errors,
            "This modifier applies only to numbers (+/-) and arrays (+, +field, -).",
        ),
    }
}

/// Builds the stored record of a create (system fields first).
pub fn assemble_create(coll: &CompiledCollection, draft: Draft, password_hash: Option<String>, now: &str) -> Value {
    let mut rec = Map::new();
    rec.insert("id".into(), Value::String(draft.id));
    rec.insert("created".into(), Value::String(now.to_owned()));
    rec.insert("updated".into(), Value::String(now.to_owned()));
    if coll.is_auth() {
        rec.insert("email".into(), Value::String(draft.auth.email.unwrap_or_default()));
        rec.insert(
            "emailVisibility".into(),
            Value::Bool(draft.auth.email_visibility.unwrap_or(false)),
        );
        rec.insert("verified".into(), Value::Bool(draft.auth.verified.unwrap_or(false)));
        rec.insert("password".into(), Value::String(password_hash.unwrap_or_default()));
        rec.insert("tokenKey".into(), Value::String(ids::token_key()));
    }
    rec.extend(draft.doc);
    stamp_autodates(coll, &mut rec, "onCreate", now);
    Value::Object(rec)
}

/// Builds the stored record of an update. A new password hash or email
/// rotates `tokenKey`, which revokes every token issued before.
pub fn assemble_update(draft: Draft, password_hash: Option<String>, now: &str) -> Value {
    let mut doc = draft.doc;
    let mut rotate = false;
    if let Some(e) = draft.auth.email {
        rotate |= doc.get("email").and_then(Value::as_str) != Some(e.as_str());
        doc.insert("email".into(), Value::String(e));
    }
    if let Some(v) = draft.auth.email_visibility {
        doc.insert("emailVisibility".into(), Value::Bool(v));
    }
    if let Some(v) = draft.auth.verified {
        doc.insert("verified".into(), Value::Bool(v));
    }
    if let Some(h) = password_hash {
        doc.insert("password".into(), Value::String(h));
        rotate = true;
    }
    if rotate {
        doc.insert("tokenKey".into(), Value::String(ids::token_key()));
    }
    doc.insert("updated".into(), Value::String(now.to_owned()));
    for name in draft.stamp_on_update {
        doc.insert(name, Value::String(now.to_owned()));
    }
    Value::Object(doc)
}

/// The record as `viewer` may see it: `collectionId`/`collectionName` added;
/// password hash and token key never; `x-hidden` fields only for superusers;
/// an auth record's email only for superusers, its owner, or when
/// `emailVisibility` is on.
pub fn export(coll: &CompiledCollection, record: &Value, viewer: &Viewer) -> Value {
    let mut out = Map::new();
    out.insert("collectionId".into(), Value::String(coll.def.id.clone()));
    out.insert("collectionName".into(), Value::String(coll.def.name.clone()));
    let Some(obj) = record.as_object() else {
        return Value::Object(out);
    };
    let auth = coll.is_auth();
    let owner = viewer
        .auth
        .as_ref()
        .is_some_and(|(c, id)| *c == coll.def.id && obj.get("id").and_then(Value::as_str) == Some(id));
    let show_email = viewer.superuser || owner || obj.get("emailVisibility").and_then(Value::as_bool) == Some(true);
    for (k, v) in obj {
        if auth && (k == "password" || k == "tokenKey" || (k == "email" && !show_email)) {
            continue;
        }
        if !viewer.superuser && coll.hidden.iter().any(|h| h == k) {
            continue;
        }
        out.insert(k.clone(), v.clone());
    }
    Value::Object(out)
}

/// The exported form of a stored record without parsing it: the collection
/// prefix spliced in front of the stored JSON. Only for collections whose
/// records export verbatim (`CompiledCollection::exports_verbatim`); `None`
/// otherwise, or if the bytes are not a JSON object.
pub fn export_raw(coll: &CompiledCollection, json: &[u8]) -> Option<Box<serde_json::value::RawValue>> {
    if !coll.exports_verbatim() {
        return None;
    }
    let text = std::str::from_utf8(json).ok()?;
    let rest = text.strip_prefix('{')?;
    let mut out = String::with_capacity(coll.export_prefix.len() + text.len() + 1);
    out.push_str(&coll.export_prefix);
    if rest.trim_start().starts_with('}') {
        out.push('}');
    } else {
        out.push(',');
        out.push_str(rest);
    }
    // SAFETY: `out` is one JSON object: our serialised prefix (two string
    // members) joined to the members of a stored record, which the writer
    // produced with serde_json (sled checksums what it reads back), with no
    // surrounding whitespace. That is exactly `from_string_unchecked`'s contract.
    Some(unsafe { serde_json::value::RawValue::from_string_unchecked(out) })
}
