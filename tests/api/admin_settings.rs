//! Dashboard settings page (`/_/settings`) over HTTP: every section's form,
//! its effect through the JSON API, inline errors, CSRF, escaping, secrets.
//! CORS as a runtime setting is tested in `admin_settings/cors.rs`.

mod cors;
mod limits;

use serde_json::{json, Value};

use super::admin_support::{Browser, Html};
use super::helpers::{spawn_app, TestApp};

/// Posts a settings form and asserts the 303 back to the page.
pub(super) async fn save(b: &mut Browser, path: &str, fields: &[(&str, &str)]) {
    let r = b.post(path, fields).await;
    assert_eq!((r.status, r.location()), (303, "/_/settings"), "{path}: {}", r.body);
}

/// Posts a settings form and asserts the page came back with 400 and
/// `message` next to the field `id` (`f-<id>` input, `e-<id>` message).
pub(super) async fn refused(b: &mut Browser, path: &str, fields: &[(&str, &str)], id: &str, message: &str) -> Html {
    let r = b.post(path, fields).await;
    assert_eq!(r.status, 400, "{path} {fields:?}: {}", r.body);
    r.assert_has(&format!("id=\"e-{id}\">{message}"));
    r.assert_has(&format!("id=\"f-{id}\""));
    r.assert_has("Not saved.");
    r
}

pub(super) async fn settings(app: &TestApp) -> Value {
    let r = app.get("/api/settings").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
}

const APP_OK: [(&str, &str); 4] = [
    ("meta.appName", "Acme"),
    ("meta.appURL", "https://acme.example"),
    ("meta.senderName", "Acme Support"),
    ("meta.senderAddress", "support@acme.example"),
];

#[actix_web::test]
async fn page_shows_current_values_and_needs_a_session() {
    let app = spawn_app().await;
    let mut guest = Browser::new(&app);
    let r = guest.get("/_/settings").await;
    assert_eq!((r.status, r.location()), (303, "/_/login?next=%2F_%2Fsettings"));
    let r = guest.send_form("/_/settings/application", &APP_OK).await;
    assert_eq!((r.status, r.location()), (303, "/_/login"));
    assert_eq!(settings(&app).await["meta"]["appName"], "Basalt");

    let mut b = Browser::login(&app).await;
    let page = b.get("/_/settings").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("cache-control"), "no-store");
    for text in [
        "<h1>Settings</h1>",
        r#"name="meta.appName" id="f-meta-appName" value="Basalt""#,
        r#"value="http://127.0.0.1:8090""#,
        r#"name="smtp.port" id="f-smtp-port" value="587""#,
        r#"<option value="starttls" selected>"#,
        "SMTP is off: mails are written as files to the dev outbox",
        &format!("{}/outbox", app.dir.display()),
        // Rate limits: the default rules (logins, then the mail routes),
        // then three empty rows.
        r#"name="rateLimits.rules.0.label" id="f-rateLimits-rules-0-label" value="*:auth""#,
        r#"name="rateLimits.rules.0.maxRequests" id="f-rateLimits-rules-0-maxRequests" value="5""#,
        r#"name="rateLimits.rules.1.label" id="f-rateLimits-rules-1-label" value="*:requestOTP""#,
        r#"name="rateLimits.rules.7.label" id="f-rateLimits-rules-7-label" value="""#,
        "<code>POST /api/batch</code>",
        // Token durations of both auth collections, with a human hint.
        r#"action="/_/settings/tokens/users""#,
        r#"action="/_/settings/tokens/_superusers""#,
        r#"id="f-tokens-users-authTokenDuration" value="604800""#,
        "7 days",
        "30 minutes",
        // CORS: from the --origins flag (tests start with `*`).
        r#"name="cors.useFlag" value="on" id="f-cors-useFlag" checked"#,
        "In effect now: <strong>*</strong>",
        r#"id="f-realtime-retentionHours" value="24""#,
        r#"id="f-batch-maxRequests" value="100""#,
        r#"name="batch.enabled" value="on" id="f-batch-enabled" checked"#,
    ] {
        page.assert_has(text);
    }
    assert!(!page.body.contains("rateLimits.rules.8.label"), "three blank rows only");
    assert!(!page.body.contains("Not saved."));
    // Every form carries the CSRF token.
    assert_eq!(
        page.body.matches("<form method=\"post\"").count(),
        page.body
            .matches(&format!("name=\"_csrf\" value=\"{}\"", b.csrf))
            .count()
    );
}

