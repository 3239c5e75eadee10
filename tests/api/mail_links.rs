//! The pages behind the links in auth mails (`/_/auth/confirm-*/{token}`):
//! each flow is started through the JSON API, its link read from the dev
//! outbox, the page fetched (which changes nothing) and its form posted the
//! way a browser does (double-submit cookie); the effect is checked through
//! the JSON API.

use awc::http::Method;
use serde_json::{json, Value};

use crate::admin_support::{attr_after, form_encode, Browser, Html};
use crate::auth_flows::{mail_to, token_in};
use crate::helpers::{spawn_app, TestApp};

async fn sign_up(app: &TestApp, email: &str, password: &str) -> String {
    let r = app
        .guest_post(
            "/api/collections/users/records",
            json!({"email": email, "password": password, "passwordConfirm": password}),
        )
        .await;
    assert_eq!(r.status, 200, "sign-up: {:?}", r.body);
    r.body["id"].as_str().expect("id").to_owned()
}

/// The path of the `/_/auth/…` link in a mail (the mail's host is the
/// `appURL` setting; the test talks to its own server).
fn link_in(mail: &str, page: &str) -> String {
    let line = mail
        .lines()
        .find(|l| l.contains(&format!("/_/auth/{page}/")))
        .unwrap_or_else(|| panic!("no {page} link in:\n{mail}"));
    let path = &line[line.find("/_/auth/").expect("link path")..];
    assert!(
        line.starts_with("http://127.0.0.1:8090/_/auth/"),
        "the link starts with the appURL: {line}"
    );
    assert_eq!(path, format!("/_/auth/{page}/{}", token_in(mail)));
    path.trim().to_owned()
}

fn csrf_of(page: &Html) -> String {
    attr_after(&page.body, "name=\"_csrf\"", "value").unwrap_or_else(|| panic!("no _csrf field:\n{}", page.body))
}

/// Opens a link like a browser: GET the page, expect the form.
async fn open(b: &mut Browser, link: &str) -> (Html, String) {
    let page = b.get(link).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.header("cache-control"), "no-store");
    assert!(page.header("content-security-policy").contains("script-src 'self'"));
    let csrf = csrf_of(&page);
    (page, csrf)
}

