//! [`BatchKnnExec`]: exact k nearest neighbours of many query vectors in one pass over the rows.
//!
//! The queries (the first child) are read whole; the rows (the second child) are streamed once,
//! each partition on its own task. For every batch of rows the dot products of all queries with
//! all rows come from one blocked matrix product ([`gemm::dot_products`]), so the rows are read
//! from memory once for every block of queries instead of once per query. Each query keeps its
//! own bounded top-k ([`TopK`]); the partitions' selections are merged at the end.
//!
//! Invariants:
//! - each query gets the `k` rows nearest to it among the rows whose vector is not NULL (fewer
//!   when fewer exist), nearest first, ties in input order; a query whose vector is NULL gets no
//!   rows;
//! - L2 ranks by `|q|^2 + |r|^2 - 2 q.r`; the distances returned are recomputed exactly for the
//!   selected rows, which are then ordered by the exact value;
//! - the output is grouped by query, in the queries' input order, and starts with the query's
//!   0-based position (`query_index`) and the queries' other columns, prefixed `query_`.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, Float32Array, Int64Array, RecordBatch, UInt32Array,
};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::compute::{cast, concat_batches, take, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::{internal_err, DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{
    Distribution, EquivalenceProperties, OrderingRequirements, PhysicalSortExpr,
};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    collect, DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use futures::{StreamExt, TryStreamExt};

use crate::distance::{cosine_from_parts, distance, gemm, kernels, key_to_value, Metric};
use crate::error::OperatorError;
use crate::exact::knn::SearchCounters;
use crate::exact::topk::{RankKey, TopK};
use crate::vector::{coerced_vector_type, is_vector_type, FixedValues, VectorArray};

/// The first output column: the query's 0-based position among the queries.
pub const QUERY_INDEX_COLUMN: &str = "query_index";
/// The prefix of the queries' columns in the output.
pub const QUERY_COLUMN_PREFIX: &str = "query_";
/// The last output column: the metric's value.
pub const DISTANCE_COLUMN: &str = "distance";

/// Queries per block of the matrix product: bounds the dot-product buffer to
/// `QUERY_BLOCK x batch rows` values however many queries there are.
const QUERY_BLOCK: usize = 256;

/// The search a [`BatchKnnExec`] runs.
#[derive(Debug, Clone)]
pub struct BatchKnnSpec {
    /// Index of the query vector column in the queries.
    pub query_column: usize,
    /// Index of the vector column in the rows searched.
    pub column: usize,
    /// The metric; [`Metric::InnerProduct`] ranks the largest first.
    pub metric: Metric,
    /// Rows wanted per query.
    pub k: usize,
}

/// Exact k-NN of every query row of one input against the rows of another.
#[derive(Debug)]
pub struct BatchKnnExec {
    /// The query rows (read whole before the search starts).
    queries: Arc<dyn ExecutionPlan>,
    /// The rows searched (streamed once).
    input: Arc<dyn ExecutionPlan>,
    /// What to search for.
    spec: BatchKnnSpec,
    /// Dimension of the searched vector column.
    dim: usize,
    /// Execution metrics.
    metrics: ExecutionPlanMetricsSet,
    /// Cached plan properties (one output partition).
    properties: Arc<PlanProperties>,
}

fn knn_error(message: String) -> DataFusionError {
    OperatorError::InvalidArgument {
        function: "knn".to_string(),
        message,
    }
    .into()
}

/// The dimension of the vector column `column` of `schema` (a `FixedSizeList` of `Float32` or
/// `Float16`, as collections store vectors).
fn stored_dimension(schema: &Schema, column: usize) -> Result<usize> {
    let Some(field) = schema.fields().get(column) else {
        return internal_err!("BatchKnnExec: no column {column} in the rows searched");
    };
    match field.data_type() {
        DataType::FixedSizeList(item, dim)
            if matches!(item.data_type(), DataType::Float32 | DataType::Float16) =>
        {
            Ok(*dim as usize)
        }
        other => Err(OperatorError::NotAVector {
            function: "knn".to_string(),
            position: 2,
            data_type: other.clone(),
        }
        .into()),
    }
}

/// The output schema of a batched search of `queries` against `input`: `query_index`, the
/// queries' columns other than the query vector (prefixed `query_`), the searched rows' columns,
/// then `distance`. Two output columns with one name are an error.
pub fn batch_knn_schema(
    queries: &Schema,
    input: &Schema,
    spec: &BatchKnnSpec,
) -> Result<SchemaRef> {
    let dim = stored_dimension(input, spec.column)?;
    let Some(query_field) = queries.fields().get(spec.query_column) else {
        return internal_err!(
            "BatchKnnExec: no column {} in the queries",
            spec.query_column
        );
    };
    match query_field.data_type() {
        DataType::FixedSizeList(_, n) if *n as usize != dim => {
            return Err(OperatorError::DimensionMismatch {
                function: "knn".to_string(),
                left: dim,
                right: *n as usize,
            }
            .into())
        }
        t if is_vector_type(t) => {}
        other => {
            return Err(OperatorError::NotAVector {
                function: "knn".to_string(),
                position: 3,
                data_type: other.clone(),
            }
            .into())
        }
    }
    let mut fields = vec![Field::new(QUERY_INDEX_COLUMN, DataType::Int64, false)];
    fields.extend(
        queries
            .fields()
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != spec.query_column)
            .map(|(_, f)| {
                f.as_ref()
                    .clone()
                    .with_name(format!("{QUERY_COLUMN_PREFIX}{}", f.name()))
            }),
    );
    fields.extend(input.fields().iter().map(|f| f.as_ref().clone()));
    fields.push(Field::new(DISTANCE_COLUMN, DataType::Float32, false));
    for (i, f) in fields.iter().enumerate() {
        if fields[..i].iter().any(|g| g.name() == f.name()) {
            return Err(knn_error(format!(
                "the result would have two columns named '{}'; rename one of them (query \
                 columns are prefixed '{QUERY_COLUMN_PREFIX}', and '{QUERY_INDEX_COLUMN}' and \
                 '{DISTANCE_COLUMN}' are knn's own)",
                f.name()
            )));
        }
    }
    Ok(Arc::new(Schema::new(fields)))
}

impl BatchKnnExec {
    /// Searches `input` for the `spec.k` nearest rows of every row of `queries`.
    pub fn try_new(
        queries: Arc<dyn ExecutionPlan>,
        input: Arc<dyn ExecutionPlan>,
        spec: BatchKnnSpec,
    ) -> Result<Self> {
        let schema = batch_knn_schema(&queries.schema(), &input.schema(), &spec)?;
        let dim = stored_dimension(&input.schema(), spec.column)?;
        // Rows come query by query, nearest first: an `ORDER BY query_index, distance` above
        // needs no sort.
        let sorted_by = |name: &str, descending: bool| -> Result<PhysicalSortExpr> {
            Ok(PhysicalSortExpr::new(
                Arc::new(Column::new_with_schema(name, &schema)?),
                SortOptions {
                    descending,
                    nulls_first: false,
                },
            ))
        };
        let ordering = [
            sorted_by(QUERY_INDEX_COLUMN, false)?,
            sorted_by(DISTANCE_COLUMN, spec.metric.is_similarity())?,
        ];
        let properties = PlanProperties::new(
            EquivalenceProperties::new_with_orderings(schema, [ordering]),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Ok(Self {
            queries,
            input,
            spec,
            dim,
            metrics: ExecutionPlanMetricsSet::new(),
            properties: Arc::new(properties),
        })
    }

    /// The search.
    pub fn spec(&self) -> &BatchKnnSpec {
        &self.spec
    }
}

impl DisplayAs for BatchKnnExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let column = self.input.schema().field(self.spec.column).name().clone();
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => write!(
                f,
                "BatchKnnExec: column={column}, metric={}, k={}, dim={}",
                self.spec.metric.name(),
                self.spec.k,
                self.dim
            ),
            DisplayFormatType::TreeRender => write!(
                f,
                "column={column}\nmetric={}\nk={}",
                self.spec.metric.name(),
                self.spec.k
            ),
        }
    }
}

