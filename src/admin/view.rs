//! What every dashboard page shares: the layout context ([`Page`]), flash
//! messages, rendering with the right headers, and [`AdminError`], which
//! turns failures into HTML pages (or a redirect to the login page).

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use askama::Template;
use base64::Engine;

use super::session::{self, Admin};
use crate::error::ApiError;
use crate::schema::CollectionType;

const FLASH: &str = "basalt_flash";

/// A one-shot message shown on the next page (after a form post redirects).
#[derive(Clone)]
pub struct Flash {
    /// `ok` or `error` (also the CSS class).
    pub kind: &'static str,
    pub text: String,
}

/// A collection in the sidebar.
pub struct NavCollection {
    pub name: String,
    pub auth: bool,
    pub system: bool,
}

/// The layout's context: every page template has a `page: Page` field.
pub struct Page {
    pub title: String,
    /// Which nav entry is current: `collections`, `records:<name>`, `live`,
    /// `logs`, `settings`.
    pub nav: String,
    pub csrf: String,
    pub user: String,
    pub app_name: String,
    pub flash: Option<Flash>,
    pub collections: Vec<NavCollection>,
}

impl Page {
    pub fn new(req: &HttpRequest, admin: &Admin, title: impl Into<String>, nav: impl Into<String>) -> Page {
        let mut collections: Vec<NavCollection> = admin
            .state
            .registry
            .all()
            .iter()
            .map(|c| NavCollection {
                name: c.def.name.clone(),
                auth: c.def.kind == CollectionType::Auth,
                system: c.def.name.starts_with('_'),
            })
            .collect();
        collections.sort_by(|a, b| (a.system, &a.name).cmp(&(b.system, &b.name)));
        Page {
            title: title.into(),
            nav: nav.into(),
            csrf: admin.csrf.clone(),
            user: admin.email().to_owned(),
            app_name: admin.state.settings.get().meta.app_name.clone(),
            flash: read_flash(req),
            collections,
        }
    }

    /// Whether the nav entry `key` is the current page (for `aria-current`).
    pub fn is(&self, key: &str) -> bool {
        self.nav == key
    }
}

fn read_flash(req: &HttpRequest) -> Option<Flash> {
    let c = req.cookie(FLASH)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c.value())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (kind, text) = text.split_once(':')?;
    Some(Flash {
        kind: if kind == "ok" { "ok" } else { "error" },
        text: text.to_owned(),
    })
}

/// Renders a page: HTML, never cached (it shows live data and a CSRF
/// token), and the flash message it showed is cleared.
pub fn render<T: Template>(req: &HttpRequest, t: &T) -> HttpResponse {
    render_status(req, StatusCode::OK, t)
}

/// [`render`] with another status (a form shown again with its errors: 400).
pub fn render_status<T: Template>(req: &HttpRequest, status: StatusCode, t: &T) -> HttpResponse {
    match t.render() {
        Ok(body) => {
            let mut res = HttpResponse::build(status);
            res.content_type("text/html; charset=utf-8")
                .insert_header((header::CACHE_CONTROL, "no-store"));
            if req.cookie(FLASH).is_some() {
                res.cookie(session::removal(req, FLASH));
            }
            res.body(body)
        }
        Err(e) => {
            tracing::error!(error = %e, "dashboard template failed");
            AdminError::Api(ApiError::internal("The page could not be rendered.")).error_response()
        }
    }
}

/// 303 See Other to `location` (after a form post).
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location.to_owned()))
        .finish()
}

/// 303 to `location` with a message for the next page.
pub fn redirect_flash(req: &HttpRequest, location: &str, kind: &str, text: &str) -> HttpResponse {
    let value = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{kind}:{text}"));
    let mut res = see_other(location);
    let _ = res.add_cookie(&session::cookie(req, FLASH, value, 60));
    res
}

/// Percent-encodes a query parameter value.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A failure on a dashboard route, shown as an HTML page.
#[derive(Debug)]
pub enum AdminError {
    /// Not logged in: 303 to the login page, then back to this path.
    Login(String),
    /// Missing or wrong CSRF token, or a cross-site post.
    Csrf,
    NotFound,
    BadRequest(String),
    Api(ApiError),
}

impl From<ApiError> for AdminError {
    fn from(e: ApiError) -> AdminError {
        AdminError::Api(e)
    }
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminError::Login(_) => write!(f, "login required"),
            AdminError::Csrf => write!(f, "CSRF check failed"),
            AdminError::NotFound => write!(f, "not found"),
            AdminError::BadRequest(m) => write!(f, "{m}"),
            AdminError::Api(e) => write!(f, "{}", e.message),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    message: &'a str,
}

impl ResponseError for AdminError {
    fn status_code(&self) -> StatusCode {
        match self {
            AdminError::Login(_) => StatusCode::SEE_OTHER,
            AdminError::Csrf => StatusCode::FORBIDDEN,
            AdminError::NotFound => StatusCode::NOT_FOUND,
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::Api(e) => StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let AdminError::Login(next) = self {
            let location = if next.is_empty() || next == "/_/" {
                "/_/login".to_owned()
            } else {
                format!("/_/login?next={}", enc(next))
            };
            return see_other(&location);
        }
        let (title, message) = match self {
            AdminError::Csrf => (
                "Request refused",
                "The form's security token is missing or out of date (or the request came from another site). Go back, reload the page and try again.".to_owned(),
            ),
            AdminError::NotFound => ("Not found", "There is no such page, collection or record.".to_owned()),
            AdminError::BadRequest(m) => ("Bad request", m.clone()),
            AdminError::Api(e) => ("Something went wrong", e.message.clone()),
            AdminError::Login(_) => unreachable!(),
        };
        let status = self.status_code();
        let body = ErrorPage {
            status: status.as_u16(),
            title,
            message: &message,
        }
        .render()
        .unwrap_or_else(|_| message.clone());
        HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(body)
    }
}
