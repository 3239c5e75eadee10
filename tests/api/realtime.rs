//! Realtime over real sockets: the WebSocket protocol (events, rules,
//! resume, slow consumers, bad frames) and PocketBase's SSE protocol.

use std::collections::HashSet;
use std::time::Duration;

use awc::ws::{Frame, Message};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

use crate::helpers::{client, spawn_app, TestApp};

type Conn = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

pub(crate) struct Ws {
    conn: Conn,
}

impl Ws {
    pub(crate) async fn open(app: &TestApp, token: Option<&str>) -> (Ws, Value) {
        let mut req = client()
            .ws(format!("{}/api/realtime/ws", app.base))
            .max_frame_size(1 << 20);
        if let Some(t) = token {
            req = req.header("Authorization", t.to_owned());
        }
        let (_, conn) = req.connect().await.expect("ws connect");
        let mut ws = Ws { conn };
        let welcome = ws.recv().await;
        assert_eq!(welcome["type"], "welcome");
        (ws, welcome)
    }

    pub(crate) async fn send(&mut self, v: Value) {
        self.conn
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("ws send");
    }

    /// The next JSON frame (answering pings); panics after 30 s of silence.
    pub(crate) async fn recv(&mut self) -> Value {
        loop {
            let frame = actix_web::rt::time::timeout(Duration::from_secs(30), self.conn.next())
                .await
                .expect("a frame within 30 s")
                .expect("connection open")
                .expect("valid frame");
            match frame {
                Frame::Text(b) => return serde_json::from_slice(&b).expect("JSON frame"),
                Frame::Ping(p) => self.conn.send(Message::Pong(p)).await.expect("pong"),
                Frame::Close(reason) => {
                    let code = reason.as_ref().map(|r| u16::from(r.code));
                    return json!({"type": "closed", "code": code, "reason": reason.and_then(|r| r.description)});
                }
                _ => {}
            }
        }
    }

    pub(crate) async fn subscribe(&mut self, sub: Value) -> Value {
        self.send(sub).await;
        self.recv().await
    }
}

async fn posts(app: &TestApp) {
    app.create_collection(json!({
        "name": "posts", "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
        "schema": {"type": "object", "properties": {"title": {"type": "string"}, "views": {"type": "integer"},
                   "secret": {"type": "string", "x-hidden": true}}}
    }))
    .await;
}

#[actix_web::test]
async fn ws_events_in_order_with_filters_and_record_topics() {
    let app = spawn_app().await;
    posts(&app).await;
    let (mut ws, welcome) = Ws::open(&app, None).await;
    assert!(welcome["seq"].is_u64() && welcome["clientId"].is_string());
    let ok = ws
        .subscribe(json!({"type": "subscribe", "id": "all", "topic": "posts/*"}))
        .await;
    assert_eq!(ok, json!({"type": "subscribed", "id": "all", "seq": welcome["seq"]}));
    let ok = ws
        .subscribe(json!({"type": "subscribe", "id": "big", "topic": "posts/*", "filter": "views > 10"}))
        .await;
    assert_eq!(ok["type"], "subscribed");

    let rec = app
        .post(
            "/api/collections/posts/records",
            json!({"title": "a", "views": 1, "secret": "s"}),
        )
        .await
        .body;
    let id = rec["id"].as_str().unwrap().to_owned();
    let e1 = ws.recv().await;
    let one = ws
        .subscribe(json!({"type": "subscribe", "id": "one", "topic": format!("posts/{id}")}))
        .await;
    assert_eq!(one["type"], "subscribed");
    assert_eq!(
        (e1["type"].as_str(), e1["sub"].as_str(), e1["action"].as_str()),
        (Some("event"), Some("all"), Some("create"))
    );
    assert_eq!(e1["record"]["title"], "a");
    assert!(e1["record"].get("secret").is_none(), "hidden fields never leak: {e1}");

    app.patch(&format!("/api/collections/posts/records/{id}"), json!({"views": 20}))
        .await;
    app.delete(&format!("/api/collections/posts/records/{id}")).await;
    let other = app
        .post("/api/collections/posts/records", json!({"title": "b", "views": 5}))
        .await;
    assert_eq!(other.status, 200);
    let mut got = Vec::new();
    for _ in 0..6 {
        let e = ws.recv().await;
        got.push((
            e["sub"].as_str().unwrap().to_owned(),
            e["action"].as_str().unwrap().to_owned(),
            e["seq"].as_u64().unwrap(),
        ));
    }
    let names: Vec<(&str, &str)> = got.iter().map(|(s, a, _)| (s.as_str(), a.as_str())).collect();
    assert_eq!(
        names,
        vec![
            ("all", "update"),
            ("big", "update"),
            ("one", "update"),
            ("all", "delete"),
            ("big", "delete"),
            ("one", "delete"),
        ]
    );
    let e = ws.recv().await;
    assert_eq!((e["sub"].as_str(), e["action"].as_str()), (Some("all"), Some("create")));
    // seq strictly increases across events.
    let seqs: Vec<u64> = got
        .iter()
        .map(|(_, _, s)| *s)
        .chain([e["seq"].as_u64().unwrap()])
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] <= w[1]) && seqs.first() < seqs.last());
    assert!(e1["seq"].as_u64().unwrap() < seqs[0]);
    // Unsubscribe and ping.
    ws.send(json!({"type": "unsubscribe", "id": "all"})).await;
    assert_eq!(ws.recv().await["type"], "unsubscribed");
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.recv().await, json!({"type": "pong"}));
}

