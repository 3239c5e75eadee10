//! `GET /_/collections/{c}/records`: the records table.
//!
//! Everything is in the query string, so every view is a link that works
//! without JavaScript: `filter` (the API's filter language), `sort`
//! (`field` / `-field`), `cols` (visible columns, comma-separated or one
//! checkbox each), `page` + `perPage`, or `cursor` (keyset paging from the
//! API's `nextCursor`, which stays fast however deep one goes).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde_json::Value;

use super::files::{FileLink, FileUrls};
use super::{collection, field_messages, list_path, properties, record_path};
use crate::admin::view::{self, enc, AdminError};
use crate::admin::{Admin, Page};
use crate::core::list::{self as core_list, ListParams, ListResult, MAX_PER_PAGE};
use crate::schema::files::FileSpec;
use crate::schema::record::is_system_field;
use crate::schema::CompiledCollection;

/// Shown when the query names no sort: newest first.
const DEFAULT_SORT: &str = "-created";
const DEFAULT_PER_PAGE: usize = 20;
const PER_PAGE_CHOICES: [usize; 3] = [20, 50, 100];
/// Columns shown (besides the id, always there) until the user picks some.
const DEFAULT_COLUMNS: usize = 5;
/// Longest text put in a cell (the CSS truncates further; the full value is on the record page).
const CELL_CHARS: usize = 120;
/// Most files drawn in one table cell.
const FILES_PER_CELL: usize = 3;

/// The columns a record of `coll` can show besides its id, in display
/// order. Never the password hash or token key (the export drops them anyway).
pub(super) fn all_columns(coll: &CompiledCollection) -> Vec<String> {
    let auth = coll.is_auth();
    let mut cols = Vec::new();
    if auth {
        cols.extend(["email".to_owned(), "verified".to_owned()]);
    }
    cols.extend(properties(coll).keys().filter(|k| !is_system_field(k, auth)).cloned());
    cols.extend(["created".to_owned(), "updated".to_owned()]);
    cols
}

/// The list page's state, parsed from (and turned back into) a query string.
#[derive(Clone, Default)]
pub(super) struct ListQuery {
    pub filter: String,
    pub sort: String,
    pub cols: Vec<String>,
    pub per_page: usize,
    pub page: usize,
    pub cursor: Option<String>,
}

impl ListQuery {
    pub fn parse(query: &str) -> ListQuery {
        let pairs = web::Query::<Vec<(String, String)>>::from_query(query)
            .map(|q| q.into_inner())
            .unwrap_or_default();
        let last = |key: &str| pairs.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.trim());
        ListQuery {
            filter: last("filter").unwrap_or_default().to_owned(),
            sort: last("sort").unwrap_or_default().to_owned(),
            // `cols=a,b` (links) or `cols=a&cols=b` (the checkbox form).
            cols: pairs
                .iter()
                .filter(|(k, _)| k == "cols")
                .flat_map(|(_, v)| v.split(','))
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect(),
            per_page: last("perPage")
                .and_then(|v| v.parse().ok())
                .unwrap_or(DEFAULT_PER_PAGE)
                .clamp(1, MAX_PER_PAGE),
            page: last("page").and_then(|v| v.parse().ok()).unwrap_or(1).max(1),
            cursor: last("cursor").filter(|c| !c.is_empty()).map(str::to_owned),
        }
    }

    /// The sort actually applied.
    fn effective_sort(&self) -> &str {
        if self.sort.is_empty() {
            DEFAULT_SORT
        } else {
            &self.sort
        }
    }

    /// The query string (defaults left out).
    pub fn to_query(&self) -> String {
        let mut parts = Vec::new();
        if !self.filter.is_empty() {
            parts.push(format!("filter={}", enc(&self.filter)));
        }
        if !self.sort.is_empty() {
            parts.push(format!("sort={}", enc(&self.sort)));
        }
        if !self.cols.is_empty() {
            parts.push(format!("cols={}", enc(&self.cols.join(","))));
        }
        if self.per_page != DEFAULT_PER_PAGE {
            parts.push(format!("perPage={}", self.per_page));
        }
        if let Some(c) = &self.cursor {
            parts.push(format!("cursor={}", enc(c)));
        } else if self.page > 1 {
            parts.push(format!("page={}", self.page));
        }
        parts.join("&")
    }

    fn href(&self, base: &str) -> String {
        match self.to_query() {
            q if q.is_empty() => base.to_owned(),
            q => format!("{base}?{q}"),
        }
    }

    /// The same view from its first page (after a sort or size change).
    fn first(&self) -> ListQuery {
        ListQuery {
            page: 1,
            cursor: None,
            ..self.clone()
        }
    }
}

