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
        for (field, message) in flatten(&e.data, &e.message) {
            let key = if field.is_empty() {
                fallback.to_owned()
            } else {
                rename(&field)
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

/// `(dotted key, message)` of every field error in an API error's `data`,
/// whether flat (`{"smtp.host": {code, message}}`) or nested as PocketBase
/// nests its settings errors (`{"smtp": {"localName": {code, message}}}`).
fn flatten(data: &serde_json::Map<String, Value>, fallback: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack: Vec<(String, &serde_json::Map<String, Value>)> = vec![(String::new(), data)];
    while let Some((prefix, map)) = stack.pop() {
        for (k, v) in map {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v.as_object() {
                Some(inner) if !inner.contains_key("message") && !inner.contains_key("code") => {
                    stack.push((key, inner));
                }
                _ => {
                    let message = v.get("message").and_then(Value::as_str).unwrap_or(fallback);
                    out.push((key, message.to_owned()));
                }
            }
        }
    }
    out
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
        "smtp.authMethod" => "SMTP auth method",
        "smtp.localName" => "SMTP local name",
        "test.email" => "Test mail address",
        "test.template" => "Test mail template",
        "cors.origins" => "CORS origins",
        "realtime.retentionHours" => "Retention hours",
        "realtime.retentionEvents" => "Retention events",
        "realtime.maxBytes" => "Change log size",
        "logs.maxDays" => "Request log days",
        "logs.maxEntries" => "Request log entries",
        "logs.maxBytes" => "Request log size",
        "batch.maxRequests" => "Batch max requests",
        "budget.maxRecords" => "Records read per request",
        "budget.maxExpand" => "Records expanded per request",
        "budget.maxOutputBytes" => "Bytes per answer",
        "budget.realtimeMaxRecords" => "Records read per change",
        "budget.maxSeconds" => "Seconds per request",
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

/// A size typed into a form: a whole number of bytes, or a number with a
/// unit (`128 MiB`, `1.5 GiB`, `500 KB`; KB/MB/GB are powers of 1000,
/// KiB/MiB/GiB of 1024). `None` for anything else or past `u64`.
pub(super) fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = (&t[..split], t[split..].trim());
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1 << 30,
        "tb" => 1_000_000_000_000,
        "tib" | "t" => 1 << 40,
        _ => return None,
    };
    let (whole, frac) = match num.split_once('.') {
        Some((_, "")) => return None,
        Some(parts) => parts,
        None => (num, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(frac) || frac.len() > 6 {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let mut bytes = whole.checked_mul(scale)?;
    if !frac.is_empty() {
        // Up to six decimals, exactly: `frac / 10^len * scale`.
        let f: u64 = frac.parse().ok()?;
        let den = 10u64.pow(frac.len() as u32);
        let part = u128::from(f) * u128::from(scale) / u128::from(den);
        bytes = bytes.checked_add(u64::try_from(part).ok()?)?;
    }
    Some(bytes)
}

/// A byte count as the size forms show it: in the largest binary unit that
/// divides it (`128 MiB`), else in bytes.
pub fn format_size(bytes: u64) -> String {
    for (unit, scale) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if bytes >= scale && bytes.is_multiple_of(scale) {
            return format!("{} {unit}", bytes / scale);
        }
    }
    bytes.to_string()
}

/// A byte count for reading (one decimal): `3.2 MiB`.
pub fn human_size(bytes: u64) -> String {
    for (unit, scale) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= scale {
            return format!("{:.1} {unit}", bytes as f64 / scale as f64);
        }
    }
    format!("{bytes} bytes")
}

/// Parses a size field, or records `message`.
pub(super) fn size(errors: &mut Errors, key: &str, text: &str, message: &str) -> u64 {
    match parse_size(text) {
        Some(n) => n,
        None => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units_and_format_back() {
        for (text, bytes) in [
            ("134217728", 134_217_728),
            ("128 MiB", 128 << 20),
            ("128mib", 128 << 20),
            (" 2 M ", 2 << 20),
            ("1.5 GiB", 3 << 29),
            ("500 KB", 500_000),
            ("0.5 KiB", 512),
            ("1 TiB", 1 << 40),
            ("7 B", 7),
        ] {
            assert_eq!(parse_size(text), Some(bytes), "{text}");
        }
        for bad in [
            "",
            "MiB",
            "-1",
            "1e9",
            "1.2.3",
            "12 parsecs",
            "1.",
            "99999999999999999999",
            "20000000 TiB",
            "1.1234567 MiB",
        ] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        assert_eq!(format_size(128 << 20), "128 MiB");
        assert_eq!(format_size(3 << 29), "1536 MiB");
        assert_eq!(format_size(1000), "1000");
        assert_eq!(parse_size(&format_size(1_048_577)), Some(1_048_577));
        assert_eq!(human_size(3_355_443), "3.2 MiB");
    }
}
