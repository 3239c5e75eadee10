//! The `basalt` command line: parse, build, run. Nothing else.

use std::path::PathBuf;
use std::process::ExitCode;

use basalt::config::LogFormat;
use basalt::control;
use basalt::store::StoreError;
use basalt::{App, Config};
use clap::{Parser, Subcommand};

/// mimalloc instead of glibc malloc: under load the server allocates from
/// many threads (actix workers, the writer, sled's IO threads), and profiling
/// showed glibc's arena locks and `_int_malloc` at ~15% of CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `basalt --version` prints this after the name, as `pocketbase --version`
/// prints `pocketbase version X`.
const VERSION: &str = concat!("version ", env!("CARGO_PKG_VERSION"));

#[derive(Parser)]
#[command(
    name = "basalt",
    version = VERSION,
    disable_version_flag = true,
    about = "Self-hosted Backend-as-a-Service in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log line format.
    #[arg(long, global = true, env = "BASALT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Data directory (created on first start). Accepted before or after
    /// the command, as PocketBase's `--dir`.
    #[arg(long, global = true, env = "BASALT_DIR", default_value = "./basalt_data")]
    dir: PathBuf,
    /// Keep the data in PostgreSQL instead of the data dir: a libpq URL,
    /// `postgres://user:password@host:port/db` (several hosts with
    /// `target_session_attrs=read-write` for an HA cluster). The data dir
    /// still holds uploaded files, the control socket and this node's
    /// request log.
    #[arg(
        long,
        global = true,
        env = "BASALT_STORE",
        value_name = "URL",
        hide_env_values = true
    )]
    store: Option<String>,
    /// Seconds to wait for the database at start (then exit non-zero).
    #[arg(long, global = true, env = "BASALT_STORE_WAIT", default_value_t = basalt::config::DEFAULT_STORE_WAIT)]
    store_wait: u64,
    /// Print the version.
    #[arg(short = 'v', long = "version", short_alias = 'V', action = clap::ArgAction::Version)]
    version: Option<bool>,
    #[command(flatten)]
    pocketbase: PocketBaseFlags,
}

/// PocketBase's global flags that have no meaning in Basalt: accepted, so
/// a PocketBase command line or service file works unchanged, and each
/// named in one note line. (`--https` and domain arguments ask for TLS,
/// which is refused instead: ignoring them would serve plain HTTP where
/// the operator expects TLS.)
#[derive(clap::Args, Default)]
#[command(next_help_heading = "PocketBase flags (accepted and ignored)")]
struct PocketBaseFlags {
    #[arg(long = "automigrate", global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    automigrate: Option<String>,
    #[arg(long = "migrationsDir", global = true, value_name = "DIR")]
    migrations_dir: Option<String>,
    #[arg(long = "hooksDir", global = true, value_name = "DIR")]
    hooks_dir: Option<String>,
    #[arg(long = "hooksWatch", global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    hooks_watch: Option<String>,
    #[arg(long = "hooksPool", global = true, value_name = "N")]
    hooks_pool: Option<String>,
    #[arg(long = "publicDir", global = true, value_name = "DIR")]
    public_dir: Option<String>,
    #[arg(long = "indexFallback", global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    index_fallback: Option<String>,
    #[arg(long = "queryTimeout", global = true, value_name = "SECONDS")]
    query_timeout: Option<String>,
    #[arg(long = "encryptionEnv", global = true, value_name = "VAR")]
    encryption_env: Option<String>,
    #[arg(long = "dev", global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    dev: Option<String>,
}

