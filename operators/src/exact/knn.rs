//! [`KnnExec`]: exact k nearest neighbours of one query vector.
//!
//! Reads every partition of its input (each on its own task), computes the metric for each row
//! with the SIMD batch kernels, keeps a bounded per-partition top-k ([`TopK`]) and merges the
//! partitions into one sorted output partition. The result is exactly what
//! `ORDER BY <metric>(column, query) [DESC] LIMIT k` returns: the same rows, the same values,
//! NULL vectors placed as the sort places NULLs, ties in input order.
//!
//! Filters below the operator run before the search (pre-filtering), so a selective filter still
//! yields `k` rows when `k` rows pass it.
//!
//! Where its input reads a collection version directly ([`LoadedSource`]), the search reads the
//! collection's vectors loaded in memory instead, where they fit the budget of loaded indices
//! (see `loaded_vectors`), evaluates the scan's filter over columns loaded beside them, and
//! takes only the `k` rows found from the files; the result is the same. The
//! `loaded_vector_searches` metric counts these searches.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Float32Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::{internal_err, DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use futures::StreamExt;
use lance::Dataset;

use crate::distance::{key_to_value, ordering_keys, Metric};
use crate::error::OperatorError;
use crate::exact::loaded_search::search_loaded;
use crate::exact::topk::{RankKey, TopK};
use crate::vector::{FixedValues, VectorArray};

/// The search a [`KnnExec`] runs.
#[derive(Debug, Clone)]
pub struct KnnSpec {
    /// Index of the vector column in the input.
    pub column: usize,
    /// The query vector.
    pub query: Arc<[f32]>,
    /// The metric.
    pub metric: Metric,
    /// Rows wanted.
    pub k: usize,
    /// Order by the metric's value descending (nearest first for similarities).
    pub descending: bool,
    /// Rows with a NULL vector sort first (else last).
    pub nulls_first: bool,
}

/// What a [`KnnExec`]'s input reads, where it reads one collection version directly (its
/// columns, unchanged, and rows filtered by the scan's filter only): the search can read the
/// same rows from the collection's vectors loaded in memory.
#[derive(Debug, Clone)]
pub struct LoadedSource {
    /// The version read.
    pub dataset: Arc<Dataset>,
    /// The dataset column behind each column of the input.
    pub columns: Vec<String>,
    /// The filter the scan applies, if any.
    pub filter: Option<Expr>,
}

/// Exact k-NN over its input.
#[derive(Debug)]
pub struct KnnExec {
    /// Rows to search.
    input: Arc<dyn ExecutionPlan>,
    /// What to search for.
    spec: KnnSpec,
    /// What the input reads, where the search may read it from memory instead.
    loaded: Option<LoadedSource>,
    /// Name of the appended metric column, if the metric is part of the output.
    distance_column: Option<String>,
    /// Execution metrics.
    metrics: ExecutionPlanMetricsSet,
    /// Cached plan properties (one output partition).
    properties: Arc<PlanProperties>,
}

impl KnnExec {
    /// Searches `input` with `spec`; appends the metric as `distance_column` if given.
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
        spec: KnnSpec,
        distance_column: Option<String>,
    ) -> Result<Self> {
        let input_schema = input.schema();
        let Some(field) = input_schema.fields().get(spec.column) else {
            return internal_err!("KnnExec: no column {} in the input", spec.column);
        };
        let dim = match field.data_type() {
            DataType::FixedSizeList(item, dim)
                if matches!(item.data_type(), DataType::Float32 | DataType::Float16) =>
            {
                *dim as usize
            }
            other => {
                return Err(OperatorError::NotAVector {
                    function: "k-NN".to_string(),
                    position: 1,
                    data_type: other.clone(),
                }
                .into())
            }
        };
        if dim != spec.query.len() {
            return Err(OperatorError::DimensionMismatch {
                function: spec.metric.function_name().to_string(),
                left: dim,
                right: spec.query.len(),
            }
            .into());
        }
        let mut fields: Vec<Field> = input_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        if let Some(name) = &distance_column {
            fields.push(Field::new(name, DataType::Float32, true));
        }
        let schema = Arc::new(Schema::new(fields));
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Ok(Self {
            input,
            spec,
            loaded: None,
            distance_column,
            metrics: ExecutionPlanMetricsSet::new(),
            properties: Arc::new(properties),
        })
    }

    /// The search, reading `source` (what the input reads) from memory where it can.
    pub fn with_loaded_source(mut self, source: LoadedSource) -> Self {
        self.loaded = Some(source);
        self
    }

    /// The search.
    pub fn spec(&self) -> &KnnSpec {
        &self.spec
    }

    /// The input plan.
    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }

    /// The name of the appended metric column, if any.
    pub fn distance_column(&self) -> Option<&str> {
        self.distance_column.as_deref()
    }
}

