//! Index-backed k-NN: searches through a Lance vector index, and Quiver's own search of an HNSW
//! index loaded in memory.
//!
//! - [`index_knn`]: [`IndexKnnExec`](index_knn::IndexKnnExec), the operator;
//! - [`search`]: what a search looks for (query, metric, `k`, settings);
//! - [`direct`]: the search of the index alone, without Lance's scanner;
//! - `loaded`: indices loaded in memory, their cache and their search;
//! - `filtered`: a filter evaluated over a loaded index's columns, and the filtered search;
//! - `index_version`: what a loaded index shows of one dataset version (rows deleted since,
//!   rows written since), and its search;
//! - `hnsw_graph`: an HNSW graph in flat arrays, and its beam search;
//! - `scalar_quantized`: the 8-bit codes a loaded graph search scores;
//! - `search_metrics`: what a search counts, reported as DataFusion metrics;
//! - `huge_pages`: arrays backed by transparent huge pages.

pub mod direct;
pub(crate) mod filtered;
mod hnsw_graph;
pub(crate) mod huge_pages;
pub mod index_knn;
pub(crate) mod index_version;
pub(crate) mod loaded;
mod scalar_quantized;
pub mod search;
mod search_metrics;
