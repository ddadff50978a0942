//! Keeps the assignments of an `UPDATE` where DataFusion's physical planner reads them.
//!
//! The physical planner takes the assignments of `UPDATE t SET a = e1, b = e2` from the top
//! projection of the statement's input and hands them to the table. Common subexpression
//! elimination may move an expression used twice (`SET n = n + 1, v = [n + 1, 0]`) into a new
//! projection below, as `__common_expr_1`; the assignments then name a column the table does not
//! have, and the statement fails. [`InlineUpdateAssignments`], run after DataFusion's rules,
//! inlines such a projection back into the top one.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::tree_node::Transformed;
use datafusion::common::Result;
use datafusion::logical_expr::{DmlStatement, LogicalPlan, Projection, WriteOp};
use datafusion::optimizer::push_down_filter::replace_cols_by_name;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

/// Inlines the projection below the top projection of an `UPDATE`'s input.
#[derive(Debug, Default)]
pub struct InlineUpdateAssignments;

impl OptimizerRule for InlineUpdateAssignments {
    fn name(&self) -> &str {
        "inline_update_assignments"
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Dml(dml) = plan else {
            return Ok(Transformed::no(plan));
        };
        let (LogicalPlan::Projection(top), WriteOp::Update) = (dml.input.as_ref(), &dml.op) else {
            return Ok(Transformed::no(LogicalPlan::Dml(dml)));
        };
        let LogicalPlan::Projection(below) = top.input.as_ref() else {
            return Ok(Transformed::no(LogicalPlan::Dml(dml)));
        };
        let definitions: HashMap<String, _> = below
            .schema
            .columns()
            .into_iter()
            .zip(&below.expr)
            .map(|(column, expr)| (column.flat_name(), expr.clone().unalias()))
            .collect();
        let assignments = top
            .expr
            .iter()
            .map(|expr| replace_cols_by_name(expr.clone(), &definitions))
            .collect::<Result<Vec<_>>>()?;
        let input = Projection::try_new(assignments, below.input.clone())?;
        Ok(Transformed::yes(LogicalPlan::Dml(DmlStatement {
            input: Arc::new(LogicalPlan::Projection(input)),
            ..dml
        })))
    }
}
