//! Bulk deletion: the records ticked in the table (one store write), or
//! every record matching a filter as a background job with a progress page.
//!
//! A job first collects the matching ids through the list API (so the
//! filter means exactly what it means there), then deletes them
//! [`CHUNK`] at a time with `core::records::delete_many`: each chunk is one
//! store write, each record is checked like a single delete and gets its
//! realtime event. Jobs live in memory (a restart forgets them; records
//! already deleted stay deleted) under a random id, shared by every worker.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde_json::Value;

use super::{back_to_list, collection, error_text, list_path};
use crate::admin::session::random_token;
use crate::admin::view::{self, AdminError};
use crate::admin::{Admin, AdminForm, Page};
use crate::core::list::{list, ListParams, MAX_PER_PAGE};
use crate::core::records::{delete_many, DeleteOutcome};
use crate::core::RequestInfo;
use crate::error::ApiError;
use crate::schema::CompiledCollection;
use crate::state::AppState;

/// Records per store write.
pub const CHUNK: usize = 200;
/// Most ids one "delete selected" post may carry.
const MAX_SELECTED: usize = 1000;
/// Finished jobs are forgotten after this long.
const KEEP_FINISHED: Duration = Duration::from_secs(3600);
/// How often a write refused with "busy" is retried before the job fails.
const BUSY_RETRIES: u32 = 50;

#[derive(Clone, Default)]
struct Progress {
    /// `counting`, `deleting`, `done` or `failed`.
    phase: &'static str,
    total: usize,
    deleted: usize,
    missing: usize,
    refused: usize,
    /// The first refusal's reason, or why the job failed.
    message: String,
    finished: Option<Instant>,
}

struct Job {
    collection: String,
    filter: String,
    progress: Mutex<Progress>,
}

