//! Dashboard sessions and CSRF protection.
//!
//! A session is an opaque random id in an HttpOnly, SameSite=Strict cookie
//! (Secure when the request came over TLS, directly or as a proxy says).
//! The server keeps (`core::sessions`, in `meta` under
//! `adminsess/<sha256(id)>`) the superuser's id, the `tokenKey` it had at
//! login, a CSRF token and the expiry: logout deletes the entry, and changing the superuser's password
//! (which rotates `tokenKey`) ends every session of that superuser. Only a
//! hash of the id is stored, so a copy of the data dir holds no usable
//! session.
//!
//! CSRF: every state-changing request must carry the session's CSRF token
//! (form field `_csrf` or header `X-CSRF-Token`), and a cross-origin
//! `Origin` header is refused outright. The login and setup forms, which
//! have no session yet, use a double-submit cookie instead.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::http::{header, Method};
use actix_web::{web, FromRequest, HttpRequest};
use serde_json::Value;

use super::view::AdminError;
use crate::clock::now_millis;
use crate::core::sessions::{self, Session};
use crate::core::{Caller, RequestInfo, SUPERUSERS};
use crate::error::ApiError;
use crate::files::upload::Upload;
use crate::schema::CompiledCollection;
use crate::state::AppState;

/// The session cookie.
pub const COOKIE: &str = "basalt_admin";
/// The double-submit cookie of the login and setup forms.
pub const PRE_COOKIE: &str = "basalt_login_csrf";
/// Sessions last this long (seconds), then the superuser logs in again.
pub const SESSION_SECONDS: i64 = 7 * 24 * 3600;
/// A logged-in superuser (extractor). GET/HEAD only need the cookie; any
/// other method must also carry the CSRF token in the `X-CSRF-Token` header
/// (form posts use [`AdminForm`], which also accepts the `_csrf` field).
pub struct Admin {
    pub state: AppState,
    pub superusers: Arc<CompiledCollection>,
    pub record: Value,
    pub csrf: String,
}

impl Admin {
    pub fn id(&self) -> &str {
        self.record.get("id").and_then(Value::as_str).unwrap_or_default()
    }
    pub fn email(&self) -> &str {
        self.record.get("email").and_then(Value::as_str).unwrap_or_default()
    }
    /// The superuser as a rules caller (superusers pass every rule).
    pub fn caller(&self) -> Caller {
        Caller::Auth {
            collection: self.superusers.clone(),
            record: self.record.clone(),
            refreshable: false,
        }
    }
    /// A request context for core operations done from the dashboard.
    pub fn request(&self, method: &str) -> RequestInfo {
        let mut req = RequestInfo::internal(self.caller(), method, "default");
        req.budget = std::sync::Arc::new(crate::rules::Budget::new(self.state.settings.get().budget.limits()));
        req
    }

    /// Resolves the session cookie; `None` when absent, unknown, expired or
    /// revoked (the superuser's password changed, or it was deleted).
    fn load(req: &HttpRequest) -> Option<Admin> {
        let state = req.app_data::<web::Data<AppState>>()?.get_ref().clone();
        let cookie = req.cookie(COOKIE)?;
        let stored = sessions::load(&state, cookie.value())?;
        if stored.exp <= now_millis() / 1000 {
            return None;
        }
        let superusers = state.registry.get(SUPERUSERS)?;
        let record = state.store.get(&superusers.def.id, &stored.su).ok()??.data;
        let key = record.get("tokenKey").and_then(Value::as_str).unwrap_or_default();
        if !crate::auth::constant_time_eq(key.as_bytes(), stored.key.as_bytes()) {
            return None;
        }
        crate::api::middleware::mark_auth(req, SUPERUSERS, &stored.su);
        Some(Admin {
            state,
            superusers,
            record,
            csrf: stored.csrf,
        })
    }

    /// Checks a submitted CSRF token against the session's.
    pub fn check_csrf(&self, submitted: Option<&str>) -> Result<(), AdminError> {
        match submitted {
            Some(t) if crate::auth::constant_time_eq(t.as_bytes(), self.csrf.as_bytes()) => Ok(()),
            _ => Err(AdminError::Csrf),
        }
    }
}

