//! `POST /api/batch`: all-or-nothing writes.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

async fn setup(app: &TestApp) {
    app.create_collection(json!({
        "name": "items", "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
        "indexes": [{"name": "code_unique", "fields": ["code"], "unique": true}],
        "schema": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}, "code": {"type": "string"}},
                   "required": ["n"], "additionalProperties": false}
    }))
    .await;
}

async fn next(ws: &mut actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>) -> Value {
    use futures_util::StreamExt;
    match ws.next().await.unwrap().unwrap() {
        awc::ws::Frame::Text(b) => serde_json::from_slice::<Value>(&b).unwrap(),
        other => panic!("{other:?}"),
    }
}

fn create(n: Value) -> Value {
    json!({"method": "POST", "url": "/api/collections/items/records", "body": {"n": n}})
}

#[actix_web::test]
async fn batch_writes_everything_in_order() {
    let app = spawn_app().await;
    setup(&app).await;
    let existing = app.post("/api/collections/items/records", json!({"n": 1})).await.body;
    let eid = existing["id"].as_str().unwrap();
    let r = app
        .guest_post(
            "/api/batch",
            json!({"requests": [
                {"method": "POST", "url": "/api/collections/items/records?fields=id,n", "body": {"id": "fresh", "n": 2}},
                {"method": "PATCH", "url": "/api/collections/items/records/fresh", "body": {"n+": 5}},
                {"method": "PUT", "url": "/api/collections/items/records", "body": {"id": eid, "n": 10}},
                {"method": "PUT", "url": "/api/collections/items/records", "body": {"id": "upserted", "n": 3}},
                {"method": "DELETE", "url": format!("/api/collections/items/records/{eid}")}
            ]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let results = r.body.as_array().unwrap();
    let statuses: Vec<u64> = results.iter().map(|x| x["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, vec![200, 200, 200, 200, 204]);
    assert_eq!(results[1]["body"]["n"], 7);
    assert_eq!(results[2]["body"]["n"], 10);
    assert_eq!(results[3]["body"]["id"], "upserted");
    assert_eq!(app.get("/api/collections/items/records/fresh").await.body["n"], 7);
    assert_eq!(
        app.get(&format!("/api/collections/items/records/{eid}")).await.status,
        404
    );
    assert_eq!(app.get("/api/collections/items/records").await.body["totalItems"], 2);
}

#[actix_web::test]
async fn one_invalid_request_writes_nothing_and_emits_nothing() {
    let app = spawn_app().await;
    setup(&app).await;
    let (_, mut ws) = crate::helpers::client()
        .ws(format!("{}/api/realtime/ws", app.base))
        .connect()
        .await
        .unwrap();
    use futures_util::SinkExt;
    assert_eq!(next(&mut ws).await["type"], "welcome");
    ws.send(awc::ws::Message::Text(
        json!({"type": "subscribe", "id": "s", "topic": "items/*"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    assert_eq!(next(&mut ws).await["type"], "subscribed");

    let mut requests: Vec<Value> = (0..50).map(|i| create(json!(i))).collect();
    requests[37] = create(json!(-1));
    let r = app.guest_post("/api/batch", json!({"requests": requests})).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let failure = &r.body["data"]["requests"]["37"];
    assert_eq!(failure["code"], "batch_request_failed");
    assert_eq!(failure["response"]["data"]["n"]["code"], "validation_min");
    assert_eq!(app.get("/api/collections/items/records").await.body["totalItems"], 0);

    // A clash found inside the writer (unique index) also fails the whole batch.
    let r = app
        .guest_post(
            "/api/batch",
            json!({"requests": [
                {"method": "POST", "url": "/api/collections/items/records", "body": {"n": 1, "code": "x"}},
                {"method": "POST", "url": "/api/collections/items/records", "body": {"n": 2, "code": "x"}}
            ]}),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(app.get("/api/collections/items/records").await.body["totalItems"], 0);

    // No event was emitted: the first event the subscriber sees is this one.
    let marker = app.post("/api/collections/items/records", json!({"n": 99})).await.body;
    let e = next(&mut ws).await;
    assert_eq!(e["record"]["id"], marker["id"]);
}

#[actix_web::test]
async fn batch_checks_rules_per_request_and_limits() {
    let app = spawn_app().await;
    setup(&app).await;
    app.create_collection(json!({"name": "locked", "schema": {"type": "object"}}))
        .await;
    let r = app
        .guest_post(
            "/api/batch",
            json!({"requests": [create(json!(1)), {"method": "POST", "url": "/api/collections/locked/records", "body": {}}]}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["data"]["requests"]["1"]["response"]["status"], 403);
    assert_eq!(app.get("/api/collections/items/records").await.body["totalItems"], 0);
    // The superuser may.
    let r = app
        .post(
            "/api/batch",
            json!({"requests": [{"method": "POST", "url": "/api/collections/locked/records", "body": {}}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    let too_many: Vec<Value> = (0..101).map(|i| create(json!(i))).collect();
    assert_eq!(
        app.guest_post("/api/batch", json!({"requests": too_many})).await.status,
        400
    );
    for bad in [
        json!({}),
        json!({"requests": []}),
        json!({"requests": [{"method": "GET", "url": "/api/collections/items/records"}]}),
        json!({"requests": [{"method": "POST", "url": "/api/settings", "body": {}}]}),
        json!({"requests": [{"method": "POST", "url": "/api/collections/items/records", "body": [1]}]}),
    ] {
        let r = app.guest_post("/api/batch", bad.clone()).await;
        assert_eq!(r.status, 400, "{bad} -> {:?}", r.body);
    }
    let r = app.patch("/api/settings", json!({"batch": {"enabled": false}})).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        app.guest_post("/api/batch", json!({"requests": [create(json!(1))]}))
            .await
            .status,
        403
    );
}
