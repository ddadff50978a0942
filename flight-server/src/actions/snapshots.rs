//! The snapshot and job actions, named as Milvus users know them: `CreateSnapshot`,
//! `DropSnapshot`, `ListSnapshots`, `DescribeSnapshot`, `RestoreSnapshot`,
//! `GetRestoreSnapshotState`, `ListRestoreSnapshotJobs`, plus `GetJob` and `CancelJob`.
//!
//! Each runs the same catalog and scheduler operations as the SQL statements; a collection is
//! named `collection` (in `database`, default `default`), or `database.collection`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use quiver_catalog::{JobKind, JobRecord, SnapshotRecord, DEFAULT_DATABASE};
use quiver_planner::jobs::restore::{self, RestoreMode};
use serde::{Deserialize, Serialize};

use super::registry::{ActionContext, ActionError, ActionRegistry, JsonAction, RegistryError};

/// Registers every snapshot and job action.
pub fn register(registry: &mut ActionRegistry) -> Result<(), RegistryError> {
    registry.register(CreateSnapshot)?;
    registry.register(DropSnapshot)?;
    registry.register(ListSnapshots)?;
    registry.register(DescribeSnapshot)?;
    registry.register(RestoreSnapshot)?;
    registry.register(GetRestoreSnapshotState)?;
    registry.register(ListRestoreSnapshotJobs)?;
    registry.register(GetJob)?;
    registry.register(CancelJob)?;
    Ok(())
}

/// `database` and `collection` from a request (`collection` may be `database.collection`).
fn collection_name(database: Option<String>, collection: &str) -> (String, String) {
    match (database, collection.split_once('.')) {
        (Some(d), _) => (d, collection.to_string()),
        (None, Some((d, c))) => (d.to_string(), c.to_string()),
        (None, None) => (DEFAULT_DATABASE.to_string(), collection.to_string()),
    }
}

/// Names a snapshot.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotName {
    /// The collection (or `database.collection`).
    pub collection: String,
    /// Its database (default `default`).
    pub database: Option<String>,
    /// The snapshot.
    pub name: String,
}

/// `CreateSnapshot`.
#[derive(Debug)]
pub struct CreateSnapshot;

/// The request of [`CreateSnapshot`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSnapshotRequest {
    /// The collection (or `database.collection`).
    pub collection: String,
    /// Its database (default `default`).
    pub database: Option<String>,
    /// The snapshot's name.
    pub name: String,
    /// A comment.
    pub comment: Option<String>,
}

#[async_trait]
impl JsonAction for CreateSnapshot {
    type Request = CreateSnapshotRequest;
    type Response = SnapshotRecord;
    const NAME: &'static str = "CreateSnapshot";
    const DESCRIPTION: &'static str = "Creates a snapshot. Request: {\"collection\", \"name\", \
        \"database\"?, \"comment\"?}. Response: the snapshot {\"id\", \"name\", \"database\", \
        \"collection\", \"state\", \"created_at\", \"version\", \"rows\", \"files\", \"bytes\", ...}.";

    async fn run(
        &self,
        context: &ActionContext,
        request: CreateSnapshotRequest,
    ) -> Result<SnapshotRecord, ActionError> {
        let (database, collection) = collection_name(request.database, &request.collection);
        Ok(context
            .executor
            .catalog()
            .create_snapshot(&database, &collection, &request.name, request.comment)
            .await?)
    }
}

/// `DropSnapshot`.
#[derive(Debug)]
pub struct DropSnapshot;

/// The request of [`DropSnapshot`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropSnapshotRequest {
    /// The collection (or `database.collection`).
    pub collection: String,
    /// Its database (default `default`).
    pub database: Option<String>,
    /// The snapshot.
    pub name: String,
    /// No error if it does not exist.
    #[serde(default)]
    pub if_exists: bool,
}

/// The response of [`DropSnapshot`].
#[derive(Debug, Serialize)]
pub struct Dropped {
    /// Whether a snapshot was dropped.
    pub dropped: bool,
}

#[async_trait]
impl JsonAction for DropSnapshot {
    type Request = DropSnapshotRequest;
    type Response = Dropped;
    const NAME: &'static str = "DropSnapshot";
    const DESCRIPTION: &'static str = "Drops a snapshot. Request: {\"collection\", \"name\", \
        \"database\"?, \"if_exists\"?}. Response: {\"dropped\"}.";

