//! `GET /api/realtime` (the event stream) and `POST /api/realtime` (the
//! subscription set), PocketBase's SSE protocol; see `realtime::sse`.

use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::api::extract::JsonBody;
use crate::error::ApiError;
use crate::realtime::sse::{self, SseClients};
use crate::state::AppState;

/// `GET /api/realtime`. At most `limits.realtimePerAddress` realtime
/// streams per client address (429 over it): the stream's task holds its
/// slot until it ends.
pub async fn connect(
    req: HttpRequest,
    state: web::Data<AppState>,
    clients: web::Data<SseClients>,
) -> Result<HttpResponse, ApiError> {
    let lease = crate::api::bounds::realtime_lease(&req, &state)?;
    let opened = sse::open(&state, &clients, crate::api::middleware::client_ip(&req));
    let pump = opened.pump;
    actix_web::rt::spawn(async move {
        let _lease = lease;
        pump.await;
    });
    let body = futures_util::stream::unfold(opened.frames, |mut out| async move {
        out.recv()
            .await
            .map(|f| (Ok::<Bytes, actix_web::Error>(Bytes::from(f)), out))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

/// `POST /api/realtime {clientId, subscriptions}` → 204.
pub async fn set_subscriptions(
    state: web::Data<AppState>,
    clients: web::Data<SseClients>,
    http: HttpRequest,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let address = crate::api::middleware::client_ip(&http);
    sse::set_subscriptions(&state, &clients, &body.0, super::authorization(&http), address)?;
    Ok(HttpResponse::NoContent().finish())
}
