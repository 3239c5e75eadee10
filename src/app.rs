//! Building the running server: `App::build(config)` opens the store, binds
//! the listener and returns the port, so tests run the real server on port 0.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{web, App as ActixApp, HttpServer};

use crate::api::{self, middleware};
use crate::auth::Tokens;
use crate::config::Config;
use crate::core::bootstrap;
use crate::state::AppState;
use crate::store::{Store, StoreError};

/// Why the server could not start; each is one clear line for the operator.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
}

/// Opens the data dir and loads collections (shared by `serve` and the CLI).
pub async fn open_state(config: Config) -> Result<AppState, StoreError> {
    let engine = crate::store::EngineChoice {
        url: config.store.clone(),
        wait: std::time::Duration::from_secs(config.store_wait),
    };
    let store = Store::open_with(&config.dir, &engine)?;
    let secret = bootstrap::secret(&store)?;
    let registry = bootstrap::load_collections(&store).await?;
    let settings = crate::settings::SettingsStore::load(&store)?;
    let mailer = crate::mail::Mailer::new(&config.dir, settings.clone());
    let storage = crate::files::Storage::open(&config.dir)
        .map_err(|e| StoreError::Io(format!("cannot open file storage in {}: {e}", config.dir.display())))?;
    let state = AppState {
        store,
        registry,
        tokens: Tokens::new(secret),
        config: Arc::new(config),
        collection_lock: Arc::new(tokio::sync::Mutex::new(())),
        record_locks: Arc::new(
            (0..crate::state::RECORD_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        ),
        mailer,
        realtime: Default::default(),
        settings,
        index_builds: Default::default(),
        rate_limiter: Default::default(),
        caps: Default::default(),
        setup_token: Default::default(),
        work: Default::default(),
        storage,
        thumbs: Default::default(),
    };
    // Files go to the bucket of the `s3` settings when they are enabled.
    crate::core::settings::apply_storage(&state);
    Ok(state)
}

/// Descriptors kept free for what is not a client connection: the store's
/// files, backups, the outbox, SMTP connections, the listener.
const RESERVED_FDS: u64 = 256;

/// The total connection cap and the connection watchdogs' descriptors:
/// `wanted` connections, lowered to what the open-file limit allows once
/// raised to its hard maximum (as Go does at start; the usual soft limit
/// of 1,024 would otherwise make `accept` fail with EMFILE long before any
/// cap, which leaves the server unreachable). Each watchdog holds a
/// duplicate of its connection's socket; they get what the connections
/// leave (connections past that run without one), so a duplicate never
/// takes a descriptor a connection needs.
fn fd_budget(wanted: usize) -> (usize, usize) {
    let wanted = wanted.max(1);
    let Some(limit) = raise_fd_limit() else {
        return (wanted, wanted);
    };
    let room = usize::try_from(limit.saturating_sub(RESERVED_FDS).max(16)).unwrap_or(usize::MAX);
    if room < wanted {
        tracing::warn!(
            wanted,
            allowed = room,
            open_file_limit = limit,
            "the open-file limit allows fewer connections than --max-connections; raise `ulimit -n`"
        );
    }
    let connections = wanted.min(room);
    let watchdogs = (room - connections).min(connections);
    if watchdogs < connections {
        tracing::info!(
            connections,
            watched = watchdogs,
            open_file_limit = limit,
            "the open-file limit leaves no room for a slow-header watchdog on every connection; raise `ulimit -n`"
        );
    }
    (connections, watchdogs)
}

/// Raises the soft open-file limit to the hard one; returns the soft limit
/// in effect (None if it cannot be read, or is unlimited).
#[cfg(unix)]
fn raise_fd_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct passed by
    // reference, which lives for the call.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    // `rlim_t` is not u64 on every unix.
    #[allow(clippy::unnecessary_cast)]
    let soft = lim.rlim_cur as u64;
    (lim.rlim_cur != libc::RLIM_INFINITY).then_some(soft)
}

#[cfg(not(unix))]
fn raise_fd_limit() -> Option<u64> {
    None
}

/// A bound, not yet awaited server.
pub struct App {
    port: u16,
    server: Server,
    state: AppState,
    /// The control socket in the data dir (`crate::control`).
    control: Option<crate::control::Listener>,
}

