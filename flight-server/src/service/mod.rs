//! The Flight SQL service: the handlers of every Flight SQL request, and what they delegate to.
//!
//! - [`flight_sql`]: [`QuiverFlightService`](flight_sql::QuiverFlightService), arrow-flight's
//!   `FlightSqlService` over the catalog;
//! - [`execution`]: running SQL for the service under the per-query limits;
//! - [`sessions`]: Flight SQL sessions, found by their cookie, and the session actions;
//! - [`queries`]: the statements between `GetFlightInfo` and the end of their `DoGet`;
//! - [`prepared`]: prepared statements and their bound parameters;
//! - [`metadata`]: catalogs, schemas, tables, keys, SqlInfo and type info;
//! - [`ingest`]: bulk ingest (`CommandStatementIngest`);
//! - [`insert_rows`]: a prepared `INSERT` bound to many rows, as one write;
//! - [`input`]: decoding the Arrow data a client sends with `DoPut`;
//! - [`header_layer`]: the layer around the gRPC service that the session cookies and
//!   [`error_statuses`] are;
//! - [`error_statuses`]: error statuses set right on their way out (malformed commands,
//!   overlong messages);
//! - [`query_runtime`]: the threads statements are planned and executed on.

pub mod error_statuses;
pub mod execution;
pub mod flight_sql;
pub mod header_layer;
pub mod ingest;
pub mod input;
pub mod insert_rows;
pub mod metadata;
pub mod prepared;
pub mod queries;
pub mod query_runtime;
pub mod sessions;
