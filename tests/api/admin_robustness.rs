//! Garbage into every dashboard route, as a logged-in superuser with a
//! valid CSRF token: every answer is a page or a redirect, never a 5xx, and
//! the server (and its data) are fine afterwards.

use awc::http::Method;
use serde_json::json;

use super::admin_support::Browser;
use super::helpers::spawn_app;

/// Form bodies that are wrong in different ways.
fn bad_forms(csrf: &str) -> Vec<String> {
    let long = "x".repeat(200_000);
    let c = format!("_csrf={csrf}");
    vec![
        c.clone(),
        format!("{c}&name=&schema=&type=&filter=&perPage=&page=&ids=&confirm="),
        format!("{c}&schema=%7B%22type%22%3A&indexes=%5B1%2C2%5D&listRule_mode=expr&listRule=%28%28%28"),
        format!("{c}&schema=null&indexes=%7B%7D&type=weird&name=%00%01"),
        format!("{c}&views=abc&featured=maybe&tags=%5Bunclosed&published_at=yesterday&_raw=1&body=%5B%5D"),
        format!("{c}&perPage=-1&page=99999999999999999999&maxRequests=-5&duration=1e99&port=70000"),
        format!("{c}&email=%3Cscript%3E&password=&passwordConfirm=x&authTokenDuration=-1"),
        format!("{c}&origins=javascript%3Aalert(1)%0Ahttp%3A%2F%2F&to=not-an-email&template=nope"),
        format!("{c}&ids={}", "a".repeat(2_000)),
        format!("{c}&name={long}&filter={long}"),
        // Broken percent-encoding and invalid UTF-8.
        format!("{c}&name=%ZZ%&filter=%C3%28"),
        format!(
            "{c}&{}",
            (0..2_000).map(|i| format!("ids=id{i}")).collect::<Vec<_>>().join("&")
        ),
    ]
}

