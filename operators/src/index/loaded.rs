//! Lance HNSW indices loaded into memory and searched by Quiver's own graph search.
//!
//! What a vector database does when a collection is loaded (Milvus's `load`): the graph of each
//! IVF partition of a Lance `IVF_HNSW_*` index is copied into flat arrays ([`HnswGraph`]), and
//! the indexed column's vectors are read once, in the order of the graph's nodes, and kept at
//! full precision and as 8-bit codes ([`ScalarQuantized`]). A search descends the upper levels
//! with a beam of [`UPPER_BEAM`] nodes, not greedily, scores the codes with Quiver's kernels (a
//! quarter of the bytes a node), then re-scores the `ef` nodes it found at full precision, so
//! the distances it returns are exact; it fetches the result rows from memory.
//! Lance's own search of the same graph scores quantized codes through generic traits and then
//! takes the rows from the files (`take_rows`), which costs more than the search itself; see
//! `benchmarks/README.md`.
//!
//! Loaded indices live in one process-wide cache, keyed by dataset, version and index name (a
//! version never changes, so neither do its indices nor what was loaded from them; an index is
//! only loaded once it is known to answer its searches alone), and bounded in bytes
//! ([`LoadedIndices::global`], `QUIVER_LOADED_INDEX_MB`), least recently used first out. An
//! index too large for the budget is not loaded, and is searched through Lance. Columns a search
//! projects besides the vectors are loaded too, into the index's entry, where their values have
//! a fixed width and fit; others are taken from the files by row id.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, RecordBatch, RecordBatchOptions, UInt32Array,
};
use datafusion::arrow::buffer::ScalarBuffer;
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Float16Type, Float32Type, Schema, SchemaRef};
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, MemoryReservation};
use futures::future::BoxFuture;
use futures::FutureExt;
use lance::dataset::ProjectionRequest;
use lance::index::vector::ivf::v2::IVFIndex;
use lance::Dataset;
use lance_index::metrics::NoOpMetricsCollector;
use lance_index::vector::flat::index::FlatQuantizer;
use lance_index::vector::hnsw::HNSW;
use lance_index::vector::ivf::storage::IvfModel;
use lance_index::vector::pq::ProductQuantizer;
use lance_index::vector::quantizer::Quantization;
use lance_index::vector::sq::ScalarQuantizer;
use lance_index::vector::storage::VectorStore;
use lance_index::vector::v3::subindex::IvfSubIndex;
use lance_index::vector::VectorIndex;
use lance_linalg::distance::DistanceType;
use moka::future::Cache;
use moka::policy::EvictionPolicy;

use crate::distance::{cosine_from_parts, kernels, Metric};
use crate::index::hnsw_graph::{prefetch, HnswGraph, SearchScratch};
use crate::index::scalar_quantized::ScalarQuantized;

/// The default budget of [`LoadedIndices::global`]: 4 GiB.
const DEFAULT_BUDGET_MB: u64 = 4096;

/// Bytes a graph node is assumed to cost before the graph is loaded: an HNSW node with M = 16
/// keeps a block of 32 bottom-level edges, its row id, and a few upper-level edges.
const GRAPH_BYTES_PER_NODE: u64 = 32 * 4 + 8 + 24;

/// The bytes an index of `rows` vectors of `dim` values is estimated to take once loaded, before
/// it is: the vectors as `f32` and as 8-bit codes, and the graph.
fn estimated_bytes(rows: u64, dim: usize) -> u64 {
    rows.saturating_mul(dim as u64 * 5 + GRAPH_BYTES_PER_NODE)
}

/// The width of the beam a search descends the levels above the bottom one with
/// ([`HnswGraph::search`]'s `upper_beam`). hnswlib and Lance descend greedily (1); on clustered
/// data that descent ends in the wrong cluster for a few queries in a hundred, which no `ef`
/// at the bottom brings back. With 3 (the comparison harness's data, 1,000 queries), recall@10
/// at ef 10 rose from 0.92 to 0.98 for a tenth fewer queries a second, and a given recall costs
/// less than with a larger `ef` alone; see `benchmarks/README.md`.
const UPPER_BEAM: usize = 3;

/// The cache key of one index of one dataset version.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct LoadKey {
    dataset: String,
    version: u64,
    /// The index's name.
    index: String,
}

