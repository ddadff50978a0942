//! The distance functions: `l2_distance`, `cosine_distance`, `inner_product`,
//! `negative_inner_product` (and their DuckDB aliases).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Float32Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::schema_name::vector_call_name;
use crate::distance::{distance, key_to_value, ordering_keys, Metric};
use crate::error::OperatorError;
use crate::vector::{coerced_vector_type, scalar_vector, FixedValues, VectorArray, VectorRef};

/// Which distance a [`DistanceUdf`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DistanceFunction {
    /// `l2_distance` / `array_distance`.
    L2,
    /// `cosine_distance` / `array_cosine_distance`.
    Cosine,
    /// `inner_product` / `array_inner_product`.
    InnerProduct,
    /// `negative_inner_product` / `array_negative_inner_product`.
    NegativeInnerProduct,
}

impl DistanceFunction {
    /// All distance functions.
    pub const ALL: [Self; 4] = [
        Self::L2,
        Self::Cosine,
        Self::InnerProduct,
        Self::NegativeInnerProduct,
    ];

    /// The metric it computes.
    pub fn metric(&self) -> Metric {
        match self {
            Self::L2 => Metric::L2,
            Self::Cosine => Metric::Cosine,
            Self::InnerProduct => Metric::InnerProduct,
            Self::NegativeInnerProduct => Metric::NegativeInnerProduct,
        }
    }

    /// The pgvector name.
    pub fn name(&self) -> &'static str {
        self.metric().function_name()
    }

    /// The DuckDB name.
    pub fn duckdb_name(&self) -> &'static str {
        match self {
            Self::L2 => "array_distance",
            Self::Cosine => "array_cosine_distance",
            Self::InnerProduct => "array_inner_product",
            Self::NegativeInnerProduct => "array_negative_inner_product",
        }
    }
}

/// A distance function as a DataFusion scalar UDF.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct DistanceUdf {
    function: DistanceFunction,
    signature: Signature,
    aliases: Vec<String>,
}

impl DistanceUdf {
    /// The UDF for `function`.
    pub fn new(function: DistanceFunction) -> Self {
        Self {
            function,
            signature: Signature::user_defined(Volatility::Immutable),
            aliases: vec![function.duckdb_name().to_string()],
        }
    }

    /// Which distance it computes.
    pub fn function(&self) -> DistanceFunction {
        self.function
    }
}

/// Coerces vector arguments (see [`coerced_vector_type`]); shared by every vector function.
pub(super) fn coerce_vector_args(
    function: &str,
    arity: usize,
    arg_types: &[DataType],
) -> Result<Vec<DataType>> {
    if arg_types.len() != arity {
        return Err(OperatorError::InvalidArgument {
            function: function.to_string(),
            message: format!("expects {arity} argument(s), got {}", arg_types.len()),
        }
        .into());
    }
    arg_types
        .iter()
        .enumerate()
        .map(|(i, t)| {
            coerced_vector_type(t).ok_or_else(|| {
                OperatorError::NotAVector {
                    function: function.to_string(),
                    position: i + 1,
                    data_type: t.clone(),
                }
                .into()
            })
        })
        .collect()
}

impl ScalarUDFImpl for DistanceUdf {
    fn name(&self) -> &str {
        self.function.name()
    }

    fn aliases(&self) -> &[String] {
        &self.aliases
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        vector_call_name(self.name(), args)
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_vector_args(self.name(), 2, arg_types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = self.name();
        let metric = self.function.metric();
        let [a, b] = args.args.as_slice() else {
            return Err(OperatorError::InvalidArgument {
                function: name.to_string(),
                message: "expects 2 arguments".to_string(),
            }
            .into());
        };
        match (a, b) {
            (ColumnarValue::Scalar(a), ColumnarValue::Scalar(b)) => {
                let (Some(a), Some(b)) = (scalar_vector(a, name, 1)?, scalar_vector(b, name, 2)?)
                else {
                    return Ok(ColumnarValue::Scalar(ScalarValue::Float32(None)));
                };
                check_dims(name, a.len(), b.len())?;
                Ok(ColumnarValue::Scalar(ScalarValue::Float32(Some(distance(
                    metric, &a, &b,
                )))))
            }
            (ColumnarValue::Array(column), ColumnarValue::Scalar(q))
            | (ColumnarValue::Scalar(q), ColumnarValue::Array(column)) => {
                let position = if matches!(a, ColumnarValue::Scalar(_)) {
                    1
                } else {
                    2
                };
                let Some(query) = scalar_vector(q, name, position)? else {
                    return Ok(ColumnarValue::Array(Arc::new(Float32Array::new_null(
                        column.len(),
                    ))));
                };
                Ok(ColumnarValue::Array(distances_to_query(
                    name,
                    metric,
                    column,
                    &query,
                    3 - position,
                )?))
            }
            (ColumnarValue::Array(a), ColumnarValue::Array(b)) => {
                let (va, vb) = (
                    VectorArray::try_new(a, name, 1)?,
                    VectorArray::try_new(b, name, 2)?,
                );
                let mut out = Vec::with_capacity(va.len());
                for i in 0..va.len() {
                    out.push(match (va.row(i), vb.row(i)) {
                        (Some(x), Some(y)) => {
                            check_dims(name, x.len(), y.len())?;
                            Some(distance(metric, &x.to_f32(), &y.to_f32()))
                        }
                        _ => None,
                    });
                }
                Ok(ColumnarValue::Array(Arc::new(Float32Array::from(out))))
            }
        }
    }
}

fn check_dims(function: &str, left: usize, right: usize) -> Result<(), OperatorError> {
    if left != right {
        return Err(OperatorError::DimensionMismatch {
            function: function.to_string(),
            left,
            right,
        });
    }
    Ok(())
}

/// The metric between `query` and every row of `column`, with the batch kernels when the column
/// is a fixed-size vector column.
fn distances_to_query(
    function: &str,
    metric: Metric,
    column: &ArrayRef,
    query: &[f32],
    position: usize,
) -> Result<ArrayRef> {
    let vectors = VectorArray::try_new(column, function, position)?;
    let query_norm_sq = crate::distance::scalar::dot(query, query);
    let mut keys = vec![0.0f32; vectors.len()];
    let mut scratch = Vec::new();
    match &vectors {
        VectorArray::Fixed { array, values, dim } => {
            check_dims(function, *dim, query.len())?;
            let n = array.len();
            match values {
                FixedValues::F32(v) => ordering_keys(
                    metric,
                    query,
                    query_norm_sq,
                    &v[..n * dim],
                    &mut keys,
                    &mut scratch,
                ),
                FixedValues::F16(v) => ordering_keys(
                    metric,
                    query,
                    query_norm_sq,
                    &v[..n * dim],
                    &mut keys,
                    &mut scratch,
                ),
            }
            let values = keys.into_iter().map(|k| key_to_value(metric, k));
            let nulls = array.logical_nulls();
            Ok(Arc::new(Float32Array::new(values.collect(), nulls)))
        }
        _ => {
            let mut out = Vec::with_capacity(vectors.len());
            for i in 0..vectors.len() {
                out.push(match vectors.row(i) {
                    Some(VectorRef::F32(row)) => {
                        check_dims(function, query.len(), row.len())?;
                        Some(distance(metric, query, row))
                    }
                    Some(row) => {
                        check_dims(function, query.len(), row.len())?;
                        Some(distance(metric, query, &row.to_f32()))
                    }
                    None => None,
                });
            }
            Ok(Arc::new(Float32Array::from(out)))
        }
    }
}