impl PocketBaseFlags {
    /// One line per flag given: what Basalt does instead.
    fn notes(&self) -> Vec<String> {
        let no_migrations = "Basalt has no migration files: collections live in the data dir (manage them with the API or the dashboard)";
        let no_hooks = "Basalt runs no JavaScript hooks";
        let no_public = "Basalt serves no static files (serve them from a reverse proxy)";
        let given = [
            ("--automigrate", self.automigrate.is_some(), no_migrations),
            ("--migrationsDir", self.migrations_dir.is_some(), no_migrations),
            ("--hooksDir", self.hooks_dir.is_some(), no_hooks),
            ("--hooksWatch", self.hooks_watch.is_some(), no_hooks),
            ("--hooksPool", self.hooks_pool.is_some(), no_hooks),
            ("--publicDir", self.public_dir.is_some(), no_public),
            ("--indexFallback", self.index_fallback.is_some(), no_public),
            (
                "--queryTimeout",
                self.query_timeout.is_some(),
                "the time limit per request is the setting `budget.maxSeconds` (default 30 s, as PocketBase's)",
            ),
            (
                "--encryptionEnv",
                self.encryption_env.is_some(),
                "the settings are NOT encrypted at rest (keep the data dir private)",
            ),
            ("--dev", self.dev.is_some(), "for verbose logs set RUST_LOG=debug"),
        ];
        given
            .into_iter()
            .filter(|(_, set, _)| *set)
            .map(|(flag, _, why)| format!("note: ignoring PocketBase's {flag}: {why}"))
            .collect()
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Domain names for automatic TLS, as `pocketbase serve example.com`:
        /// not built yet (refused with a message).
        #[arg(value_name = "DOMAIN")]
        domains: Vec<String>,
        /// Address to listen on.
        #[arg(long, env = "BASALT_HTTP", default_value = "127.0.0.1:8090")]
        http: String,
        /// PocketBase's HTTPS address: TLS is not built yet (refused with a message).
        #[arg(long, value_name = "ADDR")]
        https: Option<String>,
        /// Allowed CORS origins: '*' or a list (comma-separated, or the flag
        /// repeated as PocketBase takes it). Once origins are saved in the
        /// settings (dashboard, or `cors.origins` in PATCH /api/settings),
        /// the saved list wins over this flag.
        #[arg(long, env = "BASALT_ORIGINS", value_delimiter = ',', default_value = "*")]
        origins: Vec<String>,
        /// Largest accepted JSON request body, in bytes.
        #[arg(long, env = "BASALT_MAX_BODY", default_value_t = 1024 * 1024)]
        max_body: usize,
        /// HTTP worker threads (0 = one per CPU core).
        #[arg(long, env = "BASALT_WORKERS", default_value_t = 0)]
        workers: usize,
        /// Open connections held at most, all clients together (more wait in
        /// the listen backlog). Lowered at start to what the open-file limit
        /// allows. Per-address caps are settings (`limits`).
        #[arg(long, env = "BASALT_MAX_CONNECTIONS", default_value_t = basalt::config::DEFAULT_MAX_CONNECTIONS)]
        max_connections: usize,
        /// Seconds a client has to send a request's headers (408 after).
        #[arg(long, env = "BASALT_HEADER_TIMEOUT", default_value_t = basalt::config::DEFAULT_HEADER_TIMEOUT)]
        header_timeout: u64,
        /// Seconds an idle connection stays open for the next request. A
        /// connection with nothing in flight for this plus --header-timeout
        /// (its next request's headers too slow) is closed.
        #[arg(long, env = "BASALT_KEEP_ALIVE", default_value_t = basalt::config::DEFAULT_KEEP_ALIVE)]
        keep_alive: u64,
        /// Seconds a stored file no record names is kept before the orphan
        /// sweep removes it (left by a crash between storing an upload and
        /// committing its record). The sweep runs at start and hourly.
        #[arg(long, env = "BASALT_ORPHAN_GRACE", default_value_t = basalt::config::DEFAULT_ORPHAN_GRACE)]
        orphan_grace: u64,
    },
    /// Manage superusers, as PocketBase's `superuser` commands. They work
    /// while the server runs on the data dir too (through its control
    /// socket, `<dir>/.basalt.sock`).
    Superuser {
        /// Without one, the commands are listed and the exit code is 0, as
        /// `pocketbase superuser`.
        #[command(subcommand)]
        action: Option<SuperuserAction>,
    },
    /// Back up or restore a data dir. While the server runs, make backups
    /// from the dashboard (Settings → Backups) instead.
    Backup {
        #[command(subcommand)]
        action: BackupAction,
    },
    /// Copy the whole store between engines or places.
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Print the version (as --version).
    Version,
}

