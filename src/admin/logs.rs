//! Dashboard: the request log (`GET /_/logs`).
//!
//! Recent requests newest first, 100 per page ("Older" pages by key
//! cursor), filtered by a plain GET form (status class, method, path, ip,
//! caller, time window). Above the table: totals, error rates and duration
//! percentiles for the whole window, and a requests-over-time chart (see
//! [`chart`]). One pass over the window computes all of it; the pass stops
//! after [`SCAN_CAP`] entries so the page stays fast on a busy server.

mod chart;

use std::borrow::Cow;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::view::{self, enc};
use super::{Admin, AdminError, Page};
use crate::clock::format_datetime;
use crate::store::logs::{now_micros, LogEntry, LogKey, RequestLog};

/// Rows per page.
const PAGE: usize = 100;
/// Most entries one page view reads.
const SCAN_CAP: usize = 200_000;
/// Longest text filter accepted.
const MAX_TEXT: usize = 200;
/// Methods offered by the filter.
const METHODS: [&str; 7] = ["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS"];

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/logs", web::get().to(index));
}

/// The time windows offered, with their chart bucket size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Window {
    M15,
    H1,
    H24,
    D7,
}

const MINUTE: u64 = 60_000_000;

impl Window {
    const ALL: [Window; 4] = [Window::M15, Window::H1, Window::H24, Window::D7];

    fn key(self) -> &'static str {
        match self {
            Window::M15 => "15m",
            Window::H1 => "1h",
            Window::H24 => "24h",
            Window::D7 => "7d",
        }
    }
    /// "the last …"
    fn span(self) -> &'static str {
        match self {
            Window::M15 => "15 minutes",
            Window::H1 => "hour",
            Window::H24 => "24 hours",
            Window::D7 => "7 days",
        }
    }
    fn micros(self) -> u64 {
        match self {
            Window::M15 => 15 * MINUTE,
            Window::H1 => 60 * MINUTE,
            Window::H24 => 24 * 60 * MINUTE,
            Window::D7 => 7 * 24 * 60 * MINUTE,
        }
    }
    /// Bar width: per minute up to an hour, then coarser so a window has
    /// at most ~100 bars (readable at 360 px, small SVG).
    fn bucket(self) -> (u64, &'static str) {
        match self {
            Window::M15 | Window::H1 => (MINUTE, "minute"),
            Window::H24 => (15 * MINUTE, "15 minutes"),
            Window::D7 => (120 * MINUTE, "2 hours"),
        }
    }
    fn parse(s: &str) -> Option<Window> {
        Window::ALL.into_iter().find(|w| w.key() == s)
    }
}

/// The status filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusClass {
    All,
    Class(u16),
    Errors,
}

const STATUS_OPTIONS: [(&str, &str); 6] = [
    ("", "All statuses"),
    ("errors", "Errors (≥ 400)"),
    ("2xx", "2xx success"),
    ("3xx", "3xx redirect"),
    ("4xx", "4xx client error"),
    ("5xx", "5xx server error"),
];

impl StatusClass {
    fn parse(s: &str) -> Option<StatusClass> {
        match s {
            "" | "all" => Some(StatusClass::All),
            "errors" => Some(StatusClass::Errors),
            "2xx" => Some(StatusClass::Class(2)),
            "3xx" => Some(StatusClass::Class(3)),
            "4xx" => Some(StatusClass::Class(4)),
            "5xx" => Some(StatusClass::Class(5)),
            _ => None,
        }
    }
    fn matches(self, status: u16) -> bool {
        match self {
            StatusClass::All => true,
            StatusClass::Errors => status >= 400,
            StatusClass::Class(c) => status / 100 == c,
        }
    }
}

/// The filter form as submitted (texts kept verbatim to show them again).
struct Filters {
    window: Window,
    status: StatusClass,
    status_raw: String,
    method: String,
    path: String,
    ip: String,
    auth: String,
    /// `path` and `auth` lowercased (those filters ignore case).
    path_lc: String,
    auth_lc: String,
    before: Option<LogKey>,
}

