//! Bad input never produces a 5xx, and the server stays healthy afterwards.

use awc::http::Method;
use serde_json::json;

use crate::helpers::spawn_app;

#[actix_web::test]
async fn health_and_unknown_routes() {
    let app = spawn_app().await;
    let r = app.guest_get("/api/health").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({"message": "API is healthy.", "code": 200, "data": {}}));
    assert_eq!(r.headers.get("x-content-type-options").unwrap(), "nosniff");
    assert!(r.headers.get("x-frame-options").is_some());
    assert!(r.headers.get("referrer-policy").is_some());
    let r = app.guest_get("/api/nothing/here").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["status"], 404);
    assert_eq!(r.body["data"], json!({}));
}

#[actix_web::test]
async fn malformed_bodies_get_clear_4xx() {
    let app = spawn_app().await;
    app.posts().await;
    let path = "/api/collections/posts/records";
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let nested_obj = format!("{{\"title\":{}1{}}}", "[".repeat(10_000), "]".repeat(10_000));
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("application/json", b"{\"title\": ".to_vec(), 400),
        ("application/json", b"{\"title\": \"unterminated".to_vec(), 400),
        ("application/json", b"{title: 1}".to_vec(), 400),
        ("application/json", b"[1, 2]".to_vec(), 400),
        ("application/json", b"\"text\"".to_vec(), 400),
        ("application/json", b"42".to_vec(), 400),
        ("application/json", b"null".to_vec(), 400),
        ("application/json", vec![0xff, 0xfe, 0x00], 400),
        ("application/json", nested.into_bytes(), 400),
        ("application/json", nested_obj.into_bytes(), 400),
        ("text/plain", b"{\"title\":\"x\"}".to_vec(), 415),
        ("application/x-www-form-urlencoded", b"title=x".to_vec(), 415),
    ];
    for (ct, body, status) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(40)]).into_owned();
        let r = app.raw(Method::POST, path, ct, body).await;
        assert_eq!(r.status, status, "{ct} {shown} -> {:?}", r.body);
        assert_eq!(r.body["status"], status);
        assert!(!r.body["message"].as_str().unwrap().is_empty());
    }
    // 2 MiB body: over the 1 MiB default limit.
    let big = json!({"title": "x".repeat(2 * 1024 * 1024)}).to_string().into_bytes();
    let r = app.raw(Method::POST, path, "application/json", big).await;
    assert_eq!(r.status, 413, "{:?}", r.body);
    // Same through PATCH and collection routes.
    let r = app
        .raw(Method::POST, "/api/collections", "application/json", b"{oops".to_vec())
        .await;
    assert_eq!(r.status, 400);
    // Still healthy, nothing stored.
    assert_eq!(app.guest_get("/api/health").await.status, 200);
    assert_eq!(app.get(path).await.body["totalItems"], 0);
    let ok = app.post(path, json!({"title": "fine"})).await;
    assert_eq!(ok.status, 200);
}

#[actix_web::test]
async fn odd_paths_and_queries() {
    let app = spawn_app().await;
    app.posts().await;
    for path in [
        "/api/collections/posts/records/%00",
        "/api/collections/posts/records/..%2F..%2Fetc",
        "/api/collections/%F0%9F%92%A9/records",
        "/api/collections/posts/records?page=%FF",
        "/api/collections/posts/records?perPage=99999999999999999999999",
    ] {
        let r = app.guest_get(path).await;
        assert!((400..500).contains(&r.status), "{path} -> {} {:?}", r.status, r.body);
    }
    assert_eq!(app.guest_get("/api/health").await.status, 200);
}

#[actix_web::test]
async fn empty_multipart_body_is_400_not_an_empty_record() {
    let app = spawn_app().await;
    // Nothing required: an empty body would make a valid (empty) record.
    app.create_collection(json!({
        "name": "notes",
        "listRule": "", "viewRule": "", "createRule": "",
        "schema": {"type": "object", "properties": {"title": {"type": "string"}}}
    }))
    .await;
    let path = "/api/collections/notes/records";
    let ct = "multipart/form-data; boundary=XX";
    for body in [
        &b""[..],
        b"\r\n",
        b"--XX--\r\n",
        b"--XX--",
        b"--XX\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhi",
        b"--XX\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhi\r\n--XX",
    ] {
        let r = app.raw(Method::POST, path, ct, body.to_vec()).await;
        let shown = String::from_utf8_lossy(body);
        assert_eq!(r.status, 400, "{shown:?}: {:?}", r.body);
        assert_eq!(r.body["status"], 400, "{shown:?}");
        assert!(
            r.body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{:?}",
            r.body
        );
        assert_eq!(r.body["data"], json!({}), "{shown:?}");
    }
    assert_eq!(app.get(path).await.body["totalItems"], 0, "no empty record was created");
    // A real multipart body still works.
    let body = b"--XX\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhi\r\n--XX--\r\n";
    let r = app.raw(Method::POST, path, ct, body.to_vec()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["title"], "hi");
}
