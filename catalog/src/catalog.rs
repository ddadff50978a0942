//! The catalog: databases and collections, each collection a Lance dataset under the data root.
//!
//! Invariants:
//! - Every record change is one [`MetaStore`] commit, so a reader sees a whole change or none.
//! - A collection's dataset is written *before* its record is committed: a crash in between leaves
//!   an unreferenced directory (removed by garbage collection), never a record without data.
//! - Dropping a collection commits first and removes files after; until the files are gone the
//!   location is listed in [`CatalogState::dropped`], so garbage collection finishes the job if
//!   the process dies in between.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatchIterator;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use lance::dataset::builder::DatasetBuilder;
use lance::dataset::{WriteMode, WriteParams};
use lance::session::Session;
use lance::Dataset;
use object_store::path::Path;

use crate::error::{CatalogError, Result};
use crate::location::DataRoot;
use crate::metastore::{MetaStore, Versioned, CATALOG_DIR};
use crate::model::{
    validate_name, CatalogState, CollectionRecord, DatabaseRecord, DroppedLocation, SnapshotState,
    DEFAULT_DATABASE,
};
use crate::primary_key::{check_key_type, with_primary_key};

/// The Lance tag a zero-copy restore puts on the source version it reads, so Lance's cleanup
/// keeps that version's files while the restored collection lives.
pub fn clone_tag(target_id: &str) -> String {
    format!("quiver-clone-{target_id}")
}

/// Schema name reserved for Quiver's system tables (`quiver.snapshots`, `quiver.jobs`).
pub const SYSTEM_SCHEMA: &str = "quiver";

/// The catalog of one data root.
#[derive(Debug)]
pub struct Catalog {
    root: DataRoot,
    meta: MetaStore,
    session: Arc<Session>,
    /// How stale the state a statement starts from may be ([`Catalog::fresh_state`]).
    refresh_interval: Duration,
    /// Whether opening it made a new catalog (see [`Catalog::created`]).
    created: bool,
}

impl Catalog {
    /// Opens the catalog at `root`, creating the `default` database on first use.
    pub async fn open(root: DataRoot) -> Result<Self> {
        let meta = MetaStore::new(root.store().clone(), root.prefix());
        let mut catalog = Self {
            root,
            meta,
            session: Arc::new(Session::default()),
            refresh_interval: Duration::ZERO,
            created: false,
        };
        let state = catalog.state().await?;
        if state.databases.is_empty() {
            catalog.check_holds_nothing_else().await?;
            catalog.created = true;
        }
        if !state.databases.contains_key(DEFAULT_DATABASE) {
            catalog.create_database(DEFAULT_DATABASE, true).await?;
        }
        Ok(catalog)
    }

    /// Refuses to make a catalog in a location that already holds other files (a Lance or
    /// LanceDB dataset, or another program's folder given as `--data` by mistake): a new data
    /// root is a new or empty directory or prefix.
    async fn check_holds_nothing_else(&self) -> Result<()> {
        let prefix = self.root.prefix();
        let catalog_dir = self.root.path_of(CATALOG_DIR);
        let mut listing = self.root.store().list(Some(prefix));
        while let Some(object) = listing.try_next().await? {
            if !object.location.prefix_matches(&catalog_dir) {
                let file = object.location.as_ref();
                let file = file
                    .strip_prefix(prefix.as_ref())
                    .map_or(file, |f| f.trim_start_matches('/'));
                return Err(CatalogError::InvalidLocation {
                    location: self.root.display().to_string(),
                    message: format!(
                        "it holds files but no Quiver catalog (such as '{file}'; a Lance or \
                         LanceDB dataset?): a new data root must be a new or empty directory"
                    ),
                });
            }
        }
        Ok(())
    }

    /// Whether opening it made a new, empty catalog: its data root was a new or empty directory
    /// or prefix (or a `--data` with a typo, which the command line says).
    pub fn created(&self) -> bool {
        self.created
    }

    /// The data root.
    pub fn root(&self) -> &DataRoot {
        &self.root
    }

