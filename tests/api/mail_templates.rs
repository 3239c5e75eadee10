//! Mail templates per auth collection (PocketBase's `verificationTemplate`,
//! `resetPasswordTemplate`, `confirmEmailChangeTemplate`, `otp.emailTemplate`,
//! `authAlert`) used by every flow through the dev outbox, their
//! placeholders and escaping, refusals at save, and new-origin login alerts.

use serde_json::{json, Value};

use crate::auth_flows::mail_to;
use crate::helpers::{spawn_app, TestApp};

const USERS: &str = "/api/collections/users";
/// A display name a user controls, meant to break out of the HTML body.
const EVIL_NAME: &str = "<script>alert(1)</script> & \"Amy\"";

/// The subject, text part and HTML part of an outbox mail.
struct Parts {
    subject: String,
    text: String,
    html: String,
}

fn parts(raw: &str) -> Parts {
    let subject = raw
        .lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .expect("subject header")
        .trim_end()
        .to_owned();
    let part = |kind: &str| {
        let head = format!("Content-Type: {kind}; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
        let start = raw.find(&head).unwrap_or_else(|| panic!("no {kind} part in:\n{raw}")) + head.len();
        let end = raw[start..].find("\r\n--basalt-").expect("part end") + start;
        raw[start..end].to_owned()
    };
    Parts {
        subject,
        text: part("text/plain"),
        html: part("text/html"),
    }
}

/// What sits between `before` and `after` in `s`.
fn between<'a>(s: &'a str, before: &str, after: &str) -> &'a str {
    let start = s.find(before).unwrap_or_else(|| panic!("no {before:?} in:\n{s}")) + before.len();
    let end = s[start..].find(after).expect("end marker") + start;
    &s[start..end]
}

async fn sign_up(app: &TestApp, email: &str, name: &str) -> Value {
    let r = app
        .guest_post(
            &format!("{USERS}/records"),
            json!({"email": email, "password": "password-1", "passwordConfirm": "password-1", "name": name}),
        )
        .await;
    assert_eq!(r.status, 200, "sign-up: {:?}", r.body);
    r.body
}

async fn patch_users(app: &TestApp, body: Value) -> crate::helpers::Resp {
    app.patch(USERS, body).await
}

