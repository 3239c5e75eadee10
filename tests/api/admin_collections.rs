//! Dashboard collections pages over HTTP: list, create, edit, dry run,
//! indexes with build progress, delete with typed confirmation; CSRF,
//! sessions and escaping. Effects are checked through the JSON API.

use serde_json::{json, Value};

use super::admin_support::{Browser, Html};
use super::helpers::{spawn_app, TestApp};

/// The create form: values, the three kinds of rule, inline errors.
mod create;

const SCHEMA: &str = r#"{"type": "object", "properties": {"title": {"type": "string"}, "n": {"type": "integer"}}, "additionalProperties": false}"#;

/// HTML-escapes like the templates (askama) do, to look for a message in a page.
fn esc(s: &str) -> String {
    s.replace('&', "&#38;")
        .replace('<', "&#60;")
        .replace('>', "&#62;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// The option selected in the mode select of rule `key`.
fn selected_mode<'a>(page: &'a Html, key: &str) -> &'a str {
    let start = page
        .body
        .find(&format!("name=\"{key}_mode\""))
        .unwrap_or_else(|| panic!("no select for {key}"));
    let select = &page.body[start..start + page.body[start..].find("</select>").unwrap()];
    let at = select
        .find(" selected>")
        .unwrap_or_else(|| panic!("nothing selected for {key}"));
    let value_at = select[..at].rfind("value=\"").unwrap() + 7;
    &select[value_at..at - 1]
}

/// A complete collection form: `rules` are `(key, mode, text)`.
fn fields(name: &str, kind: &str, schema: &str, indexes: &str, rules: &[(&str, &str, &str)]) -> Vec<(String, String)> {
    let mut out = vec![
        ("name".to_owned(), name.to_owned()),
        ("type".to_owned(), kind.to_owned()),
        ("schema".to_owned(), schema.to_owned()),
        ("indexes".to_owned(), indexes.to_owned()),
    ];
    for key in ["listRule", "viewRule", "createRule", "updateRule", "deleteRule"] {
        let (mode, text) = rules.iter().find(|r| r.0 == key).map_or(("locked", ""), |r| (r.1, r.2));
        out.push((format!("{key}_mode"), mode.to_owned()));
        out.push((key.to_owned(), text.to_owned()));
    }
    for (key, mode, text) in rules.iter().filter(|r| r.0 == "authRule" || r.0 == "manageRule") {
        out.push((format!("{key}_mode"), mode.to_string()));
        out.push((key.to_string(), text.to_string()));
    }
    out
}

async fn post(b: &mut Browser, path: &str, f: &[(String, String)]) -> Html {
    let refs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    b.post(path, &refs).await
}

async fn notes(app: &TestApp, titles: &[&str]) -> Vec<String> {
    app.create_collection(json!({"name": "notes", "schema": serde_json::from_str::<Value>(SCHEMA).unwrap()}))
        .await;
    let mut ids = Vec::new();
    for t in titles {
        let r = app.post("/api/collections/notes/records", json!({"title": t})).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        ids.push(r.body["id"].as_str().unwrap().to_owned());
    }
    ids
}

/// Polls the JSON API until no index of `coll` is building; returns `indexStatus`.
async fn wait_for_builds(app: &TestApp, coll: &str) -> Value {
    for _ in 0..5000 {
        let c = app.get(&format!("/api/collections/{coll}")).await;
        let status = c.body.get("indexStatus").cloned().unwrap_or(json!({}));
        if !status.as_object().unwrap().values().any(|s| s["state"] == "building") {
            return status;
        }
        actix_web::rt::task::yield_now().await;
    }
    panic!("index build did not finish");
}

