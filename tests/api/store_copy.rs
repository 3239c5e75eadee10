//! `basalt store copy` between a data dir and PostgreSQL, restoring a
//! backup into PostgreSQL, and TLS to PostgreSQL (issue 17). They need
//! `BASALT_TEST_PG` (see tests/api/postgres.rs); the TLS test also needs
//! `BASALT_TEST_PG_CA`, the CA that signed the test cluster's certificate
//! (`scripts/pg.sh` makes one; `scripts/test.sh` exports it).

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::helpers::{build_app, config_on, spawn_app_on, TestApp, SU_EMAIL, SU_PASSWORD};
use crate::postgres::pg_url;

/// A new, empty database on `pg` (named after a fresh temp dir).
async fn empty_database(pg: &str) -> (String, tempfile::TempDir) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let url = config_on(tmp.path(), Some(pg)).await.store.expect("a database");
    (url, tmp)
}

fn basalt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_basalt"))
        .args(args)
        .env_remove("BASALT_STORE")
        .env_remove("BASALT_DIR")
        .output()
        .expect("run basalt")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A server on `dir`, on PostgreSQL at `store` if given; superuser logged in.
async fn start_on(dir: &Path, store: Option<&str>) -> TestApp {
    let mut config = basalt::Config::for_dir(dir);
    config.workers = 2;
    config.store = store.map(str::to_owned);
    let app = build_app(config).await;
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    let handle = app.handle();
    let task = actix_web::rt::spawn(app.run_until_stopped());
    let mut app = TestApp::from_parts(base, dir.to_path_buf(), handle, task, state);
    app.token = app.login("_superusers", SU_EMAIL, SU_PASSWORD).await;
    app
}

