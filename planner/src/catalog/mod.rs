//! Quiver's catalog as DataFusion reads it: collections as tables, their scans, snapshots by name
//! (time travel) and the `quiver` system schema.
//!
//! - [`provider`]: the `quiver` catalog, its schemas (databases) and tables (collections);
//! - [`table`]: a collection as a DataFusion table, reads and writes;
//! - [`scan`]: [`CollectionScanExec`](scan::CollectionScanExec), a collection scan the k-NN rule
//!   can read;
//! - [`time_travel`]: `snapshot('docs', 'nightly')` and `"docs@nightly"`;
//! - [`system`]: `quiver.databases`, `quiver.collections`, `quiver.snapshots`, `quiver.jobs`.

pub mod provider;
pub mod scan;
pub mod system;
pub mod table;
pub mod time_travel;
