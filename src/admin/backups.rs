//! Backups page: consistent snapshots of the running server into
//! `<data dir>/backups/`, listed, downloaded, deleted. Restoring replaces
//! the whole data dir, so it is done with the server stopped, through the
//! CLI (`basalt backup restore FILE --dir NEW_DIR`); the page says how.

use std::io::Read;
use std::path::PathBuf;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::{view, Admin, AdminError, AdminForm, Page};
use crate::clock::format_datetime;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/backups")
            .route(web::get().to(index))
            .route(web::post().to(create)),
    )
    .route("/backups/{name}", web::get().to(download))
    .route("/backups/{name}/delete", web::post().to(delete));
}

const SUFFIX: &str = ".backup";

/// Where backups go: `<data dir>/backups`.
fn dir(admin: &Admin) -> PathBuf {
    admin.state.config.dir.join("backups")
}

/// Only names this page makes are served: no paths, no dot files.
fn valid_name(name: &str) -> bool {
    name.len() <= 100
        && name.ends_with(SUFFIX)
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
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

fn list(admin: &Admin) -> Vec<Entry> {
    let mut out: Vec<(std::time::SystemTime, Entry)> = std::fs::read_dir(dir(admin))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if !valid_name(&name) {
                return None;
            }
            let meta = e.metadata().ok()?;
            let modified = meta.modified().ok()?;
            let ms = modified
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            Some((
                modified,
                Entry {
                    name,
                    size: human_size(meta.len()),
                    modified: format_datetime(ms)[..19].to_owned(),
                },
            ))
        })
        .collect();
    out.sort_by_key(|e| std::cmp::Reverse(e.0));
    out.into_iter().map(|(_, e)| e).collect()
}

async fn index(req: HttpRequest, admin: Admin) -> HttpResponse {
    let page = Page::new(&req, &admin, "Backups", "backups");
    let tpl = BackupsPage {
        entries: list(&admin),
        dir: dir(&admin).display().to_string(),
        page,
    };
    view::render(&req, &tpl)
}

async fn create(req: HttpRequest, form: AdminForm) -> Result<HttpResponse, AdminError> {
    let admin = form.admin;
    let target = dir(&admin);
    std::fs::create_dir_all(&target)
        .map_err(|e| AdminError::BadRequest(format!("Cannot create {}: {e}", target.display())))?;
    let stamp: String = format_datetime(crate::clock::now_millis())
        .chars()
        .filter(|c| c.is_ascii_digit())
        .take(14)
        .collect();
    let mut name = format!("basalt-{}-{}{SUFFIX}", &stamp[..8], &stamp[8..]);
    let mut n = 1;
    while target.join(&name).exists() {
        n += 1;
        name = format!("basalt-{}-{}-{n}{SUFFIX}", &stamp[..8], &stamp[8..]);
    }
    match admin.state.store.backup(&target.join(&name)).await {
        Ok(info) => Ok(view::redirect_flash(
            &req,
            "/_/backups",
            "ok",
            &format!(
                "Backup {name} created: {} entries, {}.",
                info.entries,
                human_size(info.bytes)
            ),
        )),
        Err(e) => Ok(view::redirect_flash(
            &req,
            "/_/backups",
            "error",
            &format!("Backup failed: {e}"),
        )),
    }
}

/// Streams a backup file in 256 KiB chunks (backups can be large).
async fn download(admin: Admin, name: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let name = name.into_inner();
    if !valid_name(&name) {
        return Err(AdminError::NotFound);
    }
    let path = dir(&admin).join(&name);
    let file = std::fs::File::open(&path).map_err(|_| AdminError::NotFound)?;
    let len = file.metadata().map(|m| m.len()).map_err(|_| AdminError::NotFound)?;
    let chunks = futures_util::stream::unfold(Some(file), |state| async move {
        let mut file = state?;
        let read = web::block(move || {
            let mut buf = vec![0u8; 256 * 1024];
            let n = file.read(&mut buf)?;
            buf.truncate(n);
            Ok::<_, std::io::Error>((buf, file))
        })
        .await;
        match read {
            Ok(Ok((buf, _))) if buf.is_empty() => None,
            Ok(Ok((buf, file))) => Some((Ok::<_, actix_web::Error>(web::Bytes::from(buf)), Some(file))),
            Ok(Err(e)) => Some((Err(e.into()), None)),
            Err(e) => Some((Err(e.into()), None)),
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .no_chunking(len)
        .streaming(chunks))
}

async fn delete(req: HttpRequest, form: AdminForm, name: web::Path<String>) -> Result<HttpResponse, AdminError> {
    let name = name.into_inner();
    if !valid_name(&name) {
        return Err(AdminError::NotFound);
    }
    let path = dir(&form.admin).join(&name);
    std::fs::remove_file(&path).map_err(|_| AdminError::NotFound)?;
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
    fn only_plain_backup_names_are_served() {
        assert!(valid_name("basalt-20261128-071500.backup"));
        for bad in [
            "../x.backup",
            "x/y.backup",
            ".backup",
            "x.backup.tmp",
            "x.partial",
            "a b.backup",
            "",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(3 * 1024 * 1024 / 2), "1.5 MB");
    }
}
