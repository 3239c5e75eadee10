//! Listing records: parse `filter`/`sort`, combine with the listRule, plan
//! (index or scan), stream or sort, page, count, expand.

use std::collections::HashMap;
use std::ops::Bound;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde::Serialize;
use serde_json::Value;

use super::expand::{expand_records, ExpandTree};
use super::records::{raw, RawJson};
use crate::clock::now_millis;
use crate::error::ApiError;
use crate::query::planner::{self, IndexInfo, Kind, Plan};
use crate::query::{
    compare_records, encode_value, parse_filter, parse_sort, Expr, Filter, Identifier, JsonResolver, Operand, Resolved,
    Resolver, Root, SortKey, TAG_NUMBER, TAG_STRING,
};
use crate::rules::{self, Access, RequestInfo};
use crate::schema::record::{export, export_raw};
use crate::schema::CompiledCollection;
use crate::state::AppState;
use crate::store::index::IndexField;
use crate::store::{IndexDef, PRIMARY_INDEX};

/// PocketBase's paging limits.
pub const DEFAULT_PER_PAGE: usize = 30;
pub const MAX_PER_PAGE: usize = 1000;

/// Parsed list query parameters.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    pub page: usize,
    pub per_page: usize,
    pub sort: String,
    pub filter: String,
    pub skip_total: bool,
    pub expand: String,
    /// Keyset pagination: continue after this opaque position.
    pub cursor: Option<String>,
    /// Superusers only: include the chosen plan in the answer.
    pub explain: bool,
}

fn parse_positive(q: &HashMap<String, String>, key: &str, default: usize) -> Result<usize, ApiError> {
    match q.get(key).map(|s| s.trim()) {
        None => Ok(default),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(ApiError::bad_request(format!("'{key}' must be a positive integer."))),
        },
    }
}

fn flag(q: &HashMap<String, String>, key: &str) -> Result<bool, ApiError> {
    match q.get(key).map(|s| s.trim()) {
        None | Some("0" | "false" | "False") => Ok(false),
        Some("1" | "true" | "True") => Ok(true),
        Some(_) => Err(ApiError::field(
            key,
            "validation_invalid_value",
            "Must be true, false, 1 or 0.",
        )),
    }
}

impl ListParams {
    pub fn from_query(q: &HashMap<String, String>) -> Result<ListParams, ApiError> {
        Ok(ListParams {
            page: parse_positive(q, "page", 1)?,
            // Like PocketBase: a perPage above the maximum is clamped, not refused.
            per_page: parse_positive(q, "perPage", DEFAULT_PER_PAGE)?.min(MAX_PER_PAGE),
            sort: q.get("sort").cloned().unwrap_or_default(),
            filter: q.get("filter").cloned().unwrap_or_default(),
            skip_total: flag(q, "skipTotal")?,
            expand: q.get("expand").cloned().unwrap_or_default(),
            cursor: q.get("cursor").filter(|c| !c.is_empty()).cloned(),
            explain: flag(q, "explain")?,
        })
    }
}

/// The list response shape (`totalItems`/`totalPages` are -1 with `skipTotal`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListResult {
    pub page: usize,
    pub per_page: usize,
    pub total_items: i64,
    pub total_pages: i64,
    pub items: Vec<RawJson>,
    /// Present when the list is walked in index order and more items follow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