impl DisplayAs for KnnExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let column = self.input.schema().field(self.spec.column).name().clone();
        let order = if self.spec.descending { "desc" } else { "asc" };
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => write!(
                f,
                "KnnExec: column={column}, metric={}, k={}, order={order}, dim={}",
                self.spec.metric.name(),
                self.spec.k,
                self.spec.query.len()
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

/// Counters a k-NN search updates (shared by its partitions' tasks).
#[derive(Clone)]
pub(crate) struct SearchCounters {
    /// Rows read.
    pub(crate) rows_scanned: Count,
    /// Distances computed.
    pub(crate) distance_evaluations: Count,
}

impl SearchCounters {
    /// The counters of output `partition` in `metrics`.
    pub(crate) fn new(metrics: &ExecutionPlanMetricsSet, partition: usize) -> Self {
        Self {
            rows_scanned: MetricBuilder::new(metrics).counter("rows_scanned", partition),
            distance_evaluations: MetricBuilder::new(metrics)
                .counter("distance_evaluations", partition),
        }
    }
}

/// A bound on ordering keys (see [`ordering_keys`]) past which a row of a batch without NULL
/// vectors cannot beat the current k-th best: such rows are skipped before their rank is built.
/// It is conservative: a row it keeps may still lose to the exact comparison of ranks, but a row
/// it rejects would have lost (a rank equal to the k-th best loses too, as it arrived later).
#[derive(Debug, Clone, Copy)]
enum KeyCutoff {
    /// Keys above the bound lose.
    Above(f32),
    /// Keys below the bound lose.
    Below(f32),
}

impl KeyCutoff {
    /// The cutoff for the k-th best `threshold`, or `None` where keys cannot be compared with it
    /// cheaply (a NULL or non-finite threshold, or the farthest rows by L2).
    fn new(metric: Metric, descending: bool, threshold: &RankKey) -> Option<Self> {
        let t = threshold.key.filter(|t| t.is_finite())?;
        // A row's rank is its value, negated when descending; the value is the key (cosine,
        // negative inner product), the negated key (inner product), or the key's root (L2).
        match (metric, descending) {
            (Metric::L2, false) => (t >= 0.0).then(|| Self::Above(square_rounded_up(t))),
            (Metric::L2, true) => None,
            (Metric::Cosine | Metric::NegativeInnerProduct, false)
            | (Metric::InnerProduct, true) => Some(Self::Above(t)),
            (Metric::Cosine | Metric::NegativeInnerProduct, true)
            | (Metric::InnerProduct, false) => Some(Self::Below(-t)),
        }
    }

    /// Whether a row with ordering key `key` cannot enter (NaN is never rejected here).
    fn rejects(self, key: f32) -> bool {
        match self {
            Self::Above(bound) => key > bound,
            Self::Below(bound) => key < bound,
        }
    }

    /// Whether every key of `keys` is rejected: one vectorised pass, without a branch per key.
    fn rejects_all(self, keys: &[f32]) -> bool {
        match self {
            Self::Above(bound) => keys.iter().fold(true, |all, key| all & (*key > bound)),
            Self::Below(bound) => keys.iter().fold(true, |all, key| all & (*key < bound)),
        }
    }
}

/// Keys [`KeyCutoff::rejects_all`] tests at once; most groups of a long scan are rejected whole.
const CUTOFF_GROUP: usize = 16;

/// The smallest `f32` at or above `t * t` (computed exactly): the square root of any larger key,
/// rounded to `f32`, is at least `t`.
fn square_rounded_up(t: f32) -> f32 {
    let exact = f64::from(t) * f64::from(t);
    let rounded = exact as f32;
    if f64::from(rounded) < exact {
        // The next f32 up: `rounded` is finite and non-negative here.
        f32::from_bits(rounded.to_bits() + 1)
    } else {
        rounded
    }
}

/// The top k of a search: the rows, and their places in the order.
pub(crate) type Found = (RecordBatch, Vec<RankKey>);

/// Searches one input partition; returns its top k.
pub(crate) async fn search_partition(
    mut stream: SendableRecordBatchStream,
    spec: KnnSpec,
    partition: usize,
    counters: SearchCounters,
    baseline: BaselineMetrics,
    reservation: MemoryReservation,
) -> Result<Found> {
    let mut topk = TopK::new(spec.k, stream.schema());
    let query_norm_sq = crate::distance::scalar::dot(&spec.query, &spec.query);
    let mut keys = Vec::new();
    let mut scratch = Vec::new();
    let mut ranks = Vec::new();
    let mut rows = Vec::new();
    let mut seq = (partition as u64) << 40;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let _timer = baseline.elapsed_compute().timer();
        let n = batch.num_rows();
        let column = batch.column(spec.column);
        let vectors = VectorArray::try_new(column, "k-NN", 1)?;
        let VectorArray::Fixed { values, dim, .. } = vectors else {
            return internal_err!("KnnExec: the vector column is not a FixedSizeList");
        };
        keys.resize(n, 0.0);
        match values {
            FixedValues::F32(v) => ordering_keys(
                spec.metric,
                &spec.query,
                query_norm_sq,
                &v[..n * dim],
                &mut keys,
                &mut scratch,
            ),
            FixedValues::F16(v) => ordering_keys(
                spec.metric,
                &spec.query,
                query_norm_sq,
                &v[..n * dim],
                &mut keys,
                &mut scratch,
            ),
        }
        let list = column.as_fixed_size_list();
        // Only the rows that beat the current k-th best are ranked and offered; most are ruled
        // out by their ordering key alone.
        let threshold = topk.threshold();
        let cutoff = threshold
            .filter(|_| list.logical_null_count() == 0)
            .and_then(|t| KeyCutoff::new(spec.metric, spec.descending, &t));
        ranks.clear();
        rows.clear();
        for (g, group) in keys.chunks(CUTOFF_GROUP).enumerate() {
            if cutoff.is_some_and(|c| c.rejects_all(group)) {
                continue;
            }
            for (j, key) in group.iter().enumerate() {
                if cutoff.is_some_and(|c| c.rejects(*key)) {
                    continue;
                }
                let i = g * CUTOFF_GROUP + j;
                let value = key_to_value(spec.metric, *key);
                let rank = RankKey {
                    key: list
                        .is_valid(i)
                        .then_some(if spec.descending { -value } else { value }),
                    seq: seq + i as u64,
                    nulls_first: spec.nulls_first,
                };
                if threshold.is_none_or(|t| rank < t) {
                    rows.push(i as u32);
                    ranks.push(rank);
                }
            }
        }
        seq += n as u64;
        counters.rows_scanned.add(n);
        counters
            .distance_evaluations
            .add(n - list.logical_null_count());
        topk.insert_rows(&batch, &rows, &ranks)?;
        reservation.try_resize(topk.memory_size())?;
    }
    topk.take_sorted()
}

