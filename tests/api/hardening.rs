//! Attacks from a security review, one test per class: account lockout from
//! another address, `oldPassword` as a password oracle, OTP guessing, auth
//! ids shared across auth collections, backup downloads with a long-lived
//! token in the URL, and an OpenAPI document that shows what the caller
//! may not use. (The SSE subscription hijack is in `realtime.rs`.)

use awc::http::Method;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with_defaults, Resp, TestApp, SU_EMAIL, SU_PASSWORD};

/// Client addresses, as a trusted proxy would report them.
const ADDR_A: &str = "203.0.113.10";
const ADDR_B: &str = "198.51.100.20";

/// Makes the server read the client's address from `X-Forwarded-For`.
async fn trust_proxy(app: &TestApp) {
    let r = app
        .patch(
            "/api/settings",
            json!({"trustedProxy": {"headers": ["X-Forwarded-For"]}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// A request from client address `ip` (through the trusted proxy).
async fn call_from(app: &TestApp, ip: &str, method: Method, path: &str, body: Value, token: Option<&str>) -> Resp {
    let mut req = app
        .client
        .request(method, format!("{}{path}", app.base))
        .insert_header(("X-Forwarded-For", ip.to_owned()));
    if let Some(t) = token {
        req = req.insert_header(("Authorization", t.to_owned()));
    }
    crate::helpers::read(req.send_json(&body).await.expect("request sent")).await
}

async fn login_from(app: &TestApp, ip: &str, collection: &str, identity: &str, password: &str) -> Resp {
    let path = format!("/api/collections/{collection}/auth-with-password");
    let body = json!({"identity": identity, "password": password});
    call_from(app, ip, Method::POST, &path, body, None).await
}

fn assert_429(r: &Resp) {
    assert_eq!(r.status, 429, "{:?}", r.body);
    let secs: u64 = r
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After seconds");
    assert!(secs >= 1);
}

async fn sign_up(app: &TestApp, collection: &str, body: Value) -> Resp {
    app.guest_post(&format!("/api/collections/{collection}/records"), body)
        .await
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("JWT payload");
    serde_json::from_slice(&B64.decode(payload).expect("base64")).expect("JSON claims")
}

// ---- 1. a stranger cannot lock the owner out ------------------------------

#[actix_web::test]
async fn hard_wrong_passwords_from_one_address_never_lock_out_another() {
    let app = spawn_app_with_defaults().await;
    trust_proxy(&app).await;
    // Address A hammers the superuser's account: the first five are
    // checked (and wrong), then A is refused.
    for i in 0..10 {
        let r = login_from(&app, ADDR_A, "_superusers", SU_EMAIL, "not the password").await;
        if i < 5 {
            assert_eq!(r.status, 400, "guess {i}: {:?}", r.body);
        } else {
            assert_429(&r);
        }
    }
    // The owner, from another address, logs in at once.
    let r = login_from(&app, ADDR_B, "_superusers", SU_EMAIL, SU_PASSWORD).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // A itself stays refused, even with the right password (no oracle).
    assert_429(&login_from(&app, ADDR_A, "_superusers", SU_EMAIL, SU_PASSWORD).await);
}

#[actix_web::test]
async fn hard_dashboard_login_cannot_be_locked_from_another_address() {
    let app = spawn_app_with_defaults().await;
    trust_proxy(&app).await;
    for _ in 0..8 {
        login_from(&app, ADDR_A, "_superusers", SU_EMAIL, "not the password").await;
    }
    // The dashboard's login form shares the limiter: from B it works.
    let page = app
        .client
        .get(format!("{}/_/login", app.base))
        .insert_header(("X-Forwarded-For", ADDR_B))
        .send()
        .await
        .expect("login page");
    let cookie = page
        .headers()
        .get_all("set-cookie")
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("basalt_login_csrf="))
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
        .expect("login csrf cookie");
    let browser = awc::Client::builder().disable_redirects().finish();
    let submit = |ip: &'static str| {
        let (app, browser) = (&app, &browser);
        let cookie = cookie.clone();
        async move {
            browser
                .post(format!("{}/_/login", app.base))
                .insert_header(("X-Forwarded-For", ip))
                .insert_header(("Cookie", format!("basalt_login_csrf={cookie}")))
                .send_form(&[
                    ("email", SU_EMAIL),
                    ("password", SU_PASSWORD),
                    ("_csrf", cookie.as_str()),
                    ("next", "/_/collections"),
                ])
                .await
                .expect("login submit")
                .status()
                .as_u16()
        }
    };
    assert_eq!(submit(ADDR_B).await, 303);
    assert_eq!(submit(ADDR_A).await, 429);
}

// ---- 2. oldPassword is a login attempt -------------------------------------

#[actix_web::test]
async fn hard_wrong_old_passwords_count_as_login_attempts() {
    let app = spawn_app_with_defaults().await;
    trust_proxy(&app).await;
    let r = sign_up(
        &app,
        "users",
        json!({"email": "amy@example.com", "password": "password-1", "passwordConfirm": "password-1"}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let login = login_from(&app, ADDR_B, "users", "amy@example.com", "password-1").await;
    assert_eq!(login.status, 200, "{:?}", login.body);
    let token = login.body["token"].as_str().unwrap().to_owned();
    let url = format!("/api/collections/users/records/{id}");
    let change = |old: &str| json!({"oldPassword": old, "password": "password-9", "passwordConfirm": "password-9"});
    for i in 0..5 {
        let r = call_from(
            &app,
            ADDR_A,
            Method::PATCH,
            &url,
            change(&format!("guess-{i}")),
            Some(&token),
        )
        .await;
        assert_eq!(r.status, 400, "guess {i}: {:?}", r.body);
        assert_eq!(r.field_code("oldPassword"), Some("validation_invalid_old_password"));
    }
    // Over the limit: refused before the password is looked at.
    assert_429(&call_from(&app, ADDR_A, Method::PATCH, &url, change("guess-5"), Some(&token)).await);
    assert_429(&call_from(&app, ADDR_A, Method::PATCH, &url, change("password-1"), Some(&token)).await);
    // Through a batch too (the sub-request's answer is the 429).
    let batch = json!({"requests": [{"method": "PATCH", "url": url, "body": change("guess-6")}]});
    let r = call_from(&app, ADDR_A, Method::POST, "/api/batch", batch, Some(&token)).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(
        r.body["data"]["requests"]["0"]["response"]["status"], 429,
        "{:?}",
        r.body
    );
    // The same limiter as logins: A cannot log into this account either…
    assert_429(&login_from(&app, ADDR_A, "users", "amy@example.com", "password-1").await);
    // …while the owner, elsewhere, still can, and can change the password.
    let r = call_from(&app, ADDR_B, Method::PATCH, &url, change("password-1"), Some(&token)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

// ---- 3. an OTP dies after five wrong codes --------------------------------

#[actix_web::test]
async fn hard_otp_is_invalidated_after_five_wrong_codes() {
    let app = spawn_app().await;
    let r = app
        .patch(
            "/api/collections/users",
            json!({"authOptions": {"otp": {"enabled": true, "duration": 300, "length": 6}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // Four codes to one mailbox: more than the per-recipient mail throttle
    // sends by default (3 per 10 minutes; its own test is in bounds_server).
    let r = app
        .patch("/api/settings", json!({"limits": {"mailsPerAddress": 10}}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let body = json!({"email": "eli@example.com", "password": "password-1", "passwordConfirm": "password-1"});
    assert_eq!(sign_up(&app, "users", body).await.status, 200);
    let request = || {
        app.guest_post(
            "/api/collections/users/request-otp",
            json!({"email": "eli@example.com"}),
        )
    };
    let code_in = |mail: String| {
        mail.split("code is: ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .expect("code in mail")
            .to_owned()
    };
    let try_code = |otp_id: String, code: String| {
        app.guest_post(
            "/api/collections/users/auth-with-otp",
            json!({"otpId": otp_id, "password": code}),
        )
    };

    let otp_id = request().await.body["otpId"].as_str().unwrap().to_owned();
    let code = code_in(crate::auth_flows::mail_to(&app.dir, "eli@example.com", 0).await);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let mut bad = None;
    for i in 0..5 {
        let r = try_code(otp_id.clone(), wrong.to_owned()).await;
        assert_eq!(r.status, 400, "wrong code {i}: {:?}", r.body);
        bad = Some(r.body);
    }
    // The right code now fails exactly like a wrong one.
    let r = try_code(otp_id.clone(), code).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(Some(r.body), bad);

    // Not a lockout: a new OTP works (after a wrong guess or two).
    let otp_id = request().await.body["otpId"].as_str().unwrap().to_owned();
    let code = code_in(crate::auth_flows::mail_to(&app.dir, "eli@example.com", 1).await);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert_eq!(try_code(otp_id.clone(), wrong.to_owned()).await.status, 400);
    let r = try_code(otp_id, code).await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    // Wrong codes are failed logins of the account too. (The superuser's
    // token lets these past the per-address rule, isolating the account's.)
    let r = app
        .patch(
            "/api/settings",
            json!({"rateLimits": {"enabled": true, "rules": [{"label": "*:auth", "maxRequests": 5, "duration": 60}]}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = app
            .post(
                "/api/collections/users/request-otp",
                json!({"email": "eli@example.com"}),
            )
            .await;
        ids.push(r.body["otpId"].as_str().unwrap().to_owned());
    }
    // Each OTP is stored in the background before its mail goes out: wait
    // for both mails, so the guesses below meet stored OTPs (an unknown
    // otpId fails before the account's limit is consulted).
    for n in [2, 3] {
        crate::auth_flows::mail_to(&app.dir, "eli@example.com", n).await;
    }
    let su_try = |otp_id: &str| {
        app.post(
            "/api/collections/users/auth-with-otp",
            json!({"otpId": otp_id, "password": "not-a-code"}),
        )
    };
    for _ in 0..5 {
        assert_eq!(su_try(&ids[0]).await.status, 400);
    }
    let r = su_try(&ids[1]).await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    let login = json!({"identity": "eli@example.com", "password": "password-1"});
    let r = app.post("/api/collections/users/auth-with-password", login).await;
    assert_eq!(r.status, 429, "{:?}", r.body);
}

/// The email-change token survives a wrong password, so its password check
/// is a login like any other: five wrong passwords from one address and
/// that address gets 429s for the account, the right password included.
#[actix_web::test]
async fn hard_confirm_email_change_guesses_are_failed_logins() {
    // The shipped rate limits (the test default turns them off).
    let app = spawn_app_with_defaults().await;
    let body = json!({"email": "fay@example.com", "password": "password-1", "passwordConfirm": "password-1"});
    assert_eq!(sign_up(&app, "users", body).await.status, 200);
    let session = app.login("users", "fay@example.com", "password-1").await;
    let r = app
        .call(
            Method::POST,
            "/api/collections/users/request-email-change",
            Some(json!({"newEmail": "fay2@example.com"})),
            Some(&session),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let token = crate::auth_flows::token_in(&crate::auth_flows::mail_to(&app.dir, "fay2@example.com", 0).await);
    let confirm = |password: &str| {
        app.guest_post(
            "/api/collections/users/confirm-email-change",
            json!({"token": token, "password": password}),
        )
    };
    for i in 0..5 {
        let r = confirm(&format!("guess-{i}")).await;
        assert_eq!(r.status, 400, "guess {i}: {:?}", r.body);
    }
    let r = confirm("guess-5").await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    let r = confirm("password-1").await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    // The account's logins from this address wait too.
    let login = json!({"identity": "fay@example.com", "password": "password-1"});
    let r = app.guest_post("/api/collections/users/auth-with-password", login).await;
    assert_eq!(r.status, 429, "{:?}", r.body);
}

// ---- 4. one auth id, one account ------------------------------------------

#[actix_web::test]
async fn hard_auth_ids_are_unique_across_auth_collections() {
    let app = spawn_app().await;
    let body = |id: &str, email: &str| json!({"id": id, "email": email, "password": "password-1", "passwordConfirm": "password-1"});
    let r = sign_up(
        &app,
        "users",
        json!({"email": "u@example.com", "password": "password-1", "passwordConfirm": "password-1"}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let uid = r.body["id"].as_str().unwrap().to_owned();
    app.create_collection(json!({
        "name": "members", "type": "auth", "createRule": "", "listRule": "", "viewRule": "",
        "schema": {"type": "object", "properties": {}}
    }))
    .await;
    app.create_collection(json!({
        "name": "notes", "createRule": "",
        "schema": {"type": "object", "properties": {}}
    }))
    .await;

    // REST sign-up with U's id in another auth collection.
    let r = sign_up(&app, "members", body(&uid, "m@example.com")).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.field_code("id"), Some("validation_invalid_auth_id"), "{:?}", r.body);
    // Not for superusers either (nor into _superusers).
    let r = app
        .post("/api/collections/members/records", body(&uid, "m@example.com"))
        .await;
    assert_eq!(r.field_code("id"), Some("validation_invalid_auth_id"), "{:?}", r.body);
    let r = app
        .post("/api/collections/_superusers/records", body(&uid, "s@example.com"))
        .await;
    assert_eq!(r.field_code("id"), Some("validation_invalid_auth_id"), "{:?}", r.body);

    // Batch create and upsert.
    for method in ["POST", "PUT"] {
        let batch = json!({"requests": [
            {"method": method, "url": "/api/collections/members/records", "body": body(&uid, "m@example.com")}
        ]});
        let r = app.guest_post("/api/batch", batch).await;
        assert_eq!(r.status, 400, "{method}: {:?}", r.body);
        let sub = &r.body["data"]["requests"]["0"]["response"];
        assert_eq!(
            sub["data"]["id"]["code"], "validation_invalid_auth_id",
            "{method}: {:?}",
            r.body
        );
    }
    // Two new records with one id in one batch: the store refuses the pair.
    let batch = json!({"requests": [
        {"method": "POST", "url": "/api/collections/users/records", "body": body("sharedid1234567", "a@example.com")},
        {"method": "POST", "url": "/api/collections/members/records", "body": body("sharedid1234567", "b@example.com")}
    ]});
    let r = app.guest_post("/api/batch", batch).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(
        r.body.to_string().contains("validation_invalid_auth_id"),
        "{:?}",
        r.body
    );
    assert_eq!(
        app.get("/api/collections/users/records/sharedid1234567").await.status,
        404
    );

    // Nothing was created; other ids and base collections are unaffected.
    assert_eq!(app.get("/api/collections/members/records").await.body["totalItems"], 0);
    assert_eq!(
        sign_up(&app, "members", body("memberid1234567", "m@example.com"))
            .await
            .status,
        200
    );
    let r = sign_up(&app, "notes", json!({"id": uid})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

// ---- 6. backup downloads take a short-lived file token --------------------

#[actix_web::test]
async fn hard_backup_download_takes_only_a_superuser_file_token() {
    let app = spawn_app().await;
    assert_eq!(app.post("/api/backups", json!({"name": "b1.backup"})).await.status, 204);
    let r = sign_up(
        &app,
        "users",
        json!({"email": "amy@example.com", "password": "password-1", "passwordConfirm": "password-1"}),
    )
    .await;
    assert_eq!(r.status, 200);
    let user = app.login("users", "amy@example.com", "password-1").await;

    // File tokens: for any authenticated record, short-lived, type "file".
    assert_eq!(app.guest_post("/api/files/token", json!({})).await.status, 401);
    let r = app.post("/api/files/token", json!({})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let file_token = r.body["token"].as_str().unwrap().to_owned();
    let c = claims(&file_token);
    assert_eq!(c["type"], "file");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ttl = c["exp"].as_i64().unwrap() - now;
    assert!((170..=181).contains(&ttl), "file token lives {ttl} s");
    let r = app.call(Method::POST, "/api/files/token", None, Some(&user)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let user_file_token = r.body["token"].as_str().unwrap().to_owned();

    let download = |query: String| {
        let app = &app;
        async move { app.guest_get(&format!("/api/backups/b1.backup{query}")).await }
    };
    // The superuser's file token works in the URL…
    let r = download(format!("?token={file_token}")).await;
    assert_eq!(r.status, 200);
    // …the 7-day auth token does not, nor a user's file token, nor junk.
    for bad in [app.token.clone(), user_file_token, user.clone(), "junk".into()] {
        let r = download(format!("?token={bad}")).await;
        assert_eq!(r.status, 403, "{:?}", r.body);
    }
    assert_eq!(download(String::new()).await.status, 401);
    // The header still works as before.
    assert_eq!(app.get("/api/backups/b1.backup").await.status, 200);
    // A file token is not an auth token.
    let r = app.call(Method::GET, "/api/backups", None, Some(&file_token)).await;
    assert_eq!(r.status, 401);
}

// ---- 7. the OpenAPI document per caller ------------------------------------

#[actix_web::test]
async fn hard_openapi_shows_only_what_the_caller_may_use() {
    let app = spawn_app().await;
    app.create_collection(
        json!({"name": "internal", "schema": {"type": "object", "properties": {"x": {"type": "string"}}}}),
    )
    .await;
    app.create_collection(json!({
        "name": "notes", "listRule": "owner = @request.auth.id", "viewRule": "owner = @request.auth.id",
        "createRule": "@request.auth.id != ''",
        "schema": {"type": "object", "properties": {"owner": {"type": "string"}, "text": {"type": "string"}}}
    }))
    .await;
    let guest = app.guest_get("/api/openapi.json").await;
    assert_eq!(guest.status, 200);
    let text = guest.body.to_string();
    let paths = guest.body["paths"].as_object().unwrap();
    assert!(!text.contains("_superusers") && !text.contains("Superusers"), "{text}");
    assert!(!text.contains("internal") && !text.contains("Internal"), "{text}");
    // No rule text at all (users' default rules, notes' rules).
    assert!(!text.contains("@request"), "{text}");
    // Only the operations whose rule is not null for a guest.
    let notes = &paths["/api/collections/notes/records"];
    assert!(notes.get("get").is_some() && notes.get("post").is_some(), "{notes}");
    let one = &paths["/api/collections/notes/records/{id}"];
    assert!(one.get("get").is_some(), "{one}");
    assert!(one.get("patch").is_none() && one.get("delete").is_none(), "{one}");
    assert!(paths.contains_key("/api/collections/users/auth-with-password"));

    // A signed-in user sees the same surface (no superuser-only parts).
    let body = json!({"email": "amy@example.com", "password": "password-1", "passwordConfirm": "password-1"});
    assert_eq!(sign_up(&app, "users", body).await.status, 200);
    let user = app.login("users", "amy@example.com", "password-1").await;
    let r = app.call(Method::GET, "/api/openapi.json", None, Some(&user)).await;
    let text = r.body.to_string();
    assert!(!text.contains("_superusers") && !text.contains("internal") && !text.contains("@request"));

    // Superusers see everything, rules included.
    let su = app.get("/api/openapi.json").await.body;
    let paths = su["paths"].as_object().unwrap();
    assert!(paths.contains_key("/api/collections/_superusers/records"));
    assert!(paths.contains_key("/api/collections/_superusers/auth-with-password"));
    assert!(paths["/api/collections/internal/records/{id}"].get("delete").is_some());
    assert!(paths["/api/collections/notes/records/{id}"].get("delete").is_some());
    assert!(su.to_string().contains("owner = @request.auth.id"));
}
