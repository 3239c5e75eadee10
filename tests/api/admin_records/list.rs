//! The records table: columns, filter, sort, page and cursor paging.

use serde_json::json;

use super::{enc, ids_in, seed, total, unescape, LIST};
use crate::admin_support::{attr_after, Browser};
use crate::helpers::spawn_app;

#[actix_web::test]
async fn list_shows_records_and_pages_need_a_session() {
    let app = spawn_app().await;
    app.posts().await;
    let ids = seed(
        &app,
        "posts",
        vec![
            json!({"title": "First post", "views": 3, "tags": ["a", "b"], "meta": {"lang": "en"}}),
            json!({"title": "Second post", "views": 10}),
        ],
    )
    .await;
    let mut guest = Browser::new(&app);
    for path in [LIST.to_owned(), format!("{LIST}/new"), format!("{LIST}/{}", ids[0])] {
        let r = guest.get(&path).await;
        assert_eq!(r.status, 303, "{path}");
        assert!(r.location().starts_with("/_/login?next="), "{path}: {}", r.location());
    }
    for path in [
        format!("{LIST}/new"),
        format!("{LIST}/{}", ids[0]),
        format!("{LIST}/{}/delete", ids[0]),
        format!("{LIST}/bulk-delete"),
        format!("{LIST}/delete-matching"),
        "/_/collections/users/records/x/verify".to_owned(),
        "/_/collections/users/records/x/send-reset".to_owned(),
        "/_/collections/users/records/x/impersonate".to_owned(),
    ] {
        let r = guest
            .send_form(&path, &[("_csrf", "x"), ("ids", &ids[0]), ("title", "x")])
            .await;
        assert_eq!((r.status, r.location()), (303, "/_/login"), "{path}");
    }
    assert_eq!(total(&app, "posts", "").await, 2);

    let mut b = Browser::login(&app).await;
    let page = b.get(LIST).await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.assert_has("First post");
    page.assert_has("Second post");
    let mut shown = ids_in(&page);
    shown.sort();
    let mut all = ids.clone();
    all.sort();
    assert_eq!(shown, all);
    // Objects and arrays as compact JSON.
    page.assert_has("[&#34;a&#34;,&#34;b&#34;]");
    page.assert_has(&format!("href=\"{LIST}/{}\"", ids[0]));
    page.assert_has(&format!("name=\"ids\" value=\"{}\"", ids[0]));
    page.assert_has("Page 1 of 1, 2 records");
    page.assert_has("Delete selected");
    assert_eq!(b.get("/_/collections/nope/records").await.status, 404);
    assert_eq!(b.get(&format!("{LIST}/nope")).await.status, 404);
}

