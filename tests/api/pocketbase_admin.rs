//! The admin APIs as PocketBase 0.40 serves them: logs with filter, sort,
//! one entry and hourly stats; health's superuser-only data; the settings
//! sections taken from PocketBase (s3, backups, superuserIPs, smtp
//! authMethod/localName/tls) and `POST /api/settings/test/s3`; rate limits
//! by PocketBase's per-route labels.

use awc::http::Method;
use basalt::store::WriteOp;
use serde_json::{json, Value};

use crate::helpers::{enc, spawn_app, spawn_app_with_defaults, Resp, TestApp};

async fn flush(app: &TestApp) {
    app.state.store.logs().flush().await;
}

/// A `users` record and its token.
async fn user(app: &TestApp, email: &str) -> String {
    let r = app
        .post(
            "/api/collections/users/records",
            json!({"email": email, "password": "password1", "passwordConfirm": "password1"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    app.login("users", email, "password1").await
}

fn urls(r: &Resp) -> Vec<String> {
    let items = r.body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("items: {:?}", r.body));
    items
        .iter()
        .map(|i| i["data"]["url"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn logs(app: &TestApp, filter: &str, sort: &str) -> Resp {
    app.get(&format!(
        "/api/logs?perPage=100&filter={}&sort={}",
        enc(filter),
        enc(sort)
    ))
    .await
}

#[actix_web::test]
async fn pb_logs_filter_sort_view_and_stats() {
    let app = spawn_app().await;
    for q in ["q1", "q0", "q2"] {
        let r = app.guest_get(&format!("/api/collections/users/records/{q}")).await;
        assert_eq!(r.status, 404);
    }
    app.guest_get("/api/health").await;
    flush(&app).await;

    // A filter over data.* and message, newest first by default.
    let r = logs(&app, "data.status = 404 && message ~ 'records/q'", "").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let q = |n: &str| format!("/api/collections/users/records/{n}");
    assert_eq!(urls(&r), [q("q2"), q("q0"), q("q1")]);
    assert_eq!(r.body["totalItems"], 3);
    assert_eq!(
        r.body["items"][0]["level"], 8,
        "an error answer is level 8, as PocketBase"
    );
    // Sorted by a data field, either way; paged.
    let r = logs(&app, "data.status = 404", "data.url").await;
    assert_eq!(urls(&r), [q("q0"), q("q1"), q("q2")]);
    let r = logs(&app, "data.status = 404", "-data.url,created").await;
    assert_eq!(urls(&r), [q("q2"), q("q1"), q("q0")]);
    let r = app
        .get(&format!(
            "/api/logs?perPage=1&page=2&sort=data.url&filter={}",
            enc("data.status=404")
        ))
        .await;
    assert_eq!(
        (urls(&r), r.body["totalItems"].clone(), r.body["totalPages"].clone()),
        (vec![q("q1")], json!(3), json!(3))
    );
    let r = app
        .get(&format!(
            "/api/logs?perPage=2&skipTotal=1&filter={}",
            enc("data.status=404")
        ))
        .await;
    assert_eq!((urls(&r).len(), r.body["totalItems"].clone()), (2, json!(-1)));
    let r = logs(
        &app,
        "data.method = 'GET' && data.url = '/api/health' && data.auth = 'guest' && level = 0",
        "",
    )
    .await;
    assert_eq!(urls(&r), ["/api/health"]);
    let r = logs(&app, "created > @now", "").await;
    assert_eq!(r.body["totalItems"], 0, "{:?}", r.body);

    // One entry by id.
    let r = logs(&app, "data.url ~ 'q0'", "").await;
    let item = r.body["items"][0].clone();
    let id = item["id"].as_str().expect("id");
    let one = app.get(&format!("/api/logs/{id}")).await;
    assert_eq!((one.status, one.body.clone()), (200, item.clone()));
    for missing in ["1-0", "nope", "99999999999999999-1"] {
        let r = app.get(&format!("/api/logs/{missing}")).await;
        assert_eq!(r.status, 404, "{missing}: {:?}", r.body);
    }

    // Stats: per hour, with a filter.
    let r = app
        .get(&format!(
            "/api/logs/stats?filter={}",
            enc("data.status = 404 && data.url ~ 'records/q'")
        ))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let rows = r.body.as_array().expect("rows");
    let total: u64 = rows.iter().map(|r| r["total"].as_u64().unwrap_or(0)).sum();
    assert_eq!(total, 3, "{rows:?}");
    for row in rows {
        let date = row["date"].as_str().expect("date");
        assert!(date.ends_with(":00:00.000Z") && date.len() == 24, "{date}");
    }
    let all = app.get("/api/logs/stats").await;
    let all_total: u64 = all
        .body
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["total"].as_u64().unwrap_or(0))
        .sum();
    assert!(all_total > total, "{:?}", all.body);
}

#[actix_web::test]
async fn pb_logs_refuse_bad_filters_and_non_superusers() {
    let app = spawn_app().await;
    let token = user(&app, "ann@example.com").await;
    for (filter, sort) in [
        ("bogus = 1", ""),
        ("status > 400", ""),
        ("data.status >", ""),
        ("@request.auth.id = ''", ""),
        ("@collection.users.id = ''", ""),
        ("(((", ""),
        ("", "bogus"),
        ("", "-data.url,,created"),
        ("", "@random"),
    ] {
        let r = logs(&app, filter, sort).await;
        assert_eq!(r.status, 400, "{filter} / {sort}: {:?}", r.body);
        assert!(
            r.body["message"].is_string() && r.body["data"].is_object(),
            "{:?}",
            r.body
        );
    }
    let r = app.get(&format!("/api/logs/stats?filter={}", enc("nope = 1"))).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    for path in ["/api/logs", "/api/logs/stats", "/api/logs/1-0"] {
        let r = app.guest_get(path).await;
        assert_eq!(r.status, 401, "{path}: {:?}", r.body);
        let r = app.call(Method::GET, path, None, Some(&token)).await;
        assert_eq!(r.status, 403, "{path}: {:?}", r.body);
        assert_eq!(
            r.body["message"],
            "The authorized record is not allowed to perform this action."
        );
    }
}

#[actix_web::test]
async fn pb_logs_filtered_reads_stop_at_the_record_budget() {
    let app = spawn_app().await;
    let r = app.patch("/api/settings", json!({"budget": {"maxRecords": 5}})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    for _ in 0..8 {
        app.guest_get("/api/health").await;
    }
    flush(&app).await;
    for path in [
        format!("/api/logs?filter={}", enc("data.status = 200")),
        format!("/api/logs?sort={}", enc("data.url")),
        format!("/api/logs/stats?filter={}", enc("data.status = 200")),
        "/api/logs/stats".to_owned(),
    ] {
        let r = app.get(&path).await;
        assert_eq!(r.status, 400, "{path}: {:?}", r.body);
        assert!(
            r.body["message"].as_str().unwrap_or("").contains("budget.maxRecords"),
            "{:?}",
            r.body
        );
    }
    // The log's own order needs no scan: a plain page still works.
    let r = app.get("/api/logs?perPage=3").await;
    assert_eq!((r.status, urls(&r).len()), (200, 3), "{:?}", r.body);
    // A page far past the end reads nothing and is empty.
    let r = app.get("/api/logs?perPage=500&page=1000000000").await;
    assert_eq!((r.status, urls(&r).len()), (200, 0), "{:?}", r.body);
    assert!(r.body["totalItems"].as_u64().unwrap_or(0) >= 8, "{:?}", r.body);
    // A time window ends the walk: only the entries since then are read.
    flush(&app).await;
    let since = app.get("/api/logs?perPage=1").await.body["items"][0]["created"].clone();
    let since = since.as_str().expect("created");
    for path in ["/api/logs", "/api/logs/stats"] {
        let filter = format!("created >= '{since}' && data.url = '/api/logs'");
        let r = app.get(&format!("{path}?filter={}", enc(&filter))).await;
        assert_eq!(r.status, 200, "{path}: {:?}", r.body);
    }
}

#[actix_web::test]
async fn pb_health_data_is_for_superusers_only() {
    let app = spawn_app().await;
    let token = user(&app, "ann@example.com").await;
    let r = app.guest_get("/api/health").await;
    assert_eq!(r.body, json!({"message": "API is healthy.", "code": 200, "data": {}}));
    let r = app.call(Method::GET, "/api/health", None, Some(&token)).await;
    assert_eq!(r.body["data"], json!({}));
    let r = app.get("/api/health").await;
    assert_eq!(
        r.body["data"],
        json!({"canBackup": true, "realIP": "127.0.0.1", "possibleProxyHeader": ""})
    );
    let with_header = |name: &'static str| {
        let req = app
            .client
            .get(format!("{}/api/health", app.base))
            .insert_header(("Authorization", app.token.clone()))
            .insert_header((name, "203.0.113.9"));
        async move { crate::helpers::read(req.send().await.expect("sent")).await }
    };
    let r = with_header("X-Forwarded-For").await;
    assert_eq!(r.body["data"]["possibleProxyHeader"], "X-Forwarded-For");
    assert_eq!(
        r.body["data"]["realIP"], "127.0.0.1",
        "an untrusted header changes nothing"
    );
    let r = app
        .patch("/api/settings", json!({"trustedProxy": {"headers": ["X-Real-IP"]}}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = with_header("X-Real-IP").await;
    assert_eq!(
        (
            r.body["data"]["possibleProxyHeader"].clone(),
            r.body["data"]["realIP"].clone()
        ),
        (json!("X-Real-IP"), json!("203.0.113.9"))
    );
}

/// An enabled bucket at a loopback port where nothing listens: enabling it
/// points file storage there, and nothing here may reach outside the machine.
fn s3(secret: &str) -> Value {
    json!({"enabled": true, "bucket": "b", "region": "eu-west-1", "endpoint": "http://127.0.0.1:9",
           "accessKey": "AKIA", "secret": secret, "forcePathStyle": true})
}

#[actix_web::test]
async fn pb_settings_sections_round_trip_and_mask_secrets() {
    let app = spawn_app().await;
    let r = app.get("/api/settings").await;
    let off =
        json!({"enabled": false, "bucket": "", "region": "", "endpoint": "", "accessKey": "", "forcePathStyle": false});
    assert_eq!(r.body["s3"], off);
    assert_eq!(r.body["backups"], json!({"cron": "", "cronMaxKeep": 3, "s3": off}));
    assert_eq!(r.body["superuserIPs"], json!([]));
    assert_eq!(
        (
            r.body["smtp"]["tls"].clone(),
            r.body["smtp"]["authMethod"].clone(),
            r.body["smtp"]["localName"].clone()
        ),
        (json!(false), json!(""), json!(""))
    );

    let r = app
        .patch(
            "/api/settings",
            json!({"s3": s3("top-secret-1"), "backups": {"cron": "0 3 * * *", "cronMaxKeep": 7, "s3": s3("top-secret-2")},
                   "smtp": {"authMethod": "LOGIN", "localName": "mail.example.com", "tls": true}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let text = r.body.to_string();
    assert!(!text.contains("top-secret"), "secrets are never echoed: {text}");
    assert!(r.body["s3"].get("secret").is_none(), "absent, as PocketBase");
    assert_eq!(r.body["s3"]["bucket"], "b");
    assert_eq!(r.body["backups"]["cron"], "0 3 * * *");
    assert_eq!(r.body["backups"]["cronMaxKeep"], 7);
    assert_eq!(r.body["smtp"]["tls"], true);
    assert_eq!(r.body["smtp"]["authMethod"], "LOGIN");

    // Writing back what was read (no secrets) keeps the stored secrets:
    // an enabled bucket without one would be refused.
    let got = app.get("/api/settings").await.body;
    let r = app
        .patch(
            "/api/settings",
            json!({"s3": got["s3"], "backups": got["backups"], "smtp": got["smtp"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // …and they survive a restart.
    let app = app.restart().await;
    let r = app.get("/api/settings").await;
    assert_eq!(
        (
            r.body["s3"]["enabled"].clone(),
            r.body["backups"]["cronMaxKeep"].clone()
        ),
        (json!(true), json!(7))
    );
    assert!(!r.body.to_string().contains("top-secret"));
    let r = app.patch("/api/settings", json!({"s3": {"enabled": true}})).await;
    assert_eq!(r.status, 200, "the stored secret still counts: {:?}", r.body);

    // smtp.tls: PocketBase's bool, and Basalt's old strings still read.
    for (sent, shown) in [
        (json!("none"), json!("none")),
        (json!("tls"), json!(true)),
        (json!("starttls"), json!(false)),
        (json!(false), json!(false)),
    ] {
        let r = app.patch("/api/settings", json!({"smtp": {"tls": sent}})).await;
        assert_eq!((r.status, r.body["smtp"]["tls"].clone()), (200, shown), "{sent}");
    }
}

#[actix_web::test]
async fn pb_settings_sections_are_validated_as_pocketbase() {
    let app = spawn_app().await;
    let before = app.get("/api/settings").await.body;
    let cases = [
        (
            json!({"backups": {"cron": "bad cron"}}),
            &["backups", "cron"][..],
            "validation_invalid_cron",
        ),
        (
            json!({"backups": {"cron": "61 * * * *"}}),
            &["backups", "cron"],
            "validation_invalid_cron",
        ),
        (
            json!({"backups": {"cron": "@daily", "cronMaxKeep": 0}}),
            &["backups", "cronMaxKeep"],
            "validation_required",
        ),
        (
            json!({"s3": {"enabled": true}}),
            &["s3", "bucket"],
            "validation_required",
        ),
        (
            json!({"s3": {"enabled": true}}),
            &["s3", "secret"],
            "validation_required",
        ),
        (
            json!({"s3": {"endpoint": "notaurl"}}),
            &["s3", "endpoint"],
            "validation_is_url",
        ),
        (
            json!({"backups": {"s3": {"enabled": true}}}),
            &["backups", "s3", "accessKey"],
            "validation_required",
        ),
        (
            json!({"smtp": {"authMethod": "CRAM"}}),
            &["smtp", "authMethod"],
            "validation_in_invalid",
        ),
        (
            json!({"smtp": {"localName": "bad host!"}}),
            &["smtp", "localName"],
            "validation_is_host",
        ),
        (
            json!({"superuserIPs": ["10.0.0.1"]}),
            &["superuserIPs"],
            "validation_not_supported",
        ),
        (
            json!({"rateLimits": {"excludedIPs": ["nope"]}}),
            &["rateLimits", "excludedIPs", "0"],
            "validation_invalid_ip_or_subnet",
        ),
        (
            json!({"meta": {"accentColor": "red"}}),
            &["meta", "accentColor"],
            "validation_is_hex_color",
        ),
    ];
    for (patch, path, code) in cases {
        let r = app.patch("/api/settings", patch.clone()).await;
        assert_eq!(r.status, 400, "{patch}: {:?}", r.body);
        let mut at = &r.body["data"];
        for key in path {
            at = &at[*key];
        }
        assert_eq!(at["code"], code, "{patch}: {:?}", r.body);
    }
    for bad_type in [
        json!({"s3": {"enabled": "yes"}}),
        json!({"backups": {"cronMaxKeep": -1}}),
        json!({"smtp": {"tls": 3}}),
    ] {
        let r = app.patch("/api/settings", bad_type.clone()).await;
        assert_eq!(r.status, 400, "{bad_type}: {:?}", r.body);
    }
    assert_eq!(app.get("/api/settings").await.body, before, "nothing was saved");
}

#[actix_web::test]
async fn pb_settings_test_s3_answers_as_pocketbase() {
    let app = spawn_app().await;
    let token = user(&app, "ann@example.com").await;
    let path = "/api/settings/test/s3";
    assert_eq!(app.guest_post(path, json!({"filesystem": "storage"})).await.status, 401);
    let r = app
        .call(Method::POST, path, Some(json!({"filesystem": "storage"})), Some(&token))
        .await;
    assert_eq!(r.status, 403);
    for (body, code) in [
        (json!({}), "validation_required"),
        (json!({"filesystem": ""}), "validation_required"),
        (json!({"filesystem": "files"}), "validation_in_invalid"),
        (json!({"filesystem": 1}), "validation_in_invalid"),
    ] {
        let r = app.post(path, body.clone()).await;
        assert_eq!(r.status, 400, "{body}");
        assert_eq!(r.body["message"], "Failed to test the S3 filesystem.");
        assert_eq!(r.field_code("filesystem"), Some(code), "{body}: {:?}", r.body);
    }
    for fs in ["storage", "backups"] {
        let r = app.post(path, json!({"filesystem": fs})).await;
        assert_eq!(r.status, 400);
        assert_eq!(
            r.body["message"],
            "Failed to test the S3 filesystem. Raw error: \nS3 storage filesystem is not enabled."
        );
    }
    // Enabled, at an endpoint where nothing listens (a real bucket: s3.rs).
    let r = app.patch("/api/settings", json!({"backups": {"s3": s3("k")}})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app.post(path, json!({"filesystem": "backups"})).await;
    assert_eq!(r.status, 400);
    assert!(
        r.body["message"].as_str().unwrap_or("").contains("cannot connect"),
        "{:?}",
        r.body
    );
    let r = app.post(path, json!({"filesystem": "storage"})).await;
    assert!(
        r.body["message"].as_str().unwrap_or("").contains("not enabled"),
        "{:?}",
        r.body
    );
}

/// One request to each labelled route, as a `users` record where a token
/// matters (superusers are never limited).
async fn hit(app: &TestApp, route: &str, user_token: &str) -> u16 {
    let (method, path, body, token) = match route {
        "list" => (Method::GET, "records".to_owned(), None, None),
        "view" => (Method::GET, "records/nope".to_owned(), None, None),
        "create" => (Method::POST, "records".to_owned(), Some(json!({})), None),
        "update" => (Method::PATCH, "records/nope".to_owned(), Some(json!({})), None),
        "delete" => (Method::DELETE, "records/nope".to_owned(), None, None),
        "listAuthMethods" => (Method::GET, "auth-methods".to_owned(), None, None),
        "authRefresh" => (Method::POST, "auth-refresh".to_owned(), None, Some(user_token)),
        "authWithPassword" => (
            Method::POST,
            "auth-with-password".to_owned(),
            Some(json!({"identity": "x@example.com", "password": "wrong-one"})),
            None,
        ),
        "authWithOTP" => (
            Method::POST,
            "auth-with-otp".to_owned(),
            Some(json!({"otpId": "x", "password": "1"})),
            None,
        ),
        other => {
            // requestOTP → request-otp, confirmPasswordReset → confirm-password-reset…
            let mut kebab = String::new();
            for c in other.chars() {
                if c.is_ascii_uppercase() {
                    kebab.push('-');
                }
                kebab.push(c.to_ascii_lowercase());
            }
            let kebab = kebab.replace("o-t-p", "otp");
            let body = json!({"email": "nobody@example.com", "token": "bogus", "password": "x1234567", "passwordConfirm": "x1234567", "newEmail": "n@example.com"});
            let token = (other == "requestEmailChange").then_some(user_token);
            (Method::POST, kebab, Some(body), token)
        }
    };
    let path = format!("/api/collections/users/{path}");
    app.call(method, &path, body, token).await.status
}

const ROUTES: [&str; 17] = [
    "list",
    "view",
    "create",
    "update",
    "delete",
    "listAuthMethods",
    "authRefresh",
    "authWithPassword",
    "authWithOTP",
    "requestOTP",
    "requestPasswordReset",
    "confirmPasswordReset",
    "requestVerification",
    "confirmVerification",
    "requestEmailChange",
    "confirmEmailChange",
    "auth",
];

#[actix_web::test]
async fn pb_ratelimit_each_label_limits_its_routes_only() {
    let app = spawn_app().await;
    let token = user(&app, "ann@example.com").await;
    // `auth` is the logins' shared label; every other one names one route.
    for label in ROUTES {
        for prefix in ["*", "users"] {
            let r = app
                .patch(
                    "/api/settings",
                    json!({"rateLimits": {"enabled": true, "rules": [{"label": format!("{prefix}:{label}"), "maxRequests": 1, "duration": 600}]}}),
                )
                .await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            let covered: &[&str] = if label == "auth" {
                &["authWithPassword", "authWithOTP"]
            } else {
                &[label]
            };
            for route in ROUTES.iter().filter(|r| **r != "auth") {
                let first = hit(&app, route, &token).await;
                let second = hit(&app, route, &token).await;
                if covered.contains(route) {
                    // One rule is one bucket: the logins share `auth`'s.
                    if covered.len() == 1 {
                        assert_ne!(first, 429, "{prefix}:{label} on {route}");
                    }
                    assert_eq!(second, 429, "{prefix}:{label} on {route}");
                } else {
                    assert_ne!(second, 429, "{prefix}:{label} must not limit {route}");
                }
            }
        }
    }
}

#[actix_web::test]
async fn pb_ratelimit_defaults_never_limit_refresh_but_limit_logins_and_mails() {
    let app = spawn_app_with_defaults().await;
    let token = user(&app, "ann@example.com").await;
    // A page of users behind one address refreshing their tokens.
    for _ in 0..40 {
        let r = app
            .call(Method::POST, "/api/collections/users/auth-refresh", None, Some(&token))
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    // Logins are limited (spawn_app logged in twice already)…
    let statuses: Vec<u16> =
        futures_util::future::join_all((0..8).map(|_| hit(&app, "authWithPassword", &token))).await;
    assert!(statuses.contains(&429), "{statuses:?}");
    // …and so is each mail-sending route.
    for route in ["requestPasswordReset", "requestVerification", "requestOTP"] {
        let statuses: Vec<u16> = futures_util::future::join_all((0..6).map(|_| hit(&app, route, &token))).await;
        assert!(statuses.contains(&429), "{route}: {statuses:?}");
    }
}

#[actix_web::test]
async fn pb_ratelimit_excluded_ips_are_not_limited() {
    let app = spawn_app().await;
    let r = app
        .patch(
            "/api/settings",
            json!({"rateLimits": {"enabled": true, "excludedIPs": ["127.0.0.0/8"], "rules": [{"label": "/api/", "maxRequests": 1, "duration": 600}]}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    for _ in 0..5 {
        assert_eq!(app.guest_get("/api/health").await.status, 200);
    }
    let r = app
        .patch("/api/settings", json!({"rateLimits": {"excludedIPs": []}}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(app.guest_get("/api/health").await.status, 200);
    assert_eq!(app.guest_get("/api/health").await.status, 429);
}

/// `excludedIPs` lifts the per-address rules, not the per-account limit on
/// failed logins: an excluded address (a shared NAT, a forged proxy
/// header) gets no unlimited password guesses.
#[actix_web::test]
async fn pb_ratelimit_excluded_ips_still_count_failed_logins() {
    let app = spawn_app().await;
    let body = json!({"email": "gus@example.com", "password": "password-1", "passwordConfirm": "password-1"});
    let r = app.guest_post("/api/collections/users/records", body).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app
        .patch(
            "/api/settings",
            json!({"rateLimits": {"enabled": true, "excludedIPs": ["127.0.0.0/8"],
                   "rules": [{"label": "*:auth", "maxRequests": 5, "duration": 600}]}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let login = |password: &str| {
        app.guest_post(
            "/api/collections/users/auth-with-password",
            json!({"identity": "gus@example.com", "password": password}),
        )
    };
    for i in 0..5 {
        assert_eq!(login(&format!("guess-{i}")).await.status, 400);
    }
    let r = login("password-1").await;
    assert_eq!(r.status, 429, "{:?}", r.body);
}

/// Stores rate limits as an older Basalt would have (no labels marker).
async fn store_old_settings(app: &TestApp, rate_limits: Value) {
    let mut settings = app.get("/api/settings").await.body;
    settings["rateLimits"] = rate_limits;
    let ops = vec![WriteOp::PutMeta {
        key: "settings".into(),
        value: Some(serde_json::to_vec(&settings).expect("json")),
    }];
    app.state.store.write(ops).await.expect("stored");
}

#[actix_web::test]
async fn pb_ratelimit_old_default_is_migrated_and_nothing_else() {
    let old = json!({"enabled": true, "rules": [{"label": "*:auth", "maxRequests": 5, "duration": 10}]});
    let app = spawn_app_with_defaults().await;
    store_old_settings(&app, old.clone()).await;
    let app = app.restart().await;
    let rules = app.get("/api/settings").await.body["rateLimits"]["rules"].clone();
    let labels: Vec<&str> = rules
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["label"].as_str())
        .collect();
    assert_eq!(
        labels,
        [
            "*:auth",
            "*:requestOTP",
            "*:requestPasswordReset",
            "*:requestVerification",
            "*:requestEmailChange"
        ]
    );

    // Rules an admin chose are kept as they are.
    let custom = json!({"enabled": true, "rules": [{"label": "*:auth", "maxRequests": 9, "duration": 60}]});
    let app2 = spawn_app_with_defaults().await;
    store_old_settings(&app2, custom).await;
    let app2 = app2.restart().await;
    let rules = app2.get("/api/settings").await.body["rateLimits"]["rules"].clone();
    assert_eq!(rules, json!([{"label": "*:auth", "maxRequests": 9, "duration": 60}]));

    // Once saved under the new labels, even the old default stays as saved.
    let r = app.patch("/api/settings", json!({"rateLimits": old})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let app = app.restart().await;
    let rules = app.get("/api/settings").await.body["rateLimits"]["rules"].clone();
    assert_eq!(rules, json!([{"label": "*:auth", "maxRequests": 5, "duration": 10}]));
}
