//! The HTTP API: routes, extractors, error rendering, request logging.

pub mod errors;
pub mod extract;
pub mod fields;
mod handlers;
pub mod mail;
pub mod middleware;
pub mod ratelimit;

use actix_web::web;

use handlers as h;

/// Registers every `/api` route.
///
/// Routes are grouped as one resource per path with several methods, under
/// one `/api/collections/{c}` scope: actix matches each dynamic path with a
/// regex, so this keeps it to a few matches per request (profiling showed
/// route matching at ~3.5% of CPU with one resource per method).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(errors::query_error))
        .app_data(web::PathConfig::default().error_handler(errors::path_error))
        .service(
            web::resource("/api/health")
                .route(web::get().to(h::health))
                .route(web::head().to(h::health)),
        )
        .service(
            web::resource("/api/settings")
                .route(web::get().to(h::settings_view))
                .route(web::patch().to(h::settings_update)),
        )
        .route("/api/settings/test/email", web::post().to(mail::test_email))
        .service(
            web::resource("/api/realtime")
                .route(web::get().to(crate::realtime::sse::connect))
                .route(web::post().to(crate::realtime::sse::set_subscriptions)),
        )
        .route("/api/realtime/ws", web::get().to(crate::realtime::ws::handle))
        .route("/api/batch", web::post().to(h::batch))
        .service(
            web::resource("/api/collections")
                .route(web::get().to(h::collections_list))
                .route(web::post().to(h::collections_create)),
        )
        .service(
            web::scope("/api/collections/{c}")
                .service(
                    web::resource("/records")
                        .route(web::get().to(h::records_list))
                        .route(web::post().to(h::records_create)),
                )
                .service(
                    web::resource("/records/{id}")
                        .route(web::get().to(h::records_view))
                        .route(web::patch().to(h::records_update))
                        .route(web::delete().to(h::records_delete)),
                )
                .service(
                    web::resource("")
                        .route(web::get().to(h::collections_view))
                        .route(web::patch().to(h::collections_update))
                        .route(web::delete().to(h::collections_delete)),
                )
                .route("/dry-run", web::post().to(h::collections_dry_run))
                .route("/auth-with-password", web::post().to(h::auth_with_password))
                .route("/auth-refresh", web::post().to(h::auth_refresh))
                .route("/auth-methods", web::get().to(h::auth_methods))
                .route("/request-verification", web::post().to(h::request_verification))
                .route("/confirm-verification", web::post().to(h::confirm_verification))
                .route("/request-password-reset", web::post().to(h::request_password_reset))
                .route("/confirm-password-reset", web::post().to(h::confirm_password_reset))
                .route("/request-email-change", web::post().to(h::request_email_change))
                .route("/confirm-email-change", web::post().to(h::confirm_email_change))
                .route("/request-otp", web::post().to(h::request_otp))
                .route("/auth-with-otp", web::post().to(h::auth_with_otp))
                .route("/impersonate/{id}", web::post().to(h::impersonate)),
        );
}
