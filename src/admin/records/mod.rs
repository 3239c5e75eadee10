//! Dashboard: the records browser (`/_/collections/{c}/records…`).
//!
//! Every page calls the same `core` operations as the REST API, as the
//! logged-in superuser, so filters, validation, rules, indexes and realtime
//! events are exactly the API's. Pages:
//! - [`list`]: the table (columns, filter, sort, page and cursor paging);
//! - [`edit`]: one record (JSON view, edit, delete) and the create page,
//!   with the form generated from the JSON Schema in [`form`];
//! - [`files`]: file fields (links and thumbnails, removals);
//! - [`bulk`]: deleting the selected records, or every record matching a
//!   filter as a background job with a progress page;
//! - [`users`]: actions on auth records (verify, mails, impersonate).

mod bulk;
mod edit;
mod files;
mod form;
mod list;
mod users;

use std::sync::Arc;

use actix_web::web;
use serde_json::{Map, Value};

use super::view::{enc, AdminError};
use super::Admin;
use crate::error::ApiError;
use crate::schema::CompiledCollection;

pub fn routes(cfg: &mut web::ServiceConfig) {
    // Fixed paths first: `new`, `bulk-delete` and `jobs` would otherwise be
    // taken for record ids.
    cfg.route("/collections/{c}/records", web::get().to(list::index))
        .service(
            web::resource("/collections/{c}/records/new")
                .route(web::get().to(edit::new_page))
                .route(web::post().to(edit::create)),
        )
        .route(
            "/collections/{c}/records/bulk-delete",
            web::post().to(bulk::delete_selected),
        )
        .route(
            "/collections/{c}/records/delete-matching",
            web::post().to(bulk::start_job),
        )
        .route("/collections/{c}/records/jobs/{job}", web::get().to(bulk::job_page))
        .service(
            web::resource("/collections/{c}/records/{id}")
                .route(web::get().to(edit::record_page))
                .route(web::post().to(edit::update)),
        )
        .route("/collections/{c}/records/{id}/delete", web::post().to(edit::delete))
        .route("/collections/{c}/records/{id}/verify", web::post().to(users::verify))
        .route("/collections/{c}/records/{id}/unlink", web::post().to(users::unlink))
        .route(
            "/collections/{c}/records/{id}/send-verification",
            web::post().to(users::send_verification),
        )
        .route(
            "/collections/{c}/records/{id}/send-reset",
            web::post().to(users::send_reset),
        )
        .route(
            "/collections/{c}/records/{id}/impersonate",
            web::post().to(users::impersonate),
        );
}

/// The collection named (or identified) in the URL.
fn collection(admin: &Admin, name: &str) -> Result<Arc<CompiledCollection>, AdminError> {
    admin.state.registry.get(name).ok_or(AdminError::NotFound)
}

/// `/_/collections/{name}/records`.
fn list_path(coll: &CompiledCollection) -> String {
    format!("/_/collections/{}/records", enc(&coll.def.name))
}

/// `/_/collections/{name}/records/{id}`.
fn record_path(coll: &CompiledCollection, id: &str) -> String {
    format!("{}/{}", list_path(coll), enc(id))
}

/// The list page to go back to after a form post: the list path plus the
/// query string the form carried in its `back` field, re-encoded pair by
/// pair so nothing but a query string can come out of it.
fn back_to_list(coll: &CompiledCollection, back: &str) -> String {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(back)
        .map(|q| q.into_inner())
        .unwrap_or_default();
    let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect();
    if query.is_empty() {
        list_path(coll)
    } else {
        format!("{}?{}", list_path(coll), query.join("&"))
    }
}

/// The top-level `properties` of the collection's JSON Schema, in order.
fn properties(coll: &CompiledCollection) -> Map<String, Value> {
    coll.def
        .schema
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// Per-field messages of an API error (`data.{field}.message`), in order.
fn field_messages(e: &ApiError) -> Vec<(String, String)> {
    e.data
        .iter()
        .map(|(k, v)| {
            let msg = match v.get("message").and_then(Value::as_str) {
                Some(m) => m.to_owned(),
                None => v.to_string(),
            };
            (k.clone(), msg)
        })
        .collect()
}

/// An API error as one line: the message plus every field's message.
fn error_text(e: &ApiError) -> String {
    let fields = field_messages(e);
    if fields.is_empty() {
        return e.message.clone();
    }
    let parts: Vec<String> = fields.iter().map(|(k, m)| format!("{k}: {m}")).collect();
    format!("{} {}", e.message, parts.join("; "))
}
