use serde_json::{json, Value};

use crate::helpers::spawn_app;

fn is_date(v: &Value) -> bool {
    let s = v.as_str().unwrap_or_default();
    s.len() == 24 && s.as_bytes()[10] == b' ' && s.ends_with('Z') && s.as_bytes()[19] == b'.'
}

#[actix_web::test]
async fn record_round_trip() {
    let app = spawn_app().await;
    let coll = app.posts().await;
    let r = app
        .post(
            "/api/collections/posts/records",
            json!({"title": "Hello", "views": 3, "tags": ["a"], "meta": {"lang": "en"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let rec = r.body;
    let id = rec["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 15);
    assert!(id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    assert_eq!(rec["collectionId"], coll["id"]);
    assert_eq!(rec["collectionName"], "posts");
    assert!(is_date(&rec["created"]) && rec["created"] == rec["updated"], "{rec}");
    assert_eq!(rec["title"], "Hello");

    let got = app.guest_get(&format!("/api/collections/posts/records/{id}")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, rec);

    // PATCH merges: untouched fields stay.
    let p = app
        .patch(&format!("/api/collections/posts/records/{id}"), json!({"title": "Bye"}))
        .await;
    assert_eq!(p.status, 200, "{:?}", p.body);
    assert_eq!(p.body["title"], "Bye");
    assert_eq!(p.body["views"], 3);
    assert_eq!(p.body["meta"], json!({"lang": "en"}));
    assert_eq!(p.body["created"], rec["created"]);
    assert!(p.body["updated"].as_str() >= rec["updated"].as_str());

    assert_eq!(
        app.delete(&format!("/api/collections/posts/records/{id}")).await.status,
        204
    );
    assert_eq!(
        app.get(&format!("/api/collections/posts/records/{id}")).await.status,
        404
    );
    assert_eq!(
        app.delete(&format!("/api/collections/posts/records/{id}")).await.status,
        404
    );
    assert_eq!(
        app.patch(&format!("/api/collections/posts/records/{id}"), json!({"title": "x"}))
            .await
            .status,
        404
    );
}

#[actix_web::test]
async fn schema_violations_are_reported_per_field() {
    let app = spawn_app().await;
    app.posts().await;
    let r = app
        .post(
            "/api/collections/posts/records",
            json!({"views": -1, "email": "not-an-email", "tags": ["ok", 7], "meta": {"lang": "e"}, "extra": true}),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.field_code("title"), Some("validation_required"));
    assert_eq!(r.field_code("views"), Some("validation_min"));
    assert_eq!(r.field_code("email"), Some("validation_invalid_format"));
    assert_eq!(r.field_code("tags.1"), Some("validation_invalid_type"));
    assert_eq!(r.field_code("meta.lang"), Some("validation_min_length"));
    assert_eq!(r.field_code("extra"), Some("validation_unknown_field"));
    assert_eq!(r.body["data"].as_object().unwrap().len(), 6);
    // Nothing stored.
    assert_eq!(app.get("/api/collections/posts/records").await.body["totalItems"], 0);

    // Updates are validated on the merged record.
    let ok = app.post("/api/collections/posts/records", json!({"title": "t"})).await;
    let id = ok.body["id"].as_str().unwrap();
    let bad = app
        .patch(&format!("/api/collections/posts/records/{id}"), json!({"title": null}))
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.field_code("title"), Some("validation_invalid_type"));
    let bad = app
        .patch(
            &format!("/api/collections/posts/records/{id}"),
            json!({"views": "many"}),
        )
        .await;
    assert_eq!(bad.field_code("views"), Some("validation_invalid_type"));
    assert_eq!(
        app.get(&format!("/api/collections/posts/records/{id}")).await.body["title"],
        "t"
    );
}

#[actix_web::test]
async fn system_fields_are_server_managed() {
    let app = spawn_app().await;
    app.posts().await;
    let r = app
        .post(
            "/api/collections/posts/records",
            json!({"title": "t", "created": "2000-01-01 00:00:00.000Z", "updated": "2000-01-01 00:00:00.000Z",
                   "collectionId": "fake", "collectionName": "fake", "expand": {"x": 1}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_ne!(r.body["created"], "2000-01-01 00:00:00.000Z");
    assert_eq!(r.body["collectionName"], "posts");
    assert!(r.body.get("expand").is_none());
    let id = r.body["id"].as_str().unwrap();
    let p = app
        .patch(
            &format!("/api/collections/posts/records/{id}"),
            json!({"created": "2000-01-01 00:00:00.000Z"}),
        )
        .await;
    assert_eq!(p.status, 200);
    assert_eq!(p.body["created"], r.body["created"]);
    let p = app
        .patch(&format!("/api/collections/posts/records/{id}"), json!({"id": "other"}))
        .await;
    assert_eq!(p.status, 400);
    assert_eq!(p.field_code("id"), Some("validation_invalid_value"));
}

#[actix_web::test]
async fn client_supplied_ids() {
    let app = spawn_app().await;
    app.posts().await;
    let r = app
        .post("/api/collections/posts/records", json!({"id": "My_id-1", "title": "t"}))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["id"], "My_id-1");
    let again = app
        .post(
            "/api/collections/posts/records",
            json!({"id": "My_id-1", "title": "t2"}),
        )
        .await;
    assert_eq!(again.status, 400);
    assert_eq!(again.field_code("id"), Some("validation_not_unique"));
    assert_eq!(
        app.get("/api/collections/posts/records/My_id-1").await.body["title"],
        "t"
    );
    for bad in [json!("has space"), json!("x".repeat(65)), json!(12), json!("a/b")] {
        let r = app
            .post("/api/collections/posts/records", json!({"id": bad, "title": "t"}))
            .await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.field_code("id"), Some("validation_invalid_id"));
    }
}

#[actix_web::test]
async fn patch_modifiers() {
    let app = spawn_app().await;
    app.posts().await;
    let r = app
        .post(
            "/api/collections/posts/records",
            json!({"title": "t", "views": 10, "tags": ["a", "b"]}),
        )
        .await;
    let url = format!("/api/collections/posts/records/{}", r.body["id"].as_str().unwrap());
    let p = app.patch(&url, json!({"views+": 5, "tags+": "c"})).await;
    assert_eq!(p.status, 200, "{:?}", p.body);
    assert_eq!(p.body["views"], 15);
    assert_eq!(p.body["tags"], json!(["a", "b", "c"]));
    let p = app
        .patch(&url, json!({"views-": 3, "tags-": ["a", "c"], "+tags": "z"}))
        .await;
    assert_eq!(p.body["views"], 12);
    assert_eq!(p.body["tags"], json!(["z", "b"]));
    // The result is still validated.
    let p = app.patch(&url, json!({"views-": 100})).await;
    assert_eq!(p.status, 400);
    assert_eq!(p.field_code("views"), Some("validation_min"));
    let p = app.patch(&url, json!({"title+": 1})).await;
    assert_eq!(p.status, 400);
    // Modifiers make no sense on create.
    let c = app
        .post("/api/collections/posts/records", json!({"title": "t", "views+": 1}))
        .await;
    assert_eq!(c.status, 400);
}

#[actix_web::test]
async fn list_shape_and_paging() {
    let app = spawn_app().await;
    app.posts().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let r = app
            .post("/api/collections/posts/records", json!({"title": format!("t{i}")}))
            .await;
        ids.push(r.body["id"].as_str().unwrap().to_owned());
    }
    let page = |q: &'static str| {
        let app = &app;
        async move { app.guest_get(&format!("/api/collections/posts/records?{q}")).await }
    };
    let r = page("perPage=3").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        (r.body["page"].clone(), r.body["perPage"].clone()),
        (json!(1), json!(3))
    );
    assert_eq!(
        (r.body["totalItems"].clone(), r.body["totalPages"].clone()),
        (json!(7), json!(3))
    );
    // Default order is creation order.
    let got: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ids[..3].iter().map(String::as_str).collect::<Vec<_>>());
    let r = page("perPage=3&page=3").await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["items"][0]["id"], ids[6]);
    let r = page("perPage=3&page=4").await;
    assert_eq!(r.body["items"], json!([]));
    assert_eq!(r.body["totalItems"], 7);
    let r = page("skipTotal=1").await;
    assert_eq!(
        (r.body["totalItems"].clone(), r.body["totalPages"].clone()),
        (json!(-1), json!(-1))
    );
    assert_eq!(r.body["items"].as_array().unwrap().len(), 7);
    let r = page("sort=-created&perPage=2").await;
    assert_eq!(r.body["items"][0]["id"], ids[6]);
    let r = page("sort=id").await;
    let mut sorted = ids.clone();
    sorted.sort();
    let got: Vec<String> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, sorted);
    let r = page("sort=-updated").await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 7);
    assert_eq!(page("perPage=5000").await.body["perPage"], 1000);
    for bad in [
        "page=0",
        "page=x",
        "perPage=-1",
        "sort=title,,id",
        "sort=@random",
        "sort=a,b,c,d,e,f,g,h,i",
        "filter=title%20%3D",
        "filter=(((",
        "cursor=zzz",
    ] {
        let r = app.guest_get(&format!("/api/collections/posts/records?{bad}")).await;
        assert_eq!(r.status, 400, "{bad}");
        assert!(!r.body["message"].as_str().unwrap().is_empty());
    }
}

