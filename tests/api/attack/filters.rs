//! REST list filters and sorts through relations and back-relations: every
//! path segment resolves under the rules of the collection it lands in.

use serde_json::{json, Value};

use super::{answer, enc, world, NOTE_SECRET, SSN, VAULT_CODE, VICTIM_EMAIL, VICTIM_NAME};

/// Pairs of filters that differ only in whether the victim's secret makes
/// them TRUE (the FALSE one asks the same with a wrong guess), and the
/// collection they are run on.
fn probes() -> Vec<(&'static str, String, String)> {
    let pair = |coll: &'static str, t: String, f: String| (coll, t, f);
    vec![
        // Hidden fields, secrets and non-public emails through a relation.
        pair("posts", format!("author.ssn = '{SSN}'"), "author.ssn = 'x'".into()),
        pair(
            "posts",
            format!("author.email = '{VICTIM_EMAIL}'"),
            "author.email = 'x@y.z'".into(),
        ),
        pair(
            "posts",
            "author.email ~ 'victim'".into(),
            "author.email ~ 'zzzz'".into(),
        ),
        pair(
            "posts",
            "author.password ~ '$argon2id$'".into(),
            "author.password ~ 'zzzz'".into(),
        ),
        pair("posts", "author.tokenKey != ''".into(), "author.tokenKey = ''".into()),
        pair(
            "posts",
            format!("author.email:lower = '{VICTIM_EMAIL}'"),
            "author.email:lower = 'x@y.z'".into(),
        ),
        // A related record the caller may not list (users: own record only).
        pair(
            "posts",
            format!("author.name = '{VICTIM_NAME}'"),
            "author.name = 'x'".into(),
        ),
        pair(
            "posts",
            "author.verified = false".into(),
            "author.verified = 'no'".into(),
        ),
        pair(
            "posts",
            "author.name:length > 2".into(),
            "author.name:length > 200".into(),
        ),
        // A superusers-only collection behind a relation.
        pair(
            "posts",
            format!("vault.code = '{VAULT_CODE}'"),
            "vault.code = 'x'".into(),
        ),
        // Back-relations: owner-only notes, a non-relation "via", any field.
        pair(
            "posts",
            format!("notes_via_post.secret = '{NOTE_SECRET}'"),
            "notes_via_post.secret = 'x'".into(),
        ),
        pair(
            "posts",
            "notes_via_post.secret ?~ 'launch'".into(),
            "notes_via_post.secret ?~ 'zzzz'".into(),
        ),
        pair(
            "posts",
            "notes_via_post.id:length > 0".into(),
            "notes_via_post.id:length > 5".into(),
        ),
        pair(
            "posts",
            "notes_via_post.owner.ssn != ''".into(),
            "notes_via_post.owner.ssn = ''".into(),
        ),
        pair(
            "posts",
            "users_via_id.password ~ '$argon2'".into(),
            "users_via_id.password ~ 'zzz'".into(),
        ),
        pair(
            "posts",
            "users_via_name.password ~ '$argon2'".into(),
            "users_via_name.password ~ 'zz'".into(),
        ),
        pair(
            "users",
            "notes_via_owner.secret ~ 'launch'".into(),
            "notes_via_owner.secret ~ 'zz'".into(),
        ),
        pair(
            "users",
            "posts_via_author.author.ssn != ''".into(),
            "posts_via_author.author.ssn = ''".into(),
        ),
        // Other collections by name.
        pair(
            "posts",
            "@collection._superusers.password ~ '$argon2id$%'".into(),
            "@collection._superusers.password ~ 'zz'".into(),
        ),
        pair(
            "posts",
            format!("@collection.notes.secret ?= '{NOTE_SECRET}'"),
            "@collection.notes.secret ?= 'x'".into(),
        ),
        pair(
            "posts",
            format!("@collection.users.ssn ?= '{SSN}'"),
            "@collection.users.ssn ?= 'x'".into(),
        ),
        // Directly on the collection.
        pair("users", format!("ssn = '{SSN}'"), "ssn = 'x'".into()),
        pair("users", "password ~ '$argon2'".into(), "password ~ 'zz'".into()),
    ]
}

