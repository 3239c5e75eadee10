//! The auth options page of an auth collection (`/_/collections/{name}/auth`):
//! OAuth2 (on/off, mapped fields, providers added, edited and removed one
//! at a time), MFA, one-time passwords, login alerts, and the mail
//! templates editor with a preview.
//!
//! Every section is its own form, and each saves PocketBase's top-level key
//! (`oauth2`, `mfa`, `otp`, `authAlert`, `…Template`) through
//! `core::collections::update`, the path `PATCH /api/collections/{c}` takes:
//! the same checks, the same messages. Values are read back from the
//! collection's API view, so the page shows what a client would read.
//!
//! The preview is the mail a sample record would get, rendered on the
//! server and shown in an `<iframe sandbox srcdoc>`: no script in a
//! template runs, and it gets no access to the dashboard's origin.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde_json::{json, Map, Value};

use super::key_of;
use crate::admin::view::{self, AdminError};
use crate::admin::{Admin, AdminForm, Page};
use crate::core;
use crate::error::ApiError;
use crate::schema::mail_templates::{MailTemplate, TemplateKind};
use crate::schema::CompiledCollection;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/collections/{name}/auth", web::get().to(page))
        .route("/collections/{name}/auth/oauth2", web::post().to(save_oauth2))
        .route("/collections/{name}/auth/providers", web::post().to(save_provider))
        .route(
            "/collections/{name}/auth/providers/remove",
            web::post().to(remove_provider),
        )
        .route("/collections/{name}/auth/mfa", web::post().to(save_mfa))
        .route("/collections/{name}/auth/otp", web::post().to(save_otp))
        .route("/collections/{name}/auth/alert", web::post().to(save_alert))
        .route(
            "/collections/{name}/auth/templates/{kind}",
            web::post().to(save_template),
        )
        .route(
            "/collections/{name}/auth/templates/{kind}/preview",
            web::post().to(preview_template),
        )
        .route(
            "/collections/{name}/auth/templates/{kind}/test",
            web::post().to(test_template),
        );
}

/// OAuth2 mapped fields: PocketBase's keys and their labels.
const MAPPED: [(&str, &str); 4] = [
    ("id", "Id"),
    ("name", "Name"),
    ("username", "Username"),
    ("avatarURL", "Avatar URL"),
];

/// A message of a refused save, keyed by its form field (or by the
/// section, for one without a field of its own).
struct Problem {
    key: String,
    message: String,
}

pub struct MappedField {
    key: &'static str,
    label: &'static str,
    value: String,
}

/// One configured provider (its secret never leaves the server).
pub struct ProviderRow {
    name: String,
    display_name: String,
    client_id: String,
    has_secret: bool,
    auth_url: String,
    token_url: String,
    user_info_url: String,
    /// `""` (PocketBase decides), `"on"` or `"off"`.
    pkce: String,
}

impl ProviderRow {
    fn from_value(v: &Value) -> ProviderRow {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        ProviderRow {
            name: s("name"),
            display_name: s("displayName"),
            client_id: s("clientId"),
            has_secret: v
                .get("clientSecret")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
                || v.get("clientSecretSet").and_then(Value::as_bool) == Some(true),
            auth_url: s("authURL"),
            token_url: s("tokenURL"),
            user_info_url: s("userInfoURL"),
            pkce: match v.get("pkce").and_then(Value::as_bool) {
                Some(true) => "on".into(),
                Some(false) => "off".into(),
                None => String::new(),
            },
        }
    }

    /// Marks the row as having a secret when the collection stores one for
    /// its provider: the API's view never shows secrets (as PocketBase), so
    /// only the typed options can tell.
    fn with_stored_secret(mut self, c: &CompiledCollection) -> ProviderRow {
        let stored = c.def.auth_options.as_ref().and_then(|o| o.oauth2.provider(&self.name));
        self.has_secret |= stored.is_some_and(|p| !p.client_secret.is_empty());
        self
    }

    fn from_form(f: &AdminForm) -> ProviderRow {
        let s = |k: &str| f.text(k).trim().to_owned();
        ProviderRow {
            name: s("provider.name"),
            display_name: s("provider.displayName"),
            client_id: s("provider.clientId"),
            has_secret: false,
            auth_url: s("provider.authURL"),
            token_url: s("provider.tokenURL"),
            user_info_url: s("provider.userInfoURL"),
            pkce: s("provider.pkce"),
        }
    }
}

