//! `l2_norm` and `vector_dims`.

use std::sync::Arc;

use datafusion::arrow::array::{Float32Array, Int32Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::distance::coerce_vector_args;
use super::schema_name::vector_call_name;
use crate::distance::kernels;
use crate::vector::VectorArray;

/// Applies `f` to each row of the single vector argument.
fn map_rows<T>(
    name: &str,
    args: ScalarFunctionArgs,
    f: impl Fn(&[f32]) -> T,
) -> Result<(Vec<Option<T>>, bool)> {
    let scalar = matches!(args.args.first(), Some(ColumnarValue::Scalar(_)));
    let arrays = ColumnarValue::values_to_arrays(&args.args)?;
    let Some(array) = arrays.first() else {
        return Ok((vec![], scalar));
    };
    let vectors = VectorArray::try_new(array, name, 1)?;
    let out = (0..vectors.len())
        .map(|i| vectors.row(i).map(|v| f(&v.to_f32())))
        .collect();
    Ok((out, scalar))
}

/// `l2_norm(v)` (alias `vector_norm`): the Euclidean norm.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct L2NormUdf {
    signature: Signature,
    aliases: Vec<String>,
}

impl L2NormUdf {
    /// The UDF.
    pub fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
            aliases: vec!["vector_norm".to_string()],
        }
    }
}

impl Default for L2NormUdf {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for L2NormUdf {
    fn name(&self) -> &str {
        "l2_norm"
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
        coerce_vector_args(self.name(), 1, arg_types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let dot = kernels().dot;
        let (values, scalar) = map_rows(self.name(), args, |v| dot(v, v).sqrt())?;
        if scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::Float32(
                values.into_iter().next().flatten(),
            )));
        }
        Ok(ColumnarValue::Array(Arc::new(Float32Array::from(values))))
    }
}

/// `vector_dims(v)`: the number of dimensions.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct VectorDimsUdf {
    signature: Signature,
}

impl VectorDimsUdf {
    /// The UDF.
    pub fn new() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl Default for VectorDimsUdf {
    fn default() -> Self {
        Self::new()
    }
}

impl ScalarUDFImpl for VectorDimsUdf {
    fn name(&self) -> &str {
        "vector_dims"
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        vector_call_name(self.name(), args)
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        coerce_vector_args(self.name(), 1, arg_types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (values, scalar) = map_rows(self.name(), args, |v| v.len() as i32)?;
        if scalar {
            return Ok(ColumnarValue::Scalar(ScalarValue::Int32(
                values.into_iter().next().flatten(),
            )));
        }
        Ok(ColumnarValue::Array(Arc::new(Int32Array::from(values))))
    }
}
