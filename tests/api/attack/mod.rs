//! An attacker's tests, one file per class of the access-rule findings
//! (issue 11): a guest and a signed-up user ("mallory") try to learn or
//! change what the rules keep from them. Each probe is a pair of requests
//! that differ only in whether a secret condition is TRUE or FALSE; the
//! answers must be identical, so no request is an oracle.

mod cursor;
mod filters;
mod modifiers;
mod realtime;

use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

pub use crate::helpers::enc;

/// The victim's secrets the probes try to learn.
pub const SSN: &str = "123-45-6789";
pub const NOTE_SECRET: &str = "the-launch-code";
pub const VAULT_CODE: &str = "vault-42";
pub const VICTIM_EMAIL: &str = "victim@example.com";
pub const VICTIM_NAME: &str = "Victoria";

/// A server with a victim, an attacker and data worth stealing:
/// * `users` (PocketBase's default owner-only rules) with a hidden `ssn`
///   and a `name`; the victim's email is not public;
/// * `posts` (public) whose `author` points at users and `vault` at
///   `vault` (superusers only);
/// * `notes` (owner-only) with a `secret`, pointing at a post and an owner.
pub struct World {
    pub app: TestApp,
    pub victim: String,
    pub victim_token: String,
    pub mallory_token: String,
}

pub async fn user(app: &TestApp, email: &str, name: &str) -> (String, String) {
    let r = app
        .guest_post(
            "/api/collections/users/records",
            json!({"email": email, "password": "password-123", "passwordConfirm": "password-123", "name": name}),
        )
        .await;
    assert_eq!(r.status, 200, "sign-up: {:?}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    (id, app.login("users", email, "password-123").await)
}

pub async fn world() -> World {
    let app = spawn_app().await;
    let users = app.get("/api/collections/users").await.body;
    let mut schema = users["schema"].clone();
    schema["properties"]["ssn"] = json!({"type": "string", "x-hidden": true});
    schema["properties"]["name"] = json!({"type": "string"});
    let r = app.patch("/api/collections/users", json!({"schema": schema})).await;
    assert_eq!(r.status, 200, "users schema: {:?}", r.body);
    app.create_collection(json!({
        "name": "vault", "listRule": null, "viewRule": null,
        "schema": {"type": "object", "properties": {"code": {"type": "string"}}}
    }))
    .await;
    app.create_collection(json!({
        "name": "posts", "listRule": "", "viewRule": "", "createRule": "@request.auth.id != ''",
        "schema": {"type": "object", "properties": {
            "title": {"type": "string"},
            "author": {"type": "string", "x-relation": {"collection": "users"}},
            "vault": {"type": "string", "x-relation": {"collection": "vault"}}
        }}
    }))
    .await;
    let owner = "owner = @request.auth.id";
    app.create_collection(json!({
        "name": "notes", "listRule": owner, "viewRule": owner, "createRule": owner,
        "schema": {"type": "object", "properties": {
            "secret": {"type": "string"},
            "post": {"type": "string", "x-relation": {"collection": "posts"}},
            "owner": {"type": "string", "x-relation": {"collection": "users"}}
        }}
    }))
    .await;
    let (victim, victim_token) = user(&app, VICTIM_EMAIL, VICTIM_NAME).await;
    let r = app
        .patch(&format!("/api/collections/users/records/{victim}"), json!({"ssn": SSN}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let (_, mallory_token) = user(&app, "mallory@example.com", "Mallory").await;
    let vault = app
        .post("/api/collections/vault/records", json!({"code": VAULT_CODE}))
        .await;
    let post = app
        .post(
            "/api/collections/posts/records",
            json!({"title": "hello", "author": victim, "vault": vault.body["id"]}),
        )
        .await;
    assert_eq!(post.status, 200, "{:?}", post.body);
    let post = post.body["id"].as_str().unwrap().to_owned();
    let note = app
        .post(
            "/api/collections/notes/records",
            json!({"secret": NOTE_SECRET, "post": post, "owner": victim}),
        )
        .await;
    assert_eq!(note.status, 200, "{:?}", note.body);
    World {
        app,
        victim,
        victim_token,
        mallory_token,
    }
}

/// `(status, body)` of a GET as `token` (None = guest).
pub async fn answer(app: &TestApp, path: &str, token: Option<&str>) -> (u16, Value) {
    let r = app.call(awc::http::Method::GET, path, None, token).await;
    assert!(r.status < 500, "{path}: {} {:?}", r.status, r.body);
    (r.status, r.body)
}
