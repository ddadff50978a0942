//! `to_vector(value [, dim [, column]])`: text such as `'[1, 2.5, 3]'` or a numeric list to a
//! vector. With `dim`, the result is a `VECTOR(dim)` and any other length is an error naming
//! `column`; inserts and `COPY` route every conversion into a vector column through it.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array, ListArray,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::error::OperatorError;
use crate::vector::{coerced_vector_type, VectorArray};

/// The `to_vector` function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ToVectorUdf {
    signature: Signature,
}

impl ToVectorUdf {
    /// The UDF.
    pub fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl Default for ToVectorUdf {
    fn default() -> Self {
        Self::new()
    }
}

fn invalid(message: impl Into<String>) -> datafusion::error::DataFusionError {
    OperatorError::InvalidArgument {
        function: "to_vector".to_string(),
        message: message.into(),
    }
    .into()
}

/// Shortens a value for an error message.
fn shorten(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        format!("{}...", text.chars().take(MAX).collect::<String>())
    }
}

/// Parses `[1, 2.5, 3]` (brackets optional, whitespace ignored).
fn parse_text(text: &str, column: &str) -> Result<Vec<f32>, OperatorError> {
    let malformed = |reason: &str| OperatorError::MalformedVector {
        column: column.to_string(),
        text: shorten(text),
        reason: reason.to_string(),
    };
    let trimmed = text.trim();
    let inner = match (trimmed.strip_prefix('['), trimmed.strip_suffix(']')) {
        (Some(_), Some(_)) => &trimmed[1..trimmed.len() - 1],
        (None, None) => trimmed,
        _ => return Err(malformed("unbalanced brackets")),
    };
    if inner.trim().is_empty() {
        return Err(malformed("a vector needs at least one value"));
    }
    inner
        .split(',')
        .map(|v| {
            v.trim()
                .parse::<f32>()
                .map_err(|_| malformed(&format!("'{}' is not a number", shorten(v.trim()))))
        })
        .collect()
}

impl ScalarUDFImpl for ToVectorUdf {
    fn name(&self) -> &str {
        "to_vector"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.is_empty() || arg_types.len() > 3 {
            return Err(invalid("expects (value [, dimension [, column name]])"));
        }
        let first = match &arg_types[0] {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
            other => coerced_vector_type(other)
                .ok_or_else(|| invalid(format!("cannot make a vector from {other}")))?,
        };
        let mut out = vec![first];
        if arg_types.len() > 1 {
            out.push(DataType::Int64);
        }
        if arg_types.len() > 2 {
            out.push(DataType::Utf8);
        }
        Ok(out)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Err(invalid("return type depends on the dimension argument"))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let item = Arc::new(Field::new_list_field(DataType::Float32, true));
        let data_type = match args.scalar_arguments.get(1) {
            Some(Some(ScalarValue::Int64(Some(dim)))) if *dim > 0 => DataType::FixedSizeList(
                item,
                i32::try_from(*dim).map_err(|_| invalid("dimension too large"))?,
            ),
            Some(_) => return Err(invalid("the dimension must be a positive integer literal")),
            None => DataType::List(item),
        };
        Ok(Arc::new(Field::new(self.name(), data_type, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let column = match arrays.get(2) {
            Some(a) if !a.is_empty() && a.is_valid(0) => {
                format!("column '{}'", a.as_string::<i32>().value(0))
            }
            _ => "the value".to_string(),
        };
        let dim = match args.return_field.data_type() {
            DataType::FixedSizeList(_, n) => Some(*n as usize),
            _ => None,
        };
        let out = build(rows_of(&arrays[0], &column)?, dim, &column)?;
        if scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?));
        }
        Ok(ColumnarValue::Array(out))
    }
}

