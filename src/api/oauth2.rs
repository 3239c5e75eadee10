//! `GET`/`POST /api/oauth2-redirect`: where a provider sends the browser
//! back in the SDK's one-call flow (`authWithOAuth2({provider})`). The
//! `state` is the realtime client id of the app that started the flow; the
//! `{state, code, error}` go to that client over the `@oauth2` topic (see
//! `realtime::sse::send_oauth2`) and the browser gets PocketBase's small
//! page. Apple posts a form instead of redirecting.
//!
//! Anyone can call this route with anything, so it forwards only to a live
//! client subscribed to `@oauth2` from the same address, once; bodies are
//! capped and values bounded, and the answer never says which check failed.

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::{json, Map, Value};

use crate::realtime::sse::{self, SseClients};

/// Largest POST body read (a code, a state, an error, Apple's `user`).
const MAX_BODY: usize = 16 * 1024;

const SUCCESS: &str = "Auth completed. You can close this window and go back to the app.";
const FAILURE: &str = "Failed to authenticate. You can close this window and go back to the app to try again.";

fn page(ok: bool) -> HttpResponse {
    let mut r = HttpResponse::Ok();
    r.insert_header(("Cache-Control", "no-store"));
    if ok {
        r.content_type("text/html; charset=utf-8").body(SUCCESS)
    } else {
        r.content_type("text/plain; charset=utf-8").body(FAILURE)
    }
}

/// `GET /api/oauth2-redirect?state=&code=&error=`.
pub async fn redirect_get(
    http: HttpRequest,
    clients: web::Data<SseClients>,
    q: web::Query<Vec<(String, String)>>,
) -> HttpResponse {
    let fields: Map<String, Value> = q.into_inner().into_iter().map(|(k, v)| (k, json!(v))).collect();
    forward(&http, &clients, &fields)
}

/// `POST /api/oauth2-redirect` (a form, or JSON), at most [`MAX_BODY`] bytes.
pub async fn redirect_post(http: HttpRequest, clients: web::Data<SseClients>, mut body: web::Payload) -> HttpResponse {
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) if bytes.len() + c.len() <= MAX_BODY => bytes.extend_from_slice(&c),
            _ => return page(false),
        }
    }
    let json_body = http
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let fields: Map<String, Value> = if json_body {
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(m)) => m,
            _ => return page(false),
        }
    } else {
        form_urlencoded::parse(&bytes)
            .map(|(k, v)| (k.into_owned(), json!(v)))
            .collect()
    };
    forward(&http, &clients, &fields)
}

fn forward(http: &HttpRequest, clients: &SseClients, fields: &Map<String, Value>) -> HttpResponse {
    let get = |k: &str, max: usize| -> Option<String> {
        match fields.get(k) {
            None => Some(String::new()),
            Some(Value::String(s)) if s.len() <= max => Some(s.clone()),
            _ => None,
        }
    };
    let (Some(state), Some(code), Some(error)) = (get("state", 255), get("code", 4096), get("error", 1024)) else {
        return page(false);
    };
    if state.is_empty() {
        return page(false);
    }
    let mut data = json!({"state": state, "code": code});
    if !error.is_empty() {
        data["error"] = json!(error);
    }
    let address = crate::api::middleware::client_ip(http);
    let sent = sse::send_oauth2(clients, &state, &data, address);
    page(sent && error.is_empty() && !code.is_empty())
}
