//! The records the catalog keeps: databases, collections, snapshots and jobs.
//!
//! A [`CatalogState`] is the whole catalog at one committed version. It is small (records only,
//! never data) and is written as one JSON document per version by the
//! [`MetaStore`](crate::metastore::MetaStore), so every commit is atomic across all records.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{CatalogError, Result};

/// The database every session starts in.
pub const DEFAULT_DATABASE: &str = "default";

/// The whole catalog at one version.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CatalogState {
    /// Databases by name.
    pub databases: BTreeMap<String, DatabaseRecord>,
    /// Live collections by id.
    pub collections: BTreeMap<String, CollectionRecord>,
    /// Snapshots by id, in every lifecycle state.
    pub snapshots: BTreeMap<String, SnapshotRecord>,
    /// Jobs by id.
    #[serde(default)]
    pub jobs: BTreeMap<u64, JobRecord>,
    /// The id the next job gets.
    #[serde(default)]
    pub next_job_id: u64,
    /// Storage locations of dropped collections, waiting for garbage collection to purge them.
    #[serde(default)]
    pub dropped: Vec<DroppedLocation>,
}

/// A database: a namespace of collections.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DatabaseRecord {
    /// The database name.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A collection: one Lance dataset under the data root.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CollectionRecord {
    /// Stable id; the dataset lives under `collections/<id>/`.
    pub id: String,
    /// The database it belongs to.
    pub database: String,
    /// The collection name, unique in its database.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// The dataset's location relative to the data root.
    pub location: String,
    /// Primary key columns, enforced on insert (empty: no primary key).
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// Free-form collection properties.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Locations of other collections whose files this one reads (a zero-copy restore): they
    /// are not purged while this collection lives.
    #[serde(default)]
    pub shares_files_of: Vec<String>,
}

impl CollectionRecord {
    /// `database.name`, as users write it.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.database, self.name)
    }
}

/// Where a snapshot is in its lifecycle: `Pending -> Committed -> Deleting -> gone`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SnapshotState {
    /// Recorded, manifest not yet written: invisible to users.
    Pending,
    /// Visible, readable and restorable.
    Committed,
    /// Being dropped: invisible to users, files not yet removed.
    Deleting,
}

impl SnapshotState {
    /// The state's name as shown to users.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Committed => "COMMITTED",
            Self::Deleting => "DELETING",
        }
    }
}

/// A named, immutable point-in-time version of a collection.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SnapshotRecord {
    /// Stable id; its manifest lives under `snapshots/<collection-id>/<id>/`.
    pub id: String,
    /// The collection's id.
    pub collection_id: String,
    /// The collection's database.
    pub database: String,
    /// The collection's name.
    pub collection: String,
    /// The snapshot's name, unique per collection.
    pub name: String,
    /// A free-form comment.
    pub comment: Option<String>,
    /// Lifecycle state.
    pub state: SnapshotState,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// The Lance version it pins.
    pub version: u64,
    /// Rows visible at that version.
    pub rows: u64,
    /// Files the version needs.
    pub files: u64,
    /// Total bytes of those files.
    pub bytes: u64,
    /// The manifest's location relative to the data root.
    pub manifest_path: String,
}

/// What a job does.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobKind {
    /// Build a collection from a snapshot.
    Restore,
    /// Remove unreferenced files.
    Gc,
    /// Bring a collection's indices up to date with its rows.
    Optimize,
}

impl JobKind {
    /// The kind's name as shown to users.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Restore => "RESTORE",
            Self::Gc => "GC",
            Self::Optimize => "OPTIMIZE",
        }
    }
}

/// Where a job is in its lifecycle.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    /// Accepted, not yet started.
    Pending,
    /// Running.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished with an error.
    Failed,
    /// Stopped on request.
    Cancelled,
}

impl JobState {
    /// The state's name as shown to users.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// Whether the job has finished (in any way).
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// A job record: a restore or GC run, followed by users.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobRecord {
    /// The job id.
    pub id: u64,
    /// What it does.
    pub kind: JobKind,
    /// What it works on, e.g. `default.docs@nightly -> default.docs_restored`.
    pub target: String,
    /// The job's parameters, as JSON.
    pub spec: serde_json::Value,
    /// Lifecycle state.
    pub state: JobState,
    /// Progress 0-100; never goes backwards.
    pub progress: u8,
    /// Files done.
    pub files_done: u64,
    /// Files in total.
    pub files_total: u64,
    /// Bytes done.
    pub bytes_done: u64,
    /// Bytes in total.
    pub bytes_total: u64,
    /// Rows done.
    pub rows_done: u64,
    /// Rows in total.
    pub rows_total: u64,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// When it started running.
    pub started_at: Option<DateTime<Utc>>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// The process running it (a random id per scheduler), if running.
    #[serde(default)]
    pub owner: Option<String>,
    /// When its runner last reported; a RUNNING job whose runner stopped reporting is taken over.
    #[serde(default)]
    pub heartbeat_at: Option<DateTime<Utc>>,
    /// Whether a user asked to cancel it.
    #[serde(default)]
    pub cancel_requested: bool,
    /// What it produced (the restore summary, the garbage collection report), as JSON.
    #[serde(default)]
    pub result: Option<serde_json::Value>,
}

