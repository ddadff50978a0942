//! DataFusion's functions that build values larger than their arguments, bounded.
//!
//! `repeat`, `lpad`, `rpad`, `replace`, `array_repeat`, `array_resize`, `range` and
//! `generate_series` build whatever they are asked for, and with literal arguments they do so
//! while the statement is planned (constant folding), outside any query's memory pool:
//! `repeat('x', 1073741824)` took gigabytes before anything ran. [`BoundedFunction`] is the same
//! function, refusing a value larger than [`MAX_VALUE_BYTES`] before it is built; the estimate of
//! each function is in [`growth`].

mod arguments;
pub mod growth;

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::Result;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;

use self::arguments::Arguments;
use self::growth::Growth;
use crate::error::PlannerError;

/// The largest value a bounded function builds, in bytes.
pub const MAX_VALUE_BYTES: u64 = 64 << 20;

/// A DataFusion function whose value [`Growth`] estimates, refusing values over
/// [`MAX_VALUE_BYTES`].
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct BoundedFunction {
    inner: Arc<ScalarUDF>,
    growth: Growth,
}

impl BoundedFunction {
    /// `inner`, bounded by the estimate of `growth`.
    pub fn new(inner: Arc<ScalarUDF>, growth: Growth) -> Self {
        Self { inner, growth }
    }
}

/// Registers each function of [`Growth::ALL`] that `ctx` has in place of DataFusion's.
pub fn register_bounded_functions(ctx: &SessionContext) {
    for growth in Growth::ALL {
        if let Ok(inner) = ctx.udf(growth.function_name()) {
            ctx.register_udf(ScalarUDF::from(BoundedFunction::new(inner, growth)));
        }
    }
}

/// Delegates everything but running the function (checked first) and simplifying it (which
/// could replace the call by one that is not checked).
impl ScalarUDFImpl for BoundedFunction {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.inner().coerce_types(arg_types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.inner().schema_name(args)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arguments = Arguments::new(&args.args, args.number_rows)?;
        let largest = (0..arguments.rows())
            .map(|row| self.growth.value_bytes(&arguments, row))
            .try_fold(0u64, |largest, bytes| {
                bytes.map(|bytes| largest.max(bytes.unwrap_or(0)))
            })?;
        if largest > MAX_VALUE_BYTES {
            return Err(PlannerError::LimitExceeded(format!(
                "{} would build a value of {largest} bytes, more than the {MAX_VALUE_BYTES} a \
                 value may have",
                self.inner.name()
            ))
            .into());
        }
        self.inner.invoke_with_args(args)
    }
}