async fn assert_no_oracle(w: &super::World, token: Option<&str>, who: &str) {
    for (coll, t, f) in probes() {
        for extra in ["", "&sort=-created", "&skipTotal=1", "&perPage=1"] {
            let path = |filter: &str| format!("/api/collections/{coll}/records?filter={}{extra}", enc(filter));
            let yes = answer(&w.app, &path(&t), token).await;
            let no = answer(&w.app, &path(&f), token).await;
            assert_eq!(yes, no, "{who} can tell `{t}` from `{f}` on {coll}");
        }
    }
}

#[actix_web::test]
async fn attack_filters_through_relations_are_no_oracle() {
    let w = world().await;
    assert_no_oracle(&w, None, "a guest").await;
    assert_no_oracle(&w, Some(&w.mallory_token), "a signed-up user").await;
}

#[actix_web::test]
async fn attack_forbidden_paths_are_refused_up_front() {
    let w = world().await;
    for filter in [
        "author.ssn = 'x'",
        "author.password != ''",
        "author.tokenKey != ''",
        "vault.code != ''",
        "notes_via_post.owner.tokenKey != ''",
        "@collection.notes.secret != ''",
    ] {
        let path = format!("/api/collections/posts/records?filter={}", enc(filter));
        for token in [None, Some(w.mallory_token.as_str())] {
            let (status, body) = answer(&w.app, &path, token).await;
            assert_eq!(status, 403, "{filter}: {body}");
        }
    }
    for filter in [
        "users_via_id.name != ''",
        "nope_via_author.x = 1",
        "a.b.c.d.e.f.g.h = 1",
    ] {
        let path = format!("/api/collections/posts/records?filter={}", enc(filter));
        let (status, body) = answer(&w.app, &path, Some(&w.mallory_token)).await;
        // Relation chains never deeper than 6; unknown back-relations refused.
        assert!(status == 400 || body["items"] == json!([]), "{filter}: {status} {body}");
    }
    // Secrets stay unreachable for superusers too.
    let r = w
        .app
        .get(&format!(
            "/api/collections/posts/records?filter={}",
            enc("author.password != ''")
        ))
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
}

