//! Dashboard: records pages (being built).

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::{Admin, Page};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/collections/{c}/records", web::get().to(index));
}

#[derive(Template)]
#[template(path = "stub.html")]
struct Stub {
    page: Page,
}

async fn index(req: HttpRequest, admin: Admin) -> HttpResponse {
    let page = Page::new(&req, &admin, "records", "records");
    super::view::render(&req, &Stub { page })
}
