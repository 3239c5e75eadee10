//! Table-driven evaluation tests: a fixed set of documents, a fixed request
//! and clock, and (filter, expected matching ids) pairs covering every
//! operator, modifier and documented semantic choice.

use crate::query::{evaluate, parse_filter, Filter, JsonResolver};
use serde_json::{json, Value};

/// Saturday 2024-06-15 12:00:00.000Z.
const NOW: i64 = 1_718_452_800_000;

fn docs() -> Vec<Value> {
    vec![
        json!({"id": "r1", "title": "Hello World", "views": 10, "rating": 4.5, "published": true,
               "tags": ["news", "tech"], "address": {"city": "Paris", "zip": "75001"},
               "author": {"name": "Alice", "id": "u1"}, "name": "école", "note": null,
               "created": "2024-06-15 10:00:00.000Z", "scores": [1, 5, 9]}),
        json!({"id": "r2", "title": "It's a \"test\"", "views": 0, "published": false, "tags": [],
               "address": {"city": "Berlin"}, "author": {"name": "Bob", "id": "u2"},
               "name": "ÉCOLE Normale", "note": "", "created": "2024-06-14 23:59:59.999Z",
               "scores": []}),
        json!({"id": "r3", "title": "100% pure", "views": -5, "rating": 3, "published": true,
               "tags": ["tech"], "author": {"name": "alice", "id": "u1"}, "name": "Straße",
               "created": "2023-12-31 23:59:59.999Z", "scores": [7]}),
        json!({"id": "r4", "title": "draft", "views": 250, "published": false,
               "tags": ["news", "sports", "tech"], "address": {"city": "paris"}, "name": "",
               "note": "x", "created": "2024-06-15 12:00:00.000Z"}),
        json!({"id": "r5", "title": null, "views": "10", "tags": ["a%b"], "name": "50% off",
               "created": "2025-01-01 00:00:00.000Z"}),
        json!({"id": "r6", "title": "Zeta", "views": 10.0, "published": true, "tags": ["TECH"],
               "authors": [{"name": "Carl"}, {"name": "Dana"}], "scores": [10, 20],
               "created": "2024-06-16 00:00:00.000Z"}),
        json!({"id": "r7", "title": "", "views": 100, "scores": [3, 3],
               "nested": {"a": {"b": {"c": 1}}}, "address": "plain"}),
        json!({"id": "r8", "title": "Hello", "views": 7, "tags": ["x", "y"],
               "address": {"city": "Paris"}, "authors": []}),
    ]
}

fn request() -> Value {
    json!({
        "auth": {"id": "u1", "role": "admin", "verified": true},
        "body": {"title": "Hello World", "views": 11, "tags": ["news", "tech"], "note": null},
        "query": {"page": "2"},
        "headers": {"x_token": "abc"},
        "method": "PATCH",
        "context": "default",
    })
}

const ALL: &str = "r1 r2 r3 r4 r5 r6 r7 r8";

