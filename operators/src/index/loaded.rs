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
//! Loaded indices live in one process-wide cache, keyed by dataset and index segment (a segment
//! never changes, so neither does what was loaded from it), and bounded in bytes
//! ([`LoadedIndices::global`], `QUIVER_LOADED_INDEX_MB`), least recently used first out; the
//! decoded vectors exact searches read ([`FragmentVectors`]) are weighed in the same budget. A
//! loaded segment follows its dataset from version to version: what it shows of each version
//! ([`IndexVersion`]: its rows the version deleted hidden, the version's rows written after it
//! held beside it) is cached by dataset, version and index name, so a search of a version seen
//! before looks up one entry, and a write never loads the graph again. An index too large for
//! the budget is not loaded, and is searched through Lance. Columns a search projects besides
//! the vectors are loaded too, into the index's entry, where their values have a fixed width
//! and fit; others are taken from the files by row id.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, RecordBatch, RecordBatchOptions, UInt32Array,
};
use datafusion::arrow::buffer::{BooleanBuffer, ScalarBuffer};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Float16Type, Float32Type, Schema, SchemaRef};
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, MemoryReservation};
use futures::future::BoxFuture;
use futures::FutureExt;
use lance::dataset::ProjectionRequest;
use lance::index::vector::ivf::v2::IVFIndex;
use lance::table::format::Fragment;
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
use crate::exact::loaded_vectors::FragmentVectors;
use crate::index::hnsw_graph::{prefetch, HnswGraph, SearchScratch};
use crate::index::index_version::{FragmentFiles, IndexVersion, LoadedVersion, UnindexedRows};
use crate::index::scalar_quantized::ScalarQuantized;

/// The default budget of [`LoadedIndices::global`]: 4 GiB.
const DEFAULT_BUDGET_MB: u64 = 4096;

/// Bytes a value of a column without a fixed width (text, binary) is assumed to take before
/// the column is loaded and measured.
const VARIABLE_WIDTH_GUESS: usize = 16;

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

/// The cache key of one index segment of one dataset.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(crate) struct LoadKey {
    dataset: String,
    /// The segment's UUID.
    segment: String,
}

/// The cache key of what the cache's budget holds: an index segment, or the decoded vectors of
/// one column of one fragment ([`FragmentVectors`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum EntryKey {
    Segment(LoadKey),
    Vectors {
        dataset: String,
        fragment: u64,
        column: String,
    },
}

/// What the cache's budget holds.
#[derive(Clone)]
enum Entry {
    Index(Arc<LoadedIndex>),
    Vectors(Arc<FragmentVectors>),
}

impl Entry {
    fn size_bytes(&self) -> usize {
        match self {
            Self::Index(index) => index.size_bytes(),
            Self::Vectors(vectors) => vectors.size_bytes(),
        }
    }
}

/// The cache key of what a loaded index shows of one dataset version.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct VersionKey {
    dataset: String,
    version: u64,
    /// The index's name.
    index: String,
}

/// One segment of a vector index, as a dataset version lists it.
pub(crate) struct IndexSegment<'a> {
    /// The index's name.
    pub(crate) name: &'a str,
    /// The segment's UUID.
    pub(crate) uuid: String,
    /// The fragments the segment covers in the version.
    pub(crate) covered: HashSet<u32>,
}

/// Loaded indices, weighed in bytes against a budget, the least recently used out first, and
/// what they show of the dataset versions searched.
pub(crate) struct LoadedIndices {
    loader: Loader,
    /// What each loaded index shows of each version searched, weighed against an eighth of the
    /// budget (the rows held beside the index); `None` for a version the index does not follow,
    /// searched through Lance without trying again.
    versions: Cache<VersionKey, Option<Arc<IndexVersion>>>,
    /// The segment of each index (by dataset and name) loaded last: while a newer segment of
    /// the index loads (after an optimisation), it answers for versions that list the newer.
    latest: Mutex<HashMap<(String, String), LoadKey>>,
    /// Segments loading in the background.
    loading: Arc<Mutex<HashSet<LoadKey>>>,
}

/// An earlier segment of an index, while the version's own is not loaded.
enum StandIn {
    /// No earlier segment is loaded.
    None,
    /// One is, and follows the version.
    Follows(LoadedVersion),
    /// One is, but does not follow the version (its fragments were rewritten).
    DoesNotFollow,
}

/// What loads segments into the cache, shared by searches and background loads.
#[derive(Clone)]
struct Loader {
    budget_bytes: u64,
    /// Loaded index segments and decoded vectors, weighed together against the budget.
    entries: Cache<EntryKey, Entry>,
    /// Indices that were loaded and measured larger than the budget, which their estimate
    /// fitted: searched through Lance from then on, not loaded again by every search.
    too_large: Cache<LoadKey, ()>,
    /// How many indices this cache has loaded.
    loads: Arc<AtomicU64>,
    /// How many fragments' vectors this cache has read.
    vector_reads: Arc<AtomicU64>,
}

impl Loader {
    /// `index` (segment `key`, on `column` of `dataset`, of vectors of `dim` values) loaded
    /// into the cache, once however many ask at once; `None` where it is not an HNSW index or
    /// proved larger than the budget.
    async fn load(
        &self,
        key: &LoadKey,
        dataset: &Dataset,
        index: &dyn VectorIndex,
        column: &str,
        dim: usize,
    ) -> Result<Option<Arc<LoadedIndex>>> {
        let Some(graphs) = partition_graphs(index) else {
            return Ok(None);
        };
        let entry = EntryKey::Segment(key.clone());
        let loaded = self
            .entries
            .try_get_with(entry.clone(), async {
                self.loads.fetch_add(1, Ordering::Relaxed);
                let load = LoadedIndex::load(key.clone(), dataset, index, graphs, column, dim);
                load.await.map(|loaded| Entry::Index(Arc::new(loaded)))
            })
            .await
            .map_err(DataFusionError::Shared)?;
        let Entry::Index(loaded) = loaded else {
            return Ok(None);
        };
        if loaded.size_bytes() as u64 > self.budget_bytes {
            // The estimate assumes 32 bottom-level edges a node (m = 16); a denser graph may not
            // fit after all, and the cache would drop it only for the next search to load it
            // again.
            self.entries.invalidate(&entry).await;
            self.too_large.insert(key.clone(), ()).await;
            return Ok(None);
        }
        Ok(Some(loaded))
    }

    /// Index segment `key`, if it is loaded.
    async fn index(&self, key: &LoadKey) -> Option<Arc<LoadedIndex>> {
        match self.entries.get(&EntryKey::Segment(key.clone())).await? {
            Entry::Index(index) => Some(index),
            Entry::Vectors(_) => None,
        }
    }

