//! Serving the Flight SQL service: listening, TLS, message limits, authentication and shutdown.
//!
//! Invariants:
//! - [`start`] returns only once the listener is bound, so a caller can connect to
//!   [`RunningServer::local_addr`] immediately (no sleeps, no port guessing).
//! - gRPC message limits are set explicitly in both directions to
//!   [`ServerConfig::max_message_size`]; a larger request is refused by tonic with a status and
//!   the server keeps serving.
//! - Shutdown stops accepting connections, lets in-flight calls finish for
//!   [`ServerConfig::shutdown_grace`], then cancels the queries still running and waits for
//!   their streams to end (another grace period) before giving up on them. Writes are single
//!   Lance transactions, so nothing half-written survives any of this.

use std::net::SocketAddr;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use quiver_catalog::location::DataRoot;
use quiver_catalog::{Catalog, CatalogError};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::actions::{ActionRegistry, RegistryError};
use crate::auth::{interceptor, Authenticator};
use crate::config::ServerConfig;
use quiver_planner::jobs::SchedulerConfig;

use crate::service::error_statuses::error_statuses;
use crate::service::flight_sql::QuiverFlightService;
use crate::service::queries::QueryRegistry;
use crate::service::sessions::session_cookies;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The data root could not be opened.
    #[error("opening the data root '{data}' failed: {source}")]
    Open {
        /// The data root.
        data: String,
        /// The catalog's error.
        source: CatalogError,
    },
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A TLS file could not be read.
    #[error("cannot read TLS file '{path}': {source}")]
    TlsFile {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The actions could not be registered.
    #[error(transparent)]
    Actions(#[from] RegistryError),
    /// The service could not be built.
    #[error("building the service failed: {0}")]
    Service(String),
    /// gRPC transport (including TLS set-up) failed.
    #[error("transport error: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The serving task panicked or was aborted.
    #[error("the server task failed: {0}")]
    Task(String),
}

/// A server that is listening.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    tls: bool,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
    queries: Arc<QueryRegistry>,
    grace: std::time::Duration,
}

impl RunningServer {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL clients connect to (`grpc://` or `grpc+tls://`).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "grpc+tls" } else { "grpc" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops the server (see the module doc for the order of events).
    pub async fn shutdown(self) -> Result<(), ServeError> {
        let Self {
            shutdown,
            mut task,
            queries,
            grace,
            ..
        } = self;
        // The receiver is gone only if the server already stopped; then there is nothing to do.
        let _ = shutdown.send(());
        if let Ok(done) = tokio::time::timeout(grace, &mut task).await {
            return finished(done);
        }
        tracing::info!(
            "cancelling {} running queries to finish shutdown",
            queries.len()
        );
        queries.cancel_all();
        match tokio::time::timeout(grace, &mut task).await {
            Ok(done) => finished(done),
            Err(_) => {
                tracing::warn!("connections still open after shutdown; closing them");
                task.abort();
                Ok(())
            }
        }
    }
}

fn finished(
    done: Result<Result<(), tonic::transport::Error>, tokio::task::JoinError>,
) -> Result<(), ServeError> {
    done.map_err(|e| ServeError::Task(e.to_string()))?
        .map_err(ServeError::from)
}

/// Opens the data root and starts serving it.
pub async fn start(config: ServerConfig) -> Result<RunningServer, ServeError> {
    let open_error = |source| ServeError::Open {
        data: config.data.clone(),
        source,
    };
    let root = DataRoot::open(&config.data).await.map_err(open_error)?;
    let catalog = Catalog::open(root)
        .await
        .map_err(open_error)?
        .with_refresh_interval(config.catalog_refresh_interval);
    if catalog.created() {
        eprintln!("{}", crate::cli::sql::new_root_notice(&catalog));
    }
    start_with_catalog(config, Arc::new(catalog), ActionRegistry::standard()?).await
}

/// Starts serving `catalog` with `actions`.
pub async fn start_with_catalog(
    config: ServerConfig,
    catalog: Arc<Catalog>,
    actions: ActionRegistry,
) -> Result<RunningServer, ServeError> {
    let auth = Arc::new(Authenticator::new(config.auth.clone()));
    let service = QuiverFlightService::new(
        catalog,
        config.limits.clone(),
        config.sessions.clone(),
        SchedulerConfig {
            lease: config.job_lease,
            ..SchedulerConfig::default()
        },
        auth.clone(),
        actions,
    )
    .map_err(|e| ServeError::Service(e.to_string()))?;
    let queries = service.queries();
    // Jobs a previous server left unfinished are resumed; garbage collection and index
    // maintenance run on their own.
    let scheduler = service.scheduler();
    let resumed = scheduler
        .recover()
        .await
        .map_err(|e| ServeError::Service(e.to_string()))?;
    if !resumed.is_empty() {
        tracing::info!("resumed unfinished jobs {resumed:?}");
    }
    // Jobs whose runner dies later (another server over the same root) are taken over too.
    scheduler.start_recovery(scheduler.config().lease / 2);
    if let Some(every) = config.gc_interval {
        scheduler.start_interval_gc(every, quiver_planner::jobs::gc::GcSpec::default());
    }
    if let Some(every) = config.index_maintenance_interval {
        quiver_planner::jobs::optimize::start(&scheduler, every);
    }
    let flight = FlightServiceServer::new(service)
        .max_decoding_message_size(config.max_message_size)
        .max_encoding_message_size(config.max_message_size);
    let service = error_statuses(session_cookies(InterceptedService::new(
        flight,
        interceptor(auth),
    )));

    let mut builder = Server::builder();
    if let Some(tls) = &config.tls {
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|source| ServeError::TlsFile {
                path: path.display().to_string(),
                source,
            })
        };
        let identity = Identity::from_pem(read(&tls.cert)?, read(&tls.key)?);
        crate::tls::install_crypto_provider();
        builder = builder.tls_config(ServerTlsConfig::new().identity(identity))?;
    }
    let listener = TcpListener::bind(config.bind)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.bind,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.bind,
        source,
    })?;
    if config.auth.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(
            "serving {addr} without authentication: anyone who can reach it has full access"
        );
    }
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let (shutdown, signal) = oneshot::channel::<()>();
    let task = tokio::spawn(builder.add_service(service).serve_with_incoming_shutdown(
        incoming,
        async {
            let _ = signal.await;
        },
    ));
    Ok(RunningServer {
        addr,
        tls: config.tls.is_some(),
        shutdown,
        task,
        queries,
        grace: config.shutdown_grace,
    })
}

/// Ctrl-C and SIGTERM, caught from the moment this is created (create it before announcing the
/// server, so that a signal sent right after the announcement is not lost to the default action).
#[derive(Debug)]
pub struct ShutdownSignal {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    /// Starts catching the signals.
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Resolves when a signal arrives.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {},
            _ = self.terminate.recv() => {},
        }
        #[cfg(not(unix))]
        if tokio::signal::ctrl_c().await.is_err() {
            futures::future::pending::<()>().await;
        }
    }
}
