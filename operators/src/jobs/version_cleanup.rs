//! `VersionCleanup`: removes Lance versions older than the retention period from every live
//! collection, and the files only they needed.
//!
//! Lance's cleanup keeps the latest version and every tagged version — each snapshot tags the
//! version it pins, and each zero-copy restore tags the version it reads — and never deletes a
//! file a kept version refers to. Output rows follow the garbage collection report schema.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{Duration, Utc};
use datafusion::arrow::array::{RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{DataFusionError, Result};
use lance::dataset::cleanup::{CleanupPolicyBuilder, RemovalStats};
use quiver_catalog::Catalog;

use super::file_delete::report_schema;
use super::{cancelled, JobProgress, Source};

/// Expires old versions.
#[derive(Debug)]
pub struct VersionCleanup {
    /// The catalog whose collections are cleaned.
    catalog: Arc<Catalog>,
    /// Versions younger than this are kept.
    retention: Duration,
    /// Report, do not delete.
    dry_run: bool,
    /// Only this collection, if set.
    collection_id: Option<String>,
}

impl VersionCleanup {
    /// Expires versions older than `retention` (or only reports, with `dry_run`), of every
    /// collection or of `collection_id`.
    pub fn new(
        catalog: Arc<Catalog>,
        retention: Duration,
        dry_run: bool,
        collection_id: Option<String>,
    ) -> Self {
        Self {
            catalog,
            retention,
            dry_run,
            collection_id,
        }
    }
}

impl fmt::Display for VersionCleanup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "retention={}s, dry_run={}",
            self.retention.num_seconds(),
            self.dry_run
        )
    }
}

fn files_of(stats: &RemovalStats) -> u64 {
    stats.old_versions
        + stats.data_files_removed
        + stats.index_files_removed
        + stats.deletion_files_removed
        + stats.transaction_files_removed
}

#[async_trait]
impl Source for VersionCleanup {
    fn name(&self) -> &'static str {
        "VersionCleanupExec"
    }

    fn schema(&self) -> SchemaRef {
        report_schema()
    }

    async fn run(&self, progress: Arc<dyn JobProgress>) -> Result<Vec<RecordBatch>> {
        let external = |e| DataFusionError::External(Box::new(e));
        let state = self.catalog.state().await.map_err(external)?;
        let mut rows: Vec<(String, u64, u64)> = Vec::new();
        for record in state.collections.values() {
            if self
                .collection_id
                .as_ref()
                .is_some_and(|id| id != &record.id)
            {
                continue;
            }
            if progress.is_cancelled() {
                return Err(cancelled());
            }
            let dataset = self
                .catalog
                .open_dataset(record, None)
                .await
                .map_err(external)?;
            let policy = CleanupPolicyBuilder::default()
                .before_timestamp(Utc::now() - self.retention)
                .delete_unverified(false)
                .error_if_tagged_old_versions(false)
                .build();
            let stats = if self.dry_run {
                dataset.cleanup(policy).explain().await?.stats
            } else {
                dataset.cleanup(policy).execute().await?
            };
            if stats.old_versions > 0 {
                rows.push((
                    record.qualified_name(),
                    files_of(&stats),
                    stats.bytes_removed,
                ));
            }
        }
        let batch = RecordBatch::try_new(
            report_schema(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|_| "expired versions"),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r.0.as_str()),
                )),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.2))),
            ],
        )?;
        Ok(vec![batch])
    }
}
