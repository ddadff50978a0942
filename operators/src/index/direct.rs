//! Searching a Lance vector index directly, without Lance's scanner.
//!
//! The scanner plans a DataFusion plan of its own for every search (index lookup, partition
//! ranking, sub-index search, take of the rows), which costs far more than the graph search
//! itself: on 200k x 128 vectors with an HNSW index, the search of the index alone answers
//! ~8,000 queries a second where the scanner answers ~600 (`benchmarks/README.md`). Where the
//! index alone answers the search exactly as the scanner would, [`DirectIndex`] does what the
//! scanner does inside: the `nprobes` IVF partitions nearest the query, each searched with `ef`,
//! the candidates merged by the index's distance, and their rows taken by row id.
//!
//! That is the case when the index is one segment and the column stores `f32` or `f16`, and an
//! HNSW index is then loaded in memory (`loaded`): it follows later versions itself
//! (`index_version`: rows deleted since are passed over, rows written since are searched exactly
//! beside it) and evaluates a filter itself (`filtered`). Otherwise Lance's own search of the
//! index answers alone only without a filter, where the segment covers every fragment of the
//! version and no row of it is deleted; where it does not (rows written after the index was
//! built, deleted rows, a pre-filter) the scanner's merging of an exact search of the unindexed
//! rows and its deletion mask are needed, and the scanner is used.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, Float16Array, Float32Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Float32Type, UInt64Type};
use datafusion::common::Result;
use datafusion::execution::memory_pool::MemoryPool;
use half::f16;
use lance::dataset::{ProjectionRequest, ROW_ID};
use lance::index::{DatasetIndexExt, DatasetIndexInternalExt};
use lance::Dataset;
use lance_index::metrics::NoOpMetricsCollector;
use lance_index::prefilter::NoFilter;
use lance_index::vector::{ApproxMode, Query, VectorIndex, DIST_COL};
use lance_linalg::distance::DistanceType;

use crate::index::filtered::Admitted;
use crate::index::index_knn::IndexKnnTask;
use crate::index::index_version::LoadedVersion;
use crate::index::loaded::{metric_distance, IndexSegment, LoadedIndices};
use crate::index::search::IndexSearch;
use crate::index::search_metrics::SearchMetrics;

/// An index segment that alone answers searches of one dataset version (see the module docs).
pub(crate) struct DirectIndex {
    searcher: Searcher,
    distance_type: DistanceType,
    /// The column's element type (`Float32` or `Float16`), which the query is given in, as the
    /// scanner gives it.
    element: DataType,
}

/// What a [`DirectIndex`] search found.
pub(crate) enum Candidates {
    /// Rows with the projected columns and the indexed column, in the index's approximate order:
    /// their exact distances are still to be computed.
    Unranked(RecordBatch),
    /// Rows with the projected columns, nearest first (ties by their place in the index), and
    /// each row's exact value of the query's distance function.
    Ranked {
        /// The rows.
        rows: RecordBatch,
        /// Each row's distance.
        distances: Vec<f32>,
    },
}

/// What searches the segment.
enum Searcher {
    /// Quiver's graph search over the index loaded in memory (`loaded`): an HNSW index
    /// that fits the budget, as it is in the version searched.
    Loaded(LoadedVersion),
    /// Lance's search of the index.
    Lance(Arc<dyn VectorIndex>),
}

