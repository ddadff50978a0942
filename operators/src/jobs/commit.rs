//! [`CatalogCommit`]: the last step of a job — waits for all of its input, then commits to the
//! catalog.
//!
//! Nothing becomes visible before every input row has been processed: a failure or cancellation
//! anywhere below leaves the catalog as it was.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{SchemaRef, UInt64Type};
use datafusion::common::Result;

use super::{cancelled, JobProgress, Transform};

/// What the commit does, given the totals of its input.
#[async_trait]
pub trait CommitAction: fmt::Debug + fmt::Display + Send + Sync + 'static {
    /// The output schema.
    fn schema(&self) -> SchemaRef;
    /// Commits; `files` and `bytes` are what the input processed.
    async fn commit(&self, files: u64, bytes: u64) -> Result<RecordBatch>;
}

/// Runs a [`CommitAction`] after its input is exhausted.
#[derive(Debug)]
pub struct CatalogCommit<A: CommitAction> {
    action: A,
    files: AtomicU64,
    bytes: AtomicU64,
}

impl<A: CommitAction> CatalogCommit<A> {
    /// A commit running `action`.
    pub fn new(action: A) -> Self {
        Self {
            action,
            files: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }
}

impl<A: CommitAction> fmt::Display for CatalogCommit<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.action, f)
    }
}

#[async_trait]
impl<A: CommitAction> Transform for CatalogCommit<A> {
    fn name(&self) -> &'static str {
        "CatalogCommitExec"
    }

    fn schema(&self, _input: &SchemaRef) -> Result<SchemaRef> {
        Ok(self.action.schema())
    }

    async fn apply(
        &self,
        batch: RecordBatch,
        _progress: &Arc<dyn JobProgress>,
    ) -> Result<Option<RecordBatch>> {
        self.files
            .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        if let Ok(i) = batch.schema().index_of("size_bytes") {
            let sizes = batch.column(i).as_primitive::<UInt64Type>();
            let total: u64 = sizes.iter().flatten().sum();
            self.bytes.fetch_add(total, Ordering::Relaxed);
        }
        Ok(None)
    }

    async fn finish(&self, progress: &Arc<dyn JobProgress>) -> Result<Option<RecordBatch>> {
        if progress.is_cancelled() {
            return Err(cancelled());
        }
        let out = self
            .action
            .commit(
                self.files.load(Ordering::Relaxed),
                self.bytes.load(Ordering::Relaxed),
            )
            .await?;
        Ok(Some(out))
    }

    fn single_partition(&self) -> bool {
        true
    }
}
