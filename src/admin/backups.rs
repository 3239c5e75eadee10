//! Backups page: consistent snapshots of the running server into
//! `<data dir>/backups/`, listed, downloaded, deleted. Restoring replaces
//! the whole data dir, so it is done with the server stopped, through the
//! CLI (`basalt backup restore FILE --dir NEW_DIR`); the page says how.
//! The file handling is `core::backups`, shared with `/api/backups`.

use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::{view, Admin, AdminError, AdminForm, Page};
use crate::core::backups;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/backups")
            .route(web::get().to(index))
            .route(web::post().to(create)),
    )
    .route("/backups/{name}", web::get().to(download))
    .route("/backups/{name}/delete", web::post().to(delete));
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KB", "MB", "GB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

struct Entry {
    name: String,
    size: String,
    modified: String,
}

#[derive(Template)]
#[template(path = "backups/index.html")]
struct BackupsPage {
    page: Page,
    entries: Vec<Entry>,
    dir: String,
}

async fn index(req: HttpRequest, admin: Admin) -> HttpResponse {
    let page = Page::new(&req, &admin, "Backups", "backups");
    let entries = backups::list(&admin.state)
        .into_iter()
        .map(|b| Entry {
            size: human_size(b.size),
            modified: b.modified.get(..19).unwrap_or_default().to_owned(),
            name: b.key,
        })
        .collect();
    let tpl = BackupsPage {
        entries,
        dir: backups::dir(&admin.state).display().to_string(),
        page,
    };
    view::render(&req, &tpl)
}

async fn create(req: HttpRequest, form: AdminForm) -> Result<HttpResponse, AdminError> {
    match backups::create(&form.admin.state, None).await {
        Ok((name, info)) => Ok(view::redirect_flash(
            &req,
            "/_/backups",
            "ok",
            &format!(
                "Backup {name} created: {} entries, {} file{}, {}.",
                info.entries,
                info.files,
                if info.files == 1 { "" } else { "s" },
                human_size(info.bytes)
            ),
        )),
        Err(e) => Ok(view::redirect_flash(&req, "/_/backups", "error", &e.message)),
    }
}

/// Streams a backup file in 256 KiB chunks (backups can be large).
async fn download(admin: Admin, name: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let name = name.into_inner();
    let path = backups::path(&admin.state, &name).map_err(|_| AdminError::NotFound)?;
    crate::api::backups::stream_file(&path, &name).map_err(|_| AdminError::NotFound)
}

async fn delete(req: HttpRequest, form: AdminForm, name: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let name = name.into_inner();
    backups::delete(&form.admin.state, &name).map_err(|_| AdminError::NotFound)?;
    Ok(view::redirect_flash(
        &req,
        "/_/backups",
        "ok",
        &format!("Deleted {name}."),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(3 * 1024 * 1024 / 2), "1.5 MB");
    }
}
