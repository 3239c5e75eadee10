//! The realtime endpoints: PocketBase's SSE protocol (`sse`) and the
//! WebSocket feed with resume (`ws`). What a client sees is decided in
//! `realtime` (subscriptions, rules, rendering); this is the HTTP side:
//! connection slots, upgrades, streaming.

pub mod sse;
pub mod ws;

use actix_web::HttpRequest;

/// The request's `Authorization` header, if it is text.
fn authorization(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
