//! OAuth2 / OpenID Connect sign-in against a real OpenID provider: panva's
//! `oidc-provider` (tests/support/oidc, started per test on a free loopback
//! port; `scripts/test.sh` installs it with npm). Without it the tests that
//! need it skip with a message, except in CI (`CI` set), where they fail.
//!
//! The attacker's cases come first: forged and defective ID tokens, codes
//! and verifiers that are not the flow's, unverified emails that match an
//! existing user, providers that are down, slow or flood, redirects for
//! someone else's realtime client, and other users' links.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use awc::http::Method;
use serde_json::{json, Value};

use crate::helpers::{client, enc, spawn_app, TestApp};
use crate::realtime::sse_connect;

/// The OpenID provider; killed (and reaped) on drop. Its stdin is a pipe
/// held here: if the test process dies without dropping this, the server
/// sees EOF and exits by itself.
struct Oidc {
    child: Child,
    issuer: String,
}

impl Drop for Oidc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const HARNESS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/oidc");

/// Starts the provider, or None (the test skips) when it is not installed
/// outside CI.
fn start_oidc() -> Option<Oidc> {
    let installed = std::path::Path::new(HARNESS)
        .join("node_modules/oidc-provider")
        .is_dir();
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed || !node {
        if std::env::var_os("CI").is_some() {
            panic!("the OpenID test provider is not installed, and CI must run the OAuth2 tests: see scripts/test.sh");
        }
        eprintln!("SKIPPED: node or tests/support/oidc/node_modules missing (scripts/test.sh installs them)");
        return None;
    }
    let mut child = Command::new("node")
        .arg(format!("{HARNESS}/server.js"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tests/support/oidc/server.js");
    let stdout = child.stdout.take().expect("provider stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read provider stdout");
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("provider did not start: {line:?}"));
    let issuer = v["issuer"].as_str().expect("issuer").to_owned();
    Some(Oidc { child, issuer })
}

/// An OIDC provider entry for Basalt's client at `oidc` (the user read
/// from the ID token, keys found by discovery), with `overrides`.
fn provider(oidc: &Oidc, overrides: Value) -> Value {
    let mut p = json!({
        "name": "oidc", "clientId": "basalt", "clientSecret": "basalt-secret",
        "authURL": format!("{}/auth", oidc.issuer), "tokenURL": format!("{}/token", oidc.issuer),
        "displayName": "Test OIDC", "extra": {"issuers": [oidc.issuer]},
    });
    for (k, v) in overrides.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

async fn enable(app: &TestApp, providers: Value) {
    let r = app
        .patch(
            "/api/collections/users",
            json!({"oauth2": {"enabled": true, "providers": providers,
                              "mappedFields": {"name": "name", "id": "", "username": "", "avatarURL": ""}}}),
        )
        .await;
    assert_eq!(r.status, 200, "enable oauth2: {:?}", r.body);
}

const REDIRECT: &str = "http://127.0.0.1:9/callback";

/// Runs the browser's part of the flow for `login` at the provider: the
/// `auth-methods` entry used, and the `code` the redirect carries.
async fn authorize(app: &TestApp, oidc: &Oidc, login: &str) -> (Value, String) {
    let methods = app.guest_get("/api/collections/users/auth-methods").await;
    assert_eq!(methods.status, 200);
    let p = methods.body["oauth2"]["providers"][0].clone();
    let url = format!("{}{}", p["authURL"].as_str().unwrap(), enc(REDIRECT));
    let drive = format!("{}/__drive?login={}&url={}", oidc.issuer, enc(login), enc(&url));
    let mut res = client().get(drive).send().await.unwrap();
    let out: Value = res.json().await.unwrap();
    let location = url::Url::parse(out["location"].as_str().unwrap_or_else(|| panic!("no redirect: {out}"))).unwrap();
    let q: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(
        q.get("state").map(String::as_str),
        p["state"].as_str(),
        "state round trip"
    );
    (
        p,
        q.get("code").cloned().unwrap_or_else(|| panic!("no code: {location}")),
    )
}

async fn exchange(app: &TestApp, p: &Value, code: &str, extra: Value) -> crate::helpers::Resp {
    let mut body = json!({"provider": p["name"], "code": code,
                          "codeVerifier": p["codeVerifier"], "redirectURL": REDIRECT});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    app.guest_post("/api/collections/users/auth-with-oauth2", body).await
}

async fn sign_in(app: &TestApp, oidc: &Oidc, login: &str) -> crate::helpers::Resp {
    let (p, code) = authorize(app, oidc, login).await;
    exchange(app, &p, &code, json!({})).await
}

async fn count(app: &TestApp, collection: &str) -> u64 {
    let r = app
        .get(&format!("/api/collections/{collection}/records?perPage=1"))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["totalItems"].as_u64().unwrap()
}

async fn links_of(app: &TestApp, user_id: &str) -> Vec<Value> {
    let f = enc(&format!("recordRef='{user_id}'"));
    let r = app
        .get(&format!("/api/collections/_externalAuths/records?filter={f}"))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["items"].as_array().unwrap().clone()
}

// ---- the attacker's cases ------------------------------------------------

#[actix_web::test]
async fn forged_and_defective_id_tokens_are_refused() {
    let Some(oidc) = start_oidc() else { return };
    let app = spawn_app().await;
    let evil = |kind: &str| provider(&oidc, json!({"tokenURL": format!("{}/evil/token/{kind}", oidc.issuer)}));
    let kinds = [
        "foreign-key",
        "foreign-key-same-kid",
        "alg-none",
        "hs256-public-key",
        "wrong-aud",
        "wrong-iss",
        "expired",
        "wrong-nonce",
    ];
    for kind in kinds {
        enable(&app, json!([evil(kind)])).await;
        let r = app
            .guest_post(
                "/api/collections/users/auth-with-oauth2",
                json!({"provider": "oidc", "code": "anything", "codeVerifier": "v".repeat(43), "redirectURL": REDIRECT}),
            )
            .await;
        assert_eq!(r.status, 400, "{kind}: {:?}", r.body);
        assert_eq!(r.body["message"], "Failed to fetch OAuth2 user.", "{kind}");
        assert!(r.body.get("token").is_none());
    }
    assert_eq!(count(&app, "users").await, 0, "no user made by a forged token");
    assert_eq!(count(&app, "_externalAuths").await, 0);
    // The same endpoint with a well-signed token does sign in: the refusals
    // above are the token's defects, not a broken setup.
    enable(&app, json!([evil("good")])).await;
    let r = app
        .guest_post(
            "/api/collections/users/auth-with-oauth2",
            json!({"provider": "oidc", "code": "anything", "redirectURL": REDIRECT}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["meta"]["id"], "evil-good");
}

#[actix_web::test]
async fn wrong_reused_or_foreign_codes_and_verifiers_are_refused() {
    let Some(oidc) = start_oidc() else { return };
    let app = spawn_app().await;
    enable(&app, json!([provider(&oidc, json!({}))])).await;
    // A code nobody issued.
    let (p, code) = authorize(&app, &oidc, "carol").await;
    let r = exchange(&app, &p, "not-a-code", json!({})).await;
    assert_eq!(
        (r.status, r.body["message"].as_str()),
        (400, Some("Failed to fetch OAuth2 token."))
    );
    // The right code with another flow's verifier (a code stolen from
    // another session): refused, and the provider then revokes the code.
    let other = app.guest_get("/api/collections/users/auth-methods").await.body["oauth2"]["providers"][0].clone();
    let r = exchange(&app, &p, &code, json!({"codeVerifier": other["codeVerifier"]})).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    // A fresh code, used twice: the second use fails.
    let (p, code) = authorize(&app, &oidc, "carol").await;
    let first = exchange(&app, &p, &code, json!({})).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let again = exchange(&app, &p, &code, json!({})).await;
    assert_eq!(again.status, 400, "{:?}", again.body);
    assert_eq!(count(&app, "users").await, 1);
    // Bad bodies: clear 400s naming the field.
    for (body, field) in [
        (json!({"code": "x"}), "provider"),
        (json!({"provider": "github", "code": "x"}), "provider"),
        (json!({"provider": "oidc"}), "code"),
        (json!({"provider": "oidc", "code": 5}), "code"),
        (json!({"provider": "oidc", "code": "x", "createData": []}), "createData"),
        (json!({"provider": "oidc", "code": "x".repeat(5000)}), "code"),
    ] {
        let r = app.guest_post("/api/collections/users/auth-with-oauth2", body).await;
        assert_eq!(r.status, 400, "{:?}", r.body);
        assert!(r.body["data"][field].is_object(), "{field}: {:?}", r.body);
    }
}

#[actix_web::test]
async fn an_unverified_provider_email_never_signs_into_an_existing_user() {
    let Some(oidc) = start_oidc() else { return };
    let app = spawn_app().await;
    enable(&app, json!([provider(&oidc, json!({}))])).await;
    let victim = app
        .guest_post(
            "/api/collections/users/records",
            json!({"email": "unverified-eve@example.test", "password": "victim-password", "passwordConfirm": "victim-password"}),
        )
        .await;
    assert_eq!(victim.status, 200, "{:?}", victim.body);
    let victim_id = victim.body["id"].as_str().unwrap().to_owned();
    // The provider says the account has this address but did not verify
    // it: no existing user is found by it.
    let r = sign_in(&app, &oidc, "unverified-eve").await;
    assert_ne!(r.status, 200, "an unverified email must not sign in: {:?}", r.body);
    // Not even when the client asks for the victim's address explicitly.
    let (p, code) = authorize(&app, &oidc, "unverified-eve").await;
    let r = exchange(
        &app,
        &p,
        &code,
        json!({"createData": {"email": "unverified-eve@example.test"}}),
    )
    .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(r.body.get("token").is_none());
    assert!(links_of(&app, &victim_id).await.is_empty(), "no link to the victim");
    assert_eq!(count(&app, "users").await, 1, "no user created");
    app.login("users", "unverified-eve@example.test", "victim-password")
        .await;
    // With its own address the same account may sign up (not verified).
    let (p, code) = authorize(&app, &oidc, "unverified-eve").await;
    let r = exchange(
        &app,
        &p,
        &code,
        json!({"createData": {"email": "eve-own@example.test"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["record"]["verified"], false);
    assert_ne!(r.body["record"]["id"], victim_id.as_str());
}

#[actix_web::test]
async fn unreachable_slow_or_flooding_providers_get_a_clear_400() {
    let Some(oidc) = start_oidc() else { return };
    let app = spawn_app().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let ev = |p: &str| format!("{}/evil/{p}", oidc.issuer);
    let cases = [
        (
            json!({"tokenURL": format!("http://127.0.0.1:{closed}/token")}),
            "Failed to fetch OAuth2 token.",
        ),
        (json!({"tokenURL": ev("token/huge")}), "Failed to fetch OAuth2 token."),
        (json!({"tokenURL": ev("token/error")}), "Failed to fetch OAuth2 token."),
        (json!({"tokenURL": ev("token/hang")}), "Failed to fetch OAuth2 token."),
        (
            json!({"tokenURL": ev("token/good"), "userInfoURL": ev("userinfo/huge"), "extra": null}),
            "Failed to fetch OAuth2 user.",
        ),
        (
            json!({"tokenURL": ev("token/good"), "userInfoURL": ev("userinfo/hang"), "extra": null}),
            "Failed to fetch OAuth2 user.",
        ),
        (
            json!({"tokenURL": ev("token/good"), "extra": {"issuers": [oidc.issuer],
                   "jwksURL": format!("http://127.0.0.1:{closed}/jwks")}}),
            "Failed to fetch OAuth2 user.",
        ),
    ];
    for (overrides, message) in cases {
        enable(&app, json!([provider(&oidc, overrides.clone())])).await;
        let r = app
            .guest_post(
                "/api/collections/users/auth-with-oauth2",
                json!({"provider": "oidc", "code": "x", "redirectURL": REDIRECT}),
            )
            .await;
        assert_eq!(
            (r.status, r.body["message"].as_str()),
            (400, Some(message)),
            "{overrides}"
        );
    }
    assert_eq!(count(&app, "users").await, 0);
}

#[actix_web::test]
async fn redirects_reach_only_a_live_subscribed_client_once() {
    let app = spawn_app().await;
    let (mut sse, client_id) = sse_connect(&app).await;
    let redirect = |q: String| {
        let url = format!("{}/api/oauth2-redirect?{q}", app.base);
        async move {
            let mut r = client().get(url).send().await.unwrap();
            (
                r.status().as_u16(),
                String::from_utf8_lossy(&r.body().await.unwrap()).into_owned(),
            )
        }
    };
    // Not subscribed to @oauth2 yet: nothing is forwarded.
    let (status, page) = redirect(format!("state={client_id}&code=early")).await;
    assert_eq!(status, 200);
    assert!(page.starts_with("Failed to authenticate."), "{page}");
    let r = app
        .guest_post(
            "/api/realtime",
            json!({"clientId": client_id, "subscriptions": ["@oauth2"]}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    // A state that is no live client, and oversized values: refused.
    for q in [
        "state=nobody&code=c".to_owned(),
        "code=c".to_owned(),
        format!("state={client_id}&code={}", "c".repeat(4100)),
    ] {
        let (_, page) = redirect(q).await;
        assert!(page.starts_with("Failed to authenticate."), "{page}");
    }
    let huge = client()
        .post(format!("{}/api/oauth2-redirect", app.base))
        .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
        .send_body(format!("state={client_id}&code={}", "c".repeat(64 * 1024)))
        .await
        .unwrap();
    assert_eq!(huge.status().as_u16(), 200);
    // Apple's form post reaches the client.
    let mut posted = client()
        .post(format!("{}/api/oauth2-redirect", app.base))
        .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
        .send_body(format!("state={client_id}&code=the-code"))
        .await
        .unwrap();
    let page = String::from_utf8_lossy(&posted.body().await.unwrap()).into_owned();
    assert_eq!(
        page,
        "Auth completed. You can close this window and go back to the app."
    );
    // The first message the client gets is that one: none of the refused
    // redirects above got through.
    let (_, event, data) = sse.next().await;
    assert_eq!(event, "@oauth2");
    assert_eq!(data, json!({"state": client_id, "code": "the-code"}));
    // Once: the subscription is used up, a replay finds nobody.
    let (_, page) = redirect(format!("state={client_id}&code=again")).await;
    assert!(page.starts_with("Failed to authenticate."), "{page}");
}

#[actix_web::test]
async fn external_auths_are_seen_and_unlinked_by_their_owner_only() {
    let Some(oidc) = start_oidc() else { return };
    let app = spawn_app().await;
    enable(&app, json!([provider(&oidc, json!({}))])).await;
    let alice = sign_in(&app, &oidc, "alice").await;
    let bob = sign_in(&app, &oidc, "bob").await;
    assert_eq!((alice.status, bob.status), (200, 200));
    let (alice_token, bob_token) = (
        alice.body["token"].as_str().unwrap(),
        bob.body["token"].as_str().unwrap(),
    );
    let alice_id = alice.body["record"]["id"].as_str().unwrap();
    let list = |token: Option<String>| {
        let app = &app;
        async move {
            app.call(
                Method::GET,
                "/api/collections/_externalAuths/records",
                None,
                token.as_deref(),
            )
            .await
        }
    };
    let mine = list(Some(alice_token.to_owned())).await;
    assert_eq!(mine.status, 200, "{:?}", mine.body);
    let items = mine.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{:?}", mine.body);
    let link = &items[0];
    assert_eq!(link["recordRef"], alice_id);
    assert_eq!(link["provider"], "oidc");
    assert_eq!(link["providerId"], "alice");
    let link_id = link["id"].as_str().unwrap();
    assert_eq!(list(None).await.body["items"], json!([]), "guests see no links");
    let path = format!("/api/collections/_externalAuths/records/{link_id}");
    // Bob can neither see nor remove Alice's link, nor make one.
    let r = app.call(Method::GET, &path, None, Some(bob_token)).await;
    assert_eq!(r.status, 404);
    let r = app.call(Method::DELETE, &path, None, Some(bob_token)).await;
    assert_eq!(r.status, 404);
    let forged = json!({"collectionRef": alice.body["record"]["collectionId"], "recordRef": alice_id,
                        "provider": "oidc", "providerId": "mallory"});
    let r = app
        .call(
            Method::POST,
            "/api/collections/_externalAuths/records",
            Some(forged),
            Some(bob_token),
        )
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    // Alice unlinks: the link goes, she stays.
    let r = app.call(Method::DELETE, &path, None, Some(alice_token)).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert!(links_of(&app, alice_id).await.is_empty());
    assert_eq!(
        app.get(&format!("/api/collections/users/records/{alice_id}"))
            .await
            .status,
        200
    );
    // Deleting Bob removes his link too.
    let bob_id = bob.body["record"]["id"].as_str().unwrap();
    assert_eq!(links_of(&app, bob_id).await.len(), 1);
    assert_eq!(
        app.delete(&format!("/api/collections/users/records/{bob_id}"))
            .await
            .status,
        204
    );
    assert!(links_of(&app, bob_id).await.is_empty());
    // The system collection cannot be deleted.
    assert_eq!(app.delete("/api/collections/_externalAuths").await.status, 400);
}

// ---- the flows -------------------------------------------------------------

#[actix_web::test]
async fn code_flow_signs_up_then_signs_in_the_returning_user() {
    let Some(oidc) = start_oidc() else { return };
    let app = spawn_app().await;
    enable(&app, json!([provider(&oidc, json!({}))])).await;
    let first = sign_in(&app, &oidc, "alice").await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let record = &first.body["record"];
    assert_eq!(record["email"], "alice@example.test");
    assert_eq!(record["verified"], true, "the provider verified the address");
    assert_eq!(record["name"], "Name of alice", "mappedFields.name");
    let meta = &first.body["meta"];
    assert_eq!(meta["isNew"], true);
    assert_eq!(meta["id"], "alice");
    assert_eq!(meta["email"], "alice@example.test");
    assert_eq!(meta["name"], "Name of alice");
    assert_eq!(meta["username"], "alice");
    assert_eq!(meta["avatarURL"], "https://example.test/avatars/alice.png");
    assert_eq!(meta["rawUser"]["sub"], "alice");
    assert!(meta["accessToken"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(meta["expiry"].as_str().is_some_and(|t| t.ends_with('Z')));
    // The token works.
    let me = app
        .call(
            Method::POST,
            "/api/collections/users/auth-refresh",
            None,
            first.body["token"].as_str(),
        )
        .await;
    assert_eq!(me.status, 200);
    // Back again: the same user, found by the link.
    let again = sign_in(&app, &oidc, "alice").await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(again.body["meta"]["isNew"], false);
    assert_eq!(again.body["record"]["id"], record["id"]);
    assert_eq!(links_of(&app, record["id"].as_str().unwrap()).await.len(), 1);
    assert_eq!(count(&app, "users").await, 1);
}

#[actix_web::test]
async fn a_verified_provider_email_links_the_existing_user_and_drops_a_squatters_password() {
    let Some(oidc) = start_oidc() else { return };
    let app = spawn_app().await;
    // Keys named explicitly this time (no discovery), user from user info.
    let p = provider(
        &oidc,
        json!({"userInfoURL": format!("{}/me", oidc.issuer),
               "extra": {"issuers": [oidc.issuer], "jwksURL": format!("{}/jwks", oidc.issuer)}}),
    );
    enable(&app, json!([p])).await;
    // Someone registered bob's address before him (never verified it).
    let squat = app
        .guest_post(
            "/api/collections/users/records",
            json!({"email": "bob@example.test", "password": "squatter-pw", "passwordConfirm": "squatter-pw"}),
        )
        .await;
    assert_eq!(squat.status, 200);
    let r = sign_in(&app, &oidc, "bob").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["record"]["id"], squat.body["id"]);
    assert_eq!(r.body["record"]["verified"], true);
    assert_eq!(r.body["meta"]["isNew"], false);
    let login = app
        .guest_post(
            "/api/collections/users/auth-with-password",
            json!({"identity": "bob@example.test", "password": "squatter-pw"}),
        )
        .await;
    assert_eq!(login.status, 400, "the squatter's password no longer works");
    assert_eq!(links_of(&app, squat.body["id"].as_str().unwrap()).await.len(), 1);
}

#[actix_web::test]
async fn options_are_checked_and_the_client_secret_never_shown() {
    let app = spawn_app().await;
    let base = json!({"name": "google", "clientId": "id", "clientSecret": "s3cret-value"});
    let with = |k: &str, v: Value| {
        let mut p = base.clone();
        p[k] = v;
        p
    };
    for (providers, field) in [
        (json!([with("name", json!("nope"))]), "oauth2.providers.0.name"),
        (
            json!([with("clientSecret", json!(""))]),
            "oauth2.providers.0.clientSecret",
        ),
        (json!([with("clientId", json!(""))]), "oauth2.providers.0.clientId"),
        (json!([base, base]), "oauth2.providers.1.name"),
        (
            json!([with("authURL", json!("javascript:alert(1)"))]),
            "oauth2.providers.0.authURL",
        ),
        (
            json!([{"name": "oidc", "clientId": "a", "clientSecret": "b", "authURL": "https://i.test/a", "tokenURL": "https://i.test/t"}]),
            "oauth2.providers.0.extra.issuers",
        ),
        (
            json!([{"name": "oidc", "clientId": "a", "clientSecret": "b", "userInfoURL": "https://i.test/u"}]),
            "oauth2.providers.0.authURL",
        ),
    ] {
        let r = app
            .patch(
                "/api/collections/users",
                json!({"oauth2": {"enabled": true, "providers": providers}}),
            )
            .await;
        assert_eq!(r.status, 400, "{providers}: {:?}", r.body);
        assert!(r.body["data"][field].is_object(), "{field}: {:?}", r.body);
    }
    let r = app
        .patch(
            "/api/collections/users",
            json!({"oauth2": {"enabled": true, "providers": [base]}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(!r.body.to_string().contains("s3cret-value"), "secret shown: {}", r.body);
    assert_eq!(r.body["oauth2"]["providers"][0]["name"], "google");
    assert_eq!(r.body["oauth2"]["providers"][0].get("clientSecret"), None);
    // Written back as read (no secret), and through the old alias: kept.
    let view = app.get("/api/collections/users").await.body;
    assert!(!view.to_string().contains("s3cret-value"));
    let r = app
        .patch(
            "/api/collections/users",
            json!({"oauth2": view["oauth2"].clone(), "authOptions": view["authOptions"].clone(), "name": "users"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mut renamed = view["oauth2"].clone();
    renamed["providers"][0]["displayName"] = json!("G");
    let r = app.patch("/api/collections/users", json!({"oauth2": renamed})).await;
    assert_eq!(r.status, 200, "the stored secret satisfies the check: {:?}", r.body);
    // auth-methods: the provider with a fresh state and PKCE pair.
    let m = app.guest_get("/api/collections/users/auth-methods").await.body;
    let p = &m["oauth2"]["providers"][0];
    assert_eq!(m["oauth2"]["enabled"], true);
    assert_eq!(p["displayName"], "G");
    assert_eq!(p["state"].as_str().unwrap().len(), 30);
    assert_eq!(p["codeVerifier"].as_str().unwrap().len(), 43);
    assert_eq!(p["codeChallengeMethod"], "S256");
    let url = p["authURL"].as_str().unwrap();
    assert!(
        url.starts_with("https://accounts.google.com/o/oauth2/v2/auth?client_id=id&code_challenge="),
        "{url}"
    );
    assert!(url.ends_with("&redirect_uri="), "{url}");
    assert!(url.contains(&format!("state={}", p["state"].as_str().unwrap())));
    assert!(!url.contains("s3cret"));
    assert_eq!(m["authProviders"][0]["name"], "google");
    assert_eq!(m["authProviders"][0]["authURL"].as_str().unwrap().len(), url.len());
    // Disabled: 403 as PocketBase.
    let r = app
        .patch("/api/collections/users", json!({"oauth2": {"enabled": false}}))
        .await;
    assert_eq!(r.status, 200);
    let r = app
        .guest_post(
            "/api/collections/users/auth-with-oauth2",
            json!({"provider": "google", "code": "x"}),
        )
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
}

// ---- the dashboard ---------------------------------------------------------

#[actix_web::test]
async fn the_dashboard_lists_and_unlinks_a_users_providers() {
    let app = spawn_app().await;
    let users = app.get("/api/collections/users").await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ids = Vec::new();
    for email in ["ann@example.test", "ben@example.test"] {
        let r = app
            .post(
                "/api/collections/users/records",
                json!({"email": email, "password": "password-1", "passwordConfirm": "password-1"}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        ids.push(r.body["id"].as_str().unwrap().to_owned());
    }
    let mut links = Vec::new();
    for (user, account) in [(&ids[0], "ann-at-the-provider"), (&ids[1], "ben-at-the-provider")] {
        let r = app
            .post(
                "/api/collections/_externalAuths/records",
                json!({"collectionRef": users, "recordRef": user, "provider": "oidc", "providerId": account}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        links.push(r.body["id"].as_str().unwrap().to_owned());
    }
    let path = format!("/_/collections/users/records/{}", ids[0]);
    let mut b = crate::admin_support::Browser::login(&app).await;
    let page = b.get(&path).await;
    assert_eq!(page.status, 200);
    for text in ["Linked providers", "ann-at-the-provider", "Unlink"] {
        page.assert_has(text);
    }
    assert!(!page.body.contains("ben-at-the-provider"));
    // Another user's link through this user's page: refused, kept.
    let r = b.post(&format!("{path}/unlink"), &[("link", links[1].as_str())]).await;
    assert_eq!(r.status, 303);
    b.get(&path).await.assert_has("No such linked provider.");
    assert_eq!(links_of(&app, &ids[1]).await.len(), 1);
    let r = b.post(&format!("{path}/unlink"), &[("link", links[0].as_str())]).await;
    assert_eq!((r.status, r.location()), (303, path.as_str()));
    let page = b.get(&path).await;
    page.assert_has("The provider was unlinked.");
    page.assert_has("No OAuth2 provider is linked to this account.");
    assert!(links_of(&app, &ids[0]).await.is_empty());
    assert_eq!(
        app.get(&format!("/api/collections/users/records/{}", ids[0]))
            .await
            .status,
        200
    );
}

/// Pre-hijacking (found by the session-6 review): an attacker signs up
/// through their own provider account with the victim's address (kept
/// unverified) and so holds a link to that record. When the owner later
/// claims the account — a password reset here, a superuser marking it
/// verified for the second record — the verified upgrade must drop every
/// link, as PocketBase does, so the attacker's next sign-in does not land
/// in the owner's account.
#[actix_web::test]
async fn a_verified_upgrade_drops_links_made_while_unverified() {
    use crate::auth_flows::{mail_to, token_in};
    let Some(oidc) = start_oidc() else { return };
    let app = spawn_app().await;
    enable(&app, json!([provider(&oidc, json!({}))])).await;
    for (victim, login, claim_by_reset) in [
        ("victim-one@example.test", "mallory", true),
        ("victim-two@example.test", "mallory-two", false),
    ] {
        let (p, code) = authorize(&app, &oidc, login).await;
        let squat = exchange(&app, &p, &code, json!({"createData": {"email": victim}})).await;
        assert_eq!(squat.status, 200, "{:?}", squat.body);
        assert_eq!(squat.body["record"]["verified"], false);
        let victim_id = squat.body["record"]["id"].as_str().unwrap().to_owned();
        assert_eq!(links_of(&app, &victim_id).await.len(), 1, "the squatter's link");
        if claim_by_reset {
            let r = app
                .guest_post(
                    "/api/collections/users/request-password-reset",
                    json!({"email": victim}),
                )
                .await;
            assert_eq!(r.status, 204);
            let token = token_in(&mail_to(&app.dir, victim, 0).await);
            let r = app
                .guest_post(
                    "/api/collections/users/confirm-password-reset",
                    json!({"token": token, "password": "owner-password", "passwordConfirm": "owner-password"}),
                )
                .await;
            assert_eq!(r.status, 204, "{:?}", r.body);
        } else {
            let r = app
                .patch(
                    &format!("/api/collections/users/records/{victim_id}"),
                    json!({"verified": true}),
                )
                .await;
            assert_eq!(r.status, 200, "{:?}", r.body);
        }
        assert!(
            links_of(&app, &victim_id).await.is_empty(),
            "links dropped on the upgrade"
        );
        let again = sign_in(&app, &oidc, login).await;
        assert_ne!(
            again.body["record"]["id"].as_str(),
            Some(victim_id.as_str()),
            "the squatter's sign-in must not reach the owner's account: {:?}",
            again.body
        );
        // The squatter's earlier token died with the rotated tokenKey.
        let old = squat.body["token"].as_str().unwrap();
        let r = app
            .call(Method::POST, "/api/collections/users/auth-refresh", None, Some(old))
            .await;
        assert_eq!(r.status, 401, "{:?}", r.body);
    }
}
