//! The admin dashboard at `/_/`: server-rendered pages (askama templates in
//! `templates/`, CSS and a little vanilla JS from `admin-ui/`).
//!
//! Every action is a plain form post that redirects (303) back to a page,
//! so the dashboard works without JavaScript; scripts only enhance (JSON
//! syntax checks, confirmations, the live feed). Handlers are thin: they
//! call the same `core` operations as the REST API, as a superuser, so
//! rules, validation, indexes and realtime events are exactly the API's.
//!
//! Security: a session cookie (see [`session`]), a CSRF token on every
//! state-changing request, a strict Content-Security-Policy (no inline
//! script or style, nothing from other origins), `no-store` on pages, and
//! askama's HTML escaping of every value.

pub mod assets;
pub mod backups;
pub mod collections;
pub mod live;
mod login;
pub mod logs;
mod mail_links;
pub mod records;
pub mod session;
pub mod settings;
pub mod view;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, HttpResponse};

pub use session::{Admin, AdminForm};
pub use view::{AdminError, Page};

/// The dashboard's policy: scripts, styles, fonts and images from this
/// origin only, no inline code, `fetch`/WebSocket to this origin only, no
/// framing, forms post only here.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

async fn headers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    Ok(res)
}

/// Registers `/_/…`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/_").to(|| async { view::see_other("/_/") }))
        .service(
            web::scope("/_")
                .wrap(from_fn(headers))
                // actix's default form limit (16 KiB) would refuse a large
                // schema or record; percent-encoding inflates them too.
                .app_data(web::FormConfig::default().limit(session::FORM_LIMIT))
                .route("/assets/{path:.*}", web::get().to(assets::serve))
                .route("/", web::get().to(home))
                .configure(login::routes)
                .configure(mail_links::routes)
                .configure(collections::routes)
                .configure(records::routes)
                .configure(live::routes)
                .configure(logs::routes)
                .configure(settings::routes)
                .configure(backups::routes)
                .default_service(web::to(|| async { Err::<HttpResponse, _>(AdminError::NotFound) })),
        );
}

/// `/_/`: the collections list is the home page.
async fn home(_admin: Admin) -> HttpResponse {
    view::see_other("/_/collections")
}
