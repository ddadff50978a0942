//! The catalog's error type.
//!
//! Every failure is a variant named by its cause, carrying the names of the objects involved so
//! that the message a user sees names the problem. The planner wraps it as
//! `DataFusionError::External` so the type survives to the Flight boundary, where it is mapped to
//! a gRPC status.

use object_store::path::Path;

/// Result type of the catalog crate.
pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// Errors raised by the catalog, its metadata store and its manifests.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// A database with this name already exists.
    #[error("database '{name}' already exists")]
    DatabaseAlreadyExists {
        /// The database name.
        name: String,
    },
    /// No database with this name exists.
    #[error("database '{name}' does not exist")]
    DatabaseNotFound {
        /// The database name.
        name: String,
    },
    /// The database still holds collections.
    #[error(
        "database '{name}' is not empty ({count} collection(s)); drop them first or use CASCADE"
    )]
    DatabaseNotEmpty {
        /// The database name.
        name: String,
        /// How many collections it holds.
        count: usize,
    },
    /// A collection with this name already exists in the database.
    #[error("collection '{database}.{name}' already exists")]
    CollectionAlreadyExists {
        /// The database name.
        database: String,
        /// The collection name.
        name: String,
    },
    /// No collection with this name exists in the database.
    #[error("collection '{database}.{name}' does not exist")]
    CollectionNotFound {
        /// The database name.
        database: String,
        /// The collection name.
        name: String,
    },
    /// The collection has snapshots, and dropping it would lose them.
    #[error(
        "collection '{database}.{name}' has {count} snapshot(s); drop them first or use DROP TABLE ... CASCADE"
    )]
    CollectionHasSnapshots {
        /// The database name.
        database: String,
        /// The collection name.
        name: String,
        /// How many committed snapshots it has.
        count: usize,
    },
    /// A snapshot with this name already exists on the collection.
    #[error("snapshot '{name}' on '{collection}' already exists")]
    SnapshotAlreadyExists {
        /// The qualified collection name.
        collection: String,
        /// The snapshot name.
        name: String,
    },
    /// No committed snapshot with this name exists on the collection.
    #[error("snapshot '{name}' on '{collection}' does not exist")]
    SnapshotNotFound {
        /// The qualified collection name.
        collection: String,
        /// The snapshot name.
        name: String,
    },
    /// The snapshot is being read by a running job and cannot be dropped now.
    #[error(
        "snapshot '{name}' on '{collection}' is in use by job {job_id}; wait for it or cancel it"
    )]
    SnapshotInUse {
        /// The qualified collection name.
        collection: String,
        /// The snapshot name.
        name: String,
        /// The job reading it.
        job_id: u64,
    },
    /// No job with this id exists.
    #[error("job {id} does not exist")]
    JobNotFound {
        /// The job id.
        id: u64,
    },
    /// A name is not a valid identifier.
    #[error("invalid {kind} name '{name}': {reason}")]
    InvalidName {
        /// What is being named ("database", "collection", "snapshot").
        kind: &'static str,
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The request is not valid for the object's current state.
    #[error("{message}")]
    InvalidRequest {
        /// What is wrong.
        message: String,
    },
    /// Other writers kept committing first; the commit gave up after retrying.
    #[error("catalog commit conflict: version {version} was taken by another writer {attempts} times in a row")]
    CommitConflict {
        /// The version this writer last tried to commit.
        version: u64,
        /// How many attempts were made.
        attempts: usize,
    },
    /// A catalog log entry could not be decoded.
    #[error("corrupt catalog file '{path}': {message}")]
    CorruptCatalog {
        /// The file's path in the store.
        path: Path,
        /// What is wrong with it.
        message: String,
    },
    /// A snapshot manifest could not be decoded.
    #[error("corrupt snapshot manifest '{path}': {message}")]
    CorruptManifest {
        /// The manifest's path in the store.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// A snapshot manifest is missing.
    #[error("snapshot manifest '{path}' is missing")]
    MissingManifest {
        /// The manifest's path in the store.
        path: String,
    },
    /// A snapshot manifest was written by a newer, incompatible format version.
    #[error(
        "snapshot manifest '{path}' has format version {found}, this Quiver reads major version {supported}"
    )]
    UnsupportedManifestVersion {
        /// The manifest's path in the store.
        path: String,
        /// The version found in the file.
        found: String,
        /// The major version this build reads.
        supported: u32,
    },
    /// The data root is not a usable location.
    #[error("invalid data location '{location}': {message}")]
    InvalidLocation {
        /// The rejected location.
        location: String,
        /// Why it was rejected.
        message: String,
    },
    /// A fault injected by a test hook.
    #[error("injected fault: {0}")]
    InjectedFault(String),
    /// An error from the object store.
    #[error("object store error: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// An error from Lance.
    #[error("{0}")]
    Lance(#[from] lance::Error),
    /// An error from Arrow.
    #[error("{0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// An error from the Avro library.
    #[error("avro error: {0}")]
    Avro(String),
    /// A JSON (de)serialisation error.
    #[error("json error: {0}")]
    Json(#[from] serde_json::Error),
}

impl CatalogError {
    /// Whether the error means "the named object does not exist".
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::DatabaseNotFound { .. }
                | Self::CollectionNotFound { .. }
                | Self::SnapshotNotFound { .. }
                | Self::JobNotFound { .. }
        )
    }

    /// Whether the error means "an object of this name already exists".
    pub fn is_already_exists(&self) -> bool {
        matches!(
            self,
            Self::DatabaseAlreadyExists { .. }
                | Self::CollectionAlreadyExists { .. }
                | Self::SnapshotAlreadyExists { .. }
        )
    }
}
