//! `GET /api/files/{collection}/{recordId}/{name}`: originals, thumbnails,
//! protected files, PocketBase's headers, ranges and conditional requests.
//!
//! Files are stored with `Storage::put_bytes` and named in records created
//! over HTTP (setup); everything checked goes through HTTP.

use std::io::Cursor;

use awc::http::Method;
use base64::Engine;
use image::{DynamicImage, ImageBuffer, ImageFormat, Rgb};
use serde_json::{json, Value};

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

/// Creates a record of `collection` holding `files` (name → bytes) in
/// `field`, stores the bytes, and returns the record.
async fn record_with(
    app: &TestApp,
    collection: &str,
    mut body: Value,
    field: &str,
    files: &[(&str, Vec<u8>)],
) -> Value {
    let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
    body[field] = if field == "files" {
        json!(names)
    } else {
        json!(names[0])
    };
    let r = app.post(&format!("/api/collections/{collection}/records"), body).await;
    assert_eq!(r.status, 200, "create: {:?}", r.body);
    let (cid, rid) = (r.body["collectionId"].as_str().unwrap(), r.body["id"].as_str().unwrap());
    for (name, bytes) in files {
        let key = basalt::files::key(cid, rid, name);
        app.state.storage.put_bytes(&key, bytes.clone().into()).await.unwrap();
    }
    r.body
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
    let rec = record_with(
        &app,
        "docs",
        json!({"title": "t"}),
        "files",
        &[
            ("pic_abcdefghij.png", png.clone()),
            ("page_abcdefghij.html", html.clone()),
            ("img_abcdefghij.svg", svg.clone()),
            ("notes_abcdefghij.txt", b"hello".to_vec()),
        ],
    )
    .await;

    let g = get(&app, &url(&rec, "pic_abcdefghij.png")).await;
    assert_eq!(g.status, 200);
    assert_eq!(g.body, png);
    assert_eq!(g.header("content-type"), Some("image/png"));
    assert_eq!(
        g.header("content-disposition"),
        Some("inline; filename=\"pic_abcdefghij.png\"")
    );
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

    let head = fetch(&app, Method::HEAD, &url(&rec, "pic_abcdefghij.png"), &[]).await;
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(head.header("content-length"), Some(png.len().to_string().as_str()));
    assert_eq!(head.header("content-type"), Some("image/png"));

    let download = get(&app, &format!("{}?download=1", url(&rec, "pic_abcdefghij.png"))).await;
    assert_eq!(
        download.header("content-disposition"),
        Some("attachment; filename=\"pic_abcdefghij.png\"")
    );
    assert_eq!(download.body, png);

    // Active content is never shown inline, and never typed for sniffing.
    for (name, bytes, ty) in [
        ("page_abcdefghij.html", &html, "text/html; charset=utf-8"),
        ("img_abcdefghij.svg", &svg, "image/svg+xml"),
        ("notes_abcdefghij.txt", &b"hello".to_vec(), "text/plain; charset=utf-8"),
    ] {
        let g = get(&app, &url(&rec, name)).await;
        assert_eq!((g.status, &g.body), (200, bytes), "{name}");
        assert_eq!(g.header("content-type"), Some(ty), "{name}");
        assert_eq!(
            g.header("content-disposition"),
            Some(format!("attachment; filename=\"{name}\"").as_str())
        );
        assert!(g.header("content-security-policy").unwrap().contains("sandbox"));
        assert_eq!(g.header("x-content-type-options"), Some("nosniff"));
    }
    assert_eq!(
        fetch(&app, Method::POST, &url(&rec, "pic_abcdefghij.png"), &[])
            .await
            .status,
        405
    );
}

