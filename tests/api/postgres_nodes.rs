//! Several Basalt nodes on one PostgreSQL database (issue 17, SPEC §12):
//! collection and settings changes reach every node, once-only work moves
//! to another node when its holder dies, and a COMMIT whose answer was
//! lost is answered with the truth. Needs `BASALT_TEST_PG` (see
//! `postgres.rs`); each test has a database of its own.
//!
//! Propagation and takeover times are printed (`--no-capture` shows
//! them), never asserted against a threshold: the machine is shared.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{config_on, spawn_app_on, Resp, TestApp};
use crate::postgres::{node, pg_url, sql, upstream};

/// Generous: the machine is shared with builds; SPEC §12 says 1 s.
const DEADLINE: Duration = Duration::from_secs(30);

/// Repeats `probe` until `done` holds for its answer, up to [`DEADLINE`];
/// returns the answer and how long it took from `since`.
async fn until<F, Fut>(what: &str, since: Instant, mut probe: F, done: impl Fn(&Resp) -> bool) -> (Resp, Duration)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Resp>,
{
    loop {
        let r = probe().await;
        if done(&r) {
            let took = since.elapsed();
            eprintln!("propagation: {what}: {took:?}");
            return (r, took);
        }
        assert!(
            since.elapsed() < DEADLINE,
            "{what}: not seen in {DEADLINE:?}; last {r:?}"
        );
        // Paces the probe; what it waits for is the answer above.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn collection_and_settings_changes_reach_the_other_node() {
    let Some(pg) = pg_url() else { return };
    let a = spawn_app_on(Some(&pg)).await;
    let store_url = config_on(&a.dir, Some(&pg)).await.store.expect("a database");
    // Started before the collection exists: it learns of it from A.
    let (b, _tmp) = node(&store_url, false).await;

    // A collection created on A.
    let t = Instant::now();
    a.create_collection(json!({
        "name": "notes",
        "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
        "schema": {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
    }))
    .await;
    let post = |node: &TestApp, body: Value| {
        let (base, client) = (node.base.clone(), node.client.clone());
        async move {
            let mut res = client
                .post(format!("{base}/api/collections/notes/records"))
                .send_json(&body)
                .await
                .expect("post");
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            Resp {
                status,
                body,
                headers: res.headers().clone(),
            }
        }
    };
    let mut n = 0;
    let mut next_title = || {
        n += 1;
        format!("note-{n}")
    };
    until(
        "create collection",
        t,
        || post(&b, json!({"title": next_title()})),
        |r| r.status == 200,
    )
    .await;

    // A rule changed on A: B's guests may no longer create.
    let r = a.patch("/api/collections/notes", json!({"createRule": null})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let t = Instant::now();
    until(
        "rule",
        t,
        || post(&b, json!({"title": next_title()})),
        |r| r.status == 403,
    )
    .await;

    // A new field on A: B validates it.
    let r = a
        .patch(
            "/api/collections/notes",
            json!({"createRule": "", "schema": {"type": "object", "properties": {
                "title": {"type": "string"}, "n": {"type": "integer", "maximum": 10}
            }, "required": ["title"]}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let t = Instant::now();
    let (r, _) = until(
        "new field",
        t,
        || post(&b, json!({"title": next_title(), "n": 11})),
        |r| r.status == 400,
    )
    .await;
    assert!(r.field_code("n").is_some(), "{:?}", r.body);
    assert_eq!(post(&b, json!({"title": next_title(), "n": 10})).await.status, 200);

    // A unique index added on A (built in the background: the collection
    // has records). B's writer maintains it from its very next write, not
    // only once B's caches caught up: the second "dup" through B right
    // after A's answer is refused.
    let r = a
        .patch(
            "/api/collections/notes",
            json!({"indexes": [{"name": "by_title", "fields": ["title"], "unique": true}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let first = post(&b, json!({"title": "dup"})).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let second = post(&b, json!({"title": "dup"})).await;
    assert_eq!(second.status, 400, "{:?}", second.body);
    assert_eq!(
        second.field_code("title"),
        Some("validation_not_unique"),
        "{:?}",
        second.body
    );
    // The build finishes (no indexStatus on either node) and B's reads
    // through the index find the one record.
    let t = Instant::now();
    until(
        "index build finished, seen on B",
        t,
        || b.get("/api/collections/notes"),
        |r| {
            r.status == 200
                && r.body.get("indexStatus").is_none()
                && r.body["indexes"].as_array().is_some_and(|i| !i.is_empty())
        },
    )
    .await;
    let list = b
        .guest_get("/api/collections/notes/records?filter=title%3D%27dup%27")
        .await;
    assert_eq!(list.body["totalItems"], 1, "{:?}", list.body);
    // A duplicate through B after the build is refused too, and A sees B's writes.
    let made = post(&a, json!({"title": "made-on-a"})).await;
    assert_eq!(made.status, 200, "{:?}", made.body);
    let dup = post(&b, json!({"title": "made-on-a"})).await;
    assert_eq!(dup.status, 400, "{:?}", dup.body);
    let on_a = a
        .guest_get("/api/collections/notes/records?filter=title%3D%27dup%27")
        .await;
    assert_eq!(on_a.body["totalItems"], 1, "{:?}", on_a.body);

    // Settings changed on A: B stops taking batches.
    let mut batches = 0;
    let mut batch = || {
        batches += 1;
        let title = format!("in-batch-{batches}");
        b.post(
            "/api/batch",
            json!({"requests": [{"method": "POST", "url": "/api/collections/notes/records", "body": {"title": title}}]}),
        )
    };
    assert_eq!(batch().await.status, 200);
    let r = a
        .patch(
            "/api/settings",
            json!({"batch": {"enabled": false}, "meta": {"appName": "Synced"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let t = Instant::now();
    let (r, _) = until("settings", t, batch, |r| r.status != 200).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let s = b.get("/api/settings").await;
    assert_eq!(s.body["meta"]["appName"], "Synced", "{:?}", s.body);

    // A collection deleted on A is gone on B.
    let r = a.delete("/api/collections/notes").await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let t = Instant::now();
    until(
        "delete collection",
        t,
        || b.get("/api/collections/notes"),
        |r| r.status == 404,
    )
    .await;
    let gone = post(&b, json!({"title": "after"})).await;
    assert_eq!(gone.status, 404, "{:?}", gone.body);
}

/// The application name of the session holding lease `key` in this
/// database, if any (`pg_sync.rs`: `basalt <host>/<pid>`).
async fn lease_holder(db: &tokio_postgres::Client, key: i64) -> Option<String> {
    db.query_opt(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid::text::bigint = $1 \
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        &[&key],
    )
    .await
    .expect("pg_locks")
    .map(|r| r.get(0))
}

/// The leases' keys: index builds, retention, file sweep.
const LEASES: [i64; 3] = [7_361_697, 7_361_698, 7_361_699];

/// A node in a process of its own, which the test can kill -9.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[actix_web::test]
async fn once_only_work_moves_to_another_node_when_its_holder_is_killed() {
    let Some(pg) = pg_url() else { return };
    let dir_a = tempfile::tempdir().expect("temp dir");
    let store_url = config_on(dir_a.path(), Some(&pg)).await.store.expect("a database");
    let db = sql(&store_url).await;
    let mut a = Process(
        Command::new(env!("CARGO_BIN_EXE_basalt"))
            .args(["serve", "--http", "127.0.0.1:0", "--dir"])
            .arg(dir_a.path())
            .args(["--store", &store_url])
            .env_remove("BASALT_STORE")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node A"),
    );
    let a_name = format!("/{}", a.0.id());
    let t = Instant::now();
    for key in LEASES {
        loop {
            if lease_holder(&db, key).await.is_some_and(|h| h.ends_with(&a_name)) {
                break;
            }
            assert!(a.0.try_wait().expect("node A").is_none(), "node A exited");
            assert!(t.elapsed() < DEADLINE, "node A never took lease {key}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // B joins: A keeps the leases.
    let (b, _tmp) = node(&store_url, true).await;
    let b_name = format!("/{}", std::process::id());
    b.create_collection(json!({
        "name": "items", "listRule": "", "createRule": "",
        "schema": {"type": "object", "properties": {"k": {"type": "string"}}}
    }))
    .await;
    for i in 0..50 {
        let r = b
            .guest_post("/api/collections/items/records", json!({"k": format!("k{i}")}))
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    for key in LEASES {
        let holder = lease_holder(&db, key).await.unwrap_or_default();
        assert!(holder.ends_with(&a_name), "lease {key} moved while A lives: {holder}");
    }
    // An index added through B is built by A, the holder: B only sees the
    // marker go.
    let indexed = |name: &str| json!({"indexes": [{"name": name, "fields": ["k"], "unique": true}]});
    let r = b.patch("/api/collections/items", indexed("by_k")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(
        r.body.get("indexStatus").is_some(),
        "a build over existing records: {:?}",
        r.body
    );
    let t = Instant::now();
    until(
        "build on the holder A, seen on B",
        t,
        || b.get("/api/collections/items"),
        |r| r.status == 200 && r.body.get("indexStatus").is_none(),
    )
    .await;

    // kill -9 A: PostgreSQL ends its session, B's poll takes every lease.
    a.0.kill().expect("kill -9 node A");
    let _ = a.0.wait();
    let t = Instant::now();
    for key in LEASES {
        loop {
            if lease_holder(&db, key).await.is_some_and(|h| h.ends_with(&b_name)) {
                break;
            }
            assert!(t.elapsed() < DEADLINE, "B never took lease {key} over");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    eprintln!("takeover: every lease held by B {:?} after kill -9 of A", t.elapsed());
    // B now builds indexes itself.
    let r = b.patch("/api/collections/items", indexed("by_k2")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let t = Instant::now();
    until(
        "build on B after the takeover",
        t,
        || b.get("/api/collections/items"),
        |r| r.status == 200 && r.body.get("indexStatus").is_none(),
    )
    .await;
    let dup = b.guest_post("/api/collections/items/records", json!({"k": "k7"})).await;
    assert_eq!(dup.field_code("k"), Some("validation_not_unique"), "{:?}", dup.body);
}

/// What the proxy does to the next COMMIT it sees.
const PASS: u8 = 0;
/// Forwards the COMMIT, then closes both sides instead of forwarding the
/// server's answer to it: committed, answer lost.
const LOSE_ANSWER: u8 = 1;
/// Closes both sides instead of forwarding the COMMIT: never committed,
/// but the client cannot tell.
const DROP_COMMIT: u8 = 2;

/// A TCP proxy in front of PostgreSQL that can cut a connection exactly
/// around a COMMIT (frontend/backend protocol v3: typed messages after
/// the untyped startup message; no TLS). Returns its port. On a thread and
/// runtime of its own: opening the store blocks the test's runtime thread
/// until the database (through this proxy) answers.
fn commit_cutter(upstream: std::net::SocketAddr, mode: Arc<AtomicU8>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("proxy addr").port();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("proxy runtime");
        rt.block_on(async move {
            let listener = TcpListener::from_std(listener).expect("proxy listener");
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let mode = mode.clone();
                tokio::spawn(async move {
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let cut = Arc::new(tokio::sync::Notify::new());
                    let up = pump(cr, sw, true, mode.clone(), cut.clone());
                    let down = pump(sr, cw, false, mode, cut.clone());
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                        _ = cut.notified() => {}
                    }
                });
            }
        });
    });
    port
}

/// Copies messages from `from` to `to`, cutting around a COMMIT as `mode` says.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frontend: bool,
    mode: Arc<AtomicU8>,
    cut: Arc<tokio::sync::Notify>,
) {
    let mut startup = frontend;
    loop {
        let mut msg = Vec::new();
        if !startup {
            let mut tag = [0u8; 1];
            if from.read_exact(&mut tag).await.is_err() {
                return;
            }
            msg.push(tag[0]);
        }
        startup = false;
        let mut len = [0u8; 4];
        if from.read_exact(&mut len).await.is_err() {
            return;
        }
        let n = u32::from_be_bytes(len) as usize;
        let mut body = vec![0u8; n.saturating_sub(4)];
        if from.read_exact(&mut body).await.is_err() {
            return;
        }
        let is_commit = body == b"COMMIT\0";
        let query = frontend && msg.first() == Some(&b'Q') && is_commit;
        let done = !frontend && msg.first() == Some(&b'C') && is_commit;
        if query
            && mode
                .compare_exchange(DROP_COMMIT, PASS, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            cut.notify_one();
            return;
        }
        if done
            && mode
                .compare_exchange(LOSE_ANSWER, PASS, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            cut.notify_one();
            return;
        }
        msg.extend_from_slice(&len);
        msg.extend_from_slice(&body);
        if to.write_all(&msg).await.is_err() {
            return;
        }
    }
}

#[actix_web::test]
async fn a_commit_whose_answer_was_lost_is_answered_with_the_truth() {
    let Some(pg) = pg_url() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let direct = config_on(dir.path(), Some(&pg)).await.store.expect("a database");
    let (addr, via_proxy) = upstream(&direct).await;
    let mode = Arc::new(AtomicU8::new(PASS));
    let proxy = commit_cutter(addr, mode.clone());
    let (app, _tmp) = node(&via_proxy(proxy), true).await;
    app.posts().await;

    // The COMMIT reaches PostgreSQL and commits; its answer never comes
    // back. The writer finds out it committed: 200, and the record is there.
    mode.store(LOSE_ANSWER, Ordering::SeqCst);
    let t = Instant::now();
    let r = app
        .guest_post("/api/collections/posts/records", json!({"title": "kept"}))
        .await;
    eprintln!("lost answer: committed, answered {} after {:?}", r.status, t.elapsed());
    assert_eq!(mode.load(Ordering::SeqCst), PASS, "the proxy cut no COMMIT");
    assert_eq!(r.status, 200, "{:?}", r.body);
    let id = r.body["id"].as_str().expect("an id").to_owned();
    let got = app.guest_get(&format!("/api/collections/posts/records/{id}")).await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(got.body["title"], "kept");

    // The COMMIT never reaches PostgreSQL: 503 saying nothing committed,
    // and nothing did.
    mode.store(DROP_COMMIT, Ordering::SeqCst);
    let t = Instant::now();
    let r = app
        .guest_post("/api/collections/posts/records", json!({"title": "lost"}))
        .await;
    eprintln!("dropped COMMIT: answered {} after {:?}", r.status, t.elapsed());
    assert_eq!(mode.load(Ordering::SeqCst), PASS, "the proxy cut no COMMIT");
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert!(
        r.body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{:?}",
        r.body
    );
    let list = app.guest_get("/api/collections/posts/records").await;
    assert_eq!(list.body["totalItems"], 1, "{:?}", list.body);
    // Writes go on by themselves.
    let r = app
        .guest_post("/api/collections/posts/records", json!({"title": "after"}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}
