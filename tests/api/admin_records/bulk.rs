//! Bulk deletion: selected records, and the background job for a filter.

use serde_json::{json, Value};

use super::{enc, seed, total, LIST};
use crate::admin_support::Browser;
use crate::helpers::spawn_app;

#[actix_web::test]
async fn bulk_delete_of_selected_records() {
    let app = spawn_app().await;
    app.posts().await;
    let ids = seed(
        &app,
        "posts",
        (0..5).map(|i| json!({"title": format!("p{i}")})).collect(),
    )
    .await;
    let mut b = Browser::login(&app).await;
    b.get(LIST).await;
    let r = b
        .post(
            &format!("{LIST}/bulk-delete"),
            &[
                ("back", "sort=title&filter=views>1"),
                ("ids", &ids[0]),
                ("ids", &ids[2]),
                ("ids", "gone-id"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location(), format!("{LIST}?sort=title&filter=views%3E1"));
    let page = b.get(LIST).await;
    page.assert_has("Deleted 2 records. 1 were already gone.");
    assert_eq!(total(&app, "posts", "").await, 3);
    for (i, id) in ids.iter().enumerate() {
        let status = app.get(&format!("/api/collections/posts/records/{id}")).await.status;
        assert_eq!(status, if i == 0 || i == 2 { 404 } else { 200 }, "record {i}");
    }
    // Nothing selected: told so, nothing deleted.
    let r = b.post(&format!("{LIST}/bulk-delete"), &[("back", "")]).await;
    assert_eq!((r.status, r.location()), (303, LIST));
    assert_eq!(total(&app, "posts", "").await, 3);
}

#[actix_web::test]
async fn delete_matching_runs_as_a_job_with_progress() {
    let app = spawn_app().await;
    app.create_collection(json!({
        "name": "events",
        "schema": {"type": "object", "properties": {"kind": {"type": "string"}, "n": {"type": "integer"}}}
    }))
    .await;
    let mut bodies: Vec<Value> = (0..1000).map(|n| json!({"kind": "old", "n": n})).collect();
    bodies.extend((0..30).map(|n| json!({"kind": "keep", "n": n})));
    seed(&app, "events", bodies).await;
    let list = "/_/collections/events/records";
    let mut b = Browser::login(&app).await;
    let page = b.get(&format!("{list}?filter={}", enc("kind = 'old'"))).await;
    page.assert_has("Delete all 1000 records matching this filter");
    page.assert_has("name=\"expected\" value=\"1000\"");

    // A count that no longer matches what the user confirmed: nothing happens.
    let r = b
        .post(
            &format!("{list}/delete-matching"),
            &[("filter", "kind = 'old'"), ("expected", "999")],
        )
        .await;
    assert_eq!(r.status, 303);
    assert!(r.location().starts_with(&format!("{list}?filter=")), "{}", r.location());
    assert_eq!(total(&app, "events", "kind = 'old'").await, 1000);
    // No filter, or a bad one: refused.
    let r = b
        .post(
            &format!("{list}/delete-matching"),
            &[("filter", ""), ("expected", "1030")],
        )
        .await;
    assert_eq!(r.status, 400);
    let r = b
        .post(
            &format!("{list}/delete-matching"),
            &[("filter", "kind ="), ("expected", "0")],
        )
        .await;
    assert_eq!(r.status, 400);
    r.assert_has("invalid filter at position");

    let r = b
        .post(
            &format!("{list}/delete-matching"),
            &[("filter", "kind = 'old'"), ("expected", "1000")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let job = r.location().to_owned();
    assert!(job.starts_with(&format!("{list}/jobs/")), "{job}");
    // Poll the progress page (the job runs in the background) until it says done.
    let mut last = String::new();
    let mut done = false;
    for _ in 0..2000 {
        let page = b.get(&job).await;
        assert_eq!(page.status, 200);
        if page.body.contains("data-job-phase=\"done\"") {
            assert!(
                !page.body.contains("data-reload-seconds"),
                "a finished job stops reloading"
            );
            page.assert_has("<strong>1000</strong> of 1000 deleted (100%)");
            page.assert_has("value=\"1000\" max=\"1000\"");
            page.assert_has(&format!("href=\"{list}\">Back to events"));
            done = true;
            break;
        }
        assert!(
            !page.body.contains("data-job-phase=\"failed\""),
            "job failed: {}",
            page.body
        );
        page.assert_has("data-reload-seconds=\"1\"");
        last = page.body;
        actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(done, "the delete job did not finish; last progress page:\n{last}");
    assert_eq!(total(&app, "events", "kind = 'old'").await, 0);
    assert_eq!(total(&app, "events", "kind = 'keep'").await, 30);
    // Unknown jobs, or a job looked up under another collection: 404.
    assert_eq!(b.get(&format!("{list}/jobs/nope")).await.status, 404);
    let other = job.replace("/events/", "/users/");
    assert_eq!(b.get(&other).await.status, 404);
}

#[actix_web::test]
async fn bulk_delete_keeps_the_last_superuser() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/api/collections/_superusers/records",
            json!({"email": "two@example.com", "password": "password-2", "passwordConfirm": "password-2"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let two = r.body["id"].as_str().unwrap().to_owned();
    let list = app
        .get("/api/collections/_superusers/records?filter=email%3D%27root%40example.com%27")
        .await;
    let root = list.body["items"][0]["id"].as_str().unwrap().to_owned();
    let mut b = Browser::login(&app).await;
    let path = "/_/collections/_superusers/records";
    b.get(path).await;
    // Both in one write: each alone would pass the guard, together they must not.
    let r = b
        .post(&format!("{path}/bulk-delete"), &[("ids", &two), ("ids", &root)])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = b.get(path).await;
    page.assert_has("Deleted 1 record. 1 not deleted");
    page.assert_has("The last superuser cannot be deleted.");
    assert_eq!(total(&app, "_superusers", "").await, 1);
    assert_eq!(
        app.get(&format!("/api/collections/_superusers/records/{root}"))
            .await
            .status,
        200
    );
}
