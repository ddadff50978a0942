//! [`CooperativeJoins`]: the physical optimizer rule that makes the output of every join take
//! part in Tokio's cooperative scheduling.
//!
//! A join can make far more rows than it reads: a cross join of two million-row inputs makes a
//! trillion. The operator above it (an aggregate, say) polls it in a loop that returns only when
//! its input has nothing ready, and a join over inputs already in memory always has something
//! ready, so the task never yields: its query cannot be stopped at its deadline or when its
//! client goes away, and other statements on the same threads wait for it to finish. DataFusion
//! makes its leaves cooperative (`EnsureCooperative`); this rule wraps each join in a
//! `CooperativeExec`, whose stream spends the task's scheduling budget on every batch, so the
//! task yields every few batches and a dropped query stops there.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::joins::{
    CrossJoinExec, HashJoinExec, NestedLoopJoinExec, SortMergeJoinExec, SymmetricHashJoinExec,
};
use datafusion::physical_plan::ExecutionPlan;

/// Wraps every join of a plan in a [`CooperativeExec`].
#[derive(Debug, Default)]
pub struct CooperativeJoins;

fn is_join(plan: &dyn ExecutionPlan) -> bool {
    plan.downcast_ref::<NestedLoopJoinExec>().is_some()
        || plan.downcast_ref::<CrossJoinExec>().is_some()
        || plan.downcast_ref::<HashJoinExec>().is_some()
        || plan.downcast_ref::<SortMergeJoinExec>().is_some()
        || plan.downcast_ref::<SymmetricHashJoinExec>().is_some()
}

impl PhysicalOptimizerRule for CooperativeJoins {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(plan
            .transform_up(|node| {
                if is_join(node.as_ref()) {
                    Ok(Transformed::yes(
                        Arc::new(CooperativeExec::new(node)) as Arc<dyn ExecutionPlan>
                    ))
                } else {
                    Ok(Transformed::no(node))
                }
            })?
            .data)
    }

    fn name(&self) -> &str {
        "quiver_cooperative_joins"
    }

    fn schema_check(&self) -> bool {
        true
    }
}
