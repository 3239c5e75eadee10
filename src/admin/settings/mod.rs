//! `/_/settings`: one page, one form per section, each posting to its own
//! route. Server settings save through `core::settings::update` (the
//! validation of `PATCH /api/settings`), token durations through
//! `core::collections::update` (an auth collection's `authOptions`). A
//! failed save shows the whole page again with 400, the submitted values
//! kept and each message next to its field; a successful one redirects
//! with a flash.
//!
//! No secret reaches the HTML: the SMTP password is write-only (the form
//! model has no field that renders it), and nothing here reads tokens or
//! the server secret.

mod errors;
/// Byte counts as the forms show them (also on the record form's file fields).
pub use errors::format_size;
mod forms;
mod limits;
mod s3;
mod tokens;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde_json::{json, Map, Value};

use super::view::{self, AdminError};
use super::{Admin, AdminForm, Page};
use crate::schema::CollectionType;
use errors::Errors;
use forms::{
    AppForm, BatchForm, BudgetForm, CapsForm, CorsForm, LogsForm, MailForm, ProxyForm, RealtimeForm, TestMailForm,
    Usage,
};
use limits::LimitsForm;
use s3::{Bucket, S3Form};
use tokens::TokenForm;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/settings", web::get().to(index))
        .route("/settings/application", web::post().to(save_application))
        .route("/settings/mail", web::post().to(save_mail))
        .route("/settings/mail/test", web::post().to(send_test_mail))
        .route("/settings/s3", web::post().to(save_s3))
        .route("/settings/backups-s3", web::post().to(save_backups_s3))
        .route("/settings/s3/test", web::post().to(test_s3))
        .route("/settings/rate-limits", web::post().to(save_rate_limits))
        .route("/settings/tokens/{collection}", web::post().to(save_tokens))
        .route("/settings/cors", web::post().to(save_cors))
        .route("/settings/realtime", web::post().to(save_realtime))
        .route("/settings/batch", web::post().to(save_batch))
        .route("/settings/budget", web::post().to(save_budget))
        .route("/settings/proxy", web::post().to(save_proxy))
        .route("/settings/server-limits", web::post().to(save_caps))
        .route("/settings/logs", web::post().to(save_logs));
}

#[derive(Template)]
#[template(path = "settings/index.html")]
struct SettingsPage {
    page: Page,
    app: AppForm,
    mail: MailForm,
    test: TestMailForm,
    /// Where mails go while SMTP is off.
    outbox: String,
    /// `s3` (uploaded files) and `backups.s3`.
    s3: S3Form,
    backups_s3: S3Form,
    limits: LimitsForm,
    tokens: Vec<TokenForm>,
    cors: CorsForm,
    realtime: RealtimeForm,
    batch: BatchForm,
    budget: BudgetForm,
    proxy: ProxyForm,
    logs: LogsForm,
    caps: CapsForm,
    /// Set when the server started (`--max-connections`, after the
    /// open-file limit; `--header-timeout`, `--keep-alive`), shown read-only.
    max_connections: usize,
    header_timeout: u64,
    keep_alive: u64,
    errors: Errors,
}

impl SettingsPage {
    /// The page with the current settings in every form.
    fn new(req: &HttpRequest, admin: &Admin) -> SettingsPage {
        let state = &admin.state;
        let s = state.settings.get();
        // The app's own auth collections first, `_superusers` last.
        let mut auth: Vec<_> = state
            .registry
            .all()
            .into_iter()
            .filter(|c| c.def.kind == CollectionType::Auth)
            .collect();
        auth.sort_by(|a, b| (a.def.system, &a.def.name).cmp(&(b.def.system, &b.def.name)));
        let tokens = auth
            .iter()
            .map(|c| TokenForm::from_options(&c.def.name, &c.def.auth_options.clone().unwrap_or_default()))
            .collect();
        SettingsPage {
            page: Page::new(req, admin, "Settings", "settings"),
            app: AppForm::from_settings(&s),
            mail: MailForm::from_settings(&s),
            test: TestMailForm {
                email: admin.email().to_owned(),
                template: "verification".into(),
            },
            outbox: state.mailer.outbox_dir().display().to_string(),
            s3: S3Form::from_settings(&s, Bucket::Storage),
            backups_s3: S3Form::from_settings(&s, Bucket::Backups),
            limits: LimitsForm::from_settings(&s),
            tokens,
            cors: CorsForm::from_settings(&s, &state.config.origins),
            realtime: RealtimeForm::from_settings(&s, &change_log(admin)),
            batch: BatchForm::from_settings(&s),
            budget: BudgetForm::from_settings(&s),
            proxy: ProxyForm::from_settings(&s),
            logs: LogsForm::from_settings(&s, &request_log(admin)),
            caps: CapsForm::from_settings(&s),
            max_connections: state.config.max_connections,
            header_timeout: state.config.header_timeout,
            keep_alive: state.config.keep_alive,
            errors: Errors::default(),
        }
    }

