//! The record page and the generated form: typed values, inline errors, raw JSON, edit, delete.

use serde_json::json;

use super::{id_from, record, seed, total, LIST};
use crate::admin_support::Browser;
use crate::helpers::{spawn_app, TestApp};

#[actix_web::test]
async fn record_page_shows_json_and_the_filled_form() {
    let app = spawn_app().await;
    app.posts().await;
    let ids = seed(
        &app,
        "posts",
        vec![json!({"title": "Shown", "views": 7, "tags": ["x"], "meta": {"lang": "en"}})],
    )
    .await;
    let mut b = Browser::login(&app).await;
    let page = b.get(&format!("{LIST}/{}", ids[0])).await;
    assert_eq!(page.status, 200);
    page.assert_has("View as JSON");
    page.assert_has("<pre id=\"record-json\">{\n  &#34;collectionId&#34;");
    page.assert_has("&#34;title&#34;: &#34;Shown&#34;");
    page.assert_has("name=\"title\" value=\"Shown\"");
    page.assert_has("name=\"views\" value=\"7\" autocomplete=\"off\" min=\"0\" step=\"1\"");
    page.assert_has("data-json=\"optional\"");
    page.assert_has("(required)");
    page.assert_has(&format!("action=\"{LIST}/{}/delete\" data-confirm=", ids[0]));
    assert!(!page.body.contains("Impersonate"), "posts is not an auth collection");
}

async fn things(app: &TestApp) {
    app.create_collection(json!({
        "name": "things",
        "schema": {
            "type": "object",
            "properties": {
                "title": {"type": "string", "maxLength": 100},
                "body": {"type": "string"},
                "count": {"type": "integer", "minimum": 0, "maximum": 99},
                "price": {"type": "number"},
                "active": {"type": "boolean"},
                "status": {"type": "string", "enum": ["draft", "published"]},
                "level": {"enum": [1, 2, 3]},
                "tags": {"type": "array", "items": {"type": "string"}},
                "meta": {"type": "object"},
                "due": {"type": "string", "format": "date-time"},
                "day": {"type": "string", "format": "date"},
                "contact": {"type": "string", "format": "email"},
                "site": {"type": "string", "format": "uri"}
            },
            "required": ["title", "count"],
            "additionalProperties": false
        }
    }))
    .await;
}

