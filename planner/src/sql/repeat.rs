//! `repeat(text, n)` with a bound on the value it builds.
//!
//! DataFusion's `repeat` builds whatever it is asked for, and with literal arguments it does so
//! while the statement is planned (constant folding), outside any query's memory pool:
//! `repeat('x', 1073741824)` took gigabytes before anything ran. [`BoundedRepeat`] is the same
//! function, refusing a value longer than [`MAX_REPEAT_BYTES`] before it is built.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::kernels::length::length;
use datafusion::arrow::datatypes::{DataType, Int32Type, Int64Type};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};

use crate::error::PlannerError;

/// The longest value `repeat` builds, in bytes.
pub const MAX_REPEAT_BYTES: u64 = 64 << 20;

/// DataFusion's `repeat`, refusing results over [`MAX_REPEAT_BYTES`].
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct BoundedRepeat {
    inner: Arc<ScalarUDF>,
}

impl BoundedRepeat {
    /// The function, wrapping DataFusion's.
    pub fn new() -> Self {
        Self {
            inner: datafusion::functions::string::repeat(),
        }
    }
}

impl Default for BoundedRepeat {
    fn default() -> Self {
        Self::new()
    }
}

/// The byte length of each row's text (one value for a scalar); `None` for NULL.
fn text_lengths(value: &ColumnarValue) -> Result<Vec<Option<u64>>> {
    Ok(match value {
        ColumnarValue::Scalar(
            ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s),
        ) => vec![s.as_ref().map(|s| s.len() as u64)],
        ColumnarValue::Scalar(_) => vec![None],
        ColumnarValue::Array(array) => {
            let lengths = length(array.as_ref())?;
            match lengths.data_type() {
                DataType::Int64 => lengths
                    .as_primitive::<Int64Type>()
                    .iter()
                    .map(|l| l.map(|l| l.max(0) as u64))
                    .collect(),
                _ => lengths
                    .as_primitive::<Int32Type>()
                    .iter()
                    .map(|l| l.map(|l| l.max(0) as u64))
                    .collect(),
            }
        }
    })
}

/// Each row's count (one value for a scalar); `None` for NULL.
fn counts(value: &ColumnarValue) -> Vec<Option<u64>> {
    match value {
        ColumnarValue::Scalar(ScalarValue::Int64(n)) => vec![n.map(|n| n.max(0) as u64)],
        ColumnarValue::Scalar(_) => vec![None],
        ColumnarValue::Array(array) => match array.as_primitive_opt::<Int64Type>() {
            Some(counts) => counts.iter().map(|n| n.map(|n| n.max(0) as u64)).collect(),
            None => vec![None; array.len()],
        },
    }
}

impl ScalarUDFImpl for BoundedRepeat {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let [text, count] = args.args.as_slice() {
            let (lengths, counts) = (text_lengths(text)?, counts(count));
            let rows = lengths.len().max(counts.len());
            let at = |values: &[Option<u64>], row: usize| {
                values
                    .get(if values.len() == 1 { 0 } else { row })
                    .copied()
                    .flatten()
            };
            let longest = (0..rows)
                .filter_map(|row| Some(at(&lengths, row)?.saturating_mul(at(&counts, row)?)))
                .max()
                .unwrap_or(0);
            if longest > MAX_REPEAT_BYTES {
                return Err(PlannerError::LimitExceeded(format!(
                    "repeat would build a value of {longest} bytes, more than the \
                     {MAX_REPEAT_BYTES} a value may have"
                ))
                .into());
            }
        }
        self.inner.invoke_with_args(args)
    }
}