/// Loaded indices, weighed in bytes against a budget, the least recently used out first.
pub(crate) struct LoadedIndices {
    budget_bytes: u64,
    entries: Cache<LoadKey, Arc<LoadedIndex>>,
    /// Indices that were loaded and measured larger than the budget, which their estimate
    /// fitted: searched through Lance from then on, not loaded again by every search.
    too_large: Cache<LoadKey, ()>,
}

/// How many indices [`LoadedIndices`] remembers as too large to load.
const TOO_LARGE_REMEMBERED: u64 = 4096;

/// See [`LoadedIndices::global`].
static GLOBAL: LazyLock<LoadedIndices> = LazyLock::new(|| {
    let budget_mb = std::env::var("QUIVER_LOADED_INDEX_MB")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_BUDGET_MB);
    LoadedIndices::new(budget_mb.saturating_mul(1024 * 1024))
});

impl LoadedIndices {
    /// An empty cache of `budget_bytes`.
    pub(crate) fn new(budget_bytes: u64) -> Self {
        let entries = Cache::builder()
            // Least recently used out. Moka's default (TinyLFU) may refuse to admit a newly
            // loaded index that has not been asked for before, which would reload it on every
            // search.
            .eviction_policy(EvictionPolicy::lru())
            // Weighed in KiB, so that entries of up to 4 TiB fit moka's u32 weights.
            .max_capacity(budget_bytes / 1024)
            .weigher(|_, loaded: &Arc<LoadedIndex>| {
                u32::try_from(loaded.size_bytes() / 1024 + 1).unwrap_or(u32::MAX)
            })
            .build();
        Self {
            budget_bytes,
            entries,
            too_large: Cache::new(TOO_LARGE_REMEMBERED),
        }
    }

    /// The process-wide cache searches use, of `QUIVER_LOADED_INDEX_MB` mebibytes (read once per
    /// process, on the first search that needs it; 4096 by default).
    pub(crate) fn global() -> &'static Self {
        &GLOBAL
    }

    /// Index `name` of `dataset`, if a search has loaded it.
    pub(crate) async fn cached(&self, dataset: &Dataset, name: &str) -> Option<Arc<LoadedIndex>> {
        self.entries.get(&index_key(dataset, name)).await
    }

    /// `index` (index `name` on `column` of `dataset`, which must answer its searches alone:
    /// one segment, covering every row), loaded, if it is an HNSW index and fits the budget;
    /// loaded now if no search has loaded it before and it fits what `pool` (the loading
    /// query's) has left, which it counts against while it loads.
    pub(crate) async fn get_or_load(
        &self,
        dataset: &Dataset,
        name: &str,
        index: &Arc<dyn VectorIndex>,
        column: &str,
        pool: &Arc<dyn MemoryPool>,
    ) -> Result<Option<Arc<LoadedIndex>>> {
        let DataType::FixedSizeList(_, dim) = dataset
            .schema()
            .field(column)
            .map(|f| f.data_type())
            .unwrap_or(DataType::Null)
        else {
            return Ok(None);
        };
        let dim = dim as usize;
        let estimate = estimated_bytes(index.num_rows(), dim);
        if estimate > self.budget_bytes {
            return Ok(None);
        }
        let key = index_key(dataset, name);
        if self.too_large.contains_key(&key) {
            return Ok(None);
        }
        let Some(graphs) = partition_graphs(index.as_ref()) else {
            return Ok(None);
        };
        // A query whose memory limit the index does not fit searches through Lance, and leaves
        // loading it to one it fits; once loaded, the index is the cache's, weighed against its
        // budget, and every search uses it.
        let Some(_reserved) = reserve(pool, "index loading", estimate) else {
            return Ok(None);
        };
        let loaded = self
            .entries
            .try_get_with(key.clone(), async {
                let load =
                    LoadedIndex::load(key.clone(), dataset, index.as_ref(), graphs, column, dim);
                load.await.map(Arc::new)
            })
            .await
            .map_err(DataFusionError::Shared)?;
        if loaded.size_bytes() as u64 > self.budget_bytes {
            // The estimate assumes 32 bottom-level edges a node (m = 16); a denser graph may
            // not fit after all, and the cache would drop it only for the next search to load
            // it again.
            self.entries.invalidate(&key).await;
            self.too_large.insert(key, ()).await;
            return Ok(None);
        }
        Ok(Some(loaded))
    }

    /// Column `name` of `index` at every position, loaded if its values have a fixed width and
    /// it fits an eighth of the budget, and the index with it the whole budget; `None` otherwise.
    /// A loaded column is part of the index's entry, which is weighed again with it.
    async fn column(
        &self,
        index: &Arc<LoadedIndex>,
        dataset: &Dataset,
        name: &str,
        pool: &Arc<dyn MemoryPool>,
    ) -> Result<Option<ArrayRef>> {
        let loaded = || {
            index
                .columns
                .lock()
                .ok()
                .and_then(|columns| columns.get(name).cloned())
        };
        if let Some(values) = loaded() {
            return Ok(Some(values));
        }
        let Some(width) = index
            .schema
            .column_with_name(name)
            .and_then(|(_, f)| fixed_width(f.data_type()))
        else {
            return Ok(None);
        };
        let bytes = (index.row_ids.len() * width) as u64;
        if bytes > self.budget_bytes / 8 || index.size_bytes() as u64 + bytes > self.budget_bytes {
            return Ok(None);
        }
        let Some(_reserved) = reserve(pool, "index column loading", bytes) else {
            return Ok(None);
        };
        let _loading = index.column_load.lock().await;
        if let Some(values) = loaded() {
            return Ok(Some(values));
        }
        let request = ProjectionRequest::from_columns([name], dataset.schema());
        let values = dataset
            .take_rows(&index.row_ids, request)
            .await?
            .column(0)
            .clone();
        if let Ok(mut columns) = index.columns.lock() {
            columns.insert(name.to_string(), values.clone());
        }
        // Weighed again, with the column.
        self.entries
            .insert(index.key.clone(), Arc::clone(index))
            .await;
        Ok(Some(values))
    }
}

