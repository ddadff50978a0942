//! `CollectionOptimize`: compacts a collection's small fragments and brings its vector indices
//! up to date with its rows.
//!
//! First Lance's compaction rewrites runs of small fragments (each write adds one) into larger
//! ones and drops the deleted rows of fragments that have many (Lance's defaults: fragments of
//! fewer than 1,048,576 rows, deletions over 10%); fragments covered by different indices are
//! never merged, so the rows written since an index was built are compacted apart from it, and an
//! index whose fragments were rewritten is remapped in the same commit. Then each vector index
//! with rows outside it, or of more than one segment, is optimised: the rows outside are added
//! and its segments merged into one (or, with `retrain`, the index is trained again over all
//! rows). Every step is its own commit, run on a task of its own, so progress and cancellation
//! come between them, and cancelling during one aborts it before its commit (the files it wrote
//! are unreferenced; garbage collection removes them). The job is idempotent: run again, it finds
//! what is still to do. Writes go on meanwhile: Lance rebases each commit over them (one that
//! still conflicts is tried again over the newest version), and the rows they add are left for
//! the next run. Output: `what, before, after` rows (fragments, deleted rows, and each index's
//! segments and rows outside it, and the version).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::{RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{DataFusionError, Result};
use lance::dataset::optimize::{compact_files, CompactionOptions};
use lance::index::DatasetIndexExt;
use lance::Dataset;
use lance_index::optimize::OptimizeOptions;
use quiver_catalog::indices::{index_coverage, IndexCoverage};
use quiver_catalog::Catalog;

use super::{cancelled, JobProgress, Source};

/// How often a running step checks whether its job was cancelled.
const CANCEL_POLL: Duration = Duration::from_millis(100);

/// How often a commit that lost a race with a write is tried.
const COMMIT_ATTEMPTS: usize = 3;

/// Compacts a collection and optimises its vector indices.
#[derive(Debug)]
pub struct CollectionOptimize {
    /// The catalog holding the collection.
    catalog: Arc<Catalog>,
    /// The collection's id (its name may change while the job waits).
    collection_id: String,
    /// Its name when the job was planned, for plans and errors.
    name: String,
    /// Train every index again over all rows instead of adding the rows outside it.
    retrain: bool,
}

/// What a collection version is made of, as the report compares it.
struct Shape {
    fragments: u64,
    deleted_rows: u64,
    indices: Vec<IndexCoverage>,
    version: u64,
}

impl Shape {
    async fn of(dataset: &Dataset) -> Result<Self> {
        let fragments = dataset.fragments();
        let deleted = |f: &lance::table::format::Fragment| {
            let physical = f.physical_rows.unwrap_or(0);
            physical.saturating_sub(f.num_rows().unwrap_or(physical)) as u64
        };
        Ok(Self {
            fragments: fragments.len() as u64,
            deleted_rows: fragments.iter().map(deleted).sum(),
            indices: index_coverage(dataset)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?,
            version: dataset.version().version,
        })
    }
}

impl CollectionOptimize {
    /// Optimises collection `collection_id`, named `name` (its indices trained again with
    /// `retrain`).
    pub fn new(catalog: Arc<Catalog>, collection_id: String, name: String, retrain: bool) -> Self {
        Self {
            catalog,
            collection_id,
            name,
            retrain,
        }
    }

    /// The output: what was measured, before and after.
    pub fn report_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("what", DataType::Utf8, false),
            Field::new("before", DataType::UInt64, false),
            Field::new("after", DataType::UInt64, false),
        ]))
    }

    /// Whether `index` needs this job's work.
    fn behind(&self, index: &IndexCoverage) -> bool {
        self.retrain || index.rows_unindexed > 0 || index.segments > 1
    }

    /// Compacts `dataset`'s small fragments.
    async fn compact(&self, dataset: &Dataset, progress: &Arc<dyn JobProgress>) -> Result<()> {
        committed(dataset, progress, |mut dataset| async move {
            compact_files(&mut dataset, CompactionOptions::default(), None)
                .await
                .map(|_| ())
        })
        .await
    }

    /// Optimises index `index` of `dataset`.
    async fn optimize(
        &self,
        dataset: &Dataset,
        index: &IndexCoverage,
        progress: &Arc<dyn JobProgress>,
    ) -> Result<()> {
        let mut options = if self.retrain {
            OptimizeOptions::retrain()
        } else {
            OptimizeOptions::merge(index.segments)
        };
        options.index_names = Some(vec![index.name.clone()]);
        let options = Arc::new(options);
        committed(dataset, progress, move |mut dataset| {
            let options = Arc::clone(&options);
            async move { dataset.optimize_indices(&options).await }
        })
        .await
    }

    /// The report rows comparing `before` with `after`.
    fn report(before: &Shape, after: &Shape) -> Result<RecordBatch> {
        let mut rows: Vec<(String, u64, u64)> = vec![
            ("fragments".into(), before.fragments, after.fragments),
            (
                "deleted rows".into(),
                before.deleted_rows,
                after.deleted_rows,
            ),
        ];
        for index in &before.indices {
            let now = after.indices.iter().find(|i| i.name == index.name);
            rows.push((
                format!("index {} segments", index.name),
                index.segments as u64,
                now.map_or(0, |n| n.segments as u64),
            ));
            rows.push((
                format!("index {} rows outside", index.name),
                index.rows_unindexed,
                now.map_or(0, |n| n.rows_unindexed),
            ));
        }
        rows.push(("version".into(), before.version, after.version));
        Ok(RecordBatch::try_new(
            Self::report_schema(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.0))),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.2))),
            ],
        )?)
    }
}

