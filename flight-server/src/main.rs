//! The `quiver` command line: `quiver serve` runs the Flight SQL server, `quiver sql` runs
//! statements embedded or against a server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args as ClapArgs, Parser, Subcommand};

use quiver_flight::auth::AuthConfig;
use quiver_flight::build_info;
use quiver_flight::cli::client::{ConnectOptions, RemoteClient};
use quiver_flight::cli::sql::{open_session, shell, Backend, PrintOptions, TERMINAL_MAX_ROWS};
use quiver_flight::cli::vectors::DEFAULT_VECTOR_VALUES;
use quiver_flight::config::{
    parse_duration, parse_job_lease, parse_size, QueryLimits, ServerConfig, SessionLimits,
    TlsFiles, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_SESSIONS,
};
use quiver_flight::server::{self, ShutdownSignal};

/// Quiver: a vector collection engine on Arrow, DataFusion and Lance.
#[derive(Debug, Parser)]
#[command(name = "quiver", version = build_info::VERSION, about)]
struct Args {
    /// The data root: a directory (created if missing), a file:// URL, or an s3://bucket/prefix URL
    /// (configured by the AWS_* environment variables).
    #[arg(
        long,
        global = true,
        env = "QUIVER_DATA",
        default_value = "./quiver-data"
    )]
    data: String,
    #[command(subcommand)]
    command: Command,
}