/// Searches every partition of `input` (each on its own task) and merges their top k.
async fn search_input(
    input: &Arc<dyn ExecutionPlan>,
    spec: &KnnSpec,
    context: &Arc<TaskContext>,
    counters: &SearchCounters,
    baseline: &BaselineMetrics,
) -> Result<Found> {
    let partitions = input.output_partitioning().partition_count();
    let mut tasks = Vec::with_capacity(partitions);
    for p in 0..partitions {
        let stream = input.execute(p, Arc::clone(context))?;
        let reservation =
            MemoryConsumer::new(format!("KnnExec[{p}]")).register(context.memory_pool());
        tasks.push(SpawnedTask::spawn(search_partition(
            stream,
            spec.clone(),
            p,
            counters.clone(),
            baseline.clone(),
            reservation,
        )));
    }
    merge_searches(tasks, spec.k, input.schema(), context).await
}

/// The top `k` of the searches `tasks` (of rows of `schema`), merged.
pub(crate) async fn merge_searches(
    tasks: Vec<SpawnedTask<Result<Found>>>,
    k: usize,
    schema: SchemaRef,
    context: &Arc<TaskContext>,
) -> Result<Found> {
    let reservation = MemoryConsumer::new("KnnExec[merge]").register(context.memory_pool());
    let mut merged = TopK::new(k, schema);
    for task in tasks {
        let (batch, ranks) = task
            .join_unwind()
            .await
            .map_err(|e| DataFusionError::ExecutionJoin(Box::new(e)))??;
        merged.insert(&batch, &ranks)?;
        reservation.try_resize(merged.memory_size())?;
    }
    merged.take_sorted()
}