#[actix_web::test]
async fn names_outside_the_record_are_not_found() {
    let app = spawn_app().await;
    collections(&app).await;
    let png = picture(ImageFormat::Png);
    let a = record_with(&app, "docs", json!({}), "files", &[("a_abcdefghij.png", png.clone())]).await;
    let b = record_with(&app, "docs", json!({}), "files", &[("b_abcdefghij.png", png.clone())]).await;
    assert_eq!(get(&app, &url(&a, "a_abcdefghij.png")).await.status, 200);
    // Another record's file, through this record: its key exists, but not here.
    assert_eq!(get(&app, &url(&a, "b_abcdefghij.png")).await.status, 404);
    let (aid, bid) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    for path in [
        format!("/api/files/docs/{aid}/missing_abcdefghij.png"),
        format!("/api/files/docs/{aid}/..%2F{bid}%2Fb_abcdefghij.png"),
        format!("/api/files/docs/{aid}/%2E%2E"),
        format!("/api/files/docs/{aid}/a_abcdefghij.png%00"),
        "/api/files/docs/nosuchrecord123/a_abcdefghij.png".to_owned(),
        format!("/api/files/nosuch/{aid}/a_abcdefghij.png"),
        format!("/api/files/docs/{bid}/..%2F{aid}%2Fa_abcdefghij.png"),
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
    let rec = record_with(&app, "docs", json!({}), "files", &[("r_abcdefghij.png", png.clone())]).await;
    let path = url(&rec, "r_abcdefghij.png");
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
    assert_eq!(
        suffix.header("content-range"),
        Some(format!("bytes {}-{}/{size}", size - 5, size - 1).as_str())
    );
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
    let g = fetch(
        &app,
        Method::GET,
        &path,
        &[("If-Modified-Since", "Mon, 01 Jan 2001 00:00:00 GMT")],
    )
    .await;
    assert_eq!(g.status, 200, "modified since then");
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
    let rec = record_with(
        &app,
        "docs",
        json!({}),
        "files",
        &[
            ("p_abcdefghij.png", png.clone()),
            ("j_abcdefghij.jpg", jpg.clone()),
            ("t_abcdefghij.txt", b"not an image".to_vec()),
        ],
    )
    .await;
    let path = url(&rec, "p_abcdefghij.png");
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
        assert_eq!(
            g.header("content-disposition"),
            Some(format!("inline; filename=\"{size}_p_abcdefghij.png\"").as_str())
        );
        let img = decode(&g);
        assert_eq!((img.width(), img.height()), dims, "{size}");
    }
    // Top keeps the red half, bottom the blue one.
    assert_eq!(
        decode(&get(&app, &format!("{path}?thumb=50x30t")).await)
            .to_rgb8()
            .get_pixel(25, 15)
            .0,
        [255, 0, 0]
    );
    assert_eq!(
        decode(&get(&app, &format!("{path}?thumb=50x30b")).await)
            .to_rgb8()
            .get_pixel(25, 15)
            .0,
        [0, 0, 255]
    );

    // Cached in storage where PocketBase puts it, and not made again.
    let (cid, rid) = (rec["collectionId"].as_str().unwrap(), rec["id"].as_str().unwrap());
    let key = format!("{cid}/{rid}/thumbs_p_abcdefghij.png/50x30_p_abcdefghij.png");
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
    let g = get(&app, &format!("{}?thumb=50x30", url(&rec, "j_abcdefghij.jpg"))).await;
    assert_eq!(g.header("content-type"), Some("image/jpeg"));
    assert_eq!(decode(&g).width(), 50);
    // Sizes the field does not list, and non-images: the original.
    for (name, size, original) in [
        ("p_abcdefghij.png", "77x77", &png),
        ("p_abcdefghij.png", "50x31", &png),
        ("p_abcdefghij.png", "../50x30", &png),
        ("t_abcdefghij.txt", "50x30", &b"not an image".to_vec()),
    ] {
        let g = get(
            &app,
            &format!("{}?thumb={}", url(&rec, name), crate::helpers::enc(size)),
        )
        .await;
        assert_eq!((g.status, &g.body), (200, original), "{name} {size}");
        assert_eq!(
            g.header("content-disposition").unwrap(),
            format!(
                "{}; filename=\"{name}\"",
                if name.ends_with(".png") { "inline" } else { "attachment" }
            )
        );
    }
}

#[actix_web::test]
async fn concurrent_first_requests_make_one_thumbnail() {
    let app = spawn_app().await;
    collections(&app).await;
    let rec = record_with(
        &app,
        "docs",
        json!({}),
        "files",
        &[("c_abcdefghij.png", picture(ImageFormat::Png))],
    )
    .await;
    let path = format!("{}?thumb=50x30f", url(&rec, "c_abcdefghij.png"));
    let before = app.state.thumbs.rendered();
    let all = futures_util::future::join_all((0..6).map(|_| get(&app, &path))).await;
    for g in all {
        assert_eq!((g.status, decode(&g).width()), (200, 45));
    }
    assert_eq!(app.state.thumbs.rendered(), before + 1);
}

#[actix_web::test]
async fn image_bombs_get_the_original() {
    let app = spawn_app().await;
    collections(&app).await;
    let bomb = bomb_png(50_000, 50_000);
    assert!(bomb.len() < 100);
    let rec = record_with(
        &app,
        "docs",
        json!({}),
        "files",
        &[("bomb_abcdefghij.png", bomb.clone())],
    )
    .await;
    for _ in 0..3 {
        let g = get(&app, &format!("{}?thumb=100x100", url(&rec, "bomb_abcdefghij.png"))).await;
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
    let rec = record_with(
        &app,
        "priv",
        json!({"owner": owner_id}),
        "doc",
        &[("secret_abcdefghij.png", png.clone())],
    )
    .await;
    let path = url(&rec, "secret_abcdefghij.png");
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
