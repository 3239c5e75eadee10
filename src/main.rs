//! The `basalt` command line: parse, build, run. Nothing else.

use std::path::PathBuf;
use std::process::ExitCode;

use basalt::config::LogFormat;
use basalt::{App, Config};
use clap::{Parser, Subcommand};

/// mimalloc instead of glibc malloc: under load the server allocates from
/// many threads (actix workers, the writer, sled's IO threads), and profiling
/// showed glibc's arena locks and `_int_malloc` at ~15% of CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "basalt", version, about = "Self-hosted Backend-as-a-Service in one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log line format.
    #[arg(long, global = true, env = "BASALT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "BASALT_HTTP", default_value = "127.0.0.1:8090")]
        http: String,
        /// Data directory (created on first start).
        #[arg(long, env = "BASALT_DIR", default_value = "./basalt_data")]
        dir: PathBuf,
        /// Allowed CORS origins: '*' or a comma-separated list. Once origins are
        /// saved in the settings (dashboard, or `cors.origins` in PATCH
        /// /api/settings), the saved list wins over this flag.
        #[arg(long, env = "BASALT_ORIGINS", default_value = "*")]
        origins: String,
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
    },
    /// Manage dashboard superusers (works while the server is stopped).
    Superuser {
        #[command(subcommand)]
        action: SuperuserAction,
    },
    /// Back up or restore a data dir. While the server runs, make backups
    /// from the dashboard (Settings → Backups) instead.
    Backup {
        #[command(subcommand)]
        action: BackupAction,
    },
}

#[derive(Subcommand)]
enum BackupAction {
    /// Write a consistent snapshot of a stopped server's data dir to FILE.
    Create {
        file: PathBuf,
        #[arg(long, env = "BASALT_DIR", default_value = "./basalt_data")]
        dir: PathBuf,
    },
    /// Restore FILE into a new, empty data dir (then start the server on it).
    Restore {
        file: PathBuf,
        #[arg(long, env = "BASALT_DIR", default_value = "./basalt_data")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum SuperuserAction {
    /// Create a superuser, or set the password of an existing one.
    Upsert {
        email: String,
        password: String,
        /// Data directory.
        #[arg(long, env = "BASALT_DIR", default_value = "./basalt_data")]
        dir: PathBuf,
    },
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    actix_web::rt::System::new().block_on(async move {
        match cli.command {
            Command::Serve {
                http,
                dir,
                origins,
                max_body,
                workers,
                max_connections,
                header_timeout,
                keep_alive,
            } => {
                serve(Config {
                    http,
                    dir,
                    origins,
                    max_body,
                    workers,
                    max_connections,
                    header_timeout,
                    keep_alive,
                })
                .await
            }
            Command::Superuser {
                action: SuperuserAction::Upsert { email, password, dir },
            } => upsert(Config::for_dir(dir), &email, &password).await,
            Command::Backup {
                action: BackupAction::Create { file, dir },
            } => backup_create(&dir, &file).await,
            Command::Backup {
                action: BackupAction::Restore { file, dir },
            } => match basalt::store::backup::restore(&file, &dir) {
                Ok(info) => {
                    println!(
                        "Restored {} ({} entries in {} trees) into {}. Start the server with --dir {}.",
                        file.display(),
                        info.entries,
                        info.trees,
                        dir.display(),
                        dir.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            },
        }
    })
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

async fn backup_create(dir: &std::path::Path, file: &std::path::Path) -> ExitCode {
    if !dir.join("db").exists() {
        eprintln!("error: {} holds no Basalt data", dir.display());
        return ExitCode::FAILURE;
    }
    let store = match basalt::store::Store::open(dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e} (while the server runs, create backups from the dashboard: Settings → Backups)");
            return ExitCode::FAILURE;
        }
    };
    let result = store.backup(file).await;
    let closing = store.clone();
    let _ = tokio::task::spawn_blocking(move || closing.shutdown()).await;
    match result {
        Ok(info) => {
            println!(
                "Backup written to {} ({} bytes, {} entries in {} trees).",
                info.path.display(),
                info.bytes,
                info.entries,
                info.trees
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn upsert(config: Config, email: &str, password: &str) -> ExitCode {
    let state = match basalt::app::open_state(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = basalt::core::records::upsert_superuser(&state, email, password).await;
    let store = state.store.clone();
    let _ = tokio::task::spawn_blocking(move || store.shutdown()).await;
    match result {
        Ok(_) => {
            println!("Superuser {email} saved.");
            ExitCode::SUCCESS
        }
        Err(e) => {
            let details: Vec<String> = e
                .data
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{k}: {}",
                        v.get("message").and_then(|m| m.as_str()).unwrap_or("invalid")
                    )
                })
                .collect();
            eprintln!(
                "error: {}{}",
                e.message,
                if details.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", details.join("; "))
                }
            );
            ExitCode::FAILURE
        }
    }
}