/// Where to send someone who is not logged in: the login page, coming back
/// to this page afterwards (GET pages only; a form post goes home).
fn login_redirect(req: &HttpRequest) -> AdminError {
    let next = if req.method() == Method::GET {
        match req.query_string() {
            "" => req.path().to_owned(),
            q => format!("{}?{q}", req.path()),
        }
    } else {
        String::new()
    };
    AdminError::Login(next)
}

/// Refuses a request whose `Origin` names another site. Browsers send
/// `Origin` on every POST, so a cross-site form post is stopped here even
/// before its CSRF token is looked at.
pub fn check_origin(req: &HttpRequest) -> Result<(), AdminError> {
    let Some(origin) = req.headers().get("origin").and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let host = req.connection_info().host().to_owned();
    let same = origin
        .split_once("://")
        .map(|(_, rest)| rest.eq_ignore_ascii_case(&host))
        .unwrap_or(false);
    if same {
        Ok(())
    } else {
        Err(AdminError::Csrf)
    }
}

impl FromRequest for Admin {
    type Error = AdminError;
    type Future = std::future::Ready<Result<Admin, AdminError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready((|| {
            let admin = Admin::load(req).ok_or_else(|| login_redirect(req))?;
            if req.method() != Method::GET && req.method() != Method::HEAD {
                check_origin(req)?;
                let header = req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok());
                admin.check_csrf(header)?;
            }
            Ok(admin)
        })())
    }
}

/// A form post (`application/x-www-form-urlencoded`, or
/// `multipart/form-data` when it carries files) by a logged-in superuser
/// whose CSRF token (field `_csrf` or header) matched. Fields keep the
/// order of their values; repeated names (checkboxes) are all kept.
pub struct AdminForm {
    pub admin: Admin,
    pub fields: Vec<(String, String)>,
    /// The file parts of a multipart post, spooled to disk (each spool file
    /// is removed when its upload is dropped, so a refused post leaves none).
    pub uploads: Vec<Upload>,
}

impl AdminForm {
    /// The last value of `name`, if sent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    /// The value of `name`, or `""`.
    pub fn text(&self, name: &str) -> &str {
        self.get(name).unwrap_or_default()
    }
    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Largest accepted dashboard form (a schema or a record fits easily).
pub const FORM_LIMIT: usize = 4 * 1024 * 1024;

impl FromRequest for AdminForm {
    type Error = AdminError;
    type Future = Pin<Box<dyn Future<Output = Result<AdminForm, AdminError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        if let Some(boundary) = multipart_boundary(&req) {
            return Box::pin(read_multipart(req, payload.take(), boundary));
        }
        let form = web::Form::<Vec<(String, String)>>::from_request(&req, payload);
        Box::pin(async move {
            let admin = Admin::load(&req).ok_or_else(|| login_redirect(&req))?;
            check_origin(&req)?;
            let fields = form
                .await
                .map_err(|e| AdminError::BadRequest(format!("Could not read the form: {e}")))?
                .into_inner();
            AdminForm {
                admin,
                fields,
                uploads: Vec::new(),
            }
            .checked(&req)
        })
    }
}

impl AdminForm {
    /// The form if its CSRF token (field `_csrf` or header) is the session's.
    fn checked(self, req: &HttpRequest) -> Result<AdminForm, AdminError> {
        let token = self
            .get("_csrf")
            .or_else(|| req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok()));
        self.admin.check_csrf(token)?;
        Ok(self)
    }
}

/// `Some` when the body is `multipart/form-data`: its boundary, or the 400
/// for a missing or malformed one (checked before the body is read).
fn multipart_boundary(req: &HttpRequest) -> Option<Result<String, AdminError>> {
    let raw = req.headers().get(header::CONTENT_TYPE)?.to_str().ok()?;
    let mime = raw.split(';').next().unwrap_or_default().trim();
    mime.eq_ignore_ascii_case("multipart/form-data")
        .then(|| crate::api::multipart::boundary(raw).map_err(AdminError::Api))
}

