//! The pages the links in auth mails open, for the app's end users (not
//! superusers): `/_/auth/confirm-verification/{token}`,
//! `/_/auth/confirm-password-reset/{token}` and
//! `/_/auth/confirm-email-change/{token}`.
//!
//! GET only shows a form and changes nothing: mail scanners and link
//! previews fetch links before (or instead of) the user. It does check the
//! token, so a used, expired or garbled link says so at once (400 page).
//! The form's POST calls the same `core::auth` confirm function as the JSON
//! API, so a token works once and is checked exactly as there.
//!
//! These pages have no session, so their forms are protected like the login
//! form: a double-submit cookie (see `login.rs`) plus the dashboard's
//! `Origin` check. POSTs count against the rate limit of the matching API
//! route (`confirm-*` is an `auth` action: `collection:auth`, else
//! `*:auth`). No script, no inline style: the dashboard's CSP applies.

use std::net::{IpAddr, Ipv4Addr};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde_json::{Map, Value};

use super::{login, session, view};
use crate::core::auth::{self, MailedToken, TokenKind};
use crate::error::ApiError;
use crate::schema::record::PASSWORD_MIN;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    for flow in [Flow::Verification, Flow::PasswordReset, Flow::EmailChange] {
        cfg.service(
            web::resource(format!("/auth/{}/{{token}}", flow.op()))
                .route(web::get().to(move |req: HttpRequest, t: web::Path<String>| show(req, t.into_inner(), flow)))
                .route(
                    web::post().to(move |req: HttpRequest, t: web::Path<String>, f: Fields| {
                        submit(req, t.into_inner(), flow, f)
                    }),
                ),
        );
    }
}

/// A posted form, or why it could not be read.
type Fields = Result<web::Form<Vec<(String, String)>>, actix_web::Error>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flow {
    Verification,
    PasswordReset,
    EmailChange,
}

impl Flow {
    fn kind(self) -> TokenKind {
        match self {
            Flow::Verification => TokenKind::Verification,
            Flow::PasswordReset => TokenKind::PasswordReset,
            Flow::EmailChange => TokenKind::EmailChange,
        }
    }

    /// The API route's last segment (and this page's).
    fn op(self) -> &'static str {
        match self {
            Flow::Verification => "confirm-verification",
            Flow::PasswordReset => "confirm-password-reset",
            Flow::EmailChange => "confirm-email-change",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Flow::Verification => "Verify your email",
            Flow::PasswordReset => "Choose a new password",
            Flow::EmailChange => "Confirm your new email",
        }
    }
}

#[derive(Template)]
#[template(path = "auth/message.html")]
struct MessagePage<'a> {
    app_name: &'a str,
    title: &'a str,
    ok: bool,
    message: &'a str,
    hint: &'a str,
}

#[derive(Template)]
#[template(path = "auth/confirm_verification.html")]
struct VerificationPage<'a> {
    app_name: &'a str,
    title: &'a str,
    action: &'a str,
    csrf: &'a str,
    email: &'a str,
    error: &'a str,
}

#[derive(Template)]
#[template(path = "auth/confirm_password_reset.html")]
struct PasswordResetPage<'a> {
    app_name: &'a str,
    title: &'a str,
    action: &'a str,
    csrf: &'a str,
    email: &'a str,
    error: &'a str,
    password_error: &'a str,
    confirm_error: &'a str,
    min_length: usize,
}

#[derive(Template)]
#[template(path = "auth/confirm_email_change.html")]
struct EmailChangePage<'a> {
    app_name: &'a str,
    title: &'a str,
    action: &'a str,
    csrf: &'a str,
    email: &'a str,
    new_email: &'a str,
    error: &'a str,
    password_error: &'a str,
}

/// What to show next to the form after a refused POST.
#[derive(Default)]
struct Errors {
    /// Above the form.
    general: String,
    password: String,
    password_confirm: String,
}

impl Errors {
    /// Sorts an API validation error's field messages to their controls.
    fn from_api(e: &ApiError) -> Errors {
        let mut out = Errors::default();
        let mut rest = Vec::new();
        for (field, detail) in &e.data {
            let msg = detail["message"].as_str().unwrap_or("Invalid value.").to_owned();
            match field.as_str() {
                "password" => out.password = msg,
                "passwordConfirm" => out.password_confirm = msg,
                "newEmail" => rest.push(format!("The new address: {msg}")),
                _ => rest.push(msg),
            }
        }
        out.general = if rest.is_empty() && out.password.is_empty() && out.password_confirm.is_empty() {
            e.message.clone()
        } else {
            rest.join(" ")
        };
        out
    }
}

