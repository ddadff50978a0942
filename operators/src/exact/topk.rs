//! Bounded selection of the `k` best rows of a stream, by an `f32` key, ties broken by arrival.
//!
//! The order is total and matches DataFusion's sort: keys compare with `f32::total_cmp` (NaN after
//! +inf), NULL keys go first or last as asked, and equal keys keep their sequence order. Only rows
//! that are still among the best k once their batch has been offered are copied out of it, so
//! memory stays O(k) rows and a batch costs at most k copied rows.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use datafusion::arrow::array::{RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Result;

/// A row's place in the order.
#[derive(Debug, Clone, Copy)]
pub struct RankKey {
    /// `None` for a NULL key.
    pub key: Option<f32>,
    /// Arrival order, unique per row.
    pub seq: u64,
    /// Whether NULL keys sort before all others.
    pub nulls_first: bool,
}

impl PartialEq for RankKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for RankKey {}

impl PartialOrd for RankKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RankKey {
    fn cmp(&self, other: &Self) -> Ordering {
        let by_key = match (self.key, other.key) {
            (Some(a), Some(b)) => a.total_cmp(&b),
            (None, None) => Ordering::Equal,
            (None, Some(_)) if self.nulls_first => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) if self.nulls_first => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
        };
        by_key.then(self.seq.cmp(&other.seq))
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    rank: RankKey,
    batch: usize,
    row: usize,
}

/// Keeps the `k` best rows seen so far.
#[derive(Debug)]
pub struct TopK {
    k: usize,
    schema: SchemaRef,
    heap: BinaryHeap<Entry>,
    batches: Vec<RecordBatch>,
    stored_rows: usize,
    /// The Arrow memory of `batches`, kept as they are added and cleared.
    stored_bytes: usize,
}

impl TopK {
    /// An empty selection of `k` rows of `schema`.
    pub fn new(k: usize, schema: SchemaRef) -> Self {
        Self {
            k,
            schema,
            // k may be far larger than the rows there are: grow on demand.
            heap: BinaryHeap::with_capacity(k.min(1024) + 1),
            batches: Vec::new(),
            stored_rows: 0,
            stored_bytes: 0,
        }
    }

    /// The bytes the selection holds: its heap and the rows it copied (O(1): the search calls
    /// it after every batch).
    pub fn memory_size(&self) -> usize {
        self.heap.capacity() * std::mem::size_of::<Entry>() + self.stored_bytes
    }

    /// The rank a row must beat to enter (the current k-th best), once k rows are held.
    pub fn threshold(&self) -> Option<RankKey> {
        (self.heap.len() >= self.k)
            .then(|| self.heap.peek().map(|e| e.rank))
            .flatten()
    }

    /// Offers the rows of `batch` with their ranks; copies only those that enter.
    pub fn insert(&mut self, batch: &RecordBatch, ranks: &[RankKey]) -> Result<()> {
        let threshold = self.threshold();
        let (rows, ranks): (Vec<u32>, Vec<RankKey>) = ranks
            .iter()
            .enumerate()
            .filter(|(_, r)| threshold.is_none_or(|t| **r < t))
            .map(|(i, r)| (i as u32, *r))
            .unzip();
        self.insert_rows(batch, &rows, &ranks)
    }

