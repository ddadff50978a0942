//! One INSERT for many parameter rows: an ADBC `executemany` (a prepared `INSERT` bound to a batch
//! of parameter rows) becomes a single write — one Lance transaction, all rows or none — instead
//! of one write per row.
//!
//! Each row of parameters is bound into the INSERT's input; the bound inputs are then merged:
//! `INSERT ... VALUES (...)` binds into `VALUES` (under the projection that casts into the
//! collection's types), whose rows are concatenated into one `VALUES`; any other input shape is
//! combined with `UNION ALL`.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::logical_expr::{
    DmlStatement, LogicalPlan, LogicalPlanBuilder, Projection, Values, WriteOp,
};

/// Whether `plan` is an INSERT (the only write whose parameter rows can be merged).
pub fn is_insert(plan: &LogicalPlan) -> bool {
    matches!(
        plan,
        LogicalPlan::Dml(DmlStatement {
            op: WriteOp::Insert(_),
            ..
        })
    )
}

/// The projection (if any) over the `VALUES` of a bound input.
fn values_of(plan: &LogicalPlan) -> Option<(Option<&Projection>, &Values)> {
    match plan {
        LogicalPlan::Values(values) => Some((None, values)),
        LogicalPlan::Projection(p) => match p.input.as_ref() {
            LogicalPlan::Values(values) => Some((Some(p), values)),
            _ => None,
        },
        _ => None,
    }
}

/// Merges the inputs of one INSERT bound to each parameter row into one input.
fn merge(inputs: Vec<LogicalPlan>) -> Result<Option<LogicalPlan>> {
    let Some(first) = inputs.first() else {
        return Ok(None);
    };
    if let Some((projection, values)) = values_of(first) {
        let same_shape = |p: &LogicalPlan| {
            values_of(p).is_some_and(|(q, v)| {
                v.schema == values.schema
                    && match (q, projection) {
                        (Some(q), Some(p)) => q.expr == p.expr,
                        (None, None) => true,
                        _ => false,
                    }
            })
        };
        if inputs.iter().all(same_shape) {
            let rows = inputs
                .iter()
                .filter_map(values_of)
                .flat_map(|(_, v)| v.values.iter().cloned())
                .collect();
            let merged = LogicalPlan::Values(Values {
                schema: values.schema.clone(),
                values: rows,
            });
            return Ok(Some(match projection {
                Some(p) => LogicalPlan::Projection(Projection::try_new_with_schema(
                    p.expr.clone(),
                    Arc::new(merged),
                    p.schema.clone(),
                )?),
                None => merged,
            }));
        }
    }
    let mut inputs = inputs.into_iter();
    let Some(first) = inputs.next() else {
        return Ok(None);
    };
    let mut builder = LogicalPlanBuilder::from(first);
    for input in inputs {
        builder = builder.union(input)?;
    }
    Ok(Some(builder.build()?))
}

/// The INSERT `plan` with its input replaced by the merge of `bound`: the same INSERT bound to
/// each parameter row. `None` if `plan` is not an INSERT or there are no rows.
pub fn insert_all(plan: &LogicalPlan, bound: Vec<LogicalPlan>) -> Result<Option<LogicalPlan>> {
    let LogicalPlan::Dml(dml) = plan else {
        return Ok(None);
    };
    if !is_insert(plan) {
        return Ok(None);
    }
    let inputs: Vec<LogicalPlan> = bound
        .into_iter()
        .filter_map(|p| match p {
            LogicalPlan::Dml(d) => Some(d.input.as_ref().clone()),
            _ => None,
        })
        .collect();
    let Some(input) = merge(inputs)? else {
        return Ok(None);
    };
    let mut dml = dml.clone();
    dml.input = Arc::new(input);
    Ok(Some(LogicalPlan::Dml(dml)))
}