fn state(req: &HttpRequest) -> AppState {
    req.app_data::<web::Data<AppState>>()
        .expect("app state")
        .get_ref()
        .clone()
}

fn app_name(st: &AppState) -> String {
    st.settings.get().meta.app_name.clone()
}

fn message(req: &HttpRequest, status: StatusCode, title: &str, ok: bool, text: &str, hint: &str) -> HttpResponse {
    let name = app_name(&state(req));
    view::render_status(
        req,
        status,
        &MessagePage {
            app_name: &name,
            title,
            ok,
            message: text,
            hint,
        },
    )
}

/// A link whose token does not (or no longer) work.
fn invalid_link(req: &HttpRequest, flow: Flow) -> HttpResponse {
    let hint = match flow {
        Flow::Verification => "Ask the app to send you a new verification mail.",
        Flow::PasswordReset => "Ask the app to send you a new password reset mail.",
        Flow::EmailChange => "Ask for the change again from the app to get a new link.",
    };
    message(
        req,
        StatusCode::BAD_REQUEST,
        "Link not valid",
        false,
        "This link is invalid, has expired or has already been used.",
        hint,
    )
}

fn already_verified(req: &HttpRequest) -> HttpResponse {
    message(
        req,
        StatusCode::BAD_REQUEST,
        "Already verified",
        false,
        "This email address is already verified: the link has nothing left to do.",
        "You can close this page.",
    )
}

fn is_verified(record: &Value) -> bool {
    record.get("verified").and_then(Value::as_bool) == Some(true)
}

/// Why a link cannot be used.
enum Unusable {
    /// Bad, expired or spent token.
    Invalid,
    /// A verification link for an account that is verified already.
    AlreadyVerified { collection: String },
}

impl Unusable {
    /// The token's collection, when it names a real one.
    fn collection(&self) -> Option<&str> {
        match self {
            Unusable::Invalid => None,
            Unusable::AlreadyVerified { collection } => Some(collection),
        }
    }

    fn page(&self, req: &HttpRequest, flow: Flow) -> HttpResponse {
        match self {
            Unusable::Invalid => invalid_link(req, flow),
            Unusable::AlreadyVerified { .. } => already_verified(req),
        }
    }
}

/// The token, if it still works for this flow (and, for verification, the
/// account still needs it).
fn usable(st: &AppState, token: &str, flow: Flow) -> Result<MailedToken, Unusable> {
    let t = auth::mailed_token(st, token, flow.kind()).map_err(|_| Unusable::Invalid)?;
    if flow == Flow::Verification && is_verified(&t.record) {
        return Err(Unusable::AlreadyVerified {
            collection: t.collection.def.name.clone(),
        });
    }
    Ok(t)
}

/// The flow's form (with a fresh double-submit token).
fn form(
    req: &HttpRequest,
    status: StatusCode,
    flow: Flow,
    token: &str,
    t: &MailedToken,
    errors: &Errors,
) -> HttpResponse {
    let name = app_name(&state(req));
    let action = format!("/_/auth/{}/{}", flow.op(), view::enc(token));
    let email = t.record.get("email").and_then(Value::as_str).unwrap_or_default();
    let title = flow.title();
    login::with_pre_cookie(req, status, |csrf| match flow {
        Flow::Verification => view::render(
            req,
            &VerificationPage {
                app_name: &name,
                title,
                action: &action,
                csrf,
                email,
                error: &errors.general,
            },
        ),
        Flow::PasswordReset => view::render(
            req,
            &PasswordResetPage {
                app_name: &name,
                title,
                action: &action,
                csrf,
                email,
                error: &errors.general,
                password_error: &errors.password,
                confirm_error: &errors.password_confirm,
                min_length: PASSWORD_MIN,
            },
        ),
        Flow::EmailChange => view::render(
            req,
            &EmailChangePage {
                app_name: &name,
                title,
                action: &action,
                csrf,
                email,
                new_email: t.claims.new_email.as_deref().unwrap_or_default(),
                error: &errors.general,
                password_error: &errors.password,
            },
        ),
    })
}

async fn show(req: HttpRequest, token: String, flow: Flow) -> HttpResponse {
    let st = state(&req);
    match usable(&st, &token, flow) {
        Ok(t) => form(&req, StatusCode::OK, flow, &token, &t, &Errors::default()),
        Err(u) => u.page(&req, flow),
    }
}

