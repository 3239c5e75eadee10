//! File fields and uploads (SPEC §8): multipart create/update/batch, the
//! body's file values, limits, and that files and records stay consistent.

use std::path::{Path, PathBuf};

use awc::http::Method;
use serde_json::{json, Value};

use crate::form::{self, Form, PNG};
use crate::helpers::*;

/// A collection with a single image field and a multiple attachment field.
async fn docs(app: &TestApp) -> Value {
    app.create_collection(json!({
        "name": "docs",
        "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
        "schema": {
            "type": "object",
            "properties": {
                "title": {"type": "string"},
                "views": {"type": "integer"},
                "done": {"type": "boolean"},
                "avatar": {"type": "string", "x-file": {"maxSize": 1000, "mimeTypes": ["image/png", "image/jpeg"], "thumbs": ["10x10"]}},
                "files": {"type": "array", "items": {"type": "string"}, "x-file": {"maxSelect": 3, "maxSize": 30000000}}
            },
            "additionalProperties": false
        }
    }))
    .await
}

fn storage(app: &TestApp, cid: &str, rid: &str) -> PathBuf {
    app.dir.join("storage").join(cid).join(rid)
}

/// Files stored for a record (thumbnails aside), sorted.
pub(crate) fn stored(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Waits (bounded) until the record's stored files are exactly `want`:
/// removals happen after the commit, in the background.
pub(crate) async fn wait_stored(dir: &Path, want: &[&str]) {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = stored(dir);
        if now == want {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "stored {now:?}, want {want:?}");
        actix_web::rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

fn names(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[actix_web::test]
async fn files_upload_on_create_and_update_as_pocketbase() {
    let app = spawn_app().await;
    let cid = docs(&app).await["id"].as_str().unwrap().to_owned();
    let body = Form::new()
        .text("title", "hello")
        .text("views", "42")
        .text("done", "true")
        .file("avatar", "My Photo.PNG", PNG)
        .file("files", "a.txt", b"alpha")
        .file("files", "../../etc/b.txt", b"beta")
        .finish();
    let r = form::send(
        &app,
        Method::POST,
        "/api/collections/docs/records",
        body,
        Some(&app.token),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Plain parts typed by the schema, as PocketBase types them by field.
    assert_eq!((&r.body["views"], &r.body["done"]), (&json!(42), &json!(true)));
    let avatar = r.body["avatar"].as_str().unwrap().to_owned();
    assert!(
        avatar.starts_with("my_photo_") && avatar.ends_with(".PNG") && avatar.len() == "my_photo_".len() + 10 + 4,
        "{avatar}"
    );
    let files: Vec<String> = names(&r.body["files"]).iter().map(|s| s.to_string()).collect();
    assert_eq!(files.len(), 2);
    assert!(files[1].starts_with("b_") || files[1].len() > 10, "{files:?}");
    assert!(files.iter().all(|f| !f.contains('/') && !f.contains("..")), "{files:?}");
    let rid = r.body["id"].as_str().unwrap().to_owned();
    let dir = storage(&app, &cid, &rid);
    assert_eq!(std::fs::read(dir.join(&avatar)).unwrap(), PNG);
    assert_eq!(std::fs::read(dir.join(&files[0])).unwrap(), b"alpha");

    // `files+` appends, `files-` removes (and the file goes after the commit).
    let path = format!("/api/collections/docs/records/{rid}");
    let body = Form::new()
        .file("files+", "c.txt", b"gamma")
        .text("files-", &files[0])
        .finish();
    let r = form::send(&app, Method::PATCH, &path, body, Some(&app.token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let now: Vec<String> = names(&r.body["files"]).iter().map(|s| s.to_string()).collect();
    assert_eq!(now.len(), 2);
    assert_eq!(now[0], files[1]);
    wait_stored(&dir, &[&avatar, &now[0], &now[1]]).await;

    // A new avatar replaces the old one, whose file is removed.
    let body = Form::new().file("avatar", "new.png", PNG).finish();
    let r = form::send(&app, Method::PATCH, &path, body, Some(&app.token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let avatar2 = r.body["avatar"].as_str().unwrap().to_owned();
    assert_ne!(avatar2, avatar);
    wait_stored(&dir, &[&avatar2, &now[0], &now[1]]).await;

    // JSON bodies: clearing, and keeping a subset.
    let r = app.patch(&path, json!({"avatar": "", "files": [now[1]]})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((&r.body["avatar"], &r.body["files"]), (&json!(""), &json!([now[1]])));
    wait_stored(&dir, &[&now[1]]).await;

    // Deleting the record removes its files.
    assert_eq!(app.delete(&path).await.status, 204);
    wait_stored(&dir, &[]).await;
}

#[actix_web::test]
async fn files_bad_uploads_are_400_under_the_field_and_store_nothing() {
    let app = spawn_app().await;
    let cid = docs(&app).await["id"].as_str().unwrap().to_owned();
    let create = |body: Vec<u8>| {
        form::send(
            &app,
            Method::POST,
            "/api/collections/docs/records",
            body,
            Some(&app.token),
        )
    };
    for (body, field, code) in [
        (
            Form::new().file("avatar", "big.png", &[PNG, &[0u8; 2000]].concat()),
            "avatar",
            "validation_file_size_limit",
        ),
        (
            Form::new().file("avatar", "page.png", b"<html><script>alert(1)</script>"),
            "avatar",
            "validation_invalid_mime_type",
        ),
        (
            Form::new().file("avatar", "empty.png", b""),
            "avatar",
            "validation_file_empty",
        ),
        (
            Form::new()
                .file("files", "1", b"1")
                .file("files", "2", b"2")
                .file("files", "3", b"3")
                .file("files", "4", b"4"),
            "files",
            "validation_too_many_files",
        ),
        (
            Form::new().file("title", "x.txt", b"x"),
            "title",
            "validation_unknown_file_field",
        ),
        (
            Form::new()
                .file("avatar", "ok.png", PNG)
                .text("files", "someone_elses_1234567890.txt"),
            "files",
            "validation_invalid_file",
        ),
    ] {
        let r = create(body.finish()).await;
        assert_eq!(r.status, 400, "{field}: {}", r.body);
        assert_eq!(r.field_code(field), Some(code), "{}", r.body);
    }
    // A JSON body cannot name a file that was not uploaded to the record.
    for bad in [json!("../../../etc/passwd"), json!("x_1234567890.png")] {
        let r = app.post("/api/collections/docs/records", json!({"avatar": bad})).await;
        assert_eq!(r.field_code("avatar"), Some("validation_invalid_file"), "{}", r.body);
    }
    // Malformed, truncated and empty bodies.
    let truncated = Form::new()
        .text("title", "t")
        .file("files", "a.txt", &[b'x'; 5000])
        .unfinished();
    for body in [
        truncated,
        b"".to_vec(),
        b"garbage".to_vec(),
        format!("--{}--\r\n", form::BOUNDARY).into_bytes(),
    ] {
        let r = create(body).await;
        assert_eq!(r.status, 400, "{}", r.body);
    }
    // Nothing was stored for any of them, and no record exists.
    assert_eq!(app.get("/api/collections/docs/records").await.body["totalItems"], 0);
    let left: Vec<_> = std::fs::read_dir(app.dir.join("storage").join(&cid))
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    let spool: Vec<_> = std::fs::read_dir(app.dir.join(".uploads")).unwrap().collect();
    assert!(spool.is_empty(), "spool files left: {}", spool.len());
}

#[actix_web::test]
async fn files_a_refused_write_removes_its_uploads() {
    let app = spawn_app().await;
    let coll = docs(&app).await;
    let cid = coll["id"].as_str().unwrap().to_owned();
    let r = app
        .patch(
            "/api/collections/docs",
            json!({"createRule": "title = 'ok'", "updateRule": "title = 'ok'"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let user = Form::new().text("title", "no").file("files", "a.txt", b"a").finish();
    let r = form::send(&app, Method::POST, "/api/collections/docs/records", user, None).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = form::send(
        &app,
        Method::POST,
        "/api/collections/docs/records",
        Form::new().text("title", "ok").finish(),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rid = r.body["id"].as_str().unwrap().to_owned();
    app.patch("/api/collections/docs", json!({"updateRule": "title = 'never'"}))
        .await;
    let r = form::send(
        &app,
        Method::PATCH,
        &format!("/api/collections/docs/records/{rid}"),
        Form::new().file("files", "b.txt", b"b").finish(),
        None,
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);
    wait_stored(&storage(&app, &cid, &rid), &[]).await;
    let all: Vec<_> = std::fs::read_dir(app.dir.join("storage").join(&cid))
        .map(|d| d.filter_map(|e| e.ok()).flat_map(|e| stored(&e.path())).collect())
        .unwrap_or_default();
    assert!(all.is_empty(), "{all:?}");
}

#[actix_web::test]
async fn files_batch_uploads_under_requests_n() {
    let app = spawn_app().await;
    let cid = docs(&app).await["id"].as_str().unwrap().to_owned();
    let payload = json!({"requests": [
        {"method": "POST", "url": "/api/collections/docs/records", "body": {"title": "one"}},
        {"method": "POST", "url": "/api/collections/docs/records", "body": {"title": "two"}}
    ]});
    let body = Form::new()
        .json(&payload)
        .file("requests.0.avatar", "a.png", PNG)
        .file("requests[1].files", "b.txt", b"bee")
        .finish();
    let r = form::send(&app, Method::POST, "/api/batch", body, Some(&app.token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let first = &r.body[0]["body"];
    let second = &r.body[1]["body"];
    assert!(first["avatar"].as_str().unwrap().starts_with("a"), "{}", r.body);
    let bee = names(&second["files"])[0].to_owned();
    let dir = storage(&app, &cid, second["id"].as_str().unwrap());
    assert_eq!(std::fs::read(dir.join(&bee)).unwrap(), b"bee");
    // A failing batch keeps none of its files.
    let payload = json!({"requests": [
        {"method": "POST", "url": "/api/collections/docs/records", "body": {"title": "three"}},
        {"method": "POST", "url": "/api/collections/docs/records", "body": {"views": "not a number"}}
    ]});
    let body = Form::new()
        .json(&payload)
        .file("requests.0.files", "c.txt", b"c")
        .finish();
    let r = form::send(&app, Method::POST, "/api/batch", body, Some(&app.token)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let records = std::fs::read_dir(app.dir.join("storage").join(&cid)).unwrap().count();
    assert_eq!(records, 2, "only the first batch's two records have files");
    // File parts must name one of the batch's requests.
    let body = Form::new()
        .json(&payload)
        .file("requests.7.files", "c.txt", b"c")
        .finish();
    let r = form::send(&app, Method::POST, "/api/batch", body, Some(&app.token)).await;
    assert_eq!(r.status, 400, "{}", r.body);
}

#[actix_web::test]
async fn files_concurrent_replacements_leave_one_file() {
    let app = spawn_app().await;
    let cid = docs(&app).await["id"].as_str().unwrap().to_owned();
    let r = app
        .post("/api/collections/docs/records", json!({"title": "race"}))
        .await;
    let rid = r.body["id"].as_str().unwrap().to_owned();
    let path = format!("/api/collections/docs/records/{rid}");
    let sends = (0..8).map(|i| {
        let body = Form::new().file("avatar", &format!("v{i}.png"), PNG).finish();
        form::send(&app, Method::PATCH, &path, body, Some(&app.token))
    });
    for r in futures_util::future::join_all(sends).await {
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let last = app.get(&path).await.body["avatar"].as_str().unwrap().to_owned();
    wait_stored(&storage(&app, &cid, &rid), &[&last]).await;
}

#[actix_web::test]
async fn files_big_upload_streams_and_collection_delete_removes_files() {
    let app = spawn_app().await;
    let cid = docs(&app).await["id"].as_str().unwrap().to_owned();
    // 20 MB: well over --max-body (1 MiB), within the field's maxSize.
    let big: Vec<u8> = (0..20_000_000u32).map(|i| (i % 251) as u8).collect();
    let body = Form::new().text("title", "big").file("files", "big.bin", &big).finish();
    let r = form::send(
        &app,
        Method::POST,
        "/api/collections/docs/records",
        body,
        Some(&app.token),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rid = r.body["id"].as_str().unwrap().to_owned();
    let name = names(&r.body["files"])[0].to_owned();
    let stored_bytes = std::fs::read(storage(&app, &cid, &rid).join(&name)).unwrap();
    assert!(stored_bytes == big, "stored file differs");
    // Over the collection's whole-body limit: 413 before it is all read.
    let huge = vec![0u8; 100_000_000];
    let body = Form::new().file("files", "huge.bin", &huge).finish();
    let r = form::send(
        &app,
        Method::POST,
        "/api/collections/docs/records",
        body,
        Some(&app.token),
    )
    .await;
    assert!(r.status == 413 || r.status == 400, "{} {}", r.status, r.body);
    // Deleting the collection removes its files.
    assert_eq!(app.delete("/api/collections/docs").await.status, 204);
    assert!(!app.dir.join("storage").join(&cid).exists());
}

#[actix_web::test]
async fn files_orphans_are_swept_and_named_files_kept() {
    let app = spawn_app().await;
    let cid = docs(&app).await["id"].as_str().unwrap().to_owned();
    let body = Form::new()
        .text("title", "keep")
        .file("files", "keep.txt", b"keep")
        .finish();
    let r = form::send(
        &app,
        Method::POST,
        "/api/collections/docs/records",
        body,
        Some(&app.token),
    )
    .await;
    let rid = r.body["id"].as_str().unwrap().to_owned();
    let kept = names(&r.body["files"])[0].to_owned();
    // What a crash between storing and committing leaves: files no record names.
    let dir = storage(&app, &cid, &rid);
    std::fs::write(dir.join("orphan_abcdefghij.txt"), b"o").unwrap();
    let ghost = storage(&app, &cid, "ghostrecord0001");
    std::fs::create_dir_all(&ghost).unwrap();
    std::fs::write(ghost.join("lost_abcdefghij.txt"), b"l").unwrap();
    let (dir_path, tmp) = app.stop().await;
    let mut config = crate::helpers::config_for(&dir_path).await;
    config.workers = 1;
    config.orphan_grace = 0;
    let app2 = build_app(config).await;
    let handle = app2.handle();
    let task = actix_web::rt::spawn(app2.run_until_stopped());
    wait_stored(&dir, &[&kept]).await;
    wait_stored(&ghost, &[]).await;
    handle.stop(true).await;
    task.await.unwrap().unwrap();
    drop(tmp);
}

#[actix_web::test]
async fn files_openapi_shows_multipart_bodies() {
    let app = spawn_app().await;
    docs(&app).await;
    app.posts().await;
    let doc = app.get("/api/openapi.json").await.body;
    let create = &doc["paths"]["/api/collections/docs/records"]["post"]["requestBody"]["content"];
    let form = &create["multipart/form-data"]["schema"]["properties"];
    assert_eq!(form["files"]["items"]["format"], "binary", "{create}");
    assert_eq!(form["files"]["maxItems"], 3);
    assert!(form["@jsonPayload"].is_object());
    let update = &doc["paths"]["/api/collections/docs/records/{id}"]["patch"]["requestBody"]["content"];
    assert!(
        update["multipart/form-data"]["schema"]["properties"]["files-"].is_object(),
        "{update}"
    );
    // Collections without file fields take JSON only.
    let posts = &doc["paths"]["/api/collections/posts/records"]["post"]["requestBody"]["content"];
    assert!(posts.get("multipart/form-data").is_none(), "{posts}");
}

/// `kill -9` while uploads stream in and commit: every acknowledged upload
/// is there with its bytes, no record names a missing file, and the spool
/// of the killed process is gone after the restart.
#[actix_web::test]
async fn files_kill_9_during_uploads_loses_nothing() {
    use crate::persistence::{basalt, login, start_binary};
    use std::sync::{Arc, Mutex};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let status = crate::helpers::on_suite_engine(&mut basalt(), dir)
        .args(["superuser", "upsert", SU_EMAIL, SU_PASSWORD, "--dir"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success());
    let (mut child, base) = start_binary(dir);
    let token = login(&base).await;
    let res = client()
        .post(format!("{base}/api/collections"))
        .insert_header(("Authorization", token.clone()))
        .send_json(&json!({"name": "docs", "createRule": "", "schema": {"type": "object", "properties": {
            "files": {"type": "array", "items": {"type": "string"}, "x-file": {"maxSelect": 2, "maxSize": 50_000_000}}}}}))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let cid = read(res).await.body["id"].as_str().unwrap().to_owned();
    /// (record id, stored name, content) of each acknowledged upload.
    type Acked = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;
    let acked: Acked = Arc::default();
    let reached = Arc::new(tokio::sync::Notify::new());
    let mut writers = Vec::new();
    for w in 0..6u32 {
        let (base, acked, reached) = (base.clone(), acked.clone(), reached.clone());
        writers.push(actix_web::rt::spawn(async move {
            let c = client();
            for n in 0u32.. {
                // Every sixth writer sends big files, which are mid-stream at the kill.
                let size = if w == 0 {
                    8_000_000
                } else {
                    20_000 + (n as usize % 7) * 1000
                };
                let content: Vec<u8> = (0..size).map(|i| (i as u32 ^ w ^ n) as u8).collect();
                let body = Form::new().file("files", &format!("w{w}n{n}.bin"), &content).finish();
                let Ok(mut res) = c
                    .post(format!("{base}/api/collections/docs/records"))
                    .insert_header(("Content-Type", form::content_type()))
                    .send_body(body)
                    .await
                else {
                    break;
                };
                if res.status().as_u16() != 200 {
                    break;
                }
                let Ok(bytes) = res.body().await else { break };
                let rec: Value = serde_json::from_slice(&bytes).unwrap();
                let name = rec["files"][0].as_str().unwrap().to_owned();
                let mut all = acked.lock().unwrap();
                all.push((rec["id"].as_str().unwrap().to_owned(), name, content));
                if all.len() == 30 {
                    reached.notify_one();
                }
            }
        }));
    }
    reached.notified().await;
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    for w in writers {
        let _ = w.await;
    }
    let (child2, base2) = start_binary(dir);
    let token = login(&base2).await;
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 30);
    for (id, name, content) in &acked {
        let stored = std::fs::read(dir.join("storage").join(&cid).join(id).join(name))
            .unwrap_or_else(|e| panic!("acknowledged file {id}/{name} lost after kill -9: {e}"));
        assert!(&stored == content, "file {id}/{name} corrupted");
    }
    // No record names a missing file.
    let res = client()
        .get(format!("{base2}/api/collections/docs/records?perPage=500"))
        .insert_header(("Authorization", token))
        .send()
        .await
        .unwrap();
    let page = read(res).await.body;
    for rec in page["items"].as_array().unwrap() {
        for name in names(&rec["files"]) {
            let path = dir
                .join("storage")
                .join(&cid)
                .join(rec["id"].as_str().unwrap())
                .join(name);
            assert!(path.exists(), "record {} names a missing file {name}", rec["id"]);
        }
    }
    let spool = std::fs::read_dir(dir.join(".uploads")).unwrap().count();
    assert_eq!(spool, 0, "the killed server's spool is cleared at start");
    drop(child2);
}

/// Attacks from the review of the upload path: each must be a clear 4xx
/// that stores nothing (or, for `.part` names, must not outlive its record).
#[actix_web::test]
async fn files_attacks_are_bounded_and_store_nothing() {
    let app = spawn_app().await;
    let cid = docs(&app).await["id"].as_str().unwrap().to_owned();
    let create = |body: Vec<u8>| form::send(&app, Method::POST, "/api/collections/docs/records", body, None);
    // Two uploads for a single file field: refused, not one kept and one orphaned.
    let r = create(
        Form::new()
            .file("avatar", "a.png", PNG)
            .file("avatar", "b.png", PNG)
            .finish(),
    )
    .await;
    assert_eq!(r.field_code("avatar"), Some("validation_too_many_files"), "{}", r.body);
    // Ids that are not record ids never reach the storage.
    for id in ["%2E%2E", ".", "%2F", "a%2Fb", &"x".repeat(300)] {
        let path = format!("/api/collections/docs/records/{id}");
        let r = form::send(
            &app,
            Method::PATCH,
            &path,
            Form::new().file("files", "a.txt", b"a").finish(),
            None,
        )
        .await;
        assert_eq!(r.status, 404, "{id}: {}", r.body);
    }
    // Plain parts are held in memory: together at most --max-body (1 MiB).
    let mut many = Form::new();
    for i in 0..3 {
        many = many.text(&format!("t{i}"), &"x".repeat(600_000));
    }
    let r = create(many.finish()).await;
    assert_eq!(r.status, 413, "{}", r.body);
    // A file part past the largest maxSize is stopped while it streams.
    let r = create(Form::new().file("files", "huge.bin", &vec![7u8; 31_000_000]).finish()).await;
    assert!(r.status == 400 || r.status == 413, "{} {}", r.status, r.body);
    // Batches are off by default: a multipart batch gets no file budget.
    app.patch("/api/settings", json!({"batch": {"enabled": false}})).await;
    let body = Form::new()
        .json(&json!({"requests": [{"method": "POST", "url": "/api/collections/docs/records"}]}))
        .file("requests.0.files", "big.bin", &vec![1u8; 3_000_000])
        .finish();
    let r = form::send(&app, Method::POST, "/api/batch", body, None).await;
    assert!(r.status == 413 || r.status == 403, "{} {}", r.status, r.body);
    // An integer beyond i64 in a form part is not rounded into a float.
    let r = create(Form::new().text("views", "99999999999999999999").finish()).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body["data"]["views"].is_object(), "{}", r.body);
    // Nothing above stored a file.
    let left = std::fs::read_dir(app.dir.join("storage").join(&cid))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0);
    // A stored name ending in `.part` is still cleaned up when replaced.
    let r = create(Form::new().file("files", "cat.part", b"meow").finish()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rid = r.body["id"].as_str().unwrap().to_owned();
    let cat = names(&r.body["files"])[0].to_owned();
    assert!(cat.ends_with(".part"), "{cat}");
    let dir = storage(&app, &cid, &rid);
    wait_stored(&dir, &[&cat]).await;
    let r = app
        .patch(&format!("/api/collections/docs/records/{rid}"), json!({"files": []}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    wait_stored(&dir, &[]).await;
}

/// Parts after a big one: the parser reads ahead, which must never pass
/// for oversized headers (a regression seen with 256 KB files).
#[actix_web::test]
async fn files_many_parts_after_big_files_are_read() {
    let app = spawn_app().await;
    docs(&app).await;
    for i in 0..24u32 {
        let big: Vec<u8> = (0..262_144u32)
            .map(|b| (b.wrapping_mul(2_654_435_761) >> (i % 24)) as u8)
            .collect();
        let body = Form::new()
            .text("title", "t")
            .file("files", "big.bin", &big)
            .file("avatar", "cover.png", PNG)
            .file("files", "again.bin", &big)
            .text("views", "1")
            .finish();
        let r = form::send(&app, Method::POST, "/api/collections/docs/records", body, None).await;
        assert_eq!(r.status, 200, "upload {i}: {}", r.body);
    }
    // Headers that never end are still refused.
    let mut body = format!("--{}\r\nContent-Disposition: form-data; name=\"x\"\r\n", form::BOUNDARY).into_bytes();
    for i in 0..40_000 {
        body.extend_from_slice(format!("X-Pad-{i}: {}\r\n", "y".repeat(10)).as_bytes());
    }
    let r = form::send(&app, Method::POST, "/api/collections/docs/records", body, None).await;
    assert_eq!(r.status, 400, "{}", r.body);
}
