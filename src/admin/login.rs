//! Login, logout and the first-start setup page.
//!
//! The login and setup forms have no session yet, so their CSRF protection
//! is a double-submit cookie: the page sets a random `basalt_login_csrf`
//! cookie (SameSite=Strict) and puts the same value in the form; a post
//! must carry both, equal. Logins count against the `*:auth` rate limits
//! like the API's password login: per address, and failures per account
//! and address (so a stranger cannot lock the owner out).
//!
//! When `_superusers` has MFA on, a right password does not log in yet: the
//! server mails a one-time code to the superuser (its `request-otp`) and
//! shows a code form; the code, with the `mfaId` the password earned, goes
//! through `auth-with-otp`'s checks and `login::complete` like any second
//! factor, and only then is there a session.

use std::net::{IpAddr, Ipv4Addr};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;

use super::session::{self, AdminForm, PRE_COOKIE};
use super::view::{self, AdminError};
use crate::core::SUPERUSERS;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/login")
            .route(web::get().to(login_page))
            .route(web::post().to(login_submit)),
    )
    .route("/login/mfa", web::post().to(mfa_submit))
    .route("/logout", web::post().to(logout))
    .service(
        web::resource("/setup")
            .route(web::get().to(setup_page))
            .route(web::post().to(setup_submit)),
    );
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    csrf: &'a str,
    next: &'a str,
    email: &'a str,
    error: &'a str,
    app_name: &'a str,
}

/// The second step of a login when MFA is on: the mailed code.
#[derive(Template)]
#[template(path = "login_mfa.html")]
struct MfaPage<'a> {
    csrf: &'a str,
    next: &'a str,
    email: &'a str,
    mfa_id: &'a str,
    otp_id: &'a str,
    error: &'a str,
    app_name: &'a str,
}

/// What the code form posts: the code and the two ids the first step gave.
#[derive(Deserialize)]
struct MfaForm {
    #[serde(default)]
    code: String,
    #[serde(default, rename = "mfaId")]
    mfa_id: String,
    #[serde(default, rename = "otpId")]
    otp_id: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    next: String,
    #[serde(default, rename = "_csrf")]
    csrf: String,
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage<'a> {
    csrf: &'a str,
    token: &'a str,
    email: &'a str,
    error: &'a str,
}

#[derive(Deserialize)]
struct NextQuery {
    #[serde(default)]
    next: String,
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
    #[serde(default, rename = "_csrf")]
    csrf: String,
}

#[derive(Deserialize)]
struct SetupForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default, rename = "passwordConfirm")]
    password_confirm: String,
    #[serde(default, rename = "_csrf")]
    csrf: String,
}

#[derive(Deserialize)]
struct TokenQuery {
    #[serde(default)]
    token: String,
}

/// Only paths inside the dashboard are followed after login (no open
/// redirect to another site).
fn safe_next(next: &str) -> &str {
    if next.starts_with("/_/") && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/_/collections"
    }
}

fn state(req: &HttpRequest) -> AppState {
    req.app_data::<web::Data<AppState>>()
        .expect("app state")
        .get_ref()
        .clone()
}

/// The login or setup form (or a mail-link page's form) with a fresh
/// double-submit token.
pub(super) fn with_pre_cookie(
    req: &HttpRequest,
    status: StatusCode,
    render: impl FnOnce(&str) -> HttpResponse,
) -> HttpResponse {
    let token = session::random_token();
    let mut res = render(&token);
    *res.status_mut() = status;
    let _ = res.add_cookie(&session::cookie(req, PRE_COOKIE, token, 3600));
    res
}

pub(super) fn pre_cookie_ok(req: &HttpRequest, submitted: &str) -> bool {
    req.cookie(PRE_COOKIE).is_some_and(|c| {
        !submitted.is_empty() && crate::auth::constant_time_eq(c.value().as_bytes(), submitted.as_bytes())
    })
}

fn login_form(req: &HttpRequest, status: StatusCode, next: &str, email: &str, error: &str) -> HttpResponse {
    let app_name = state(req).settings.get().meta.app_name.clone();
    with_pre_cookie(req, status, |csrf| {
        view::render(
            req,
            &LoginPage {
                csrf,
                next: safe_next(next),
                email,
                error,
                app_name: &app_name,
            },
        )
    })
}

async fn login_page(req: HttpRequest, q: web::Query<NextQuery>) -> HttpResponse {
    let st = state(&req);
    if st.setup_token.lock().unwrap_or_else(|e| e.into_inner()).is_some() && !crate::core::auth::has_superuser(&st) {
        return login_form(
            &req,
            StatusCode::OK,
            &q.next,
            "",
            "No superuser exists yet: open the one-time setup link printed when the server started, or run `basalt superuser upsert EMAIL PASSWORD`.",
        );
    }
    login_form(&req, StatusCode::OK, &q.next, "", "")
}

/// The client's address and the login's context (`mfa_id`: the pending
/// login a second factor finishes), as the API's login handlers build it.
fn login_context(req: &HttpRequest, mfa_id: Option<String>) -> (IpAddr, crate::core::auth::LoginContext) {
    let ip = crate::api::middleware::client_ip(req).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let ctx = crate::core::auth::LoginContext {
        ip: Some(ip),
        user_agent: req
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        mfa_id,
    };
    (ip, ctx)
}

