//! `IndexOptimize`: brings a collection's vector indices up to date with its rows.
//!
//! Each vector index with rows outside it (written after it was built), or of more than one
//! segment, is optimised by Lance: the rows outside are added and its segments merged into one
//! (or, with `retrain`, the index is trained again over all rows), committed as a new version.
//! Indices are optimised one after another, each its own commit, so progress and cancellation
//! come between them; cancelling during one drops its build before the commit (its files are
//! unreferenced and garbage collection removes them). The job is idempotent: run again, it finds
//! what is still behind. Writes go on meanwhile: Lance rebases the index commit over them, and the
//! rows they add are left for the next run. Output: one row per vector index.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::{RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{DataFusionError, Result};
use lance::index::DatasetIndexExt;
use lance::Dataset;
use lance_index::optimize::OptimizeOptions;
use quiver_catalog::indices::{vector_index_coverage, IndexCoverage};
use quiver_catalog::Catalog;

use super::{cancelled, JobProgress, Source};

/// How often a running optimisation checks whether its job was cancelled.
const CANCEL_POLL: Duration = Duration::from_millis(100);

/// Optimises the vector indices of one collection.
#[derive(Debug)]
pub struct IndexOptimize {
    /// The catalog holding the collection.
    catalog: Arc<Catalog>,
    /// The collection's id (its name may change while the job waits).
    collection_id: String,
    /// Its name when the job was planned, for plans.
    name: String,
    /// Train every index again over all rows instead of adding the rows outside it.
    retrain: bool,
}

impl IndexOptimize {
    /// Optimises the vector indices of collection `collection_id`, named `name` (trains them
    /// again with `retrain`).
    pub fn new(catalog: Arc<Catalog>, collection_id: String, name: String, retrain: bool) -> Self {
        Self {
            catalog,
            collection_id,
            name,
            retrain,
        }
    }

    /// The output: one row per vector index.
    pub fn report_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("index", DataType::Utf8, false),
            Field::new("segments_before", DataType::UInt64, false),
            Field::new("rows_unindexed_before", DataType::UInt64, false),
            Field::new("segments", DataType::UInt64, false),
            Field::new("rows_unindexed", DataType::UInt64, false),
            Field::new("version", DataType::UInt64, false),
        ]))
    }

    /// Whether `index` needs this job's work.
    fn behind(&self, index: &IndexCoverage) -> bool {
        self.retrain || index.rows_unindexed > 0 || index.segments > 1
    }

    /// Optimises index `index` of `dataset`, stopping early if the job is cancelled. A commit
    /// that lost a race with a write that Lance cannot rebase it over is tried again over the
    /// newest version.
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
        let mut dataset = dataset.clone();
        for attempt in 1.. {
            let done = cancellable(
                {
                    let (mut dataset, options) = (dataset.clone(), Arc::clone(&options));
                    async move { dataset.optimize_indices(&options).await }
                },
                progress,
            )
            .await?;
            match done {
                Err(
                    lance::Error::RetryableCommitConflict { .. }
                    | lance::Error::CommitConflict { .. },
                ) if attempt < COMMIT_ATTEMPTS => dataset.checkout_latest().await?,
                done => return done.map_err(DataFusionError::from),
            }
        }
        Ok(())
    }
}

/// How often an index commit that lost a race with a write is tried.
const COMMIT_ATTEMPTS: usize = 3;

/// Runs `work` on its own task until it ends or the job is cancelled; then it is aborted
/// (before its commit, which is its last step) and the job ends at once, with an error.
async fn cancellable<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
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

impl fmt::Display for IndexOptimize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "collection={}, retrain={}", self.name, self.retrain)
    }
}

#[async_trait]
impl Source for IndexOptimize {
    fn name(&self) -> &'static str {
        "IndexOptimizeExec"
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
        let before = vector_index_coverage(&dataset).await.map_err(external)?;
        let behind: Vec<&IndexCoverage> = before.iter().filter(|i| self.behind(i)).collect();
        // Work in rows: those added to each index, or with `retrain` all of them, per index.
        let all_rows = if self.retrain {
            dataset.count_rows(None).await? as u64
        } else {
            0
        };
        let work: Vec<u64> = behind
            .iter()
            .map(|i| {
                if self.retrain {
                    all_rows
                } else {
                    i.rows_unindexed
                }
            })
            .collect();
        progress.add_total(0, 0, work.iter().sum());
        for (index, rows) in behind.iter().zip(work) {
            if progress.is_cancelled() {
                return Err(cancelled());
            }
            self.optimize(&dataset, index, &progress).await?;
            progress.add_done(0, 0, rows);
        }
        dataset.checkout_latest().await?;
        let after = vector_index_coverage(&dataset).await.map_err(external)?;
        let now = |name: &str| after.iter().find(|i| i.name == name);
        let column = |f: &dyn Fn(&IndexCoverage) -> u64| {
            Arc::new(UInt64Array::from_iter_values(before.iter().map(f)))
        };
        Ok(vec![RecordBatch::try_new(
            Self::report_schema(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    before.iter().map(|i| i.name.as_str()),
                )),
                column(&|i| i.segments as u64),
                column(&|i| i.rows_unindexed),
                column(&|i| now(&i.name).map_or(0, |n| n.segments as u64)),
                column(&|i| now(&i.name).map_or(0, |n| n.rows_unindexed)),
                column(&|_| dataset.version().version),
            ],
        )?])
    }
}