#[actix_web::test]
async fn ws_rules_per_subscriber_and_revocation() {
    let app = spawn_app().await;
    let owner = "owner = @request.auth.id";
    app.create_collection(
        json!({"name": "notes", "listRule": owner, "viewRule": owner, "createRule": "",
        "schema": {"type": "object", "properties": {"owner": {"type": "string"}}}}),
    )
    .await;
    let mut ids = Vec::new();
    for (email, pw) in [("a@example.com", "password-a"), ("b@example.com", "password-b")] {
        let r = app
            .guest_post(
                "/api/collections/users/records",
                json!({"email": email, "password": pw, "passwordConfirm": pw}),
            )
            .await;
        ids.push(r.body["id"].as_str().unwrap().to_owned());
    }
    let ta = app.login("users", "a@example.com", "password-a").await;
    let tb = app.login("users", "b@example.com", "password-b").await;
    let (mut wa, _) = Ws::open(&app, Some(&ta)).await; // auth by header
    let (mut wb, _) = Ws::open(&app, None).await;
    wb.send(json!({"type": "auth", "token": tb})).await; // auth by message
    assert_eq!(wb.recv().await["type"], "authenticated");
    let (mut guest, _) = Ws::open(&app, None).await;
    for ws in [&mut wa, &mut wb, &mut guest] {
        assert_eq!(
            ws.subscribe(json!({"type": "subscribe", "id": "n", "topic": "notes/*"}))
                .await["type"],
            "subscribed"
        );
    }
    // A locked rule is refused at subscribe time.
    let (mut g2, _) = Ws::open(&app, None).await;
    let refused = g2
        .subscribe(json!({"type": "subscribe", "id": "x", "topic": "_superusers/*"}))
        .await;
    assert_eq!(
        (refused["type"].as_str(), refused["status"].as_u64()),
        (Some("error"), Some(403))
    );

    app.post("/api/collections/notes/records", json!({"owner": ids[0]}))
        .await;
    app.post("/api/collections/notes/records", json!({"owner": ids[1]}))
        .await;
    let ea = wa.recv().await;
    let eb = wb.recv().await;
    assert_eq!(ea["record"]["owner"], ids[0]);
    assert_eq!(eb["record"]["owner"], ids[1]);
    // The guest sees nothing; a marker event proves it is not just slow.
    app.create_collection(json!({"name": "marks", "listRule": "", "schema": {"type": "object"}}))
        .await;
    guest
        .subscribe(json!({"type": "subscribe", "id": "m", "topic": "marks/*"}))
        .await;
    app.post("/api/collections/marks/records", json!({})).await;
    assert_eq!(guest.recv().await["sub"], "m");

    // A's password changes: A's token is revoked for the next event.
    wa.subscribe(json!({"type": "subscribe", "id": "m", "topic": "marks/*"}))
        .await;
    let p = app
        .patch(
            &format!("/api/collections/users/records/{}", ids[0]),
            json!({"password": "password-z", "passwordConfirm": "password-z"}),
        )
        .await;
    assert_eq!(p.status, 200);
    app.post("/api/collections/notes/records", json!({"owner": ids[0]}))
        .await;
    app.post("/api/collections/marks/records", json!({})).await;
    // The client is told it is a guest now (at the change to its own record).
    let told = wa.recv().await;
    assert_eq!(
        (told["type"].as_str(), told["status"].as_u64()),
        (Some("error"), Some(401)),
        "{told}"
    );
    let next = wa.recv().await;
    assert_eq!(
        next["sub"], "m",
        "revoked auth must not see the owner-only note: {next}"
    );
}

