//! Quiver's end-to-end tests: one binary, one module per topic.

// Test code: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod collections;
mod exact_search;
mod flight;
mod index_maintenance;
mod index_search;
mod jobs;
mod key_index;
mod primary_keys;
mod scalar_indices;
mod snapshots;
mod sql;
mod vector;
