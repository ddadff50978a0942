//! Restore jobs: build a collection from a snapshot, or roll a collection back to one.
//!
//! Modes:
//! - `copy`: the snapshot's files are copied into a new collection directory, then the new
//!   collection is committed to the catalog. Plan:
//!   `CatalogCommitExec <- FileCopyExec <- ManifestScanExec`.
//! - `zero_copy`: the new collection is a Lance shallow clone that reads the snapshot's files where
//!   they are (O(metadata)); the source version is tagged for the clone so that neither Lance's
//!   cleanup nor garbage collection removes what the clone reads, and dropping the source keeps
//!   those files while the clone lives. Plan: `CatalogCommitExec <- ShallowCloneExec`.
//! - `in_place`: `RESTORE TABLE t TO SNAPSHOT s` commits the snapshot's content as the
//!   collection's newest version (history kept). Plan: `RollbackExec`, which a retried job does
//!   not repeat once an earlier attempt committed it (it would undo writes made since).
//!
//! The target of a new collection gets its id when the job is submitted, so a retried job (after
//! a failure or a restart) clears whatever a previous attempt left and starts again; a target
//! already committed counts as done. A failed or cancelled restore removes its half-made target
//! and leaves the snapshot as it was.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use datafusion::arrow::array::{RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{plan_err, DataFusionError, Result};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::ExecutionPlan;
use lance::dataset::transaction::Operation;
use quiver_catalog::catalog::clone_tag;
use quiver_catalog::{
    Catalog, CatalogError, CollectionRecord, JobKind, JobRecord, SnapshotRecord, SnapshotState,
};
use quiver_operators::jobs::commit::{CatalogCommit, CommitAction};
use quiver_operators::jobs::file_copy::FileCopy;
use quiver_operators::jobs::manifest_scan::{file_schema, ManifestScan};
use quiver_operators::jobs::{JobProgress, Source, SourceExec, TransformExec};
use serde::{Deserialize, Serialize};

use super::{JobPlan, JobScheduler};
use crate::error::external;

/// How a snapshot is restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreMode {
    /// Copy the files into a new collection.
    Copy,
    /// A new collection reading the snapshot's files in place.
    ZeroCopy,
    /// Roll the snapshot's collection back, as a new version.
    InPlace,
}

impl RestoreMode {
    /// Parses `copy`, `zero_copy` (or `zero-copy`, `clone`), `in_place`.
    pub fn parse(mode: &str) -> Result<Self> {
        Ok(match mode.to_ascii_lowercase().replace('-', "_").as_str() {
            "copy" => Self::Copy,
            "zero_copy" | "clone" => Self::ZeroCopy,
            "in_place" => Self::InPlace,
            other => return plan_err!("unknown restore mode '{other}' (known: copy, zero_copy)"),
        })
    }
}

/// A restore job's parameters, kept in its record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreSpec {
    /// How.
    pub mode: RestoreMode,
    /// The snapshot restored.
    pub snapshot_id: String,
    /// The snapshot's collection.
    pub collection_id: String,
    /// The new collection's database (not for in-place).
    pub target_database: Option<String>,
    /// The new collection's name (not for in-place).
    pub target_name: Option<String>,
    /// The new collection's id, fixed at submission (not for in-place).
    pub target_id: Option<String>,
    /// When the restore was submitted: an in-place rollback committed after it was made by an
    /// earlier attempt of this job, and is not made again.
    #[serde(default)]
    pub submitted_at: Option<DateTime<Utc>>,
}

fn target_location(target_id: &str) -> String {
    format!("collections/{target_id}")
}

/// Validates a restore of `snapshot` (of `record`) into `target` (database, name), or in place,
/// and gives the new collection its id.
pub async fn spec(
    catalog: &Arc<Catalog>,
    record: &CollectionRecord,
    snapshot: &SnapshotRecord,
    mode: RestoreMode,
    target: Option<(String, String)>,
) -> Result<RestoreSpec> {
    let state = catalog.state().await.map_err(external)?;
    let (target_database, target_name, target_id) = match (&mode, target) {
        (RestoreMode::InPlace, _) => (None, None, None),
        (_, Some((database, name))) => {
            quiver_catalog::model::validate_name("collection", &name).map_err(external)?;
            state.require_database(&database).map_err(external)?;
            if state.collection(&database, &name).is_some() {
                return Err(external(CatalogError::CollectionAlreadyExists {
                    database,
                    name,
                }));
            }
            (
                Some(database),
                Some(name),
                Some(uuid::Uuid::new_v4().simple().to_string()),
            )
        }
        (_, None) => return plan_err!("a restore into a new collection needs a target name"),
    };
    Ok(RestoreSpec {
        mode,
        snapshot_id: snapshot.id.clone(),
        collection_id: record.id.clone(),
        target_database,
        target_name,
        target_id,
        submitted_at: Some(Utc::now()),
    })
}

