//! Filtered search of a loaded index: a `WHERE` on the collection's columns evaluated into the
//! rows it admits ([`Admitted`]), over columns loaded beside the index, and the choice between
//! searching the graph for the admitted rows and scoring them all.
//!
//! The filter is evaluated over whole columns held in memory (loaded into the index's entry,
//! and for rows outside the index beside them), not through Lance's scanner, so it costs a pass
//! over a few columns rather than a scan. The graph search then walks the whole graph and
//! answers only with admitted rows ([`HnswGraph::search_admitting`](super::hnsw_graph)); where
//! few rows are admitted, that walk would score many rows for each one it finds, and scoring the
//! admitted rows directly is cheaper and exact ([`Admitted::prefers_exact`]). A graph search that
//! finds fewer rows than asked for, where enough are admitted, is answered by the exact one, so
//! a filtered query returns `k` rows whenever `k` match.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, RecordBatchOptions};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::{DFSchema, DataFusionError, Result};
use datafusion::execution::memory_pool::MemoryPool;
use datafusion::logical_expr::execution_props::ExecutionProps;
use datafusion::logical_expr::expr_rewriter::unnormalize_col;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{create_physical_expr, PhysicalExpr};
use lance::Dataset;

use crate::index::index_version::LoadedVersion;
use crate::index::loaded::LoadedIndices;

/// A filtered search scores every admitted row rather than walk the graph where at most this
/// many rows are admitted for each node of the search's beam: a graph search of beam `ef`
/// scores some tens of nodes for each node of its beam.
const EXACT_ROWS_PER_BEAM_NODE: usize = 32;

/// A filtered search scores every admitted row rather than walk the graph where at most one
/// row in this many is admitted: the walk would score about as many rows as it passes over for
/// each one it keeps.
const SPARSEST_GRAPH_SEARCH: usize = 32;

/// How a filtered search of a loaded index found its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FilteredPath {
    /// The graph walked, answering with admitted rows only.
    Graph,
    /// Every admitted row scored.
    Exact,
}

/// The rows of a loaded index's version that a filter admits.
pub(crate) struct Admitted {
    /// The positions of the index admitted (and live in the version).
    pub(crate) indexed: BooleanBuffer,
    /// The rows outside the index admitted, a fragment at a time.
    pub(crate) unindexed: Vec<BooleanBuffer>,
    /// How many rows are admitted in all.
    pub(crate) count: usize,
}

impl Admitted {
    /// Whether scoring every admitted row costs less than a graph search with a beam of `beam`
    /// over an index of `indexed` rows.
    pub(crate) fn prefers_exact(&self, indexed: usize, beam: usize) -> bool {
        self.count <= beam.saturating_mul(EXACT_ROWS_PER_BEAM_NODE)
            || self.count.saturating_mul(SPARSEST_GRAPH_SEARCH) <= indexed
    }

    /// The rows of `loaded`'s version that `filter` admits, evaluated over the index's loaded
    /// columns (loading those it needs into `cache`, counted against `pool`) and the columns
    /// of the rows outside the index; `None` where a column it needs cannot be loaded, or the
    /// filter cannot be evaluated outside Lance.
    pub(crate) async fn evaluate(
        loaded: &LoadedVersion,
        cache: &LoadedIndices,
        dataset: &Dataset,
        filter: &Expr,
        pool: &Arc<dyn MemoryPool>,
    ) -> Result<Option<Self>> {
        let index = loaded.index();
        let Some(filter) = RowFilter::new(filter, index.schema()) else {
            return Ok(None);
        };
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(filter.names.len());
        for name in &filter.names {
            columns.push(if name == index.column() {
                Arc::clone(index.vectors())
            } else {
                match cache.column(index, dataset, name, pool).await? {
                    Some(values) => values,
                    None => return Ok(None),
                }
            });
        }
        let mut indexed = filter.admitted(columns, index.len())?;
        if let Some(live) = loaded.live() {
            indexed = &indexed & live;
        }
        let mut unindexed = Vec::with_capacity(loaded.unindexed().len());
        for rows in loaded.unindexed() {
            let mut columns = Vec::with_capacity(filter.names.len());
            for name in &filter.names {
                columns.push(if name == index.column() {
                    Arc::clone(rows.vectors())
                } else {
                    rows.column(dataset, name).await?
                });
            }
            unindexed.push(filter.admitted(columns, rows.len())?);
        }
        let count =
            indexed.count_set_bits() + unindexed.iter().map(|a| a.count_set_bits()).sum::<usize>();
        Ok(Some(Self {
            indexed,
            unindexed,
            count,
        }))
    }
}

/// A `WHERE` over a collection's columns, evaluated over their values held in memory rather
/// than through Lance's scanner.
pub(crate) struct RowFilter {
    /// The columns it reads, by name, in the order [`Self::admitted`] takes them.
    pub(crate) names: Vec<String>,
    schema: SchemaRef,
    predicate: Arc<dyn PhysicalExpr>,
}

impl RowFilter {
    /// `filter` over the columns of `table`; `None` where it names a column `table` has not,
    /// or cannot be evaluated outside Lance.
    pub(crate) fn new(filter: &Expr, table: &Schema) -> Option<Self> {
        let filter = unnormalize_col(filter.clone());
        let names: BTreeSet<String> = filter
            .column_refs()
            .into_iter()
            .map(|c| c.name.clone())
            .collect();
        let fields = names
            .iter()
            .map(|name| table.field_with_name(name).ok().cloned())
            .collect::<Option<Vec<Field>>>()?;
        let schema: SchemaRef = Arc::new(Schema::new(fields));
        let predicate = DFSchema::try_from(schema.as_ref().clone())
            .and_then(|s| create_physical_expr(&filter, &s, &ExecutionProps::new()))
            .ok()?;
        Some(Self {
            names: names.into_iter().collect(),
            schema,
            predicate,
        })
    }

    /// The rows of `columns` (`rows` long, in the order of [`Self::names`]) the filter admits
    /// (true, not false nor NULL).
    pub(crate) fn admitted(&self, columns: Vec<ArrayRef>, rows: usize) -> Result<BooleanBuffer> {
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let batch = RecordBatch::try_new_with_options(Arc::clone(&self.schema), columns, &options)?;
        let value = self.predicate.evaluate(&batch)?.into_array(rows)?;
        let mask = value.as_boolean_opt().ok_or_else(|| {
            DataFusionError::Plan(format!(
                "a filter must be a boolean, not {}",
                value.data_type()
            ))
        })?;
        Ok(match mask.nulls() {
            Some(valid) => mask.values() & valid.inner(),
            None => mask.values().clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Admitted rows counted `count`, of an index of `indexed` rows.
    fn admitted(count: usize) -> Admitted {
        Admitted {
            indexed: BooleanBuffer::new_unset(0),
            unindexed: Vec::new(),
            count,
        }
    }

    #[test]
    fn few_or_sparse_admitted_rows_are_scored_and_others_searched_in_the_graph() {
        // A beam of 64 walks past about 32 rows for each it keeps: up to 2,048 are scored.
        assert!(admitted(2_048).prefers_exact(1_000_000, 64));
        assert!(!admitted(2_049).prefers_exact(10_000, 64));
        // One row in 32 or fewer: scored, however many.
        assert!(admitted(31_250).prefers_exact(1_000_000, 64));
        assert!(!admitted(31_251).prefers_exact(1_000_000, 64));
        // A wider beam walks further before scoring every row pays.
        assert!(!admitted(5_000).prefers_exact(50_000, 64));
        assert!(admitted(5_000).prefers_exact(50_000, 256));
    }
}
