//! The PostgreSQL engine's own guarantees (issue 17), on a real
//! PostgreSQL: `BASALT_TEST_PG` names a server (`scripts/pg.sh` starts a
//! throwaway one; `scripts/test.sh` does it for CI). Without it these tests
//! pass without checking anything, except in CI (`CI` set), where they
//! fail. The rest of `tests/api` runs on PostgreSQL too with
//! `BASALT_TEST_ENGINE=postgres` (see `helpers::suite_pg`).

use std::process::Command;

use awc::http::Method;
use serde_json::{json, Value};

use crate::helpers::{build_app, client, config_on, spawn_app_on, TestApp, SU_EMAIL, SU_PASSWORD};

/// The server URL, or `None` (outside CI) when no PostgreSQL is given.
pub(crate) fn pg_url() -> Option<String> {
    match std::env::var("BASALT_TEST_PG").ok().filter(|u| !u.is_empty()) {
        Some(url) => Some(url),
        None if std::env::var_os("CI").is_some() => {
            panic!("BASALT_TEST_PG is not set, and CI must run the PostgreSQL tests: see scripts/test.sh")
        }
        None => None,
    }
}

/// A plain SQL client on the database a test server uses.
pub(crate) async fn sql(store_url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(store_url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    actix_web::rt::spawn(connection);
    client
}

/// A node on the database `store_url` names, with a data dir of its own,
/// logged in as the superuser (created by the database's `first` node
/// only: an upsert would rotate the token key of the other nodes'
/// sessions).
pub(crate) async fn node(store_url: &str, first: bool) -> (TestApp, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut config = basalt::Config::for_dir(tmp.path());
    config.workers = 2;
    config.store = Some(store_url.to_owned());
    config.store_wait = 10;
    let app = build_app(config).await;
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    let handle = app.handle();
    let task = actix_web::rt::spawn(app.run_until_stopped());
    let mut node = TestApp::from_parts(base, tmp.path().to_path_buf(), handle, task, state);
    if first {
        basalt::core::records::upsert_superuser(&node.state, SU_EMAIL, SU_PASSWORD)
            .await
            .expect("superuser");
    }
    node.token = node.login("_superusers", SU_EMAIL, SU_PASSWORD).await;
    (node, tmp)
}

/// For a test proxy in front of PostgreSQL: the server's address in the
/// (single-host, TCP) URL `direct`, and the URL of the same database
/// through a proxy on 127.0.0.1:`port` (no TLS: the proxy reads the
/// protocol).
pub(crate) async fn upstream(direct: &str) -> (std::net::SocketAddr, impl Fn(u16) -> String) {
    let config: tokio_postgres::Config = direct.parse().expect("a URL");
    let (host, port) = match (config.get_hosts().first(), config.get_ports().first()) {
        (Some(tokio_postgres::config::Host::Tcp(h)), Some(p)) => (h.clone(), *p),
        other => panic!("a TCP URL: {other:?}"),
    };
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .expect("resolve")
        .next()
        .expect("an address");
    let (user, db) = (
        config.get_user().expect("a user").to_owned(),
        config.get_dbname().expect("a database name").to_owned(),
    );
    (addr, move |proxy: u16| {
        format!("postgres://{user}@127.0.0.1:{proxy}/{db}?sslmode=disable")
    })
}

#[actix_web::test]
async fn two_nodes_on_one_database_keep_unique_values_and_one_gapless_seq() {
    let Some(pg) = pg_url() else { return };
    let a = spawn_app_on(Some(&pg)).await;
    a.create_collection(json!({
        "name": "tickets",
        "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
        "indexes": [{"name": "by_code", "fields": ["code"], "unique": true}],
        "schema": {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}
    }))
    .await;
    let store_url = config_on(&a.dir, Some(&pg)).await.store.expect("a database");
    // Started after the collection exists: it loads it at start.
    let (b, _tmp) = node(&store_url, false).await;

    // The same unique value through both nodes at once, many times: one wins.
    for round in 0..20 {
        let code = format!("code-{round}");
        let body = json!({"code": code});
        let (ra, rb) = futures_util::join!(
            a.guest_post("/api/collections/tickets/records", body.clone()),
            b.guest_post("/api/collections/tickets/records", body.clone()),
        );
        let wins = [ra.status, rb.status].iter().filter(|s| **s == 200).count();
        assert_eq!(
            wins, 1,
            "round {round}: {} {:?} / {} {:?}",
            ra.status, ra.body, rb.status, rb.body
        );
        let loser = if ra.status == 200 { &rb } else { &ra };
        assert_eq!(loser.status, 400, "{:?}", loser.body);
        assert_eq!(
            loser.field_code("code"),
            Some("validation_not_unique"),
            "{:?}",
            loser.body
        );
    }
    // Each node reads what the other wrote, and counts agree.
    let path = "/api/collections/tickets/records?perPage=1";
    let (la, lb) = futures_util::join!(a.guest_get(path), b.guest_get(path));
    assert_eq!(la.body["totalItems"], 20, "{:?}", la.body);
    assert_eq!(lb.body["totalItems"], 20, "{:?}", lb.body);

    // One global seq, without a gap, in commit order; the head agrees.
    let db = sql(&store_url).await;
    let seqs: Vec<i64> = db
        .query("SELECT seq FROM basalt.changes ORDER BY seq", &[])
        .await
        .expect("changes")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!seqs.is_empty());
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "gap in {seqs:?}");
    let head: i64 = db
        .query_one("SELECT seq FROM basalt.head", &[])
        .await
        .expect("head")
        .get(0);
    assert_eq!(Some(&head), seqs.last());
    // Records are JSONB rows a person can query.
    let codes: i64 = db
        .query_one(
            "SELECT count(*) FROM basalt.records WHERE data->>'code' LIKE 'code-%'",
            &[],
        )
        .await
        .expect("records")
        .get(0);
    assert_eq!(codes, 20);
}