/// The provider form: a new one (`original` empty) or an existing one.
pub struct ProviderForm {
    original: String,
    row: ProviderRow,
}

pub struct TemplateForm {
    slug: &'static str,
    label: &'static str,
    subject: String,
    body: String,
    placeholders: String,
    /// Its fields' error keys, and both space-separated.
    subject_key: String,
    body_key: String,
    field_keys: String,
    save_path: String,
    preview_path: String,
    test_path: String,
    to_key: String,
    /// The address typed for a test mail.
    to: String,
}

pub struct Preview {
    slug: &'static str,
    subject: String,
    /// The whole HTML document, for the iframe's `srcdoc`.
    html: String,
    text: String,
}

#[derive(Template)]
#[template(path = "collections/auth.html")]
struct AuthPage {
    page: Page,
    key: String,
    name: String,
    oauth2_enabled: bool,
    mapped: Vec<MappedField>,
    providers: Vec<ProviderRow>,
    provider_form: Option<ProviderForm>,
    mfa_enabled: bool,
    mfa_duration: String,
    mfa_rule: String,
    otp_enabled: bool,
    otp_duration: String,
    otp_length: String,
    alert_enabled: bool,
    templates: Vec<TemplateForm>,
    preview: Option<Preview>,
    problems: Vec<Problem>,
}

impl AuthPage {
    /// The page as stored.
    fn new(req: &HttpRequest, admin: &Admin, c: &CompiledCollection) -> AuthPage {
        let v = core::collections::export(&admin.state, c);
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        let opts = c.def.auth_options.clone().unwrap_or_default();
        AuthPage {
            page: Page::new(req, admin, format!("{}: auth options", c.def.name), "collections"),
            key: key_of(c),
            name: c.def.name.clone(),
            oauth2_enabled: v["oauth2"]["enabled"] == true,
            mapped: MAPPED
                .iter()
                .map(|&(key, label)| MappedField {
                    key,
                    label,
                    value: text(&v["oauth2"]["mappedFields"][key]),
                })
                .collect(),
            providers: v["oauth2"]["providers"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|p| ProviderRow::from_value(p).with_stored_secret(c))
                        .collect()
                })
                .unwrap_or_default(),
            provider_form: None,
            mfa_enabled: v["mfa"]["enabled"] == true,
            mfa_duration: text(&v["mfa"]["duration"]),
            mfa_rule: text(&v["mfa"]["rule"]),
            otp_enabled: v["otp"]["enabled"] == true,
            otp_duration: text(&v["otp"]["duration"]),
            otp_length: text(&v["otp"]["length"]),
            alert_enabled: v["authAlert"]["enabled"] == true,
            templates: TemplateKind::ALL
                .into_iter()
                .map(|k| {
                    let t = k.of(&opts);
                    template_form(k, t.subject, t.body)
                })
                .collect(),
            preview: None,
            problems: Vec::new(),
        }
    }

    fn action(&self, what: &str) -> String {
        format!("/_/collections/{}/auth/{what}", view::enc(&self.key))
    }

    /// The message for the field `key`, if any.
    fn problem(&self, key: &str) -> Option<&str> {
        self.problems.iter().find(|p| p.key == key).map(|p| p.message.as_str())
    }

    /// Messages of section `section` not shown at one of its `fields`
    /// (space-separated keys).
    fn section_problems(&self, section: &str, fields: &str) -> Vec<&str> {
        self.problems
            .iter()
            .filter(|p| p.key.split('.').next() == Some(section) && !fields.split(' ').any(|f| f == p.key))
            .map(|p| p.message.as_str())
            .collect()
    }

    /// The id suffix of a field's message: `mfa.rule` → `mfa-rule`.
    fn anchor(&self, key: &str) -> String {
        key.replace('.', "-")
    }

    /// `aria-invalid` and the link to the message, for a field with one.
    /// (Keys are the page's own names: nothing to escape.)
    fn invalid(&self, key: &str) -> String {
        match self.problem(key) {
            Some(_) => format!(" aria-invalid=\"true\" aria-describedby=\"e-{}\"", self.anchor(key)),
            None => String::new(),
        }
    }

    /// Whether a template's part of the page starts open: it has a problem
    /// or is previewed.
    fn is_open(&self, slug: &str) -> bool {
        self.problems.iter().any(|p| p.key.split('.').next() == Some(slug))
            || self.preview.as_ref().is_some_and(|pv| pv.slug == slug)
    }

    fn pkce_selected(&self, value: &str) -> bool {
        self.provider_form.as_ref().is_some_and(|f| f.row.pkce == value)
    }
}

