//! The query engine over HTTP: filters, sort, indexes and the planner,
//! cursors, fields, expand, and bad input.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::helpers::{enc, spawn_app, TestApp};

fn ids(body: &Value) -> Vec<String> {
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn people(app: &TestApp, name: &str, indexes: Value) {
    app.create_collection(json!({
        "name": name, "listRule": "", "viewRule": "", "createRule": "",
        "indexes": indexes,
        "schema": {"type": "object", "properties": {
            "name": {"type": "string"}, "age": {"type": "integer"}, "city": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "address": {"type": "object", "properties": {"zip": {"type": "string"}}},
            "active": {"type": "boolean"}, "note": {"type": ["string", "null"]}
        }}
    }))
    .await;
}

const DOCS: &[(&str, &str)] = &[
    (
        "ann",
        r#"{"name":"Ann","age":31,"city":"Oslo","tags":["a","b"],"address":{"zip":"0150"},"active":true}"#,
    ),
    (
        "bob",
        r#"{"name":"Bob","age":25,"city":"Bergen","tags":["b"],"active":false,"note":null}"#,
    ),
    (
        "cid",
        r#"{"name":"Cid","age":40,"city":"oslo","tags":[],"address":{"zip":"5003"},"note":"it's \"quoted\""}"#,
    ),
    (
        "dan",
        r#"{"name":"Dan Ålesund","age":25,"city":"Ålesund","active":true,"note":"100% sure"}"#,
    ),
    ("eve", r#"{"name":"Eve","city":"Oslo","tags":["a"],"note":""}"#),
];

async fn load(app: &TestApp, coll: &str) {
    for (id, doc) in DOCS {
        let mut v: Value = serde_json::from_str(doc).unwrap();
        v["id"] = json!(id);
        let r = app.post(&format!("/api/collections/{coll}/records"), v).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
}

async fn filter_ids(app: &TestApp, coll: &str, filter: &str, sort: &str) -> Result<Vec<String>, Value> {
    let r = app
        .guest_get(&format!(
            "/api/collections/{coll}/records?perPage=100&filter={}&sort={}",
            enc(filter),
            enc(sort)
        ))
        .await;
    if r.status == 200 {
        Ok(ids(&r.body))
    } else {
        Err(r.body)
    }
}

#[actix_web::test]
async fn filter_cases_with_and_without_indexes() {
    let app = spawn_app().await;
    people(&app, "plain", json!([])).await;
    people(
        &app,
        "indexed",
        json!([{"name": "by_age", "fields": ["age", "-created"]}, {"name": "by_city", "fields": ["city"]},
               {"name": "by_zip", "fields": ["address.zip"]}]),
    )
    .await;
    load(&app, "plain").await;
    load(&app, "indexed").await;
    let cases: &[(&str, &[&str])] = &[
        ("age = 25", &["bob", "dan"]),
        ("age != 25", &["ann", "cid", "eve"]),
        ("age > 25", &["ann", "cid"]),
        ("age >= 31 && age < 40", &["ann"]),
        ("age <= 25 || name = 'Eve'", &["bob", "dan", "eve"]),
        ("(age = 25 || age = 40) && city ~ 'o'", &["cid"]),
        ("city = 'Oslo'", &["ann", "eve"]),
        ("city ~ 'OSLO'", &["ann", "cid", "eve"]),
        ("city !~ 'oslo'", &["bob", "dan"]),
        ("city ~ 'b%n'", &["bob"]),
        ("name ~ 'ålesund'", &["dan"]),
        ("note ~ '100\\%'", &["dan"]),
        ("note = \"it's \\\"quoted\\\"\"", &["cid"]),
        ("note = 'it\\'s \"quoted\"'", &["cid"]),
        ("note = null", &["ann", "bob", "eve"]),
        ("note = ''", &["ann", "bob", "eve"]),
        ("note != null", &["cid", "dan"]),
        ("age = null", &["eve"]),
        ("active = true", &["ann", "dan"]),
        ("active != true", &["bob", "cid", "eve"]),
        ("tags ?= 'a'", &["ann", "eve"]),
        ("tags = 'b'", &["bob"]),
        ("tags:length = 0", &["cid", "dan"]),
        ("tags:length > 1", &["ann"]),
        ("tags:each = 'a'", &["eve"]),
        ("address.zip = '0150'", &["ann"]),
        ("address.zip > '1000'", &["cid"]),
        ("name:lower = 'bob'", &["bob"]),
        ("id = 'cid'", &["cid"]),
        ("id > 'bob' && id < 'eve'", &["cid", "dan"]),
        ("created > '2000-01-01 00:00:00.000Z' && age = 40", &["cid"]),
        ("created > @now", &[]),
        ("created < @tomorrow && age = 31 // trailing comment", &["ann"]),
        ("@request.method = 'GET' && age = 31", &["ann"]),
        ("@request.auth.id = '' && age = 40", &["cid"]),
        ("age > 'x'", &[]),
    ];
    for (filter, expected) in cases {
        let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        want.sort();
        for coll in ["plain", "indexed"] {
            let mut got = filter_ids(&app, coll, filter, "")
                .await
                .unwrap_or_else(|e| panic!("{filter}: {e}"));
            got.sort();
            assert_eq!(got, want, "{coll}: {filter}");
        }
    }
    // The same order through an index and through an in-memory sort.
    for sort in ["age", "-age", "city,-age", "-created", "address.zip,name"] {
        for filter in ["", "age >= 25", "city = 'Oslo'"] {
            let a = filter_ids(&app, "plain", filter, sort).await.unwrap();
            let b = filter_ids(&app, "indexed", filter, sort).await.unwrap();
            assert_eq!(a, b, "sort {sort} filter {filter}");
        }
    }
    let r = app
        .get(&format!(
            "/api/collections/indexed/records?explain=1&filter={}&sort=-created",
            enc("age = 25")
        ))
        .await;
    assert!(
        r.body["plan"].as_str().unwrap().contains("index by_age"),
        "{:?}",
        r.body["plan"]
    );
    assert!(
        r.body["plan"].as_str().unwrap().contains("exact"),
        "{:?}",
        r.body["plan"]
    );
    assert_eq!(r.body["totalItems"], 2);
    let r = app
        .get(&format!(
            "/api/collections/indexed/records?explain=1&filter={}",
            enc("name = 'Ann'")
        ))
        .await;
    assert!(
        r.body["plan"].as_str().unwrap().contains("sorted in memory")
            || r.body["plan"].as_str().unwrap().contains("_sys_created")
    );
    // Guests don't get the plan.
    assert!(app
        .guest_get("/api/collections/indexed/records?explain=1")
        .await
        .body
        .get("plan")
        .is_none());
}

#[actix_web::test]
async fn bad_filters_and_sorts_are_400() {
    let app = spawn_app().await;
    people(&app, "p", json!([])).await;
    let deep = format!("{}age = 1{}", "(".repeat(10_000), ")".repeat(10_000));
    let long = format!("name = '{}'", "x".repeat(3500));
    let many = vec!["age = 1"; 201].join(" && ");
    let filters = [
        "name = 'unterminated",
        "name === 1",
        "name <> 1",
        "@request.auht.id = ''",
        "@foo = 1",
        "age = 1e6",
        "!(age = 1)",
        "age = 1 &&",
        "()",
        "name",
        deep.as_str(),
        long.as_str(),
        many.as_str(),
    ];
    for f in filters {
        let r = app
            .guest_get(&format!("/api/collections/p/records?filter={}", enc(f)))
            .await;
        assert_eq!(r.status, 400, "{}", &f[..f.len().min(60)]);
        let msg = r.body["data"]["filter"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("position"), "{}: {:?}", &f[..f.len().min(60)], r.body);
    }
    for s in ["a,b,c,d,e,f,g,h,i", "a,,b", "@random", "-", "a b"] {
        let r = app
            .guest_get(&format!("/api/collections/p/records?sort={}", enc(s)))
            .await;
        assert_eq!(r.status, 400, "{s}");
        assert_eq!(r.body["data"]["sort"]["code"], "validation_invalid_sort");
    }
    assert_eq!(app.guest_get("/api/health").await.status, 200);
}

#[actix_web::test]
async fn unique_indexes_and_background_builds() {
    let app = spawn_app().await;
    app.create_collection(json!({
        "name": "slugs", "listRule": "", "createRule": "", "updateRule": "",
        "indexes": [{"name": "slug_unique", "fields": ["slug"], "unique": true}],
        "schema": {"type": "object", "properties": {"slug": {"type": "string"}, "n": {"type": "integer"}}}
    }))
    .await;
    let a = app
        .post("/api/collections/slugs/records", json!({"slug": "hello", "n": 1}))
        .await;
    assert_eq!(a.status, 200);
    let dup = app
        .post("/api/collections/slugs/records", json!({"slug": "hello", "n": 2}))
        .await;
    assert_eq!(dup.status, 400);
    assert_eq!(dup.field_code("slug"), Some("validation_not_unique"));
    let b = app
        .post("/api/collections/slugs/records", json!({"slug": "other", "n": 3}))
        .await;
    let url = format!("/api/collections/slugs/records/{}", b.body["id"].as_str().unwrap());
    assert_eq!(
        app.patch(&url, json!({"slug": "hello"})).await.field_code("slug"),
        Some("validation_not_unique")
    );
    // Records without the field don't clash.
    for _ in 0..2 {
        assert_eq!(
            app.post("/api/collections/slugs/records", json!({"n": 9})).await.status,
            200
        );
    }
    // Freed values can be taken again.
    assert_eq!(app.patch(&url, json!({"slug": "third"})).await.status, 200);
    assert_eq!(
        app.post("/api/collections/slugs/records", json!({"slug": "other"}))
            .await
            .status,
        200
    );

    // Adding an index over existing records builds it in the background.
    for i in 0..2500 {
        assert_eq!(
            app.post(
                "/api/collections/slugs/records",
                json!({"slug": format!("s{i}"), "n": i % 10})
            )
            .await
            .status,
            200
        );
    }
    let r = app
        .patch(
            "/api/collections/slugs",
            json!({"indexes": [{"name": "slug_unique", "fields": ["slug"], "unique": true}, {"name": "by_n", "fields": ["n"]}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    wait_for_builds(&app, "slugs").await;
    let r = app
        .get(&format!(
            "/api/collections/slugs/records?explain=1&filter={}",
            enc("n = 7")
        ))
        .await;
    assert!(
        r.body["plan"].as_str().unwrap().contains("index by_n"),
        "{:?}",
        r.body["plan"]
    );
    assert_eq!(r.body["totalItems"], 250);

    // A unique index over duplicate data fails and is removed, with the reason kept.
    let r = app
        .patch(
            "/api/collections/slugs",
            json!({"indexes": [{"name": "slug_unique", "fields": ["slug"], "unique": true}, {"name": "n_unique", "fields": ["n"], "unique": true}]}),
        )
        .await;
    assert_eq!(r.status, 200);
    let status = wait_for_builds(&app, "slugs").await;
    assert_eq!(status["n_unique"]["state"], "failed", "{status}");
    assert!(status["n_unique"]["error"].as_str().unwrap().contains("same value"));
    let coll = app.get("/api/collections/slugs").await;
    let names: Vec<&str> = coll.body["indexes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["slug_unique"]);
    // Writes are not blocked by the failed index.
    assert_eq!(
        app.post("/api/collections/slugs/records", json!({"n": 1})).await.status,
        200
    );
}

/// An index saved again while its build runs (another definition under the
/// same name, a failing unique one replaced by a valid one) ends up built
/// for the last save: used by the planner, enforced, its status clear.
#[actix_web::test]
async fn an_index_saved_again_while_it_builds_is_built_for_the_last_save() {
    let app = spawn_app().await;
    app.create_collection(json!({
        "name": "items", "listRule": "", "createRule": "",
        "schema": {"type": "object", "properties": {"slug": {"type": "string"}, "n": {"type": "integer"}}}
    }))
    .await;
    for chunk in (0..3000).collect::<Vec<u32>>().chunks(100) {
        let requests: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"method": "POST", "url": "/api/collections/items/records", "body": {"slug": format!("s{i}"), "n": i % 10}}))
            .collect();
        assert_eq!(
            app.post("/api/batch", json!({ "requests": requests })).await.status,
            200
        );
    }
    let save = |fields: &str, unique: bool| json!({"indexes": [{"name": "ix", "fields": [fields], "unique": unique}]});
    let plan_for = |filter: &str| format!("/api/collections/items/records?explain=1&filter={}", enc(filter));

    // Another definition under the same name, saved at once.
    assert_eq!(app.patch("/api/collections/items", save("n", false)).await.status, 200);
    assert_eq!(
        app.patch("/api/collections/items", save("slug", false)).await.status,
        200
    );
    let status = wait_for_builds(&app, "items").await;
    assert_eq!(status, json!({}), "{status}");
    let r = app.get(&plan_for("slug = 's1234'")).await;
    assert!(
        r.body["plan"].as_str().unwrap().contains("index ix"),
        "{:?}",
        r.body["plan"]
    );
    assert_eq!(r.body["totalItems"], 1);

    // A unique index that must fail, replaced at once by a valid one: the
    // failure of the first never removes the second.
    assert_eq!(app.patch("/api/collections/items", save("n", true)).await.status, 200);
    assert_eq!(
        app.patch("/api/collections/items", save("slug", true)).await.status,
        200
    );
    let status = wait_for_builds(&app, "items").await;
    assert_eq!(status, json!({}), "{status}");
    let coll = app.get("/api/collections/items").await;
    assert_eq!(
        coll.body["indexes"][0]["fields"],
        json!(["slug"]),
        "{:?}",
        coll.body["indexes"]
    );
    assert_eq!(coll.body["indexes"][0]["unique"], true);
    let dup = app
        .post("/api/collections/items/records", json!({"slug": "s77", "n": 1}))
        .await;
    assert_eq!(dup.field_code("slug"), Some("validation_not_unique"));
    let r = app.get(&plan_for("slug = 's2999'")).await;
    assert!(
        r.body["plan"].as_str().unwrap().contains("index ix"),
        "{:?}",
        r.body["plan"]
    );
    assert_eq!(r.body["totalItems"], 1);
}

/// Polls the collection until no index is building; returns the last status.
async fn wait_for_builds(app: &TestApp, coll: &str) -> Value {
    for _ in 0..2000 {
        let c = app.get(&format!("/api/collections/{coll}")).await;
        let status = c.body.get("indexStatus").cloned().unwrap_or(json!({}));
        let building = status.as_object().unwrap().values().any(|s| s["state"] == "building");
        if !building {
            return status;
        }
        actix_web::rt::task::yield_now().await;
    }
    panic!("index build did not finish");
}

#[actix_web::test]
async fn cursor_pages_through_every_record_once() {
    let app = spawn_app().await;
    app.create_collection(json!({"name": "items", "listRule": "", "createRule": "",
        "indexes": [{"name": "by_group", "fields": ["group", "-created"]}],
        "schema": {"type": "object", "properties": {"group": {"type": "integer"}}}}))
        .await;
    let total = 10_000usize;
    let mut tasks = Vec::new();
    for w in 0..16 {
        let base = app.base.clone();
        tasks.push(actix_web::rt::spawn(async move {
            let c = crate::helpers::client();
            for i in (w..total).step_by(16) {
                let res = c
                    .post(format!("{base}/api/collections/items/records"))
                    .send_json(&json!({"group": i % 3}))
                    .await
                    .unwrap();
                assert_eq!(res.status().as_u16(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for (query, expect) in [
        ("sort=-created", total),
        ("sort=created", total),
        (&format!("filter={}&sort=-created", enc("group = 1"))[..], 3333),
    ] {
        let mut seen = HashSet::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let url = match &cursor {
                None => format!("/api/collections/items/records?perPage=500&{query}"),
                Some(c) => format!("/api/collections/items/records?perPage=500&{query}&cursor={}", enc(c)),
            };
            let r = app.guest_get(&url).await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            assert_eq!(r.body["totalItems"], expect);
            for id in ids(&r.body) {
                assert!(seen.insert(id), "duplicate across pages ({query})");
            }
            pages += 1;
            match r.body["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen.len(), expect, "{query}");
        assert_eq!(pages, expect.div_ceil(500));
    }
    // A cursor needs an index-served order.
    assert_eq!(
        app.guest_get("/api/collections/items/records?sort=group,id&cursor=abc")
            .await
            .status,
        400
    );
}

#[actix_web::test]
async fn expand_and_fields() {
    let app = spawn_app().await;
    app.create_collection(
        json!({"name": "authors", "listRule": "", "viewRule": "", "createRule": "",
        "schema": {"type": "object", "properties": {"name": {"type": "string"}, "country": {"type": "string"}}}}),
    )
    .await;
    app.create_collection(json!({"name": "secret_things", "createRule": "",
        "schema": {"type": "object", "properties": {"x": {"type": "string"}}}}))
        .await;
    app.create_collection(
        json!({"name": "books", "listRule": "", "viewRule": "", "createRule": "",
        "schema": {"type": "object", "properties": {
            "title": {"type": "string"}, "body": {"type": "string"},
            "author": {"type": "string", "x-relation": {"collection": "authors"}},
            "secret": {"type": "string", "x-relation": {"collection": "secret_things"}}}}}),
    )
    .await;
    app.create_collection(
        json!({"name": "reviews", "listRule": "", "viewRule": "", "createRule": "",
        "schema": {"type": "object", "properties": {
            "stars": {"type": "integer"},
            "book": {"type": "string", "x-relation": {"collection": "books"}},
            "helpers": {"type": "array", "items": {"type": "string"}, "x-relation": {"collection": "authors"}}}}}),
    )
    .await;
    let ann = app
        .post(
            "/api/collections/authors/records",
            json!({"name": "Ann", "country": "NO"}),
        )
        .await
        .body;
    let bob = app
        .post(
            "/api/collections/authors/records",
            json!({"name": "Bob", "country": "SE"}),
        )
        .await
        .body;
    let hidden = app
        .post("/api/collections/secret_things/records", json!({"x": "classified"}))
        .await
        .body;
    let book = app
        .post(
            "/api/collections/books/records",
            json!({"title": "T", "body": "<b>Long</b> body text here",
            "author": ann["id"], "secret": hidden["id"]}),
        )
        .await
        .body;
    let review = app
        .post(
            "/api/collections/reviews/records",
            json!({"stars": 5, "book": book["id"], "helpers": [ann["id"], bob["id"]]}),
        )
        .await
        .body;
    // Two levels, through a single and a multiple relation.
    let r = app
        .guest_get(&format!(
            "/api/collections/reviews/records/{}?expand=book.author,helpers",
            review["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["expand"]["book"]["title"], "T");
    assert_eq!(r.body["expand"]["book"]["expand"]["author"]["name"], "Ann");
    assert_eq!(r.body["expand"]["helpers"].as_array().unwrap().len(), 2);
    // The related collection's viewRule applies: secret_things is superuser-only.
    let r = app
        .guest_get(&format!(
            "/api/collections/books/records/{}?expand=secret,author",
            book["id"].as_str().unwrap()
        ))
        .await;
    assert!(r.body["expand"].get("secret").is_none());
    assert_eq!(r.body["expand"]["author"]["name"], "Ann");
    let r = app
        .get(&format!(
            "/api/collections/books/records/{}?expand=secret",
            book["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(r.body["expand"]["secret"]["x"], "classified");
    // Back-relation.
    let r = app
        .guest_get("/api/collections/books/records?expand=reviews_via_book")
        .await;
    assert_eq!(r.body["items"][0]["expand"]["reviews_via_book"][0]["stars"], 5);
    // Filter through a relation.
    let r = app
        .guest_get(&format!(
            "/api/collections/books/records?filter={}",
            enc("author.country = 'NO'")
        ))
        .await;
    assert_eq!(r.body["totalItems"], 1);
    let r = app
        .guest_get(&format!(
            "/api/collections/reviews/records?filter={}",
            enc("helpers.name ?= 'Bob'")
        ))
        .await;
    assert_eq!(r.body["totalItems"], 1);
    // fields trims items, nested expand paths, and excerpts.
    let r = app
        .guest_get("/api/collections/reviews/records?expand=book.author&fields=id,expand.book.title,expand.book.expand.author.name")
        .await;
    assert_eq!(
        r.body["items"][0],
        json!({"id": review["id"], "expand": {"book": {"title": "T", "expand": {"author": {"name": "Ann"}}}}})
    );
    assert_eq!(r.body["totalItems"], 1);
    let r = app
        .guest_get(&format!(
            "/api/collections/books/records/{}?fields=body:excerpt(9,true)",
            book["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(r.body, json!({"body": "Long body..."}));
    assert_eq!(
        app.guest_get("/api/collections/books/records?fields=a..b").await.status,
        400
    );
    assert_eq!(
        app.guest_get("/api/collections/books/records?expand=a..b").await.status,
        400
    );
}

/// A small deterministic PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const CITIES: &[&str] = &["Oslo", "oslo", "Bergen", "Tromsø", "Ålesund", ""];

fn random_term(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 => format!("age {} {}", rng.pick(&["=", "!=", ">", ">=", "<", "<="]), rng.below(60)),
        1 => format!(
            "city {} '{}'",
            rng.pick(&["=", "!=", ">", "<", "~", "!~"]),
            rng.pick(CITIES)
        ),
        2 => format!(
            "active {} {}",
            rng.pick(&["=", "!="]),
            rng.pick(&["true", "false", "null"])
        ),
        3 => format!("address.zip {} '{:04}'", rng.pick(&["=", ">=", "<"]), rng.below(10_000)),
        4 => format!(
            "tags {} '{}'",
            rng.pick(&["?=", "=", "!=", "?!="]),
            rng.pick(&["a", "b", "c"])
        ),
        _ => format!("age {} null", rng.pick(&["=", "!="])),
    }
}

fn random_filter(rng: &mut Rng, depth: usize) -> String {
    if depth == 0 || rng.below(3) == 0 {
        return random_term(rng);
    }
    let joiner = rng.pick(&[" && ", " || ", " && "]);
    let parts: Vec<String> = (0..2 + rng.below(2)).map(|_| random_filter(rng, depth - 1)).collect();
    format!("({})", parts.join(joiner))
}

/// Random filters and sorts over random documents give the same records in
/// the same order through the planner (indexed collection) and through the
/// plain scan (same data, no indexes).
#[actix_web::test]
async fn random_filters_planner_equals_scan() {
    let app = spawn_app().await;
    people(&app, "plain", json!([])).await;
    people(
        &app,
        "indexed",
        json!([{"name": "by_age", "fields": ["age"]}, {"name": "by_city_age", "fields": ["city", "-age"]},
               {"name": "by_zip", "fields": ["address.zip"]}, {"name": "by_active", "fields": ["active", "age"]}]),
    )
    .await;
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for i in 0..150 {
        let mut doc = json!({"id": format!("r{i:03}")});
        if rng.below(5) > 0 {
            doc["age"] = json!(rng.below(60));
        }
        doc["city"] = json!(rng.pick(CITIES));
        if rng.below(3) > 0 {
            doc["active"] = json!(rng.below(2) == 0);
        }
        if rng.below(2) == 0 {
            doc["address"] = json!({"zip": format!("{:04}", rng.below(10_000))});
        }
        let tags: Vec<&str> = (0..rng.below(3)).map(|_| rng.pick(&["a", "b", "c"])).collect();
        doc["tags"] = json!(tags);
        for coll in ["plain", "indexed"] {
            let r = app.post(&format!("/api/collections/{coll}/records"), doc.clone()).await;
            assert_eq!(r.status, 200, "{:?}", r.body);
        }
    }
    let sorts = ["", "age", "-age", "city,-age", "address.zip", "active,age", "-created"];
    let (mut used_index, mut non_empty) = (0, 0);
    for case in 0..200 {
        let filter = random_filter(&mut rng, 2);
        let sort = rng.pick(&sorts);
        let a = filter_ids(&app, "plain", &filter, sort)
            .await
            .unwrap_or_else(|e| panic!("{filter}: {e}"));
        let b = filter_ids(&app, "indexed", &filter, sort)
            .await
            .unwrap_or_else(|e| panic!("{filter}: {e}"));
        assert_eq!(a, b, "case {case}: filter `{filter}` sort `{sort}`");
        non_empty += usize::from(!a.is_empty() && a.len() < 150);
        let plan = app
            .get(&format!(
                "/api/collections/indexed/records?explain=1&filter={}&sort={}",
                enc(&filter),
                enc(sort)
            ))
            .await;
        if plan.body["plan"].as_str().unwrap_or_default().contains("index by_") {
            used_index += 1;
        }
        // Counts agree too.
        let ca = app
            .guest_get(&format!(
                "/api/collections/plain/records?perPage=1&filter={}",
                enc(&filter)
            ))
            .await;
        let cb = app
            .guest_get(&format!(
                "/api/collections/indexed/records?perPage=1&filter={}",
                enc(&filter)
            ))
            .await;
        assert_eq!(ca.body["totalItems"], cb.body["totalItems"], "count for `{filter}`");
    }
    assert!(
        used_index > 30,
        "the planner used an index in only {used_index} of 200 cases"
    );
    assert!(
        non_empty > 50,
        "only {non_empty} of 200 filters selected a proper subset"
    );
}

#[actix_web::test]
async fn relations_must_point_at_existing_records() {
    let app = spawn_app().await;
    app.create_collection(
        json!({"name": "authors", "listRule": "", "viewRule": "", "createRule": "",
        "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}),
    )
    .await;
    app.create_collection(
        json!({"name": "books", "listRule": "", "viewRule": "", "createRule": "", "updateRule": "",
        "schema": {"type": "object", "properties": {
            "author": {"type": "string", "x-relation": {"collection": "authors"}},
            "helpers": {"type": "array", "items": {"type": "string"}, "x-relation": {"collection": "authors"}}}}}),
    )
    .await;
    let ann = app
        .post("/api/collections/authors/records", json!({"name": "Ann"}))
        .await
        .body;
    let r = app
        .guest_post("/api/collections/books/records", json!({"author": "nosuchauthor00"}))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.field_code("author"), Some("validation_missing_rel_records"));
    let r = app
        .guest_post(
            "/api/collections/books/records",
            json!({"helpers": [ann["id"], "ghost"]}),
        )
        .await;
    assert_eq!(r.field_code("helpers"), Some("validation_missing_rel_records"));
    let ok = app
        .guest_post(
            "/api/collections/books/records",
            json!({"author": ann["id"], "helpers": [ann["id"]]}),
        )
        .await;
    assert_eq!(ok.status, 200);
    let url = format!("/api/collections/books/records/{}", ok.body["id"].as_str().unwrap());
    assert_eq!(
        app.patch(&url, json!({"author": "ghost"})).await.field_code("author"),
        Some("validation_missing_rel_records")
    );
    // An empty expand still answers `expand: {}`.
    let r = app
        .guest_get(&format!(
            "/api/collections/authors/records/{}?expand=nothing",
            ann["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(r.body["expand"], json!({}));
    // In a batch, a record created earlier in the same batch counts.
    let r = app
        .guest_post(
            "/api/batch",
            json!({"requests": [
                {"method": "POST", "url": "/api/collections/authors/records", "body": {"id": "newauthor", "name": "N"}},
                {"method": "POST", "url": "/api/collections/books/records", "body": {"author": "newauthor"}}
            ]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}
