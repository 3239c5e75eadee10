//! Mail over real SMTP: the server delivers to tests/support/smtp_sink.py (a
//! real SMTP server on a free local port, aiosmtpd) and the tests read the
//! messages it stored, decode the MIME text part, and follow the tokens
//! through the confirm endpoints, all over HTTP.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

/// The sink process; killed (and reaped) on drop, so a failing test does not
/// leave it behind. Its stdin is a pipe held here: if the test process dies
/// without dropping this, the sink sees EOF and exits by itself.
pub(crate) struct Sink {
    child: Child,
    pub(crate) port: u16,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the sink; `auth` = Some("user:password") makes it require AUTH.
pub(crate) fn start_sink(auth: Option<&str>) -> Sink {
    let tmp = tempfile::tempdir().expect("sink dir");
    let dir = tmp.path().join("mails");
    let mut cmd = Command::new("python3");
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_sink.py"))
        .arg(&dir);
    if let Some(a) = auth {
        cmd.arg("--auth").arg(a);
    }
    let child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start python3 tests/support/smtp_sink.py");
    let mut sink = Sink {
        child,
        port: 0,
        dir,
        _tmp: tmp,
    };
    let stdout = sink.child.stdout.take().expect("sink stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read sink stdout");
    sink.port = line
        .trim()
        .strip_prefix("ready ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("smtp_sink.py did not start (is aiosmtpd installed? see scripts/test.sh): {line:?}"));
    sink
}

/// Points the server's SMTP settings at `port` (plain SMTP, as for a local
/// relay) and sets the sender and app URL the mails use. Rate limits go off:
/// a flow here (login, request, confirm, login again) is near the default
/// `*:auth` budget, and the limits have their own tests.
pub(crate) async fn use_smtp(app: &TestApp, port: u16) {
    let r = app
        .patch(
            "/api/settings",
            json!({
                "smtp": {"enabled": true, "host": "127.0.0.1", "port": port, "tls": "none"},
                "meta": {"senderAddress": "no-reply@basalt.test", "appURL": "http://example.test"},
                "rateLimits": {"enabled": false}
            }),
        )
        .await;
    assert_eq!(r.status, 200, "configure SMTP: {:?}", r.body);
}

/// The raw messages the sink stored so far, oldest first.
fn stored(dir: &Path) -> Vec<String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    paths.retain(|p| p.extension().is_some_and(|e| e == "eml"));
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect()
}

/// Waits (bounded: ~30 s) for the `seen`-th (0-based) mail to `to`; auth
/// flows send from a background task, so the HTTP answer comes first.
pub(crate) async fn mail_to(sink: &Sink, to: &str, seen: usize) -> String {
    for _ in 0..1500 {
        let mut mails = stored(&sink.dir);
        mails.retain(|m| m.contains(&format!("\r\nTo: {to}\r\n")));
        if mails.len() > seen {
            return mails.swap_remove(seen);
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no mail to {to} in the SMTP sink");
}

/// A header's value from the top-level header block.
fn header<'a>(raw: &'a str, name: &str) -> Option<&'a str> {
    let head = raw.split("\r\n\r\n").next()?;
    head.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
}

/// Decodes quoted-printable (RFC 2045 6.7): `=\r\n` is a soft line break,
/// `=XY` a byte.
fn decode_qp(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' {
            if b[i + 1..].starts_with(b"\r\n") {
                i += 3;
                continue;
            }
            if let Some(byte) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).expect("utf-8 text part")
}

/// The decoded text/plain part of a multipart message, whatever transfer
/// encoding lettre chose for it.
pub(crate) fn text_part(raw: &str) -> String {
    let start = raw.find("Content-Type: text/plain").expect("a text/plain part");
    let part = &raw[start..];
    let (head, rest) = part.split_once("\r\n\r\n").expect("part headers");
    let body = rest.split("\r\n--").next().unwrap_or(rest);
    let encoding = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Transfer-Encoding: "))
        .unwrap_or("7bit")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "quoted-printable" => decode_qp(body),
        "base64" => {
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .expect("base64 text part");
            String::from_utf8(bytes).expect("utf-8 text part")
        }
        _ => body.to_owned(),
    }
}

fn token_in(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("Token: "))
        .expect("token line")
        .trim()
        .to_owned()
}

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

