//! Basalt: a self-hosted Backend-as-a-Service in one binary.
//!
//! Module map (see ARCHITECTURE.md for what each may import):

/// The admin dashboard at `/_/` (server-rendered pages, sessions, CSRF).
pub mod admin;
/// Actix handlers, extractors, error rendering, middleware (thin).
pub mod api;
/// Building and running the HTTP server.
pub mod app;
mod architecture;
/// Passwords (argon2id) and tokens (JWT HS256).
pub mod auth;
/// Per-address caps on open connections (HTTP, realtime).
pub mod caps;
/// Wall clock and the wire date format.
pub mod clock;
/// Server configuration.
pub mod config;
/// The operator's commands and the control socket the CLI reaches a
/// running server through.
pub mod control;
/// Operations shared by REST, batch, dashboard and CLI.
pub mod core;
/// The one client-facing error type.
pub mod error;
/// Where uploaded files live (local disk or S3), their names and spooling.
pub mod files;
/// Random ids and secrets.
pub mod ids;
/// Outgoing mail (SMTP or the dev outbox).
pub mod mail;
/// Filter language, sort and index key encoding (pure).
pub mod query;
/// Rate limits (settings rules per address, logins per account).
pub mod ratelimit;
/// Realtime change feeds (WebSocket, SSE).
pub mod realtime;
/// Access rules.
pub mod rules;
/// Collections: model, JSON Schema, record shape.
pub mod schema;
/// Settings editable by superusers.
pub mod settings;
/// Shared state handle.
pub mod state;
/// sled-backed store: records, indexes, change log, group commit.
pub mod store;

pub use app::App;
pub use config::Config;
