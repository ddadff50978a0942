//! What a loaded index shows of one dataset version ([`IndexVersion`]), and its search
//! ([`LoadedVersion`]).
//!
//! A Lance write never changes the files of an earlier version: an append adds fragments, a
//! delete adds deletion files, an update does both (Quiver's updates rewrite rows). So a loaded
//! index segment answers for any later version once two things are known: which of its rows the
//! version no longer holds (in deletion vectors, fragments gone, fragments the segment no longer
//! covers), which its search then passes through but never returns, as hnswlib passes over
//! deleted nodes; and which rows of the version it does not cover (written after it was built),
//! which are read once, held beside it and searched exactly with Quiver's kernels. Milvus does
//! the same with a sealed segment's delete bitmap and the growing segments beside it. A version
//! whose covered fragments changed otherwise (a column rewritten in place) is searched through
//! Lance until the index is rebuilt; so is one with more rows outside the index than in it, or
//! more than its share of the budget.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanBufferBuilder, RecordBatch};
use datafusion::arrow::buffer::{BooleanBuffer, ScalarBuffer};
use datafusion::arrow::compute::{concat_batches, interleave};
use datafusion::arrow::datatypes::{DataType, Schema, UInt64Type};
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::memory_pool::MemoryPool;
use futures::TryStreamExt;
use lance::dataset::{ProjectionRequest, ROW_ID};
use lance::table::format::overlay::DataOverlayFile;
use lance::table::format::{DataFile, DeletionFile, Fragment};
use lance::Dataset;
use lance_linalg::distance::DistanceType;

use crate::index::filtered::{Admitted, FilteredPath};
use crate::index::loaded::{
    f32_values, nearest, norms_for, projected_batch, taken_column, ExactScorer, LoadKey,
    LoadedIndex, LoadedIndices,
};

/// What a fragment held, as far as the rows of a loaded index in it are concerned: its data
/// files and overlays. Equal files mean equal values at every offset.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FragmentFiles {
    files: Vec<DataFile>,
    overlays: Vec<DataOverlayFile>,
}

impl FragmentFiles {
    /// What `fragment` holds.
    pub(crate) fn of(fragment: &Fragment) -> Self {
        Self {
            files: fragment.files.clone(),
            overlays: fragment.overlays.clone(),
        }
    }
}

/// The rows of one fragment outside a loaded index, read once and searched exactly.
pub(crate) struct UnindexedRows {
    /// What the fragment held when read: its files and its deletion file.
    files: FragmentFiles,
    deletion: Option<DeletionFile>,
    /// The live rows' ids.
    row_ids: Vec<u64>,
    /// Their vectors.
    vectors: ArrayRef,
    /// The vectors' values as `f32`.
    values: ScalarBuffer<f32>,
    /// Their squared norms, for a cosine index.
    norms: Option<Vec<f32>>,
    /// Other columns' values, loaded when a filter first needs them.
    columns: Mutex<HashMap<String, ArrayRef>>,
}

