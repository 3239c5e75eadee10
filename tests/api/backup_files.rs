//! Backups hold the stored files (issue 15, item 7): files uploaded as the
//! SDKs upload them (or put under `<dir>/storage` directly) survive backup →
//! restore byte for byte, with their times (backups made through the API,
//! the dashboard or the CLI; restored with the CLI: `POST
//! /api/backups/{key}/restore` answers 400, restoring is offline), a file
//! removed while a backup runs is still in it when the snapshot names it, crafted
//! backups (paths out of the data dir, oversize entries) are refused
//! before anything is written, and backups made before files were backed
//! up still restore.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bytes::Bytes;
use serde_json::json;
use sha2::{Digest, Sha256};

use awc::http::Method;

use super::admin_support::Browser;
use super::form::{self, Form, PNG};
use super::helpers::{spawn_app, start, TestApp, SU_EMAIL, SU_PASSWORD};

fn basalt() -> Command {
    Command::new(env!("CARGO_BIN_EXE_basalt"))
}

/// `basalt backup restore FILE --dir DIR`.
fn cli_restore(file: &Path, dir: &Path) -> Output {
    crate::helpers::on_suite_engine(&mut basalt(), dir)
        .args(["backup", "restore"])
        .arg(file)
        .arg("--dir")
        .arg(dir)
        .output()
        .expect("run basalt")
}

/// Bytes of every value, different for every `seed` (xorshift).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A collection whose records name a stored file in `file` (a plain
/// string here: what matters to backups is the key it leads to).
async fn docs(app: &TestApp) -> String {
    let c = app
        .create_collection(json!({
            "name": "docs",
            "listRule": "", "viewRule": "",
            "schema": {
                "type": "object",
                "properties": {"title": {"type": "string"}, "file": {"type": "string"}},
                "additionalProperties": false
            }
        }))
        .await;
    c["id"].as_str().unwrap().to_owned()
}

