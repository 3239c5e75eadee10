//! Bounded cost (issue 12): every request draws on one budget of records
//! read and records embedded, shared by filters, rules, expand, lists and
//! realtime delivery; over it the request gets a 400 naming what to narrow,
//! and heavy work never occupies the HTTP workers.

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::attack::enc;
use crate::helpers::{spawn_app, TestApp};
use crate::realtime::Ws;

/// `n` public records in `nodes`, each linking to every one of them: any
/// relation path of depth d touches n^d records.
async fn mesh(app: &TestApp, n: usize) -> Vec<String> {
    app.create_collection(json!({
        "name": "nodes", "listRule": "", "viewRule": "", "createRule": "", "updateRule": "",
        "schema": {"type": "object", "properties": {
            "title": {"type": "string"},
            "links": {"type": "array", "items": {"type": "string"}, "x-relation": {"collection": "nodes"}}
        }}
    }))
    .await;
    let mut ids = Vec::new();
    for i in 0..n {
        let r = app
            .post("/api/collections/nodes/records", json!({"title": format!("n{i}")}))
            .await;
        ids.push(r.body["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        let r = app
            .patch(&format!("/api/collections/nodes/records/{id}"), json!({"links": ids}))
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    ids
}

fn is_budget_error(status: u16, body: &Value) -> bool {
    status == 400
        && body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Budget exceeded"))
}

#[actix_web::test]
async fn bound_budget_relation_filters_and_expand_get_a_400() {
    let app = spawn_app().await;
    mesh(&app, 10).await;
    let r = app
        .patch("/api/settings", json!({"budget": {"maxRecords": 20000}}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // 10^5 records through relations: over the budget of 20,000.
    let deep = "links.links.links.links.links.title = 'nope'";
    for token in [None, Some(app.token.as_str())] {
        let r = app
            .call(
                awc::http::Method::GET,
                &format!("/api/collections/nodes/records?filter={}", enc(deep)),
                None,
                token,
            )
            .await;
        assert!(is_budget_error(r.status, &r.body), "{} {:?}", r.status, r.body);
    }
    // Expand 10^6 records: over the expand budget (5,000), for lists and views.
    let ex = "links.links.links.links.links.links";
    let r = app
        .guest_get(&format!("/api/collections/nodes/records?expand={ex}"))
        .await;
    assert!(is_budget_error(r.status, &r.body), "{} {:?}", r.status, r.body);
    assert!(r.body["message"].as_str().unwrap().contains("expand"));
    let one = app.guest_get("/api/collections/nodes/records?perPage=1").await.body["items"][0]["id"].clone();
    let r = app
        .guest_get(&format!(
            "/api/collections/nodes/records/{}?expand={ex}",
            one.as_str().unwrap()
        ))
        .await;
    assert!(is_budget_error(r.status, &r.body), "{} {:?}", r.status, r.body);
    // Shallow work stays well within the budget.
    let r = app
        .guest_get(&format!(
            "/api/collections/nodes/records?expand=links&filter={}",
            enc("links.title ?= 'n3'")
        ))
        .await;
    assert_eq!(
        (r.status, r.body["totalItems"].as_i64()),
        (200, Some(10)),
        "{:?}",
        r.body
    );
    // The budget is a setting.
    let r = app
        .patch("/api/settings", json!({"budget": {"maxRecords": 100, "maxExpand": 10}}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app.guest_get("/api/collections/nodes/records?expand=links").await;
    assert!(is_budget_error(r.status, &r.body), "{:?}", r.body);
    let r = app
        .guest_get(&format!(
            "/api/collections/nodes/records?filter={}",
            enc("links.title ?= 'n3'")
        ))
        .await;
    assert!(is_budget_error(r.status, &r.body), "{:?}", r.body);
    // Bytes too: ten small records are more than 500 bytes.
    let r = app
        .patch(
            "/api/settings",
            json!({"budget": {"maxRecords": 20000, "maxExpand": 5000, "maxOutputBytes": 500}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app
        .guest_get("/api/collections/nodes/records?perPage=1&expand=links")
        .await;
    assert!(is_budget_error(r.status, &r.body), "{:?}", r.body);
    assert!(
        r.body["message"].as_str().unwrap().contains("500 bytes"),
        "{:?}",
        r.body
    );
    // ... and a plain page of records is an answer too.
    let r = app.guest_get("/api/collections/nodes/records").await;
    assert!(is_budget_error(r.status, &r.body), "{:?}", r.body);
    let r = app
        .guest_get("/api/collections/nodes/records?perPage=3&fields=id")
        .await;
    assert!(
        is_budget_error(r.status, &r.body),
        "the budget counts records before trimming: {:?}",
        r.body
    );
    for bad in [json!({"maxRecords": 0}), json!({"maxExpand": -1}), json!({"nope": 1})] {
        let r = app.patch("/api/settings", json!({"budget": bad})).await;
        assert_eq!(r.status, 400, "{bad}: {:?}", r.body);
    }
}

/// The budget's clock: a request whose records would take far longer to
/// read than its seconds allow stops at the deadline with the time 400
/// (30^5 reads per candidate, under a 100M-record budget that no machine
/// reads in one second), and the server answers on.
#[actix_web::test]
async fn bound_budget_time_stops_a_long_request() {
    let app = spawn_app().await;
    mesh(&app, 30).await;
    let r = app
        .patch(
            "/api/settings",
            json!({"budget": {"maxRecords": 100_000_000, "maxSeconds": 1}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["budget"]["maxSeconds"], 1);
    let deep = "links.links.links.links.links.title = 'nope'";
    let r = app
        .guest_get(&format!("/api/collections/nodes/records?filter={}", enc(deep)))
        .await;
    assert!(is_budget_error(r.status, &r.body), "{} {:?}", r.status, r.body);
    let msg = r.body["message"].as_str().unwrap();
    assert!(msg.contains("longer than 1 s"), "{msg}");
    assert_eq!(app.guest_get("/api/health").await.status, 200);
    for bad in [0, 3601] {
        let r = app.patch("/api/settings", json!({"budget": {"maxSeconds": bad}})).await;
        assert_eq!(r.status, 400, "{bad}: {:?}", r.body);
        assert!(r.body["data"]["budget.maxSeconds"].is_object(), "{:?}", r.body);
    }
}

#[actix_web::test]
async fn bound_budget_back_relation_scans_never_stall_health() {
    let app = spawn_app().await;
    app.create_collection(json!({
        "name": "posts", "listRule": "", "schema": {"type": "object", "properties": {"t": {"type": "string"}}}
    }))
    .await;
    app.create_collection(json!({
        "name": "comments", "listRule": "",
        "schema": {"type": "object", "properties": {
            "post": {"type": "string", "x-relation": {"collection": "posts"}}, "text": {"type": "string"}
        }}
    }))
    .await;
    let p = app.post("/api/collections/posts/records", json!({"t": "x"})).await.body["id"].clone();
    for i in 0..50 {
        app.post("/api/collections/posts/records", json!({"t": format!("p{i}")}))
            .await;
    }
    let batch: Vec<Value> = (0..100)
        .map(|i| json!({"method": "POST", "url": "/api/collections/comments/records", "body": {"post": p, "text": format!("c{i}")}}))
        .collect();
    for _ in 0..10 {
        let r = app.post("/api/batch", json!({"requests": batch})).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    // Each term scans every comment for every post: 51 × 1000 × 100 terms.
    let term = "comments_via_post.text ?= 'zz'";
    let filter = vec![term; 100].join(" || ");
    let url = format!("/api/collections/posts/records?filter={}", enc(&filter));
    let attacks = join_all((0..4).map(|_| app.call(awc::http::Method::GET, &url, None, None)));
    let health = async {
        let r = app.guest_get("/api/health").await;
        assert_eq!(r.status, 200);
    };
    // Health is answered while the attacks run (they are off the HTTP
    // workers); each attack ends in a budget 400, never a 5xx.
    let (answers, ()) = futures_util::future::join(attacks, health).await;
    for r in answers {
        assert!(is_budget_error(r.status, &r.body), "{} {:?}", r.status, r.body);
    }
}

#[actix_web::test]
async fn bound_budget_realtime_subscriptions_are_dropped_not_served() {
    let app = spawn_app().await;
    let ids = mesh(&app, 12).await;
    let (mut ws, _) = Ws::open(&app, None).await;
    // Plenty of subscriptions whose filters walk 12^4 records per event.
    let heavy = "links.links.links.links.title = 'nope'";
    for i in 0..50 {
        let ok = ws
            .subscribe(json!({"type": "subscribe", "id": format!("s{i}"), "topic": "nodes/*", "filter": heavy}))
            .await;
        assert_eq!(ok["type"], "subscribed", "{ok}");
    }
    let plain = ws
        .subscribe(json!({"type": "subscribe", "id": "plain", "topic": "nodes/*"}))
        .await;
    assert_eq!(plain["type"], "subscribed");
    let r = app
        .patch(
            &format!("/api/collections/nodes/records/{}", ids[0]),
            json!({"title": "changed"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(app.guest_get("/api/health").await.status, 200);
    // The change costs this connection one budget: the subscription that ran
    // out gets an error, the ones after it a resync; all are dropped.
    // (Read until all 51 have answered: a ping is no barrier here, since
    // the change may reach the connection after the ping does.)
    let (mut errors, mut resyncs, mut plain_events) = (0, 0, 0);
    while errors + resyncs + plain_events < 51 {
        let f = ws.recv().await;
        match f["type"].as_str() {
            Some("error") => {
                assert!(f["message"].as_str().unwrap().starts_with("Budget exceeded"), "{f}");
                errors += 1;
            }
            Some("resync") => resyncs += 1,
            Some("event") => plain_events += 1,
            _ => panic!("unexpected frame {f}"),
        }
    }
    assert_eq!(
        (errors, plain_events),
        (1, 0),
        "the plain one comes last and was resynced"
    );
    // A second change: the dropped subscriptions cost nothing any more; the
    // plain subscription was dropped too (resync), so subscribe it again.
    let again = ws
        .subscribe(json!({"type": "subscribe", "id": "plain2", "topic": "nodes/*"}))
        .await;
    assert_eq!(again["type"], "subscribed");
    app.patch(
        &format!("/api/collections/nodes/records/{}", ids[1]),
        json!({"title": "again"}),
    )
    .await;
    let f = ws.recv().await;
    assert_eq!(
        (f["type"].as_str(), f["sub"].as_str()),
        (Some("event"), Some("plain2")),
        "{f}"
    );
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.recv().await["type"], "pong", "nothing else for that change");
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// The expand attack of the issue (a mesh of relations expanded six levels
/// deep, 10^6 records per item) against the real binary: every answer is a
/// budget 400 and the server's memory stays within a bound the budget sets.
/// `budget.realtimeMaxRecords` takes effect on open connections as soon as
/// it is saved.
#[actix_web::test]
async fn bound_budget_realtime_limit_follows_the_settings() {
    let app = spawn_app().await;
    let ids = mesh(&app, 5).await;
    let (mut ws, _) = Ws::open(&app, None).await;
    // 5 + 25 records per event: within the default, over a limit of 10.
    let heavy = "links.links.title = 'nope'";
    for (id, filter) in [("heavy", Some(heavy)), ("plain", None)] {
        let mut sub = json!({"type": "subscribe", "id": id, "topic": "nodes/*"});
        if let Some(f) = filter {
            sub["filter"] = json!(f);
        }
        assert_eq!(ws.subscribe(sub).await["type"], "subscribed");
    }
    let r = app
        .patch("/api/settings", json!({"budget": {"realtimeMaxRecords": 10}}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app
        .patch(
            &format!("/api/collections/nodes/records/{}", ids[0]),
            json!({"title": "changed"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let first = ws.recv().await;
    assert_eq!(first["type"], "error", "{first}");
    assert!(
        first["message"].as_str().unwrap().starts_with("Budget exceeded"),
        "{first}"
    );
    let second = ws.recv().await;
    assert_eq!(second["type"], "resync", "{second}");
}

#[actix_web::test]
async fn bound_budget_expand_attack_keeps_memory_bounded() {
    use crate::helpers::{client, read, SU_EMAIL, SU_PASSWORD};
    use crate::persistence::{basalt, login, start_binary};
    let tmp = tempfile::tempdir().unwrap();
    let status = crate::helpers::on_suite_engine(&mut basalt(), tmp.path())
        .args(["superuser", "upsert", SU_EMAIL, SU_PASSWORD, "--dir"])
        .arg(tmp.path())
        .status()
        .unwrap();
    assert!(status.success());
    let (server, base) = start_binary(tmp.path());
    let token = login(&base).await;
    let c = client();
    let call = |method: awc::http::Method, path: String, body: Value| {
        let req = c
            .request(method, format!("{base}{path}"))
            .insert_header(("Authorization", token.clone()));
        async move { read(req.send_json(&body).await.expect("request")).await }
    };
    let r = call(
        awc::http::Method::POST,
        "/api/collections".into(),
        json!({"name": "nodes", "listRule": "", "viewRule": "", "schema": {"type": "object", "properties": {
            "title": {"type": "string", "maxLength": 2000},
            "links": {"type": "array", "items": {"type": "string"}, "x-relation": {"collection": "nodes"}}}}}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mut ids = Vec::new();
    for i in 0..10 {
        let body = json!({"title": format!("{i}{}", "x".repeat(1000))});
        let r = call(awc::http::Method::POST, "/api/collections/nodes/records".into(), body).await;
        ids.push(r.body["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        let path = format!("/api/collections/nodes/records/{id}");
        assert_eq!(
            call(awc::http::Method::PATCH, path, json!({"links": ids})).await.status,
            200
        );
    }
    let before = rss_kib(server.id());
    let url = format!("{base}/api/collections/nodes/records?perPage=100&expand=links.links.links.links.links.links");
    for _ in 0..5 {
        let answers = join_all((0..4).map(|_| {
            let url = url.clone();
            let c = client();
            async move { read(c.get(url).send().await.expect("attack")).await }
        }))
        .await;
        for r in answers {
            assert!(is_budget_error(r.status, &r.body), "{} {:?}", r.status, r.body);
        }
    }
    let after = rss_kib(server.id());
    // Each attack embeds at most 5,000 records of ~1 KB: a few MB each, four
    // at a time. Without the budget this grew by hundreds of MB.
    assert!(
        after.saturating_sub(before) < 96 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    drop(server);
}
