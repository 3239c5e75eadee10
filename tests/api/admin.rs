//! Dashboard basics over HTTP: login, sessions, CSRF, setup, assets, headers.

use super::admin_support::{attr_after, Browser};
use super::helpers::{spawn_app, start, SU_EMAIL, SU_PASSWORD};

#[actix_web::test]
async fn pages_redirect_to_login_without_a_session() {
    let app = spawn_app().await;
    let mut b = Browser::new(&app);
    for path in [
        "/_/",
        "/_/collections",
        "/_/live",
        "/_/logs",
        "/_/settings",
        "/_/collections/users/records",
    ] {
        let r = b.get(path).await;
        assert_eq!(r.status, 303, "{path}");
        assert!(r.location().starts_with("/_/login"), "{path} → {}", r.location());
    }
    let r = b.get("/_/collections?x=1").await;
    assert_eq!(r.location(), "/_/login?next=%2F_%2Fcollections%3Fx%3D1");
    // A form post without a session goes to the login page too, changing nothing.
    let r = b.send_form("/_/logout", &[("_csrf", "x")]).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location(), "/_/login");
    let r = b.get("/_").await;
    assert_eq!((r.status, r.location()), (303, "/_/"));
}

#[actix_web::test]
async fn login_sets_a_strict_http_only_session_and_logout_revokes_it() {
    let app = spawn_app().await;
    let mut b = Browser::new(&app);
    let page = b.get("/_/login").await;
    assert_eq!(page.status, 200);
    page.assert_has("Log in");
    // Wrong password: the form again with a message, no session.
    let r = b.login_with(SU_EMAIL, "wrong password").await;
    assert_eq!(r.status, 400);
    r.assert_has("Wrong email or password.");
    r.assert_has(&format!("value=\"{SU_EMAIL}\""));
    assert!(!b.cookies.contains_key("basalt_admin"));

    let r = b.login_with(SU_EMAIL, SU_PASSWORD).await;
    assert_eq!((r.status, r.location()), (303, "/_/collections"));
    let set = r
        .headers
        .get_all("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("basalt_admin="))
        .expect("session cookie");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/_/"] {
        assert!(set.contains(part), "{set} lacks {part}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: no Secure flag ({set})");
    let home = b.get("/_/collections").await;
    assert_eq!(home.status, 200);
    home.assert_has(SU_EMAIL);
    let session = b.cookies["basalt_admin"].clone();

    let r = b.post("/_/logout", &[]).await;
    assert_eq!((r.status, r.location()), (303, "/_/login"));
    // The old cookie no longer works, even if a client kept it.
    b.cookies.insert("basalt_admin".into(), session);
    let r = b.get("/_/collections").await;
    assert_eq!(r.status, 303);
}

#[actix_web::test]
async fn secure_cookie_behind_a_tls_proxy_and_next_is_followed_only_inside_the_dashboard() {
    let app = spawn_app().await;
    let mut b = Browser::new(&app);
    let form = b.get("/_/login").await;
    let token = attr_after(&form.body, "name=\"_csrf\"", "value").unwrap();
    let body = super::admin_support::form_encode(&[
        ("_csrf", &token),
        ("email", SU_EMAIL),
        ("password", SU_PASSWORD),
        ("next", "https://evil.example/"),
    ]);
    let r = b
        .send(
            awc::http::Method::POST,
            "/_/login",
            Some(body),
            &[("X-Forwarded-Proto", "https")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location(), "/_/collections");
    let set: Vec<String> = r
        .headers
        .get_all("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(
        set.iter()
            .any(|c| c.starts_with("basalt_admin=") && c.contains("Secure")),
        "{set:?}"
    );

    let mut b = Browser::new(&app);
    let form = b.get("/_/login?next=/_/settings").await;
    form.assert_has("value=\"/_/settings\"");
    let token = attr_after(&form.body, "name=\"_csrf\"", "value").unwrap();
    let r = b
        .send_form(
            "/_/login",
            &[
                ("_csrf", &token),
                ("email", SU_EMAIL),
                ("password", SU_PASSWORD),
                ("next", "/_/settings"),
            ],
        )
        .await;
    assert_eq!(r.location(), "/_/settings");
}

#[actix_web::test]
async fn csrf_is_required_on_every_post() {
    let app = spawn_app().await;
    // Login form without its double-submit token.
    let mut b = Browser::new(&app);
    let r = b
        .send_form("/_/login", &[("email", SU_EMAIL), ("password", SU_PASSWORD)])
        .await;
    assert_eq!(r.status, 403);
    assert!(!b.cookies.contains_key("basalt_admin"));

    let mut b = Browser::login(&app).await;
    assert!(!b.csrf.is_empty());
    // Logged in, but no token / a wrong token / a foreign origin.
    let r = b.send_form("/_/logout", &[]).await;
    assert_eq!(r.status, 403);
    r.assert_has("security token");
    let r = b.send_form("/_/logout", &[("_csrf", "not-the-token")]).await;
    assert_eq!(r.status, 403);
    let r = b
        .post_with_headers("/_/logout", &[], &[("Origin", "https://evil.example")])
        .await;
    assert_eq!(r.status, 403);
    // Still logged in after all of those.
    assert_eq!(b.get("/_/collections").await.status, 200);
}

#[actix_web::test]
async fn password_change_ends_dashboard_sessions() {
    let app = spawn_app().await;
    let mut b = Browser::login(&app).await;
    assert_eq!(b.get("/_/collections").await.status, 200);
    basalt::core::records::upsert_superuser(&app.state, SU_EMAIL, "a brand new password")
        .await
        .unwrap();
    let r = b.get("/_/collections").await;
    assert_eq!(r.status, 303);
    assert!(r.location().starts_with("/_/login"));
}

#[actix_web::test]
async fn dashboard_pages_carry_a_strict_csp_and_no_store() {
    let app = spawn_app().await;
    let mut b = Browser::login(&app).await;
    for path in ["/_/login", "/_/collections"] {
        let r = b.get(path).await;
        let csp = r.header("content-security-policy");
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("default-src 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(r.header("cache-control"), "no-store", "{path}");
        assert_eq!(r.header("x-frame-options"), "DENY", "{path}");
        // No inline script anywhere: every <script> has a src.
        assert!(!r.body.contains("<script>"), "{path} has an inline script");
    }
}

#[actix_web::test]
async fn assets_are_served_with_type_and_etag() {
    let app = spawn_app().await;
    let mut b = Browser::new(&app);
    let css = b.get("/_/assets/app.css").await;
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").starts_with("text/css"));
    let etag = css.header("etag").to_owned();
    assert!(etag.starts_with('"'));
    let again = b
        .send(
            awc::http::Method::GET,
            "/_/assets/app.css",
            None,
            &[("If-None-Match", &etag)],
        )
        .await;
    assert_eq!(again.status, 304);
    let js = b.get("/_/assets/app.js").await;
    assert!(js.header("content-type").starts_with("text/javascript"));
    assert_eq!(b.get("/_/assets/nope.css").await.status, 404);
    assert_eq!(b.get("/_/assets/../Cargo.toml").await.status, 404);
    assert_eq!(Browser::login(&app).await.get("/_/no-such-page").await.status, 404);
}

#[actix_web::test]
async fn first_start_setup_link_creates_the_superuser_once() {
    let tmp = tempfile::tempdir().unwrap();
    let app = start(tmp.path(), None).await;
    let token = app
        .state
        .setup_token
        .lock()
        .unwrap()
        .clone()
        .expect("a setup token while no superuser exists");
    let mut b = Browser::new(&app);
    // The login page points to the setup link.
    b.get("/_/login").await.assert_has("setup link");
    assert_eq!(b.get("/_/setup?token=wrong").await.status, 400);
    let page = b.get(&format!("/_/setup?token={token}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = attr_after(&page.body, "name=\"_csrf\"", "value").unwrap();
    // Mismatched passwords: the form again.
    let r = b
        .send_form(
            "/_/setup",
            &[
                ("_csrf", &csrf),
                ("token", &token),
                ("email", "first@example.com"),
                ("password", "pass word 1"),
                ("passwordConfirm", "other"),
            ],
        )
        .await;
    assert_eq!(r.status, 400);
    r.assert_has("do not match");
    let csrf = attr_after(&r.body, "name=\"_csrf\"", "value").unwrap();
    let r = b
        .send_form(
            "/_/setup",
            &[
                ("_csrf", &csrf),
                ("token", &token),
                ("email", "first@example.com"),
                ("password", "pass word 1"),
                ("passwordConfirm", "pass word 1"),
            ],
        )
        .await;
    assert_eq!((r.status, r.location()), (303, "/_/collections"), "{}", r.body);
    let home = b.get("/_/collections").await;
    assert_eq!(home.status, 200);
    home.assert_has("first@example.com");
    home.assert_has("Welcome!");
    // Used: the link no longer works, for anyone.
    let mut other = Browser::new(&app);
    let r = other.get(&format!("/_/setup?token={token}")).await;
    assert_eq!((r.status, r.location()), (303, "/_/login"));
    assert!(app.state.setup_token.lock().unwrap().is_none());
    // The new superuser can use the API too.
    app.login("_superusers", "first@example.com", "pass word 1").await;
}

#[actix_web::test]
async fn login_is_rate_limited_like_the_api() {
    let app = super::helpers::spawn_app_with_defaults().await;
    let mut b = Browser::new(&app);
    let mut limited = false;
    for _ in 0..8 {
        let r = b.login_with(SU_EMAIL, "wrong password").await;
        if r.status == 429 {
            r.assert_has("Too many");
            limited = true;
            break;
        }
        assert_eq!(r.status, 400);
    }
    assert!(limited, "8 wrong passwords within the window were never limited");
}