impl Job {
    fn update(&self, f: impl FnOnce(&mut Progress)) {
        if let Ok(mut p) = self.progress.lock() {
            f(&mut p);
        }
    }
    fn snapshot(&self) -> Progress {
        self.progress.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

/// Every job of this process, by id.
static JOBS: LazyLock<Mutex<HashMap<String, Arc<Job>>>> = LazyLock::new(Default::default);

fn register(job: Arc<Job>) -> String {
    let id = random_token();
    if let Ok(mut jobs) = JOBS.lock() {
        jobs.retain(|_, j| j.snapshot().finished.is_none_or(|t| t.elapsed() < KEEP_FINISHED));
        jobs.insert(id.clone(), job);
    }
    id
}

fn find(id: &str) -> Option<Arc<Job>> {
    JOBS.lock().ok()?.get(id).cloned()
}

fn add(p: &mut Progress, o: &DeleteOutcome) {
    p.deleted += o.deleted;
    p.missing += o.missing;
    p.refused += o.refused.len();
    if p.message.is_empty() {
        if let Some((id, why)) = o.refused.first() {
            p.message = format!("Record {id} was not deleted: {why}");
        }
    }
}

/// `delete_many`, waiting out a full write queue (503) a little.
async fn delete_chunk(
    state: &AppState,
    coll: &Arc<CompiledCollection>,
    ids: &[String],
    req: &RequestInfo,
) -> Result<DeleteOutcome, ApiError> {
    let mut tries = 0;
    loop {
        match delete_many(state, coll, ids, req).await {
            Err(e) if e.status == 503 && tries < BUSY_RETRIES => {
                tries += 1;
                actix_web::rt::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// The ids matching `filter`, via the list API (cursor paging where an
/// index serves the order, pages otherwise).
fn matching_ids(
    state: &AppState,
    coll: &CompiledCollection,
    filter: &str,
    req: &RequestInfo,
) -> Result<Vec<String>, ApiError> {
    let mut ids = Vec::new();
    let mut params = ListParams {
        page: 1,
        per_page: MAX_PER_PAGE,
        filter: filter.to_owned(),
        skip_total: true,
        ..ListParams::default()
    };
    loop {
        let r = list(state, coll, &params, req)?;
        let n = r.items.len();
        for item in r.items {
            if let Ok(Value::Object(rec)) = serde_json::from_str::<Value>(item.get()) {
                if let Some(Value::String(id)) = rec.get("id") {
                    ids.push(id.clone());
                }
            }
        }
        if n < params.per_page {
            return Ok(ids);
        }
        match r.next_cursor {
            Some(c) => params.cursor = Some(c),
            None if params.cursor.is_some() => return Ok(ids),
            None => params.page += 1,
        }
    }
}

async fn run(state: AppState, coll: Arc<CompiledCollection>, job: Arc<Job>, req: RequestInfo) {
    // Listing is synchronous store work: off the async workers.
    let (s, c, f, r) = (state.clone(), coll.clone(), job.filter.clone(), req.clone());
    let found = web::block(move || matching_ids(&s, &c, &f, &r))
        .await
        .unwrap_or_else(|e| Err(ApiError::internal(e.to_string())));
    let ids = match found {
        Ok(ids) => ids,
        Err(e) => {
            job.update(|p| {
                p.phase = "failed";
                p.message = error_text(&e);
                p.finished = Some(Instant::now());
            });
            return;
        }
    };
    job.update(|p| {
        p.phase = "deleting";
        p.total = ids.len();
    });
    for chunk in ids.chunks(CHUNK) {
        match delete_chunk(&state, &coll, chunk, &req).await {
            Ok(o) => job.update(|p| add(p, &o)),
            Err(e) => {
                job.update(|p| {
                    p.phase = "failed";
                    p.message = error_text(&e);
                    p.finished = Some(Instant::now());
                });
                return;
            }
        }
    }
    job.update(|p| {
        p.phase = "done";
        p.finished = Some(Instant::now());
    });
}

/// `POST …/records/bulk-delete` with `ids` (repeated) and `back` (the list's query).
pub async fn delete_selected(
    req: HttpRequest,
    form: AdminForm,
    path: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let admin = &form.admin;
    let coll = collection(admin, &path)?;
    let back = back_to_list(&coll, form.text("back"));
    let ids: Vec<String> = form
        .all("ids")
        .into_iter()
        .filter(|i| !i.is_empty())
        .map(str::to_owned)
        .collect();
    if ids.is_empty() {
        return Ok(view::redirect_flash(&req, &back, "error", "No records were selected."));
    }
    if ids.len() > MAX_SELECTED {
        return Err(AdminError::BadRequest(format!(
            "At most {MAX_SELECTED} records can be deleted at once; use \"Delete all matching this filter\"."
        )));
    }
    let request = admin.request("DELETE");
    let mut total = DeleteOutcome::default();
    for chunk in ids.chunks(CHUNK) {
        let o = delete_chunk(&admin.state, &coll, chunk, &request).await?;
        total.deleted += o.deleted;
        total.missing += o.missing;
        total.refused.extend(o.refused);
    }
    let mut text = format!(
        "Deleted {} record{}.",
        total.deleted,
        if total.deleted == 1 { "" } else { "s" }
    );
    if total.missing > 0 {
        text.push_str(&format!(" {} were already gone.", total.missing));
    }
    let kind = if total.refused.is_empty() { "ok" } else { "error" };
    if let Some((id, why)) = total.refused.first() {
        text.push_str(&format!(" {} not deleted (record {id}: {why}).", total.refused.len()));
    }
    Ok(view::redirect_flash(&req, &back, kind, &text))
}

/// `POST …/records/delete-matching` with `filter` and `expected` (the count
/// the user saw): starts a job, then shows its progress page.
pub async fn start_job(req: HttpRequest, form: AdminForm, path: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let admin = &form.admin;
    let coll = collection(admin, &path)?;
    let filter = form.text("filter").trim().to_owned();
    let back = format!("{}?filter={}", list_path(&coll), view::enc(&filter));
    if filter.is_empty() {
        return Err(AdminError::BadRequest(
            "Give a filter: this action deletes the records matching it.".into(),
        ));
    }
    // The count the user confirmed must still be the count: a filter that
    // now matches more (new records, or edited ones) is shown again first.
    let request = admin.request("DELETE");
    let params = ListParams {
        page: 1,
        per_page: 1,
        filter: filter.clone(),
        ..ListParams::default()
    };
    let now = match list(&admin.state, &coll, &params, &request) {
        Ok(r) => r.total_items,
        Err(e) if e.status < 500 => return Err(AdminError::BadRequest(error_text(&e))),
        Err(e) => return Err(e.into()),
    };
    if form.text("expected") != now.to_string() {
        return Ok(view::redirect_flash(
            &req,
            &back,
            "error",
            &format!("The filter now matches {now} records; check them and confirm again."),
        ));
    }
    let job = Arc::new(Job {
        collection: coll.def.name.clone(),
        filter,
        progress: Mutex::new(Progress {
            phase: "counting",
            ..Progress::default()
        }),
    });
    let id = register(job.clone());
    actix_web::rt::spawn(run(admin.state.clone(), coll.clone(), job, request));
    Ok(view::see_other(&format!(
        "{}/jobs/{}",
        list_path(&coll),
        view::enc(&id)
    )))
}

#[derive(Template)]
#[template(path = "records/job.html")]
struct JobPage {
    page: Page,
    name: String,
    base: String,
    filter: String,
    phase: &'static str,
    total: usize,
    deleted: usize,
    missing: usize,
    refused: usize,
    message: String,
    /// How far, in percent (for the text next to the bar).
    percent: usize,
    running: bool,
}

/// `GET …/records/jobs/{job}`: the progress page (reloads itself while running).
pub async fn job_page(
    req: HttpRequest,
    admin: Admin,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AdminError> {
    let coll = collection(&admin, &path.0)?;
    let job = find(&path.1)
        .filter(|j| j.collection == coll.def.name)
        .ok_or(AdminError::NotFound)?;
    let p = job.snapshot();
    let handled = p.deleted + p.missing + p.refused;
    let tpl = JobPage {
        page: Page::new(&req, &admin, "Deleting records", format!("records:{}", coll.def.name)),
        name: coll.def.name.clone(),
        base: list_path(&coll),
        filter: job.filter.clone(),
        phase: p.phase,
        total: p.total,
        deleted: p.deleted,
        missing: p.missing,
        refused: p.refused,
        message: p.message,
        percent: (handled * 100)
            .checked_div(p.total)
            .unwrap_or(if p.finished.is_some() { 100 } else { 0 }),
        running: p.finished.is_none(),
    };
    Ok(view::render(&req, &tpl))
}
