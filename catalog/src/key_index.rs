//! The primary key's scalar index: a Lance BTREE on a one-column key, so that reads by key
//! (`WHERE id = x`, `WHERE id IN (...)`) search it instead of scanning the collection.
//!
//! Invariants:
//! - The index only speeds reads up: Lance searches it for the fragments it covers and scans the
//!   fragments written after it, so a read by key is exact whatever the index's age.
//! - Keyed writes build it (the first that leaves rows and finds no index) and fold the rows
//!   written since into it once there are [`UNINDEXED_ROWS`] of them (or a
//!   [`UNINDEXED_SHARE`]-th of the collection, if that is more), so its upkeep follows writes,
//!   not reads.
//! - Keyed writes never use it to find their matches: Lance's merge-insert through an index on
//!   the key does not record the keys it inserted, which is what makes concurrent writers of one
//!   key conflict (see [`crate::primary_key`]); the sink turns that path off.
//! - Its upkeep never fails a write: it runs after the write committed, and what fails is logged
//!   and tried again by the next write.

use lance::index::DatasetIndexExt;
use lance_index::optimize::OptimizeOptions;
use lance_index::scalar::ScalarIndexParams;
use lance_index::IndexType;

use crate::catalog::Catalog;
use crate::error::Result;
use crate::model::CollectionRecord;

/// The name of the key index of every keyed collection.
pub const KEY_INDEX: &str = "quiver_primary_key";

/// Rows written after the key index that make a keyed write fold them into it.
pub const UNINDEXED_ROWS: u64 = 8192;

/// The share of a collection (one in this many rows) written after the key index that makes a
/// keyed write fold them into it, when that is more than [`UNINDEXED_ROWS`].
pub const UNINDEXED_SHARE: u64 = 32;

/// What [`Catalog::maintain_key_index`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyIndexUpkeep {
    /// Nothing was due (or the collection has no one-column key).
    Current,
    /// The index was built.
    Built,
    /// The rows written since the index were folded into it.
    FoldedForward,
}

impl Catalog {
    /// Builds the key index of `record`'s collection, or folds newly written rows into it, when
    /// it is due (see the module doc). Only one-column keys are indexed.
    pub async fn maintain_key_index(&self, record: &CollectionRecord) -> Result<KeyIndexUpkeep> {
        let [key] = record.primary_key.as_slice() else {
            return Ok(KeyIndexUpkeep::Current);
        };
        let mut dataset = self.open_dataset(record, None).await?;
        let indices = dataset.load_indices().await?;
        let segments: Vec<_> = indices.iter().filter(|i| i.name == KEY_INDEX).collect();
        let fragments = dataset.get_fragments();
        let rows = |fragment: &lance::dataset::fragment::FileFragment| {
            fragment.metadata().physical_rows.unwrap_or(0) as u64
        };
        let total: u64 = fragments.iter().map(rows).sum();
        if segments.is_empty() {
            if total == 0 {
                return Ok(KeyIndexUpkeep::Current);
            }
            dataset
                .create_index(
                    &[key.as_str()],
                    IndexType::BTree,
                    Some(KEY_INDEX.to_string()),
                    &ScalarIndexParams::default(),
                    true,
                )
                .await?;
            return Ok(KeyIndexUpkeep::Built);
        }
        let covered = |id: u32| {
            segments
                .iter()
                .any(|s| s.fragment_bitmap.as_ref().is_some_and(|b| b.contains(id)))
        };
        let unindexed: u64 = fragments
            .iter()
            .filter(|f| !covered(f.id() as u32))
            .map(rows)
            .sum();
        if unindexed < UNINDEXED_ROWS.max(total / UNINDEXED_SHARE) {
            return Ok(KeyIndexUpkeep::Current);
        }
        let mut options = OptimizeOptions::merge(segments.len());
        options.index_names = Some(vec![KEY_INDEX.to_string()]);
        dataset.optimize_indices(&options).await?;
        Ok(KeyIndexUpkeep::FoldedForward)
    }
}
