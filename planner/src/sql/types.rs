//! SQL types of collections: `VECTOR(n)` (pgvector) and `FLOAT[n]` (DuckDB) are a
//! `FixedSizeList<Float32, n>`; `HALFVEC(n)` is a `FixedSizeList<Float16, n>`. Also the reverse
//! mapping, used by `DESCRIBE` to show columns as users wrote them.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef, TimeUnit};
use datafusion::common::{plan_err, Result};
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::sql::sqlparser::ast;

/// Largest vector dimension accepted in DDL.
pub const MAX_DIMENSION: u64 = 65_536;

/// The Arrow type of a vector column of `dim` elements of `element`.
pub fn vector_type(element: DataType, dim: i32) -> DataType {
    DataType::FixedSizeList(Arc::new(Field::new_list_field(element, true)), dim)
}

/// Plans `VECTOR(n)` and `HALFVEC(n)`; every other type is left to DataFusion.
#[derive(Debug, Default)]
pub struct VectorTypePlanner;

impl TypePlanner for VectorTypePlanner {
    fn plan_type_field(&self, sql_type: &ast::DataType) -> Result<Option<FieldRef>> {
        let ast::DataType::Custom(name, modifiers) = sql_type else {
            return Ok(None);
        };
        let type_name = name.to_string().to_ascii_lowercase();
        let element = match type_name.as_str() {
            "vector" => DataType::Float32,
            "halfvec" => DataType::Float16,
            _ => return Ok(None),
        };
        let [dim] = modifiers.as_slice() else {
            return plan_err!(
                "{} needs exactly one dimension, as in {}(384)",
                type_name.to_uppercase(),
                type_name.to_uppercase()
            );
        };
        let dim = match dim.trim().parse::<u64>() {
            Ok(d) if (1..=MAX_DIMENSION).contains(&d) => d as i32,
            _ => {
                return plan_err!(
                "invalid vector dimension '{dim}': it must be an integer from 1 to {MAX_DIMENSION}"
            )
            }
        };
        Ok(Some(Arc::new(Field::new(
            "",
            vector_type(element, dim),
            true,
        ))))
    }
}

/// The dimension of a vector column type, if it is one.
pub fn vector_dimension(data_type: &DataType) -> Option<usize> {
    match data_type {
        DataType::FixedSizeList(f, n)
            if matches!(f.data_type(), DataType::Float32 | DataType::Float16) =>
        {
            usize::try_from(*n).ok()
        }
        _ => None,
    }
}

/// The SQL name of an Arrow type, as `DESCRIBE` shows it.
pub fn sql_type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::FixedSizeList(f, n) if f.data_type() == &DataType::Float32 => {
            format!("VECTOR({n})")
        }
        DataType::FixedSizeList(f, n) if f.data_type() == &DataType::Float16 => {
            format!("HALFVEC({n})")
        }
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 => "TINYINT".into(),
        DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 => "BIGINT".into(),
        DataType::UInt8 => "TINYINT UNSIGNED".into(),
        DataType::UInt16 => "SMALLINT UNSIGNED".into(),
        DataType::UInt32 => "INT UNSIGNED".into(),
        DataType::UInt64 => "BIGINT UNSIGNED".into(),
        DataType::Float16 => "HALF".into(),
        DataType::Float32 => "REAL".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BYTEA".into(),
        DataType::Date32 | DataType::Date64 => "DATE".into(),
        DataType::Timestamp(_, Some(_)) => "TIMESTAMPTZ".into(),
        DataType::Timestamp(TimeUnit::Second, None) => "TIMESTAMP(0)".into(),
        DataType::Timestamp(TimeUnit::Millisecond, None) => "TIMESTAMP(3)".into(),
        DataType::Timestamp(TimeUnit::Microsecond, None) => "TIMESTAMP(6)".into(),
        DataType::Timestamp(TimeUnit::Nanosecond, None) => "TIMESTAMP".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("DECIMAL({p},{s})"),
        DataType::FixedSizeList(f, n) => format!("{}[{n}]", sql_type_name(f.data_type())),
        DataType::List(f) | DataType::LargeList(f) => format!("{}[]", sql_type_name(f.data_type())),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::{dialect::GenericDialect, parser::Parser};

    fn plan(sql_type: &str) -> Result<Option<FieldRef>> {
        let mut parser = Parser::new(&GenericDialect {})
            .try_with_sql(sql_type)
            .unwrap();
        let ty = parser.parse_data_type().unwrap();
        VectorTypePlanner.plan_type_field(&ty)
    }

    #[test]
    fn vector_types_become_fixed_size_lists() {
        let f = plan("VECTOR(4)").unwrap().unwrap();
        assert_eq!(f.data_type(), &vector_type(DataType::Float32, 4));
        let f = plan("halfvec(8)").unwrap().unwrap();
        assert_eq!(f.data_type(), &vector_type(DataType::Float16, 8));
        assert!(plan("INT").unwrap().is_none());
        for bad in [
            "VECTOR(0)",
            "VECTOR(x)",
            "VECTOR",
            "VECTOR(1, 2)",
            "VECTOR(99999999)",
        ] {
            let err = plan(bad).unwrap_err().to_string();
            assert!(err.contains("dimension"), "{bad}: {err}");
        }
    }

    #[test]
    fn describe_names_round_trip_vectors() {
        assert_eq!(
            sql_type_name(&vector_type(DataType::Float32, 384)),
            "VECTOR(384)"
        );
        assert_eq!(
            vector_dimension(&vector_type(DataType::Float16, 3)),
            Some(3)
        );
        assert_eq!(vector_dimension(&DataType::Int64), None);
    }
}
