//! Quiver's SQL layer: a DataFusion session with Quiver's catalog, vector types and functions,
//! and the statements Quiver runs itself (collection DDL, indices, snapshots, jobs, `COPY ...
//! FROM`).
//!
//! - [`session`]: [`QuiverSession`], DataFusion with Quiver's catalog, rules and functions;
//! - [`statements`]: parsing a script and running each statement;
//! - [`sql`]: the dialect, vector types and literals;
//! - [`catalog`]: collections, snapshots and system tables as DataFusion tables;
//! - [`knn`]: k-NN searches planned into Quiver's search operators;
//! - [`plan_cache`]: plans made once and run many times (prepared statements, the statement
//!   cache);
//! - [`write`]: `INSERT`, `REPLACE`, `UPDATE`, `DELETE`, each one new version;
//! - [`jobs`]: restore and garbage collection as scheduled plans;
//! - [`cooperative_joins`]: joins that yield, so that a heavy query can be stopped;
//! - [`settings`]: a session's settings by name (`SET`, and Flight SQL session options);
//! - [`config`], [`progress`], [`error`]: settings, progress reports and errors.

pub mod catalog;
pub mod config;
pub mod cooperative_joins;
pub mod error;
pub mod jobs;
pub mod knn;
pub mod plan_cache;
pub mod progress;
pub mod session;
pub mod settings;
pub mod sql;
pub mod statements;
pub mod write;

pub use error::{user_message, PlannerError};
pub use session::QuiverSession;
