//! Quiver's DataFusion operators and functions: SIMD distance kernels, vector functions, exact
//! and index-backed k-NN, and the operators jobs are built from.
//!
//! Nothing here knows about Flight; SQL reaches these operators through `quiver-planner`.

pub mod batch_knn;
pub mod distance;
pub mod error;
pub mod functions;
mod hnsw_graph;
mod huge_pages;
pub mod index_direct;
pub mod index_knn;
pub mod jobs;
pub mod knn;
mod loaded_index;
mod scalar_quantized;
mod search_metrics;
pub mod topk;
pub mod vector;

pub use error::OperatorError;
pub use huge_pages::advise_huge_pages;
