//! Realtime across nodes on PostgreSQL (issue 17, SPEC §12): two nodes on
//! one database, clients on either get every node's changes in one seq
//! order, resume on another node with `since`, and are told when a node's
//! tail of the change log loses the database. Needs `BASALT_TEST_PG` (see
//! `postgres.rs`).

use std::collections::HashSet;

use awc::http::Method;
use serde_json::{json, Value};

use crate::helpers::{client, config_on, spawn_app_on, TestApp};
use crate::postgres::{node, pg_url, sql, upstream};
use crate::realtime::{sse_connect, Ws};

/// Node `a` (with `posts` and the owner-only `notes`) and node `b` on the
/// same database, started after the collections exist; and the
/// database's URL.
async fn two_nodes(pg: &str) -> (TestApp, TestApp, tempfile::TempDir, String) {
    let a = spawn_app_on(Some(pg)).await;
    a.posts().await;
    let owner = "owner = @request.auth.id";
    a.create_collection(json!({
        "name": "notes", "listRule": owner, "viewRule": owner, "createRule": "",
        "schema": {"type": "object", "properties": {"owner": {"type": "string"}}}
    }))
    .await;
    let url = config_on(&a.dir, Some(pg)).await.store.expect("a database");
    let (b, tmp) = node(&url, false).await;
    (a, b, tmp, url)
}

async fn event(ws: &mut Ws) -> Value {
    let e = ws.recv().await;
    assert_eq!(e["type"], "event", "{e}");
    e
}

fn seq(e: &Value) -> u64 {
    e["seq"].as_u64().expect("an event's seq")
}

async fn subscribe(ws: &mut Ws, sub: Value) -> u64 {
    let ok = ws.subscribe(sub).await;
    assert_eq!(ok["type"], "subscribed", "{ok}");
    ok["seq"].as_u64().expect("seq")
}

/// The frame of a connection closed because its node lost its place in
/// the change log: 1012, and a reason saying to resume with `since`.
fn told_to_resume(closed: &Value) {
    assert_eq!(
        (closed["type"].as_str(), closed["code"].as_u64()),
        (Some("closed"), Some(1012)),
        "{closed}"
    );
    assert!(
        closed["reason"].as_str().is_some_and(|r| r.contains("since")),
        "{closed}"
    );
}

