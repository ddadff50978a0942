//! A collection's vectors decoded once and kept in memory, for exact k-NN at the kernels' speed
//! ([`LoadedVectors`]).
//!
//! An exact search through Lance's scanner decodes every vector of the collection again on
//! every query. Instead, one column of each fragment is read once, every physical row of it
//! (rows deleted since included, [`FragmentVectors`]), and kept in the cache of loaded indices,
//! weighed against the same budget (`QUIVER_LOADED_INDEX_MB`). What a search of one version
//! reads is the loaded vectors of that version's fragments, with the version's deletion vectors
//! as masks: an append adds fragments, read on the next search; a delete adds a deletion file,
//! a mask; neither reads the vectors loaded before again, and a snapshot or an older version
//! sees exactly its own rows. A fragment whose files changed (a compaction writes new
//! fragments) is read again. Columns a filter reads are loaded beside the vectors the same way,
//! on first use.

use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{
    make_array, Array, ArrayData, ArrayRef, AsArray, FixedSizeListArray, RecordBatch, UInt64Array,
};
use datafusion::arrow::buffer::{BooleanBuffer, Buffer};
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use datafusion::common::Result;
use datafusion::execution::memory_pool::MemoryPool;
use datafusion::logical_expr::Expr;
use futures::TryStreamExt;
use lance::dataset::ROW_ID;
use lance::table::format::Fragment;
use lance::Dataset;
use lance_core::ROW_ADDR;

use crate::index::filtered::RowFilter;
use crate::index::huge_pages::HugePageArray;
use crate::index::index_version::FragmentFiles;
use crate::index::loaded::LoadedIndices;

/// Rows a batch of [`LoadedVectors::batches`] holds at most: a search updates its cut-off for
/// rows that cannot enter the top k once a batch.
const BATCH_ROWS: usize = 8192;

/// The name of the row id column of [`LoadedVectors::batches`].
pub(crate) const ROW_ID_COLUMN: &str = ROW_ID;

/// One column of one fragment, every physical row of it, decoded.
pub(crate) struct FragmentVectors {
    /// What the fragment held when read.
    files: FragmentFiles,
    /// The row id of each row (its fragment and offset: the dataset does not use stable row
    /// ids).
    row_ids: ArrayRef,
    /// The column's values, one per row.
    vectors: ArrayRef,
    /// Other columns' values, loaded when a filter first needs them.
    columns: Mutex<HashMap<String, ArrayRef>>,
}

impl FragmentVectors {
    /// `column` of every physical row of `fragment` of `dataset`; `None` where the rows read
    /// are not the fragment's offsets in order.
    pub(crate) async fn read(
        dataset: &Dataset,
        fragment: &Fragment,
        column: &str,
    ) -> Result<Option<Self>> {
        let Some(vectors) = physical_rows(dataset, fragment, column).await? else {
            return Ok(None);
        };
        let vectors = on_huge_pages(&vectors)?;
        let row_ids: UInt64Array = (0..vectors.len() as u64)
            .map(|offset| (fragment.id << 32) | offset)
            .collect();
        Ok(Some(Self {
            files: FragmentFiles::of(fragment),
            row_ids: Arc::new(row_ids),
            vectors,
            columns: Mutex::new(HashMap::new()),
        }))
    }

    /// What the fragment held when read.
    pub(crate) fn files(&self) -> &FragmentFiles {
        &self.files
    }

    /// The bytes it holds.
    pub(crate) fn size_bytes(&self) -> usize {
        self.row_ids.get_array_memory_size()
            + self.vectors.get_array_memory_size()
            + self.columns.lock().map_or(0, |columns| {
                columns.values().map(|c| c.get_array_memory_size()).sum()
            })
    }

    /// The number of rows.
    fn len(&self) -> usize {
        self.vectors.len()
    }

    /// Column `name` of the rows, read from `fragment` of `dataset` the first time it is asked
    /// for (and kept where `keep` allows its bytes); `None` where it cannot be read row for row.
    async fn column(
        &self,
        dataset: &Dataset,
        fragment: &Fragment,
        name: &str,
        keep: impl FnOnce(usize) -> bool,
    ) -> Result<Option<ArrayRef>> {
        if let Some(values) = self.columns.lock().ok().and_then(|c| c.get(name).cloned()) {
            return Ok(Some(values));
        }
        let Some(values) = physical_rows(dataset, fragment, name).await? else {
            return Ok(None);
        };
        if values.len() != self.len() {
            return Ok(None);
        }
        if keep(values.get_array_memory_size()) {
            if let Ok(mut columns) = self.columns.lock() {
                columns.insert(name.to_string(), values.clone());
            }
        }
        Ok(Some(values))
    }
}

