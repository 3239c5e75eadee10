//! HTTP handlers: parse, call `core`, shape JSON. Nothing else lives here.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use super::extract::{require_superuser, JsonBody, RecordBody};
use super::middleware::client_ip;
use crate::core::{self, Caller, RequestInfo};
use crate::error::ApiError;
use crate::schema::fields::FieldsTree;
use crate::state::AppState;

pub(super) type Data = web::Data<AppState>;
pub(super) type Query = web::Query<HashMap<String, String>>;

pub(super) fn ok(v: impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok().json(v)
}

/// 200 with `v`, trimmed by `?fields=` when given.
fn ok_fields(q: &Query, v: impl serde::Serialize) -> Result<HttpResponse, ApiError> {
    match q.get("fields").filter(|f| !f.trim().is_empty()) {
        None => Ok(ok(v)),
        Some(spec) => {
            let tree = FieldsTree::parse(spec)?;
            let mut value = serde_json::to_value(v).map_err(|e| ApiError::internal(e.to_string()))?;
            tree.apply_response(&mut value);
            Ok(ok(value))
        }
    }
}

pub(super) fn collection(
    state: &AppState,
    name: &str,
) -> Result<std::sync::Arc<crate::schema::CompiledCollection>, ApiError> {
    state.registry.get(name).ok_or_else(ApiError::missing)
}

/// `GET /api/health`. Superusers also get PocketBase's `data`: whether a
/// backup may start (`canBackup`: always, Basalt's backups are snapshots
/// that never exclude each other), the address the server sees for them
/// (`realIP`, after `trustedProxy`), and the first header that hints at a
/// reverse proxy (`possibleProxyHeader`, so the dashboard can suggest
/// configuring `trustedProxy`). Guests and users get `data: {}`: addresses
/// and proxy headers are nobody else's business.
pub async fn health(state: Data, caller: Caller, req: HttpRequest) -> HttpResponse {
    let mut data = serde_json::Map::new();
    if caller.is_superuser() {
        let settings = state.settings.get();
        let common = ["CF-Connecting-IP", "Fly-Client-IP", "X-Forwarded-For"];
        let proxy_header = (settings.trusted_proxy.headers.iter().map(String::as_str))
            .chain(common)
            .find(|h| req.headers().get(*h).is_some_and(|v| !v.is_empty()))
            .unwrap_or("");
        let ip = client_ip(&req)
            .map(|ip| ip.to_canonical().to_string())
            .unwrap_or_default();
        data.insert("canBackup".into(), json!(true));
        data.insert("realIP".into(), json!(ip));
        data.insert("possibleProxyHeader".into(), json!(proxy_header));
    }
    ok(json!({"message": "API is healthy.", "code": 200, "data": data}))
}

// ---- records -----------------------------------------------------------

fn expand_param(q: &Query) -> &str {
    q.get("expand").map(String::as_str).unwrap_or_default()
}

pub async fn records_list(
    state: Data,
    req: RequestInfo,
    path: web::Path<String>,
    q: Query,
) -> Result<HttpResponse, ApiError> {
    let coll = collection(&state, &path)?;
    let params = core::list::ListParams::from_query(&q)?;
    ok_fields(&q, core::list::list_async(&state, coll, params, req).await?)
}

pub async fn records_view(
    state: Data,
    req: RequestInfo,
    path: web::Path<(String, String)>,
    q: Query,
) -> Result<HttpResponse, ApiError> {
    let coll = collection(&state, &path.0)?;
    let (id, expand) = (path.1.clone(), expand_param(&q).to_owned());
    if expand.is_empty() {
        return ok_fields(&q, core::records::view(&state, &coll, &id, "", &req)?);
    }
    // Expand may read many records: heavy work, off the HTTP workers.
    let state2 = state.get_ref().clone();
    let view = state
        .work
        .run(move || core::records::view(&state2, &coll, &id, &expand, &req));
    ok_fields(&q, view.await??)
}

pub async fn records_create(
    state: Data,
    req: RequestInfo,
    path: web::Path<String>,
    q: Query,
    body: RecordBody,
) -> Result<HttpResponse, ApiError> {
    let coll = collection(&state, &path)?;
    let (fields, uploads) = body.split(&coll);
    let record = core::records::create(&state, &coll, fields, uploads, expand_param(&q), &req).await?;
    ok_fields(&q, record)
}

pub async fn records_update(
    state: Data,
    req: RequestInfo,
    path: web::Path<(String, String)>,
    q: Query,
    body: RecordBody,
) -> Result<HttpResponse, ApiError> {
    let coll = collection(&state, &path.0)?;
    let (fields, uploads) = body.split(&coll);
    let record = core::records::update(&state, &coll, &path.1, fields, uploads, expand_param(&q), &req).await?;
    ok_fields(&q, record)
}

pub async fn records_delete(
    state: Data,
    req: RequestInfo,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let coll = collection(&state, &path.0)?;
    core::records::delete(&state, &coll, &path.1, &req).await?;
    Ok(HttpResponse::NoContent().finish())
}

// ---- auth --------------------------------------------------------------

fn string_field<'a>(body: &'a JsonBody, key: &str) -> Result<&'a str, ApiError> {
    match body.0.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            Err(ApiError::field(key, "validation_required", "Missing required value."))
        }
        Some(_) => Err(ApiError::field(key, "validation_invalid_type", "Must be a string.")),
    }
}

fn no_content() -> HttpResponse {
    HttpResponse::NoContent().finish()
}

type Name = web::Path<String>;

