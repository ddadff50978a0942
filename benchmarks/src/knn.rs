//! The k-NN plans the `knn` bench and the comparison harness time: in-memory rows, one query
//! through `KnnExec`, many through `BatchKnnExec`, one thread.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, Float16Array, Float32Array, Int64Array,
    RecordBatch,
};
use arrow::datatypes::{DataType, Field, Float32Type, Int64Type, Schema};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::{collect, ExecutionPlan};
use datafusion::prelude::{SessionConfig, SessionContext};
use half::f16;
use lance::index::DatasetIndexExt;
use lance::index::DatasetIndexInternalExt;
use lance::Dataset;
use lance_index::metrics::NoOpMetricsCollector;
use lance_index::vector::VectorIndex;
use lance_linalg::distance::DistanceType;
use quiver_operators::distance::{ordering_keys, Metric};
use quiver_operators::exact::batch_knn::{BatchKnnExec, BatchKnnSpec};
use quiver_operators::exact::knn::{KnnExec, KnnSpec};
use quiver_operators::index::direct::{index_query, nearest_in_index};
use quiver_operators::index::index_knn::{IndexKnnExec, IndexKnnTask};
use quiver_operators::index::search::{IndexSearch, IndexSearchParams};
use quiver_planner::config::QuiverConfig;
use quiver_planner::QuiverSession;

use crate::memory::huge_page_vec;
use crate::vector_array;

/// Rows per in-memory batch (DataFusion's default batch size).
pub const BATCH_ROWS: usize = 8192;

/// A one-partition in-memory plan `(id, v)` over `vectors` (ids from 0), in batches of
/// [`BATCH_ROWS`].
pub fn memory_plan(vectors: ArrayRef) -> Arc<dyn ExecutionPlan> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("v", vectors.data_type().clone(), true),
    ]));
    let n = vectors.len();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(Int64Array::from_iter_values(0..n as i64)), vectors],
    )
    .expect("batch");
    let batches: Vec<RecordBatch> = (0..n)
        .step_by(BATCH_ROWS)
        .map(|o| batch.slice(o, BATCH_ROWS.min(n - o)))
        .collect();
    MemorySourceConfig::try_new_exec(&[batches], schema, None).expect("plan")
}

/// `values` (row-major, `dim` per row) stored as `f16`, in memory advised for huge pages (see
/// [`huge_page_vec`]).
pub fn f16_vector_array(values: &[f32], dim: usize) -> ArrayRef {
    let halves: Vec<f16> = values.iter().map(|v| f16::from_f32(*v)).collect();
    Arc::new(FixedSizeListArray::new(
        Arc::new(Field::new_list_field(DataType::Float16, true)),
        dim as i32,
        Arc::new(Float16Array::new(huge_page_vec(&halves).into(), None)),
        None,
    ))
}

/// `values` (row-major, `dim` per row) as `f32`, in memory advised for huge pages (see
/// [`huge_page_vec`]).
pub fn f32_vector_array(values: &[f32], dim: usize) -> ArrayRef {
    Arc::new(vector_array(huge_page_vec(values), dim))
}

/// The values of a `FixedSizeList<Float32>` array such as [`f32_vector_array`] makes.
pub fn f32_values(array: &ArrayRef) -> &[f32] {
    array
        .as_fixed_size_list()
        .values()
        .as_primitive::<Float32Type>()
        .values()
}

/// Exact L2 k-NN of `query` over `input`'s column `v`.
pub fn single_query(
    input: &Arc<dyn ExecutionPlan>,
    query: &[f32],
    k: usize,
) -> Arc<dyn ExecutionPlan> {
    let spec = KnnSpec {
        column: 1,
        query: query.to_vec().into(),
        metric: Metric::L2,
        k,
        descending: false,
        nulls_first: false,
    };
    Arc::new(KnnExec::try_new(input.clone(), spec, Some("d".into())).expect("knn"))
}

/// Exact L2 k-NN of every row of `queries` (row-major, `dim` per row) over `input`'s column
/// `v`.
pub fn batch_query(
    input: &Arc<dyn ExecutionPlan>,
    queries: &[f32],
    dim: usize,
    k: usize,
) -> Arc<dyn ExecutionPlan> {
    let vectors = vector_array(queries.to_vec(), dim);
    let schema = Arc::new(Schema::new(vec![Field::new(
        "q",
        vectors.data_type().clone(),
        true,
    )]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(vectors)]).expect("batch");
    let queries = MemorySourceConfig::try_new_exec(&[vec![batch]], schema, None).expect("plan");
    let spec = BatchKnnSpec {
        query_column: 0,
        column: 1,
        metric: Metric::L2,
        k,
    };
    Arc::new(BatchKnnExec::try_new(queries, input.clone(), spec).expect("batch knn"))
}

/// A context that runs plans on one thread.
pub fn single_thread() -> SessionContext {
    SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1))
}

/// Runs `plan` to the end.
pub async fn run(plan: &Arc<dyn ExecutionPlan>, ctx: &SessionContext) -> Vec<RecordBatch> {
    run_in(plan, ctx.task_ctx()).await
}

