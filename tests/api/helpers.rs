//! Test harness: the real server on port 0 with a fresh temp data dir, and a
//! small typed HTTP client over it.

use std::path::{Path, PathBuf};

use actix_web::dev::ServerHandle;
use awc::http::Method;
use serde_json::{json, Value};

use basalt::{App, Config};

pub const SU_EMAIL: &str = "root@example.com";
pub const SU_PASSWORD: &str = "correct horse battery";

/// A running server and its data dir.
pub struct TestApp {
    pub base: String,
    pub dir: PathBuf,
    /// Keeps the temp dir alive for the test's duration.
    _tmp: Option<tempfile::TempDir>,
    handle: ServerHandle,
    task: Option<actix_web::rt::task::JoinHandle<std::io::Result<()>>>,
    pub client: awc::Client,
    pub token: String,
    /// The server's state, for setup only (creating the first superuser as
    /// the CLI does); tests talk HTTP for everything they check.
    pub state: basalt::state::AppState,
}

/// An HTTP answer: status and parsed JSON body (`Value::Null` if empty).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub headers: awc::http::header::HeaderMap,
}

impl Resp {
    /// The `data` entry for `field` of an error answer.
    pub fn field_code(&self, field: &str) -> Option<&str> {
        self.body["data"][field]["code"].as_str()
    }
}

pub fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .finish()
}

/// Starts a server on a fresh temp dir with one superuser, logged in, and
/// auth rate limits switched off (see below).
pub async fn spawn_app() -> TestApp {
    spawn_app_on(suite_pg().as_deref()).await
}

/// [`spawn_app`] on the PostgreSQL server `pg` (a database of its own), or
/// on the embedded store.
pub async fn spawn_app_on(pg: Option<&str>) -> TestApp {
    let app = spawn_app_with_defaults_on(pg).await;
    // Auth rate limits are on by default (5 tries / 10 s per IP), and every
    // test client is 127.0.0.1: tests that exercise many logins would trip
    // them. The rate-limit tests use `spawn_app_with_defaults`.
    let r = app
        .patch("/api/settings", serde_json::json!({"rateLimits": {"enabled": false}}))
        .await;
    assert_eq!(r.status, 200, "disable rate limits: {:?}", r.body);
    app
}

/// Like [`spawn_app`], with every setting at its default.
pub async fn spawn_app_with_defaults() -> TestApp {
    spawn_app_with_defaults_on(suite_pg().as_deref()).await
}

async fn spawn_app_with_defaults_on(pg: Option<&str>) -> TestApp {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().to_path_buf();
    let mut app = start_on(&dir, Some(tmp), pg).await;
    basalt::core::records::upsert_superuser(&app.state, SU_EMAIL, SU_PASSWORD)
        .await
        .expect("create superuser");
    app.token = app.login("_superusers", SU_EMAIL, SU_PASSWORD).await;
    app
}

/// The PostgreSQL server the whole suite runs on: `BASALT_TEST_PG` (a URL;
/// `scripts/pg.sh` starts a throwaway cluster) when `BASALT_TEST_ENGINE`
/// is `postgres`; `None`, the embedded store, otherwise.
pub fn suite_pg() -> Option<String> {
    if std::env::var("BASALT_TEST_ENGINE").ok().as_deref() != Some("postgres") {
        return None;
    }
    let url = std::env::var("BASALT_TEST_PG").ok().filter(|u| !u.is_empty());
    Some(url.expect("BASALT_TEST_ENGINE=postgres needs BASALT_TEST_PG, a PostgreSQL URL"))
}

/// The configuration of a test server on `dir`, on the suite's engine
/// (see [`suite_pg`]).
pub async fn config_for(dir: &Path) -> Config {
    config_on(dir, suite_pg().as_deref()).await
}

/// The configuration of a test server on `dir`: the embedded store, or on
/// the PostgreSQL server `pg`, a database of its own for this data dir,
/// created on first use (so a restart on the same dir finds its data again).
pub async fn config_on(dir: &Path, pg: Option<&str>) -> Config {
    let mut config = Config::for_dir(dir);
    if let Some(url) = pg {
        config.store = Some(database_for(url, dir).await);
        config.store_wait = 10;
    }
    config
}

/// The name of the database of the data dir `dir`.
fn database_name(dir: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut h);
    format!("bt_{:016x}", h.finish())
}

/// `url` with its database replaced by `name`.
fn url_of_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

/// Makes `cmd` (the `basalt` binary, run on the data dir `dir`) use the
/// suite's engine: on PostgreSQL, `BASALT_STORE` names the database of
/// `dir` (created if missing; the one [`config_on`] gives a server on the
/// same dir). Nothing changes on the embedded store.
pub fn on_suite_engine<'a>(cmd: &'a mut std::process::Command, dir: &Path) -> &'a mut std::process::Command {
    let Some(url) = suite_pg() else { return cmd };
    let dir = dir.to_path_buf();
    // A thread and a runtime of its own: callers may be inside actix's.
    let db = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("BASALT_TEST_PG: connect");
            tokio::spawn(connection);
            create_database(&client, &database_name(&dir)).await;
            url_of_database(&url, &database_name(&dir))
        })
    })
    .join()
    .expect("create the test database");
    cmd.env("BASALT_STORE", db)
}