/// `bytes` reserved from `pool` for `consumer`, or `None` where the pool has not that much left.
fn reserve(pool: &Arc<dyn MemoryPool>, consumer: &str, bytes: u64) -> Option<MemoryReservation> {
    let reservation = MemoryConsumer::new(consumer).register(pool);
    reservation
        .try_grow(usize::try_from(bytes).unwrap_or(usize::MAX))
        .ok()?;
    Some(reservation)
}

/// One IVF partition's graph; its nodes are the positions `start..start + graph.len()` of the
/// loaded index.
struct Partition {
    graph: HnswGraph,
    start: usize,
}

/// A Lance HNSW index of one dataset version, loaded (see the module docs).
pub(crate) struct LoadedIndex {
    key: LoadKey,
    /// The dataset's columns.
    schema: SchemaRef,
    /// The IVF centroids.
    ivf: IvfModel,
    partitions: Vec<Partition>,
    /// The row id of each position.
    row_ids: Vec<u64>,
    /// The indexed column's name.
    column: String,
    /// The indexed column's vectors, one per position.
    vectors: ArrayRef,
    /// The vectors' values as `f32` (the column's own buffer where it stores `f32`).
    values: ScalarBuffer<f32>,
    /// Squared norms of the vectors, for a cosine index.
    norms: Option<Vec<f32>>,
    /// The vectors as 8-bit codes, which the beam of a search scores.
    quantized: ScalarQuantized,
    dim: usize,
    distance_type: DistanceType,
    /// What searches reuse between them.
    scratch: Mutex<Vec<SearchScratch>>,
    /// Other columns' values at every position, loaded on first use ([`LoadedIndices::column`]):
    /// the rows a search returns are taken from them.
    columns: Mutex<HashMap<String, ArrayRef>>,
    /// Held while a column is loaded, so that concurrent searches load it once.
    column_load: tokio::sync::Mutex<()>,
}

