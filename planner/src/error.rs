//! Errors of Quiver's SQL layer that are not the catalog's or the operators'.

use datafusion::error::DataFusionError;
use quiver_catalog::CatalogError;

/// Wraps a catalog error for DataFusion, keeping its type.
pub fn external(e: CatalogError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// Errors raised while planning or running Quiver statements.
#[derive(Debug, thiserror::Error)]
pub enum PlannerError {
    /// An insert would duplicate a primary key.
    #[error("duplicate primary key in '{table}': {detail}")]
    DuplicateKey {
        /// The collection.
        table: String,
        /// Which key, as Lance reported it.
        detail: String,
    },
    /// A NOT NULL column received a NULL.
    #[error("column '{column}' of '{table}' is NOT NULL but the input holds NULL at row {row}")]
    NullInNotNullColumn {
        /// The collection.
        table: String,
        /// The column.
        column: String,
        /// 1-based row number in the input.
        row: usize,
    },
    /// `REPLACE INTO` (upsert) on a collection without a primary key.
    #[error(
        "'{table}' has no primary key, so REPLACE INTO (upsert) cannot match rows; use INSERT"
    )]
    UpsertWithoutKey {
        /// The collection.
        table: String,
    },
    /// A statement Quiver does not support.
    #[error("{0}")]
    Unsupported(String),
    /// A statement that is malformed or refers to something wrong.
    #[error("{0}")]
    Invalid(String),
    /// A statement larger than a limit allows (its text, an `IN` list).
    #[error("{0}")]
    LimitExceeded(String),
}

impl From<PlannerError> for DataFusionError {
    fn from(e: PlannerError) -> Self {
        DataFusionError::External(Box::new(e))
    }
}

/// The message a user should see for `e`: Quiver's own error where one is in the chain (without
/// DataFusion's "External error:" wrapping), otherwise the root cause.
pub fn user_message(e: &DataFusionError) -> String {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(q) = err.downcast_ref::<quiver_catalog::CatalogError>() {
            return q.to_string();
        }
        if let Some(q) = err.downcast_ref::<quiver_operators::OperatorError>() {
            return q.to_string();
        }
        if let Some(q) = err.downcast_ref::<PlannerError>() {
            return q.to_string();
        }
        current = err.source();
    }
    match e.find_root() {
        DataFusionError::External(inner) => inner.to_string(),
        root => root.strip_backtrace(),
    }
}