#[actix_web::test]
async fn list_shows_collections_with_types_counts_and_links() {
    let app = spawn_app().await;
    let mut b = Browser::login(&app).await;
    let page = b.get("/_/collections").await;
    assert_eq!(page.status, 200);
    page.assert_has("Create your first collection");
    page.assert_has("href=\"/_/collections/new\"");

    notes(&app, &["a", "b"]).await;
    let odd = app.create_collection(json!({"name": "new"})).await;
    app.patch(
        "/api/collections/notes",
        json!({"indexes": [{"name": "by_n", "fields": ["n"]}]}),
    )
    .await;
    let page = b.get("/_/collections").await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("Create your first collection"));
    for name in ["users", "_superusers", "notes"] {
        page.assert_has(&format!("<strong>{name}</strong>"));
        page.assert_has(&format!("href=\"/_/collections/{name}/records\""));
        page.assert_has(&format!("href=\"/_/collections/{name}\""));
    }
    page.assert_has("system</span>");
    page.assert_has("auth</span>");
    // Record counts: notes 2, _superusers 1 (the test superuser), users 0.
    let row = |name: &str| {
        let start = page.body.find(&format!("<strong>{name}</strong>")).unwrap();
        let end = start + page.body[start..].find("</tr>").unwrap();
        page.body[start..end].to_owned()
    };
    assert!(row("notes").contains("<td class=\"num\">2</td>"), "{}", row("notes"));
    assert!(
        row("_superusers").contains("<td class=\"num\">1</td>"),
        "{}",
        row("_superusers")
    );
    assert!(row("users").contains("<td class=\"num\">0</td>"), "{}", row("users"));
    // A collection called "new" is edited through its id (its name is the create page).
    page.assert_has(&format!("href=\"/_/collections/{}\"", odd["id"].as_str().unwrap()));
    let edit = b.get(&format!("/_/collections/{}", odd["id"].as_str().unwrap())).await;
    assert_eq!(edit.status, 200);
    edit.assert_has("value=\"new\"");
}

#[actix_web::test]
async fn pages_and_posts_need_a_session() {
    let app = spawn_app().await;
    notes(&app, &["a"]).await;
    let mut b = Browser::new(&app);
    for path in ["/_/collections", "/_/collections/new", "/_/collections/notes"] {
        let r = b.get(path).await;
        assert_eq!(r.status, 303, "{path}");
        assert!(r.location().starts_with("/_/login?next="), "{path}: {}", r.location());
    }
    let f = fields("other", "base", SCHEMA, "[]", &[]);
    let mut with_token: Vec<(&str, &str)> = vec![("_csrf", "whatever")];
    with_token.extend(f.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    with_token.push(("confirm", "notes"));
    for path in [
        "/_/collections/new",
        "/_/collections/notes",
        "/_/collections/notes/dry-run",
        "/_/collections/notes/delete",
    ] {
        let r = b.send_form(path, &with_token).await;
        assert_eq!((r.status, r.location()), (303, "/_/login"), "{path}");
    }
    assert_eq!(app.get("/api/collections/other").await.status, 404);
    assert_eq!(app.get("/api/collections/notes").await.status, 200);
}

#[actix_web::test]
async fn posts_without_the_csrf_token_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    notes(&app, &["a"]).await;
    let mut b = Browser::login(&app).await;
    let before = app.get("/api/collections/notes").await.body;
    let f = fields("renamed", "base", SCHEMA, "[]", &[("listRule", "public", "")]);
    let mut all: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    all.push(("confirm", "notes"));
    for path in [
        "/_/collections/new",
        "/_/collections/notes",
        "/_/collections/notes/dry-run",
        "/_/collections/notes/delete",
        "/_/collections/notes/indexes/dismiss",
    ] {
        let r = b.send_form(path, &all).await;
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        let mut wrong = all.clone();
        wrong.push(("_csrf", "not the token"));
        assert_eq!(b.send_form(path, &wrong).await.status, 403, "{path}");
    }
    assert_eq!(app.get("/api/collections/notes").await.body, before);
    assert_eq!(app.get("/api/collections/renamed").await.status, 404);
}