impl Filters {
    /// Reads the query string; returns the filters and what was wrong.
    fn parse(query: &str) -> (Filters, Vec<String>) {
        let pairs: Vec<(String, String)> = web::Query::<Vec<(String, String)>>::from_query(query)
            .map(|q| q.into_inner())
            .unwrap_or_default();
        let get = |name: &str| {
            pairs
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default()
        };
        let mut errors = Vec::new();
        let window_raw = get("window");
        let window = match window_raw.as_str() {
            "" => Window::H1,
            w => Window::parse(w).unwrap_or_else(|| {
                errors.push(format!("Unknown time window “{w}”: choose one from the list."));
                Window::H1
            }),
        };
        let status_raw = get("status");
        let status = StatusClass::parse(&status_raw).unwrap_or_else(|| {
            errors.push(format!(
                "Unknown status class “{status_raw}”: choose one from the list."
            ));
            StatusClass::All
        });
        let method = get("method").to_ascii_uppercase();
        if !method.is_empty() && !METHODS.contains(&method.as_str()) {
            errors.push(format!("Unknown method “{method}”: choose one from the list."));
        }
        let (path, ip, auth) = (get("path"), get("ip"), get("auth"));
        for (name, v) in [("Path", &path), ("IP", &ip), ("Auth", &auth)] {
            if v.chars().count() > MAX_TEXT {
                errors.push(format!("{name} filter is too long (at most {MAX_TEXT} characters)."));
            }
        }
        let before_raw = get("before");
        let before = match before_raw.as_str() {
            "" => None,
            b => LogKey::parse_cursor(b).or_else(|| {
                errors.push("The page link is broken: start again from the newest requests.".into());
                None
            }),
        };
        let filters = Filters {
            window,
            status,
            status_raw,
            method,
            path_lc: path.to_lowercase(),
            auth_lc: auth.to_lowercase(),
            path,
            ip,
            auth,
            before,
        };
        (filters, errors)
    }

    fn matches(&self, e: &LogEntry) -> bool {
        self.status.matches(e.status)
            && (self.method.is_empty() || e.method == self.method)
            && (self.ip.is_empty() || e.ip.contains(&self.ip))
            && (self.auth.is_empty() || e.auth.to_lowercase().contains(&self.auth_lc))
            && (self.path.is_empty() || decode_path(&e.path).to_lowercase().contains(&self.path_lc))
    }

    /// This page's URL with another cursor.
    fn url(&self, before: Option<LogKey>) -> String {
        let mut q = vec![format!("window={}", self.window.key())];
        for (k, v) in [
            ("status", self.status_raw.as_str()),
            ("method", &self.method),
            ("path", &self.path),
            ("ip", &self.ip),
            ("auth", &self.auth),
        ] {
            if !v.is_empty() {
                q.push(format!("{k}={}", enc(v)));
            }
        }
        if let Some(b) = before {
            q.push(format!("before={}", b.to_cursor()));
        }
        format!("/_/logs?{}", q.join("&"))
    }
}

/// Percent-decodes a logged path for display and filtering (the log keeps
/// it as received); invalid UTF-8 shows as U+FFFD.
fn decode_path(p: &str) -> Cow<'_, str> {
    if !p.contains('%') {
        return Cow::Borrowed(p);
    }
    let b = p.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// A duration for people: µs, ms or s with at most one decimal.