async fn record(app: &TestApp, id: &str) -> Value {
    let r = app.get(&format!("/api/collections/users/records/{id}")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
}

async fn login_status(app: &TestApp, identity: &str, password: &str) -> u16 {
    app.guest_post(
        "/api/collections/users/auth-with-password",
        json!({"identity": identity, "password": password}),
    )
    .await
    .status
}

#[actix_web::test]
async fn mail_link_verification() {
    let app = spawn_app().await;
    let id = sign_up(&app, "vic@example.com", "password-1").await;
    let r = app
        .guest_post(
            "/api/collections/users/request-verification",
            json!({"email": "vic@example.com"}),
        )
        .await;
    assert_eq!(r.status, 204);
    let link = link_in(&mail_to(&app.dir, "vic@example.com", 0).await, "confirm-verification");

    let mut b = Browser::new(&app);
    let (page, csrf) = open(&mut b, &link).await;
    page.assert_has("Verify your email");
    page.assert_has("vic@example.com");
    page.assert_has(&format!("<form method=\"post\" action=\"{link}\""));
    assert!(!page.body.contains("<script"), "no script on these pages");
    // A scanner's GET (even repeated) changes nothing.
    assert_eq!(Browser::new(&app).get(&link).await.status, 200);
    assert_eq!(record(&app, &id).await["verified"], false);

    let done = b.send_form(&link, &[("_csrf", &csrf)]).await;
    assert_eq!(done.status, 200, "{}", done.body);
    done.assert_has("Your email is verified. You can close this page.");
    assert_eq!(record(&app, &id).await["verified"], true);

    // Used: the link now says so, on GET and on POST.
    let again = b.get(&link).await;
    assert_eq!(again.status, 400, "{}", again.body);
    again.assert_has("already verified");
    let mut b2 = Browser::new(&app);
    b2.get("/_/login").await; // a valid double-submit cookie
    let csrf = b2.cookies["basalt_login_csrf"].clone();
    let again = b2.send_form(&link, &[("_csrf", &csrf)]).await;
    assert_eq!(again.status, 400, "{}", again.body);

    // The token never reaches the logs.
    app.state.store.logs().flush().await;
    let token = link.rsplit('/').next().expect("token");
    let paths: Vec<String> = app
        .state
        .store
        .logs()
        .newest_first(0)
        .map(|e| e.expect("log entry").1.path)
        .collect();
    assert!(
        paths.iter().any(|p| p == "/_/auth/confirm-verification/{token}"),
        "{paths:?}"
    );
    assert!(paths.iter().all(|p| !p.contains(token)), "{paths:?}");
}

#[actix_web::test]
async fn mail_link_password_reset() {
    let app = spawn_app().await;
    sign_up(&app, "pam@example.com", "password-1").await;
    let r = app
        .guest_post(
            "/api/collections/users/request-password-reset",
            json!({"email": "pam@example.com"}),
        )
        .await;
    assert_eq!(r.status, 204);
    let link = link_in(&mail_to(&app.dir, "pam@example.com", 0).await, "confirm-password-reset");

    let mut b = Browser::new(&app);
    let (page, csrf) = open(&mut b, &link).await;
    page.assert_has("Choose a new password");
    page.assert_has("name=\"passwordConfirm\"");
    assert_eq!(login_status(&app, "pam@example.com", "password-1").await, 200);

    // The API's validation, inline, with 400; nothing changes.
    let r = b
        .send_form(
            &link,
            &[
                ("_csrf", &csrf),
                ("password", "new-password"),
                ("passwordConfirm", "other-one"),
            ],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    r.assert_has("data-field-error=\"passwordConfirm\">Values don&#39;t match.");
    let csrf = csrf_of(&r);
    let r = b
        .send_form(
            &link,
            &[("_csrf", &csrf), ("password", "short"), ("passwordConfirm", "short")],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    r.assert_has("data-field-error=\"password\">Must be 8 to 256 characters.");
    assert_eq!(login_status(&app, "pam@example.com", "password-1").await, 200);

    let csrf = csrf_of(&r);
    let done = b
        .send_form(
            &link,
            &[
                ("_csrf", &csrf),
                ("password", "new-password"),
                ("passwordConfirm", "new-password"),
            ],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    done.assert_has("Your password has been changed");
    assert_eq!(login_status(&app, "pam@example.com", "new-password").await, 200);
    assert_eq!(login_status(&app, "pam@example.com", "password-1").await, 400);

    // The link works once.
    let again = b.get(&link).await;
    assert_eq!(again.status, 400, "{}", again.body);
    again.assert_has("This link is invalid, has expired or has already been used.");
    let csrf = b.cookies["basalt_login_csrf"].clone();
    let again = b
        .send_form(
            &link,
            &[
                ("_csrf", &csrf),
                ("password", "third-password"),
                ("passwordConfirm", "third-password"),
            ],
        )
        .await;
    assert_eq!(again.status, 400, "{}", again.body);
    assert_eq!(login_status(&app, "pam@example.com", "new-password").await, 200);
    assert_eq!(login_status(&app, "pam@example.com", "third-password").await, 400);
}

#[actix_web::test]
async fn mail_link_email_change() {
    let app = spawn_app().await;
    let id = sign_up(&app, "old@example.com", "password-1").await;
    let session = app.login("users", "old@example.com", "password-1").await;
    let r = app
        .call(
            Method::POST,
            "/api/collections/users/request-email-change",
            Some(json!({"newEmail": "new@example.com"})),
            Some(&session),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let link = link_in(&mail_to(&app.dir, "new@example.com", 0).await, "confirm-email-change");

    let mut b = Browser::new(&app);
    let (page, csrf) = open(&mut b, &link).await;
    page.assert_has("old@example.com");
    page.assert_has("new@example.com");
    page.assert_has("name=\"password\"");
    assert_eq!(record(&app, &id).await["email"], "old@example.com");

    // A wrong password: 400, the error inline, nothing changed.
    let r = b
        .send_form(&link, &[("_csrf", &csrf), ("password", "wrong-password")])
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    r.assert_has("data-field-error=\"password\">Invalid password.");
    assert_eq!(record(&app, &id).await["email"], "old@example.com");
    assert_eq!(login_status(&app, "old@example.com", "password-1").await, 200);

    let csrf = csrf_of(&r);
    let done = b
        .send_form(&link, &[("_csrf", &csrf), ("password", "password-1")])
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    done.assert_has("Your email address is now new@example.com");
    let rec = record(&app, &id).await;
    assert_eq!(rec["email"], "new@example.com");
    assert_eq!(rec["verified"], true);
    assert_eq!(login_status(&app, "new@example.com", "password-1").await, 200);
    assert_eq!(login_status(&app, "old@example.com", "password-1").await, 400);

    // Used.
    let again = b.get(&link).await;
    assert_eq!(again.status, 400, "{}", again.body);
    let csrf = b.cookies["basalt_login_csrf"].clone();
    let again = b
        .send_form(&link, &[("_csrf", &csrf), ("password", "password-1")])
        .await;
    assert_eq!(again.status, 400, "{}", again.body);
}

#[actix_web::test]
async fn mail_link_bad_tokens_get_a_4xx_page() {
    let app = spawn_app().await;
    sign_up(&app, "bob@example.com", "password-1").await;
    let r = app
        .guest_post(
            "/api/collections/users/request-password-reset",
            json!({"email": "bob@example.com"}),
        )
        .await;
    assert_eq!(r.status, 204);
    let reset = token_in(&mail_to(&app.dir, "bob@example.com", 0).await);
    let mut b = Browser::new(&app);
    b.get("/_/login").await;
    let csrf = b.cookies["basalt_login_csrf"].clone();
    let long = "x".repeat(5000);
    for page in ["confirm-verification", "confirm-password-reset", "confirm-email-change"] {
        for token in ["garbage", "a.b.c", "%E2%82%AC", long.as_str()] {
            let link = format!("/_/auth/{page}/{token}");
            let r = b.get(&link).await;
            assert_eq!(r.status, 400, "{link}: {}", r.body);
            r.assert_has("This link is invalid, has expired or has already been used.");
            assert!(!r.body.contains("Back to the dashboard"), "an end user's page");
            let r = b
                .send_form(
                    &link,
                    &[
                        ("_csrf", &csrf),
                        ("password", "password-2"),
                        ("passwordConfirm", "password-2"),
                    ],
                )
                .await;
            assert_eq!(r.status, 400, "{link}: {}", r.body);
        }
    }
    // A token of another kind does not open another flow's page.
    for page in ["confirm-verification", "confirm-email-change"] {
        let r = b.get(&format!("/_/auth/{page}/{reset}")).await;
        assert_eq!(r.status, 400, "{page}: {}", r.body);
    }
    assert_eq!(b.get("/_/auth/confirm-nothing/x").await.status, 404);
    // The reset token itself was not spent by any of this.
    assert_eq!(
        b.get(&format!("/_/auth/confirm-password-reset/{reset}")).await.status,
        200
    );
}

#[actix_web::test]
async fn mail_link_form_needs_its_csrf_cookie_and_same_origin() {
    let app = spawn_app().await;
    sign_up(&app, "cy@example.com", "password-1").await;
    let r = app
        .guest_post(
            "/api/collections/users/request-password-reset",
            json!({"email": "cy@example.com"}),
        )
        .await;
    assert_eq!(r.status, 204);
    let link = link_in(&mail_to(&app.dir, "cy@example.com", 0).await, "confirm-password-reset");
    let post = |csrf: &str| {
        form_encode(&[
            ("_csrf", csrf),
            ("password", "new-password"),
            ("passwordConfirm", "new-password"),
        ])
    };

    let mut b = Browser::new(&app);
    let (_, csrf) = open(&mut b, &link).await;
    // No token in the form.
    let no_token = form_encode(&[("password", "new-password"), ("passwordConfirm", "new-password")]);
    let r = b.send(Method::POST, &link, Some(no_token), &[]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    r.assert_has("Request refused");
    // A wrong one.
    let r = b.send(Method::POST, &link, Some(post("not-the-token")), &[]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    // The right one from a browser without the cookie (another site's form).
    let mut stranger = Browser::new(&app);
    let r = stranger.send(Method::POST, &link, Some(post(&csrf)), &[]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    // The right token and cookie, but posted from another origin.
    let r = b
        .send(
            Method::POST,
            &link,
            Some(post(&csrf)),
            &[("Origin", "https://evil.example")],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(login_status(&app, "cy@example.com", "password-1").await, 200);
    assert_eq!(login_status(&app, "cy@example.com", "new-password").await, 400);

    // The token is still good: the real form (same origin) goes through.
    let origin = app.base.clone();
    let r = b
        .send(Method::POST, &link, Some(post(&csrf)), &[("Origin", &origin)])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(login_status(&app, "cy@example.com", "new-password").await, 200);
    assert_eq!(login_status(&app, "cy@example.com", "password-1").await, 400);
}

#[actix_web::test]
async fn mail_link_posts_count_against_the_api_rate_limit() {
    let app = spawn_app().await;
    sign_up(&app, "dot@example.com", "password-1").await;
    let r = app
        .guest_post(
            "/api/collections/users/request-password-reset",
            json!({"email": "dot@example.com"}),
        )
        .await;
    assert_eq!(r.status, 204);
    let mail = mail_to(&app.dir, "dot@example.com", 0).await;
    let link = link_in(&mail, "confirm-password-reset");
    let r = app
        .patch(
            "/api/settings",
            json!({"rateLimits": {"enabled": true, "rules": [{"label": "users:confirmPasswordReset", "maxRequests": 2, "duration": 60}]}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    let mut b = Browser::new(&app);
    let (_, mut csrf) = open(&mut b, &link).await;
    for _ in 0..2 {
        let mismatch = [
            ("_csrf", csrf.as_str()),
            ("password", "new-password"),
            ("passwordConfirm", "nope-nope"),
        ];
        let r = b.send_form(&link, &mismatch).await;
        assert_eq!(r.status, 400, "{}", r.body);
        csrf = csrf_of(&r);
    }
    let mismatch = [
        ("_csrf", csrf.as_str()),
        ("password", "new-password"),
        ("passwordConfirm", "nope-nope"),
    ];
    let r = b.send_form(&link, &mismatch).await;
    assert_eq!(r.status, 429, "{}", r.body);
    r.assert_has("Too many attempts");
    // The same bucket as the API route.
    let r = app
        .guest_post(
            "/api/collections/users/confirm-password-reset",
            json!({"token": token_in(&mail), "password": "new-password", "passwordConfirm": "new-password"}),
        )
        .await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    // GET is never limited (it changes nothing).
    assert_eq!(b.get(&link).await.status, 200);
}