impl LoadedIndex {
    /// `index` loaded, its partitions read by `graphs` (of [`partition_graphs`]).
    async fn load(
        key: LoadKey,
        dataset: &Dataset,
        index: &dyn VectorIndex,
        graphs: PartitionGraphs<'_>,
        column: &str,
        dim: usize,
    ) -> Result<Self> {
        let distance_type = index.metric_type();
        let graphs = graphs.await?;
        let mut partitions = Vec::with_capacity(graphs.len());
        let mut row_ids = Vec::new();
        for (graph, rows) in graphs {
            if rows.len() < graph.len() {
                return Err(crate::OperatorError::MalformedIndex(format!(
                    "an HNSW partition has {} nodes but {} row ids",
                    graph.len(),
                    rows.len()
                ))
                .into());
            }
            partitions.push(Partition {
                graph,
                start: row_ids.len(),
            });
            row_ids.extend(rows);
        }
        let projection = ProjectionRequest::from_columns([column], dataset.schema());
        let batch = dataset.take_rows(&row_ids, projection).await?;
        let vectors = batch.column(0).clone();
        let list = vectors.as_fixed_size_list();
        let values = f32_values(list)?;
        let norms = (distance_type == DistanceType::Cosine).then(|| {
            let k = kernels();
            values
                .chunks_exact(dim)
                .map(|v| (k.dot)(v, v))
                .collect::<Vec<f32>>()
        });
        let quantized = ScalarQuantized::new(&values, dim, distance_type, norms.as_deref());
        Ok(Self {
            key,
            schema: Arc::new(Schema::from(dataset.schema())),
            ivf: index.ivf_model().clone(),
            partitions,
            row_ids,
            column: column.to_string(),
            vectors,
            values,
            norms,
            quantized,
            dim,
            distance_type,
            scratch: Mutex::new(Vec::new()),
            columns: Mutex::new(HashMap::new()),
            column_load: tokio::sync::Mutex::new(()),
        })
    }

    /// The indexed column's element type (`Float32` or `Float16`).
    pub(crate) fn element(&self) -> DataType {
        self.vectors.as_fixed_size_list().value_type()
    }

    /// The distance the index ranks by.
    pub(crate) fn distance_type(&self) -> DistanceType {
        self.distance_type
    }

    /// The `nprobes` partitions nearest `key()` (the query in the column's element type), nearest
    /// first, as Lance ranks them (by L2 to the centroids for a cosine index, whose query is
    /// normalised). `key` is only called where there are partitions to rank.
    pub(crate) fn partitions(
        &self,
        key: impl FnOnce() -> ArrayRef,
        nprobes: usize,
    ) -> Result<Vec<u32>> {
        if self.partitions.len() <= 1 || self.ivf.centroids_array().is_none() {
            return Ok((0..self.partitions.len() as u32).collect());
        }
        let key = &key();
        let distance_type = match self.distance_type {
            DistanceType::Cosine => DistanceType::L2,
            other => other,
        };
        let (partitions, _) = self.ivf.find_partitions(key, nprobes, distance_type)?;
        Ok(partitions.values().iter().take(nprobes).copied().collect())
    }

    fn size_bytes(&self) -> usize {
        self.ivf
            .centroids_array()
            .map_or(0, |c| c.get_array_memory_size())
            + self
                .partitions
                .iter()
                .map(|p| p.graph.size_bytes())
                .sum::<usize>()
            + self.row_ids.len() * 8
            + self.vectors.get_array_memory_size()
            + match self.vectors.as_fixed_size_list().value_type() {
                DataType::Float32 => 0,
                _ => self.values.len() * 4,
            }
            + self.norms.as_ref().map_or(0, |n| n.len() * 4)
            + self.quantized.size_bytes()
            + self.columns.lock().map_or(0, |columns| {
                columns.values().map(|c| c.get_array_memory_size()).sum()
            })
    }

