//! `GET /api/openapi.json`: an OpenAPI 3.1 document generated from the
//! current collections.
//!
//! OpenAPI 3.1 schemas *are* JSON Schema 2020-12, so each collection's own
//! schema goes in as a component unchanged, except that its local `$ref`s
//! (`#/$defs/x`, relative to the collection schema) are rewritten to point
//! inside the component. Response schemas are deliberately open (no
//! `required`, extra properties allowed): `fields` may trim any answer and
//! `expand` adds `expand`, so a strict response schema would lie.
//!
//! The document is per caller (SPEC §7: it shows a caller only the
//! collections and operations it may use): an operation is listed only when
//! its rule is not `null` (superusers only) for this caller, a collection
//! with no such operation is left out entirely (paths and components), and
//! so is the superusers' collection. Superusers see everything, each
//! operation's rule in its description; others learn only whether an
//! operation is open to anyone or depends on a rule, never the rule's
//! text (rules tell how records are guarded). `x-hidden` fields are only
//! described to superusers.

use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};

use crate::core::{Caller, SUPERUSERS};
use crate::schema::{CollectionType, CompiledCollection};
use crate::state::AppState;

/// A component name for a collection (`posts` → `PostsRecord` style).
fn component(name: &str, suffix: &str) -> String {
    let mut out = String::new();
    let mut upper = true;
    for c in name.chars() {
        if c == '_' {
            upper = true;
            continue;
        }
        if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'C');
    }
    out + suffix
}

/// Rewrites `#/…` references so they resolve inside `components/schemas/<name>`.
fn rebase_refs(v: &mut Value, base: &str) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if matches!(k.as_str(), "$ref" | "$dynamicRef" | "$recursiveRef") {
                    if let Value::String(r) = child {
                        if let Some(rest) = r.strip_prefix('#') {
                            *r = format!("#/components/schemas/{base}{rest}");
                        }
                    }
                } else {
                    rebase_refs(child, base);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| rebase_refs(c, base)),
        _ => {}
    }
}

fn system_properties(c: &CompiledCollection) -> Map<String, Value> {
    let mut p = Map::new();
    for f in ["id", "collectionId", "collectionName", "created", "updated"] {
        p.insert(f.into(), json!({"type": "string"}));
    }
    if c.def.kind == CollectionType::Auth {
        p.insert("email".into(), json!({"type": "string"}));
        p.insert("emailVisibility".into(), json!({"type": "boolean"}));
        p.insert("verified".into(), json!({"type": "boolean"}));
    }
    p.insert("expand".into(), json!({"type": "object"}));
    p
}

fn error_ref() -> Value {
    json!({"$ref": "#/components/schemas/Error"})
}

fn responses(ok_status: &str, ok: Value) -> Value {
    let mut r = Map::new();
    r.insert(
        ok_status.into(),
        if ok.is_null() {
            json!({"description": "Done."})
        } else {
            json!({"description": "Success.", "content": {"application/json": {"schema": ok}}})
        },
    );
    r.insert(
        "default".into(),
        json!({"description": "An error in the contract's shape.", "content": {"application/json": {"schema": error_ref()}}}),
    );
    Value::Object(r)
}

fn query_params(names: &[(&str, &str)]) -> Vec<Value> {
    names
        .iter()
        .map(|(n, t)| json!({"name": n, "in": "query", "required": false, "schema": {"type": t}}))
        .collect()
}

/// Who may call an operation, for its description: the rule itself only
/// for superusers.
fn who(rule: &Option<String>, superuser: bool) -> String {
    match rule.as_deref() {
        None => "Superusers only.".into(),
        Some(r) if r.trim().is_empty() => "Anyone.".into(),
        Some(r) if superuser => format!("Callers for whom this rule holds: `{r}`."),
        Some(_) => {
            "Callers for whom the collection's rule holds (records it rules out are left out or not found).".into()
        }
    }
}

/// Whether `caller` may use an operation guarded by `rule` at all.
fn usable(rule: &Option<String>, caller: &Caller) -> bool {
    caller.is_superuser() || rule.is_some()
}

/// Builds the document for `caller`: the shared parts, then each
/// collection the caller may use at all (its schemas and paths).
pub fn document(state: &AppState, caller: &Caller) -> Value {
    let mut schemas = Map::new();
    schemas.insert(
        "Error".into(),
        json!({"type": "object", "properties": {
            "status": {"type": "integer"}, "message": {"type": "string"},
            "data": {"type": "object", "additionalProperties": {"type": "object", "properties": {
                "code": {"type": "string"}, "message": {"type": "string"}}}}},
            "required": ["status", "message", "data"]}),
    );
    let mut paths = Map::new();
    paths.insert(
        "/api/health".into(),
        json!({"get": {"operationId": "health", "summary": "Health check", "responses": responses("200", json!({"type": "object"}))}}),
    );
    for c in state.registry.all() {
        let ops = Operations::of(&c, caller);
        if !ops.login && !ops.any {
            continue;
        }
        collection_schemas(&c, caller, &mut schemas);
        collection_paths(&c, caller, &ops, &mut paths);
    }
    paths.insert("/api/batch".into(), batch_path());
    let meta = &state.settings.get().meta;
    json!({
        "openapi": "3.1.0",
        "info": {"title": format!("{} API", meta.app_name), "version": env!("CARGO_PKG_VERSION"),
                 "description": "Generated from the current collections by Basalt."},
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "servers": [{"url": "/"}],
        "security": [{}, {"token": []}],
        "components": {
            "securitySchemes": {"token": {"type": "apiKey", "in": "header", "name": "Authorization",
                "description": "An auth token (`TOKEN` or `Bearer TOKEN`) from auth-with-password."}},
            "schemas": schemas,
        },
        "paths": paths,
    })
}

