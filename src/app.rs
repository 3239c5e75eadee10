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
    let store = Store::open(&config.dir)?;
    let secret = bootstrap::secret(&store)?;
    let registry = bootstrap::load_collections(&store).await?;
    let settings = crate::settings::SettingsStore::load(&store)?;
    let mailer = crate::mail::Mailer::new(&config.dir, settings.clone());
    Ok(AppState {
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
        setup_token: Default::default(),
        work: Default::default(),
    })
}

/// A bound, not yet awaited server.
pub struct App {
    port: u16,
    server: Server,
    state: AppState,
}

impl App {
    pub async fn build(config: Config) -> Result<App, BuildError> {
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
        let workers = config.workers;
        let state = open_state(config).await?;
        crate::core::collections::resume_builds(&state).map_err(|e| StoreError::Io(e.message))?;
        crate::realtime::retention::spawn(state.store.downgrade(), state.settings.clone());
        if !crate::core::auth::has_superuser(&state) {
            *state.setup_token.lock().unwrap_or_else(|e| e.into_inner()) = Some(crate::admin::session::random_token());
        }
        let data = web::Data::new(state.clone());
        let mut server = HttpServer::new(move || {
            ActixApp::new()
                .app_data(data.clone())
                // Innermost: a 429 still gets the security and CORS headers.
                .wrap(from_fn(api::ratelimit::limit))
                .wrap(from_fn(middleware::security_headers))
                .wrap(from_fn(middleware::cors))
                .wrap(from_fn(middleware::log_request))
                .configure(api::routes)
                .configure(crate::admin::routes)
                .default_service(web::to(api::errors::not_found))
        })
        .shutdown_timeout(30)
        // PocketBase keeps idle connections for minutes; actix's 5 s default
        // races clients (Node's fetch) that reuse a socket after ~4 s.
        .keep_alive(std::time::Duration::from_secs(120))
        // Signals are handled below, so realtime streams close first.
        .disable_signals();
        if workers > 0 {
            server = server.workers(workers);
        }
        let server = server
            .listen(listener)
            .map_err(|source| BuildError::Bind { addr, source })?
            .run();
        let app = App { port, server, state };
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
        actix_web::rt::spawn(async move {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{signal, SignalKind};
                let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
                else {
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
        let store = self.state.store.clone();
        // The final flush blocks on fsync: keep it off the async worker.
        let _ = tokio::task::spawn_blocking(move || store.shutdown()).await;
        result
    }
}
