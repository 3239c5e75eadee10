//! The HTTP API: routes, extractors, error rendering, request logging.

pub mod backups;
pub mod bounds;
mod collections;
pub mod errors;
pub mod extract;
pub mod files;
mod handlers;
pub mod logs;
pub mod mail;
pub mod middleware;
pub mod multipart;
mod oauth2;
pub mod openapi;
pub mod ratelimit;
pub mod realtime;

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
            resource("/api/health", "GET, HEAD")
                .route(web::get().to(h::health))
                .route(web::head().to(h::health)),
        )
        .service(
            resource("/api/settings", "GET, PATCH")
                .route(web::get().to(h::settings_view))
                .route(web::patch().to(h::settings_update)),
        )
        .service(resource("/api/settings/test/email", "POST").route(web::post().to(mail::test_email)))
        .service(resource("/api/settings/test/s3", "POST").route(web::post().to(mail::test_s3)))
        .service(resource("/api/logs", "GET").route(web::get().to(logs::list)))
        // Before `{id}`, so `stats` is not read as an id.
        .service(resource("/api/logs/stats", "GET").route(web::get().to(logs::stats)))
        .service(resource("/api/logs/{id}", "GET").route(web::get().to(logs::view)))
        .service(
            resource("/api/backups", "GET, POST")
                .route(web::get().to(backups::list))
                .route(web::post().to(backups::create)),
        )
        // A scope with a static prefix: paths outside it are passed over by
        // a string compare, not by running its routes' regexes (three regex
        // runs per records request before, ~6% of a list's instructions).
        .service(
            web::scope("/api/backups")
                .service(
                    resource("/{key}", "GET, DELETE")
                        .route(web::get().to(backups::download))
                        .route(web::delete().to(backups::delete)),
                )
                .service(post("/{key}/restore").to(backups::restore)),
        )
        .service(post("/api/files/token").to(h::file_token))
        .service(
            resource("/api/files/{collection}/{recordId}/{name}", "GET, HEAD")
                .route(web::get().to(files::download))
                .route(web::head().to(files::download)),
        )
        .service(
            resource("/api/realtime", "GET, POST")
                .route(web::get().to(realtime::sse::connect))
                .route(web::post().to(realtime::sse::set_subscriptions)),
        )
        .service(
            resource("/api/oauth2-redirect", "GET, POST")
                .route(web::get().to(oauth2::redirect_get))
                .route(web::post().to(oauth2::redirect_post)),
        )
        .service(resource("/api/realtime/ws", "GET").route(web::get().to(realtime::ws::handle)))
        .service(resource("/api/batch", "POST").route(web::post().to(h::batch)))
        .service(resource("/api/openapi.json", "GET").route(web::get().to(openapi::handler)))
        .service(
            resource("/api/collections", "GET, POST")
                .route(web::get().to(collections::list))
                .route(web::post().to(collections::create)),
        )
        .service(resource("/api/collections/import", "PUT").route(web::put().to(collections::import)))
        .service(resource("/api/collections/meta/scaffolds", "GET").route(web::get().to(collections::scaffolds)))
        .service(
            web::scope("/api/collections/{c}")
                .service(
                    resource("/records", "GET, POST")
                        .route(web::get().to(h::records_list))
                        .route(web::post().to(h::records_create)),
                )
                .service(
                    resource("/records/{id}", "GET, PATCH, DELETE")
                        .route(web::get().to(h::records_view))
                        .route(web::patch().to(h::records_update))
                        .route(web::delete().to(h::records_delete)),
                )
                .service(
                    resource("", "GET, PATCH, DELETE")
                        .route(web::get().to(collections::view))
                        .route(web::patch().to(collections::update))
                        .route(web::delete().to(collections::delete)),
                )
                .service(post("/dry-run").to(collections::dry_run))
                .service(resource("/truncate", "DELETE").route(web::delete().to(collections::truncate)))
                .service(post("/auth-with-password").to(h::auth_with_password))
                .service(post("/auth-refresh").to(h::auth_refresh))
                .service(resource("/auth-methods", "GET").route(web::get().to(h::auth_methods)))
                .service(post("/request-verification").to(h::request_verification))
                .service(post("/confirm-verification").to(h::confirm_verification))
                .service(post("/request-password-reset").to(h::request_password_reset))
                .service(post("/confirm-password-reset").to(h::confirm_password_reset))
                .service(post("/request-email-change").to(h::request_email_change))
                .service(post("/confirm-email-change").to(h::confirm_email_change))
                .service(post("/request-otp").to(h::request_otp))
                .service(post("/auth-with-otp").to(h::auth_with_otp))
                .service(post("/auth-with-oauth2").to(h::auth_with_oauth2))
                .service(post("/impersonate/{id}").to(h::impersonate)),
        );
}

/// A resource that answers other methods with a JSON 405 and an `Allow`
/// header naming `allow`.
fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || async move { errors::method_not_allowed(allow) }))
}

/// A POST-only resource (`.to(handler)` adds the handler).
fn post(path: &str) -> PostOnly {
    PostOnly(resource(path, "POST"))
}

struct PostOnly(actix_web::Resource);

impl PostOnly {
    fn to<F, Args>(self, handler: F) -> actix_web::Resource
    where
        F: actix_web::Handler<Args>,
        Args: actix_web::FromRequest + 'static,
        F::Output: actix_web::Responder + 'static,
    {
        self.0.route(web::post().to(handler))
    }
}