/// What of a collection's API a caller may use.
struct Operations {
    /// Logins: the superusers' is the dashboard's business, not an
    /// operation of anyone else's API; `authRule: null` disables logins.
    login: bool,
    /// Any record operation.
    any: bool,
}

impl Operations {
    fn of(c: &CompiledCollection, caller: &Caller) -> Operations {
        let d = &c.def;
        let rules = [
            &d.list_rule,
            &d.create_rule,
            &d.view_rule,
            &d.update_rule,
            &d.delete_rule,
        ];
        Operations {
            login: d.kind == CollectionType::Auth
                && (caller.is_superuser() || (d.name != SUPERUSERS && d.auth_rule.is_some())),
            any: rules.iter().any(|r| usable(r, caller)),
        }
    }
}

/// A collection's component schemas: its fields as written (`…Fields`), a
/// record as read (`…Record`, hidden fields only for superusers) and a
/// list page (`…List`).
fn collection_schemas(c: &CompiledCollection, caller: &Caller, schemas: &mut Map<String, Value>) {
    let name = &c.def.name;
    let (user, record, list) = (
        component(name, "Fields"),
        component(name, "Record"),
        component(name, "List"),
    );
    let mut fields_schema = c.def.schema.clone();
    rebase_refs(&mut fields_schema, &user);
    if let Some(obj) = fields_schema.as_object_mut() {
        obj.remove("$schema");
        obj.remove("$id");
    }
    schemas.insert(user.clone(), fields_schema);
    let mut props = system_properties(c);
    if let Some(p) = c.def.schema.get("properties").and_then(Value::as_object) {
        for (k, v) in p {
            if c.hidden.contains(k) && !caller.is_superuser() {
                continue;
            }
            let mut v = v.clone();
            rebase_refs(&mut v, &user);
            props.insert(k.clone(), v);
        }
    }
    schemas.insert(record.clone(), json!({"type": "object", "properties": props}));
    schemas.insert(
        list,
        json!({"type": "object", "properties": {
            "page": {"type": "integer"}, "perPage": {"type": "integer"},
            "totalItems": {"type": "integer"}, "totalPages": {"type": "integer"},
            "nextCursor": {"type": "string"},
            "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{record}")}}}}),
    );
}

/// A collection's paths: `…/records` (list, create), `…/records/{id}`
/// (view, update, delete) and its login, each only as far as `caller` may
/// use them.
fn collection_paths(c: &CompiledCollection, caller: &Caller, ops: &Operations, paths: &mut Map<String, Value>) {
    let name = &c.def.name;
    let record_ref = json!({"$ref": format!("#/components/schemas/{}", component(name, "Record"))});
    let base = format!("/api/collections/{name}/records");
    let coll_ops = collection_ops(c, caller, &record_ref);
    if !coll_ops.is_empty() {
        paths.insert(base.clone(), Value::Object(coll_ops));
    }
    let one_ops = record_ops(c, caller, &record_ref);
    if !one_ops.is_empty() {
        paths.insert(format!("{base}/{{id}}"), Value::Object(one_ops));
    }
    if ops.login {
        paths.insert(
            format!("/api/collections/{name}/auth-with-password"),
            json!({"post": {"operationId": format!("auth_{name}"), "tags": [name],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object",
                    "properties": {"identity": {"type": "string"}, "password": {"type": "string"}},
                    "required": ["identity", "password"]}}}},
                "responses": responses("200", json!({"type": "object", "properties": {
                    "token": {"type": "string"}, "record": record_ref}}))}}),
        );
    }
}

fn read_params() -> Vec<Value> {
    query_params(&[("expand", "string"), ("fields", "string")])
}