/// Runs `plan` to the end in `task`: for timing many small plans, whose time would otherwise
/// be mostly the copy of the session's function registries that [`SessionContext::task_ctx`]
/// makes for each.
pub async fn run_in(plan: &Arc<dyn ExecutionPlan>, task: Arc<TaskContext>) -> Vec<RecordBatch> {
    collect(plan.clone(), task).await.expect("run")
}

/// The values of the `Int64` column `column` of `batches`, in order.
pub fn int64_column(batches: &[RecordBatch], column: usize) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column(column)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect()
}

/// A sum over every value in 16 independent lanes: the time to merely read the vectors, the
/// floor of an exact scan. Compiled for AVX-512 (or AVX2) where the CPU has it, as the scan's
/// kernels are; the baseline x86-64 build of the same loop reads a third slower.
pub fn read_all(values: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { read_all_avx512(values) };
        }
        if is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { read_all_avx2(values) };
        }
    }
    sum_lanes(values)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn read_all_avx512(values: &[f32]) -> f32 {
    sum_lanes(values)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn read_all_avx2(values: &[f32]) -> f32 {
    sum_lanes(values)
}

/// The sum of `values` in 16 lanes (inlined into each compiled variant of [`read_all`]).
#[inline(always)]
fn sum_lanes(values: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    for chunk in values.chunks_exact(16) {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    acc.iter().sum()
}

/// The time the distance kernel alone takes: the L2 ordering keys of every row of `values`
/// (row-major, `dim` per row) against `query`, in batches of [`BATCH_ROWS`] as `KnnExec` computes
/// them, without the selection of the k best.
pub fn kernel_only(query: &[f32], values: &[f32], dim: usize) -> f32 {
    let mut keys = vec![0.0; BATCH_ROWS];
    let mut scratch = Vec::new();
    let mut first = 0.0;
    for batch in values.chunks(BATCH_ROWS * dim) {
        let n = batch.len() / dim;
        ordering_keys(Metric::L2, query, 0.0, batch, &mut keys[..n], &mut scratch);
        first += keys[0];
    }
    first
}

/// `SELECT id FROM docs ORDER BY embedding <-> [query] LIMIT k`: the k-NN a user writes.
pub fn knn_sql(query: &[f32], k: usize) -> String {
    let list: Vec<String> = query.iter().map(|v| v.to_string()).collect();
    format!(
        "SELECT id FROM docs ORDER BY embedding <-> [{}] LIMIT {k}",
        list.join(", ")
    )
}

/// The ids [`knn_sql`] returns on `session`.
pub async fn sql_knn_ids(session: &QuiverSession, query: &[f32], k: usize) -> Vec<i64> {
    let results = session.run_script(&knn_sql(query, k)).await.expect("k-NN");
    int64_column(&results[0], 0)
}

/// `IndexKnnExec` over `dataset`'s L2 index of `embedding`: the `k` nearest ids to `query` with
/// HNSW breadth `ef` and the session's default probes, as the k-NN rule plans it, without SQL.
pub fn index_plan(
    dataset: &Arc<Dataset>,
    query: &[f32],
    k: usize,
    ef: usize,
) -> Arc<dyn ExecutionPlan> {
    let defaults = QuiverConfig::default();
    let search = IndexSearch {
        index: "embedding_idx".to_string(),
        column: "embedding".to_string(),
        query: query.into(),
        metric: Metric::L2,
        descending: false,
        k,
        params: IndexSearchParams {
            nprobes: defaults.nprobes,
            ef,
            refine_factor: defaults.refine_factor,
        },
    };
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    Arc::new(
        IndexKnnExec::try_new(IndexKnnTask {
            dataset: dataset.clone(),
            search,
            filter: None,
            columns: vec!["id".to_string()],
            schema,
            with_distance: false,
        })
        .expect("index plan"),
    )
}

/// Lance's vector index on `column` of `dataset` (the first one there), opened for
/// [`lance_index_search`].
pub async fn open_lance_index(dataset: &Dataset, column: &str) -> Arc<dyn VectorIndex> {
    let field = dataset.schema().field(column).expect("the column").id;
    let indices = dataset.load_indices().await.expect("indices");
    let index = indices
        .iter()
        .find(|i| i.fields == [field])
        .expect("an index on the column");
    dataset
        .open_vector_index(column, &index.uuid, &NoOpMetricsCollector)
        .await
        .expect("open the index")
}

/// Lance's index searched directly, as its scanner would inside (the `nprobes` IVF partitions
/// nearest the query, each searched with `ef`), without the scanner's plan, a filter, or taking
/// the rows: the row ids of the `k` nearest (L2) in the index, nearest first.
pub async fn lance_index_search(
    index: &dyn VectorIndex,
    column: &str,
    query: &[f32],
    k: usize,
    ef: usize,
    nprobes: usize,
) -> Vec<u64> {
    let key = Arc::new(Float32Array::from(query.to_vec()));
    let mut query = index_query(column, key, k, ef, nprobes, DistanceType::L2);
    let found = nearest_in_index(index, &mut query, nprobes)
        .await
        .expect("search");
    found.into_iter().take(k).map(|(_, row)| row).collect()
}