#[actix_web::test]
async fn ws_resume_with_since_has_no_gap_and_no_duplicate() {
    let app = spawn_app().await;
    posts(&app).await;
    let (ws, welcome) = Ws::open(&app, None).await;
    let since = welcome["seq"].as_u64().unwrap();
    drop(ws); // the client goes away
    let total = 1000;
    let base = app.base.clone();
    let writes = actix_web::rt::spawn(async move {
        let c = client();
        let mut ids = Vec::new();
        for i in 0..total {
            let res = c
                .post(format!("{base}/api/collections/posts/records"))
                .send_json(&json!({"views": i}))
                .await
                .unwrap();
            let body: Value = crate::helpers::read(res).await.body;
            ids.push(body["id"].as_str().unwrap().to_owned());
        }
        ids
    });
    // Reconnect while the writes are still going on.
    let created = |app: &TestApp| {
        let app = app.base.clone();
        async move {
            let r = client()
                .get(format!("{app}/api/collections/posts/records?perPage=1&skipTotal=0"))
                .send()
                .await
                .unwrap();
            crate::helpers::read(r).await.body["totalItems"].as_u64().unwrap_or(0)
        }
    };
    while created(&app).await < 300 {
        actix_web::rt::task::yield_now().await;
    }
    let (mut ws, _) = Ws::open(&app, None).await;
    let ok = ws
        .subscribe(json!({"type": "subscribe", "id": "p", "topic": "posts/*", "since": since}))
        .await;
    assert_eq!(ok["type"], "subscribed", "{ok}");
    let ids = writes.await.unwrap();
    let live = app
        .post("/api/collections/posts/records", json!({"views": -1}))
        .await
        .body;
    let mut seen = Vec::new();
    let mut last = since;
    loop {
        let e = ws.recv().await;
        assert_eq!(e["type"], "event", "{e}");
        let seq = e["seq"].as_u64().unwrap();
        assert!(seq > last, "seq order");
        last = seq;
        let id = e["record"]["id"].as_str().unwrap().to_owned();
        if id == live["id"].as_str().unwrap() {
            break;
        }
        seen.push(id);
    }
    assert_eq!(seen.len(), total, "each missed event exactly once");
    assert_eq!(seen.iter().collect::<HashSet<_>>(), ids.iter().collect::<HashSet<_>>());
}

