use super::*;
use crate::schema::compile::{compile, validate};

fn same(s: &str) -> String {
    s.to_owned()
}

/// Every field type with every option set away from its default, as
/// PocketBase itself would send it back (all keys present).
fn every_field() -> Vec<Value> {
    let f = |v: Value| sorted(v.as_object().cloned().unwrap());
    vec![
        f(
            json!({"name":"title","type":"text","id":"text_custom","system":false,"hidden":false,"presentable":true,"required":true,"help":"the title","min":2,"max":10,"pattern":"^[a-z]+$","autogeneratePattern":"","primaryKey":false}),
        ),
        f(
            json!({"name":"slug","type":"text","id":default_field_id("text","slug"),"system":true,"hidden":true,"presentable":false,"required":false,"help":"","min":0,"max":0,"pattern":"","autogeneratePattern":"[a-z0-9]{8}","primaryKey":false}),
        ),
        f(
            json!({"name":"body","type":"editor","id":default_field_id("editor","body"),"system":false,"hidden":false,"presentable":false,"required":false,"help":"","maxSize":1000,"convertURLs":true}),
        ),
        f(
            json!({"name":"n","type":"number","id":default_field_id("number","n"),"system":false,"hidden":false,"presentable":false,"required":false,"help":"","min":1,"max":5,"onlyInt":true}),
        ),
        f(
            json!({"name":"x","type":"number","id":default_field_id("number","x"),"system":false,"hidden":false,"presentable":false,"required":true,"help":"","min":null,"max":2.5,"onlyInt":false}),
        ),
        f(
            json!({"name":"ok","type":"bool","id":default_field_id("bool","ok"),"system":false,"hidden":false,"presentable":false,"required":true,"help":""}),
        ),
        f(
            json!({"name":"mail","type":"email","id":default_field_id("email","mail"),"system":false,"hidden":false,"presentable":false,"required":false,"help":"","onlyDomains":["x.io"],"exceptDomains":[]}),
        ),
        f(
            json!({"name":"site","type":"url","id":default_field_id("url","site"),"system":false,"hidden":false,"presentable":false,"required":false,"help":"","onlyDomains":[],"exceptDomains":["bad.io"]}),
        ),
        f(
            json!({"name":"when","type":"date","id":default_field_id("date","when"),"system":false,"hidden":false,"presentable":false,"required":false,"help":"","min":"2020-01-01 00:00:00.000Z","max":""}),
        ),
        f(
            json!({"name":"seen","type":"autodate","id":default_field_id("autodate","seen"),"system":false,"hidden":false,"presentable":false,"onCreate":false,"onUpdate":true}),
        ),
        f(
            json!({"name":"color","type":"select","id":default_field_id("select","color"),"system":false,"hidden":false,"presentable":false,"required":false,"help":"","values":["red","blue"],"maxSelect":1}),
        ),
        f(
            json!({"name":"tags","type":"select","id":default_field_id("select","tags"),"system":false,"hidden":false,"presentable":false,"required":true,"help":"","values":["a","b","c"],"maxSelect":2}),
        ),
        f(
            json!({"name":"owner","type":"relation","id":default_field_id("relation","owner"),"system":false,"hidden":false,"presentable":false,"required":false,"help":"","collectionId":"_pb_users_auth_","cascadeDelete":true,"minSelect":0,"maxSelect":1}),
        ),
        f(
            json!({"name":"links","type":"relation","id":default_field_id("relation","links"),"system":false,"hidden":false,"presentable":false,"required":false,"help":"","collectionId":"pbc_1","cascadeDelete":false,"minSelect":1,"maxSelect":3}),
        ),
        f(
            json!({"name":"meta","type":"json","id":default_field_id("json","meta"),"system":false,"hidden":false,"presentable":false,"required":false,"help":"","maxSize":200}),
        ),
        f(
            json!({"name":"at","type":"geoPoint","id":default_field_id("geoPoint","at"),"system":false,"hidden":false,"presentable":false,"required":false,"help":""}),
        ),
    ]
}

#[test]
fn fields_schema_fields_is_identity_for_every_type_and_option() {
    for kind in [CollectionType::Base, CollectionType::Auth] {
        let mut fields = leading_system_fields(kind);
        fields.extend(every_field());
        fields.extend(trailing_system_fields());
        let schema = fields_to_schema(&json!(fields), kind, &json!({})).unwrap();
        compile(&schema).unwrap();
        assert_eq!(schema_to_fields(&schema, kind, &same), fields);
        // And schema -> fields -> schema keeps the schema.
        let again = fields_to_schema(&json!(schema_to_fields(&schema, kind, &same)), kind, &json!({})).unwrap();
        assert_eq!(again, schema);
    }
}

