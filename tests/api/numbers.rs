//! Integers round-trip and index exactly in the signed 64-bit range; others
//! are refused with 400, never rounded into a float (SPEC §7).

use awc::http::Method;
use serde_json::{json, Value};

use crate::helpers::{enc, spawn_app, start, TestApp, SU_EMAIL, SU_PASSWORD};

const P53: i64 = 1 << 53;

async fn numbers_collection(app: &TestApp, name: &str, indexes: Value) {
    app.create_collection(json!({
        "name": name, "listRule": "", "viewRule": "", "createRule": "", "updateRule": "",
        "indexes": indexes,
        "schema": {"type": "object", "properties": {
            "n": {"type": "integer"},
            "f": {"type": "number"},
            "any": {},
            "list": {"type": "array", "items": {"type": "integer"}}
        }}
    }))
    .await;
}

async fn post_text(app: &TestApp, path: &str, body: &str) -> crate::helpers::Resp {
    app.raw(Method::POST, path, "application/json", body.as_bytes().to_vec())
        .await
}

async fn total(app: &TestApp, coll: &str) -> u64 {
    let r = app.get(&format!("/api/collections/{coll}/records")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["totalItems"].as_u64().unwrap_or(u64::MAX)
}

#[actix_web::test]
async fn numbers_outside_i64_are_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    numbers_collection(&app, "nums", json!([])).await;
    let path = "/api/collections/nums/records";
    for (body, field) in [
        // 2^64: PocketBase refuses it too; serde_json alone would store 1.8446744073709552e19.
        (r#"{"n": 18446744073709551616}"#, "n"),
        // u64 beyond i64::MAX.
        (r#"{"n": 9223372036854775808}"#, "n"),
        (r#"{"n": -9223372036854775809}"#, "n"),
        // An integer literal anywhere: number fields, untyped, nested.
        (r#"{"f": 18446744073709551616}"#, "f"),
        (r#"{"any": {"x": [1, 99999999999999999999]}}"#, "any.x.1"),
        (r#"{"list": [1, 9223372036854775808]}"#, "list.1"),
        // An integer field takes no float from 2^53 on (it may be a rounded literal).
        (r#"{"n": 1e19}"#, "n"),
        (r#"{"n": 9007199254740993.0}"#, "n"),
    ] {
        let r = post_text(&app, path, body).await;
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
        assert_eq!(
            r.field_code(field),
            Some("validation_invalid_number"),
            "{body}: {:?}",
            r.body
        );
    }
    assert_eq!(total(&app, "nums").await, 0);

    // Batch: the whole batch is refused, nothing of it stored.
    let batch = r#"{"requests": [
        {"method": "POST", "url": "/api/collections/nums/records", "body": {"n": 1}},
        {"method": "POST", "url": "/api/collections/nums/records", "body": {"n": 18446744073709551616}}
    ]}"#;
    let r = post_text(&app, "/api/batch", batch).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(total(&app, "nums").await, 0);

    // Updates: refused, the record unchanged.
    let r = app.post(path, json!({"id": "r1", "n": 1})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app
        .raw(
            Method::PATCH,
            "/api/collections/nums/records/r1",
            "application/json",
            br#"{"n": 18446744073709551616}"#.to_vec(),
        )
        .await;
    assert_eq!(
        (r.status, r.field_code("n")),
        (400, Some("validation_invalid_number")),
        "{:?}",
        r.body
    );
    let r = app
        .patch("/api/collections/nums/records/r1", json!({"n": i64::MAX}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app.patch("/api/collections/nums/records/r1", json!({"n+": 1})).await;
    assert_eq!(r.status, 400, "i64::MAX + 1: {:?}", r.body);
    let r = app.get("/api/collections/nums/records/r1").await;
    assert_eq!(r.body["n"], json!(i64::MAX));

    // Floats stay floats where the schema allows them.
    let r = post_text(&app, path, r#"{"f": 1.8446744073709552e19, "any": 1.5e300}"#).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["f"], json!(1.8446744073709552e19));
}

#[actix_web::test]
async fn numbers_i64_extremes_round_trip_exactly() {
    let app = spawn_app().await;
    numbers_collection(&app, "nums", json!([])).await;
    let values = [i64::MAX, i64::MIN, P53 + 1, -P53 - 1, i64::MAX - 1];
    for (i, n) in values.iter().enumerate() {
        let r = app
            .post(
                "/api/collections/nums/records",
                json!({"id": format!("r{i}"), "n": n, "any": n, "list": [n]}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["n"], json!(n), "create answer");
        let r = app.get(&format!("/api/collections/nums/records/r{i}")).await;
        assert_eq!(
            (&r.body["n"], &r.body["any"], &r.body["list"]),
            (&json!(n), &json!(n), &json!([n]))
        );
    }
    // The wire text itself, not only what a parser makes of it.
    let res = app
        .client
        .get(format!("{}/api/collections/nums/records?perPage=100", app.base))
        .insert_header(("Authorization", app.token.clone()))
        .send()
        .await;
    let text = String::from_utf8(res.expect("sent").body().await.expect("body").to_vec()).unwrap_or_default();
    for n in values {
        assert!(text.contains(&format!("\"n\":{n}")), "{n} in {text}");
    }
    // PATCH arithmetic stays exact too.
    let r = app.patch("/api/collections/nums/records/r2", json!({"n+": 2})).await;
    assert_eq!(r.body["n"], json!(P53 + 3));
}

#[actix_web::test]
async fn numbers_unique_index_keeps_neighbours_apart() {
    let app = spawn_app().await;
    numbers_collection(
        &app,
        "u",
        json!([{"name": "n_unique", "fields": ["n"], "unique": true},
                                         {"name": "any_unique", "fields": ["any"], "unique": true}]),
    )
    .await;
    let path = "/api/collections/u/records";
    for n in [P53, P53 + 1, P53 + 2, i64::MAX, i64::MAX - 1, i64::MIN, i64::MIN + 1] {
        let r = app.post(path, json!({"n": n})).await;
        assert_eq!(r.status, 200, "{n}: {:?}", r.body);
    }
    let r = app.post(path, json!({"n": P53 + 1})).await;
    assert_eq!(
        (r.status, r.field_code("n")),
        (400, Some("validation_not_unique")),
        "{:?}",
        r.body
    );
    // One value, two spellings: the float 2^53 is the integer 2^53.
    let r = app.post(path, json!({"any": P53})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = post_text(&app, path, r#"{"any": 9007199254740992.0}"#).await;
    assert_eq!(
        (r.status, r.field_code("any")),
        (400, Some("validation_not_unique")),
        "{:?}",
        r.body
    );
    let r = app.post(path, json!({"any": P53 + 1})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// Ids matching `filter` sorted by `sort`, and the plan (superuser view).
async fn query(app: &TestApp, coll: &str, filter: &str, sort: &str) -> (Vec<String>, String) {
    let r = app
        .get(&format!(
            "/api/collections/{coll}/records?perPage=100&explain=1&filter={}&sort={}",
            enc(filter),
            enc(sort)
        ))
        .await;
    assert_eq!(r.status, 200, "{filter} / {sort}: {:?}", r.body);
    let ids = r.body["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    (ids, r.body["plan"].as_str().unwrap_or_default().to_owned())
}

#[actix_web::test]
async fn numbers_filters_and_sorts_are_exact_with_and_without_an_index() {
    let app = spawn_app().await;
    numbers_collection(&app, "plain", json!([])).await;
    numbers_collection(&app, "indexed", json!([{"name": "by_n", "fields": ["n"]}])).await;
    let values: &[(&str, Value)] = &[
        ("a", json!(P53 - 1)),
        ("b", json!(P53)),
        ("c", json!(P53 + 1)),
        ("d", json!(P53 + 2)),
        ("e", json!(i64::MAX)),
        ("f", json!(i64::MAX - 1)),
        ("g", json!(i64::MIN)),
        ("h", json!(-P53 - 1)),
        ("i", json!(-P53)),
        ("j", json!(0)),
    ];
    for coll in ["plain", "indexed"] {
        for (id, n) in values {
            let r = app
                .post(&format!("/api/collections/{coll}/records"), json!({"id": id, "n": n}))
                .await;
            assert_eq!(r.status, 200, "{:?}", r.body);
        }
    }
    let cases: &[(&str, &[&str])] = &[
        ("n = 9007199254740993", &["c"]),
        ("n = 9007199254740992", &["b"]),
        ("n = 9007199254740992.0", &["b"]),
        ("n > 9007199254740992", &["c", "d", "f", "e"]),
        ("n >= 9007199254740993 && n < 9223372036854775807", &["c", "d", "f"]),
        ("n > 9007199254740992.0 && n <= 9007199254740994", &["c", "d"]),
        ("n = 9223372036854775807", &["e"]),
        ("n = -9223372036854775808", &["g"]),
        ("n < -9007199254740992", &["g", "h"]),
        ("n <= -9007199254740992 && n > -9223372036854775808", &["h", "i"]),
        // Beyond i64: no stored integer reaches them.
        ("n > 9223372036854775807", &[]),
        (
            "n < 9223372036854775808",
            &["g", "h", "i", "j", "a", "b", "c", "d", "f", "e"],
        ),
        ("n >= 18446744073709551616", &[]),
    ];
    for (filter, expected) in cases {
        let (plain, _) = query(&app, "plain", filter, "n").await;
        let (indexed, plan) = query(&app, "indexed", filter, "n").await;
        assert_eq!(plain, *expected, "scan: {filter}");
        assert_eq!(indexed, *expected, "index: {filter} ({plan})");
        assert!(plan.contains("index by_n"), "{filter}: {plan}");
        // Counts from index keys agree too (exact plans).
        let (desc, _) = query(&app, "indexed", filter, "-n").await;
        let mut rev = expected.to_vec();
        rev.reverse();
        assert_eq!(desc, rev, "index, descending: {filter}");
    }
    // Sorting alone: the index walk and the in-memory sort give one order.
    let order = ["g", "h", "i", "j", "a", "b", "c", "d", "f", "e"];
    for coll in ["plain", "indexed"] {
        let (ids, plan) = query(&app, coll, "", "n").await;
        assert_eq!(ids, order, "{coll} ({plan})");
        let (ids, _) = query(&app, coll, "", "-n").await;
        assert_eq!(ids, order.iter().rev().copied().collect::<Vec<_>>(), "{coll}");
    }
    let (_, plan) = query(&app, "indexed", "", "n").await;
    assert!(plan.contains("index by_n"), "{plan}");
    // totalItems of an exact index plan comes from the keys.
    let r = app
        .get(&format!(
            "/api/collections/indexed/records?filter={}",
            enc("n > 9007199254740992 && n < 9007199254740995")
        ))
        .await;
    assert_eq!(r.body["totalItems"], 2, "{:?}", r.body);
}

/// Opens the sled database of a stopped server (its lock may trail the stop).
async fn open_db(path: &std::path::Path) -> sled::Db {
    for _ in 0..500 {
        match sled::Config::new().path(path).open() {
            Ok(db) => return db,
            Err(_) => actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    panic!("the database stayed locked");
}

#[actix_web::test]
async fn numbers_old_format_index_keys_are_rebuilt_at_start() {
    let app = spawn_app().await;
    numbers_collection(&app, "old", json!([{"name": "by_n", "fields": ["n"]}])).await;
    let cid = app.get("/api/collections/old").await.body["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for (id, n) in [("a", P53), ("b", P53 + 1), ("c", 5)] {
        let r = app
            .post("/api/collections/old/records", json!({"id": id, "n": n}))
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    // Turn the data dir into one the first key format wrote: every number
    // as its f64 (so a and b share a value prefix), no `keyformat` in meta.
    let (dir, tmp) = app.stop().await;
    {
        let db = open_db(&dir.join("db")).await;
        let meta = db.open_tree("meta").expect("meta");
        meta.remove("keyformat").expect("remove");
        let prefix = format!("idx/{cid}/by_n-");
        let name = db
            .tree_names()
            .into_iter()
            .find(|n| n.starts_with(prefix.as_bytes()))
            .expect("index tree");
        let tree = db.open_tree(name).expect("tree");
        tree.clear().expect("clear");
        for (id, n) in [("a", P53), ("b", P53 + 1), ("c", 5)] {
            let bits = (n as f64).to_bits() | (1 << 63);
            let mut key = vec![0x04];
            key.extend_from_slice(&bits.to_be_bytes());
            key.push(0x05);
            key.extend_from_slice(id.as_bytes());
            key.extend_from_slice(&[0, 0]);
            tree.insert(key, id.as_bytes()).expect("insert");
        }
        db.flush().expect("flush");
    }
    let mut app = start(&dir, tmp).await;
    app.token = app.login("_superusers", SU_EMAIL, SU_PASSWORD).await;
    let mut built = false;
    for _ in 0..5000 {
        let c = app.get("/api/collections/old").await;
        if c.body
            .get("indexStatus")
            .is_none_or(|s| s.as_object().is_none_or(|m| m.is_empty()))
        {
            built = true;
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(built, "the rebuild did not finish");
    for (filter, expected) in [
        ("n = 9007199254740993", vec!["b"]),
        ("n = 9007199254740992", vec!["a"]),
        ("n >= 5", vec!["c", "a", "b"]),
    ] {
        let (ids, plan) = query(&app, "old", filter, "n").await;
        assert_eq!(ids, expected, "{filter} ({plan})");
        assert!(plan.contains("index by_n"), "{filter}: {plan}");
    }
}

#[actix_web::test]
async fn numbers_outside_i64_are_refused_in_multipart_payloads_too() {
    let app = spawn_app().await;
    app.create_collection(json!({
        "name": "free", "createRule": "", "listRule": "",
        "schema": {"type": "object"}
    }))
    .await;
    let body = "--XX\r\nContent-Disposition: form-data; name=\"@jsonPayload\"\r\n\r\n{\"n\": 18446744073709551616}\r\n--XX--\r\n";
    let r = app
        .raw(
            awc::http::Method::POST,
            "/api/collections/free/records",
            "multipart/form-data; boundary=XX",
            body.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.field_code("n"), Some("validation_invalid_number"));
    assert_eq!(app.get("/api/collections/free/records").await.body["totalItems"], 0);
}
