//! Multi-factor logins (`mfa` option, PocketBase 0.40's flow): the first
//! factor answers 401 with an `mfaId`, a second factor of another method
//! that sends it back logs in. Attacks first: another account's factor,
//! the same factor twice, a race of second factors, expired, malformed and
//! forged ids, a password change in between.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use awc::http::Method;
use serde_json::{json, Value};

use crate::auth_flows::mail_to;
use crate::helpers::{enc, spawn_app, Resp, TestApp};

/// Digits in the test collection's one-time passwords: a length no date or
/// id in a mail has, so the code is found by its length alone.
const OTP_LEN: usize = 7;
const PASSWORD: &str = "password-1";

async fn sign_up(app: &TestApp, email: &str) -> Value {
    let r = app
        .guest_post(
            "/api/collections/users/records",
            json!({"email": email, "password": PASSWORD, "passwordConfirm": PASSWORD}),
        )
        .await;
    assert_eq!(r.status, 200, "sign-up: {:?}", r.body);
    r.body
}

/// Turns OTP and MFA on for `users` with PocketBase's keys.
async fn enable_mfa(app: &TestApp, mfa: Value) {
    let r = app
        .patch(
            "/api/collections/users",
            json!({"otp": {"enabled": true, "length": OTP_LEN}, "mfa": mfa}),
        )
        .await;
    assert_eq!(r.status, 200, "enable MFA: {:?}", r.body);
}

/// `auth-with-password`, with `mfa` in the body when given.
async fn password(app: &TestApp, collection: &str, email: &str, pw: &str, mfa: Option<&str>) -> Resp {
    let mut body = json!({"identity": email, "password": pw});
    if let Some(id) = mfa {
        body["mfaId"] = json!(id);
    }
    app.guest_post(&format!("/api/collections/{collection}/auth-with-password"), body)
        .await
}