#[actix_web::test]
async fn edit_page_saves_with_patch_semantics_and_reports_refusals() {
    let app = spawn_app().await;
    notes(&app, &["a"]).await;
    let mut b = Browser::login(&app).await;
    let page = b.get("/_/collections/notes").await;
    assert_eq!(page.status, 200);
    page.assert_has("value=\"notes\"");
    page.assert_has("&#34;title&#34;: {\n      &#34;type&#34;: &#34;string&#34;\n    }");
    page.assert_has("formaction=\"/_/collections/notes/dry-run\"");
    page.assert_has("data-confirm-match=\"notes\"");

    let schema = r#"{"type": "object", "properties": {"title": {"type": "string"}, "n": {"type": "integer"}, "body": {"type": "string"}}}"#;
    let f = fields(
        "notes",
        "base",
        schema,
        "[]",
        &[("listRule", "expr", "n > 0"), ("viewRule", "public", "")],
    );
    let r = post(&mut b, "/_/collections/notes", &f).await;
    assert_eq!((r.status, r.location()), (303, "/_/collections/notes"), "{}", r.body);
    let page = b.get("/_/collections/notes").await;
    page.assert_has("Saved.");
    let c = app.get("/api/collections/notes").await.body;
    assert_eq!(c["listRule"], "n > 0");
    assert_eq!(c["viewRule"], "");
    assert_eq!(c["createRule"], Value::Null);
    assert!(c["schema"]["properties"]["body"].is_object());

    // Renaming follows the new name.
    let f = fields("memos", "base", schema, "[]", &[]);
    let r = post(&mut b, "/_/collections/notes", &f).await;
    assert_eq!((r.status, r.location()), (303, "/_/collections/memos"), "{}", r.body);
    assert_eq!(app.get("/api/collections/memos").await.body["listRule"], Value::Null);

    // A refused save keeps the typed values and changes nothing.
    let before = app.get("/api/collections/memos").await.body;
    let f = fields(
        "memos",
        "base",
        "{\"type\": \"object\"}",
        "[]",
        &[("deleteRule", "expr", "n >")],
    );
    let r = post(&mut b, "/_/collections/memos", &f).await;
    assert_eq!(r.status, 400, "{}", r.body);
    r.assert_has("id=\"f-deleteRule-error\"");
    r.assert_has("Not saved");
    r.assert_has("value=\"n &#62;\"");
    assert_eq!(app.get("/api/collections/memos").await.body, before);

    // A system collection cannot be renamed: the API's reason is shown.
    let su = app.get("/api/collections/_superusers").await.body;
    let page = b.get("/_/collections/_superusers").await;
    page.assert_has("cannot be renamed");
    page.assert_has("System collections cannot be deleted");
    assert!(!page.body.contains("action=\"/_/collections/_superusers/delete\""));
    let f = fields(
        "admins",
        "auth",
        "{\"type\": \"object\"}",
        "[]",
        &[("authRule", "public", "")],
    );
    let r = post(&mut b, "/_/collections/_superusers", &f).await;
    assert_eq!(r.status, 400);
    r.assert_has("System collections cannot be renamed.");
    assert_eq!(app.get("/api/collections/_superusers").await.body, su);

    assert_eq!(b.get("/_/collections/nothing_here").await.status, 404);
    assert_eq!(post(&mut b, "/_/collections/nothing_here", &f).await.status, 404);
}

