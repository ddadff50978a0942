//! Quiver's DataFusion operators and functions: SIMD distance kernels, vector functions, exact
//! and index-backed k-NN, and the operators jobs are built from.
//!
//! Nothing here knows about Flight; SQL reaches these operators through `quiver-planner`.
//!
//! - [`distance`]: the metrics and their SIMD kernels (AVX-512, AVX2, NEON, scalar);
//! - [`vector`]: vector columns (`FixedSizeList` of `f32` or `f16`) as the kernels read them;
//! - [`functions`]: the SQL scalar functions (`l2_distance`, `to_vector`, ...);
//! - [`exact`]: exact k-NN of one or many query vectors;
//! - [`index`]: k-NN through a vector index, and the search of indices loaded in memory;
//! - [`jobs`]: the operators restore and garbage collection plans are built from;
//! - [`error`]: the operators' errors.

pub mod distance;
pub mod error;
pub mod exact;
pub mod functions;
pub mod index;
pub mod jobs;
pub mod vector;

pub use error::OperatorError;
pub use index::huge_pages::advise_huge_pages;