impl UnindexedRows {
    /// The live rows of `fragment` of `dataset`, with their `column` vectors.
    async fn read(
        dataset: &Dataset,
        fragment: &Fragment,
        column: &str,
        distance_type: DistanceType,
        dim: usize,
    ) -> Result<Self> {
        let mut scan = dataset.scan();
        scan.with_fragments(vec![fragment.clone()])
            .project(&[column])?
            .with_row_id();
        let schema = scan.schema().await?;
        let batches: Vec<RecordBatch> = scan.try_into_stream().await?.try_collect().await?;
        let all = concat_batches(&schema, &batches)?;
        let column_of = |name: &str| {
            all.column_by_name(name).cloned().ok_or_else(|| {
                DataFusionError::Internal(format!("the scan of a fragment returned no {name}"))
            })
        };
        let row_ids = column_of(ROW_ID)?;
        let row_ids = row_ids
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| DataFusionError::Internal("row ids are not u64".into()))?
            .values()
            .to_vec();
        let vectors = column_of(column)?;
        let values = f32_values(vectors.as_fixed_size_list())?;
        let norms = norms_for(distance_type, &values, dim);
        Ok(Self {
            files: FragmentFiles::of(fragment),
            deletion: fragment.deletion_file.clone(),
            row_ids,
            vectors,
            values,
            norms,
            columns: Mutex::new(HashMap::new()),
        })
    }

    /// Column `name` of the rows, read from `dataset` (a version that holds them) the first
    /// time it is asked for.
    pub(crate) async fn column(&self, dataset: &Dataset, name: &str) -> Result<ArrayRef> {
        if let Some(values) = self.columns.lock().ok().and_then(|c| c.get(name).cloned()) {
            return Ok(values);
        }
        let request = ProjectionRequest::from_columns([name], dataset.schema());
        let values = dataset
            .take_rows(&self.row_ids, request)
            .await?
            .column(0)
            .clone();
        if let Ok(mut columns) = self.columns.lock() {
            columns.insert(name.to_string(), values.clone());
        }
        Ok(values)
    }

    /// The number of rows.
    pub(crate) fn len(&self) -> usize {
        self.row_ids.len()
    }

    fn size_bytes(&self) -> usize {
        self.row_ids.len() * 8
            + self.vectors.get_array_memory_size()
            + match self.vectors.as_fixed_size_list().value_type() {
                DataType::Float32 => 0,
                _ => self.values.len() * 4,
            }
            + self.norms.as_ref().map_or(0, |n| n.len() * 4)
            + self.columns.lock().map_or(0, |columns| {
                columns.values().map(|c| c.get_array_memory_size()).sum()
            })
    }

    /// The scores of the rows `admitted` admits (all where `None`; its bit `i` is row `i`'s),
    /// as `(score, row)`, NULL vectors left out.
    fn scores<'a>(
        &'a self,
        scorer: &'a ExactScorer<'_>,
        dim: usize,
        admitted: Option<&'a BooleanBuffer>,
    ) -> impl Iterator<Item = (f32, usize)> + 'a {
        let valid = self.vectors.logical_nulls();
        (0..self.len()).filter_map(move |i| {
            if valid.as_ref().is_some_and(|v| v.is_null(i)) || admitted.is_some_and(|a| !a.value(i))
            {
                return None;
            }
            let row = &self.values[i * dim..(i + 1) * dim];
            let norm = self.norms.as_ref().map_or(0.0, |n| n[i]);
            Some((scorer.score(row, norm), i))
        })
    }

    /// Their vectors.
    pub(crate) fn vectors(&self) -> &ArrayRef {
        &self.vectors
    }
}

/// What a loaded index shows of one dataset version (see the module docs).
pub(crate) struct IndexVersion {
    /// The index's key in the cache, which owns it (looking it up there keeps it recently used).
    pub(crate) index: LoadKey,
    /// The version's own segment, loading, where `index` is an earlier segment standing in.
    pub(crate) awaits: Option<LoadKey>,
    /// Whether each position of the index holds a row of the version; `None` where all do.
    live: Option<BooleanBuffer>,
    /// The version's rows outside the index, a fragment at a time.
    unindexed: Vec<Arc<UnindexedRows>>,
}

impl IndexVersion {
    /// What `index` shows of `dataset`'s version, where its segment covers the fragments
    /// `covered` (`awaits`: the version's own segment, where `index` stands in for it); `None`
    /// where the index does not follow the version (see the module docs): the rows outside it
    /// are more than it holds, or take more than `budget_bytes`.
    pub(crate) async fn build(
        index: &Arc<LoadedIndex>,
        dataset: &Dataset,
        covered: &HashSet<u32>,
        budget_bytes: u64,
        awaits: Option<&LoadKey>,
    ) -> Result<Option<Self>> {
        let mut hidden: Vec<u32> = Vec::new();
        let mut seen: HashSet<u32> = HashSet::new();
        let mut outside: Vec<&Fragment> = Vec::new();
        for fragment in dataset.fragments().iter() {
            let Ok(id) = u32::try_from(fragment.id) else {
                return Ok(None);
            };
            if !covered.contains(&id) {
                outside.push(fragment);
                continue;
            }
            let Some(loaded) = index.fragments().get(&id) else {
                // Covered, without rows in the index: rows whose vectors are NULL.
                continue;
            };
            seen.insert(id);
            if loaded.files.as_ref() != Some(&FragmentFiles::of(fragment)) {
                return Ok(None);
            }
            if fragment.deletion_file.is_none() {
                continue;
            }
            let Some(file_fragment) = dataset.get_fragment(fragment.id as usize) else {
                return Ok(None);
            };
            if let Some(deleted) = file_fragment.get_deletion_vector().await? {
                for offset in deleted.iter() {
                    if let Ok(at) = loaded.positions.binary_search_by_key(&offset, |(o, _)| *o) {
                        hidden.push(loaded.positions[at].1);
                    }
                }
            }
        }
        for (id, loaded) in index.fragments() {
            if !seen.contains(id) {
                hidden.extend(loaded.positions.iter().map(|(_, position)| *position));
            }
        }
        let unindexed = match Self::unindexed(index, dataset, &outside, budget_bytes).await? {
            Some(unindexed) => unindexed,
            None => return Ok(None),
        };
        let live = (!hidden.is_empty()).then(|| {
            let mut live = BooleanBufferBuilder::new(index.len());
            live.append_n(index.len(), true);
            for position in hidden {
                live.set_bit(position as usize, false);
            }
            live.finish()
        });
        Ok(Some(Self {
            index: index.key().clone(),
            awaits: awaits.cloned(),
            live,
            unindexed,
        }))
    }

