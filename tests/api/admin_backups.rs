//! Backups: the dashboard page (create, list, download, delete), restoring
//! with the CLI into a new dir, and a snapshot taken under concurrent writes
//! being consistent.

use std::path::Path;
use std::process::Command;

use awc::http::Method;
use futures_util::future::join_all;
use serde_json::json;

use super::admin_support::Browser;
use super::helpers::{spawn_app, start, SU_EMAIL, SU_PASSWORD};

fn basalt() -> Command {
    Command::new(env!("CARGO_BIN_EXE_basalt"))
}

/// `basalt backup restore FILE --dir DIR`.
fn restore(file: &Path, dir: &Path) -> std::process::Output {
    crate::helpers::on_suite_engine(&mut basalt(), dir)
        .args(["backup", "restore"])
        .arg(file)
        .arg("--dir")
        .arg(dir)
        .output()
        .expect("run basalt")
}

/// The one backup file in `<dir>/backups`.
fn only_backup(dir: &Path) -> std::path::PathBuf {
    let files: Vec<_> = std::fs::read_dir(dir.join("backups"))
        .expect("backups dir")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

#[actix_web::test]
async fn backups_page_creates_lists_downloads_and_deletes() {
    let app = spawn_app().await;
    app.posts().await;
    for i in 0..3 {
        app.post("/api/collections/posts/records", json!({"title": format!("t{i}")}))
            .await;
    }
    let mut anon = Browser::new(&app);
    assert_eq!(anon.get("/_/backups").await.status, 303);
    let mut b = Browser::login(&app).await;
    b.get("/_/backups").await.assert_has("No backups yet");
    // Without the CSRF token nothing is made.
    assert_eq!(b.send_form("/_/backups", &[]).await.status, 403);
    assert!(!app.dir.join("backups").exists());

    let r = b.post("/_/backups", &[]).await;
    assert_eq!((r.status, r.location()), (303, "/_/backups"));
    let file = only_backup(&app.dir);
    let name = file.file_name().unwrap().to_str().unwrap().to_owned();
    let page = b.get("/_/backups").await;
    page.assert_has("created:");
    page.assert_has(&name);
    assert!(basalt::core::backups::archive::verify(&file).is_ok());

    let got = b.get(&format!("/_/backups/{name}")).await;
    assert_eq!(got.status, 200);
    assert!(got.header("content-disposition").contains(&name));
    // (The test browser reads bodies as text: compare the length and the start.)
    let size = std::fs::metadata(&file).unwrap().len();
    assert_eq!(got.header("content-length"), size.to_string());
    assert!(got.body.starts_with("BASALT-BACKUP\n"));
    for bad in ["..%2Fdb", "nope.backup", "LOCK"] {
        assert_eq!(b.get(&format!("/_/backups/{bad}")).await.status, 404, "{bad}");
    }
    assert_eq!(anon.get(&format!("/_/backups/{name}")).await.status, 303);

    let r = b.post(&format!("/_/backups/{name}/delete"), &[]).await;
    assert_eq!(r.status, 303);
    assert!(!file.exists());
    b.get("/_/backups").await.assert_has("No backups yet");
}

#[actix_web::test]
async fn a_snapshot_under_concurrent_writes_is_consistent_and_restores() {
    let app = spawn_app().await;
    app.posts().await;
    let writers = (0..6).map(|w| {
        let app = &app;
        async move {
            for i in 0..60 {
                let r = app
                    .post("/api/collections/posts/records", json!({"title": format!("w{w}-{i}")}))
                    .await;
                assert_eq!(r.status, 200);
            }
        }
    });
    let backup = async {
        let mut b = Browser::login(&app).await;
        let r = b.post("/_/backups", &[]).await;
        assert_eq!(r.status, 303);
    };
    let (_, ()) = futures_util::join!(join_all(writers), backup);
    let file = only_backup(&app.dir);

    // Restore into a new dir with the CLI, then serve it.
    let target = tempfile::tempdir().unwrap();
    let restored = target.path().join("data");
    let out = restore(&file, &restored);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Restored"));
    let mut copy = start(&restored, None).await;
    copy.token = copy.login("_superusers", SU_EMAIL, SU_PASSWORD).await;
    // The counter and the records agree: no half-applied group.
    let counted = copy.get("/api/collections/posts/records?perPage=1").await.body["totalItems"]
        .as_u64()
        .unwrap();
    let mut seen = 0u64;
    let mut page = 1;
    loop {
        let r = copy
            .get(&format!(
                "/api/collections/posts/records?perPage=100&page={page}&skipTotal=1"
            ))
            .await;
        let n = r.body["items"].as_array().unwrap().len() as u64;
        seen += n;
        if n < 100 {
            break;
        }
        page += 1;
    }
    assert_eq!(seen, counted);
    assert!(seen <= 360);
    // The restored server works: writes go on from there.
    let r = copy
        .post("/api/collections/posts/records", json!({"title": "after"}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    copy.stop().await;

    // Restoring again into the same dir is refused; nothing is touched.
    let out = restore(&file, &restored);
    assert_eq!(out.status.code(), Some(1));
    // (On PostgreSQL: the database, or the dir's files, "already holds" data.)
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds"));
}

#[actix_web::test]
async fn damaged_or_foreign_files_are_refused_before_anything_is_written() {
    let app = spawn_app().await;
    let mut b = Browser::login(&app).await;
    assert_eq!(b.post("/_/backups", &[]).await.status, 303);
    let file = only_backup(&app.dir);
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    let damaged = tmp.path().join("damaged.backup");
    std::fs::write(&damaged, &bytes).unwrap();
    let truncated = tmp.path().join("truncated.backup");
    std::fs::write(&truncated, &bytes[..mid]).unwrap();
    let foreign = tmp.path().join("foreign.backup");
    std::fs::write(&foreign, b"{\"not\": \"a backup\"}").unwrap();
    for (f, expect) in [
        (&damaged, "damaged"),
        (&truncated, "damaged"),
        (&foreign, "not a Basalt backup"),
    ] {
        let dir = tmp
            .path()
            .join(format!("into-{}", f.file_stem().unwrap().to_str().unwrap()));
        let out = restore(f, &dir);
        assert_eq!(out.status.code(), Some(1), "{f:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{f:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!dir.join("db").exists(), "{f:?} left a database behind");
    }
}

#[actix_web::test]
async fn cli_backs_up_a_stopped_data_dir_and_refuses_a_running_one() {
    let app = spawn_app().await;
    app.posts().await;
    app.post("/api/collections/posts/records", json!({"title": "kept"}))
        .await;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("cli.backup");
    // Running: the data dir is locked.
    let out = crate::helpers::on_suite_engine(&mut basalt(), &app.dir)
        .args(["backup", "create"])
        .arg(&file)
        .arg("--dir")
        .arg(&app.dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("dashboard"));
    let (dir, _keep) = app.stop().await;
    let out = crate::helpers::on_suite_engine(&mut basalt(), &dir)
        .args(["backup", "create"])
        .arg(&file)
        .arg("--dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let info = basalt::core::backups::archive::verify(&file).unwrap();
    assert!(info.entries > 0);
    let restored = tmp.path().join("restored");
    let out = restore(&file, &restored);
    assert!(out.status.success());
    let mut copy = start(&restored, None).await;
    copy.token = copy.login("_superusers", SU_EMAIL, SU_PASSWORD).await;
    let list = copy
        .call(Method::GET, "/api/collections/posts/records", None, None)
        .await;
    assert_eq!(list.body["items"][0]["title"], "kept");
}

#[actix_web::test]
async fn api_backups_list_create_download_delete_for_superusers() {
    let app = spawn_app().await;
    app.posts().await;
    assert_eq!(app.guest_get("/api/backups").await.status, 401);
    let r = app.get("/api/backups").await;
    assert_eq!((r.status, r.body.clone()), (200, json!([])));
    assert_eq!(app.post("/api/backups", json!({})).await.status, 204);
    assert_eq!(
        app.post("/api/backups", json!({"name": "nightly.backup"})).await.status,
        204
    );
    let r = app.post("/api/backups", json!({"name": "nightly.backup"})).await;
    assert_eq!((r.status, r.field_code("name")), (400, Some("validation_not_unique")));
    for bad in [
        json!({"name": "../x.backup"}),
        json!({"name": "x.zip"}),
        json!({"name": 5}),
    ] {
        let r = app.post("/api/backups", bad.clone()).await;
        assert_eq!(r.status, 400, "{bad}: {:?}", r.body);
        assert!(r.body["data"]["name"].is_object(), "{bad}: {:?}", r.body);
    }
    let list = app.get("/api/backups").await.body;
    let keys: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 2, "{list}");
    assert!(keys.contains(&"nightly.backup"));
    assert!(list[0]["size"].as_u64().unwrap() > 0);
    assert!(list[0]["modified"].as_str().unwrap().ends_with('Z'));

    // Download: with the header, or with a file token in ?token= (as SDK
    // links do: `pb.files.getToken()`); not as a guest, nor with the auth
    // token in the URL.
    let res = app
        .client
        .get(format!("{}/api/backups/nightly.backup", app.base))
        .insert_header(("Authorization", app.token.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let file_token = app.post("/api/files/token", json!({})).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut res = app
        .client
        .get(format!("{}/api/backups/nightly.backup?token={file_token}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body = res.body().limit(1 << 30).await.unwrap();
    assert!(body.starts_with(basalt::store::backup::MAGIC));
    assert_eq!(app.guest_get("/api/backups/nightly.backup").await.status, 401);
    let with_auth_token = format!("/api/backups/nightly.backup?token={}", app.token);
    assert_eq!(app.guest_get(&with_auth_token).await.status, 403);
    assert_eq!(app.get("/api/backups/..%2Fdb").await.status, 404);

    let r = app.post("/api/backups/nightly.backup/restore", json!({})).await;
    assert_eq!(r.status, 400);
    assert!(r.body["message"].as_str().unwrap().contains("basalt backup restore"));
    assert_eq!(app.delete("/api/backups/nightly.backup").await.status, 204);
    assert_eq!(app.delete("/api/backups/nightly.backup").await.status, 404);
    assert_eq!(app.get("/api/backups").await.body.as_array().unwrap().len(), 1);
}
