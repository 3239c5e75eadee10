//! The dashboard's auth options page of an auth collection over HTTP
//! (`/_/collections/{name}/auth`): mail templates (save, preview in a
//! sandboxed iframe, reset, refusals), OTP, login alerts, MFA, OAuth2 and
//! its providers (the secret write-only); sessions and CSRF. Effects are
//! checked through the JSON API.

use serde_json::Value;

use super::admin_support::Browser;
use super::helpers::{spawn_app, TestApp};

const PAGE: &str = "/_/collections/users/auth";

async fn users(app: &TestApp) -> Value {
    let r = app.get("/api/collections/users").await;
    assert_eq!(r.status, 200);
    r.body
}

#[actix_web::test]
async fn auth_options_need_a_session_and_the_csrf_token() {
    let app = spawn_app().await;
    let mut guest = Browser::new(&app);
    let r = guest.get(PAGE).await;
    assert_eq!(r.status, 303);
    assert!(r.location().starts_with("/_/login?next="), "{}", r.location());
    let fields = [("_csrf", "x"), ("subject", "Hacked"), ("body", "<p>x</p>")];
    let r = guest
        .send_form(&format!("{PAGE}/templates/verification"), &fields)
        .await;
    assert_eq!((r.status, r.location()), (303, "/_/login"));

    let mut b = Browser::login(&app).await;
    let before = users(&app).await;
    for path in [
        "templates/verification",
        "templates/verification/preview",
        "otp",
        "alert",
        "mfa",
        "oauth2",
        "providers",
        "providers/remove",
        "templates/otp/test",
    ] {
        let r = b
            .send_form(
                &format!("{PAGE}/{path}"),
                &[("subject", "Hacked"), ("body", "<p>x</p>")],
            )
            .await;
        assert_eq!(r.status, 403, "{path}: {}", r.body);
    }
    assert_eq!(users(&app).await, before, "nothing changed");
    // Base collections have no auth options; unknown templates are 404s.
    app.create_collection(
        serde_json::json!({"name": "notes", "type": "base", "schema": {"type": "object", "properties": {}}}),
    )
    .await;
    assert_eq!(b.get("/_/collections/notes/auth").await.status, 404);
    let r = b
        .post(&format!("{PAGE}/templates/nope"), &[("subject", "s"), ("body", "b")])
        .await;
    assert_eq!(r.status, 404);
    // The edit page links here.
    b.get("/_/collections/users")
        .await
        .assert_has("href=\"/_/collections/users/auth\"");
}