/// Counts the POST against the API route's rate limit: `POST
/// /api/collections/{c}/confirm-…`, where `{c}` is the token's collection
/// (`*:confirmPasswordReset` and the like decide for a token that names
/// none).
fn rate_limit(req: &HttpRequest, st: &AppState, collection: Option<&str>, flow: Flow) -> Result<(), u64> {
    let settings = st.settings.get();
    let ip = crate::api::middleware::client_ip(req).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let path = format!("/api/collections/{}/{}", collection.unwrap_or("-"), flow.op());
    st.rate_limiter.check_request(
        &settings,
        "POST",
        &path,
        ip,
        |_| collection.map(str::to_owned),
        || false,
    )
}

/// Uses the token through the API's confirm function for `flow`, with the
/// form's fields as that endpoint's body.
async fn confirm(
    st: &AppState,
    flow: Flow,
    t: &MailedToken,
    token: &str,
    fields: &[(String, String)],
    ip: Option<IpAddr>,
) -> Result<(), ApiError> {
    let field = |name: &str| last(fields, name);
    let mut body = Map::new();
    body.insert("token".into(), Value::String(token.to_owned()));
    match flow {
        Flow::Verification => auth::confirm_verification(st, &t.collection, &body).await,
        Flow::PasswordReset => {
            for name in ["password", "passwordConfirm"] {
                body.insert(name.into(), Value::String(field(name).to_owned()));
            }
            auth::confirm_password_reset(st, &t.collection, &body).await
        }
        Flow::EmailChange => {
            body.insert("password".into(), Value::String(field("password").to_owned()));
            auth::confirm_email_change(st, &t.collection, &body, ip).await
        }
    }
}

/// The last value of form field `name`, or `""`.
fn last<'f>(fields: &'f [(String, String)], name: &str) -> &'f str {
    fields
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

/// The page after a confirmed link.
fn done(req: &HttpRequest, flow: Flow, t: &MailedToken) -> HttpResponse {
    let (title, text) = match flow {
        Flow::Verification => (
            "Email verified",
            "Your email is verified. You can close this page.".to_owned(),
        ),
        Flow::PasswordReset => (
            "Password changed",
            "Your password has been changed: log in with the new one. You can close this page.".to_owned(),
        ),
        Flow::EmailChange => (
            "Email changed",
            format!(
                "Your email address is now {}: use it to log in. You can close this page.",
                t.claims.new_email.as_deref().unwrap_or_default()
            ),
        ),
    };
    message(req, StatusCode::OK, title, true, &text, "")
}

/// A mail-link form post: form and CSRF checks, the token, the rate limit,
/// then the confirm and its page.
async fn submit(req: HttpRequest, token: String, flow: Flow, fields: Fields) -> HttpResponse {
    let Ok(fields) = fields else {
        return message(
            &req,
            StatusCode::BAD_REQUEST,
            "Bad request",
            false,
            "The form could not be read.",
            "Go back, reload the page and try again.",
        );
    };
    let field = |name: &str| last(&fields, name);
    if session::check_origin(&req).is_err() || !login::pre_cookie_ok(&req, field("_csrf")) {
        return message(
            &req,
            StatusCode::FORBIDDEN,
            "Request refused",
            false,
            "The form's security token is missing or out of date (or the form was sent from another site).",
            "Open the link from the mail again and submit the form from there.",
        );
    }
    let st = state(&req);
    let checked = usable(&st, &token, flow);
    let collection = match &checked {
        Ok(t) => Some(t.collection.def.name.as_str()),
        Err(u) => u.collection(),
    };
    if let Err(secs) = rate_limit(&req, &st, collection, flow) {
        return message(
            &req,
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            false,
            &format!("Too many attempts. Try again in {secs} s."),
            "",
        );
    }
    let t = match checked {
        Ok(t) => t,
        Err(u) => return u.page(&req, flow),
    };
    let ip = crate::api::middleware::client_ip(&req);
    match confirm(&st, flow, &t, &token, &fields, ip).await {
        Ok(()) => done(&req, flow, &t),
        // Spent meanwhile (a second tab, a double click).
        Err(e) if e.data.contains_key("token") => invalid_link(&req, flow),
        Err(e) if (400..500).contains(&e.status) => form(
            &req,
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            flow,
            &token,
            &t,
            &Errors::from_api(&e),
        ),
        Err(e) => {
            tracing::warn!(flow = flow.op(), error = %e.message, "mail link confirm failed");
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            message(
                &req,
                status,
                "Something went wrong",
                false,
                &e.message,
                "Try again in a moment.",
            )
        }
    }
}