#[test]
fn pocketbase_fields_map_onto_readable_json_schema() {
    let schema = fields_to_schema(&json!(every_field()), CollectionType::Base, &json!({})).unwrap();
    let p = &schema["properties"];
    assert_eq!(
        p["title"],
        json!({"type":"string","minLength":2,"maxLength":10,"pattern":"^[a-z]+$","not":{"const":""},"x-field":{"id":"text_custom","presentable":true,"help":"the title"}})
    );
    assert_eq!(p["n"], json!({"type":"integer","minimum":1,"maximum":5,"x-blank":0}));
    assert_eq!(
        p["owner"],
        json!({"type":"string","x-relation":{"collection":"_pb_users_auth_","cascadeDelete":true}})
    );
    assert_eq!(
        p["body"],
        json!({"type":"string","x-maxSize":1000,"x-field":{"type":"editor","convertURLs":true}})
    );
    assert_eq!(schema["required"], json!(["title", "x", "ok", "tags"]));
}

#[test]
fn mapped_schema_validates_records_as_pocketbase() {
    let schema = fields_to_schema(&json!(every_field()), CollectionType::Base, &json!({})).unwrap();
    let v = compile(&schema).unwrap();
    let base = json!({"title":"abc","x":1,"ok":true,"tags":["a"]});
    let with = |k: &str, val: Value| {
        let mut d = base.clone();
        d[k] = val;
        d
    };
    assert_eq!(validate(&v, &base), Ok(()));
    // Blank optional values pass whatever the constraints.
    for (k, blank) in [
        ("n", json!(0)),
        ("mail", json!("")),
        ("when", json!("")),
        ("color", json!("")),
        ("links", json!([])),
    ] {
        assert_eq!(validate(&v, &with(k, blank.clone())), Ok(()), "{k}={blank}");
    }
    let code = |doc: Value, k: &str| validate(&v, &doc).unwrap_err()[k].code.clone();
    assert_eq!(code(with("title", json!("")), "title"), "validation_required");
    assert_eq!(code(with("title", json!("a")), "title"), "validation_min_length");
    assert_eq!(
        code(with("title", json!("ABC")), "title"),
        "validation_pattern_mismatch"
    );
    assert_eq!(code(with("ok", json!(false)), "ok"), "validation_required");
    assert_eq!(code(with("n", json!(1.5)), "n"), "validation_invalid_type");
    assert_eq!(code(with("n", json!(9)), "n"), "validation_max");
    assert_eq!(
        code(with("mail", json!("a@y.io")), "mail"),
        "validation_domain_not_allowed"
    );
    assert_eq!(
        code(with("site", json!("https://bad.io/x")), "site"),
        "validation_domain_not_allowed"
    );
    assert_eq!(
        code(with("when", json!("2019-01-01 00:00:00.000Z")), "when"),
        "validation_min_date_constraint"
    );
    assert_eq!(code(with("when", json!("soon")), "when"), "validation_invalid_date");
    assert_eq!(code(with("color", json!("green")), "color"), "validation_not_in_enum");
    assert_eq!(
        code(with("tags", json!(["a", "b", "c"])), "tags"),
        "validation_max_items"
    );
    assert_eq!(code(with("tags", json!([])), "tags"), "validation_required");
    assert_eq!(
        code(with("links", json!(["1", "2", "3", "4"])), "links"),
        "validation_max_items"
    );
    assert_eq!(
        code(with("meta", json!({"k": "x".repeat(300)})), "meta"),
        "validation_max_size"
    );
    assert_eq!(
        code(with("at", json!({"lon": 200, "lat": 0})), "at.lon"),
        "validation_max"
    );
    assert_eq!(
        code(json!({"x":1,"ok":true,"tags":["a"]}), "title"),
        "validation_required"
    );
}

