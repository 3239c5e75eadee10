//! `GET /api/logs`: the request log as JSON for superusers, in
//! PocketBase's list shape (`{page, perPage, totalItems, totalPages,
//! items}`, items `{id, created, level, message, data}`), newest first.
//! Filtering and sorting are not offered (the dashboard's Logs page has
//! filters); asking for them is a 400 rather than a silently wrong list.

use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::extract::require_superuser;
use crate::clock::format_datetime;
use crate::core::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::logs::{LogEntry, LogKey};

/// Largest `perPage` (as PocketBase).
const MAX_PER_PAGE: usize = 1000;

fn number(q: &HashMap<String, String>, name: &str, default: usize) -> Result<usize, ApiError> {
    match q.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| ApiError::bad_request(format!("{name} must be a positive integer."))),
    }
}

fn item(key: LogKey, e: LogEntry) -> Value {
    json!({
        "id": key.to_cursor(),
        "created": format_datetime((e.ts_us / 1000) as i64),
        "level": 0,
        "message": format!("{} {}", e.method, e.path),
        "data": {
            "type": "request",
            "method": e.method,
            "url": e.path,
            "status": e.status,
            // Milliseconds, as PocketBase reports it.
            "execTime": e.micros as f64 / 1000.0,
            "remoteIP": e.ip,
            "auth": e.auth,
        },
    })
}

pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    require_superuser(&caller)?;
    for unsupported in ["filter", "sort"] {
        if query.get(unsupported).is_some_and(|v| !v.trim().is_empty()) {
            return Err(ApiError::bad_request(format!(
                "Logs cannot be filtered or sorted here ({unsupported}); they are listed newest first. \
                 The dashboard's Logs page has filters."
            )));
        }
    }
    let page = number(&query, "page", 1)?;
    let per_page = number(&query, "perPage", 30)?.min(MAX_PER_PAGE);
    let log = state.store.logs();
    let total = log.len();
    let skip = (page - 1).saturating_mul(per_page);
    let mut items = Vec::with_capacity(per_page);
    for entry in log.newest_first(0).skip(skip).take(per_page) {
        let (key, e) = entry?;
        items.push(item(key, e));
    }
    Ok(HttpResponse::Ok().json(json!({
        "page": page,
        "perPage": per_page,
        "totalItems": total,
        "totalPages": total.div_ceil(per_page as u64),
        "items": items,
    })))
}