/// `vectors` (a vector column) with its values copied into memory advised for huge pages: a
/// scan of them streams across 2 MiB pages, which the hardware prefetcher follows further than
/// 4 KiB ones, and misses the TLB a five-hundredth as often (the in-memory data of the
/// benchmarks' kernel figures is advised the same way).
fn on_huge_pages(vectors: &ArrayRef) -> Result<ArrayRef> {
    let list = vectors.as_fixed_size_list();
    let values = list.values().to_data();
    let width = values.data_type().primitive_width().unwrap_or(0);
    let [buffer] = values.buffers() else {
        return Ok(Arc::clone(vectors));
    };
    if width == 0 || !values.child_data().is_empty() {
        return Ok(Arc::clone(vectors));
    }
    let bytes =
        &buffer.as_slice()[values.offset() * width..(values.offset() + values.len()) * width];
    let mut copy = HugePageArray::<u8>::zeroed(bytes.len());
    copy.copy_from_slice(bytes);
    let Some(start) = NonNull::new(copy.as_ptr().cast_mut()) else {
        return Ok(Arc::clone(vectors));
    };
    // SAFETY: `start` points at `bytes.len()` initialised bytes owned by `copy`, which the
    // buffer keeps alive and never writes through.
    let buffer = unsafe { Buffer::from_custom_allocation(start, bytes.len(), Arc::new(copy)) };
    let values = ArrayData::builder(values.data_type().clone())
        .len(values.len())
        .nulls(values.nulls().cloned())
        .add_buffer(buffer)
        .build()?;
    let DataType::FixedSizeList(item, dim) = list.data_type() else {
        return Ok(Arc::clone(vectors));
    };
    Ok(Arc::new(FixedSizeListArray::try_new(
        Arc::clone(item),
        *dim,
        make_array(values),
        list.nulls().cloned(),
    )?))
}

/// Column `name` of every physical row of `fragment` of `dataset`, deleted rows included, in
/// offset order; `None` where the rows Lance returns are not that.
async fn physical_rows(
    dataset: &Dataset,
    fragment: &Fragment,
    name: &str,
) -> Result<Option<ArrayRef>> {
    let mut scan = dataset.scan();
    scan.with_fragments(vec![fragment.clone()])
        .project(&[name])?
        .with_row_id()
        .with_row_address()
        .include_deleted_rows();
    let schema = scan.schema().await?;
    let batches: Vec<RecordBatch> = scan.try_into_stream().await?.try_collect().await?;
    let all = concat_batches(&schema, &batches)?;
    let (Some(values), Some(addresses)) = (all.column_by_name(name), all.column_by_name(ROW_ADDR))
    else {
        return Ok(None);
    };
    let Some(addresses) = addresses.as_primitive_opt::<UInt64Type>() else {
        return Ok(None);
    };
    let in_order = addresses
        .values()
        .iter()
        .enumerate()
        .all(|(offset, address)| *address == (fragment.id << 32) | offset as u64);
    let complete = fragment
        .physical_rows
        .is_none_or(|rows| rows == addresses.len());
    Ok((in_order && complete).then(|| values.clone()))
}

/// One fragment of a version, as its search reads it.
struct VersionFragment {
    fragment: Fragment,
    vectors: Arc<FragmentVectors>,
    /// The rows the version holds; `None` where it holds all.
    live: Option<BooleanBuffer>,
}

/// The loaded vectors of every fragment of one dataset version, with the rows each holds.
pub(crate) struct LoadedVectors {
    /// The column.
    column: String,
    fragments: Vec<VersionFragment>,
    /// The schema of [`Self::batches`]: the vectors and their row ids.
    schema: SchemaRef,
}

