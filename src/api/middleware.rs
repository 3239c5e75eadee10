//! Cross-cutting HTTP concerns: one log line per request, security headers, CORS.

use std::time::Instant;

use actix_cors::Cors;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;

/// Logs method, path (never the query string or headers: they can carry
/// tokens or personal data), status, duration and peer address.
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
