//! Users and access: sign-up, tokens, mail flows (through the dev outbox),
//! OTP, impersonation, token attacks, owner-only rules.

use std::path::Path;

use awc::http::Method;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

async fn sign_up(app: &TestApp, email: &str, password: &str) -> Value {
    let r = app
        .guest_post(
            "/api/collections/users/records",
            json!({"email": email, "password": password, "passwordConfirm": password, "name": "n"}),
        )
        .await;
    assert_eq!(r.status, 200, "sign-up: {:?}", r.body);
    r.body
}

async fn as_user(app: &TestApp, method: Method, path: &str, body: Option<Value>, token: &str) -> crate::helpers::Resp {
    app.call(method, path, body, Some(token)).await
}

/// Waits for a mail to `to` in the dev outbox and returns its text. The mail
/// is sent by a background task, so this polls the directory (bounded).
pub(crate) async fn mail_to(dir: &Path, to: &str, seen: usize) -> String {
    for _ in 0..5000 {
        let mut mails: Vec<String> = std::fs::read_dir(dir.join("outbox"))
            .map(|d| {
                let mut paths: Vec<_> = d.flatten().map(|e| e.path()).collect();
                paths.sort();
                paths
                    .into_iter()
                    .filter_map(|p| std::fs::read_to_string(p).ok())
                    .collect()
            })
            .unwrap_or_default();
        mails.retain(|m| m.contains(&format!("To: {to}\r\n")));
        if mails.len() > seen {
            return mails.swap_remove(seen);
        }
        actix_web::rt::task::yield_now().await;
        actix_web::rt::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    panic!("no mail to {to}");
}

pub(crate) fn token_in(mail: &str) -> String {
    mail.lines()
        .find_map(|l| l.strip_prefix("Token: "))
        .expect("token line")
        .trim()
        .to_owned()
}

#[actix_web::test]
async fn sign_up_login_refresh_and_password_change() {
    let app = spawn_app().await;
    let user = sign_up(&app, "amy@example.com", "password-1").await;
    let id = user["id"].as_str().unwrap();
    // A guest's sign-up answer does not echo the (not visible) email.
    assert!(user.get("email").is_none());
    let token = app.login("users", "amy@example.com", "password-1").await;
    // Default users rules: a user sees themself, and only themself.
    let me = as_user(
        &app,
        Method::GET,
        &format!("/api/collections/users/records/{id}"),
        None,
        &token,
    )
    .await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["email"], "amy@example.com");
    let other = sign_up(&app, "ben@example.com", "password-2").await;
    let r = as_user(
        &app,
        Method::GET,
        &format!("/api/collections/users/records/{}", other["id"].as_str().unwrap()),
        None,
        &token,
    )
    .await;
    assert_eq!(r.status, 404);
    let list = as_user(&app, Method::GET, "/api/collections/users/records", None, &token).await;
    assert_eq!(list.body["totalItems"], 1);
    assert_eq!(
        app.guest_get("/api/collections/users/records").await.body["totalItems"],
        0
    );
    // Others' emails are hidden unless emailVisibility.
    let su_view = app.get(&format!("/api/collections/users/records/{id}")).await;
    assert_eq!(su_view.body["email"], "amy@example.com");

    let refreshed = as_user(&app, Method::POST, "/api/collections/users/auth-refresh", None, &token).await;
    assert_eq!(refreshed.status, 200);
    let token2 = refreshed.body["token"].as_str().unwrap().to_owned();

    // Changing the password needs the old one.
    let url = format!("/api/collections/users/records/{id}");
    let r = as_user(
        &app,
        Method::PATCH,
        &url,
        Some(json!({"password": "password-9", "passwordConfirm": "password-9"})),
        &token,
    )
    .await;
    assert_eq!(r.field_code("oldPassword"), Some("validation_required"));
    let r = as_user(
        &app,
        Method::PATCH,
        &url,
        Some(json!({"oldPassword": "wrong-one", "password": "password-9", "passwordConfirm": "password-9"})),
        &token,
    )
    .await;
    assert_eq!(r.field_code("oldPassword"), Some("validation_invalid_old_password"));
    let r = as_user(
        &app,
        Method::PATCH,
        &url,
        Some(json!({"oldPassword": "password-1", "password": "password-9", "passwordConfirm": "password-9"})),
        &token,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // Every earlier token is revoked.
    for t in [&token, &token2] {
        assert_eq!(
            as_user(&app, Method::POST, "/api/collections/users/auth-refresh", None, t)
                .await
                .status,
            401
        );
        assert_eq!(as_user(&app, Method::GET, &url, None, t).await.status, 404);
    }
    assert_eq!(
        app.guest_post(
            "/api/collections/users/auth-with-password",
            json!({"identity": "amy@example.com", "password": "password-1"})
        )
        .await
        .status,
        400
    );
    app.login("users", "amy@example.com", "password-9").await;
    // A user cannot make themself verified or take another email directly.
    let t = app.login("users", "amy@example.com", "password-9").await;
    assert_eq!(
        as_user(&app, Method::PATCH, &url, Some(json!({"verified": true})), &t)
            .await
            .status,
        400
    );
    assert_eq!(
        as_user(&app, Method::PATCH, &url, Some(json!({"email": "x@example.com"})), &t)
            .await
            .status,
        400
    );
}

#[actix_web::test]
async fn verification_reset_and_email_change_by_mail() {
    let app = spawn_app().await;
    let user = sign_up(&app, "cat@example.com", "password-1").await;
    let id = user["id"].as_str().unwrap().to_owned();
    let url = format!("/api/collections/users/records/{id}");

    let r = app
        .guest_post(
            "/api/collections/users/request-verification",
            json!({"email": "cat@example.com"}),
        )
        .await;
    assert_eq!(r.status, 204);
    let mail = mail_to(&app.dir, "cat@example.com", 0).await;
    assert!(mail.contains("confirm-verification"), "{mail}");
    let token = token_in(&mail);
    assert_eq!(
        app.guest_post(
            "/api/collections/users/confirm-verification",
            json!({"token": "garbage"})
        )
        .await
        .status,
        400
    );
    let r = app
        .guest_post("/api/collections/users/confirm-verification", json!({"token": token}))
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(app.get(&url).await.body["verified"], true);

    // Password reset.
    let session = app.login("users", "cat@example.com", "password-1").await;
    assert_eq!(
        app.guest_post(
            "/api/collections/users/request-password-reset",
            json!({"email": "cat@example.com"})
        )
        .await
        .status,
        204
    );
    let token = token_in(&mail_to(&app.dir, "cat@example.com", 1).await);
    let bad = app
        .guest_post(
            "/api/collections/users/confirm-password-reset",
            json!({"token": token, "password": "new-password", "passwordConfirm": "other-one"}),
        )
        .await;
    assert_eq!(bad.field_code("passwordConfirm"), Some("validation_values_mismatch"));
    let r = app
        .guest_post(
            "/api/collections/users/confirm-password-reset",
            json!({"token": token, "password": "new-password", "passwordConfirm": "new-password"}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    // The reset token and the old session are spent.
    let again = app
        .guest_post(
            "/api/collections/users/confirm-password-reset",
            json!({"token": token, "password": "newer-password", "passwordConfirm": "newer-password"}),
        )
        .await;
    assert_eq!(again.status, 400);
    assert_eq!(
        as_user(
            &app,
            Method::POST,
            "/api/collections/users/auth-refresh",
            None,
            &session
        )
        .await
        .status,
        401
    );
    let session = app.login("users", "cat@example.com", "new-password").await;

    // Email change: needs auth; the link goes to the new address.
    assert_eq!(
        app.guest_post(
            "/api/collections/users/request-email-change",
            json!({"newEmail": "cat2@example.com"})
        )
        .await
        .status,
        401
    );
    let r = as_user(
        &app,
        Method::POST,
        "/api/collections/users/request-email-change",
        Some(json!({"newEmail": "cat2@example.com"})),
        &session,
    )
    .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let token = token_in(&mail_to(&app.dir, "cat2@example.com", 0).await);
    let wrong = app
        .guest_post(
            "/api/collections/users/confirm-email-change",
            json!({"token": token, "password": "bad-password"}),
        )
        .await;
    assert_eq!(wrong.status, 400);
    let r = app
        .guest_post(
            "/api/collections/users/confirm-email-change",
            json!({"token": token, "password": "new-password"}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    app.login("users", "cat2@example.com", "new-password").await;
    assert_eq!(app.get(&url).await.body["email"], "cat2@example.com");
}

#[actix_web::test]
async fn request_endpoints_do_not_reveal_accounts() {
    let app = spawn_app().await;
    sign_up(&app, "dee@example.com", "password-1").await;
    for path in ["request-password-reset", "request-verification"] {
        let known = app
            .guest_post(
                &format!("/api/collections/users/{path}"),
                json!({"email": "dee@example.com"}),
            )
            .await;
        let unknown = app
            .guest_post(
                &format!("/api/collections/users/{path}"),
                json!({"email": "nobody@example.com"}),
            )
            .await;
        assert_eq!((known.status, &known.body), (unknown.status, &unknown.body), "{path}");
        assert_eq!(known.status, 204);
        let bad = app
            .guest_post(
                &format!("/api/collections/users/{path}"),
                json!({"email": "not-an-email"}),
            )
            .await;
        assert_eq!(bad.status, 400);
    }
}

#[actix_web::test]
async fn otp_login() {
    let app = spawn_app().await;
    sign_up(&app, "eli@example.com", "password-1").await;
    // Off by default.
    assert_eq!(
        app.guest_post(
            "/api/collections/users/request-otp",
            json!({"email": "eli@example.com"})
        )
        .await
        .status,
        400
    );
    let r = app
        .patch(
            "/api/collections/users",
            json!({"authOptions": {"otp": {"enabled": true, "duration": 300, "length": 6}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let methods = app.guest_get("/api/collections/users/auth-methods").await;
    assert_eq!(methods.body["otp"]["enabled"], true);
    assert_eq!(methods.body["password"]["identityFields"], json!(["email"]));
    let r = app
        .guest_post(
            "/api/collections/users/request-otp",
            json!({"email": "eli@example.com"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let otp_id = r.body["otpId"].as_str().unwrap().to_owned();
    let ghost = app
        .guest_post(
            "/api/collections/users/request-otp",
            json!({"email": "ghost@example.com"}),
        )
        .await;
    assert_eq!(ghost.status, 200);
    assert!(ghost.body["otpId"].is_string());
    let mail = mail_to(&app.dir, "eli@example.com", 0).await;
    let code = mail
        .split("code is: ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(code.len(), 6);
    let wrong = app
        .guest_post(
            "/api/collections/users/auth-with-otp",
            json!({"otpId": otp_id, "password": "000000x"}),
        )
        .await;
    assert_eq!(wrong.status, 400);
    let ok = app
        .guest_post(
            "/api/collections/users/auth-with-otp",
            json!({"otpId": otp_id, "password": code}),
        )
        .await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(ok.body["record"]["email"], "eli@example.com");
    // The mailed code proved the address: verified now, and (no MFA) the
    // password whoever signed up with this address chose is gone, as in
    // PocketBase (pre-hijacking); the token issued is the working one.
    assert_eq!(ok.body["record"]["verified"], true);
    let fresh = ok.body["token"].as_str().unwrap().to_owned();
    assert_eq!(
        as_user(&app, Method::POST, "/api/collections/users/auth-refresh", None, &fresh)
            .await
            .status,
        200
    );
    let old_password = app
        .guest_post(
            "/api/collections/users/auth-with-password",
            json!({"identity": "eli@example.com", "password": "password-1"}),
        )
        .await;
    assert_eq!(old_password.status, 400);
    let reuse = app
        .guest_post(
            "/api/collections/users/auth-with-otp",
            json!({"otpId": otp_id, "password": code}),
        )
        .await;
    assert_eq!(reuse.status, 400);
}

#[actix_web::test]
async fn impersonation_tokens_cannot_refresh() {
    let app = spawn_app().await;
    let user = sign_up(&app, "fay@example.com", "password-1").await;
    let id = user["id"].as_str().unwrap();
    let r = app
        .post(
            &format!("/api/collections/users/impersonate/{id}"),
            json!({"duration": 60}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let token = r.body["token"].as_str().unwrap().to_owned();
    assert_eq!(
        as_user(
            &app,
            Method::GET,
            &format!("/api/collections/users/records/{id}"),
            None,
            &token
        )
        .await
        .status,
        200
    );
    assert_eq!(
        as_user(&app, Method::POST, "/api/collections/users/auth-refresh", None, &token)
            .await
            .status,
        403
    );
    let user_token = app.login("users", "fay@example.com", "password-1").await;
    let r = as_user(
        &app,
        Method::POST,
        &format!("/api/collections/users/impersonate/{id}"),
        Some(json!({})),
        &user_token,
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        app.post("/api/collections/users/impersonate/nope", json!({}))
            .await
            .status,
        404
    );
}

fn forge(token: &str, edit: impl Fn(&mut Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
    edit(&mut claims);
    format!("{}.{}.{}", parts[0], B64.encode(claims.to_string()), parts[2])
}

#[actix_web::test]
async fn token_attacks_are_guests() {
    let app = spawn_app().await;
    let user = sign_up(&app, "gus@example.com", "password-1").await;
    let id = user["id"].as_str().unwrap().to_owned();
    let token = app.login("users", "gus@example.com", "password-1").await;
    let parts: Vec<&str> = token.split('.').collect();
    let alg_none = format!("{}.{}.", B64.encode(r#"{"alg":"none","typ":"JWT"}"#), parts[1]);
    let alg_hs512 = format!(
        "{}.{}.{}",
        B64.encode(r#"{"alg":"HS512","typ":"JWT"}"#),
        parts[1],
        parts[2]
    );
    let edited = forge(&token, |c| c["exp"] = json!(c["exp"].as_i64().unwrap() + 1000));
    let wrong_key = {
        // Correctly formed and signed, but with a key the server does not use.
        let tokens = basalt::auth::Tokens::new(b"not the server secret".to_vec());
        let claims: basalt::auth::Claims = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
        tokens.issue(&claims, "whatever")
    };
    let expired = {
        // Signed with the real key material, but already expired.
        let stored = app
            .state
            .store
            .get(user["collectionId"].as_str().unwrap(), &id)
            .unwrap()
            .unwrap();
        let key = stored.data["tokenKey"].as_str().unwrap();
        let mut claims: basalt::auth::Claims = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
        claims.exp = basalt::clock::now_millis() / 1000 - 1;
        app.state.tokens.issue(&claims, key)
    };
    let url = format!("/api/collections/users/records/{id}");
    assert_eq!(as_user(&app, Method::GET, &url, None, &token).await.status, 200);
    for bad in [&alg_none, &alg_hs512, &edited, &wrong_key, &expired] {
        assert_eq!(as_user(&app, Method::GET, &url, None, bad).await.status, 404, "{bad}");
        assert_eq!(
            as_user(&app, Method::POST, "/api/collections/users/auth-refresh", None, bad)
                .await
                .status,
            401
        );
    }
    // Another collection's token: a users token is not a superuser token.
    assert_eq!(
        as_user(
            &app,
            Method::POST,
            "/api/collections/_superusers/auth-refresh",
            None,
            &token
        )
        .await
        .status,
        403
    );
    assert_eq!(
        as_user(&app, Method::GET, "/api/collections", None, &token)
            .await
            .status,
        403
    );
    // A token of a deleted user.
    assert_eq!(app.delete(&url).await.status, 204);
    assert_eq!(
        as_user(&app, Method::POST, "/api/collections/users/auth-refresh", None, &token)
            .await
            .status,
        401
    );
}

#[actix_web::test]
async fn owner_only_collection() {
    let app = spawn_app().await;
    let a = sign_up(&app, "ann@example.com", "password-a").await;
    let b = sign_up(&app, "bob@example.com", "password-b").await;
    let (a_id, b_id) = (
        a["id"].as_str().unwrap().to_owned(),
        b["id"].as_str().unwrap().to_owned(),
    );
    let owner = "owner = @request.auth.id";
    app.create_collection(json!({
        "name": "notes",
        "listRule": owner, "viewRule": owner, "updateRule": owner, "deleteRule": owner,
        "createRule": "@request.auth.id != '' && @request.body.owner = @request.auth.id",
        "indexes": [{"name": "by_owner", "fields": ["owner", "-created"]}],
        "schema": {"type": "object", "properties": {
            "owner": {"type": "string", "x-relation": {"collection": "users"}},
            "text": {"type": "string"}}}
    }))
    .await;
    let ta = app.login("users", "ann@example.com", "password-a").await;
    let tb = app.login("users", "bob@example.com", "password-b").await;
    let note = as_user(
        &app,
        Method::POST,
        "/api/collections/notes/records",
        Some(json!({"owner": a_id, "text": "A's secret"})),
        &ta,
    )
    .await;
    assert_eq!(note.status, 200, "{:?}", note.body);
    let nid = note.body["id"].as_str().unwrap().to_owned();
    let url = format!("/api/collections/notes/records/{nid}");
    // B cannot create in A's name, guests cannot create at all.
    let r = as_user(
        &app,
        Method::POST,
        "/api/collections/notes/records",
        Some(json!({"owner": a_id, "text": "x"})),
        &tb,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        app.guest_post("/api/collections/notes/records", json!({"owner": a_id}))
            .await
            .status,
        400
    );
    // B never sees, changes or deletes A's note — through any path.
    assert_eq!(as_user(&app, Method::GET, &url, None, &tb).await.status, 404);
    assert_eq!(
        as_user(&app, Method::PATCH, &url, Some(json!({"text": "hacked"})), &tb)
            .await
            .status,
        404
    );
    assert_eq!(as_user(&app, Method::DELETE, &url, None, &tb).await.status, 404);
    let list = as_user(&app, Method::GET, "/api/collections/notes/records", None, &tb).await;
    assert_eq!((list.status, list.body["totalItems"].clone()), (200, json!(0)));
    let probe = format!(
        "/api/collections/notes/records?filter={}",
        "owner%20%3D%20%27".to_owned() + &a_id + "%27"
    );
    assert_eq!(
        as_user(&app, Method::GET, &probe, None, &tb).await.body["totalItems"],
        0
    );
    let probe = "/api/collections/notes/records?filter=text%20~%20%27secret%27";
    assert_eq!(as_user(&app, Method::GET, probe, None, &tb).await.body["totalItems"], 0);
    // Expanding B's own user record does not reach A's notes.
    let r = as_user(
        &app,
        Method::GET,
        &format!("/api/collections/users/records/{b_id}?expand=notes_via_owner"),
        None,
        &tb,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["expand"], json!({}), "{:?}", r.body);
    // Guests: list → 200 empty, view → 404.
    assert_eq!(
        app.guest_get("/api/collections/notes/records").await.body["totalItems"],
        0
    );
    assert_eq!(app.guest_get(&url).await.status, 404);
    // A does everything; the rule uses the owner index.
    assert_eq!(as_user(&app, Method::GET, &url, None, &ta).await.status, 200);
    let list = as_user(&app, Method::GET, "/api/collections/notes/records", None, &ta).await;
    assert_eq!(list.body["totalItems"], 1);
    let plan = app
        .get(&format!(
            "/api/collections/notes/records?explain=1&filter=owner%3D%27{a_id}%27"
        ))
        .await;
    assert!(plan.body["plan"].as_str().unwrap().contains("by_owner"));
    assert_eq!(
        as_user(&app, Method::PATCH, &url, Some(json!({"text": "edited"})), &ta)
            .await
            .status,
        200
    );
    assert_eq!(as_user(&app, Method::DELETE, &url, None, &ta).await.status, 204);
}