/// (filter, space-separated ids expected to match)
const CASES: &[(&str, &str)] = &[
    // = and != on strings, numbers, bools
    ("title = 'Hello World'", "r1"),
    ("title = \"Hello\"", "r8"),
    ("title != 'Hello'", "r1 r2 r3 r4 r5 r6 r7"),
    ("views = 10", "r1 r6"),
    ("views = '10'", "r5"),
    ("views != 10", "r2 r3 r4 r5 r7 r8"),
    ("published = true", "r1 r3 r6"),
    ("published = false", "r2 r4"),
    ("published != true", "r2 r4 r5 r7 r8"),
    ("published > false", ""),
    // ordering operators
    ("views > 10", "r4 r7"),
    ("views >= 10", "r1 r4 r6 r7"),
    ("views < 0", "r3"),
    ("views <= 0", "r2 r3"),
    ("views > -5.5", "r1 r2 r3 r4 r6 r7 r8"),
    ("rating > 4", "r1"),
    ("rating >= 3 && rating < 4.5", "r3"),
    ("title > 'Y'", "r4 r6"),
    // scalar any-of forms behave like the plain ones
    ("views ?= 10", "r1 r6"),
    ("views ?!= 10", "r2 r3 r4 r5 r7 r8"),
    ("views ?> 100", "r4"),
    ("views ?>= 100", "r4 r7"),
    ("views ?< 0", "r3"),
    ("views ?<= 0", "r2 r3"),
    ("title ?~ 'zeta'", "r6"),
    ("title ?!~ 'e'", "r4 r5 r7"),
    // null, blank and missing
    ("note = null", "r1 r2 r3 r5 r6 r7 r8"),
    ("note = ''", "r1 r2 r3 r5 r6 r7 r8"),
    ("note != null", "r4"),
    ("title = null", "r5 r7"),
    ("missing_field = null", ALL),
    ("missing_field != 1", ALL),
    ("missing_field > 0", ""),
    ("title.x = null", ALL),
    ("title.0 = 'H'", ""),
    // nested paths and fan-out
    ("address.city = 'Paris'", "r1 r8"),
    ("address.zip = '75001'", "r1"),
    ("address = 'plain'", "r7"),
    ("nested.a.b.c = 1", "r7"),
    ("author.name = 'Alice'", "r1"),
    ("authors.name ?= 'Dana'", "r6"),
    ("authors.name = 'Dana'", ""),
    ("tags.0 = 'news'", "r1 r4"),
    ("tags.1 = 'tech'", "r1"),
    // arrays: plain = every item, ? = any item, empty = null
    ("tags ?= 'tech'", "r1 r3 r4"),
    ("tags = 'tech'", "r3"),
    ("tags != 'news'", "r2 r3 r5 r6 r7 r8"),
    ("tags ?!= 'news'", ALL),
    ("tags = null", "r2 r7"),
    ("tags ?= null", "r2 r7"),
    ("'tech' ?= tags", "r1 r3 r4"),
    ("tags ?~ 'TEC'", "r1 r3 r4 r6"),
    ("tags ~ 'e'", "r1 r3 r6"),
    ("tags ?!~ 'tech'", "r1 r2 r4 r5 r7 r8"),
    ("tags !~ 'tech'", "r2 r5 r7 r8"),
    ("scores ?> 8", "r1 r6"),
    ("scores > 2", "r3 r6 r7"),
    ("scores ?>= 20", "r6"),
    ("scores ?< 2", "r1"),
    ("scores ?<= 3", "r1 r7"),
    // modifiers
    ("scores:each ?> 2", "r3 r6 r7"),
    ("tags:each = 'tech'", "r3"),
    ("scores:length = 0", "r2 r4 r5 r8"),
    ("scores:length >= 2", "r1 r6 r7"),
    ("tags:length = 3", "r4"),
    ("title:length > 0", ""),
    ("title:lower = 'hello world'", "r1"),
    ("address.city:lower = 'paris'", "r1 r4 r8"),
    ("tags:lower ?= 'tech'", "r1 r3 r4 r6"),
    // ~ : case-insensitive, unicode, wildcards, escapes
    ("address.city ~ 'PAR'", "r1 r4 r8"),
    ("name ~ 'ÉCOLE'", "r1 r2"),
    ("name ~ 'STRAßE'", "r3"),
    ("title ~ '100\\%'", "r3"),
    ("title ~ 'hello%'", "r1 r8"),
    ("title ~ '%world'", "r1"),
    ("title ~ 'h%o'", "r8"),
    ("name ~ '50\\%%'", "r5"),
    ("tags ?~ 'a\\%b'", "r5"),
    ("title !~ 'hello'", "r2 r3 r4 r5 r6 r7"),
    ("title ~ ''", ALL),
    ("views ~ 1", "r1 r5 r6 r7"),
    ("title ~ 'HELLO' && title !~ 'world'", "r8"),
    // escaped quotes in both styles
    ("title = 'It\\'s a \"test\"'", "r2"),
    ("title = \"It's a \\\"test\\\"\"", "r2"),
    // comments, precedence, parentheses
    ("title = 'Hello' // a comment\n|| views = 0", "r2 r8"),
    ("// only a comment", ALL),
    ("", ALL),
    ("1 = 1", ALL),
    ("1 = 2", ""),
    ("views = 0 || views = 7 && title = 'nope'", "r2"),
    ("(views = 0 || views = 7) && title = 'Hello'", "r8"),
    ("views = 0 || (views = 7 && title = 'Hello')", "r2 r8"),
    ("views = 10 && published = true || views = 0", "r1 r2 r6"),
    ("((((views = 250))))", "r4"),
    // @request.*
    ("@request.auth.id = author.id", "r1 r3"),
    ("@request.auth.role = 'admin' && published = true", "r1 r3 r6"),
    ("@request.auth.id != ''", ALL),
    ("@request.auth.verified = true && views = 7", "r8"),
    ("@request.method = 'PATCH'", ALL),
    ("@request.context != 'default'", ""),
    ("@request.query.page = '2' && views = 7", "r8"),
    ("@request.headers.x_token = 'abc' && views = 0", "r2"),
    ("@request.body.title:isset = true && views = 0", "r2"),
    ("@request.body.note:isset = true && views = 7", "r8"),
    ("@request.body.absent:isset = false && views = 7", "r8"),
    ("@request.body.title:changed = false", "r1"),
    ("@request.body.title:changed = true", "r2 r3 r4 r5 r6 r7 r8"),
    ("@request.body.tags:changed = false", "r1"),
    ("@request.body.absent:changed = true", ""),
    ("@request.body.views > views", "r1 r2 r3 r6 r8"),
    ("@request.body.tags:length = 2 && views = 7", "r8"),
    ("@collection.users:u.email ?= 'a'", ""),
    // date macros (now = 2024-06-15 12:00:00.000Z)
    ("created >= @todayStart && created <= @todayEnd", "r1 r4"),
    ("created < @now", "r1 r2 r3"),
    ("created > @yesterday && created < @tomorrow", "r1 r2 r4 r6"),
    ("created >= @monthStart && created <= @monthEnd", "r1 r2 r4 r6"),
    ("created >= @yearStart && created <= @yearEnd", "r1 r2 r4 r6"),
    ("created < @yearStart", "r3"),
    ("created ~ '2024-06-1%'", "r1 r2 r4 r6"),
    (
        "@weekday = 6 && @year = 2024 && @month = 6 && @day = 15 && @hour = 12 \
         && @minute = 0 && @second = 0 && views = 7",
        "r8",
    ),
];