/// Submits the restore `spec` of `snapshot` (of `record`).
pub async fn submit(
    scheduler: &Arc<JobScheduler>,
    record: &CollectionRecord,
    snapshot: &SnapshotRecord,
    spec: &RestoreSpec,
) -> Result<JobRecord> {
    let target_label = match (&spec.target_database, &spec.target_name) {
        (Some(d), Some(n)) => format!("{d}.{n}"),
        _ => record.qualified_name(),
    };
    let value = serde_json::to_value(spec).map_err(|e| DataFusionError::External(Box::new(e)))?;
    scheduler
        .submit(
            JobKind::Restore,
            format!(
                "{}@{} -> {target_label}",
                record.qualified_name(),
                snapshot.name
            ),
            value,
        )
        .await
}

/// The restore summary schema: `collection, files, bytes, rows`.
fn summary_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("collection", DataType::Utf8, false),
        Field::new("files", DataType::UInt64, false),
        Field::new("bytes", DataType::UInt64, false),
        Field::new("rows", DataType::UInt64, false),
    ]))
}

fn summary(collection: &str, files: u64, bytes: u64, rows: u64) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(
        summary_schema(),
        vec![
            Arc::new(StringArray::from(vec![collection])),
            Arc::new(UInt64Array::from(vec![files])),
            Arc::new(UInt64Array::from(vec![bytes])),
            Arc::new(UInt64Array::from(vec![rows])),
        ],
    )?)
}

/// Registers the restored collection once its files are in place.
#[derive(Debug)]
struct RegisterCollection {
    catalog: Arc<Catalog>,
    snapshot: SnapshotRecord,
    source: CollectionRecord,
    spec: RestoreSpec,
}

impl fmt::Display for RegisterCollection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "register {}.{} from {}@{} (mode={:?})",
            self.spec.target_database.as_deref().unwrap_or_default(),
            self.spec.target_name.as_deref().unwrap_or_default(),
            self.source.qualified_name(),
            self.snapshot.name,
            self.spec.mode
        )
    }
}

#[async_trait]
impl CommitAction for RegisterCollection {
    fn schema(&self) -> SchemaRef {
        summary_schema()
    }

    async fn commit(&self, files: u64, bytes: u64) -> Result<RecordBatch> {
        let (Some(database), Some(name), Some(id)) = (
            self.spec.target_database.clone(),
            self.spec.target_name.clone(),
            self.spec.target_id.clone(),
        ) else {
            return plan_err!("restore spec without a target");
        };
        let metadata = self
            .catalog
            .snapshot_metadata(&self.snapshot)
            .await
            .map_err(external)?;
        let mut shares = self.source.shares_files_of.clone();
        if self.spec.mode == RestoreMode::ZeroCopy {
            shares.push(self.source.location.clone());
        }
        let record = CollectionRecord {
            id: id.clone(),
            database: database.clone(),
            name: name.clone(),
            created_at: chrono::Utc::now(),
            location: target_location(&id),
            primary_key: metadata.primary_key.clone(),
            properties: metadata.properties.clone().into_iter().collect(),
            shares_files_of: shares,
        };
        // The restored version must open and hold exactly the snapshot's rows.
        let dataset = self
            .catalog
            .open_dataset(&record, None)
            .await
            .map_err(external)?;
        let rows = dataset.count_rows(None).await? as u64;
        if rows != self.snapshot.rows {
            return Err(DataFusionError::Execution(format!(
                "restored collection holds {rows} rows, the snapshot {}",
                self.snapshot.rows
            )));
        }
        self.catalog
            .commit(|state| {
                state.require_database(&database)?;
                if state.collections.contains_key(&id) {
                    return Ok(());
                }
                if state.collection(&database, &name).is_some() {
                    return Err(CatalogError::CollectionAlreadyExists {
                        database: database.clone(),
                        name: name.clone(),
                    });
                }
                state.collections.insert(id.clone(), record.clone());
                Ok(())
            })
            .await
            .map_err(external)?;
        summary(&format!("{database}.{name}"), files, bytes, rows)
    }
}

