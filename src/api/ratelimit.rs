//! The rate-limit middleware: asks [`crate::ratelimit`] about every request
//! and answers 429 (`Retry-After`, PocketBase's error body) when the rule
//! that applies is exhausted.
//!
//! It sits inside the security-header and CORS middleware, so a 429 carries
//! the same headers as any other answer (a browser can read it), and it
//! returns the 429 as a response, not as an error, because the outer
//! middleware only decorate successful service results.

use std::net::{IpAddr, Ipv4Addr};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};

use crate::core::auth;
use crate::state::AppState;

/// Limits by peer address. Only a request that would be limited pays for
/// resolving its token: superusers are let through (they administer the
/// server and may need to, e.g. to raise the very limit they hit).
pub async fn limit(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let limited = match req.app_data::<web::Data<AppState>>() {
        Some(state) => {
            let settings = state.settings.get();
            if settings.rate_limits.enabled {
                // Without a peer address (never over TCP) all such requests
                // share one key rather than going unlimited.
                let ip = super::middleware::client_ip(req.request()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
                // The router's path (percent-decoded like the router sees
                // it), so `/api/collections/po%73ts` cannot dodge `posts:…`.
                let path = req.match_info().as_str();
                // The caller is resolved at most once, and only if a rule
                // with an audience is a candidate or a limit is hit.
                let caller: std::cell::OnceCell<crate::core::Caller> = std::cell::OnceCell::new();
                let resolve = || {
                    caller.get_or_init(|| {
                        let token = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
                        auth::resolve(state, token)
                    })
                };
                let verdict = state.rate_limiter.check_request(
                    &settings,
                    req.method().as_str(),
                    path,
                    ip,
                    |c| state.registry.get(c).map(|c| c.def.name.clone()),
                    || !matches!(resolve(), crate::core::Caller::Guest),
                );
                verdict.err().filter(|_| {
                    let caller = resolve();
                    super::middleware::mark_caller(req.request(), caller);
                    !caller.is_superuser()
                })
            } else {
                None
            }
        }
        None => None,
    };
    match limited {
        Some(secs) => {
            let res = crate::ratelimit::too_many(secs).error_response();
            Ok(req.into_response(res).map_into_right_body())
        }
        None => Ok(next.call(req).await?.map_into_left_body()),
    }
}