/// Takes a slot in the `*:auth` limit of the API route `route` (a superuser
/// login of the same kind); Err(seconds to wait) when it is used up.
fn rate_limited(st: &AppState, ip: IpAddr, route: &str) -> Result<(), u64> {
    let path = format!("/api/collections/{SUPERUSERS}/{route}");
    st.rate_limiter.check_request(
        &st.settings.get(),
        "POST",
        &path,
        ip,
        |_| Some(SUPERUSERS.to_owned()),
        || false,
    )
}

async fn login_submit(req: HttpRequest, form: web::Form<LoginForm>) -> Result<HttpResponse, AdminError> {
    session::check_origin(&req)?;
    if !pre_cookie_ok(&req, &form.csrf) {
        return Err(AdminError::Csrf);
    }
    let st = state(&req);
    let (ip, ctx) = login_context(&req, None);
    if let Err(secs) = rate_limited(&st, ip, "auth-with-password") {
        let msg = format!("Too many login attempts. Try again in {secs} s.");
        return Ok(login_form(
            &req,
            StatusCode::TOO_MANY_REQUESTS,
            &form.next,
            &form.email,
            &msg,
        ));
    }
    let superusers = st.registry.get(SUPERUSERS).ok_or(AdminError::NotFound)?;
    let email = form.email.trim();
    match crate::core::auth::with_password(&st, &superusers, email, &form.password, None, &ctx).await {
        Ok(answer) => {
            let id = answer["record"]["id"].as_str().unwrap_or_default();
            logged_in(&st, &req, id, view::see_other(safe_next(&form.next))).await
        }
        Err(e) if e.mfa_id().is_some() => {
            let mfa_id = e.mfa_id().unwrap_or_default();
            Ok(ask_for_code(&req, &st, &superusers, &form.next, email, mfa_id).await)
        }
        Err(e) if e.status == 429 => Ok(login_form(
            &req,
            StatusCode::TOO_MANY_REQUESTS,
            &form.next,
            &form.email,
            &e.message,
        )),
        Err(_) => Ok(login_form(
            &req,
            StatusCode::BAD_REQUEST,
            &form.next,
            &form.email,
            "Wrong email or password.",
        )),
    }
}

/// The password was right and MFA wants a second factor: mails a code to
/// the superuser (through `request-otp`, so its throttle and template
/// apply) and shows the code form.
async fn ask_for_code(
    req: &HttpRequest,
    st: &AppState,
    superusers: &std::sync::Arc<crate::schema::CompiledCollection>,
    next: &str,
    email: &str,
    mfa_id: &str,
) -> HttpResponse {
    let mut body = serde_json::Map::new();
    body.insert("email".into(), email.into());
    match crate::core::auth::request_otp(st, superusers, &body).await {
        Ok(answer) => {
            let otp_id = answer["otpId"].as_str().unwrap_or_default();
            code_form(req, StatusCode::OK, next, email, mfa_id, otp_id, "")
        }
        // Saves refuse MFA without a second method; this is a defence.
        Err(e) => login_form(req, StatusCode::BAD_REQUEST, next, email, &e.message),
    }
}

fn code_form(
    req: &HttpRequest,
    status: StatusCode,
    next: &str,
    email: &str,
    mfa_id: &str,
    otp_id: &str,
    error: &str,
) -> HttpResponse {
    let app_name = state(req).settings.get().meta.app_name.clone();
    with_pre_cookie(req, status, |csrf| {
        view::render(
            req,
            &MfaPage {
                csrf,
                next: safe_next(next),
                email,
                mfa_id,
                otp_id,
                error,
                app_name: &app_name,
            },
        )
    })
}

/// The code form's post: `auth-with-otp` with the pending login's `mfaId`.
/// A wrong code shows the form again (the OTP dies after a few, as in the
/// API); a pending login that expired or was spent starts over.
async fn mfa_submit(req: HttpRequest, form: web::Form<MfaForm>) -> Result<HttpResponse, AdminError> {
    session::check_origin(&req)?;
    if !pre_cookie_ok(&req, &form.csrf) {
        return Err(AdminError::Csrf);
    }
    let st = state(&req);
    let (ip, ctx) = login_context(&req, Some(form.mfa_id.clone()).filter(|s| !s.is_empty()));
    let again =
        |status, error: &str| code_form(&req, status, &form.next, &form.email, &form.mfa_id, &form.otp_id, error);
    if let Err(secs) = rate_limited(&st, ip, "auth-with-otp") {
        let msg = format!("Too many attempts. Try again in {secs} s.");
        return Ok(again(StatusCode::TOO_MANY_REQUESTS, &msg));
    }
    if ctx.mfa_id.is_none() {
        return Ok(login_form(
            &req,
            StatusCode::BAD_REQUEST,
            &form.next,
            &form.email,
            "Log in again.",
        ));
    }
    let superusers = st.registry.get(SUPERUSERS).ok_or(AdminError::NotFound)?;
    let mut body = serde_json::Map::new();
    body.insert("otpId".into(), form.otp_id.clone().into());
    body.insert("password".into(), form.code.trim().into());
    match crate::core::auth::with_otp(&st, &superusers, &body, &ctx).await {
        Ok(answer) => {
            let id = answer["record"]["id"].as_str().unwrap_or_default();
            logged_in(&st, &req, id, view::see_other(safe_next(&form.next))).await
        }
        Err(e) if e.status == 429 => Ok(again(StatusCode::TOO_MANY_REQUESTS, &e.message)),
        Err(e) if e.message == crate::core::auth::MFA_SESSION_INVALID => Ok(login_form(
            &req,
            StatusCode::BAD_REQUEST,
            &form.next,
            &form.email,
            "This login expired or was already used. Log in again.",
        )),
        Err(_) => Ok(again(StatusCode::BAD_REQUEST, "Wrong or expired code.")),
    }
}