pub(super) struct ColumnChoice {
    pub name: String,
    pub checked: bool,
}

pub(super) struct Head {
    pub name: String,
    pub href: String,
    /// `ascending` / `descending` on the sorted column, else empty.
    pub aria: &'static str,
    pub arrow: &'static str,
    /// A number column (right-aligned like its cells).
    pub num: bool,
}

pub(super) struct Cell {
    /// `text`, `num`, `bool`, `json`, `files` or `none`.
    pub kind: &'static str,
    pub text: String,
    pub title: String,
    pub badge: &'static str,
    /// A file column's files (thumbnails for images, names otherwise).
    pub files: Vec<FileLink>,
}

pub(super) struct Row {
    pub id: String,
    pub href: String,
    pub cells: Vec<Cell>,
}

pub(super) struct PerPage {
    pub n: usize,
    pub href: String,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "records/list.html")]
struct ListPage {
    page: Page,
    name: String,
    base: String,
    auth: bool,
    choices: Vec<ColumnChoice>,
    heads: Vec<Head>,
    rows: Vec<Row>,
    filter: String,
    sort: String,
    /// The sort applied (the default when the query names none).
    sorted_by: String,
    cols: String,
    per_page: usize,
    per_page_links: Vec<PerPage>,
    error: String,
    /// `none` (no records at all), `nomatch` (the filter matches nothing),
    /// `pastend` (a page after the last), or empty when there are rows.
    empty: &'static str,
    cursor_mode: bool,
    page_no: usize,
    total_pages: i64,
    total: i64,
    prev_href: String,
    next_href: String,
    cursor_href: String,
    first_href: String,
    clear_href: String,
    /// The current query string, for forms that come back here.
    back: String,
}

fn truncate(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

fn cell(v: Option<&Value>) -> Cell {
    let plain = |kind, text: String, title: String| Cell {
        kind,
        text,
        title,
        badge: "",
        files: Vec::new(),
    };
    match v {
        None | Some(Value::Null) => plain("none", String::new(), String::new()),
        Some(Value::Bool(b)) => Cell {
            kind: "bool",
            text: b.to_string(),
            title: String::new(),
            badge: if *b { "badge-ok" } else { "" },
            files: Vec::new(),
        },
        Some(Value::Number(n)) => plain("num", n.to_string(), String::new()),
        Some(Value::String(s)) => {
            let title = if s.chars().count() > 40 {
                truncate(s, 400)
            } else {
                String::new()
            };
            plain("text", truncate(s, CELL_CHARS), title)
        }
        Some(other) => {
            let json = other.to_string();
            plain("json", truncate(&json, CELL_CHARS), truncate(&json, 400))
        }
    }
}

/// A file column's cell: the record's files of that field, at most
/// [`FILES_PER_CELL`] of them (the record page lists them all).
fn file_cell(urls: &FileUrls, id: &str, spec: &FileSpec, v: Option<&Value>) -> Cell {
    let mut files = urls.links(id, spec, v);
    if files.is_empty() {
        return cell(None);
    }
    let more = files.len().saturating_sub(FILES_PER_CELL);
    files.truncate(FILES_PER_CELL);
    Cell {
        kind: "files",
        text: if more > 0 { format!("+{more}") } else { String::new() },
        title: String::new(),
        badge: "",
        files,
    }
}

/// Header links: clicking the sorted column flips its direction.
fn heads(q: &ListQuery, visible: &[String], base: &str, coll: &CompiledCollection) -> Vec<Head> {
    let props = properties(coll);
    let numeric = |c: &str| {
        props
            .get(c)
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str)
            .is_some_and(|t| t == "number" || t == "integer")
    };
    let current = q.effective_sort();
    visible
        .iter()
        .map(|c| {
            let desc = format!("-{c}");
            let (next, aria, arrow) = if current == c.as_str() {
                (desc, "ascending", "▲")
            } else if current == desc {
                (c.clone(), "descending", "▼")
            } else {
                (c.clone(), "", "")
            };
            let link = ListQuery {
                sort: next,
                ..q.first()
            };
            Head {
                num: numeric(c),
                name: c.clone(),
                href: link.href(base),
                aria,
                arrow,
            }
        })
        .collect()
}

