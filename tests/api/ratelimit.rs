//! Rate limits: the default login limit, rules set through the settings API,
//! label precedence, the per-account login limit, superuser bypass.
//!
//! Every test client is 127.0.0.1; other client addresses go through the
//! `trustedProxy` setting (here and in `hardening.rs`, which shows that
//! failures from one address never lock the owner out from another).

use std::time::Duration;

use awc::http::Method;
use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with_defaults, Resp, TestApp, SU_EMAIL, SU_PASSWORD};

const SU_LOGIN: &str = "/api/collections/_superusers/auth-with-password";

/// Replaces the rate-limit settings (as superuser).
async fn set_limits(app: &TestApp, enabled: bool, rules: Value) {
    let r = app
        .patch(
            "/api/settings",
            json!({"rateLimits": {"enabled": enabled, "rules": rules}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

fn retry_after(r: &Resp) -> u64 {
    let v = r.headers.get("retry-after").expect("Retry-After header");
    v.to_str()
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("Retry-After seconds")
}

fn assert_limited(r: &Resp) {
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert_eq!(
        r.body,
        json!({"status": 429, "message": "Too many requests.", "data": {}})
    );
    assert!(retry_after(r) >= 1);
}

async fn guess(app: &TestApp, collection: &str, identity: &str, token: Option<&str>) -> Resp {
    let path = format!("/api/collections/{collection}/auth-with-password");
    let body = json!({"identity": identity, "password": "wrong password"});
    app.call(Method::POST, &path, Some(body), token).await
}

#[actix_web::test]
async fn ratelimit_defaults_limit_logins_per_address() {
    let app = spawn_app_with_defaults().await;
    let r = app.get("/api/settings").await;
    assert_eq!(
        r.body["rateLimits"],
        json!({"enabled": true, "excludedIPs": [], "rules": [
            {"label": "*:auth", "maxRequests": 5, "duration": 10},
            {"label": "*:requestOTP", "maxRequests": 5, "duration": 10},
            {"label": "*:requestPasswordReset", "maxRequests": 5, "duration": 10},
            {"label": "*:requestVerification", "maxRequests": 5, "duration": 10},
            {"label": "*:requestEmailChange", "maxRequests": 5, "duration": 10},
        ]})
    );
    // spawn_app logged in once: four more tries, then the address is out.
    for _ in 0..4 {
        assert_eq!(guess(&app, "_superusers", "ghost@example.com", None).await.status, 400);
    }
    let r = guess(&app, "_superusers", "ghost@example.com", None).await;
    assert_limited(&r);
    assert!(retry_after(&r) <= 10);
    // Other endpoints are not limited by default.
    for _ in 0..20 {
        assert_eq!(app.guest_get("/api/health").await.status, 200);
    }
}

#[actix_web::test]
async fn ratelimit_brute_force_is_stopped_until_the_window_passes() {
    let app = spawn_app().await;
    set_limits(
        &app,
        true,
        json!([{"label": "*:auth", "maxRequests": 5, "duration": 2}]),
    )
    .await;
    let burst = (0..20).map(|_| guess(&app, "_superusers", SU_EMAIL, None));
    let answers = join_all(burst).await;
    let refused: Vec<&Resp> = answers.iter().filter(|r| r.status == 429).collect();
    assert_eq!(answers.iter().filter(|r| r.status == 400).count(), 5);
    assert_eq!(refused.len(), 15);
    for r in &refused {
        assert_limited(r);
        assert!(retry_after(r) <= 2);
    }

    // A 429 carries the security and CORS headers like any other answer.
    let res = app
        .client
        .post(format!("{}{SU_LOGIN}", app.base))
        .insert_header(("Origin", "https://app.example.com"))
        .send_json(&json!({"identity": SU_EMAIL, "password": SU_PASSWORD}))
        .await
        .expect("request sent");
    let r = crate::helpers::read(res).await;
    assert_limited(&r);
    assert_eq!(
        r.headers.get("x-content-type-options").map(|v| v.as_bytes()),
        Some(&b"nosniff"[..])
    );
    assert!(r.headers.contains_key("access-control-allow-origin"), "{:?}", r.headers);

    // Honouring Retry-After is enough. (The account's window opened a moment
    // after the address's, hence the small margin.)
    let wait = refused.iter().map(|r| retry_after(r)).max().unwrap_or(1);
    actix_web::rt::time::sleep(Duration::from_secs(wait) + Duration::from_millis(100)).await;
    let r = app
        .guest_post(SU_LOGIN, json!({"identity": SU_EMAIL, "password": SU_PASSWORD}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[actix_web::test]
async fn ratelimit_account_limit_counts_failed_guesses_at_one_account() {
    let app = spawn_app().await;
    set_limits(
        &app,
        true,
        json!([{"label": "*:auth", "maxRequests": 5, "duration": 60}]),
    )
    .await;
    for email in ["ann@example.com", "bob@example.com"] {
        let body = json!({"email": email, "password": "password1", "passwordConfirm": "password1"});
        assert_eq!(app.post("/api/collections/users/records", body).await.status, 200);
    }
    // Right passwords do not count towards the account's limit.
    let su = Some(app.token.as_str());
    let right = json!({"identity": "ann@example.com", "password": "password1"});
    let path = "/api/collections/users/auth-with-password";
    for _ in 0..8 {
        let r = app.call(Method::POST, path, Some(right.clone()), su).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    // The superuser token lets these past the per-address rule; the
    // account's own limit (failures per account and address) still
    // applies, to any spelling of the identity, and once full it refuses
    // before the password is checked.
    for who in [
        "ann@example.com",
        "ANN@example.com",
        "Ann@Example.com",
        "ann@example.com",
        "ann@EXAMPLE.com",
    ] {
        assert_eq!(guess(&app, "users", who, su).await.status, 400);
    }
    let r = guess(&app, "users", "ann@example.com", su).await;
    assert_limited(&r);
    assert_limited(&app.call(Method::POST, path, Some(right), su).await);
    // Another account is not affected...
    assert_eq!(guess(&app, "users", "bob@example.com", su).await.status, 400);
    // ...but from this address without the bypass, every account is: the
    // per-address rule has seen eight tries.
    assert_limited(&guess(&app, "users", "carol@example.com", None).await);
}

#[actix_web::test]
async fn ratelimit_collection_rule_beats_wildcard_and_is_per_collection() {
    let app = spawn_app().await;
    let posts = app.posts().await;
    let posts_id = posts["id"].as_str().expect("id").to_owned();
    app.create_collection(json!({
        "name": "notes", "listRule": "", "viewRule": "", "createRule": "",
        "schema": {"type": "object", "properties": {"title": {"type": "string"}}}
    }))
    .await;
    set_limits(
        &app,
        true,
        json!([
            {"label": "*:create", "maxRequests": 2, "duration": 60},
            {"label": "posts:create", "maxRequests": 4, "duration": 60}
        ]),
    )
    .await;
    let create = |c: String| {
        let app = &app;
        async move {
            app.guest_post(&format!("/api/collections/{c}/records"), json!({"title": "x"}))
                .await
        }
    };
    // `posts:create` (4) applies to posts, by name or by id, not `*:create`.
    for c in ["posts", "posts", posts_id.as_str(), "posts"] {
        let r = create(c.to_owned()).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    assert_limited(&create(posts_id.clone()).await);
    assert_limited(&create("posts".into()).await);
    // Listing is another action: not limited.
    assert_eq!(app.guest_get("/api/collections/posts/records").await.status, 200);
    // Other collections get `*:create` (2), counted on their own.
    assert_eq!(create("notes".into()).await.status, 200);
    assert_eq!(create("notes".into()).await.status, 200);
    assert_limited(&create("notes".into()).await);
}

#[actix_web::test]
async fn ratelimit_path_rules_and_superuser_bypass() {
    let app = spawn_app().await;
    set_limits(
        &app,
        true,
        json!([
            {"label": "/api/", "maxRequests": 3, "duration": 60},
            {"label": "GET /api/health", "maxRequests": 2, "duration": 60}
        ]),
    )
    .await;
    // `GET /api/health` is more specific than `/api/`: it applies alone.
    assert_eq!(app.guest_get("/api/health").await.status, 200);
    assert_eq!(app.guest_get("/api/health").await.status, 200);
    assert_limited(&app.guest_get("/api/health").await);
    // A superuser is let through a limit a guest hits.
    assert_eq!(app.get("/api/health").await.status, 200);
    // Everything else under /api/ shares the `/api/` rule (PATCH above was
    // the superuser's, counted before the rule existed).
    assert_eq!(app.guest_get("/api/collections/users/auth-methods").await.status, 200);
    assert_eq!(app.guest_get("/api/nothing-here").await.status, 404);
    assert_eq!(app.guest_get("/api/collections").await.status, 401);
    assert_limited(&app.guest_get("/api/collections/users/auth-methods").await);
    assert_eq!(app.get("/api/collections").await.status, 200);
    // The superuser raises the limit; it takes effect at once.
    set_limits(
        &app,
        true,
        json!([{"label": "/api/", "maxRequests": 100, "duration": 60}]),
    )
    .await;
    assert_eq!(app.guest_get("/api/health").await.status, 200);
}

#[actix_web::test]
async fn ratelimit_disabled_limits_nothing() {
    let app = spawn_app().await;
    set_limits(
        &app,
        false,
        json!([
            {"label": "*:auth", "maxRequests": 1, "duration": 60},
            {"label": "/api/", "maxRequests": 1, "duration": 60}
        ]),
    )
    .await;
    for _ in 0..8 {
        assert_eq!(guess(&app, "_superusers", SU_EMAIL, None).await.status, 400);
        assert_eq!(app.guest_get("/api/health").await.status, 200);
    }
}

#[actix_web::test]
async fn ratelimit_invalid_rules_are_refused() {
    let app = spawn_app().await;
    for rule in [
        json!({"label": "", "maxRequests": 5, "duration": 10}),
        json!({"label": "*:auth", "maxRequests": 0, "duration": 10}),
        json!({"label": "*:auth", "maxRequests": 5, "duration": 0}),
        json!({"label": "*:auth", "maxRequests": -1, "duration": 10}),
        json!({"label": "*:auth", "duration": 10}),
    ] {
        let r = app
            .patch("/api/settings", json!({"rateLimits": {"rules": [rule.clone()]}}))
            .await;
        assert_eq!(r.status, 400, "{rule} -> {:?}", r.body);
    }
    let r = app.get("/api/settings").await;
    assert_eq!(r.body["rateLimits"]["rules"][0]["label"], "*:auth");
    assert_eq!(r.body["rateLimits"]["rules"][0]["maxRequests"], 5);
}

/// GET /api/health from a client that says (through a header) it is `ip`.
async fn health_from(app: &TestApp, header: &str, ip: &str) -> u16 {
    let res = app
        .client
        .get(format!("{}/api/health", app.base))
        .insert_header((header.to_owned(), ip.to_owned()))
        .send()
        .await
        .expect("request sent");
    res.status().as_u16()
}

#[actix_web::test]
async fn ratelimit_behind_a_trusted_proxy_keys_on_the_client_address() {
    let app = spawn_app().await;
    set_limits(
        &app,
        true,
        json!([{"label": "GET /api/health", "maxRequests": 2, "duration": 60}]),
    )
    .await;
    // Not configured: the header is ignored, every request is 127.0.0.1.
    assert_eq!(health_from(&app, "X-Forwarded-For", "203.0.113.1").await, 200);
    assert_eq!(health_from(&app, "X-Forwarded-For", "203.0.113.2").await, 200);
    assert_eq!(health_from(&app, "X-Forwarded-For", "203.0.113.3").await, 429);
    let r = app
        .patch(
            "/api/settings",
            json!({"trustedProxy": {"headers": ["X-Forwarded-For"]}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body["trustedProxy"],
        json!({"headers": ["X-Forwarded-For"], "useLeftmostIP": false})
    );
    // Now each client address has its own window; the rightmost entry (the
    // one the proxy appended) is the client, whatever the client prepended.
    for _ in 0..2 {
        assert_eq!(health_from(&app, "X-Forwarded-For", "9.9.9.9, 198.51.100.7").await, 200);
    }
    assert_eq!(health_from(&app, "X-Forwarded-For", "1.1.1.1, 198.51.100.7").await, 429);
    assert_eq!(health_from(&app, "X-Forwarded-For", "198.51.100.8").await, 200);
    // The request log records the same address.
    app.state.store.logs().flush().await;
    let logged: Vec<String> = app
        .state
        .store
        .logs()
        .newest_first(0)
        .map(|e| e.expect("log entry").1.ip)
        .collect();
    assert!(logged.iter().any(|ip| ip == "198.51.100.8"), "{logged:?}");
    // Bad header names are refused.
    let r = app
        .patch(
            "/api/settings",
            json!({"trustedProxy": {"headers": ["X-Forwarded-For: 1"]}}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body["data"]["trustedProxy.headers.0"].is_object(), "{:?}", r.body);
}

#[actix_web::test]
async fn ratelimit_audience_limits_only_its_callers() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/api/collections/users/records",
            json!({"email": "ann@example.com", "password": "password1", "passwordConfirm": "password1"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let user = app.login("users", "ann@example.com", "password1").await;
    set_limits(
        &app,
        true,
        json!([{"label": "GET /api/health", "maxRequests": 1, "duration": 60, "audience": "@guest"}]),
    )
    .await;
    assert_eq!(app.guest_get("/api/health").await.status, 200);
    assert_limited(&app.guest_get("/api/health").await);
    // A signed-in user is not a guest: the rule passes over them.
    for _ in 0..3 {
        let r = app.call(Method::GET, "/api/health", None, Some(&user)).await;
        assert_eq!(r.status, 200);
    }
    let r = app
        .patch(
            "/api/settings",
            json!({"rateLimits": {"rules": [{"label": "/api/", "maxRequests": 1, "duration": 1, "audience": "@admins"}]}}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.body["data"]["rateLimits.rules.0.audience"].is_object(),
        "{:?}",
        r.body
    );
}
