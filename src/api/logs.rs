//! The request log for superusers, as PocketBase serves it:
//! `GET /api/logs` (`{page, perPage, totalItems, totalPages, items}`, with
//! `filter`, `sort` and `skipTotal`), `GET /api/logs/{id}` and
//! `GET /api/logs/stats` (`[{total, date}]`, one row per hour). Items are
//! `{id, created, level, message, data}` with `data.{type, method, url,
//! status, execTime, remoteIP, auth}`.
//!
//! Filters and sorts use the crate's query language over each entry's JSON,
//! restricted to PocketBase's log fields (`id`, `created`, `level`,
//! `message`, `data`, `data.*`): anything else is a 400, not an empty list.
//! The log has no indexes, so a filtered or sorted request reads entries
//! one by one; the request's record budget (`budget.maxRecords`) bounds
//! that, and a request over it is a 400 asking for a narrower filter. The
//! work runs on the blocking pool, off the server's workers.

use std::collections::{BTreeMap, HashMap};

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::extract::require_superuser;
use crate::clock::{format_datetime, now_millis};
use crate::core::Caller;
use crate::error::ApiError;
use crate::query::{
    compare_records, evaluate, parse_filter, parse_sort, Expr, Filter, Identifier, Op, Operand, Resolved, Resolver,
    Root, SortKey,
};
use crate::state::AppState;
use crate::store::logs::{LogEntry, LogKey};

/// Largest `perPage` (as PocketBase).
const MAX_PER_PAGE: usize = 1000;

/// PocketBase's level for a request that ended in an error (its
/// `slog.LevelError`); other requests are 0 (info).
const LEVEL_ERROR: i64 = 8;

/// The fields a log filter or sort may name (PocketBase's list).
const FIELDS: [&str; 5] = ["id", "created", "level", "message", "data"];

fn number(q: &HashMap<String, String>, name: &str, default: usize) -> Result<usize, ApiError> {
    match q.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| ApiError::bad_request(format!("{name} must be a positive integer."))),
    }
}

/// One entry as PocketBase shapes a request log.
fn item(key: LogKey, e: &LogEntry) -> Value {
    json!({
        "id": key.to_cursor(),
        "created": format_datetime((e.ts_us / 1000) as i64),
        "level": level(e),
        "message": format!("{} {}", e.method, e.path),
        "data": data(e),
    })
}

fn level(e: &LogEntry) -> i64 {
    if e.status >= 400 {
        LEVEL_ERROR
    } else {
        0
    }
}

fn data(e: &LogEntry) -> Value {
    json!({
        "type": "request",
        "method": e.method,
        "url": e.path,
        "status": e.status,
        // Milliseconds, as PocketBase reports it.
        "execTime": e.micros as f64 / 1000.0,
        "remoteIP": e.ip,
        "auth": e.auth,
    })
}

/// One entry's fields as a filter or sort asks for them, each built only
/// when named (building every entry's whole JSON would cost a scan several
/// times more).
struct EntryFields<'a> {
    key: LogKey,
    e: &'a LogEntry,
    now: i64,
}

impl EntryFields<'_> {
    /// The value at a log field path (`None`: there is none).
    fn field(&self, path: &[String]) -> Option<Value> {
        let e = self.e;
        let (first, second) = match path {
            [a] => (a.as_str(), None),
            [a, b] => (a.as_str(), Some(b.as_str())),
            _ => return None,
        };
        Some(match (first, second) {
            ("id", None) => Value::from(self.key.to_cursor()),
            ("created", None) => Value::from(format_datetime((e.ts_us / 1000) as i64)),
            ("level", None) => Value::from(level(e)),
            ("message", None) => Value::from(format!("{} {}", e.method, e.path)),
            ("data", None) => data(e),
            ("data", Some("type")) => Value::from("request"),
            ("data", Some("method")) => Value::from(e.method.as_str()),
            ("data", Some("url")) => Value::from(e.path.as_str()),
            ("data", Some("status")) => Value::from(e.status),
            ("data", Some("execTime")) => Value::from(e.micros as f64 / 1000.0),
            ("data", Some("remoteIP")) => Value::from(e.ip.as_str()),
            ("data", Some("auth")) => Value::from(e.auth.as_str()),
            _ => return None,
        })
    }
}

impl Resolver for EntryFields<'_> {
    fn resolve(&self, ident: &Identifier) -> Resolved {
        match ident.root {
            Root::Record => self.field(&ident.path).map_or(Resolved::Missing, Resolved::One),
            _ => Resolved::Missing,
        }
    }

    fn now_millis(&self) -> i64 {
        self.now
    }
}