/// Creates a record naming a new file stored under its key, as an upload
/// does (file first, then the record); returns (record id, key, bytes).
async fn doc_with_file(app: &TestApp, collection: &str, name: &str, bytes: Vec<u8>) -> (String, String, Vec<u8>) {
    let r = app
        .post("/api/collections/docs/records", json!({"title": name, "file": name}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let key = basalt::files::key(collection, &id, name);
    app.state
        .storage
        .put_bytes(&key, Bytes::from(bytes.clone()))
        .await
        .expect("store file");
    (id, key, bytes)
}

/// Downloads a backup over the API with a superuser file token.
async fn download(app: &TestApp, key: &str, to: &Path) {
    let token = app.post("/api/files/token", json!({})).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut res = app
        .client
        .get(format!("{}/api/backups/{key}?token={token}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body = res.body().limit(1 << 30).await.unwrap();
    std::fs::write(to, &body).unwrap();
}

/// Starts a server on a restored dir, logged in.
async fn serve(dir: &Path) -> TestApp {
    let mut app = start(dir, None).await;
    app.token = app.login("_superusers", SU_EMAIL, SU_PASSWORD).await;
    app
}

/// Every file under `root` (relative key → bytes).
fn tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let key = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.push((key, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[actix_web::test]
async fn files_survive_an_api_backup_and_a_cli_restore_byte_for_byte() {
    let app = spawn_app().await;
    let c = docs(&app).await;
    let mut stored = Vec::new();
    // Sizes around the copy buffer (256 KiB), an empty-ish one, a big one.
    for (i, len) in [1usize, 1000, 256 * 1024, 256 * 1024 + 1, 3 * 1024 * 1024 + 7]
        .into_iter()
        .enumerate()
    {
        stored.push(doc_with_file(&app, &c, &format!("f{i}_abcdefghij.bin"), noise(len, i as u64)).await);
    }
    // A thumbnail-like nested key of the first record.
    let thumb = format!("{c}/{}/thumbs_f0_abcdefghij.bin/100x100_f0_abcdefghij.bin", stored[0].0);
    app.state
        .storage
        .put_bytes(&thumb, Bytes::from_static(b"thumb"))
        .await
        .unwrap();
    let before = tree(&app.dir.join("storage"));
    assert_eq!(before.len(), 6);

    assert_eq!(
        app.post("/api/backups", json!({"name": "files.backup"})).await.status,
        204
    );
    // No retained copies are left behind once it is written.
    assert!(!app.dir.join(".retained").exists());
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("files.backup");
    download(&app, "files.backup", &file).await;
    assert_eq!(
        std::fs::read(&file).unwrap(),
        std::fs::read(app.dir.join("backups/files.backup")).unwrap()
    );
    let info = basalt::core::backups::archive::verify(&file).unwrap();
    assert_eq!(
        (info.files, info.kept),
        (6, basalt::core::backups::archive::FilesKept::InBackup)
    );

    let restored = tmp.path().join("restored");
    let out = cli_restore(&file, &restored);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("6 files"), "{:?}", out);
    assert_eq!(tree(&restored.join("storage")), before);
    // Nothing of the staging is left.
    assert!(!restored.join(".restoring").exists());
    let copy = serve(&restored).await;
    for (id, key, bytes) in &stored {
        let r = copy.get(&format!("/api/collections/docs/records/{id}")).await;
        assert_eq!(r.status, 200);
        let name = r.body["file"].as_str().unwrap();
        assert!(key.ends_with(name));
        // Through the restored server's own storage handle, as served.
        let meta = copy.state.storage.head(key).await.unwrap().expect("restored file");
        assert_eq!(meta.size, bytes.len() as u64);
    }
    copy.stop().await;

    // Restoring again onto it is refused: it holds a database now.
    let out = cli_restore(&file, &restored);
    assert_eq!(out.status.code(), Some(1));
    // (On PostgreSQL: the database, or the dir's files, "already holds" data.)
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds"));
}

/// A collection with PocketBase-style file fields (uploads).
async fn gallery(app: &TestApp) -> String {
    let c = app
        .create_collection(json!({
            "name": "gallery",
            "listRule": "", "viewRule": "", "createRule": "", "updateRule": "",
            "schema": {
                "type": "object",
                "properties": {
                    "title": {"type": "string"},
                    "cover": {"type": "string", "x-file": {"maxSize": 1000000, "thumbs": ["10x10"]}},
                    "files": {"type": "array", "items": {"type": "string"}, "x-file": {"maxSelect": 5, "maxSize": 10000000}}
                },
                "additionalProperties": false
            }
        }))
        .await;
    c["id"].as_str().unwrap().to_owned()
}

/// Uploads a record with a cover and `files` (multipart, as the SDKs send
/// it); returns the record.
async fn upload(app: &TestApp, title: &str, files: &[(&str, Vec<u8>)]) -> serde_json::Value {
    let mut f = Form::new().text("title", title).file("cover", "cover.png", PNG);
    for (name, bytes) in files {
        f = f.file("files", name, bytes);
    }
    let r = form::send(
        app,
        Method::POST,
        "/api/collections/gallery/records",
        f.finish(),
        Some(&app.token),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// Every file a `gallery` record names, in the restored dir, is there
/// with `bytes_of`'s bytes.
fn assert_named_files_present(
    restored: &Path,
    cid: &str,
    records: &[serde_json::Value],
    bytes_of: impl Fn(&str) -> Vec<u8>,
) {
    for rec in records {
        let id = rec["id"].as_str().unwrap();
        let mut names: Vec<&str> = rec["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        if let Some(c) = rec["cover"].as_str().filter(|c| !c.is_empty()) {
            names.push(c);
        }
        for name in names {
            let path = restored.join("storage").join(cid).join(id).join(name);
            let got = std::fs::read(&path).unwrap_or_else(|e| panic!("{path:?} is named by {rec} but missing: {e}"));
            assert!(got == bytes_of(name), "{path:?} differs");
        }
    }
}

#[actix_web::test]
async fn uploaded_files_survive_backup_and_restore_with_their_bytes_and_times() {
    let app = spawn_app().await;
    let cid = gallery(&app).await;
    // Small enough that a whole body stays under the upload parser's 64 KiB
    // bound on bytes read between parts (big files: the test above).
    let contents: Vec<(String, Vec<u8>)> = [1usize, 20 * 1024 + 3, 30 * 1024]
        .iter()
        .enumerate()
        .map(|(i, len)| (format!("part{i}.bin"), noise(*len, 50 + i as u64)))
        .collect();
    let files: Vec<(&str, Vec<u8>)> = contents.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
    let one = upload(&app, "one", &files).await;
    let two = upload(&app, "two", &files[..1]).await;
    // Stored names are `<stem>_<random>.<ext>`: the upload's bytes by stem.
    let bytes_of = |name: &str| -> Vec<u8> {
        if name.starts_with("cover_") {
            return PNG.to_vec();
        }
        let stem = name.rsplit_once('_').unwrap().0;
        contents
            .iter()
            .find(|(n, _)| n.strip_suffix(".bin") == Some(stem))
            .unwrap()
            .1
            .clone()
    };
    let before = tree(&app.dir.join("storage"));
    assert_eq!(before.len(), 6, "{:?}", before.iter().map(|f| &f.0).collect::<Vec<_>>());
    let times: Vec<u128> = before
        .iter()
        .map(|(k, _)| {
            ms(std::fs::metadata(app.dir.join("storage").join(k))
                .unwrap()
                .modified()
                .unwrap())
        })
        .collect();

    assert_eq!(app.post("/api/backups", json!({"name": "up.backup"})).await.status, 204);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("up.backup");
    download(&app, "up.backup", &file).await;
    let restored = tmp.path().join("restored");
    let out = cli_restore(&file, &restored);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("6 files"), "{out:?}");
    assert_eq!(tree(&restored.join("storage")), before);
    let restored_times: Vec<u128> = before
        .iter()
        .map(|(k, _)| {
            ms(std::fs::metadata(restored.join("storage").join(k))
                .unwrap()
                .modified()
                .unwrap())
        })
        .collect();
    assert_eq!(restored_times, times);

    let copy = serve(&restored).await;
    let list = copy.get("/api/collections/gallery/records?sort=title").await.body;
    let items = list["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2);
    assert_eq!((&items[0]["files"], &items[1]["files"]), (&one["files"], &two["files"]));
    assert_named_files_present(&restored, &cid, &items, bytes_of);
    // The restored server takes uploads and file changes from there.
    let r = form::send(
        &copy,
        Method::PATCH,
        &format!("/api/collections/gallery/records/{}", items[1]["id"].as_str().unwrap()),
        Form::new().file("files+", "more.bin", b"more").finish(),
        Some(&copy.token),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    copy.stop().await;
}

#[actix_web::test]
async fn files_removed_by_updates_while_a_backup_runs_stay_in_it_when_the_snapshot_names_them() {
    // The real path: an update drops a file, the record commits, and the
    // server removes the file in the background (change feed).
    let app = spawn_app().await;
    let cid = gallery(&app).await;
    let mut made = Vec::new();
    for i in 0..24u64 {
        let bytes = noise(60 * 1024, 500 + i);
        made.push((
            upload(&app, &format!("r{i:02}"), &[("data.bin", bytes.clone())]).await,
            bytes,
        ));
    }
    let updates = async {
        for (rec, _) in &made {
            let r = app
                .patch(
                    &format!("/api/collections/gallery/records/{}", rec["id"].as_str().unwrap()),
                    json!({"files": [], "cover": ""}),
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
        }
    };
    let backup = async {
        assert_eq!(
            app.post("/api/backups", json!({"name": "race.backup"})).await.status,
            204
        );
    };
    futures_util::join!(updates, backup);

    let tmp = tempfile::tempdir().unwrap();
    let restored = tmp.path().join("restored");
    let out = cli_restore(&app.dir.join("backups/race.backup"), &restored);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let copy = serve(&restored).await;
    let items = copy.get("/api/collections/gallery/records?perPage=100").await.body["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(items.len(), 24);
    let by_id = |name: &str, rec: &serde_json::Value| -> Vec<u8> {
        if name.starts_with("cover_") {
            return PNG.to_vec();
        }
        made.iter().find(|(r, _)| r["id"] == rec["id"]).unwrap().1.clone()
    };
    for rec in &items {
        assert_named_files_present(&restored, &cid, std::slice::from_ref(rec), |n| by_id(n, rec));
    }
    copy.stop().await;
}

#[actix_web::test]
async fn the_dashboard_and_the_cli_back_up_files_too() {
    let app = spawn_app().await;
    let c = docs(&app).await;
    let (_, key, bytes) = doc_with_file(&app, &c, "a_abcdefghij.txt", noise(5000, 9)).await;
    let mut b = Browser::login(&app).await;
    let r = b.post("/_/backups", &[]).await;
    assert_eq!(r.status, 303);
    b.get("/_/backups").await.assert_has("1 file,");
    let dashboard_file = std::fs::read_dir(app.dir.join("backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .unwrap();

    // The CLI backs up a stopped data dir, files included.
    let (dir, _keep) = app.stop().await;
    let tmp = tempfile::tempdir().unwrap();
    let cli_file = tmp.path().join("cli.backup");
    let out = crate::helpers::on_suite_engine(&mut basalt(), &dir)
        .args(["backup", "create"])
        .arg(&cli_file)
        .arg("--dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 file,"), "{out:?}");
    for (n, file) in [dashboard_file, cli_file].iter().enumerate() {
        let restored = tmp.path().join(format!("restored-{n}"));
        let out = cli_restore(file, &restored);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read(restored.join("storage").join(&key)).unwrap(), bytes);
    }
}

#[actix_web::test]
async fn a_file_removed_while_a_backup_runs_is_in_it_when_the_snapshot_names_it() {
    // Records name files; while a backup runs, each is let go of as the
    // lead's code does it (the record commits without the name, then the
    // file is removed). Whatever the interleaving, every record in the
    // restored snapshot that names a file must find it, with its bytes.
    let app = spawn_app().await;
    let c = docs(&app).await;
    let mut docs_made = Vec::new();
    for i in 0..40 {
        docs_made.push(doc_with_file(&app, &c, &format!("d{i}_abcdefghij.bin"), noise(256 * 1024, 100 + i)).await);
    }
    // One after the other, so the removals spread over the backup's
    // snapshot and its copying of the files.
    let removers = async {
        for (id, key, _) in &docs_made {
            let r = app
                .patch(&format!("/api/collections/docs/records/{id}"), json!({"file": ""}))
                .await;
            assert_eq!(r.status, 200);
            app.state.storage.delete(key).await.unwrap();
        }
    };
    let backup = async {
        assert_eq!(
            app.post("/api/backups", json!({"name": "race.backup"})).await.status,
            204
        );
    };
    futures_util::join!(removers, backup);
    assert!(tree(&app.dir.join("storage")).is_empty());
    assert!(!app.dir.join(".retained").exists());

    let tmp = tempfile::tempdir().unwrap();
    let restored = tmp.path().join("restored");
    let out = cli_restore(&app.dir.join("backups/race.backup"), &restored);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let copy = serve(&restored).await;
    let list = copy.get("/api/collections/docs/records?perPage=100").await.body;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 40);
    let mut named = 0;
    for (id, key, bytes) in &docs_made {
        let rec = items.iter().find(|r| r["id"] == id.as_str()).unwrap();
        if rec["file"] != "" {
            named += 1;
            let got = std::fs::read(restored.join("storage").join(key))
                .unwrap_or_else(|e| panic!("{key} is named by {rec} but missing: {e}"));
            assert!(got == *bytes, "{key} differs");
        }
    }
    eprintln!("records still naming their file in the snapshot: {named}/40");
    copy.stop().await;
}

#[actix_web::test]
async fn a_backup_of_a_store_without_files_restores() {
    let app = spawn_app().await;
    app.posts().await;
    app.post("/api/collections/posts/records", json!({"title": "kept"}))
        .await;
    assert_eq!(
        app.post("/api/backups", json!({"name": "plain.backup"})).await.status,
        204
    );
    let tmp = tempfile::tempdir().unwrap();
    let restored = tmp.path().join("restored");
    let out = cli_restore(&app.dir.join("backups/plain.backup"), &restored);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 files"), "{out:?}");
    let copy = serve(&restored).await;
    let r = copy.get("/api/collections/posts/records").await;
    assert_eq!(r.body["items"][0]["title"], "kept");
    copy.stop().await;
}

/// A restore of a backup Basalt wrote before files were backed up (a bare
/// store snapshot, format version 1).
async fn restores_old_format(file: &Path, expect_title: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let restored = tmp.path().join("restored");
    let out = cli_restore(file, &restored);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("from before files were backed up"),
        "{out:?}"
    );
    assert!(!restored.join("storage").exists());
    let copy = serve(&restored).await;
    let r = copy.get("/api/collections/posts/records").await;
    assert_eq!(r.body["items"][0]["title"], expect_title, "{:?}", r.body);
    copy.stop().await;
}

#[actix_web::test]
async fn an_old_format_backup_still_restores() {
    // Made by `basalt backup create` at a7d598e, before this format: a
    // superuser root@example.com and one `posts` record "from v1".
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/api/fixtures/v1.backup");
    restores_old_format(&fixture, "from v1").await;

    // And one written now by the store's snapshot writer alone (what a
    // version 1 backup file is).
    let app = spawn_app().await;
    app.posts().await;
    app.post("/api/collections/posts/records", json!({"title": "bare"}))
        .await;
    let (bytes, _) = app.state.store.backup_into(Vec::new()).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("bare.backup");
    std::fs::write(&file, bytes).unwrap();
    restores_old_format(&file, "bare").await;
}

/// A backup with the given file entries after a real store snapshot, with a
/// correct final checksum (a crafted file, not a damaged one).
fn crafted(store_part: &[u8], entries: &[(&[u8], u64, &[u8])]) -> Vec<u8> {
    let mut out = store_part.to_vec();
    for (key, size, bytes) in entries {
        out.push(b'F');
        out.extend_from_slice(&(key.len() as u16).to_be_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(&size.to_be_bytes());
        out.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
        out.extend_from_slice(bytes);
        out.extend_from_slice(&Sha256::digest(bytes));
    }
    out.push(b'Z');
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

#[actix_web::test]
async fn crafted_backups_are_refused_with_a_clear_error_and_write_nothing() {
    let app = spawn_app().await;
    assert_eq!(
        app.post("/api/backups", json!({"name": "base.backup"})).await.status,
        204
    );
    let base = std::fs::read(app.dir.join("backups/base.backup")).unwrap();
    // No files: header and store snapshot, then `Z` and the digest.
    let store_part = &base[..base.len() - 33];
    let tmp = tempfile::tempdir().unwrap();
    let ok = crafted(store_part, &[(b"c/r/ok_abcdefghij.txt", 2, b"ok")]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("dotdot", crafted(store_part, &[(b"../escape.txt", 3, b"bad")]), "'..'"),
        (
            "nested-dotdot",
            crafted(
                store_part,
                &[(b"c/r/ok_abcdefghij.txt", 2, b"ok"), (b"c/../../escape.txt", 3, b"bad")],
            ),
            "'..'",
        ),
        (
            "absolute",
            crafted(store_part, &[(b"/tmp/escape.txt", 3, b"bad")]),
            "absolute",
        ),
        (
            "backslash",
            crafted(store_part, &[(b"..\\escape.txt", 3, b"bad")]),
            "backslash",
        ),
        ("hidden", crafted(store_part, &[(b"c/.escape", 3, b"bad")]), "hidden"),
        // Claims far more bytes than the file holds: refused before a byte
        // is read or allocated.
        (
            "oversize",
            crafted(store_part, &[(b"c/r/big.bin", u64::MAX - 5, b"")]),
            "more than the backup holds",
        ),
        (
            "oversize-small",
            crafted(store_part, &[(b"c/r/big.bin", 1 << 20, b"tiny")]),
            "more than the backup holds",
        ),
        (
            "not-utf8",
            crafted(store_part, &[(b"c/r/\xff.bin", 1, b"x")]),
            "not UTF-8",
        ),
    ];
    // A file whose bytes do not match its own checksum (the final one fixed up).
    let mut bad_sum = ok.clone();
    let at = store_part.len() + 1 + 2 + 21 + 8 + 8;
    bad_sum[at] = b'K';
    let n = bad_sum.len();
    let digest = Sha256::digest(&bad_sum[..n - 32]);
    bad_sum[n - 32..].copy_from_slice(&digest);
    let mut cases = cases;
    cases.push(("bad-file-sum", bad_sum, "does not match its checksum"));

    for (name, bytes, expect) in cases {
        let file = tmp.path().join(format!("{name}.backup"));
        std::fs::write(&file, &bytes).unwrap();
        let target = tmp.path().join(format!("into-{name}"));
        let out = cli_restore(&file, &target);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(expect), "{name}: {err}");
        assert!(err.contains("nothing was restored"), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        // Nothing written: not even the target dir, and nothing outside it.
        assert!(!target.exists(), "{name} created {target:?}");
        for escaped in [tmp.path().join("escape.txt"), PathBuf::from("/tmp/escape.txt")] {
            assert!(!escaped.exists(), "{name} wrote {escaped:?}");
        }
    }
    // The same shape with a plain key restores (the cases above fail for
    // what they hold, not for how they were made).
    let file = tmp.path().join("ok.backup");
    std::fs::write(&file, &ok).unwrap();
    let target = tmp.path().join("into-ok");
    let out = cli_restore(&file, &target);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let restored = target.join("storage/c/r/ok_abcdefghij.txt");
    assert_eq!(std::fs::read(&restored).unwrap(), b"ok");
    // With the time it was stored at.
    let modified = std::fs::metadata(&restored).unwrap().modified().unwrap();
    assert_eq!(ms(modified), 1_700_000_000_000);
}

fn ms(t: std::time::SystemTime) -> u128 {
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
}

#[actix_web::test]
async fn a_restore_onto_a_dir_with_stored_files_is_refused_and_touches_nothing() {
    let app = spawn_app().await;
    let c = docs(&app).await;
    doc_with_file(&app, &c, "a_abcdefghij.txt", b"new".to_vec()).await;
    assert_eq!(app.post("/api/backups", json!({"name": "x.backup"})).await.status, 204);
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("data");
    std::fs::create_dir_all(target.join("storage/old")).unwrap();
    std::fs::write(target.join("storage/old/file.txt"), b"old").unwrap();
    let out = cli_restore(&app.dir.join("backups/x.backup"), &target);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already holds stored files"),
        "{out:?}"
    );
    assert_eq!(
        tree(&target),
        vec![("storage/old/file.txt".to_owned(), b"old".to_vec())]
    );
}