#[actix_web::test]
async fn bad_input_on_every_dashboard_route_is_never_a_server_error() {
    let app = spawn_app().await;
    app.posts().await;
    let r = app
        .post(
            "/api/collections/posts/records",
            json!({"title": "keep me", "views": 1}),
        )
        .await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    let user = app
        .post(
            "/api/collections/users/records",
            json!({"email": "u@example.com", "password": "secret pass 1", "passwordConfirm": "secret pass 1"}),
        )
        .await;
    let uid = user.body["id"].as_str().unwrap().to_owned();
    let before = app.get("/api/collections/posts").await.body;
    let mut b = Browser::login(&app).await;
    let csrf = b.csrf.clone();

    let mut gets: Vec<String> = vec![
        "/_/collections".into(),
        "/_/collections/new".into(),
        "/_/collections/posts".into(),
        "/_/collections/nope".into(),
        "/_/collections/%00".into(),
        "/_/live?collection=%3Cx%3E".into(),
        "/_/logs?window=forever&status=6xx&method=%00&before=x-y&path=%ZZ".into(),
        "/_/settings".into(),
        format!("/_/collections/posts/records/{id}"),
        "/_/collections/posts/records/new".into(),
        "/_/collections/posts/records/jobs/nope".into(),
        "/_/collections/posts/records/..%2F..%2Fetc".into(),
    ];
    for q in [
        "filter=%28%28%28",
        "sort=-nope,,+",
        "cols=%00,,x",
        "perPage=abc&page=-3",
        "cursor=%FF%FE",
        "page=18446744073709551616",
    ] {
        gets.push(format!("/_/collections/posts/records?{q}"));
        gets.push(format!("/_/collections/users/records?{q}"));
    }
    for path in &gets {
        let r = b.get(path).await;
        assert!(r.status < 500, "GET {path} → {}: {}", r.status, r.body);
    }

    let posts = [
        "/_/collections/new".to_owned(),
        "/_/collections/posts".to_owned(),
        "/_/collections/posts/dry-run".to_owned(),
        "/_/collections/posts/indexes/dismiss".to_owned(),
        "/_/collections/nope/delete".to_owned(),
        "/_/collections/posts/records/new".to_owned(),
        format!("/_/collections/posts/records/{id}"),
        "/_/collections/posts/records/nope".to_owned(),
        "/_/collections/posts/records/bulk-delete".to_owned(),
        "/_/collections/posts/records/delete-matching".to_owned(),
        format!("/_/collections/users/records/{uid}"),
        format!("/_/collections/users/records/{uid}/verify"),
        format!("/_/collections/users/records/{uid}/send-verification"),
        format!("/_/collections/users/records/{uid}/send-reset"),
        format!("/_/collections/users/records/{uid}/impersonate"),
        format!("/_/collections/posts/records/{id}/verify"),
        "/_/settings/application".to_owned(),
        "/_/settings/mail".to_owned(),
        "/_/settings/mail/test".to_owned(),
        "/_/settings/rate-limits".to_owned(),
        "/_/settings/tokens/users".to_owned(),
        "/_/settings/tokens/posts".to_owned(),
        "/_/settings/cors".to_owned(),
        "/_/settings/realtime".to_owned(),
        "/_/settings/batch".to_owned(),
        "/_/settings/logs".to_owned(),
        "/_/settings/proxy".to_owned(),
        "/_/settings/server-limits".to_owned(),
        "/_/live/token".to_owned(),
    ];
    for path in &posts {
        for body in bad_forms(&csrf) {
            let r = b.send(Method::POST, path, Some(body.clone()), &[]).await;
            let shown: String = body.chars().take(120).collect();
            assert!(r.status < 500, "POST {path} with {shown:?} → {}: {}", r.status, r.body);
        }
        // A body that is not a form at all.
        let r = b
            .send(
                Method::POST,
                path,
                Some("{\"json\": true}".into()),
                &[("Content-Type", "application/json")],
            )
            .await;
        assert!(r.status < 500, "POST {path} with JSON → {}", r.status);
    }

    // Still healthy, still logged in, and the data the garbage could not
    // have changed is intact.
    assert_eq!(app.guest_get("/api/health").await.status, 200);
    assert_eq!(b.get("/_/collections").await.status, 200);
    let kept = app.get(&format!("/api/collections/posts/records/{id}")).await;
    assert_eq!(kept.status, 200, "{:?}", kept.body);
    let after = app.get("/api/collections/posts").await.body;
    for key in [
        "schema",
        "listRule",
        "viewRule",
        "createRule",
        "updateRule",
        "deleteRule",
        "indexes",
    ] {
        assert_eq!(after[key], before[key], "posts.{key} changed by a garbage form");
    }
}

#[actix_web::test]
async fn large_forms_are_accepted_up_to_the_limit() {
    let app = spawn_app().await;
    app.create_collection(
        json!({"name": "docs", "schema": {"type": "object", "properties": {"text": {"type": "string"}}}}),
    )
    .await;
    let mut b = Browser::login(&app).await;
    // 300 KB of text, ~900 KB once percent-encoded as a form.
    let text = "<é>".repeat(100_000);
    let body = serde_json::to_string(&json!({ "text": text })).unwrap();
    let r = b
        .post("/_/collections/docs/records/new", &[("_raw", "1"), ("body", &body)])
        .await;
    assert_eq!(r.status, 303, "{}", r.body.chars().take(500).collect::<String>());
    let list = app.get("/api/collections/docs/records").await;
    assert_eq!(list.body["items"][0]["text"].as_str().map(str::len), Some(text.len()));
    // Past the 4 MiB form limit: a clear 400 page, not a 5xx.
    let huge = "x".repeat(5 * 1024 * 1024);
    let r = b
        .post("/_/collections/docs/records/new", &[("_raw", "1"), ("body", &huge)])
        .await;
    assert_eq!(r.status, 400);
}

