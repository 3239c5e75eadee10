//! The edit page of one collection: the form (saved with PATCH semantics
//! through `core::collections::update`), a dry run of a proposed schema
//! against the stored records, index build progress, and deletion with a
//! typed confirmation.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde_json::Value;

use super::form::CollectionForm;
use super::indexes::{self, IndexRow};
use super::key_of;
use crate::admin::view::{self, AdminError};
use crate::admin::{Admin, AdminForm, Page};
use crate::core;
use crate::schema::CompiledCollection;

/// One record a dry run found invalid, with its per-field errors.
struct DryExample {
    id: String,
    errors: Vec<FieldMessage>,
}

struct FieldMessage {
    field: String,
    message: String,
}

/// What a dry run found.
struct DryRun {
    total: u64,
    invalid: u64,
    examples: Vec<DryExample>,
}

impl DryRun {
    /// Whether more records failed than the examples show.
    fn truncated(&self) -> bool {
        (self.examples.len() as u64) < self.invalid
    }
}

#[derive(Template)]
#[template(path = "collections/edit.html")]
struct EditPage {
    page: Page,
    /// The URL segment of this collection's pages (see [`key_of`]).
    key: String,
    name: String,
    id: String,
    system: bool,
    count: u64,
    created: String,
    updated: String,
    form: CollectionForm,
    creating: bool,
    indexes: Vec<IndexRow>,
    /// Indexes in the definition (`indexes` also lists failed builds).
    defined_indexes: usize,
    building: bool,
    dry: Option<DryRun>,
    /// Whether the form differs from what is stored (dry run, refused save):
    /// the page then says so and does not reload itself.
    unsaved: bool,
    confirm: String,
    delete_error: Option<String>,
}

impl EditPage {
    fn new(req: &HttpRequest, admin: &Admin, c: &CompiledCollection, form: CollectionForm) -> EditPage {
        let idx = indexes::of(&admin.state, c);
        EditPage {
            page: Page::new(req, admin, c.def.name.clone(), "collections"),
            key: key_of(c),
            name: c.def.name.clone(),
            id: c.def.id.clone(),
            system: c.def.system,
            count: admin.state.store.count(&c.def.id),
            created: c.def.created.clone(),
            updated: c.def.updated.clone(),
            form,
            creating: false,
            building: idx.building > 0,
            defined_indexes: c.def.indexes.len(),
            indexes: idx.rows,
            dry: None,
            unsaved: false,
            confirm: String::new(),
            delete_error: None,
        }
    }

    /// The link to the records browser showing one record.
    fn record_href(&self, id: &str) -> String {
        format!(
            "/_/collections/{}/records?filter={}",
            view::enc(&self.name),
            view::enc(&format!("id = {}", serde_json::to_string(id).unwrap_or_default()))
        )
    }
}

fn collection(admin: &Admin, key: &str) -> Result<Arc<CompiledCollection>, AdminError> {
    admin.state.registry.get(key).ok_or(AdminError::NotFound)
}

fn stored_form(admin: &Admin, c: &CompiledCollection) -> CollectionForm {
    CollectionForm::from_export(&core::collections::export(&admin.state, c))
}

/// `GET /_/collections/{name}`.
pub async fn page(req: HttpRequest, admin: Admin, path: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let c = collection(&admin, &path)?;
    let form = stored_form(&admin, &c);
    Ok(view::render(&req, &EditPage::new(&req, &admin, &c, form)))
}

/// The submitted values of an edit form (the type is the collection's).
fn submitted(form: &AdminForm, c: &CompiledCollection) -> CollectionForm {
    CollectionForm::from_post(form, Some(c.is_auth()))
}

fn again(req: &HttpRequest, form: &AdminForm, c: &CompiledCollection, values: CollectionForm) -> HttpResponse {
    let mut page = EditPage::new(req, &form.admin, c, values);
    page.unsaved = true;
    view::render_status(req, StatusCode::BAD_REQUEST, &page)
}

