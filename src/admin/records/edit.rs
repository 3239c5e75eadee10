//! One record: the record page (JSON view, edit form, raw JSON edit,
//! delete, auth actions) and the create page. Both forms post to core
//! create/update as the superuser; a refused post shows the form again
//! (400) with the submitted values and each API error next to its field.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde_json::{Map, Value};

use super::files::{self, FileUrls};
use super::form::{self, Field};
use super::{collection, error_text, list_path, record_path};
use crate::admin::view::{self, AdminError};
use crate::admin::{Admin, AdminForm, Page};
use crate::core::records;
use crate::error::ApiError;
use crate::schema::numbers;
use crate::schema::record::is_system_field;
use crate::schema::CompiledCollection;

#[derive(Template)]
#[template(path = "records/record.html")]
struct RecordPage {
    page: Page,
    name: String,
    base: String,
    creating: bool,
    id: String,
    /// Where the forms post (the create or the record URL).
    action: String,
    fields: Vec<Field>,
    /// The collection has file fields: the form posts `multipart/form-data`.
    has_files: bool,
    /// The API's message when it refused the post, and field errors no
    /// control shows.
    error: String,
    other_errors: Vec<String>,
    raw: String,
    raw_open: bool,
    raw_error: String,
    /// The record as the API returns it, pretty-printed.
    json: String,
    auth: bool,
    verified: bool,
    /// Linked OAuth2 accounts: (link id, provider, provider's account id).
    providers: Vec<(String, String, String)>,
}

/// The record page's state before the template: the record (if any) and
/// the form to show.
struct View {
    coll: Arc<CompiledCollection>,
    record: Option<Value>,
    fields: Vec<Field>,
    error: String,
    other_errors: Vec<String>,
    raw: Option<String>,
    raw_error: String,
}

impl View {
    fn new(admin: &Admin, coll: Arc<CompiledCollection>, record: Option<Value>) -> View {
        let urls = FileUrls::new(admin, &coll);
        let fields = form::fields_for(&coll, record.as_ref(), &urls);
        View {
            coll,
            record,
            fields,
            error: String::new(),
            other_errors: Vec::new(),
            raw: None,
            raw_error: String::new(),
        }
    }