    /// Weighs `index` again (with what it has loaded since it was weighed).
    async fn reweigh(&self, index: &Arc<LoadedIndex>) {
        let key = EntryKey::Segment(index.key.clone());
        self.entries
            .insert(key, Entry::Index(Arc::clone(index)))
            .await;
    }
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
            .weigher(|_, loaded: &Entry| {
                u32::try_from(loaded.size_bytes() / 1024 + 1).unwrap_or(u32::MAX)
            })
            .build();
        let versions = Cache::builder()
            .eviction_policy(EvictionPolicy::lru())
            .max_capacity(budget_bytes / 8 / 1024)
            .weigher(|_, version: &Option<Arc<IndexVersion>>| {
                let bytes = version.as_ref().map_or(0, |v| v.size_bytes());
                u32::try_from(bytes / 1024 + 1).unwrap_or(u32::MAX)
            })
            .build();
        Self {
            loader: Loader {
                budget_bytes,
                entries,
                too_large: Cache::new(TOO_LARGE_REMEMBERED),
                loads: Arc::new(AtomicU64::new(0)),
                vector_reads: Arc::new(AtomicU64::new(0)),
            },
            versions,
            latest: Mutex::new(HashMap::new()),
            loading: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// The process-wide cache searches use, of `QUIVER_LOADED_INDEX_MB` mebibytes (read once per
    /// process, on the first search that needs it; 4096 by default).
    pub(crate) fn global() -> &'static Self {
        &GLOBAL
    }

    /// Index `name` as it is in `dataset`'s version, if a search of that version loaded it
    /// (and, where an earlier segment stood in for the version's own, that one has not loaded
    /// since).
    pub(crate) async fn cached(&self, dataset: &Dataset, name: &str) -> Option<LoadedVersion> {
        let key = version_key(dataset, name);
        let version = self.versions.get(&key).await??;
        if let Some(awaited) = &version.awaits {
            if self
                .loader
                .entries
                .contains_key(&EntryKey::Segment(awaited.clone()))
            {
                return None;
            }
        }
        let index = self.loader.index(&version.index).await?;
        Some(LoadedVersion::of(index, version))
    }

    /// How many indices this cache has loaded.
    #[cfg(test)]
    pub(crate) fn loads(&self) -> u64 {
        self.loader.loads.load(Ordering::Relaxed)
    }

    /// Whether segment `key` is loaded.
    #[cfg(test)]
    pub(crate) async fn is_loaded(&self, key: &LoadKey) -> bool {
        self.loader.index(key).await.is_some()
    }

    /// `index` (`segment` of `dataset`'s index on `column`), loaded, with what it shows of
    /// `dataset`'s version, if it is an HNSW index that fits the budget and follows the
    /// version ([`IndexVersion::build`]). A segment no search has loaded before is loaded now if
    /// it fits what `pool` (the loading query's) has left, which it counts against while it
    /// loads — unless an earlier segment of the same index is loaded: then the new one loads in
    /// the background, and meanwhile the earlier one answers where it follows the version (else
    /// Lance does), so a search never waits for the load of an optimised index.
    pub(crate) async fn get_or_load(
        &self,
        dataset: &Dataset,
        segment: &IndexSegment<'_>,
        index: &Arc<dyn VectorIndex>,
        column: &str,
        pool: &Arc<dyn MemoryPool>,
    ) -> Result<Option<LoadedVersion>> {
        let DataType::FixedSizeList(_, dim) = dataset
            .schema()
            .field(column)
            .map(|f| f.data_type())
            .unwrap_or(DataType::Null)
        else {
            return Ok(None);
        };
        // A loaded index finds its rows' fragments from their row ids, which stable row ids
        // are not.
        if dataset.manifest().uses_stable_row_ids() {
            return Ok(None);
        }
        let dim = dim as usize;
        let estimate = estimated_bytes(index.num_rows(), dim);
        if estimate > self.loader.budget_bytes || partition_graphs(index.as_ref()).is_none() {
            return Ok(None);
        }
        let key = LoadKey {
            dataset: dataset.uri().to_string(),
            segment: segment.uuid.clone(),
        };
        if self.loader.too_large.contains_key(&key) {
            return Ok(None);
        }
        let loaded = match self.loader.index(&key).await {
            Some(loaded) => loaded,
            None => {
                match self.stand_in(dataset, segment, &key).await? {
                    StandIn::Follows(standing_in) => {
                        self.load_in_background(dataset, &key, index, column, dim);
                        return Ok(Some(standing_in));
                    }
                    // A compaction rewrote its fragments: Lance answers while it loads.
                    StandIn::DoesNotFollow => {
                        self.load_in_background(dataset, &key, index, column, dim);
                        return Ok(None);
                    }
                    StandIn::None => {}
                }
                // A query whose memory limit the index does not fit searches through Lance, and
                // leaves loading it to one it fits; once loaded, the index is the cache's,
                // weighed against its budget, and every search uses it.
                let Some(_reserved) = reserve(pool, "index loading", estimate) else {
                    return Ok(None);
                };
                let loaded = self
                    .loader
                    .load(&key, dataset, index.as_ref(), column, dim)
                    .await?;
                let Some(loaded) = loaded else {
                    return Ok(None);
                };
                loaded
            }
        };
        if let Ok(mut latest) = self.latest.lock() {
            latest.insert((key.dataset.clone(), segment.name.to_string()), key.clone());
        }
        let version = self
            .version(&loaded, dataset, segment.name, &segment.covered, None)
            .await?;
        let Some(version) = version else {
            return Ok(None);
        };
        // Weighed again, with the rows it now holds beside it.
        self.loader.reweigh(&loaded).await;
        Ok(Some(LoadedVersion::of(loaded, version)))
    }

    /// What `loaded` (whose segment covers `covered` of the version) shows of `dataset`'s
    /// version, built once however many searches of the version arrive together; `awaits`: the
    /// version's own segment, loading, where `loaded` stands in for it. A version built before
    /// from another segment is built again.
    async fn version(
        &self,
        loaded: &Arc<LoadedIndex>,
        dataset: &Dataset,
        name: &str,
        covered: &HashSet<u32>,
        awaits: Option<&LoadKey>,
    ) -> Result<Option<Arc<IndexVersion>>> {
        let key = version_key(dataset, name);
        let build = || async {
            let budget = self.loader.budget_bytes / 8;
            let built = IndexVersion::build(loaded, dataset, covered, budget, awaits).await?;
            Ok::<_, DataFusionError>(built.map(Arc::new))
        };
        let mut version = self
            .versions
            .try_get_with(key.clone(), build())
            .await
            .map_err(DataFusionError::Shared)?;
        if version.as_ref().is_some_and(|v| v.index != *loaded.key()) {
            self.versions.invalidate(&key).await;
            version = self
                .versions
                .try_get_with(key, build())
                .await
                .map_err(DataFusionError::Shared)?;
        }
        Ok(version.filter(|v| v.index == *loaded.key()))
    }

    /// What the segment of index `segment.name` loaded last shows of `dataset`'s version, where
    /// that is another segment than `key` (the version's own, not loaded); the rows of
    /// fragments it does not hold are searched exactly beside it.
    async fn stand_in(
        &self,
        dataset: &Dataset,
        segment: &IndexSegment<'_>,
        key: &LoadKey,
    ) -> Result<StandIn> {
        let earlier = self.latest.lock().ok().and_then(|latest| {
            latest
                .get(&(key.dataset.clone(), segment.name.to_string()))
                .cloned()
        });
        let Some(earlier) = earlier.filter(|e| e != key) else {
            return Ok(StandIn::None);
        };
        let Some(loaded) = self.loader.index(&earlier).await else {
            return Ok(StandIn::None);
        };
        let covered: HashSet<u32> = loaded.fragments().keys().copied().collect();
        let version = self
            .version(&loaded, dataset, segment.name, &covered, Some(key))
            .await?;
        let Some(version) = version else {
            // Not remembered: once the version's own segment is loaded, it answers.
            self.versions
                .invalidate(&version_key(dataset, segment.name))
                .await;
            return Ok(StandIn::DoesNotFollow);
        };
        Ok(StandIn::Follows(LoadedVersion::of(loaded, version)))
    }