impl LoadedVectors {
    /// `column` of every fragment of `dataset`'s version, from `cache` or read into it (each
    /// read counted against `pool` while it runs); `None` where the column is not a vector
    /// column, the dataset uses stable row ids, or the vectors do not fit the cache's budget or
    /// what `pool` has left.
    pub(crate) async fn of(
        cache: &LoadedIndices,
        dataset: &Dataset,
        column: &str,
        pool: &Arc<dyn MemoryPool>,
    ) -> Result<Option<Self>> {
        let Some(field) = dataset.schema().field(column) else {
            return Ok(None);
        };
        let field = Field::from(field);
        let width = match field.data_type() {
            DataType::FixedSizeList(item, dim) => match item.data_type() {
                DataType::Float32 => 4 * *dim as usize,
                DataType::Float16 => 2 * *dim as usize,
                _ => return Ok(None),
            },
            _ => return Ok(None),
        };
        if dataset.manifest().uses_stable_row_ids() {
            return Ok(None);
        }
        let fragments = dataset.fragments();
        let rows: usize = fragments.iter().map(|f| f.physical_rows.unwrap_or(0)).sum();
        if (rows * (width + 8)) as u64 > cache.budget_bytes() {
            return Ok(None);
        }
        let mut loaded = Vec::with_capacity(fragments.len());
        for fragment in fragments.iter() {
            let estimate = fragment.physical_rows.unwrap_or(0) * (width + 8);
            let Some(vectors) = cache
                .fragment_vectors(dataset, fragment, column, estimate, pool)
                .await?
            else {
                return Ok(None);
            };
            let live = match dataset.get_fragment(fragment.id as usize) {
                Some(file) if fragment.deletion_file.is_some() => {
                    file.get_deletion_vector().await?.map(|deleted| {
                        let mut live = vec![true; vectors.len()];
                        for offset in deleted.iter() {
                            if let Some(row) = live.get_mut(offset as usize) {
                                *row = false;
                            }
                        }
                        BooleanBuffer::from(live)
                    })
                }
                _ => None,
            };
            loaded.push(VersionFragment {
                fragment: fragment.clone(),
                vectors,
                live,
            });
        }
        let schema = Arc::new(Schema::new(vec![
            field,
            Field::new(ROW_ID_COLUMN, DataType::UInt64, false),
        ]));
        Ok(Some(Self {
            column: column.to_string(),
            fragments: loaded,
            schema,
        }))
    }

    /// The schema of [`Self::batches`].
    pub(crate) fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The rows of each fragment the version holds and `filter` (where given) admits, a mask
    /// per fragment (`None`: all rows); `None` where the filter cannot be evaluated over
    /// columns in memory. Columns the filter reads are loaded beside the vectors (kept where
    /// `cache`'s budget allows).
    pub(crate) async fn admitted(
        &self,
        cache: &LoadedIndices,
        dataset: &Dataset,
        filter: Option<&Expr>,
    ) -> Result<Option<Vec<Option<BooleanBuffer>>>> {
        let Some(filter) = filter else {
            return Ok(Some(
                self.fragments.iter().map(|f| f.live.clone()).collect(),
            ));
        };
        let Some(filter) = RowFilter::new(filter, &Schema::from(dataset.schema())) else {
            return Ok(None);
        };
        let mut masks = Vec::with_capacity(self.fragments.len());
        for loaded in &self.fragments {
            let vectors = &loaded.vectors;
            let weighed = vectors.size_bytes();
            let mut columns = Vec::with_capacity(filter.names.len());
            for name in &filter.names {
                let keep = |bytes: usize| cache.may_grow(vectors.size_bytes() + bytes);
                let column = vectors.column(dataset, &loaded.fragment, name, keep);
                let Some(values) = column.await? else {
                    return Ok(None);
                };
                columns.push(values);
            }
            if vectors.size_bytes() != weighed {
                cache
                    .reweigh_vectors(dataset, &loaded.fragment, &self.column, vectors)
                    .await;
            }
            let admitted = filter.admitted(columns, vectors.len())?;
            masks.push(Some(match &loaded.live {
                Some(live) => &admitted & live,
                None => admitted,
            }));
        }
        Ok(Some(masks))
    }