#[actix_web::test]
async fn application_section_saves_and_refuses_bad_values() {
    let app = spawn_app().await;
    let mut b = Browser::login(&app).await;
    b.get("/_/settings").await;
    save(&mut b, "/_/settings/application", &APP_OK).await;
    let page = b.get("/_/settings").await;
    page.assert_has("Saved.");
    page.assert_has(r#"value="support@acme.example""#);
    let meta = &settings(&app).await["meta"];
    assert_eq!(meta["appName"], "Acme");
    assert_eq!(meta["appURL"], "https://acme.example");
    assert_eq!(meta["senderName"], "Acme Support");
    assert_eq!(meta["senderAddress"], "support@acme.example");

    let mut bad = APP_OK;
    bad[1].1 = "acme.example";
    bad[3].1 = "not-an-address";
    let r = refused(
        &mut b,
        "/_/settings/application",
        &bad,
        "meta-appURL",
        "Must be a full http:// or https:// address",
    )
    .await;
    r.assert_has(r#"id="e-meta-senderAddress">Must be a valid email address."#);
    // Typed values are kept, and linked from the summary.
    r.assert_has(r#"value="acme.example""#);
    r.assert_has(r##"<a href="#f-meta-appURL">App URL: Must be"##);
    r.assert_has(r#"aria-invalid="true" aria-describedby="e-meta-appURL h-meta-appURL""#);
    let mut bad = APP_OK;
    bad[2].1 = "Evil\r\nBcc: all@example.com";
    refused(
        &mut b,
        "/_/settings/application",
        &bad,
        "meta-senderName",
        "Must be one line",
    )
    .await;
    assert_eq!(settings(&app).await["meta"]["appURL"], "https://acme.example");
}

#[actix_web::test]
async fn app_name_with_markup_is_escaped_on_the_page_and_in_the_header() {
    let app = spawn_app().await;
    let mut b = Browser::login(&app).await;
    b.get("/_/settings").await;
    let mut fields = APP_OK;
    fields[0].1 = "<script>alert(1)</script>";
    save(&mut b, "/_/settings/application", &fields).await;
    assert_eq!(settings(&app).await["meta"]["appName"], "<script>alert(1)</script>");
    let page = b.get("/_/settings").await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("<script>alert(1)"), "{}", page.body);
    // askama escapes `<` and `>` as numeric references.
    let escaped = "&#60;script&#62;alert(1)&#60;/script&#62;";
    page.assert_has(&format!(r#"id="f-meta-appName" value="{escaped}""#));
    page.assert_has(&format!(r#"<span class="app-name muted">{escaped}</span>"#));
    page.assert_has(&format!("<title>Settings · {escaped}</title>"));
}

#[actix_web::test]
async fn mail_section_keeps_the_password_write_only() {
    let app = spawn_app().await;
    let secret = "pa55-w0rd-never-shown";
    let r = app
        .patch(
            "/api/settings",
            json!({"smtp": {"host": "smtp.acme.example", "username": "mailer", "password": secret}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mut b = Browser::login(&app).await;
    let page = b.get("/_/settings").await;
    assert!(!page.body.contains(secret));
    page.assert_has(r#"name="smtp.password" id="f-smtp-password" value="""#);
    page.assert_has("A password is stored. Leave empty to keep the current password.");

    // Saved with the password field empty: everything else changes, the
    // password stays.
    let form = [
        ("smtp.enabled", "on"),
        ("smtp.host", "mail.acme.example"),
        ("smtp.port", "465"),
        ("smtp.username", "robot"),
        ("smtp.password", ""),
        ("smtp.tls", "tls"),
    ];
    save(&mut b, "/_/settings/mail", &form).await;
    let smtp = &settings(&app).await["smtp"];
    assert_eq!(smtp["enabled"], true);
    assert_eq!(smtp["host"], "mail.acme.example");
    assert_eq!(smtp["port"], 465);
    assert_eq!(smtp["username"], "robot");
    assert_eq!(smtp["tls"], true, "implicit TLS, as PocketBase's bool");
    assert_eq!(smtp["password"], "", "the API redacts it");
    assert_eq!(app.state.settings.get().smtp.password, secret);
    let page = b.get("/_/settings").await;
    assert!(!page.body.contains(secret));
    page.assert_has(
        "Mails (verification, password reset, email change, one-time codes) go out through this SMTP server.",
    );

    // A new password replaces it, and is not shown either, not even when
    // the form comes back with an error.
    let mut with_new = form;
    with_new[4].1 = "n3w-secret-value";
    save(&mut b, "/_/settings/mail", &with_new).await;
    assert_eq!(app.state.settings.get().smtp.password, "n3w-secret-value");
    with_new[2].1 = "0";
    let r = refused(
        &mut b,
        "/_/settings/mail",
        &with_new,
        "smtp-port",
        "Must be a whole number from 1 to 65535.",
    )
    .await;
    assert!(!r.body.contains("n3w-secret-value"));
    r.assert_has(r#"value="mail.acme.example""#);
    with_new[2].1 = "70000";
    refused(
        &mut b,
        "/_/settings/mail",
        &with_new,
        "smtp-port",
        "Must be a whole number from 1 to 65535.",
    )
    .await;
    let mut no_host = form;
    no_host[1].1 = "";
    refused(
        &mut b,
        "/_/settings/mail",
        &no_host,
        "smtp-host",
        "Required while SMTP is on.",
    )
    .await;
    let mut bad_tls = form;
    bad_tls[5].1 = "ssl3";
    refused(
        &mut b,
        "/_/settings/mail",
        &bad_tls,
        "smtp-tls",
        "Must be starttls, tls or none.",
    )
    .await;
    let smtp = &settings(&app).await["smtp"];
    assert_eq!((smtp["port"].clone(), smtp["tls"].clone()), (json!(465), json!(true)));
    assert_eq!(app.state.settings.get().smtp.password, "n3w-secret-value");
}

#[actix_web::test]
async fn mail_section_sets_pocketbase_auth_method_and_local_name() {
    let app = spawn_app().await;
    let mut b = Browser::login(&app).await;
    let page = b.get("/_/settings").await;
    page.assert_has(r#"<option value="" selected>PLAIN (most servers)</option>"#);
    page.assert_has(r#"name="smtp.localName" id="f-smtp-localName" value="""#);
    let mut form = [
        ("smtp.host", "mail.acme.example"),
        ("smtp.port", "587"),
        ("smtp.username", ""),
        ("smtp.password", ""),
        ("smtp.tls", "starttls"),
        ("smtp.authMethod", "LOGIN"),
        ("smtp.localName", "relay.acme.example"),
    ];
    save(&mut b, "/_/settings/mail", &form).await;
    let smtp = &settings(&app).await["smtp"];
    assert_eq!(
        (smtp["authMethod"].clone(), smtp["localName"].clone()),
        (json!("LOGIN"), json!("relay.acme.example"))
    );
    let page = b.get("/_/settings").await;
    page.assert_has(r#"<option value="LOGIN" selected>LOGIN</option>"#);
    page.assert_has(r#"value="relay.acme.example""#);
    // The API's nested errors land on their fields.
    form[6].1 = "not a host!";
    refused(
        &mut b,
        "/_/settings/mail",
        &form,
        "smtp-localName",
        "Must be a valid IP address or DNS name.",
    )
    .await;
    form[6].1 = "relay.acme.example";
    form[5].1 = "CRAM-MD5";
    refused(
        &mut b,
        "/_/settings/mail",
        &form,
        "smtp-authMethod",
        "Must be a valid value.",
    )
    .await;
    assert_eq!(settings(&app).await["smtp"]["authMethod"], "LOGIN");
}

#[actix_web::test]
async fn test_mail_goes_to_the_dev_outbox_while_smtp_is_off() {
    let app = spawn_app().await;
    let mut b = Browser::login(&app).await;
    let page = b.get("/_/settings").await;
    page.assert_has(r#"name="test.email" id="f-test-email" value="root@example.com""#);
    let r = b
        .post(
            "/_/settings/mail/test",
            &[("test.email", "ops@acme.example"), ("test.template", "password-reset")],
        )
        .await;
    assert_eq!((r.status, r.location()), (303, "/_/settings"), "{}", r.body);
    let page = b.get("/_/settings").await;
    page.assert_has("SMTP is off: the test mail was written to the dev outbox");
    // Delivery is awaited before the redirect, so the file is there now.
    let outbox = app.dir.join("outbox");
    let mails: Vec<String> = std::fs::read_dir(&outbox)
        .expect("outbox dir")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("mail file"))
        .collect();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(mails[0].contains("To: ops@acme.example"), "{}", mails[0]);
    assert!(mails[0].contains("Subject: Reset your Basalt password"), "{}", mails[0]);

    let r = refused(
        &mut b,
        "/_/settings/mail/test",
        &[("test.email", "nobody"), ("test.template", "verification")],
        "test-email",
        "Must be a valid email address.",
    )
    .await;
    r.assert_has(r#"value="nobody""#);
    refused(
        &mut b,
        "/_/settings/mail/test",
        &[("test.email", "ops@acme.example"), ("test.template", "spam")],
        "test-template",
        "Must be verification, password-reset, email-change, otp or login-alert.",
    )
    .await;
    assert_eq!(std::fs::read_dir(&outbox).expect("outbox").count(), 1);
}

#[actix_web::test]
async fn rate_limit_rules_are_edited_added_and_removed_without_scripts() {
    let app = spawn_app().await;
    let mut b = Browser::login(&app).await;
    b.get("/_/settings").await;
    // Rule 0 (the default *:auth) edited, row 1 removed, row 2 empty (dropped),
    // row 3 added.
    let form = [
        ("rateLimits.enabled", "on"),
        ("rateLimits.rules.0.label", "*:auth"),
        ("rateLimits.rules.0.maxRequests", "10"),
        ("rateLimits.rules.0.duration", "60"),
        ("rateLimits.rules.0.audience", ""),
        ("rateLimits.rules.1.label", "/api/"),
        ("rateLimits.rules.1.maxRequests", "100"),
        ("rateLimits.rules.1.duration", "10"),
        ("rateLimits.rules.1.audience", ""),
        ("rateLimits.rules.1.remove", "on"),
        ("rateLimits.rules.2.label", ""),
        ("rateLimits.rules.2.maxRequests", ""),
        ("rateLimits.rules.2.duration", ""),
        ("rateLimits.rules.2.audience", ""),
        ("rateLimits.rules.3.label", "POST /api/batch"),
        ("rateLimits.rules.3.maxRequests", "3"),
        ("rateLimits.rules.3.duration", "1"),
        ("rateLimits.rules.3.audience", "@auth"),
    ];
    save(&mut b, "/_/settings/rate-limits", &form).await;
    let limits = &settings(&app).await["rateLimits"];
    assert_eq!(limits["enabled"], true);
    assert_eq!(
        limits["rules"],
        json!([
            {"label": "*:auth", "maxRequests": 10, "duration": 60},
            {"label": "POST /api/batch", "maxRequests": 3, "duration": 1, "audience": "@auth"},
        ])
    );
    let page = b.get("/_/settings").await;
    page.assert_has(r#"id="f-rateLimits-rules-1-label" value="POST /api/batch""#);
    page.assert_has(r#"id="f-rateLimits-rules-4-label" value="""#);

    let before = settings(&app).await["rateLimits"].clone();
    let mut bad = form;
    bad[14].1 = "posts:frobnicate";
    let r = refused(
        &mut b,
        "/_/settings/rate-limits",
        &bad,
        "rateLimits-rules-3-label",
        "Not a known label",
    )
    .await;
    r.assert_has(r#"value="posts:frobnicate""#);
    r.assert_has(r#"name="rateLimits.rules.1.remove" value="on" aria-label="Remove rule 2" checked"#);
    let mut bad = form;
    bad[2].1 = "0";
    bad[16].1 = "soon";
    let r = refused(
        &mut b,
        "/_/settings/rate-limits",
        &bad,
        "rateLimits-rules-0-maxRequests",
        "Must be a whole number, at least 1.",
    )
    .await;
    r.assert_has(r#"id="e-rateLimits-rules-3-duration">Must be a whole number, at least 1."#);
    assert_eq!(settings(&app).await["rateLimits"], before);

    // Unticking "on" switches limiting off and keeps the rules.
    save(&mut b, "/_/settings/rate-limits", &form[1..]).await;
    let limits = &settings(&app).await["rateLimits"];
    assert_eq!(
        (limits["enabled"].clone(), limits["rules"].clone()),
        (json!(false), before["rules"].clone())
    );
}

#[actix_web::test]
async fn token_durations_save_into_the_collections_auth_options() {
    let app = spawn_app().await;
    let mut b = Browser::login(&app).await;
    b.get("/_/settings").await;
    let before = app.get("/api/collections/users").await.body["authOptions"].clone();
    let form = [
        ("authTokenDuration", "86400"),
        ("verificationTokenDuration", "3600"),
        ("passwordResetTokenDuration", "900"),
        ("emailChangeTokenDuration", "5400"),
    ];
    save(&mut b, "/_/settings/tokens/users", &form).await;
    let options = &app.get("/api/collections/users").await.body["authOptions"];
    assert_eq!(options["authTokenDuration"], 86400);
    assert_eq!(options["verificationTokenDuration"], 3600);
    assert_eq!(options["passwordResetTokenDuration"], 900);
    assert_eq!(options["emailChangeTokenDuration"], 5400);
    // The rest of the auth options is untouched.
    assert_eq!(options["identityFields"], before["identityFields"]);
    assert_eq!(options["otp"], before["otp"]);
    let page = b.get("/_/settings").await;
    page.assert_has(r#"id="f-tokens-users-emailChangeTokenDuration" value="5400""#);
    page.assert_has("1 hour 30 minutes");
    // Superusers' durations are untouched.
    let su = &app.get("/api/collections/_superusers").await.body["authOptions"];
    assert_eq!(su["authTokenDuration"], before["authTokenDuration"]);

    let mut bad = form;
    bad[0].1 = "-5";
    let r = refused(
        &mut b,
        "/_/settings/tokens/users",
        &bad,
        "tokens-users-authTokenDuration",
        "Must be a whole number of seconds, at least 1.",
    )
    .await;
    r.assert_has(r#"value="-5""#);
    bad[0].1 = "0";
    refused(
        &mut b,
        "/_/settings/tokens/users",
        &bad,
        "tokens-users-authTokenDuration",
        "Must be a whole number of seconds, at least 1.",
    )
    .await;
    assert_eq!(
        app.get("/api/collections/users").await.body["authOptions"]["authTokenDuration"],
        86400
    );
    let r = b.post("/_/settings/tokens/nope", &form).await;
    assert_eq!(r.status, 404);
    app.posts().await;
    let r = b.post("/_/settings/tokens/posts", &form).await;
    assert_eq!(r.status, 404, "a base collection has no tokens");
}

#[actix_web::test]
async fn cors_section_saves_a_list_validates_it_and_goes_back_to_the_flag() {
    let app = spawn_app().await;
    let mut b = Browser::login(&app).await;
    b.get("/_/settings").await;
    save(
        &mut b,
        "/_/settings/cors",
        &[(
            "cors.origins",
            "https://app.acme.example\r\n\r\n  http://localhost:5173  \r\n",
        )],
    )
    .await;
    assert_eq!(
        settings(&app).await["cors"]["origins"],
        json!(["https://app.acme.example", "http://localhost:5173"])
    );
    let page = b.get("/_/settings").await;
    page.assert_has("In effect now: <strong>https://app.acme.example, http://localhost:5173</strong>");
    assert!(!page.body.contains(r#"id="f-cors-useFlag" checked"#));

    let r = refused(
        &mut b,
        "/_/settings/cors",
        &[("cors.origins", "https://ok.example\nftp:/nope\nhttps://a.example/path")],
        "cors-origins",
        "<span class=\"line\">&#39;ftp:/nope&#39; is not an origin",
    )
    .await;
    r.assert_has("&#39;https://a.example/path&#39; is not an origin");
    r.assert_has("https://ok.example\nftp:/nope");
    refused(
        &mut b,
        "/_/settings/cors",
        &[("cors.origins", "*\nhttps://a.example")],
        "cors-origins",
        "<span class=\"line\">&#39;*&#39; allows every origin: list it alone.",
    )
    .await;
    assert_eq!(
        settings(&app).await["cors"]["origins"],
        json!(["https://app.acme.example", "http://localhost:5173"])
    );

    save(
        &mut b,
        "/_/settings/cors",
        &[("cors.useFlag", "on"), ("cors.origins", "")],
    )
    .await;
    assert_eq!(settings(&app).await["cors"]["origins"], Value::Null);
}

#[actix_web::test]
async fn realtime_and_batch_sections_save_and_refuse_bad_numbers() {
    let app = spawn_app().await;
    let mut b = Browser::login(&app).await;
    b.get("/_/settings").await;
    save(
        &mut b,
        "/_/settings/realtime",
        &[
            ("realtime.retentionHours", "48"),
            ("realtime.retentionEvents", "5000"),
            ("realtime.maxBytes", "256 MiB"),
        ],
    )
    .await;
    save(&mut b, "/_/settings/batch", &[("batch.maxRequests", "20")]).await;
    let s = settings(&app).await;
    assert_eq!(
        s["realtime"],
        json!({"retentionHours": 48, "retentionEvents": 5000, "maxBytes": 256 * 1024 * 1024})
    );
    assert_eq!(
        (s["batch"]["enabled"].clone(), s["batch"]["maxRequests"].clone()),
        (json!(false), json!(20))
    );

    refused(
        &mut b,
        "/_/settings/realtime",
        &[
            ("realtime.retentionHours", "-1"),
            ("realtime.retentionEvents", "5000"),
            ("realtime.maxBytes", "256 MiB"),
        ],
        "realtime-retentionHours",
        "Must be a whole number of hours (0 or more).",
    )
    .await;
    refused(
        &mut b,
        "/_/settings/realtime",
        &[
            ("realtime.retentionHours", "1"),
            ("realtime.retentionEvents", "0"),
            ("realtime.maxBytes", "256 MiB"),
        ],
        "realtime-retentionEvents",
        "Must be a whole number, at least 1.",
    )
    .await;
    // The range is the settings store's own check, shown the same way.
    let r = refused(
        &mut b,
        "/_/settings/batch",
        &[("batch.enabled", "on"), ("batch.maxRequests", "5000")],
        "batch-maxRequests",
        "Must be 1..1000.",
    )
    .await;
    r.assert_has(r#"name="batch.enabled" value="on" id="f-batch-enabled" checked"#);
    assert_eq!(settings(&app).await, s);
}

#[actix_web::test]
async fn forms_without_the_csrf_token_change_nothing() {
    let app = spawn_app().await;
    let mut b = Browser::login(&app).await;
    b.get("/_/settings").await;
    let before = settings(&app).await;
    let users_before = app.get("/api/collections/users").await.body["authOptions"].clone();
    let forms: [(&str, &[(&str, &str)]); 8] = [
        ("/_/settings/application", &APP_OK),
        (
            "/_/settings/mail",
            &[("smtp.host", "x"), ("smtp.port", "25"), ("smtp.tls", "none")],
        ),
        ("/_/settings/mail/test", &[("test.email", "ops@acme.example")]),
        ("/_/settings/rate-limits", &[("rateLimits.rules.0.label", "/api/")]),
        ("/_/settings/tokens/users", &[("authTokenDuration", "60")]),
        ("/_/settings/cors", &[("cors.origins", "https://evil.example")]),
        ("/_/settings/realtime", &[("realtime.retentionHours", "1")]),
        ("/_/settings/batch", &[("batch.maxRequests", "5")]),
    ];
    for (path, fields) in forms {
        let r = b.send_form(path, fields).await;
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        let mut wrong = vec![("_csrf", "forged")];
        wrong.extend_from_slice(fields);
        assert_eq!(b.send_form(path, &wrong).await.status, 403, "{path}");
        // A cross-site post is refused even with the right token.
        let r = b
            .post_with_headers(path, fields, &[("Origin", "https://evil.example")])
            .await;
        assert_eq!(r.status, 403, "{path}");
    }
    assert_eq!(settings(&app).await, before);
    assert_eq!(
        app.get("/api/collections/users").await.body["authOptions"],
        users_before
    );
    assert!(!app.dir.join("outbox").exists(), "no test mail sent");
}

#[actix_web::test]
async fn page_holds_no_secrets() {
    let app = spawn_app().await;
    let mut b = Browser::login(&app).await;
    let page = b.get("/_/settings").await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains(&app.token), "superuser API token");
    // The server secret is 32 random bytes: look for it in any usual text form.
    let secret = app.state.store.meta_get("secret").expect("read").expect("secret");
    assert_eq!(secret.len(), 32);
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    for form in engines.iter().map(|e| base64::Engine::encode(e, &secret)).chain([hex]) {
        assert!(!page.body.contains(&form[..40]), "server secret ({form})");
    }
    assert!(!page.body.contains(&b.cookies["basalt_admin"]), "session id");
}

#[actix_web::test]
async fn trusted_proxy_section_saves_and_refuses_bad_header_names() {
    let app = spawn_app().await;
    let mut b = Browser::login(&app).await;
    b.get("/_/settings").await.assert_has("Trusted proxy");
    let r = b
        .post(
            "/_/settings/proxy",
            &[
                ("trustedProxy.headers", "X-Forwarded-For\n\nX-Real-IP\n"),
                ("trustedProxy.useLeftmostIP", "on"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let s = app.get("/api/settings").await.body;
    assert_eq!(
        s["trustedProxy"],
        serde_json::json!({"headers": ["X-Forwarded-For", "X-Real-IP"], "useLeftmostIP": true})
    );
    let r = b
        .post("/_/settings/proxy", &[("trustedProxy.headers", "Bad Header:")])
        .await;
    assert_eq!(r.status, 400);
    r.assert_has("Must be a header name");
    assert_eq!(app.get("/api/settings").await.body["trustedProxy"], s["trustedProxy"]);
}

#[actix_web::test]
async fn request_log_section_saves_and_refuses_bad_numbers() {
    let app = spawn_app().await;
    let mut b = Browser::login(&app).await;
    b.get("/_/settings").await.assert_has("Request log");
    let r = b
        .post(
            "/_/settings/logs",
            &[
                ("logs.enabled", "on"),
                ("logs.maxDays", "3"),
                ("logs.maxEntries", "500"),
                ("logs.maxBytes", "32 MiB"),
                ("logs.logAuthId", "on"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let logs = app.get("/api/settings").await.body["logs"].clone();
    assert_eq!(
        logs,
        json!({"enabled": true, "maxDays": 3, "maxEntries": 500, "maxBytes": 32 * 1024 * 1024,
               "logIP": false, "logAuthId": true, "minLevel": 0, "maxDataSize": 0})
    );
    let r = b
        .post(
            "/_/settings/logs",
            &[("logs.maxDays", "0"), ("logs.maxEntries", "lots")],
        )
        .await;
    assert_eq!(r.status, 400);
    r.assert_has("Must be a whole number from 1 to 10,000,000.");
    assert_eq!(app.get("/api/settings").await.body["logs"], logs);
}

#[actix_web::test]
async fn budget_section_saves_and_refuses_bad_numbers() {
    let app = spawn_app().await;
    let mut b = Browser::login(&app).await;
    b.get("/_/settings").await.assert_has("Request budget");
    let fields = |records: &'static str| {
        [
            ("budget.maxRecords", records),
            ("budget.maxExpand", "300"),
            ("budget.maxOutputBytes", "1000000"),
            ("budget.realtimeMaxRecords", "4000"),
            ("budget.maxSeconds", "20"),
        ]
    };
    let r = b.post("/_/settings/budget", &fields("50000")).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let budget = app.get("/api/settings").await.body["budget"].clone();
    assert_eq!(
        budget,
        json!({"maxRecords": 50000, "maxExpand": 300, "maxOutputBytes": 1000000, "realtimeMaxRecords": 4000,
               "maxSeconds": 20})
    );
    for bad in ["0", "many", "-5"] {
        let r = b.post("/_/settings/budget", &fields(bad)).await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(app.get("/api/settings").await.body["budget"], budget);
    }
}
