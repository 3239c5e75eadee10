//! Collections in PocketBase's format: `fields`, index SQL, top-level auth
//! options on create/update/import, both views in every answer, records
//! validated per the mapped fields, truncate, list filter/sort, scaffolds.

use awc::http::Method;
use serde_json::{json, Value};

use crate::helpers::{enc, spawn_app, TestApp};

/// Every field type PocketBase has that Basalt can express, with options.
fn pb_fields() -> Value {
    json!([
        {"name": "title", "type": "text", "required": true, "min": 2, "max": 10, "pattern": "^[a-z]+$", "presentable": true},
        {"name": "code", "type": "text", "autogeneratePattern": "[a-z0-9]{8}", "hidden": true},
        {"name": "body", "type": "editor", "maxSize": 100, "convertURLs": true},
        {"name": "n", "type": "number", "min": 1, "max": 5, "onlyInt": true},
        {"name": "ok", "type": "bool"},
        {"name": "mail", "type": "email", "onlyDomains": ["x.io"]},
        {"name": "site", "type": "url", "exceptDomains": ["bad.io"]},
        {"name": "when", "type": "date", "min": "2020-01-01 00:00:00.000Z", "max": "2030-01-01 00:00:00.000Z"},
        {"name": "color", "type": "select", "values": ["red", "blue"], "maxSelect": 1},
        {"name": "tags", "type": "select", "values": ["a", "b", "c"], "maxSelect": 2},
        {"name": "owner", "type": "relation", "collectionId": "_pb_users_auth_", "maxSelect": 1},
        {"name": "meta", "type": "json", "maxSize": 50},
        {"name": "at", "type": "geoPoint"},
        {"name": "seen", "type": "autodate", "onCreate": true, "onUpdate": true},
        {"name": "created", "type": "autodate", "onCreate": true},
        {"name": "updated", "type": "autodate", "onCreate": true, "onUpdate": true}
    ])
}