    async fn run(
        &self,
        context: &ActionContext,
        request: DropSnapshotRequest,
    ) -> Result<Dropped, ActionError> {
        let (database, collection) = collection_name(request.database, &request.collection);
        let dropped = context
            .executor
            .catalog()
            .drop_snapshot(&database, &collection, &request.name, request.if_exists)
            .await?;
        Ok(Dropped {
            dropped: dropped.is_some(),
        })
    }
}

/// `ListSnapshots`.
#[derive(Debug)]
pub struct ListSnapshots;

/// The request of [`ListSnapshots`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListSnapshotsRequest {
    /// Only this collection's (or `database.collection`).
    pub collection: Option<String>,
    /// Only this database's.
    pub database: Option<String>,
}

/// The response of [`ListSnapshots`].
#[derive(Debug, Serialize)]
pub struct SnapshotList {
    /// Committed snapshots.
    pub snapshots: Vec<SnapshotRecord>,
}

#[async_trait]
impl JsonAction for ListSnapshots {
    type Request = ListSnapshotsRequest;
    type Response = SnapshotList;
    const NAME: &'static str = "ListSnapshots";
    const DESCRIPTION: &'static str = "Lists committed snapshots. Request: {\"collection\"?, \
        \"database\"?}. Response: {\"snapshots\": [...]}.";

    async fn run(
        &self,
        context: &ActionContext,
        request: ListSnapshotsRequest,
    ) -> Result<SnapshotList, ActionError> {
        let (database, collection) = match request.collection {
            Some(c) => {
                let (d, c) = collection_name(request.database, &c);
                (Some(d), Some(c))
            }
            None => (request.database, None),
        };
        let snapshots = context
            .executor
            .catalog()
            .list_snapshots(database.as_deref(), collection.as_deref())
            .await?;
        Ok(SnapshotList { snapshots })
    }
}

/// `DescribeSnapshot`.
#[derive(Debug)]
pub struct DescribeSnapshot;

/// The response of [`DescribeSnapshot`].
#[derive(Debug, Serialize)]
pub struct SnapshotDescription {
    /// The snapshot.
    #[serde(flatten)]
    pub snapshot: SnapshotRecord,
    /// Columns: name, type, nullable.
    pub schema: serde_json::Value,
    /// Primary key columns.
    pub primary_key: Vec<String>,
    /// Vector index definitions.
    pub indices: Vec<quiver_catalog::indices::VectorIndexInfo>,
    /// Collection properties.
    pub properties: std::collections::HashMap<String, String>,
    /// The manifest format version.
    pub format_version: String,
}

#[async_trait]
impl JsonAction for DescribeSnapshot {
    type Request = SnapshotName;
    type Response = SnapshotDescription;
    const NAME: &'static str = "DescribeSnapshot";
    const DESCRIPTION: &'static str = "Describes a snapshot. Request: {\"collection\", \"name\", \
        \"database\"?}. Response: the snapshot plus \"schema\", \"primary_key\", \"indices\", \
        \"properties\", \"manifest_path\", \"format_version\".";

    async fn run(
        &self,
        context: &ActionContext,
        request: SnapshotName,
    ) -> Result<SnapshotDescription, ActionError> {
        let (database, collection) = collection_name(request.database, &request.collection);
        let catalog = context.executor.catalog();
        let (_, snapshot) = catalog
            .snapshot(&database, &collection, &request.name)
            .await?;
        let metadata = catalog.snapshot_metadata(&snapshot).await?;
        let schema = metadata
            .schema
            .fields()
            .iter()
            .map(|f| {
                serde_json::json!({
                    "name": f.name(),
                    "type": quiver_planner::sql::types::sql_type_name(f.data_type()),
                    "nullable": f.is_nullable(),
                })
            })
            .collect();
        Ok(SnapshotDescription {
            snapshot,
            schema: serde_json::Value::Array(schema),
            primary_key: metadata.primary_key,
            indices: metadata.indices,
            properties: metadata.properties,
            format_version: metadata.format_version,
        })
    }
}

/// `RestoreSnapshot`.
#[derive(Debug)]
pub struct RestoreSnapshot;

/// The request of [`RestoreSnapshot`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreSnapshotRequest {
    /// The snapshot's collection (or `database.collection`).
    pub collection: String,
    /// Its database (default `default`).
    pub database: Option<String>,
    /// The snapshot.
    pub name: String,
    /// The new collection's name; absent: roll `collection` back in place.
    pub target: Option<String>,
    /// The new collection's database (default: the source's).
    pub target_database: Option<String>,
    /// `copy` (default) or `zero_copy`.
    pub mode: Option<String>,
}

/// The response of [`RestoreSnapshot`].
#[derive(Debug, Serialize)]
pub struct RestoreStarted {
    /// The restore job.
    pub job_id: u64,
}