#[test]
fn file_fields_round_trip() {
    let fields = json!([
        {"name":"avatar","type":"file","maxSelect":1,"maxSize":1000,"mimeTypes":["image/png"],"thumbs":["100x100"],"protected":true},
        {"name":"docs","type":"file","maxSelect":5,"required":true}
    ]);
    let schema = fields_to_schema(&fields, CollectionType::Base, &json!({})).unwrap();
    assert_eq!(schema["properties"]["avatar"]["x-file"]["thumbs"], json!(["100x100"]));
    assert_eq!(schema["properties"]["docs"]["type"], "array");
    let back = schema_to_fields(&schema, CollectionType::Base, &|s| s.to_owned());
    let f = |n: &str| back.iter().find(|f| f["name"] == n).cloned().unwrap();
    let avatar = f("avatar");
    assert_eq!(avatar["type"], "file");
    assert_eq!(
        (
            &avatar["maxSelect"],
            &avatar["maxSize"],
            &avatar["protected"],
            &avatar["mimeTypes"]
        ),
        (&json!(1), &json!(1000), &json!(true), &json!(["image/png"]))
    );
    let docs = f("docs");
    assert_eq!(
        (&docs["maxSelect"], &docs["required"], &docs["maxSize"]),
        (&json!(5), &json!(true), &json!(5242880))
    );
}

#[test]
fn bad_fields_are_refused_naming_the_field() {
    let err = |fields: Value| match fields_to_schema(&fields, CollectionType::Base, &json!({})) {
        Err(SchemaError::Invalid { field, message, .. }) => (field, message),
        Ok(s) => panic!("accepted {s}"),
    };
    assert_eq!(err(json!([{"name":"a","type":"nope"}])).0, "fields.0.type");
    let (field, message) =
        err(json!([{"name":"t","type":"text"},{"name":"doc","type":"file","thumbs":["1x1","huge"]}]));
    assert_eq!(field, "fields.1.thumbs");
    assert!(message.contains("huge"), "{message}");
    let (field, _) = err(json!([{"name":"doc","type":"file","maxSize":-5}]));
    assert_eq!(field, "fields.0.maxSize");
    assert_eq!(err(json!([{"name":"p","type":"password"}])).0, "fields.0.type");
    assert_eq!(err(json!([{"name":"a","type":"text","min":"x"}])).0, "fields.0.min");
    assert_eq!(err(json!([{"name":"a","type":"text","bogus":1}])).0, "fields.0.bogus");
    assert_eq!(err(json!([{"name":"a","type":"text","pattern":"("}])).0, "fields.0");
    assert_eq!(
        err(json!([{"name":"a","type":"text","autogeneratePattern":"(a|b)"}])).0,
        "fields.0.autogeneratePattern"
    );
    assert_eq!(
        err(json!([{"name":"a","type":"select","values":[]}])).0,
        "fields.0.values"
    );
    assert_eq!(err(json!([{"name":"a","type":"relation"}])).0, "fields.0.collectionId");
    assert_eq!(err(json!([{"name":"a-b","type":"text"}])).0, "fields.0.name");
    assert_eq!(
        err(json!([{"name":"a","type":"text"},{"name":"A","type":"bool"}])).0,
        "fields.1.name"
    );
    assert_eq!(err(json!([{"name":"created","type":"text"}])).0, "fields.0.type");
    assert_eq!(err(json!([{"name":"expand","type":"json"}])).0, "fields.0.name");
    assert_eq!(err(json!({"name":"a"})).0, "fields");
    let many: Vec<Value> = (0..=MAX_FIELDS)
        .map(|i| json!({"name": format!("f{i}"), "type": "bool"}))
        .collect();
    assert_eq!(err(json!(many)).0, "fields");
}

#[test]
fn unchanged_properties_keep_their_hand_written_form() {
    let base = json!({"type":"object","additionalProperties":false,"properties":{
        "title":{"type":"string","maxLength":5,"description":"kept"}}});
    let mut fields = schema_to_fields(&base, CollectionType::Base, &same);
    fields.push(json!({"name":"n","type":"number"}));
    let out = fields_to_schema(&json!(fields), CollectionType::Base, &base).unwrap();
    assert_eq!(out["properties"]["title"]["description"], "kept");
    assert_eq!(out["additionalProperties"], false);
    assert_eq!(out["properties"]["n"], json!({"type":"number"}));
}

