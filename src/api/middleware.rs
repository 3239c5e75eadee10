//! Cross-cutting HTTP concerns: one log line and one request-log entry per
//! request, security headers, CORS.

use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse, ResponseError};

use crate::core::{Caller, SUPERUSERS};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::logs::{now_micros, LogEntry};

/// Who made a request, for the request log: put in the request's
/// extensions where the caller is resolved anyway (the `Caller` extractor,
/// the dashboard session), read once the handler has answered. So no token
/// is decoded twice, and the log never sees a token. Absent means guest.
pub struct AuthLabel(pub String);

/// Marks the request as made by this record (`superuser:<id>` for
/// superusers, `<collection>:<id>` otherwise).
pub fn mark_auth(req: &HttpRequest, collection: &str, id: &str) {
    let label = if collection == SUPERUSERS {
        format!("superuser:{id}")
    } else {
        format!("{collection}:{id}")
    };
    req.extensions_mut().insert(AuthLabel(label));
}

/// [`mark_auth`] for a resolved caller (guests leave no mark).
pub fn mark_caller(req: &HttpRequest, caller: &Caller) {
    if let Caller::Auth { collection, .. } = caller {
        mark_auth(req, &collection.def.name, caller.id().unwrap_or_default());
    }
}

/// The client's address: the peer's, or (behind a reverse proxy named in
/// the `trustedProxy` settings) the one its headers carry. Rate limits, the
/// request log and the dashboard login all key on this.
pub fn client_ip(req: &HttpRequest) -> Option<std::net::IpAddr> {
    let peer = req.peer_addr().map(|a| a.ip());
    match req.app_data::<web::Data<AppState>>() {
        Some(state) => {
            let settings = state.settings.get();
            if settings.trusted_proxy.headers.is_empty() {
                return peer;
            }
            let headers = req.headers();
            settings
                .trusted_proxy
                .client_ip(|name| headers.get(name).and_then(|v| v.to_str().ok()), peer)
        }
        None => peer,
    }
}

/// The path as logged: what follows the page name in a mail link's path
/// (`/_/auth/confirm-…/{token}`) is replaced by `{token}`.
pub fn loggable_path(path: &str) -> String {
    if let Some(rest) = path.strip_prefix("/_/auth/") {
        if let Some((page, _token)) = rest.split_once('/') {
            return format!("/_/auth/{page}/{{token}}");
        }
    }
    path.to_owned()
}

/// Logs method, path (never the query string or headers: they can carry
/// tokens or personal data; nor a mail link's token, see
/// [`loggable_path`]), status, duration and peer address, to the tracing
/// output and to the request log (one non-blocking `try_send`).
pub async fn log_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let method = req.method().clone();
    let path = loggable_path(req.path());
    let ip = client_ip(req.request()).map(|a| a.to_string()).unwrap_or_default();
    let res = next.call(req).await?;
    let status = res.status().as_u16();
    let micros = start.elapsed().as_micros() as u64;
    tracing::info!(target: "basalt::http", %method, %path, status, micros, %ip, "request");
    let request = res.request();
    if let Some(state) = request.app_data::<web::Data<AppState>>() {
        let log = state.store.logs();
        // The dashboard's static files would drown the log in noise.
        if log.enabled() && !path.starts_with("/_/assets/") {
            let auth = match request.extensions_mut().remove::<AuthLabel>() {
                Some(AuthLabel(label)) => label,
                None => "guest".to_owned(),
            };
            log.record(LogEntry {
                ts_us: now_micros(),
                method: method.as_str().to_owned(),
                path,
                status,
                micros,
                ip,
                auth,
            });
        }
    }
    Ok(res)
}

/// Adds the security headers every response carries.
pub async fn security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    let embeddable = res.response().extensions().get::<super::files::Embeddable>().is_some();
    let h = res.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // The dashboard sets its own (DENY); served files may be embedded.
    if !h.contains_key(header::X_FRAME_OPTIONS) && !embeddable {
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("SAMEORIGIN"));
    }
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    Ok(res)
}

/// CORS, from the settings as they are now: `cors.origins` once saved
/// (dashboard or `PATCH /api/settings`), else the `--origins` flag (`*` or
/// a comma-separated list). Read per request, so a change applies to the
/// next request without a restart; only requests with an `Origin` header
/// look the settings up (an `Arc` clone).
///
/// Allowed origin: `Access-Control-Allow-Origin` is `*` when any origin is
/// allowed (no credentials are involved: the SDKs send tokens in
/// `Authorization`, not cookies), else the origin itself. A preflight
/// (`OPTIONS` + `Access-Control-Request-Method`) is answered here with 204,
/// every method, the requested headers echoed, and a day's `Max-Age`.
/// Other origins get no CORS headers (the browser then withholds the
/// answer) and a refused preflight gets 403. No `Expose-Headers`: the SDKs
/// read bodies only (actix-cors, used before, sent none either).
///
/// The dashboard (`/_/…`) is same-origin only and never gets CORS headers.
pub async fn cors(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let path = req.path();
    if path == "/_" || path.starts_with("/_/") {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let allow = req
        .headers()
        .get(header::ORIGIN)
        .map(|origin| allowed_origin(&req, origin));
    let preflight =
        req.method() == Method::OPTIONS && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if let (Some(allow), true) = (&allow, preflight) {
        let res = match allow {
            Some(value) => {
                let mut res = HttpResponse::NoContent();
                res.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, value.clone()))
                    .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, ALLOW_METHODS))
                    .insert_header((header::ACCESS_CONTROL_MAX_AGE, "86400"))
                    .insert_header((header::VARY, PREFLIGHT_VARY));
                if let Some(h) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
                    res.insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, h.clone()));
                }
                res.finish()
            }
            None => {
                let mut res = ApiError::forbidden("This origin may not call the API (CORS).").error_response();
                res.headers_mut()
                    .insert(header::VARY, HeaderValue::from_static(PREFLIGHT_VARY));
                res
            }
        };
        return Ok(req.into_response(res).map_into_right_body());
    }
    let mut res = next.call(req).await?;
    let h = res.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(Some(value)) = allow {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    Ok(res.map_into_left_body())
}

const ALLOW_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";
const PREFLIGHT_VARY: &str = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

/// The `Access-Control-Allow-Origin` value for `origin`, or `None` when it
/// is not allowed. Origins compare case-insensitively (scheme and host are).
fn allowed_origin(req: &ServiceRequest, origin: &HeaderValue) -> Option<HeaderValue> {
    let state = req.app_data::<web::Data<AppState>>()?;
    let settings = state.settings.get();
    let text = origin.to_str().ok()?;
    let matches = |o: &&str| *o == "*" || o.eq_ignore_ascii_case(text);
    let found = match &settings.cors.origins {
        Some(list) => list.iter().map(String::as_str).find(matches),
        None => state.config.origins.split(',').map(str::trim).find(matches),
    }?;
    Some(if found == "*" {
        HeaderValue::from_static("*")
    } else {
        origin.clone()
    })
}