#[actix_web::test]
async fn settings_api_refuses_every_bad_value_with_a_4xx() {
    let app = spawn_app().await;
    let before = app.get("/api/settings").await.body;
    let sections = [
        "meta",
        "smtp",
        "rateLimits",
        "batch",
        "budget",
        "realtime",
        "cors",
        "logs",
        "trustedProxy",
        "limits",
    ];
    let junk = [
        json!(null),
        json!(1),
        json!("x"),
        json!([1, 2]),
        json!({"unknown": true}),
        json!(-1),
        json!(1e300),
        json!(u64::MAX),
        json!({"": {"": {"": []}}}),
    ];
    let mut patches = vec![json!([]), json!("settings"), json!(null), json!({"nope": 1})];
    for s in sections {
        for j in &junk {
            patches.push(json!({ s: j }));
        }
        // Each known field of the section with each junk value.
        if let Some(fields) = before[s].as_object() {
            for f in fields.keys() {
                for j in &junk {
                    patches.push(json!({ s: { f: j } }));
                }
            }
        }
    }
    patches.push(json!({"rateLimits": {"rules": [{"label": "", "maxRequests": 0, "duration": 0}]}}));
    patches.push(json!({"rateLimits": {"rules": [{"label": "x".repeat(10_000), "maxRequests": 1, "duration": 1}]}}));
    patches.push(json!({"trustedProxy": {"headers": vec!["X-A"; 50]}}));
    patches.push(json!({"cors": {"origins": ["*", "https://a.example"]}}));
    // The byte caps: below 1 MiB, past 1 TiB, fractions, sizes as text.
    for section in ["realtime", "logs"] {
        for bad in [
            json!(0),
            json!(1_048_575),
            json!((1u64 << 40) + 1),
            json!(2.5e6),
            json!("128 MiB"),
        ] {
            patches.push(json!({ section: {"maxBytes": bad} }));
        }
    }
    // Caps that would lock clients out (or never end a body) are refused.
    for (field, bad) in [
        ("connectionsPerAddress", 0),
        ("connectionsPerAddress", 15),
        ("realtimePerAddress", 0),
        ("bodyTimeout", 0),
        ("bodyTimeout", 3601),
        ("mailsPerAddress", 0),
        ("mailWindow", 0),
        ("mailWindow", 86_401),
    ] {
        let r = app.patch("/api/settings", json!({"limits": {field: bad}})).await;
        assert_eq!(r.status, 400, "limits.{field} = {bad}: {:?}", r.body);
        assert_eq!(
            r.field_code(&format!("limits.{field}")),
            Some("validation_invalid_value")
        );
    }
    let mut refused = 0;
    for p in &patches {
        let r = app.patch("/api/settings", p.clone()).await;
        assert!(r.status < 500, "PATCH {p} → {}: {:?}", r.status, r.body);
        if r.status >= 400 {
            refused += 1;
            assert!(r.body["message"].is_string(), "{p}: {:?}", r.body);
        } else {
            // Accepted (e.g. a null that means "the default"): put it back.
            let r = app.patch("/api/settings", before.clone()).await;
            assert_eq!(r.status, 200, "{:?}", r.body);
        }
    }
    assert!(
        refused > patches.len() / 2,
        "only {refused} of {} refused",
        patches.len()
    );
    assert_eq!(app.guest_get("/api/health").await.status, 200);
}

#[actix_web::test]
async fn api_logs_refuses_bad_queries_with_a_4xx() {
    let app = spawn_app().await;
    for q in [
        "page=0",
        "page=-1",
        "page=abc",
        "perPage=0",
        "perPage=100000",
        "perPage=1e3",
        "page=18446744073709551616",
        "filter=status%3E%3D400",
        "sort=-created",
        "page=%FF",
    ] {
        let r = app.get(&format!("/api/logs?{q}")).await;
        assert!(
            (200..500).contains(&r.status),
            "/api/logs?{q} → {}: {:?}",
            r.status,
            r.body
        );
    }
    assert_eq!(app.guest_get("/api/logs").await.status, 401);
}
