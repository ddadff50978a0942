//! Garbage collection: removes what nothing needs any more.
//!
//! Removed: Lance versions older than the retention period that no snapshot or zero-copy restore
//! pins (through Lance's cleanup, which keeps tagged versions), files of dropped collections,
//! unreferenced files older than the grace period (orphans of interrupted writes and restores,
//! dropped snapshots' manifests), the records and files of snapshots whose create or drop was
//! interrupted, and (in a run over everything) the records of jobs that finished longer than the
//! job retention ago.
//!
//! Never removed: a file referenced by any version a live collection still records (including
//! files it reads from another collection's directory), by any snapshot manifest, or under the
//! target of a running restore; nor a file younger than the grace period unless its collection
//! was dropped (a write in flight has not committed the version that refers to it yet). The
//! listing is taken first and the catalog read after it (see `FileList`), and the reference set
//! is loaded in full before anything is deleted: the anti-join emits the unreferenced candidates
//! only once it has read the whole set, and any error loading it stops the job before the delete
//! step.
//!
//! Plan (the summary reads the union's parts one after another, in this order):
//! ```text
//! GcSummaryExec
//!   UnionExec
//!     ExpiredJobsExec        (only without a collection scope)
//!     StaleSnapshotsExec
//!     VersionCleanupExec
//!     FileDeleteExec
//!       ProjectionExec: path, size_bytes
//!         HashJoinExec: LeftAnti on path (build: candidates, probe: ReferenceSetExec)
//!           FilterExec: collectable
//!             FileListExec
//!           ReferenceSetExec
//! ```

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{Duration, Utc};
use datafusion::arrow::array::{AsArray, RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use datafusion::common::{JoinType, NullEquality, Result};
use datafusion::physical_expr::expressions::col;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::ExecutionPlan;
use quiver_catalog::{Catalog, JobKind, JobRecord};
use quiver_operators::jobs::file_delete::FileDelete;
use quiver_operators::jobs::file_list::{listing_schema, FileList, GcRules};
use quiver_operators::jobs::reference_set::ReferenceSet;
use quiver_operators::jobs::version_cleanup::VersionCleanup;
use quiver_operators::jobs::{JobProgress, SourceExec, Transform, TransformExec};
use serde::{Deserialize, Serialize};

use super::gc_records::{ExpiredJobs, StaleSnapshots};
use super::{JobPlan, JobScheduler};
use crate::error::external;
use crate::jobs::restore::RestoreSpec;

/// A garbage collection's parameters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GcSpec {
    /// Lance versions younger than this are kept.
    pub retention_seconds: i64,
    /// Unreferenced files younger than this are kept.
    pub grace_seconds: i64,
    /// Report, do not delete.
    pub dry_run: bool,
    /// Only this collection (its versions, files and snapshots), or everything.
    #[serde(default)]
    pub collection_id: Option<String>,
    /// Records of jobs that finished longer ago than this are removed (by a run over
    /// everything; a run scoped to one collection keeps every job record).
    #[serde(default = "default_job_retention_seconds")]
    pub job_retention_seconds: i64,
}

/// Finished jobs are listed for a week by default.
fn default_job_retention_seconds() -> i64 {
    7 * 24 * 3600
}

impl Default for GcSpec {
    fn default() -> Self {
        Self {
            retention_seconds: 7 * 24 * 3600,
            grace_seconds: 3600,
            dry_run: false,
            collection_id: None,
            job_retention_seconds: default_job_retention_seconds(),
        }
    }
}

/// Submits a garbage collection job.
pub async fn submit(scheduler: &Arc<JobScheduler>, spec: GcSpec) -> Result<JobRecord> {
    let scope = match &spec.collection_id {
        Some(id) => scheduler
            .catalog()
            .state()
            .await
            .map_err(external)?
            .collections
            .get(id)
            .map(|c| c.qualified_name())
            .unwrap_or_else(|| id.clone()),
        None => "all".to_string(),
    };
    let target = if spec.dry_run {
        format!("{scope} (dry run)")
    } else {
        scope
    };
    let spec = serde_json::to_value(&spec)
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
    scheduler
        .submit(JobKind::Gc, target.to_string(), spec)
        .await
}

/// Schema of the summary: `category, files, bytes`.
pub fn summary_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("category", DataType::Utf8, false),
        Field::new("files", DataType::UInt64, false),
        Field::new("bytes", DataType::UInt64, false),
    ]))
}

