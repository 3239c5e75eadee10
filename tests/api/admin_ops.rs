//! Dashboard: the request log (`/_/logs`) and the `logs` settings.
//!
//! Entries reach the log through a background thread; tests wait for it
//! with `RequestLog::flush` (everything sent before it is written), never
//! with sleeps.

use awc::http::Method;
use serde_json::json;

use super::admin_support::{Browser, Html};
use super::helpers::{spawn_app, TestApp};

/// Waits until every request answered so far is in the log.
async fn flush(app: &TestApp) {
    app.state.store.logs().flush().await;
}

/// The table rows of a logs page (one string of HTML per `<tr>` in tbody).
fn rows(page: &Html) -> Vec<&str> {
    let Some(start) = page.body.find("<tbody>") else {
        return Vec::new();
    };
    let end = page.body[start..]
        .find("</tbody>")
        .map_or(page.body.len(), |e| start + e);
    page.body[start..end].split("<tr>").skip(1).collect()
}

/// The one row containing `needle` (fails if none or several).
#[track_caller]
fn row_with<'a>(page: &'a Html, needle: &str) -> &'a str {
    let found: Vec<&str> = rows(page).into_iter().filter(|r| r.contains(needle)).collect();
    assert_eq!(found.len(), 1, "rows with {needle:?}: {found:#?}\n{}", page.body);
    found[0]
}

async fn superuser_id(app: &TestApp) -> String {
    let r = app.get("/api/collections/_superusers/records").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["items"][0]["id"].as_str().expect("superuser id").to_owned()
}

