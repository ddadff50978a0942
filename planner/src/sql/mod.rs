//! How Quiver's SQL text becomes DataFusion's: the dialect, the vector types, vector literals and
//! the syntax tree rewrites shared by the table functions.
//!
//! - [`dialect`]: pgvector's distance operators (`<->`, `<=>`, `<#>`);
//! - [`types`]: `VECTOR(n)`, `HALFVEC(n)`, `FLOAT[n]`, and their names in `DESCRIBE`;
//! - `number_list`: `[0.1, 0.2, ...]` planned as one list literal;
//! - [`bounded`]: `repeat`, `lpad`, `array_repeat`, `range` and the other functions that build
//!   large values, bounded in the value they build;
//! - [`rewrite`]: a visitor over every query a statement holds;
//! - [`vector_text`]: vectors written as text (`'[1,2,3]'::VECTOR(3)`) as `to_vector` calls.

pub mod bounded;
pub mod dialect;
pub(crate) mod number_list;
pub mod rewrite;
pub mod types;
pub mod vector_text;