async fn users_id(app: &TestApp) -> String {
    app.get("/api/collections/users").await.body["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Creates `things` from PocketBase JSON; the users collection's id stands
/// in for PocketBase's `_pb_users_auth_`.
async fn create_things(app: &TestApp) -> Value {
    let users = users_id(app).await;
    let fields = serde_json::to_string(&pb_fields())
        .unwrap()
        .replace("_pb_users_auth_", &users);
    let r = app
        .post(
            "/api/collections",
            json!({"name": "things", "type": "base", "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
                   "fields": serde_json::from_str::<Value>(&fields).unwrap(),
                   "indexes": ["CREATE INDEX `idx_things_n` ON `things` (`n`, `title` DESC)", "CREATE UNIQUE INDEX idx_code ON things (code)"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

fn field<'a>(coll: &'a Value, name: &str) -> &'a Value {
    coll["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no field {name} in {coll}"))
}

#[actix_web::test]
async fn create_with_fields_answers_both_views() {
    let app = spawn_app().await;
    let users = users_id(&app).await;
    let c = create_things(&app).await;
    // Basalt's view.
    assert_eq!(c["schema"]["properties"]["title"]["maxLength"], 10);
    assert_eq!(
        c["schema"]["properties"]["owner"]["x-relation"]["collection"],
        users.as_str()
    );
    assert_eq!(c["schema"]["required"], json!(["title"]));
    assert_eq!(
        c["indexes"],
        json!([{"name": "idx_things_n", "fields": ["n", "-title"], "unique": false}, {"name": "idx_code", "fields": ["code"], "unique": true}])
    );
    // PocketBase's view: system fields around the user fields, every option back.
    let names: Vec<&str> = c["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "id", "title", "code", "body", "n", "ok", "mail", "site", "when", "color", "tags", "owner", "meta", "at",
            "seen", "created", "updated"
        ]
    );
    assert_eq!(field(&c, "id")["id"], "text3208210256");
    let t = field(&c, "title");
    assert_eq!(
        (
            t["min"].clone(),
            t["max"].clone(),
            t["pattern"].clone(),
            t["required"].clone(),
            t["presentable"].clone()
        ),
        (json!(2), json!(10), json!("^[a-z]+$"), json!(true), json!(true))
    );
    assert_eq!(field(&c, "code")["hidden"], true);
    assert_eq!(field(&c, "code")["autogeneratePattern"], "[a-z0-9]{8}");
    assert_eq!(field(&c, "body")["type"], "editor");
    assert_eq!(field(&c, "body")["convertURLs"], true);
    assert_eq!(field(&c, "n")["onlyInt"], true);
    assert_eq!(field(&c, "mail")["onlyDomains"], json!(["x.io"]));
    assert_eq!(field(&c, "site")["exceptDomains"], json!(["bad.io"]));
    assert_eq!(field(&c, "when")["max"], "2030-01-01 00:00:00.000Z");
    assert_eq!(field(&c, "tags")["maxSelect"], 2);
    assert_eq!(field(&c, "owner")["collectionId"], users.as_str());
    assert_eq!(field(&c, "meta")["maxSize"], 50);
    assert_eq!(field(&c, "at")["type"], "geoPoint");
    assert_eq!(field(&c, "seen")["onUpdate"], true);
    // The view endpoint and the list say the same.
    let viewed = app.get("/api/collections/things").await.body;
    assert_eq!(viewed, c);
    let listed = app.get("/api/collections?filter=name%3D'things'").await.body;
    assert_eq!(listed["items"][0], c);
}

#[actix_web::test]
async fn records_are_validated_per_the_mapped_fields() {
    let app = spawn_app().await;
    create_things(&app).await;
    let ok = app
        .post(
            "/api/collections/things/records",
            json!({"title": "abc", "n": 3, "tags": ["a", "b"]}),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let code = ok.body["code"].as_str().unwrap();
    assert!(
        code.len() == 8 && code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
        "{code}"
    );
    let seen = ok.body["seen"].as_str().unwrap().to_owned();
    assert_eq!(seen, ok.body["created"].as_str().unwrap());
    // Blank optional values pass, as on PocketBase.
    let blanks = json!({"title": "abc", "n": 0, "mail": "", "site": "", "when": "", "color": "", "tags": []});
    assert_eq!(app.post("/api/collections/things/records", blanks).await.status, 200);
    for (body, field, code) in [
        (json!({}), "title", "validation_required"),
        (json!({"title": ""}), "title", "validation_required"),
        (json!({"title": "a"}), "title", "validation_min_length"),
        (json!({"title": "abcdefghijk"}), "title", "validation_max_length"),
        (json!({"title": "ABC"}), "title", "validation_pattern_mismatch"),
        (json!({"title": "abc", "n": 2.5}), "n", "validation_invalid_type"),
        (json!({"title": "abc", "n": 6}), "n", "validation_max"),
        (
            json!({"title": "abc", "color": "green"}),
            "color",
            "validation_not_in_enum",
        ),
        (
            json!({"title": "abc", "tags": ["a", "b", "c"]}),
            "tags",
            "validation_max_items",
        ),
        (
            json!({"title": "abc", "tags": ["z"]}),
            "tags.0",
            "validation_not_in_enum",
        ),
        (
            json!({"title": "abc", "owner": ["x", "y"]}),
            "owner",
            "validation_invalid_type",
        ),
        (
            json!({"title": "abc", "mail": "a@y.io"}),
            "mail",
            "validation_domain_not_allowed",
        ),
        (
            json!({"title": "abc", "site": "https://bad.io"}),
            "site",
            "validation_domain_not_allowed",
        ),
        (
            json!({"title": "abc", "when": "2019-05-05 00:00:00.000Z"}),
            "when",
            "validation_min_date_constraint",
        ),
        (
            json!({"title": "abc", "body": "x".repeat(101)}),
            "body",
            "validation_max_size",
        ),
        (
            json!({"title": "abc", "meta": {"k": "x".repeat(60)}}),
            "meta",
            "validation_max_size",
        ),
        (
            json!({"title": "abc", "at": {"lon": 0, "lat": 91}}),
            "at.lat",
            "validation_max",
        ),
    ] {
        let r = app.post("/api/collections/things/records", body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.field_code(field), Some(code), "{body}: {}", r.body);
    }
    // A client cannot set an autodate; an update moves onUpdate ones.
    let id = ok.body["id"].as_str().unwrap();
    let r = app
        .patch(
            &format!("/api/collections/things/records/{id}"),
            json!({"seen": "2000-01-01 00:00:00.000Z", "n": 4}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_ne!(r.body["seen"], "2000-01-01 00:00:00.000Z");
    assert_eq!(r.body["seen"], r.body["updated"]);
    // Hidden fields stay hidden from non-superusers.
    let guest = app.guest_get(&format!("/api/collections/things/records/{id}")).await;
    assert_eq!(guest.status, 200);
    assert!(guest.body.get("code").is_none(), "{}", guest.body);
}

#[actix_web::test]
async fn relation_max_select_and_required_relations() {
    let app = spawn_app().await;
    let users = users_id(&app).await;
    let r = app
        .post("/api/collections", json!({"name": "teams", "createRule": "", "fields": [
            {"name": "members", "type": "relation", "collectionId": users, "maxSelect": 2, "minSelect": 1, "required": true}]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut ids = vec![];
    for i in 0..3 {
        let u = app
            .post(
                "/api/collections/users/records",
                json!({"email": format!("u{i}@x.io"), "password": "password123", "passwordConfirm": "password123"}),
            )
            .await;
        ids.push(u.body["id"].as_str().unwrap().to_owned());
    }
    let create = |members: Value| app.post("/api/collections/teams/records", json!({"members": members}));
    assert_eq!(create(json!([ids[0], ids[1]])).await.status, 200);
    let r = create(json!(ids)).await;
    assert_eq!(r.field_code("members"), Some("validation_max_items"), "{}", r.body);
    assert_eq!(
        create(json!([])).await.field_code("members"),
        Some("validation_required")
    );
}

#[actix_web::test]
async fn writing_back_what_was_read_works_both_ways() {
    let app = spawn_app().await;
    let c = create_things(&app).await;
    // Unchanged: both views sent back as read → nothing changes.
    let r = app.patch("/api/collections/things", c.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["schema"], c["schema"]);
    // A PocketBase tool changes `fields` and writes everything back.
    let mut pb = c.clone();
    let fields = pb["fields"].as_array_mut().unwrap();
    fields.iter_mut().find(|f| f["name"] == "title").unwrap()["max"] = json!(20);
    fields.push(json!({"name": "extra", "type": "bool"}));
    let r = app.patch("/api/collections/things", pb).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["schema"]["properties"]["title"]["maxLength"], 20);
    assert_eq!(r.body["schema"]["properties"]["extra"], json!({"type": "boolean"}));
    // A Basalt tool changes `schema` and writes everything back.
    let mut basalt = r.body.clone();
    basalt["schema"]["properties"]["extra"]["description"] = json!("hand-written");
    basalt["schema"]["properties"]["title"]["maxLength"] = json!(30);
    let r = app.patch("/api/collections/things", basalt).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["schema"]["properties"]["extra"]["description"], "hand-written");
    assert_eq!(field(&r.body, "title")["max"], 30);
    // Both changed differently: refused, naming both.
    let mut both = r.body.clone();
    both["schema"]["properties"]["title"]["maxLength"] = json!(40);
    both["fields"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f["name"] == "title")
        .unwrap()["max"] = json!(50);
    let r = app.patch("/api/collections/things", both).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.field_code("fields"), Some("validation_conflict"));
    let msg = r.body["data"]["fields"]["message"].as_str().unwrap();
    assert!(msg.contains("schema") && msg.contains("fields"), "{msg}");
    // A dry run takes PocketBase's fields too.
    app.post(
        "/api/collections/things/records",
        json!({"title": "abcdefghijklmnopqrst"}),
    )
    .await;
    let r = app
        .post(
            "/api/collections/things/dry-run",
            json!({"fields": [{"name": "title", "type": "text", "max": 5}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (r.body["total"].clone(), r.body["invalid"].clone()),
        (json!(1), json!(1))
    );
    // A PATCH with only `fields` (as the JS SDK sends) keeps other keys.
    let r = app
        .patch(
            "/api/collections/things",
            json!({"fields": [{"name": "only", "type": "text"}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["schema"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["only"]
    );
    assert_eq!(r.body["listRule"], "");
}

#[actix_web::test]
async fn bad_pocketbase_input_is_a_clear_400() {
    let app = spawn_app().await;
    for (body, key, needle) in [
        (
            json!({"name": "a", "fields": [{"name": "x", "type": "blob"}]}),
            "fields.0.type",
            "unknown field type",
        ),
        (
            json!({"name": "a", "fields": [{"name": "doc", "type": "file", "thumbs": ["big"]}]}),
            "fields.0.thumbs",
            "big",
        ),
        (
            json!({"name": "a", "fields": [{"name": "x", "type": "number", "min": "one"}]}),
            "fields.0.min",
            "number",
        ),
        (
            json!({"name": "a", "fields": [{"name": "x", "type": "text", "pattern": "("}]}),
            "fields.0",
            "x",
        ),
        (
            json!({"name": "a", "fields": [{"name": "x", "type": "select"}]}),
            "fields.0.values",
            "value",
        ),
        (
            json!({"name": "a", "fields": [{"name": "x", "type": "relation", "collectionId": "nope"}]}),
            "schema",
            "nope",
        ),
        (json!({"name": "a", "fields": "x"}), "fields", "list"),
        (
            json!({"name": "a", "indexes": ["CREATE INDEX i ON a (lower(x))"]}),
            "indexes.0",
            "expressions",
        ),
        (
            json!({"name": "a", "indexes": ["CREATE INDEX i ON a (x) WHERE x > 1"]}),
            "indexes.0",
            "WHERE",
        ),
        (json!({"name": "a", "indexes": ["DROP TABLE a"]}), "indexes.0", "CREATE"),
        (json!({"name": "a", "authToken": {"duration": 10}}), "authToken", "auth"),
        (json!({"name": "a-b"}), "name", "A-Z"),
        (json!({"name": "x".repeat(256)}), "name", "255"),
    ] {
        let r = app.post("/api/collections", body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        let msg = r.body["data"][key]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{body}: no {key} in {}", r.body));
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    // PocketBase's name rules: digits first and long names are fine.
    let r = app
        .post("/api/collections", json!({"name": format!("1{}", "a".repeat(200))}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // A name may not be another collection's id.
    let users = users_id(&app).await;
    assert_eq!(app.post("/api/collections", json!({"name": users})).await.status, 400);
    // Guests and users never get in.
    assert_eq!(
        app.guest_post("/api/collections", json!({"name": "g", "fields": []}))
            .await
            .status,
        401
    );
    assert_eq!(app.guest_get("/api/collections/meta/scaffolds").await.status, 401);
    // Nor does a signed-up user.
    let u = app
        .guest_post(
            "/api/collections/users/records",
            json!({"email": "u@x.io", "password": "password123", "passwordConfirm": "password123"}),
        )
        .await;
    assert_eq!(u.status, 200, "{}", u.body);
    let token = app.login("users", "u@x.io", "password123").await;
    for (method, path, body) in [
        (
            Method::POST,
            "/api/collections",
            Some(json!({"name": "mine", "fields": []})),
        ),
        (Method::GET, "/api/collections?filter=system%3Dtrue", None),
        (
            Method::PUT,
            "/api/collections/import",
            Some(json!({"collections": [{"name": "mine"}]})),
        ),
        (Method::DELETE, "/api/collections/users/truncate", None),
        (Method::GET, "/api/collections/meta/scaffolds", None),
    ] {
        let r = app.call(method.clone(), path, body, Some(&token)).await;
        assert_eq!(r.status, 403, "{method} {path}: {}", r.body);
    }
    assert_eq!(app.get("/api/collections/users/records").await.body["totalItems"], 1);
}

#[actix_web::test]
async fn auth_collections_take_pocketbase_auth_options() {
    let app = spawn_app().await;
    let r = app
        .post("/api/collections", json!({"name": "members", "type": "auth", "fields": [
                {"name": "id", "type": "text", "system": true, "primaryKey": true},
                {"name": "password", "type": "password", "system": true, "hidden": true},
                {"name": "email", "type": "email", "system": true, "required": true},
                {"name": "nick", "type": "text", "max": 20}],
            "indexes": ["CREATE UNIQUE INDEX `idx_tokenKey_x` ON `members` (`tokenKey`)", "CREATE UNIQUE INDEX `idx_email_x` ON `members` (`email`) WHERE `email` != ''"],
            "authToken": {"duration": 1000}, "passwordAuth": {"enabled": true, "identityFields": ["email"]},
            "otp": {"enabled": true, "duration": 120, "length": 6}, "mfa": {"enabled": false, "duration": 900, "rule": ""}}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let c = r.body;
    assert_eq!(c["authOptions"]["authTokenDuration"], 1000);
    assert_eq!(
        c["authOptions"]["otp"],
        json!({"enabled": true, "duration": 120, "length": 6})
    );
    assert_eq!(c["authToken"], json!({"duration": 1000}));
    assert_eq!(c["mfa"], json!({"enabled": false, "duration": 900, "rule": ""}));
    assert_eq!(c["passwordAuth"]["identityFields"], json!(["email"]));
    assert_eq!(c["indexes"], json!([]));
    let names: Vec<&str> = c["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "id",
            "password",
            "tokenKey",
            "email",
            "emailVisibility",
            "verified",
            "nick",
            "created",
            "updated"
        ]
    );
    // Changing authOptions and writing back the rest: authOptions wins.
    let mut back = c.clone();
    back["authOptions"]["authTokenDuration"] = json!(2000);
    let r = app.patch("/api/collections/members", back).await;
    assert_eq!(r.body["authToken"], json!({"duration": 2000}), "{}", r.body);
    // Changing PocketBase's key: it wins.
    let mut back = r.body.clone();
    back["authToken"] = json!({"duration": 3000});
    let r = app.patch("/api/collections/members", back).await;
    assert_eq!(r.body["authOptions"]["authTokenDuration"], 3000, "{}", r.body);
    // The mapped auth collection works: a member is created and logs in.
    let u = app
        .post(
            "/api/collections/members/records",
            json!({"email": "m@x.io", "password": "password123", "passwordConfirm": "password123", "nick": "m"}),
        )
        .await;
    assert_eq!(u.status, 200, "{}", u.body);
    assert!(!app.login("members", "m@x.io", "password123").await.is_empty());
    // Protections Basalt cannot enforce yet are refused, never stored as on.
    for (key, value) in [("passwordAuth", json!({"enabled": false, "identityFields": ["email"]}))] {
        let r = app.patch("/api/collections/members", json!({ key: value })).await;
        assert_eq!(r.status, 400, "{key}: {}", r.body);
        assert!(
            r.body["data"].get(format!("{key}.enabled")).is_some(),
            "{key}: {}",
            r.body
        );
    }
    let r = app.get("/api/collections/members").await;
    assert_eq!(r.body["mfa"]["enabled"], false, "{}", r.body);
}

#[actix_web::test]
async fn import_creates_replaces_and_deletes_missing_all_or_nothing() {
    let app = spawn_app().await;
    app.posts().await;
    let put = |body: Value| app.call(Method::PUT, "/api/collections/import", Some(body), Some(&app.token));
    // One bad collection: nothing happens.
    let r = put(json!({"collections": [
        {"id": "pbc_1", "name": "authors", "type": "base", "fields": [{"name": "name", "type": "text"}]},
        {"name": "broken", "fields": [{"name": "f", "type": "file", "mimeTypes": ["png"]}]}]}))
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body["data"].get("collections.1.fields.0.mimeTypes").is_some(),
        "{}",
        r.body
    );
    assert_eq!(app.get("/api/collections/authors").await.status, 404);
    // Ids are kept, so relations between imported collections hold.
    let r = put(json!({"collections": [
        {"id": "pbc_1", "name": "authors", "type": "base", "listRule": "", "fields": [{"name": "name", "type": "text", "required": true}]},
        {"id": "pbc_2", "name": "books", "type": "base", "fields": [{"name": "author", "type": "relation", "collectionId": "pbc_1", "cascadeDelete": true, "maxSelect": 1}],
         "indexes": ["CREATE INDEX idx_author ON books (author)"]},
        {"id": "pbc_9", "name": "_mfas", "type": "base", "system": true, "fields": []}]}))
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(app.get("/api/collections/pbc_1").await.body["name"], "authors");
    let books = app.get("/api/collections/books").await.body;
    assert_eq!(field(&books, "author")["collectionId"], "pbc_1");
    assert_eq!(app.get("/api/collections/_mfas").await.status, 404);
    assert_eq!(app.get("/api/collections/posts").await.status, 200);
    // Re-import with a change, deleteMissing: posts and users go, system ones stay.
    let r = put(json!({"deleteMissing": true, "collections": [
        {"id": "pbc_1", "name": "writers", "type": "base", "fields": [{"name": "name", "type": "text"}]},
        {"id": "pbc_2", "name": "books", "type": "base", "fields": [{"name": "author", "type": "relation", "collectionId": "pbc_1", "maxSelect": 1}]}]}))
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let names: Vec<String> = app.get("/api/collections").await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["_externalAuths", "_superusers", "books", "writers"]);
    // A rename to a `_` name (the system collections' own) is refused, as in update.
    let r = put(json!({"collections": [{"id": "pbc_1", "name": "_writers", "type": "base", "fields": [{"name": "name", "type": "text"}]}]})).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(app.get("/api/collections/pbc_1").await.body["name"], "writers");
    // A relation to a collection the import deletes is refused.
    let r = put(json!({"deleteMissing": true, "collections": [{"id": "pbc_2", "name": "books", "fields": [{"name": "author", "type": "relation", "collectionId": "pbc_1", "maxSelect": 1}]}]})).await;
    assert_eq!(r.status, 400, "{}", r.body);
    for bad in [
        json!({}),
        json!({"collections": []}),
        json!({"collections": [1]}),
        json!({"collections": [{"name": "x"}], "deleteMissing": "yes"}),
    ] {
        assert_eq!(put(bad.clone()).await.status, 400, "{bad}");
    }
}

#[actix_web::test]
async fn truncate_deletes_every_record_with_relations_and_cascade() {
    let app = spawn_app().await;
    let put = app
        .call(Method::PUT, "/api/collections/import", Some(json!({"collections": [
            {"id": "pbc_a", "name": "authors", "createRule": "", "fields": [{"name": "name", "type": "text"}]},
            {"id": "pbc_b", "name": "books", "createRule": "", "fields": [{"name": "author", "type": "relation", "collectionId": "pbc_a", "cascadeDelete": true, "maxSelect": 1}]},
            {"id": "pbc_c", "name": "notes", "createRule": "", "fields": [{"name": "author", "type": "relation", "collectionId": "pbc_a", "maxSelect": 1}]}]})), Some(&app.token))
        .await;
    assert_eq!(put.status, 204, "{}", put.body);
    let mut last_note = String::new();
    for i in 0..450 {
        let a = app
            .post("/api/collections/authors/records", json!({"name": format!("a{i}")}))
            .await;
        let aid = a.body["id"].as_str().unwrap().to_owned();
        if i % 100 == 0 {
            assert_eq!(
                app.post("/api/collections/books/records", json!({"author": aid}))
                    .await
                    .status,
                200
            );
            last_note = app
                .post("/api/collections/notes/records", json!({"author": aid}))
                .await
                .body["id"]
                .as_str()
                .unwrap()
                .to_owned();
        }
    }
    let r = app.delete("/api/collections/authors/truncate").await;
    assert_eq!(r.status, 204, "{}", r.body);
    let app = &app;
    let count = |c: &'static str| async move {
        app.get(&format!("/api/collections/{c}/records")).await.body["totalItems"].clone()
    };
    assert_eq!(count("authors").await, 0);
    assert_eq!(count("books").await, 0, "cascade");
    assert_eq!(count("notes").await, 5, "references unset, records kept");
    assert_eq!(
        app.get(&format!("/api/collections/notes/records/{last_note}"))
            .await
            .body["author"],
        Value::Null
    );
    assert_eq!(app.delete("/api/collections/_superusers/truncate").await.status, 400);
    assert_eq!(app.delete("/api/collections/nope/truncate").await.status, 404);
    assert_eq!(
        app.call(Method::DELETE, "/api/collections/authors/truncate", None, None)
            .await
            .status,
        401
    );
}

#[actix_web::test]
async fn list_filters_sorts_and_pages_as_pocketbase() {
    let app = spawn_app().await;
    app.posts().await;
    let get = |q: &str| {
        let path = format!("/api/collections?{q}");
        let app = &app;
        async move { app.get(&path).await }
    };
    let names = |v: &Value| {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let r = get(&format!("filter={}&sort=-name", enc("type = 'auth'"))).await;
    assert_eq!(names(&r.body), ["users", "_superusers"]);
    assert_eq!(r.body["totalItems"], 2);
    let r = get(&format!("filter={}", enc("system = false && name ~ 'post'"))).await;
    assert_eq!(names(&r.body), ["posts"]);
    let r = get("sort=-created,name&perPage=1&page=2&skipTotal=1").await;
    assert_eq!(r.body["totalItems"], -1);
    assert_eq!(r.body["perPage"], 1);
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        get(&format!("filter={}", enc("name ="))).await.field_code("filter"),
        Some("validation_invalid_filter")
    );
    assert_eq!(get("sort=%2B%2B").await.status, 400);
    assert_eq!(app.guest_get("/api/collections?filter=system%3Dtrue").await.status, 401);
    let put = app
        .call(
            Method::PUT,
            "/api/collections/import",
            Some(json!({"collections": [{"name": "x"}]})),
            None,
        )
        .await;
    assert_eq!(put.status, 401);
}

#[actix_web::test]
async fn scaffolds_have_pocketbase_shapes() {
    let app = spawn_app().await;
    let r = app.get("/api/collections/meta/scaffolds").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["base"]["fields"][0]["name"], "id");
    assert_eq!(r.body["auth"]["type"], "auth");
    let auth_names: Vec<&str> = r.body["auth"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        auth_names,
        ["id", "password", "tokenKey", "email", "emailVisibility", "verified"]
    );
    assert_eq!(r.body["auth"]["passwordAuth"]["identityFields"], json!(["email"]));
    assert_eq!(r.body["view"]["viewQuery"], "");
    // A scaffold filled in is a valid create body.
    let mut base = r.body["base"].clone();
    base["name"] = json!("fromscaffold");
    base["fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "t", "type": "text"}));
    let c = app.post("/api/collections", base).await;
    assert_eq!(c.status, 200, "{}", c.body);
    let mut auth = r.body["auth"].clone();
    auth["name"] = json!("authscaffold");
    let c = app.post("/api/collections", auth).await;
    assert_eq!(c.status, 200, "{}", c.body);
}
