//! The physical optimizer rule that turns `ORDER BY <distance>(column, query) [DESC] LIMIT k`
//! into Quiver's k-NN operator.
//!
//! It matches a top-k sort (a `SortExec` with a fetch, or a `SortPreservingMergeExec` with a
//! fetch over a per-partition one) whose only sort key is a distance function of a vector column
//! and a constant query, either directly or through the projection below it (`... AS d ORDER BY
//! d`). The sort and the distance computation are replaced by a [`KnnExec`] over the sort's input,
//! so every filter below still runs before the search. The rewrite keeps the exact semantics of
//! the sort (order direction, NULL placement, the same values); anything it cannot prove
//! equivalent — several sort keys, a non-constant query — is left to DataFusion.
//!
//! When the search reads a collection scan directly (filters pushed into the scan, only column
//! projections in between) and the collection has a vector index on the column built for the
//! query's metric, the exact search is replaced by [`IndexKnnExec`] with the session's
//! `quiver.nprobes`, `quiver.ef` and `quiver.refine_factor` (unless `quiver.use_index` is off);
//! otherwise the exact search is told what the scan reads ([`LoadedSource`]), so that it can
//! read the collection's vectors loaded in memory.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::expressions::{CastExpr, Column, Literal};
use datafusion::physical_expr::{LexOrdering, PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::ExecutionPlan;
use quiver_operators::exact::knn::{KnnExec, KnnSpec, LoadedSource};
use quiver_operators::functions::DistanceUdf;
use quiver_operators::index::index_knn::{index_knn_schema, IndexKnnExec, IndexKnnTask};
use quiver_operators::index::search::{index_distance_type, IndexSearch, IndexSearchParams};
use quiver_operators::vector::scalar_vector;

use crate::catalog::scan::CollectionScanExec;
use crate::config::QuiverConfig;

/// The largest `LIMIT` rewritten into a k-NN search; larger ones stay ordinary sorts.
pub const MAX_K: usize = 1_000_000;

/// Name of the distance column [`KnnExec`] appends when the distance is also projected.
const DISTANCE_COLUMN: &str = "__quiver_distance";

/// Rewrites top-k sorts by a vector distance into [`KnnExec`].
#[derive(Debug, Default)]
pub struct KnnRule;

/// A distance call found in a sort key: which column, which query, which metric.
struct DistanceCall {
    column: usize,
    query: Vec<f32>,
    metric: quiver_operators::distance::Metric,
}

/// Strips a cast between fixed-size vector types of the same element and length (only the item
/// field's nullability differs), which coercion may add around a stored column of `schema`.
fn strip_vector_cast<'a>(
    expr: &'a Arc<dyn PhysicalExpr>,
    schema: &Schema,
) -> &'a Arc<dyn PhysicalExpr> {
    if let Some(cast) = expr.downcast_ref::<CastExpr>() {
        if let (DataType::FixedSizeList(to, n), Ok(DataType::FixedSizeList(from, m))) =
            (cast.cast_type(), cast.expr().data_type(schema))
        {
            if n == &m && to.data_type() == from.data_type() {
                return cast.expr();
            }
        }
    }
    expr
}

/// The distance call `expr` (over rows of `schema`) is, if it compares a stored vector column
/// (a `FixedSizeList` of `Float32` or `Float16`) with a constant query.
fn as_distance_call(expr: &Arc<dyn PhysicalExpr>, schema: &Schema) -> Option<DistanceCall> {
    let call = ScalarFunctionExpr::try_downcast_func::<DistanceUdf>(expr.as_ref())?;
    let udf = call.fun().inner().downcast_ref::<DistanceUdf>()?;
    let [a, b] = call.args() else {
        return None;
    };
    let (column, literal) = match (
        strip_vector_cast(a, schema).downcast_ref::<Column>(),
        b.downcast_ref::<Literal>(),
        a.downcast_ref::<Literal>(),
        strip_vector_cast(b, schema).downcast_ref::<Column>(),
    ) {
        (Some(c), Some(l), _, _) | (_, _, Some(l), Some(c)) => (c, l),
        _ => return None,
    };
    let stored = matches!(
        schema.fields().get(column.index()).map(|f| f.data_type()),
        Some(DataType::FixedSizeList(item, _))
            if matches!(item.data_type(), DataType::Float32 | DataType::Float16)
    );
    if !stored {
        return None;
    }
    let query = scalar_vector(literal.value(), udf.function().name(), 2).ok()??;
    Some(DistanceCall {
        column: column.index(),
        query,
        metric: udf.function().metric(),
    })
}