/// Creates the database `name` unless it exists.
async fn create_database(client: &tokio_postgres::Client, name: &str) {
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .expect("look up the test database")
        .is_some();
    if !exists {
        // Two tests may race to create it: the loser finds it made.
        if let Err(e) = client.batch_execute(&format!("CREATE DATABASE {name}")).await {
            assert!(
                e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE),
                "create the test database: {e}"
            );
        }
    }
}

/// A database named after `dir` on the server of `url` (created if
/// missing); returns its URL.
async fn database_for(url: &str, dir: &Path) -> String {
    let name = database_name(dir);
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("BASALT_TEST_PG: connect");
    actix_web::rt::spawn(connection);
    create_database(&client, &name).await;
    url_of_database(url, &name)
}

/// Starts a server on `dir` (which may hold data from an earlier run).
pub async fn start(dir: &Path, tmp: Option<tempfile::TempDir>) -> TestApp {
    start_on(dir, tmp, suite_pg().as_deref()).await
}

async fn start_on(dir: &Path, tmp: Option<tempfile::TempDir>, pg: Option<&str>) -> TestApp {
    let mut config = config_on(dir, pg).await;
    config.workers = 2;
    let app = build_app(config).await;
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    let handle = app.handle();
    let task = actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        base,
        dir: dir.to_path_buf(),
        _tmp: tmp,
        handle,
        task: Some(task),
        client: client(),
        token: String::new(),
        state,
    }
}

/// Builds the app. A restart on the dir of a server this process just
/// stopped needs no wait here: the store lets go of the dir at shutdown
/// and waits out sled's own lock itself (`store::embedded::open_db`), so
/// tests restart as users do.
pub async fn build_app(config: Config) -> App {
    App::build(config).await.unwrap_or_else(|e| panic!("build app: {e}"))
}

impl TestApp {
    /// A handle on a server a test built itself (a second node, a special
    /// configuration); not logged in.
    pub fn from_parts(
        base: String,
        dir: PathBuf,
        handle: ServerHandle,
        task: actix_web::rt::task::JoinHandle<std::io::Result<()>>,
        state: basalt::state::AppState,
    ) -> TestApp {
        TestApp {
            base,
            dir,
            _tmp: None,
            handle,
            task: Some(task),
            client: client(),
            token: String::new(),
            state,
        }
    }

    /// Stops gracefully and waits until the store is closed; returns the
    /// temp dir so the test can restart on it.
    pub async fn stop(mut self) -> (PathBuf, Option<tempfile::TempDir>) {
        self.state.realtime.close();
        self.handle.stop(true).await;
        if let Some(t) = self.task.take() {
            t.await.expect("server task").expect("server result");
        }
        (self.dir.clone(), self._tmp.take())
    }

    /// Restarts on the same data dir and logs the superuser in again.
    pub async fn restart(self) -> TestApp {
        let (dir, tmp) = self.stop().await;
        let mut app = start(&dir, tmp).await;
        app.token = app.login("_superusers", SU_EMAIL, SU_PASSWORD).await;
        app
    }

    pub async fn login(&self, collection: &str, identity: &str, password: &str) -> String {
        let r = self
            .call(
                Method::POST,
                &format!("/api/collections/{collection}/auth-with-password"),
                Some(json!({"identity": identity, "password": password})),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "login failed: {:?}", r.body);
        r.body["token"].as_str().expect("token").to_owned()
    }

    /// Sends a request; `token` None = guest.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>, token: Option<&str>) -> Resp {
        let mut req = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.insert_header(("Authorization", t.to_owned()));
        }
        let res = match body {
            Some(b) => req.send_json(&b).await,
            None => req.send().await,
        };
        read(res.expect("request sent")).await
    }

    /// Sends raw bytes with a content type.
    pub async fn raw(&self, method: Method, path: &str, content_type: &str, bytes: Vec<u8>) -> Resp {
        let res = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .insert_header(("Authorization", self.token.clone()))
            .insert_header(("Content-Type", content_type.to_owned()))
            .send_body(bytes)
            .await
            .expect("request sent");
        read(res).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None, Some(&self.token)).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(body), Some(&self.token)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PATCH, path, Some(body), Some(&self.token)).await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.call(Method::DELETE, path, None, Some(&self.token)).await
    }
    pub async fn guest_get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None, None).await
    }
    pub async fn guest_post(&self, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(body), None).await
    }

    /// Creates a collection (as superuser) and asserts success.
    pub async fn create_collection(&self, def: Value) -> Value {
        let r = self.post("/api/collections", def).await;
        assert_eq!(r.status, 200, "create collection: {:?}", r.body);
        r.body
    }

    /// A public `posts` collection used by many tests.
    pub async fn posts(&self) -> Value {
        self.create_collection(json!({
            "name": "posts",
            "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
            "schema": {
                "type": "object",
                "properties": {
                    "title": {"type": "string", "maxLength": 200},
                    "views": {"type": "integer", "minimum": 0},
                    "email": {"type": "string", "format": "email"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "meta": {"type": "object", "properties": {"lang": {"type": "string", "minLength": 2}}}
                },
                "required": ["title"],
                "additionalProperties": false
            }
        }))
        .await
    }
}

pub async fn read(
    mut res: awc::ClientResponse<
        impl futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin,
    >,
) -> Resp {
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = res.body().limit(64 * 1024 * 1024).await.expect("read body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Resp { status, body, headers }
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