/// The query vectors, contiguous, with where each came from.
struct QuerySet {
    /// Every query row, in input order.
    batch: RecordBatch,
    /// The position in `batch` of each query searched (those whose vector is not NULL).
    positions: Vec<usize>,
    /// `positions.len() * dim` values.
    values: Vec<f32>,
    /// Squared norm of each searched query.
    norms: Vec<f32>,
    /// The vectors' dimension.
    dim: usize,
}

impl QuerySet {
    fn try_new(batch: RecordBatch, column: usize, dim: usize) -> Result<Self> {
        let array = batch.column(column);
        let array: ArrayRef = match coerced_vector_type(array.data_type()) {
            Some(t) if &t != array.data_type() => cast(array, &t)?,
            _ => array.clone(),
        };
        let vectors = VectorArray::try_new(&array, "knn", 3)?;
        let mut positions = Vec::new();
        let mut values = Vec::with_capacity(vectors.len() * dim);
        for i in 0..vectors.len() {
            let Some(row) = vectors.row(i) else {
                continue;
            };
            if row.len() != dim {
                return Err(OperatorError::DimensionMismatch {
                    function: "knn".to_string(),
                    left: dim,
                    right: row.len(),
                }
                .into());
            }
            let row = row.to_f32();
            if row.iter().any(|v| !v.is_finite()) {
                return Err(OperatorError::NonFinite {
                    context: "knn: query vector".to_string(),
                    row: Some(i + 1),
                }
                .into());
            }
            positions.push(i);
            values.extend_from_slice(&row);
        }
        let norms = values
            .chunks_exact(dim.max(1))
            .map(|q| (kernels().dot)(q, q))
            .collect();
        Ok(Self {
            batch,
            positions,
            values,
            norms,
            dim,
        })
    }