fn invalid(what: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::field(
        what,
        &format!("validation_invalid_{what}"),
        &format!("Invalid {what}: {message}"),
    )
}

/// Whether a field path names a log field (`data.anything` included).
fn is_log_field(path: &[String]) -> bool {
    path.first().is_some_and(|f| FIELDS.contains(&f.as_str()))
}

/// Parses `filter`, refusing identifiers other than the log's fields and
/// date macros (`@request.*` and `@collection.*` mean nothing here).
fn log_filter(text: &str) -> Result<Filter, ApiError> {
    let filter = parse_filter(text).map_err(|e| invalid("filter", e))?;
    fn check(e: &Expr) -> Result<(), String> {
        match e {
            Expr::And(items) | Expr::Or(items) => items.iter().try_for_each(check),
            Expr::Cmp(c) => [&c.left, &c.right].into_iter().try_for_each(|side| match side {
                Operand::Literal(_) => Ok(()),
                Operand::Ident(id) => match &id.root {
                    Root::Macro(_) => Ok(()),
                    Root::Record if is_log_field(&id.path) => Ok(()),
                    Root::Record => Err(format!(
                        "unknown field '{}' (logs have id, created, level, message and data.*)",
                        id.path.join(".")
                    )),
                    _ => Err("only the log's fields (id, created, level, message, data.*) can be used".into()),
                },
            }),
        }
    }
    if let Some(e) = filter.expr() {
        check(e).map_err(|m| invalid("filter", m))?;
    }
    Ok(filter)
}

fn log_sort(text: &str) -> Result<Vec<SortKey>, ApiError> {
    let keys = parse_sort(text).map_err(|e| invalid("sort", e))?;
    if let Some(bad) = keys.iter().find(|k| !is_log_field(&k.path)) {
        return Err(invalid(
            "sort",
            format!(
                "unknown field '{}' (logs have id, created, level, message and data.*)",
                bad.path.join(".")
            ),
        ));
    }
    Ok(keys)
}

/// Whether `keys` is the log's own order (newest first), which a walk of
/// the tree produces without sorting.
fn is_newest_first(keys: &[SortKey]) -> bool {
    keys.is_empty() || (keys.len() == 1 && keys[0].desc && ["created", "id"].contains(&keys[0].path.join(".").as_str()))
}

/// Every entry matching `filter`, newest first, handed to `visit` until it
/// returns false; the request budget's records (`budget.maxRecords`) and
/// seconds (`budget.maxSeconds`) bound the walk. A top-level
/// `created >= '…'` (or `>`) bound ends the walk at that time, so it is
/// the way to read a window of a log larger than the budget.
fn scan(state: &AppState, filter: &Filter, mut visit: impl FnMut(&EntryFields) -> bool) -> Result<(), ApiError> {
    let limits = state.settings.get().budget.limits();
    let budget = crate::rules::Budget::new(limits);
    let now = now_millis();
    let since_us = created_floor(filter);
    for (read, entry) in state.store.logs().newest_first(since_us).enumerate() {
        if !budget.read(1) {
            if (read as u64) < limits.records {
                budget.check()?; // out of time: the budget's own 400
            }
            return Err(ApiError::bad_request(format!(
                "This request would read more than {} log entries (budget.maxRecords): \
                 narrow the filter with a time window, e.g. created >= '2024-01-31 12:00:00'.",
                limits.records
            )));
        }
        let (key, e) = entry?;
        let fields = EntryFields { key, e: &e, now };
        if evaluate(filter, &fields) && !visit(&fields) {
            break;
        }
    }
    Ok(())
}