    /// The rows of fragments `outside` the index, read or taken from those an earlier version
    /// read (the index's `unindexed`, left with just these fragments); `None` where they are
    /// more than the index holds or take more than `budget_bytes`.
    async fn unindexed(
        index: &Arc<LoadedIndex>,
        dataset: &Dataset,
        outside: &[&Fragment],
        budget_bytes: u64,
    ) -> Result<Option<Vec<Arc<UnindexedRows>>>> {
        let physical: usize = outside.iter().map(|f| f.physical_rows.unwrap_or(0)).sum();
        if physical > index.len() {
            return Ok(None);
        }
        let known = |fragment: &Fragment| {
            let known = index.unindexed.lock().ok()?;
            let rows = known.get(&fragment.id)?;
            (rows.files == FragmentFiles::of(fragment) && rows.deletion == fragment.deletion_file)
                .then(|| Arc::clone(rows))
        };
        let DataType::FixedSizeList(_, dim) = index.vectors().data_type() else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(outside.len());
        let mut bytes = 0;
        for fragment in outside {
            let rows = match known(fragment) {
                Some(rows) => rows,
                None => Arc::new(
                    UnindexedRows::read(
                        dataset,
                        fragment,
                        index.column(),
                        index.distance_type(),
                        *dim as usize,
                    )
                    .await?,
                ),
            };
            bytes += rows.size_bytes();
            if bytes as u64 > budget_bytes {
                return Ok(None);
            }
            out.push(rows);
        }
        if let Ok(mut known) = index.unindexed.lock() {
            known.clear();
            known.extend(outside.iter().zip(&out).map(|(f, r)| (f.id, Arc::clone(r))));
        }
        Ok(Some(out))
    }

    /// The bytes it holds besides the index.
    pub(crate) fn size_bytes(&self) -> usize {
        self.live.as_ref().map_or(0, |l| l.len() / 8)
            + self.unindexed.iter().map(|r| r.size_bytes()).sum::<usize>()
    }
}

/// A loaded index and what it shows of the version searched: what a search of that version
/// searches.
#[derive(Clone)]
pub(crate) struct LoadedVersion {
    index: Arc<LoadedIndex>,
    version: Arc<IndexVersion>,
}

impl LoadedVersion {
    /// `version` of `index`.
    pub(crate) fn of(index: Arc<LoadedIndex>, version: Arc<IndexVersion>) -> Self {
        Self { index, version }
    }

    /// The index.
    pub(crate) fn index(&self) -> &Arc<LoadedIndex> {
        &self.index
    }

    /// How many rows of the version are outside the index, searched exactly beside it.
    pub(crate) fn unindexed_rows(&self) -> usize {
        self.version.unindexed.iter().map(|r| r.len()).sum()
    }

    /// Whether each position of the index holds a row of the version; `None` where all do.
    pub(crate) fn live(&self) -> Option<&BooleanBuffer> {
        self.version.live.as_ref()
    }

    /// The version's rows outside the index, a fragment at a time.
    pub(crate) fn unindexed(&self) -> &[Arc<UnindexedRows>] {
        &self.version.unindexed
    }