    fn len(&self) -> usize {
        self.positions.len()
    }

    fn query(&self, i: usize, dim: usize) -> &[f32] {
        &self.values[i * dim..(i + 1) * dim]
    }
}

/// Appends to `rows` and `keys` the rows whose ranking key (`key(row, dot)`, smaller is
/// nearer; see [`crate::distance::ordering_keys`] for the single-query form) is below `limit`
/// (every row when there is none yet). The metric is fixed per call, so this loop is a compare
/// per row.
#[inline]
fn candidates(
    dots: &[f32],
    limit: Option<f32>,
    rows: &mut Vec<u32>,
    keys: &mut Vec<f32>,
    key: impl Fn(usize, f32) -> f32,
) {
    for (j, dot) in dots.iter().enumerate() {
        let key = key(j, *dot);
        if limit.is_none_or(|limit| key.total_cmp(&limit).is_lt()) {
            rows.push(j as u32);
            keys.push(key);
        }
    }
}

/// Searches one partition of the rows for every query; returns each query's top k.
async fn search_partition(
    mut stream: SendableRecordBatchStream,
    queries: Arc<QuerySet>,
    spec: BatchKnnSpec,
    partition: usize,
    counters: SearchCounters,
    baseline: BaselineMetrics,
    reservation: MemoryReservation,
) -> Result<Vec<(RecordBatch, Vec<RankKey>)>> {
    let m = queries.len();
    let dim = queries.dim;
    let mut selections: Vec<TopK> = (0..m).map(|_| TopK::new(spec.k, stream.schema())).collect();
    let k = kernels();
    let needs_norms = matches!(spec.metric, Metric::L2 | Metric::Cosine);
    let (mut widened, mut row_norms, mut dots) = (Vec::new(), Vec::new(), Vec::new());
    let (mut rows, mut keys, mut ranks) = (Vec::new(), Vec::new(), Vec::new());
    let mut seq = (partition as u64) << 40;
    let mut held: usize = selections.iter().map(TopK::memory_size).sum();
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let n = batch.num_rows();
        if n == 0 || m == 0 {
            continue;
        }
        let _timer = baseline.elapsed_compute().timer();
        let column = batch.column(spec.column);
        let VectorArray::Fixed { array, values, .. } = VectorArray::try_new(column, "knn", 2)?
        else {
            return internal_err!("BatchKnnExec: the vector column is not a FixedSizeList");
        };
        let values: &[f32] = match values {
            FixedValues::F32(v) => &v[..n * dim],
            FixedValues::F16(v) => {
                widened.clear();
                widened.extend(v[..n * dim].iter().map(|x| x.to_f32()));
                &widened
            }
        };
        if needs_norms {
            row_norms.resize(n, 0.0);
            (k.norm_squared_batch)(&values[..dim], values, &mut row_norms);
        }
        let nulls = array.nulls();
        for block in (0..m).step_by(QUERY_BLOCK) {
            let block_len = QUERY_BLOCK.min(m - block);
            dots.resize(block_len * n, 0.0);
            gemm::dot_products(
                k.dot_tile,
                &queries.values[block * dim..(block + block_len) * dim],
                values,
                dim,
                &mut dots,
            );
            for (q, row_dots) in dots.chunks_exact(n).enumerate() {
                let query = block + q;
                let selection = &mut selections[query];
                // Every row held has an earlier arrival than this batch's rows, so a row enters
                // exactly when its key is below the threshold's (ties go to the earlier row).
                let limit = selection.threshold().and_then(|t| t.key);
                let query_norm = queries.norms[query];
                rows.clear();
                keys.clear();
                let norms = if needs_norms {
                    &row_norms[..n]
                } else {
                    &[][..]
                };
                match spec.metric {
                    Metric::L2 => candidates(row_dots, limit, &mut rows, &mut keys, |j, dot| {
                        (query_norm + norms[j] - 2.0 * dot).max(0.0)
                    }),
                    Metric::Cosine => {
                        candidates(row_dots, limit, &mut rows, &mut keys, |j, dot| {
                            cosine_from_parts(dot, query_norm, norms[j])
                        })
                    }
                    Metric::InnerProduct | Metric::NegativeInnerProduct => {
                        candidates(row_dots, limit, &mut rows, &mut keys, |_, dot| -dot)
                    }
                }
                if let Some(nulls) = nulls {
                    let mut kept = 0;
                    for i in 0..rows.len() {
                        if nulls.is_valid(rows[i] as usize) {
                            rows[kept] = rows[i];
                            keys[kept] = keys[i];
                            kept += 1;
                        }
                    }
                    rows.truncate(kept);
                    keys.truncate(kept);
                }
                ranks.clear();
                ranks.extend(rows.iter().zip(&keys).map(|(j, key)| RankKey {
                    key: Some(*key),
                    seq: seq + u64::from(*j),
                    nulls_first: false,
                }));
                // Only this batch's k best can enter: copy no more rows than that.
                if ranks.len() > spec.k && spec.k > 0 {
                    ranks.select_nth_unstable(spec.k - 1);
                    ranks.truncate(spec.k);
                    rows.clear();
                    rows.extend(ranks.iter().map(|r| (r.seq - seq) as u32));
                }
                // Counted as each query's selection grows, so that one batch entering every
                // query's selection cannot pass the limit before it is checked.
                let before = selection.memory_size();
                selection.insert_rows(&batch, &rows, &ranks)?;
                held = held - before + selection.memory_size();
                reservation.try_resize(held)?;
            }
        }
        let valid = n - array.logical_null_count();
        counters.rows_scanned.add(n);
        counters.distance_evaluations.add(valid * m);
        seq += n as u64;
    }
    selections.iter_mut().map(TopK::take_sorted).collect()
}