/// `GET` (list) and `POST` (create) of `…/records`.
fn collection_ops(c: &CompiledCollection, caller: &Caller, record_ref: &Value) -> Map<String, Value> {
    let (name, su) = (&c.def.name, caller.is_superuser());
    let tag = json!([name]);
    let mut ops = Map::new();
    if usable(&c.def.list_rule, caller) {
        let mut params = query_params(&[
            ("page", "integer"),
            ("perPage", "integer"),
            ("sort", "string"),
            ("filter", "string"),
            ("skipTotal", "boolean"),
            ("cursor", "string"),
        ]);
        params.extend(read_params());
        ops.insert(
            "get".into(),
            json!({"operationId": format!("list_{name}"), "tags": tag, "summary": format!("List {name} records"),
                   "description": who(&c.def.list_rule, su),
                   "parameters": params,
                   "responses": responses("200", json!({"$ref": format!("#/components/schemas/{}", component(name, "List"))}))}),
        );
    }
    if usable(&c.def.create_rule, caller) {
        let mut create_body = json!({"$ref": format!("#/components/schemas/{}", component(name, "Fields"))});
        if c.def.kind == CollectionType::Auth {
            create_body = json!({"allOf": [create_body, {"type": "object", "properties": {
                "email": {"type": "string"}, "password": {"type": "string"}, "passwordConfirm": {"type": "string"},
                "emailVisibility": {"type": "boolean"}}}]});
        }
        ops.insert(
            "post".into(),
            json!({"operationId": format!("create_{name}"), "tags": tag, "summary": format!("Create a {name} record"),
                   "description": who(&c.def.create_rule, su),
                   "parameters": read_params(),
                   // An empty body is read as `{}` (as the SDKs send for no data).
                   "requestBody": {"required": false, "content": body_content(c, create_body, false)},
                   "responses": responses("200", record_ref.clone())}),
        );
    }
    ops
}

/// The `multipart/form-data` body of a collection with file fields, as
/// the SDKs send it: files under their field (`field+` appends, `+field`
/// prepends; `field-` names files to remove), the other fields as text
/// parts (typed by the schema) or together in `@jsonPayload`. `None` for a
/// collection without file fields (JSON only).
fn multipart_body(c: &CompiledCollection, update: bool) -> Option<Value> {
    if c.files.is_empty() {
        return None;
    }
    let binary = json!({"type": "string", "format": "binary"});
    let mut props = Map::new();
    for (field, spec) in &c.files {
        let mut desc = format!("At most {} bytes per file", spec.max_size);
        if !spec.mime_types.is_empty() {
            desc.push_str(&format!("; types: {}", spec.mime_types.join(", ")));
        }
        let files = if spec.multiple {
            json!({"type": "array", "items": binary, "maxItems": spec.max_select, "description": desc})
        } else {
            json!({"allOf": [binary], "description": desc})
        };
        props.insert(field.clone(), files.clone());
        if update {
            props.insert(format!("{field}+"), files.clone());
            props.insert(format!("+{field}"), files);
            props.insert(
                format!("{field}-"),
                json!({"type": "array", "items": {"type": "string"}, "description": "Stored names to remove"}),
            );
        }
    }
    props.insert(
        "@jsonPayload".into(),
        json!({"type": "string", "description": "The other fields as one JSON object"}),
    );
    Some(json!({"schema": {"type": "object", "properties": props, "additionalProperties": {"type": "string"}}}))
}

/// A request body: JSON, and multipart when the collection has file fields.
fn body_content(c: &CompiledCollection, json_schema: Value, update: bool) -> Value {
    let mut content = json!({"application/json": {"schema": json_schema}});
    if let Some(form) = multipart_body(c, update) {
        content["multipart/form-data"] = form;
    }
    content
}

/// `GET` (view), `PATCH` (update) and `DELETE` of `…/records/{id}`.
fn record_ops(c: &CompiledCollection, caller: &Caller, record_ref: &Value) -> Map<String, Value> {
    let (name, su) = (&c.def.name, caller.is_superuser());
    let tag = json!([name]);
    let id_param = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}});
    let mut with_id = vec![id_param.clone()];
    with_id.extend(read_params());
    let mut ops = Map::new();
    if usable(&c.def.view_rule, caller) {
        ops.insert(
            "get".into(),
            json!({"operationId": format!("view_{name}"), "tags": tag, "parameters": with_id,
                   "description": who(&c.def.view_rule, su),
                   "responses": responses("200", record_ref.clone())}),
        );
    }
    if usable(&c.def.update_rule, caller) {
        ops.insert(
            "patch".into(),
            json!({"operationId": format!("update_{name}"), "tags": tag, "parameters": with_id,
                   "description": who(&c.def.update_rule, su),
                   "requestBody": {"required": false, "content": body_content(c, json!({"type": "object"}), true)},
                   "responses": responses("200", record_ref.clone())}),
        );
    }
    if usable(&c.def.delete_rule, caller) {
        ops.insert(
            "delete".into(),
            json!({"operationId": format!("delete_{name}"), "tags": tag, "parameters": [id_param],
                   "description": who(&c.def.delete_rule, su),
                   "responses": responses("204", Value::Null)}),
        );
    }
    ops
}

/// `POST /api/batch`.
fn batch_path() -> Value {
    json!({"post": {"operationId": "batch", "summary": "Several record writes, all or nothing",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"type": "object",
            "properties": {"requests": {"type": "array", "items": {"type": "object", "properties": {
                "method": {"type": "string"}, "url": {"type": "string"}, "body": {"type": "object"}}}}},
            "required": ["requests"]}}}},
        "responses": responses("200", json!({"type": "array", "items": {"type": "object", "properties": {
            "status": {"type": "integer"}, "body": {}}}}))}})
}

/// `GET /api/openapi.json`.
pub async fn handler(state: web::Data<AppState>, caller: Caller) -> HttpResponse {
    HttpResponse::Ok().json(document(&state, &caller))
}