#[actix_web::test]
async fn null_rules_are_superuser_only() {
    let app = spawn_app().await;
    app.create_collection(json!({"name": "secret", "schema": {"type": "object"}}))
        .await;
    let r = app.post("/api/collections/secret/records", json!({"a": 1})).await;
    assert_eq!(r.status, 200);
    let id = r.body["id"].as_str().unwrap();
    assert_eq!(app.guest_get("/api/collections/secret/records").await.status, 403);
    assert_eq!(
        app.guest_get(&format!("/api/collections/secret/records/{id}"))
            .await
            .status,
        403
    );
    assert_eq!(
        app.guest_post("/api/collections/secret/records", json!({}))
            .await
            .status,
        403
    );
    let del = app
        .call(
            awc::http::Method::DELETE,
            &format!("/api/collections/secret/records/{id}"),
            None,
            None,
        )
        .await;
    assert_eq!(del.status, 403);
    assert_eq!(app.get("/api/collections/secret/records").await.body["totalItems"], 1);
}

#[actix_web::test]
async fn hidden_fields_only_for_superusers() {
    let app = spawn_app().await;
    app.create_collection(json!({
        "name": "profiles", "listRule": "", "viewRule": "", "createRule": "",
        "schema": {"type": "object", "properties": {"name": {"type": "string"}, "note": {"type": "string", "x-hidden": true}}}
    }))
    .await;
    let r = app
        .guest_post(
            "/api/collections/profiles/records",
            json!({"name": "n", "note": "internal"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body.get("note").is_none());
    let id = r.body["id"].as_str().unwrap();
    assert!(app
        .guest_get(&format!("/api/collections/profiles/records/{id}"))
        .await
        .body
        .get("note")
        .is_none());
    assert!(
        app.guest_get("/api/collections/profiles/records").await.body["items"][0]
            .get("note")
            .is_none()
    );
    assert_eq!(
        app.get(&format!("/api/collections/profiles/records/{id}")).await.body["note"],
        "internal"
    );
}

#[actix_web::test]
async fn unknown_collection_is_404() {
    let app = spawn_app().await;
    for path in [
        "/api/collections/nope/records",
        "/api/collections/nope/records/abc",
        "/api/collections/nope",
    ] {
        let r = app.get(path).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.body["status"], 404);
        assert_eq!(r.body["data"], json!({}));
    }
    assert_eq!(app.post("/api/collections/nope/records", json!({})).await.status, 404);
}

#[actix_web::test]
async fn relation_ids_are_deduplicated_on_save() {
    let app = spawn_app().await;
    app.create_collection(json!({
        "name": "nodes", "listRule": "", "viewRule": "", "createRule": "", "updateRule": "",
        "schema": {"type": "object", "properties": {
            "links": {"type": "array", "items": {"type": "string"}, "x-relation": {"collection": "nodes"}},
            "parent": {"type": "string", "x-relation": {"collection": "nodes"}},
            "plain": {"type": "array", "items": {"type": "string"}}
        }}
    }))
    .await;
    let path = "/api/collections/nodes/records";
    for id in ["a", "b"] {
        assert_eq!(app.post(path, json!({"id": id})).await.status, 200);
    }
    // As PocketBase: each id once, in first-seen order; other arrays untouched.
    let r = app
        .post(
            path,
            json!({"id": "c", "links": ["a", "a", "b", "a"], "parent": "a", "plain": ["x", "x"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!((&r.body["links"], &r.body["parent"]), (&json!(["a", "b"]), &json!("a")));
    assert_eq!(r.body["plain"], json!(["x", "x"]));
    let stored = app.get(&format!("{path}/c")).await;
    assert_eq!(stored.body["links"], json!(["a", "b"]));
    // A self-reference repeated: stored once.
    let r = app.post(path, json!({"id": "s", "links": vec!["s"; 8]})).await;
    assert_eq!(r.body["links"], json!(["s"]), "{:?}", r.body);
    // Modifiers never add a duplicate; a prepended id moves to the front.
    let r = app.patch(&format!("{path}/c"), json!({"links+": "a"})).await;
    assert_eq!(r.body["links"], json!(["a", "b"]), "{:?}", r.body);
    let r = app
        .patch(&format!("{path}/c"), json!({"links+": ["b", "s", "s"]}))
        .await;
    assert_eq!(r.body["links"], json!(["a", "b", "s"]), "{:?}", r.body);
    let r = app.patch(&format!("{path}/c"), json!({"+links": "s"})).await;
    assert_eq!(r.body["links"], json!(["s", "a", "b"]), "{:?}", r.body);
    let r = app
        .patch(&format!("{path}/c"), json!({"links": ["b", "b"], "parent": "b"}))
        .await;
    assert_eq!((&r.body["links"], &r.body["parent"]), (&json!(["b"]), &json!("b")));
    // Batch writes draft the same way.
    let r = app
        .post(
            "/api/batch",
            json!({"requests": [{"method": "POST", "url": path, "body": {"id": "d", "links": ["b", "a", "b"]}}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(app.get(&format!("{path}/d")).await.body["links"], json!(["b", "a"]));
}
