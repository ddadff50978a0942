//! Progress of long statements (index builds, jobs), reported to whoever drives the session —
//! the CLI draws a progress bar from it.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use lance::index::IndexBuildProgress;

/// Receives progress of a long-running statement, stage by stage.
pub trait ProgressListener: Debug + Send + Sync {
    /// A stage started; `total` units of work if known.
    fn stage_start(&self, stage: &str, total: Option<u64>, unit: &str);
    /// `completed` units of the stage are done.
    fn stage_progress(&self, stage: &str, completed: u64);
    /// The stage finished.
    fn stage_complete(&self, stage: &str);
}

/// Forwards Lance's index build progress to a [`ProgressListener`].
#[derive(Debug)]
pub struct IndexProgress(pub Arc<dyn ProgressListener>);

#[async_trait]
impl IndexBuildProgress for IndexProgress {
    async fn stage_start(&self, stage: &str, total: Option<u64>, unit: &str) -> lance::Result<()> {
        self.0.stage_start(stage, total, unit);
        Ok(())
    }

    async fn stage_progress(&self, stage: &str, completed: u64) -> lance::Result<()> {
        self.0.stage_progress(stage, completed);
        Ok(())
    }

    async fn stage_complete(&self, stage: &str) -> lance::Result<()> {
        self.0.stage_complete(stage);
        Ok(())
    }
}
