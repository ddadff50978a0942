//! [`KnnExec`](super::knn::KnnExec)'s search of a collection's vectors loaded in memory
//! ([`search_loaded`]).
//!
//! The rows are the version's, filtered as the scan would filter them, in the scan's order; they
//! are split into as many contiguous runs as the session has target partitions, each searched
//! on its own task by the same per-partition search as a scan's batches, so the values, the
//! order and the ties are those of the search over the scan. Only the `k` rows found are then
//! taken from the files, for the columns other than the vectors.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{SchemaRef, UInt64Type};
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::Result;
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::metrics::BaselineMetrics;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use lance::dataset::ProjectionRequest;

use crate::exact::knn::{
    merge_searches, search_partition, Found, KnnSpec, LoadedSource, SearchCounters,
};
use crate::exact::loaded_vectors::LoadedVectors;
use crate::index::loaded::{taken_column, LoadedIndices};

/// The top `spec.k` of the rows `source` reads (as rows of `input`, the k-NN's input), searched
/// in the collection's vectors loaded in memory; `None` where they cannot be (see
/// [`LoadedVectors::of`] and [`LoadedVectors::admitted`]), and the input is searched instead.
pub(crate) async fn search_loaded(
    source: &LoadedSource,
    spec: &KnnSpec,
    input: &SchemaRef,
    context: &Arc<TaskContext>,
    counters: &SearchCounters,
    baseline: &BaselineMetrics,
) -> Result<Option<Found>> {
    let dataset = &source.dataset;
    let Some(column) = source.columns.get(spec.column) else {
        return Ok(None);
    };
    if source.columns.len() != input.fields().len()
        || source
            .columns
            .iter()
            .any(|name| dataset.schema().field(name).is_none())
    {
        return Ok(None);
    }
    let cache = LoadedIndices::global();
    let pool = context.memory_pool();
    let Some(vectors) = LoadedVectors::of(cache, dataset, column, pool).await? else {
        return Ok(None);
    };
    let Some(masks) = vectors
        .admitted(cache, dataset, source.filter.as_ref())
        .await?
    else {
        return Ok(None);
    };
    let batches = vectors.batches(&masks)?;
    let runs = context.session_config().target_partitions().max(1);
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let per_run = rows.div_ceil(runs).max(1);
    let mut chunks: Vec<Vec<RecordBatch>> = Vec::with_capacity(runs);
    let (mut chunk, mut chunk_rows) = (Vec::new(), 0);
    for batch in batches {
        chunk_rows += batch.num_rows();
        chunk.push(batch);
        if chunk_rows >= per_run {
            chunks.push(std::mem::take(&mut chunk));
            chunk_rows = 0;
        }
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    let schema = Arc::clone(vectors.schema());
    let in_memory = KnnSpec {
        column: 0,
        ..spec.clone()
    };
    let tasks = chunks
        .into_iter()
        .enumerate()
        .map(|(run, chunk)| {
            let stream = RecordBatchStreamAdapter::new(
                Arc::clone(&schema),
                futures::stream::iter(chunk.into_iter().map(Ok)),
            );
            let reservation = MemoryConsumer::new(format!("KnnExec[{run}]")).register(pool);
            SpawnedTask::spawn(search_partition(
                Box::pin(stream),
                in_memory.clone(),
                run,
                counters.clone(),
                baseline.clone(),
                reservation,
            ))
        })
        .collect();
    let (found, ranks) = merge_searches(tasks, spec.k, schema, context).await?;
    if found.num_rows() == 0 {
        return Ok(Some((RecordBatch::new_empty(Arc::clone(input)), ranks)));
    }
    let row_ids = found.column(1).as_primitive::<UInt64Type>().values();
    let mut others: Vec<&String> = Vec::new();
    for name in &source.columns {
        if name != column && !others.contains(&name) {
            others.push(name);
        }
    }
    let taken = if others.is_empty() {
        None
    } else {
        let request = ProjectionRequest::from_columns(others, dataset.schema());
        Some(dataset.take_rows(row_ids, request).await?)
    };
    let columns = input
        .fields()
        .iter()
        .zip(&source.columns)
        .map(|(field, name)| {
            let values: ArrayRef = if name == column {
                Arc::clone(found.column(0))
            } else {
                taken_column(taken.as_ref(), name)?
            };
            Ok(if values.data_type() == field.data_type() {
                values
            } else {
                cast(&values, field.data_type())?
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some((
        RecordBatch::try_new(Arc::clone(input), columns)?,
        ranks,
    )))
}
