//! Snapshot lifecycle: `PENDING -> COMMITTED -> DELETING -> gone`.
//!
//! Create: (1) commit a PENDING record — the name check and the record are one catalog commit, so
//! of two concurrent creates of one name exactly one wins; (2) tag the pinned Lance version
//! (`quiver-snapshot-<id>`), so Lance's own version cleanup keeps it; (3) write the manifest and
//! metadata files; (4) commit COMMITTED with the totals. No data file is copied.
//!
//! Drop: (1) commit DELETING (refused while a job reads the snapshot); (2) delete the manifest
//! files and the tag; (3) remove the record.
//!
//! Only COMMITTED snapshots are visible. A crash leaves at worst a PENDING or DELETING record
//! with some of its files: invisible, and finished or cleaned by garbage collection
//! ([`Catalog::stale_snapshots`]). A failure that the process survives is undone at once.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::Schema;
use chrono::Utc;
use lance::Dataset;

use crate::catalog::Catalog;
use crate::error::{CatalogError, Result};
use crate::indices::vector_indices;
use crate::inventory::{version_files, VersionFile};
use crate::manifest::{self, SnapshotMetadata, FORMAT_VERSION};
use crate::model::{validate_name, CollectionRecord, SnapshotRecord, SnapshotState};

/// The Lance tag protecting a snapshot's version.
pub fn tag_name(snapshot_id: &str) -> String {
    format!("quiver-snapshot-{snapshot_id}")
}

/// The root-relative directory of a snapshot's manifest files.
pub fn snapshot_dir(collection_id: &str, snapshot_id: &str) -> String {
    format!("snapshots/{collection_id}/{snapshot_id}")
}

impl Catalog {
    /// Creates snapshot `name` of `database.collection` at its latest version.
    pub async fn create_snapshot(
        &self,
        database: &str,
        collection: &str,
        name: &str,
        comment: Option<String>,
    ) -> Result<SnapshotRecord> {
        validate_name("snapshot", name)?;
        let record = self.collection(database, collection).await?;
        let mut dataset = self.open_dataset(&record, None).await?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = snapshot_dir(&record.id, &id);
        let pending = SnapshotRecord {
            id: id.clone(),
            collection_id: record.id.clone(),
            database: record.database.clone(),
            collection: record.name.clone(),
            name: name.to_string(),
            comment,
            state: SnapshotState::Pending,
            created_at: Utc::now(),
            version: dataset.version_id(),
            rows: 0,
            files: 0,
            bytes: 0,
            manifest_path: manifest::manifest_paths(&dir).0,
        };
        self.commit(|state| {
            let current = state.require_collection(database, collection)?;
            if current.id != record.id {
                return Err(CatalogError::CollectionNotFound {
                    database: database.to_string(),
                    name: collection.to_string(),
                });
            }
            for existing in state.snapshots_of(&record.id) {
                if existing.name != name {
                    continue;
                }
                match existing.state {
                    SnapshotState::Committed => {
                        return Err(CatalogError::SnapshotAlreadyExists {
                            collection: record.qualified_name(),
                            name: name.to_string(),
                        })
                    }
                    SnapshotState::Pending => {
                        return Err(CatalogError::InvalidRequest {
                            message: format!(
                                "snapshot '{name}' on '{}' is being created (or its creation was interrupted: VACUUM clears it once it is older than the grace period, e.g. VACUUM WITH (grace_seconds = 0) when nothing else is creating it)",
                                record.qualified_name()
                            ),
                        })
                    }
                    SnapshotState::Deleting => {}
                }
            }
            state.snapshots.insert(id.clone(), pending.clone());
            Ok(())
        })
        .await?;
        match self.finish_snapshot(&record, &mut dataset, pending).await {
            Ok(committed) => Ok(committed),
            Err(e) => {
                // Undo what we can; what a crash leaves, garbage collection removes.
                let _ = self.remove_snapshot_files(&record, &id).await;
                let _ = self
                    .commit(|state| {
                        state.snapshots.remove(&id);
                        Ok(())
                    })
                    .await;
                Err(e)
            }
        }
    }