    fn render(self, req: &HttpRequest, admin: &Admin, status: StatusCode) -> HttpResponse {
        let coll = &self.coll;
        let id = self
            .record
            .as_ref()
            .and_then(|r| r.get("id"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let creating = self.record.is_none();
        let title = if creating {
            format!("New {} record", coll.def.name)
        } else {
            format!("{} {id}", coll.def.name)
        };
        let raw_open = self.raw.is_some();
        let tpl = RecordPage {
            page: Page::new(req, admin, title, format!("records:{}", coll.def.name)),
            name: coll.def.name.clone(),
            base: list_path(coll),
            action: if creating {
                format!("{}/new", list_path(coll))
            } else {
                record_path(coll, &id)
            },
            creating,
            has_files: !coll.files.is_empty(),
            fields: self.fields,
            error: self.error,
            other_errors: self.other_errors,
            raw: self.raw.unwrap_or_else(|| raw_body(coll, self.record.as_ref())),
            raw_open,
            raw_error: self.raw_error,
            json: self
                .record
                .as_ref()
                .map(|r| serde_json::to_string_pretty(r).unwrap_or_default())
                .unwrap_or_default(),
            auth: coll.is_auth(),
            verified: self
                .record
                .as_ref()
                .and_then(|r| r.get("verified"))
                .and_then(Value::as_bool)
                .unwrap_or(false),
            providers: linked_providers(admin, coll, &id),
            id,
        };
        view::render_status(req, status, &tpl)
    }
}

/// What the raw JSON editor starts with: the writable fields of the record
/// (user fields, and an auth record's email settings), or `{}`.
fn raw_body(coll: &CompiledCollection, record: Option<&Value>) -> String {
    let auth = coll.is_auth();
    let body: Map<String, Value> = record
        .and_then(Value::as_object)
        .map(|r| {
            r.iter()
                .filter(|(k, _)| {
                    !is_system_field(k, auth) || matches!(k.as_str(), "email" | "emailVisibility" | "verified")
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    serde_json::to_string_pretty(&Value::Object(body)).unwrap_or_else(|_| "{}".into())
}

/// The record as a superuser sees it through the API.
fn load(admin: &Admin, coll: &CompiledCollection, id: &str) -> Result<Value, AdminError> {
    match records::view(&admin.state, coll, id, "", &admin.request("GET")) {
        Ok(raw) => serde_json::from_str(raw.get()).map_err(|e| ApiError::internal(e.to_string()).into()),
        Err(e) if e.status == 404 => Err(AdminError::NotFound),
        Err(e) => Err(e.into()),
    }
}

/// A client error (shown on the form) or anything else (an error page).
fn refused(e: ApiError) -> Result<ApiError, AdminError> {
    if (400..500).contains(&e.status) && e.status != 404 {
        Ok(e)
    } else if e.status == 404 {
        Err(AdminError::NotFound)
    } else {
        Err(e.into())
    }
}

/// The raw JSON editor's text as a body object.
fn parse_raw(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => match numbers::out_of_range_integer(text.as_bytes()) {
            Some(path) => Err(format!("{path}: {}", numbers::OUT_OF_RANGE)),
            None => Ok(m),
        },
        Ok(_) => Err("The record body must be a JSON object ({…}).".into()),
        Err(e) => Err(format!("Invalid JSON at line {}, column {}: {e}", e.line(), e.column())),
    }
}

pub async fn new_page(req: HttpRequest, admin: Admin, path: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let coll = collection(&admin, &path)?;
    Ok(View::new(&admin, coll, None).render(&req, &admin, StatusCode::OK))
}

pub async fn record_page(
    req: HttpRequest,
    admin: Admin,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AdminError> {
    let coll = collection(&admin, &path.0)?;
    let record = load(&admin, &coll, &path.1)?;
    Ok(View::new(&admin, coll, Some(record)).render(&req, &admin, StatusCode::OK))
}

/// Shows a refused post again: the API's message on top, field errors on
/// their controls (generated form) or listed (raw mode).
fn show_refusal(mut v: View, e: &ApiError, raw: Option<String>) -> View {
    if raw.is_some() {
        v.raw_error = error_text(e);
        v.raw = raw;
    } else {
        v.other_errors = form::apply_errors(&mut v.fields, e);
        v.error = e.message.clone();
    }
    v
}

/// `POST …/records/new`: the generated form, or `_raw=1` with `body`.
pub async fn create(
    req: HttpRequest,
    mut form: AdminForm,
    path: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let uploads = std::mem::take(&mut form.uploads);
    let admin = &form.admin;
    let coll = collection(admin, &path)?;
    let mut v = View::new(admin, coll.clone(), None);
    let raw = (form.get("_raw") == Some("1")).then(|| form.text("body").to_owned());
    let body = match &raw {
        Some(text) => match parse_raw(text) {
            Ok(body) => body,
            Err(msg) => {
                v.raw_error = msg;
                v.raw = raw;
                return Ok(v.render(&req, admin, StatusCode::BAD_REQUEST));
            }
        },
        None => {
            let sub = form::read_form(&mut v.fields, |n| form.get(n));
            if sub.invalid {
                v.error = "Some values could not be read; see the fields below.".into();
                return Ok(v.render(&req, admin, StatusCode::BAD_REQUEST));
            }
            sub.body
        }
    };
    match records::create(&admin.state, &coll, body, uploads, "", &admin.request("POST")).await {
        Ok(created) => {
            let rec: Value = serde_json::from_str(created.get()).unwrap_or_default();
            let id = rec.get("id").and_then(Value::as_str).unwrap_or_default();
            Ok(view::redirect_flash(
                &req,
                &record_path(&coll, id),
                "ok",
                "Record created.",
            ))
        }
        Err(e) => {
            let e = refused(e)?;
            Ok(show_refusal(v, &e, raw).render(&req, admin, StatusCode::BAD_REQUEST))
        }
    }
}

/// `POST …/records/{id}`: saves the edit form (or `_raw=1` with `body`).
/// Empty controls remove their field; in raw mode, user fields missing from
/// the JSON are removed, so the text is the record's new content.
pub async fn update(
    req: HttpRequest,
    mut form: AdminForm,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AdminError> {
    let uploads = std::mem::take(&mut form.uploads);
    let admin = &form.admin;
    let coll = collection(admin, &path.0)?;
    let current = load(admin, &coll, &path.1)?;
    let mut v = View::new(admin, coll.clone(), Some(current.clone()));
    let raw = (form.get("_raw") == Some("1")).then(|| form.text("body").to_owned());
    let (body, unset) = match &raw {
        Some(text) => match parse_raw(text) {
            Ok(body) => {
                let auth = coll.is_auth();
                let gone = current
                    .as_object()
                    .map(|r| {
                        r.keys()
                            .filter(|k| !is_system_field(k, auth) && !body.contains_key(*k))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                (body, gone)
            }
            Err(msg) => {
                v.raw_error = msg;
                v.raw = raw;
                return Ok(v.render(&req, admin, StatusCode::BAD_REQUEST));
            }
        },
        None => {
            let sub = form::read_form(&mut v.fields, |n| form.get(n));
            if sub.invalid {
                v.error = "Some values could not be read; see the fields below.".into();
                return Ok(v.render(&req, admin, StatusCode::BAD_REQUEST));
            }
            let mut body = sub.body;
            let removals = files::read_removals(&coll, |n| form.all(n), &mut body);
            form::show_removals(&mut v.fields, &removals);
            (body, sub.unset)
        }
    };
    let req_info = admin.request("PATCH");
    match records::update_unsetting(&admin.state, &coll, &path.1, body, uploads, &unset, "", &req_info).await {
        Ok(_) => Ok(view::redirect_flash(
            &req,
            &record_path(&coll, &path.1),
            "ok",
            "Record saved.",
        )),
        Err(e) => {
            let e = refused(e)?;
            Ok(show_refusal(v, &e, raw).render(&req, admin, StatusCode::BAD_REQUEST))
        }
    }
}

/// `POST …/records/{id}/delete`.
pub async fn delete(
    req: HttpRequest,
    form: AdminForm,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AdminError> {
    let admin = &form.admin;
    let coll = collection(admin, &path.0)?;
    match records::delete(&admin.state, &coll, &path.1, &admin.request("DELETE")).await {
        Ok(()) => Ok(view::redirect_flash(
            &req,
            &list_path(&coll),
            "ok",
            &format!("Record {} deleted.", path.1),
        )),
        Err(e) if e.status == 404 => Err(AdminError::NotFound),
        Err(e) if e.status < 500 => Ok(view::redirect_flash(
            &req,
            &record_path(&coll, &path.1),
            "error",
            &error_text(&e),
        )),
        Err(e) => Err(e.into()),
    }
}

/// The OAuth2 accounts linked to auth record `id` (none for other records).
fn linked_providers(admin: &Admin, coll: &CompiledCollection, id: &str) -> Vec<(String, String, String)> {
    if !coll.is_auth() || id.is_empty() {
        return Vec::new();
    }
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    crate::core::auth::linked_providers(&admin.state, coll, id)
        .unwrap_or_default()
        .iter()
        .map(|l| (text(l, "id"), text(l, "provider"), text(l, "providerId")))
        .collect()
}