/// The earliest time (µs) an entry matching `filter` can have: from the
/// top-level conjuncts `created >= 'text'` / `created > 'text'` (either
/// side), 0 when there is none. Sound because `created` compares as text:
/// an entry older than the time that `text`'s leading date (and hour,
/// minute, second, millisecond) spells formats as a string that is already
/// smaller within that leading part.
fn created_floor(filter: &Filter) -> u64 {
    let conjuncts: &[Expr] = match filter.expr() {
        Some(Expr::And(items)) => items,
        Some(e @ Expr::Cmp(_)) => std::slice::from_ref(e),
        _ => &[],
    };
    let is_created = |o: &Operand| matches!(o, Operand::Ident(id) if id.root == Root::Record && id.modifier.is_none() && id.path == ["created"]);
    let text = |o: &Operand| match o {
        Operand::Literal(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let mut floor = 0;
    for e in conjuncts {
        let Expr::Cmp(c) = e else { continue };
        let bound = match c.op.base() {
            Op::Gt | Op::Gte if is_created(&c.left) => text(&c.right),
            Op::Lt | Op::Lte if is_created(&c.right) => text(&c.left),
            _ => None,
        };
        if let Some(ms) = bound.as_deref().and_then(leading_time_ms) {
            floor = floor.max(ms.saturating_mul(1000));
        }
    }
    floor
}

/// The time (ms) that the longest leading `YYYY-MM-DD[ HH[:MM[:SS[.mmm]]]]` of
/// `text` spells, when formatting that time gives back exactly that
/// leading part (so 2024-02-30 is not taken for March 1st).
fn leading_time_ms(text: &str) -> Option<u64> {
    let digits = |from: usize, to: usize| -> Option<u64> {
        let part = text.get(from..to)?;
        part.bytes().all(|b| b.is_ascii_digit()).then(|| part.parse().ok())?
    };
    let sep = |at: usize, c: u8| text.as_bytes().get(at) == Some(&c);
    let (year, month, day) = (digits(0, 4)?, digits(5, 7)?, digits(8, 10)?);
    let date_ok = sep(4, b'-') && sep(7, b'-') && (1..=12).contains(&month) && (1..=31).contains(&day);
    if !date_ok {
        return None;
    }
    let mut len = 10;
    // Hour, minute, second, millisecond: separator, width, largest value.
    let mut clock = [0u64; 4];
    let parts = [(b' ', 2, 23), (b':', 2, 59), (b':', 2, 59), (b'.', 3, 999)];
    for (i, (sep_char, width, max)) in parts.into_iter().enumerate() {
        match digits(len + 1, len + 1 + width).filter(|v| sep(len, sep_char) && *v <= max) {
            Some(v) => {
                clock[i] = v;
                len += 1 + width;
            }
            None => break,
        }
    }
    let days = days_from_civil(year as i64, month, day);
    let secs = days * 86_400 + (clock[0] * 3600 + clock[1] * 60 + clock[2]) as i64;
    let ms = u64::try_from(secs).ok()?.checked_mul(1000)? + clock[3];
    format_datetime(ms as i64).starts_with(&text[..len]).then_some(ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (the usual
/// era-based computation: 400-year eras of 146097 days).
fn days_from_civil(year: i64, month: u64, day: u64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// One page of the log for `query` (the work of `GET /api/logs`).
fn page(state: &AppState, query: &HashMap<String, String>) -> Result<Value, ApiError> {
    let text = |k: &str| query.get(k).map(|v| v.trim()).unwrap_or("");
    let page = number(query, "page", 1)?;
    let per_page = number(query, "perPage", 30)?.min(MAX_PER_PAGE);
    let skip_total = matches!(text("skipTotal"), "1" | "true" | "t");
    let filter = log_filter(text("filter"))?;
    let keys = log_sort(text("sort"))?;
    let skip = (page - 1).saturating_mul(per_page);
    let log = state.store.logs();
    let mut items = Vec::with_capacity(per_page.min(64));
    let total = if filter.is_empty() && is_newest_first(&keys) {
        // The log's own order: read just the page.
        // A page past the end reads nothing (`skip` would walk the log).
        let entries = log
            .newest_first(0)
            .take(if skip < log.len() as usize { skip + per_page } else { 0 });
        for entry in entries.skip(skip) {
            let (key, e) = entry?;
            items.push(item(key, &e));
        }
        log.len() as usize
    } else if is_newest_first(&keys) {
        let mut matched = 0usize;
        scan(state, &filter, |f| {
            if matched >= skip && items.len() < per_page {
                items.push(item(f.key, f.e));
            }
            matched += 1;
            !(skip_total && items.len() == per_page)
        })?;
        matched
    } else {
        // Only each match's sort values (an array: index `i` is what
        // `compare_records` compares for key `i`) and key are kept, then the
        // page's entries are read again by key.
        let mut all: Vec<(Value, LogKey)> = Vec::new();
        scan(state, &filter, |f| {
            let values = keys.iter().map(|k| f.field(&k.path).unwrap_or(Value::Null));
            all.push((Value::Array(values.collect()), f.key));
            true
        })?;
        let projected: Vec<SortKey> = (0..keys.len())
            .map(|i| SortKey {
                path: vec![i.to_string()],
                desc: keys[i].desc,
            })
            .collect();
        all.sort_by(|(a, ka), (b, kb)| {
            compare_records(a, b, &projected).then_with(|| match keys.last() {
                Some(k) if k.desc => kb.cmp(ka),
                _ => ka.cmp(kb),
            })
        });
        let total = all.len();
        for (_, key) in all.into_iter().skip(skip).take(per_page) {
            // An entry trimmed by retention since the scan is left out.
            if let Some(e) = log.get(key)? {
                items.push(item(key, &e));
            }
        }
        total
    };
    let (total_items, total_pages) = if skip_total {
        (-1, -1)
    } else {
        (total as i64, total.div_ceil(per_page) as i64)
    };
    Ok(json!({
        "page": page,
        "perPage": per_page,
        "totalItems": total_items,
        "totalPages": total_pages,
        "items": items,
    }))
}

/// Runs `work` in one of the server's work slots (`state::work`: heavy
/// reads off the HTTP workers, one per core), as lists and scans do.
async fn blocking<T: Send + 'static>(
    state: web::Data<AppState>,
    work: impl FnOnce(&AppState) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let st = state.get_ref().clone();
    state.work.run(move || work(&st)).await?
}

pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    require_superuser(&caller)?;
    let query = query.into_inner();
    let body = blocking(state, move |s| page(s, &query)).await?;
    Ok(HttpResponse::Ok().json(body))
}

/// `GET /api/logs/stats`: matching entries per hour, oldest hour first,
/// `date` as PocketBase writes it (`2024-01-02 15:00:00.000Z`).
pub async fn stats(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    require_superuser(&caller)?;
    let filter = log_filter(query.get("filter").map(|v| v.trim()).unwrap_or(""))?;
    let body = blocking(state, move |s| {
        const HOUR_MS: i64 = 3_600_000;
        let mut hours: BTreeMap<i64, u64> = BTreeMap::new();
        scan(s, &filter, |f| {
            *hours.entry((f.key.ts_us / 1000) as i64 / HOUR_MS).or_default() += 1;
            true
        })?;
        let rows: Vec<Value> = (hours.into_iter())
            .map(|(h, total)| json!({"total": total, "date": format_datetime(h * HOUR_MS)}))
            .collect();
        Ok(rows)
    })
    .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// `GET /api/logs/{id}`: one entry, or PocketBase's 404.
pub async fn view(state: web::Data<AppState>, caller: Caller, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    require_superuser(&caller)?;
    let key = LogKey::parse_cursor(&id).ok_or_else(ApiError::missing)?;
    let entry = state.store.logs().get(key)?.ok_or_else(ApiError::missing)?;
    Ok(HttpResponse::Ok().json(item(key, &entry)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_created_bounds_end_the_walk_soundly() {
        let floor = |f: &str| created_floor(&parse_filter(f).expect("filter"));
        let ms = |t: &str| leading_time_ms(t).expect(t);
        assert_eq!(ms("1970-01-01"), 0);
        assert_eq!(ms("2024-03-01 10:20:30.456Z"), 1_709_288_430_456);
        assert_eq!(
            ms("2024-03-01 10:20:30.4"),
            1_709_288_430_000,
            "a partial fraction is left out"
        );
        assert_eq!(ms("2024-03-01 10"), 1_709_287_200_000);
        assert_eq!(ms("2024-02-29"), 1_709_164_800_000, "a leap day");
        for bad in [
            "2024-02-30",
            "2023-02-29",
            "2024-3-01",
            "x",
            "",
            "2024-13-01",
            "2024-01-00",
        ] {
            assert_eq!(leading_time_ms(bad), None, "{bad}");
        }
        // `T` is not PocketBase's separator: only the date is used.
        assert_eq!(leading_time_ms("2024-01-01T10"), leading_time_ms("2024-01-01"));
        let day = 1_704_067_200_000_000; // 2024-01-01, µs
        assert_eq!(floor("created >= '2024-01-01'"), day);
        assert_eq!(floor("'2024-01-01' < created && data.status = 200"), day);
        assert_eq!(floor("created > '2023-01-01' && created >= '2024-01-01'"), day);
        for none in [
            "created <= '2024-01-01'",
            "created >= '2024-01-01' || level = 0",
            "created:lower >= '2024-01-01'",
            "created >= 5",
            "data.created >= '2024-01-01'",
        ] {
            assert_eq!(floor(none), 0, "{none}");
        }
        // Sound: every entry older than the floor fails the comparison.
        for text in ["2024-01-01", "2024-01-01 1", "2024-01-01 10:3", "2024-01-01 10:30:00.5"] {
            let f = parse_filter(&format!("created >= '{text}'")).expect("filter");
            let since = created_floor(&f);
            for before_us in [since.saturating_sub(1), since.saturating_sub(3_600_000_000)] {
                let e = LogEntry {
                    ts_us: before_us,
                    method: "GET".into(),
                    path: "/".into(),
                    status: 200,
                    micros: 1,
                    ip: String::new(),
                    auth: String::new(),
                };
                let key = LogKey {
                    ts_us: before_us,
                    seq: 0,
                };
                assert!(
                    !evaluate(&f, &EntryFields { key, e: &e, now: 0 }),
                    "{text} at {before_us}"
                );
            }
        }
    }
}
