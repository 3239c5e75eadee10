//! Crafted, replayed and borrowed cursors never widen what the listRule
//! allows, even when an index serves the rule exactly.

use base64::Engine;
use serde_json::{json, Value};

use super::{answer, enc, user};
use crate::helpers::spawn_app;

fn b64(raw: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

#[actix_web::test]
async fn attack_cursors_cannot_leave_the_rule() {
    let app = spawn_app().await;
    let owner = "owner = @request.auth.id";
    app.create_collection(json!({
        "name": "items", "listRule": owner, "viewRule": owner, "createRule": owner,
        "indexes": [{"name": "by_owner", "fields": ["owner", "-created"]}],
        "schema": {"type": "object", "properties": {"owner": {"type": "string"}, "n": {"type": "integer"}}}
    }))
    .await;
    let (a, ta) = user(&app, "a@example.com", "A").await;
    let (b, tb) = user(&app, "b@example.com", "B").await;
    for i in 0..5 {
        for (who, token) in [(&a, &ta), (&b, &tb)] {
            let r = app
                .call(
                    awc::http::Method::POST,
                    "/api/collections/items/records",
                    Some(json!({"owner": who, "n": i})),
                    Some(token),
                )
                .await;
            assert_eq!(r.status, 200, "{:?}", r.body);
        }
    }
    let list = |cursor: &str| {
        format!(
            "/api/collections/items/records?perPage=2&sort=-created&cursor={}",
            enc(cursor)
        )
    };
    // A pages through exactly their own five items.
    let (status, first) = answer(
        &app,
        "/api/collections/items/records?perPage=2&sort=-created",
        Some(&ta),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let mut seen: Vec<Value> = first["items"].as_array().unwrap().clone();
    let mut cursor = first["nextCursor"].as_str().expect("a cursor").to_owned();
    let a_cursor = cursor.clone();
    loop {
        let (status, page) = answer(&app, &list(&cursor), Some(&ta)).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["nextCursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    assert!(seen.iter().all(|i| i["owner"] == json!(a)), "only A's items: {seen:?}");

    // B (and a guest) replaying A's cursor get a 400, not A's items.
    for token in [Some(tb.as_str()), None] {
        let (status, body) = answer(&app, &list(&a_cursor), token).await;
        assert_eq!(status, 400, "{body}");
    }
    // The same cursor with another filter or sort is refused too.
    for extra in ["&filter=n%3E%3D0", "&sort=created"] {
        let (status, body) = answer(&app, &format!("{}{extra}", list(&a_cursor)), Some(&ta)).await;
        assert_eq!(status, 400, "{extra}: {body}");
    }
    // Crafted cursors: the old unauthenticated format (index name, NUL,
    // key bytes), every single-bit flip of a real one, junk.
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&a_cursor)
        .unwrap();
    let mut crafted = vec![
        b64(b"by_owner\0"),
        b64(b"by_owner\0\x00"),
        b64(b"_sys_created\0"),
        b64(&raw[..raw.len() - 1]),
        b64(&[raw.clone(), vec![0]].concat()),
        "not base64!".into(),
        String::new() + "AAAA",
    ];
    for i in (0..raw.len()).step_by(3) {
        let mut flipped = raw.clone();
        flipped[i] ^= 1;
        crafted.push(b64(&flipped));
    }
    for c in crafted {
        for token in [Some(ta.as_str()), Some(tb.as_str()), None] {
            let (status, body) = answer(&app, &list(&c), token).await;
            assert_eq!(status, 400, "cursor {c:?}: {body}");
            assert!(body.get("items").is_none());
        }
    }
}