async fn logout(req: HttpRequest, form: AdminForm) -> HttpResponse {
    session::end(&form.admin.state, &req).await;
    let mut res = view::see_other("/_/login");
    let _ = res.add_cookie(&session::removal(&req, session::COOKIE));
    res
}

fn setup_token_ok(st: &AppState, token: &str) -> bool {
    let guard = st.setup_token.lock().unwrap_or_else(|e| e.into_inner());
    guard
        .as_deref()
        .is_some_and(|t| !token.is_empty() && crate::auth::constant_time_eq(t.as_bytes(), token.as_bytes()))
}

fn setup_form(req: &HttpRequest, status: StatusCode, token: &str, email: &str, error: &str) -> HttpResponse {
    with_pre_cookie(req, status, |csrf| {
        view::render(
            req,
            &SetupPage {
                csrf,
                token,
                email,
                error,
            },
        )
    })
}

async fn setup_page(req: HttpRequest, q: web::Query<TokenQuery>) -> Result<HttpResponse, AdminError> {
    let st = state(&req);
    if crate::core::auth::has_superuser(&st) {
        return Ok(view::see_other("/_/login"));
    }
    if !setup_token_ok(&st, &q.token) {
        return Err(AdminError::BadRequest(
            "This setup link is not valid (it works once, and only the link printed by the running server). Restart the server for a new one, or run `basalt superuser upsert EMAIL PASSWORD`.".into(),
        ));
    }
    Ok(setup_form(&req, StatusCode::OK, &q.token, "", ""))
}

async fn setup_submit(req: HttpRequest, form: web::Form<SetupForm>) -> Result<HttpResponse, AdminError> {
    session::check_origin(&req)?;
    if !pre_cookie_ok(&req, &form.csrf) {
        return Err(AdminError::Csrf);
    }
    let st = state(&req);
    if crate::core::auth::has_superuser(&st) || !setup_token_ok(&st, &form.token) {
        return Err(AdminError::BadRequest(
            "This setup link has already been used or is not valid. Log in instead.".into(),
        ));
    }
    let email = form.email.trim();
    if form.password != form.password_confirm {
        return Ok(setup_form(
            &req,
            StatusCode::BAD_REQUEST,
            &form.token,
            email,
            "The passwords do not match.",
        ));
    }
    let saved = match crate::core::records::upsert_superuser(&st, email, &form.password).await {
        Ok(saved) => saved,
        Err(e) => {
            let detail: Vec<String> = e
                .data
                .iter()
                .map(|(k, v)| format!("{k}: {}", v["message"].as_str().unwrap_or("invalid")))
                .collect();
            let msg = if detail.is_empty() {
                e.message
            } else {
                detail.join("; ")
            };
            return Ok(setup_form(&req, StatusCode::BAD_REQUEST, &form.token, email, &msg));
        }
    };
    *st.setup_token.lock().unwrap_or_else(|e| e.into_inner()) = None;
    let saved: serde_json::Value = serde_json::from_str(saved.get()).unwrap_or_default();
    let id = saved["id"].as_str().unwrap_or_default();
    let welcome = view::redirect_flash(
        &req,
        "/_/collections",
        "ok",
        "Welcome! Your superuser account is ready.",
    );
    logged_in(&st, &req, id, welcome).await
}

/// Starts a session for superuser `id` on `res` (the redirect after a
/// login or the setup), dropping the login form's double-submit cookie.
async fn logged_in(
    st: &AppState,
    req: &HttpRequest,
    id: &str,
    mut res: HttpResponse,
) -> Result<HttpResponse, AdminError> {
    let superusers = st.registry.get(SUPERUSERS).ok_or(AdminError::NotFound)?;
    // The stored record: the session keeps its `tokenKey`, which answers
    // leave out.
    let record = st
        .store
        .get(&superusers.def.id, id)
        .map_err(|e| AdminError::Api(e.into()))?
        .ok_or(AdminError::NotFound)?
        .data;
    let cookie = session::start(st, req, &record).await?;
    let _ = res.add_cookie(&cookie);
    let _ = res.add_cookie(&session::removal(req, PRE_COOKIE));
    Ok(res)
}