    /// Offers the rows `rows` of `batch`, with `ranks[i]` the rank of `rows[i]`: for callers
    /// that already dropped the rows that cannot beat [`TopK::threshold`].
    pub fn insert_rows(
        &mut self,
        batch: &RecordBatch,
        rows: &[u32],
        ranks: &[RankKey],
    ) -> Result<()> {
        if self.k == 0 || rows.is_empty() {
            return Ok(());
        }
        let batch_index = self.batches.len();
        // Entries of this batch first point into `rows`; only the rows still among the best k
        // once the batch is offered are copied, and their entries repointed into the copy.
        let mut entered = false;
        for (row, rank) in ranks.iter().enumerate() {
            if self.heap.len() >= self.k {
                match self.heap.peek() {
                    Some(worst) if *rank < worst.rank => {
                        self.heap.pop();
                    }
                    _ => continue,
                }
            }
            self.heap.push(Entry {
                rank: *rank,
                batch: batch_index,
                row,
            });
            entered = true;
        }
        if !entered {
            return Ok(());
        }
        let mut entries = std::mem::take(&mut self.heap).into_vec();
        let mut kept: Vec<usize> = entries
            .iter()
            .filter(|e| e.batch == batch_index)
            .map(|e| e.row)
            .collect();
        kept.sort_unstable();
        for entry in entries.iter_mut().filter(|e| e.batch == batch_index) {
            entry.row = match kept.binary_search(&entry.row) {
                Ok(position) | Err(position) => position,
            };
        }
        self.heap = BinaryHeap::from(entries);
        if kept.is_empty() {
            return Ok(());
        }
        let taken = take_record_batch(
            batch,
            &UInt32Array::from_iter_values(kept.iter().map(|&i| rows[i])),
        )?;
        self.stored_rows += taken.num_rows();
        self.stored_bytes += taken.get_array_memory_size();
        self.batches.push(taken);
        if self.stored_rows > 4 * self.k + 1024 {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrites the held rows into one batch, dropping rows that fell out of the top k.
    fn compact(&mut self) -> Result<()> {
        let (batch, ranks) = self.take_sorted()?;
        self.heap.clear();
        self.batches.clear();
        self.stored_rows = 0;
        self.stored_bytes = 0;
        self.insert(&batch, &ranks)
    }

    /// The held rows, best first, with their ranks.
    pub fn take_sorted(&mut self) -> Result<(RecordBatch, Vec<RankKey>)> {
        let mut entries = std::mem::take(&mut self.heap).into_sorted_vec();
        entries.truncate(self.k);
        let ranks: Vec<RankKey> = entries.iter().map(|e| e.rank).collect();
        if entries.is_empty() {
            return Ok((RecordBatch::new_empty(self.schema.clone()), ranks));
        }
        // Gather the winning rows: concatenate the held batches, then take by global offset.
        let mut offsets = Vec::with_capacity(self.batches.len());
        let mut total = 0;
        for b in &self.batches {
            offsets.push(total);
            total += b.num_rows();
        }
        let all = concat_batches(&self.schema, &self.batches)?;
        let indices = UInt32Array::from(
            entries
                .iter()
                .map(|e| (offsets[e.batch] + e.row) as u32)
                .collect::<Vec<_>>(),
        );
        let batch = take_record_batch(&all, &indices)?;
        self.batches.clear();
        self.stored_rows = 0;
        self.stored_bytes = 0;
        Ok((batch, ranks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use std::sync::Arc;

    fn rank(key: Option<f32>, seq: u64) -> RankKey {
        RankKey {
            key,
            seq,
            nulls_first: false,
        }
    }

    #[test]
    fn memory_size_follows_the_rows_held_through_compaction() {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let mut topk = TopK::new(100, schema.clone());
        assert_eq!(
            topk.memory_size(),
            topk.heap.capacity() * size_of::<Entry>()
        );
        for chunk in 0..40i64 {
            // Every batch beats the rows held so far, so each one is copied in.
            let ids: Vec<i64> = (0..100).map(|i| chunk * 100 + i).collect();
            let ranks: Vec<RankKey> = (0..100)
                .map(|i| {
                    rank(
                        Some((4000 - chunk * 100 - i) as f32),
                        (chunk * 100 + i) as u64,
                    )
                })
                .collect();
            let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(ids))])
                .unwrap();
            topk.insert(&batch, &ranks).unwrap();
            let held: usize = topk
                .batches
                .iter()
                .map(RecordBatch::get_array_memory_size)
                .sum();
            assert_eq!(
                topk.memory_size(),
                topk.heap.capacity() * size_of::<Entry>() + held,
                "after batch {chunk}"
            );
        }
        topk.take_sorted().unwrap();
        assert_eq!(
            topk.memory_size(),
            topk.heap.capacity() * size_of::<Entry>()
        );
    }

    #[test]
    fn keeps_the_k_smallest_with_ties_in_arrival_order() {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let mut topk = TopK::new(3, schema.clone());
        let mut seq = 0;
        let mut expected = Vec::new();
        for chunk in 0..50i64 {
            let ids: Vec<i64> = (0..100).map(|i| chunk * 100 + i).collect();
            let keys: Vec<Option<f32>> = ids
                .iter()
                .map(|id| {
                    if id % 7 == 0 {
                        None
                    } else {
                        Some(((id * 37) % 101) as f32)
                    }
                })
                .collect();
            let ranks: Vec<RankKey> = keys
                .iter()
                .map(|k| {
                    seq += 1;
                    rank(*k, seq)
                })
                .collect();
            for (id, r) in ids.iter().zip(&ranks) {
                expected.push((*r, *id));
            }
            let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(ids))])
                .unwrap();
            topk.insert(&batch, &ranks).unwrap();
        }
        expected.sort();
        let (batch, ranks) = topk.take_sorted().unwrap();
        let got: Vec<i64> = batch
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec();
        let want: Vec<i64> = expected.iter().take(3).map(|(_, id)| *id).collect();
        assert_eq!(got, want);
        assert_eq!(ranks.len(), 3);
        assert!(ranks.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn nulls_sort_where_asked_and_nan_after_infinity() {
        assert!(rank(None, 1) > rank(Some(f32::INFINITY), 2));
        assert!(rank(Some(f32::NAN), 1) > rank(Some(f32::INFINITY), 2));
        let first = RankKey {
            key: None,
            seq: 1,
            nulls_first: true,
        };
        assert!(
            first
                < RankKey {
                    key: Some(f32::NEG_INFINITY),
                    seq: 0,
                    nulls_first: true
                }
        );
    }
}
