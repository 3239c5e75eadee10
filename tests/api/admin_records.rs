//! Dashboard records browser over HTTP: the table (columns, filter, sort,
//! page and cursor paging), the record form generated from the JSON Schema,
//! raw JSON, edit, delete, bulk delete (selected, and the background job),
//! auth user actions, CSRF, login, escaping.

use serde_json::{json, Value};

use super::admin_support::{Browser, Html};
use super::helpers::{spawn_app, TestApp};

mod bulk;
mod form;
mod list;
mod users;

const LIST: &str = "/_/collections/posts/records";

/// Creates records through the batch API (100 per call).
async fn seed(app: &TestApp, coll: &str, bodies: Vec<Value>) -> Vec<String> {
    let mut ids = Vec::new();
    for chunk in bodies.chunks(100) {
        let requests: Vec<Value> = chunk
            .iter()
            .map(|b| json!({"method": "POST", "url": format!("/api/collections/{coll}/records"), "body": b}))
            .collect();
        let r = app.post("/api/batch", json!({ "requests": requests })).await;
        assert_eq!(r.status, 200, "seed: {:?}", r.body);
        for item in r.body.as_array().unwrap() {
            ids.push(item["body"]["id"].as_str().unwrap().to_owned());
        }
    }
    ids
}

/// Record ids in table order.
fn ids_in(page: &Html) -> Vec<String> {
    page.body
        .split("data-record-id=\"")
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].to_owned())
        .collect()
}

/// Undoes askama's escaping of an attribute value (it writes numeric
/// entities: `&#38;` for `&`, `&#60;` for `<`…).
fn unescape(s: &str) -> String {
    s.replace("&#39;", "'").replace("&#34;", "\"").replace("&#38;", "&")
}

async fn total(app: &TestApp, coll: &str, filter: &str) -> i64 {
    let r = app
        .get(&format!(
            "/api/collections/{coll}/records?perPage=1&filter={}",
            enc(filter)
        ))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["totalItems"].as_i64().unwrap()
}

fn enc(s: &str) -> String {
    super::admin_support::form_encode(&[("x", s)])[2..].to_owned()
}

async fn record(app: &TestApp, coll: &str, id: &str) -> Value {
    let r = app.get(&format!("/api/collections/{coll}/records/{id}")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
}

/// Mails to `to` in the dev outbox.
fn mails_to(app: &TestApp, to: &str) -> Vec<String> {
    std::fs::read_dir(app.dir.join("outbox"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .filter(|m| m.contains(&format!("To: {to}\r\n")))
                .collect()
        })
        .unwrap_or_default()
}

/// The id at the end of a record page's URL (after a create).
fn id_from(location: &str) -> String {
    location.rsplit('/').next().unwrap().to_owned()
}

#[actix_web::test]
async fn every_post_needs_the_csrf_token() {
    let app = spawn_app().await;
    app.posts().await;
    let ids = seed(
        &app,
        "posts",
        vec![json!({"title": "Keep me"}), json!({"title": "Me too"})],
    )
    .await;
    let r = app
        .post(
            "/api/collections/users/records",
            json!({"email": "ben@example.com", "password": "password-1", "passwordConfirm": "password-1"}),
        )
        .await;
    let user = r.body["id"].as_str().unwrap().to_owned();
    let users = "/_/collections/users/records";
    let mut b = Browser::login(&app).await;
    let posts: Vec<(String, Vec<(&str, &str)>)> = vec![
        (format!("{LIST}/new"), vec![("title", "new")]),
        (
            format!("{LIST}/new"),
            vec![("_raw", "1"), ("body", "{\"title\":\"new\"}")],
        ),
        (format!("{LIST}/{}", ids[0]), vec![("title", "changed")]),
        (format!("{LIST}/{}/delete", ids[0]), vec![]),
        (format!("{LIST}/bulk-delete"), vec![("ids", &ids[0]), ("ids", &ids[1])]),
        (
            format!("{LIST}/delete-matching"),
            vec![("filter", "title != ''"), ("expected", "2")],
        ),
        (format!("{users}/{user}/verify"), vec![]),
        (format!("{users}/{user}/send-verification"), vec![]),
        (format!("{users}/{user}/send-reset"), vec![]),
        (format!("{users}/{user}/impersonate"), vec![]),
    ];
    for (path, fields) in &posts {
        let r = b.send_form(path, fields).await;
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        let mut wrong = vec![("_csrf", "not-the-token")];
        wrong.extend(fields.iter().copied());
        let r = b.send_form(path, &wrong).await;
        assert_eq!(r.status, 403, "{path} with a wrong token");
        assert!(!r.body.contains("impersonate-token"));
    }
    // A cross-site post is refused even with the token.
    let r = b
        .post_with_headers(
            &format!("{LIST}/{}/delete", ids[0]),
            &[],
            &[("Origin", "https://evil.example")],
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(total(&app, "posts", "").await, 2);
    assert_eq!(record(&app, "posts", &ids[0]).await["title"], "Keep me");
    assert_eq!(record(&app, "users", &user).await["verified"], json!(false));
    assert!(mails_to(&app, "ben@example.com").is_empty());
}

#[actix_web::test]
async fn stored_script_is_shown_as_text() {
    let app = spawn_app().await;
    app.posts().await;
    let xss = "<script>alert(1)</script>";
    let ids = seed(&app, "posts", vec![json!({"title": xss, "tags": [xss]})]).await;
    let mut b = Browser::login(&app).await;
    let escaped = "&#60;script&#62;alert(1)&#60;/script&#62;";
    let list = b.get(LIST).await;
    let page = b.get(&format!("{LIST}/{}", ids[0])).await;
    let filtered = b
        .get(&format!("{LIST}?filter={}", enc(&format!("title = '{xss}'"))))
        .await;
    let bad_filter = b.get(&format!("{LIST}?filter={}", enc(&format!("{xss} =")))).await;
    let form_error = b.post(&format!("{LIST}/new"), &[("title", xss), ("views", xss)]).await;
    assert_eq!(form_error.status, 400);
    for (what, p) in [
        ("list", &list),
        ("record", &page),
        ("filter", &filtered),
        ("bad filter", &bad_filter),
        ("form", &form_error),
    ] {
        assert!(p.body.contains(escaped), "{what}: no escaped text");
        assert!(!p.body.contains("<script>alert"), "{what}: raw script tag");
    }
    // The JSON view escapes it inside the <pre> too.
    page.assert_has("&#34;title&#34;: &#34;&#60;script&#62;alert(1)&#60;/script&#62;&#34;");
    assert_eq!(ids_in(&filtered), ids);
}