#[actix_web::test]
async fn empty_collection_and_auth_columns() {
    let app = spawn_app().await;
    app.posts().await;
    let mut b = Browser::login(&app).await;
    let page = b.get(LIST).await;
    assert_eq!(page.status, 200);
    page.assert_has("No records yet");
    page.assert_has(&format!("href=\"{LIST}/new\""));

    let r = app
        .post(
            "/api/collections/users/records",
            json!({"email": "amy@example.com", "password": "password-1", "passwordConfirm": "password-1", "name": "Amy"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let page = b.get("/_/collections/users/records").await;
    assert_eq!(page.status, 200);
    page.assert_has("amy@example.com");
    page.assert_has(">verified</a>");
    page.assert_has(">email</a>");
    page.assert_has("<span class=\"badge \">false</span>");
    for secret in ["tokenKey", "$argon2", ">password<"] {
        assert!(!page.body.contains(secret), "{secret} in the users table");
    }
}

#[actix_web::test]
async fn columns_can_be_picked_by_link_or_checkboxes() {
    let app = spawn_app().await;
    app.posts().await;
    seed(&app, "posts", vec![json!({"title": "Visible title", "views": 42})]).await;
    let mut b = Browser::login(&app).await;
    let page = b.get(LIST).await;
    // Default: the id plus the first five columns.
    for col in ["title", "views", "email", "tags", "meta"] {
        page.assert_has(&format!(">{col}</a>"));
        page.assert_has(&format!("name=\"cols\" value=\"{col}\" checked"));
    }
    assert!(!page.body.contains(">updated</a>"));
    page.assert_has("name=\"cols\" value=\"updated\">");

    let page = b.get(&format!("{LIST}?cols=views,updated")).await;
    assert_eq!(page.status, 200);
    page.assert_has(">views</a>");
    page.assert_has(">updated</a>");
    page.assert_has("<td class=\"num\">42</td>");
    assert!(!page.body.contains(">title</a>"));
    assert!(!page.body.contains("Visible title"));
    // The checkbox form sends one `cols` per box; unknown and secret names are ignored.
    let page = b.get(&format!("{LIST}?cols=title&cols=password&cols=tokenKey")).await;
    page.assert_has("Visible title");
    assert!(!page.body.contains(">views</a>"));
    assert!(!page.body.contains(">password</a>"));
    // Sorting keeps the chosen columns.
    page.assert_has("sort=title&#38;cols=title");
}

#[actix_web::test]
async fn filter_uses_the_api_language_and_shows_its_errors() {
    let app = spawn_app().await;
    app.posts().await;
    seed(
        &app,
        "posts",
        vec![
            json!({"title": "low", "views": 1}),
            json!({"title": "high", "views": 50}),
        ],
    )
    .await;
    let mut b = Browser::login(&app).await;
    let page = b.get(&format!("{LIST}?filter={}", enc("views > 10"))).await;
    assert_eq!(page.status, 200);
    page.assert_has("high");
    assert!(!page.body.contains(">low<"));
    page.assert_has("value=\"views &#62; 10\"");
    page.assert_has("Delete all 1 records matching this filter");

    let page = b.get(&format!("{LIST}?filter={}", enc("views >"))).await;
    assert_eq!(page.status, 400, "{}", page.body);
    page.assert_has("filter: invalid filter at position");
    page.assert_has("aria-invalid=\"true\"");
    assert!(!page.body.contains("<table"));

    let page = b.get(&format!("{LIST}?filter={}", enc("views > 1000"))).await;
    assert_eq!(page.status, 200);
    page.assert_has("No records match this filter");
    page.assert_has(&format!("href=\"{LIST}\">Clear the filter"));
}

#[actix_web::test]
async fn headers_sort_both_ways() {
    let app = spawn_app().await;
    app.posts().await;
    let ids = seed(
        &app,
        "posts",
        vec![json!({"title": "b"}), json!({"title": "c"}), json!({"title": "a"})],
    )
    .await;
    let (b_id, c_id, a_id) = (&ids[0], &ids[1], &ids[2]);
    let mut b = Browser::login(&app).await;
    let page = b.get(&format!("{LIST}?sort=title")).await;
    assert_eq!(ids_in(&page), vec![a_id.clone(), b_id.clone(), c_id.clone()]);
    page.assert_has("<th scope=\"col\" aria-sort=\"ascending\"><a href=\"/_/collections/posts/records?sort=-title\">title <span aria-hidden=\"true\">▲</span>");
    let page = b.get(&format!("{LIST}?sort=-title")).await;
    assert_eq!(ids_in(&page), vec![c_id.clone(), b_id.clone(), a_id.clone()]);
    page.assert_has("aria-sort=\"descending\"><a href=\"/_/collections/posts/records?sort=title\">title");
}

#[actix_web::test]
async fn pages_and_page_sizes() {
    let app = spawn_app().await;
    app.posts().await;
    let bodies = (0..45).map(|i| json!({"title": format!("t{i:02}")})).collect();
    seed(&app, "posts", bodies).await;
    let mut b = Browser::login(&app).await;
    let page = b.get(&format!("{LIST}?sort=title&page=3")).await;
    assert_eq!(page.status, 200);
    page.assert_has("Page 3 of 3, 45 records");
    assert_eq!(ids_in(&page).len(), 5);
    page.assert_has("t40");
    page.assert_has("rel=\"prev\"");
    page.assert_has("<strong aria-current=\"true\">20</strong>");
    page.assert_has("href=\"/_/collections/posts/records?sort=title&#38;perPage=50\">50</a>");

    let page = b.get(&format!("{LIST}?sort=title&perPage=50")).await;
    page.assert_has("Page 1 of 1, 45 records");
    assert_eq!(ids_in(&page).len(), 45);
    let page = b.get(&format!("{LIST}?sort=title&perPage=20&page=2")).await;
    assert_eq!(ids_in(&page).len(), 20);
    page.assert_has("t20");
    page.assert_has("href=\"/_/collections/posts/records?sort=title&#38;page=3\" rel=\"next\"");
    // Past the end: an empty state that leads back.
    let page = b.get(&format!("{LIST}?page=9")).await;
    page.assert_has("No more records");
}

#[actix_web::test]
async fn cursor_paging_visits_every_record_once() {
    let app = spawn_app().await;
    app.posts().await;
    let bodies = (0..60).map(|i| json!({"title": format!("c{i}")})).collect();
    let mut all = seed(&app, "posts", bodies).await;
    let mut b = Browser::login(&app).await;
    let mut seen = Vec::new();
    let mut path = format!("{LIST}?perPage=20");
    let mut pages = 0;
    loop {
        let page = b.get(&path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        pages += 1;
        seen.extend(ids_in(&page));
        match attr_after(&page.body, "cursor-next", "href") {
            Some(next) if pages < 10 => {
                path = unescape(&next);
                assert!(path.contains("cursor="), "{path}");
            }
            Some(_) => panic!("cursor paging does not end"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 60, "every record exactly once");
    seen.sort();
    all.sort();
    assert_eq!(seen, all);
    // A broken cursor is the API's error, shown inline.
    let page = b.get(&format!("{LIST}?cursor=bogus")).await;
    assert_eq!(page.status, 400);
    page.assert_has("Invalid cursor");
}
