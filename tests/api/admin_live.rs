//! The live feed page: recent changes rendered server-side, the feed token.

use awc::http::Method;
use serde_json::json;

use super::admin_support::Browser;
use super::helpers::spawn_app;

#[actix_web::test]
async fn live_page_lists_recent_changes_escaped() {
    let app = spawn_app().await;
    app.posts().await;
    let mut b = Browser::login(&app).await;
    let empty = b.get("/_/live?collection=posts").await;
    assert_eq!(empty.status, 200);
    empty.assert_has("No changes yet");
    let r = app
        .post(
            "/api/collections/posts/records",
            json!({"title": "<script>alert(1)</script>"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let page = b.get("/_/live?collection=posts").await;
    assert_eq!(page.status, 200);
    page.assert_has(&id);
    page.assert_has("create");
    // askama escapes with numeric entities.
    page.assert_has("&#60;script&#62;alert(1)&#60;/script&#62;");
    assert!(!page.body.contains("<script>alert"), "unescaped record data");
    // The script resumes after the seq the page was rendered at.
    page.assert_has(&format!("data-seq=\"{}\"", app.state.store.head_seq()));
    page.assert_has("data-topics=\"posts\"");
    // "All collections" subscribes to every collection.
    let all = b.get("/_/live").await;
    all.assert_has(&id);
    assert!(all.body.contains("_superusers posts users"), "{}", all.body);
    // Auth records in the feed never show password hashes or token keys.
    app.post(
        "/api/collections/users/records",
        json!({"email": "u@example.com", "password": "secret pass 1", "passwordConfirm": "secret pass 1"}),
    )
    .await;
    let users = b.get("/_/live?collection=users").await;
    users.assert_has("u@example.com");
    assert!(
        !users.body.contains("tokenKey") && !users.body.contains("$argon2"),
        "secrets in the feed"
    );
    assert_eq!(b.get("/_/live?collection=nope").await.status, 404);
}

#[actix_web::test]
async fn feed_token_needs_session_and_csrf_and_works_on_the_websocket() {
    let app = spawn_app().await;
    let mut anon = Browser::new(&app);
    let r = anon.send(Method::POST, "/_/live/token", None, &[]).await;
    assert_eq!(r.status, 303);
    let mut b = Browser::login(&app).await;
    let r = b.send(Method::POST, "/_/live/token", None, &[]).await;
    assert_eq!(r.status, 403, "no CSRF header");
    let csrf = b.csrf.clone();
    let r = b
        .send(Method::POST, "/_/live/token", None, &[("X-CSRF-Token", &csrf)])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), "no-store");
    let token = serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // A superuser token, not refreshable.
    let me = app
        .call(Method::GET, "/api/collections/_superusers/records", None, Some(&token))
        .await;
    assert_eq!(me.status, 200);
    let refresh = app
        .call(
            Method::POST,
            "/api/collections/_superusers/auth-refresh",
            None,
            Some(&token),
        )
        .await;
    assert_ne!(refresh.status, 200);
}
