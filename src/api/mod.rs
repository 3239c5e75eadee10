//! The HTTP API: routes, extractors, error rendering, request logging.

pub mod errors;
pub mod extract;
pub mod fields;
mod handlers;
pub mod middleware;

use actix_web::web;

use handlers as h;

/// Registers every `/api` route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(errors::query_error))
        .app_data(web::PathConfig::default().error_handler(errors::path_error))
        .route("/api/health", web::get().to(h::health))
        .route("/api/health", web::head().to(h::health))
        .service(
            web::scope("/api/collections")
                .route("", web::get().to(h::collections_list))
                .route("", web::post().to(h::collections_create))
                .route("/{c}", web::get().to(h::collections_view))
                .route("/{c}", web::patch().to(h::collections_update))
                .route("/{c}", web::delete().to(h::collections_delete))
                .route("/{c}/dry-run", web::post().to(h::collections_dry_run))
                .route("/{c}/records", web::get().to(h::records_list))
                .route("/{c}/records", web::post().to(h::records_create))
                .route("/{c}/records/{id}", web::get().to(h::records_view))
                .route("/{c}/records/{id}", web::patch().to(h::records_update))
                .route("/{c}/records/{id}", web::delete().to(h::records_delete))
                .route("/{c}/auth-with-password", web::post().to(h::auth_with_password))
                .route("/{c}/auth-refresh", web::post().to(h::auth_refresh)),
        );
}
