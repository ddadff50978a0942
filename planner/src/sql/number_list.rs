//! `[0.1, 0.2, ...]` of number literals, planned as one list literal.
//!
//! DataFusion plans an array literal as a `make_array` call with one argument per element,
//! which its simplifier later folds into a list literal. A query vector is hundreds of number
//! literals: until that folding, each planning step that types or names expressions walks,
//! types and prints every one of them, which made planning most of the time of a k-NN
//! statement. [`NumberListPlanner`] plans a list of number literals as the literal the
//! folding would have made: `Float64` where any element is a decimal number, `Int64` where all
//! are integers (as `make_array` coerces them). Any other list is left to DataFusion.

use std::sync::Arc;

use datafusion::arrow::array::ListArray;
use datafusion::arrow::datatypes::{Float64Type, Int64Type};
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult};
use datafusion::logical_expr::{lit, Expr};

/// Plans array literals of numbers (see the module docs); consulted before DataFusion's own
/// array planner.
#[derive(Debug, Default)]
pub struct NumberListPlanner;

impl ExprPlanner for NumberListPlanner {
    fn plan_array_literal(
        &self,
        exprs: Vec<Expr>,
        _schema: &DFSchema,
    ) -> Result<PlannerResult<Vec<Expr>>> {
        Ok(match number_list(&exprs) {
            Some(list) => PlannerResult::Planned(lit(list)),
            None => PlannerResult::Original(exprs),
        })
    }
}

/// `exprs` as one list literal, if they are all `Int64` or `Float64` literals (what SQL number
/// literals plan to) and there is at least one.
pub(crate) fn number_list(exprs: &[Expr]) -> Option<ScalarValue> {
    let mut integers = Vec::with_capacity(exprs.len());
    let mut floats = Vec::new();
    for expr in exprs {
        match expr {
            Expr::Literal(ScalarValue::Int64(Some(v)), None) if floats.is_empty() => {
                integers.push(*v)
            }
            Expr::Literal(ScalarValue::Int64(Some(v)), None) => floats.push(*v as f64),
            Expr::Literal(ScalarValue::Float64(Some(v)), None) => {
                if floats.is_empty() {
                    floats.extend(integers.iter().map(|i| *i as f64));
                }
                floats.push(*v)
            }
            _ => return None,
        }
    }
    let list = if !floats.is_empty() {
        ListArray::from_iter_primitive::<Float64Type, _, _>([Some(floats.into_iter().map(Some))])
    } else if !integers.is_empty() {
        ListArray::from_iter_primitive::<Int64Type, _, _>([Some(integers.into_iter().map(Some))])
    } else {
        return None;
    };
    Some(ScalarValue::List(Arc::new(list)))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Array;
    use datafusion::arrow::datatypes::DataType;

    use super::*;

    fn values(list: &ScalarValue) -> Vec<String> {
        let ScalarValue::List(list) = list else {
            panic!("not a list: {list:?}")
        };
        let row = list.value(0);
        (0..row.len())
            .map(|i| ScalarValue::try_from_array(&row, i).unwrap().to_string())
            .collect()
    }

    #[test]
    fn integers_stay_integers_and_a_decimal_makes_every_element_a_float() {
        let ints = number_list(&[lit(1_i64), lit(-2_i64)]).unwrap();
        assert_eq!(ints.data_type(), DataType::new_list(DataType::Int64, true));
        assert_eq!(values(&ints), ["1", "-2"]);
        let mixed = number_list(&[lit(1_i64), lit(0.5), lit(3_i64)]).unwrap();
        assert_eq!(
            mixed.data_type(),
            DataType::new_list(DataType::Float64, true)
        );
        assert_eq!(values(&mixed), ["1", "0.5", "3"]);
    }

    #[test]
    fn anything_but_number_literals_is_left_to_datafusion() {
        assert_eq!(number_list(&[]), None);
        assert_eq!(number_list(&[lit(1_i64), lit("a")]), None);
        assert_eq!(number_list(&[lit(ScalarValue::Int64(None))]), None);
        assert_eq!(
            number_list(&[lit(1_i64), datafusion::logical_expr::col("x")]),
            None
        );
    }
}
