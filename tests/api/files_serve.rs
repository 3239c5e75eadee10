//! `GET /api/files/{collection}/{recordId}/{name}`: originals, thumbnails,
//! protected files, PocketBase's headers, ranges and conditional requests.
//!
//! Files are uploaded as the SDKs upload them (multipart); everything
//! checked goes through HTTP.

use std::io::Cursor;

use awc::http::Method;
use base64::Engine;
use image::{DynamicImage, ImageBuffer, ImageFormat, Rgb};
use serde_json::{json, Value};

use crate::form::{self, Form};
use crate::helpers::{spawn_app, TestApp};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// An answer with its raw body.
struct Got {
    status: u16,
    headers: awc::http::header::HeaderMap,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

async fn fetch(app: &TestApp, method: Method, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = app.client.request(method, format!("{}{}", app.base, path));
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let mut res = req.send().await.expect("request sent");
    let body = res.body().limit(64 * 1024 * 1024).await.expect("body").to_vec();
    Got {
        status: res.status().as_u16(),
        headers: res.headers().clone(),
        body,
    }
}

async fn get(app: &TestApp, path: &str) -> Got {
    fetch(app, Method::GET, path, &[]).await
}

fn encoded(img: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), format).unwrap();
    out
}

/// A 120 x 80 image, red above blue.
fn picture(format: ImageFormat) -> Vec<u8> {
    let img = ImageBuffer::from_fn(
        120,
        80,
        |_, y| if y < 40 { Rgb([255u8, 0, 0]) } else { Rgb([0, 0, 255]) },
    );
    encoded(DynamicImage::ImageRgb8(img), format)
}