pub async fn auth_with_password(
    state: Data,
    http: HttpRequest,
    path: Name,
    q: Query,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let coll = collection(&state, &path)?;
    let identity = string_field(&body, "identity")?;
    let password = string_field(&body, "password")?;
    let field = body
        .0
        .get("identityField")
        .and_then(Value::as_str)
        .filter(|f| !f.is_empty());
    ok_fields(
        &q,
        core::auth::with_password(&state, &coll, identity, password, field, &login_context(&http, &body.0)).await?,
    )
}

/// What a login request tells about its client besides the factor itself.
/// `mfaId` comes from the query (where the JS SDK puts unknown options,
/// e.g. `authWithOTP(id, code, {mfaId})`) or else the body, as PocketBase
/// reads it; a non-string one is kept as text, which names no MFA.
fn login_context(http: &HttpRequest, body: &Map<String, Value>) -> core::auth::LoginContext {
    let from_query = web::Query::<HashMap<String, String>>::from_query(http.query_string())
        .ok()
        .and_then(|q| q.get("mfaId").cloned());
    let from_body = || match body.get("mfaId") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    core::auth::LoginContext {
        ip: client_ip(http),
        user_agent: http
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        mfa_id: from_query
            .filter(|s| !s.is_empty())
            .or_else(from_body)
            .filter(|s| !s.is_empty()),
    }
}

pub async fn auth_refresh(state: Data, caller: Caller, path: Name, q: Query) -> Result<HttpResponse, ApiError> {
    let coll = collection(&state, &path)?;
    ok_fields(&q, core::auth::refresh(&state, &coll, &caller)?)
}

pub async fn auth_methods(state: Data, path: Name, q: Query) -> Result<HttpResponse, ApiError> {
    let coll = collection(&state, &path)?;
    ok_fields(&q, core::auth::methods(&coll)?)
}

pub async fn request_verification(state: Data, path: Name, body: JsonBody) -> Result<HttpResponse, ApiError> {
    let coll = collection(&state, &path)?;
    core::auth::request_verification(&state, &coll, &body.0)?;
    Ok(no_content())
}

pub async fn confirm_verification(state: Data, path: Name, body: JsonBody) -> Result<HttpResponse, ApiError> {
    let coll = collection(&state, &path)?;
    core::auth::confirm_verification(&state, &coll, &body.0).await?;
    Ok(no_content())
}

pub async fn request_password_reset(state: Data, path: Name, body: JsonBody) -> Result<HttpResponse, ApiError> {
    let coll = collection(&state, &path)?;
    core::auth::request_password_reset(&state, &coll, &body.0)?;
    Ok(no_content())
}

pub async fn confirm_password_reset(state: Data, path: Name, body: JsonBody) -> Result<HttpResponse, ApiError> {
    let coll = collection(&state, &path)?;
    core::auth::confirm_password_reset(&state, &coll, &body.0).await?;
    Ok(no_content())
}

pub async fn request_email_change(
    state: Data,
    caller: Caller,
    path: Name,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let coll = collection(&state, &path)?;
    core::auth::request_email_change(&state, &coll, &caller, &body.0).await?;
    Ok(no_content())
}

pub async fn confirm_email_change(
    state: Data,
    http: HttpRequest,
    path: Name,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let coll = collection(&state, &path)?;
    core::auth::confirm_email_change(&state, &coll, &body.0, client_ip(&http)).await?;
    Ok(no_content())
}

pub async fn request_otp(state: Data, path: Name, body: JsonBody) -> Result<HttpResponse, ApiError> {
    let coll = collection(&state, &path)?;
    Ok(ok(core::auth::request_otp(&state, &coll, &body.0).await?))
}

pub async fn auth_with_otp(
    state: Data,
    http: HttpRequest,
    path: Name,
    q: Query,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let coll = collection(&state, &path)?;
    ok_fields(
        &q,
        core::auth::with_otp(&state, &coll, &body.0, &login_context(&http, &body.0)).await?,
    )
}

pub async fn auth_with_oauth2(
    state: Data,
    http: HttpRequest,
    caller: Caller,
    path: Name,
    q: Query,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let coll = collection(&state, &path)?;
    let ctx = login_context(&http, &body.0);
    ok_fields(
        &q,
        core::auth::with_oauth2(&state, &coll, &body.0, &caller, &ctx).await?,
    )
}

pub async fn file_token(state: Data, caller: Caller) -> Result<HttpResponse, ApiError> {
    Ok(ok(core::auth::file_token(&state, &caller)?))
}

pub async fn impersonate(
    state: Data,
    caller: Caller,
    path: web::Path<(String, String)>,
    q: Query,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    require_superuser(&caller)?;
    let coll = collection(&state, &path.0)?;
    let duration = match body.0.get("duration") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            ApiError::field(
                "duration",
                "validation_invalid_value",
                "Must be a positive number of seconds.",
            )
        })?),
    };
    ok_fields(&q, core::auth::impersonate(&state, &coll, &path.1, duration)?)
}

// ---- settings ----------------------------------------------------------

pub async fn settings_view(state: Data, caller: Caller) -> Result<HttpResponse, ApiError> {
    require_superuser(&caller)?;
    Ok(ok(state.settings.get().redacted()))
}

pub async fn settings_update(state: Data, caller: Caller, body: JsonBody) -> Result<HttpResponse, ApiError> {
    require_superuser(&caller)?;
    Ok(ok(core::settings::update(&state, body.0).await?.redacted()))
}

// ---- batch -------------------------------------------------------------

pub async fn batch(state: Data, req: RequestInfo, body: RecordBody) -> Result<HttpResponse, ApiError> {
    Ok(ok(core::batch::run(&state, body.fields, body.uploads, &req).await?))
}