/// The records table: which columns, one list call through the API's own
/// code path (same rules, filter language and paging), then the page of
/// links around the rows. Each of those is a step below.
pub async fn index(req: HttpRequest, admin: Admin, path: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let coll = collection(&admin, &path)?;
    let q = ListQuery::parse(req.query_string());
    let base = list_path(&coll);
    let Columns { all, picked, visible } = columns(&coll, &q);
    let (result, error, status) = fetch(&admin, &coll, &q)?;
    let table = table(result, &coll, &visible, &FileUrls::new(&admin, &coll));
    let empty = match (error.is_empty(), table.rows.is_empty()) {
        (true, true) if q.page > 1 || q.cursor.is_some() => "pastend",
        (true, true) if q.filter.is_empty() => "none",
        (true, true) => "nomatch",
        _ => "",
    };
    let cursor_mode = q.cursor.is_some();
    let (prev_href, next_href, cursor_href) = paging_links(&q, &base, table.total_pages, table.next_cursor);
    let tpl = ListPage {
        page: Page::new(
            &req,
            &admin,
            coll.def.name.clone(),
            format!("records:{}", coll.def.name),
        ),
        name: coll.def.name.clone(),
        auth: coll.is_auth(),
        choices: all
            .iter()
            .map(|c| ColumnChoice {
                name: c.clone(),
                checked: visible.contains(c),
            })
            .collect(),
        heads: heads(&q, &[vec!["id".to_owned()], visible.clone()].concat(), &base, &coll),
        sorted_by: q.effective_sort().to_owned(),
        rows: table.rows,
        filter: q.filter.clone(),
        sort: q.sort.clone(),
        cols: picked.join(","),
        per_page: q.per_page,
        per_page_links: PER_PAGE_CHOICES
            .iter()
            .map(|&n| PerPage {
                n,
                href: ListQuery {
                    per_page: n,
                    ..q.first()
                }
                .href(&base),
                current: n == q.per_page,
            })
            .collect(),
        error,
        empty,
        cursor_mode,
        page_no: q.page,
        total_pages: table.total_pages,
        total: table.total,
        prev_href,
        next_href,
        cursor_href,
        first_href: q.first().href(&base),
        clear_href: ListQuery {
            filter: String::new(),
            ..q.first()
        }
        .href(&base),
        back: q.to_query(),
        base,
    };
    Ok(view::render_status(&req, status, &tpl))
}

/// The column sets the page needs: every column the collection can show
/// (the picker), the ones the query picked (echoed back in `cols`, empty
/// when none), and the ones drawn (the picked ones, or the first few).
struct Columns {
    all: Vec<String>,
    picked: Vec<String>,
    visible: Vec<String>,
}

