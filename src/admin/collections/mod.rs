//! Dashboard: the collections list, the create form and (in [`edit`]) the
//! edit page with dry run, index progress and deletion.
//!
//! Everything goes through `core::collections` as the REST API does, so a
//! form refused here is refused for the same reason (and with the same
//! message) as the equivalent API call; the page only decides where each
//! message is shown.

mod auth;
mod edit;
mod form;
mod indexes;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde_json::Value;

use super::view::{self, AdminError};
use super::{Admin, AdminForm, Page};
use crate::core;
use crate::schema::CompiledCollection;
use form::CollectionForm;

pub fn routes(cfg: &mut web::ServiceConfig) {
    auth::routes(cfg);
    cfg.route("/collections", web::get().to(index))
        // Before `/collections/{name}`, which would match it too.
        .service(
            web::resource("/collections/new")
                .route(web::get().to(new_page))
                .route(web::post().to(create)),
        )
        .service(
            web::resource("/collections/{name}")
                .route(web::get().to(edit::page))
                .route(web::post().to(edit::save)),
        )
        .route("/collections/{name}/dry-run", web::post().to(edit::dry_run))
        .route("/collections/{name}/delete", web::post().to(edit::delete))
        .route(
            "/collections/{name}/indexes/dismiss",
            web::post().to(edit::dismiss_index),
        );
}

/// The URL segment naming a collection's edit page: its name, except for
/// a collection called `new`, whose name is the create page's path (the
/// id works there as well, as in the API).
pub fn key_of(c: &CompiledCollection) -> String {
    if c.def.name == "new" {
        c.def.id.clone()
    } else {
        c.def.name.clone()
    }
}

/// A row of the collections table.
struct Row {
    name: String,
    key: String,
    description: String,
    auth: bool,
    system: bool,
    count: u64,
    fields: usize,
    indexes: usize,
    building: usize,
    failed: usize,
}

#[derive(Template)]
#[template(path = "collections/list.html")]
struct ListPage {
    page: Page,
    rows: Vec<Row>,
    /// Whether there is any collection besides the system ones.
    has_own: bool,
    building: bool,
}

/// `GET /_/collections`.
async fn index(req: HttpRequest, admin: Admin) -> HttpResponse {
    let state = &admin.state;
    let mut rows: Vec<Row> = state
        .registry
        .all()
        .iter()
        .map(|c| {
            let idx = indexes::of(state, c);
            Row {
                name: c.def.name.clone(),
                key: key_of(c),
                description: c
                    .def
                    .schema
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                auth: c.is_auth(),
                system: c.def.system,
                count: state.store.count(&c.def.id),
                fields: c
                    .def
                    .schema
                    .get("properties")
                    .and_then(Value::as_object)
                    .map_or(0, |p| p.len()),
                indexes: c.def.indexes.len(),
                building: idx.building,
                failed: idx.failed,
            }
        })
        .collect();
    // Your own collections first, as in the sidebar.
    rows.sort_by(|a, b| (a.system, &a.name).cmp(&(b.system, &b.name)));
    let page = ListPage {
        page: Page::new(&req, &admin, "Collections", "collections"),
        has_own: rows.iter().any(|r| !r.system && r.name != "users"),
        building: rows.iter().any(|r| r.building > 0),
        rows,
    };
    view::render(&req, &page)
}

#[derive(Template)]
#[template(path = "collections/new.html")]
struct NewPage {
    page: Page,
    form: CollectionForm,
    creating: bool,
    /// Always false here; the shared form partial reads it.
    system: bool,
}

fn new_form(req: &HttpRequest, admin: &Admin, status: StatusCode, form: CollectionForm) -> HttpResponse {
    let page = NewPage {
        page: Page::new(req, admin, "New collection", "collections"),
        form,
        creating: true,
        system: false,
    };
    view::render_status(req, status, &page)
}

/// `GET /_/collections/new`.
async fn new_page(req: HttpRequest, admin: Admin) -> HttpResponse {
    new_form(&req, &admin, StatusCode::OK, CollectionForm::blank())
}

/// `POST /_/collections/new`: creates the collection, then opens its edit
/// page; a refused form comes back (400) with every value as typed.
async fn create(req: HttpRequest, form: AdminForm) -> Result<HttpResponse, AdminError> {
    let mut values = CollectionForm::from_post(&form, None);
    let Some(body) = values.api_body(true) else {
        return Ok(new_form(&req, &form.admin, StatusCode::BAD_REQUEST, values));
    };
    match core::collections::create(&form.admin.state, body).await {
        Ok(created) => {
            let name = created.get("name").and_then(Value::as_str).unwrap_or_default();
            let key = form
                .admin
                .state
                .registry
                .get(name)
                .map_or_else(|| name.to_owned(), |c| key_of(&c));
            Ok(view::redirect_flash(
                &req,
                &format!("/_/collections/{}", view::enc(&key)),
                "ok",
                &format!("Created collection “{name}”. Add records from its Records page."),
            ))
        }
        Err(e) if e.status == 400 => {
            values.absorb(&e);
            Ok(new_form(&req, &form.admin, StatusCode::BAD_REQUEST, values))
        }
        Err(e) => Err(e.into()),
    }
}
