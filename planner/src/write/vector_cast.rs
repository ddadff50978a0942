//! Rewrites every conversion into a vector column so that a wrong length is reported by name.
//!
//! DataFusion's `INSERT` planning casts each value to its column's type; Arrow's cast from a list
//! to a `FixedSizeList` fails with "Cannot cast to FixedSizeList(4): value at index 0 has length
//! 3", naming neither the column nor the value. This pass replaces such casts with
//! `to_vector(value, dim, 'column')`, which does the same conversion and fails with
//! "column 'embedding' is VECTOR(4) but got a vector of 3 dimensions: [...]".
//!
//! A number with a fraction written into an integer column (`INSERT INTO t VALUES (10.7)` with
//! a `BIGINT` key) is refused by name as well: the cast would truncate it silently.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::expr::{Alias, Cast, ScalarFunction};
use datafusion::logical_expr::{Expr, LogicalPlan, ScalarUDF, Values};
use datafusion::prelude::lit;
use datafusion::scalar::ScalarValue;
use quiver_operators::functions::ToVectorUdf;

use crate::error::PlannerError;
use crate::sql::types::sql_type_name;

/// The vector conversion for `value` into a `FixedSizeList<element, dim>` named `column`, or
/// `None` if `target` is not a vector type.
pub fn to_vector_expr(value: Expr, target: &DataType, column: &str) -> Option<Expr> {
    let DataType::FixedSizeList(item, dim) = target else {
        return None;
    };
    let converted = Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(ScalarUDF::from(ToVectorUdf::new())),
        vec![value, lit(i64::from(*dim)), lit(column.to_string())],
    ));
    match item.data_type() {
        DataType::Float32 => Some(converted),
        DataType::Float16 => Some(Expr::Cast(Cast::new(Box::new(converted), target.clone()))),
        _ => None,
    }
}

/// Replaces `CAST(x AS <vector>)` by `to_vector(x, dim, column)`, and refuses a number with a
/// fraction written into an integer column (the cast would truncate it: `10.7` stored as `10`).
fn rewrite_cast(expr: Expr, column: &str) -> Result<Expr> {
    match expr {
        Expr::Cast(cast) => {
            if let Expr::Literal(value, _) = cast.expr.as_ref() {
                if cast.field.data_type().is_integer() && has_fraction(value) {
                    return Err(PlannerError::Invalid(format!(
                        "column '{column}' is {} but got {value}, which is not a whole number",
                        sql_type_name(cast.field.data_type())
                    ))
                    .into());
                }
            }
            Ok(
                match to_vector_expr((*cast.expr).clone(), cast.field.data_type(), column) {
                    Some(converted) => converted,
                    None => Expr::Cast(cast),
                },
            )
        }
        other => Ok(other),
    }
}

/// Whether a numeric literal has a fractional part.
fn has_fraction(value: &ScalarValue) -> bool {
    match value {
        ScalarValue::Float32(Some(v)) => v.fract() != 0.0,
        ScalarValue::Float64(Some(v)) => v.fract() != 0.0,
        ScalarValue::Decimal128(Some(v), _, scale) if *scale > 0 => {
            v % 10_i128.pow(u32::from(scale.unsigned_abs())) != 0
        }
        _ => false,
    }
}

/// The target column each source column feeds, read from the insert's top projection
/// (`CAST(column4 AS ...) AS embedding` maps `column4` to `embedding`).
fn target_names(plan: &LogicalPlan) -> HashMap<String, String> {
    let mut out = HashMap::new();
    if let LogicalPlan::Projection(projection) = plan {
        for expr in &projection.expr {
            if let Expr::Alias(alias) = expr {
                let mut inner = alias.expr.as_ref();
                while let Expr::Cast(cast) = inner {
                    inner = cast.expr.as_ref();
                }
                if let Expr::Column(c) = inner {
                    out.insert(c.name.clone(), alias.name.clone());
                }
            }
        }
    }
    out
}

/// Applies the rewrite to the input of an `INSERT` (or `UPDATE`) plan. `VALUES` rows also become nullable, so
/// that a NULL in a NOT NULL column is reported by the collection's sink, by column name.
pub fn name_vector_casts(plan: LogicalPlan) -> Result<LogicalPlan> {
    let names = target_names(&plan);
    plan.transform_up(|node| match node {
        LogicalPlan::Values(Values { schema, values }) => {
            let column = |i: usize| {
                let source = schema.field(i).name();
                names.get(source).cloned().unwrap_or_else(|| source.clone())
            };
            let values = values
                .into_iter()
                .map(|row| {
                    row.into_iter()
                        .enumerate()
                        .map(|(i, e)| rewrite_cast(e, &column(i)))
                        .collect::<Result<Vec<_>>>()
                })
                .collect::<Result<Vec<_>>>()?;
            let nullable = DFSchema::new_with_metadata(
                schema
                    .iter()
                    .map(|(q, f)| (q.cloned(), Arc::new(Field::clone(f).with_nullable(true))))
                    .collect(),
                schema.metadata().clone(),
            )?;
            Ok(Transformed::yes(LogicalPlan::Values(Values {
                schema: Arc::new(nullable),
                values,
            })))
        }
        LogicalPlan::Projection(_) => node.map_expressions(|e| match e {
            Expr::Alias(Alias {
                expr,
                relation,
                name,
                metadata,
            }) => {
                let rewritten = rewrite_cast(*expr, &name)?;
                Ok(Transformed::yes(Expr::Alias(Alias {
                    expr: Box::new(rewritten),
                    relation,
                    name,
                    metadata,
                })))
            }
            other => Ok(Transformed::no(other)),
        }),
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}