/// A PNG that declares `w` x `h` pixels and holds almost nothing (a
/// decompression bomb: a few dozen bytes, gigabytes decoded).
fn bomb_png(w: u32, h: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut crc = !0u32;
        for &b in &out[start..] {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        out.extend_from_slice(&(!crc).to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let ihdr = [&w.to_be_bytes()[..], &h.to_be_bytes(), &[8, 2, 0, 0, 0]].concat();
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x01, 0x01, 0x01, 0x00, 0xfe, 0xff, 0x00, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

/// `docs` (public, a multi-file field with thumbnail sizes) and `priv`
/// (protected files, viewable by their owner only).
async fn collections(app: &TestApp) {
    app.create_collection(json!({
        "name": "docs",
        "listRule": "", "viewRule": "", "createRule": null,
        "schema": {"type": "object", "properties": {
            "title": {"type": "string"},
            "files": {"type": "array", "items": {"type": "string"},
                      "x-file": {"maxSelect": 20, "thumbs": ["50x30", "50x30t", "50x30b", "50x30f", "0x20", "20x0"]}}
        }}
    }))
    .await;
    app.create_collection(json!({
        "name": "priv",
        "listRule": "owner = @request.auth.id", "viewRule": "owner = @request.auth.id", "createRule": null,
        "schema": {"type": "object", "properties": {
            "owner": {"type": "string"},
            "doc": {"type": "string", "x-file": {"protected": true}}
        }}
    }))
    .await;
}

/// Creates a record of `collection` with `fields`, uploading `files`
/// (client name → bytes) into `field` as the SDKs do; returns the record
/// and the stored names, in upload order.
async fn record_with(
    app: &TestApp,
    collection: &str,
    fields: Value,
    field: &str,
    files: &[(&str, Vec<u8>)],
) -> (Value, Vec<String>) {
    let mut body = Form::new().json(&fields);
    for (name, bytes) in files {
        body = body.file(field, name, bytes);
    }
    let path = format!("/api/collections/{collection}/records");
    let r = form::send(app, Method::POST, &path, body.finish(), Some(&app.token)).await;
    assert_eq!(r.status, 200, "create: {:?}", r.body);
    let names = match &r.body[field] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().map(|v| v.as_str().unwrap().to_owned()).collect(),
        other => panic!("{field}: {other}"),
    };
    assert_eq!(names.len(), files.len());
    (r.body, names)
}

fn url(rec: &Value, name: &str) -> String {
    format!(
        "/api/files/{}/{}/{name}",
        rec["collectionName"].as_str().unwrap(),
        rec["id"].as_str().unwrap()
    )
}

fn decode(g: &Got) -> DynamicImage {
    image::load_from_memory(&g.body).unwrap_or_else(|e| panic!("not an image ({e}): {:?}", g.header("content-type")))
}

#[actix_web::test]
async fn originals_are_served_with_pocketbases_headers() {
    let app = spawn_app().await;
    collections(&app).await;
    let png = picture(ImageFormat::Png);
    let html = b"<!DOCTYPE html><script>alert(document.cookie)</script>".to_vec();
    let svg = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>".to_vec();
    let text = b"hello".to_vec();
    let files = [
        ("pic.png", png.clone()),
        ("page.html", html.clone()),
        ("img.svg", svg.clone()),
        ("notes.txt", text.clone()),
    ];
    let (rec, n) = record_with(&app, "docs", json!({"title": "t"}), "files", &files).await;
    let pic = url(&rec, &n[0]);

    let g = get(&app, &pic).await;
    assert_eq!(g.status, 200);
    assert_eq!(g.body, png);
    assert_eq!(g.header("content-type"), Some("image/png"));
    let inline = format!("inline; filename=\"{}\"", n[0]);
    assert_eq!(g.header("content-disposition"), Some(inline.as_str()));
    assert_eq!(
        g.header("content-security-policy"),
        Some("default-src 'none'; media-src 'self'; style-src 'unsafe-inline'; sandbox")
    );
    assert_eq!(g.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        g.header("cache-control"),
        Some("max-age=2592000, stale-while-revalidate=86400")
    );
    assert_eq!(g.header("accept-ranges"), Some("bytes"));
    assert!(g.header("etag").is_some_and(|e| e.starts_with('"')));
    assert!(g.header("last-modified").is_some_and(|d| d.ends_with(" GMT")));
    assert_eq!(
        g.header("x-frame-options"),
        None,
        "files may be embedded, as PocketBase"
    );

    let head = fetch(&app, Method::HEAD, &pic, &[]).await;
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(head.header("content-length"), Some(png.len().to_string().as_str()));
    assert_eq!(head.header("content-type"), Some("image/png"));

    let download = get(&app, &format!("{pic}?download=1")).await;
    let attachment = format!("attachment; filename=\"{}\"", n[0]);
    assert_eq!(download.header("content-disposition"), Some(attachment.as_str()));
    assert_eq!(download.body, png);

    // Active content is never shown inline, and never typed for sniffing.
    for (name, bytes, ty) in [
        (&n[1], &html, "text/html; charset=utf-8"),
        (&n[2], &svg, "image/svg+xml"),
        (&n[3], &text, "text/plain; charset=utf-8"),
    ] {
        let g = get(&app, &url(&rec, name)).await;
        assert_eq!((g.status, &g.body), (200, bytes), "{name}");
        assert_eq!(g.header("content-type"), Some(ty), "{name}");
        let attachment = format!("attachment; filename=\"{name}\"");
        assert_eq!(g.header("content-disposition"), Some(attachment.as_str()));
        assert!(g.header("content-security-policy").unwrap().contains("sandbox"));
        assert_eq!(g.header("x-content-type-options"), Some("nosniff"));
    }
    assert_eq!(fetch(&app, Method::POST, &pic, &[]).await.status, 405);
    // The SDKs' getURL names the collection by id.
    let by_id = format!(
        "/api/files/{}/{}/{}",
        rec["collectionId"].as_str().unwrap(),
        rec["id"].as_str().unwrap(),
        n[0]
    );
    assert_eq!(get(&app, &by_id).await.body, png);
}

#[actix_web::test]
async fn names_outside_the_record_are_not_found() {
    let app = spawn_app().await;
    collections(&app).await;
    let png = picture(ImageFormat::Png);
    let (a, an) = record_with(&app, "docs", json!({}), "files", &[("a.png", png.clone())]).await;
    let (b, bn) = record_with(&app, "docs", json!({}), "files", &[("b.png", png.clone())]).await;
    let (an, bn) = (&an[0], &bn[0]);
    assert_eq!(get(&app, &url(&a, an)).await.status, 200);
    // Another record's file, through this record: its key exists, but not here.
    assert_eq!(get(&app, &url(&a, bn)).await.status, 404);
    let (aid, bid) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    for path in [
        format!("/api/files/docs/{aid}/missing_abcdefghij.png"),
        format!("/api/files/docs/{aid}/..%2F{bid}%2F{bn}"),
        format!("/api/files/docs/{aid}/%2E%2E"),
        format!("/api/files/docs/{aid}/{an}%00"),
        format!("/api/files/docs/nosuchrecord123/{an}"),
        format!("/api/files/nosuch/{aid}/{an}"),
        format!("/api/files/docs/{bid}/..%2F{aid}%2F{an}"),
        format!("/api/files/docs/{bid}/{an}"),
    ] {
        let g = get(&app, &path).await;
        assert_eq!(g.status, 404, "{path}");
        assert_eq!(g.json()["status"], 404, "{path}: the contract's error shape");
    }
}

#[actix_web::test]
async fn ranges_and_conditional_requests() {
    let app = spawn_app().await;
    collections(&app).await;
    let png = picture(ImageFormat::Png);
    let (rec, n) = record_with(&app, "docs", json!({}), "files", &[("r.png", png.clone())]).await;
    let path = url(&rec, &n[0]);
    let size = png.len();

    let first = fetch(&app, Method::GET, &path, &[("Range", "bytes=0-9")]).await;
    assert_eq!(first.status, 206);
    assert_eq!(first.body, png[..10]);
    assert_eq!(
        first.header("content-range"),
        Some(format!("bytes 0-9/{size}").as_str())
    );
    assert_eq!(
        first.header("content-type"),
        Some("image/png"),
        "typed from the file, not the range"
    );
    let suffix = fetch(&app, Method::GET, &path, &[("Range", "bytes=-5")]).await;
    assert_eq!((suffix.status, &suffix.body[..]), (206, &png[size - 5..]));
    let want = format!("bytes {}-{}/{size}", size - 5, size - 1);
    assert_eq!(suffix.header("content-range"), Some(want.as_str()));
    let middle = fetch(&app, Method::GET, &path, &[("Range", "bytes=100-")]).await;
    assert_eq!((middle.status, &middle.body[..]), (206, &png[100..]));

    let beyond = fetch(&app, Method::GET, &path, &[("Range", &format!("bytes={size}-"))]).await;
    assert_eq!(beyond.status, 416);
    assert_eq!(beyond.header("content-range"), Some(format!("bytes */{size}").as_str()));
    assert_eq!(beyond.json()["status"], 416);
    // Several ranges, or a malformed one: the whole file (RFC 9110 allows it).
    for range in ["bytes=0-1,5-6", "bytes=x-y", "items=0-1"] {
        let g = fetch(&app, Method::GET, &path, &[("Range", range)]).await;
        assert_eq!((g.status, g.body.len()), (200, size), "{range}");
    }

    let plain = get(&app, &path).await;
    let (etag, modified) = (plain.header("etag").unwrap(), plain.header("last-modified").unwrap());
    let g = fetch(&app, Method::GET, &path, &[("If-None-Match", etag)]).await;
    assert_eq!((g.status, g.body.len()), (304, 0));
    assert_eq!(g.header("etag"), Some(etag));
    let g = fetch(&app, Method::GET, &path, &[("If-Modified-Since", modified)]).await;
    assert_eq!(g.status, 304);
    let g = fetch(&app, Method::GET, &path, &[("If-None-Match", "\"other\"")]).await;
    assert_eq!(g.status, 200, "another tag: the file");
    let old = [("If-Modified-Since", "Mon, 01 Jan 2001 00:00:00 GMT")];
    assert_eq!(
        fetch(&app, Method::GET, &path, &old).await.status,
        200,
        "modified since then"
    );
    // If-Range: a stale tag gets the whole file, the current one the range.
    let stale = fetch(
        &app,
        Method::GET,
        &path,
        &[("Range", "bytes=0-9"), ("If-Range", "\"old\"")],
    )
    .await;
    assert_eq!((stale.status, stale.body.len()), (200, size));
    let current = fetch(&app, Method::GET, &path, &[("Range", "bytes=0-9"), ("If-Range", etag)]).await;
    assert_eq!((current.status, current.body.len()), (206, 10));
}

#[actix_web::test]
async fn thumbnails_of_each_fit_made_once() {
    let app = spawn_app().await;
    collections(&app).await;
    let png = picture(ImageFormat::Png);
    let jpg = picture(ImageFormat::Jpeg);
    let text = b"not an image".to_vec();
    let files = [("p.png", png.clone()), ("j.jpg", jpg.clone()), ("t.txt", text.clone())];
    let (rec, n) = record_with(&app, "docs", json!({}), "files", &files).await;
    let path = url(&rec, &n[0]);
    for (size, dims) in [
        ("50x30", (50, 30)),
        ("50x30t", (50, 30)),
        ("50x30b", (50, 30)),
        ("50x30f", (45, 30)),
        ("0x20", (30, 20)),
        ("20x0", (20, 13)),
        ("100x100", (100, 100)),
    ] {
        let g = get(&app, &format!("{path}?thumb={size}")).await;
        assert_eq!(g.status, 200, "{size}");
        assert_eq!(g.header("content-type"), Some("image/png"), "{size}");
        let inline = format!("inline; filename=\"{size}_{}\"", n[0]);
        assert_eq!(g.header("content-disposition"), Some(inline.as_str()));
        let img = decode(&g);
        assert_eq!((img.width(), img.height()), dims, "{size}");
    }
    // Top keeps the red half, bottom the blue one.
    let pixel = |g: &Got| decode(g).to_rgb8().get_pixel(25, 15).0;
    assert_eq!(pixel(&get(&app, &format!("{path}?thumb=50x30t")).await), [255, 0, 0]);
    assert_eq!(pixel(&get(&app, &format!("{path}?thumb=50x30b")).await), [0, 0, 255]);

    // Cached in storage where PocketBase puts it, and not made again.
    app.state.thumbs.settled().await;
    let (cid, rid) = (rec["collectionId"].as_str().unwrap(), rec["id"].as_str().unwrap());
    let key = format!("{cid}/{rid}/thumbs_{0}/50x30_{0}", n[0]);
    assert!(app.state.storage.head(&key).await.unwrap().is_some());
    let made = app.state.thumbs.rendered();
    let again = get(&app, &format!("{path}?thumb=50x30")).await;
    assert_eq!(decode(&again).width(), 50);
    assert_eq!(
        app.state.thumbs.rendered(),
        made,
        "a cached thumbnail is served, not made"
    );

    // JPEG stays JPEG.
    let g = get(&app, &format!("{}?thumb=50x30", url(&rec, &n[1]))).await;
    assert_eq!(g.header("content-type"), Some("image/jpeg"));
    assert_eq!(decode(&g).width(), 50);
    // Sizes the field does not list, and non-images: the original.
    for (name, size, original, kind) in [
        (&n[0], "77x77", &png, "inline"),
        (&n[0], "50x31", &png, "inline"),
        (&n[0], "../50x30", &png, "inline"),
        (&n[2], "50x30", &text, "attachment"),
    ] {
        let g = get(
            &app,
            &format!("{}?thumb={}", url(&rec, name), crate::helpers::enc(size)),
        )
        .await;
        assert_eq!((g.status, &g.body), (200, original), "{name} {size}");
        let disposition = format!("{kind}; filename=\"{name}\"");
        assert_eq!(g.header("content-disposition"), Some(disposition.as_str()));
    }
}

#[actix_web::test]
async fn concurrent_first_requests_make_one_thumbnail() {
    let app = spawn_app().await;
    collections(&app).await;
    let (rec, n) = record_with(
        &app,
        "docs",
        json!({}),
        "files",
        &[("c.png", picture(ImageFormat::Png))],
    )
    .await;
    let path = format!("{}?thumb=50x30f", url(&rec, &n[0]));
    let before = app.state.thumbs.rendered();
    let all = futures_util::future::join_all((0..6).map(|_| get(&app, &path))).await;
    for g in all {
        assert_eq!((g.status, decode(&g).width()), (200, 45));
    }
    assert_eq!(app.state.thumbs.rendered(), before + 1);
}

/// A first thumbnail is answered from the bytes just made, before the
/// file is stored: the answer must be the one the stored file gives later
/// (same bytes, same `ETag` and date, so revalidation gets a 304), and a
/// first request may be a `HEAD` or a Range.
#[actix_web::test]
async fn first_thumbnails_from_memory_match_the_stored_ones() {
    let app = spawn_app().await;
    collections(&app).await;
    let files = [
        ("a.png", picture(ImageFormat::Png)),
        ("b.png", picture(ImageFormat::Png)),
        ("c.png", picture(ImageFormat::Png)),
    ];
    let (rec, n) = record_with(&app, "docs", json!({}), "files", &files).await;
    let thumb = |i: usize| format!("{}?thumb=50x30", url(&rec, &n[i]));

    let made = app.state.thumbs.rendered();
    let first = get(&app, &thumb(0)).await;
    assert_eq!((first.status, app.state.thumbs.rendered()), (200, made + 1));
    assert_eq!(first.header("content-type"), Some("image/png"));
    assert_eq!(
        first.header("content-length"),
        Some(first.body.len().to_string().as_str())
    );
    let etag = first.header("etag").expect("an ETag").to_owned();
    app.state.thumbs.settled().await;
    let stored = get(&app, &thumb(0)).await;
    assert_eq!(app.state.thumbs.rendered(), made + 1, "served from storage now");
    assert_eq!(stored.body, first.body);
    assert_eq!(stored.header("etag"), Some(etag.as_str()));
    assert_eq!(stored.header("last-modified"), first.header("last-modified"));
    let again = fetch(&app, Method::GET, &thumb(0), &[("if-none-match", &etag)]).await;
    assert_eq!(again.status, 304);

    // A first HEAD: the length and no body; the GET after it gets the same.
    let head = fetch(&app, Method::HEAD, &thumb(1), &[]).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let full = get(&app, &thumb(1)).await;
    assert_eq!(
        head.header("content-length"),
        Some(full.body.len().to_string().as_str())
    );
    assert_eq!(head.header("etag"), full.header("etag"));

    // A first Range.
    let part = fetch(&app, Method::GET, &thumb(2), &[("range", "bytes=0-9")]).await;
    assert_eq!(part.status, 206);
    app.state.thumbs.settled().await;
    let whole = get(&app, &thumb(2)).await;
    assert_eq!(part.body, whole.body[..10]);
    let range = format!("bytes 0-9/{}", whole.body.len());
    assert_eq!(part.header("content-range"), Some(range.as_str()));
}

#[actix_web::test]
async fn image_bombs_get_the_original() {
    let app = spawn_app().await;
    collections(&app).await;
    let bomb = bomb_png(50_000, 50_000);
    assert!(bomb.len() < 100);
    let (rec, n) = record_with(&app, "docs", json!({}), "files", &[("bomb.png", bomb.clone())]).await;
    for _ in 0..3 {
        let g = get(&app, &format!("{}?thumb=100x100", url(&rec, &n[0]))).await;
        assert_eq!((g.status, &g.body), (200, &bomb));
    }
    assert_eq!(get(&app, "/api/health").await.status, 200, "the server keeps answering");
}

/// A file token for `record` of `collection` that expired a second ago.
fn expired_file_token(app: &TestApp, token: &str, collection_id: &str, id: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let mut claims: basalt::auth::Claims = serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap();
    let stored = app.state.store.get(collection_id, id).unwrap().unwrap();
    claims.exp = basalt::clock::now_millis() / 1000 - 1;
    app.state
        .tokens
        .issue(&claims, stored.data["tokenKey"].as_str().unwrap())
}

#[actix_web::test]
async fn protected_files_need_a_file_token_and_the_view_rule() {
    let app = spawn_app().await;
    collections(&app).await;
    let mut users = vec![];
    for email in ["owner@example.com", "other@example.com"] {
        let body = json!({"email": email, "password": "password-1", "passwordConfirm": "password-1"});
        let r = app.guest_post("/api/collections/users/records", body).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let auth = app.login("users", email, "password-1").await;
        let file = app.call(Method::POST, "/api/files/token", None, Some(&auth)).await;
        assert_eq!(file.status, 200);
        users.push((r.body, auth, file.body["token"].as_str().unwrap().to_owned()));
    }
    let owner_id = users[0].0["id"].as_str().unwrap();
    let png = picture(ImageFormat::Png);
    let owner = json!({"owner": owner_id});
    let (rec, n) = record_with(&app, "priv", owner, "doc", &[("secret.png", png.clone())]).await;
    let path = url(&rec, &n[0]);
    let su_file = app.post("/api/files/token", json!({})).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (owner_auth, owner_file) = (&users[0].1, &users[0].2);
    let other_file = &users[1].2;
    let users_id = users[0].0["collectionId"].as_str().unwrap();
    let expired = expired_file_token(&app, owner_file, users_id, owner_id);

    let ok = get(&app, &format!("{path}?token={owner_file}")).await;
    assert_eq!((ok.status, &ok.body), (200, &png));
    assert_eq!(
        get(&app, &format!("{path}?token={su_file}")).await.status,
        200,
        "superusers pass"
    );
    let thumb = get(&app, &format!("{path}?token={owner_file}&thumb=100x100")).await;
    assert_eq!(decode(&thumb).width(), 100);
    for (why, q) in [
        ("no token", String::new()),
        ("the rule fails for this user", format!("?token={other_file}")),
        ("an auth token is no file token", format!("?token={owner_auth}")),
        ("expired", format!("?token={expired}")),
        ("garbage", "?token=abc.def.ghi".to_owned()),
        ("a thumbnail is no way around", "?thumb=100x100".to_owned()),
    ] {
        let g = get(&app, &format!("{path}{q}")).await;
        assert_eq!(g.status, 404, "{why}");
        assert_eq!(g.json()["status"], 404, "{why}");
    }
    // The Authorization header does not count for files (only ?token=).
    let header = fetch(&app, Method::GET, &path, &[("Authorization", owner_auth)]).await;
    assert_eq!(header.status, 404);
    let head = fetch(&app, Method::HEAD, &path, &[]).await;
    assert_eq!(head.status, 404);
}
