//! Deleting a record that relations point at (PocketBase's behaviour): the
//! reference is removed, or the pointing record is deleted with it
//! (`cascadeDelete`), or the delete is refused (required relation).

use serde_json::{json, Value};

use super::helpers::{spawn_app, TestApp};

const OPEN: &str = "";

async fn collections(app: &TestApp, indexed: bool) {
    app.create_collection(
        json!({"name": "authors", "listRule": OPEN, "viewRule": OPEN, "deleteRule": OPEN,
        "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}),
    )
    .await;
    let indexes = if indexed {
        json!([{"name": "by_author", "fields": ["author"]}])
    } else {
        json!([])
    };
    app.create_collection(
        json!({"name": "posts", "listRule": OPEN, "viewRule": OPEN, "deleteRule": OPEN,
        "indexes": indexes,
        "schema": {"type": "object", "properties": {
            "title": {"type": "string"},
            "author": {"type": "string", "x-relation": {"collection": "authors"}},
            "coauthors": {"type": "array", "items": {"type": "string"}, "x-relation": {"collection": "authors"}}}}}),
    )
    .await;
}

async fn create(app: &TestApp, coll: &str, body: Value) -> String {
    let r = app.post(&format!("/api/collections/{coll}/records"), body).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["id"].as_str().unwrap().to_owned()
}

async fn check_reference_removed(indexed: bool) {
    let app = spawn_app().await;
    collections(&app, indexed).await;
    let bob = create(&app, "authors", json!({"name": "bob"})).await;
    let ann = create(&app, "authors", json!({"name": "ann"})).await;
    let p1 = create(
        &app,
        "posts",
        json!({"title": "one", "author": bob, "coauthors": [ann, bob]}),
    )
    .await;
    let p2 = create(
        &app,
        "posts",
        json!({"title": "two", "author": ann, "coauthors": [bob]}),
    )
    .await;
    let before = app.get(&format!("/api/collections/posts/records/{p1}")).await.body;

    let r = app.delete(&format!("/api/collections/authors/records/{bob}")).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let one = app.get(&format!("/api/collections/posts/records/{p1}")).await.body;
    assert!(one.get("author").is_none(), "single relation cleared: {one}");
    assert_eq!(one["coauthors"], json!([ann]));
    assert_ne!(one["updated"], before["updated"], "updated moves");
    let two = app.get(&format!("/api/collections/posts/records/{p2}")).await.body;
    assert_eq!(two["author"], json!(ann));
    assert_eq!(two["coauthors"], json!([]));
    // Filtering by the deleted id finds nothing any more.
    let r = app
        .get(&format!("/api/collections/posts/records?filter=author%3D%27{bob}%27"))
        .await;
    assert_eq!(r.body["totalItems"], 0);
}

#[actix_web::test]
async fn delete_removes_the_id_from_pointing_records() {
    check_reference_removed(false).await;
}

#[actix_web::test]
async fn delete_removes_the_id_found_through_an_index() {
    check_reference_removed(true).await;
}

#[actix_web::test]
async fn required_relation_blocks_the_delete() {
    let app = spawn_app().await;
    app.create_collection(json!({"name": "authors", "deleteRule": OPEN,
        "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}))
        .await;
    app.create_collection(json!({"name": "books",
        "schema": {"type": "object", "required": ["author"], "properties": {
            "author": {"type": "string", "x-relation": {"collection": "authors"}}}}}))
        .await;
    let bob = create(&app, "authors", json!({"name": "bob"})).await;
    let book = create(&app, "books", json!({"author": bob})).await;
    let r = app.delete(&format!("/api/collections/authors/records/{bob}")).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(r.body["message"].as_str().unwrap().contains(&book), "{:?}", r.body);
    assert_eq!(
        app.get(&format!("/api/collections/authors/records/{bob}")).await.status,
        200
    );
    assert_eq!(
        app.get(&format!("/api/collections/books/records/{book}")).await.body["author"],
        json!(bob)
    );
    // Once the book is gone, so can the author be.
    assert_eq!(
        app.delete(&format!("/api/collections/books/records/{book}"))
            .await
            .status,
        204
    );
    assert_eq!(
        app.delete(&format!("/api/collections/authors/records/{bob}"))
            .await
            .status,
        204
    );
}

#[actix_web::test]
async fn cascade_delete_follows_chains_in_one_transaction() {
    let app = spawn_app().await;
    app.create_collection(json!({"name": "authors",
        "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}))
        .await;
    app.create_collection(json!({"name": "posts",
        "schema": {"type": "object", "required": ["author"], "properties": {
            "author": {"type": "string", "x-relation": {"collection": "authors", "cascadeDelete": true}}}}}))
        .await;
    app.create_collection(json!({"name": "comments",
        "schema": {"type": "object", "properties": {
            "post": {"type": "string", "x-relation": {"collection": "posts", "cascadeDelete": true}},
            "text": {"type": "string"}}}}))
        .await;
    let bob = create(&app, "authors", json!({"name": "bob"})).await;
    let ann = create(&app, "authors", json!({"name": "ann"})).await;
    let p1 = create(&app, "posts", json!({"author": bob})).await;
    let p2 = create(&app, "posts", json!({"author": ann})).await;
    let c1 = create(&app, "comments", json!({"post": p1, "text": "x"})).await;
    let c2 = create(&app, "comments", json!({"post": p2, "text": "y"})).await;
    let seq_before = app.state.store.head_seq();
    assert_eq!(
        app.delete(&format!("/api/collections/authors/records/{bob}"))
            .await
            .status,
        204
    );
    assert_eq!(
        app.get(&format!("/api/collections/posts/records/{p1}")).await.status,
        404
    );
    assert_eq!(
        app.get(&format!("/api/collections/comments/records/{c1}")).await.status,
        404
    );
    assert_eq!(
        app.get(&format!("/api/collections/posts/records/{p2}")).await.status,
        200
    );
    assert_eq!(
        app.get(&format!("/api/collections/comments/records/{c2}")).await.status,
        200
    );
    // Three deletes, one change each, committed together.
    assert_eq!(app.state.store.head_seq(), seq_before + 3);
}

#[actix_web::test]
async fn batch_delete_updates_pointing_records_too() {
    let app = spawn_app().await;
    collections(&app, false).await;
    let bob = create(&app, "authors", json!({"name": "bob"})).await;
    let post = create(&app, "posts", json!({"title": "t", "author": bob})).await;
    let r = app
        .post(
            "/api/batch",
            json!({"requests": [
                {"method": "PATCH", "url": format!("/api/collections/posts/records/{post}"), "body": {"title": "renamed"}},
                {"method": "DELETE", "url": format!("/api/collections/authors/records/{bob}")}
            ]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body.as_array().unwrap().len(), 2);
    let p = app.get(&format!("/api/collections/posts/records/{post}")).await.body;
    assert_eq!(p["title"], "renamed", "the batch's own update is kept");
    assert!(p.get("author").is_none(), "{p}");
}

#[actix_web::test]
async fn dashboard_bulk_delete_applies_the_same_rules_per_record() {
    let app = spawn_app().await;
    collections(&app, false).await;
    app.create_collection(json!({"name": "books",
        "schema": {"type": "object", "required": ["author"], "properties": {
            "author": {"type": "string", "x-relation": {"collection": "authors"}}}}}))
        .await;
    let bob = create(&app, "authors", json!({"name": "bob"})).await;
    let ann = create(&app, "authors", json!({"name": "ann"})).await;
    let post = create(&app, "posts", json!({"title": "t", "author": bob})).await;
    let book = create(&app, "books", json!({"author": ann})).await;
    let mut b = super::admin_support::Browser::login(&app).await;
    let r = b
        .post(
            "/_/collections/authors/records/bulk-delete",
            &[("ids", &bob), ("ids", &ann)],
        )
        .await;
    assert!(r.status < 500, "{}", r.body);
    // bob went (his post lost the reference); ann stays, her book needs her.
    assert_eq!(
        app.get(&format!("/api/collections/authors/records/{bob}")).await.status,
        404
    );
    assert_eq!(
        app.get(&format!("/api/collections/authors/records/{ann}")).await.status,
        200
    );
    assert!(app
        .get(&format!("/api/collections/posts/records/{post}"))
        .await
        .body
        .get("author")
        .is_none());
    assert_eq!(
        app.get(&format!("/api/collections/books/records/{book}")).await.body["author"],
        json!(ann)
    );
}