#[derive(Subcommand)]
enum StoreAction {
    /// Copy every record (ids, dates, revisions), user (password hashes),
    /// collection, setting, index and the change log from one store into
    /// an empty one, then verify counts and checksums per collection (exit
    /// code 1 on any difference). Each side is a data dir or a
    /// postgres://… URL. Stop the servers on the source first. Uploaded
    /// files are not copied: they stay in the source's storage. Two
    /// snapshots, each about the data's size, go through $TMPDIR.
    Copy {
        /// The store to copy: a data dir, or postgres://…
        #[arg(long, value_name = "DIR|URL")]
        from: String,
        /// The empty store to fill: a new data dir, or a postgres://… URL
        /// of an empty database no node has started on.
        #[arg(long, value_name = "DIR|URL")]
        to: String,
    },
}

#[derive(Subcommand)]
enum BackupAction {
    /// Write a consistent snapshot of a stopped server's data dir (the
    /// database and the locally stored files) to FILE.
    Create { file: PathBuf },
    /// Restore FILE (the database and the stored files) into a new, empty
    /// data dir (then start the server on it); with --store, the database
    /// goes into that PostgreSQL database, which must be empty (no node
    /// started on it yet), and the files into the data dir.
    Restore { file: PathBuf },
}

/// PocketBase's `superuser` commands; arguments are checked by the command
/// itself, with PocketBase's messages.
#[derive(Subcommand)]
enum SuperuserAction {
    /// Creates a new superuser.
    Create {
        #[arg(value_name = "EMAIL PASSWORD")]
        args: Vec<String>,
    },
    /// Creates, or updates if email exists, a single superuser.
    Upsert {
        #[arg(value_name = "EMAIL PASSWORD")]
        args: Vec<String>,
    },
    /// Changes the password of a single superuser.
    Update {
        #[arg(value_name = "EMAIL PASSWORD")]
        args: Vec<String>,
    },
    /// Deletes an existing superuser.
    Delete {
        #[arg(value_name = "EMAIL")]
        args: Vec<String>,
    },
    /// Creates a new OTP for the specified superuser (the `_superusers`
    /// collection must have OTP enabled).
    Otp {
        #[arg(value_name = "EMAIL")]
        args: Vec<String>,
    },
    /// PocketBase's superuser IP allow-list: not in Basalt (refused).
    Ips {
        #[arg(value_name = "IP")]
        args: Vec<String>,
    },
}