/// One query's rows, nearest first, with the metric's values: exact for L2 (recomputed from the
/// vectors and re-sorted), the ranking key's value otherwise.
fn finish_selection(
    batch: RecordBatch,
    ranks: &[RankKey],
    query: &[f32],
    spec: &BatchKnnSpec,
) -> Result<(RecordBatch, Vec<f32>)> {
    let values: Vec<f32> = ranks
        .iter()
        .map(|r| key_to_value(spec.metric, r.key.unwrap_or(f32::NAN)))
        .collect();
    if spec.metric != Metric::L2 {
        return Ok((batch, values));
    }
    let column = batch.column(spec.column);
    let vectors = VectorArray::try_new(column, "knn", 2)?;
    let mut exact: Vec<(f32, u64, u32)> = Vec::with_capacity(ranks.len());
    for (i, rank) in ranks.iter().enumerate() {
        let Some(row) = vectors.row(i) else {
            return internal_err!("BatchKnnExec: a selected row has a NULL vector");
        };
        exact.push((
            distance(Metric::L2, query, &row.to_f32()),
            rank.seq,
            i as u32,
        ));
    }
    exact.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let order = UInt32Array::from(exact.iter().map(|e| e.2).collect::<Vec<_>>());
    let batch = take_record_batch(&batch, &order)?;
    Ok((batch, exact.into_iter().map(|e| e.0).collect()))
}

