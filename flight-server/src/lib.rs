//! Quiver's Arrow Flight SQL service and command line.
//!
//! The server ([`server::start`]) serves one data root over Flight SQL: statements, prepared
//! statements with bound parameters, bulk ingest, catalog metadata, cancellation and Quiver's own
//! JSON actions ([`actions`]), with optional authentication ([`auth`]) and TLS, and per-query
//! memory and time limits ([`config`]). `docs/flight.md` describes the protocol as clients see it.

//!
//! - [`server`]: listening, TLS, message limits, authentication and shutdown;
//! - [`service`]: the Flight SQL handlers and what they delegate to;
//! - [`actions`]: Quiver's JSON actions (snapshots, restores, jobs);
//! - [`auth`], [`config`], [`tls`], [`error`]: callers, settings, crypto, and the gRPC status of
//!   each error;
//! - [`build_info`]: the version and the kind of build;
//! - [`cli`]: the `quiver sql` command line.

pub mod actions;
pub mod auth;
pub mod build_info;
pub mod cli;
pub mod config;
pub mod error;
pub mod server;
pub mod service;
pub mod tls;

pub use config::ServerConfig;
pub use server::{start, RunningServer, ServeError};
pub use service::flight_sql::QuiverFlightService;