/// Collections with records of several shapes, an updated record (rev 2),
/// a deleted one, a unique index and a user with a password.
async fn fill(app: &TestApp) {
    app.create_collection(json!({
        "name": "notes",
        "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
        "indexes": [{"name": "by_code", "fields": ["code"], "unique": true}],
        "schema": {"type": "object", "properties": {
            "code": {"type": "string"}, "n": {"type": "number"}, "tags": {"type": "array"}, "meta": {"type": "object"}
        }}
    }))
    .await;
    let mut ids = Vec::new();
    for i in 0..30 {
        let r = app
            .post(
                "/api/collections/notes/records",
                json!({"code": format!("c{i}"), "n": i as f64 + 0.5, "tags": ["a", i], "meta": {"z": 1, "a": {"y": [true, null]}}}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        ids.push(r.body["id"].as_str().expect("id").to_owned());
    }
    let r = app
        .patch(
            &format!("/api/collections/notes/records/{}", ids[0]),
            json!({"code": "first"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app.delete(&format!("/api/collections/notes/records/{}", ids[1])).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = app
        .post(
            "/api/collections/users/records",
            json!({"email": "ann@example.com", "password": "ann password 1", "passwordConfirm": "ann password 1"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// What the copy must keep, as the API shows it.
async fn state_of(app: &TestApp) -> Value {
    let notes = app.get("/api/collections/notes/records?sort=id&perPage=100").await;
    assert_eq!(notes.status, 200, "{:?}", notes.body);
    let users = app.get("/api/collections/users/records?sort=id").await;
    assert_eq!(users.status, 200, "{:?}", users.body);
    let colls = app.get("/api/collections?sort=name&perPage=100").await;
    assert_eq!(colls.status, 200, "{:?}", colls.body);
    let settings = app.get("/api/settings").await;
    json!({"notes": notes.body, "users": users.body, "collections": colls.body, "settings": settings.body})
}

/// After a copy: the same data, logins with the old passwords, unique
/// index and revisions still enforced, and writes go on.
async fn check_copy(app: &TestApp, before: &Value) {
    assert_eq!(&state_of(app).await, before);
    app.login("users", "ann@example.com", "ann password 1").await;
    let dup = app.post("/api/collections/notes/records", json!({"code": "c5"})).await;
    assert_eq!(dup.status, 400, "the unique index came along: {:?}", dup.body);
    let r = app.post("/api/collections/notes/records", json!({"code": "new"})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[actix_web::test]
async fn a_data_dir_copies_into_postgresql_and_back_verified() {
    let Some(pg) = pg_url() else { return };
    let app = spawn_app_on(None).await;
    fill(&app).await;
    let before = state_of(&app).await;
    let (source_dir, _tmp) = app.stop().await;
    let source = source_dir.to_str().expect("utf-8 path");
    let (db, _db_tmp) = empty_database(&pg).await;

    let out = basalt(&["store", "copy", "--from", source, "--to", &db]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.lines()
            .any(|l| l.starts_with("notes ") && l.contains(" 29 ") && l.ends_with(" ok")),
        "{said}"
    );
    assert!(said.contains("Uploaded files were not copied"), "{said}");
    assert!(!said.contains("MISMATCH"), "{said}");
    assert!(!said.contains("postgres@"), "no credentials in the output: {said}");

    // A node on the database serves what the data dir held.
    let node_dir = tempfile::tempdir().expect("temp dir");
    let node = start_on(node_dir.path(), Some(&db)).await;
    check_copy(&node, &before).await;
    let after_pg = state_of(&node).await;
    node.stop().await;

    // And back into a new data dir.
    let back = tempfile::tempdir().expect("temp dir");
    let back_dir = back.path().join("data");
    let out = basalt(&[
        "store",
        "copy",
        "--from",
        &db,
        "--to",
        back_dir.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let copy = start_on(&back_dir, None).await;
    assert_eq!(state_of(&copy).await, after_pg);
    copy.login("users", "ann@example.com", "ann password 1").await;
    copy.stop().await;
}

#[actix_web::test]
async fn a_copy_refuses_a_full_target_a_served_source_and_no_data() {
    let Some(pg) = pg_url() else { return };
    let app = spawn_app_on(None).await;
    fill(&app).await;
    let source = app.dir.to_str().expect("utf-8").to_owned();
    let (db, _db_tmp) = empty_database(&pg).await;

    // The source is served: refused, nothing written.
    let out = basalt(&["store", "copy", "--from", &source, "--to", &db]);
    assert!(!out.status.success());
    assert!(text(&out).contains("in use by a running server"), "{}", text(&out));
    let (source_dir, _tmp) = app.stop().await;

    let out = basalt(&["store", "copy", "--from", &source, "--to", &db]);
    assert!(out.status.success(), "{}", text(&out));
    // The database holds data now: a second copy into it is refused.
    let out = basalt(&["store", "copy", "--from", &source, "--to", &db]);
    assert!(!out.status.success());
    assert!(text(&out).contains("already holds Basalt data"), "{}", text(&out));
    // So is a data dir with a database, and the same store on both sides.
    let out = basalt(&["store", "copy", "--from", &db, "--to", &source]);
    assert!(!out.status.success());
    assert!(text(&out).contains("already holds a database"), "{}", text(&out));
    let out = basalt(&["store", "copy", "--from", &source, "--to", &source]);
    assert!(!out.status.success());
    assert!(text(&out).contains("the same store"), "{}", text(&out));
    // A source with no data.
    let empty = tempfile::tempdir().expect("temp dir");
    let out = basalt(&[
        "store",
        "copy",
        "--from",
        empty.path().to_str().expect("utf-8"),
        "--to",
        empty.path().join("x").to_str().expect("utf-8"),
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("holds no Basalt data"), "{}", text(&out));
    assert!(source_dir.join("db").exists());
}

#[actix_web::test]
async fn a_copy_that_fails_midway_leaves_the_database_empty() {
    let Some(pg) = pg_url() else { return };
    let app = spawn_app_on(None).await;
    fill(&app).await;
    // The embedded store keeps U+0000 in strings; JSONB cannot: the load
    // fails after many rows were sent.
    let r = app
        .post("/api/collections/notes/records", json!({"code": "a\u{0}b"}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let (source_dir, _tmp) = app.stop().await;
    let (db, _db_tmp) = empty_database(&pg).await;
    let out = basalt(&[
        "store",
        "copy",
        "--from",
        source_dir.to_str().expect("utf-8"),
        "--to",
        &db,
    ]);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(said.contains("22P05"), "PostgreSQL's reason is shown: {said}");
    let (client, connection) = tokio_postgres::connect(&db, tokio_postgres::NoTls)
        .await
        .expect("connect");
    actix_web::rt::spawn(connection);
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM basalt.records), (SELECT count(*) FROM basalt.meta), (SELECT seq FROM basalt.head)",
            &[],
        )
        .await
        .expect("count");
    let (records, meta, seq): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((records, seq), (0, 0), "nothing of the failed load stayed");
    assert_eq!(meta, 1, "only the key format row the tables are created with");
}

#[actix_web::test]
async fn a_backup_restores_into_an_empty_postgresql_database_with_its_files() {
    let Some(pg) = pg_url() else { return };
    let app = spawn_app_on(None).await;
    fill(&app).await;
    let before = state_of(&app).await;
    let r = app.post("/api/backups", json!({"name": "full.backup"})).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let file = app.dir.join("backups").join("full.backup");
    let (db, _db_tmp) = empty_database(&pg).await;
    let target = tempfile::tempdir().expect("temp dir");
    let dir = target.path().join("node");
    let dir_s = dir.to_str().expect("utf-8");
    let file_s = file.to_str().expect("utf-8");

    let out = basalt(&["backup", "restore", file_s, "--dir", dir_s, "--store", &db]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("--store URL"), "{}", text(&out));
    assert!(!dir.join("db").exists(), "the database went into PostgreSQL");
    let node = start_on(&dir, Some(&db)).await;
    check_copy(&node, &before).await;
    node.stop().await;

    // The database holds data now: refused, and the data dir gets no files.
    let other = target.path().join("other");
    let out = basalt(&[
        "backup",
        "restore",
        file_s,
        "--dir",
        other.to_str().expect("utf-8"),
        "--store",
        &db,
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("already holds Basalt data"), "{}", text(&out));
    assert!(!other.join("storage").exists());
    app.stop().await;
}

/// `openssl` CLI: a self-signed CA in `dir` (ca.crt), which signed nothing
/// the test cluster presents.
fn other_ca(dir: &Path) -> std::path::PathBuf {
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .args(["-days", "2", "-subj", "/CN=not the test CA", "-keyout"])
        .arg(dir.join("ca.key"))
        .arg("-out")
        .arg(dir.join("ca.crt"))
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "{}", text(&out));
    dir.join("ca.crt")
}

#[actix_web::test]
async fn tls_verify_full_with_the_right_ca_works_and_a_wrong_ca_is_refused() {
    let Some(pg) = pg_url() else { return };
    let Some(ca) = std::env::var("BASALT_TEST_PG_CA").ok().filter(|c| !c.is_empty()) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the TLS test: BASALT_TEST_PG_CA"
        );
        return;
    };
    let (db, _db_tmp) = empty_database(&pg).await;
    let sep = if db.contains('?') { '&' } else { '?' };
    let verified = format!("{db}{sep}sslmode=verify-full&sslrootcert={ca}");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = basalt::Config::for_dir(dir.path());
    config.workers = 1;
    config.store = Some(verified.clone());
    let app = build_app(config).await;
    let state = app.state().clone();
    let base = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    let task = actix_web::rt::spawn(app.run_until_stopped());
    let node = TestApp::from_parts(base, dir.path().to_path_buf(), handle, task, state);
    basalt::core::records::upsert_superuser(&node.state, SU_EMAIL, SU_PASSWORD)
        .await
        .expect("a write over TLS");
    let r = node.guest_get("/api/health").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // The server sees Basalt's connections to this database encrypted.
    let (client, connection) = tokio_postgres::connect(&db, tokio_postgres::NoTls)
        .await
        .expect("connect");
    actix_web::rt::spawn(connection);
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.application_name = 'basalt' AND a.datname = current_database()",
            &[],
        )
        .await
        .expect("pg_stat_ssl");
    let (tls, all): (i64, i64) = (row.get(0), row.get(1));
    assert!(all > 0 && tls == all, "{tls} of {all} connections use TLS");
    node.stop().await;

    // A CA that did not sign the server's certificate: a clear refusal.
    let wrong = tempfile::tempdir().expect("temp dir");
    let wrong_ca = other_ca(wrong.path());
    let url = format!("{db}{sep}sslmode=verify-full&sslrootcert={}", wrong_ca.display());
    let node_dir = tempfile::tempdir().expect("temp dir");
    let out = basalt(&[
        "serve",
        "--http",
        "127.0.0.1:0",
        "--store-wait",
        "1",
        "--dir",
        node_dir.path().to_str().expect("utf-8"),
        "--store",
        &url,
    ]);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(said.contains("invalid peer certificate: UnknownIssuer"), "{said}");
    // A name the certificate does not hold (the address given apart):
    // verify-full refuses it, verify-ca does not compare names.
    let node = node_dir.path().to_str().expect("utf-8");
    let misnamed = verified.replacen("@127.0.0.1:", "@db.invalid:", 1) + "&hostaddr=127.0.0.1";
    let file = node_dir.path().join("b.backup");
    let backup = |url: &str| {
        basalt(&[
            "backup",
            "create",
            file.to_str().expect("utf-8"),
            "--dir",
            node,
            "--store-wait",
            "1",
            "--store",
            url,
        ])
    };
    let out = backup(&misnamed);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(
        said.contains("not valid for name") || said.contains("NotValidForName"),
        "{said}"
    );
    let out = backup(&misnamed.replace("sslmode=verify-full", "sslmode=verify-ca"));
    assert!(out.status.success(), "{}", text(&out));
    // A missing CA file is named before anything connects.
    let url = format!("{db}{sep}sslmode=verify-full&sslrootcert=/nonexistent/ca.pem");
    let out = basalt(&[
        "backup",
        "create",
        "x.backup",
        "--dir",
        node_dir.path().to_str().expect("utf-8"),
        "--store",
        &url,
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("/nonexistent/ca.pem"), "{}", text(&out));
}