impl BatchKnnExec {
    /// The output rows of query number `query` (a position in `queries.positions`).
    fn output_batch(
        schema: &SchemaRef,
        queries: &QuerySet,
        query: usize,
        batch: &RecordBatch,
        values: Vec<f32>,
        query_column: usize,
    ) -> Result<RecordBatch> {
        let position = queries.positions[query];
        let n = batch.num_rows();
        let repeat = UInt32Array::from(vec![position as u32; n]);
        let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(vec![position as i64; n]))];
        for (i, c) in queries.batch.columns().iter().enumerate() {
            if i != query_column {
                columns.push(take(c.as_ref(), &repeat, None)?);
            }
        }
        columns.extend(batch.columns().iter().cloned());
        columns.push(Arc::new(Float32Array::from(values)));
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }
}

impl ExecutionPlan for BatchKnnExec {
    fn name(&self) -> &str {
        "BatchKnnExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.queries, &self.input]
    }

    /// The queries are read as one partition, so that `query_index` is their position in
    /// the queries' own order; the rows may come in any number of partitions.
    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![
            Distribution::SinglePartition,
            Distribution::UnspecifiedDistribution,
        ]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false, true]
    }

    /// An order the queries come in (`(SELECT ... ORDER BY ...)`) is kept, so `query_index`
    /// follows it.
    fn required_input_ordering(&self) -> Vec<Option<OrderingRequirements>> {
        let queries = self
            .queries
            .output_ordering()
            .cloned()
            .map(OrderingRequirements::from);
        vec![queries, None]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true, false]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [queries, input] = <[_; 2]>::try_from(children).map_err(|c| {
            DataFusionError::Internal(format!("BatchKnnExec takes two children, got {}", c.len()))
        })?;
        Ok(Arc::new(Self::try_new(queries, input, self.spec.clone())?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("BatchKnnExec has one output partition, asked for {partition}");
        }
        let counters = SearchCounters::new(&self.metrics, partition);
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let (queries, input, spec, dim) = (
            self.queries.clone(),
            self.input.clone(),
            self.spec.clone(),
            self.dim,
        );
        let schema = self.schema();
        let fut = async move {
            let query_schema = queries.schema();
            let batches = collect(queries, context.clone()).await?;
            let batch = concat_batches(&query_schema, &batches)?;
            drop(batches);
            // The queries and the merged selections, held until the output is built.
            let reservation =
                MemoryConsumer::new("BatchKnnExec[queries]").register(context.memory_pool());
            reservation.try_grow(batch.get_array_memory_size())?;
            let queries = Arc::new(QuerySet::try_new(batch, spec.query_column, dim)?);
            let queries_size = reservation.size();
            let partitions = input.output_partitioning().partition_count();
            let mut tasks = Vec::with_capacity(partitions);
            for p in 0..partitions {
                let partition_reservation = MemoryConsumer::new(format!("BatchKnnExec[{p}]"))
                    .register(context.memory_pool());
                tasks.push(SpawnedTask::spawn(search_partition(
                    input.execute(p, context.clone())?,
                    queries.clone(),
                    spec.clone(),
                    p,
                    counters.clone(),
                    baseline.clone(),
                    partition_reservation,
                )));
            }
            let mut merged: Vec<TopK> = (0..queries.len())
                .map(|_| TopK::new(spec.k, input.schema()))
                .collect();
            for task in tasks {
                let selections = task
                    .join_unwind()
                    .await
                    .map_err(|e| DataFusionError::ExecutionJoin(Box::new(e)))??;
                for (selection, (batch, ranks)) in merged.iter_mut().zip(selections) {
                    selection.insert(&batch, &ranks)?;
                }
                reservation.try_resize(
                    queries_size + merged.iter().map(TopK::memory_size).sum::<usize>(),
                )?;
            }
            let mut out = Vec::with_capacity(merged.len());
            for (query, selection) in merged.iter_mut().enumerate() {
                let (batch, ranks) = selection.take_sorted()?;
                let (batch, values) =
                    finish_selection(batch, &ranks, queries.query(query, dim), &spec)?;
                let output = Self::output_batch(
                    &schema,
                    &queries,
                    query,
                    &batch,
                    values,
                    spec.query_column,
                )?;
                baseline.record_output(output.num_rows());
                out.push(Ok(output));
            }
            baseline.done();
            Ok::<_, DataFusionError>(futures::stream::iter(out))
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            futures::stream::once(fut).try_flatten(),
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, FixedSizeListArray, StringArray};
    use datafusion::arrow::datatypes::{Float32Type, Int64Type};
    use datafusion::datasource::memory::MemorySourceConfig;
    use datafusion::prelude::SessionContext;
    use rand::{Rng, SeedableRng};

    fn vector_field(name: &str, dim: usize) -> Field {
        Field::new(
            name,
            DataType::FixedSizeList(
                Arc::new(Field::new_list_field(DataType::Float32, true)),
                dim as i32,
            ),
            true,
        )
    }

    fn vectors(rows: &[Option<Vec<f32>>], dim: usize) -> ArrayRef {
        let values: Vec<f32> = rows
            .iter()
            .flat_map(|r| r.clone().unwrap_or_else(|| vec![0.0; dim]))
            .collect();
        let valid: Vec<bool> = rows.iter().map(Option::is_some).collect();
        Arc::new(
            FixedSizeListArray::try_new(
                Arc::new(Field::new_list_field(DataType::Float32, true)),
                dim as i32,
                Arc::new(Float32Array::from(values)),
                Some(valid.into()),
            )
            .unwrap(),
        )
    }

    /// `rows` rows `(id, v)` of coarse random vectors (ties likely, some NULL), in `partitions`
    /// partitions of small batches.
    fn rows(
        rows: usize,
        dim: usize,
        partitions: usize,
        seed: u64,
    ) -> (Arc<dyn ExecutionPlan>, Vec<Option<Vec<f32>>>) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            vector_field("v", dim),
        ]));
        let all: Vec<Option<Vec<f32>>> = (0..rows)
            .map(|_| {
                (rng.random_range(0..10) != 0)
                    .then(|| (0..dim).map(|_| rng.random_range(0..4) as f32).collect())
            })
            .collect();
        let per = rows.div_ceil(partitions);
        let parts: Vec<Vec<RecordBatch>> = (0..partitions)
            .map(|p| {
                let range = p * per..((p + 1) * per).min(rows);
                let ids: Vec<i64> = range.clone().map(|i| i as i64).collect();
                let batch = RecordBatch::try_new(
                    schema.clone(),
                    vec![Arc::new(Int64Array::from(ids)), vectors(&all[range], dim)],
                )
                .unwrap();
                (0..batch.num_rows())
                    .step_by(11)
                    .map(|o| batch.slice(o, 11.min(batch.num_rows() - o)))
                    .collect()
            })
            .collect();
        (
            MemorySourceConfig::try_new_exec(&parts, schema, None).unwrap(),
            all,
        )
    }

    fn queries(list: &[Option<Vec<f32>>], dim: usize) -> Arc<dyn ExecutionPlan> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            vector_field("q", dim),
        ]));
        let names: Vec<String> = (0..list.len()).map(|i| format!("q{i}")).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(names)), vectors(list, dim)],
        )
        .unwrap();
        MemorySourceConfig::try_new_exec(&[vec![batch]], schema, None).unwrap()
    }

    /// `(query_index, query_name, id, distance)` of every output row.
    async fn run(exec: BatchKnnExec) -> Vec<(i64, String, i64, f32)> {
        let batches = collect(Arc::new(exec), SessionContext::new().task_ctx())
            .await
            .unwrap();
        let mut out = Vec::new();
        for b in batches {
            assert_eq!(b.schema().field(0).name(), QUERY_INDEX_COLUMN);
            let q = b.column(0).as_primitive::<Int64Type>();
            let name = b.column(1).as_string::<i32>();
            let id = b.column(2).as_primitive::<Int64Type>();
            let d = b.column(4).as_primitive::<Float32Type>();
            for i in 0..b.num_rows() {
                out.push((
                    q.value(i),
                    name.value(i).to_string(),
                    id.value(i),
                    d.value(i),
                ));
            }
        }
        out
    }

    #[tokio::test]
    async fn every_query_gets_what_a_brute_force_sort_gives() {
        let dim = 7;
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let mut list: Vec<Option<Vec<f32>>> = (0..300)
            .map(|_| Some((0..dim).map(|_| rng.random_range(-1.0..4.0)).collect()))
            .collect();
        list[3] = None;
        for metric in [
            Metric::L2,
            Metric::Cosine,
            Metric::InnerProduct,
            Metric::NegativeInnerProduct,
        ] {
            for (k, partitions) in [(1usize, 1usize), (5, 3), (500, 2)] {
                let (input, stored) = rows(400, dim, partitions, 3);
                let spec = BatchKnnSpec {
                    query_column: 1,
                    column: 1,
                    metric,
                    k,
                };
                let exec = BatchKnnExec::try_new(queries(&list, dim), input, spec).unwrap();
                let got = run(exec).await;
                let mut want = Vec::new();
                for (qi, query) in list.iter().enumerate() {
                    let Some(query) = query else { continue };
                    let mut reference: Vec<(f32, i64)> = stored
                        .iter()
                        .enumerate()
                        .filter_map(|(i, v)| {
                            v.as_ref().map(|v| (distance(metric, query, v), i as i64))
                        })
                        .collect();
                    let sign = if metric.is_similarity() { -1.0 } else { 1.0 };
                    reference
                        .sort_by(|a, b| (sign * a.0).total_cmp(&(sign * b.0)).then(a.1.cmp(&b.1)));
                    want.extend(
                        reference
                            .into_iter()
                            .take(k)
                            .map(|(d, id)| (qi as i64, format!("q{qi}"), id, d)),
                    );
                }
                assert_eq!(got.len(), want.len(), "{metric:?} k={k}");
                for (g, w) in got.iter().zip(&want) {
                    assert_eq!((g.0, &g.1), (w.0, &w.1), "{metric:?} k={k}");
                    // Ties may be resolved by the blocked product's rounding; the value at each
                    // rank must match the reference's.
                    let close = (g.3 - w.3).abs() <= 1e-4 * (1.0 + w.3.abs())
                        || (g.3.is_nan() && w.3.is_nan());
                    assert!(close, "{metric:?} k={k}: {g:?} vs {w:?}");
                }
                if metric == Metric::L2 {
                    // Exact distances: the ids agree too, ties in input order.
                    let ids = |v: &[(i64, String, i64, f32)]| {
                        v.iter().map(|r| (r.0, r.2)).collect::<Vec<_>>()
                    };
                    assert_eq!(ids(&got), ids(&want), "L2 k={k}");
                }
            }
        }
    }

    #[tokio::test]
    async fn rejects_query_vectors_of_another_dimension_or_with_nan() {
        let (input, _) = rows(20, 4, 1, 1);
        let spec = BatchKnnSpec {
            query_column: 1,
            column: 1,
            metric: Metric::L2,
            k: 3,
        };
        let err = BatchKnnExec::try_new(
            queries(&[Some(vec![1.0; 3])], 3),
            input.clone(),
            spec.clone(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("knn: vector dimensions differ (4 and 3)"),
            "{err}"
        );
        let exec = BatchKnnExec::try_new(
            queries(&[Some(vec![1.0; 4]), Some(vec![f32::NAN; 4])], 4),
            input,
            spec,
        )
        .unwrap();
        let err = collect(Arc::new(exec), SessionContext::new().task_ctx())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "knn: query vector: vector holds a non-finite value (NaN or infinity) at row 2"
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn with_new_children_keeps_the_search_and_other_partitions_are_refused() {
        let (input, _) = rows(30, 4, 2, 1);
        let spec = BatchKnnSpec {
            query_column: 1,
            column: 1,
            metric: Metric::Cosine,
            k: 2,
        };
        let q = queries(&[Some(vec![1.0; 4]), Some(vec![0.0, 1.0, 0.0, 1.0])], 4);
        let exec = Arc::new(BatchKnnExec::try_new(q.clone(), input.clone(), spec).unwrap());
        let again = exec
            .clone()
            .with_new_children(vec![q, input.clone()])
            .unwrap();
        assert_eq!(again.schema(), exec.schema());
        assert!(exec.clone().with_new_children(vec![input]).is_err());
        let ctx = SessionContext::new();
        assert!(exec.execute(1, ctx.task_ctx()).is_err());
        let batches = collect(again, ctx.task_ctx()).await.unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 4);
    }
}