#[actix_web::test]
async fn a_string_with_u0000_is_a_400_naming_the_field_and_nothing_else_fails() {
    let Some(pg) = pg_url() else { return };
    let app = spawn_app_on(Some(&pg)).await;
    app.posts().await;
    // Written in the same group as a good write, it must not take it down.
    let (bad, good) = futures_util::join!(
        app.guest_post("/api/collections/posts/records", json!({"title": "a\u{0}b"})),
        app.guest_post("/api/collections/posts/records", json!({"title": "fine"})),
    );
    assert_eq!(bad.status, 400, "{:?}", bad.body);
    assert!(bad.field_code("title").is_some(), "{:?}", bad.body);
    assert_eq!(good.status, 200, "{:?}", good.body);
    let list = app.guest_get("/api/collections/posts/records").await;
    assert_eq!(list.body["totalItems"], 1, "{:?}", list.body);
}

#[actix_web::test]
async fn an_unreachable_database_at_start_is_a_clear_error_and_a_failing_exit() {
    // Needs no PostgreSQL: nothing listens on port 1 of loopback.
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_basalt"))
        .args(["serve", "--http", "127.0.0.1:0", "--store-wait", "1", "--dir"])
        .arg(tmp.path())
        .args(["--store", "postgres://basalt@127.0.0.1:1/basalt"])
        .output()
        .expect("run basalt");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PostgreSQL did not answer within 1 s"), "{stderr}");
    // A URL of another kind is named before anything starts.
    let out = Command::new(env!("CARGO_BIN_EXE_basalt"))
        .args(["serve", "--http", "127.0.0.1:0", "--dir"])
        .arg(tmp.path())
        .args(["--store", "mysql://127.0.0.1/x"])
        .output()
        .expect("run basalt");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--store takes a PostgreSQL URL"));
    // A restore with --store goes into PostgreSQL (tests/api/store_copy.rs):
    // a missing backup is named, and nothing is written to the data dir.
    let out = Command::new(env!("CARGO_BIN_EXE_basalt"))
        .args(["backup", "restore", "any.backup", "--dir"])
        .arg(tmp.path().join("restored"))
        .args(["--store", "postgres://basalt@127.0.0.1:1/basalt"])
        .output()
        .expect("run basalt");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("any.backup"));
    assert!(!tmp.path().join("restored").exists());
}

#[actix_web::test]
async fn a_backup_of_a_postgresql_store_restores_into_a_data_dir() {
    let Some(pg) = pg_url() else { return };
    let app = spawn_app_on(Some(&pg)).await;
    app.posts().await;
    for i in 0..5 {
        let r = app
            .guest_post("/api/collections/posts/records", json!({"title": format!("t{i}")}))
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let r = app.post("/api/backups", json!({"name": "pg.backup"})).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let file = app.dir.join("backups").join("pg.backup");
    let target = tempfile::tempdir().expect("temp dir");
    let restored = target.path().join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_basalt"))
        .args(["backup", "restore"])
        .arg(&file)
        .arg("--dir")
        .arg(&restored)
        .env_remove("BASALT_STORE")
        .output()
        .expect("run basalt");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The restored data dir serves the same records on the embedded store.
    let mut config = basalt::Config::for_dir(&restored);
    config.workers = 1;
    let copy = build_app(config).await;
    let base = format!("http://127.0.0.1:{}", copy.port());
    let handle = copy.handle();
    let task = actix_web::rt::spawn(copy.run_until_stopped());
    let mut res = client()
        .request(Method::GET, format!("{base}/api/collections/posts/records?sort=title"))
        .send()
        .await
        .expect("list");
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["totalItems"], 5, "{body:?}");
    assert_eq!(body["items"][0]["title"], "t0");
    handle.stop(true).await;
    let _ = task.await;
}