#[async_trait]
impl JsonAction for RestoreSnapshot {
    type Request = RestoreSnapshotRequest;
    type Response = RestoreStarted;
    const NAME: &'static str = "RestoreSnapshot";
    const DESCRIPTION: &'static str = "Starts restoring a snapshot into a new collection (or, \
        without \"target\", rolls the collection back). Request: {\"collection\", \"name\", \
        \"target\"?, \"database\"?, \"target_database\"?, \"mode\"?: \"copy\"|\"zero_copy\"}. \
        Response: {\"job_id\"}; follow it with GetRestoreSnapshotState.";

    async fn run(
        &self,
        context: &ActionContext,
        request: RestoreSnapshotRequest,
    ) -> Result<RestoreStarted, ActionError> {
        let (database, collection) = collection_name(request.database, &request.collection);
        let catalog = context.executor.catalog();
        let (record, snapshot) = catalog
            .snapshot(&database, &collection, &request.name)
            .await?;
        let (mode, target) = match request.target {
            None => (RestoreMode::InPlace, None),
            Some(target) => {
                let mode = match request.mode.as_deref() {
                    Some(m) => RestoreMode::parse(m)?,
                    None => RestoreMode::Copy,
                };
                if mode == RestoreMode::InPlace {
                    return Err(ActionError::InvalidRequest(
                        "an in-place restore is requested by leaving out \"target\"".to_string(),
                    ));
                }
                let target_database = request.target_database.unwrap_or(database.clone());
                (mode, Some((target_database, target)))
            }
        };
        let spec = restore::spec(catalog, &record, &snapshot, mode, target).await?;
        let job = restore::submit(context.executor.scheduler(), &record, &snapshot, &spec).await?;
        Ok(RestoreStarted { job_id: job.id })
    }
}

/// Names a job.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobId {
    /// The job.
    pub job_id: u64,
}

/// A restore job as Milvus's `GetRestoreSnapshotState` reports it.
#[derive(Debug, Serialize)]
pub struct RestoreState {
    /// The job.
    pub job_id: u64,
    /// `PENDING`, `RUNNING`, `SUCCEEDED`, `FAILED` or `CANCELLED`.
    pub state: String,
    /// 0-100.
    pub progress: u8,
    /// Why it failed or was cancelled.
    pub reason: Option<String>,
    /// What is restored, e.g. `default.docs@nightly -> default.docs2`.
    pub target: String,
    /// When it started.
    pub start_time: Option<DateTime<Utc>>,
    /// Milliseconds from start to finish (or to now, while running).
    pub time_cost_ms: Option<i64>,
    /// Files and bytes done and in total.
    pub files_done: u64,
    /// Files in total.
    pub files_total: u64,
    /// Bytes done.
    pub bytes_done: u64,
    /// Bytes in total.
    pub bytes_total: u64,
}

impl From<&JobRecord> for RestoreState {
    fn from(job: &JobRecord) -> Self {
        let end = job.finished_at.unwrap_or_else(Utc::now);
        Self {
            job_id: job.id,
            state: job.state.as_str().to_string(),
            progress: job.progress,
            reason: job.error.clone(),
            target: job.target.clone(),
            start_time: job.started_at,
            time_cost_ms: job.started_at.map(|s| (end - s).num_milliseconds()),
            files_done: job.files_done,
            files_total: job.files_total,
            bytes_done: job.bytes_done,
            bytes_total: job.bytes_total,
        }
    }
}

async fn restore_job(context: &ActionContext, id: u64) -> Result<JobRecord, ActionError> {
    let job = context.executor.catalog().job(id).await?;
    if job.kind != JobKind::Restore {
        return Err(ActionError::InvalidRequest(format!(
            "job {id} is not a restore (it is {})",
            job.kind.as_str()
        )));
    }
    Ok(job)
}

/// `GetRestoreSnapshotState`.
#[derive(Debug)]
pub struct GetRestoreSnapshotState;

