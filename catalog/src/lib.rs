//! Quiver's catalog: databases, collections, snapshots and jobs, kept in a versioned metadata
//! store on an object store, next to the collections' Lance datasets.
//!
//! Nothing here knows about SQL or Flight. The crate owns:
//! - [`metastore`]: the catalog log, committed by put-if-absent;
//! - [`model`]: the records it holds;
//! - [`location`]: the data root (a local directory or an object store URL) and fault hooks;
//! - [`catalog`]: the operations on databases and collections, and their Lance datasets;
//! - [`primary_key`]: a collection's key declared to Lance, which detects concurrent writers of
//!   one key.

pub mod catalog;
pub mod error;
pub mod fault;
pub mod indices;
pub mod inventory;
pub mod jobs;
pub mod key_index;
pub mod location;
pub mod manifest;
pub mod metastore;
pub mod model;
pub mod primary_key;
pub mod snapshot;

pub use catalog::Catalog;
pub use error::{CatalogError, Result};
pub use model::*;
