//! `VersionCleanup`: removes Lance versions older than the retention period from every live
//! collection, and the files only they needed.
//!
//! Lance's cleanup keeps the latest version and every tagged version — each snapshot tags the
//! version it pins, and each zero-copy restore tags the version it reads — and never deletes a
//! file a kept version refers to. Output rows follow the garbage collection report schema.
//!
//! First, tags whose owner is gone (left by a crash between a drop's steps, or a failed
//! restore's undo) are removed, so the versions they pinned can expire. A tag is an orphan when
//! the catalog read *after* the tags were listed knows neither its snapshot nor its restore
//! target (as a live collection or the target of an unfinished restore): an owner's record is
//! always committed before its tag is created, so a tag created meanwhile is never taken for an
//! orphan.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{Duration, Utc};
use datafusion::arrow::array::{RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{DataFusionError, Result};
use lance::dataset::cleanup::{CleanupPolicyBuilder, RemovalStats};
use lance::Dataset;
use quiver_catalog::catalog::clone_tag;
use quiver_catalog::snapshot::tag_name;
use quiver_catalog::{Catalog, CatalogError, CatalogState, CollectionRecord};

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

/// Whether the Quiver tag `name` has no owner in `state`.
fn orphan_tag(name: &str, state: &CatalogState) -> bool {
    if let Some(id) = name.strip_prefix(&tag_name("")) {
        return !state.snapshots.contains_key(id);
    }
    if let Some(id) = name.strip_prefix(&clone_tag("")) {
        let restoring = state.jobs.values().any(|j| {
            !j.state.is_terminal() && j.spec.get("target_id").and_then(|v| v.as_str()) == Some(id)
        });
        return !state.collections.contains_key(id) && !restoring;
    }
    false
}

/// How often one collection's cleanup is run again after something it read vanished.
const VANISHED_RETRIES: usize = 3;

/// Whether `e` says a file or a tag was not found: it vanished while the cleanup read it.
fn vanished(e: &DataFusionError) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        let lance = match err.downcast_ref::<CatalogError>() {
            Some(CatalogError::Lance(lance)) => Some(lance),
            _ => err.downcast_ref::<lance::Error>(),
        };
        if matches!(
            lance,
            Some(lance::Error::NotFound { .. } | lance::Error::RefNotFound { .. })
        ) {
            return true;
        }
        current = err.source();
    }
    false
}

impl VersionCleanup {
    /// Cleans one collection: its ownerless tags, then its expired versions. Returns the report
    /// row, if versions expired.
    async fn clean(&self, record: &CollectionRecord) -> Result<Option<(String, u64, u64)>> {
        let dataset = self
            .catalog
            .open_dataset(record, None)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let orphans = self.remove_orphan_tags(&dataset).await?;
        if orphans > 0 {
            tracing::info!(
                "{}: {orphans} tag(s) without an owner {}",
                record.qualified_name(),
                if self.dry_run { "found" } else { "removed" }
            );
        }
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
        Ok((stats.old_versions > 0).then(|| {
            (
                record.qualified_name(),
                files_of(&stats),
                stats.bytes_removed,
            )
        }))
    }

    /// Removes `dataset`'s Quiver tags that have no owner any more; returns how many.
    async fn remove_orphan_tags(&self, dataset: &Dataset) -> Result<usize> {
        let tags = dataset.tags().list().await?;
        let state = self
            .catalog
            .state()
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let mut removed = 0;
        for name in tags.keys().filter(|name| orphan_tag(name, &state)) {
            if !self.dry_run {
                match dataset.tags().delete(name).await {
                    Ok(()) | Err(lance::Error::RefNotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            removed += 1;
        }
        Ok(removed)
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
            let mut attempt = 0;
            let row = loop {
                match self.clean(record).await {
                    Ok(row) => break row,
                    // A snapshot dropped (its tag deleted) or the collection dropped while it was
                    // read: what vanished needs no cleaning. Clean the collection again, unless
                    // it is gone.
                    Err(e) if vanished(&e) && attempt < VANISHED_RETRIES => {
                        attempt += 1;
                        let now = self.catalog.state().await.map_err(external)?;
                        if !now.collections.contains_key(&record.id) {
                            break None;
                        }
                    }
                    Err(e) => return Err(e),
                }
            };
            rows.extend(row);
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
