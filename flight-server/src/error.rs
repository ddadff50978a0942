//! Errors of the Flight service and the gRPC status each one becomes.
//!
//! Invariant: every error that leaves a handler is a [`Status`] whose message is the one a user
//! should read (for SQL errors, [`quiver_planner::user_message`]) and whose code comes from the
//! first typed error found in the error's source chain: a catalog error, a planner error, an
//! operator error, this crate's [`FlightServerError`], or a DataFusion / Arrow variant. Nothing
//! is mapped by matching message text.

use std::error::Error as StdError;

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use quiver_catalog::CatalogError;
use quiver_operators::OperatorError;
use quiver_planner::PlannerError;
use tonic::{Code, Status};

/// Errors raised by the Flight service itself (not by SQL).
#[derive(Debug, thiserror::Error)]
pub enum FlightServerError {
    /// A statement ticket that is unknown, already redeemed, expired or someone else's.
    #[error("statement handle '{handle}' is unknown, expired or already fetched")]
    UnknownStatement {
        /// The handle, as sent.
        handle: String,
    },
    /// A prepared statement handle that is unknown, closed or someone else's.
    #[error("prepared statement '{handle}' is unknown or closed")]
    UnknownPreparedStatement {
        /// The handle, as sent.
        handle: String,
    },
    /// A request that is malformed or asks for something impossible.
    #[error("{0}")]
    InvalidRequest(String),
    /// The data a client streamed in could not be read.
    #[error("reading the client's data failed: {0}")]
    Input(String),
    /// A statement would read or write files on the server's machine, which is off.
    #[error(
        "COPY reads and writes files on the server's machine, which this server does not allow \
         (start it with --allow-server-files); load data with bulk ingest (adbc_ingest) instead"
    )]
    ServerFilesRefused,
    /// A background task of the server failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl FlightServerError {
    fn code(&self) -> Code {
        match self {
            Self::UnknownStatement { .. } | Self::UnknownPreparedStatement { .. } => Code::NotFound,
            Self::InvalidRequest(_) | Self::Input(_) => Code::InvalidArgument,
            Self::ServerFilesRefused => Code::PermissionDenied,
            Self::Internal(_) => Code::Internal,
        }
    }
}