    /// Lets [`Catalog::fresh_state`] answer from memory for `interval` after it last knew the
    /// newest version (zero, the default: it always looks for a newer one).
    pub fn with_refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// How stale [`Catalog::fresh_state`] may be.
    pub fn refresh_interval(&self) -> Duration {
        self.refresh_interval
    }

    /// The latest committed catalog.
    pub async fn state(&self) -> Result<Arc<CatalogState>> {
        Ok(self.meta.latest().await?.state)
    }

    /// The catalog a statement starts from: the latest committed one as of at most the refresh
    /// interval ago, read without I/O within it. This process's own commits are always in it;
    /// other processes' commits appear within the interval. Decisions that commit read
    /// [`Catalog::state`] instead.
    pub async fn fresh_state(&self) -> Result<Arc<CatalogState>> {
        Ok(self.meta.latest_within(self.refresh_interval).await?.state)
    }

    /// The catalog as last read by this process, without I/O (empty before the first read).
    pub fn last_seen_state(&self) -> Arc<CatalogState> {
        self.meta.last_seen().map(|v| v.state).unwrap_or_default()
    }

    /// The latest committed catalog with its version number.
    pub async fn versioned_state(&self) -> Result<Versioned> {
        self.meta.latest().await
    }

    /// Applies `mutate` to the latest catalog and commits it (see [`MetaStore::commit`]).
    pub async fn commit<T>(&self, mutate: impl FnMut(&mut CatalogState) -> Result<T>) -> Result<T> {
        Ok(self.meta.commit(mutate).await?.1)
    }

    /// The metadata store (for maintenance such as trimming old versions).
    pub fn metastore(&self) -> &MetaStore {
        &self.meta
    }

    /// Creates a database; returns whether it was created (false: it existed and
    /// `if_not_exists` was set).
    pub async fn create_database(&self, name: &str, if_not_exists: bool) -> Result<bool> {
        validate_name("database", name)?;
        if name == SYSTEM_SCHEMA {
            return Err(CatalogError::InvalidName {
                kind: "database",
                name: name.to_string(),
                reason: "the name is reserved for system tables",
            });
        }
        self.commit(|state| {
            if state.databases.contains_key(name) {
                if if_not_exists {
                    return Ok(false);
                }
                return Err(CatalogError::DatabaseAlreadyExists {
                    name: name.to_string(),
                });
            }
            state.databases.insert(
                name.to_string(),
                DatabaseRecord {
                    name: name.to_string(),
                    created_at: Utc::now(),
                },
            );
            Ok(true)
        })
        .await
    }

