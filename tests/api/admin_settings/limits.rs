//! The "Server limits" section: the `limits` settings (connection and
//! realtime caps per address, body read timeout, auth mails per recipient)
//! shown, saved and refused like the API does, with the start-time caps
//! shown read-only.

use serde_json::json;

use super::{refused, save, settings};
use crate::admin_support::Browser;
use crate::helpers::spawn_app;

#[actix_web::test]
async fn server_limits_section_shows_saves_and_refuses_bad_numbers() {
    let app = spawn_app().await;
    let mut b = Browser::login(&app).await;
    let page = b.get("/_/settings").await;
    page.assert_has("Server limits");
    page.assert_has(r#"name="limits.connectionsPerAddress" id="f-limits-connectionsPerAddress" value="256""#);
    page.assert_has(r#"name="limits.bodyTimeout" id="f-limits-bodyTimeout" value="30""#);
    page.assert_has("<code>--max-connections</code>");
    page.assert_has("<strong>10 s</strong>");
    page.assert_has("<strong>120 s</strong> (<code>--keep-alive</code>)");

    save(
        &mut b,
        "/_/settings/server-limits",
        &[
            ("limits.connectionsPerAddress", "512"),
            ("limits.realtimePerAddress", "20"),
            ("limits.bodyTimeout", "15"),
            ("limits.mailsPerAddress", "5"),
            ("limits.mailWindow", "3600"),
        ],
    )
    .await;
    let s = settings(&app).await;
    assert_eq!(
        s["limits"],
        json!({"connectionsPerAddress": 512, "realtimePerAddress": 20, "bodyTimeout": 15,
               "mailsPerAddress": 5, "mailWindow": 3600})
    );

    let ok = [
        ("limits.connectionsPerAddress", "512"),
        ("limits.realtimePerAddress", "20"),
        ("limits.bodyTimeout", "15"),
        ("limits.mailsPerAddress", "5"),
        ("limits.mailWindow", "3600"),
    ];
    let with = |key: &str, value: &'static str| {
        let mut f = ok.to_vec();
        f.iter_mut().filter(|(k, _)| *k == key).for_each(|(_, v)| *v = value);
        f
    };
    // Text in a number field: the form's own check.
    refused(
        &mut b,
        "/_/settings/server-limits",
        &with("limits.bodyTimeout", "soon"),
        "limits-bodyTimeout",
        "Must be a whole number of seconds from 1 to 3600.",
    )
    .await;
    // Out of range: the settings store's check, shown at the field.
    refused(
        &mut b,
        "/_/settings/server-limits",
        &with("limits.connectionsPerAddress", "4"),
        "limits-connectionsPerAddress",
        "Must be 16..1000000.",
    )
    .await;
    refused(
        &mut b,
        "/_/settings/server-limits",
        &with("limits.mailWindow", "0"),
        "limits-mailWindow",
        "Must be 1..86400.",
    )
    .await;
    assert_eq!(settings(&app).await, s, "nothing saved by a refused form");
}