/// `POST /_/collections/{name}`: saves, then back to the edit page.
pub async fn save(req: HttpRequest, path: web::Path<String>, form: AdminForm) -> Result<HttpResponse, AdminError> {
    let c = collection(&form.admin, &path)?;
    let mut values = submitted(&form, &c);
    let Some(body) = values.api_body(false) else {
        return Ok(again(&req, &form, &c, values));
    };
    match core::collections::update(&form.admin.state, &c.def.id, body).await {
        Ok(saved) => {
            let building = saved
                .get("indexStatus")
                .and_then(Value::as_object)
                .map_or(0, |s| s.values().filter(|v| v["state"] == "building").count());
            let text = match building {
                0 => "Saved.".to_owned(),
                n => format!("Saved. Building {n} index(es) over the existing records; progress is shown below."),
            };
            let key = collection(&form.admin, &c.def.id).map_or_else(|_| c.def.id.clone(), |c| key_of(&c));
            Ok(view::redirect_flash(
                &req,
                &format!("/_/collections/{}", view::enc(&key)),
                "ok",
                &text,
            ))
        }
        Err(e) if e.status == 400 => {
            values.absorb(&e);
            Ok(again(&req, &form, &c, values))
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /_/collections/{name}/dry-run`: checks every stored record against
/// the schema in the form and shows the edit page again with the result and
/// the form as typed. Nothing is saved.
pub async fn dry_run(req: HttpRequest, path: web::Path<String>, form: AdminForm) -> Result<HttpResponse, AdminError> {
    let c = collection(&form.admin, &path)?;
    let mut values = submitted(&form, &c);
    let Some(schema) = values.parsed_schema() else {
        return Ok(again(&req, &form, &c, values));
    };
    let state = form.admin.state.clone();
    let id = c.def.id.clone();
    // A full scan: off the async workers.
    let result = web::block(move || core::collections::dry_run(&state, &id, &schema))
        .await
        .map_err(|_| {
            AdminError::Api(crate::error::ApiError::internal(
                "The dry run was interrupted; try again.",
            ))
        })?;
    match result {
        Ok(v) => {
            let examples = v["examples"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|ex| DryExample {
                            id: ex["id"].as_str().unwrap_or_default().to_owned(),
                            errors: ex["errors"]
                                .as_object()
                                .map(|errs| {
                                    errs.iter()
                                        .map(|(field, e)| FieldMessage {
                                            field: if field.is_empty() {
                                                "(record)".into()
                                            } else {
                                                field.clone()
                                            },
                                            message: e["message"].as_str().unwrap_or_default().to_owned(),
                                        })
                                        .collect()
                                })
                                .unwrap_or_default(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut page = EditPage::new(&req, &form.admin, &c, values);
            page.unsaved = true;
            page.dry = Some(DryRun {
                total: v["total"].as_u64().unwrap_or(0),
                invalid: v["invalid"].as_u64().unwrap_or(0),
                examples,
            });
            Ok(view::render(&req, &page))
        }
        Err(e) if e.status == 400 => {
            values.absorb(&e);
            Ok(again(&req, &form, &c, values))
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /_/collections/{name}/delete`: only when `confirm` is exactly the
/// collection's name (the page's script checks it too, but the server
/// decides).
pub async fn delete(req: HttpRequest, path: web::Path<String>, form: AdminForm) -> Result<HttpResponse, AdminError> {
    let c = collection(&form.admin, &path)?;
    let confirm = form.text("confirm");
    let refuse = |message: String| {
        let mut page = EditPage::new(&req, &form.admin, &c, stored_form(&form.admin, &c));
        page.confirm = confirm.to_owned();
        page.delete_error = Some(message);
        view::render_status(&req, StatusCode::BAD_REQUEST, &page)
    };
    if confirm != c.def.name {
        return Ok(refuse(format!(
            "Type the collection's name, “{}”, exactly to confirm. Nothing was deleted.",
            c.def.name
        )));
    }
    let count = form.admin.state.store.count(&c.def.id);
    match core::collections::delete(&form.admin.state, &c.def.id).await {
        Ok(()) => Ok(view::redirect_flash(
            &req,
            "/_/collections",
            "ok",
            &format!("Deleted collection “{}” and its {count} record(s).", c.def.name),
        )),
        Err(e) if e.status == 400 => Ok(refuse(e.message)),
        Err(e) => Err(e.into()),
    }
}

/// `POST /_/collections/{name}/indexes/dismiss`: forgets a failed build's
/// status once its reason has been read (the index itself is already gone).
pub async fn dismiss_index(
    req: HttpRequest,
    path: web::Path<String>,
    form: AdminForm,
) -> Result<HttpResponse, AdminError> {
    let c = collection(&form.admin, &path)?;
    let index = form.text("index");
    let state = &form.admin.state;
    let failed = state
        .index_builds
        .of(&c.def.id)
        .get(index)
        .is_some_and(|s| s.state == "failed");
    let location = format!("/_/collections/{}", view::enc(&key_of(&c)));
    if !failed {
        return Ok(view::redirect_flash(
            &req,
            &location,
            "error",
            "Only the status of a failed index build can be dismissed.",
        ));
    }
    core::indexing::forget(state, &c.def.id, index);
    Ok(view::redirect_flash(&req, &location, "ok", "Dismissed."))
}