#[actix_web::test]
async fn dry_run_counts_violating_records_and_saves_nothing() {
    let app = spawn_app().await;
    let ids = notes(&app, &["short", "tiny", "this one is far too long"]).await;
    let mut b = Browser::login(&app).await;
    let before = app.get("/api/collections/notes").await.body;
    let proposed = r#"{"type": "object", "properties": {"title": {"type": "string", "maxLength": 10}}}"#;
    let f = fields("notes", "base", proposed, "[]", &[("listRule", "public", "")]);
    let r = post(&mut b, "/_/collections/notes/dry-run", &f).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.assert_has("Dry run: nothing was saved");
    r.assert_has("1 of 3 records violate the proposed schema.");
    r.assert_has(&format!("<code>{}</code>", ids[2]));
    assert!(!r.body.contains(&format!("<code>{}</code>", ids[0])));
    r.assert_has("<code>title</code>: Must be at most 10 characters.");
    // The form keeps the proposal (to save it next) and says it is unsaved.
    r.assert_has("&#34;maxLength&#34;: 10");
    r.assert_has("Not saved");
    assert_eq!(selected_mode(&r, "listRule"), "public");
    assert_eq!(app.get("/api/collections/notes").await.body, before);

    let f = fields("notes", "base", SCHEMA, "[]", &[]);
    let r = post(&mut b, "/_/collections/notes/dry-run", &f).await;
    assert_eq!(r.status, 200);
    r.assert_has("All 3 records fit the proposed schema.");

    // A proposal that is not a valid schema: inline error, 400.
    let f = fields("notes", "base", "{\"type\": ", "[]", &[]);
    let r = post(&mut b, "/_/collections/notes/dry-run", &f).await;
    assert_eq!(r.status, 400);
    r.assert_has("JSON syntax error at line 1");
    let f = fields("notes", "base", "[1]", "[]", &[]);
    let r = post(&mut b, "/_/collections/notes/dry-run", &f).await;
    assert_eq!(r.status, 400);
    r.assert_has("id=\"f-schema-error\"");
    assert_eq!(app.get("/api/collections/notes").await.body, before);
}