#[actix_web::test]
async fn attack_relation_filters_still_work_for_those_allowed() {
    let w = world().await;
    let titles = |body: &Value| body["totalItems"].as_i64().unwrap_or(-9);
    // The victim may list their own user record: the hop reaches it.
    let path = format!(
        "/api/collections/posts/records?filter={}",
        enc(&format!("author.name = '{VICTIM_NAME}'"))
    );
    assert_eq!(titles(&answer(&w.app, &path, Some(&w.victim_token)).await.1), 1);
    assert_eq!(titles(&answer(&w.app, &path, Some(&w.mallory_token)).await.1), 0);
    assert_eq!(titles(&w.app.get(&path).await.body), 1, "superusers see everything");
    // Their own notes through the back-relation.
    let path = format!(
        "/api/collections/posts/records?filter={}",
        enc(&format!("notes_via_post.secret ?= '{NOTE_SECRET}'"))
    );
    assert_eq!(titles(&answer(&w.app, &path, Some(&w.victim_token)).await.1), 1);
    // Superusers may filter by hidden fields and other collections.
    for filter in [
        format!("author.ssn = '{SSN}'"),
        format!("@collection.notes.secret ?= '{NOTE_SECRET}'"),
        format!("author.email = '{VICTIM_EMAIL}'"),
    ] {
        let r = w
            .app
            .get(&format!("/api/collections/posts/records?filter={}", enc(&filter)))
            .await;
        assert_eq!((r.status, titles(&r.body)), (200, 1), "{filter}: {:?}", r.body);
    }
    // A public email is searchable, as PocketBase.
    let r = w
        .app
        .call(
            awc::http::Method::PATCH,
            &format!("/api/collections/users/records/{}", w.victim),
            Some(json!({"emailVisibility": true})),
            Some(&w.victim_token),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let path = format!(
        "/api/collections/posts/records?filter={}",
        enc(&format!("author.email = '{VICTIM_EMAIL}'"))
    );
    // ... but the users listRule still keeps the victim's record from mallory.
    assert_eq!(titles(&answer(&w.app, &path, Some(&w.victim_token)).await.1), 1);
    assert_eq!(titles(&answer(&w.app, &path, Some(&w.mallory_token)).await.1), 0);
}

#[actix_web::test]
async fn attack_sort_by_relation_sorts_and_guards() {
    let w = world().await;
    // A second author whose name sorts before the victim's.
    let (other, other_token) = super::user(&w.app, "aaron@example.com", "Aaron").await;
    for (author, title) in [(&other, "by-aaron"), (&w.victim, "by-victoria-2")] {
        let r = w
            .app
            .post(
                "/api/collections/posts/records",
                json!({"title": title, "author": author}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let order = |body: &Value| -> Vec<String> {
        body["items"]
            .as_array()
            .unwrap_or_else(|| panic!("items: {body}"))
            .iter()
            .map(|i| i["title"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    // Superusers: a real sort by the related name (then id).
    let asc = w.app.get("/api/collections/posts/records?sort=author.name,title").await;
    assert_eq!(asc.status, 200, "{:?}", asc.body);
    assert_eq!(order(&asc.body), ["by-aaron", "by-victoria-2", "hello"]);
    let desc = w
        .app
        .get("/api/collections/posts/records?sort=-author.name,title")
        .await;
    assert_eq!(order(&desc.body), ["by-victoria-2", "hello", "by-aaron"]);
    // Aaron sees only his own name: the others sort as empty, so ascending
    // and descending reveal nothing about the victim's name.
    let asc = answer(
        &w.app,
        "/api/collections/posts/records?sort=author.name,title",
        Some(&other_token),
    )
    .await;
    assert_eq!(order(&asc.1), ["by-victoria-2", "hello", "by-aaron"]);
    // Mallory sees no author at all: both directions give the same order.
    let a = answer(
        &w.app,
        "/api/collections/posts/records?sort=author.name",
        Some(&w.mallory_token),
    )
    .await;
    let d = answer(
        &w.app,
        "/api/collections/posts/records?sort=-author.name",
        Some(&w.mallory_token),
    )
    .await;
    assert_eq!(a.0, 200);
    let mut ra = order(&a.1);
    ra.reverse();
    assert_eq!(
        ra,
        order(&d.1),
        "a relation sort must only reverse the id tie-break for mallory"
    );
    // Hidden fields and secrets are refused as sort keys through relations.
    for sort in ["author.ssn", "-author.password", "author.tokenKey", "vault.code"] {
        let (status, body) = answer(
            &w.app,
            &format!("/api/collections/posts/records?sort={}", enc(sort)),
            Some(&w.mallory_token),
        )
        .await;
        assert_eq!(status, 403, "{sort}: {body}");
    }
}

/// A small deterministic generator (the test needs repeatable cases, not a crate).
struct Lcg(u64);

impl Lcg {
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        &items[((self.0 >> 33) as usize) % items.len()]
    }
}

/// Where each hop of the world's schema leads, and the fields at the end,
/// with the victim's value for each (the TRUE guess).
fn hops(coll: &str) -> &'static [(&'static str, &'static str)] {
    match coll {
        "posts" => &[("author", "users"), ("vault", "vault"), ("notes_via_post", "notes")],
        "users" => &[("posts_via_author", "posts"), ("notes_via_owner", "notes")],
        "notes" => &[("post", "posts"), ("owner", "users")],
        _ => &[],
    }
}

fn fields(coll: &str) -> Vec<(&'static str, String)> {
    match coll {
        "users" => vec![
            ("ssn", SSN.into()),
            ("email", VICTIM_EMAIL.into()),
            ("name", VICTIM_NAME.into()),
            ("password", "$argon2id$".into()),
            ("tokenKey", "a".into()),
            ("verified", "false".into()),
        ],
        "notes" => vec![("secret", NOTE_SECRET.into()), ("id", "x".into())],
        "vault" => vec![("code", VAULT_CODE.into())],
        _ => vec![("title", "hello".into())],
    }
}

/// Property: random filters over random relation chains (1 to 4 hops from
/// `posts`, any operator, alone or combined with a term the caller may
/// see) never tell a guest or a signed-up user anything about records they
/// cannot list: the victim's true value and a wrong guess answer the same.
#[actix_web::test]
async fn attack_random_relation_filters_never_reveal_hidden_data() {
    let w = world().await;
    let mut rng = Lcg(0x5eed_1234);
    let ops = ["=", "!=", "~", "!~", "?=", "?!=", "?~", ">", "<="];
    let combine = ["", " && title = 'hello'", " || title = 'nope'", " && title != ''"];
    for case in 0..150 {
        let mut coll = "posts";
        let mut path = Vec::new();
        let depth = 1 + case % 4;
        for _ in 0..depth {
            let options = hops(coll);
            if options.is_empty() {
                break;
            }
            let (hop, next) = *rng.pick(options);
            path.push(hop);
            coll = next;
        }
        let fs = fields(coll);
        let (field, truth) = rng.pick(&fs).clone();
        path.push(field);
        let (op, extra) = (*rng.pick(&ops), *rng.pick(&combine));
        let lhs = path.join(".");
        let t = format!("({lhs} {op} '{truth}'){extra}");
        let f = format!("({lhs} {op} 'wrong-guess'){extra}");
        for token in [None, Some(w.mallory_token.as_str())] {
            let url = |filter: &str| format!("/api/collections/posts/records?filter={}", enc(filter));
            let yes = answer(&w.app, &url(&t), token).await;
            let no = answer(&w.app, &url(&f), token).await;
            assert_eq!(
                yes,
                no,
                "case {case}: `{t}` vs `{f}` ({})",
                token.map_or("guest", |_| "user")
            );
        }
    }
}

/// SPEC §7 (unlike PocketBase): when a record's owner is deleted and the
/// relation cleared, `owner = @request.auth.id` does not make it a guest's.
#[actix_web::test]
async fn attack_records_of_deleted_owners_stay_private() {
    let w = world().await;
    let owner = "owner = @request.auth.id";
    w.app
        .create_collection(json!({
            "name": "diary", "listRule": owner, "viewRule": owner, "updateRule": owner, "deleteRule": owner,
            "createRule": owner,
            "schema": {"type": "object", "properties": {
                "owner": {"type": "string", "x-relation": {"collection": "users"}}, "text": {"type": "string"}
            }}
        }))
        .await;
    let (gone, token) = super::user(&w.app, "gone@example.com", "Gone").await;
    let r = w
        .app
        .call(
            awc::http::Method::POST,
            "/api/collections/diary/records",
            Some(json!({"owner": gone, "text": "dear diary"})),
            Some(&token),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        w.app
            .delete(&format!("/api/collections/users/records/{gone}"))
            .await
            .status,
        204
    );
    let stored = w.app.get(&format!("/api/collections/diary/records/{id}")).await;
    assert!(
        stored.body["owner"].as_str().is_none_or(str::is_empty),
        "{:?}",
        stored.body
    );
    let list = answer(&w.app, "/api/collections/diary/records", None).await;
    assert_eq!(list.1["totalItems"], 0, "{}", list.1);
    let path = format!("/api/collections/diary/records/{id}");
    assert_eq!(answer(&w.app, &path, None).await.0, 404);
    let patch = w
        .app
        .call(awc::http::Method::PATCH, &path, Some(json!({"text": "mine now"})), None)
        .await;
    assert_eq!(patch.status, 404);
    let delete = w.app.call(awc::http::Method::DELETE, &path, None, None).await;
    assert_eq!(delete.status, 404);
    assert_eq!(w.app.get(&path).await.body["text"], "dear diary");
}

/// Sorting users by `email` must not order them by addresses the caller
/// cannot see (an oracle for hidden emails).
#[actix_web::test]
async fn attack_sort_by_hidden_email_reveals_nothing() {
    let w = world().await;
    w.app
        .patch("/api/collections/users", json!({"listRule": "", "viewRule": ""}))
        .await;
    let (_, _) = super::user(&w.app, "aaaa@example.com", "A").await;
    let (_, _) = super::user(&w.app, "zzzz@example.com", "Z").await;
    let ids = |body: &Value| -> Vec<String> {
        body["items"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let asc = answer(&w.app, "/api/collections/users/records?sort=email", None).await;
    let desc = answer(&w.app, "/api/collections/users/records?sort=-email", None).await;
    assert_eq!(asc.0, 200, "{}", asc.1);
    // No email is public: both orders are the id order, one reversed.
    let mut by_id = ids(&asc.1);
    by_id.sort();
    assert_eq!(ids(&asc.1), by_id);
    let mut reversed = ids(&desc.1);
    reversed.reverse();
    assert_eq!(reversed, by_id);
}