/// Resolves `cols` against the collection, so a stale or mistyped column
/// name in a bookmarked link is dropped rather than drawn empty.
fn columns(coll: &CompiledCollection, q: &ListQuery) -> Columns {
    let all = all_columns(coll);
    let picked: Vec<String> = all.iter().filter(|c| q.cols.contains(c)).cloned().collect();
    let visible = if picked.is_empty() {
        all.iter().take(DEFAULT_COLUMNS).cloned().collect()
    } else {
        picked.clone()
    };
    Columns { all, picked, visible }
}

/// Runs the list as the API would for this query. A client error (a bad
/// filter or sort) is not a failed page: it comes back as the message to
/// show above the table with its status, so the user can fix the query in
/// place; anything else is a real error.
fn fetch(
    admin: &Admin,
    coll: &CompiledCollection,
    q: &ListQuery,
) -> Result<(Option<ListResult>, String, StatusCode), AdminError> {
    let params = ListParams {
        page: q.page,
        per_page: q.per_page,
        sort: q.effective_sort().to_owned(),
        filter: q.filter.clone(),
        // Cursor mode is for deep paging: no total (it could mean a full pass).
        skip_total: q.cursor.is_some(),
        expand: String::new(),
        cursor: q.cursor.clone(),
        explain: false,
    };
    match core_list::list(&admin.state, coll, &params, &admin.request("GET")) {
        Ok(r) => Ok((Some(r), String::new(), StatusCode::OK)),
        Err(e) if (400..500).contains(&e.status) => {
            let fields = field_messages(&e);
            let text = if fields.is_empty() {
                e.message.clone()
            } else {
                fields
                    .iter()
                    .map(|(k, m)| format!("{k}: {m}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            Ok((
                None,
                text,
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// The rows drawn and the counts the pager needs.
struct Table {
    rows: Vec<Row>,
    total: i64,
    total_pages: i64,
    next_cursor: Option<String>,
}

/// Turns the list result into table rows holding only the visible cells
/// (the rest of each record is not rendered); no result means an empty
/// table under the error message.
fn table(result: Option<ListResult>, coll: &CompiledCollection, visible: &[String], urls: &FileUrls) -> Table {
    let mut t = Table {
        rows: Vec::new(),
        total: 0,
        total_pages: 0,
        next_cursor: None,
    };
    if let Some(r) = result {
        t.total = r.total_items;
        t.total_pages = r.total_pages.max(1);
        t.next_cursor = r.next_cursor;
        for item in r.items {
            let rec: Value = serde_json::from_str(item.get()).unwrap_or(Value::Null);
            let id = rec.get("id").and_then(Value::as_str).unwrap_or_default().to_owned();
            t.rows.push(Row {
                href: record_path(coll, &id),
                cells: visible
                    .iter()
                    .map(|c| match coll.file_field(c) {
                        Some(spec) => file_cell(urls, &id, spec, rec.get(c)),
                        None => cell(rec.get(c)),
                    })
                    .collect(),
                id,
            });
        }
    }
    t
}

/// Previous / next page links (page mode) and the "more" link (cursor
/// mode, which has no page numbers); an empty string hides a link.
fn paging_links(q: &ListQuery, base: &str, total_pages: i64, next_cursor: Option<String>) -> (String, String, String) {
    let cursor_mode = q.cursor.is_some();
    let page_href = |n: usize| ListQuery { page: n, ..q.first() }.href(base);
    let prev_href = if !cursor_mode && q.page > 1 {
        page_href(q.page - 1)
    } else {
        String::new()
    };
    let next_href = if !cursor_mode && (q.page as i64) < total_pages {
        page_href(q.page + 1)
    } else {
        String::new()
    };
    let cursor_href = next_cursor
        .map(|c| {
            ListQuery {
                cursor: Some(c),
                ..q.clone()
            }
            .href(base)
        })
        .unwrap_or_default();
    (prev_href, next_href, cursor_href)
}