/// The first factor's 401, checked for PocketBase's `mfaId` and the
/// contract's error shape; returns the id.
fn mfa_id_of(r: &Resp) -> String {
    assert_eq!(r.status, 401, "expected a second-factor request: {:?}", r.body);
    let id = r.body["mfaId"]
        .as_str()
        .expect("top-level mfaId, as PocketBase")
        .to_owned();
    assert_eq!(id.len(), 15);
    assert_eq!(r.body["data"]["mfaId"], json!(id));
    assert_eq!(r.body["status"], 401);
    assert!(r.body["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(r.body.get("token").is_none());
    id
}

/// The `OTP_LEN`-digit run in a mail's body.
pub(crate) fn code_in(mail: &str) -> String {
    let body = mail.split_once("\r\n\r\n").map_or(mail, |(_, b)| b);
    body.split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() == OTP_LEN)
        .unwrap_or_else(|| panic!("no {OTP_LEN}-digit code in {body:?}"))
        .to_owned()
}

/// Requests an OTP for `email` and reads its code from the dev outbox
/// (`seen` earlier mails to that address are skipped).
async fn otp(app: &TestApp, collection: &str, email: &str, seen: usize) -> (String, String) {
    let r = app
        .guest_post(
            &format!("/api/collections/{collection}/request-otp"),
            json!({"email": email}),
        )
        .await;
    assert_eq!(r.status, 200, "request-otp: {:?}", r.body);
    let id = r.body["otpId"].as_str().unwrap().to_owned();
    (id, code_in(&mail_to(&app.dir, email, seen).await))
}

/// `auth-with-otp`, with `mfa` in the query as the JS SDK sends it.
async fn with_otp(app: &TestApp, collection: &str, otp: &(String, String), mfa: Option<&str>) -> Resp {
    let query = mfa.map(|m| format!("?mfaId={}", enc(m))).unwrap_or_default();
    app.guest_post(
        &format!("/api/collections/{collection}/auth-with-otp{query}"),
        json!({"otpId": otp.0, "password": otp.1}),
    )
    .await
}

fn assert_logged_in(r: &Resp, email: &str) -> String {
    assert_eq!(r.status, 200, "login: {:?}", r.body);
    assert_eq!(r.body["record"]["email"], email);
    r.body["token"].as_str().unwrap().to_owned()
}

fn assert_refused(r: &Resp, message: &str) {
    assert_eq!(
        (r.status, r.body["message"].as_str()),
        (400, Some(message)),
        "{:?}",
        r.body
    );
    assert!(r.body.get("token").is_none() && r.body.get("mfaId").is_none());
}

const INVALID: &str = "Invalid or expired MFA session.";
const SAME_METHOD: &str = "A different authentication method is required.";

#[actix_web::test]
async fn mfa_password_then_otp_logs_in_once() {
    let app = spawn_app().await;
    sign_up(&app, "ann@example.com").await;
    enable_mfa(&app, json!({"enabled": true})).await;
    let first = password(&app, "users", "ann@example.com", PASSWORD, None).await;
    let mfa = mfa_id_of(&first);
    let code = otp(&app, "users", "ann@example.com", 0).await;
    let token = assert_logged_in(&with_otp(&app, "users", &code, Some(&mfa)).await, "ann@example.com");
    // A real auth token, and refreshing it asks for no second factor.
    let refreshed = app
        .call(Method::POST, "/api/collections/users/auth-refresh", None, Some(&token))
        .await;
    assert_logged_in(&refreshed, "ann@example.com");
    // The mfaId is spent: a second login with it (a fresh OTP) is refused.
    let again = otp(&app, "users", "ann@example.com", 1).await;
    assert_refused(&with_otp(&app, "users", &again, Some(&mfa)).await, INVALID);
    // ... and the spent OTP of that try cannot start a new one.
    assert_eq!(with_otp(&app, "users", &again, None).await.status, 400);
}

#[actix_web::test]
async fn mfa_otp_then_password_with_mfa_id_in_the_body() {
    let app = spawn_app().await;
    sign_up(&app, "bob@example.com").await;
    enable_mfa(&app, json!({"enabled": true, "duration": 300})).await;
    let code = otp(&app, "users", "bob@example.com", 0).await;
    let mfa = mfa_id_of(&with_otp(&app, "users", &code, None).await);
    // The OTP was spent by the first factor, as in PocketBase.
    assert_eq!(with_otp(&app, "users", &code, None).await.status, 400);
    let wrong = password(&app, "users", "bob@example.com", "wrong-password", Some(&mfa)).await;
    assert_refused(&wrong, "Failed to authenticate.");
    let ok = password(&app, "users", "bob@example.com", PASSWORD, Some(&mfa)).await;
    assert_logged_in(&ok, "bob@example.com");
}

#[actix_web::test]
async fn mfa_same_method_twice_is_refused_and_keeps_the_session() {
    let app = spawn_app().await;
    sign_up(&app, "cy@example.com").await;
    enable_mfa(&app, json!({"enabled": true})).await;
    let mfa = mfa_id_of(&password(&app, "users", "cy@example.com", PASSWORD, None).await);
    let twice = password(&app, "users", "cy@example.com", PASSWORD, Some(&mfa)).await;
    assert_refused(&twice, SAME_METHOD);
    // Two OTPs are one method too.
    let code = otp(&app, "users", "cy@example.com", 0).await;
    let by_otp = mfa_id_of(&with_otp(&app, "users", &code, None).await);
    let code = otp(&app, "users", "cy@example.com", 1).await;
    assert_refused(&with_otp(&app, "users", &code, Some(&by_otp)).await, SAME_METHOD);
    // The refusals spent nothing: the password session still finishes.
    let code = otp(&app, "users", "cy@example.com", 2).await;
    assert_logged_in(&with_otp(&app, "users", &code, Some(&mfa)).await, "cy@example.com");
}

#[actix_web::test]
async fn mfa_id_of_another_account_never_finishes_a_login() {
    let app = spawn_app().await;
    sign_up(&app, "victim@example.com").await;
    sign_up(&app, "mallory@example.com").await;
    enable_mfa(&app, json!({"enabled": true})).await;
    let victims = mfa_id_of(&password(&app, "users", "victim@example.com", PASSWORD, None).await);
    // Mallory holds both of her own factors and the victim's mfaId.
    let r = password(&app, "users", "mallory@example.com", PASSWORD, Some(&victims)).await;
    assert_refused(&r, INVALID);
    let code = otp(&app, "users", "mallory@example.com", 0).await;
    assert_refused(&with_otp(&app, "users", &code, Some(&victims)).await, INVALID);
    // Neither finished Mallory's login as the victim nor burnt the
    // victim's session: the victim's own OTP still completes it.
    let code = otp(&app, "users", "victim@example.com", 0).await;
    let r = with_otp(&app, "users", &code, Some(&victims)).await;
    assert_logged_in(&r, "victim@example.com");
}

#[actix_web::test]
async fn mfa_id_of_another_collection_is_refused() {
    let app = spawn_app().await;
    sign_up(&app, "dee@example.com").await;
    enable_mfa(&app, json!({"enabled": true})).await;
    let r = app
        .patch(
            "/api/collections/_superusers",
            json!({"otp": {"enabled": true, "length": OTP_LEN}, "mfa": {"enabled": true}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let users = mfa_id_of(&password(&app, "users", "dee@example.com", PASSWORD, None).await);
    // A superuser's OTP with a user's mfaId.
    let code = otp(&app, "_superusers", crate::helpers::SU_EMAIL, 0).await;
    assert_refused(&with_otp(&app, "_superusers", &code, Some(&users)).await, INVALID);
}

#[actix_web::test]
async fn mfa_concurrent_second_factors_give_exactly_one_token() {
    let app = spawn_app().await;
    sign_up(&app, "eve@example.com").await;
    enable_mfa(&app, json!({"enabled": true})).await;
    let code = otp(&app, "users", "eve@example.com", 0).await;
    let mfa = mfa_id_of(&with_otp(&app, "users", &code, None).await);
    // A password can be sent many times at once; the mfaId must still
    // finish one login only.
    let tries = (0..8).map(|_| password(&app, "users", "eve@example.com", PASSWORD, Some(&mfa)));
    let answers = futures_util::future::join_all(tries).await;
    let ok = answers.iter().filter(|r| r.status == 200).count();
    assert_eq!(
        ok,
        1,
        "{:?}",
        answers.iter().map(|r| (r.status, &r.body)).collect::<Vec<_>>()
    );
    for r in answers.iter().filter(|r| r.status != 200) {
        assert_refused(r, INVALID);
    }
}

fn unix_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()
}

#[actix_web::test]
async fn mfa_session_expires_after_duration() {
    let app = spawn_app().await;
    sign_up(&app, "fox@example.com").await;
    enable_mfa(&app, json!({"enabled": true, "duration": 10})).await;
    let code = otp(&app, "users", "fox@example.com", 0).await;
    let mfa = mfa_id_of(&password(&app, "users", "fox@example.com", PASSWORD, None).await);
    // The server stamped the session before it answered: once this clock
    // is more than the duration past the answer, the session has expired.
    let expiry = unix_ms() + 10_000;
    while unix_ms() <= expiry + 5 {
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert_refused(&with_otp(&app, "users", &code, Some(&mfa)).await, INVALID);
}

#[actix_web::test]
async fn mfa_rule_exempts_records_it_does_not_match() {
    let app = spawn_app().await;
    sign_up(&app, "boss@corp.test").await;
    sign_up(&app, "guest@example.com").await;
    enable_mfa(&app, json!({"enabled": true, "rule": "email ~ '@corp.test'"})).await;
    let r = password(&app, "users", "guest@example.com", PASSWORD, None).await;
    assert_logged_in(&r, "guest@example.com");
    mfa_id_of(&password(&app, "users", "boss@corp.test", PASSWORD, None).await);
    // The rule sees the method as @request.context, like the authRule.
    enable_mfa(&app, json!({"enabled": true, "rule": "@request.context = 'otp'"})).await;
    let r = password(&app, "users", "boss@corp.test", PASSWORD, None).await;
    assert_logged_in(&r, "boss@corp.test");
    let code = otp(&app, "users", "boss@corp.test", 0).await;
    mfa_id_of(&with_otp(&app, "users", &code, None).await);
}

#[actix_web::test]
async fn mfa_off_logs_in_with_one_factor_and_ignores_mfa_id() {
    let app = spawn_app().await;
    sign_up(&app, "gus@example.com").await;
    let r = password(&app, "users", "gus@example.com", PASSWORD, None).await;
    assert_logged_in(&r, "gus@example.com");
    let r = password(&app, "users", "gus@example.com", PASSWORD, Some("whatever")).await;
    assert_logged_in(&r, "gus@example.com");
    // Turned on, then off again: one factor is enough again.
    enable_mfa(&app, json!({"enabled": true})).await;
    mfa_id_of(&password(&app, "users", "gus@example.com", PASSWORD, None).await);
    let r = app
        .patch("/api/collections/users", json!({"mfa": {"enabled": false}}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = password(&app, "users", "gus@example.com", PASSWORD, None).await;
    assert_logged_in(&r, "gus@example.com");
}

#[actix_web::test]
async fn mfa_password_change_ends_pending_sessions() {
    let app = spawn_app().await;
    let user = sign_up(&app, "hal@example.com").await;
    enable_mfa(&app, json!({"enabled": true})).await;
    let mfa = mfa_id_of(&password(&app, "users", "hal@example.com", PASSWORD, None).await);
    let id = user["id"].as_str().unwrap();
    let r = app
        .patch(
            &format!("/api/collections/users/records/{id}"),
            json!({"password": "password-2", "passwordConfirm": "password-2"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let code = otp(&app, "users", "hal@example.com", 0).await;
    assert_refused(&with_otp(&app, "users", &code, Some(&mfa)).await, INVALID);
}

#[actix_web::test]
async fn mfa_malformed_ids_are_clear_400s() {
    let app = spawn_app().await;
    sign_up(&app, "ida@example.com").await;
    enable_mfa(&app, json!({"enabled": true})).await;
    mfa_id_of(&password(&app, "users", "ida@example.com", PASSWORD, None).await);
    let long = "a".repeat(10_000);
    for bad in [
        json!(5),
        json!(true),
        json!({"x": 1}),
        json!("../../secret"),
        json!(long),
    ] {
        let r = app
            .guest_post(
                "/api/collections/users/auth-with-password",
                json!({"identity": "ida@example.com", "password": PASSWORD, "mfaId": bad}),
            )
            .await;
        assert_refused(&r, INVALID);
    }
    // A guessed id (right shape) is just as unknown.
    let r = password(&app, "users", "ida@example.com", PASSWORD, Some("aaaaaaaaaaaaaaa")).await;
    assert_refused(&r, INVALID);
    let r = app
        .guest_post(
            "/api/collections/users/auth-with-password?mfaId=%ZZ",
            json!({"identity": "ida@example.com", "password": PASSWORD}),
        )
        .await;
    assert!(r.status == 400 || r.status == 401, "{:?}", r.body);
}

#[actix_web::test]
async fn mfa_pending_sessions_per_account_are_capped() {
    let app = spawn_app().await;
    sign_up(&app, "jo@example.com").await;
    enable_mfa(&app, json!({"enabled": true})).await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(mfa_id_of(
            &password(&app, "users", "jo@example.com", PASSWORD, None).await,
        ));
    }
    // Five are kept: the oldest went when the sixth came.
    let code = otp(&app, "users", "jo@example.com", 0).await;
    assert_refused(&with_otp(&app, "users", &code, Some(&ids[0])).await, INVALID);
    let code = otp(&app, "users", "jo@example.com", 1).await;
    assert_logged_in(&with_otp(&app, "users", &code, Some(&ids[1])).await, "jo@example.com");
}

#[actix_web::test]
async fn mfa_option_is_validated_as_pocketbase() {
    let app = spawn_app().await;
    let methods = app.guest_get("/api/collections/users/auth-methods").await;
    assert_eq!(methods.body["mfa"], json!({"enabled": false, "duration": 0}));
    let coll = app.get("/api/collections/users").await;
    assert_eq!(coll.body["mfa"], json!({"enabled": false, "duration": 600, "rule": ""}));
    // Password alone is one method: MFA needs a second one.
    let r = app
        .patch("/api/collections/users", json!({"mfa": {"enabled": true}}))
        .await;
    assert_eq!(
        r.field_code("mfa.enabled"),
        Some("validation_mfa_not_enough_auths"),
        "{:?}",
        r.body
    );
    for (mfa, field, code) in [
        (
            json!({"enabled": true, "duration": 9}),
            "mfa.duration",
            "validation_min_greater_equal_than_required",
        ),
        (
            json!({"enabled": true, "duration": 86_401}),
            "mfa.duration",
            "validation_max_less_equal_than_required",
        ),
        (
            json!({"enabled": true, "duration": -1}),
            "mfa.duration",
            "validation_invalid_value",
        ),
        (
            json!({"enabled": true, "rule": "email = "}),
            "mfa.rule",
            "validation_invalid_rule",
        ),
        (json!({"enabled": "yes"}), "mfa.enabled", "validation_invalid_value"),
        (
            json!({"enabled": true, "bypass": true}),
            "mfa.bypass",
            "validation_unknown_field",
        ),
    ] {
        let r = app
            .patch("/api/collections/users", json!({"otp": {"enabled": true}, "mfa": mfa}))
            .await;
        assert_eq!(
            (r.status, r.field_code(field)),
            (400, Some(code)),
            "{mfa}: {:?}",
            r.body
        );
    }
    // Nothing of a refused save stuck.
    let coll = app.get("/api/collections/users").await;
    assert_eq!(coll.body["mfa"]["enabled"], false);
    assert_eq!(coll.body["otp"]["enabled"], false);
    // Off, the values are stored as given (PocketBase checks them when on).
    let r = app
        .patch(
            "/api/collections/users",
            json!({"mfa": {"enabled": false, "duration": 3, "rule": "(("}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["mfa"], json!({"enabled": false, "duration": 3, "rule": "(("}));
    enable_mfa(
        &app,
        json!({"enabled": true, "duration": 120, "rule": "verified = false"}),
    )
    .await;
    let methods = app.guest_get("/api/collections/users/auth-methods").await;
    assert_eq!(methods.body["mfa"], json!({"enabled": true, "duration": 120}));
    // OTP cannot go off while MFA needs it.
    let r = app
        .patch("/api/collections/users", json!({"otp": {"enabled": false}}))
        .await;
    assert_eq!(
        r.field_code("mfa.enabled"),
        Some("validation_mfa_not_enough_auths"),
        "{:?}",
        r.body
    );
    // Basalt's own authOptions object takes it too.
    let coll = app.get("/api/collections/users").await;
    assert_eq!(coll.body["authOptions"]["mfa"]["duration"], 120);
}

#[actix_web::test]
async fn mfa_password_then_otp_over_smtp() {
    let app = spawn_app().await;
    let sink = crate::mail::start_sink(None);
    crate::mail::use_smtp(&app, sink.port).await;
    sign_up(&app, "kim@example.com").await;
    enable_mfa(&app, json!({"enabled": true})).await;
    let mfa = mfa_id_of(&password(&app, "users", "kim@example.com", PASSWORD, None).await);
    let r = app
        .guest_post(
            "/api/collections/users/request-otp",
            json!({"email": "kim@example.com"}),
        )
        .await;
    let otp_id = r.body["otpId"].as_str().unwrap().to_owned();
    let mail = crate::mail::mail_to(&sink, "kim@example.com", 0).await;
    let code = code_in(&crate::mail::text_part(&mail));
    let r = with_otp(&app, "users", &(otp_id, code), Some(&mfa)).await;
    assert_logged_in(&r, "kim@example.com");
}

#[actix_web::test]
async fn mfa_dashboard_login_asks_superusers_for_a_mailed_code() {
    use crate::admin_support::{attr_after, Browser};
    use crate::helpers::{SU_EMAIL, SU_PASSWORD};
    let app = spawn_app().await;
    let r = app
        .patch(
            "/api/collections/_superusers",
            json!({"otp": {"enabled": true, "length": OTP_LEN}, "mfa": {"enabled": true}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mut b = Browser::new(&app);
    // A wrong password gets no further than before (and no mail).
    let r = b.login_with(SU_EMAIL, "wrong password").await;
    assert_eq!(r.status, 400);
    r.assert_has("Wrong email or password.");
    // The right one asks for the code instead of logging in.
    let page = b.login_with(SU_EMAIL, SU_PASSWORD).await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.assert_has("One-time code");
    assert!(!b.cookies.contains_key("basalt_admin"), "no session before the code");
    let field = |page: &crate::admin_support::Html, name: &str| {
        attr_after(&page.body, &format!("name=\"{name}\""), "value").unwrap_or_else(|| panic!("{name} in form"))
    };
    let submit = |page: &crate::admin_support::Html, code: &str| {
        vec![
            ("_csrf".to_owned(), field(page, "_csrf")),
            ("mfaId".to_owned(), field(page, "mfaId")),
            ("otpId".to_owned(), field(page, "otpId")),
            ("email".to_owned(), SU_EMAIL.to_owned()),
            ("next".to_owned(), "/_/settings".to_owned()),
            ("code".to_owned(), code.to_owned()),
        ]
    };
    let code = code_in(&mail_to(&app.dir, SU_EMAIL, 0).await);
    let post = |fields: Vec<(String, String)>| {
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        crate::admin_support::form_encode(&pairs)
    };
    // A wrong code: the form again, still no session.
    let wrong = b
        .send(Method::POST, "/_/login/mfa", Some(post(submit(&page, "0000000x"))), &[])
        .await;
    assert_eq!(wrong.status, 400, "{}", wrong.body);
    wrong.assert_has("Wrong or expired code.");
    assert!(!b.cookies.contains_key("basalt_admin"));
    // Another pending login's id with this code: refused, starts over.
    let mut forged = submit(&wrong, &code);
    forged[1].1 = "aaaaaaaaaaaaaaa".into();
    let r = b.send(Method::POST, "/_/login/mfa", Some(post(forged)), &[]).await;
    assert_eq!(r.status, 400, "{}", r.body);
    r.assert_has("Log in again.");
    assert!(!b.cookies.contains_key("basalt_admin"));
    // That try spent the OTP (as in the API); the password again, a new code.
    let page = b.login_with(SU_EMAIL, SU_PASSWORD).await;
    let code = code_in(&mail_to(&app.dir, SU_EMAIL, 1).await);
    let ok = b
        .send(Method::POST, "/_/login/mfa", Some(post(submit(&page, &code))), &[])
        .await;
    assert_eq!((ok.status, ok.location()), (303, "/_/settings"), "{}", ok.body);
    assert!(b.cookies.contains_key("basalt_admin"));
    assert_eq!(b.get("/_/collections").await.status, 200);
}

#[actix_web::test]
async fn mfa_impersonation_needs_no_second_factor_as_in_pocketbase() {
    let app = spawn_app().await;
    let user = sign_up(&app, "liv@example.com").await;
    enable_mfa(&app, json!({"enabled": true})).await;
    // A superuser's impersonation is not a login (no method to pair with).
    let id = user["id"].as_str().unwrap();
    let r = app
        .post(
            &format!("/api/collections/users/impersonate/{id}"),
            json!({"duration": 60}),
        )
        .await;
    let token = assert_logged_in(&r, "liv@example.com");
    let me = app
        .call(
            Method::GET,
            &format!("/api/collections/users/records/{id}"),
            None,
            Some(&token),
        )
        .await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    // The user herself still needs both factors.
    mfa_id_of(&password(&app, "users", "liv@example.com", PASSWORD, None).await);
}