#[actix_web::test]
async fn templates_custom_ones_drive_every_flow_with_escaped_values() {
    let app = spawn_app().await;
    let r = app
        .patch("/api/settings", json!({"meta": {"appURL": "http://example.test/"}}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let t = |what: &str| {
        json!({
            "subject": format!("{what} for {{RECORD:name}} at {{APP_NAME}}"),
            "body": format!("<p>{what} {{RECORD:name}} {{UNKNOWN}} [{{TOKEN}}] <a href=\"{{APP_URL}}/go/{{TOKEN}}\">go</a></p>"),
        })
    };
    let r = patch_users(
        &app,
        json!({
            "verificationTemplate": t("Verify"),
            "resetPasswordTemplate": t("Reset"),
            "confirmEmailChangeTemplate": t("Change"),
            "otp": {"enabled": true, "emailTemplate": {
                "subject": "Code {OTP} for {RECORD:name}",
                "body": "<p>Code [{OTP}] id [{OTP_ID}] for {RECORD:name}; {RECORD:password}{RECORD:tokenKey}</p>",
            }},
        }),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["verificationTemplate"], t("Verify"));
    assert_eq!(
        r.body["otp"]["emailTemplate"]["subject"],
        "Code {OTP} for {RECORD:name}"
    );
    assert_eq!(r.body["authAlert"]["enabled"], true, "on by default, as PocketBase");
    sign_up(&app, "amy@example.com", EVIL_NAME).await;

    // Verification: the custom template, the name raw in the subject and
    // escaped in the HTML, unknown placeholders left as text.
    let r = app
        .guest_post(
            &format!("{USERS}/request-verification"),
            json!({"email": "amy@example.com"}),
        )
        .await;
    assert_eq!(r.status, 204);
    let mail = parts(&mail_to(&app.dir, "amy@example.com", 0).await);
    assert_eq!(mail.subject, format!("Verify for {EVIL_NAME} at Basalt"));
    assert!(
        mail.html
            .contains("Verify &lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;Amy&quot; {UNKNOWN} ["),
        "{}",
        mail.html
    );
    assert!(!mail.html.contains("<script>"), "{}", mail.html);
    assert!(
        mail.text.contains(EVIL_NAME),
        "the text part is plain text: {}",
        mail.text
    );
    let token = between(&mail.html, "[", "]").to_owned();
    assert!(
        mail.html.contains(&format!("href=\"http://example.test/go/{token}\"")),
        "{{APP_URL}} without its trailing slash: {}",
        mail.html
    );
    assert!(
        mail.text.contains(&format!("go: http://example.test/go/{token}")),
        "links keep their address in the text: {}",
        mail.text
    );
    let r = app
        .guest_post(&format!("{USERS}/confirm-verification"), json!({"token": token}))
        .await;
    assert_eq!(r.status, 204, "the {{TOKEN}} of a custom template works: {:?}", r.body);

    // Password reset.
    let r = app
        .guest_post(
            &format!("{USERS}/request-password-reset"),
            json!({"email": "amy@example.com"}),
        )
        .await;
    assert_eq!(r.status, 204);
    let mail = parts(&mail_to(&app.dir, "amy@example.com", 1).await);
    assert!(mail.subject.starts_with("Reset for <script>"), "{}", mail.subject);
    let token = between(&mail.html, "[", "]").to_owned();
    let r = app
        .guest_post(
            &format!("{USERS}/confirm-password-reset"),
            json!({"token": token, "password": "password-2", "passwordConfirm": "password-2"}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);

    // Email change: to the new address, with the record's fields.
    let user = app.login("users", "amy@example.com", "password-2").await;
    let r = app
        .call(
            awc::http::Method::POST,
            &format!("{USERS}/request-email-change"),
            Some(json!({"newEmail": "amy.new@example.com"})),
            Some(&user),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let mail = parts(&mail_to(&app.dir, "amy.new@example.com", 0).await);
    assert!(mail.subject.starts_with("Change for <script>"), "{}", mail.subject);
    assert!(mail.html.contains("Change &lt;script&gt;"), "{}", mail.html);
    let token = between(&mail.html, "[", "]").to_owned();
    let r = app
        .guest_post(
            &format!("{USERS}/confirm-email-change"),
            json!({"token": token, "password": "password-2"}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);

    // OTP: {OTP} and {OTP_ID}; secrets are no placeholders.
    let r = app
        .guest_post(&format!("{USERS}/request-otp"), json!({"email": "amy.new@example.com"}))
        .await;
    assert_eq!(r.status, 200);
    let otp_id = r.body["otpId"].as_str().expect("otpId").to_owned();
    let mail = parts(&mail_to(&app.dir, "amy.new@example.com", 1).await);
    let code = between(&mail.html, "Code [", "]").to_owned();
    assert_eq!(mail.subject, format!("Code {code} for {EVIL_NAME}"));
    assert_eq!(between(&mail.html, "id [", "]"), otp_id);
    assert!(
        mail.html.contains("{RECORD:password}{RECORD:tokenKey}"),
        "no secret is a placeholder: {}",
        mail.html
    );
    let r = app
        .guest_post(
            &format!("{USERS}/auth-with-otp"),
            json!({"otpId": otp_id, "password": code}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[actix_web::test]
async fn templates_defaults_link_to_basalts_pages_and_show_as_pocketbase() {
    let app = spawn_app().await;
    let r = app.get(USERS).await;
    for key in [
        "verificationTemplate",
        "resetPasswordTemplate",
        "confirmEmailChangeTemplate",
    ] {
        assert!(
            r.body[key]["subject"]
                .as_str()
                .is_some_and(|s| s.contains("{APP_NAME}")),
            "{key}"
        );
        assert!(
            r.body[key]["body"].as_str().is_some_and(|s| s.contains("{TOKEN}")),
            "{key}"
        );
    }
    assert!(r.body["otp"]["emailTemplate"]["body"]
        .as_str()
        .unwrap()
        .contains("{OTP}"));
    assert!(r.body["authAlert"]["emailTemplate"]["body"]
        .as_str()
        .unwrap()
        .contains("{ALERT_INFO}"));
    // What was read, written back unchanged, changes nothing.
    let same = patch_users(&app, r.body.clone()).await;
    assert_eq!(same.status, 200, "{:?}", same.body);
    assert!(
        same.body["authOptions"].get("verificationTemplate").is_none(),
        "still the default"
    );

    sign_up(&app, "bob@example.com", "Bob").await;
    let r = app
        .guest_post(
            &format!("{USERS}/request-verification"),
            json!({"email": "bob@example.com"}),
        )
        .await;
    assert_eq!(r.status, 204);
    let mail = parts(&mail_to(&app.dir, "bob@example.com", 0).await);
    assert_eq!(mail.subject, "Verify your Basalt email");
    let token = crate::auth_flows::token_in(&mail.text);
    assert!(
        mail.text
            .lines()
            .any(|l| l.ends_with(&format!("/_/auth/confirm-verification/{token}"))),
        "{}",
        mail.text
    );
    assert!(
        mail.html.contains(&format!("/_/auth/confirm-verification/{token}\"")),
        "{}",
        mail.html
    );
}

#[actix_web::test]
async fn templates_invalid_ones_are_refused_at_save() {
    let app = spawn_app().await;
    let before = app.get(USERS).await.body;
    let big = "x".repeat(64 * 1024 + 1);
    for (body, key) in [
        (
            json!({"verificationTemplate": {"subject": ""}}),
            "verificationTemplate.subject",
        ),
        (
            json!({"resetPasswordTemplate": {"body": "  "}}),
            "resetPasswordTemplate.body",
        ),
        (
            json!({"confirmEmailChangeTemplate": "hi"}),
            "confirmEmailChangeTemplate",
        ),
        (
            json!({"confirmEmailChangeTemplate": {"subject": 5}}),
            "confirmEmailChangeTemplate.subject",
        ),
        (
            json!({"otp": {"emailTemplate": {"body": big}}}),
            "otp.emailTemplate.body",
        ),
        (json!({"authAlert": {"enabled": "yes"}}), "authAlert.enabled"),
        (
            json!({"authAlert": {"emailTemplate": {"subject": "s".repeat(501)}}}),
            "authAlert.emailTemplate.subject",
        ),
        // Basalt's own format is checked the same way.
        (
            json!({"authOptions": {"verificationTemplate": {"subject": "", "body": "b"}}}),
            "verificationTemplate.subject",
        ),
    ] {
        let r = patch_users(&app, body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
        assert!(r.body["data"][key]["code"].is_string(), "{key}: {:?}", r.body);
        assert!(r.body["message"].is_string());
    }
    assert_eq!(app.get(USERS).await.body, before, "nothing was saved");
    // Only auth collections have templates.
    app.create_collection(json!({"name": "notes", "type": "base", "schema": {"type": "object", "properties": {}}}))
        .await;
    let r = app
        .patch(
            "/api/collections/notes",
            json!({"verificationTemplate": {"subject": "s", "body": "b"}}),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
}

/// Logs `email` in with the user agent `ua`.
async fn login_from(app: &TestApp, email: &str, ua: &str) {
    let res = app
        .client
        .post(format!("{}{USERS}/auth-with-password", app.base))
        .insert_header(("User-Agent", ua))
        .send_json(&json!({"identity": email, "password": "password-1"}))
        .await
        .expect("sent");
    let r = crate::helpers::read(res).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// The login alerts to `to` in the outbox now.
fn alerts_to(app: &TestApp, to: &str) -> Vec<String> {
    let mut names: Vec<_> = std::fs::read_dir(app.dir.join("outbox"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    names.sort();
    names
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter(|m| m.contains(&format!("To: {to}\r\n")) && m.contains("Subject: New sign-in"))
        .collect()
}

#[actix_web::test]
async fn alerts_on_a_new_origin_only_and_escaped() {
    let app = spawn_app().await;
    sign_up(&app, "cat@example.com", "Cat").await;
    // The first login knows no origin yet: no alert (PocketBase's rule).
    login_from(&app, "cat@example.com", "phone/1").await;
    // A new origin: an alert naming it, the user agent escaped in the HTML.
    let evil_ua = "<img src=x onerror=alert(1)>";
    login_from(&app, "cat@example.com", evil_ua).await;
    let alert = parts(&mail_to(&app.dir, "cat@example.com", 0).await);
    assert_eq!(alert.subject, "New sign-in to your Basalt account");
    assert!(
        alert.html.contains("127.0.0.1 &lt;img src=x onerror=alert(1)&gt;"),
        "{}",
        alert.html
    );
    assert!(!alert.html.contains("<img"), "{}", alert.html);
    // A known origin: nothing; then a third origin: the second alert. (A
    // known origin's check is spawned before its login is answered and
    // completes at its first poll, long before the next login's mail.)
    login_from(&app, "cat@example.com", "phone/1").await;
    login_from(&app, "cat@example.com", "laptop/2").await;
    let second = parts(&mail_to(&app.dir, "cat@example.com", 1).await);
    assert!(second.html.contains("laptop/2"), "{}", second.html);
    assert_eq!(alerts_to(&app, "cat@example.com").len(), 2);
}

#[actix_web::test]
async fn alerts_never_when_disabled() {
    let app = spawn_app().await;
    let r = patch_users(&app, json!({"authAlert": {"enabled": false}})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["authAlert"]["enabled"], false);
    // A name with a line break: the subject stays one header line.
    sign_up(&app, "dan@example.com", "Dan\r\nBcc: eve@example.com").await;
    for ua in ["a/1", "b/2", "c/3"] {
        login_from(&app, "dan@example.com", ua).await;
    }
    // Turned on again, with a template of its own: origins were not
    // recorded while off, so the next login is a first one (no alert), the
    // one after it from elsewhere alerts.
    let r = patch_users(
        &app,
        json!({"authAlert": {"enabled": true, "emailTemplate": {"subject": "New sign-in: {RECORD:name}", "body": "<p>{ALERT_INFO}</p>"}}}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    login_from(&app, "dan@example.com", "d/4").await;
    login_from(&app, "dan@example.com", "e/5").await;
    let raw = mail_to(&app.dir, "dan@example.com", 0).await;
    assert!(!raw.contains("\nBcc:"), "{raw}");
    let alert = parts(&raw);
    assert_eq!(alert.subject, "New sign-in: Dan  Bcc: eve@example.com");
    assert!(alert.html.contains("127.0.0.1 e/5"), "{}", alert.html);
    assert_eq!(alerts_to(&app, "dan@example.com").len(), 1, "none while disabled");
}

#[actix_web::test]
async fn templates_test_mail_uses_the_collections_template() {
    let app = spawn_app().await;
    let r = patch_users(
        &app,
        json!({"resetPasswordTemplate": {"subject": "Users reset {TOKEN}", "body": "<p>{RECORD:email}</p>"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app
        .post(
            "/api/settings/test/email",
            json!({"email": "ops@example.com", "template": "password-reset", "collection": "users"}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let mail = parts(&mail_to(&app.dir, "ops@example.com", 0).await);
    assert_eq!(mail.subject, "Users reset TEST-TOKEN-not-valid");
    assert!(mail.html.contains("<p>ops@example.com</p>"), "{}", mail.html);
    let r = app
        .post(
            "/api/settings/test/email",
            json!({"email": "ops@example.com", "template": "login-alert"}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = app
        .post(
            "/api/settings/test/email",
            json!({"email": "ops@example.com", "collection": "nope"}),
        )
        .await;
    assert_eq!(r.field_code("collection"), Some("validation_invalid_auth_collection"));
}

#[actix_web::test]
async fn alerts_a_new_password_forgets_the_origins() {
    let app = spawn_app().await;
    sign_up(&app, "eva@example.com", "Eva").await;
    login_from(&app, "eva@example.com", "one/1").await;
    login_from(&app, "eva@example.com", "two/2").await;
    mail_to(&app.dir, "eva@example.com", 0).await;
    // A password reset (the mail is the second one to her).
    let r = app
        .guest_post(
            &format!("{USERS}/request-password-reset"),
            json!({"email": "eva@example.com"}),
        )
        .await;
    assert_eq!(r.status, 204);
    let reset = mail_to(&app.dir, "eva@example.com", 1).await;
    let token = crate::auth_flows::token_in(&parts(&reset).text);
    let r = app
        .guest_post(
            &format!("{USERS}/confirm-password-reset"),
            json!({"token": token, "password": "password-1", "passwordConfirm": "password-1"}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    // The origins went with the old password: the next login is a first
    // one (no alert), the one after from elsewhere alerts again.
    login_from(&app, "eva@example.com", "three/3").await;
    login_from(&app, "eva@example.com", "four/4").await;
    let alert = parts(&mail_to(&app.dir, "eva@example.com", 2).await);
    assert!(alert.html.contains("four/4"), "{}", alert.html);
    assert_eq!(alerts_to(&app, "eva@example.com").len(), 2);
}

#[actix_web::test]
async fn templates_hidden_fields_are_no_placeholders() {
    let app = spawn_app().await;
    app.create_collection(json!({
        "name": "members",
        "type": "auth",
        "schema": {"type": "object", "properties": {
            "note": {"type": "string", "x-hidden": true},
            "nick": {"type": "string"},
        }},
        "verificationTemplate": {"subject": "Hi {RECORD:nick}", "body": "<p>[{RECORD:note}] [{RECORD:nick}] [{RECORD:verified}]</p>"},
    }))
    .await;
    // The note is the admin's, hidden from clients: a mail to the member
    // must not carry it either.
    let r = app
        .post(
            "/api/collections/members/records",
            json!({"email": "max@example.com", "password": "password-1", "passwordConfirm": "password-1",
                   "note": "internal: slow payer", "nick": "Max"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app
        .guest_post(
            "/api/collections/members/request-verification",
            json!({"email": "max@example.com"}),
        )
        .await;
    assert_eq!(r.status, 204);
    let mail = parts(&mail_to(&app.dir, "max@example.com", 0).await);
    assert_eq!(mail.subject, "Hi Max");
    assert!(
        mail.html.contains("<p>[{RECORD:note}] [Max] [false]</p>"),
        "{}",
        mail.html
    );
    assert!(!mail.html.contains("slow payer"));
}