    /// The `candidates` rows of the version nearest `query`, of those `admitted` admits where a
    /// filter is given: those a search of the index with breadth `ef` finds in `partitions`,
    /// and the rows outside the index, all scored exactly, nearest first, as `(score,
    /// position)`, with how a filtered search found them (`filtered`). Positions past the
    /// index's are the rows outside it, in order.
    pub(crate) fn search(
        &self,
        query: &[f32],
        partitions: &[u32],
        ef: usize,
        candidates: usize,
        admitted: Option<&Admitted>,
    ) -> (Vec<(f32, usize)>, Option<FilteredPath>) {
        let index = &self.index;
        let scorer = ExactScorer::new(index.distance_type(), query);
        let Some(admitted) = admitted else {
            let live = self.version.live.as_ref();
            let mut found = index.search(query, partitions, ef, candidates, live);
            self.score_unindexed(&mut found, &scorer, None, candidates);
            return (found, None);
        };
        if !admitted.prefers_exact(index.len(), ef.max(candidates)) {
            let mut found =
                index.search(query, partitions, ef, candidates, Some(&admitted.indexed));
            self.score_unindexed(&mut found, &scorer, Some(admitted), candidates);
            if found.len() >= candidates.min(admitted.count) {
                return (found, Some(FilteredPath::Graph));
            }
        }
        let mut found = index.score_admitted(query, &admitted.indexed);
        self.score_unindexed(&mut found, &scorer, Some(admitted), candidates);
        (found, Some(FilteredPath::Exact))
    }

    /// Adds to `found` the rows outside the index (those `admitted` admits, where given), and
    /// leaves its `candidates` nearest, nearest first.
    fn score_unindexed(
        &self,
        found: &mut Vec<(f32, usize)>,
        scorer: &ExactScorer<'_>,
        admitted: Option<&Admitted>,
        candidates: usize,
    ) {
        let dim = scorer.dim();
        let mut start = self.index.len();
        for (i, rows) in self.version.unindexed.iter().enumerate() {
            let admits = admitted.and_then(|a| a.unindexed.get(i));
            found.extend(
                rows.scores(scorer, dim, admits)
                    .map(|(s, r)| (s, start + r)),
            );
            start += rows.len();
        }
        nearest(found, candidates);
    }

    /// The rows at `positions` (of [`Self::search`]), with the dataset columns `projection`:
    /// from the index's loaded columns where every position is the index's, otherwise the
    /// vectors from memory and the other columns from `dataset`'s files by row id.
    pub(crate) async fn rows(
        &self,
        cache: &LoadedIndices,
        dataset: &Dataset,
        positions: &[usize],
        projection: &[String],
        pool: &Arc<dyn MemoryPool>,
    ) -> Result<RecordBatch> {
        let index = &self.index;
        let indexed = index.len();
        if positions.iter().all(|p| *p < indexed) {
            return index
                .rows(cache, dataset, positions, projection, pool)
                .await;
        }
        let mut sources: Vec<&dyn Array> = vec![index.vectors().as_ref()];
        sources.extend(self.version.unindexed.iter().map(|r| r.vectors.as_ref()));
        let mut row_ids = Vec::with_capacity(positions.len());
        let mut picks = Vec::with_capacity(positions.len());
        for position in positions {
            let (source, row, row_id) = self.locate(*position)?;
            row_ids.push(row_id);
            picks.push((source, row));
        }
        let others: Vec<String> = projection
            .iter()
            .filter(|name| name.as_str() != index.column())
            .cloned()
            .collect();
        let taken = if others.is_empty() {
            None
        } else {
            let request = ProjectionRequest::from_columns(&others, dataset.schema());
            Some(dataset.take_rows(&row_ids, request).await?)
        };
        let schema = Schema::from(dataset.schema());
        projected_batch(&schema, projection, positions.len(), |name| {
            if name == index.column() {
                Ok(interleave(&sources, &picks)?)
            } else {
                taken_column(taken.as_ref(), name)
            }
        })
    }

    /// Where the row at `position` is: `(source, row, row id)`, source 0 the index's vectors and
    /// `i + 1` the `i`th fragment of rows outside it.
    fn locate(&self, position: usize) -> Result<(usize, usize, u64)> {
        let index = &self.index;
        if position < index.len() {
            return Ok((0, position, index.row_id(position)));
        }
        let mut row = position - index.len();
        for (i, rows) in self.version.unindexed.iter().enumerate() {
            if row < rows.len() {
                return Ok((i + 1, row, rows.row_ids[row]));
            }
            row -= rows.len();
        }
        Err(DataFusionError::Internal(format!(
            "position {position} is past the rows of the loaded index"
        )))
    }
}