    /// The bytes the cache holds at most.
    pub(crate) fn budget_bytes(&self) -> u64 {
        self.loader.budget_bytes
    }

    /// Whether an entry of `bytes` may stay in the cache.
    pub(crate) fn may_grow(&self, bytes: usize) -> bool {
        bytes as u64 <= self.loader.budget_bytes
    }

    /// The decoded `column` of every physical row of `fragment` of `dataset`, from the cache
    /// or read into it (estimated at `estimate` bytes, counted against `pool` while it is
    /// read); `None` where `pool` has not that much left, or the rows cannot be read in order.
    pub(crate) async fn fragment_vectors(
        &self,
        dataset: &Dataset,
        fragment: &Fragment,
        column: &str,
        estimate: usize,
        pool: &Arc<dyn MemoryPool>,
    ) -> Result<Option<Arc<FragmentVectors>>> {
        let key = vectors_key(dataset, fragment, column);
        let files = FragmentFiles::of(fragment);
        match self.loader.entries.get(&key).await {
            Some(Entry::Vectors(vectors)) if vectors.files() == &files => return Ok(Some(vectors)),
            Some(_) => self.loader.entries.invalidate(&key).await,
            None => {}
        }
        let Some(_reserved) = reserve(pool, "vector loading", estimate as u64) else {
            return Ok(None);
        };
        let read = self
            .loader
            .entries
            .try_get_with(key, async {
                self.loader.vector_reads.fetch_add(1, Ordering::Relaxed);
                match FragmentVectors::read(dataset, fragment, column).await? {
                    Some(vectors) => Ok(Entry::Vectors(Arc::new(vectors))),
                    None => Err(DataFusionError::Execution(format!(
                        "the rows of fragment {} could not be read in order",
                        fragment.id
                    ))),
                }
            })
            .await;
        Ok(match read {
            Ok(Entry::Vectors(vectors)) if vectors.files() == &files => Some(vectors),
            Ok(_) => None,
            // Searched through Lance's scanner, which reports what is wrong with the files.
            Err(_) => None,
        })
    }

    /// Weighs `vectors` (`column` of `fragment` of `dataset`) again, with the columns it
    /// has loaded since it was weighed.
    pub(crate) async fn reweigh_vectors(
        &self,
        dataset: &Dataset,
        fragment: &Fragment,
        column: &str,
        vectors: &Arc<FragmentVectors>,
    ) {
        let key = vectors_key(dataset, fragment, column);
        let entry = Entry::Vectors(Arc::clone(vectors));
        self.loader.entries.insert(key, entry).await;
    }

    /// How many fragments' vectors this cache has read.
    #[cfg(test)]
    pub(crate) fn vector_reads(&self) -> u64 {
        self.loader.vector_reads.load(Ordering::Relaxed)
    }

    /// Loads segment `key` of `dataset` (`index`) in the background, once.
    fn load_in_background(
        &self,
        dataset: &Dataset,
        key: &LoadKey,
        index: &Arc<dyn VectorIndex>,
        column: &str,
        dim: usize,
    ) {
        let started = self
            .loading
            .lock()
            .is_ok_and(|mut loading| loading.insert(key.clone()));
        if !started {
            return;
        }
        let (loader, loading) = (self.loader.clone(), Arc::clone(&self.loading));
        let (dataset, key, index, column) = (
            dataset.clone(),
            key.clone(),
            Arc::clone(index),
            column.to_string(),
        );
        tokio::spawn(async move {
            let loaded = loader
                .load(&key, &dataset, index.as_ref(), &column, dim)
                .await;
            if let Err(e) = loaded {
                tracing::warn!("index segment {} could not be loaded: {e}", key.segment);
            }
            if let Ok(mut loading) = loading.lock() {
                loading.remove(&key);
            }
        });
    }