#[actix_web::test]
async fn ws_since_older_than_retention_resyncs() {
    let app = spawn_app().await;
    posts(&app).await;
    let r = app
        .patch("/api/settings", json!({"realtime": {"retentionEvents": 10}}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    for i in 0..40 {
        app.post("/api/collections/posts/records", json!({"views": i})).await;
    }
    let removed = basalt::realtime::retention::trim_once(&app.state.store, &app.state.settings).await;
    assert!(removed >= 30, "trimmed {removed}");
    let (mut ws, welcome) = Ws::open(&app, None).await;
    let head = welcome["seq"].as_u64().unwrap();
    let r = ws
        .subscribe(json!({"type": "subscribe", "id": "old", "topic": "posts/*", "since": 1}))
        .await;
    assert_eq!(r, json!({"type": "resync", "sub": "old"}));
    // Within retention it replays.
    let r = ws
        .subscribe(json!({"type": "subscribe", "id": "new", "topic": "posts/*", "since": head - 3}))
        .await;
    assert_eq!(r["type"], "subscribed");
    for _ in 0..3 {
        assert_eq!(ws.recv().await["sub"], "new");
    }
}

#[actix_web::test]
async fn ws_bad_frames_get_errors_and_huge_frames_close_1009() {
    let app = spawn_app().await;
    posts(&app).await;
    let (mut ws, _) = Ws::open(&app, None).await;
    let cases = [
        json!("not json at all"),
        json!({"type": "dance"}),
        json!({"type": "subscribe", "id": "a", "topic": "nope/*"}),
        json!({"type": "subscribe", "id": "b", "topic": "posts/*", "filter": "views >"}),
        json!({"type": "subscribe", "id": "c", "topic": "posts/a/b"}),
        json!({"type": "subscribe", "topic": "posts/*"}),
        json!({"type": "auth", "token": "garbage"}),
        json!({"type": "subscribe", "id": "d", "topic": "posts/*", "since": 999999}),
    ];
    for c in cases {
        match &c {
            Value::String(s) => ws.conn.send(Message::Text(s.clone().into())).await.unwrap(),
            v => ws.send(v.clone()).await,
        }
        let e = ws.recv().await;
        assert_eq!(e["type"], "error", "{c} -> {e}");
        assert!(
            e["status"].as_u64().unwrap() >= 400 && e["status"].as_u64().unwrap() < 500,
            "{e}"
        );
    }
    // Still usable.
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.recv().await["type"], "pong");
    // Over 64 KiB: closed with 1009.
    ws.conn.send(Message::Text("x".repeat(70 * 1024).into())).await.unwrap();
    let closed = ws.recv().await;
    assert_eq!(
        closed,
        json!({"type": "closed", "code": 1009, "reason": "frames are limited to 65536 bytes"})
    );
    assert_eq!(app.guest_get("/api/health").await.status, 200);
}

#[actix_web::test]
async fn ws_slow_consumer_is_resynced_without_slowing_writers() {
    let app = spawn_app().await;
    posts(&app).await;
    let (mut slow, _) = Ws::open(&app, None).await;
    slow.subscribe(json!({"type": "subscribe", "id": "s", "topic": "posts/*"}))
        .await;
    // The slow client now reads nothing while 50k writes happen.
    let total = 50_000usize;
    let mut tasks = Vec::new();
    for w in 0..32 {
        let base = app.base.clone();
        tasks.push(actix_web::rt::spawn(async move {
            let c = client();
            let mut ok = 0;
            for i in (w..total).step_by(32) {
                let res = c
                    .post(format!("{base}/api/collections/posts/records"))
                    .send_json(&json!({"views": i}))
                    .await
                    .unwrap();
                if res.status().as_u16() == 200 {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    assert_eq!(ok, total, "every write succeeded while a client was stuck");
    // When it reads again it finds a resync for its subscription.
    let mut frames = 0;
    loop {
        let e = slow.recv().await;
        frames += 1;
        if e["type"] == "resync" {
            assert_eq!(e["sub"], "s");
            break;
        }
        assert_eq!(e["type"], "event");
        assert!(frames < total, "no resync after {frames} frames");
    }
    assert!(frames < total, "the backlog was bounded ({frames} frames)");
}

/// Reads SSE messages `(id, event, data)` from a streaming response.
pub(crate) struct Sse<S> {
    body: awc::ClientResponse<S>,
    buf: String,
}

impl<S> Sse<S>
where
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin,
{
    pub(crate) async fn next(&mut self) -> (String, String, Value) {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let msg: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (String::new(), String::new(), String::new());
                for line in msg.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v);
                    }
                }
                return (id, event, serde_json::from_str(&data).unwrap_or(Value::Null));
            }
            let chunk = actix_web::rt::time::timeout(Duration::from_secs(30), self.body.next())
                .await
                .expect("an SSE message within 30 s")
                .expect("stream open")
                .expect("chunk");
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

#[actix_web::test]
async fn sse_protocol_as_pocketbase() {
    let app = spawn_app().await;
    posts(&app).await;
    let res = client().get(format!("{}/api/realtime", app.base)).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert!(res
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut sse = Sse {
        body: res,
        buf: String::new(),
    };
    let (id, event, data) = sse.next().await;
    assert_eq!(event, "PB_CONNECT");
    assert_eq!(data["clientId"], id);
    assert_eq!(id.len(), 40);
    let sub_all = "posts/*";
    let sub_filtered = format!(
        "posts/*?options={}",
        "%7B%22query%22%3A%7B%22filter%22%3A%22views%20%3E%2010%22%7D%7D"
    );
    let r = app
        .call(
            awc::http::Method::POST,
            "/api/realtime",
            Some(json!({"clientId": id, "subscriptions": [sub_all, sub_filtered]})),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    app.post("/api/collections/posts/records", json!({"title": "small", "views": 1}))
        .await;
    app.post("/api/collections/posts/records", json!({"title": "big", "views": 50}))
        .await;
    let (_, e1, d1) = sse.next().await;
    assert_eq!(
        (e1.as_str(), d1["action"].as_str(), d1["record"]["title"].as_str()),
        (sub_all, Some("create"), Some("small"))
    );
    let (_, e2, d2) = sse.next().await;
    assert_eq!((e2.as_str(), d2["record"]["title"].as_str()), (sub_all, Some("big")));
    let (_, e3, d3) = sse.next().await;
    assert_eq!(
        (e3.as_str(), d3["record"]["title"].as_str()),
        (sub_filtered.as_str(), Some("big"))
    );
    // Replacing with an empty set unsubscribes.
    let r = app
        .call(
            awc::http::Method::POST,
            "/api/realtime",
            Some(json!({"clientId": id, "subscriptions": []})),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    let r = app
        .call(
            awc::http::Method::POST,
            "/api/realtime",
            Some(json!({"clientId": "unknown", "subscriptions": []})),
            None,
        )
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .call(
            awc::http::Method::POST,
            "/api/realtime",
            Some(json!({"subscriptions": []})),
            None,
        )
        .await;
    assert_eq!(r.status, 400);
}

/// Opens an SSE stream; returns it and its `clientId`.
pub(crate) async fn sse_connect(
    app: &TestApp,
) -> (
    Sse<impl futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin>,
    String,
) {
    let res = client().get(format!("{}/api/realtime", app.base)).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let mut sse = Sse {
        body: res,
        buf: String::new(),
    };
    let (id, event, _) = sse.next().await;
    assert_eq!(event, "PB_CONNECT");
    (sse, id)
}

/// As PocketBase: a stream's subscriptions may only be set from the
/// address that opened it, so a leaked `clientId` is of no use elsewhere.
#[actix_web::test]
async fn sse_subscriptions_change_only_from_the_clients_address() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    posts(&app).await;
    let (_sse, id) = sse_connect(&app).await;
    let body = json!({"clientId": id, "subscriptions": ["posts/*"]}).to_string();
    let port: u16 = app.base.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.2:0".parse().expect("address"))
        .expect("bind 127.0.0.2");
    let mut s = socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("connect");
    let req = format!(
        "POST /api/realtime HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("Invalid realtime client."), "{answer}");
    // From the stream's own address it works.
    let r = app
        .call(
            awc::http::Method::POST,
            "/api/realtime",
            Some(serde_json::from_str(&body).unwrap()),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
}

#[actix_web::test]
async fn sse_subscriptions_change_only_with_the_clients_own_auth() {
    let app = spawn_app().await;
    posts(&app).await;
    let mut tokens = Vec::new();
    for email in ["a@example.com", "b@example.com"] {
        let body = json!({"email": email, "password": "password-1", "passwordConfirm": "password-1"});
        assert_eq!(app.guest_post("/api/collections/users/records", body).await.status, 200);
        tokens.push(app.login("users", email, "password-1").await);
    }
    let (ta, tb) = (tokens[0].as_str(), tokens[1].as_str());
    let (mut sse, id) = sse_connect(&app).await;
    let set = |token: Option<&str>, subs: Value| {
        let body = json!({"clientId": id, "subscriptions": subs});
        let token = token.map(str::to_owned);
        let app = &app;
        async move {
            app.call(awc::http::Method::POST, "/api/realtime", Some(body), token.as_deref())
                .await
        }
    };
    // A subscribes with its token: the client is now A's.
    assert_eq!(set(Some(ta), json!(["posts/*"])).await.status, 204);
    // A guest, or another user, who learnt the clientId changes nothing.
    let r = set(None, json!([])).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(set(Some(tb), json!([])).await.status, 403);
    // The superuser is another auth too.
    assert_eq!(set(Some(&app.token), json!([])).await.status, 403);
    // A still gets its events.
    app.post("/api/collections/posts/records", json!({"title": "still here"}))
        .await;
    let (_, event, data) = sse.next().await;
    assert_eq!(
        (event.as_str(), data["record"]["title"].as_str()),
        ("posts/*", Some("still here"))
    );
    // A's own POST works.
    assert_eq!(set(Some(ta), json!([])).await.status, 204);

    // A guest client may be taken over by its first auth (as PocketBase).
    let (_, guest_id) = sse_connect(&app).await;
    let body = json!({"clientId": guest_id, "subscriptions": ["posts/*"]});
    let r = app
        .call(awc::http::Method::POST, "/api/realtime", Some(body.clone()), None)
        .await;
    assert_eq!(r.status, 204);
    let r = app
        .call(awc::http::Method::POST, "/api/realtime", Some(body.clone()), Some(tb))
        .await;
    assert_eq!(r.status, 204);
    let r = app
        .call(awc::http::Method::POST, "/api/realtime", Some(body), None)
        .await;
    assert_eq!(r.status, 403);
}