#[test]
fn index_statements_both_ways() {
    let idx = parse_index(
        "CREATE UNIQUE INDEX IF NOT EXISTS `idx_a` ON `posts` (`title`, views DESC);",
        CollectionType::Base,
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        idx,
        IndexSpec {
            name: "idx_a".into(),
            fields: vec!["title".into(), "-views".into()],
            unique: true
        }
    );
    assert_eq!(
        index_sql(&idx, "posts"),
        "CREATE UNIQUE INDEX `idx_a` ON `posts` (`title`, `views` DESC)"
    );
    assert_eq!(
        parse_index(&index_sql(&idx, "posts"), CollectionType::Base)
            .unwrap()
            .unwrap(),
        idx
    );
    assert_eq!(
        parse_index("create index i on p (a)", CollectionType::Base)
            .unwrap()
            .unwrap()
            .fields,
        vec!["a"]
    );
    // PocketBase's own auth indexes are Basalt's system indexes.
    for sys in [
        "CREATE UNIQUE INDEX `idx_tokenKey_x` ON `users` (`tokenKey`)",
        "CREATE UNIQUE INDEX `idx_email_x` ON `users` (`email`) WHERE `email` != ''",
    ] {
        assert_eq!(parse_index(sys, CollectionType::Auth), Ok(None));
    }
    for bad in [
        "DROP TABLE x",
        "CREATE INDEX i ON p (a) WHERE a > 1",
        "CREATE INDEX i ON p (lower(a))",
        "CREATE INDEX i ON p (a COLLATE NOCASE)",
        "CREATE INDEX i ON p (a); DROP TABLE p",
        "CREATE INDEX `i ON p (a)",
        "CREATE INDEX i ON p ()",
        "",
    ] {
        assert!(parse_index(bad, CollectionType::Base).is_err(), "{bad}");
    }
}

#[test]
fn auth_options_map_and_keep_the_rest() {
    let mut opts = AuthOptions::default();
    let mut extra = Map::new();
    apply_auth_key("authToken", json!({"duration": 100}), &mut opts, &mut extra).unwrap();
    apply_auth_key(
        "passwordAuth",
        json!({"enabled": true, "identityFields": ["email", "username"]}),
        &mut opts,
        &mut extra,
    )
    .unwrap();
    apply_auth_key(
        "otp",
        json!({"enabled": true, "duration": 60, "length": 6, "emailTemplate": {"subject": "s", "body": "b"}}),
        &mut opts,
        &mut extra,
    )
    .unwrap();
    apply_auth_key(
        "mfa",
        json!({"enabled": false, "duration": 600, "rule": ""}),
        &mut opts,
        &mut extra,
    )
    .unwrap();
    assert_eq!(opts.auth_token_duration, 100);
    assert_eq!(opts.identity_fields, vec!["email", "username"]);
    assert_eq!((opts.otp.enabled, opts.otp.duration, opts.otp.length), (true, 60, 6));
    assert_eq!(
        auth_key_view("authToken", &opts, &extra),
        Some(json!({"duration": 100}))
    );
    assert_eq!(
        auth_key_view("otp", &opts, &extra).unwrap()["emailTemplate"]["subject"],
        "s"
    );
    assert_eq!(
        auth_key_view("mfa", &opts, &extra),
        Some(json!({"enabled": false, "duration": 600, "rule": ""}))
    );
    assert!(apply_auth_key("authToken", json!({"duration": -1}), &mut opts, &mut extra).is_err());
    assert!(apply_auth_key("otp", json!(5), &mut opts, &mut extra).is_err());
}

#[test]
fn autogenerate_patterns() {
    let s = generate("[a-z0-9]{15}").unwrap();
    assert_eq!(s.len(), 15);
    assert!(s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    let s = generate("id_\\d{2,4}").unwrap();
    assert!(s.starts_with("id_") && (5..=7).contains(&s.len()));
    let many_parts = "a{0}".repeat(300);
    // Refused before the class is built: 10,000 ranges of the whole of
    // Unicode (gigabytes if expanded), or 10,000 `\w` escapes.
    let huge_ranges = format!("[{}]", "!-\u{10FFFF}".repeat(10_000));
    let many_escapes = format!("[{}]", "\\w".repeat(10_000));
    for bad in [
        huge_ranges.as_str(),
        many_escapes.as_str(),
        "a*",
        "[^a]{3}",
        "(ab){2}",
        "[a-z]{300}",
        "[z-a]",
        "a{2,1}",
        "[\u{0}-\u{10FFFF}]",
        &many_parts,
    ] {
        assert!(generate(bad).is_err(), "{bad}");
    }
}

#[test]
fn default_field_ids_match_pocketbase() {
    // Seen on PocketBase 0.40.6: the id field and the created autodate.
    assert_eq!(default_field_id("text", "id"), "text3208210256");
    assert_eq!(default_field_id("autodate", "created"), "autodate2990389176");
}
