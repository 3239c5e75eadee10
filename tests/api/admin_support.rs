//! A tiny browser for dashboard tests: keeps cookies, reads the CSRF token
//! from pages, posts forms. No redirects are followed, so tests see each
//! 303 and its `Location`.

use std::collections::BTreeMap;

use awc::http::Method;

use super::helpers::{TestApp, SU_EMAIL, SU_PASSWORD};

/// A page as the browser got it.
#[derive(Debug)]
pub struct Html {
    pub status: u16,
    pub headers: awc::http::header::HeaderMap,
    pub body: String,
}

impl Html {
    /// The `Location` header of a redirect.
    pub fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }
    /// Asserts the body contains `needle`.
    #[track_caller]
    pub fn assert_has(&self, needle: &str) {
        assert!(
            self.body.contains(needle),
            "page ({}) lacks {needle:?}:\n{}",
            self.status,
            self.body
        );
    }
}

pub struct Browser {
    pub base: String,
    client: awc::Client,
    pub cookies: BTreeMap<String, String>,
    /// The CSRF token from the last page that had one.
    pub csrf: String,
}

/// The value of `attr="…"` following `marker` in `body`.
pub fn attr_after(body: &str, marker: &str, attr: &str) -> Option<String> {
    let start = body.find(marker)?;
    let rest = &body[start..];
    let a = rest.find(&format!("{attr}=\""))? + attr.len() + 2;
    let end = rest[a..].find('"')?;
    Some(rest[a..a + end].to_owned())
}

pub fn form_encode(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", crate::helpers::enc(k), crate::helpers::enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl Browser {
    /// A browser with no session.
    pub fn new(app: &TestApp) -> Browser {
        Browser {
            base: app.base.clone(),
            client: awc::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .disable_redirects()
                .finish(),
            cookies: BTreeMap::new(),
            csrf: String::new(),
        }
    }

    /// Logs the test superuser in through the login form.
    pub async fn login(app: &TestApp) -> Browser {
        let mut b = Browser::new(app);
        let r = b.login_with(SU_EMAIL, SU_PASSWORD).await;
        assert_eq!(r.status, 303, "login: {}", r.body);
        let page = b.get("/_/collections").await;
        assert_eq!(page.status, 200, "after login: {}", page.body);
        b
    }

    /// Submits the login form (fetching it first for its token).
    pub async fn login_with(&mut self, email: &str, password: &str) -> Html {
        let form = self.get("/_/login").await;
        assert_eq!(form.status, 200);
        let token = attr_after(&form.body, "name=\"_csrf\"", "value").expect("login csrf");
        self.send_form(
            "/_/login",
            &[
                ("_csrf", &token),
                ("email", email),
                ("password", password),
                ("next", ""),
            ],
        )
        .await
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub async fn send(&mut self, method: Method, path: &str, body: Option<String>, extra: &[(&str, &str)]) -> Html {
        let body = body.map(|b| ("application/x-www-form-urlencoded".to_owned(), b.into_bytes()));
        self.send_bytes(method, path, body, extra).await
    }

    /// Posts a `multipart/form-data` body (see `crate::form::Form`) as a
    /// browser posts a form with files; the body carries its own `_csrf`.
    pub async fn post_multipart(&mut self, path: &str, body: Vec<u8>, extra: &[(&str, &str)]) -> Html {
        let body = Some((crate::form::content_type(), body));
        self.send_bytes(Method::POST, path, body, extra).await
    }

    /// Sends a body of the given content type.
    pub async fn send_bytes(
        &mut self,
        method: Method,
        path: &str,
        body: Option<(String, Vec<u8>)>,
        extra: &[(&str, &str)],
    ) -> Html {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .insert_header(("Cookie", self.cookie_header()));
        for (k, v) in extra {
            req = req.insert_header((k.to_string(), v.to_string()));
        }
        let res = match body {
            Some((content_type, b)) => req.insert_header(("Content-Type", content_type)).send_body(b).await,
            None => req.send().await,
        };
        let mut res = res.expect("request sent");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        for v in headers.get_all("set-cookie") {
            let v = v.to_str().unwrap_or_default();
            let first = v.split(';').next().unwrap_or_default();
            if let Some((k, val)) = first.split_once('=') {
                let expired = v.to_ascii_lowercase().contains("max-age=0");
                if expired || val.is_empty() {
                    self.cookies.remove(k.trim());
                } else {
                    self.cookies.insert(k.trim().to_owned(), val.to_owned());
                }
            }
        }
        let bytes = res.body().limit(64 * 1024 * 1024).await.expect("body");
        let body = String::from_utf8_lossy(&bytes).into_owned();
        if let Some(t) = attr_after(&body, "name=\"csrf-token\"", "content") {
            self.csrf = t;
        }
        Html { status, headers, body }
    }

    pub async fn get(&mut self, path: &str) -> Html {
        self.send(Method::GET, path, None, &[]).await
    }

    /// Posts a form with the session's CSRF token added.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Html {
        let csrf = self.csrf.clone();
        let mut all: Vec<(&str, &str)> = vec![("_csrf", &csrf)];
        all.extend_from_slice(fields);
        self.send_form(path, &all).await
    }

    /// Posts exactly these fields (no CSRF token added).
    pub async fn send_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Html {
        self.send(Method::POST, path, Some(form_encode(fields)), &[]).await
    }

    /// Posts with extra headers (e.g. a foreign `Origin`).
    pub async fn post_with_headers(&mut self, path: &str, fields: &[(&str, &str)], headers: &[(&str, &str)]) -> Html {
        let csrf = self.csrf.clone();
        let mut all: Vec<(&str, &str)> = vec![("_csrf", &csrf)];
        all.extend_from_slice(fields);
        self.send(Method::POST, path, Some(form_encode(&all)), headers).await
    }
}
