//! The server's configuration: where it listens, who may call it, and the limits that keep one
//! request from taking the server down.
//!
//! Invariant: every limit has an explicit value; nothing falls back to a library default that
//! is not written here (tonic's 4 MiB decode limit in particular is always overridden).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth::AuthConfig;

/// Default largest gRPC message the server accepts or sends: 64 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// Default memory one query may use (its DataFusion memory pool): 1 GiB.
pub const DEFAULT_QUERY_MEMORY_LIMIT: usize = 1024 * 1024 * 1024;

/// Default longest a query may run, from the moment its results are requested: 5 minutes.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(300);

/// Limits applied to every query the server runs.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    /// Bytes of memory one query's operators may reserve (sorts, joins, aggregations); `None`
    /// for no limit.
    pub memory: Option<usize>,
    /// How long one query may run; `None` for no limit. Enforced inside the result stream.
    pub timeout: Option<Duration>,
    /// Whether statements may read or write files on the server's machine (`COPY ... FROM`,
    /// `COPY ... TO`). Off by default: a client could otherwise read any file the server can.
    pub allow_server_files: bool,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            memory: Some(DEFAULT_QUERY_MEMORY_LIMIT),
            timeout: Some(DEFAULT_QUERY_TIMEOUT),
            allow_server_files: false,
        }
    }
}

/// How stale, by default, the catalog a statement starts from may be: commits by other servers
/// over the same data root appear within this interval (this server's own, at once).
pub const DEFAULT_CATALOG_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// How long an unused Flight SQL session stays open by default.
pub const DEFAULT_SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// How many Flight SQL sessions may be open at once by default.
pub const DEFAULT_MAX_SESSIONS: usize = 1000;

/// The bounds on Flight SQL sessions (settings a client keeps across statements).
#[derive(Debug, Clone)]
pub struct SessionLimits {
    /// A session unused for this long is closed.
    pub idle_timeout: Duration,
    /// The most sessions open at once.
    pub max_sessions: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            idle_timeout: DEFAULT_SESSION_IDLE_TIMEOUT,
            max_sessions: DEFAULT_MAX_SESSIONS,
        }
    }
}

/// TLS material, as PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

/// Everything `quiver serve` needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The data root (a directory or an object store URL).
    pub data: String,
    /// Where to listen; port 0 picks a free port.
    pub bind: SocketAddr,
    /// Authentication; `None` serves everyone.
    pub auth: Option<AuthConfig>,
    /// TLS; `None` serves plaintext gRPC.
    pub tls: Option<TlsFiles>,
    /// Largest gRPC message accepted or sent, in bytes.
    pub max_message_size: usize,
    /// Per-query limits.
    pub limits: QueryLimits,
    /// Bounds on Flight SQL sessions.
    pub sessions: SessionLimits,
    /// How stale the catalog a statement starts from may be (see
    /// [`DEFAULT_CATALOG_REFRESH_INTERVAL`]); zero looks for a newer version before every
    /// statement.
    pub catalog_refresh_interval: Duration,
    /// How long shutdown waits for in-flight calls before cancelling running queries.
    pub shutdown_grace: Duration,
    /// How often garbage collection runs on its own (`None`: only on `VACUUM`).
    pub gc_interval: Option<Duration>,
    /// How often collections are checked for indices behind their rows, which are then
    /// optimised as a job (`None`: only on `OPTIMIZE`).
    pub index_maintenance_interval: Option<Duration>,
    /// How long a running job may go without a heartbeat before a server takes it over (its
    /// runner died); heartbeats are written every half second.
    pub job_lease: Duration,
}

/// The shortest job lease allowed: several heartbeats (every 500 ms) long.
pub const MIN_JOB_LEASE: Duration = Duration::from_secs(2);

impl ServerConfig {
    /// A configuration for `data` on `bind` with every other setting at its default.
    pub fn new(data: impl Into<String>, bind: SocketAddr) -> Self {
        Self {
            data: data.into(),
            bind,
            auth: None,
            tls: None,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            limits: QueryLimits::default(),
            sessions: SessionLimits::default(),
            catalog_refresh_interval: DEFAULT_CATALOG_REFRESH_INTERVAL,
            shutdown_grace: Duration::from_secs(10),
            gc_interval: Some(Duration::from_secs(3600)),
            index_maintenance_interval: Some(Duration::from_secs(30)),
            job_lease: quiver_planner::jobs::SchedulerConfig::default().lease,
        }
    }
}

/// Parses a byte size: a number with an optional unit (`B`, `KiB`, `MiB`, `GiB`, `TiB`, or the
/// same without `i`, all powers of 1024), e.g. `512MiB`, `1G`, `1048576`.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number
        .parse()
        .map_err(|_| format!("invalid size '{text}': expected a number such as 512MiB"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => return Err(format!("invalid size unit '{other}' in '{text}'")),
    };
    number
        .checked_mul(1usize << shift)
        .ok_or_else(|| format!("size '{text}' is too large"))
}

/// Parses a duration: `30s`, `5m`, `1h 30m`, `250ms` (plain numbers are seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    humantime::parse_duration(text).map_err(|e| format!("invalid duration '{text}': {e}"))
}

/// Parses a job lease: a duration of at least [`MIN_JOB_LEASE`].
pub fn parse_job_lease(text: &str) -> Result<Duration, String> {
    let lease = parse_duration(text)?;
    if lease < MIN_JOB_LEASE {
        return Err(format!(
            "a job lease of {} is shorter than the {} allowed: a running job would be taken \
             from its server between heartbeats",
            humantime::format_duration(lease),
            humantime::format_duration(MIN_JOB_LEASE)
        ));
    }
    Ok(lease)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_leases_are_at_least_the_minimum() {
        assert_eq!(parse_job_lease("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_job_lease("2"), Ok(MIN_JOB_LEASE));
        let err = parse_job_lease("500ms").expect_err("too short");
        assert!(err.contains("shorter than the 2s allowed"), "{err}");
    }

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("512 KB"), Ok(512 << 10));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
    }

    #[test]
    fn durations_parse_with_units_or_as_seconds() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("soon").is_err());
    }
}
