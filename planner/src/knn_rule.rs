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

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::Result;
use datafusion::physical_expr::expressions::{CastExpr, Column, Literal};
use datafusion::physical_expr::{LexOrdering, PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::ExecutionPlan;
use quiver_operators::functions::DistanceUdf;
use quiver_operators::knn::{KnnExec, KnnSpec};
use quiver_operators::vector::scalar_vector;

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
/// field's nullability differs), which coercion may add around a stored column.
fn strip_vector_cast(expr: &Arc<dyn PhysicalExpr>) -> &Arc<dyn PhysicalExpr> {
    if let Some(cast) = expr.downcast_ref::<CastExpr>() {
        if let (DataType::FixedSizeList(to, n), Ok(DataType::FixedSizeList(from, m))) = (
            cast.cast_type(),
            cast.expr()
                .data_type(&datafusion::arrow::datatypes::Schema::empty()),
        ) {
            if n == &m && to.data_type() == from.data_type() {
                return cast.expr();
            }
        }
    }
    expr
}

fn as_distance_call(expr: &Arc<dyn PhysicalExpr>) -> Option<DistanceCall> {
    let call = ScalarFunctionExpr::try_downcast_func::<DistanceUdf>(expr.as_ref())?;
    let udf = call.fun().inner().downcast_ref::<DistanceUdf>()?;
    let [a, b] = call.args() else {
        return None;
    };
    let (column, literal) = match (
        strip_vector_cast(a).downcast_ref::<Column>(),
        b.downcast_ref::<Literal>(),
        a.downcast_ref::<Literal>(),
        strip_vector_cast(b).downcast_ref::<Column>(),
    ) {
        (Some(c), Some(l), _, _) | (_, _, Some(l), Some(c)) => (c, l),
        _ => return None,
    };
    let query = scalar_vector(literal.value(), udf.function().name(), 2).ok()??;
    Some(DistanceCall {
        column: column.index(),
        query,
        metric: udf.function().metric(),
    })
}

/// The k-NN plan replacing a top-`k` sort by `ordering` over `input`, if it applies.
fn knn_for(
    ordering: &LexOrdering,
    k: usize,
    input: &Arc<dyn ExecutionPlan>,
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
    if let Some(call) = as_distance_call(&sort.expr) {
        return Ok(Some(Arc::new(KnnExec::try_new(
            input.clone(),
            spec(call),
            None,
        )?)));
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
        .and_then(|p| as_distance_call(&p.expr))
    else {
        return Ok(None);
    };
    let below = projection.input();
    let distance_index = below.schema().fields().len();
    let knn = Arc::new(KnnExec::try_new(
        below.clone(),
        spec(call),
        Some(DISTANCE_COLUMN.to_string()),
    )?);
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

fn rewrite(node: Arc<dyn ExecutionPlan>) -> Result<Transformed<Arc<dyn ExecutionPlan>>> {
    let replacement = if let Some(merge) = node.downcast_ref::<SortPreservingMergeExec>() {
        match (merge.fetch(), merge.input().downcast_ref::<SortExec>()) {
            (Some(k), Some(sort)) if sort.expr() == merge.expr() => {
                knn_for(merge.expr(), k, sort.input())?
            }
            _ => None,
        }
    } else if let Some(sort) = node.downcast_ref::<SortExec>() {
        match sort.fetch() {
            Some(k) if !sort.preserve_partitioning() => knn_for(sort.expr(), k, sort.input())?,
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
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(plan.transform_down(rewrite)?.data)
    }

    fn name(&self) -> &str {
        "quiver_knn"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