/// Runs `step` (a Lance commit) over a copy of `dataset`, stopping early if the job is
/// cancelled; a commit that lost a race with a write Lance cannot rebase it over is tried again
/// over the newest version.
async fn committed<F, Fut>(
    dataset: &Dataset,
    progress: &Arc<dyn JobProgress>,
    step: F,
) -> Result<()>
where
    F: Fn(Dataset) -> Fut,
    Fut: Future<Output = lance::Result<()>> + Send + 'static,
{
    let mut dataset = dataset.clone();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match cancellable(step(dataset.clone()), progress).await? {
            Err(
                lance::Error::RetryableCommitConflict { .. } | lance::Error::CommitConflict { .. },
            ) if attempt < COMMIT_ATTEMPTS => dataset.checkout_latest().await?,
            done => return done.map_err(DataFusionError::from),
        }
    }
}

/// Runs `work` on its own task until it ends or the job is cancelled; then it is aborted
/// (before its commit, which is its last step) and the job ends at once, with an error.
async fn cancellable<T: Send + 'static>(
    work: impl Future<Output = T> + Send + 'static,
    progress: &Arc<dyn JobProgress>,
) -> Result<T> {
    let mut task = tokio::spawn(work);
    let mut poll = tokio::time::interval(CANCEL_POLL);
    loop {
        tokio::select! {
            done = &mut task => {
                return done.map_err(|e| DataFusionError::External(Box::new(e)));
            }
            _ = poll.tick() => {
                if progress.is_cancelled() {
                    task.abort();
                    return Err(cancelled());
                }
            }
        }
    }
}

impl fmt::Display for CollectionOptimize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "collection={}, retrain={}", self.name, self.retrain)
    }
}

#[async_trait]
impl Source for CollectionOptimize {
    fn name(&self) -> &'static str {
        "CollectionOptimizeExec"
    }

    fn schema(&self) -> SchemaRef {
        Self::report_schema()
    }

    async fn run(&self, progress: Arc<dyn JobProgress>) -> Result<Vec<RecordBatch>> {
        let external = |e: quiver_catalog::CatalogError| DataFusionError::External(Box::new(e));
        let state = self.catalog.state().await.map_err(external)?;
        let Some(record) = state.collections.get(&self.collection_id).cloned() else {
            return Err(DataFusionError::Execution(format!(
                "the collection to optimise ({}) no longer exists",
                self.name
            )));
        };
        let mut dataset = self
            .catalog
            .open_dataset(&record, None)
            .await
            .map_err(external)?;
        let before = Shape::of(&dataset).await?;
        // Work in rows: those added to each index (with `retrain`, all of them, per index).
        let all_rows = if self.retrain {
            dataset.count_rows(None).await? as u64
        } else {
            0
        };
        let work = |index: &IndexCoverage| {
            if self.retrain {
                all_rows
            } else {
                index.rows_unindexed
            }
        };
        let behind = before.indices.iter().filter(|i| self.behind(i));
        progress.add_total(0, 0, behind.map(work).sum());
        self.compact(&dataset, &progress).await?;
        dataset.checkout_latest().await?;
        // Compaction keeps rows and what covers them: what is behind is found again only to
        // see each index's segments as the compaction left them.
        for index in index_coverage(&dataset).await.map_err(external)? {
            if !self.behind(&index) {
                continue;
            }
            if progress.is_cancelled() {
                return Err(cancelled());
            }
            self.optimize(&dataset, &index, &progress).await?;
            progress.add_done(0, 0, work(&index));
        }
        dataset.checkout_latest().await?;
        let after = Shape::of(&dataset).await?;
        Ok(vec![Self::report(&before, &after)?])
    }
}
