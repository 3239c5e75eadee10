//! File fields in the dashboard: the record form posts `multipart/form-data`
//! (with its CSRF token as a plain part) to upload, replace and remove
//! files; the form and the table show thumbnails or names; protected files
//! get a file token in their URLs; the collection editor shows `x-file`
//! mistakes.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::admin_support::{Browser, Html};
use crate::files::{stored, wait_stored};
use crate::form::{Form, PNG};
use crate::helpers::{spawn_app, TestApp};

const LIST: &str = "/_/collections/docs/records";

/// `docs`: a title, a single image field (small, PNG/JPEG), a multiple
/// attachment field and a protected single file.
async fn docs(app: &TestApp) -> String {
    let c = app
        .create_collection(json!({
            "name": "docs",
            "schema": {
                "type": "object",
                "properties": {
                    "title": {"type": "string", "maxLength": 100},
                    "avatar": {"type": "string", "x-file": {"maxSize": 1000, "mimeTypes": ["image/png", "image/jpeg"]}},
                    "files": {"type": "array", "items": {"type": "string"}, "x-file": {"maxSelect": 3, "maxSize": 100000}},
                    "secret": {"type": "string", "x-file": {"protected": true}}
                },
                "additionalProperties": false
            }
        }))
        .await;
    c["id"].as_str().unwrap().to_owned()
}