impl ExecutionPlan for KnnExec {
    fn name(&self) -> &str {
        "KnnExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return internal_err!("KnnExec takes one child, got {}", children.len());
        }
        let input = children.swap_remove(0);
        // What the input reads is known only of the input it was found in.
        let same_input = Arc::ptr_eq(&input, &self.input);
        let mut knn = Self::try_new(input, self.spec.clone(), self.distance_column.clone())?;
        knn.loaded = self.loaded.clone().filter(|_| same_input);
        Ok(Arc::new(knn))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("KnnExec has one output partition, asked for {partition}");
        }
        let counters = SearchCounters::new(&self.metrics, partition);
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let loaded_searches =
            MetricBuilder::new(&self.metrics).counter("loaded_vector_searches", partition);
        let (input, source) = (Arc::clone(&self.input), self.loaded.clone());
        let output_schema = self.schema();
        let spec = self.spec.clone();
        let with_distance = self.distance_column.is_some();
        let fut = async move {
            let found = match &source {
                Some(source) => {
                    let input_schema = input.schema();
                    search_loaded(source, &spec, &input_schema, &context, &counters, &baseline)
                        .await?
                }
                None => None,
            };
            let (batch, ranks) = match found {
                Some(found) => {
                    loaded_searches.add(1);
                    found
                }
                None => search_input(&input, &spec, &context, &counters, &baseline).await?,
            };
            let mut columns = batch.columns().to_vec();
            if with_distance {
                let values: Float32Array = ranks
                    .iter()
                    .map(|r| r.key.map(|k| if spec.descending { -k } else { k }))
                    .collect();
                columns.push(Arc::new(values));
            }
            let out = RecordBatch::try_new(output_schema, columns)?;
            baseline.record_output(out.num_rows());
            baseline.done();
            Ok(out)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            futures::stream::once(fut),
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::distance;
    use datafusion::arrow::array::{FixedSizeListArray, Float32Array, Int64Array};
    use datafusion::datasource::memory::MemorySourceConfig;
    use datafusion::physical_plan::collect;
    use datafusion::prelude::SessionContext;
    use rand::{Rng, SeedableRng};

    const DIM: usize = 5;

    fn table(
        rows: usize,
        partitions: usize,
        seed: u64,
    ) -> (Arc<dyn ExecutionPlan>, Vec<Option<Vec<f32>>>) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new(
                "v",
                DataType::FixedSizeList(
                    Arc::new(Field::new_list_field(DataType::Float32, true)),
                    DIM as i32,
                ),
                true,
            ),
        ]));
        let mut vectors = Vec::new();
        let mut parts = Vec::new();
        let per = rows.div_ceil(partitions);
        for p in 0..partitions {
            let ids: Vec<i64> = (p * per..((p + 1) * per).min(rows))
                .map(|i| i as i64)
                .collect();
            let mut values = Vec::new();
            let mut valid = Vec::new();
            for _ in &ids {
                // Coarse values make exact ties likely.
                let v: Vec<f32> = (0..DIM).map(|_| rng.random_range(0..4) as f32).collect();
                let null = rng.random_range(0..10) == 0;
                values.extend_from_slice(&v);
                valid.push(!null);
                vectors.push((!null).then_some(v));
            }
            let list = FixedSizeListArray::try_new(
                Arc::new(Field::new_list_field(DataType::Float32, true)),
                DIM as i32,
                Arc::new(Float32Array::from(values)),
                Some(valid.into()),
            )
            .unwrap();
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from(ids)), Arc::new(list)],
            )
            .unwrap();
            // Split each partition into small batches.
            let batches: Vec<RecordBatch> = (0..batch.num_rows())
                .step_by(7)
                .map(|o| batch.slice(o, 7.min(batch.num_rows() - o)))
                .collect();
            parts.push(batches);
        }
        let exec = MemorySourceConfig::try_new_exec(&parts, schema, None).unwrap();
        (exec, vectors)
    }

    async fn run(exec: KnnExec) -> Vec<(i64, Option<f32>)> {
        let ctx = SessionContext::new();
        let batches = collect(Arc::new(exec), ctx.task_ctx()).await.unwrap();
        let mut out = Vec::new();
        for b in batches {
            let ids = b
                .column(0)
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            let d = b
                .column(2)
                .as_primitive::<datafusion::arrow::datatypes::Float32Type>();
            for i in 0..b.num_rows() {
                out.push((ids.value(i), d.is_valid(i).then(|| d.value(i))));
            }
        }
        out
    }

    #[tokio::test]
    async fn matches_a_brute_force_sort_for_every_metric_and_order() {
        for (seed, partitions) in [(1u64, 1usize), (2, 3), (3, 4)] {
            let query: Vec<f32> = vec![1.0, 2.0, 0.0, 3.0, 1.0];
            for metric in [
                Metric::L2,
                Metric::Cosine,
                Metric::InnerProduct,
                Metric::NegativeInnerProduct,
            ] {
                for (descending, nulls_first) in [(false, false), (true, true)] {
                    for k in [1usize, 10, 1000] {
                        let (input, vectors) = table(300, partitions, seed);
                        let spec = KnnSpec {
                            column: 1,
                            query: query.clone().into(),
                            metric,
                            k,
                            descending,
                            nulls_first,
                        };
                        let exec = KnnExec::try_new(input, spec, Some("d".into())).unwrap();
                        let got = run(exec).await;
                        // Reference: sort (value, id) with NULLs placed as asked; ids are in
                        // input order, so id order is the tie order.
                        let mut reference: Vec<(i64, Option<f32>)> = vectors
                            .iter()
                            .enumerate()
                            .map(|(i, v)| {
                                (i as i64, v.as_ref().map(|v| distance(metric, &query, v)))
                            })
                            .collect();
                        reference.sort_by(|a, b| {
                            let key = |x: &Option<f32>| x.map(|v| if descending { -v } else { v });
                            let ord = match (key(&a.1), key(&b.1)) {
                                (Some(x), Some(y)) => x.total_cmp(&y),
                                (None, None) => std::cmp::Ordering::Equal,
                                (None, _) => {
                                    if nulls_first {
                                        std::cmp::Ordering::Less
                                    } else {
                                        std::cmp::Ordering::Greater
                                    }
                                }
                                (_, None) => {
                                    if nulls_first {
                                        std::cmp::Ordering::Greater
                                    } else {
                                        std::cmp::Ordering::Less
                                    }
                                }
                            };
                            ord.then(a.0.cmp(&b.0))
                        });
                        reference.truncate(k);
                        // Compare bit patterns so that NaN (cosine of a zero vector) equals NaN.
                        let bits = |v: Vec<(i64, Option<f32>)>| {
                            v.into_iter()
                                .map(|(i, d)| (i, d.map(f32::to_bits)))
                                .collect::<Vec<_>>()
                        };
                        assert_eq!(
                            bits(got),
                            bits(reference),
                            "{metric:?} desc={descending} k={k} parts={partitions}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_l2_cutoff_is_at_or_above_the_exact_square() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..100_000 {
            let t: f32 = rng.random_range(0.0..1000.0);
            let bound = square_rounded_up(t);
            let exact = f64::from(t) * f64::from(t);
            assert!(f64::from(bound) >= exact, "{t}: {bound} < {exact}");
            // ...and the smallest such f32, so the cutoff rejects all it can.
            if bound > 0.0 {
                let below = f32::from_bits(bound.to_bits() - 1);
                assert!(f64::from(below) < exact, "{t}: {below}");
            }
            // A key above the bound has a root of at least t: it cannot beat t.
            assert!(f32::from_bits(bound.to_bits() + 1).sqrt() >= t, "{t}");
        }
    }

    #[test]
    fn a_group_is_rejected_whole_exactly_when_each_key_is() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let special = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.5];
        for _ in 0..10_000 {
            let len = rng.random_range(0..=CUTOFF_GROUP);
            let keys: Vec<f32> = (0..len)
                .map(|_| match rng.random_range(0..8) {
                    0 => special[rng.random_range(0..special.len())],
                    _ => rng.random_range(-1.0..1.0),
                })
                .collect();
            for cutoff in [KeyCutoff::Above(0.5), KeyCutoff::Below(0.5)] {
                assert_eq!(
                    cutoff.rejects_all(&keys),
                    keys.iter().all(|k| cutoff.rejects(*k)),
                    "{cutoff:?} {keys:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn rejects_a_query_of_the_wrong_dimension() {
        let (input, _) = table(10, 1, 1);
        let spec = KnnSpec {
            column: 1,
            query: vec![1.0, 2.0].into(),
            metric: Metric::L2,
            k: 3,
            descending: false,
            nulls_first: false,
        };
        let err = KnnExec::try_new(input, spec, None).unwrap_err().to_string();
        assert!(err.contains("vector dimensions differ (5 and 2)"), "{err}");
    }

    #[tokio::test]
    async fn with_new_children_keeps_the_search_and_other_partitions_are_refused() {
        let (input, _) = table(20, 2, 1);
        let spec = KnnSpec {
            column: 1,
            query: vec![0.0; DIM].into(),
            metric: Metric::L2,
            k: 2,
            descending: false,
            nulls_first: false,
        };
        let exec = Arc::new(KnnExec::try_new(input.clone(), spec, None).unwrap());
        let again = exec.clone().with_new_children(vec![input]).unwrap();
        assert_eq!(again.schema(), exec.schema());
        let ctx = SessionContext::new();
        assert!(exec.execute(1, ctx.task_ctx()).is_err());
        let batches = collect(again, ctx.task_ctx()).await.unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
    }
}
