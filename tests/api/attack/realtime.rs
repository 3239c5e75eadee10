//! Realtime filters (WebSocket `subscribe` with `since` replay, SSE
//! `options.query.filter`) are checked exactly like REST list filters, and
//! a connection keeps no auth it no longer has.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};

use super::{world, World, NOTE_SECRET, SSN, VAULT_CODE, VICTIM_EMAIL, VICTIM_NAME};
use crate::helpers::client;
use crate::realtime::Ws;

fn probes() -> Vec<(String, String)> {
    vec![
        (format!("author.ssn = '{SSN}'"), "author.ssn = 'x'".into()),
        (
            format!("author.email = '{VICTIM_EMAIL}'"),
            "author.email = 'x@y.z'".into(),
        ),
        (
            "author.password ~ '$argon2id$'".into(),
            "author.password ~ 'zzz'".into(),
        ),
        ("author.tokenKey != ''".into(), "author.tokenKey = ''".into()),
        (format!("author.name = '{VICTIM_NAME}'"), "author.name = 'x'".into()),
        (format!("vault.code = '{VAULT_CODE}'"), "vault.code = 'x'".into()),
        (
            format!("notes_via_post.secret ?= '{NOTE_SECRET}'"),
            "notes_via_post.secret ?= 'x'".into(),
        ),
        (
            "users_via_id.password ~ '$argon2'".into(),
            "users_via_id.password ~ 'zz'".into(),
        ),
        (
            "@collection._superusers.password ~ '$argon2id$%'".into(),
            "@collection._superusers.password ~ 'zz'".into(),
        ),
        (
            format!("@collection.notes.secret ?= '{NOTE_SECRET}'"),
            "@collection.notes.secret ?= 'x'".into(),
        ),
        (
            format!("@collection.users.ssn ?= '{SSN}'"),
            "@collection.users.ssn ?= 'x'".into(),
        ),
    ]
}

/// Every frame a `since: 0` subscription with `filter` replays (up to the
/// pong that follows it).
async fn ws_replay(w: &World, token: Option<&str>, filter: &str) -> Vec<Value> {
    let (mut ws, _) = Ws::open(&w.app, token).await;
    ws.send(json!({"type": "subscribe", "id": "p", "topic": "posts/*", "since": 0, "filter": filter}))
        .await;
    ws.send(json!({"type": "ping"})).await;
    let mut frames = Vec::new();
    loop {
        let f = ws.recv().await;
        if f["type"] == "pong" {
            return frames;
        }
        frames.push(f);
    }
}

#[actix_web::test]
async fn attack_ws_filters_are_no_oracle() {
    let w = world().await;
    for token in [None, Some(w.mallory_token.as_str())] {
        for (t, f) in probes() {
            let yes = ws_replay(&w, token, &t).await;
            let no = ws_replay(&w, token, &f).await;
            assert_eq!(yes, no, "`{t}` vs `{f}`");
            assert!(
                yes.iter().all(|f| f["type"] != "event"),
                "`{t}` must not deliver the victim's post: {yes:?}"
            );
        }
    }
    // Refused up front with a 403 error frame, as a REST list is.
    let frames = ws_replay(&w, Some(&w.mallory_token), "author.ssn != ''").await;
    assert_eq!(
        (frames[0]["type"].as_str(), frames[0]["status"].as_u64()),
        (Some("error"), Some(403))
    );
    // The victim's own view still works through the relation.
    let frames = ws_replay(&w, Some(&w.victim_token), &format!("author.name = '{VICTIM_NAME}'")).await;
    assert!(frames.iter().any(|f| f["type"] == "event"), "{frames:?}");
}

/// A minimal SSE client: the stream, and its `clientId`.
type Body =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>>>>;

struct Sse {
    body: Body,
    buf: String,
    client_id: String,
}

impl Sse {
    async fn open(w: &World) -> Sse {
        let res = client()
            .get(format!("{}/api/realtime", w.app.base))
            .send()
            .await
            .expect("sse connect");
        let body: Body = Box::pin(res);
        let mut sse = Sse {
            body,
            buf: String::new(),
            client_id: String::new(),
        };
        let (event, data) = sse.next().await;
        assert_eq!(event, "PB_CONNECT");
        sse.client_id = data["clientId"].as_str().unwrap().to_owned();
        sse
    }

    /// The next `(event, data)`.
    async fn next(&mut self) -> (String, Value) {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name))
                        .unwrap_or_default()
                        .to_owned()
                };
                let data = serde_json::from_str(&field("data:")).unwrap_or(Value::Null);
                return (field("event:"), data);
            }
            let chunk = actix_web::rt::time::timeout(Duration::from_secs(30), self.body.next())
                .await
                .expect("an SSE event within 30 s")
                .expect("stream open")
                .expect("chunk");
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    async fn subscribe(&self, w: &World, token: Option<&str>, subs: Value) -> u16 {
        let body = json!({"clientId": self.client_id, "subscriptions": subs});
        w.app
            .call(awc::http::Method::POST, "/api/realtime", Some(body), token)
            .await
            .status
    }
}

