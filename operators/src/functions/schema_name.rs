//! The column names of calls of the vector functions.
//!
//! DataFusion names a call `f(arg0,arg1)` after its arguments' names, and a vector literal's
//! name lists every value with its type (`make_array(Float64(0.1),Float64(0.2),...)`): for a
//! query of 384 dimensions, a name of several kilobytes, rebuilt each of the dozens of times
//! planning asks for it, which was most of the planning time of a k-NN statement. Here a
//! literal vector is named by its values as numbers, `[0.1,0.2,0]`, and one of more than
//! [`SHOWN_VALUES`] values by its first values, its length and a hash of all its values
//! (`[0.1,0.2,0.3,0.4,...384 values #9c0f3a1d2b4e5f67]`), so that different literals keep
//! different names. Other arguments keep DataFusion's names.

use std::fmt::Write;
use std::hash::{DefaultHasher, Hasher};

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::expr::{Cast, ScalarFunction, TryCast};
use datafusion::logical_expr::Expr;

/// The most values a literal's name lists in full.
const SHOWN_VALUES: usize = 8;

/// The name of the call of function `name` with `args` (see the module docs).
pub(super) fn vector_call_name(name: &str, args: &[Expr]) -> Result<String> {
    let mut out = format!("{name}(");
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match literal_vector(arg) {
            Some(values) => write_vector(&mut out, &values),
            None => write!(out, "{}", arg.schema_name()),
        }
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
    }
    out.push(')');
    Ok(out)
}

/// `values` as `[v0,v1,...]`, or past [`SHOWN_VALUES`], abbreviated with a hash.
fn write_vector(out: &mut String, values: &[f64]) -> std::fmt::Result {
    let shown = if values.len() > SHOWN_VALUES {
        SHOWN_VALUES / 2
    } else {
        values.len()
    };
    out.push('[');
    for (i, v) in values[..shown].iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write!(out, "{v}")?;
    }
    if shown < values.len() {
        let mut hash = DefaultHasher::new();
        values.iter().for_each(|v| hash.write_u64(v.to_bits()));
        write!(out, ",...{} values #{:016x}", values.len(), hash.finish())?;
    }
    out.push(']');
    Ok(())
}

/// The values of `expr` as numbers where it is a vector written as literals: a list literal, or
/// a `[...]` of number literals (`make_array`), possibly cast; `None` otherwise, or where a
/// value is NULL.
fn literal_vector(expr: &Expr) -> Option<Vec<f64>> {
    match expr {
        Expr::Cast(Cast { expr, .. }) | Expr::TryCast(TryCast { expr, .. }) => literal_vector(expr),
        Expr::Literal(value, _) => list_values(value),
        Expr::ScalarFunction(ScalarFunction { func, args }) if func.name() == "make_array" => args
            .iter()
            .map(|arg| match arg {
                Expr::Literal(value, _) => number(value),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// `value` as an `f64`, if it is a number that is not NULL.
fn number(value: &ScalarValue) -> Option<f64> {
    match *value {
        ScalarValue::Int8(v) => v.map(f64::from),
        ScalarValue::Int16(v) => v.map(f64::from),
        ScalarValue::Int32(v) => v.map(f64::from),
        ScalarValue::Int64(v) => v.map(|v| v as f64),
        ScalarValue::UInt8(v) => v.map(f64::from),
        ScalarValue::UInt16(v) => v.map(f64::from),
        ScalarValue::UInt32(v) => v.map(f64::from),
        ScalarValue::UInt64(v) => v.map(|v| v as f64),
        ScalarValue::Float16(v) => v.map(f64::from),
        ScalarValue::Float32(v) => v.map(f64::from),
        ScalarValue::Float64(v) => v,
        _ => None,
    }
}

/// The values of a one-row list literal of numbers, without NULLs.
fn list_values(value: &ScalarValue) -> Option<Vec<f64>> {
    let row: ArrayRef = match value {
        ScalarValue::List(list) if list.is_valid(0) => list.value(0),
        ScalarValue::LargeList(list) if list.is_valid(0) => list.value(0),
        ScalarValue::FixedSizeList(list) if list.is_valid(0) => list.value(0),
        _ => return None,
    };
    if !row.data_type().is_numeric() || row.null_count() > 0 {
        return None;
    }
    let row = cast(&row, &DataType::Float64).ok()?;
    Some(row.as_primitive::<Float64Type>().values().to_vec())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Float32Array, ListArray};
    use datafusion::arrow::datatypes::{Field, Float32Type};
    use datafusion::functions_nested::expr_fn::make_array;
    use datafusion::logical_expr::{col, lit};

    use super::*;

    fn list(values: &[f32]) -> Expr {
        let list = ListArray::from_iter_primitive::<Float32Type, _, _>([Some(
            values.iter().map(|v| Some(*v)).collect::<Vec<_>>(),
        )]);
        lit(ScalarValue::List(Arc::new(list)))
    }

    #[test]
    fn short_literals_are_named_by_their_values() {
        let name = vector_call_name(
            "l2_distance",
            &[col("embedding"), make_array(vec![lit(0.5), lit(2_i64)])],
        )
        .unwrap();
        assert_eq!(name, "l2_distance(embedding,[0.5,2])");
        // The same vector as a folded list literal, cast, names the same.
        let cast = Expr::Cast(Cast::new(
            Box::new(list(&[0.5, 2.0])),
            DataType::new_list(DataType::Float32, true),
        ));
        assert_eq!(
            vector_call_name("l2_distance", &[col("embedding"), cast]).unwrap(),
            name
        );
    }

    #[test]
    fn long_literals_are_abbreviated_and_still_told_apart() {
        let values: Vec<f32> = (0..384).map(|i| i as f32 / 8.0).collect();
        let mut other = values.clone();
        other[300] += 1.0;
        let name = |v: &[f32]| vector_call_name("l2_norm", &[list(v)]).unwrap();
        let (a, b) = (name(&values), name(&other));
        assert!(
            a.starts_with("l2_norm([0,0.125,0.25,0.375,...384 values #"),
            "{a}"
        );
        assert!(a.len() < 80, "{a}");
        assert_ne!(a, b);
        assert_eq!(a, name(&values));
    }

    #[test]
    fn other_arguments_keep_datafusions_names() {
        let null_element = make_array(vec![lit(1.0), lit(ScalarValue::Float64(None))]);
        let column = make_array(vec![lit(1.0), col("x")]);
        for arg in [null_element, column, col("embedding")] {
            let expected = format!("f({})", arg.schema_name());
            assert_eq!(vector_call_name("f", &[arg]).unwrap(), expected);
        }
        let empty = Float32Array::from(Vec::<f32>::new());
        let field = Arc::new(Field::new_list_field(DataType::Float32, true));
        let empty = ListArray::try_new(
            field,
            datafusion::arrow::buffer::OffsetBuffer::from_lengths([0]),
            Arc::new(empty),
            None,
        )
        .unwrap();
        let empty = lit(ScalarValue::List(Arc::new(empty)));
        assert_eq!(vector_call_name("f", &[empty]).unwrap(), "f([])");
    }
}
