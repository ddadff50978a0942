//! How Quiver's SQL text becomes DataFusion's: the dialect, the vector types, vector literals and
//! the syntax tree rewrites shared by the table functions.
//!
//! - [`dialect`]: pgvector's distance operators (`<->`, `<=>`, `<#>`);
//! - [`types`]: `VECTOR(n)`, `HALFVEC(n)`, `FLOAT[n]`, and their names in `DESCRIBE`;
//! - `number_list`: `[0.1, 0.2, ...]` planned as one list literal;
//! - [`repeat`]: `repeat(text, n)` bounded in the value it builds;
//! - [`rewrite`]: a visitor over every query a statement holds.

pub mod dialect;
pub(crate) mod number_list;
pub mod repeat;
pub mod rewrite;
pub mod types;