#[async_trait]
impl JsonAction for GetRestoreSnapshotState {
    type Request = JobId;
    type Response = RestoreState;
    const NAME: &'static str = "GetRestoreSnapshotState";
    const DESCRIPTION: &'static str = "A restore job's state. Request: {\"job_id\"}. Response: \
        {\"job_id\", \"state\", \"progress\", \"reason\", \"target\", \"start_time\", \
        \"time_cost_ms\", \"files_done\", \"files_total\", \"bytes_done\", \"bytes_total\"}.";

    async fn run(
        &self,
        context: &ActionContext,
        request: JobId,
    ) -> Result<RestoreState, ActionError> {
        Ok(RestoreState::from(
            &restore_job(context, request.job_id).await?,
        ))
    }
}

/// `ListRestoreSnapshotJobs`.
#[derive(Debug)]
pub struct ListRestoreSnapshotJobs;

/// The request of [`ListRestoreSnapshotJobs`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListRestoreJobsRequest {
    /// Only restores of this collection's snapshots (or `database.collection`).
    pub collection: Option<String>,
    /// Its database (default `default`).
    pub database: Option<String>,
}

/// The response of [`ListRestoreSnapshotJobs`].
#[derive(Debug, Serialize)]
pub struct RestoreJobs {
    /// Restore jobs, newest first.
    pub jobs: Vec<RestoreState>,
}

#[async_trait]
impl JsonAction for ListRestoreSnapshotJobs {
    type Request = ListRestoreJobsRequest;
    type Response = RestoreJobs;
    const NAME: &'static str = "ListRestoreSnapshotJobs";
    const DESCRIPTION: &'static str = "Restore jobs, newest first. Request: {\"collection\"?, \
        \"database\"?}. Response: {\"jobs\": [restore states]}.";

    async fn run(
        &self,
        context: &ActionContext,
        request: ListRestoreJobsRequest,
    ) -> Result<RestoreJobs, ActionError> {
        let catalog = context.executor.catalog();
        let collection_id = match request.collection {
            Some(c) => {
                let (d, c) = collection_name(request.database, &c);
                Some(catalog.collection(&d, &c).await?.id)
            }
            None => None,
        };
        let jobs = catalog
            .jobs()
            .await?
            .iter()
            .filter(|j| j.kind == JobKind::Restore)
            .filter(|j| {
                collection_id.as_ref().is_none_or(|id| {
                    j.spec.get("collection_id").and_then(|v| v.as_str()) == Some(id.as_str())
                })
            })
            .map(RestoreState::from)
            .collect();
        Ok(RestoreJobs { jobs })
    }
}

/// `GetJob`.
#[derive(Debug)]
pub struct GetJob;

#[async_trait]
impl JsonAction for GetJob {
    type Request = JobId;
    type Response = JobRecord;
    const NAME: &'static str = "GetJob";
    const DESCRIPTION: &'static str = "Any job's record. Request: {\"job_id\"}. Response: \
        {\"id\", \"kind\", \"target\", \"state\", \"progress\", \"files_done\", ..., \"error\", \
        \"created_at\", \"started_at\", \"finished_at\", \"result\"}.";

    async fn run(&self, context: &ActionContext, request: JobId) -> Result<JobRecord, ActionError> {
        Ok(context.executor.catalog().job(request.job_id).await?)
    }
}

/// `CancelJob`.
#[derive(Debug)]
pub struct CancelJob;

#[async_trait]
impl JsonAction for CancelJob {
    type Request = JobId;
    type Response = JobRecord;
    const NAME: &'static str = "CancelJob";
    const DESCRIPTION: &'static str = "Asks a job to stop (a pending one stops at once). \
        Request: {\"job_id\"}. Response: the job's record after the request.";

    async fn run(&self, context: &ActionContext, request: JobId) -> Result<JobRecord, ActionError> {
        Ok(context.executor.scheduler().cancel(request.job_id).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_catalog::JobState;

    #[test]
    fn collection_names_take_an_optional_database() {
        assert_eq!(
            collection_name(None, "docs"),
            ("default".to_string(), "docs".to_string())
        );
        assert_eq!(
            collection_name(None, "shop.items"),
            ("shop".to_string(), "items".to_string())
        );
        assert_eq!(
            collection_name(Some("x".into()), "docs"),
            ("x".to_string(), "docs".to_string())
        );
        let done = JobRecord {
            state: JobState::Succeeded,
            ..serde_json::from_value(serde_json::json!({
                "id": 1, "kind": "RESTORE", "target": "t", "spec": {}, "state": "RUNNING",
                "progress": 100, "files_done": 1, "files_total": 1, "bytes_done": 1,
                "bytes_total": 1, "rows_done": 1, "rows_total": 1, "error": null,
                "created_at": "2026-01-01T00:00:00Z", "started_at": "2026-01-01T00:00:00Z",
                "finished_at": "2026-01-01T00:00:02Z"
            }))
            .expect("job")
        };
        let state = RestoreState::from(&done);
        assert_eq!(state.time_cost_ms, Some(2000));
        assert_eq!(state.state, "SUCCEEDED");
    }
}