/// Follows `plan`'s columns down through column-only projections and row-preserving nodes to a
/// collection scan: the scan, and the dataset column behind each of `plan`'s columns.
fn trace_to_scan(plan: &Arc<dyn ExecutionPlan>) -> Option<(&CollectionScanExec, Vec<String>)> {
    if let Some(scan) = plan.downcast_ref::<CollectionScanExec>() {
        return Some((scan, scan.columns().to_vec()));
    }
    if let Some(projection) = plan.downcast_ref::<ProjectionExec>() {
        let (scan, below) = trace_to_scan(projection.input())?;
        let columns = projection
            .expr()
            .iter()
            .map(|p| {
                p.expr
                    .downcast_ref::<Column>()
                    .and_then(|c| below.get(c.index()).cloned())
            })
            .collect::<Option<Vec<_>>>()?;
        return Some((scan, columns));
    }
    let transparent = plan.downcast_ref::<CooperativeExec>().is_some()
        || plan.downcast_ref::<RepartitionExec>().is_some()
        || plan.downcast_ref::<CoalescePartitionsExec>().is_some();
    match plan.children().as_slice() {
        [child] if transparent => trace_to_scan(child),
        _ => None,
    }
}

/// The index search that can replace `knn`: the k-NN input must be an unfiltered-above scan of
/// a collection with a vector index on the column for the query's metric.
fn index_search_for(
    knn: &KnnExec,
    config: &QuiverConfig,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let spec = knn.spec();
    if !config.use_index {
        return Ok(None);
    }
    let Some(wanted) = index_distance_type(spec.metric, spec.descending) else {
        return Ok(None);
    };
    // An index holds no NULL vectors: where the order puts NULL vectors first, only the exact
    // search returns them.
    let nullable = knn.input().schema().field(spec.column).is_nullable();
    if spec.nulls_first && nullable {
        return Ok(None);
    }
    let Some((scan, columns)) = trace_to_scan(knn.input()) else {
        return Ok(None);
    };
    let Some(column) = columns.get(spec.column) else {
        return Ok(None);
    };
    let Some(index) = scan
        .indices()
        .iter()
        .find(|ix| &ix.column == column && ix.metric == wanted.to_string())
    else {
        return Ok(None);
    };
    let search = IndexSearch {
        index: index.name.clone(),
        column: column.clone(),
        query: spec.query.clone(),
        metric: spec.metric,
        descending: spec.descending,
        k: spec.k,
        params: IndexSearchParams {
            nprobes: config.nprobes,
            ef: config.ef,
            refine_factor: config.refine_factor,
        },
    };
    let schema = index_knn_schema(knn.input().schema().fields(), knn.distance_column());
    let filter = scan.filters().iter().cloned().reduce(Expr::and);
    Ok(Some(Arc::new(IndexKnnExec::try_new(IndexKnnTask {
        dataset: scan.dataset().clone(),
        search,
        filter,
        columns,
        schema,
        with_distance: knn.distance_column().is_some(),
    })?)))
}

