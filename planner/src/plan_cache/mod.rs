//! Plans made once and run many times.
//!
//! - [`reusable`]: a query's optimised plan with typed placeholders, bound to each execution's
//!   values and to its collections' newest versions;
//! - [`statement_cache`]: ad-hoc queries that differ only in their query vectors, sharing one
//!   plan.

pub mod reusable;
pub mod statement_cache;

pub use reusable::ReusablePlan;
pub use statement_cache::{CachedShape, StatementCache};
