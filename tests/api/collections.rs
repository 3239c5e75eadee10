use serde_json::{json, Value};

use crate::helpers::spawn_app;

#[actix_web::test]
async fn collection_lifecycle() {
    let app = spawn_app().await;
    let created = app.posts().await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("c_"));
    assert_eq!(created["name"], "posts");
    assert_eq!(created["type"], "base");
    assert_eq!(created["deleteRule"], "");
    assert_eq!(created["schema"]["required"], json!(["title"]));

    let list = app.get("/api/collections").await;
    assert_eq!(list.status, 200);
    let names: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["_externalAuths", "_superusers", "posts", "users"]);
    assert_eq!(list.body["totalItems"], 4);

    // By name and by id.
    assert_eq!(app.get("/api/collections/posts").await.body["id"], id);
    assert_eq!(app.get(&format!("/api/collections/{id}")).await.body["name"], "posts");

    // Rename and change a rule; records follow the collection.
    app.post("/api/collections/posts/records", json!({"title": "kept"}))
        .await;
    let patched = app
        .patch("/api/collections/posts", json!({"name": "articles", "listRule": null}))
        .await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    assert_eq!(patched.body["listRule"], Value::Null);
    assert_eq!(app.get("/api/collections/posts").await.status, 404);
    let recs = app.get("/api/collections/articles/records").await;
    assert_eq!(recs.body["totalItems"], 1);
    assert_eq!(recs.body["items"][0]["collectionName"], "articles");

    // Delete removes the records too: a new collection of the same name is empty.
    assert_eq!(app.delete("/api/collections/articles").await.status, 204);
    assert_eq!(app.get("/api/collections/articles").await.status, 404);
    assert_eq!(app.get("/api/collections/articles/records").await.status, 404);
    app.create_collection(json!({"name": "articles", "listRule": "", "schema": {"type": "object"}}))
        .await;
    assert_eq!(app.get("/api/collections/articles/records").await.body["totalItems"], 0);
}

#[actix_web::test]
async fn default_collections_exist_and_system_ones_are_protected() {
    let app = spawn_app().await;
    let users = app.get("/api/collections/users").await;
    assert_eq!(users.status, 200);
    assert_eq!(users.body["type"], "auth");
    assert_eq!(users.body["createRule"], "");
    assert_eq!(users.body["viewRule"], "id = @request.auth.id");
    let su = app.get("/api/collections/_superusers").await;
    assert_eq!(su.body["system"], true);
    assert_eq!(su.body["listRule"], Value::Null);
    assert_eq!(app.delete("/api/collections/_superusers").await.status, 400);
    let rename = app
        .patch("/api/collections/_superusers", json!({"name": "admins"}))
        .await;
    assert_eq!(rename.status, 400);
    assert_eq!(rename.field_code("name"), Some("validation_system_collection"));
}

/// Every refusal at save names the problem in a 400.
#[actix_web::test]
async fn invalid_definitions_are_refused() {
    let app = spawn_app().await;
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"name": "bad", "schema": {"type": "object", "properties": {"a": {"type": "nope"}}}}),
            "schema",
            "validation_invalid_schema",
        ),
        (
            json!({"name": "bad", "schema": {"type": "string"}}),
            "schema",
            "validation_invalid_schema",
        ),
        (
            json!({"name": "bad", "schema": [1, 2]}),
            "schema",
            "validation_invalid_schema",
        ),
        (
            json!({"name": "bad", "schema": {"type": "object", "properties": {"a": {"$ref": "https://example.com/x.json"}}}}),
            "schema",
            "validation_remote_ref",
        ),
        (
            json!({"name": "bad", "schema": {"type": "object", "properties": {"a": {"$ref": "file:///etc/passwd"}}}}),
            "schema",
            "validation_remote_ref",
        ),
        (
            json!({"name": "bad", "schema": {"type": "object", "properties": {"id": {"type": "string"}}}}),
            "schema",
            "validation_system_field",
        ),
        (
            json!({"name": "bad", "schema": {"type": "object", "properties": {"created": {"type": "string"}}}}),
            "schema",
            "validation_system_field",
        ),
        (
            json!({"name": "bad", "type": "auth", "schema": {"type": "object", "properties": {"password": {"type": "string"}}}}),
            "schema",
            "validation_system_field",
        ),
        (json!({"name": "1-abc"}), "name", "validation_invalid_name"),
        (json!({"name": "a-b"}), "name", "validation_invalid_name"),
        (json!({"name": ""}), "name", "validation_invalid_name"),
        (json!({"name": "x".repeat(256)}), "name", "validation_invalid_name"),
        (json!({"name": "_mine"}), "name", "validation_invalid_name"),
        (json!({"name": "users"}), "name", "validation_not_unique"),
        (json!({"name": "USERS"}), "name", "validation_not_unique"),
        (
            json!({"name": "ok", "type": "view"}),
            "type",
            "validation_invalid_value",
        ),
        (
            json!({"name": "ok", "listRule": 5}),
            "listRule",
            "validation_invalid_value",
        ),
        (json!({"name": "ok", "bogus": 1}), "bogus", "validation_unknown_field"),
        (
            json!({"name": "ok", "indexes": [{"name": "i", "fields": []}]}),
            "indexes.0",
            "validation_invalid_value",
        ),
        (
            json!({"name": "ok", "indexes": "views"}),
            "indexes",
            "validation_invalid_value",
        ),
    ];
    for (body, field, code) in cases {
        let r = app.post("/api/collections", body.clone()).await;
        assert_eq!(r.status, 400, "{body} -> {:?}", r.body);
        assert_eq!(r.field_code(field), Some(code), "{body} -> {:?}", r.body);
        assert!(!r.body["data"][field]["message"].as_str().unwrap().is_empty());
    }
    // Nothing was created (the system collections and `users` are there).
    assert_eq!(app.get("/api/collections").await.body["totalItems"], 3);
}

#[actix_web::test]
async fn collections_need_a_superuser() {
    let app = spawn_app().await;
    assert_eq!(app.guest_get("/api/collections").await.status, 401);
    assert_eq!(
        app.guest_post("/api/collections", json!({"name": "x"})).await.status,
        401
    );
    // A regular user (created by the superuser) is authenticated but not allowed.
    let r = app
        .post(
            "/api/collections/users/records",
            json!({"email": "u@example.com", "password": "password1", "passwordConfirm": "password1"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let user = app.login("users", "u@example.com", "password1").await;
    let r = app
        .call(awc::http::Method::GET, "/api/collections", None, Some(&user))
        .await;
    assert_eq!(r.status, 403);
}

#[actix_web::test]
async fn dry_run_counts_violations() {
    let app = spawn_app().await;
    app.posts().await;
    for t in ["a", "bb", "ccc", "dddd"] {
        assert_eq!(
            app.post("/api/collections/posts/records", json!({"title": t}))
                .await
                .status,
            200
        );
    }
    let r = app
        .post(
            "/api/collections/posts/dry-run",
            json!({"schema": {"type": "object", "properties": {"title": {"type": "string", "minLength": 3}}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["total"], 4);
    assert_eq!(r.body["invalid"], 2);
    assert_eq!(
        r.body["examples"][0]["errors"]["title"]["code"],
        "validation_min_length"
    );
    // Nothing changed.
    assert_eq!(
        app.get("/api/collections/posts").await.body["schema"]["properties"]["title"]["maxLength"],
        200
    );
    let bad = app
        .post("/api/collections/posts/dry-run", json!({"schema": {"type": "array"}}))
        .await;
    assert_eq!(bad.status, 400);
}
