//! Writes into collections, each one new Lance version: all of it or, on any error, none.
//!
//! - [`sink`]: `INSERT`, `REPLACE INTO` (upsert) and `COPY ... FROM`: validated rows in one
//!   transaction;
//! - [`dml`]: [`DmlExec`](dml::DmlExec), the operator of `DELETE` and keyless `UPDATE`;
//! - [`update`]: `UPDATE`, by key (an upsert) or by row address;
//! - `rewrite_rows`: `UPDATE` without a key, in Lance's rewrite-rows mode;
//! - `update_assignments`: keeps an `UPDATE`'s assignments where the physical planner reads them;
//! - [`vector_cast`]: conversions into vector columns that name the column when they fail.

pub mod dml;
pub(crate) mod rewrite_rows;
pub mod sink;
pub(crate) mod update;
pub(crate) mod update_assignments;
pub mod vector_cast;
