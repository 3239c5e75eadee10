//! Update modifiers (`field+`, `+field`, `field-`) are resolved into the
//! final values before the updateRule sees `@request.body` (as PocketBase),
//! over REST and batch.

use serde_json::json;

use super::user;
use crate::helpers::spawn_app;

#[actix_web::test]
async fn attack_modifiers_cannot_bypass_update_rules() {
    let app = spawn_app().await;
    let rule = "owner = @request.auth.id && @request.body.credits:changed = false \
                && @request.body.roles:changed = false && @request.body.credits:isset = false";
    app.create_collection(json!({
        "name": "wallets", "listRule": "owner = @request.auth.id", "viewRule": "owner = @request.auth.id",
        "updateRule": rule,
        "schema": {"type": "object", "properties": {
            "owner": {"type": "string"}, "title": {"type": "string"},
            "credits": {"type": "integer"}, "roles": {"type": "array", "items": {"type": "string"}}
        }}
    }))
    .await;
    let (u, token) = user(&app, "u@example.com", "U").await;
    let w = app
        .post(
            "/api/collections/wallets/records",
            json!({"owner": u, "credits": 10, "roles": ["reader"]}),
        )
        .await;
    let id = w.body["id"].as_str().unwrap().to_owned();
    let path = format!("/api/collections/wallets/records/{id}");
    let patch = |body: serde_json::Value| {
        let (app, path, token) = (&app, &path, &token);
        async move { app.call(awc::http::Method::PATCH, path, Some(body), Some(token)).await }
    };
    for body in [
        json!({"credits": 5}),
        json!({"credits+": 5000}),
        json!({"credits-": 1}),
        json!({"+roles": "admin"}),
        json!({"roles+": "admin"}),
        json!({"roles+": ["admin"]}),
        json!({"roles-": "reader"}),
        json!({"title": "x", "credits+": 1}),
    ] {
        let r = patch(body.clone()).await;
        assert_eq!(r.status, 404, "{body} must be refused: {:?}", r.body);
        let batch = app
            .call(
                awc::http::Method::POST,
                "/api/batch",
                Some(json!({"requests": [{"method": "PATCH", "url": format!("/api/collections/wallets/records/{id}"), "body": body}]})),
                Some(&token),
            )
            .await;
        assert!(
            batch.status >= 400 && batch.status < 500,
            "{body} in batch: {:?}",
            batch.body
        );
    }
    let stored = app.get(&path).await.body;
    assert_eq!(
        (stored["credits"].clone(), stored["roles"].clone()),
        (json!(10), json!(["reader"]))
    );
    // What the rule allows still works, including a no-op modifier.
    let r = patch(json!({"title": "mine"})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = patch(json!({"roles+": []})).await;
    assert_eq!(
        r.status, 200,
        "an unchanged value passes :changed = false: {:?}",
        r.body
    );
}
