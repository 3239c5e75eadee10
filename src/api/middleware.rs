//! Cross-cutting HTTP concerns: one log line and one request-log entry per
//! request, security headers, CORS.

use std::time::Instant;

use actix_cors::Cors;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest};

use crate::core::{Caller, SUPERUSERS};
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

/// Logs method, path (never the query string or headers: they can carry
/// tokens or personal data), status, duration and peer address, to the
/// tracing output and to the request log (one non-blocking `try_send`).
pub async fn log_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.path().to_owned();
    let ip = req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
    let res = next.call(req).await?;
    let status = res.status().as_u16();
    let micros = start.elapsed().as_micros() as u64;
    tracing::info!(target: "basalt::http", %method, %path, status, micros, %ip, "request");
    let request = res.request();
    if let Some(state) = request.app_data::<web::Data<AppState>>() {
        let log = state.store.logs();
        if log.enabled() {
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
    let h = res.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if !h.contains_key(header::X_FRAME_OPTIONS) {
        // The dashboard sets its own (DENY).
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("SAMEORIGIN"));
    }
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    Ok(res)
}

/// CORS from `--origins`: `*` allows any origin (PocketBase's default),
/// otherwise a comma-separated allow-list.
pub fn cors(origins: &str) -> Cors {
    let base = Cors::default().allow_any_method().allow_any_header().max_age(86_400);
    if origins.trim() == "*" {
        base.allow_any_origin()
    } else {
        origins
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .fold(base, |c, o| c.allowed_origin(o))
    }
}
