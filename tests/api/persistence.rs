//! Durability: data survives restarts and `kill -9` during concurrent writes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::helpers::{client, read, spawn_app, SU_EMAIL, SU_PASSWORD};

#[actix_web::test]
async fn data_survives_restart() {
    let app = spawn_app().await;
    app.posts().await;
    let mut written = Vec::new();
    for i in 0..50 {
        let r = app
            .post(
                "/api/collections/posts/records",
                json!({"title": format!("t{i}"), "views": i}),
            )
            .await;
        written.push(r.body);
    }
    let id = written[0]["id"].as_str().unwrap().to_owned();
    app.patch(
        &format!("/api/collections/posts/records/{id}"),
        json!({"title": "changed"}),
    )
    .await;
    let deleted = written[1]["id"].as_str().unwrap().to_owned();
    app.delete(&format!("/api/collections/posts/records/{deleted}")).await;

    let app = app.restart().await;
    let list = app.get("/api/collections/posts/records?perPage=100").await;
    assert_eq!(list.body["totalItems"], 49);
    assert_eq!(
        app.get(&format!("/api/collections/posts/records/{id}")).await.body["title"],
        "changed"
    );
    assert_eq!(
        app.get(&format!("/api/collections/posts/records/{deleted}"))
            .await
            .status,
        404
    );
    for w in &written[2..] {
        let got = app
            .get(&format!("/api/collections/posts/records/{}", w["id"].as_str().unwrap()))
            .await;
        assert_eq!(&got.body, w);
    }
    // The collection definition and the superuser survived too (restart logged in).
    assert_eq!(
        app.get("/api/collections/posts").await.body["schema"]["required"],
        json!(["title"])
    );
}

pub(crate) fn basalt() -> Command {
    Command::new(env!("CARGO_BIN_EXE_basalt"))
}

/// A server process that is killed when the test ends, even by a panic.
pub(crate) struct Server(pub(crate) Child);