    /// The rows `masks` (of [`Self::admitted`]) admit, in the version's order, as batches of
    /// [`Self::schema`] of at most [`BATCH_ROWS`] rows: slices of the loaded vectors where the
    /// admitted rows are long runs (a few deleted rows), copies of the admitted rows otherwise.
    pub(crate) fn batches(&self, masks: &[Option<BooleanBuffer>]) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for (loaded, mask) in self.fragments.iter().zip(masks) {
            let vectors = &loaded.vectors;
            let all = RecordBatch::try_new(
                Arc::clone(&self.schema),
                vec![Arc::clone(&vectors.vectors), Arc::clone(&vectors.row_ids)],
            )?;
            let slices = |out: &mut Vec<RecordBatch>, start: usize, end: usize| {
                for at in (start..end).step_by(BATCH_ROWS) {
                    out.push(all.slice(at, BATCH_ROWS.min(end - at)));
                }
            };
            match mask {
                None => slices(&mut out, 0, all.num_rows()),
                Some(mask) => {
                    let runs = mask.set_slices().count();
                    if runs.saturating_mul(64) <= mask.count_set_bits() {
                        for (start, end) in mask.set_slices() {
                            slices(&mut out, start, end);
                        }
                    } else {
                        let kept = filter_record_batch(&all, &mask.clone().into())?;
                        let rows = kept.num_rows();
                        for at in (0..rows).step_by(BATCH_ROWS) {
                            out.push(kept.slice(at, BATCH_ROWS.min(rows - at)));
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::RecordBatchIterator;
    use datafusion::arrow::array::{FixedSizeListArray, Float32Array, Int64Array};
    use datafusion::execution::memory_pool::UnboundedMemoryPool;
    use datafusion::prelude::{col, lit};
    use lance::dataset::{WriteMode, WriteParams};

    use super::*;

    const DIM: usize = 2;

    /// Rows `ids`, the vector of row `i` being `[i, -i]`.
    fn rows(ids: std::ops::Range<i64>) -> RecordBatch {
        let item = Arc::new(Field::new("item", DataType::Float32, true));
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("v", DataType::FixedSizeList(item.clone(), DIM as i32), true),
        ]));
        let values: Float32Array = ids.clone().flat_map(|i| [i as f32, -i as f32]).collect();
        let vectors = FixedSizeListArray::try_new(item, DIM as i32, Arc::new(values), None);
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(ids)),
                Arc::new(vectors.unwrap()),
            ],
        )
        .unwrap()
    }

    async fn append(uri: &str, ids: std::ops::Range<i64>) -> Dataset {
        let batch = rows(ids);
        let reader = RecordBatchIterator::new([Ok(batch.clone())], batch.schema());
        let params = WriteParams {
            mode: WriteMode::Append,
            ..Default::default()
        };
        Dataset::write(reader, uri, Some(params)).await.unwrap()
    }

    fn unbounded() -> Arc<dyn MemoryPool> {
        Arc::new(UnboundedMemoryPool::default())
    }

    /// The ids of the rows `vectors` (of `dataset`) yields where `filter` admits them.
    async fn ids(cache: &LoadedIndices, dataset: &Dataset, filter: Option<Expr>) -> Vec<i64> {
        let vectors = LoadedVectors::of(cache, dataset, "v", &unbounded())
            .await
            .unwrap()
            .unwrap();
        let masks = vectors.admitted(cache, dataset, filter.as_ref()).await;
        let batches = vectors.batches(&masks.unwrap().unwrap()).unwrap();
        batches
            .iter()
            .flat_map(|b| {
                let values = b.column(0).as_fixed_size_list().values().clone();
                let values = values.as_primitive::<datafusion::arrow::datatypes::Float32Type>();
                (0..b.num_rows())
                    .map(|r| values.value(r * DIM) as i64)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[tokio::test]
    async fn loaded_vectors_follow_appends_and_deletes_without_reading_them_again() {
        let dir = tempfile::tempdir().unwrap();
        let uri = dir.path().to_str().unwrap();
        append(uri, 0..100).await;
        let two = append(uri, 100..150).await;
        let cache = LoadedIndices::new(1 << 30);
        assert_eq!(ids(&cache, &two, None).await, (0..150).collect::<Vec<_>>());
        assert_eq!(cache.vector_reads(), 2);

        // An append reads the new fragment only.
        let three = append(uri, 150..160).await;
        assert_eq!(
            ids(&cache, &three, None).await,
            (0..160).collect::<Vec<_>>()
        );
        assert_eq!(cache.vector_reads(), 3);

        // A delete reads nothing: its rows are masked in its version, and not in the one before.
        let mut deleted = three.clone();
        deleted.delete("id % 10 = 3 OR id = 155").await.unwrap();
        let live: Vec<i64> = (0..160).filter(|i| i % 10 != 3 && *i != 155).collect();
        assert_eq!(ids(&cache, &deleted, None).await, live);
        assert_eq!(
            ids(&cache, &three, None).await,
            (0..160).collect::<Vec<_>>()
        );
        assert_eq!(cache.vector_reads(), 3);

        // A filter is evaluated over the loaded rows, deleted ones left out.
        let filter = col("id").lt(lit(40i64));
        let admitted: Vec<i64> = live.iter().copied().filter(|i| *i < 40).collect();
        assert_eq!(ids(&cache, &deleted, Some(filter)).await, admitted);
        assert_eq!(cache.vector_reads(), 3);
    }

    #[tokio::test]
    async fn vectors_larger_than_the_budget_are_not_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let uri = dir.path().to_str().unwrap();
        let dataset = append(uri, 0..1000).await;
        // 1,000 rows of 8 bytes of vector and 8 of row id.
        let cache = LoadedIndices::new(15_000);
        let vectors = LoadedVectors::of(&cache, &dataset, "v", &unbounded()).await;
        assert!(vectors.unwrap().is_none());
        assert_eq!(cache.vector_reads(), 0);
        let cache = LoadedIndices::new(17_000);
        let vectors = LoadedVectors::of(&cache, &dataset, "v", &unbounded()).await;
        assert!(vectors.unwrap().is_some());
        assert_eq!(cache.vector_reads(), 1);
    }
}