/// An exact [`KnnExec`], or the index search that replaces it when one applies. An exact
/// search over a collection scan may read the collection's vectors from memory.
fn search(
    input: Arc<dyn ExecutionPlan>,
    spec: KnnSpec,
    distance_column: Option<String>,
    config: &QuiverConfig,
) -> Result<Arc<dyn ExecutionPlan>> {
    let knn = KnnExec::try_new(input, spec, distance_column)?;
    if let Some(index) = index_search_for(&knn, config)? {
        return Ok(index);
    }
    let source = trace_to_scan(knn.input()).map(|(scan, columns)| LoadedSource {
        dataset: Arc::clone(scan.dataset()),
        columns,
        filter: scan.filters().iter().cloned().reduce(Expr::and),
    });
    Ok(Arc::new(match source {
        Some(source) => knn.with_loaded_source(source),
        None => knn,
    }))
}

/// The k-NN plan replacing a top-`k` sort by `ordering` over `input`, if it applies.
fn knn_for(
    ordering: &LexOrdering,
    k: usize,
    input: &Arc<dyn ExecutionPlan>,
    config: &QuiverConfig,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if k == 0 || k > MAX_K || ordering.len() != 1 {
        return Ok(None);
    }
    let sort = ordering.first();
    let spec = |call: DistanceCall| KnnSpec {
        column: call.column,
        query: call.query.into(),
        metric: call.metric,
        k,
        descending: sort.options.descending,
        nulls_first: sort.options.nulls_first,
    };
    // ORDER BY distance(column, query): the distance is not part of the output.
    if let Some(call) = as_distance_call(&sort.expr, &input.schema()) {
        return Ok(Some(search(input.clone(), spec(call), None, config)?));
    }
    // SELECT ..., distance(column, query) AS d ... ORDER BY d: search below the projection and
    // project the search's distance column in place of the recomputed one.
    let (Some(column), Some(projection)) = (
        sort.expr.downcast_ref::<Column>(),
        input.downcast_ref::<ProjectionExec>(),
    ) else {
        return Ok(None);
    };
    let Some(call) = projection
        .expr()
        .get(column.index())
        .and_then(|p| as_distance_call(&p.expr, &projection.input().schema()))
    else {
        return Ok(None);
    };
    let below = projection.input();
    let distance_index = below.schema().fields().len();
    let knn = search(
        below.clone(),
        spec(call),
        Some(DISTANCE_COLUMN.to_string()),
        config,
    )?;
    let exprs: Vec<ProjectionExpr> = projection
        .expr()
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if i == column.index() {
                ProjectionExpr {
                    expr: Arc::new(Column::new(DISTANCE_COLUMN, distance_index)),
                    alias: p.alias.clone(),
                }
            } else {
                p.clone()
            }
        })
        .collect();
    Ok(Some(Arc::new(ProjectionExec::try_new(exprs, knn)?)))
}

fn rewrite(
    node: Arc<dyn ExecutionPlan>,
    config: &QuiverConfig,
) -> Result<Transformed<Arc<dyn ExecutionPlan>>> {
    let replacement = if let Some(merge) = node.downcast_ref::<SortPreservingMergeExec>() {
        match (merge.fetch(), merge.input().downcast_ref::<SortExec>()) {
            (Some(k), Some(sort)) if sort.expr() == merge.expr() => {
                knn_for(merge.expr(), k, sort.input(), config)?
            }
            _ => None,
        }
    } else if let Some(sort) = node.downcast_ref::<SortExec>() {
        match sort.fetch() {
            Some(k) if !sort.preserve_partitioning() => {
                knn_for(sort.expr(), k, sort.input(), config)?
            }
            _ => None,
        }
    } else {
        None
    };
    Ok(match replacement {
        Some(plan) => Transformed::yes(plan),
        None => Transformed::no(node),
    })
}

impl PhysicalOptimizerRule for KnnRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let quiver = config
            .extensions
            .get::<QuiverConfig>()
            .cloned()
            .unwrap_or_default();
        Ok(plan.transform_down(|node| rewrite(node, &quiver))?.data)
    }

    fn name(&self) -> &str {
        "quiver_knn"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
