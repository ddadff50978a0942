//! Exact k-NN: every row's distance computed with the SIMD kernels, the nearest kept in a
//! bounded top-k.
//!
//! - [`knn`]: [`KnnExec`](knn::KnnExec), one query vector (`ORDER BY <distance> LIMIT k`);
//! - [`batch_knn`]: [`BatchKnnExec`](batch_knn::BatchKnnExec), many query vectors in one pass
//!   over the rows (the `knn()` table function);
//! - [`topk`]: the bounded selection both keep per partition.

pub mod batch_knn;
pub mod knn;
pub mod topk;
