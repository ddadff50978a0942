//! The operators' error type.
//!
//! Operators and functions return [`OperatorError`]; at the DataFusion boundary it is wrapped as
//! `DataFusionError::External` (see [`From<OperatorError> for DataFusionError`]) so that callers
//! can still recover the variant.

use datafusion::arrow::datatypes::DataType;
use datafusion::error::DataFusionError;

/// Result type of the operators crate.
pub type Result<T, E = OperatorError> = std::result::Result<T, E>;

/// Errors raised by Quiver's operators and vector functions.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// An argument is not a vector.
    #[error(
        "{function}: argument {position} must be a vector (a list of numbers), got {data_type}"
    )]
    NotAVector {
        /// The function or operator.
        function: String,
        /// 1-based argument position.
        position: usize,
        /// The argument's type.
        data_type: DataType,
    },
    /// Two vectors that must have the same length do not.
    #[error("{function}: vector dimensions differ ({left} and {right})")]
    DimensionMismatch {
        /// The function or operator.
        function: String,
        /// Dimension of the first vector.
        left: usize,
        /// Dimension of the second vector.
        right: usize,
    },
    /// A value written to a vector column has the wrong number of dimensions.
    #[error("{column} is VECTOR({expected}) but got a vector of {actual} dimensions: {value}")]
    WrongDimension {
        /// The target column (`column 'x'`), or `the value` if unknown.
        column: String,
        /// The column's dimension.
        expected: usize,
        /// The value's dimension.
        actual: usize,
        /// The offending value, shortened.
        value: String,
    },
    /// A vector holds NaN or an infinity.
    #[error("{context}: vector holds a non-finite value (NaN or infinity){}", row.map(|r| format!(" at row {r}")).unwrap_or_default())]
    NonFinite {
        /// Where the vector was found (function, or column).
        context: String,
        /// 1-based row number, if the vector came from a column.
        row: Option<usize>,
    },
    /// A vector holds a NULL element (a vector is NULL as a whole or not at all).
    #[error("{context}: vector holds a NULL element{}", row.map(|r| format!(" at row {r}")).unwrap_or_default())]
    NullElement {
        /// Where the vector was found (function argument, or column).
        context: String,
        /// 1-based row number.
        row: Option<usize>,
    },
    /// A text value is not a vector literal.
    #[error("{column}: cannot read '{text}' as a vector: {reason}")]
    MalformedVector {
        /// The target column.
        column: String,
        /// The offending text (shortened).
        text: String,
        /// What is wrong.
        reason: String,
    },
    /// k is out of range.
    #[error("k must be between 1 and {max}, got {k}")]
    InvalidK {
        /// The requested k.
        k: i64,
        /// The largest k accepted.
        max: usize,
    },
    /// An argument has the wrong type or value.
    #[error("{function}: {message}")]
    InvalidArgument {
        /// The function or operator.
        function: String,
        /// What is wrong.
        message: String,
    },
    /// A file a snapshot lists is not the file the snapshot recorded any more.
    #[error(
        "snapshot file '{path}' no longer matches its manifest ({detail}); the snapshot is damaged"
    )]
    SnapshotFileChanged {
        /// The root-relative path.
        path: String,
        /// What differs.
        detail: String,
    },
    /// A vector index's stored form is not what its reader expects.
    #[error("the vector index is malformed: {0}")]
    MalformedIndex(String),
    /// An Arrow error.
    #[error("{0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    /// A DataFusion error from a helper.
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),
}

impl From<OperatorError> for DataFusionError {
    fn from(e: OperatorError) -> Self {
        match e {
            OperatorError::DataFusion(inner) => inner,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}
