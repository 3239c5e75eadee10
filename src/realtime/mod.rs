//! Realtime change feeds: WebSocket with resume (`ws`), PocketBase's SSE
//! protocol (`sse`), shared subscription matching (`subscription`) and
//! change-log retention (`retention`).
//!
//! Every committed write reaches here from the store's commit path (the
//! flusher publishes each change on a `tokio::sync::broadcast` after it is
//! durable, in seq order), whatever made it: REST, batch, dashboard, CLI.

pub mod retention;
pub mod sse;
pub mod subscription;
pub mod ws;

/// Realtime state shared by the handlers.
#[derive(Clone, Default)]
pub struct Realtime {
    pub sse: sse::SseClients,
}
