//! CORS over HTTP: the `--origins` flag as the default, `cors.origins` from
//! the settings winning over it, changes taking effect on the next request,
//! preflights, and refused origins.

use awc::http::header::HeaderMap;
use awc::http::Method;
use serde_json::{json, Value};

use crate::helpers::{client, spawn_app};

/// Status and headers of a request with `headers`.
async fn send(base: &str, method: Method, path: &str, headers: &[(&str, &str)]) -> (u16, HeaderMap, String) {
    let mut req = client().request(method, format!("{base}{path}"));
    for (k, v) in headers {
        req = req.insert_header((k.to_string(), v.to_string()));
    }
    let mut res = req.send().await.expect("request sent");
    let body = res.body().await.expect("body");
    (
        res.status().as_u16(),
        res.headers().clone(),
        String::from_utf8_lossy(&body).into_owned(),
    )
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).map(|v| v.to_str().expect("ascii header"))
}

/// Every `Vary` value, joined.
fn vary(h: &HeaderMap) -> String {
    h.get_all("vary")
        .map(|v| v.to_str().expect("ascii"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `Access-Control-Allow-Origin` a simple GET from `origin` gets.
async fn allowed(base: &str, origin: &str) -> Option<String> {
    let (status, h, _) = send(base, Method::GET, "/api/health", &[("Origin", origin)]).await;
    assert_eq!(status, 200, "a simple request is served either way");
    assert!(vary(&h).contains("Origin"), "{h:?}");
    header(&h, "access-control-allow-origin").map(str::to_owned)
}

/// A preflight for a JSON POST with a token, as the JS SDK's fetch sends it.
async fn preflight(base: &str, origin: &str) -> (u16, HeaderMap, String) {
    send(
        base,
        Method::OPTIONS,
        "/api/collections/users/records",
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type,authorization"),
        ],
    )
    .await
}

#[actix_web::test]
async fn default_star_allows_every_origin_with_preflight() {
    let app = spawn_app().await;
    let base = &app.base;
    assert_eq!(allowed(base, "https://anywhere.example").await.as_deref(), Some("*"));
    // Without Origin: no CORS headers, but the answer varies by Origin.
    let (_, h, _) = send(base, Method::GET, "/api/health", &[]).await;
    assert_eq!(header(&h, "access-control-allow-origin"), None);
    assert!(vary(&h).contains("Origin"));

    let (status, h, body) = preflight(base, "https://anywhere.example").await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(header(&h, "access-control-allow-origin"), Some("*"));
    let methods = header(&h, "access-control-allow-methods").unwrap_or_default();
    for m in ["GET", "POST", "PATCH", "DELETE"] {
        assert!(methods.contains(m), "{methods}");
    }
    assert_eq!(
        header(&h, "access-control-allow-headers"),
        Some("content-type,authorization")
    );
    assert_eq!(header(&h, "access-control-max-age"), Some("86400"));
    assert!(vary(&h).contains("Origin"));
    assert_eq!(header(&h, "access-control-allow-credentials"), None);

    // Errors carry the header too, so the browser lets the SDK read them.
    let (status, h, _) = send(base, Method::GET, "/api/nothing", &[("Origin", "https://x.example")]).await;
    assert_eq!(status, 404);
    assert_eq!(header(&h, "access-control-allow-origin"), Some("*"));
    // OPTIONS without Access-Control-Request-Method is no preflight: routed.
    let (status, h, _) = send(base, Method::OPTIONS, "/api/health", &[("Origin", "https://x.example")]).await;
    assert_eq!(status, 405);
    assert_eq!(header(&h, "access-control-allow-origin"), Some("*"));
    // The dashboard is same-origin only.
    let (_, h, _) = send(base, Method::GET, "/_/login", &[("Origin", "https://x.example")]).await;
    assert_eq!(header(&h, "access-control-allow-origin"), None);
    let (status, h, _) = send(
        base,
        Method::OPTIONS,
        "/_/settings",
        &[
            ("Origin", "https://x.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
    )
    .await;
    assert_ne!(status, 204);
    assert_eq!(header(&h, "access-control-allow-origin"), None);
}

#[actix_web::test]
async fn a_saved_list_applies_on_the_next_request() {
    let app = spawn_app().await;
    let base = &app.base;
    let r = app
        .patch(
            "/api/settings",
            json!({"cors": {"origins": ["https://app.example", "http://localhost:5173"]}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body["cors"]["origins"],
        json!(["https://app.example", "http://localhost:5173"])
    );
    assert_eq!(
        allowed(base, "https://app.example").await.as_deref(),
        Some("https://app.example")
    );
    assert_eq!(
        allowed(base, "http://localhost:5173").await.as_deref(),
        Some("http://localhost:5173")
    );
    assert_eq!(allowed(base, "https://evil.example").await, None);
    assert_eq!(allowed(base, "http://localhost:5174").await, None);

    let (status, h, _) = preflight(base, "https://app.example").await;
    assert_eq!(status, 204);
    assert_eq!(header(&h, "access-control-allow-origin"), Some("https://app.example"));
    let (status, h, body) = preflight(base, "https://evil.example").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(header(&h, "access-control-allow-origin"), None);
    assert_eq!(header(&h, "access-control-allow-methods"), None);
    let body: Value = serde_json::from_str(&body).expect("JSON error");
    assert_eq!(body["status"], 403);

    // Changed at runtime: the next request follows.
    let r = app
        .patch("/api/settings", json!({"cors": {"origins": ["https://evil.example"]}}))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(allowed(base, "https://app.example").await, None);
    assert_eq!(preflight(base, "https://evil.example").await.0, 204);
    // An empty list allows no origin; null goes back to the flag (`*`).
    app.patch("/api/settings", json!({"cors": {"origins": []}})).await;
    assert_eq!(allowed(base, "https://evil.example").await, None);
    let r = app.patch("/api/settings", json!({"cors": {"origins": null}})).await;
    assert_eq!(r.body["cors"]["origins"], Value::Null);
    assert_eq!(allowed(base, "https://app.example").await.as_deref(), Some("*"));
}

#[actix_web::test]
async fn bad_origins_are_refused_per_entry() {
    let app = spawn_app().await;
    let r = app
        .patch(
            "/api/settings",
            json!({"cors": {"origins": ["https://ok.example", "ok.example", "https://a.example/", "http://[::1]:8080", "https://b.example:0"]}}),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.field_code("cors.origins.1"), Some("validation_invalid_value"));
    assert_eq!(r.field_code("cors.origins.2"), Some("validation_invalid_value"));
    assert_eq!(r.field_code("cors.origins.4"), Some("validation_invalid_value"));
    assert_eq!(r.field_code("cors.origins.0"), None);
    assert_eq!(
        r.field_code("cors.origins.3"),
        None,
        "bracketed IPv6 with a port is fine"
    );
    let r = app
        .patch(
            "/api/settings",
            json!({"cors": {"origins": ["*", "https://a.example"]}}),
        )
        .await;
    assert_eq!(r.field_code("cors.origins.0"), Some("validation_invalid_value"));
    let r = app
        .patch("/api/settings", json!({"cors": {"origins": "https://a.example"}}))
        .await;
    assert_eq!(r.status, 400, "a list, not a string");
    let r = app
        .patch(
            "/api/settings",
            json!({"cors": {"origins": ["capacitor://localhost", "*"]}}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(app.get("/api/settings").await.body["cors"]["origins"], Value::Null);
}

/// A server started with `--origins a,b` uses the flag until a list is
/// saved; the saved list then wins, also after a restart with the flag.
#[actix_web::test]
async fn the_flag_applies_until_a_list_is_saved() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let flag = "https://a.example, https://b.example";
    let (base, state, stop) = start_with_origins(tmp.path(), flag).await;
    assert_eq!(
        allowed(&base, "https://b.example").await.as_deref(),
        Some("https://b.example")
    );
    assert_eq!(allowed(&base, "https://c.example").await, None);
    assert_eq!(preflight(&base, "https://c.example").await.0, 403);

    let mut patch = serde_json::Map::new();
    patch.insert("cors".into(), json!({"origins": ["https://c.example"]}));
    state.settings.patch(&state.store, patch).await.expect("save origins");
    assert_eq!(
        allowed(&base, "https://c.example").await.as_deref(),
        Some("https://c.example")
    );
    assert_eq!(allowed(&base, "https://a.example").await, None);
    // The state holds the data dir open: let go of it before restarting.
    drop(state);
    stop.await;

    let (base, _state, stop) = start_with_origins(tmp.path(), flag).await;
    assert_eq!(
        allowed(&base, "https://c.example").await.as_deref(),
        Some("https://c.example")
    );
    assert_eq!(allowed(&base, "https://a.example").await, None);
    stop.await;
}

/// Starts the real server on `dir` with `--origins`; returns its base URL,
/// its state (for setup), and a future that stops it and waits.
async fn start_with_origins(
    dir: &std::path::Path,
    origins: &str,
) -> (String, basalt::state::AppState, impl std::future::Future<Output = ()>) {
    let mut config = crate::helpers::config_for(dir).await;
    config.workers = 1;
    config.origins = origins.to_owned();
    let app = crate::helpers::build_app(config).await;
    let base = format!("http://127.0.0.1:{}", app.port());
    let state = app.state().clone();
    let handle = app.handle();
    let task = actix_web::rt::spawn(app.run_until_stopped());
    let stop = async move {
        handle.stop(true).await;
        task.await.expect("server task").expect("server result");
    };
    (base, state, stop)
}
