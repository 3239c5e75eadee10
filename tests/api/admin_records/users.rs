//! Auth records: verify, mails through the dev outbox, impersonation.

use serde_json::json;

use super::{mails_to, record, seed, LIST};
use crate::admin_support::{attr_after, Browser};
use crate::helpers::{spawn_app, TestApp};

/// Waits (bounded) until `n` mails to `to` are in the outbox: delivery is a
/// background task.
async fn wait_for_mails(app: &TestApp, to: &str, n: usize) -> Vec<String> {
    for _ in 0..2000 {
        let mails = mails_to(app, to);
        if mails.len() >= n {
            return mails;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("expected {n} mails to {to}, found {}", mails_to(app, to).len());
}

#[actix_web::test]
async fn auth_user_actions_verify_mail_and_impersonate() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/api/collections/users/records",
            json!({"email": "amy@example.com", "password": "password-1", "passwordConfirm": "password-1", "name": "Amy"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let path = format!("/_/collections/users/records/{id}");
    let mut b = Browser::login(&app).await;
    let page = b.get(&path).await;
    assert_eq!(page.status, 200);
    for text in [
        "not verified",
        "Mark verified",
        "Send verification mail",
        "Send password reset mail",
        "Impersonate",
    ] {
        page.assert_has(text);
    }
    page.assert_has("type=\"password\" id=\"f4\" name=\"password\"");
    assert!(!page.body.contains("$argon2") && !page.body.contains("tokenKey"));

    let r = b.post(&format!("{path}/send-verification"), &[]).await;
    assert_eq!((r.status, r.location()), (303, path.as_str()));
    let mails = wait_for_mails(&app, "amy@example.com", 1).await;
    assert!(mails[0].contains("Token: "), "{}", mails[0]);
    let r = b.post(&format!("{path}/send-reset"), &[]).await;
    assert_eq!(r.status, 303);
    wait_for_mails(&app, "amy@example.com", 2).await;
    b.get(&path)
        .await
        .assert_has("A password reset mail to amy@example.com is on its way.");

    let r = b.post(&format!("{path}/verify"), &[]).await;
    assert_eq!(r.status, 303);
    assert_eq!(record(&app, "users", &id).await["verified"], json!(true));
    let page = b.get(&path).await;
    page.assert_has("The account is now verified.");
    assert!(!page.body.contains("Mark verified"));

    // Editing without a password keeps it; the form can change the email.
    let r = b
        .post(
            &path,
            &[
                ("email", "amy2@example.com"),
                ("emailVisibility", "false"),
                ("verified", "false"),
                ("verified", "true"),
                ("password", ""),
                ("passwordConfirm", ""),
                ("name", "Amy B"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let user_token = app.login("users", "amy2@example.com", "password-1").await;
    assert!(!user_token.is_empty());

    let r = b.post(&format!("{path}/impersonate"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.location().is_empty());
    assert_eq!(r.header("cache-control"), "no-store");
    r.assert_has("data-copy=\"impersonate-token\"");
    r.assert_has("acts as this user for 7 days");
    let token = attr_after(&r.body, "id=\"impersonate-token\"", "value").expect("token input");
    assert!(token.len() > 40);
    r.assert_has("readonly");
    // The token works for the user's own record, and cannot be refreshed.
    let me = app
        .call(
            awc::http::Method::GET,
            &format!("/api/collections/users/records/{id}"),
            None,
            Some(&token),
        )
        .await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(me.body["name"], "Amy B");
    let refresh = app
        .call(
            awc::http::Method::POST,
            "/api/collections/users/auth-refresh",
            None,
            Some(&token),
        )
        .await;
    assert_eq!(refresh.status, 403, "{:?}", refresh.body);
    // It appears on no other page.
    for p in [path.clone(), "/_/collections/users/records".to_owned()] {
        assert!(!b.get(&p).await.body.contains(&token), "{p}");
    }
    // Not an auth collection: refused.
    app.posts().await;
    let ids = seed(&app, "posts", vec![json!({"title": "x"})]).await;
    let r = b.post(&format!("{LIST}/{}/impersonate", ids[0]), &[]).await;
    assert_eq!(r.status, 400);
}
