//! Session settings under the `quiver.` prefix, set with `SET quiver.<name> = <value>` and shown
//! with `SHOW quiver.<name>`.

use datafusion::common::config::ConfigExtension;
use datafusion::common::extensions_options;

extensions_options! {
    /// Quiver's session settings.
    pub struct QuiverConfig {
        /// IVF partitions probed by an index search (more: higher recall, slower).
        pub nprobes: usize, default = 20
        /// HNSW search breadth for IVF_HNSW indices (more: higher recall, slower).
        pub ef: usize, default = 100
        /// Re-rank `k * refine_factor` index candidates with exact distances (0: off).
        pub refine_factor: usize, default = 0
        /// Whether k-NN queries may use a vector index (off: always exact).
        pub use_index: bool, default = true
        /// `VACUUM` keeps Lance versions younger than this many seconds.
        pub gc_retention_seconds: u64, default = 604800
        /// `VACUUM` keeps unreferenced files younger than this many seconds (writes in flight).
        pub gc_grace_seconds: u64, default = 3600
        /// `VACUUM` removes the records of jobs that finished more than this many seconds ago.
        pub gc_job_retention_seconds: u64, default = 604800
    }
}

impl ConfigExtension for QuiverConfig {
    const PREFIX: &'static str = "quiver";
}