    /// Column `name` of `index` at every position, loaded if it fits an eighth of the budget,
    /// and the index with it the whole budget; `None` otherwise. A loaded column is part of the
    /// index's entry, which is weighed again with it. A column whose values have no fixed width
    /// is measured once loaded, and one found too large is not loaded again.
    pub(crate) async fn column(
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
        let Some((_, field)) = index.schema.column_with_name(name) else {
            return Ok(None);
        };
        let too_large = |bytes: u64| {
            bytes > self.loader.budget_bytes / 8
                || index.size_bytes() as u64 + bytes > self.loader.budget_bytes
        };
        let width = fixed_width(field.data_type()).unwrap_or(VARIABLE_WIDTH_GUESS);
        let estimate = (index.row_ids.len() * width) as u64;
        let refused = index
            .too_large_columns
            .lock()
            .is_ok_and(|c| c.contains(name));
        if refused || too_large(estimate) {
            return Ok(None);
        }
        let Some(reserved) = reserve(pool, "index column loading", estimate) else {
            return Ok(None);
        };
        let _loading = index.column_load.lock().await;
        if let Some(values) = loaded() {
            return Ok(Some(values));
        }
        // Only from a version that still holds every fragment the index was loaded from, so
        // that the column has a value at every position another version may show.
        let Some(values) = index.take(dataset, name).await? else {
            return Ok(None);
        };
        let bytes = values.get_array_memory_size() as u64;
        if too_large(bytes) {
            if let Ok(mut refused) = index.too_large_columns.lock() {
                refused.insert(name.to_string());
            }
            return Ok(None);
        }
        if reserved
            .try_grow(bytes.saturating_sub(estimate) as usize)
            .is_err()
        {
            return Ok(None);
        }
        if let Ok(mut columns) = index.columns.lock() {
            columns.insert(name.to_string(), values.clone());
        }
        // Weighed again, with the column.
        self.loader.reweigh(index).await;
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
    /// Columns without a fixed width found too large to load.
    too_large_columns: Mutex<HashSet<String>>,
    /// The fragments the index's rows are in, by id: what they held when the index was loaded,
    /// and the positions of their rows.
    fragments: HashMap<u32, LoadedFragment>,
    /// Rows outside the index that versions searched hold, by fragment id: read once, shared
    /// by the versions ([`IndexVersion`]) that hold the same fragment.
    pub(crate) unindexed: Mutex<HashMap<u64, Arc<UnindexedRows>>>,
}

/// A fragment the rows of a [`LoadedIndex`] are in.
pub(crate) struct LoadedFragment {
    /// Its files when the index was loaded; `None` where the version loaded from no longer held
    /// the fragment, whose positions then hold no vectors.
    pub(crate) files: Option<FragmentFiles>,
    /// `(offset in the fragment, position in the index)` of its rows, by offset.
    pub(crate) positions: Vec<(u32, u32)>,
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
        let fragments = fragment_positions(dataset, &row_ids);
        let Some(vectors) = take_positions(dataset, &row_ids, &fragments, column).await? else {
            return Err(DataFusionError::Execution(format!(
                "index rows of column {column} could not be read"
            )));
        };
        let list = vectors.as_fixed_size_list();
        let values = f32_values(list)?;
        let norms = norms_for(distance_type, &values, dim);
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
            too_large_columns: Mutex::new(HashSet::new()),
            fragments,
            unindexed: Mutex::new(HashMap::new()),
        })
    }

    /// Its key in the cache.
    pub(crate) fn key(&self) -> &LoadKey {
        &self.key
    }

    /// The number of positions (indexed rows).
    pub(crate) fn len(&self) -> usize {
        self.row_ids.len()
    }

    /// The row id at `position`.
    pub(crate) fn row_id(&self, position: usize) -> u64 {
        self.row_ids[position]
    }

    /// The indexed column's name.
    pub(crate) fn column(&self) -> &str {
        &self.column
    }

    /// The indexed column's vectors, one per position.
    pub(crate) fn vectors(&self) -> &ArrayRef {
        &self.vectors
    }

    /// The fragments the index's rows are in, by id.
    pub(crate) fn fragments(&self) -> &HashMap<u32, LoadedFragment> {
        &self.fragments
    }

    /// Column `name` at every position, read from `dataset`, if it still holds every fragment
    /// the index was loaded from (see [`take_positions`]).
    async fn take(&self, dataset: &Dataset, name: &str) -> Result<Option<ArrayRef>> {
        let held = dataset
            .fragments()
            .iter()
            .filter_map(|f| u32::try_from(f.id).ok());
        let held: HashSet<u32> = held.collect();
        let complete = self
            .fragments
            .iter()
            .all(|(id, f)| f.files.is_none() || held.contains(id));
        if !complete {
            return Ok(None);
        }
        take_positions(dataset, &self.row_ids, &self.fragments, name).await
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
    /// `partitions`, nearest first (ties by position), as `(score, position)`, of the positions
    /// `admitted` admits (all where `None`). The beam scores the 8-bit codes; the `ef` nodes it
    /// finds in a partition are then scored exactly, and those scores are returned. Smaller is
    /// nearer: the squared L2 distance, the cosine distance, or the negative dot product
    /// ([`metric_distance`] turns them into the distance functions' values). NULL vectors are
    /// never found.
    pub(crate) fn search(
        &self,
        query: &[f32],
        partitions: &[u32],
        ef: usize,
        candidates: usize,
        admitted: Option<&BooleanBuffer>,
    ) -> Vec<(f32, usize)> {
        let scorer = ExactScorer::new(self.distance_type, query);
        let (dim, values) = (self.dim, &self.values[..]);
        let valid = self.vectors.logical_nulls();
        let is_null = |position: usize| valid.as_ref().is_some_and(|v| v.is_null(position));
        let row = |position: usize| &values[position * dim..(position + 1) * dim];
        let norm = |position: usize| self.norms.as_ref().map_or(0.0, |n| n[position]);
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
            let graph = &partition.graph;
            let nearest = match admitted {
                None => graph.search(ef, UPPER_BEAM, &mut scratch, score, prefetch_node),
                Some(admitted) => {
                    let admit = |node: u32| admitted.value(start + node as usize);
                    graph.search_admitting(
                        ef,
                        UPPER_BEAM,
                        &mut scratch,
                        score,
                        prefetch_node,
                        admit,
                    )
                }
            };
            let nearest: Vec<usize> = nearest
                .into_iter()
                .map(|(_, node)| start + node as usize)
                .filter(|position| !is_null(*position))
                .collect();
            nearest.iter().for_each(|position| prefetch(row(*position)));
            found.extend(
                nearest
                    .into_iter()
                    .map(|p| (scorer.score(row(p), norm(p)), p)),
            );
        }
        if let Ok(mut pool) = self.scratch.lock() {
            pool.push(scratch);
        }
        nearest(&mut found, candidates);
        found
    }

    /// The scores of the positions `admitted` admits, each scored exactly, as `(score,
    /// position)` in position order; NULL vectors left out.
    pub(crate) fn score_admitted(
        &self,
        query: &[f32],
        admitted: &BooleanBuffer,
    ) -> Vec<(f32, usize)> {
        let scorer = ExactScorer::new(self.distance_type, query);
        let valid = self.vectors.logical_nulls();
        let dim = self.dim;
        admitted
            .set_indices()
            .filter(|p| valid.as_ref().is_none_or(|v| v.is_valid(*p)))
            .map(|p| {
                let row = &self.values[p * dim..(p + 1) * dim];
                let norm = self.norms.as_ref().map_or(0.0, |n| n[p]);
                (scorer.score(row, norm), p)
            })
            .collect()
    }

    /// The dataset's columns.
    pub(crate) fn schema(&self) -> &SchemaRef {
        &self.schema
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
        let mut columns = columns.into_iter();
        projected_batch(
            &self.schema,
            projection,
            positions.len(),
            |name| match columns.next().flatten() {
                Some(array) => Ok(array),
                None => taken_column(taken.as_ref(), name),
            },
        )
    }
}

/// A batch of `rows` rows of the columns `projection`, typed as `schema` has them, each
/// column's values given by `values(name)`, in order.
pub(crate) fn projected_batch(
    schema: &Schema,
    projection: &[String],
    rows: usize,
    mut values: impl FnMut(&str) -> Result<ArrayRef>,
) -> Result<RecordBatch> {
    let mut fields = Vec::with_capacity(projection.len());
    let mut arrays = Vec::with_capacity(projection.len());
    for name in projection {
        arrays.push(values(name)?);
        let (_, field) = schema
            .fields()
            .find(name)
            .ok_or_else(|| DataFusionError::Plan(format!("the collection has no column {name}")))?;
        fields.push(field.clone());
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        arrays,
        &options,
    )?)
}

/// Column `name` of the rows `taken` from the files by row id.
pub(crate) fn taken_column(taken: Option<&RecordBatch>, name: &str) -> Result<ArrayRef> {
    taken
        .and_then(|t| t.column_by_name(name))
        .cloned()
        .ok_or_else(|| DataFusionError::Internal(format!("take_rows returned no column {name}")))
}

/// The cache key of the decoded `column` of `fragment` of `dataset`.
fn vectors_key(dataset: &Dataset, fragment: &Fragment, column: &str) -> EntryKey {
    EntryKey::Vectors {
        dataset: dataset.uri().to_string(),
        fragment: fragment.id,
        column: column.to_string(),
    }
}

/// The cache key of what index `name` shows of `dataset`'s version.
fn version_key(dataset: &Dataset, name: &str) -> VersionKey {
    VersionKey {
        dataset: dataset.uri().to_string(),
        // Not `dataset.version()`, which copies the manifest's summary into a map.
        version: dataset.manifest().version,
        index: name.to_string(),
    }
}