fn human_micros(us: u64) -> String {
    match us {
        0..=999 => format!("{us} µs"),
        1_000..=999_999 => format!("{:.1} ms", us as f64 / 1e3).replace(".0 ", " "),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

/// `part` of `total` as a percentage with at most one decimal.
fn percent(part: u64, total: u64) -> String {
    if total == 0 {
        return "–".into();
    }
    let tenths = (part * 1000 + total / 2) / total;
    if tenths.is_multiple_of(10) {
        format!("{}%", tenths / 10)
    } else {
        format!("{}.{}%", tenths / 10, tenths % 10)
    }
}

/// The nearest-rank `q` quantile of `v` (reorders `v`).
fn quantile(v: &mut [u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    *v.select_nth_unstable(rank).1
}

struct Row {
    time: String,
    datetime: String,
    method: String,
    path: String,
    status: u16,
    badge: &'static str,
    duration: String,
    ip: String,
    auth: String,
}

impl Row {
    /// `today` is the current UTC date (`YYYY-MM-DD`): today's requests
    /// show the time only, to the millisecond; older ones the date too.
    fn new(e: LogEntry, today: &str) -> Row {
        let stamp = format_datetime((e.ts_us / 1000) as i64);
        Row {
            time: if stamp.starts_with(today) {
                stamp[11..23].to_owned()
            } else {
                stamp[..19].to_owned()
            },
            datetime: stamp.replacen(' ', "T", 1),
            path: decode_path(&e.path).into_owned(),
            badge: match e.status {
                200..=299 => "badge-ok",
                400..=499 => "badge-warn",
                500.. => "badge-danger",
                _ => "",
            },
            duration: human_micros(e.micros),
            status: e.status,
            method: e.method,
            // Empty when the settings say not to keep them.
            ip: if e.ip.is_empty() { "–".into() } else { e.ip },
            auth: if e.auth.is_empty() { "–".into() } else { e.auth },
        }
    }
}

struct Stats {
    total: u64,
    errors: u64,
    server_errors: u64,
    error_rate: String,
    server_rate: String,
    p50: String,
    p95: String,
}

/// A `<select>` option.
struct Opt {
    value: &'static str,
    label: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "logs/index.html")]
struct LogsPage {
    page: Page,
    errors: Vec<String>,
    windows: Vec<Opt>,
    statuses: Vec<Opt>,
    methods: Vec<Opt>,
    path: String,
    ip: String,
    auth: String,
    span: &'static str,
    stats: Option<Stats>,
    chart: Option<chart::Chart>,
    unit: &'static str,
    rows: Vec<Row>,
    older: Option<String>,
    newest: Option<String>,
    capped: bool,
    enabled: bool,
    stored: u64,
    dropped: u64,
    max_days: u32,
    max_entries: u64,
    filtered: bool,
}

/// The Logs page: the form echoed back, then one scan of the window that
/// fills the table, the stats and the chart together (the log is read
/// once, whatever is shown).
async fn index(req: HttpRequest, admin: Admin) -> Result<HttpResponse, AdminError> {
    let (f, errors) = Filters::parse(req.query_string());
    let log = admin.state.store.logs();
    let (bucket_us, unit) = f.window.bucket();
    let mut tpl = page(&req, &admin, &f, errors, unit);
    if !tpl.errors.is_empty() {
        return Ok(view::render_status(&req, StatusCode::BAD_REQUEST, &tpl));
    }
    let now = now_micros();
    let n = (f.window.micros() / bucket_us) as usize;
    let mut tally = Tally {
        buckets: chart::Buckets::new(now, bucket_us, n),
        durations: Vec::new(),
        errors: 0,
        server_errors: 0,
    };
    scan(log, &f, now, &mut tally, &mut tpl)?;
    summarise(&mut tpl, tally, unit, f.window.span());
    Ok(view::render(&req, &tpl))
}

/// The page before any entry is read: the filter form with its options
/// and current values, and the log's settings and counters. Kept apart so
/// a bad filter can be shown (with a 400) without scanning anything.
fn page(req: &HttpRequest, admin: &Admin, f: &Filters, errors: Vec<String>, unit: &'static str) -> LogsPage {
    let log = admin.state.store.logs();
    let settings = admin.state.settings.get();
    LogsPage {
        page: Page::new(req, admin, "Logs", "logs"),
        windows: Window::ALL
            .into_iter()
            .map(|w| Opt {
                value: w.key(),
                label: format!("Last {}", w.span()),
                selected: w == f.window,
            })
            .collect(),
        statuses: STATUS_OPTIONS
            .into_iter()
            .map(|(v, l)| Opt {
                value: v,
                label: l.into(),
                selected: StatusClass::parse(v) == Some(f.status),
            })
            .collect(),
        methods: std::iter::once("")
            .chain(METHODS)
            .map(|m| Opt {
                value: m,
                label: if m.is_empty() { "Any method".into() } else { m.into() },
                selected: m == f.method,
            })
            .collect(),
        path: f.path.clone(),
        ip: f.ip.clone(),
        auth: f.auth.clone(),
        span: f.window.span(),
        stats: None,
        chart: None,
        unit,
        rows: Vec::new(),
        older: None,
        newest: f.before.map(|_| f.url(None)),
        capped: false,
        enabled: log.enabled(),
        stored: log.len(),
        dropped: log.dropped(),
        max_days: settings.logs.max_days,
        max_entries: settings.logs.max_entries,
        filtered: !(f.status_raw.is_empty()
            && f.method.is_empty()
            && f.path.is_empty()
            && f.ip.is_empty()
            && f.auth.is_empty()),
        errors,
    }
}

/// What the scan counts over every matching entry of the window (not only
/// the page shown), for the stats and the chart.
struct Tally {
    buckets: chart::Buckets,
    durations: Vec<u64>,
    errors: u64,
    server_errors: u64,
}

/// Walks the window newest first, at most `SCAN_CAP` entries (then the
/// page says the figures are partial): every match is counted into
/// `tally`, and the first `PAGE` matches before the `before` cursor become
/// rows. The "older" link is kept only if a further match exists.
fn scan(log: &RequestLog, f: &Filters, now: u64, tally: &mut Tally, tpl: &mut LogsPage) -> Result<(), AdminError> {
    let today = format_datetime((now / 1000) as i64)[..10].to_owned();
    let since = now.saturating_sub(f.window.micros());
    let mut more = false;
    for (scanned, item) in log.newest_first(since).enumerate() {
        if scanned >= SCAN_CAP {
            tpl.capped = true;
            break;
        }
        let (key, e) = item.map_err(crate::error::ApiError::from)?;
        if !f.matches(&e) {
            continue;
        }
        tally.durations.push(e.micros);
        tally.errors += u64::from(e.status >= 400);
        tally.server_errors += u64::from(e.status >= 500);
        tally.buckets.add(e.ts_us, e.status >= 400);
        if f.before.is_none_or(|b| key < b) {
            if tpl.rows.len() < PAGE {
                tpl.rows.push(Row::new(e, &today));
                if tpl.rows.len() == PAGE {
                    tpl.older = Some(f.url(Some(key)));
                }
            } else {
                more = true;
            }
        }
    }
    if !more {
        tpl.older = None;
    }
    Ok(())
}

/// Turns the tally into the stats panel and the chart; with no match both
/// stay absent (the page says so rather than drawing an empty chart).
fn summarise(tpl: &mut LogsPage, mut tally: Tally, unit: &'static str, span: &'static str) {
    let total = tally.durations.len() as u64;
    if total == 0 {
        return;
    }
    tpl.stats = Some(Stats {
        total,
        errors: tally.errors,
        server_errors: tally.server_errors,
        error_rate: percent(tally.errors, total),
        server_rate: percent(tally.server_errors, total),
        p50: human_micros(quantile(&mut tally.durations, 0.50)),
        p95: human_micros(quantile(&mut tally.durations, 0.95)),
    });
    tpl.chart = Some(chart::build(&tally.buckets, unit, span));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_and_durations_read_well() {
        assert_eq!(percent(3, 4), "75%");
        assert_eq!(percent(1, 3), "33.3%");
        assert_eq!(percent(0, 0), "–");
        assert_eq!(human_micros(850), "850 µs");
        assert_eq!(human_micros(12_340), "12.3 ms");
        assert_eq!(human_micros(2_000), "2 ms");
        assert_eq!(human_micros(1_500_000), "1.50 s");
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(quantile(&mut v, 0.5), 50);
        assert_eq!(quantile(&mut v, 0.95), 95);
        assert_eq!(quantile(&mut [7], 0.95), 7);
        assert_eq!(quantile(&mut [], 0.5), 0);
    }

    #[test]
    fn paths_decode_for_display() {
        assert_eq!(decode_path("/api/x"), "/api/x");
        assert_eq!(decode_path("/a%3Cb%3E%2"), "/a<b>%2");
        assert_eq!(decode_path("/%FF"), "/\u{FFFD}");
    }

    #[test]
    fn filters_parse_and_report_bad_values() {
        let (f, errors) = Filters::parse("window=24h&status=4xx&method=get&path=%2FAPI&before=5-1");
        assert!(errors.is_empty());
        assert_eq!(f.path_lc, "/api");
        assert_eq!(
            (f.window, f.status, f.method.as_str()),
            (Window::H24, StatusClass::Class(4), "GET")
        );
        assert_eq!(f.before, Some(LogKey { ts_us: 5, seq: 1 }));
        assert_eq!(f.url(None), "/_/logs?window=24h&status=4xx&method=GET&path=%2FAPI");
        let (_, errors) = Filters::parse("window=1y&status=6xx&method=BREW&before=x");
        assert_eq!(errors.len(), 4);
    }
}