impl DirectIndex {
    /// The segment of index `search.index` on `dataset`, if it alone answers a search with
    /// `distance_type` (`filtered`: a search with a filter, which only a loaded index answers).
    pub(crate) async fn open(
        dataset: &Dataset,
        search: &IndexSearch,
        distance_type: DistanceType,
        filtered: bool,
        pool: &Arc<dyn MemoryPool>,
    ) -> Result<Option<Self>> {
        // A version never changes: once an index is loaded and what it shows of a version
        // known, a search of that version needs no more checks, nor anything of Lance's.
        let loaded_indices = LoadedIndices::global();
        if let Some(loaded) = loaded_indices.cached(dataset, &search.index).await {
            let index = Arc::clone(loaded.index());
            return Ok((index.distance_type() == distance_type).then(|| Self {
                element: index.element(),
                searcher: Searcher::Loaded(loaded),
                distance_type,
            }));
        }
        let Some(element) = dataset
            .schema()
            .field(&search.column)
            .and_then(|f| match f.data_type() {
                DataType::FixedSizeList(item, _) => Some(item.data_type().clone()),
                _ => None,
            })
            .filter(|t| matches!(t, DataType::Float32 | DataType::Float16))
        else {
            return Ok(None);
        };
        let indices = dataset.load_indices().await?;
        let mut segments = indices.iter().filter(|i| i.name == search.index);
        let (Some(segment), None) = (segments.next(), segments.next()) else {
            return Ok(None);
        };
        let Some(covered) = &segment.fragment_bitmap else {
            return Ok(None);
        };
        let answers_alone = dataset.fragments().iter().all(|fragment| {
            fragment.deletion_file.is_none()
                && u32::try_from(fragment.id).is_ok_and(|id| covered.contains(id))
        });
        let index = dataset
            .open_vector_index(&search.column, &segment.uuid, &NoOpMetricsCollector)
            .await?;
        let indexed = IndexSegment {
            name: &search.index,
            uuid: segment.uuid.to_string(),
            covered: covered.iter().collect(),
        };
        let searcher = match loaded_indices
            .get_or_load(dataset, &indexed, &index, &search.column, pool)
            .await?
        {
            Some(loaded) => Searcher::Loaded(loaded),
            None if answers_alone && !filtered => Searcher::Lance(index),
            None => return Ok(None),
        };
        let metric = match &searcher {
            Searcher::Loaded(loaded) => loaded.index().distance_type(),
            Searcher::Lance(index) => index.metric_type(),
        };
        if metric != distance_type {
            return Ok(None);
        }
        Ok(Some(Self {
            searcher,
            distance_type,
            element,
        }))
    }

    /// Whether the index is searched loaded in memory (`loaded`).
    pub(crate) fn is_loaded(&self) -> bool {
        matches!(self.searcher, Searcher::Loaded(_))
    }

    /// The rows of the `candidates` best matches of `task`'s query by the index's distance,
    /// among the rows its filter admits, with the dataset columns it projects; `None` where the
    /// query cannot be searched here (a cosine query of zero length, which only the scanner's
    /// handling defines; a filter the loaded index cannot evaluate). A loaded index scores exactly, so of its candidates only the `search.k`
    /// nearest are returned; its searches are counted in `metrics`.
    pub(crate) async fn search(
        &self,
        task: &IndexKnnTask,
        candidates: usize,
        metrics: &SearchMetrics,
        pool: &Arc<dyn MemoryPool>,
    ) -> Result<Option<Candidates>> {
        let IndexKnnTask {
            dataset,
            search,
            filter,
            columns,
            ..
        } = task;
        let filter = filter.as_ref();
        // The scanner normalises a cosine query before ranking partitions.
        let norm = match self.distance_type {
            DistanceType::Cosine => {
                let norm = search.query.iter().map(|v| v * v).sum::<f32>().sqrt();
                if !(norm.is_finite() && norm > 0.0) {
                    return Ok(None);
                }
                norm
            }
            _ => 1.0,
        };
        let key = || key_array(&self.element, search.query.iter().map(|v| v / norm));
        let nprobes = search.params.nprobes.max(1);
        let ef = search.params.ef.max(candidates);
        let index = match &self.searcher {
            Searcher::Loaded(loaded) => {
                let cache = LoadedIndices::global();
                let admitted = match filter {
                    Some(filter) => {
                        match Admitted::evaluate(loaded, cache, dataset, filter, pool).await? {
                            Some(admitted) => Some(admitted),
                            None => return Ok(None),
                        }
                    }
                    None => None,
                };
                let probed = loaded.index().partitions(key, nprobes)?;
                // Scored by the query as given: the distance functions' exact values, so the
                // k nearest candidates are the answer and no other row is fetched.
                let (found, filtered) =
                    loaded.search(&search.query, &probed, ef, search.k, admitted.as_ref());
                metrics.record_rows_outside_index(loaded.unindexed_rows());
                if let Some(path) = filtered {
                    metrics.record_filtered_search(path);
                }
                let positions: Vec<usize> = found.iter().map(|(_, p)| *p).collect();
                let rows = loaded
                    .rows(cache, dataset, &positions, columns, pool)
                    .await?;
                let distances = found
                    .into_iter()
                    .map(|(score, _)| metric_distance(search.metric, score))
                    .collect();
                return Ok(Some(Candidates::Ranked { rows, distances }));
            }
            Searcher::Lance(index) => index,
        };
        let mut query = index_query(
            &search.column,
            key(),
            candidates,
            ef,
            nprobes,
            self.distance_type,
        );
        let mut found = nearest_in_index(index.as_ref(), &mut query, nprobes).await?;
        found.truncate(candidates);
        let row_ids: Vec<u64> = found.into_iter().map(|(_, row)| row).collect();
        let projection = with_column(columns, &search.column);
        let projection = ProjectionRequest::from_columns(&projection, dataset.schema());
        let rows = dataset.take_rows(&row_ids, projection).await?;
        Ok(Some(Candidates::Unranked(rows)))
    }
}

