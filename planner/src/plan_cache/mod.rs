//! Plans made once and run many times.
//!
//! - [`reusable`]: a query's optimised plan with typed placeholders, bound to each execution's
//!   values and to its collections' newest versions;
//! - [`physical`]: the physical plan of an index search, kept for the next executions that
//!   differ only in their query vector;
//! - [`statement_cache`]: ad-hoc queries that differ only in their query vectors, sharing one
//!   plan.

pub mod physical;
pub mod reusable;
pub mod statement_cache;

pub use reusable::{BoundPlan, ReusablePlan};
pub use statement_cache::{CachedShape, StatementCache};