/// A dropped collection's storage, kept until garbage collection purges it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DroppedLocation {
    /// The dropped collection's id.
    pub collection_id: String,
    /// Its location relative to the data root.
    pub location: String,
    /// When it was dropped.
    pub dropped_at: DateTime<Utc>,
}

impl CatalogState {
    /// The live collection `database.name`, if any.
    pub fn collection(&self, database: &str, name: &str) -> Option<&CollectionRecord> {
        self.collections
            .values()
            .find(|c| c.database == database && c.name == name)
    }

    /// The live collection `database.name`, or a `CollectionNotFound` error.
    pub fn require_collection(&self, database: &str, name: &str) -> Result<&CollectionRecord> {
        self.require_database(database)?;
        self.collection(database, name)
            .ok_or_else(|| CatalogError::CollectionNotFound {
                database: database.to_string(),
                name: name.to_string(),
            })
    }

    /// The database `name`, or a `DatabaseNotFound` error.
    pub fn require_database(&self, name: &str) -> Result<&DatabaseRecord> {
        self.databases
            .get(name)
            .ok_or_else(|| CatalogError::DatabaseNotFound {
                name: name.to_string(),
            })
    }

    /// Live collections of a database, ordered by name.
    pub fn collections_in(&self, database: &str) -> Vec<&CollectionRecord> {
        let mut out: Vec<_> = self
            .collections
            .values()
            .filter(|c| c.database == database)
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Snapshots of a collection (any state), ordered by creation time.
    pub fn snapshots_of(&self, collection_id: &str) -> Vec<&SnapshotRecord> {
        let mut out: Vec<_> = self
            .snapshots
            .values()
            .filter(|s| s.collection_id == collection_id)
            .collect();
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.name.cmp(&b.name)));
        out
    }

    /// A running or pending job reading snapshot `snapshot_id`, if any.
    pub fn job_reading(&self, snapshot_id: &str) -> Option<u64> {
        self.jobs
            .values()
            .find(|j| {
                !j.state.is_terminal()
                    && j.state != JobState::Succeeded
                    && j.spec.get("snapshot_id").and_then(|v| v.as_str()) == Some(snapshot_id)
            })
            .map(|j| j.id)
    }

    /// The committed snapshot `name` of a collection, if any.
    pub fn committed_snapshot(&self, collection_id: &str, name: &str) -> Option<&SnapshotRecord> {
        self.snapshots.values().find(|s| {
            s.collection_id == collection_id
                && s.name == name
                && s.state == SnapshotState::Committed
        })
    }

    /// The committed snapshot `name` of the live collection `database.collection`, with the
    /// collection, or a `CollectionNotFound` / `SnapshotNotFound` error.
    pub fn require_committed_snapshot(
        &self,
        database: &str,
        collection: &str,
        name: &str,
    ) -> Result<(&CollectionRecord, &SnapshotRecord)> {
        let record = self.require_collection(database, collection)?;
        let snapshot = self.committed_snapshot(&record.id, name).ok_or_else(|| {
            CatalogError::SnapshotNotFound {
                collection: record.qualified_name(),
                name: name.to_string(),
            }
        })?;
        Ok((record, snapshot))
    }
}

/// Checks that `name` follows identifier rules: a letter or `_` first, then letters, digits or
/// `_`, at most 128 characters.
pub fn validate_name(kind: &'static str, name: &str) -> Result<()> {
    let invalid = |reason| CatalogError::InvalidName {
        kind,
        name: name.to_string(),
        reason,
    };
    if name.trim().is_empty() {
        return Err(invalid("a name must not be empty or whitespace"));
    }
    if name.chars().count() > 128 {
        return Err(invalid("a name must be at most 128 characters"));
    }
    let mut chars = name.chars();
    if !chars.next().is_some_and(|c| c.is_alphabetic() || c == '_') {
        return Err(invalid("a name must start with a letter or '_'"));
    }
    if !chars.all(|c| c.is_alphanumeric() || c == '_') {
        return Err(invalid("a name may hold only letters, digits and '_'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_identifier_rules() {
        assert!(validate_name("snapshot", "nightly_2026").is_ok());
        assert!(validate_name("snapshot", "_x").is_ok());
        for bad in ["", "   ", "1abc", "a-b", "a b", "a.b"] {
            let err = validate_name("snapshot", bad).unwrap_err();
            assert!(
                err.to_string().starts_with("invalid snapshot name"),
                "{bad}: {err}"
            );
        }
        let long = "a".repeat(129);
        assert!(validate_name("database", &long).is_err());
    }
}