#[actix_web::test]
async fn auth_options_templates_save_preview_and_reset() {
    let app = spawn_app().await;
    let mut b = Browser::login(&app).await;
    let page = b.get(PAGE).await;
    assert_eq!(page.status, 200);
    page.assert_has("Verify your {APP_NAME} email");
    page.assert_has("{ALERT_INFO}");

    let r = b
        .post(
            &format!("{PAGE}/templates/verification"),
            &[
                ("subject", "Welcome to {APP_NAME}"),
                ("body", "<p>Hi {RECORD:name}\r\n{TOKEN}</p>"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location(), "/_/collections/users/auth#template-verification");
    let v = users(&app).await;
    assert_eq!(v["verificationTemplate"]["subject"], "Welcome to {APP_NAME}");
    assert_eq!(
        v["verificationTemplate"]["body"], "<p>Hi {RECORD:name}\n{TOKEN}</p>",
        "CRLF from the textarea"
    );

    // Preview: rendered with a sample record in a sandboxed iframe; a script
    // in the template is escaped into srcdoc, never part of the page; and
    // nothing is saved.
    let evil = "<p>{RECORD:email} {OTP}</p><script>alert(document.cookie)</script>";
    let r = b
        .post(
            &format!("{PAGE}/templates/otp/preview"),
            &[("subject", "Code {OTP} \"quoted\""), ("body", evil)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.assert_has("<iframe class=\"preview-html\" title=\"Preview of the One-time password mail\" sandbox srcdoc=\"");
    r.assert_has("&#60;p&#62;user@example.com 00000000&#60;/p&#62;&#60;script&#62;alert(document.cookie)");
    assert!(!r.body.contains("<script>alert"), "{}", r.body);
    r.assert_has("Code 00000000 &#34;quoted&#34;");
    r.assert_has("<details class=\"template\" id=\"template-otp\" open>");
    assert_ne!(
        users(&app).await["otp"]["emailTemplate"]["body"],
        evil,
        "a preview saves nothing"
    );

    // A refused save shows the message and keeps what was typed.
    let r = b
        .post(
            &format!("{PAGE}/templates/password-reset"),
            &[("subject", " "), ("body", "<p>kept body</p>")],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    r.assert_has("id=\"e-password-reset-subject\">Cannot be blank.</span>");
    r.assert_has("&#60;p&#62;kept body&#60;/p&#62;</textarea>");
    r.assert_has("aria-invalid=\"true\" aria-describedby=\"e-password-reset-subject\"");

    // A test mail of the saved template, from this collection.
    let r = b
        .post(
            &format!("{PAGE}/templates/verification/test"),
            &[("to", "ops@example.com")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let mail = crate::auth_flows::mail_to(&app.dir, "ops@example.com", 0).await;
    assert!(mail.contains("Subject: Welcome to Basalt\r\n"), "{mail}");
    let r = b
        .post(&format!("{PAGE}/templates/verification/test"), &[("to", "nobody")])
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    r.assert_has("id=\"e-verification-to\">Must be a valid email address.</span>");
    r.assert_has("value=\"nobody\"");

    // Reset to the default.
    let r = b
        .post(&format!("{PAGE}/templates/verification"), &[("reset", "1")])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(
        users(&app).await["verificationTemplate"]["subject"],
        "Verify your {APP_NAME} email"
    );
}

#[actix_web::test]
async fn auth_options_otp_alert_and_mfa_sections() {
    let app = spawn_app().await;
    let mut b = Browser::login(&app).await;
    let r = b
        .post(
            &format!("{PAGE}/otp"),
            &[("otp.enabled", "on"), ("otp.duration", "300"), ("otp.length", "6")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let v = users(&app).await;
    assert_eq!(
        (v["otp"]["enabled"].clone(), v["otp"]["duration"].clone()),
        (true.into(), 300.into())
    );
    assert_eq!(v["otp"]["length"], 6);
    let r = b
        .post(&format!("{PAGE}/otp"), &[("otp.duration", "soon"), ("otp.length", "6")])
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    r.assert_has("id=\"e-otp-duration\"");
    r.assert_has("value=\"soon\"");
    assert_eq!(users(&app).await["otp"]["enabled"], true, "unchanged");

    // An unchecked box is "off".
    let r = b.post(&format!("{PAGE}/alert"), &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(users(&app).await["authAlert"]["enabled"], false);
    b.post(&format!("{PAGE}/alert"), &[("authAlert.enabled", "on")]).await;
    assert_eq!(users(&app).await["authAlert"]["enabled"], true);

    let r = b
        .post(&format!("{PAGE}/mfa"), &[("mfa.duration", "900"), ("mfa.rule", "")])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(users(&app).await["mfa"]["duration"], 900);
}

#[actix_web::test]
async fn auth_options_oauth2_providers_add_edit_remove_secret_write_only() {
    let app = spawn_app().await;
    let mut b = Browser::login(&app).await;
    let add = b.get(&format!("{PAGE}?add=1")).await;
    add.assert_has("Add a provider</h3>");
    let provider = |secret: &'static str, client: &'static str| {
        vec![
            ("provider.original", if secret.is_empty() { "google" } else { "" }),
            ("provider.name", "google"),
            ("provider.displayName", "Google"),
            ("provider.clientId", client),
            ("provider.clientSecret", secret),
            ("provider.authURL", ""),
            ("provider.tokenURL", ""),
            ("provider.userInfoURL", ""),
            ("provider.pkce", "on"),
        ]
    };
    let r = b
        .post(&format!("{PAGE}/providers"), &provider("s3cret-value", "client-1"))
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let v = users(&app).await;
    let p = &v["oauth2"]["providers"][0];
    assert_eq!(
        (p["name"].as_str(), p["clientId"].as_str()),
        (Some("google"), Some("client-1"))
    );
    assert_eq!(p["pkce"], true);

    let page = b.get(PAGE).await;
    page.assert_has("<code>google</code>");
    page.assert_has("badge-ok\">set</span>");
    assert!(!page.body.contains("s3cret-value"), "the secret is never shown");
    let edit = b.get(&format!("{PAGE}?edit=google")).await;
    edit.assert_has("A secret is stored. Leave empty to keep it.");
    assert!(!edit.body.contains("s3cret-value"));
    assert_eq!(b.get(&format!("{PAGE}?edit=nope")).await.status, 404);

    // Edited without a secret: the stored one stays.
    let r = b.post(&format!("{PAGE}/providers"), &provider("", "client-2")).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = b.get(PAGE).await;
    page.assert_has("client-2");
    page.assert_has("badge-ok\">set</span>");
    // A second provider of the same name, or none, is refused.
    let r = b.post(&format!("{PAGE}/providers"), &provider("x", "client-3")).await;
    assert_eq!(r.status, 400);
    r.assert_has("There is a provider of this name already");
    let mut nameless = provider("x", "c");
    nameless[1].1 = "";
    let r = b.post(&format!("{PAGE}/providers"), &nameless).await;
    assert_eq!(r.status, 400);

    // Mapped fields, OAuth2 left off.
    let r = b
        .post(&format!("{PAGE}/oauth2"), &[("oauth2.mappedFields.name", "name")])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let v = users(&app).await;
    assert_eq!(v["oauth2"]["mappedFields"]["name"], "name");
    assert_eq!(
        v["oauth2"]["providers"].as_array().map(Vec::len),
        Some(1),
        "providers kept"
    );

    let r = b
        .post(&format!("{PAGE}/providers/remove"), &[("provider.name", "google")])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(users(&app).await["oauth2"]["providers"], serde_json::json!([]));
}