/// `GcSummaryExec`: totals per category; then forgets dropped locations whose files are all
/// gone and trims the catalog's history.
#[derive(Debug)]
struct GcSummary {
    catalog: Arc<Catalog>,
    dry_run: bool,
    totals: Mutex<BTreeMap<String, (u64, u64)>>,
}

impl fmt::Display for GcSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dry_run={}", self.dry_run)
    }
}

/// The categories always reported, even when nothing was found.
const CATEGORIES: [&str; 4] = [
    "expired jobs",
    "expired versions",
    "stale snapshots",
    "unreferenced files",
];

#[async_trait]
impl Transform for GcSummary {
    fn name(&self) -> &'static str {
        "GcSummaryExec"
    }

    fn schema(&self, _input: &SchemaRef) -> Result<SchemaRef> {
        Ok(summary_schema())
    }

    async fn apply(
        &self,
        batch: RecordBatch,
        _progress: &Arc<dyn JobProgress>,
    ) -> Result<Option<RecordBatch>> {
        let categories = batch.column(0).as_string::<i32>();
        let files = batch.column(2).as_primitive::<UInt64Type>();
        let bytes = batch.column(3).as_primitive::<UInt64Type>();
        if let Ok(mut totals) = self.totals.lock() {
            for i in 0..batch.num_rows() {
                let entry = totals.entry(categories.value(i).to_string()).or_default();
                entry.0 += files.value(i);
                entry.1 += bytes.value(i);
            }
        }
        Ok(None)
    }

    async fn finish(&self, _progress: &Arc<dyn JobProgress>) -> Result<Option<RecordBatch>> {
        if !self.dry_run {
            forget_purged_locations(&self.catalog).await?;
            self.catalog
                .metastore()
                .trim(1000)
                .await
                .map_err(external)?;
        }
        let totals = self.totals.lock().map(|t| t.clone()).unwrap_or_default();
        let rows: Vec<(&str, (u64, u64))> = CATEGORIES
            .iter()
            .map(|c| (*c, totals.get(*c).copied().unwrap_or_default()))
            .collect();
        Ok(Some(RecordBatch::try_new(
            summary_schema(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.1 .0))),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.1 .1))),
            ],
        )?))
    }

    fn single_partition(&self) -> bool {
        true
    }

    /// Expired jobs, stale snapshots, then expired versions, then unreferenced files: the reference set is
    /// read after version cleanup has settled which versions remain, so a file of a version
    /// the cleanup removed is not counted (or deleted) twice.
    fn ordered_input(&self) -> bool {
        true
    }
}

/// Forgets dropped locations that no longer hold any file.
async fn forget_purged_locations(catalog: &Arc<Catalog>) -> Result<()> {
    let state = catalog.state().await.map_err(external)?;
    let mut empty = Vec::new();
    for dropped in &state.dropped {
        let prefix = catalog.root().path_of(&dropped.location);
        let mut listing = catalog.root().store().list(Some(&prefix));
        if futures::StreamExt::next(&mut listing).await.is_none() {
            empty.push(dropped.collection_id.clone());
        }
    }
    if !empty.is_empty() {
        catalog
            .commit(|state| {
                state.dropped.retain(|d| !empty.contains(&d.collection_id));
                Ok(())
            })
            .await
            .map_err(external)?;
    }
    Ok(())
}

/// The rules for a collection now: live collections, dropped locations, known snapshots, and the
/// targets of restores still running.
async fn rules(
    catalog: &Arc<Catalog>,
    grace: Duration,
    collection_id: Option<String>,
) -> Result<GcRules> {
    let state = catalog.state().await.map_err(external)?;
    let protected = state
        .jobs
        .values()
        .filter(|j| j.kind == JobKind::Restore && !j.state.is_terminal())
        .filter_map(|j| serde_json::from_value::<RestoreSpec>(j.spec.clone()).ok())
        .filter_map(|spec| spec.target_id.map(|id| format!("collections/{id}")))
        .collect();
    Ok(GcRules {
        cutoff: Utc::now() - grace,
        live_collections: state.collections.keys().cloned().collect(),
        dropped: state
            .dropped
            .iter()
            .filter(|d| {
                !state
                    .collections
                    .values()
                    .any(|c| c.shares_files_of.contains(&d.location))
            })
            .map(|d| d.location.clone())
            .collect(),
        known_snapshots: state.snapshots.keys().cloned().collect::<HashSet<_>>(),
        protected,
        scope: collection_id,
    })
}

