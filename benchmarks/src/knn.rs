//! The k-NN plans the `knn` bench and the comparison harness time: in-memory rows, one query
//! through `KnnExec`, many through `BatchKnnExec`, one thread.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, Float16Array, Int64Array, RecordBatch,
};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::physical_plan::{collect, ExecutionPlan};
use datafusion::prelude::{SessionConfig, SessionContext};
use half::f16;
use lance::Dataset;
use quiver_operators::batch_knn::{BatchKnnExec, BatchKnnSpec};
use quiver_operators::distance::Metric;
use quiver_operators::index_knn::{IndexKnnExec, IndexSearch, IndexSearchParams};
use quiver_operators::knn::{KnnExec, KnnSpec};
use quiver_planner::config::QuiverConfig;
use quiver_planner::QuiverSession;

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

/// `values` (row-major, `dim` per row) stored as `f16`.
pub fn f16_vector_array(values: &[f32], dim: usize) -> ArrayRef {
    let halves = Float16Array::from_iter_values(values.iter().map(|v| f16::from_f32(*v)));
    Arc::new(FixedSizeListArray::new(
        Arc::new(Field::new_list_field(DataType::Float16, true)),
        dim as i32,
        Arc::new(halves),
        None,
    ))
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
    collect(plan.clone(), ctx.task_ctx()).await.expect("run")
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

/// A sum over every value in 16 independent lanes (so the compiler vectorises it): the time to
/// merely read the vectors, the floor of an exact scan.
pub fn read_all(values: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    for chunk in values.chunks_exact(16) {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    acc.iter().sum()
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
        IndexKnnExec::try_new(
            dataset.clone(),
            search,
            None,
            vec!["id".to_string()],
            schema,
            false,
        )
        .expect("index plan"),
    )
}