    /// The `candidates` vectors nearest `query` that a search with breadth `ef` finds in each of
    /// `partitions`, nearest first (ties by position), as `(score, position)`. The beam scores
    /// the 8-bit codes; the `ef` nodes it finds in a partition are then scored exactly, and
    /// those scores are returned. Smaller is nearer: the squared L2 distance, the cosine
    /// distance, or the negative dot product ([`metric_distance`] turns them into the distance
    /// functions' values). NULL vectors are never found.
    pub(crate) fn search(
        &self,
        query: &[f32],
        partitions: &[u32],
        ef: usize,
        candidates: usize,
    ) -> Vec<(f32, usize)> {
        let k = kernels();
        let (dim, values) = (self.dim, &self.values[..]);
        let query_norm = (k.dot)(query, query);
        let valid = self.vectors.logical_nulls();
        let is_null = |position: usize| valid.as_ref().is_some_and(|v| v.is_null(position));
        let row = |position: usize| &values[position * dim..(position + 1) * dim];
        let exact = |position: usize| {
            let row = row(position);
            match (self.distance_type, &self.norms) {
                (DistanceType::Cosine, Some(norms)) => {
                    cosine_from_parts((k.dot)(query, row), query_norm, norms[position])
                }
                (DistanceType::Dot, _) => -(k.dot)(query, row),
                _ => (k.l2_squared)(query, row),
            }
        };
        let approximate = self.quantized.query(query);
        let mut scratch = self
            .scratch
            .lock()
            .map(|mut pool| pool.pop())
            .ok()
            .flatten()
            .unwrap_or_default();
        let mut found: Vec<(f32, usize)> = Vec::new();
        for partition in partitions {
            let Some(partition) = self.partitions.get(*partition as usize) else {
                continue;
            };
            let start = partition.start;
            let score = |node: u32| {
                let position = start + node as usize;
                if is_null(position) {
                    f32::INFINITY
                } else {
                    approximate.score(position)
                }
            };
            let prefetch_node = |node: u32| prefetch(self.quantized.codes(start + node as usize));
            let nearest: Vec<usize> = partition
                .graph
                .search(ef, UPPER_BEAM, &mut scratch, score, prefetch_node)
                .into_iter()
                .map(|(_, node)| start + node as usize)
                .filter(|position| !is_null(*position))
                .collect();
            nearest.iter().for_each(|position| prefetch(row(*position)));
            found.extend(
                nearest
                    .into_iter()
                    .map(|position| (exact(position), position)),
            );
        }
        if let Ok(mut pool) = self.scratch.lock() {
            pool.push(scratch);
        }
        found.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        found.truncate(candidates);
        found
    }

    /// The rows at `positions`, with the dataset columns `projection`, the fixed-width ones
    /// from columns loaded into `cache` (this index's cache).
    pub(crate) async fn rows(
        self: &Arc<Self>,
        cache: &LoadedIndices,
        dataset: &Dataset,
        positions: &[usize],
        projection: &[String],
        pool: &Arc<dyn MemoryPool>,
    ) -> Result<RecordBatch> {
        let indices = UInt32Array::from_iter_values(positions.iter().map(|p| *p as u32));
        let mut columns: Vec<Option<ArrayRef>> = Vec::with_capacity(projection.len());
        let mut from_files = Vec::new();
        for name in projection {
            let loaded = if *name == self.column {
                Some(self.vectors.clone())
            } else {
                cache.column(self, dataset, name, pool).await?
            };
            match loaded {
                Some(values) => columns.push(Some(take(&values, &indices, None)?)),
                None => {
                    columns.push(None);
                    from_files.push(name.clone());
                }
            }
        }
        let taken = if from_files.is_empty() {
            None
        } else {
            let row_ids: Vec<u64> = positions.iter().map(|p| self.row_ids[*p]).collect();
            let request = ProjectionRequest::from_columns(&from_files, dataset.schema());
            Some(dataset.take_rows(&row_ids, request).await?)
        };
        let mut fields = Vec::with_capacity(projection.len());
        let mut arrays = Vec::with_capacity(projection.len());
        for (name, loaded) in projection.iter().zip(columns) {
            let array = match loaded {
                Some(array) => array,
                None => taken
                    .as_ref()
                    .and_then(|t| t.column_by_name(name))
                    .cloned()
                    .ok_or_else(|| {
                        DataFusionError::Internal(format!("take_rows returned no column {name}"))
                    })?,
            };
            let (_, field) = self.schema.fields().find(name).ok_or_else(|| {
                DataFusionError::Plan(format!("the collection has no column {name}"))
            })?;
            fields.push(field.clone());
            arrays.push(array);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(positions.len()));
        Ok(RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            arrays,
            &options,
        )?)
    }
}

/// The cache key of index `name` of `dataset`.
fn index_key(dataset: &Dataset, name: &str) -> LoadKey {
    LoadKey {
        dataset: dataset.uri().to_string(),
        // Not `dataset.version()`, which copies the manifest's summary into a map.
        version: dataset.manifest().version,
        index: name.to_string(),
    }
}

/// The value of `metric`'s distance function for a [`LoadedIndex::search`] score of an index
/// that serves `metric`.
pub(crate) fn metric_distance(metric: Metric, score: f32) -> f32 {
    match metric {
        Metric::L2 => score.sqrt(),
        Metric::Cosine | Metric::NegativeInnerProduct => score,
        Metric::InnerProduct => -score,
    }
}

