//! Problems with a submitted settings form, and the small parsers the
//! section forms share.

use serde_json::{Map, Value};

use crate::admin::AdminForm;
use crate::error::ApiError;

/// One problem with a submitted field.
pub struct Problem {
    /// The field's form name (`smtp.port`): where the message is shown.
    pub key: String,
    /// The field's name for the summary at the top ("" = the whole form).
    pub label: String,
    pub message: String,
}

/// The problems of a failed save, shown next to their fields and listed at
/// the top of the page.
#[derive(Default)]
pub struct Errors {
    pub list: Vec<Problem>,
}

impl Errors {
    pub fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        let key = key.into();
        self.list.push(Problem {
            label: label(&key),
            key,
            message: message.into(),
        });
    }

    /// The message for the field `key`, if it has one.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.list.iter().find(|p| p.key == key).map(|p| p.message.as_str())
    }

    /// Every message for `key` (one per bad origin, for instance).
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.list
            .iter()
            .filter(|p| p.key == key)
            .map(|p| p.message.as_str())
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The id suffix of a field's elements: `smtp.port` → `smtp-port`
    /// (inputs are `f-…`, their messages `e-…`).
    pub fn anchor(&self, key: &str) -> String {
        key.replace('.', "-")
    }

    /// A 400 from the settings store or a collection update, its field keys
    /// mapped onto the form's by `rename`. An error without fields goes to
    /// `fallback` (a key shown with the form's button).
    pub fn from_api(e: &ApiError, fallback: &str, rename: impl Fn(&str) -> String) -> Errors {
        let mut errors = Errors::default();
        for (field, detail) in &e.data {
            let message = detail.get("message").and_then(Value::as_str).unwrap_or(&e.message);
            let key = if field.is_empty() {
                fallback.to_owned()
            } else {
                rename(field)
            };
            errors.add(key, message);
        }
        if errors.is_empty() {
            errors.add(fallback, e.message.clone());
        }
        errors
    }

    pub(super) fn into_result<T>(self, ok: T) -> Result<T, Errors> {
        if self.is_empty() {
            Ok(ok)
        } else {
            Err(self)
        }
    }
}

/// The name a field has on the page, for the error summary.
fn label(key: &str) -> String {
    let fixed = match key {
        "meta.appName" => "App name",
        "meta.appURL" => "App URL",
        "meta.senderName" => "Sender name",
        "meta.senderAddress" => "Sender address",
        "smtp.host" => "SMTP host",
        "smtp.port" => "SMTP port",
        "smtp.username" => "SMTP username",
        "smtp.tls" => "SMTP TLS",
        "test.email" => "Test mail address",
        "test.template" => "Test mail template",
        "cors.origins" => "CORS origins",
        "realtime.retentionHours" => "Retention hours",
        "realtime.retentionEvents" => "Retention events",
        "batch.maxRequests" => "Batch max requests",
        "budget.maxRecords" => "Records read per request",
        "budget.maxExpand" => "Records expanded per request",
        "budget.maxOutputBytes" => "Bytes per answer",
        "budget.realtimeMaxRecords" => "Records read per change",
        _ => "",
    };
    if !fixed.is_empty() {
        return fixed.to_owned();
    }
    let parts: Vec<&str> = key.split('.').collect();
    match parts.as_slice() {
        ["rateLimits", "rules", i, field] => {
            let n = i.parse::<usize>().map(|i| i + 1).unwrap_or_default();
            format!("Rate limit rule {n}, {}", field_words(field))
        }
        ["tokens", collection, field] => format!("{collection}: {}", field_words(field)),
        _ => String::new(),
    }
}

fn field_words(field: &str) -> &str {
    match field {
        "label" => "label",
        "maxRequests" => "max requests",
        "duration" => "duration",
        "audience" => "audience",
        "authTokenDuration" => "auth token",
        "verificationTokenDuration" => "verification token",
        "passwordResetTokenDuration" => "password reset token",
        "emailChangeTokenDuration" => "email change token",
        _ => field,
    }
}

/// A whole number typed into a form (surrounding spaces allowed).
pub(super) fn whole(text: &str) -> Option<u64> {
    let t = text.trim();
    (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
        .then(|| t.parse().ok())
        .flatten()
}

/// Parses `text` as a whole number in `min..=max`, or records `message`.
pub(super) fn number(errors: &mut Errors, key: &str, text: &str, min: u64, max: u64, message: &str) -> u64 {
    match whole(text) {
        Some(n) if (min..=max).contains(&n) => n,
        _ => {
            errors.add(key, message);
            0
        }
    }
}

/// One-line text: no line breaks or other control characters (they would
/// end up in mail headers).
pub(super) fn one_line(errors: &mut Errors, key: &str, text: &str) {
    if text.chars().any(char::is_control) {
        errors.add(key, "Must be one line, without control characters.");
    }
}

pub(super) fn checked(form: &AdminForm, name: &str) -> bool {
    form.get(name).is_some()
}

/// The object inside a `json!({...})` patch.
pub(super) fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