/// A `users` record and its token.
async fn user(app: &TestApp) -> (String, String) {
    let r = app
        .post(
            "/api/collections/users/records",
            json!({"email": "ann@example.com", "password": "password1", "passwordConfirm": "password1"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let id = r.body["id"].as_str().expect("id").to_owned();
    (id, app.login("users", "ann@example.com", "password1").await)
}

#[actix_web::test]
async fn requests_show_with_method_path_status_ip_and_caller_but_no_query_string() {
    let app = spawn_app().await;
    app.posts().await;
    let su = superuser_id(&app).await;
    let (uid, user_token) = user(&app).await;
    let list = "/api/collections/posts/records";
    let r = app
        .call(Method::GET, &format!("{list}?token=secret-guest-value"), None, None)
        .await;
    assert_eq!(r.status, 200);
    let r = app
        .call(
            Method::GET,
            &format!("{list}/nope?x=secret-user-value"),
            None,
            Some(&user_token),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = app.post(list, json!({"title": "hello"})).await;
    assert_eq!(r.status, 200);
    flush(&app).await;

    let mut b = Browser::login(&app).await;
    let page = b.get("/_/logs?path=%2Fapi%2Fcollections%2Fposts%2Frecords").await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.assert_has("Request logs");
    assert_eq!(rows(&page).len(), 3, "{}", page.body);
    let guest = row_with(&page, ">guest<");
    for part in [">GET<", &format!(">{list}<"), ">200<", ">127.0.0.1<"] {
        assert!(guest.contains(part), "{part} missing in {guest}");
    }
    let by_user = row_with(&page, &format!(">users:{uid}<"));
    for part in [">GET<", &format!(">{list}/nope<"), "badge-warn\">404<"] {
        assert!(by_user.contains(part), "{part} missing in {by_user}");
    }
    let by_su = row_with(&page, &format!(">superuser:{su}<"));
    for part in [">POST<", "badge-ok\">200<"] {
        assert!(by_su.contains(part), "{part} missing in {by_su}");
    }
    // Newest first: the superuser's POST came last.
    let order: Vec<bool> = rows(&page).iter().map(|r| r.contains(">POST<")).collect();
    assert_eq!(order, [true, false, false]);
    let body = &page.body;
    for secret in [
        "secret-guest-value",
        "secret-user-value",
        "token=",
        &user_token,
        &app.token,
    ] {
        assert!(!body.contains(secret), "{secret} leaked into the logs page");
    }

    // Dashboard pages are logged too, as the logged-in superuser.
    flush(&app).await;
    let page = b.get("/_/logs?path=%2F_%2Flogs").await;
    // (The earlier view, logged without its query string.)
    let row = row_with(&page, ">/_/logs<");
    assert!(row.contains(&format!(">superuser:{su}<")), "{row}");
    assert!(!page.body.contains("%2Fposts"), "{}", page.body);
}

#[actix_web::test]
async fn filters_narrow_the_table() {
    let app = spawn_app().await;
    app.posts().await;
    let (uid, user_token) = user(&app).await;
    assert_eq!(app.guest_get("/api/health").await.status, 200);
    assert_eq!(app.guest_get("/api/collections/nope/records").await.status, 404);
    let r = app
        .guest_post("/api/collections/posts/records", json!({"views": -1}))
        .await;
    assert_eq!(r.status, 400);
    let r = app
        .call(
            Method::DELETE,
            "/api/collections/posts/records/gone",
            None,
            Some(&user_token),
        )
        .await;
    assert_eq!(r.status, 404);
    flush(&app).await;
    let mut b = Browser::login(&app).await;
    let paths = |page: &Html| -> Vec<String> {
        rows(page)
            .iter()
            .filter_map(|r| {
                let start = r.find("<td class=\"cell\" title=\"")? + 24;
                Some(r[start..start + r[start..].find('"')?].to_owned())
            })
            .collect()
    };
    // Only API traffic, to keep the dashboard's own requests out.
    let api = "path=%2Fapi%2F";

    let all = b.get(&format!("/_/logs?{api}")).await;
    assert!(paths(&all).contains(&"/api/health".to_owned()), "{}", all.body);

    let page = b.get(&format!("/_/logs?{api}&status=4xx")).await;
    assert_eq!(page.status, 200);
    let got = paths(&page);
    assert_eq!(
        got,
        vec![
            "/api/collections/posts/records/gone",
            "/api/collections/posts/records",
            "/api/collections/nope/records"
        ],
        "{}",
        page.body
    );
    // The form shows the chosen filter again.
    page.assert_has("<option value=\"4xx\" selected>");

    let page = b.get(&format!("/_/logs?{api}&status=errors&method=DELETE")).await;
    assert_eq!(paths(&page), vec!["/api/collections/posts/records/gone"]);
    let page = b.get(&format!("/_/logs?{api}&status=2xx&method=get")).await;
    assert!(paths(&page).iter().all(|p| !p.contains("nope") && !p.contains("gone")));
    assert!(paths(&page).contains(&"/api/health".to_owned()));
    let page = b.get("/_/logs?path=NOPE").await;
    assert_eq!(
        paths(&page),
        vec!["/api/collections/nope/records"],
        "path filter ignores case"
    );
    let page = b.get(&format!("/_/logs?{api}&auth=users%3A")).await;
    let rows_by_user = rows(&page);
    assert!(!rows_by_user.is_empty());
    assert!(rows_by_user.iter().all(|r| r.contains(&format!("users:{uid}"))));
    let page = b.get("/_/logs?status=5xx").await;
    assert!(rows(&page).is_empty());
    page.assert_has("No requests logged in this window");
    page.assert_has("clear the filters");
    let page = b.get(&format!("/_/logs?{api}&ip=10.99.99.99")).await;
    page.assert_has("No requests logged in this window");
    let page = b.get(&format!("/_/logs?{api}&ip=127.0.0.1&window=15m")).await;
    assert!(paths(&page).contains(&"/api/health".to_owned()));
    page.assert_has("<option value=\"15m\" selected>");
}

#[actix_web::test]
async fn stats_show_the_error_rate_and_the_chart_has_bars() {
    let app = spawn_app().await;
    app.posts().await;
    for id in ["a", "b", "c"] {
        let r = app.guest_get(&format!("/api/collections/posts/records/{id}")).await;
        assert_eq!(r.status, 404);
    }
    assert_eq!(app.guest_get("/api/collections/posts/records").await.status, 200);
    flush(&app).await;
    let mut b = Browser::login(&app).await;
    for window in ["1h", "15m", "24h", "7d"] {
        let page = b
            .get(&format!(
                "/_/logs?window={window}&path=%2Fapi%2Fcollections%2Fposts%2Frecords"
            ))
            .await;
        assert_eq!(page.status, 200, "{window}: {}", page.body);
        assert_eq!(rows(&page).len(), 4, "{window}");
        // 3 of 4 requests failed.
        page.assert_has("Error rate (≥ 400)</span><b>75%</b>");
        page.assert_has("Server errors (≥ 500)</span><b>0%</b>");
        page.assert_has("Requests</span><b>4</b>");
        page.assert_has("<svg class=\"chart\"");
        page.assert_has("role=\"img\"");
        page.assert_has("4 requests, 3 with status 400 or above");
        page.assert_has("<rect class=\"bar\" x=");
        page.assert_has("<rect class=\"bar-err\" x=");
        page.assert_has("<g class=\"bucket\"><title>");
        assert!(!page.body.contains("style="), "no inline styles (CSP)");
    }
    // Nothing matches: no chart, an empty state telling what to do.
    let page = b.get("/_/logs?path=no-such-path").await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("<svg class=\"chart\""));
    page.assert_has("No requests logged in this window");
}

#[actix_web::test]
async fn older_link_pages_through_the_window() {
    let app = spawn_app().await;
    for _ in 0..105 {
        assert_eq!(app.guest_get("/api/health").await.status, 200);
    }
    flush(&app).await;
    let mut b = Browser::login(&app).await;
    let first = b.get("/_/logs?path=%2Fapi%2Fhealth&method=GET").await;
    assert_eq!(rows(&first).len(), 100);
    first.assert_has("Requests</span><b>105</b>");
    let older = {
        let at = first.body.find("rel=\"next\"").expect("older link");
        let href = first.body[..at].rfind("href=\"").expect("href") + 6;
        first.body[href..href + first.body[href..].find('"').expect("quote")].to_owned()
    };
    // askama escapes `&` in the attribute (as `&#38;`).
    let older = older.replace("&#38;", "&").replace("&amp;", "&");
    assert!(older.contains("before="), "{older}");
    let second = b.get(&older).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(rows(&second).len(), 5);
    assert!(!second.body.contains("Older →"));
    second.assert_has("← Newest");
    // Statistics cover the whole window on every page.
    second.assert_has("Requests</span><b>105</b>");
}

#[actix_web::test]
async fn retention_keeps_at_most_max_entries_and_logging_can_be_switched_off() {
    let app = spawn_app().await;
    let r = app.get("/api/settings").await;
    assert_eq!(
        r.body["logs"],
        json!({"enabled": true, "maxDays": 7, "maxEntries": 100000, "maxBytes": 64 * 1024 * 1024,
               "logIP": true, "logAuthId": true, "minLevel": 0, "maxDataSize": 0}),
        "{:?}",
        r.body
    );
    for (patch, field) in [
        (json!({"logs": {"maxEntries": 0}}), "logs.maxEntries"),
        (json!({"logs": {"maxDays": 0}}), "logs.maxDays"),
        (json!({"logs": {"maxDays": 4000}}), "logs.maxDays"),
        (json!({"logs": {"maxBytes": 1000}}), "logs.maxBytes"),
    ] {
        let r = app.patch("/api/settings", patch).await;
        assert_eq!(r.status, 400, "{:?}", r.body);
        assert!(r.body["data"][field].is_object(), "{field}: {:?}", r.body);
    }
    let r = app
        .patch("/api/settings", json!({"logs": {"maxEntries": "many"}}))
        .await;
    assert_eq!(r.status, 400);
    let r = app.patch("/api/settings", json!({"logs": {"keep": 1}})).await;
    assert_eq!(r.status, 400);

    let mut b = Browser::login(&app).await;
    let r = app.patch("/api/settings", json!({"logs": {"maxEntries": 5}})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["logs"]["maxEntries"], 5);
    for i in 0..20 {
        let r = app.guest_get(&format!("/api/collections/users/records/r{i:02}")).await;
        assert_eq!(r.status, 404);
    }
    flush(&app).await;
    let log = app.state.store.logs();
    assert_eq!(log.len(), 5);
    let page = b.get("/_/logs?window=7d").await;
    assert_eq!(rows(&page).len(), 5, "{}", page.body);
    for i in 15..20 {
        page.assert_has(&format!("/records/r{i}<"));
    }
    assert!(!page.body.contains("/records/r14<"));
    page.assert_has("at most 5 entries");

    // Raising the limit keeps what is there; switching off stops recording.
    let r = app
        .patch("/api/settings", json!({"logs": {"maxEntries": 1000, "enabled": false}}))
        .await;
    assert_eq!(r.status, 200);
    flush(&app).await;
    let before = log.len();
    for _ in 0..3 {
        assert_eq!(app.guest_get("/api/health").await.status, 200);
    }
    flush(&app).await;
    assert_eq!(log.len(), before);
    let page = b.get("/_/logs").await;
    page.assert_has("Request logging is turned off");
    let r = app.patch("/api/settings", json!({"logs": {"enabled": true}})).await;
    assert_eq!(r.status, 200);
    flush(&app).await;
    let before = log.len();
    assert_eq!(app.guest_get("/api/health").await.status, 200);
    flush(&app).await;
    assert_eq!(log.len(), before + 1);
}

#[actix_web::test]
async fn logs_page_needs_a_session() {
    let app = spawn_app().await;
    let mut b = Browser::new(&app);
    let r = b.get("/_/logs?status=4xx").await;
    assert_eq!(r.status, 303);
    assert_eq!(r.location(), "/_/login?next=%2F_%2Flogs%3Fstatus%3D4xx");
    // An API token is no dashboard session.
    let r = b
        .send(Method::GET, "/_/logs", None, &[("Authorization", app.token.as_str())])
        .await;
    assert_eq!(r.status, 303);
    // The page has no state-changing form: no POST route.
    let mut b = Browser::login(&app).await;
    let r = b.post("/_/logs", &[]).await;
    assert!(r.status == 404 || r.status == 405, "{}: {}", r.status, r.body);
}

#[actix_web::test]
async fn bad_filters_get_a_400_page_with_the_error_inline() {
    let app = spawn_app().await;
    let mut b = Browser::login(&app).await;
    for (query, message) in [
        ("window=1y", "Unknown time window"),
        ("status=6xx", "Unknown status class"),
        ("method=BREW", "Unknown method"),
        ("before=yesterday", "The page link is broken"),
    ] {
        let page = b.get(&format!("/_/logs?{query}")).await;
        assert_eq!(page.status, 400, "{query}: {}", page.body);
        page.assert_has(message);
        // The filter form is still there to fix it.
        page.assert_has("<form method=\"get\" action=\"/_/logs\"");
    }
    let long = "x".repeat(201);
    let page = b.get(&format!("/_/logs?path={long}")).await;
    assert_eq!(page.status, 400);
    page.assert_has("Path filter is too long");
}

#[actix_web::test]
async fn script_in_a_path_or_filter_is_shown_escaped() {
    let app = spawn_app().await;
    let r = app.guest_get("/api/%3Cscript%3Ealert(1)%3C/script%3E").await;
    assert_eq!(r.status, 404);
    flush(&app).await;
    let mut b = Browser::login(&app).await;
    let page = b.get("/_/logs?path=alert").await;
    assert_eq!(page.status, 200);
    assert_eq!(rows(&page).len(), 1, "{}", page.body);
    // askama escapes with numeric references (`&#60;` is `&lt;`).
    page.assert_has("/api/&#60;script&#62;alert(1)&#60;/script&#62;</td>");
    assert!(!page.body.contains("<script>alert(1)"), "{}", page.body);
    // A filter value is echoed escaped too.
    let page = b.get("/_/logs?auth=%3Cscript%3Ealert(1)%3C%2Fscript%3E").await;
    assert_eq!(page.status, 200);
    page.assert_has("value=\"&#60;script&#62;alert(1)&#60;/script&#62;\"");
    assert!(!page.body.contains("<script>alert(1)"));
    // The CSP header is on the page.
    assert!(page.header("content-security-policy").contains("script-src 'self'"));
}

#[actix_web::test]
async fn api_logs_lists_the_log_for_superusers_only() {
    let app = spawn_app().await;
    let (uid, user_token) = user(&app).await;
    for i in 0..3 {
        let r = app
            .guest_get(&format!("/api/collections/users/records/q{i}?secret=1"))
            .await;
        assert_eq!(r.status, 404);
    }
    flush(&app).await;
    let r = app.guest_get("/api/logs").await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    let r = app.call(Method::GET, "/api/logs", None, Some(&user_token)).await;
    assert_eq!(r.status, 403, "{:?}", r.body);

    flush(&app).await;

    let r = app.get("/api/logs?perPage=3").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        (r.body["page"].clone(), r.body["perPage"].clone()),
        (json!(1), json!(3))
    );
    let total = r.body["totalItems"].as_u64().expect("totalItems");
    assert!(total >= 5, "{total}");
    assert_eq!(r.body["totalPages"].as_u64(), Some(total.div_ceil(3)));
    let items = r.body["items"].as_array().expect("items");
    let summary = |i: &serde_json::Value| {
        (
            i["data"]["method"].as_str().unwrap_or_default().to_owned(),
            i["data"]["url"].as_str().unwrap_or_default().to_owned(),
            i["data"]["status"].as_u64().unwrap_or_default(),
            i["data"]["auth"].as_str().unwrap_or_default().to_owned(),
        )
    };
    // Newest first (a request is logged once it has answered).
    let got: Vec<_> = items.iter().map(summary).collect();
    assert_eq!(got[0], ("GET".into(), "/api/logs".into(), 403, format!("users:{uid}")));
    assert_eq!(got[1], ("GET".into(), "/api/logs".into(), 401, "guest".into()));
    assert_eq!(
        got[2],
        (
            "GET".into(),
            "/api/collections/users/records/q2".into(),
            404,
            "guest".into()
        )
    );
    assert_eq!(items[2]["message"], "GET /api/collections/users/records/q2");
    assert_eq!(items[2]["data"]["remoteIP"], "127.0.0.1");
    assert!(items[2]["data"]["execTime"].is_number() && items[2]["created"].is_string());
    // Page 2 (the page-1 request above is now the newest entry).
    flush(&app).await;
    let r = app.get("/api/logs?perPage=3&page=2").await;
    let got: Vec<_> = r.body["items"].as_array().expect("items").iter().map(summary).collect();
    let urls: Vec<&str> = got.iter().map(|g| g.1.as_str()).collect();
    assert_eq!(
        urls,
        ["q2", "q1", "q0"].map(|q| format!("/api/collections/users/records/{q}")),
        "{:?}",
        r.body
    );
    assert!(!r.body.to_string().contains("secret="));

    for bad in [
        "/api/logs?perPage=0",
        "/api/logs?page=x",
        "/api/logs?filter=status%3E400",
        "/api/logs?sort=-status",
    ] {
        let r = app.get(bad).await;
        assert_eq!(r.status, 400, "{bad}: {:?}", r.body);
    }
}

#[actix_web::test]
async fn dashboard_assets_are_not_logged() {
    let app = spawn_app().await;
    let mut b = Browser::login(&app).await;
    assert_eq!(b.get("/_/assets/app.css").await.status, 200);
    app.guest_get("/api/health").await;
    flush(&app).await;
    let page = b.get("/_/logs").await;
    row_with(&page, "/api/health");
    assert!(
        rows(&page).iter().all(|r| !r.contains("/_/assets/")),
        "static files in the log"
    );
}

#[actix_web::test]
async fn ip_and_caller_can_be_left_out_of_the_log() {
    let app = spawn_app().await;
    let r = app
        .patch(
            "/api/settings",
            json!({"logs": {"logIP": false, "logAuthId": false, "minLevel": 5}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    app.get("/api/health").await;
    flush(&app).await;
    let (_, e) = app
        .state
        .store
        .logs()
        .newest_first(0)
        .map(|r| r.expect("entry"))
        .find(|(_, e)| e.path == "/api/health")
        .expect("logged");
    assert_eq!((e.ip.as_str(), e.auth.as_str()), ("", ""));
    let mut b = Browser::login(&app).await;
    let page = b.get("/_/logs").await;
    let row = row_with(&page, "/api/health");
    assert!(!row.contains("127.0.0.1") && !row.contains("superuser:"), "{row}");
}