    /// The two S3 forms, in page order.
    fn buckets(&self) -> [&S3Form; 2] {
        [&self.s3, &self.backups_s3]
    }

    /// The page again after a failed save: 400, with the errors.
    fn failed(mut self, req: &HttpRequest, errors: Errors) -> HttpResponse {
        self.errors = errors;
        view::render_status(req, StatusCode::BAD_REQUEST, &self)
    }
}

/// What the change log holds now.
fn change_log(admin: &Admin) -> Usage {
    let store = &admin.state.store;
    let entries = match store.first_change_seq() {
        Some(first) => store.head_seq().saturating_sub(first) + 1,
        None => 0,
    };
    Usage {
        bytes: store.change_log_bytes(),
        entries,
    }
}

/// What the request log holds now.
fn request_log(admin: &Admin) -> Usage {
    let log = admin.state.store.logs();
    Usage {
        bytes: log.bytes(),
        entries: log.len(),
    }
}

async fn index(req: HttpRequest, admin: Admin) -> HttpResponse {
    view::render(&req, &SettingsPage::new(&req, &admin))
}

fn saved(req: &HttpRequest) -> HttpResponse {
    view::redirect_flash(req, "/_/settings", "ok", "Saved.")
}

/// A section of the server settings, as submitted.
enum Section {
    App(AppForm),
    Mail(MailForm),
    S3(S3Form),
    Limits(LimitsForm),
    Cors(CorsForm),
    Realtime(RealtimeForm),
    Batch(BatchForm),
    Budget(BudgetForm),
    Proxy(ProxyForm),
    Logs(LogsForm),
    Caps(CapsForm),
}

impl Section {
    fn patch(&self) -> Result<Map<String, Value>, Errors> {
        match self {
            Section::App(f) => f.patch(),
            Section::Mail(f) => f.patch(),
            Section::S3(f) => f.patch(),
            Section::Limits(f) => f.patch(),
            Section::Cors(f) => f.patch(),
            Section::Realtime(f) => f.patch(),
            Section::Batch(f) => f.patch(),
            Section::Budget(f) => f.patch(),
            Section::Proxy(f) => f.patch(),
            Section::Logs(f) => f.patch(),
            Section::Caps(f) => f.patch(),
        }
    }

    /// The form key for a field the settings store complained about.
    fn form_key(&self, api_key: &str) -> String {
        if api_key.starts_with("cors.origins") {
            return "cors.origins".into();
        }
        if api_key.starts_with("trustedProxy.headers") {
            return "trustedProxy.headers".into();
        }
        if let (Section::Limits(f), Some(n)) = (self, api_key.strip_prefix("rateLimits.rules.")) {
            if let Some(row) = n.parse().ok().and_then(|n| f.row_of_rule(n)) {
                return format!("rateLimits.rules.{row}.label");
            }
        }
        api_key.to_owned()
    }

