//! [`IndexKnnExec`]: k nearest neighbours through a Lance vector index.
//!
//! Lance searches the index (IVF partitions, HNSW graph, quantized codes) with the filter applied
//! first (pre-filtering), and searches the rows written after the index was built exactly, merging
//! both. Where the index alone answers (no filter, no unindexed or deleted rows), it is searched
//! directly, without Lance's scanner (`direct`; the `direct_index_searches` metric counts
//! it), and an HNSW index by Quiver's own graph search over a copy loaded in memory
//! (`loaded`; `loaded_index_searches`), which walks the graph scoring 8-bit codes and then
//! scores the nodes it found at full precision with Quiver's kernels. Otherwise the candidates'
//! distances are recomputed with those kernels from the stored vectors. Either way the values
//! are exactly what the distance functions return and the order is exact among the candidates;
//! which rows are candidates depends on the index (approximate search).

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{Float32Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{internal_err, Result};
use datafusion::execution::memory_pool::MemoryPool;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::TryStreamExt;
use lance::Dataset;
use lance_linalg::distance::DistanceType;

use crate::distance::distance;
use crate::index::direct::{with_column, Candidates, DirectIndex};
use crate::index::search::{index_distance_type, IndexSearch};
use crate::index::search_metrics::SearchMetrics;
use crate::vector::VectorArray;

/// Index-backed k-NN over one dataset version.
#[derive(Debug)]
pub struct IndexKnnExec {
    /// What it searches, shared with the stream of each execution.
    task: Arc<IndexKnnTask>,
    /// Execution metrics, shared with the stream of each execution.
    metrics: Arc<SearchMetrics>,
    /// Cached plan properties.
    properties: Arc<PlanProperties>,
}

impl IndexKnnExec {
    /// Runs `task`.
    pub fn try_new(task: IndexKnnTask) -> Result<Self> {
        let (fields, columns) = (task.schema.fields().len(), task.columns.len());
        if fields != columns + usize::from(task.with_distance) {
            return internal_err!("IndexKnnExec: {fields} output fields for {columns} columns");
        }
        let search = &task.search;
        if index_distance_type(search.metric, search.descending).is_none() {
            return internal_err!("IndexKnnExec: no index metric serves {:?}", search.metric);
        }
        let properties = PlanProperties::new(
            EquivalenceProperties::new(task.schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Ok(Self {
            task: Arc::new(task),
            metrics: Arc::default(),
            properties: Arc::new(properties),
        })
    }

    /// The search.
    pub fn search(&self) -> &IndexSearch {
        &self.task.search
    }

    /// The dataset version searched.
    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.task.dataset
    }

    /// The pre-filter, if any.
    pub fn filter(&self) -> Option<&Expr> {
        self.task.filter.as_ref()
    }

    /// The same search for another query vector of the same dimension, as a new operator (its
    /// own metrics).
    pub fn with_query(&self, query: Arc<[f32]>) -> Result<Self> {
        if query.len() != self.task.search.query.len() {
            return internal_err!(
                "IndexKnnExec: a query of {} values for a search of {}",
                query.len(),
                self.task.search.query.len()
            );
        }
        let task = IndexKnnTask {
            search: IndexSearch {
                query,
                ..self.task.search.clone()
            },
            ..self.task.as_ref().clone()
        };
        Ok(Self {
            task: Arc::new(task),
            metrics: Arc::default(),
            properties: Arc::clone(&self.properties),
        })
    }
}

/// What an [`IndexKnnExec`] searches and outputs.
#[derive(Debug, Clone)]
pub struct IndexKnnTask {
    /// The dataset version searched.
    pub dataset: Arc<Dataset>,
    /// The search.
    pub search: IndexSearch,
    /// Pre-filter, applied by Lance before the search.
    pub filter: Option<Expr>,
    /// Dataset columns output, in order, under the names and types of `schema`.
    pub columns: Vec<String>,
    /// Output schema: `columns`, then the distance column if any.
    pub schema: SchemaRef,
    /// Whether the last output column is the distance.
    pub with_distance: bool,
}

impl IndexKnnTask {
    /// The candidates of `search` through Lance's scanner, with the columns `projection`.
    async fn scan(
        &self,
        projection: &[String],
        distance_type: DistanceType,
    ) -> Result<Vec<RecordBatch>> {
        let search = &self.search;
        let mut scan = self.dataset.scan();
        scan.project(projection)?;
        if let Some(filter) = &self.filter {
            scan.filter_expr(filter.clone());
        }
        let query = Float32Array::from(search.query.to_vec());
        scan.nearest(&search.column, &query, search.k)?;
        // Search settings only take effect after `nearest`.
        scan.nprobes(search.params.nprobes.max(1))
            .ef(search.params.ef.max(search.k))
            .distance_metric(distance_type)
            .prefilter(true);
        if search.params.refine_factor > 0 {
            scan.refine(u32::try_from(search.params.refine_factor).unwrap_or(u32::MAX));
        }
        Ok(scan.try_into_stream().await?.try_collect().await?)
    }

    /// The search's output; loading an index counts against `pool` while it loads.
    async fn run(
        &self,
        metrics: &SearchMetrics,
        pool: &Arc<dyn MemoryPool>,
    ) -> Result<RecordBatch> {
        let Self {
            dataset,
            search,
            columns,
            schema,
            with_distance,
            ..
        } = self;
        let distance_type =
            index_distance_type(search.metric, search.descending).unwrap_or(DistanceType::L2);
        // The index alone may answer (`direct`; with a filter, only loaded); where it cannot,
        // Lance's scanner searches.
        let filtered = self.filter.is_some();
        let direct = DirectIndex::open(dataset, search, distance_type, filtered, pool).await?;
        let direct_rows = match direct {
            Some(index) => {
                // As Lance's refine: k * refine_factor candidates, ranked exactly (below, or
                // by the loaded index's own exact scores).
                let candidates = search.k * search.params.refine_factor.max(1);
                let found = index.search(self, candidates, metrics, pool).await?;
                found.map(|found| (found, index.is_loaded()))
            }
            None => None,
        };
        let found = match direct_rows {
            Some((found, loaded)) => {
                metrics.record_direct_search(loaded);
                found
            }
            None => {
                let projection = with_column(columns, &search.column);
                let batches = self.scan(&projection, distance_type).await?;
                match batches.first() {
                    Some(b) => Candidates::Unranked(concat_batches(&b.schema(), &batches)?),
                    None => return Ok(RecordBatch::new_empty(schema.clone())),
                }
            }
        };
        let (rows, mut distances) = match found {
            Candidates::Ranked { rows, distances } => (rows, distances),
            Candidates::Unranked(all) => self.rank(&all)?,
        };
        distances.truncate(search.k);
        let result_schema = rows.schema();
        let mut out = Vec::with_capacity(schema.fields().len());
        for name in columns {
            let column = rows.column(result_schema.index_of(name)?);
            out.push(column.slice(0, distances.len()));
        }
        if *with_distance {
            out.push(Arc::new(Float32Array::from(distances)));
        }
        Ok(RecordBatch::try_new(schema.clone(), out)?)
    }

    /// `all`'s rows ordered by their exact distance to the query, computed with Quiver's
    /// kernels from their vectors (rows without one left out; ties by their place in `all`),
    /// with the distances.
    fn rank(&self, all: &RecordBatch) -> Result<(RecordBatch, Vec<f32>)> {
        let search = &self.search;
        let result_schema = all.schema();
        let vectors_column = all.column(result_schema.index_of(&search.column)?);
        let vectors = VectorArray::try_new(vectors_column, search.metric.function_name(), 1)?;
        let mut rows: Vec<(f32, usize)> = (0..all.num_rows())
            .filter_map(|i| {
                vectors
                    .row(i)
                    .map(|v| (distance(search.metric, &search.query, &v.to_f32()), i))
            })
            .collect();
        rows.sort_by(|a, b| {
            let (x, y) = if search.descending {
                (b.0, a.0)
            } else {
                (a.0, b.0)
            };
            x.total_cmp(&y).then(a.1.cmp(&b.1))
        });
        rows.truncate(search.k);
        let taken = take_record_batch(
            all,
            &UInt32Array::from(rows.iter().map(|(_, i)| *i as u32).collect::<Vec<_>>()),
        )?;
        Ok((taken, rows.into_iter().map(|(d, _)| d).collect()))
    }
}

/// The output schema of an index search that projects `fields` and, optionally, a distance
/// column named `distance`.
pub fn index_knn_schema(fields: &[Arc<Field>], distance: Option<&str>) -> SchemaRef {
    let mut out: Vec<Field> = fields.iter().map(|f| f.as_ref().clone()).collect();
    if let Some(name) = distance {
        out.push(Field::new(name, DataType::Float32, true));
    }
    Arc::new(Schema::new(out))
}

impl DisplayAs for IndexKnnExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.task.search;
        let order = if s.descending { "desc" } else { "asc" };
        let filter = self
            .task
            .filter
            .as_ref()
            .map(|e| format!(", filter={e}"))
            .unwrap_or_default();
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => write!(
                f,
                "IndexKnnExec: index={}, column={}, metric={}, k={}, order={order}, nprobes={}, ef={}, refine_factor={}{filter}",
                s.index,
                s.column,
                s.metric.name(),
                s.k,
                s.params.nprobes,
                s.params.ef,
                s.params.refine_factor
            ),
            DisplayFormatType::TreeRender => {
                write!(f, "index={}\nk={}", s.index, s.k)
            }
        }
    }
}

impl ExecutionPlan for IndexKnnExec {
    fn name(&self) -> &str {
        "IndexKnnExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            internal_err!("IndexKnnExec has no children")
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("IndexKnnExec has one partition, asked for {partition}");
        }
        let task = Arc::clone(&self.task);
        let metrics = Arc::clone(&self.metrics);
        let pool = Arc::clone(context.memory_pool());
        let stream = futures::stream::once(async move {
            let start = Instant::now();
            let batch = task.run(&metrics, &pool).await;
            metrics.add_elapsed_compute(start);
            if let Ok(b) = &batch {
                metrics.record_output(b);
            }
            batch
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.task.schema.clone(),
            stream,
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.to_metrics_set())
    }
}