/// The reading of each IVF partition's graph and the row ids of its nodes.
type PartitionGraphs<'a> = BoxFuture<'a, Result<Vec<(HnswGraph, Vec<u64>)>>>;

/// Each partition's graph and the row ids of its nodes, read when awaited, if `index` is one of
/// Lance's IVF HNSW indices (which [`LoadedIndex`] loads); `None` otherwise.
fn partition_graphs(index: &dyn VectorIndex) -> Option<PartitionGraphs<'_>> {
    let any = index.as_any();
    if let Some(ivf) = any.downcast_ref::<IVFIndex<HNSW, ScalarQuantizer>>() {
        Some(read_partition_graphs(ivf).boxed())
    } else if let Some(ivf) = any.downcast_ref::<IVFIndex<HNSW, FlatQuantizer>>() {
        Some(read_partition_graphs(ivf).boxed())
    } else {
        any.downcast_ref::<IVFIndex<HNSW, ProductQuantizer>>()
            .map(|ivf| read_partition_graphs(ivf).boxed())
    }
}

/// Each partition's graph of `ivf` and the row ids of its nodes.
async fn read_partition_graphs<Q: Quantization + 'static>(
    ivf: &IVFIndex<HNSW, Q>,
) -> Result<Vec<(HnswGraph, Vec<u64>)>> {
    let mut out = Vec::with_capacity(ivf.total_partitions());
    for partition in 0..ivf.total_partitions() {
        // Not written to Lance's cache: this copy replaces it.
        let entry = ivf
            .load_partition(partition, false, &NoOpMetricsCollector)
            .await?;
        let graph = HnswGraph::from_lance(&entry.index.to_batch()?)?;
        out.push((graph, entry.storage.row_ids().copied().collect()));
    }
    Ok(out)
}

/// The values of a list of `f32` or `f16` vectors as `f32`.
fn f32_values(list: &FixedSizeListArray) -> Result<ScalarBuffer<f32>> {
    let values = list.values();
    match values.data_type() {
        DataType::Float32 => Ok(values.as_primitive::<Float32Type>().values().clone()),
        DataType::Float16 => Ok(values
            .as_primitive::<Float16Type>()
            .values()
            .iter()
            .map(|v| v.to_f32())
            .collect()),
        other => Err(DataFusionError::NotImplemented(format!(
            "loading vectors of {other}"
        ))),
    }
}

