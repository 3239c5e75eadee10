//! `GET /api/openapi.json`: generated from the collections, per caller
//! (see also `hardening.rs`).

use serde_json::json;

use crate::helpers::spawn_app;

#[actix_web::test]
async fn openapi_document_follows_the_collections() {
    let app = spawn_app().await;
    app.create_collection(json!({
        "name": "blog_posts", "listRule": "", "viewRule": "", "createRule": "",
        "schema": {"type": "object", "$defs": {"tag": {"type": "string", "maxLength": 20}},
                   "properties": {"title": {"type": "string"}, "tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}},
                                  "secret": {"type": "string", "x-hidden": true}},
                   "required": ["title"]}
    }))
    .await;
    app.create_collection(json!({"name": "internal", "schema": {"type": "object"}}))
        .await;
    let guest = app.guest_get("/api/openapi.json").await;
    assert_eq!(guest.status, 200);
    let doc = &guest.body;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.contains_key("/api/collections/blog_posts/records"));
    assert!(paths["/api/collections/blog_posts/records"].get("get").is_some());
    assert!(paths["/api/collections/blog_posts/records"].get("post").is_some());
    // Only the operations the caller may use are listed, saying who may…
    let one = &paths["/api/collections/blog_posts/records/{id}"];
    assert!(one.get("get").is_some() && one.get("delete").is_none(), "{one}");
    assert_eq!(
        paths["/api/collections/blog_posts/records"]["get"]["description"],
        "Anyone."
    );
    // …collections of superuser-only operations not at all…
    assert!(!paths.contains_key("/api/collections/internal/records"));
    assert!(doc["components"]["schemas"].get("InternalRecord").is_none());
    // …and hidden fields are not described to guests.
    let record = &doc["components"]["schemas"]["BlogPostsRecord"];
    assert!(record["properties"].get("title").is_some());
    assert!(record["properties"].get("secret").is_none());
    // The collection's own schema is embedded as-is, with local refs rebased.
    let fields = &doc["components"]["schemas"]["BlogPostsFields"];
    assert_eq!(fields["required"], json!(["title"]));
    assert_eq!(
        fields["properties"]["tags"]["items"]["$ref"],
        "#/components/schemas/BlogPostsFields/$defs/tag"
    );
    assert_eq!(doc["components"]["securitySchemes"]["token"]["in"], "header");
    // Superusers see everything.
    let su = app.get("/api/openapi.json").await.body;
    assert_eq!(
        su["paths"]["/api/collections/blog_posts/records/{id}"]["delete"]["description"],
        "Superusers only."
    );
    assert!(su["paths"].get("/api/collections/internal/records").is_some());
    assert!(su["components"]["schemas"]["BlogPostsRecord"]["properties"]
        .get("secret")
        .is_some());
}