fn template_form(k: TemplateKind, subject: String, body: String) -> TemplateForm {
    let mut names = vec!["{APP_NAME}", "{APP_URL}"];
    names.extend_from_slice(k.placeholders());
    names.push("{RECORD:field}");
    let slug = k.slug();
    TemplateForm {
        slug,
        label: k.label(),
        subject,
        body,
        placeholders: names.join(" "),
        subject_key: format!("{slug}.subject"),
        body_key: format!("{slug}.body"),
        field_keys: format!("{slug}.subject {slug}.body"),
        save_path: format!("templates/{slug}"),
        preview_path: format!("templates/{slug}/preview"),
        test_path: format!("templates/{slug}/test"),
        to_key: format!("{slug}.to"),
        to: String::new(),
    }
}

fn auth_collection(admin: &Admin, key: &str) -> Result<Arc<CompiledCollection>, AdminError> {
    admin
        .state
        .registry
        .get(key)
        .filter(|c| c.is_auth())
        .ok_or(AdminError::NotFound)
}

#[derive(serde::Deserialize)]
pub struct PageQuery {
    edit: Option<String>,
    add: Option<String>,
}

/// `GET /_/collections/{name}/auth` (`?add=1`: the new-provider form;
/// `?edit=<provider>`: that provider's form).
async fn page(
    req: HttpRequest,
    admin: Admin,
    path: web::Path<String>,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, AdminError> {
    let c = auth_collection(&admin, &path)?;
    let mut p = AuthPage::new(&req, &admin, &c);
    if let Some(name) = q.edit.as_deref() {
        let stored = provider_value(&admin, &c, name);
        if stored.is_null() {
            return Err(AdminError::NotFound);
        }
        p.provider_form = Some(ProviderForm {
            original: name.to_owned(),
            row: ProviderRow::from_value(&stored).with_stored_secret(&c),
        });
    } else if q.add.is_some() {
        p.provider_form = Some(ProviderForm {
            original: String::new(),
            row: ProviderRow::from_value(&Value::Null),
        });
    }
    Ok(view::render(&req, &p))
}

/// The stored provider `name` as the API shows it.
fn provider_value(admin: &Admin, c: &CompiledCollection, name: &str) -> Value {
    let v = core::collections::export(&admin.state, c);
    v["oauth2"]["providers"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

/// Saves `body` (PocketBase's keys) like `PATCH /api/collections/{c}`;
/// on success back to the page at `anchor`, on a refusal the page again
/// (400) with the messages, after `keep` put the typed values back.
async fn save<F>(
    req: &HttpRequest,
    form: &AdminForm,
    c: &CompiledCollection,
    body: Map<String, Value>,
    anchor: &str,
    keep: F,
) -> Result<HttpResponse, AdminError>
where
    F: FnOnce(&mut AuthPage),
{
    match core::collections::update(&form.admin.state, &c.def.id, body).await {
        Ok(_) => Ok(view::redirect_flash(
            req,
            &format!("/_/collections/{}/auth#{anchor}", view::enc(&key_of(c))),
            "ok",
            "Saved.",
        )),
        Err(e) if e.status == 400 => Ok(refused(req, form, c, &e, anchor, keep)),
        Err(e) => Err(e.into()),
    }
}

fn refused<F>(
    req: &HttpRequest,
    form: &AdminForm,
    c: &CompiledCollection,
    e: &ApiError,
    section: &str,
    keep: F,
) -> HttpResponse
where
    F: FnOnce(&mut AuthPage),
{
    let mut p = AuthPage::new(req, &form.admin, c);
    p.problems = e
        .data
        .iter()
        .map(|(k, v)| Problem {
            key: k.clone(),
            message: v["message"].as_str().unwrap_or_default().to_owned(),
        })
        .collect();
    if p.problems.is_empty() {
        p.problems.push(Problem {
            key: section.to_owned(),
            message: e.message.clone(),
        });
    }
    keep(&mut p);
    view::render_status(req, StatusCode::BAD_REQUEST, &p)
}

fn checked(form: &AdminForm, name: &str) -> bool {
    form.get(name).is_some()
}

/// A number field sent as typed: a JSON number when it is one, else the
/// text (the API then refuses it with its own message).
fn number(form: &AdminForm, name: &str) -> Value {
    let raw = form.text(name).trim();
    raw.parse::<u64>().map_or_else(|_| json!(raw), |n| json!(n))
}

/// The stored `oauth2` object (what the API shows), to change a part of.
fn stored_oauth2(form: &AdminForm, c: &CompiledCollection) -> Map<String, Value> {
    let v = core::collections::export(&form.admin.state, c);
    v.get("oauth2").and_then(Value::as_object).cloned().unwrap_or_default()
}

/// `POST …/auth/oauth2`: on/off and the mapped fields.
async fn save_oauth2(req: HttpRequest, path: web::Path<String>, form: AdminForm) -> Result<HttpResponse, AdminError> {
    let c = auth_collection(&form.admin, &path)?;
    let mut oauth2 = stored_oauth2(&form, &c);
    let enabled = checked(&form, "oauth2.enabled");
    oauth2.insert("enabled".into(), json!(enabled));
    let mut mapped = Map::new();
    for (key, _) in MAPPED {
        mapped.insert(
            key.into(),
            json!(form.text(&format!("oauth2.mappedFields.{key}")).trim()),
        );
    }
    oauth2.insert("mappedFields".into(), Value::Object(mapped.clone()));
    let body = Map::from_iter([("oauth2".to_owned(), Value::Object(oauth2))]);
    save(&req, &form, &c, body, "oauth2", |p| {
        p.oauth2_enabled = enabled;
        for m in &mut p.mapped {
            m.value = mapped[m.key].as_str().unwrap_or_default().to_owned();
        }
    })
    .await
}

/// The provider object PocketBase's `oauth2.providers` holds, from the
/// form over `stored` (an empty secret keeps the stored one).
fn provider_object(row: &ProviderRow, secret: &str, stored: &Value) -> Value {
    let mut p = stored.as_object().cloned().unwrap_or_default();
    for (k, v) in [
        ("name", &row.name),
        ("displayName", &row.display_name),
        ("clientId", &row.client_id),
        ("authURL", &row.auth_url),
        ("tokenURL", &row.token_url),
        ("userInfoURL", &row.user_info_url),
    ] {
        p.insert(k.into(), json!(v));
    }
    if !secret.is_empty() {
        p.insert("clientSecret".into(), json!(secret));
    }
    let pkce = match row.pkce.as_str() {
        "on" => json!(true),
        "off" => json!(false),
        _ => Value::Null,
    };
    p.insert("pkce".into(), pkce);
    Value::Object(p)
}

/// `POST …/auth/providers`: adds a provider (`original` empty) or saves
/// the one named `original`.
async fn save_provider(req: HttpRequest, path: web::Path<String>, form: AdminForm) -> Result<HttpResponse, AdminError> {
    let c = auth_collection(&form.admin, &path)?;
    let original = form.text("provider.original").to_owned();
    let mut row = ProviderRow::from_form(&form);
    let mut oauth2 = stored_oauth2(&form, &c);
    let mut providers = oauth2
        .get("providers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let at = providers.iter().position(|p| p["name"] == original.as_str());
    let stored = at.map(|i| providers[i].clone()).unwrap_or(Value::Null);
    row.has_secret = ProviderRow::from_value(&stored).with_stored_secret(&c).has_secret;
    let clash = row.name != original && providers.iter().any(|p| p["name"] == row.name.as_str());
    let problem = if row.name.is_empty() {
        Some(("provider.name", "Name the provider (e.g. google, github, oidc)."))
    } else if clash {
        Some((
            "provider.name",
            "There is a provider of this name already: edit that one.",
        ))
    } else if !original.is_empty() && at.is_none() {
        Some(("provider", "That provider is gone: it was removed meanwhile."))
    } else {
        None
    };
    let provider = provider_object(&row, form.text("provider.clientSecret"), &stored);
    let keep = |p: &mut AuthPage| {
        p.provider_form = Some(ProviderForm {
            original: original.clone(),
            row,
        })
    };
    if let Some((key, message)) = problem {
        let e = ApiError::field(key, "validation_invalid_value", message);
        return Ok(refused(&req, &form, &c, &e, "provider", keep));
    }
    match at {
        Some(i) => providers[i] = provider,
        None => providers.push(provider),
    }
    oauth2.insert("providers".into(), Value::Array(providers));
    let body = Map::from_iter([("oauth2".to_owned(), Value::Object(oauth2))]);
    save(&req, &form, &c, body, "oauth2", keep).await
}

/// `POST …/auth/providers/remove` (`provider.name`).
async fn remove_provider(
    req: HttpRequest,
    path: web::Path<String>,
    form: AdminForm,
) -> Result<HttpResponse, AdminError> {
    let c = auth_collection(&form.admin, &path)?;
    let name = form.text("provider.name");
    let mut oauth2 = stored_oauth2(&form, &c);
    let mut providers = oauth2
        .get("providers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    providers.retain(|p| p["name"] != name);
    oauth2.insert("providers".into(), Value::Array(providers));
    let body = Map::from_iter([("oauth2".to_owned(), Value::Object(oauth2))]);
    save(&req, &form, &c, body, "oauth2", |_| {}).await
}

/// `POST …/auth/mfa`: on/off, duration, rule.
async fn save_mfa(req: HttpRequest, path: web::Path<String>, form: AdminForm) -> Result<HttpResponse, AdminError> {
    let c = auth_collection(&form.admin, &path)?;
    let enabled = checked(&form, "mfa.enabled");
    let rule = form.text("mfa.rule").trim().to_owned();
    let duration = form.text("mfa.duration").trim().to_owned();
    let body = Map::from_iter([(
        "mfa".to_owned(),
        json!({"enabled": enabled, "duration": number(&form, "mfa.duration"), "rule": rule}),
    )]);
    save(&req, &form, &c, body, "mfa", |p| {
        p.mfa_enabled = enabled;
        p.mfa_duration = duration;
        p.mfa_rule = rule;
    })
    .await
}

/// `POST …/auth/otp`: on/off, duration, length.
async fn save_otp(req: HttpRequest, path: web::Path<String>, form: AdminForm) -> Result<HttpResponse, AdminError> {
    let c = auth_collection(&form.admin, &path)?;
    let enabled = checked(&form, "otp.enabled");
    let duration = form.text("otp.duration").trim().to_owned();
    let length = form.text("otp.length").trim().to_owned();
    let body = Map::from_iter([(
        "otp".to_owned(),
        json!({"enabled": enabled, "duration": number(&form, "otp.duration"), "length": number(&form, "otp.length")}),
    )]);
    save(&req, &form, &c, body, "otp", |p| {
        p.otp_enabled = enabled;
        p.otp_duration = duration;
        p.otp_length = length;
    })
    .await
}

/// `POST …/auth/alert`: login alerts on/off.
async fn save_alert(req: HttpRequest, path: web::Path<String>, form: AdminForm) -> Result<HttpResponse, AdminError> {
    let c = auth_collection(&form.admin, &path)?;
    let enabled = checked(&form, "authAlert.enabled");
    let body = Map::from_iter([("authAlert".to_owned(), json!({"enabled": enabled}))]);
    save(&req, &form, &c, body, "authAlert", |p| p.alert_enabled = enabled).await
}

/// The template `kind` as typed (a textarea sends CRLF line ends).
fn typed_template(form: &AdminForm) -> MailTemplate {
    MailTemplate {
        subject: form.text("subject").to_owned(),
        body: form.text("body").replace("\r\n", "\n"),
    }
}

fn template_kind(slug: &str) -> Result<TemplateKind, AdminError> {
    TemplateKind::from_slug(slug).ok_or(AdminError::NotFound)
}

/// Puts the typed template back into the page, and moves the API's keys
/// for it (`verificationTemplate.subject`) onto the form's
/// (`verification.subject`).
fn keep_template(p: &mut AuthPage, kind: TemplateKind, t: MailTemplate) {
    let prefix = kind.pocketbase_path();
    for problem in &mut p.problems {
        if let Some(rest) = problem.key.strip_prefix(prefix) {
            problem.key = format!("{}{rest}", kind.slug());
        }
    }
    if let Some(f) = p.templates.iter_mut().find(|f| f.slug == kind.slug()) {
        f.subject = t.subject;
        f.body = t.body;
    }
}

/// The API body that sets template `kind` to `t`.
fn template_body(kind: TemplateKind, t: &MailTemplate) -> Map<String, Value> {
    let t = json!(t);
    let (key, value) = match kind {
        TemplateKind::Otp => ("otp", json!({"emailTemplate": t})),
        TemplateKind::AuthAlert => ("authAlert", json!({"emailTemplate": t})),
        other => (other.pocketbase_path(), t),
    };
    Map::from_iter([(key.to_owned(), value)])
}

/// `POST …/auth/templates/{kind}`: saves one template (`reset`: back to
/// Basalt's default).
async fn save_template(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    form: AdminForm,
) -> Result<HttpResponse, AdminError> {
    let (name, slug) = path.into_inner();
    let c = auth_collection(&form.admin, &name)?;
    let kind = template_kind(&slug)?;
    let t = if form.get("reset").is_some() {
        kind.default_template()
    } else {
        typed_template(&form)
    };
    let body = template_body(kind, &t);
    let anchor = format!("template-{slug}");
    save(&req, &form, &c, body, &anchor, |p| keep_template(p, kind, t)).await
}

/// `POST …/auth/templates/{kind}/preview`: the page again with the typed
/// template kept (not saved) and the mail it makes for a sample record.
async fn preview_template(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    form: AdminForm,
) -> Result<HttpResponse, AdminError> {
    let (name, slug) = path.into_inner();
    let c = auth_collection(&form.admin, &name)?;
    let kind = template_kind(&slug)?;
    let t = typed_template(&form);
    let mut p = AuthPage::new(&req, &form.admin, &c);
    let to = "user@example.com";
    let mail = core::auth::mails::preview(&form.admin.state, &c, kind, &t, to);
    p.preview = Some(Preview {
        slug: kind.slug(),
        subject: mail.subject,
        html: mail.document,
        text: mail.text,
    });
    keep_template(&mut p, kind, t);
    Ok(view::render(&req, &p))
}

/// `POST …/auth/templates/{kind}/test` (`to`): mails the saved template,
/// filled with sample values, to `to` (`POST /api/settings/test/email`
/// with this collection, shared code).
async fn test_template(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    form: AdminForm,
) -> Result<HttpResponse, AdminError> {
    let (name, slug) = path.into_inner();
    let c = auth_collection(&form.admin, &name)?;
    let kind = template_kind(&slug)?;
    let to = form.text("to").trim().to_owned();
    let state = &form.admin.state;
    match crate::api::mail::send_test(state, &to, kind.slug(), &c.def.id).await {
        Ok(()) => {
            let text = if state.settings.get().smtp.enabled {
                format!("Test mail sent to {to}.")
            } else {
                format!(
                    "SMTP is off: the test mail was written to the dev outbox ({}).",
                    state.mailer.outbox_dir().display()
                )
            };
            let location = format!("/_/collections/{}/auth#template-{slug}", view::enc(&key_of(&c)));
            Ok(view::redirect_flash(&req, &location, "ok", &text))
        }
        Err(e) if e.status == 400 => {
            // A bad address or a failed delivery: shown at the address.
            let message = e
                .data
                .get("email")
                .and_then(|v| v["message"].as_str())
                .unwrap_or(&e.message)
                .to_owned();
            let e = ApiError::field(&format!("{slug}.to"), "validation_invalid_value", &message);
            Ok(refused(&req, &form, &c, &e, &slug, |p| {
                if let Some(f) = p.templates.iter_mut().find(|f| f.slug == kind.slug()) {
                    f.to = to;
                }
            }))
        }
        Err(e) => Err(e.into()),
    }
}