    /// Drops a database; with `cascade`, its collections (and their snapshots) go with it.
    /// Returns whether it was dropped (false: it did not exist and `if_exists` was set).
    pub async fn drop_database(&self, name: &str, if_exists: bool, cascade: bool) -> Result<bool> {
        if name == DEFAULT_DATABASE {
            return Err(CatalogError::InvalidRequest {
                message: "the default database cannot be dropped".to_string(),
            });
        }
        let dropped = self
            .commit(|state| {
                if !state.databases.contains_key(name) {
                    if if_exists {
                        return Ok(None);
                    }
                    return Err(CatalogError::DatabaseNotFound {
                        name: name.to_string(),
                    });
                }
                let ids: Vec<String> = state
                    .collections_in(name)
                    .iter()
                    .map(|c| c.id.clone())
                    .collect();
                if !ids.is_empty() && !cascade {
                    return Err(CatalogError::DatabaseNotEmpty {
                        name: name.to_string(),
                        count: ids.len(),
                    });
                }
                state.databases.remove(name);
                let mut dropped = Vec::new();
                for id in ids {
                    if let Some(record) = Self::remove_collection(state, &id, true)? {
                        dropped.push(record);
                    }
                }
                Ok(Some(dropped))
            })
            .await?;
        match dropped {
            Some(records) => {
                for record in &records {
                    self.release_shared(record).await?;
                }
                for record in records {
                    self.purge_dropped(&record.id).await?;
                }
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Creates a collection with `schema` in `database`: writes its empty Lance dataset, then
    /// commits its record. Returns `None` if it existed and `if_not_exists` was set.
    pub async fn create_collection(
        &self,
        database: &str,
        name: &str,
        schema: SchemaRef,
        primary_key: Vec<String>,
        if_not_exists: bool,
    ) -> Result<Option<CollectionRecord>> {
        validate_name("collection", name)?;
        {
            let state = self.state().await?;
            state.require_database(database)?;
            if state.collection(database, name).is_some() {
                if if_not_exists {
                    return Ok(None);
                }
                return Err(CatalogError::CollectionAlreadyExists {
                    database: database.to_string(),
                    name: name.to_string(),
                });
            }
        }
        for key in &primary_key {
            let Ok(field) = schema.field_with_name(key) else {
                return Err(CatalogError::InvalidRequest {
                    message: format!("primary key column '{key}' is not a column of '{name}'"),
                });
            };
            check_key_type(name, field)?;
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let location = format!("collections/{id}");
        let empty = RecordBatchIterator::new(
            std::iter::empty::<std::result::Result<RecordBatch, arrow::error::ArrowError>>(),
            with_primary_key(schema, &primary_key),
        );
        Dataset::write(
            empty,
            self.root.uri_of(&location).as_str(),
            Some(self.write_params(WriteMode::Create)),
        )
        .await?;
        let record = CollectionRecord {
            id: id.clone(),
            database: database.to_string(),
            name: name.to_string(),
            created_at: Utc::now(),
            location: location.clone(),
            primary_key,
            properties: Default::default(),
            shares_files_of: Vec::new(),
        };
        let committed = self
            .commit(|state| {
                state.require_database(database)?;
                if state.collection(database, name).is_some() {
                    return Ok(false);
                }
                state.collections.insert(id.clone(), record.clone());
                Ok(true)
            })
            .await;
        match committed {
            Ok(true) => Ok(Some(record)),
            Ok(false) => {
                // Another writer created the name first: ours was never visible.
                self.remove_location(&location).await?;
                if if_not_exists {
                    Ok(None)
                } else {
                    Err(CatalogError::CollectionAlreadyExists {
                        database: database.to_string(),
                        name: name.to_string(),
                    })
                }
            }
            Err(e) => {
                self.remove_location(&location).await?;
                Err(e)
            }
        }
    }

    /// Removes a collection's record (and, with `cascade`, its snapshots' records) from `state`,
    /// queueing its location for purging.
    fn remove_collection(
        state: &mut CatalogState,
        id: &str,
        cascade: bool,
    ) -> Result<Option<CollectionRecord>> {
        let Some(record) = state.collections.get(id).cloned() else {
            return Ok(None);
        };
        let snapshots: Vec<String> = state
            .snapshots_of(id)
            .iter()
            .map(|s| s.id.clone())
            .collect();
        // A restore reading one of its snapshots keeps the collection (and its files) alive.
        for snapshot in state.snapshots_of(id) {
            if let Some(job_id) = state.job_reading(&snapshot.id) {
                return Err(CatalogError::SnapshotInUse {
                    collection: record.qualified_name(),
                    name: snapshot.name.clone(),
                    job_id,
                });
            }
        }
        let committed = state
            .snapshots_of(id)
            .iter()
            .filter(|s| s.state == SnapshotState::Committed)
            .count();
        if committed > 0 && !cascade {
            return Err(CatalogError::CollectionHasSnapshots {
                database: record.database.clone(),
                name: record.name.clone(),
                count: committed,
            });
        }
        for snapshot in snapshots {
            state.snapshots.remove(&snapshot);
        }
        state.collections.remove(id);
        state.dropped.push(DroppedLocation {
            collection_id: record.id.clone(),
            location: record.location.clone(),
            dropped_at: Utc::now(),
        });
        Ok(Some(record))
    }

    /// Drops a collection; with `cascade`, its snapshots go with it. Returns the dropped record,
    /// or `None` if it did not exist and `if_exists` was set.
    pub async fn drop_collection(
        &self,
        database: &str,
        name: &str,
        if_exists: bool,
        cascade: bool,
    ) -> Result<Option<CollectionRecord>> {
        let dropped = self
            .commit(|state| {
                state.require_database(database)?;
                let Some(record) = state.collection(database, name) else {
                    if if_exists {
                        return Ok(None);
                    }
                    return Err(CatalogError::CollectionNotFound {
                        database: database.to_string(),
                        name: name.to_string(),
                    });
                };
                let id = record.id.clone();
                Self::remove_collection(state, &id, cascade)
            })
            .await?;
        if let Some(record) = &dropped {
            self.release_shared(record).await?;
            self.purge_dropped(&record.id).await?;
        }
        Ok(dropped)
    }

    /// Sets (or, for `None`, removes) properties of `database.name` in one commit. Snapshots
    /// record the properties a collection has; a restore gives them back.
    pub async fn set_properties(
        &self,
        database: &str,
        name: &str,
        properties: &[(String, Option<String>)],
    ) -> Result<()> {
        self.commit(|state| {
            let id = state.require_collection(database, name)?.id.clone();
            if let Some(record) = state.collections.get_mut(&id) {
                for (key, value) in properties {
                    match value {
                        Some(v) => record.properties.insert(key.clone(), v.clone()),
                        None => record.properties.remove(key),
                    };
                }
            }
            Ok(())
        })
        .await
    }

    /// Puts the collection `staged_id` in the place of `database.name` in one commit: the
    /// collection there (if any) is dropped — refused if it has snapshots — and the staged one
    /// takes its name. Until the commit, the old collection is untouched.
    pub async fn replace_collection(
        &self,
        database: &str,
        name: &str,
        staged_id: &str,
    ) -> Result<()> {
        let replaced = self
            .commit(|state| {
                let old = state
                    .collection(database, name)
                    .map(|r| r.id.clone())
                    .filter(|id| id != staged_id);
                let removed = match old {
                    Some(id) => Self::remove_collection(state, &id, false)?,
                    None => None,
                };
                let Some(staged) = state.collections.get_mut(staged_id) else {
                    return Err(CatalogError::InvalidRequest {
                        message: format!(
                            "the collection built to replace '{database}.{name}' is gone"
                        ),
                    });
                };
                staged.name = name.to_string();
                Ok(removed)
            })
            .await?;
        if let Some(record) = &replaced {
            self.release_shared(record).await?;
            self.purge_dropped(&record.id).await?;
        }
        Ok(())
    }

    /// Removes the tags a dropped zero-copy restore held on the versions it read.
    async fn release_shared(&self, dropped: &CollectionRecord) -> Result<()> {
        self.release_clone_tags(&dropped.id, &dropped.shares_files_of)
            .await
    }

    /// Removes the tags ([`clone_tag`] of `target_id`) a zero-copy restore holds on the live
    /// collections at `locations`.
    pub async fn release_clone_tags(&self, target_id: &str, locations: &[String]) -> Result<()> {
        let state = self.state().await?;
        for location in locations {
            let Some(source) = state.collections.values().find(|c| &c.location == location) else {
                continue;
            };
            let dataset = self.open_dataset(source, None).await?;
            match dataset.tags().delete(&clone_tag(target_id)).await {
                Ok(()) | Err(lance::Error::RefNotFound { .. }) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Deletes a dropped collection's files and forgets its location — unless a live
    /// collection still reads its files, in which case garbage collection removes them file by
    /// file once nothing references them.
    pub async fn purge_dropped(&self, collection_id: &str) -> Result<()> {
        let state = self.state().await?;
        let Some(dropped) = state
            .dropped
            .iter()
            .find(|d| d.collection_id == collection_id)
            .cloned()
        else {
            return Ok(());
        };
        let shared = state
            .collections
            .values()
            .any(|c| c.shares_files_of.contains(&dropped.location));
        if shared {
            return Ok(());
        }
        self.remove_location(&dropped.location).await?;
        self.remove_location(&format!("snapshots/{collection_id}"))
            .await?;
        self.commit(|state| {
            state.dropped.retain(|d| d.collection_id != collection_id);
            Ok(())
        })
        .await
    }

    /// Deletes every object under `relative` (a path under the root).
    pub async fn remove_location(&self, relative: &str) -> Result<()> {
        let prefix: Path = self.root.path_of(relative);
        let store = self.root.store().clone();
        let paths = store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location)
            .boxed();
        store
            .delete_stream(paths)
            .try_for_each(|_| futures::future::ready(Ok(())))
            .await
            .or_else(|e| match e {
                object_store::Error::NotFound { .. } => Ok(()),
                e => Err(e),
            })?;
        Ok(())
    }

    /// The live collection `database.name`.
    pub async fn collection(&self, database: &str, name: &str) -> Result<CollectionRecord> {
        Ok(self
            .state()
            .await?
            .require_collection(database, name)?
            .clone())
    }

    /// Opens a collection's dataset, at `version` or the latest.
    pub async fn open_dataset(
        &self,
        record: &CollectionRecord,
        version: Option<u64>,
    ) -> Result<Dataset> {
        let mut builder = DatasetBuilder::from_uri(self.root.uri_of(&record.location))
            .with_session(self.session.clone());
        if let Some(params) = self.root.store_params() {
            builder = builder.with_store_params(params);
        }
        if let Some(version) = version {
            builder = builder.with_version(version);
        }
        Ok(builder.load().await?)
    }

    /// Write parameters for this root's datasets, in `mode`.
    pub fn write_params(&self, mode: WriteMode) -> WriteParams {
        WriteParams {
            mode,
            session: Some(self.session.clone()),
            store_params: self.root.store_params(),
            ..Default::default()
        }
    }

    /// The Lance session shared by every dataset of this catalog (caches of metadata and
    /// indices).
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]))
    }

    async fn open(dir: &std::path::Path) -> Catalog {
        Catalog::open(DataRoot::open(&dir.to_string_lossy()).await.unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn collections_persist_across_reopen_and_drop_removes_files() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = open(dir.path()).await;
        let record = catalog
            .create_collection("default", "docs", schema(), vec!["id".into()], false)
            .await
            .unwrap()
            .unwrap();
        let dataset_dir = dir.path().join(&record.location);
        assert!(dataset_dir.is_dir());
        drop(catalog);

        let catalog = open(dir.path()).await;
        let found = catalog.collection("default", "docs").await.unwrap();
        assert_eq!(found, record);
        let ds = catalog.open_dataset(&found, None).await.unwrap();
        assert_eq!(ds.count_rows(None).await.unwrap(), 0);

        catalog
            .drop_collection("default", "docs", false, false)
            .await
            .unwrap();
        assert!(!dataset_dir.exists());
        assert!(catalog.state().await.unwrap().dropped.is_empty());
        let err = catalog.collection("default", "docs").await.unwrap_err();
        assert!(matches!(err, CatalogError::CollectionNotFound { .. }));
    }

    #[tokio::test]
    async fn duplicate_and_unknown_names_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = open(dir.path()).await;
        catalog
            .create_collection("default", "docs", schema(), vec![], false)
            .await
            .unwrap();
        let err = catalog
            .create_collection("default", "docs", schema(), vec![], false)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "collection 'default.docs' already exists");
        assert!(catalog
            .create_collection("default", "docs", schema(), vec![], true)
            .await
            .unwrap()
            .is_none());
        let err = catalog
            .create_collection("nope", "docs", schema(), vec![], false)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "database 'nope' does not exist");
        let err = catalog
            .create_collection("default", "x", schema(), vec!["missing".into()], false)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("primary key column 'missing'"),
            "{err}"
        );
        // Only the first collection's directory exists.
        let n = std::fs::read_dir(dir.path().join("collections"))
            .unwrap()
            .count();
        assert_eq!(n, 1);
    }

    #[tokio::test]
    async fn databases_refuse_to_drop_while_holding_collections() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = open(dir.path()).await;
        catalog.create_database("other", false).await.unwrap();
        catalog
            .create_collection("other", "t", schema(), vec![], false)
            .await
            .unwrap();
        let err = catalog
            .drop_database("other", false, false)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            CatalogError::DatabaseNotEmpty { count: 1, .. }
        ));
        assert!(catalog.drop_database("other", false, true).await.unwrap());
        assert!(!catalog.drop_database("other", true, false).await.unwrap());
        assert!(catalog.state().await.unwrap().collections.is_empty());
        let err = catalog
            .drop_database("default", false, false)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("cannot be dropped"));
    }
}
