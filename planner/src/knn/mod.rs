//! k-NN in SQL: where a statement's search becomes one of Quiver's search operators.
//!
//! - [`rule`]: `ORDER BY <distance>(column, query) LIMIT k` planned as `KnnExec` or
//!   `IndexKnnExec`;
//! - [`function`]: the `knn(rows, 'column', queries, k)` table function (`BatchKnnExec`).

pub mod function;
pub mod rule;