/// The bytes per value of a column of `data_type`, where values have a fixed width.
fn fixed_width(data_type: &DataType) -> Option<usize> {
    match data_type {
        DataType::FixedSizeList(item, n) => fixed_width(item.data_type()).map(|w| w * *n as usize),
        DataType::Boolean => Some(1),
        other => other.primitive_width(),
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Float32Array, Int64Array, RecordBatchIterator};
    use datafusion::arrow::datatypes::{Field, Int64Type};
    use lance::index::vector::VectorIndexParams;
    use lance::index::{DatasetIndexExt, DatasetIndexInternalExt};
    use lance_index::vector::hnsw::builder::HnswBuildParams;
    use lance_index::vector::ivf::IvfBuildParams;
    use lance_index::vector::sq::builder::SQBuildParams;
    use lance_index::IndexType;
    use rand::{Rng, SeedableRng};

    use super::*;
    use datafusion::execution::memory_pool::{GreedyMemoryPool, UnboundedMemoryPool};

    const ROWS: usize = 300;
    const DIM: usize = 8;
    const INDEX: &str = "embedding_idx";
    /// The width of the `tags` column, four `Int64` a row.
    const TAGS: usize = 4;

    /// A dataset of `ROWS` rows (`id`, `embedding`, and `tags`: `id * TAGS + j` for `j` in
    /// `0..TAGS`) in `dir`, with an IVF_HNSW_SQ index on the embeddings, and that index opened.
    async fn indexed(dir: &tempfile::TempDir, m: usize) -> (Dataset, Arc<dyn VectorIndex>) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let values: Vec<f32> = (0..ROWS * DIM)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let item = Arc::new(Field::new("item", DataType::Float32, true));
        let tag = Arc::new(Field::new("item", DataType::Int64, false));
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new(
                "embedding",
                DataType::FixedSizeList(item.clone(), DIM as i32),
                true,
            ),
            Field::new(
                "tags",
                DataType::FixedSizeList(tag.clone(), TAGS as i32),
                false,
            ),
        ]));
        let tags = (0..(ROWS * TAGS) as i64).collect::<Int64Array>();
        let tags = FixedSizeListArray::try_new(tag, TAGS as i32, Arc::new(tags), None).unwrap();
        let vectors = FixedSizeListArray::try_new(
            item,
            DIM as i32,
            Arc::new(Float32Array::from(values)),
            None,
        )
        .unwrap();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(0..ROWS as i64)),
                Arc::new(vectors),
                Arc::new(tags),
            ],
        )
        .unwrap();
        let uri = dir.path().to_str().unwrap();
        let reader = RecordBatchIterator::new([Ok(batch)], schema);
        let mut dataset = Dataset::write(reader, uri, None).await.unwrap();
        let params = VectorIndexParams::with_ivf_hnsw_sq_params(
            DistanceType::L2,
            IvfBuildParams::new(1),
            HnswBuildParams::default().num_edges(m),
            SQBuildParams::default(),
        );
        dataset
            .create_index_builder(&["embedding"], IndexType::IvfHnswSq, &params)
            .name(INDEX.to_string())
            .await
            .unwrap();
        let segment = dataset.load_indices().await.unwrap()[0].uuid;
        let index = dataset
            .open_vector_index("embedding", &segment, &NoOpMetricsCollector)
            .await
            .unwrap();
        (dataset, index)
    }

    /// The bytes `index` of `dataset` holds once loaded, or that loading it is estimated at
    /// beforehand, whichever is more: a cache of this budget loads it.
    async fn loaded_size(dataset: &Dataset, index: &Arc<dyn VectorIndex>) -> u64 {
        let cache = LoadedIndices::new(1 << 30);
        let loaded = cache
            .get_or_load(dataset, INDEX, index, "embedding", &unbounded())
            .await;
        let size = loaded.unwrap().unwrap().size_bytes() as u64;
        size.max(estimated_bytes(ROWS as u64, DIM))
    }

    /// What [`load_and_take`] saw.
    struct Taken {
        loaded: Arc<LoadedIndex>,
        /// The `tags` values of the rows taken, in order.
        tags: Vec<i64>,
        /// The cache's weight (KiB) before the rows were taken, and after.
        weight_before: u64,
        weight_after: u64,
    }

    /// Loads `index` of `dataset` into a new cache of `budget` bytes and takes the `tags` of the
    /// rows at `positions` through it ([`LoadedIndex::rows`]).
    async fn load_and_take(
        dataset: &Dataset,
        index: &Arc<dyn VectorIndex>,
        budget: u64,
        positions: &[usize],
    ) -> Taken {
        let cache = LoadedIndices::new(budget);
        let loaded = cache
            .get_or_load(dataset, INDEX, index, "embedding", &unbounded())
            .await;
        let loaded = loaded.unwrap().unwrap();
        cache.entries.run_pending_tasks().await;
        let weight_before = cache.entries.weighted_size();
        let rows = loaded
            .rows(
                &cache,
                dataset,
                positions,
                &["tags".to_string()],
                &unbounded(),
            )
            .await
            .unwrap();
        let tags = rows.column(0).as_fixed_size_list().values();
        let tags = tags.as_primitive::<Int64Type>().values().to_vec();
        cache.entries.run_pending_tasks().await;
        Taken {
            loaded,
            tags,
            weight_before,
            weight_after: cache.entries.weighted_size(),
        }
    }

    /// A memory pool without a limit.
    fn unbounded() -> Arc<dyn MemoryPool> {
        Arc::new(UnboundedMemoryPool::default())
    }

    #[tokio::test]
    async fn an_index_larger_than_the_budget_is_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let (dataset, index) = indexed(&dir, 16).await;
        let cache = LoadedIndices::new(4096);
        let loaded = cache
            .get_or_load(&dataset, INDEX, &index, "embedding", &unbounded())
            .await;
        assert!(loaded.unwrap().is_none());
        assert!(cache.cached(&dataset, INDEX).await.is_none());
    }

    #[tokio::test]
    async fn a_query_loads_an_index_only_within_its_memory_limit() {
        let dir = tempfile::tempdir().unwrap();
        let (dataset, index) = indexed(&dir, 16).await;
        let cache = LoadedIndices::new(1 << 30);
        let estimate = estimated_bytes(ROWS as u64, DIM) as usize;
        let small: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(estimate / 2));
        let loaded = cache
            .get_or_load(&dataset, INDEX, &index, "embedding", &small)
            .await;
        assert!(loaded.unwrap().is_none());
        assert!(cache.cached(&dataset, INDEX).await.is_none());
        assert_eq!(small.reserved(), 0);

        let fits: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(estimate));
        let loaded = cache
            .get_or_load(&dataset, INDEX, &index, "embedding", &fits)
            .await;
        assert!(loaded.unwrap().is_some());
        // Released once loaded: the index is the cache's now.
        assert_eq!(fits.reserved(), 0);
        assert!(cache.cached(&dataset, INDEX).await.is_some());
    }

    #[tokio::test]
    async fn an_index_larger_than_its_estimate_is_not_loaded_again() {
        let dir = tempfile::tempdir().unwrap();
        // m = 32: 64 bottom-level edges a node, twice what the estimate assumes.
        let (dataset, index) = indexed(&dir, 32).await;
        let estimate = estimated_bytes(ROWS as u64, DIM);
        let roomy = LoadedIndices::new(1 << 30);
        let loaded = roomy
            .get_or_load(&dataset, INDEX, &index, "embedding", &unbounded())
            .await;
        let size = loaded.unwrap().unwrap().size_bytes() as u64;
        assert!(size > estimate + 2048, "{size} bytes, estimated {estimate}");
        let cache = LoadedIndices::new((estimate + size) / 2);
        for _ in 0..2 {
            let loaded = cache
                .get_or_load(&dataset, INDEX, &index, "embedding", &unbounded())
                .await;
            assert!(loaded.unwrap().is_none());
            cache.entries.run_pending_tasks().await;
            assert_eq!(cache.entries.entry_count(), 0);
            assert!(cache.too_large.contains_key(&index_key(&dataset, INDEX)));
        }
    }

    #[tokio::test]
    async fn the_least_recently_used_index_leaves_when_another_does_not_fit() {
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, index_a) = indexed(&dir_a, 16).await;
        let (b, index_b) = indexed(&dir_b, 16).await;
        // Room for one of the two.
        let cache = LoadedIndices::new(loaded_size(&a, &index_a).await * 5 / 4);
        let first = cache
            .get_or_load(&a, INDEX, &index_a, "embedding", &unbounded())
            .await;
        assert!(first.unwrap().is_some());
        cache.entries.run_pending_tasks().await;
        assert!(cache.cached(&a, INDEX).await.is_some());
        let second = cache
            .get_or_load(&b, INDEX, &index_b, "embedding", &unbounded())
            .await;
        assert!(second.unwrap().is_some());
        cache.entries.run_pending_tasks().await;
        assert!(cache.cached(&a, INDEX).await.is_none());
        assert!(cache.cached(&b, INDEX).await.is_some());
    }

    #[tokio::test]
    async fn a_loaded_column_is_weighed_with_its_index_and_one_that_does_not_fit_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let (dataset, index) = indexed(&dir, 16).await;
        let size = loaded_size(&dataset, &index).await;
        // The rows are written in id order, so the row id of each position is its id.
        let positions = [0, 7, 150, ROWS - 1];
        let expected = |loaded: &LoadedIndex| -> Vec<i64> {
            let ids = positions.iter().map(|p| loaded.row_ids[*p] as i64);
            ids.flat_map(|id| (0..TAGS as i64).map(move |j| id * TAGS as i64 + j))
                .collect()
        };

        // With room for the tags, they are loaded into the index's entry, which grows by them.
        let roomy = load_and_take(&dataset, &index, size * 64, &positions).await;
        assert_eq!(roomy.tags, expected(&roomy.loaded));
        let tags_kib = (ROWS * TAGS * 8 / 1024) as u64;
        assert!(
            roomy.weight_after >= roomy.weight_before + tags_kib,
            "{} KiB, {} KiB before",
            roomy.weight_after,
            roomy.weight_before
        );
        assert!(roomy.loaded.columns.lock().unwrap().contains_key("tags"));

        // Without it (they would take more than an eighth of the budget), they are read from
        // the files, and the entry stays as it was.
        let tight = load_and_take(&dataset, &index, size + 512, &positions).await;
        assert_eq!(tight.tags, expected(&tight.loaded));
        assert_eq!(tight.weight_after, tight.weight_before);
        assert!(tight.loaded.columns.lock().unwrap().is_empty());
    }
}