#[actix_web::test]
async fn indexes_added_through_the_form_show_their_build_status_and_failures() {
    let app = spawn_app().await;
    let schema = r#"{"type": "object", "properties": {"slug": {"type": "string"}, "n": {"type": "integer"}}}"#;
    app.create_collection(json!({"name": "pages", "schema": serde_json::from_str::<Value>(schema).unwrap()}))
        .await;
    for i in 0..30 {
        let r = app
            .post(
                "/api/collections/pages/records",
                json!({"slug": format!("s{i}"), "n": i % 3}),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    let mut b = Browser::login(&app).await;
    let page = b.get("/_/collections/pages").await;
    page.assert_has("No indexes of your own");
    let indexes = r#"[{"name": "by_slug", "fields": ["slug"], "unique": true}, {"name": "n_unique", "fields": ["n"], "unique": true}]"#;
    let r = post(
        &mut b,
        "/_/collections/pages",
        &fields("pages", "base", schema, indexes, &[]),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = b.get("/_/collections/pages").await;
    page.assert_has("<code>by_slug</code>");
    page.assert_has("<code>n_unique</code>");
    assert!(
        page.body.contains("badge-warn\">building") || page.body.contains("badge-ok\">ready"),
        "{}",
        page.body
    );
    if page.body.contains("badge-warn\">building") {
        page.assert_has("data-reload-seconds=\"2\"");
        page.assert_has("<progress value=");
    }

    let status = wait_for_builds(&app, "pages").await;
    assert_eq!(status["n_unique"]["state"], "failed", "{status}");
    let page = b.get("/_/collections/pages").await;
    assert!(!page.body.contains("data-reload-seconds"));
    let by_slug = &page.body[page.body.find("<code>by_slug</code>").unwrap()..];
    assert!(by_slug[..by_slug.find("</tr>").unwrap()].contains("badge-ok\">ready"));
    page.assert_has("badge-danger\">failed");
    page.assert_has("<span class=\"error-text\">two records have the same value for n</span>");
    let list = b.get("/_/collections").await;
    list.assert_has("1 failed");

    // While a build runs, the page shows its progress and refreshes itself
    // (a build is marked as running here, as `update` does before building).
    let cid = app.get("/api/collections/pages").await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    basalt::core::indexing::mark_building(&app.state, &cid, "by_slug");
    let page = b.get("/_/collections/pages").await;
    page.assert_has("badge-warn\">building</span> 0% (0 of 30)");
    page.assert_has("<progress value=\"0\" max=\"30\"");
    page.assert_has("class=\"table-wrap index-status\" data-reload-seconds=\"2\"");
    b.get("/_/collections").await.assert_has("1 building");
    // Not on a page showing unsaved edits (a reload would lose them).
    let r = post(
        &mut b,
        "/_/collections/pages/dry-run",
        &fields("pages", "base", schema, indexes, &[]),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(!r.body.contains("data-reload-seconds"));
    r.assert_has("to see the progress");
    basalt::core::indexing::forget(&app.state, &cid, "by_slug");

    // Its status can be dismissed once read.
    let r = b
        .post("/_/collections/pages/indexes/dismiss", &[("index", "n_unique")])
        .await;
    assert_eq!(r.status, 303);
    let page = b.get("/_/collections/pages").await;
    assert!(!page.body.contains("<code>n_unique</code>"), "{}", page.body);
    let c = app.get("/api/collections/pages").await.body;
    assert!(c.get("indexStatus").is_none(), "{c}");
    // A ready index cannot be "dismissed".
    let r = b
        .post("/_/collections/pages/indexes/dismiss", &[("index", "by_slug")])
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(
        app.get("/api/collections/pages").await.body["indexes"][0]["name"],
        "by_slug"
    );
}

#[actix_web::test]
async fn delete_needs_the_typed_name() {
    let app = spawn_app().await;
    notes(&app, &["a", "b"]).await;
    let mut b = Browser::login(&app).await;
    b.get("/_/collections/notes").await;
    for wrong in ["", "Notes", "note", "notes "] {
        let r = b.post("/_/collections/notes/delete", &[("confirm", wrong)]).await;
        assert_eq!(r.status, 400, "{wrong:?}");
        r.assert_has("id=\"f-confirm-error\"");
        r.assert_has("Nothing was deleted.");
        assert_eq!(app.get("/api/collections/notes").await.status, 200);
    }
    let r = b.post("/_/collections/notes/delete", &[("confirm", "notes")]).await;
    assert_eq!((r.status, r.location()), (303, "/_/collections"));
    assert_eq!(app.get("/api/collections/notes").await.status, 404);
    let list = b.get("/_/collections").await;
    list.assert_has("Deleted collection “notes” and its 2 record(s).");
    assert!(!list.body.contains("<strong>notes</strong>"));

    // System collections cannot be deleted, whatever is typed.
    let r = b
        .post("/_/collections/_superusers/delete", &[("confirm", "_superusers")])
        .await;
    assert_eq!(r.status, 400);
    r.assert_has("System collections cannot be deleted.");
    assert_eq!(app.get("/api/collections/_superusers").await.status, 200);
}

#[actix_web::test]
async fn stored_markup_is_escaped_on_the_list_and_edit_pages() {
    let app = spawn_app().await;
    let xss = "<script>alert(1)</script>";
    app.create_collection(json!({
        "name": "xss",
        "schema": {"type": "object", "description": xss, "properties": {"title": {"type": "string", "description": xss}}},
        "listRule": format!("title = \"{xss}\""),
    }))
    .await;
    let mut b = Browser::login(&app).await;
    for path in ["/_/collections", "/_/collections/xss"] {
        let page = b.get(path).await;
        assert_eq!(page.status, 200);
        page.assert_has(&esc(xss));
        assert!(!page.body.contains(xss), "{path} has raw markup");
    }
    // Submitted values coming back in a refused form are escaped as well.
    let f = fields(xss, "base", SCHEMA, "[]", &[("listRule", "expr", xss)]);
    let r = post(&mut b, "/_/collections/new", &f).await;
    assert_eq!(r.status, 400);
    r.assert_has(&format!("value=\"{}\"", esc(xss)));
    assert!(!r.body.contains(xss));
}