fn matching_ids(filter: &Filter, docs: &[Value], req: &Value) -> String {
    docs.iter()
        .filter(|d| {
            evaluate(
                filter,
                &JsonResolver {
                    record: d,
                    request: req,
                    now_millis: NOW,
                },
            )
        })
        .filter_map(|d| d["id"].as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn table_driven_evaluation() {
    let docs = docs();
    let req = request();
    let mut failures = Vec::new();
    for (src, expected) in CASES {
        match parse_filter(src) {
            Ok(filter) => {
                let got = matching_ids(&filter, &docs, &req);
                if got != *expected {
                    failures.push(format!("{src:?}: expected [{expected}], got [{got}]"));
                }
                // Printing and re-parsing must not change the meaning.
                match parse_filter(&filter.to_string()) {
                    Ok(again) if matching_ids(&again, &docs, &req) == got => {}
                    other => failures.push(format!("{src:?}: reprint {filter} -> {other:?}")),
                }
            }
            Err(e) => failures.push(format!("{src:?}: {e}")),
        }
    }
    assert!(CASES.len() >= 60);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn guest_request_fails_auth_rules() {
    let docs = docs();
    let guest = json!({"auth": null, "body": {}, "query": {}, "headers": {},
                       "method": "GET", "context": "default"});
    for (src, expected) in [
        ("@request.auth.id != ''", ""),
        ("@request.auth.id = ''", ALL),
        ("@request.auth.id:isset = false", ALL),
        // SPEC §7, unlike PocketBase: a guest's empty id equals no record's
        // empty field.
        ("@request.auth.id = author.id", ""),
        ("author.id = @request.auth.id", ""),
        ("@request.auth.id != author.id", ALL),
        ("@request.auth.id ~ author.id", ""),
    ] {
        let filter = parse_filter(src).unwrap_or_else(|e| panic!("{src}: {e}"));
        assert_eq!(matching_ids(&filter, &docs, &guest), expected, "{src}");
    }
}

#[test]
fn filter_and_combines_rule_with_user_filter() {
    let docs = docs();
    let req = request();
    let parse = |s: &str| parse_filter(s).unwrap_or_else(|e| panic!("{s}: {e}"));
    let rule = parse("published = true || views = 0");
    let user = parse("views >= 10");
    let combined = rule.clone().and(user);
    assert_eq!(matching_ids(&combined, &docs, &req), "r1 r6");
    assert_eq!(combined.to_string(), "(published = true || views = 0) && views >= 10");
    assert_eq!(rule.clone().and(Filter::everything()), rule);
    assert!(Filter::everything().and(Filter::everything()).is_empty());
    let three = parse("a = 1 && b = 2").and(parse("c = 3"));
    assert_eq!(three.to_string(), "a = 1 && b = 2 && c = 3");
}