/// `ShallowCloneExec`: creates a zero-copy clone of the snapshot's version.
#[derive(Debug)]
struct ShallowClone {
    catalog: Arc<Catalog>,
    source: CollectionRecord,
    snapshot: SnapshotRecord,
    target_id: String,
}

impl fmt::Display for ShallowClone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "source={}@{} (version {}), target={}",
            self.source.qualified_name(),
            self.snapshot.name,
            self.snapshot.version,
            target_location(&self.target_id)
        )
    }
}

#[async_trait]
impl Source for ShallowClone {
    fn name(&self) -> &'static str {
        "ShallowCloneExec"
    }

    fn schema(&self) -> SchemaRef {
        file_schema()
    }

    async fn run(&self, progress: Arc<dyn JobProgress>) -> Result<Vec<RecordBatch>> {
        let mut source = self
            .catalog
            .open_dataset(&self.source, None)
            .await
            .map_err(external)?;
        let tag = clone_tag(&self.target_id);
        match source.tags().create(&tag, self.snapshot.version).await {
            Ok(()) | Err(lance::Error::RefConflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        // A source that is itself a clone reads older collections' files: the clone reads them
        // too, so it pins the versions the source pins there.
        let state = self.catalog.state().await.map_err(external)?;
        for location in &self.source.shares_files_of {
            let Some(owner) = state.collections.values().find(|c| &c.location == location) else {
                continue;
            };
            let owner = self
                .catalog
                .open_dataset(owner, None)
                .await
                .map_err(external)?;
            let Some(pinned) = owner
                .tags()
                .list()
                .await?
                .get(&clone_tag(&self.source.id))
                .map(|t| t.version)
            else {
                continue;
            };
            match owner.tags().create(&tag, pinned).await {
                Ok(()) | Err(lance::Error::RefConflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let target = self
            .catalog
            .root()
            .uri_of(&target_location(&self.target_id));
        source
            .shallow_clone(
                &target,
                self.snapshot.version,
                self.catalog.root().store_params(),
            )
            .await?;
        progress.add_total(1, 0, self.snapshot.rows);
        progress.add_done(1, 0, self.snapshot.rows);
        Ok(vec![RecordBatch::new_empty(file_schema())])
    }
}

/// `RollbackExec`: commits the snapshot's version as the collection's newest — once: a retried
/// job whose earlier attempt already committed the rollback (a version since `since` that
/// restores the snapshot's version) does not roll back again over newer writes.
#[derive(Debug)]
struct Rollback {
    catalog: Arc<Catalog>,
    record: CollectionRecord,
    snapshot: SnapshotRecord,
    since: Option<DateTime<Utc>>,
}

impl Rollback {
    /// Whether a version committed since the job was submitted already restores the snapshot.
    async fn already_done(&self) -> Result<bool> {
        let Some(since) = self.since else {
            return Ok(false);
        };
        let latest = self
            .catalog
            .open_dataset(&self.record, None)
            .await
            .map_err(external)?;
        for version in latest.versions().await?.iter().rev() {
            if version.timestamp < since {
                break;
            }
            let transaction = latest.read_transaction_by_version(version.version).await?;
            if transaction.is_some_and(|t| {
                matches!(t.operation, Operation::Restore { version } if version == self.snapshot.version)
            }) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl fmt::Display for Rollback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "collection={}, to={}@version {}",
            self.record.qualified_name(),
            self.snapshot.name,
            self.snapshot.version
        )
    }
}

#[async_trait]
impl Source for Rollback {
    fn name(&self) -> &'static str {
        "RollbackExec"
    }

    fn schema(&self) -> SchemaRef {
        summary_schema()
    }

    async fn run(&self, progress: Arc<dyn JobProgress>) -> Result<Vec<RecordBatch>> {
        if !self.already_done().await? {
            let mut old = self
                .catalog
                .open_snapshot(&self.record, &self.snapshot)
                .await
                .map_err(external)?;
            old.restore().await?;
        }
        progress.add_total(1, 0, self.snapshot.rows);
        progress.add_done(1, 0, self.snapshot.rows);
        Ok(vec![summary(
            &self.record.qualified_name(),
            0,
            0,
            self.snapshot.rows,
        )?])
    }
}

/// The plan of restore job `job`, after clearing what an interrupted attempt left.
pub async fn plan(
    catalog: &Arc<Catalog>,
    job: &JobRecord,
    progress: Arc<dyn JobProgress>,
) -> Result<JobPlan> {
    let spec: RestoreSpec = serde_json::from_value(job.spec.clone())
        .map_err(|e| DataFusionError::Execution(format!("job {}: bad spec: {e}", job.id)))?;
    if let Some(target_id) = &spec.target_id {
        let committed = catalog
            .state()
            .await
            .map_err(external)?
            .collections
            .contains_key(target_id);
        if !committed {
            catalog
                .remove_location(&target_location(target_id))
                .await
                .map_err(external)?;
        }
    }
    build(catalog, &spec, progress).await
}

/// The plan of a restore (without side effects: `EXPLAIN` shows it).
pub async fn build(
    catalog: &Arc<Catalog>,
    spec: &RestoreSpec,
    progress: Arc<dyn JobProgress>,
) -> Result<JobPlan> {
    let state = catalog.state().await.map_err(external)?;
    let snapshot = state
        .snapshots
        .get(&spec.snapshot_id)
        .filter(|s| s.state == SnapshotState::Committed)
        .cloned()
        .ok_or_else(|| {
            DataFusionError::Execution(format!("snapshot {} no longer exists", spec.snapshot_id))
        })?;
    let source = state
        .collections
        .get(&spec.collection_id)
        .cloned()
        .ok_or_else(|| {
            DataFusionError::Execution(format!(
                "the collection of snapshot '{}' no longer exists",
                snapshot.name
            ))
        })?;
    if spec.mode == RestoreMode::InPlace {
        let rollback = SourceExec::new(
            Rollback {
                catalog: catalog.clone(),
                record: source,
                snapshot,
                since: spec.submitted_at,
            },
            progress,
        );
        return Ok(JobPlan {
            plan: Arc::new(rollback),
            rollback: None,
        });
    }
    let Some(target_id) = spec.target_id.clone() else {
        return plan_err!("a restore into a new collection needs a target");
    };
    let register = CatalogCommit::new(RegisterCollection {
        catalog: catalog.clone(),
        snapshot: snapshot.clone(),
        source: source.clone(),
        spec: spec.clone(),
    });
    if state.collections.contains_key(&target_id) {
        // A previous attempt committed: nothing to redo.
        let done: Arc<dyn ExecutionPlan> = Arc::new(EmptyExec::new(file_schema()));
        return Ok(JobPlan {
            plan: Arc::new(TransformExec::try_new(register, done, progress)?),
            rollback: None,
        });
    }
    let files: Arc<dyn ExecutionPlan> = match spec.mode {
        RestoreMode::Copy => {
            let scan = Arc::new(SourceExec::new(
                ManifestScan::new(catalog.clone(), snapshot.clone()),
                progress.clone(),
            ));
            Arc::new(TransformExec::try_new(
                FileCopy::new(
                    catalog.root().clone(),
                    source.location.clone(),
                    target_location(&target_id),
                    8,
                ),
                scan,
                progress.clone(),
            )?)
        }
        _ => Arc::new(SourceExec::new(
            ShallowClone {
                catalog: catalog.clone(),
                source: source.clone(),
                snapshot: snapshot.clone(),
                target_id: target_id.clone(),
            },
            progress.clone(),
        )),
    };
    let undo = {
        let catalog = catalog.clone();
        let zero_copy = spec.mode == RestoreMode::ZeroCopy;
        async move {
            let _ = catalog.remove_location(&target_location(&target_id)).await;
            if zero_copy {
                let mut pinned = vec![source.location.clone()];
                pinned.extend(source.shares_files_of.iter().cloned());
                let _ = catalog.release_clone_tags(&target_id, &pinned).await;
            }
        }
    };
    Ok(JobPlan {
        plan: Arc::new(TransformExec::try_new(register, files, progress)?),
        rollback: Some(Box::pin(undo)),
    })
}