/// The vectors of `input` (text, or any numeric list), one per row.
fn rows_of(input: &ArrayRef, column: &str) -> Result<Vec<Option<Vec<f32>>>> {
    let as_vectors = |array: &ArrayRef| -> Result<Vec<Option<Vec<f32>>>> {
        let vectors = VectorArray::try_new(array, "to_vector", 1).map_err(|e| match e {
            // The row within this call's batch would mislead: name the column only.
            OperatorError::NullElement { .. } => OperatorError::NullElement {
                context: column.to_string(),
                row: None,
            },
            other => other,
        })?;
        Ok((0..vectors.len())
            .map(|i| vectors.row(i).map(|v| v.to_f32().into_owned()))
            .collect())
    };
    match input.data_type() {
        DataType::Utf8 => Ok(input
            .as_string::<i32>()
            .iter()
            .map(|t| t.map(|t| parse_text(t, column)).transpose())
            .collect::<Result<_, _>>()?),
        DataType::LargeUtf8 | DataType::Utf8View => rows_of(
            &datafusion::arrow::compute::cast(input, &DataType::Utf8)?,
            column,
        ),
        other => match coerced_vector_type(other) {
            Some(target) if &target == other => as_vectors(input),
            Some(target) => as_vectors(&datafusion::arrow::compute::cast(input, &target)?),
            None => Err(invalid(format!(
                "{column}: cannot make a vector from {other}"
            ))),
        },
    }
}

/// Converts `input` (text or numeric lists) into a `VECTOR(dim)` column; `column` names the
/// target in errors (`column 'embedding'`).
pub fn convert(input: &ArrayRef, dim: usize, column: &str) -> Result<ArrayRef> {
    build(rows_of(input, column)?, Some(dim), column)
}

fn build(rows: Vec<Option<Vec<f32>>>, dim: Option<usize>, column: &str) -> Result<ArrayRef> {
    let nulls = NullBuffer::from(rows.iter().map(Option::is_some).collect::<Vec<_>>());
    let item = Arc::new(Field::new_list_field(DataType::Float32, true));
    match dim {
        Some(dim) => {
            let mut values = Vec::with_capacity(rows.len() * dim);
            for row in &rows {
                match row {
                    Some(v) if v.len() == dim => values.extend_from_slice(v),
                    Some(v) => {
                        let text = format!("{v:?}");
                        return Err(OperatorError::WrongDimension {
                            column: column.to_string(),
                            expected: dim,
                            actual: v.len(),
                            value: shorten(&text),
                        }
                        .into());
                    }
                    None => values.extend(std::iter::repeat_n(0.0, dim)),
                }
            }
            Ok(Arc::new(FixedSizeListArray::try_new(
                item,
                dim as i32,
                Arc::new(Float32Array::from(values)),
                Some(nulls),
            )?))
        }
        None => {
            let lengths = rows.iter().map(|r| r.as_ref().map_or(0, Vec::len));
            let offsets = OffsetBuffer::from_lengths(lengths);
            let values: Vec<f32> = rows.into_iter().flatten().flatten().collect();
            Ok(Arc::new(ListArray::try_new(
                item,
                offsets,
                Arc::new(Float32Array::from(values)),
                Some(nulls),
            )?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_parses_with_or_without_brackets() {
        assert_eq!(
            parse_text(" [1, 2.5 ,3] ", "c").unwrap(),
            vec![1.0, 2.5, 3.0]
        );
        assert_eq!(parse_text("4,5", "c").unwrap(), vec![4.0, 5.0]);
        for (bad, why) in [
            ("[1, x]", "'x' is not a number"),
            ("[1, 2", "unbalanced"),
            ("[]", "at least one"),
        ] {
            let err = parse_text(bad, "column 'v'").unwrap_err().to_string();
            assert!(
                err.contains(why) && err.starts_with("column 'v'"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn a_wrong_length_names_the_column_and_value() {
        let err = build(
            vec![Some(vec![1.0, 2.0, 3.0])],
            Some(4),
            "column 'embedding'",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(
                "column 'embedding' is VECTOR(4) but got a vector of 3 dimensions: [1.0, 2.0, 3.0]"
            ),
            "{err}"
        );
        let ok = build(vec![Some(vec![1.0, 2.0]), None], Some(2), "c").unwrap();
        assert_eq!(ok.len(), 2);
        assert!(ok.is_null(1));
    }
}
