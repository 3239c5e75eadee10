//! S3 file storage against a real S3-compatible server: moto
//! (tests/support/s3_server.py, started per test on a free loopback port
//! with signature checking on). `scripts/test.sh` installs it into
//! `/var/tmp/basalt-moto-venv` (or set `BASALT_MOTO_PYTHON` to a python
//! that has `moto[server]`). Without it the tests skip with a message,
//! except in CI (`CI` set), where they fail.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use basalt::files::s3::{S3Config, S3};
use basalt::files::{Body, Object};
use bytes::Bytes;
use futures_util::TryStreamExt;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

const BUCKET: &str = "basalt-files";
const BACKUPS: &str = "basalt-backups";

/// The moto server; killed (and reaped) on drop, so a failing test does
/// not leave it behind. Its stdin is a pipe held here: if the test process
/// dies without dropping this, the server sees EOF and exits by itself.
struct S3Server {
    child: Child,
    port: u16,
    access_key: String,
    secret: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A python with `moto[server]`, if there is one.
fn moto_python() -> Option<PathBuf> {
    let python = std::env::var_os("BASALT_MOTO_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/basalt-moto-venv/bin/python"));
    let ok = Command::new(&python)
        .args(["-c", "import moto.server, boto3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(python)
}

/// Starts moto with the test buckets, or None (the test skips) when moto
/// is not installed outside CI.
fn start() -> Option<S3Server> {
    let Some(python) = moto_python() else {
        if std::env::var_os("CI").is_some() {
            panic!("moto[server] is not installed, and CI must run the S3 tests: see scripts/test.sh");
        }
        eprintln!(
            "SKIPPED: moto[server] is not installed (scripts/test.sh installs it into \
             /var/tmp/basalt-moto-venv; or set BASALT_MOTO_PYTHON)"
        );
        return None;
    };
    let child = Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/s3_server.py"))
        .args([BUCKET, BACKUPS])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start tests/support/s3_server.py");
    let mut server = S3Server {
        child,
        port: 0,
        access_key: String::new(),
        secret: String::new(),
    };
    let stdout = server.child.stdout.take().expect("server stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read server stdout");
    let parts: Vec<&str> = line.split_whitespace().collect();
    match parts.as_slice() {
        ["ready", port, key, secret] => {
            server.port = port.parse().expect("port");
            server.access_key = (*key).to_owned();
            server.secret = (*secret).to_owned();
        }
        _ => panic!("s3_server.py did not start: {line:?}"),
    }
    Some(server)
}

impl S3Server {
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn config(&self, bucket: &str) -> S3Config {
        S3Config {
            bucket: bucket.into(),
            region: "us-east-1".into(),
            endpoint: self.endpoint(),
            access_key: self.access_key.clone(),
            secret: self.secret.clone(),
            force_path_style: true,
        }
    }

    /// A client of the bucket, to check what the server stores.
    fn client(&self, bucket: &str) -> S3 {
        S3::new(self.config(bucket)).expect("S3 client")
    }

    /// The object's ETag as boto3 (AWS's own client) reads it: S3 makes a
    /// multipart object's `<md5 of the parts' md5s>-<number of parts>`.
    fn etag(&self, bucket: &str, key: &str) -> String {
        let script = "import boto3, sys; print(boto3.client('s3', endpoint_url=sys.argv[1], \
            region_name='us-east-1', aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3])\
            .head_object(Bucket=sys.argv[4], Key=sys.argv[5])['ETag'])";
        let out = Command::new(moto_python().expect("moto python"))
            .args([
                "-c",
                script,
                &self.endpoint(),
                &self.access_key,
                &self.secret,
                bucket,
                key,
            ])
            .output()
            .expect("run boto3");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The API's `s3` settings section for `bucket`.
    fn settings(&self, bucket: &str) -> Value {
        json!({"enabled": true, "bucket": bucket, "region": "us-east-1", "endpoint": self.endpoint(),
               "accessKey": self.access_key, "secret": self.secret, "forcePathStyle": true})
    }
}

async fn read_all(obj: Object) -> Vec<u8> {
    match obj.body {
        Body::Stream(s) => s.try_collect::<Vec<Bytes>>().await.expect("read body").concat(),
        Body::File { .. } => panic!("an S3 object is a stream"),
    }
}

/// Bytes that differ at every offset (a misplaced range shows).
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ (i / 251) as u8).collect()
}

#[actix_web::test]
async fn s3_backend_round_trip() {
    let Some(server) = start() else { return };
    // Parts at S3's 5 MiB floor, so 11 MiB is a three-part upload.
    let s3 = server.client(BUCKET).with_part_size(5 * 1024 * 1024);
    let dir = tempfile::tempdir().unwrap();

    let small = pattern(1000);
    let small_path = dir.path().join("small");
    std::fs::write(&small_path, &small).unwrap();
    s3.put_file("col/rec/small.txt", &small_path).await.unwrap();
    let meta = s3.head("col/rec/small.txt").await.unwrap().expect("stored");
    assert_eq!(meta.size, 1000);
    assert!(meta.modified > std::time::UNIX_EPOCH);
    let whole = s3.get("col/rec/small.txt", None).await.unwrap().expect("stored");
    assert_eq!(whole.meta.size, 1000);
    assert_eq!(read_all(whole).await, small);
    let part = s3
        .get("col/rec/small.txt", Some(10..20))
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(part.meta.size, 1000, "the whole object's size, for Content-Range");
    assert_eq!(read_all(part).await, &small[10..20]);
    let empty = s3.get("col/rec/small.txt", Some(5..5)).await.unwrap().expect("stored");
    assert_eq!(read_all(empty).await, b"");

    let big = pattern(11 * 1024 * 1024 + 123);
    let big_path = dir.path().join("big");
    std::fs::write(&big_path, &big).unwrap();
    s3.put_file("col/rec/big.bin", &big_path).await.unwrap();
    assert_eq!(
        s3.head("col/rec/big.bin").await.unwrap().expect("stored").size,
        big.len() as u64
    );
    assert!(
        server.etag(BUCKET, "col/rec/big.bin").ends_with("-3\""),
        "uploaded in three parts"
    );
    assert!(
        !server.etag(BUCKET, "col/rec/small.txt").contains('-'),
        "uploaded in one PUT"
    );
    // Across the first part boundary, and the tail.
    let boundary = 5 * 1024 * 1024;
    let across = s3
        .get("col/rec/big.bin", Some(boundary - 7..boundary + 9))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        read_all(across).await,
        &big[boundary as usize - 7..boundary as usize + 9]
    );
    let tail = s3
        .get("col/rec/big.bin", Some(big.len() as u64 - 5..big.len() as u64))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read_all(tail).await, &big[big.len() - 5..]);
    let whole = s3.get("col/rec/big.bin", None).await.unwrap().unwrap();
    assert!(read_all(whole).await == big, "the multipart object reads back whole");

    s3.put_bytes("col/rec/thumbs_small.txt/10x10_small.txt", Bytes::from_static(b"thumb"))
        .await
        .unwrap();
    s3.put_bytes("col/other/a.txt", Bytes::from_static(b"a")).await.unwrap();
    s3.put_bytes("col/recx/a.txt", Bytes::from_static(b"x")).await.unwrap();

    let mut keys: Vec<String> = s3.list("col/rec").await.unwrap().into_iter().map(|(k, _)| k).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "col/rec/big.bin",
            "col/rec/small.txt",
            "col/rec/thumbs_small.txt/10x10_small.txt"
        ],
        "a prefix is a directory: col/recx is not under col/rec"
    );
    let listed = s3.list("").await.unwrap();
    assert_eq!(listed.len(), 5);
    let small_meta = listed.iter().find(|(k, _)| k == "col/rec/small.txt").unwrap().1;
    assert_eq!(small_meta.size, 1000);

    s3.delete("col/other/a.txt").await.unwrap();
    s3.delete("col/other/a.txt").await.unwrap(); // gone already: fine
    assert!(s3.head("col/other/a.txt").await.unwrap().is_none());
    assert!(s3.get("col/other/a.txt", None).await.unwrap().is_none());

    s3.delete_prefix("col/rec/").await.unwrap();
    assert!(s3.list("col/rec").await.unwrap().is_empty());
    assert!(
        s3.head("col/recx/a.txt").await.unwrap().is_some(),
        "a sibling prefix survives"
    );
    assert!(s3.delete_prefix("").await.is_err(), "never the whole bucket");
    assert!(s3.put_bytes("../escape", Bytes::new()).await.is_err());
}

