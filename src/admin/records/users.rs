//! Actions on an auth record (the "Account" card of the record page): mark
//! verified, mail a verification or password-reset link, impersonate,
//! unlink an OAuth2 provider. All
//! go through the same core functions as the API's endpoints.

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde_json::{json, Map, Value};

use super::{collection, error_text, record_path};
use crate::admin::view::{self, AdminError};
use crate::admin::{AdminForm, Page};
use crate::core::{auth, records};
use crate::schema::CompiledCollection;

type Path = web::Path<(String, String)>;

/// The auth collection and the stored record of the URL.
fn account(form: &AdminForm, path: &Path) -> Result<(std::sync::Arc<CompiledCollection>, Value), AdminError> {
    let coll = collection(&form.admin, &path.0)?;
    if !coll.is_auth() {
        return Err(AdminError::BadRequest(format!(
            "'{}' is not an auth collection: its records are not accounts.",
            coll.def.name
        )));
    }
    let rec = form
        .admin
        .state
        .store
        .get(&coll.def.id, &path.1)
        .map_err(crate::error::ApiError::from)?
        .ok_or(AdminError::NotFound)?
        .data;
    Ok((coll, rec))
}

fn email_of(rec: &Value) -> String {
    rec.get("email").and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// `POST …/{id}/verify`: `verified = true` through a normal update.
pub async fn verify(req: HttpRequest, form: AdminForm, path: Path) -> Result<HttpResponse, AdminError> {
    let (coll, _) = account(&form, &path)?;
    let mut body = Map::new();
    body.insert("verified".into(), Value::Bool(true));
    let back = record_path(&coll, &path.1);
    match records::update(
        &form.admin.state,
        &coll,
        &path.1,
        body,
        Vec::new(),
        "",
        &form.admin.request("PATCH"),
    )
    .await
    {
        Ok(_) => Ok(view::redirect_flash(&req, &back, "ok", "The account is now verified.")),
        Err(e) if e.status < 500 => Ok(view::redirect_flash(&req, &back, "error", &error_text(&e))),
        Err(e) => Err(e.into()),
    }
}

/// `POST …/{id}/send-verification`.
pub async fn send_verification(req: HttpRequest, form: AdminForm, path: Path) -> Result<HttpResponse, AdminError> {
    let (coll, rec) = account(&form, &path)?;
    let back = record_path(&coll, &path.1);
    let email = email_of(&rec);
    if rec.get("verified").and_then(Value::as_bool) == Some(true) {
        return Ok(view::redirect_flash(
            &req,
            &back,
            "error",
            "The account is already verified: no mail was sent.",
        ));
    }
    auth::request_verification(&form.admin.state, &coll, &as_body(&email))?;
    Ok(view::redirect_flash(
        &req,
        &back,
        "ok",
        &format!("A verification mail to {email} is on its way."),
    ))
}

/// `POST …/{id}/send-reset`.
pub async fn send_reset(req: HttpRequest, form: AdminForm, path: Path) -> Result<HttpResponse, AdminError> {
    let (coll, rec) = account(&form, &path)?;
    let email = email_of(&rec);
    auth::request_password_reset(&form.admin.state, &coll, &as_body(&email))?;
    Ok(view::redirect_flash(
        &req,
        &record_path(&coll, &path.1),
        "ok",
        &format!("A password reset mail to {email} is on its way."),
    ))
}

/// `POST …/{id}/unlink {link}`: removes one linked OAuth2 account (the
/// user stays; the provider account can sign in again as a new link).
pub async fn unlink(req: HttpRequest, form: AdminForm, path: Path) -> Result<HttpResponse, AdminError> {
    let (coll, _) = account(&form, &path)?;
    let back = record_path(&coll, &path.1);
    let link = form.text("link").to_owned();
    let state = &form.admin.state;
    match auth::unlink_provider(state, &coll, &path.1, &link, &form.admin.request("DELETE")).await {
        Ok(true) => Ok(view::redirect_flash(&req, &back, "ok", "The provider was unlinked.")),
        Ok(false) => Ok(view::redirect_flash(&req, &back, "error", "No such linked provider.")),
        Err(e) if e.status < 500 => Ok(view::redirect_flash(&req, &back, "error", &error_text(&e))),
        Err(e) => Err(e.into()),
    }
}

fn as_body(email: &str) -> Map<String, Value> {
    match json!({ "email": email }) {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[derive(Template)]
#[template(path = "records/impersonate.html")]
struct TokenPage {
    page: Page,
    name: String,
    back: String,
    id: String,
    email: String,
    token: String,
    /// How long the token works, in words ("7 days"), or empty if unknown.
    valid_for: String,
}

/// Seconds in the largest whole unit: "7 days", "2 hours", "90 minutes".
fn duration_text(secs: u64) -> String {
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match secs {
        0 => String::new(),
        s if s % 86_400 == 0 => plural(s / 86_400, "day"),
        s if s % 3600 == 0 => plural(s / 3600, "hour"),
        s if s % 60 == 0 => plural(s / 60, "minute"),
        s => plural(s, "second"),
    }
}

/// `POST …/{id}/impersonate`: a page (never a redirect, so the token is in
/// no URL and no other page) with a non-refreshable token for the account.
pub async fn impersonate(req: HttpRequest, form: AdminForm, path: Path) -> Result<HttpResponse, AdminError> {
    let (coll, rec) = account(&form, &path)?;
    let answer = auth::impersonate(&form.admin.state, &coll, &path.1, None)?;
    let token = answer
        .get("token")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let seconds = coll
        .def
        .auth_options
        .as_ref()
        .map(|o| o.auth_token_duration)
        .unwrap_or_default();
    let tpl = TokenPage {
        page: Page::new(&req, &form.admin, "Impersonate", format!("records:{}", coll.def.name)),
        name: coll.def.name.clone(),
        back: record_path(&coll, &path.1),
        id: path.1.clone(),
        email: email_of(&rec),
        token,
        valid_for: duration_text(seconds),
    };
    Ok(view::render(&req, &tpl))
}