impl std::ops::Deref for Server {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the real binary and returns it with its base URL (read from its
/// first line of output).
pub(crate) fn start_binary(dir: &Path) -> (Server, String) {
    let mut child = crate::helpers::on_suite_engine(&mut basalt(), dir)
        .args(["serve", "--http", "127.0.0.1:0", "--dir"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start basalt");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("read first line");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_owned();
    (Server(child), url)
}

pub(crate) async fn login(base: &str) -> String {
    let res = client()
        .post(format!("{base}/api/collections/_superusers/auth-with-password"))
        .send_json(&json!({"identity": SU_EMAIL, "password": SU_PASSWORD}))
        .await
        .expect("login");
    read(res).await.body["token"].as_str().expect("token").to_owned()
}

#[actix_web::test]
async fn acknowledged_writes_survive_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let status = crate::helpers::on_suite_engine(&mut basalt(), dir)
        .args(["superuser", "upsert", SU_EMAIL, SU_PASSWORD, "--dir"])
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success());
    let (mut child, mut base) = start_binary(dir);
    let token = login(&base).await;
    let res = client()
        .post(format!("{base}/api/collections"))
        .insert_header(("Authorization", token))
        .send_json(&json!({"name": "log", "createRule": "", "schema": {"type": "object",
            "properties": {"writer": {"type": "integer"}, "n": {"type": "integer"}, "pad": {"type": "string"}}}}))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);

    let acked: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    for round in 0..3 {
        let count = Arc::new(AtomicUsize::new(0));
        let reached = Arc::new(tokio::sync::Notify::new());
        let target = 300 + round * 100;
        let mut writers = Vec::new();
        for w in 0..8u32 {
            let (base, acked, count, reached) = (base.clone(), acked.clone(), count.clone(), reached.clone());
            writers.push(actix_web::rt::spawn(async move {
                let c = client();
                for n in 0.. {
                    let id = format!("r{round}w{w}n{n}");
                    let body = json!({"id": id, "writer": w, "n": n, "pad": "x".repeat(100)});
                    let Ok(res) = c
                        .post(format!("{base}/api/collections/log/records"))
                        .send_json(&body)
                        .await
                    else {
                        break; // the server died: stop writing
                    };
                    if res.status().as_u16() != 200 {
                        break;
                    }
                    acked.lock().unwrap().push((id, body));
                    if count.fetch_add(1, Ordering::SeqCst) + 1 == target {
                        reached.notify_one();
                    }
                }
            }));
        }
        // Kill -9 once enough writes were acknowledged, while writers are mid-flight.
        reached.notified().await;
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        for w in writers {
            let _ = w.await;
        }

        let (next, next_base) = start_binary(dir);
        child = next;
        let c = client();
        let token = login(&next_base).await;
        let acked_now = acked.lock().unwrap().clone();
        for (id, body) in &acked_now {
            let res = c
                .get(format!("{next_base}/api/collections/log/records/{id}"))
                .insert_header(("Authorization", token.clone()))
                .send()
                .await
                .unwrap();
            let got = read(res).await;
            assert_eq!(
                got.status, 200,
                "acknowledged record {id} lost after kill -9 (round {round})"
            );
            for key in ["writer", "n", "pad"] {
                assert_eq!(got.body[key], body[key], "record {id} corrupted");
            }
        }
        // Later rounds write to the restarted server.
        base = next_base;
    }
    child.kill().ok();
    child.wait().ok();
}

#[actix_web::test]
async fn locked_data_dir_is_a_clear_error() {
    let app = spawn_app().await;
    let out = crate::helpers::on_suite_engine(&mut basalt(), &app.dir)
        .args(["serve", "--http", "127.0.0.1:0", "--dir"])
        .arg(&app.dir)
        .output()
        .expect("run basalt");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already in use"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(app.guest_get("/api/health").await.status, 200);
}

#[actix_web::test]
async fn sigterm_stops_gracefully_with_exit_0() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    assert!(crate::helpers::on_suite_engine(&mut basalt(), dir)
        .args(["superuser", "upsert", SU_EMAIL, SU_PASSWORD, "--dir"])
        .arg(dir)
        .status()
        .unwrap()
        .success());
    let (mut child, base) = start_binary(dir);
    let token = login(&base).await;
    let c = client();
    let res = c
        .post(format!("{base}/api/collections"))
        .insert_header(("Authorization", token.clone()))
        .send_json(&json!({"name": "notes", "createRule": "", "schema": {"type": "object"}}))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    for i in 0..20 {
        let res = c
            .post(format!("{base}/api/collections/notes/records"))
            .send_json(&json!({"i": i}))
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
    }
    // SAFETY: plain kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "graceful stop must exit 0");
    let (mut child, base) = start_binary(dir);
    let token = login(&base).await;
    let res = c
        .get(format!("{base}/api/collections/notes/records"))
        .insert_header(("Authorization", token))
        .send()
        .await
        .unwrap();
    assert_eq!(read(res).await.body["totalItems"], 20);
    child.kill().ok();
    child.wait().ok();
}

#[actix_web::test]
async fn first_start_prints_a_working_setup_link() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Server(
        crate::helpers::on_suite_engine(&mut basalt(), tmp.path())
            .args(["serve", "--http", "127.0.0.1:0", "--dir"])
            .arg(tmp.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start basalt"),
    );
    let mut out = BufReader::new(child.stdout.as_mut().expect("stdout"));
    let mut link = None;
    for _ in 0..5 {
        let mut line = String::new();
        out.read_line(&mut line).expect("read a line");
        if let Some(url) = line.split_whitespace().find(|w| w.contains("/_/setup?token=")) {
            link = Some(url.to_owned());
            break;
        }
    }
    let link = link.expect("a setup link among the first lines");
    let mut res = client().get(&link).send().await.expect("GET the setup link");
    assert_eq!(res.status().as_u16(), 200);
    let body = String::from_utf8_lossy(&res.body().await.unwrap()).into_owned();
    assert!(body.contains("Create superuser"), "{body}");
}
