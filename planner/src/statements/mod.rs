//! Quiver's SQL statements: parsing a script, and running each statement, a file per family
//! holding both how its statements parse and how they run.
//!
//! - [`statement`]: [`QuiverStatement`], one parsed statement;
//! - [`parse`]: [`parse_statements`], a script into statements;
//! - [`run`]: running one statement on a [`QuiverSession`](crate::QuiverSession);
//! - [`ddl`]: databases and collections (`CREATE TABLE [AS]`, `DESCRIBE`, `ALTER TABLE ... SET`);
//! - [`index`]: `CREATE INDEX`, `DROP INDEX`, `SHOW INDEXES`;
//! - `scalar_index`: `CREATE INDEX ... USING BTREE | BITMAP | LABEL_LIST`;
//! - [`snapshot`]: `CREATE`/`DROP`/`SHOW`/`DESCRIBE SNAPSHOT`;
//! - [`jobs`]: `RESTORE`, `VACUUM`, `SHOW JOBS`, `CANCEL JOB`;
//! - [`copy`]: `COPY ... FROM` files;
//! - [`limits`]: the size of a script and of its `IN` lists, checked before planning;
//! - [`tokens`]: parsing pieces the families share.

mod copy;
mod ddl;
pub mod index;
mod jobs;
pub mod limits;
pub mod parse;
mod run;
mod scalar_index;
mod snapshot;
pub mod statement;
mod tokens;

pub use parse::parse_statements;
pub use statement::QuiverStatement;