/// Credentials, for `serve` (what to accept) and `sql --connect` (what to send).
#[derive(Debug, ClapArgs)]
struct Credentials {
    /// The user name.
    #[arg(long, env = "QUIVER_USER")]
    user: Option<String>,
    /// The password (prefer the QUIVER_PASSWORD environment variable).
    #[arg(long, env = "QUIVER_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// A bearer token (prefer the QUIVER_TOKEN environment variable).
    #[arg(long, env = "QUIVER_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

impl Credentials {
    fn user(&self) -> Result<Option<(String, String)>, String> {
        match (&self.user, &self.password) {
            (Some(u), Some(p)) => Ok(Some((u.clone(), p.clone()))),
            (None, None) => Ok(None),
            _ => Err("--user and --password go together".into()),
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run SQL statements and print the results; without a statement, open a shell.
    Sql {
        /// The statement(s) to run, separated by ';'.
        #[arg(conflicts_with = "file")]
        statement: Option<String>,
        /// Run the statements of this file (a script), stopping at the first error.
        #[arg(short = 'f', long)]
        file: Option<PathBuf>,
        /// Run on a server instead of the local data root: grpc://host:port or
        /// grpc+tls://host:port.
        #[arg(long)]
        connect: Option<String>,
        #[command(flatten)]
        credentials: Credentials,
        /// With grpc+tls://, the PEM file of the CA that signed the server's certificate.
        #[arg(long)]
        tls_ca: Option<PathBuf>,
        /// How many values of each vector to print, followed by its dimension (0: all).
        #[arg(long, default_value_t = DEFAULT_VECTOR_VALUES)]
        vector_values: usize,
        /// How many rows of a result to print, followed by how many there were (0: all; by
        /// default 1000 when the output is a terminal, all otherwise).
        #[arg(long)]
        max_rows: Option<usize>,
    },
    /// Serve the data root over Arrow Flight SQL until Ctrl-C or SIGTERM.
    Serve {
        /// Where to listen (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:50051")]
        bind: SocketAddr,
        /// Require authentication: --user/--password (basic auth in the handshake) and/or
        /// --token (a fixed bearer token).
        #[arg(long)]
        auth: bool,
        #[command(flatten)]
        credentials: Credentials,
        /// TLS certificate chain (PEM); needs --tls-key.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM); needs --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Largest gRPC message accepted or sent (e.g. 64MiB).
        #[arg(long, value_parser = parse_size, default_value_t = DEFAULT_MAX_MESSAGE_SIZE)]
        max_message_size: usize,
        /// Memory one query may use (e.g. 1GiB); 0 for no limit.
        #[arg(long, value_parser = parse_size, default_value = "1GiB")]
        query_memory_limit: usize,
        /// How long one query may run (e.g. 30s, 5m); 0 for no limit.
        #[arg(long, value_parser = parse_duration, default_value = "5m")]
        query_timeout: Duration,
        /// How often garbage collection runs on its own (e.g. 1h; 0 turns it off).
        #[arg(long, value_parser = parse_duration, default_value = "1h")]
        gc_interval: Duration,
        /// How often collections are checked for vector indices whose rows outside them passed
        /// the collection's threshold (property optimize_unindexed_rows), which are then
        /// optimised as a job (e.g. 30s; 0 turns it off).
        #[arg(long, value_parser = parse_duration, default_value = "30s")]
        index_maintenance_interval: Duration,
        /// Let clients' COPY statements read and write files on this machine (off: clients
        /// load data with bulk ingest).
        #[arg(long)]
        allow_server_files: bool,
        /// How long a client's session (the settings it keeps across statements) lives unused
        /// (e.g. 30m).
        #[arg(long, value_parser = parse_duration, default_value = "1h")]
        session_idle_timeout: Duration,
        /// The most client sessions open at once.
        #[arg(long, default_value_t = DEFAULT_MAX_SESSIONS)]
        max_sessions: usize,
        /// How soon commits by other servers over the same data root are seen (e.g. 1s, 250ms;
        /// 0: before every statement). This server's own commits are seen at once.
        #[arg(long, value_parser = parse_duration, default_value = "1s")]
        catalog_refresh_interval: Duration,
        /// How long a running job (restore, garbage collection) may go without a heartbeat
        /// before a server takes it over, when its server died (e.g. 30s; at least 2s).
        #[arg(long, value_parser = parse_job_lease, default_value = "60s")]
        job_lease: Duration,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    // Before anything builds a TLS configuration: the Flight server and client, the S3 client.
    quiver_flight::tls::install_crypto_provider();
    let args = Args::parse();
    let result = match args.command {
        Command::Sql {
            statement,
            file,
            connect,
            credentials,
            tls_ca,
            vector_values,
            max_rows,
        } => {
            use std::io::IsTerminal;
            let terminal = std::io::stdout().is_terminal();
            let print = PrintOptions {
                vector_values,
                max_rows: max_rows.unwrap_or(if terminal { TERMINAL_MAX_ROWS } else { 0 }),
            };
            match script(statement, file) {
                Ok(statement) => {
                    sql(&args.data, statement, connect, credentials, tls_ca, print).await
                }
                Err(e) => Err(e),
            }
        }
        Command::Serve {
            bind,
            auth,
            credentials,
            tls_cert,
            tls_key,
            max_message_size,
            query_memory_limit,
            query_timeout,
            gc_interval,
            index_maintenance_interval,
            allow_server_files,
            session_idle_timeout,
            max_sessions,
            catalog_refresh_interval,
            job_lease,
        } => {
            init_logging();
            let tls = tls_cert
                .zip(tls_key)
                .map(|(cert, key)| TlsFiles { cert, key });
            let limits = QueryLimits {
                memory: (query_memory_limit > 0).then_some(query_memory_limit),
                timeout: (!query_timeout.is_zero()).then_some(query_timeout),
                allow_server_files,
            };
            match auth_config(auth, &credentials) {
                Ok(auth) => {
                    let config = ServerConfig {
                        auth,
                        tls,
                        max_message_size,
                        limits,
                        sessions: SessionLimits {
                            idle_timeout: session_idle_timeout,
                            max_sessions,
                        },
                        catalog_refresh_interval,
                        gc_interval: (!gc_interval.is_zero()).then_some(gc_interval),
                        index_maintenance_interval: (!index_maintenance_interval.is_zero())
                            .then_some(index_maintenance_interval),
                        job_lease,
                        ..ServerConfig::new(args.data, bind)
                    };
                    serve(config).await
                }
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ERROR: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The statements `quiver sql` runs: those given, or the text of the file given (`-f`); `None`
/// opens the shell.
fn script(statement: Option<String>, file: Option<PathBuf>) -> Result<Option<String>, String> {
    match file {
        Some(path) => std::fs::read_to_string(&path)
            .map(Some)
            .map_err(|e| format!("cannot read {}: {e}", path.display())),
        None => Ok(statement),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,lance=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn auth_config(auth: bool, credentials: &Credentials) -> Result<Option<AuthConfig>, String> {
    let user = credentials.user()?;
    if !auth {
        if user.is_some() || credentials.token.is_some() {
            tracing::warn!("--user/--password/--token are ignored without --auth");
        }
        return Ok(None);
    }
    if user.is_none() && credentials.token.is_none() {
        return Err("--auth needs --user and --password, or --token".into());
    }
    Ok(Some(AuthConfig {
        user,
        token: credentials.token.clone(),
    }))
}

async fn serve(config: ServerConfig) -> Result<(), String> {
    let data = config.data.clone();
    let mut signal = ShutdownSignal::install().map_err(|e| format!("cannot catch signals: {e}"))?;
    let running = server::start(config).await.map_err(|e| e.to_string())?;
    if !build_info::OPTIMISED {
        eprintln!("{}", build_info::DEBUG_BUILD_WARNING);
    }
    println!(
        "Quiver Flight SQL server listening on {} (data: {data}); Ctrl-C to stop",
        running.url()
    );
    tracing::info!("listening on {}", running.local_addr());
    signal.recv().await;
    tracing::info!("shutting down");
    running.shutdown().await.map_err(|e| e.to_string())?;
    println!("Quiver Flight SQL server stopped");
    Ok(())
}

async fn sql(
    data: &str,
    statement: Option<String>,
    connect: Option<String>,
    credentials: Credentials,
    tls_ca: Option<PathBuf>,
    print: PrintOptions,
) -> Result<(), String> {
    let mut backend = match connect {
        Some(url) => {
            let options = ConnectOptions {
                url,
                user: credentials.user()?,
                token: credentials.token,
                tls_ca,
            };
            let client = RemoteClient::connect(&options)
                .await
                .map_err(|e| e.to_string())?;
            Backend::Remote(Box::new(client))
        }
        None => Backend::Embedded(
            open_session(data)
                .await
                .map_err(|e| quiver_planner::user_message(&e))?,
        ),
    };
    let result = match statement {
        Some(sql) => backend.run_and_print(&sql, print).await,
        None => shell(&mut backend, print).await,
    };
    // The server would drop an idle session on its own; closing it frees it now.
    if let Backend::Remote(client) = &mut backend {
        if let Err(e) = client.close().await {
            tracing::debug!("closing the session failed: {e}");
        }
    }
    match result {
        // The reader of the output went away (`quiver sql ... | head`): nothing more to do.
        Err(e) if e.is_closed_output() => Ok(()),
        other => other.map_err(|e| e.to_string()),
    }
}