#[actix_web::test]
async fn mail_password_reset_over_smtp() {
    let app = spawn_app().await;
    let sink = start_sink(None);
    use_smtp(&app, sink.port).await;
    sign_up(&app, "amy@example.com", "password-1").await;

    let r = app
        .guest_post(
            "/api/collections/users/request-password-reset",
            json!({"email": "amy@example.com"}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let raw = mail_to(&sink, "amy@example.com", 0).await;
    assert_eq!(header(&raw, "From"), Some("Basalt <no-reply@basalt.test>"), "{raw}");
    assert_eq!(header(&raw, "Subject"), Some("Reset your Basalt password"));
    assert!(
        header(&raw, "Content-Type").is_some_and(|c| c.starts_with("multipart/alternative")),
        "{raw}"
    );
    assert!(raw.contains("Content-Type: text/html"), "{raw}");
    let text = text_part(&raw);
    let token = token_in(&text);
    assert!(
        text.contains(&format!("http://example.test/_/auth/confirm-password-reset/{token}")),
        "{text}"
    );
    // SMTP replaces the dev outbox: nothing was written there.
    assert!(std::fs::read_dir(app.dir.join("outbox")).map_or(true, |mut d| d.next().is_none()));

    let r = app
        .guest_post(
            "/api/collections/users/confirm-password-reset",
            json!({"token": token, "password": "new-password", "passwordConfirm": "new-password"}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    app.login("users", "amy@example.com", "new-password").await;
    let old = app
        .guest_post(
            "/api/collections/users/auth-with-password",
            json!({"identity": "amy@example.com", "password": "password-1"}),
        )
        .await;
    assert_eq!(old.status, 400);
}

#[actix_web::test]
async fn mail_verification_over_smtp() {
    let app = spawn_app().await;
    let sink = start_sink(None);
    use_smtp(&app, sink.port).await;
    let user = sign_up(&app, "ben@example.com", "password-1").await;
    let url = format!("/api/collections/users/records/{}", user["id"].as_str().expect("id"));
    assert_eq!(app.get(&url).await.body["verified"], false);

    let r = app
        .guest_post(
            "/api/collections/users/request-verification",
            json!({"email": "ben@example.com"}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let raw = mail_to(&sink, "ben@example.com", 0).await;
    assert_eq!(header(&raw, "Subject"), Some("Verify your Basalt email"));
    let text = text_part(&raw);
    assert!(
        text.contains("http://example.test/_/auth/confirm-verification/"),
        "{text}"
    );
    let r = app
        .guest_post(
            "/api/collections/users/confirm-verification",
            json!({"token": token_in(&text)}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(app.get(&url).await.body["verified"], true);
}

#[actix_web::test]
async fn mail_test_email_endpoint() {
    let app = spawn_app().await;
    let sink = start_sink(None);
    use_smtp(&app, sink.port).await;
    let path = "/api/settings/test/email";

    let guest = app.guest_post(path, json!({"email": "ops@example.com"})).await;
    assert_eq!(guest.status, 401, "{:?}", guest.body);
    sign_up(&app, "eve@example.com", "password-1").await;
    let user = app.login("users", "eve@example.com", "password-1").await;
    let r = app
        .call(
            awc::http::Method::POST,
            path,
            Some(json!({"email": "ops@example.com"})),
            Some(&user),
        )
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert!(stored(&sink.dir).is_empty());

    // Default template: verification.
    let r = app.post(path, json!({"email": "ops@example.com"})).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let raw = mail_to(&sink, "ops@example.com", 0).await;
    assert_eq!(header(&raw, "Subject"), Some("Verify your Basalt email"));
    for (n, (template, subject)) in [
        ("password-reset", "Reset your Basalt password"),
        ("email-change", "Confirm your new Basalt email address"),
        ("otp", "Your Basalt sign-in code"),
    ]
    .into_iter()
    .enumerate()
    {
        let r = app
            .post(path, json!({"email": "ops@example.com", "template": template}))
            .await;
        assert_eq!(r.status, 204, "{template}: {:?}", r.body);
        let raw = mail_to(&sink, "ops@example.com", n + 1).await;
        assert_eq!(header(&raw, "Subject"), Some(subject), "{template}");
    }

    let r = app
        .post(path, json!({"email": "ops@example.com", "template": "nope"}))
        .await;
    assert_eq!(
        r.field_code("template"),
        Some("validation_invalid_value"),
        "{:?}",
        r.body
    );
    let r = app.post(path, json!({})).await;
    assert_eq!(r.field_code("email"), Some("validation_required"), "{:?}", r.body);
    let r = app.post(path, json!({"email": "not-an-email"})).await;
    assert_eq!(r.field_code("email"), Some("validation_invalid_email"), "{:?}", r.body);

    // SMTP pointing at a closed port: 400 with the delivery error, quickly.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    use_smtp(&app, port).await;
    let started = std::time::Instant::now();
    let r = app.post(path, json!({"email": "ops@example.com"})).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let message = r.body["message"].as_str().unwrap_or_default();
    assert!(message.contains("SMTP"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(20));
    // The auth flows answer as usual (the failure is only logged).
    let r = app
        .guest_post(
            "/api/collections/users/request-verification",
            json!({"email": "eve@example.com"}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
}

#[actix_web::test]
async fn mail_smtp_password_is_write_only_and_kept() {
    let app = spawn_app().await;
    let sink = start_sink(Some("mailer:s3cret-pass"));
    let path = "/api/settings/test/email";
    let r = app
        .patch(
            "/api/settings",
            json!({
                "smtp": {"enabled": true, "host": "127.0.0.1", "port": sink.port, "tls": "none",
                         "username": "mailer", "password": "s3cret-pass"},
                "meta": {"senderAddress": "no-reply@basalt.test"}
            }),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["smtp"]["password"], "");
    assert_eq!(r.body["smtp"]["username"], "mailer");
    let view = app.get("/api/settings").await;
    assert_eq!(view.status, 200);
    assert_eq!(view.body["smtp"]["password"], "");
    assert!(!view.body.to_string().contains("s3cret-pass"));

    // The stored password authenticates against the sink.
    assert_eq!(app.post(path, json!({"email": "ops@example.com"})).await.status, 204);
    mail_to(&sink, "ops@example.com", 0).await;

    // A PATCH with an empty password (what the dashboard sends back after a
    // GET) keeps the stored one.
    let r = app
        .patch(
            "/api/settings",
            json!({"smtp": {"password": "", "username": "mailer"}, "meta": {"appName": "Basalt"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["smtp"]["password"], "");
    assert_eq!(app.post(path, json!({"email": "ops@example.com"})).await.status, 204);
    mail_to(&sink, "ops@example.com", 1).await;

    // A wrong password is refused by the server: 400 with its answer.
    let r = app.patch("/api/settings", json!({"smtp": {"password": "wrong"}})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app.post(path, json!({"email": "ops@example.com"})).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let message = r.body["message"].as_str().unwrap_or_default();
    assert!(message.contains("535"), "{message}");
    assert!(!message.contains("wrong"), "{message}");
    assert_eq!(stored(&sink.dir).len(), 2);
}

#[actix_web::test]
async fn mail_link_from_smtp_walks_through_the_page() {
    let app = spawn_app().await;
    let sink = start_sink(None);
    use_smtp(&app, sink.port).await;
    let user = sign_up(&app, "dan@example.com", "password-1").await;
    let url = format!("/api/collections/users/records/{}", user["id"].as_str().expect("id"));
    let r = app
        .guest_post(
            "/api/collections/users/request-verification",
            json!({"email": "dan@example.com"}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let text = text_part(&mail_to(&sink, "dan@example.com", 0).await);
    let link = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("http://example.test"))
        .unwrap_or_else(|| panic!("no link to the appURL in:\n{text}"))
        .to_owned();
    assert_eq!(link, format!("/_/auth/confirm-verification/{}", token_in(&text)));

    let mut b = crate::admin_support::Browser::new(&app);
    let page = b.get(&link).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(app.get(&url).await.body["verified"], false);
    let csrf = crate::admin_support::attr_after(&page.body, "name=\"_csrf\"", "value").expect("csrf field");
    let done = b.send_form(&link, &[("_csrf", &csrf)]).await;
    assert_eq!(done.status, 200, "{}", done.body);
    done.assert_has("Your email is verified.");
    assert_eq!(app.get(&url).await.body["verified"], true);
}