#[actix_web::test]
async fn generated_form_creates_typed_values() {
    let app = spawn_app().await;
    things(&app).await;
    let mut b = Browser::login(&app).await;
    let base = "/_/collections/things/records";
    let page = b.get(&format!("{base}/new")).await;
    assert_eq!(page.status, 200);
    for control in [
        "type=\"text\" id=\"f1\" name=\"title\"",
        "<textarea id=\"f2\" name=\"body\"",
        "name=\"count\" value=\"\" autocomplete=\"off\" required min=\"0\" max=\"99\" step=\"1\"",
        "name=\"price\" value=\"\" autocomplete=\"off\" step=\"any\"",
        "<input type=\"hidden\" name=\"active\" value=\"false\">",
        "type=\"checkbox\" id=\"f5\" name=\"active\" value=\"true\"",
        "<select id=\"f6\" name=\"status\"",
        "<option value=\"published\">published</option>",
        "<option value=\"2\">2</option>",
        "name=\"tags\" spellcheck=\"false\" data-json=\"optional\"",
        "type=\"datetime-local\" id=\"f10\" name=\"due\"",
        "In UTC",
        "type=\"date\" id=\"f11\" name=\"day\"",
        "type=\"email\" id=\"f12\" name=\"contact\"",
        "type=\"url\" id=\"f13\" name=\"site\"",
        "name=\"_raw\" value=\"1\"",
    ] {
        page.assert_has(control);
    }
    let r = b
        .post(
            &format!("{base}/new"),
            &[
                ("title", "Hello"),
                ("body", "line 1\r\nline 2"),
                ("count", "7"),
                ("price", "2.5"),
                ("active", "false"),
                ("active", "true"),
                ("status", "published"),
                ("level", "2"),
                ("tags", "[\"a\", \"b\"]"),
                ("meta", "{\"k\": {\"n\": 1}}"),
                ("due", "2024-05-01T10:20:30"),
                ("day", "2024-05-01"),
                ("contact", ""),
                ("site", ""),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let id = id_from(r.location());
    let rec = record(&app, "things", &id).await;
    assert_eq!(rec["title"], "Hello");
    assert_eq!(rec["body"], "line 1\nline 2");
    assert_eq!(rec["count"], json!(7));
    assert!(rec["count"].is_i64());
    assert_eq!(rec["price"], json!(2.5));
    assert_eq!(rec["active"], json!(true));
    assert_eq!(rec["status"], "published");
    assert_eq!(rec["level"], json!(2));
    assert_eq!(rec["tags"], json!(["a", "b"]));
    assert_eq!(rec["meta"], json!({"k": {"n": 1}}));
    assert_eq!(rec["due"], "2024-05-01T10:20:30Z");
    assert_eq!(rec["day"], "2024-05-01");
    assert!(
        rec.get("contact").is_none() && rec.get("site").is_none(),
        "empty = omitted: {rec}"
    );

    // The record page shows the values back in their controls.
    let page = b.get(r.location()).await;
    page.assert_has("Record created.");
    page.assert_has("name=\"due\" value=\"2024-05-01T10:20:30\"");
    page.assert_has("<option value=\"published\" selected>");
    page.assert_has("<option value=\"2\" selected>");
    page.assert_has("name=\"active\" value=\"true\" checked");
    // Unchecked means false (the hidden field).
    let r = b
        .post(
            &format!("{base}/{id}"),
            &[("title", "Hello"), ("count", "7"), ("active", "false")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(record(&app, "things", &id).await["active"], json!(false));
}

#[actix_web::test]
async fn unreadable_and_invalid_values_come_back_inline() {
    let app = spawn_app().await;
    app.posts().await;
    let mut b = Browser::login(&app).await;
    // A type error: 400, the message next to the field, the values kept.
    let r = b
        .post(&format!("{LIST}/new"), &[("title", "Kept title"), ("views", "abc")])
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    r.assert_has("<span class=\"field-error\" data-field-error=\"views\">Must be a whole number");
    r.assert_has("name=\"title\" value=\"Kept title\"");
    r.assert_has("name=\"views\" value=\"abc\"");
    // Bad JSON in a JSON field, with its position.
    let r = b
        .post(&format!("{LIST}/new"), &[("title", "t"), ("tags", "[\"a\",")])
        .await;
    assert_eq!(r.status, 400);
    r.assert_has("data-field-error=\"tags\">Invalid JSON at line 1, column");
    // The API's validation: per field, as the API reports it.
    let r = b
        .post(
            &format!("{LIST}/new"),
            &[
                ("views", "-1"),
                ("email", "not-an-email"),
                ("meta", "{\"lang\": \"x\"}"),
            ],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    r.assert_has("Failed to validate the submitted data.");
    r.assert_has("data-field-error=\"title\">");
    r.assert_has("data-field-error=\"views\">Must be at least 0.");
    r.assert_has("data-field-error=\"email\">Must be a valid email.");
    r.assert_has("data-field-error=\"meta\">meta.lang: Must be at least 2 characters.");
    assert_eq!(total(&app, "posts", "").await, 0, "nothing was created");
}

#[actix_web::test]
async fn raw_json_create_and_edit() {
    let app = spawn_app().await;
    app.posts().await;
    let mut b = Browser::login(&app).await;
    let r = b
        .post(
            &format!("{LIST}/new"),
            &[
                ("_raw", "1"),
                (
                    "body",
                    "{\"title\": \"From raw\", \"views\": 5, \"meta\": {\"lang\": \"en\"}}",
                ),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let id = id_from(r.location());
    let rec = record(&app, "posts", &id).await;
    assert_eq!(
        (rec["title"].as_str(), rec["views"].as_i64()),
        (Some("From raw"), Some(5))
    );
    assert_eq!(rec["meta"], json!({"lang": "en"}));

    for (body, message) in [
        ("{\"title\":", "Invalid JSON at line 1, column"),
        ("[1]", "must be a JSON object"),
        ("{\"views\": 1}", "title: "),
    ] {
        let r = b.post(&format!("{LIST}/new"), &[("_raw", "1"), ("body", body)]).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        r.assert_has(message);
        r.assert_has("<details class=\"raw\" open>");
    }
    assert_eq!(total(&app, "posts", "").await, 1);

    // Raw edit replaces the user fields: `meta` left out is removed.
    let r = b
        .post(
            &format!("{LIST}/{id}"),
            &[("_raw", "1"), ("body", "{\"title\": \"Raw edit\", \"views\": 6}")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let rec = record(&app, "posts", &id).await;
    assert_eq!(
        (rec["title"].as_str(), rec["views"].as_i64()),
        (Some("Raw edit"), Some(6))
    );
    assert!(rec.get("meta").is_none(), "{rec}");
}

#[actix_web::test]
async fn edit_clear_and_delete() {
    let app = spawn_app().await;
    app.posts().await;
    let ids = seed(&app, "posts", vec![json!({"title": "One", "views": 3, "tags": ["x"]})]).await;
    let id = &ids[0];
    let mut b = Browser::login(&app).await;
    let path = format!("{LIST}/{id}");
    let r = b
        .post(
            &path,
            &[
                ("title", "Two"),
                ("views", ""),
                ("tags", "[\"x\", \"y\"]"),
                ("email", ""),
            ],
        )
        .await;
    assert_eq!((r.status, r.location()), (303, path.as_str()), "{}", r.body);
    let rec = record(&app, "posts", id).await;
    assert_eq!(rec["title"], "Two");
    assert!(rec.get("views").is_none(), "an emptied field is removed: {rec}");
    assert_eq!(rec["tags"], json!(["x", "y"]));
    let page = b.get(&path).await;
    page.assert_has("Record saved.");

    // Emptying a required field: 400, the error inline, nothing saved.
    let r = b.post(&path, &[("title", ""), ("views", "9")]).await;
    assert_eq!(r.status, 400, "{}", r.body);
    r.assert_has("data-field-error=\"title\">");
    r.assert_has("name=\"views\" value=\"9\"");
    let rec = record(&app, "posts", id).await;
    assert_eq!(rec["title"], "Two");
    assert!(rec.get("views").is_none());

    let r = b.post(&format!("{path}/delete"), &[]).await;
    assert_eq!((r.status, r.location()), (303, LIST));
    let r = app.get(&format!("/api/collections/posts/records/{id}")).await;
    assert_eq!(r.status, 404);
    assert_eq!(b.get(&path).await.status, 404);
    assert_eq!(b.post(&path, &[("title", "x")]).await.status, 404);
}

#[actix_web::test]
async fn date_time_with_multi_byte_characters_is_a_400_not_a_panic() {
    let app = spawn_app().await;
    things(&app).await;
    let mut b = Browser::login(&app).await;
    let base = "/_/collections/things/records";
    for due in [
        "2024-01-01T10:00é",
        "2024-01-0１ 10:00:00",
        "2024-01-01T10:00+0é00",
        "2024-01-01T10:00:00+é:00",
        "2024-01-01T10:00:00.é",
        "２０２４-01-01T10:00",
    ] {
        let r = b
            .post(&format!("{base}/new"), &[("title", "t"), ("count", "1"), ("due", due)])
            .await;
        assert_eq!(r.status, 400, "{due}: {}", r.body);
        r.assert_has("data-field-error=\"due\">Enter a date and time");
    }
    assert_eq!(total(&app, "things", "").await, 0, "nothing was created");
    // The server is fine afterwards.
    let r = b
        .post(
            &format!("{base}/new"),
            &[("title", "t"), ("count", "1"), ("due", "2024-01-01T10:00")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
}