/// Builds the garbage collection plan for `spec`.
pub async fn build(
    catalog: &Arc<Catalog>,
    spec: &GcSpec,
    progress: Arc<dyn JobProgress>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let grace = Duration::seconds(spec.grace_seconds.max(0));
    let retention = Duration::seconds(spec.retention_seconds.max(0));
    let rules_catalog = catalog.clone();
    let scope = spec.collection_id.clone();
    let listing: Arc<dyn ExecutionPlan> = Arc::new(SourceExec::new(
        FileList::new(
            catalog.root().clone(),
            Arc::new(move || {
                let (catalog, scope) = (rules_catalog.clone(), scope.clone());
                Box::pin(async move { rules(&catalog, grace, scope).await })
            }),
        ),
        progress.clone(),
    ));
    let candidates: Arc<dyn ExecutionPlan> = Arc::new(FilterExec::try_new(
        col("collectable", &listing_schema())?,
        listing,
    )?);
    let references: Arc<dyn ExecutionPlan> = Arc::new(SourceExec::new(
        ReferenceSet::new(catalog.clone()),
        progress.clone(),
    ));
    let on = vec![(
        col("path", &candidates.schema())?,
        col("path", &references.schema())?,
    )];
    // The candidates are the build side: they are listed in full before the reference set is
    // read (the probe side), and the unreferenced ones are emitted only after it was read in
    // full.
    let unreferenced: Arc<dyn ExecutionPlan> = Arc::new(HashJoinExec::try_new(
        candidates,
        references,
        on,
        None,
        &JoinType::LeftAnti,
        None,
        PartitionMode::CollectLeft,
        NullEquality::NullEqualsNothing,
        false,
    )?);
    let schema = unreferenced.schema();
    let paths: Arc<dyn ExecutionPlan> = Arc::new(ProjectionExec::try_new(
        vec![
            (col("path", &schema)?, "path".to_string()),
            (col("size_bytes", &schema)?, "size_bytes".to_string()),
        ],
        unreferenced,
    )?);
    let deletes: Arc<dyn ExecutionPlan> = Arc::new(TransformExec::try_new(
        FileDelete::new(catalog.root().clone(), spec.dry_run, 16),
        paths,
        progress.clone(),
    )?);
    let stale: Arc<dyn ExecutionPlan> = Arc::new(SourceExec::new(
        StaleSnapshots {
            catalog: catalog.clone(),
            grace,
            dry_run: spec.dry_run,
            collection_id: spec.collection_id.clone(),
        },
        progress.clone(),
    ));
    let versions: Arc<dyn ExecutionPlan> = Arc::new(SourceExec::new(
        VersionCleanup::new(
            catalog.clone(),
            retention,
            spec.dry_run,
            spec.collection_id.clone(),
        ),
        progress.clone(),
    ));
    let mut parts = Vec::with_capacity(4);
    if spec.collection_id.is_none() {
        parts.push(Arc::new(SourceExec::new(
            ExpiredJobs {
                catalog: catalog.clone(),
                retention: Duration::seconds(spec.job_retention_seconds.max(0)),
                dry_run: spec.dry_run,
            },
            progress.clone(),
        )) as Arc<dyn ExecutionPlan>);
    }
    parts.extend([stale, versions, deletes]);
    let union = UnionExec::try_new(parts)?;
    Ok(Arc::new(TransformExec::try_new(
        GcSummary {
            catalog: catalog.clone(),
            dry_run: spec.dry_run,
            totals: Mutex::new(BTreeMap::new()),
        },
        union,
        progress,
    )?))
}

/// The plan of garbage collection job `job`.
pub async fn plan(
    catalog: &Arc<Catalog>,
    job: &JobRecord,
    progress: Arc<dyn JobProgress>,
) -> Result<JobPlan> {
    let spec: GcSpec = serde_json::from_value(job.spec.clone()).map_err(|e| {
        datafusion::error::DataFusionError::Execution(format!("job {}: bad spec: {e}", job.id))
    })?;
    Ok(JobPlan {
        plan: build(catalog, &spec, progress).await?,
        rollback: None,
    })
}