fn topic(filter: &str) -> String {
    let options = json!({"query": {"filter": filter}}).to_string();
    format!("posts/*?options={}", super::enc(&options))
}

/// What an SSE subscriber with `filter` learns about a new post by the
/// victim: the POST's status, then the events up to a marker.
async fn sse_probe(w: &World, token: Option<&str>, filter: &str) -> (u16, Vec<String>) {
    let mut sse = Sse::open(w).await;
    let status = sse.subscribe(w, token, json!([topic(filter), "marks/*"])).await;
    if status != 204 {
        return (status, Vec::new());
    }
    let post = w
        .app
        .post(
            "/api/collections/posts/records",
            json!({"title": "new", "author": w.victim}),
        )
        .await;
    assert_eq!(post.status, 200);
    w.app.post("/api/collections/marks/records", json!({})).await;
    let mut seen = Vec::new();
    loop {
        let (event, data) = sse.next().await;
        if event == "marks/*" {
            return (status, seen);
        }
        seen.push(data["record"]["title"].as_str().unwrap_or_default().to_owned());
    }
}

#[actix_web::test]
async fn attack_sse_filters_are_no_oracle() {
    let w = world().await;
    w.app
        .create_collection(json!({"name": "marks", "listRule": "", "schema": {"type": "object"}}))
        .await;
    for token in [None, Some(w.mallory_token.as_str())] {
        for (t, f) in probes() {
            let yes = sse_probe(&w, token, &t).await;
            let no = sse_probe(&w, token, &f).await;
            assert_eq!(yes, no, "`{t}` vs `{f}`");
            assert!(yes.1.is_empty(), "`{t}`: {yes:?}");
        }
    }
    let (status, _) = sse_probe(&w, Some(&w.mallory_token), "author.ssn != ''").await;
    assert_eq!(status, 403);
    // The victim's own view still works.
    let (status, seen) = sse_probe(&w, Some(&w.victim_token), &format!("author.name = '{VICTIM_NAME}'")).await;
    assert_eq!((status, seen), (204, vec!["new".to_owned()]));
}

#[actix_web::test]
async fn attack_ws_connection_loses_auth_when_the_token_expires() {
    ws_loses_auth_at_expiry("").await;
}

/// The scheme's spelling is no way around the expiry: `bearer` (accepted
/// like `Bearer`) expires the connection's auth just the same.
#[actix_web::test]
async fn attack_ws_lowercase_bearer_token_still_expires() {
    ws_loses_auth_at_expiry("bearer ").await;
}

/// A connection opened with `prefix` + a token that lasts 2 s sees owner-only
/// events until the token expires, and none after.
async fn ws_loses_auth_at_expiry(prefix: &str) {
    let w = world().await;
    // Tokens of `users` last 2 s from now on.
    let users = w.app.get("/api/collections/users").await.body;
    let mut opts = users["authOptions"].clone();
    opts["authTokenDuration"] = json!(2);
    let r = w
        .app
        .patch("/api/collections/users", json!({"authOptions": opts}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let short = w.app.login("users", VICTIM_EMAIL, "password-123").await;
    let (mut ws, _) = Ws::open(&w.app, Some(&format!("{prefix}{short}"))).await;
    let ok = ws
        .subscribe(json!({"type": "subscribe", "id": "n", "topic": "notes/*"}))
        .await;
    assert_eq!(ok["type"], "subscribed");
    // While the token is valid, the owner sees their note.
    w.app
        .post(
            "/api/collections/notes/records",
            json!({"secret": "one", "owner": w.victim}),
        )
        .await;
    assert_eq!(ws.recv().await["record"]["secret"], "one");
    // Wait (bounded) until the token has expired by the server's clock.
    let exp = {
        let payload = short.split('.').nth(1).unwrap();
        use base64::Engine;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        serde_json::from_slice::<Value>(&raw).unwrap()["exp"].as_i64().unwrap()
    };
    for _ in 0..100 {
        let r = w
            .app
            .call(
                awc::http::Method::GET,
                "/api/collections/notes/records",
                None,
                Some(&short),
            )
            .await;
        if r.body["totalItems"] == json!(0) {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            >= exp
    );
    // The next change: an error frame (now a guest), and no owner-only event.
    w.app
        .post(
            "/api/collections/notes/records",
            json!({"secret": "two", "owner": w.victim}),
        )
        .await;
    let f = ws.recv().await;
    assert_eq!(
        (f["type"].as_str(), f["status"].as_u64()),
        (Some("error"), Some(401)),
        "{f}"
    );
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.recv().await["type"], "pong", "no event after the token expired");
}