impl App {
    pub async fn build(mut config: Config) -> Result<App, BuildError> {
        let addr = config.http.clone();
        let listener = TcpListener::bind(&addr).map_err(|source| BuildError::Bind {
            addr: addr.clone(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| BuildError::Bind {
                addr: addr.clone(),
                source,
            })?
            .port();
        let workers = match config.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let (max_connections, watchdogs) = fd_budget(config.max_connections);
        // What is in effect, for the dashboard.
        config.max_connections = max_connections;
        let header_timeout = std::time::Duration::from_secs(config.header_timeout);
        let keep_alive = std::time::Duration::from_secs(config.keep_alive);
        // A connection with nothing in flight for longer than this is
        // sending its next request's headers too slowly (`api::bounds::watch`).
        let watchdogs = api::bounds::Watchdogs::new(keep_alive + header_timeout, watchdogs);
        let dir = config.dir.clone();
        let state = open_state(config).await?;
        crate::core::collections::resume_builds(&state).map_err(|e| StoreError::Io(e.message))?;
        crate::realtime::retention::spawn(state.store.downgrade(), state.settings.clone());
        crate::core::files::spawn_cleanup(&state);
        crate::core::files::spawn_sweeper(&state);
        crate::core::nodes::spawn(&state);
        if !crate::core::auth::has_superuser(&state) {
            *state.setup_token.lock().unwrap_or_else(|e| e.into_inner()) = Some(crate::admin::session::random_token());
        }
        let data = web::Data::new(state.clone());
        let sse_clients = web::Data::new(crate::realtime::sse::SseClients::default());
        let (settings, caps) = (state.settings.clone(), state.caps.clone());
        let server = HttpServer::new(move || {
            ActixApp::new()
                .app_data(data.clone())
                .app_data(sse_clients.clone())
                // Innermost: a 429 still gets the security and CORS headers.
                .wrap(from_fn(api::ratelimit::limit))
                // Connections per client address behind a proxy, body read
                // deadline (see `api::bounds`).
                .wrap(from_fn(api::bounds::guard))
                .wrap(from_fn(middleware::security_headers))
                .wrap(from_fn(middleware::cors))
                .wrap(from_fn(middleware::log_request))
                .configure(api::routes)
                .configure(crate::admin::routes)
                .default_service(web::to(api::errors::not_found))
        })
        .shutdown_timeout(30)
        .keep_alive(keep_alive)
        // Signals are handled below, so realtime streams close first.
        .disable_signals()
        .workers(workers)
        // actix counts per worker; the accept loop pauses when all are full.
        .max_connections(max_connections.div_ceil(workers))
        // Headers: a slow-loris sending them byte by byte gets 408.
        .client_request_timeout(header_timeout)
        // After an answer to a body left unread (408, 413, a bad boundary),
        // the unread rest is read and dropped this long before the
        // connection closes, so the client gets the answer, not a reset.
        .client_disconnect_timeout(std::time::Duration::from_secs(1))
        // Per-address connection cap, counted as each connection is
        // accepted; the watchdog for slow headers after the first request.
        .on_connect(move |io, ext| api::bounds::on_connect(&settings, &caps, &watchdogs, io, ext));
        let server = server
            .listen(listener)
            .map_err(|source| BuildError::Bind { addr, source })?
            .run();
        let control = crate::control::Listener::start(&state, &dir);
        let app = App {
            port,
            server,
            state,
            control,
        };
        app.stop_on_signals();
        Ok(app)
    }

    /// The shared state (tests and the CLI use it for setup).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether any superuser exists (the CLI prints setup help if not).
    pub fn has_superuser(&self) -> bool {
        crate::core::auth::has_superuser(&self.state)
    }

    /// The dashboard's one-time setup path (`/_/setup?token=…`) while no
    /// superuser exists.
    pub fn setup_path(&self) -> Option<String> {
        let token = self
            .state
            .setup_token
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        Some(format!("/_/setup?token={token}"))
    }

    /// On SIGINT/SIGTERM: end realtime streams, then stop gracefully (stop
    /// accepting, finish in-flight requests). Installed before `build`
    /// returns, so a signal right after start is handled too.
    fn stop_on_signals(&self) {
        let handle = self.server.handle();
        let realtime = self.state.realtime.clone();
        // Registered now, not when the task first runs: a SIGTERM right
        // after the start line must stop gracefully too.
        #[cfg(unix)]
        let signals = {
            use tokio::signal::unix::{signal, SignalKind};
            (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
        };
        actix_web::rt::spawn(async move {
            #[cfg(unix)]
            {
                let (Ok(mut term), Ok(mut int)) = signals else {
                    tracing::warn!("could not install signal handlers; stop with SIGKILL");
                    return;
                };
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            #[cfg(not(unix))]
            {
                if tokio::signal::ctrl_c().await.is_err() {
                    return;
                }
            }
            tracing::info!("stopping: closing realtime connections, finishing requests");
            realtime.close();
            handle.stop(true).await;
        });
    }

    /// A handle to stop the server gracefully.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped (SIGINT/SIGTERM or a handle): stops accepting,
    /// finishes in-flight requests, then drains the writer and flushes.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        if let Some(control) = self.control {
            control.stop().await;
        }
        let store = self.state.store.clone();
        // The final flush blocks on fsync: keep it off the async worker.
        let _ = tokio::task::spawn_blocking(move || store.shutdown()).await;
        result
    }
}