/// Refuses client filters/sorts that would let a non-superuser probe data
/// they cannot see: hidden fields, secrets, and `@collection.*` (as PocketBase).
fn check_client_paths(
    coll: &CompiledCollection,
    filter: &Filter,
    sort: &[SortKey],
    superuser: bool,
) -> Result<(), ApiError> {
    let secret = |p: &[String]| {
        p.first()
            .is_some_and(|f| f == "password" || f == "tokenKey" || (!superuser && coll.hidden.iter().any(|h| h == f)))
    };
    for k in sort {
        if secret(&k.path) {
            return Err(ApiError::forbidden(format!(
                "Sorting by '{}' is not allowed.",
                k.path.join(".")
            )));
        }
    }
    let mut stack: Vec<&Expr> = filter.expr().into_iter().collect();
    while let Some(e) = stack.pop() {
        match e {
            Expr::And(items) | Expr::Or(items) => stack.extend(items),
            Expr::Cmp(c) => {
                for side in [&c.left, &c.right] {
                    if let Operand::Ident(id) = side {
                        match &id.root {
                            Root::Record if secret(&id.path) => {
                                return Err(ApiError::forbidden(format!(
                                    "Filtering by '{}' is not allowed.",
                                    id.path.join(".")
                                )))
                            }
                            Root::Collection { .. } if !superuser => {
                                return Err(ApiError::forbidden("Only superusers can filter by '@collection.*'."))
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// Indexes the planner may use: the primary tree (as `_id`) and every
/// finished index.
fn index_defs(state: &AppState, coll: &CompiledCollection) -> Vec<IndexDef> {
    let mut defs = vec![IndexDef {
        name: PRIMARY_INDEX.into(),
        unique: true,
        fields: vec![IndexField {
            path: vec!["id".into()],
            desc: false,
        }],
        lowercase: false,
    }];
    defs.extend(
        coll.spec
            .indexes
            .iter()
            .filter(|i| !i.lowercase && state.index_builds.is_ready(&coll.def.id, &i.name))
            .cloned(),
    );
    defs
}

/// Raw key bounds of a plan on one index.
fn bounds(def: &IndexDef, plan: &Plan) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let primary = def.name == PRIMARY_INDEX;
    let enc = |out: &mut Vec<u8>, v: &Value, desc: bool| {
        if primary {
            // The primary tree is keyed by the raw id.
            out.extend_from_slice(v.as_str().unwrap_or_default().as_bytes());
        } else {
            encode_value(out, v, desc);
        }
    };
    let mut prefix = Vec::new();
    for (v, f) in plan.eq.iter().zip(&def.fields) {
        enc(&mut prefix, v, f.desc);
    }
    if primary && !plan.eq.is_empty() {
        // Exactly one id.
        return (Bound::Included(prefix.clone()), Bound::Included(prefix));
    }
    let Some(range) = &plan.range else {
        return if prefix.is_empty() {
            (Bound::Unbounded, Bound::Unbounded)
        } else {
            (Bound::Included(prefix.clone()), successor(prefix))
        };
    };
    let at = |v: &Value| {
        let mut k = prefix.clone();
        enc(&mut k, v, false);
        k
    };
    let (type_start, type_end) = if primary {
        (Vec::new(), None)
    } else {
        let tag = if range.kind == Kind::Number {
            TAG_NUMBER
        } else {
            TAG_STRING
        };
        let mut s = prefix.clone();
        s.push(tag);
        let mut e = prefix.clone();
        e.push(tag + 1);
        (s, Some(e))
    };
    if primary && range.kind == Kind::Number {
        // Ids are strings: no number range matches.
        return (Bound::Excluded(Vec::new()), Bound::Excluded(Vec::new()));
    }
    let lower = match &range.lower {
        None => Bound::Included(type_start),
        Some((v, true)) => Bound::Included(at(v)),
        // Everything with the value as prefix is equal to it: skip past them.
        Some((v, false)) if primary => Bound::Excluded(at(v)),
        Some((v, false)) => successor(at(v)),
    };
    let upper = match &range.upper {
        None => type_end.map_or(Bound::Unbounded, Bound::Excluded),
        Some((v, true)) if primary => Bound::Included(at(v)),
        Some((v, true)) => successor(at(v)),
        Some((v, false)) => Bound::Excluded(at(v)),
    };
    (lower, upper)
}

/// The first key after every key that starts with `prefix`.
fn successor(mut prefix: Vec<u8>) -> Bound<Vec<u8>> {
    while let Some(last) = prefix.pop() {
        if last < 0xff {
            prefix.push(last + 1);
            return Bound::Excluded(prefix);
        }
    }
    Bound::Unbounded
}

fn encode_cursor(index: &str, key: &[u8]) -> String {
    let mut raw = index.as_bytes().to_vec();
    raw.push(0);
    raw.extend_from_slice(key);
    B64.encode(raw)
}

fn decode_cursor(index: &str, cursor: &str) -> Result<Vec<u8>, ApiError> {
    let bad = || ApiError::bad_request("Invalid cursor: pass the nextCursor of a previous answer to the same query.");
    let raw = B64.decode(cursor).map_err(|_| bad())?;
    let sep = raw.iter().position(|b| *b == 0).ok_or_else(bad)?;
    if &raw[..sep] != index.as_bytes() {
        return Err(bad());
    }
    Ok(raw[sep + 1..].to_vec())
}

/// Resolves `@request.*` and date macros to constants for the planner.
fn constant(request: &Value) -> impl Fn(&Identifier) -> Option<Value> + '_ {
    move |id: &Identifier| {
        let r = JsonResolver {
            record: &Value::Null,
            request,
            now_millis: now_millis(),
        };
        match (&id.root, &id.modifier) {
            (Root::Record | Root::Collection { .. }, _) | (_, Some(_)) => None,
            _ => match r.resolve(id) {
                Resolved::One(v) => Some(v),
                _ => None,
            },
        }
    }
}

/// Lists records, applying `(listRule) && (filter)` through the planner.
pub fn list(
    state: &AppState,
    coll: &CompiledCollection,
    params: &ListParams,
    req: &RequestInfo,
) -> Result<ListResult, ApiError> {
    let caller = &req.caller;
    let access = rules::access(&coll.rules.list, caller);
    if access == Access::Locked {
        return Err(ApiError::forbidden("Only superusers can perform this action."));
    }
    let user_filter = parse_filter(&params.filter)
        .map_err(|e| ApiError::field("filter", "validation_invalid_filter", &e.to_string()))?;
    let mut sort =
        parse_sort(&params.sort).map_err(|e| ApiError::field("sort", "validation_invalid_sort", &e.to_string()))?;
    check_client_paths(coll, &user_filter, &sort, caller.is_superuser())?;
    let expand = ExpandTree::parse(&params.expand)?;
    if sort.is_empty() {
        // Default order: creation order (PocketBase's default is insertion order).
        sort.push(SortKey {
            path: vec!["created".into()],
            desc: false,
        });
    }
    let rule = match access {
        Access::Conditional => coll.rules.list.clone().unwrap_or_default(),
        _ => Filter::everything(),
    };
    let filter = rule.and(user_filter);
    let request = req.to_json(&Value::Null);
    let defs = index_defs(state, coll);
    let infos: Vec<IndexInfo> = defs
        .iter()
        .map(|d| IndexInfo {
            name: d.name.clone(),
            fields: d.fields.iter().map(|f| (f.path.clone(), f.desc)).collect(),
        })
        .collect();
    let plan = planner::plan(&filter, &sort, &infos, &|p| coll.is_scalar_path(p), &constant(&request));

    let store = &state.store;
    let cid = &coll.def.id;
    let matches = |rec: &Value| filter.is_empty() || rules::holds(state, coll, &filter, rec, &request);
    let fetch = |id: &str| -> Result<Option<Value>, ApiError> { Ok(store.get(cid, id)?.map(|r| r.data)) };
    let offset = if params.cursor.is_some() {
        0
    } else {
        (params.page - 1).saturating_mul(params.per_page)
    };
    let want_total = !params.skip_total;

    let mut page: Vec<Value> = Vec::with_capacity(params.per_page.min(64));
    // Hot path: when no record needs checking (no filter, or the index
    // answers it exactly) and records export verbatim, page items are
    // spliced from the stored bytes without parsing.
    let verbatim = (filter.is_empty() || plan.exact) && expand.is_empty() && coll.exports_verbatim();
    let mut raw_items: Vec<RawJson> = Vec::new();
    let mut total: Option<u64> = None;
    let mut next_cursor = None;
    match plan.index {
        Some(ix) if plan.sorted => {
            let def = &defs[ix];
            let (mut lower, mut upper) = bounds(def, &plan);
            if let Some(c) = &params.cursor {
                let key = decode_cursor(&def.name, c)?;
                if plan.reverse {
                    upper = Bound::Excluded(key);
                } else {
                    lower = Bound::Excluded(key);
                }
            }
            let mut seen = 0u64;
            let mut last_key = None;
            let mut more = false;
            let iter = store.index_range(cid, def, lower, upper, plan.reverse)?;
            let cheap_total = filter.is_empty() || plan.exact;
            for entry in iter {
                let (key, id) = entry?;
                if page.len() == params.per_page {
                    more = true;
                    if !want_total || cheap_total || params.cursor.is_some() {
                        break;
                    }
                    if let Some(rec) = fetch(&id)? {
                        if matches(&rec) {
                            seen += 1;
                        }
                    }
                    continue;
                }
                if plan.exact && (seen as usize) < offset {
                    seen += 1;
                    continue;
                }
                if verbatim {
                    let spliced = store.get_raw(cid, &id)?.and_then(|r| export_raw(coll, r.json()));
                    if let Some(item) = spliced {
                        seen += 1;
                        if seen as usize > offset {
                            raw_items.push(item);
                            page.push(Value::Null);
                            last_key = Some(key);
                        }
                    }
                    continue;
                }
                let Some(rec) = fetch(&id)? else { continue };
                if !matches(&rec) {
                    continue;
                }
                seen += 1;
                if seen as usize > offset {
                    page.push(rec);
                    last_key = Some(key);
                }
            }
            if more {
                next_cursor = last_key.map(|k| encode_cursor(&def.name, &k));
            }
            if want_total {
                total = Some(if filter.is_empty() {
                    store.count(cid)
                } else if plan.exact {
                    let (lower, upper) = bounds(def, &plan);
                    store.index_range(cid, def, lower, upper, false)?.count() as u64
                } else if params.cursor.is_some() {
                    count_all(state, coll, &filter, &request)?
                } else {
                    seen
                });
            }
        }
        _ => {
            if params.cursor.is_some() {
                return Err(ApiError::field(
                    "cursor",
                    "validation_invalid_cursor",
                    "Cursor paging needs a sort that an index serves (e.g. created, id, or a declared index).",
                ));
            }
            let mut all = Vec::new();
            let candidates: Box<dyn Iterator<Item = Result<Value, ApiError>>> = match plan.index {
                Some(ix) => {
                    let def = &defs[ix];
                    let (lower, upper) = bounds(def, &plan);
                    Box::new(
                        store
                            .index_range(cid, def, lower, upper, false)?
                            .filter_map(move |e| match e {
                                Ok((_, id)) => fetch(&id).transpose(),
                                Err(e) => Some(Err(e.into())),
                            }),
                    )
                }
                None => Box::new(
                    store
                        .scan(cid, false)?
                        .map(|r| r.map(|r| r.data).map_err(ApiError::from)),
                ),
            };
            for rec in candidates {
                let rec = rec?;
                if matches(&rec) {
                    all.push(rec);
                }
            }
            all.sort_by(|a, b| compare_records(a, b, &sort));
            total = Some(all.len() as u64);
            page = all.into_iter().skip(offset).take(params.per_page).collect();
        }
    }
    let items = if verbatim && !raw_items.is_empty() {
        raw_items
    } else {
        let viewer = caller.viewer();
        let mut items: Vec<Value> = page.iter().map(|r| export(coll, r, &viewer)).collect();
        if !expand.is_empty() {
            expand_records(state, coll, &page, &mut items, &expand, req)?;
        }
        items.into_iter().map(raw).collect::<Result<Vec<_>, _>>()?
    };
    let (total_items, total_pages) = match (want_total, total) {
        (true, Some(t)) => (t as i64, t.div_ceil(params.per_page as u64) as i64),
        _ => (-1, -1),
    };
    Ok(ListResult {
        page: if params.cursor.is_some() { 1 } else { params.page },
        per_page: params.per_page,
        total_items,
        total_pages,
        items,
        next_cursor,
        plan: (params.explain && caller.is_superuser()).then(|| plan.explain.clone()),
    })
}

/// Counts matches with a full pass (no index answers the filter exactly).
fn count_all(state: &AppState, coll: &CompiledCollection, filter: &Filter, request: &Value) -> Result<u64, ApiError> {
    let mut n = 0;
    for r in state.store.scan(&coll.def.id, false)? {
        let r = r?;
        if rules::holds(state, coll, filter, &r.data, request) {
            n += 1;
        }
    }
    Ok(n)
}