#[actix_web::test]
async fn s3_backend_errors_say_why() {
    let Some(server) = start() else { return };
    let mut wrong = server.config(BUCKET);
    wrong.secret = "not-the-secret".into();
    let err = S3::new(wrong)
        .unwrap()
        .put_bytes("a/b", Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("SignatureDoesNotMatch"), "{err}");
    let missing = server.client("no-such-bucket");
    let err = missing.put_bytes("a/b", Bytes::from_static(b"x")).await.unwrap_err();
    assert!(err.to_string().contains("NoSuchBucket"), "{err}");
    let err = missing.list("").await.unwrap_err();
    assert!(err.to_string().contains("NoSuchBucket"), "{err}");
}

async fn test_s3(app: &TestApp, filesystem: &str) -> crate::helpers::Resp {
    app.post("/api/settings/test/s3", json!({"filesystem": filesystem}))
        .await
}

fn message(r: &crate::helpers::Resp) -> &str {
    r.body["message"].as_str().unwrap_or("")
}

#[actix_web::test]
async fn settings_test_s3_checks_the_saved_bucket() {
    let Some(server) = start() else { return };
    let app = spawn_app().await;
    let r = app
        .patch(
            "/api/settings",
            json!({"s3": server.settings(BUCKET), "backups": {"s3": server.settings(BACKUPS)}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    for fs in ["storage", "backups"] {
        let r = test_s3(&app, fs).await;
        assert_eq!(r.status, 204, "{fs}: {:?}", r.body);
    }
    // The probe cleans up after itself.
    assert!(server.client(BUCKET).list("").await.unwrap().is_empty());
    assert!(server.client(BACKUPS).list("").await.unwrap().is_empty());
    // Superusers only.
    let guest = app
        .guest_post("/api/settings/test/s3", json!({"filesystem": "storage"}))
        .await;
    assert_eq!(guest.status, 401);

    let mut wrong = server.settings(BUCKET);
    wrong["secret"] = json!("not-the-secret");
    assert_eq!(app.patch("/api/settings", json!({"s3": wrong})).await.status, 200);
    let r = test_s3(&app, "storage").await;
    assert_eq!(r.status, 400);
    assert!(
        message(&r).starts_with("Failed to test the S3 filesystem. Raw error:"),
        "{:?}",
        r.body
    );
    assert!(message(&r).contains("failed to upload a test file"), "{:?}", r.body);
    assert!(message(&r).contains("SignatureDoesNotMatch"), "{:?}", r.body);
    assert!(!message(&r).contains("not-the-secret"), "the secret is never shown");

    let r = app
        .patch("/api/settings", json!({"s3": server.settings("no-such-bucket")}))
        .await;
    assert_eq!(r.status, 200);
    let r = test_s3(&app, "storage").await;
    assert_eq!(r.status, 400);
    assert!(message(&r).contains("NoSuchBucket"), "{:?}", r.body);

    // Nothing listens there: refused at once, a 400 that says so.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap().port();
    drop(listener);
    let mut unreachable = server.settings(BUCKET);
    unreachable["endpoint"] = json!(format!("http://127.0.0.1:{closed}"));
    assert_eq!(app.patch("/api/settings", json!({"s3": unreachable})).await.status, 200);
    let r = test_s3(&app, "storage").await;
    assert_eq!(r.status, 400);
    assert!(message(&r).contains("cannot connect"), "{:?}", r.body);
}

/// Whether `key` is in `<dir>/storage` (the local backend).
fn on_disk(app: &TestApp, key: &str) -> bool {
    app.dir.join("storage").join(key).is_file()
}

#[actix_web::test]
async fn switching_settings_moves_new_writes() {
    let Some(server) = start() else { return };
    let app = spawn_app().await;
    let bucket = server.client(BUCKET);
    let storage = &app.state.storage;
    storage
        .put_bytes("c/r/before.txt", Bytes::from_static(b"local"))
        .await
        .unwrap();
    assert!(on_disk(&app, "c/r/before.txt"));

    let r = app.patch("/api/settings", json!({"s3": server.settings(BUCKET)})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    storage
        .put_bytes("c/r/after.txt", Bytes::from_static(b"remote"))
        .await
        .unwrap();
    assert!(!on_disk(&app, "c/r/after.txt"));
    assert_eq!(bucket.head("c/r/after.txt").await.unwrap().map(|m| m.size), Some(6));
    // Not migrated (as PocketBase): the earlier file stays on disk only.
    assert!(on_disk(&app, "c/r/before.txt"));
    assert!(storage.head("c/r/before.txt").await.unwrap().is_none());

    // A save that leaves `s3` as it is keeps the backend; a restart
    // comes back to the bucket.
    let r = app
        .patch("/api/settings", json!({"meta": {"appName": "Renamed"}}))
        .await;
    assert_eq!(r.status, 200);
    let app = app.restart().await;
    let got = app
        .state
        .storage
        .get("c/r/after.txt", None)
        .await
        .unwrap()
        .expect("in the bucket");
    assert_eq!(read_all(got).await, b"remote");

    let r = app.patch("/api/settings", json!({"s3": {"enabled": false}})).await;
    assert_eq!(r.status, 200);
    app.state
        .storage
        .put_bytes("c/r/local-again.txt", Bytes::from_static(b"l"))
        .await
        .unwrap();
    assert!(on_disk(&app, "c/r/local-again.txt"));
    assert!(bucket.head("c/r/local-again.txt").await.unwrap().is_none());
}

#[actix_web::test]
async fn dashboard_saves_and_tests_the_bucket() {
    let Some(server) = start() else { return };
    let app = spawn_app().await;
    let mut b = crate::admin_support::Browser::login(&app).await;
    let page = b.get("/_/settings").await;
    page.assert_has("File storage (S3)");
    page.assert_has(r#"<input type="hidden" name="filesystem" value="storage">"#);
    page.assert_has(r#"<input type="hidden" name="filesystem" value="backups">"#);

    let endpoint = server.endpoint();
    let mut fields = vec![
        ("s3.enabled", "on"),
        ("s3.endpoint", endpoint.as_str()),
        ("s3.bucket", BUCKET),
        ("s3.region", "us-east-1"),
        ("s3.accessKey", server.access_key.as_str()),
        ("s3.secret", server.secret.as_str()),
        ("s3.forcePathStyle", "on"),
    ];
    let r = b.post("/_/settings/s3", &fields).await;
    assert_eq!((r.status, r.location()), (303, "/_/settings"), "{}", r.body);
    let saved = app.get("/api/settings").await.body;
    assert_eq!(saved["s3"]["enabled"], true);
    assert_eq!(saved["s3"]["bucket"], BUCKET);
    let page = b.get("/_/settings").await;
    assert!(!page.body.contains(&server.secret), "the secret is never rendered");
    page.assert_has("A secret is stored. Leave empty to keep it.");

    // Saved again with the secret field empty: the stored one is kept.
    fields.retain(|(k, _)| *k != "s3.secret");
    let r = b.post("/_/settings/s3", &fields).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let r = b.post("/_/settings/s3/test", &[("filesystem", "storage")]).await;
    assert_eq!((r.status, r.location()), (303, "/_/settings"), "{}", r.body);
    b.get("/_/settings")
        .await
        .assert_has("S3 works: a test file was written to bucket &#34;basalt-files&#34;, read back and deleted.");

    fields.push(("s3.secret", "not-the-secret"));
    assert_eq!(b.post("/_/settings/s3", &fields).await.status, 303);
    let r = b.post("/_/settings/s3/test", &[("filesystem", "storage")]).await;
    assert_eq!(r.status, 400, "{}", r.body);
    r.assert_has(r#"id="e-s3-test""#);
    r.assert_has("SignatureDoesNotMatch");
    // The backups bucket is off: its test says so.
    let r = b.post("/_/settings/s3/test", &[("filesystem", "backups")]).await;
    assert_eq!(r.status, 400);
    r.assert_has(r#"id="e-backups-s3-test""#);
    r.assert_has("S3 storage filesystem is not enabled.");
    let r = b.post("/_/settings/s3/test", &[("filesystem", "elsewhere")]).await;
    assert_eq!(r.status, 400);
    // Without the CSRF token: refused, nothing tested.
    b.csrf = String::new();
    let r = b.post("/_/settings/s3/test", &[("filesystem", "storage")]).await;
    assert_eq!(r.status, 403, "{}", r.body);
}

/// Waits (bounded) until the bucket holds exactly `want` under `prefix`:
/// removals happen after the commit, in the background.
async fn wait_in_bucket(bucket: &S3, prefix: &str, want: &[String]) {
    let mut want = want.to_vec();
    want.sort();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut now: Vec<String> = bucket.list(prefix).await.unwrap().into_iter().map(|(k, _)| k).collect();
        now.sort();
        if now == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "in the bucket {now:?}, want {want:?}"
        );
        actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[actix_web::test]
async fn uploads_go_to_the_bucket_and_leave_with_their_record() {
    use crate::form::{self, Form};
    use awc::http::Method;
    let Some(server) = start() else { return };
    let app = spawn_app().await;
    let r = app.patch("/api/settings", json!({"s3": server.settings(BUCKET)})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let coll = app
        .create_collection(json!({
            "name": "docs",
            "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
            "schema": {"type": "object", "properties": {
                "title": {"type": "string"},
                "files": {"type": "array", "items": {"type": "string"}, "x-file": {"maxSelect": 3, "maxSize": 30000000}}
            }}
        }))
        .await;
    let cid = coll["id"].as_str().unwrap().to_owned();
    let big = pattern(6 * 1024 * 1024);
    let body = Form::new()
        .text("title", "hello")
        .file("files", "a.txt", b"alpha")
        .file("files", "big.bin", &big)
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
    let rid = r.body["id"].as_str().unwrap().to_owned();
    let names: Vec<String> = r.body["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 2);
    let bucket = server.client(BUCKET);
    let prefix = format!("{cid}/{rid}/");
    let key = |name: &str| format!("{prefix}{name}");
    let got = bucket.get(&key(&names[0]), None).await.unwrap().expect("in the bucket");
    assert_eq!(read_all(got).await, b"alpha");
    let got = bucket.get(&key(&names[1]), None).await.unwrap().expect("in the bucket");
    assert!(read_all(got).await == big);
    assert!(
        !app.dir.join("storage").join(&cid).exists(),
        "nothing on the local disk"
    );

    // Replacing a file removes the old object (after the commit).
    let path = format!("/api/collections/docs/records/{rid}");
    let body = Form::new()
        .file("files+", "c.txt", b"gamma")
        .text("files-", &names[0])
        .finish();
    let r = form::send(&app, Method::PATCH, &path, body, Some(&app.token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let now: Vec<String> = r.body["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| key(v.as_str().unwrap()))
        .collect();
    assert_eq!(now.len(), 2);
    wait_in_bucket(&bucket, &prefix, &now).await;

    // Deleting the record removes its objects.
    assert_eq!(app.delete(&path).await.status, 204);
    wait_in_bucket(&bucket, &prefix, &[]).await;

    // Deleting the collection removes all of its records' objects.
    let body = Form::new().file("files", "d.txt", b"delta").finish();
    let r = form::send(
        &app,
        Method::POST,
        "/api/collections/docs/records",
        body,
        Some(&app.token),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(bucket.list(&cid).await.unwrap().len(), 1);
    assert_eq!(app.delete("/api/collections/docs").await.status, 204);
    wait_in_bucket(&bucket, &cid, &[]).await;
}