impl From<FlightServerError> for Status {
    fn from(e: FlightServerError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

impl From<FlightServerError> for DataFusionError {
    fn from(e: FlightServerError) -> Self {
        DataFusionError::External(Box::new(e))
    }
}

/// The status for a SQL (DataFusion) error: the user-facing message and a code chosen from the
/// typed error in its chain.
pub fn status_from_datafusion(e: &DataFusionError) -> Status {
    Status::new(code_of(e), quiver_planner::user_message(e))
}

/// The status for a catalog error.
pub fn status_from_catalog(e: &CatalogError) -> Status {
    Status::new(code_of(e), quiver_planner::error::redact(&e.to_string()))
}

/// The gRPC code for an error: the first typed error in its source chain decides.
pub fn code_of(e: &(dyn StdError + 'static)) -> Code {
    let mut current = Some(e);
    while let Some(err) = current {
        if let Some(code) = typed_code(err) {
            return code;
        }
        current = err.source();
    }
    Code::Internal
}

fn typed_code(err: &(dyn StdError + 'static)) -> Option<Code> {
    if let Some(e) = err.downcast_ref::<CatalogError>() {
        return Some(catalog_code(e));
    }
    if let Some(e) = err.downcast_ref::<PlannerError>() {
        return Some(match e {
            PlannerError::DuplicateKey { .. } => Code::AlreadyExists,
            PlannerError::Unsupported(_) => Code::Unimplemented,
            _ => Code::InvalidArgument,
        });
    }
    if err.downcast_ref::<OperatorError>().is_some() {
        return Some(Code::InvalidArgument);
    }
    if let Some(e) = err.downcast_ref::<FlightServerError>() {
        return Some(e.code());
    }
    if let Some(e) = err.downcast_ref::<Status>() {
        return Some(e.code());
    }
    if let Some(e) = err.downcast_ref::<DataFusionError>() {
        return datafusion_code(e);
    }
    if let Some(e) = err.downcast_ref::<lance::Error>() {
        // Lance hides the errors of the streams it consumes (Quiver's sink validation, a
        // client's data) behind a transparent wrapper whose `source` skips them.
        return e.external_source().map(|inner| code_of(inner.as_ref()));
    }
    if let Some(e) = err.downcast_ref::<ArrowError>() {
        return arrow_code(e);
    }
    None
}

fn catalog_code(e: &CatalogError) -> Code {
    if e.is_not_found() {
        return Code::NotFound;
    }
    if e.is_already_exists() {
        return Code::AlreadyExists;
    }
    match e {
        CatalogError::DatabaseNotEmpty { .. }
        | CatalogError::CollectionHasSnapshots { .. }
        | CatalogError::SnapshotInUse { .. } => Code::FailedPrecondition,
        CatalogError::InvalidName { .. }
        | CatalogError::InvalidRequest { .. }
        | CatalogError::InvalidLocation { .. } => Code::InvalidArgument,
        CatalogError::CommitConflict { .. } => Code::Aborted,
        _ => Code::Internal,
    }
}

/// The code of a DataFusion error variant; `None` for wrappers, whose source decides.
fn datafusion_code(e: &DataFusionError) -> Option<Code> {
    match e {
        DataFusionError::Plan(_)
        | DataFusionError::SQL(..)
        | DataFusionError::SchemaError(..)
        | DataFusionError::Configuration(_)
        | DataFusionError::Execution(_) => Some(Code::InvalidArgument),
        DataFusionError::NotImplemented(_) => Some(Code::Unimplemented),
        DataFusionError::ResourcesExhausted(_) => Some(Code::ResourceExhausted),
        DataFusionError::Internal(_) => Some(Code::Internal),
        DataFusionError::Collection(errors) => errors.first().and_then(datafusion_code),
        _ => None,
    }
}

fn arrow_code(e: &ArrowError) -> Option<Code> {
    match e {
        ArrowError::ExternalError(_) => None,
        ArrowError::CastError(_)
        | ArrowError::ParseError(_)
        | ArrowError::InvalidArgumentError(_)
        | ArrowError::DivideByZero
        | ArrowError::ArithmeticOverflow(_)
        | ArrowError::ComputeError(_)
        | ArrowError::SchemaError(_) => Some(Code::InvalidArgument),
        ArrowError::NotYetImplemented(_) => Some(Code::Unimplemented),
        ArrowError::MemoryError(_) => Some(Code::ResourceExhausted),
        _ => Some(Code::Internal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_errors_keep_their_meaning_through_datafusion() {
        let e = DataFusionError::External(Box::new(CatalogError::CollectionNotFound {
            database: "default".into(),
            name: "docs".into(),
        }));
        let status = status_from_datafusion(&e);
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "collection 'default.docs' does not exist");

        let wrapped = DataFusionError::Context(
            "while planning".into(),
            Box::new(DataFusionError::External(Box::new(
                CatalogError::CollectionAlreadyExists {
                    database: "default".into(),
                    name: "docs".into(),
                },
            ))),
        );
        assert_eq!(code_of(&wrapped), Code::AlreadyExists);
    }

    #[test]
    fn sql_errors_are_invalid_arguments_and_limits_are_resource_exhaustion() {
        let plan = DataFusionError::Plan("no such column".into());
        assert_eq!(code_of(&plan), Code::InvalidArgument);
        let memory = DataFusionError::ResourcesExhausted("pool is full".into());
        assert_eq!(code_of(&memory), Code::ResourceExhausted);
        let planner: DataFusionError = PlannerError::DuplicateKey {
            table: "default.docs".into(),
            detail: "id = 1".into(),
        }
        .into();
        assert_eq!(code_of(&planner), Code::AlreadyExists);
    }

    #[test]
    fn errors_inside_lance_keep_their_code() {
        let validation: DataFusionError = OperatorError::InvalidArgument {
            function: "sink".into(),
            message: "bad row".into(),
        }
        .into();
        let through_lance = DataFusionError::External(Box::new(lance::Error::from(validation)));
        assert_eq!(code_of(&through_lance), Code::InvalidArgument);
    }

    #[test]
    fn service_errors_map_to_their_codes() {
        let status: Status = FlightServerError::UnknownStatement {
            handle: "abc".into(),
        }
        .into();
        assert_eq!(status.code(), Code::NotFound);
        assert!(status.message().contains("'abc'"));
        let through_sql: DataFusionError = FlightServerError::Input("broken".into()).into();
        let status = status_from_datafusion(&through_sql);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "reading the client's data failed: broken");
    }
}
