//! Exact k-NN: every row's distance computed with the SIMD kernels, the nearest kept in a
//! bounded top-k.
//!
//! - [`knn`]: [`KnnExec`](knn::KnnExec), one query vector (`ORDER BY <distance> LIMIT k`);
//! - [`batch_knn`]: [`BatchKnnExec`](batch_knn::BatchKnnExec), many query vectors in one pass
//!   over the rows (the `knn()` table function);
//! - [`topk`]: the bounded selection both keep per partition;
//! - `loaded_vectors`: a collection's vectors decoded once and kept in memory;
//! - `loaded_search`: [`KnnExec`](knn::KnnExec)'s search of those vectors.

pub mod batch_knn;
pub mod knn;
mod loaded_search;
pub(crate) mod loaded_vectors;
pub mod topk;