    /// Where an error without a field is shown.
    fn fallback(&self) -> &'static str {
        match self {
            Section::App(_) => "meta",
            Section::Mail(_) => "smtp",
            Section::S3(f) => f.bucket.key(),
            Section::Limits(_) => "rateLimits",
            Section::Cors(_) => "cors.origins",
            Section::Realtime(_) => "realtime",
            Section::Batch(_) => "batch",
            Section::Budget(_) => "budget",
            Section::Proxy(_) => "trustedProxy.headers",
            Section::Logs(_) => "logs",
            Section::Caps(_) => "limits",
        }
    }

    /// Puts the submitted values into the page shown again.
    fn place(self, page: &mut SettingsPage) {
        match self {
            Section::App(f) => page.app = f,
            Section::Mail(f) => page.mail = f,
            Section::S3(f) if f.bucket == Bucket::Storage => page.s3 = f,
            Section::S3(f) => page.backups_s3 = f,
            Section::Limits(f) => page.limits = f,
            Section::Cors(f) => page.cors = f,
            Section::Realtime(f) => page.realtime = f,
            Section::Batch(f) => page.batch = f,
            Section::Budget(f) => page.budget = f,
            Section::Proxy(f) => page.proxy = f,
            Section::Logs(f) => page.logs = f,
            Section::Caps(f) => page.caps = f,
        }
    }
}

/// Saves one section through the settings store.
async fn save(req: &HttpRequest, admin: Admin, section: Section) -> Result<HttpResponse, AdminError> {
    let errors = match section.patch() {
        Err(errors) => errors,
        Ok(patch) => match crate::core::settings::update(&admin.state, patch).await {
            Ok(_) => return Ok(saved(req)),
            Err(e) if e.status == 400 => Errors::from_api(&e, section.fallback(), |k| section.form_key(k)),
            Err(e) => return Err(e.into()),
        },
    };
    let mut page = SettingsPage::new(req, &admin);
    section.place(&mut page);
    Ok(page.failed(req, errors))
}

async fn save_application(req: HttpRequest, form: AdminForm) -> Result<HttpResponse, AdminError> {
    let section = Section::App(AppForm::from_form(&form));
    save(&req, form.admin, section).await
}

async fn save_mail(req: HttpRequest, form: AdminForm) -> Result<HttpResponse, AdminError> {
    let current = form.admin.state.settings.get();
    let section = Section::Mail(MailForm::from_form(&form, &current));
    save(&req, form.admin, section).await
}

async fn save_s3(req: HttpRequest, form: AdminForm) -> Result<HttpResponse, AdminError> {
    let current = form.admin.state.settings.get();
    let section = Section::S3(S3Form::from_form(&form, &current, Bucket::Storage));
    save(&req, form.admin, section).await
}

async fn save_backups_s3(req: HttpRequest, form: AdminForm) -> Result<HttpResponse, AdminError> {
    let current = form.admin.state.settings.get();
    let section = Section::S3(S3Form::from_form(&form, &current, Bucket::Backups));
    save(&req, form.admin, section).await
}

/// `POST /_/settings/s3/test` (`filesystem` = `storage` | `backups`): the
/// API's `POST /api/settings/test/s3` on the saved settings; the outcome as
/// a flash, or the page again with the reason under that bucket's form.
async fn test_s3(req: HttpRequest, form: AdminForm) -> Result<HttpResponse, AdminError> {
    let filesystem = form.text("filesystem").to_owned();
    let bucket = Bucket::from_filesystem(&filesystem)
        .ok_or_else(|| AdminError::BadRequest("Unknown S3 filesystem: choose storage or backups.".into()))?;
    let state = &form.admin.state;
    let errors = match crate::core::settings::test_s3(state, Some(&Value::String(filesystem))).await {
        Ok(()) => {
            let text = format!(
                "S3 works: a test file was written to bucket \"{}\", read back and deleted.",
                s3::bucket_name(&state.settings.get(), bucket)
            );
            return Ok(view::redirect_flash(&req, "/_/settings", "ok", &text));
        }
        Err(e) if e.status == 400 => {
            let key = format!("{}.test", bucket.key());
            let mut errors = Errors::default();
            errors.add(key, e.message);
            errors
        }
        Err(e) => return Err(e.into()),
    };
    Ok(SettingsPage::new(&req, &form.admin).failed(&req, errors))
}

async fn save_rate_limits(req: HttpRequest, form: AdminForm) -> Result<HttpResponse, AdminError> {
    let section = Section::Limits(LimitsForm::from_form(&form));
    save(&req, form.admin, section).await
}

