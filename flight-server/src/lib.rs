//! Quiver's Arrow Flight SQL service and command line.
//!
//! The server ([`server::start`]) serves one data root over Flight SQL: statements, prepared
//! statements with bound parameters, bulk ingest, catalog metadata, cancellation and Quiver's own
//! JSON actions ([`actions`]), with optional authentication ([`auth`]) and TLS, and per-query
//! memory and time limits ([`config`]). `docs/flight.md` describes the protocol as clients see it.

pub mod actions;
pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod error;
pub mod execution;
pub mod ingest;
pub mod input;
pub mod insert_rows;
pub mod metadata;
pub mod prepared;
pub mod progress;
pub mod queries;
pub mod server;
pub mod service;
pub mod snapshot_actions;
pub mod tls;

pub use config::ServerConfig;
pub use server::{start, RunningServer, ServeError};
pub use service::QuiverFlightService;
