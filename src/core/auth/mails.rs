//! The auth mails of a collection: its template for the mail (or Basalt's
//! default, `schema::mail_templates`) filled with the app's name and URL,
//! the record's fields (`{RECORD:field}`) and the flow's own values
//! (`{TOKEN}`, `{OTP}`, …), through `mail::templates::render`.

use serde_json::{Map, Value};

use super::options;
use crate::error::ApiError;
use crate::mail::{templates, Mail};
use crate::schema::mail_templates::{MailTemplate, TemplateKind};
use crate::schema::CompiledCollection;
use crate::state::AppState;

/// Stands in for tokens in previews and test mails: the mail only has to
/// show what it looks like, and a real token would be a usable credential.
pub const SAMPLE_TOKEN: &str = "TEST-TOKEN-not-valid";

/// `{RECORD:field}` values of `record`: every field but the secrets
/// (`password`, `tokenKey`) and the fields hidden from clients (as
/// PocketBase, which skips hidden fields). Fields of the schema the record
/// lacks are empty.
fn record_values(collection: &CompiledCollection, record: &Value) -> Vec<(String, String)> {
    let empty = Map::new();
    let obj = record.as_object().unwrap_or(&empty);
    let schema_fields = collection
        .def
        .schema
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|p| p.keys());
    let mut names: Vec<&String> = obj.keys().collect();
    for f in schema_fields {
        if !obj.contains_key(f) {
            names.push(f);
        }
    }
    names
        .into_iter()
        .filter(|k| *k != "password" && *k != "tokenKey" && !collection.hidden.contains(k))
        .map(|k| {
            let v = match obj.get(k) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            (format!("{{RECORD:{k}}}"), v)
        })
        .collect()
}

/// The values every mail has: `{APP_NAME}`, `{APP_URL}` (without a
/// trailing `/`, so `{APP_URL}/_/…` is one slash).
fn app_values(state: &AppState) -> Vec<(String, String)> {
    let meta = state.settings.get().meta.clone();
    vec![
        ("{APP_NAME}".to_owned(), meta.app_name),
        ("{APP_URL}".to_owned(), meta.app_url.trim_end_matches('/').to_owned()),
    ]
}

fn fill(
    state: &AppState,
    collection: &CompiledCollection,
    record: &Value,
    template: &MailTemplate,
    to: &str,
    extra: &[(&str, &str)],
) -> Mail {
    let mut values: Vec<(String, String)> = extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    values.extend(app_values(state));
    values.extend(record_values(collection, record));
    templates::render(to, &template.subject, &template.body, &values)
}

/// The `kind` mail of `collection` about `record`, to `to`, with the flow's
/// own placeholder values `extra` (`("{TOKEN}", token)`, …).
pub(super) fn compose(
    state: &AppState,
    collection: &CompiledCollection,
    record: &Value,
    kind: TemplateKind,
    to: &str,
    extra: &[(&str, &str)],
) -> Mail {
    fill(state, collection, record, &kind.of(&options(collection)), to, extra)
}

/// A record to fill previews and test mails with: each field of the schema
/// with a made-up value, `email` = `to`.
fn sample_record(collection: &CompiledCollection, to: &str) -> Value {
    let now = crate::clock::now_string();
    let mut rec = Map::new();
    rec.insert("id".into(), Value::String("sample0record01".into()));
    if let Some(props) = collection.def.schema.get("properties").and_then(Value::as_object) {
        for (name, prop) in props {
            let v = match prop.get("type").and_then(Value::as_str) {
                Some("number" | "integer") => Value::from(42),
                Some("boolean") => Value::Bool(true),
                _ => Value::String(format!("Sample {name}")),
            };
            rec.insert(name.clone(), v);
        }
    }
    rec.insert("email".into(), Value::String(to.to_owned()));
    rec.insert("emailVisibility".into(), Value::Bool(false));
    rec.insert("verified".into(), Value::Bool(false));
    rec.insert("created".into(), Value::String(now.clone()));
    rec.insert("updated".into(), Value::String(now));
    Value::Object(rec)
}

/// Made-up values for the placeholders of a `kind` mail.
fn sample_values(collection: &CompiledCollection, kind: TemplateKind) -> Vec<(&'static str, String)> {
    match kind {
        TemplateKind::Otp => vec![
            ("{OTP}", "0".repeat(options(collection).otp.length.clamp(4, 16))),
            ("{OTP_ID}", "sample0otpid001".to_owned()),
        ],
        TemplateKind::AuthAlert => vec![(
            "{ALERT_INFO}",
            super::alerts::alert_info("203.0.113.7", "Mozilla/5.0 (sample browser)"),
        )],
        _ => vec![("{TOKEN}", SAMPLE_TOKEN.to_owned())],
    }
}

/// `template` as a `kind` mail of `collection` would be, filled with a
/// sample record and sample values.
fn sample_mail(
    state: &AppState,
    collection: &CompiledCollection,
    kind: TemplateKind,
    template: &MailTemplate,
    to: &str,
) -> Mail {
    let values = sample_values(collection, kind);
    let extra: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
    fill(state, collection, &sample_record(collection, to), template, to, &extra)
}

/// The dashboard's preview of `template` as a `kind` mail of `collection`.
pub struct Preview {
    pub subject: String,
    /// An HTML document for a sandboxed iframe (`templates::preview_document`).
    pub document: String,
    pub text: String,
}

/// `template` filled as [`sample_mail`] fills it, for the dashboard.
pub fn preview(
    state: &AppState,
    collection: &CompiledCollection,
    kind: TemplateKind,
    template: &MailTemplate,
    to: &str,
) -> Preview {
    let values = sample_values(collection, kind);
    let mut all: Vec<(String, String)> = values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    all.extend(app_values(state));
    all.extend(record_values(collection, &sample_record(collection, to)));
    let f = templates::fill_template(&template.subject, &template.body, &all);
    Preview {
        document: templates::preview_document(&f),
        subject: f.subject,
        text: f.text,
    }
}

/// The test mail `template` (a [`TemplateKind`] slug; empty =
/// `verification`) of the auth collection `collection` (name or id; empty
/// = `_superusers`, as PocketBase), to `to`, with sample values.
pub fn test_mail(state: &AppState, collection: &str, template: &str, to: &str) -> Result<Mail, ApiError> {
    let kind = match template {
        "" => TemplateKind::Verification,
        s => TemplateKind::from_slug(s).ok_or_else(|| {
            ApiError::field(
                "template",
                "validation_invalid_value",
                "Must be verification, password-reset, email-change, otp or login-alert.",
            )
        })?,
    };
    let name = if collection.is_empty() {
        crate::core::SUPERUSERS
    } else {
        collection
    };
    let c = state.registry.get(name).filter(|c| c.is_auth()).ok_or_else(|| {
        ApiError::field(
            "collection",
            "validation_invalid_auth_collection",
            "Must be a valid auth collection id or name.",
        )
    })?;
    Ok(sample_mail(state, &c, kind, &kind.of(&options(&c)), to))
}
