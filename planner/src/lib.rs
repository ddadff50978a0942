//! Quiver's SQL layer: a DataFusion session with Quiver's catalog, vector types and functions,
//! and the statements Quiver runs itself (collection DDL, `COPY ... FROM`, `DESCRIBE`).

pub mod catalog_provider;
pub mod config;
mod copy;
mod ddl;
pub mod dialect;
pub mod dml;
pub mod error;
pub mod index;
pub mod jobs;
mod jobs_sql;
pub mod knn_function;
pub mod knn_rule;
mod number_list;
pub mod progress;
mod rewrite_rows;
pub mod scan;
pub mod session;
pub mod sink;
mod snapshot_sql;
pub mod sql_rewrite;
pub mod statement;
pub mod system;
pub mod table;
pub mod time_travel;
pub mod types;
mod update;
mod update_assignments;
pub mod vector_cast;

pub use error::{user_message, PlannerError};
pub use session::QuiverSession;