impl SuperuserAction {
    fn split(self) -> (&'static str, Vec<String>) {
        match self {
            SuperuserAction::Create { args } => ("create", args),
            SuperuserAction::Upsert { args } => ("upsert", args),
            SuperuserAction::Update { args } => ("update", args),
            SuperuserAction::Delete { args } => ("delete", args),
            SuperuserAction::Otp { args } => ("otp", args),
            SuperuserAction::Ips { args } => ("ips", args),
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: escape codes in a log file are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Turns transparent huge pages off for this process. mimalloc asks for
/// them (`madvise(MADV_HUGEPAGE)` on its arena), so every first touch of
/// memory it had returned to the kernel zeroes a whole 2 MiB page: after
/// a burst of traffic had spread work over the blocking pool's threads,
/// 67% of a first thumbnail's CPU was `clear_page_erms` under
/// `do_huge_pmd_anonymous_page` (perf), and the request took 5-10 ms
/// instead of 1.6 ms (BENCHMARKS.md, "Files"). The flag is checked at
/// each page fault, so it holds for the arena reserved before `main`.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integers and only
    // sets a flag of this process's memory map.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> ExitCode {
    no_transparent_huge_pages();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    for note in cli.pocketbase.notes() {
        eprintln!("{note}");
    }
    let dir = cli.dir;
    let store = match cli.store.as_deref().map(check_store_url).transpose() {
        Ok(store) => store,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let store_wait = cli.store_wait;
    let for_dir = {
        let store = store.clone();
        move |dir: &std::path::Path| Config {
            store: store.clone(),
            store_wait,
            ..Config::for_dir(dir)
        }
    };
    actix_web::rt::System::new().block_on(async move {
        match cli.command {
            Command::Serve {
                domains,
                http,
                https,
                origins,
                max_body,
                workers,
                max_connections,
                header_timeout,
                keep_alive,
                orphan_grace,
            } => {
                if let Some(refusal) = tls_refusal(&domains, https.as_deref()) {
                    eprintln!("error: {refusal}");
                    return ExitCode::FAILURE;
                }
                serve(Config {
                    http,
                    dir,
                    origins: origins.join(","),
                    max_body,
                    workers,
                    max_connections,
                    header_timeout,
                    keep_alive,
                    orphan_grace,
                    store,
                    store_wait,
                })
                .await
            }
            Command::Superuser { action: Some(action) } => {
                let (name, args) = action.split();
                superuser(for_dir(&dir), name, &args).await
            }
            Command::Superuser { action: None } => {
                let mut cmd = <Cli as clap::CommandFactory>::command().bin_name("basalt");
                cmd.build();
                if let Some(sub) = cmd.find_subcommand_mut("superuser") {
                    let _ = sub.print_help();
                }
                ExitCode::SUCCESS
            }
            Command::Version => {
                println!("basalt {VERSION}");
                ExitCode::SUCCESS
            }
            Command::Backup {
                action: BackupAction::Create { file },
            } => backup_create(&for_dir(&dir), &file).await,
            Command::Backup {
                action: BackupAction::Restore { file },
            } => backup_restore(&file, &dir, store.as_deref()),
            Command::Store {
                action: StoreAction::Copy { from, to },
            } => store_copy(&from, &to).await,
        }
    })
}

/// `basalt backup restore FILE`: into a new data dir, or into the empty
/// PostgreSQL database `store` (the files into the data dir).
fn backup_restore(file: &std::path::Path, dir: &std::path::Path, store: Option<&str>) -> ExitCode {
    use basalt::core::backups::archive;
    let (restored, into) = match store {
        Some(url) => (
            archive::restore_into_postgres(file, dir, url),
            format!(
                "{} (files into {})",
                basalt::store::pg_import::describe(url),
                dir.display()
            ),
        ),
        None => (archive::restore(file, dir), dir.display().to_string()),
    };
    match restored {
        Ok(info) => {
            let start = match store {
                Some(_) => format!("--dir {} --store URL", dir.display()),
                None => format!("--dir {}", dir.display()),
            };
            println!(
                "Restored {} ({} entries in {} trees; {}) into {into}. Start the server with {start}.",
                file.display(),
                info.entries,
                info.trees,
                files_line(&info),
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `basalt store copy --from … --to …`: copies, prints the per-collection
/// counts and checksums, exits 1 on any difference.
async fn store_copy(from: &str, to: &str) -> ExitCode {
    use basalt::store::copy::{copy, Location};
    let (from, to) = (Location::parse(from), Location::parse(to));
    println!("Copying {} into {} ...", from.describe(), to.describe());
    let report = match copy(&from, &to).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    for line in report.lines() {
        println!("{line}");
    }
    let bad = report.mismatches();
    if !bad.is_empty() {
        eprintln!("error: the copy differs from the source in {}", bad.join(", "));
        return ExitCode::FAILURE;
    }
    if let Location::Dir(dir) = &from {
        println!(
            "Copied and verified. Uploaded files were not copied: they stay in {} (copy that directory into each node's data dir, or use S3).",
            dir.join("storage").display()
        );
    } else {
        println!("Copied and verified. Uploaded files were not copied: they stay where the source's nodes keep them (their data dirs' storage, or S3).");
    }
    ExitCode::SUCCESS
}

/// `--store` takes a PostgreSQL URL only (the embedded store is the
/// default, in `--dir`); the text is checked here so a typo is named
/// before anything starts.
fn check_store_url(url: &str) -> Result<String, String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(url.to_owned())
    } else {
        Err("--store takes a PostgreSQL URL (postgres://user:password@host:port/database); without it the data is kept in --dir".into())
    }
}

/// What a backup says about the stored files, for the CLI's lines.
fn files_line(info: &basalt::core::backups::archive::ArchiveInfo) -> String {
    use basalt::core::backups::archive::FilesKept;
    match info.kept {
        FilesKept::InBackup => format!(
            "{} file{}, {} bytes",
            info.files,
            if info.files == 1 { "" } else { "s" },
            info.file_bytes
        ),
        FilesKept::InBucket => "no files: they are in the S3 bucket, which backups leave alone".into(),
        FilesKept::NotBackedUp => "no files: a backup from before files were backed up".into(),
    }
}

/// `serve example.com` (PocketBase: certificates from Let's Encrypt) and
/// `--https`: not built yet. Refused, so nobody serves plain HTTP
/// believing it is TLS.
fn tls_refusal(domains: &[String], https: Option<&str>) -> Option<String> {
    let what = match (domains, https) {
        ([], None) => return None,
        ([], Some(addr)) => format!("--https={addr}"),
        (names, _) => format!("certificates for {}", names.join(", ")),
    };
    Some(format!(
        "automatic TLS ({what}) is not built into Basalt yet; serve plain HTTP with --http=127.0.0.1:8090 behind a TLS-terminating reverse proxy (Caddy, nginx)"
    ))
}

async fn serve(config: Config) -> ExitCode {
    let dir = config.dir.display().to_string();
    let app = match App::build(config).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("Basalt listening on http://127.0.0.1:{} (data dir {dir})", app.port());
    if let Some(path) = app.setup_path() {
        println!(
            "No superuser yet. Create one in the dashboard (this link works once):\n  http://127.0.0.1:{}{path}\nor with:\n  basalt superuser upsert EMAIL PASSWORD --dir {dir}",
            app.port()
        );
    } else {
        println!("Dashboard: http://127.0.0.1:{}/_/", app.port());
    }
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn backup_create(config: &Config, file: &std::path::Path) -> ExitCode {
    let dir = config.dir.as_path();
    if config.store.is_none() && !dir.join("db").exists() {
        eprintln!("error: {} holds no Basalt data", dir.display());
        return ExitCode::FAILURE;
    }
    let engine = basalt::store::EngineChoice {
        url: config.store.clone(),
        wait: std::time::Duration::from_secs(config.store_wait),
    };
    let store = match basalt::store::Store::open_with(dir, &engine) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e} (while the server runs, create backups from the dashboard: Settings → Backups)");
            return ExitCode::FAILURE;
        }
    };
    let result = match basalt::files::Storage::open(dir) {
        Ok(storage) => basalt::core::backups::archive::write(&store, &storage, file)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(format!("cannot open file storage in {}: {e}", dir.display())),
    };
    let closing = store.clone();
    let _ = tokio::task::spawn_blocking(move || closing.shutdown()).await;
    match result {
        Ok(info) => {
            println!(
                "Backup written to {} ({} bytes, {} entries in {} trees; {}).",
                info.path.display(),
                info.bytes,
                info.entries,
                info.trees,
                files_line(&info)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `basalt superuser ACTION ARGS…`: on the data dir itself when no server
/// holds it, else through the running server's control socket. Prints
/// PocketBase's lines; exit code 1 on any error.
async fn superuser(config: Config, action: &str, args: &[String]) -> ExitCode {
    let dir = config.dir.clone();
    let fail = |message: &str| {
        eprintln!("{message}");
        ExitCode::FAILURE
    };
    if action == "ips" {
        return fail("superuser ips: Basalt has no superuser IP allow-list (restrict /api/collections/_superusers/* at a reverse proxy instead)");
    }
    let cmd = match control::Command::from_args(action, args) {
        Ok(cmd) => cmd,
        Err(e) => return fail(&e),
    };
    let answer = match basalt::app::open_state(config).await {
        Ok(state) => {
            let result = control::execute(&state, cmd).await;
            let store = state.store.clone();
            let _ = tokio::task::spawn_blocking(move || store.shutdown()).await;
            match result {
                Ok(outcome) => control::Answer::Ok(outcome),
                Err(e) => control::Answer::Error(e),
            }
        }
        Err(StoreError::Locked(_)) => match control::send(&dir, &cmd).await {
            Ok(answer) => answer,
            Err(e) => return fail(&format!("{} is in use by a running server, and {e}", dir.display())),
        },
        Err(e) => return fail(&format!("error: {e}")),
    };
    match answer {
        control::Answer::Ok(outcome) => {
            println!("{}", outcome.message());
            ExitCode::SUCCESS
        }
        control::Answer::Error(e) => fail(&e),
    }
}
