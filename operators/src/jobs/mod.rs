//! Operators that jobs are built from: a restore, a garbage collection or an index optimisation
//! is a DataFusion plan of these, so it streams, runs in parallel where it can, reports metrics,
//! and shows in `EXPLAIN`.
//!
//! - [`manifest_scan`]: the files a snapshot's manifest lists;
//! - [`file_copy`]: copies files into a target location;
//! - [`file_list`]: the files stored under the data root, with age and size;
//! - [`reference_set`]: every file some live version, snapshot or restore still needs;
//! - [`file_delete`]: deletes (or, in a dry run, only reports) files;
//! - [`version_cleanup`]: Lance's removal of expired versions;
//! - [`collection_optimize`]: compacts a collection and brings its vector indices up to date;
//! - [`commit`]: the final catalog commit, once all its input is done.
//!
//! Leaf operators implement [`Source`] and run as [`SourceExec`]; row-by-row operators implement
//! [`Transform`] and run as [`TransformExec`]. Plans show each under its type's name followed by
//! `Exec`: a `SourceExec<FileList>` as `FileListExec`, a `TransformExec<CatalogCommit<_>>` as
//! `CatalogCommitExec`. Both report progress to a [`JobProgress`] and stop
//! at the next step when the job is cancelled.

use std::fmt::{Debug, Display};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Result;

pub mod collection_optimize;
pub mod commit;
pub mod exec;
pub mod file_copy;
pub mod file_delete;
pub mod file_list;
pub mod manifest_scan;
pub mod reference_set;
pub mod version_cleanup;

pub use exec::{SourceExec, TransformExec};

/// Where a job reports progress, and learns it should stop.
pub trait JobProgress: Debug + Send + Sync {
    /// Adds to the job's totals (work discovered).
    fn add_total(&self, files: u64, bytes: u64, rows: u64);
    /// Adds to the work done.
    fn add_done(&self, files: u64, bytes: u64, rows: u64);
    /// Whether the job was cancelled.
    fn is_cancelled(&self) -> bool;
}

/// Progress that goes nowhere (for `EXPLAIN` and tests).
#[derive(Debug, Default)]
pub struct NoProgress;

impl JobProgress for NoProgress {
    fn add_total(&self, _files: u64, _bytes: u64, _rows: u64) {}
    fn add_done(&self, _files: u64, _bytes: u64, _rows: u64) {}
    fn is_cancelled(&self) -> bool {
        false
    }
}

/// The error a cancelled job stops with.
pub fn cancelled() -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::Execution("the job was cancelled".to_string())
}

/// The `path` and `size_bytes` columns of a file batch.
pub fn paths_and_sizes(
    batch: &RecordBatch,
) -> Result<(
    datafusion::arrow::array::StringArray,
    datafusion::arrow::array::UInt64Array,
)> {
    use datafusion::arrow::array::AsArray;
    let paths = batch
        .column(batch.schema().index_of("path")?)
        .as_string::<i32>()
        .clone();
    let sizes = batch
        .column(batch.schema().index_of("size_bytes")?)
        .as_primitive::<datafusion::arrow::datatypes::UInt64Type>()
        .clone();
    Ok((paths, sizes))
}

/// A leaf that produces batches by doing some I/O.
#[async_trait]
pub trait Source: Debug + Display + Send + Sync + 'static {
    /// The operator's name in plans: the type's name followed by `Exec`.
    fn name(&self) -> &'static str;
    /// The output schema.
    fn schema(&self) -> SchemaRef;
    /// Produces the output.
    async fn run(&self, progress: Arc<dyn JobProgress>) -> Result<Vec<RecordBatch>>;
}

/// A unary step applied to each input batch (and, once, at the end).
#[async_trait]
pub trait Transform: Debug + Display + Send + Sync + 'static {
    /// The operator's name in plans: the type's name followed by `Exec`.
    fn name(&self) -> &'static str;
    /// The output schema, given the input's.
    fn schema(&self, input: &SchemaRef) -> Result<SchemaRef>;
    /// Processes one input batch.
    async fn apply(
        &self,
        batch: RecordBatch,
        progress: &Arc<dyn JobProgress>,
    ) -> Result<Option<RecordBatch>>;
    /// Runs after the last input batch; may emit one final batch.
    async fn finish(&self, _progress: &Arc<dyn JobProgress>) -> Result<Option<RecordBatch>> {
        Ok(None)
    }
    /// Whether all input must be in one partition (e.g. a commit that must see everything).
    fn single_partition(&self) -> bool {
        false
    }
    /// With [`Transform::single_partition`]: whether the input's partitions are read one after
    /// another, in order, instead of all at once (steps that must not overlap).
    fn ordered_input(&self) -> bool {
        false
    }
}