    async fn finish_snapshot(
        &self,
        record: &CollectionRecord,
        dataset: &mut Dataset,
        mut snapshot: SnapshotRecord,
    ) -> Result<SnapshotRecord> {
        dataset
            .tags()
            .create(&tag_name(&snapshot.id), snapshot.version)
            .await?;
        let files = version_files(self.root(), &record.location, dataset).await?;
        let rows = dataset.count_rows(None).await? as u64;
        let bytes: u64 = files.iter().map(|f| f.size_bytes).sum();
        let metadata = SnapshotMetadata {
            format_version: FORMAT_VERSION.to_string(),
            snapshot_id: snapshot.id.clone(),
            snapshot_name: snapshot.name.clone(),
            database: record.database.clone(),
            collection: record.name.clone(),
            collection_id: record.id.clone(),
            comment: snapshot.comment.clone(),
            lance_version: snapshot.version,
            created_at: snapshot.created_at,
            schema: Arc::new(Schema::from(dataset.schema())),
            primary_key: record.primary_key.clone(),
            indices: vector_indices(dataset).await?,
            properties: record
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>(),
            rows,
            files: files.len() as u64,
            bytes,
        };
        let (manifest_path, metadata_path) =
            manifest::manifest_paths(&snapshot_dir(&record.id, &snapshot.id));
        manifest::put(self.root(), &manifest_path, manifest::encode_files(&files)?).await?;
        manifest::put(
            self.root(),
            &metadata_path,
            manifest::encode_metadata(&metadata)?,
        )
        .await?;
        snapshot.state = SnapshotState::Committed;
        snapshot.rows = rows;
        snapshot.files = files.len() as u64;
        snapshot.bytes = bytes;
        let committed = snapshot.clone();
        self.commit(|state| match state.snapshots.get_mut(&committed.id) {
            Some(s) => {
                *s = committed.clone();
                Ok(())
            }
            None => Err(CatalogError::InvalidRequest {
                message: format!("snapshot '{}' vanished while being created", committed.name),
            }),
        })
        .await?;
        Ok(snapshot)
    }