async fn save_cors(req: HttpRequest, form: AdminForm) -> Result<HttpResponse, AdminError> {
    let section = Section::Cors(CorsForm::from_form(&form, &form.admin.state.config.origins));
    save(&req, form.admin, section).await
}

async fn save_realtime(req: HttpRequest, form: AdminForm) -> Result<HttpResponse, AdminError> {
    let section = Section::Realtime(RealtimeForm::from_form(&form, &change_log(&form.admin)));
    save(&req, form.admin, section).await
}

async fn save_batch(req: HttpRequest, form: AdminForm) -> Result<HttpResponse, AdminError> {
    let section = Section::Batch(BatchForm::from_form(&form));
    save(&req, form.admin, section).await
}

async fn save_budget(req: HttpRequest, form: AdminForm) -> Result<HttpResponse, AdminError> {
    let section = Section::Budget(BudgetForm::from_form(&form));
    save(&req, form.admin, section).await
}

/// `POST /_/settings/tokens/{collection}`: the four token durations of one
/// auth collection, saved as a collection update (as the API would).
async fn save_tokens(req: HttpRequest, path: web::Path<String>, form: AdminForm) -> Result<HttpResponse, AdminError> {
    let state = &form.admin.state;
    let collection = state
        .registry
        .get(&path)
        .filter(|c| c.def.kind == CollectionType::Auth)
        .ok_or(AdminError::NotFound)?;
    let name = collection.def.name.clone();
    let edited = TokenForm::from_form(&name, &form);
    let current = collection.def.auth_options.clone().unwrap_or_default();
    let errors = match edited.apply(&current) {
        Err(errors) => errors,
        Ok(options) => {
            let mut body = Map::new();
            body.insert("authOptions".into(), json!(options));
            match crate::core::collections::update(state, &collection.def.id, body).await {
                Ok(_) => return Ok(saved(&req)),
                Err(e) if e.status == 400 => {
                    let fallback = edited.key("authTokenDuration");
                    Errors::from_api(&e, &fallback, |_| fallback.clone())
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    let mut page = SettingsPage::new(&req, &form.admin);
    if let Some(slot) = page.tokens.iter_mut().find(|t| t.collection == name) {
        *slot = edited;
    }
    Ok(page.failed(&req, errors))
}

/// `POST /_/settings/mail/test`: sends a test mail with the saved settings
/// (the API's `POST /api/settings/test/email`, shared code).
async fn send_test_mail(req: HttpRequest, form: AdminForm) -> Result<HttpResponse, AdminError> {
    let test = TestMailForm {
        email: form.text("test.email").trim().to_owned(),
        template: form.text("test.template").to_owned(),
    };
    let state = &form.admin.state;
    let errors = match crate::api::mail::send_test(state, &test.email, &test.template, "").await {
        Ok(()) => {
            let text = if state.settings.get().smtp.enabled {
                format!("Test mail sent to {}.", test.email)
            } else {
                format!(
                    "SMTP is off: the test mail was written to the dev outbox ({}).",
                    state.mailer.outbox_dir().display()
                )
            };
            return Ok(view::redirect_flash(&req, "/_/settings", "ok", &text));
        }
        Err(e) if e.status == 400 => Errors::from_api(&e, "test.delivery", |k| format!("test.{k}")),
        Err(e) => return Err(e.into()),
    };
    let mut page = SettingsPage::new(&req, &form.admin);
    page.test = test;
    Ok(page.failed(&req, errors))
}

async fn save_proxy(req: HttpRequest, form: AdminForm) -> Result<HttpResponse, AdminError> {
    let section = Section::Proxy(ProxyForm::from_form(&form));
    save(&req, form.admin, section).await
}

async fn save_logs(req: HttpRequest, form: AdminForm) -> Result<HttpResponse, AdminError> {
    let section = Section::Logs(LogsForm::from_form(&form, &request_log(&form.admin)));
    save(&req, form.admin, section).await
}

async fn save_caps(req: HttpRequest, form: AdminForm) -> Result<HttpResponse, AdminError> {
    let section = Section::Caps(CapsForm::from_form(&form));
    save(&req, form.admin, section).await
}