/// `columns` and, if not among them, `column`.
pub(crate) fn with_column(columns: &[String], column: &str) -> Vec<String> {
    let mut out = columns.to_vec();
    if !out.iter().any(|c| c == column) {
        out.push(column.to_string());
    }
    out
}

/// `key` as an array of `element` (`Float16` or `Float32`), the type Lance compares it in.
fn key_array(element: &DataType, key: impl Iterator<Item = f32>) -> ArrayRef {
    match element {
        DataType::Float16 => Arc::new(Float16Array::from_iter_values(key.map(f16::from_f32))),
        _ => Arc::new(Float32Array::from_iter_values(key)),
    }
}

/// A search of `index_column`'s index for the `k` nearest to `key` (in the column's element
/// type) by `distance_type`, in exactly `nprobes` partitions with HNSW breadth `ef`: the query
/// Lance's scanner gives the index for `nearest(...).nprobes(nprobes).ef(ef)`.
pub fn index_query(
    index_column: &str,
    key: ArrayRef,
    k: usize,
    ef: usize,
    nprobes: usize,
    distance_type: DistanceType,
) -> Query {
    Query {
        column: index_column.to_string(),
        key,
        k,
        lower_bound: None,
        upper_bound: None,
        minimum_nprobes: nprobes,
        maximum_nprobes: Some(nprobes),
        search_effort: 0.5,
        ef: Some(ef),
        refine_factor: None,
        metric_type: Some(distance_type),
        use_index: true,
        query_parallelism: 1,
        dist_q_c: 0.0,
        approx_mode: ApproxMode::default(),
    }
}

/// The `(distance, row id)` pairs `index` finds for `query` in its `nprobes` partitions nearest
/// the query, nearest first (ties by row id): what Lance's scanner gets from the index, without
/// the scanner. Each partition returns up to `query.k`.
pub async fn nearest_in_index(
    index: &dyn VectorIndex,
    query: &mut Query,
    nprobes: usize,
) -> Result<Vec<(f32, u64)>> {
    let (partitions, centroid_distances) = index.find_partitions(query)?;
    let mut found: Vec<(f32, u64)> = Vec::new();
    for (partition, centroid_distance) in partitions
        .values()
        .iter()
        .zip(centroid_distances.values().iter())
        .take(nprobes)
    {
        query.dist_q_c = *centroid_distance;
        let batch = index
            .search_in_partition(
                *partition as usize,
                query,
                Arc::new(NoFilter),
                &NoOpMetricsCollector,
            )
            .await?;
        let distances = batch[DIST_COL].as_primitive::<Float32Type>();
        let row_ids = batch[ROW_ID].as_primitive::<UInt64Type>();
        found.extend(
            distances
                .values()
                .iter()
                .copied()
                .zip(row_ids.values().iter().copied()),
        );
    }
    found.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    Ok(found)
}