    /// Deletes a snapshot's manifest files and its Lance tag (missing ones are fine).
    async fn remove_snapshot_files(&self, record: &CollectionRecord, id: &str) -> Result<()> {
        self.remove_location(&snapshot_dir(&record.id, id)).await?;
        let dataset = self.open_dataset(record, None).await?;
        match dataset.tags().delete(&tag_name(id)).await {
            Ok(()) => Ok(()),
            Err(lance::Error::RefNotFound { .. }) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Drops snapshot `name` of `database.collection`; `None` if it did not exist and
    /// `if_exists` was set.
    pub async fn drop_snapshot(
        &self,
        database: &str,
        collection: &str,
        name: &str,
        if_exists: bool,
    ) -> Result<Option<SnapshotRecord>> {
        let record = self.collection(database, collection).await?;
        let marked = self
            .commit(|state| {
                let Some(snapshot) = state.committed_snapshot(&record.id, name).cloned() else {
                    if if_exists {
                        return Ok(None);
                    }
                    return Err(CatalogError::SnapshotNotFound {
                        collection: record.qualified_name(),
                        name: name.to_string(),
                    });
                };
                if let Some(job_id) = state.job_reading(&snapshot.id) {
                    return Err(CatalogError::SnapshotInUse {
                        collection: record.qualified_name(),
                        name: name.to_string(),
                        job_id,
                    });
                }
                if let Some(s) = state.snapshots.get_mut(&snapshot.id) {
                    s.state = SnapshotState::Deleting;
                }
                Ok(Some(snapshot))
            })
            .await?;
        let Some(snapshot) = marked else {
            return Ok(None);
        };
        self.finish_drop(&record, &snapshot.id).await?;
        Ok(Some(snapshot))
    }

    /// Removes a DELETING snapshot's files and then its record.
    pub async fn finish_drop(&self, record: &CollectionRecord, snapshot_id: &str) -> Result<()> {
        self.remove_snapshot_files(record, snapshot_id).await?;
        self.commit(|state| {
            state.snapshots.remove(snapshot_id);
            Ok(())
        })
        .await
    }

    /// The committed snapshot `name` of `database.collection`, with the collection.
    pub async fn snapshot(
        &self,
        database: &str,
        collection: &str,
        name: &str,
    ) -> Result<(CollectionRecord, SnapshotRecord)> {
        let state = self.state().await?;
        let (record, snapshot) = state.require_committed_snapshot(database, collection, name)?;
        Ok((record.clone(), snapshot.clone()))
    }

    /// Committed snapshots, of one database and collection if given, ordered by collection and
    /// creation time.
    pub async fn list_snapshots(
        &self,
        database: Option<&str>,
        collection: Option<&str>,
    ) -> Result<Vec<SnapshotRecord>> {
        let state = self.state().await?;
        if let (Some(db), Some(c)) = (database, collection) {
            state.require_collection(db, c)?;
        }
        let mut out: Vec<SnapshotRecord> = state
            .snapshots
            .values()
            .filter(|s| s.state == SnapshotState::Committed)
            .filter(|s| database.is_none_or(|d| s.database == d))
            .filter(|s| collection.is_none_or(|c| s.collection == c))
            .cloned()
            .collect();
        out.sort_by(|a, b| {
            (&a.database, &a.collection, a.created_at, &a.name).cmp(&(
                &b.database,
                &b.collection,
                b.created_at,
                &b.name,
            ))
        });
        Ok(out)
    }

    /// A snapshot's metadata record, read from its manifest directory.
    pub async fn snapshot_metadata(&self, snapshot: &SnapshotRecord) -> Result<SnapshotMetadata> {
        let (_, path) =
            manifest::manifest_paths(&snapshot_dir(&snapshot.collection_id, &snapshot.id));
        let bytes = manifest::get(self.root(), &path).await?;
        manifest::decode_metadata(&bytes, &path)
    }

    /// The files a snapshot's version needs, read from its manifest.
    pub async fn snapshot_files(&self, snapshot: &SnapshotRecord) -> Result<Vec<VersionFile>> {
        let (path, _) =
            manifest::manifest_paths(&snapshot_dir(&snapshot.collection_id, &snapshot.id));
        let bytes = manifest::get(self.root(), &path).await?;
        manifest::decode_files(&bytes, &path)
    }

    /// The snapshot's pinned version of its collection, for reading.
    pub async fn open_snapshot(
        &self,
        record: &CollectionRecord,
        snapshot: &SnapshotRecord,
    ) -> Result<Dataset> {
        self.open_dataset(record, Some(snapshot.version)).await
    }

    /// PENDING and DELETING snapshot records older than `older_than`: left by interrupted
    /// creates and drops, for garbage collection to finish.
    pub async fn stale_snapshots(
        &self,
        older_than: chrono::Duration,
    ) -> Result<Vec<SnapshotRecord>> {
        let cutoff = Utc::now() - older_than;
        Ok(self
            .state()
            .await?
            .snapshots
            .values()
            .filter(|s| s.state != SnapshotState::Committed && s.created_at <= cutoff)
            .cloned()
            .collect())
    }

    /// Removes a stale PENDING or DELETING snapshot: its files, its tag, its record.
    pub async fn clear_stale_snapshot(&self, snapshot: &SnapshotRecord) -> Result<()> {
        let state = self.state().await?;
        match state.collections.get(&snapshot.collection_id) {
            Some(record) => self.finish_drop(&record.clone(), &snapshot.id).await,
            None => {
                self.remove_location(&snapshot_dir(&snapshot.collection_id, &snapshot.id))
                    .await?;
                self.commit(|state| {
                    state.snapshots.remove(&snapshot.id);
                    Ok(())
                })
                .await
            }
        }
    }
}
