//! Plans made once and run many times.
//!
//! - [`reusable`]: a query's optimised plan with typed placeholders, bound to each execution's
//!   values and to its collections' newest versions.

pub mod reusable;

pub use reusable::ReusablePlan;