/// The fragments of the rows `row_ids` (a row id is its fragment id and offset: the dataset
/// does not use stable row ids), with the files `dataset` holds of each.
fn fragment_positions(dataset: &Dataset, row_ids: &[u64]) -> HashMap<u32, LoadedFragment> {
    let held: HashMap<u64, &Fragment> = dataset.fragments().iter().map(|f| (f.id, f)).collect();
    let mut out: HashMap<u32, LoadedFragment> = HashMap::new();
    for (position, row_id) in row_ids.iter().enumerate() {
        let (fragment, offset) = ((row_id >> 32) as u32, *row_id as u32);
        out.entry(fragment)
            .or_insert_with(|| LoadedFragment {
                files: held.get(&u64::from(fragment)).map(|f| FragmentFiles::of(f)),
                positions: Vec::new(),
            })
            .positions
            .push((offset, position as u32));
    }
    for fragment in out.values_mut() {
        fragment.positions.sort_unstable();
    }
    out
}

/// Column `name` of the rows `row_ids` of `dataset`, one value per position (rows the version
/// deleted with their stored values, so positions keep their rows), NULL at the positions of
/// `fragments` the version no longer holds; `None` where it holds none of them, or the rows
/// read are not the rows asked for.
async fn take_positions(
    dataset: &Dataset,
    row_ids: &[u64],
    fragments: &HashMap<u32, LoadedFragment>,
    name: &str,
) -> Result<Option<ArrayRef>> {
    let held = |row_id: &u64| {
        fragments
            .get(&((row_id >> 32) as u32))
            .is_some_and(|f| f.files.is_some())
    };
    let present: Vec<u64> = row_ids.iter().copied().filter(held).collect();
    if present.is_empty() {
        return Ok(None);
    }
    let projection = ProjectionRequest::from_columns([name], dataset.schema());
    let batch = Arc::new(dataset.clone())
        .take_builder(&present, projection)?
        .with_ignore_deletions(true)
        .execute()
        .await?;
    if batch.num_rows() != present.len() {
        return Ok(None);
    }
    let values = batch.column(0).clone();
    if present.len() == row_ids.len() {
        return Ok(Some(values));
    }
    let mut next = 0u32;
    let indices: UInt32Array = row_ids
        .iter()
        .map(|row_id| {
            held(row_id).then(|| {
                next += 1;
                next - 1
            })
        })
        .collect();
    Ok(Some(take(&values, &indices, None)?))
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

/// Leaves in `found` (`(score, position)`) its `candidates` smallest scores, nearest first (ties
/// by position).
pub(crate) fn nearest(found: &mut Vec<(f32, usize)>, candidates: usize) {
    let order = |a: &(f32, usize), b: &(f32, usize)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
    if found.len() > candidates && candidates > 0 {
        found.select_nth_unstable_by(candidates - 1, order);
    }
    found.truncate(candidates);
    found.sort_by(order);
}

/// Scores rows against one query exactly, as a [`LoadedIndex::search`] scores them.
pub(crate) struct ExactScorer<'a> {
    distance_type: DistanceType,
    query: &'a [f32],
    /// The query's squared norm, for a cosine index.
    query_norm: f32,
}

impl<'a> ExactScorer<'a> {
    /// A scorer of `query` for an index of `distance_type`.
    pub(crate) fn new(distance_type: DistanceType, query: &'a [f32]) -> Self {
        let query_norm = (kernels().dot)(query, query);
        Self {
            distance_type,
            query,
            query_norm,
        }
    }

    /// The query's dimension.
    pub(crate) fn dim(&self) -> usize {
        self.query.len()
    }

    /// The score of `row`, whose squared norm is `norm` (read only for a cosine index).
    #[inline]
    pub(crate) fn score(&self, row: &[f32], norm: f32) -> f32 {
        let k = kernels();
        match self.distance_type {
            DistanceType::Cosine => {
                cosine_from_parts((k.dot)(self.query, row), self.query_norm, norm)
            }
            DistanceType::Dot => -(k.dot)(self.query, row),
            _ => (k.l2_squared)(self.query, row),
        }
    }
}