async fn record(app: &TestApp, id: &str) -> Value {
    let r = app.get(&format!("/api/collections/docs/records/{id}")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
}

async fn count(app: &TestApp) -> i64 {
    let r = app.get("/api/collections/docs/records?perPage=1").await;
    r.body["totalItems"].as_i64().unwrap()
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

fn record_dir(app: &TestApp, cid: &str, rid: &str) -> PathBuf {
    app.dir.join("storage").join(cid).join(rid)
}

/// Spool files left behind (there must be none once a request is done).
fn spooled(app: &TestApp) -> usize {
    std::fs::read_dir(app.dir.join(".uploads"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A file input left empty, as a browser sends it.
fn empty_file(form: Form, name: &str) -> Form {
    form.file(name, "", b"")
}

fn id_of(location: &str) -> String {
    location.rsplit('/').next().unwrap().to_owned()
}

/// A second PNG (the same image with a different trailing byte in a
/// private chunk would change nothing the checks read): PocketBase names
/// files by the upload's name, so a new name shows the replacement.
fn png_named(form: Form, field: &str, name: &str) -> Form {
    form.file(field, name, PNG)
}

async fn upload_new(b: &mut Browser) -> Html {
    let body = Form::new()
        .text("_csrf", &b.csrf.clone())
        .text("title", "first")
        .file("avatar", "face.png", PNG)
        .file("files+", "notes.txt", b"some notes")
        .file("secret", "", b"")
        .finish();
    b.post_multipart(&format!("{LIST}/new"), body, &[]).await
}

#[actix_web::test]
async fn the_record_form_uploads_replaces_and_removes_files() {
    let app = spawn_app().await;
    let cid = docs(&app).await;
    let mut b = Browser::login(&app).await;

    // The create form: a multipart form with one file input per field.
    let page = b.get(&format!("{LIST}/new")).await;
    assert_eq!(page.status, 200);
    page.assert_has("enctype=\"multipart/form-data\"");
    page.assert_has("type=\"file\" id=\"f2\" name=\"avatar\" accept=\"image/png,image/jpeg\"");
    page.assert_has("name=\"files+\" multiple");
    assert!(
        !page.body.contains("name=\"avatar\" value="),
        "no text box for a file field"
    );

    // Create with files (an empty file input is no file).
    let r = upload_new(&mut b).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let rid = id_of(r.location());
    let rec = record(&app, &rid).await;
    let avatar = rec["avatar"].as_str().unwrap().to_owned();
    assert!(avatar.starts_with("face_") && avatar.ends_with(".png"), "{avatar}");
    let files = names(&rec["files"]);
    assert_eq!(files.len(), 1);
    assert!(
        files[0].starts_with("notes_") && files[0].ends_with(".txt"),
        "{files:?}"
    );
    assert_eq!(rec["secret"].as_str().unwrap_or_default(), "", "no file");
    let dir = record_dir(&app, &cid, &rid);
    assert_eq!(std::fs::read(dir.join(&avatar)).unwrap(), PNG);

    // The record page: a thumbnail for the image, the name for the text
    // file, each with a link and a "remove" box.
    let path = format!("{LIST}/{rid}");
    let page = b.get(&path).await;
    assert_eq!(page.status, 200);
    let url = format!("/api/files/{cid}/{rid}/{avatar}");
    page.assert_has(&format!("<a href=\"{url}\""));
    page.assert_has(&format!("<img class=\"thumb\" src=\"{url}?thumb=100x100\""));
    page.assert_has(&format!("<span class=\"mono\">{}</span>", files[0]));
    page.assert_has(&format!("name=\"avatar-\" value=\"{avatar}\""));
    page.assert_has(&format!("name=\"files-\" value=\"{}\"", files[0]));
    assert!(
        !page
            .body
            .contains(&format!("src=\"/api/files/{cid}/{rid}/{}", files[0])),
        "no thumbnail for a text file"
    );

    // The table: a small thumbnail for the image, the name otherwise.
    let list = b.get(&format!("{LIST}?cols=avatar,files")).await;
    assert_eq!(list.status, 200);
    list.assert_has(&format!("<img class=\"thumb thumb-small\" src=\"{url}?thumb=100x100\""));
    list.assert_has(&format!("<span class=\"file-name\">{}</span>", files[0]));

    // Saving the form with its file inputs empty keeps every file.
    let body = empty_file(
        empty_file(
            Form::new().text("_csrf", &b.csrf.clone()).text("title", "renamed"),
            "avatar",
        ),
        "files+",
    )
    .finish();
    let r = b.post_multipart(&path, body, &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let rec = record(&app, &rid).await;
    assert_eq!(
        (rec["title"].as_str(), rec["avatar"].as_str()),
        (Some("renamed"), Some(avatar.as_str()))
    );
    assert_eq!(names(&rec["files"]), files);

    // A new image replaces the single field's file; a multiple field adds.
    let body = png_named(
        Form::new().text("_csrf", &b.csrf.clone()).text("title", "renamed"),
        "avatar",
        "other.png",
    )
    .file("files+", "more.txt", b"more")
    .finish();
    let r = b.post_multipart(&path, body, &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let rec = record(&app, &rid).await;
    let avatar2 = rec["avatar"].as_str().unwrap().to_owned();
    assert!(avatar2.starts_with("other_"), "{avatar2}");
    let files2 = names(&rec["files"]);
    assert_eq!(files2.len(), 2);
    assert_eq!(files2[0], files[0]);
    wait_stored(&dir, &[&avatar2, &files2[0], &files2[1]]).await;

    // The "remove" boxes remove (the rest stays).
    let body = Form::new()
        .text("_csrf", &b.csrf.clone())
        .text("title", "renamed")
        .text("files-", &files2[0])
        .text("avatar-", &avatar2)
        .file("avatar", "", b"")
        .finish();
    let r = b.post_multipart(&path, body, &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let rec = record(&app, &rid).await;
    assert_eq!(rec["avatar"].as_str().unwrap_or_default(), "", "removed");
    assert_eq!(names(&rec["files"]), vec![files2[1].clone()]);
    wait_stored(&dir, &[&files2[1]]).await;
    assert_eq!(spooled(&app), 0, "no spool file left");
}

#[actix_web::test]
async fn a_multipart_post_needs_the_session_its_csrf_token_and_our_origin() {
    let app = spawn_app().await;
    docs(&app).await;
    let mut b = Browser::login(&app).await;
    b.get(&format!("{LIST}/new")).await;
    let with = |csrf: Option<&str>| {
        let mut f = Form::new();
        if let Some(t) = csrf {
            f = f.text("_csrf", t);
        }
        f.text("title", "x").file("avatar", "face.png", PNG).finish()
    };
    let new = format!("{LIST}/new");
    for csrf in [None, Some(""), Some("not-the-token")] {
        let r = b.post_multipart(&new, with(csrf), &[]).await;
        assert_eq!(r.status, 403, "{csrf:?}: {}", r.body);
    }
    // The right token from another site.
    let token = b.csrf.clone();
    let r = b
        .post_multipart(&new, with(Some(&token)), &[("Origin", "https://evil.example")])
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    // No session: to the login page, the body unread.
    let mut guest = Browser::new(&app);
    let r = guest.post_multipart(&new, with(Some(&token)), &[]).await;
    assert_eq!(r.status, 303);
    assert!(r.location().starts_with("/_/login"), "{}", r.location());
    // A malformed multipart body is a clear 400 page, not a 5xx.
    let r = b.post_multipart(&new, b"--nope".to_vec(), &[]).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(count(&app).await, 0);
    assert_eq!(spooled(&app), 0, "refused uploads leave no spool file");
    // And the same body with the token goes through.
    let r = b.post_multipart(&new, with(Some(&token)), &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(count(&app).await, 1);
}

#[actix_web::test]
async fn a_refused_file_shows_its_error_on_the_form_again() {
    let app = spawn_app().await;
    let cid = docs(&app).await;
    let mut b = Browser::login(&app).await;
    let r = upload_new(&mut b).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let rid = id_of(r.location());
    let before = record(&app, &rid).await;
    b.get(&format!("{LIST}/{rid}")).await;
    let path = format!("{LIST}/{rid}");

    // Over the field's maxSize (1000 bytes): 400, the message on the field,
    // the other values and the ticked "remove" boxes shown again.
    let big = vec![7u8; 2000];
    let files = names(&before["files"]);
    let body = Form::new()
        .text("_csrf", &b.csrf.clone())
        .text("title", "kept text")
        .text("files-", &files[0])
        .file("avatar", "huge.png", &big)
        .finish();
    let page = b.post_multipart(&path, body, &[]).await;
    assert_eq!(page.status, 400, "{}", page.body);
    page.assert_has("data-field-error=\"avatar\"");
    page.assert_has("the maximum allowed file size is 1000 bytes");
    page.assert_has("value=\"kept text\"");
    page.assert_has(&format!("name=\"files-\" value=\"{}\" checked", files[0]));
    assert_eq!(record(&app, &rid).await, before, "nothing changed");

    // A type the field does not take.
    let body = Form::new()
        .text("_csrf", &b.csrf.clone())
        .text("title", "t")
        .file("avatar", "a.txt", b"plain text")
        .finish();
    let page = b.post_multipart(&path, body, &[]).await;
    assert_eq!(page.status, 400, "{}", page.body);
    page.assert_has("data-field-error=\"avatar\"");
    page.assert_has("mime type must be one of: image/png, image/jpeg");

    // A file over its field's maxSize and over the largest one of the
    // collection (5 MiB): still the field's error on the form.
    let body = Form::new()
        .text("_csrf", &b.csrf.clone())
        .text("title", "t")
        .file("secret", "big.bin", &vec![3u8; 6 * 1024 * 1024])
        .finish();
    let page = b.post_multipart(&path, body, &[]).await;
    assert_eq!(page.status, 400, "{}", page.body);
    page.assert_has("data-field-error=\"secret\"");
    page.assert_has("the maximum allowed file size is 5242880 bytes");

    // A body over what the collection's file fields may take in all: a
    // clear 413 page, before any of it is stored.
    let huge = vec![1u8; 10 * 1024 * 1024];
    let body = Form::new()
        .text("_csrf", &b.csrf.clone())
        .file("files+", "big.bin", &huge)
        .finish();
    let page = b.post_multipart(&path, body, &[]).await;
    assert_eq!(page.status, 413, "{}", page.body);
    page.assert_has("larger than the");
    assert_eq!(record(&app, &rid).await, before);
    assert_eq!(
        stored(&record_dir(&app, &cid, &rid)).len(),
        2,
        "only the record's two files"
    );
    assert_eq!(spooled(&app), 0);
}

/// The JWT payload of a token (no signature check: the server checks it).
fn claims(token: &str) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[actix_web::test]
async fn protected_files_get_a_superuser_file_token_in_their_urls() {
    let app = spawn_app().await;
    let cid = docs(&app).await;
    let mut b = Browser::login(&app).await;
    b.get(&format!("{LIST}/new")).await;
    let body = Form::new()
        .text("_csrf", &b.csrf.clone())
        .text("title", "t")
        .file("secret", "s.png", PNG)
        .file("avatar", "open.png", PNG)
        .finish();
    let r = b.post_multipart(&format!("{LIST}/new"), body, &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let rid = id_of(r.location());
    let rec = record(&app, &rid).await;
    let (secret, open) = (rec["secret"].as_str().unwrap(), rec["avatar"].as_str().unwrap());

    let page = b.get(&format!("{LIST}/{rid}")).await;
    let url = format!("/api/files/{cid}/{rid}/{secret}?thumb=100x100&#38;token=");
    page.assert_has(&url);
    let at = page.body.find(&url).unwrap() + url.len();
    let token = &page.body[at..at + page.body[at..].find('"').unwrap()];
    let c = claims(token);
    assert_eq!(c["type"], json!("file"), "{c}");
    let superusers = app.get("/api/collections/_superusers").await;
    assert_eq!(c["collectionId"], superusers.body["id"], "a superuser's token: {c}");
    // Files of unprotected fields carry no token.
    page.assert_has(&format!("src=\"/api/files/{cid}/{rid}/{open}?thumb=100x100\""));
    let list = b.get(&format!("{LIST}?cols=secret")).await;
    list.assert_has(&format!("/api/files/{cid}/{rid}/{secret}?thumb=100x100&#38;token="));
}

#[actix_web::test]
async fn the_collection_editor_shows_x_file_mistakes() {
    let app = spawn_app().await;
    let mut b = Browser::login(&app).await;
    b.get("/_/collections/new").await;
    let form = |schema: &str| {
        let mut f: Vec<(String, String)> = [("name", "pics"), ("type", "base"), ("schema", schema), ("indexes", "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for key in ["listRule", "viewRule", "createRule", "updateRule", "deleteRule"] {
            f.push((format!("{key}_mode"), "locked".into()));
            f.push((key.into(), String::new()));
        }
        f
    };
    let post = |f: &[(String, String)]| f.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>();
    let schema = r#"{"type":"object","properties":{"pic":{"type":"string","x-file":{"thumbs":["big"]}}}}"#;
    let f = post(&form(schema));
    let refs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let page = b.post("/_/collections/new", &refs).await;
    assert_eq!(page.status, 400, "{}", page.body);
    page.assert_has("x-file.thumbs: &#39;big&#39; is not a size");
    // A correct one is saved, and its records get a file input.
    let f = post(&form(&schema.replace("[\"big\"]", "[\"50x50\"]")));
    let refs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = b.post("/_/collections/new", &refs).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = b.get("/_/collections/pics/records/new").await;
    page.assert_has("type=\"file\" id=\"f1\" name=\"pic\"");
}