/// Reads a multipart form post with the API's streaming parser and limits:
/// plain parts at most [`FORM_LIMIT`] bytes together, the whole body at
/// most [`FORM_LIMIT`] plus what the collection in the path (`{c}`) lets
/// its file fields take (no file on other pages), file parts spooled to
/// disk.
/// The session and `Origin` are checked before a byte of the body is read;
/// the CSRF token, a plain part like any other, once it is parsed (the
/// spooled files of a refused post are removed as the form is dropped).
async fn read_multipart(
    req: HttpRequest,
    payload: Payload,
    boundary: Result<String, AdminError>,
) -> Result<AdminForm, AdminError> {
    let admin = Admin::load(&req).ok_or_else(|| login_redirect(&req))?;
    check_origin(&req)?;
    let boundary = boundary?;
    let limits = match req.match_info().get("c") {
        // One file may take the whole body here: a file over its field's
        // `maxSize` then reaches core's checks, whose error the form shows
        // on its field, instead of ending the post with an error page.
        Some(c) => {
            let mut l = crate::api::extract::record_limits(&admin.state, c, FORM_LIMIT as u64);
            l.file = l.body;
            l
        }
        None => crate::api::multipart::Limits {
            body: FORM_LIMIT as u64,
            field: FORM_LIMIT as u64,
            file: 0,
        },
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.body) {
        return Err(AdminError::Api(ApiError::new(
            413,
            format!("The request body is larger than the {}-byte limit.", limits.body),
        )));
    }
    let spool = admin.state.storage.spool_dir().to_owned();
    let parsed = crate::api::extract::stream_multipart(payload, boundary, limits, spool)
        .await
        .map_err(AdminError::Api)?;
    let mut fields = Vec::new();
    for (name, value) in parsed.fields {
        match value {
            Value::String(s) => fields.push((name, s)),
            Value::Array(list) => fields.extend(list.into_iter().map(|v| (name.clone(), plain_text(v)))),
            other => fields.push((name, plain_text(other))),
        }
    }
    AdminForm {
        admin,
        fields,
        uploads: parsed.uploads,
    }
    .checked(&req)
}

/// A parsed part's value as form text (`@jsonPayload` values are JSON).
fn plain_text(v: Value) -> String {
    match v {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// A fresh random token (URL-safe base64 of 32 random bytes).
pub fn random_token() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Whether the browser reached us over TLS (directly or per the proxy's
/// `X-Forwarded-Proto`/`Forwarded`): then cookies get `Secure`.
fn over_tls(req: &HttpRequest) -> bool {
    req.connection_info().scheme() == "https"
}

/// A dashboard cookie: HttpOnly, SameSite=Strict, path `/_/`.
pub fn cookie<'a>(req: &HttpRequest, name: &'a str, value: String, max_age_secs: i64) -> Cookie<'a> {
    Cookie::build(name, value)
        .path("/_/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(over_tls(req))
        .max_age(actix_web::cookie::time::Duration::seconds(max_age_secs))
        .finish()
}

/// A cookie that removes `name`.
pub fn removal<'a>(req: &HttpRequest, name: &'a str) -> Cookie<'a> {
    cookie(req, name, String::new(), 0)
}

/// Starts a session for a superuser record; returns the cookie to set.
/// Expired sessions are swept in the same write.
pub async fn start(state: &AppState, req: &HttpRequest, record: &Value) -> Result<Cookie<'static>, AdminError> {
    let id = random_token();
    let now = now_millis() / 1000;
    let stored = Session {
        su: record.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(),
        key: record
            .get("tokenKey")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        csrf: random_token(),
        exp: now + SESSION_SECONDS,
    };
    sessions::save(state, &id, &stored, now)
        .await
        .map_err(AdminError::Api)?;
    Ok(cookie(req, COOKIE, id, SESSION_SECONDS).into_owned())
}

/// Ends the request's session (logout).
pub async fn end(state: &AppState, req: &HttpRequest) {
    if let Some(c) = req.cookie(COOKIE) {
        sessions::end(state, c.value()).await;
    }
}
