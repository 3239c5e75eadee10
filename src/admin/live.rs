//! The live feed page: changes as they happen, for one collection or all.
//!
//! The server renders the most recent changes from the change log (so the
//! page is useful without JavaScript) and the head `seq` it read up to;
//! `admin-ui/live.js` then opens the public WebSocket feed, authenticates
//! with a short-lived superuser token fetched from `POST /_/live/token`
//! (CSRF-checked; the token never appears in HTML or a URL), and subscribes
//! with `since` = that seq, so no change between render and connect is
//! missed or shown twice. Reconnects resume from the last seq seen.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use serde_json::json;

use super::{Admin, AdminError, Page};
use crate::clock::format_datetime;
use crate::schema::record::export;
use crate::schema::CompiledCollection;
use crate::store::{Action, Change};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/live", web::get().to(index))
        .route("/live/token", web::post().to(token));
}

/// How many past changes the page shows, and how far back it looks.
const RECENT: usize = 25;
const SCAN: usize = 20_000;
/// Lifetime of the feed's token (seconds); the page fetches a new one on
/// each (re)connect.
const TOKEN_SECONDS: u64 = 600;

#[derive(Deserialize)]
struct LiveQuery {
    #[serde(default)]
    collection: String,
}

/// One change as the page shows it.
struct Entry {
    seq: u64,
    time: String,
    action: &'static str,
    collection: String,
    id: String,
    json: String,
}

#[derive(Template)]
#[template(path = "live/index.html")]
struct LivePage {
    page: Page,
    /// The chosen collection, or "" for all.
    selected: String,
    /// Names subscribed to (space-separated, for the script).
    topics: String,
    head_seq: u64,
    entries: Vec<Entry>,
}

fn action_name(a: &Action) -> &'static str {
    match a {
        Action::Create => "create",
        Action::Update => "update",
        Action::Delete => "delete",
    }
}

async fn index(req: HttpRequest, admin: Admin, q: web::Query<LiveQuery>) -> Result<HttpResponse, AdminError> {
    let state = &admin.state;
    let selected = q.collection.trim().to_owned();
    let colls: Vec<Arc<CompiledCollection>> = if selected.is_empty() {
        let mut all = state.registry.all();
        all.sort_by(|a, b| a.def.name.cmp(&b.def.name));
        all
    } else {
        vec![state.registry.get(&selected).ok_or(AdminError::NotFound)?]
    };
    let names: Vec<String> = colls.iter().map(|c| c.def.name.clone()).collect();
    // Read the head first: everything up to it is either in the rendered
    // list (or older than it) and the script resumes after it.
    let head_seq = state.store.head_seq();
    let coll_of = |c: &Change| colls.iter().find(|k| k.def.id == c.collection_id).cloned();
    let wanted = |c: &Change| c.seq <= head_seq && coll_of(c).is_some();
    // Shown as the API shows records to a superuser (no password hashes or
    // token keys: the change log keeps records as stored).
    let viewer = admin.caller().viewer();
    let entries = state
        .store
        .recent_changes(RECENT, SCAN, wanted)
        .into_iter()
        .filter_map(|c| {
            let coll = coll_of(&c)?;
            Some(Entry {
                seq: c.seq,
                time: format_datetime(c.ts),
                action: action_name(&c.action),
                collection: c.collection_name.clone(),
                id: c
                    .record
                    .get("id")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned(),
                json: serde_json::to_string_pretty(&export(&coll, &c.record, &viewer)).unwrap_or_default(),
            })
        })
        .collect();
    let title = if selected.is_empty() {
        "Live feed".to_owned()
    } else {
        format!("Live feed · {selected}")
    };
    let page = Page::new(&req, &admin, title, "live");
    Ok(super::view::render(
        &req,
        &LivePage {
            page,
            topics: names.join(" "),
            selected,
            head_seq,
            entries,
        },
    ))
}

/// `POST /_/live/token` (`X-CSRF-Token` header): a short-lived,
/// non-refreshable superuser token for the WebSocket feed.
async fn token(admin: Admin) -> Result<HttpResponse, AdminError> {
    let answer = crate::core::auth::impersonate(&admin.state, &admin.superusers, admin.id(), Some(TOKEN_SECONDS))?;
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(json!({"token": answer["token"]})))
}
