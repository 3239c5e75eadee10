//! The create form: values round-trip through the JSON API, and every kind
//! of refusal comes back inline with the values as typed.

use serde_json::{json, Value};

use super::super::admin_support::Browser;
use super::super::helpers::spawn_app;
use super::{esc, fields, post, selected_mode, SCHEMA};

#[actix_web::test]
async fn create_form_round_trips_schema_and_the_three_kinds_of_rule() {
    let app = spawn_app().await;
    let mut b = Browser::login(&app).await;
    let page = b.get("/_/collections/new").await;
    assert_eq!(page.status, 200);
    page.assert_has("<textarea id=\"f-schema\" name=\"schema\" class=\"code\" data-json");
    page.assert_has("&#34;additionalProperties&#34;: false");
    page.assert_has("Superusers only");
    assert_eq!(selected_mode(&page, "listRule"), "locked");

    let f = fields(
        "articles",
        "base",
        SCHEMA,
        r#"[{"name": "by_title", "fields": ["title", "-created"]}]"#,
        &[
            ("listRule", "public", ""),
            ("viewRule", "expr", "title != 'secret'"),
            ("createRule", "expr", "@request.auth.id != \"\""),
        ],
    );
    let r = post(&mut b, "/_/collections/new", &f).await;
    assert_eq!((r.status, r.location()), (303, "/_/collections/articles"), "{}", r.body);
    let c = app.get("/api/collections/articles").await.body;
    assert_eq!(c["type"], "base");
    assert_eq!(c["schema"], serde_json::from_str::<Value>(SCHEMA).unwrap());
    assert_eq!(c["listRule"], "");
    assert_eq!(c["viewRule"], "title != 'secret'");
    assert_eq!(c["createRule"], "@request.auth.id != \"\"");
    assert_eq!(c["updateRule"], Value::Null);
    assert_eq!(c["deleteRule"], Value::Null);
    assert_eq!(c["indexes"][0]["name"], "by_title");

    // The edit page shows the same three states back.
    let page = b.get("/_/collections/articles").await;
    assert_eq!(page.status, 200);
    page.assert_has("Created collection");
    assert_eq!(selected_mode(&page, "listRule"), "public");
    assert_eq!(selected_mode(&page, "viewRule"), "expr");
    assert_eq!(selected_mode(&page, "updateRule"), "locked");
    page.assert_has("value=\"title != &#39;secret&#39;\"");

    // Without the select (a plain client), an empty box means superusers only.
    let r = b
        .post(
            "/_/collections/new",
            &[
                ("name", "plain"),
                ("type", "base"),
                ("schema", SCHEMA),
                ("listRule", "n > 1"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let c = app.get("/api/collections/plain").await.body;
    assert_eq!(
        (c["listRule"].clone(), c["viewRule"].clone()),
        (json!("n > 1"), Value::Null)
    );

    // Auth collections take the auth and manage rules, and auth options.
    let mut f = fields(
        "members",
        "auth",
        SCHEMA,
        "",
        &[("authRule", "expr", "verified = true"), ("manageRule", "locked", "")],
    );
    f.push(("authOptions".into(), r#"{"authTokenDuration": 3600}"#.into()));
    let r = post(&mut b, "/_/collections/new", &f).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let c = app.get("/api/collections/members").await.body;
    assert_eq!(c["type"], "auth");
    assert_eq!(c["authRule"], "verified = true");
    assert_eq!(c["manageRule"], Value::Null);
    assert_eq!(c["authOptions"]["authTokenDuration"], 3600);
    let page = b.get("/_/collections/members").await;
    assert_eq!(selected_mode(&page, "authRule"), "expr");
    page.assert_has("&#34;authTokenDuration&#34;: 3600");
}

#[actix_web::test]
async fn invalid_json_schema_text_is_shown_with_line_and_column() {
    let app = spawn_app().await;
    let mut b = Browser::login(&app).await;
    let broken = "{\n  \"type\": \"object\"\n  \"properties\": {}\n}";
    let f = fields(
        "drafts",
        "base",
        broken,
        "[]",
        &[("listRule", "public", ""), ("viewRule", "expr", "n >")],
    );
    let r = post(&mut b, "/_/collections/new", &f).await;
    assert_eq!(r.status, 400, "{}", r.body);
    r.assert_has("JSON syntax error at line 3, column 3");
    r.assert_has("id=\"f-schema-error\"");
    // Rule errors are reported in the same round, not after the JSON is fixed.
    r.assert_has("id=\"f-viewRule-error\"");
    // Everything typed is kept.
    r.assert_has("value=\"drafts\"");
    r.assert_has("  &#34;type&#34;: &#34;object&#34;\n  &#34;properties&#34;: {}");
    assert_eq!(selected_mode(&r, "listRule"), "public");
    assert_eq!(app.get("/api/collections/drafts").await.status, 404);

    // Broken JSON in the indexes box, too.
    let f = fields("drafts", "base", SCHEMA, "[{\"name\": }]", &[]);
    let r = post(&mut b, "/_/collections/new", &f).await;
    assert_eq!(r.status, 400);
    r.assert_has("id=\"f-indexes-error\"");
    r.assert_has("JSON syntax error at line 1, column 11");
    assert_eq!(app.get("/api/collections/drafts").await.status, 404);
}

#[actix_web::test]
async fn an_invalid_rule_is_shown_with_the_parsers_message_and_position() {
    let app = spawn_app().await;
    let mut b = Browser::login(&app).await;
    // What the API says about the same rule.
    let api = app
        .post(
            "/api/collections",
            json!({"name": "drafts", "schema": {"type": "object"}, "listRule": "title =="}),
        )
        .await;
    assert_eq!(api.status, 400);
    let message = api.body["data"]["listRule"]["message"].as_str().unwrap().to_owned();
    assert!(message.starts_with("invalid filter at position 6:"), "{message}");

    let f = fields("drafts", "base", SCHEMA, "[]", &[("listRule", "expr", "title ==")]);
    let r = post(&mut b, "/_/collections/new", &f).await;
    assert_eq!(r.status, 400, "{}", r.body);
    r.assert_has(&format!(
        "<div class=\"field-error\" id=\"f-listRule-error\" role=\"alert\">{}</div>",
        esc(&message)
    ));
    // The caret marks the spot the parser names.
    r.assert_has("<code>title <mark>=</mark>=</code>");
    r.assert_has("value=\"title ==\"");
    assert_eq!(app.get("/api/collections/drafts").await.status, 404);

    // A select contradicting its box is explained, not guessed.
    let f = fields("drafts", "base", SCHEMA, "[]", &[("viewRule", "locked", "n > 1")]);
    let r = post(&mut b, "/_/collections/new", &f).await;
    assert_eq!(r.status, 400);
    r.assert_has("id=\"f-viewRule-error\"");
    r.assert_has("choose “Only when…” to use the expression");
    let f = fields("drafts", "base", SCHEMA, "[]", &[("viewRule", "expr", "  ")]);
    let r = post(&mut b, "/_/collections/new", &f).await;
    assert_eq!(r.status, 400);
    r.assert_has("Write an expression");
    assert_eq!(app.get("/api/collections/drafts").await.status, 404);
}

#[actix_web::test]
async fn schema_name_and_index_errors_are_shown_beside_their_fields() {
    let app = spawn_app().await;
    let mut b = Browser::login(&app).await;
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        ("drafts", "base", r#"{"type": "string"}"#, "[]", "f-schema-error"),
        (
            "drafts",
            "base",
            r#"{"type": "object", "properties": {"id": {"type": "string"}}}"#,
            "[]",
            "f-schema-error",
        ),
        ("drafts-1", "base", SCHEMA, "[]", "f-name-error"),
        ("users", "base", SCHEMA, "[]", "f-name-error"),
        ("_drafts", "base", SCHEMA, "[]", "f-name-error"),
        (
            "drafts",
            "base",
            SCHEMA,
            r#"[{"name": "x", "fields": []}]"#,
            "f-indexes-error",
        ),
        ("drafts", "robot", SCHEMA, "[]", "type"),
    ];
    for (name, kind, schema, indexes, marker) in cases {
        let r = post(&mut b, "/_/collections/new", &fields(name, kind, schema, indexes, &[])).await;
        assert_eq!(r.status, 400, "{name} {schema}: {}", r.body);
        if *marker == "type" {
            r.assert_has("Choose “base”");
        } else {
            r.assert_has(&format!("id=\"{marker}\""));
        }
    }
    let r = post(
        &mut b,
        "/_/collections/new",
        &fields("drafts", "base", r#"{"type": "string"}"#, "[]", &[]),
    )
    .await;
    r.assert_has("set &#34;type&#34;: &#34;object&#34; at its root");
    let r = post(
        &mut b,
        "/_/collections/new",
        &fields("users", "base", SCHEMA, "[]", &[]),
    )
    .await;
    r.assert_has("A collection with this name already exists.");
    let r = post(
        &mut b,
        "/_/collections/new",
        &fields("drafts", "base", SCHEMA, r#"[{"name": "x", "fields": []}]"#, &[]),
    )
    .await;
    r.assert_has("Index #1: an index needs 1 to 8 fields");
    assert_eq!(app.get("/api/collections/drafts").await.status, 404);
}