/// The squared norms of `dim`-long vectors `values`, where `distance_type` needs them (cosine).
pub(crate) fn norms_for(
    distance_type: DistanceType,
    values: &[f32],
    dim: usize,
) -> Option<Vec<f32>> {
    (distance_type == DistanceType::Cosine).then(|| {
        let k = kernels();
        values.chunks_exact(dim).map(|v| (k.dot)(v, v)).collect()
    })
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
pub(crate) fn f32_values(list: &FixedSizeListArray) -> Result<ScalarBuffer<f32>> {
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
    use futures::TryStreamExt;
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

    /// The rows `ids` (`id`, `embedding`: `values`, `DIM` a row, and `tags`: `id * TAGS + j` for
    /// `j` in `0..TAGS`).
    fn rows_of(ids: std::ops::Range<i64>, values: Vec<f32>) -> RecordBatch {
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
        let tags = (ids.start * TAGS as i64..ids.end * TAGS as i64).collect::<Int64Array>();
        let tags = FixedSizeListArray::try_new(tag, TAGS as i32, Arc::new(tags), None).unwrap();
        let vectors = FixedSizeListArray::try_new(
            item,
            DIM as i32,
            Arc::new(Float32Array::from(values)),
            None,
        )
        .unwrap();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(ids)),
                Arc::new(vectors),
                Arc::new(tags),
            ],
        )
        .unwrap()
    }

    /// `rows` random vectors, the same for the same `seed`.
    fn random_vectors(rows: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..rows * DIM)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect()
    }

    /// A dataset of `ROWS` rows ([`rows_of`], ids `0..ROWS`) in `dir`, with an IVF_HNSW_SQ index
    /// on the embeddings, and that index opened.
    async fn indexed(dir: &tempfile::TempDir, m: usize) -> (Dataset, Arc<dyn VectorIndex>) {
        let batch = rows_of(0..ROWS as i64, random_vectors(ROWS, 3));
        let uri = dir.path().to_str().unwrap();
        let reader = RecordBatchIterator::new([Ok(batch.clone())], batch.schema());
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

    /// The index's one segment as `dataset`'s version lists it.
    async fn segment(dataset: &Dataset) -> IndexSegment<'static> {
        let indices = dataset.load_indices().await.unwrap();
        let segment = indices.iter().find(|i| i.name == INDEX).unwrap();
        IndexSegment {
            name: INDEX,
            uuid: segment.uuid.to_string(),
            covered: segment.fragment_bitmap.as_ref().unwrap().iter().collect(),
        }
    }

    /// `index` of `dataset` from `cache`, loaded if it is not, as it is in `dataset`'s version.
    async fn load(
        cache: &LoadedIndices,
        dataset: &Dataset,
        index: &Arc<dyn VectorIndex>,
        pool: &Arc<dyn MemoryPool>,
    ) -> Result<Option<LoadedVersion>> {
        let segment = segment(dataset).await;
        cache
            .get_or_load(dataset, &segment, index, "embedding", pool)
            .await
    }

    /// The cache key of the index's segment in `dataset`.
    async fn load_key(dataset: &Dataset) -> LoadKey {
        LoadKey {
            dataset: dataset.uri().to_string(),
            segment: segment(dataset).await.uuid,
        }
    }

    /// The bytes `index` of `dataset` holds once loaded, or that loading it is estimated at
    /// beforehand, whichever is more: a cache of this budget loads it.
    async fn loaded_size(dataset: &Dataset, index: &Arc<dyn VectorIndex>) -> u64 {
        let cache = LoadedIndices::new(1 << 30);
        let loaded = load(&cache, dataset, index, &unbounded()).await;
        let size = loaded.unwrap().unwrap().index().size_bytes() as u64;
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
        let loaded = load(&cache, dataset, index, &unbounded()).await;
        let loaded = Arc::clone(loaded.unwrap().unwrap().index());
        cache.loader.entries.run_pending_tasks().await;
        let weight_before = cache.loader.entries.weighted_size();
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
        cache.loader.entries.run_pending_tasks().await;
        Taken {
            loaded,
            tags,
            weight_before,
            weight_after: cache.loader.entries.weighted_size(),
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
        let loaded = load(&cache, &dataset, &index, &unbounded()).await;
        assert!(loaded.unwrap().is_none());
        assert!(cache.cached(&dataset, INDEX).await.is_none());
    }

    #[tokio::test]
    async fn rows_outside_the_index_beyond_an_eighth_of_the_budget_leave_the_version_to_lance() {
        let dir = tempfile::tempdir().unwrap();
        let (mut dataset, index) = indexed(&dir, 16).await;
        let budget = loaded_size(&dataset, &index).await;
        let cache = LoadedIndices::new(budget);
        assert!(load(&cache, &dataset, &index, &unbounded())
            .await
            .unwrap()
            .is_some());
        // A few rows written since: held beside the index.
        let few = rows_of(ROWS as i64..ROWS as i64 + 10, random_vectors(10, 31));
        let reader = RecordBatchIterator::new([Ok(few.clone())], few.schema());
        dataset.append(reader, None).await.unwrap();
        let loaded = load(&cache, &dataset, &index, &unbounded()).await.unwrap();
        assert_eq!(loaded.unwrap().unindexed_rows(), 10);
        // Fewer rows than the index holds, but their vectors alone take more than an eighth of
        // the budget: the version is searched through Lance, and the index stays loaded.
        let many = ROWS - 20;
        assert!(
            ((many * DIM * 4) as u64) > budget / 8,
            "premise: {budget} bytes"
        );
        let first = 10 * ROWS as i64;
        let batch = rows_of(first..first + many as i64, random_vectors(many, 37));
        let reader = RecordBatchIterator::new([Ok(batch.clone())], batch.schema());
        dataset.append(reader, None).await.unwrap();
        let loaded = load(&cache, &dataset, &index, &unbounded()).await.unwrap();
        assert!(loaded.is_none());
        assert!(cache.is_loaded(&load_key(&dataset).await).await);
        assert_eq!(cache.loads(), 1);
    }

    #[tokio::test]
    async fn a_query_loads_an_index_only_within_its_memory_limit() {
        let dir = tempfile::tempdir().unwrap();
        let (dataset, index) = indexed(&dir, 16).await;
        let cache = LoadedIndices::new(1 << 30);
        let estimate = estimated_bytes(ROWS as u64, DIM) as usize;
        let small: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(estimate / 2));
        let loaded = load(&cache, &dataset, &index, &small).await;
        assert!(loaded.unwrap().is_none());
        assert!(cache.cached(&dataset, INDEX).await.is_none());
        assert_eq!(small.reserved(), 0);

        let fits: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(estimate));
        let loaded = load(&cache, &dataset, &index, &fits).await;
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
        let loaded = load(&roomy, &dataset, &index, &unbounded()).await;
        let size = loaded.unwrap().unwrap().index().size_bytes() as u64;
        assert!(size > estimate + 2048, "{size} bytes, estimated {estimate}");
        let cache = LoadedIndices::new((estimate + size) / 2);
        for _ in 0..2 {
            let loaded = load(&cache, &dataset, &index, &unbounded()).await;
            assert!(loaded.unwrap().is_none());
            cache.loader.entries.run_pending_tasks().await;
            assert_eq!(cache.loader.entries.entry_count(), 0);
            assert!(cache
                .loader
                .too_large
                .contains_key(&load_key(&dataset).await));
        }
    }

    #[tokio::test]
    async fn the_least_recently_used_index_leaves_when_another_does_not_fit() {
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, index_a) = indexed(&dir_a, 16).await;
        let (b, index_b) = indexed(&dir_b, 16).await;
        // Room for one of the two.
        let cache = LoadedIndices::new(loaded_size(&a, &index_a).await * 5 / 4);
        let first = load(&cache, &a, &index_a, &unbounded()).await;
        assert!(first.unwrap().is_some());
        cache.loader.entries.run_pending_tasks().await;
        assert!(cache.cached(&a, INDEX).await.is_some());
        let second = load(&cache, &b, &index_b, &unbounded()).await;
        assert!(second.unwrap().is_some());
        cache.loader.entries.run_pending_tasks().await;
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

    /// The `(id, score)` of the `k` rows of `loaded`'s version of `dataset` nearest `query`,
    /// nearest first, from a search wide enough to visit every node, with each row's `tags`
    /// checked against its id.
    async fn searched(
        cache: &LoadedIndices,
        loaded: &LoadedVersion,
        dataset: &Dataset,
        query: &[f32],
        k: usize,
    ) -> Vec<(i64, f32)> {
        let (found, _) = loaded.search(query, &[0], 4 * ROWS, k, None);
        let positions: Vec<usize> = found.iter().map(|(_, p)| *p).collect();
        let projection = ["id".to_string(), "tags".to_string()];
        let rows = loaded
            .rows(cache, dataset, &positions, &projection, &unbounded())
            .await
            .unwrap();
        let ids = rows.column(0).as_primitive::<Int64Type>().values().to_vec();
        let tags = rows.column(1).as_fixed_size_list().values();
        let tags = tags.as_primitive::<Int64Type>().values();
        for (i, id) in ids.iter().enumerate() {
            let expected: Vec<i64> = (0..TAGS as i64).map(|j| id * TAGS as i64 + j).collect();
            assert_eq!(tags[i * TAGS..(i + 1) * TAGS], expected[..], "row {id}");
        }
        ids.into_iter().zip(found.iter().map(|(s, _)| *s)).collect()
    }

    /// The ids of the `k` rows of `dataset`'s version nearest `query` by squared L2, by brute
    /// force over a scan.
    async fn exact(dataset: &Dataset, query: &[f32], k: usize) -> Vec<i64> {
        exact_where(dataset, query, k, |_| true).await
    }

    /// The ids of the `k` rows of `dataset`'s version whose id `admits`, nearest `query` by
    /// squared L2, by brute force over a scan.
    async fn exact_where(
        dataset: &Dataset,
        query: &[f32],
        k: usize,
        admits: impl Fn(i64) -> bool,
    ) -> Vec<i64> {
        let batches: Vec<RecordBatch> = dataset
            .scan()
            .project(&["id", "embedding"])
            .unwrap()
            .try_into_stream()
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let mut all: Vec<(f32, i64)> = Vec::new();
        for batch in &batches {
            let ids = batch.column(0).as_primitive::<Int64Type>();
            let vectors = batch.column(1).as_fixed_size_list().values().clone();
            let values = vectors.as_primitive::<Float32Type>().values();
            for (i, id) in ids.values().iter().enumerate() {
                if !admits(*id) {
                    continue;
                }
                let row = &values[i * DIM..(i + 1) * DIM];
                let d: f32 = row.iter().zip(query).map(|(a, b)| (a - b) * (a - b)).sum();
                all.push((d, *id));
            }
        }
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        all.into_iter().take(k).map(|(_, id)| id).collect()
    }

    /// The ids of `found`.
    fn ids(found: &[(i64, f32)]) -> Vec<i64> {
        found.iter().map(|(id, _)| *id).collect()
    }

    #[tokio::test]
    async fn a_loaded_index_follows_appends_and_deletes_without_loading_again() {
        let dir = tempfile::tempdir().unwrap();
        let (mut dataset, index) = indexed(&dir, 16).await;
        let cache = LoadedIndices::new(1 << 30);
        let first = load(&cache, &dataset, &index, &unbounded()).await;
        let first = first.unwrap().unwrap();
        assert_eq!(cache.loads(), 1);
        let before = dataset.manifest().version;

        // Rows appended (one of them the query itself), and rows deleted: the indexed row
        // nearest the query, and the first ten.
        let appended = random_vectors(20, 11);
        let query = appended[5 * DIM..6 * DIM].to_vec();
        let nearest_indexed = exact(&dataset, &query, 1).await[0];
        let batch = rows_of(ROWS as i64..ROWS as i64 + 20, appended);
        let reader = RecordBatchIterator::new([Ok(batch.clone())], batch.schema());
        dataset.append(reader, None).await.unwrap();
        let deleted = format!("id = {nearest_indexed} OR id < 10");
        dataset.delete(&deleted).await.unwrap();

        let loaded = load(&cache, &dataset, &index, &unbounded()).await;
        let loaded = loaded.unwrap().unwrap();
        assert_eq!(cache.loads(), 1, "a write does not load the index again");
        assert!(Arc::ptr_eq(loaded.index(), first.index()));
        assert_eq!(loaded.unindexed_rows(), 20);
        let found = searched(&cache, &loaded, &dataset, &query, 10).await;
        assert_eq!(found[0], (ROWS as i64 + 5, 0.0));
        assert_eq!(ids(&found), exact(&dataset, &query, 10).await);
        assert!(found
            .iter()
            .all(|(id, _)| *id >= 10 && *id != nearest_indexed));
        // The version is now cached: looked up, not built again.
        let cached = cache.cached(&dataset, INDEX).await.unwrap();
        assert_eq!(searched(&cache, &cached, &dataset, &query, 10).await, found);

        // The version before the writes still finds exactly its rows.
        let old = dataset.checkout_version(before).await.unwrap();
        let old_loaded = load(&cache, &old, &index, &unbounded()).await;
        let old_loaded = old_loaded.unwrap().unwrap();
        assert_eq!(old_loaded.unindexed_rows(), 0);
        let found_before = searched(&cache, &old_loaded, &old, &query, 10).await;
        assert_eq!(ids(&found_before), exact(&old, &query, 10).await);
        assert_eq!(found_before[0].0, nearest_indexed);
        assert_eq!(cache.loads(), 1);
    }

    #[tokio::test]
    async fn an_optimised_index_loads_in_the_background_while_the_earlier_segment_answers() {
        use lance_index::optimize::OptimizeOptions;

        let dir = tempfile::tempdir().unwrap();
        let (mut dataset, index) = indexed(&dir, 16).await;
        let cache = LoadedIndices::new(1 << 30);
        let first = load(&cache, &dataset, &index, &unbounded()).await;
        let first = first.unwrap().unwrap();
        let earlier = load_key(&dataset).await;
        let appended = random_vectors(20, 17);
        let query = appended[3 * DIM..4 * DIM].to_vec();
        let batch = rows_of(ROWS as i64..ROWS as i64 + 20, appended);
        let reader = RecordBatchIterator::new([Ok(batch.clone())], batch.schema());
        dataset.append(reader, None).await.unwrap();
        dataset
            .optimize_indices(&OptimizeOptions::merge(1))
            .await
            .unwrap();
        let own = load_key(&dataset).await;
        assert_ne!(own, earlier, "the optimisation made a new segment");
        let uuid = dataset.load_indices().await.unwrap()[0].uuid;
        let optimised = dataset
            .open_vector_index("embedding", &uuid, &NoOpMetricsCollector)
            .await
            .unwrap();

        // The first search of the optimised version does not wait for its segment: the earlier
        // one answers, with the appended rows searched exactly beside it.
        let standing_in = load(&cache, &dataset, &optimised, &unbounded()).await;
        let standing_in = standing_in.unwrap().unwrap();
        assert!(Arc::ptr_eq(standing_in.index(), first.index()));
        assert_eq!(standing_in.unindexed_rows(), 20);
        let expected = exact(&dataset, &query, 10).await;
        let found = searched(&cache, &standing_in, &dataset, &query, 10).await;
        assert_eq!(found[0], (ROWS as i64 + 3, 0.0));
        assert_eq!(ids(&found), expected);

        // Meanwhile the version's own segment loads; once it has, searches use it.
        for _ in 0..400 {
            if cache.is_loaded(&own).await {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert!(cache.is_loaded(&own).await);
        assert_eq!(cache.loads(), 2);
        assert!(
            cache.cached(&dataset, INDEX).await.is_none(),
            "the stand-in no longer answers once the segment is loaded"
        );
        let loaded = load(&cache, &dataset, &optimised, &unbounded()).await;
        let loaded = loaded.unwrap().unwrap();
        assert_eq!(loaded.index().key(), &own);
        assert_eq!(loaded.unindexed_rows(), 0);
        let found = searched(&cache, &loaded, &dataset, &query, 10).await;
        assert_eq!(ids(&found), expected);
        let cached = cache.cached(&dataset, INDEX).await.unwrap();
        assert_eq!(cached.index().key(), &own);
        assert_eq!(cache.loads(), 2);
    }

    #[tokio::test]
    async fn an_index_remapped_by_a_compaction_loads_in_the_background_while_lance_answers() {
        use lance::dataset::optimize::{compact_files, CompactionOptions};

        let dir = tempfile::tempdir().unwrap();
        let (mut dataset, index) = indexed(&dir, 16).await;
        let cache = LoadedIndices::new(1 << 30);
        load(&cache, &dataset, &index, &unbounded()).await.unwrap();
        // A fifth of the rows deleted: the compaction rewrites the fragment without them, and
        // remaps the index to the new row addresses; with the rows appended, more rows are
        // outside the earlier segment than in it.
        dataset.delete("id % 5 = 0").await.unwrap();
        let batch = rows_of(ROWS as i64..ROWS as i64 + 100, random_vectors(100, 29));
        let reader = RecordBatchIterator::new([Ok(batch.clone())], batch.schema());
        dataset.append(reader, None).await.unwrap();
        compact_files(&mut dataset, CompactionOptions::default(), None)
            .await
            .unwrap();
        let own = load_key(&dataset).await;
        let uuid = dataset.load_indices().await.unwrap()[0].uuid;
        let remapped = dataset
            .open_vector_index("embedding", &uuid, &NoOpMetricsCollector)
            .await
            .unwrap();
        // The earlier segment holds none of the version's fragments: the search is left to
        // Lance, without waiting, while the remapped segment loads.
        let first = load(&cache, &dataset, &remapped, &unbounded()).await;
        assert!(first.unwrap().is_none());
        for _ in 0..400 {
            if cache.is_loaded(&own).await {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert_eq!(cache.loads(), 2);
        let loaded = load(&cache, &dataset, &remapped, &unbounded()).await;
        let loaded = loaded.unwrap().unwrap();
        assert_eq!(loaded.index().key(), &own);
        assert_eq!(loaded.unindexed_rows(), 100);
        let query = random_vectors(1, 23);
        let found = searched(&cache, &loaded, &dataset, &query, 10).await;
        assert_eq!(ids(&found), exact(&dataset, &query, 10).await);
        assert!(found.iter().all(|(id, _)| id % 5 != 0));
    }

    #[tokio::test]
    async fn an_index_loaded_after_a_delete_still_holds_the_deleted_rows_for_earlier_versions() {
        let dir = tempfile::tempdir().unwrap();
        let (mut dataset, index) = indexed(&dir, 16).await;
        let before = dataset.manifest().version;
        dataset.delete("id % 3 = 0").await.unwrap();
        let cache = LoadedIndices::new(1 << 30);
        let query = random_vectors(1, 5);
        // Loaded first at the version after the delete.
        let loaded = load(&cache, &dataset, &index, &unbounded()).await;
        let found = searched(&cache, &loaded.unwrap().unwrap(), &dataset, &query, 10).await;
        assert_eq!(ids(&found), exact(&dataset, &query, 10).await);
        assert!(found.iter().all(|(id, _)| id % 3 != 0));
        // The rows it deleted were loaded with their stored vectors and values.
        let old = dataset.checkout_version(before).await.unwrap();
        let old_loaded = load(&cache, &old, &index, &unbounded()).await;
        let found = searched(&cache, &old_loaded.unwrap().unwrap(), &old, &query, 10).await;
        assert_eq!(ids(&found), exact(&old, &query, 10).await);
        assert!(found.iter().any(|(id, _)| id % 3 == 0));
        assert_eq!(cache.loads(), 1);
    }

    #[tokio::test]
    async fn a_filter_admits_live_rows_in_and_outside_the_index_and_both_searches_honour_it() {
        use crate::index::filtered::{Admitted, FilteredPath};
        use datafusion::prelude::{col, lit};

        let dir = tempfile::tempdir().unwrap();
        let (mut dataset, index) = indexed(&dir, 16).await;
        let batch = rows_of(ROWS as i64..ROWS as i64 + 40, random_vectors(40, 12));
        let reader = RecordBatchIterator::new([Ok(batch.clone())], batch.schema());
        dataset.append(reader, None).await.unwrap();
        dataset.delete("id % 7 = 0").await.unwrap();
        let cache = LoadedIndices::new(1 << 30);
        let loaded = load(&cache, &dataset, &index, &unbounded()).await;
        let loaded = loaded.unwrap().unwrap();
        let admits = |id: i64| id % 3 == 1 && id > 20;
        let filter = (col("id") % lit(3i64))
            .eq(lit(1i64))
            .and(col("id").gt(lit(20i64)));
        let admitted = Admitted::evaluate(&loaded, &cache, &dataset, &filter, &unbounded()).await;
        let admitted = admitted.unwrap().unwrap();
        let live_admitted = (0..ROWS as i64 + 40)
            .filter(|id| id % 7 != 0 && admits(*id))
            .count();
        assert_eq!(admitted.count, live_admitted);

        let query = random_vectors(1, 13);
        for k in [1, 10, live_admitted, live_admitted + 5] {
            let (found, path) = loaded.search(&query, &[0], 20, k, Some(&admitted));
            assert_eq!(path, Some(FilteredPath::Exact));
            let positions: Vec<usize> = found.iter().map(|(_, p)| *p).collect();
            let projection = ["id".to_string()];
            let rows = loaded
                .rows(&cache, &dataset, &positions, &projection, &unbounded())
                .await
                .unwrap();
            let ids = rows.column(0).as_primitive::<Int64Type>().values().to_vec();
            let expected = exact_where(&dataset, &query, k, |id| id % 7 != 0 && admits(id));
            assert_eq!(ids, expected.await, "k = {k}");
        }
        // The graph search, wide enough to visit every node, finds the same admitted rows of
        // the index.
        let found = loaded
            .index()
            .search(&query, &[0], 4 * ROWS, 10, Some(&admitted.indexed));
        let ids: Vec<i64> = found
            .iter()
            .map(|(_, p)| loaded.index().row_id(*p) as i64)
            .collect();
        let indexed = |id: i64| id < ROWS as i64 && id % 7 != 0 && admits(id);
        assert_eq!(ids, exact_where(&dataset, &query, 10, indexed).await);
    }

    #[tokio::test]
    async fn a_version_with_more_rows_outside_the_index_than_in_it_is_searched_through_lance() {
        let dir = tempfile::tempdir().unwrap();
        let (mut dataset, index) = indexed(&dir, 16).await;
        let rows = ROWS as i64 + 1;
        let batch = rows_of(
            ROWS as i64..ROWS as i64 + rows,
            random_vectors(rows as usize, 14),
        );
        let reader = RecordBatchIterator::new([Ok(batch.clone())], batch.schema());
        dataset.append(reader, None).await.unwrap();
        let cache = LoadedIndices::new(1 << 30);
        let loaded = load(&cache, &dataset, &index, &unbounded()).await;
        assert!(loaded.unwrap().is_none());
        assert!(cache.cached(&dataset, INDEX).await.is_none());
        // Remembered: its searches go to Lance without building the version again.
        let remembered = cache.versions.get(&version_key(&dataset, INDEX)).await;
        assert!(matches!(remembered, Some(None)));
    }

    #[tokio::test]
    async fn a_filter_on_a_column_that_does_not_fit_is_left_to_lance() {
        use crate::index::filtered::Admitted;
        use datafusion::prelude::col;

        let dir = tempfile::tempdir().unwrap();
        let (dataset, index) = indexed(&dir, 16).await;
        let filter = col("tags").is_not_null();
        let pool = unbounded();
        // The tags take more than an eighth of this budget: not loaded, so not evaluated here.
        let tight = LoadedIndices::new(loaded_size(&dataset, &index).await + 512);
        let loaded = load(&tight, &dataset, &index, &unbounded()).await;
        let loaded = loaded.unwrap().unwrap();
        let admitted = Admitted::evaluate(&loaded, &tight, &dataset, &filter, &pool);
        assert!(admitted.await.unwrap().is_none());
        // With room for them, every row is admitted.
        let roomy = LoadedIndices::new(1 << 30);
        let loaded = load(&roomy, &dataset, &index, &unbounded()).await;
        let loaded = loaded.unwrap().unwrap();
        let admitted = Admitted::evaluate(&loaded, &roomy, &dataset, &filter, &pool);
        assert_eq!(admitted.await.unwrap().unwrap().count, ROWS);
    }
}
