use awc::http::Method;
use serde_json::json;

use crate::helpers::{spawn_app, SU_EMAIL, SU_PASSWORD};

#[actix_web::test]
async fn superuser_login_and_token_forms() {
    let app = spawn_app().await;
    let r = app
        .guest_post(
            "/api/collections/_superusers/auth-with-password",
            json!({"identity": SU_EMAIL, "password": SU_PASSWORD}),
        )
        .await;
    assert_eq!(r.status, 200);
    let token = r.body["token"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3);
    assert_eq!(r.body["record"]["email"], SU_EMAIL);
    assert_eq!(r.body["record"]["collectionName"], "_superusers");
    assert!(r.body["record"].get("password").is_none());
    assert!(r.body["record"].get("tokenKey").is_none());
    // Identity is case-insensitive.
    let r = app
        .guest_post(
            "/api/collections/_superusers/auth-with-password",
            json!({"identity": SU_EMAIL.to_uppercase(), "password": SU_PASSWORD}),
        )
        .await;
    assert_eq!(r.status, 200);

    for header in [token.to_owned(), format!("Bearer {token}")] {
        assert_eq!(
            app.call(Method::GET, "/api/collections", None, Some(&header))
                .await
                .status,
            200
        );
    }
    // A garbled or tampered token is a guest.
    let tampered = format!("{}x", &token[..token.len() - 1]);
    for bad in ["nonsense", "a.b.c", tampered.as_str()] {
        assert_eq!(
            app.call(Method::GET, "/api/collections", None, Some(bad)).await.status,
            401
        );
    }
    // Refresh.
    let r = app
        .call(
            Method::POST,
            "/api/collections/_superusers/auth-refresh",
            None,
            Some(token),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["record"]["email"], SU_EMAIL);
    let r = app
        .call(Method::POST, "/api/collections/_superusers/auth-refresh", None, None)
        .await;
    assert_eq!(r.status, 401);
}

#[actix_web::test]
async fn failed_logins_look_the_same() {
    let app = spawn_app().await;
    let wrong_pw = app
        .guest_post(
            "/api/collections/_superusers/auth-with-password",
            json!({"identity": SU_EMAIL, "password": "wrong password"}),
        )
        .await;
    let no_user = app
        .guest_post(
            "/api/collections/_superusers/auth-with-password",
            json!({"identity": "ghost@example.com", "password": "wrong password"}),
        )
        .await;
    assert_eq!(wrong_pw.status, 400);
    assert_eq!(wrong_pw.body, no_user.body);
    let missing = app
        .guest_post(
            "/api/collections/_superusers/auth-with-password",
            json!({"identity": SU_EMAIL}),
        )
        .await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.field_code("password"), Some("validation_required"));
    let base = app.posts().await;
    let r = app
        .guest_post(
            &format!("/api/collections/{}/auth-with-password", base["name"].as_str().unwrap()),
            json!({"identity": "a", "password": "b"}),
        )
        .await;
    assert_eq!(r.status, 400);
}

#[actix_web::test]
async fn auth_records_keep_secrets_and_password_change_revokes_tokens() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/api/collections/users/records",
            json!({"email": "Ann@Example.com", "password": "password1", "passwordConfirm": "password1", "name": "Ann"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.body.get("password").is_none() && r.body.get("tokenKey").is_none());
    assert_eq!(r.body["verified"], false);
    let id = r.body["id"].as_str().unwrap().to_owned();

    // Validation of auth fields.
    for (body, field) in [
        (
            json!({"email": "b@example.com", "password": "short", "passwordConfirm": "short"}),
            "password",
        ),
        (
            json!({"email": "b@example.com", "password": "password1", "passwordConfirm": "password2"}),
            "passwordConfirm",
        ),
        (
            json!({"email": "not-an-email", "password": "password1", "passwordConfirm": "password1"}),
            "email",
        ),
        (
            json!({"password": "password1", "passwordConfirm": "password1"}),
            "email",
        ),
        (
            json!({"email": "ann@example.com", "password": "password1", "passwordConfirm": "password1"}),
            "email",
        ),
    ] {
        let r = app.post("/api/collections/users/records", body.clone()).await;
        assert_eq!(r.status, 400, "{body}");
        assert!(r.field_code(field).is_some(), "{body} -> {:?}", r.body);
    }

    let user_token = app.login("users", "ann@example.com", "password1").await;
    let refresh = |t: String| {
        let app = &app;
        async move {
            app.call(Method::POST, "/api/collections/users/auth-refresh", None, Some(&t))
                .await
                .status
        }
    };
    assert_eq!(refresh(user_token.clone()).await, 200);
    // A user token is not a superuser token.
    assert_eq!(
        app.call(
            Method::POST,
            "/api/collections/_superusers/auth-refresh",
            None,
            Some(&user_token)
        )
        .await
        .status,
        403
    );

    // The superuser sets a new password: the old token stops working.
    let p = app
        .patch(
            &format!("/api/collections/users/records/{id}"),
            json!({"password": "password2", "passwordConfirm": "password2"}),
        )
        .await;
    assert_eq!(p.status, 200, "{:?}", p.body);
    assert_eq!(refresh(user_token).await, 401);
    let fresh = app.login("users", "ann@example.com", "password2").await;
    assert_eq!(refresh(fresh).await, 200);
}