async fn create_post(node: &TestApp, title: &str) -> String {
    let r = node
        .guest_post("/api/collections/posts/records", json!({"title": title}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["id"].as_str().expect("id").to_owned()
}

#[actix_web::test]
async fn ws_and_sse_clients_on_one_node_get_the_other_nodes_writes_rule_filtered() {
    let Some(pg) = pg_url() else { return };
    let (a, b, _tmp, _) = two_nodes(&pg).await;
    let mut users = Vec::new();
    for i in 0..2 {
        let (email, pw) = (format!("u{i}@example.com"), format!("password-{i}"));
        let r = a
            .guest_post(
                "/api/collections/users/records",
                json!({"email": email, "password": pw, "passwordConfirm": pw}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        users.push(r.body["id"].as_str().expect("id").to_owned());
    }
    // Clients on B: a guest on posts, user 0 on the owner-only notes, SSE.
    let token = b.login("users", "u0@example.com", "password-0").await;
    let (mut guest, _) = Ws::open(&b, None).await;
    subscribe(&mut guest, json!({"type": "subscribe", "id": "p", "topic": "posts/*"})).await;
    let (mut owner, _) = Ws::open(&b, Some(&token)).await;
    subscribe(&mut owner, json!({"type": "subscribe", "id": "n", "topic": "notes/*"})).await;
    let (mut sse, client_id) = sse_connect(&b).await;
    let r = b
        .call(
            Method::POST,
            "/api/realtime",
            Some(json!({"clientId": client_id, "subscriptions": ["posts/*"]})),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);

    // Written through A: create, update, delete.
    let id = create_post(&a, "one").await;
    let path = format!("/api/collections/posts/records/{id}");
    assert_eq!(a.patch(&path, json!({"title": "two"})).await.status, 200);
    assert_eq!(a.delete(&path).await.status, 204);
    let mut last = 0;
    for (action, title) in [("create", "one"), ("update", "two"), ("delete", "two")] {
        let e = event(&mut guest).await;
        assert_eq!(
            (
                e["action"].as_str(),
                e["record"]["id"].as_str(),
                e["record"]["title"].as_str()
            ),
            (Some(action), Some(id.as_str()), Some(title)),
            "{e}"
        );
        assert!(seq(&e) > last, "seq order: {e}");
        last = seq(&e);
        let (_, name, data) = sse.next().await;
        assert_eq!(name, "posts/*");
        assert_eq!(
            (data["action"].as_str(), data["record"]["title"].as_str()),
            (Some(action), Some(title)),
            "{data}"
        );
    }
    // Rules hold for another node's writes: user 0 sees its own note only
    // (the note written first, user 1's, must not come before it).
    for owner_id in [&users[1], &users[0]] {
        let r = a
            .guest_post("/api/collections/notes/records", json!({"owner": owner_id}))
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let e = event(&mut owner).await;
    assert_eq!(e["record"]["owner"], json!(users[0]), "{e}");
}

#[actix_web::test]
async fn writes_through_both_nodes_reach_both_nodes_clients_in_one_gapless_order() {
    let Some(pg) = pg_url() else { return };
    let (a, b, _tmp, _) = two_nodes(&pg).await;
    let (mut wa, _) = Ws::open(&a, None).await;
    let (mut wb, _) = Ws::open(&b, None).await;
    let sub = json!({"type": "subscribe", "id": "p", "topic": "posts/*"});
    subscribe(&mut wa, sub.clone()).await;
    subscribe(&mut wb, sub).await;
    let n = 100;
    let writes = |node: &TestApp, tag: &'static str| {
        let node = node.base.clone();
        async move {
            let c = client();
            for i in 0..n {
                let r = c
                    .post(format!("{node}/api/collections/posts/records"))
                    .send_json(&json!({"title": format!("{tag}{i}")}))
                    .await
                    .expect("post");
                assert_eq!(r.status().as_u16(), 200);
            }
        }
    };
    futures_util::join!(writes(&a, "a"), writes(&b, "b"));
    let mut seen = Vec::new();
    for ws in [&mut wa, &mut wb] {
        let mut got = Vec::new();
        for _ in 0..2 * n {
            let e = event(ws).await;
            got.push((seq(&e), e["record"]["title"].as_str().expect("title").to_owned()));
        }
        // One order without a gap or a repeat, each node's writes in the
        // order they were made.
        assert!(got.windows(2).all(|w| w[1].0 == w[0].0 + 1), "{got:?}");
        for tag in ["a", "b"] {
            let mine: Vec<&str> = got
                .iter()
                .map(|(_, t)| t.as_str())
                .filter(|t| t.starts_with(tag))
                .collect();
            let want: Vec<String> = (0..n).map(|i| format!("{tag}{i}")).collect();
            assert_eq!(mine, want);
        }
        seen.push(got);
    }
    assert_eq!(seen[0], seen[1], "both nodes' clients see the same order");
}

#[actix_web::test]
async fn a_client_moving_to_another_node_resumes_with_since_without_gap_or_duplicate() {
    let Some(pg) = pg_url() else { return };
    let (a, b, _tmp, _) = two_nodes(&pg).await;
    let (mut wa, _) = Ws::open(&a, None).await;
    subscribe(&mut wa, json!({"type": "subscribe", "id": "p", "topic": "posts/*"})).await;
    for i in 0..10 {
        create_post(&b, &format!("before{i}")).await;
    }
    let mut since = 0;
    for _ in 0..10 {
        since = seq(&event(&mut wa).await);
    }
    drop(wa); // node A's client goes away
              // Writes through both nodes go on while the client reconnects to B.
    let total = 200;
    let (base_a, base_b) = (a.base.clone(), b.base.clone());
    let writes = actix_web::rt::spawn(async move {
        let c = client();
        let mut ids = Vec::new();
        for i in 0..total {
            let base = if i % 2 == 0 { &base_a } else { &base_b };
            let res = c
                .post(format!("{base}/api/collections/posts/records"))
                .send_json(&json!({"title": format!("during{i}")}))
                .await
                .expect("post");
            let body = crate::helpers::read(res).await.body;
            ids.push(body["id"].as_str().expect("id").to_owned());
        }
        ids
    });
    let (mut wb, _) = Ws::open(&b, None).await;
    let from = subscribe(
        &mut wb,
        json!({"type": "subscribe", "id": "p", "topic": "posts/*", "since": since}),
    )
    .await;
    assert_eq!(from, since);
    let ids = writes.await.expect("writes");
    let marker = create_post(&a, "marker").await;
    let mut got = Vec::new();
    let mut last = since;
    loop {
        let e = event(&mut wb).await;
        assert_eq!(seq(&e), last + 1, "no gap, no repeat: {e}");
        last = seq(&e);
        let id = e["record"]["id"].as_str().expect("id").to_owned();
        if id == marker {
            break;
        }
        got.push(id);
    }
    assert_eq!(got.len(), total, "each missed event exactly once");
    assert_eq!(got.iter().collect::<HashSet<_>>(), ids.iter().collect::<HashSet<_>>());
}

/// The backend pids of the tails of the database `db` is connected to.
async fn tails(db: &tokio_postgres::Client) -> Vec<i32> {
    db.query(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'basalt-tail'",
        &[],
    )
    .await
    .expect("pg_stat_activity")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Terminates every node's tail connection and waits until they are gone.
async fn terminate_tails(db: &tokio_postgres::Client) -> Vec<i32> {
    let pids = tails(db).await;
    for pid in &pids {
        db.execute("SELECT pg_terminate_backend($1)", &[pid])
            .await
            .expect("terminate");
    }
    // pg_terminate_backend signals; the backend exits a moment later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while tails(db).await.iter().any(|p| pids.contains(p)) {
        assert!(std::time::Instant::now() < deadline, "the tails did not end");
        actix_web::rt::task::yield_now().await;
    }
    pids
}

#[actix_web::test]
async fn a_tail_that_loses_the_database_tells_its_clients_and_recovers() {
    let Some(pg) = pg_url() else { return };
    let (a, b, _tmp, url) = two_nodes(&pg).await;
    let db = sql(&url).await;
    let server = sql(&pg).await;
    let name: String = db
        .query_one("SELECT current_database()", &[])
        .await
        .expect("name")
        .get(0);
    let (mut wb, _) = Ws::open(&b, None).await;
    subscribe(&mut wb, json!({"type": "subscribe", "id": "p", "topic": "posts/*"})).await;
    create_post(&a, "first").await;
    let mut last = seq(&event(&mut wb).await);

    // A lost connection that opens again at once loses nothing: the tail
    // reads on from its last seq, the client sees no gap and no repeat.
    let killed = terminate_tails(&db).await;
    assert_eq!(killed.len(), 2, "one tail per node");
    for i in 0..3 {
        create_post(&a, &format!("after-kill{i}")).await;
        let e = event(&mut wb).await;
        assert_eq!(seq(&e), last + 1, "{e}");
        last = seq(&e);
    }
    assert!(
        tails(&db).await.iter().all(|p| !killed.contains(p)),
        "read through new connections"
    );

    // A database that stays out of reach of the tail: its clients are
    // told (closed with a reason) instead of waiting silently.
    server
        .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
        .await
        .expect("disallow connections");
    terminate_tails(&db).await;
    told_to_resume(&wb.recv().await);
    // Writes go on meanwhile (node A's writer keeps its connection).
    let mut missed = Vec::new();
    for i in 0..3 {
        missed.push(create_post(&a, &format!("while-out{i}")).await);
    }
    server
        .batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
        .await
        .expect("allow connections");
    // The client resumes on B with `since`: what it missed, then live
    // changes again (B's tail is back).
    let (mut wb, _) = Ws::open(&b, None).await;
    subscribe(
        &mut wb,
        json!({"type": "subscribe", "id": "p", "topic": "posts/*", "since": last}),
    )
    .await;
    for id in &missed {
        let e = event(&mut wb).await;
        assert_eq!(
            (seq(&e), e["record"]["id"].as_str()),
            (last + 1, Some(id.as_str())),
            "{e}"
        );
        last = seq(&e);
    }
    let live = create_post(&a, "live").await;
    let e = event(&mut wb).await;
    assert_eq!(
        (seq(&e), e["record"]["id"].as_str()),
        (last + 1, Some(live.as_str())),
        "{e}"
    );
}

/// A node whose tail is held back while the change log is trimmed past
/// it never skips events silently: when its tail reads on and finds the
/// gap, its clients are closed (1012) and told to resume with `since`.
#[actix_web::test]
async fn a_tail_that_falls_behind_the_trimmed_log_tells_its_clients() {
    let Some(pg) = pg_url() else { return };
    let a = spawn_app_on(Some(&pg)).await;
    a.posts().await;
    let direct = config_on(&a.dir, Some(&pg)).await.store.expect("a database");
    let (addr, via_proxy) = upstream(&direct).await;
    let (hold, held) = tokio::sync::watch::channel(false);
    let (b, _tmp) = node(&via_proxy(tail_holder(addr, held)), false).await;
    // The smallest change-log budget: a few large writes trim the log.
    let r = a
        .patch("/api/settings", json!({"realtime": {"maxBytes": 1024 * 1024}}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    let (mut wb, _) = Ws::open(&b, None).await;
    subscribe(&mut wb, json!({"type": "subscribe", "id": "p", "topic": "posts/*"})).await;
    create_post(&a, "first").await;
    let last = seq(&event(&mut wb).await);

    // B's tail is held (its connection stays open, its reads unanswered)
    // while A's writes trim the log past what B published.
    hold.send_replace(true);
    let db = sql(&direct).await;
    let big = json!({"title": "big", "tags": vec!["x".repeat(200); 1000]});
    let mut written = 0;
    loop {
        let oldest: Option<i64> = db
            .query_one("SELECT min(seq) FROM basalt.changes", &[])
            .await
            .expect("oldest seq")
            .get(0);
        if oldest.is_some_and(|s| s as u64 > last + 1) {
            break;
        }
        assert!(written < 100, "the change log was never trimmed");
        let r = a.guest_post("/api/collections/posts/records", big.clone()).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        written += 1;
    }
    hold.send_replace(false);
    told_to_resume(&wb.recv().await);
    // B follows the log again: a new client gets live changes.
    let (mut wb, _) = Ws::open(&b, None).await;
    let from = subscribe(&mut wb, json!({"type": "subscribe", "id": "p", "topic": "posts/*"})).await;
    let id = create_post(&a, "live").await;
    let e = event(&mut wb).await;
    assert!(seq(&e) > from, "{e}");
    assert_eq!(e["record"]["id"].as_str(), Some(id.as_str()), "{e}");
}

/// A TCP proxy in front of PostgreSQL (no TLS) that holds back the
/// server's answers on the connections of a node's change-log tail (known
/// by the `basalt-tail` application name in their startup message) while
/// `held` is true. Other connections pass. Returns its port. On a thread
/// and runtime of its own: opening a store blocks the test's thread.
fn tail_holder(upstream: std::net::SocketAddr, held: tokio::sync::watch::Receiver<bool>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("proxy addr").port();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("proxy runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("proxy listener");
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let (is_tail, mut tail_seen) = tokio::sync::watch::channel(false);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = cr.read(&mut buf).await {
                        // Marked before the startup message goes on: the
                        // server's first answer comes after it.
                        if buf[..n].windows(11).any(|w| w == b"basalt-tail") {
                            is_tail.send_replace(true);
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                let mut held = held.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = sr.read(&mut buf).await {
                        if *tail_seen.borrow_and_update() && held.wait_for(|h| !*h).await.is_err() {
                            break;
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
    });
    port
}
