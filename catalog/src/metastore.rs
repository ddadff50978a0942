//! The embedded metadata store: a log of whole-catalog versions on an object store.
//!
//! Version `n` of the catalog is the JSON document `_catalog/log/<n, 20 digits>.json`. A commit
//! reads the latest version `n`, applies a mutation to a copy and writes version `n + 1` with
//! put-if-absent (`PutMode::Create`). Put-if-absent is atomic on a local file system and on S3, so
//! two writers — two threads, or two servers over one bucket — can never both commit version
//! `n + 1`: the loser reloads and re-applies its mutation against the winner's state. A crash at
//! any point leaves every committed version intact; a version file is either wholly there or
//! absent. Version 0 is the empty catalog and is never written.
//!
//! Trimming old versions is safe because a writer never trusts a cached version for longer than
//! [`CACHE_TTL`] (it lists the log again), and [`MetaStore::trim`] only removes versions older than
//! [`TRIM_MIN_AGE`]: a stale writer therefore can never re-create a trimmed version number.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{path::Path, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::{CatalogError, Result};
use crate::model::CatalogState;

/// How many times a commit re-applies its mutation after losing a race.
const MAX_COMMIT_ATTEMPTS: usize = 64;

/// How long a cached version is trusted as a starting point before the log is listed again.
pub const CACHE_TTL: Duration = Duration::from_secs(30);

/// Versions younger than this are never trimmed.
pub const TRIM_MIN_AGE: Duration = Duration::from_secs(3600);

/// A committed catalog version.
#[derive(Debug, Clone)]
pub struct Versioned {
    /// The version number.
    pub version: u64,
    /// The catalog at that version.
    pub state: Arc<CatalogState>,
}

/// The versioned catalog log.
#[derive(Debug)]
pub struct MetaStore {
    store: Arc<dyn ObjectStore>,
    log_dir: Path,
    /// The newest version this process knows, and when it was last known to be the newest (read
    /// after probing for a later one, or committed here).
    latest: Mutex<Option<(Versioned, Instant)>>,
}

/// The folder of a data root holding the catalog.
pub const CATALOG_DIR: &str = "_catalog";

impl MetaStore {
    /// Opens the log under `root/_catalog/log/`.
    pub fn new(store: Arc<dyn ObjectStore>, root: &Path) -> Self {
        Self {
            store,
            log_dir: root.clone().join(CATALOG_DIR).join("log"),
            latest: Mutex::new(None),
        }
    }

    fn version_path(&self, version: u64) -> Path {
        self.log_dir.clone().join(format!("{version:020}.json"))
    }

    fn cached(&self) -> Option<Versioned> {
        let guard = self.latest.lock().ok()?;
        guard
            .as_ref()
            .filter(|(_, at)| at.elapsed() < CACHE_TTL)
            .map(|(v, _)| v.clone())
    }

    /// The last version this process read or committed, however old, without any I/O. For
    /// synchronous callers (DataFusion's catalog listing); everything that decides or writes uses
    /// [`MetaStore::latest`].
    pub fn last_seen(&self) -> Option<Versioned> {
        let guard = self.latest.lock().ok()?;
        guard.as_ref().map(|(v, _)| v.clone())
    }

    fn remember(&self, versioned: &Versioned) {
        if let Ok(mut guard) = self.latest.lock() {
            let newer = guard
                .as_ref()
                .is_none_or(|(v, _)| v.version <= versioned.version);
            if newer {
                *guard = Some((versioned.clone(), Instant::now()));
            }
        }
    }

    /// Lists the log to find the newest committed version number (0 if none).
    async fn newest_listed_version(&self) -> Result<u64> {
        let metas: Vec<_> = self.store.list(Some(&self.log_dir)).try_collect().await?;
        Ok(metas
            .iter()
            .filter_map(|m| m.location.filename())
            .filter_map(|f| f.strip_suffix(".json"))
            .filter_map(|n| n.parse::<u64>().ok())
            .max()
            .unwrap_or(0))
    }

    async fn read_version(&self, version: u64) -> Result<Option<CatalogState>> {
        if version == 0 {
            return Ok(Some(CatalogState::default()));
        }
        let path = self.version_path(version);
        let bytes = match self.store.get(&path).await {
            Ok(result) => result.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CatalogError::CorruptCatalog {
                path,
                message: e.to_string(),
            })
    }

    /// The newest committed version: the cached one, moved forward over any versions other
    /// writers committed since.
    pub async fn latest(&self) -> Result<Versioned> {
        let mut current = match self.cached() {
            Some(v) => v,
            None => {
                let version = self.newest_listed_version().await?;
                let state = self.read_version(version).await?.ok_or_else(|| {
                    CatalogError::CorruptCatalog {
                        path: self.version_path(version),
                        message: "listed but unreadable".to_string(),
                    }
                })?;
                Versioned {
                    version,
                    state: Arc::new(state),
                }
            }
        };
        while let Some(state) = self.read_version(current.version + 1).await? {
            current = Versioned {
                version: current.version + 1,
                state: Arc::new(state),
            };
        }
        self.remember(&current);
        Ok(current)
    }

    /// The newest version as of at most `staleness` ago: the one this process knows, without
    /// any I/O, if it was known to be the newest (read after a probe, or committed here) within
    /// `staleness`; otherwise [`MetaStore::latest`]. Commits of this process are always seen
    /// (they update what it knows); other processes' commits within `staleness`.
    pub async fn latest_within(&self, staleness: Duration) -> Result<Versioned> {
        let known = self.latest.lock().ok().and_then(|guard| {
            guard
                .as_ref()
                .filter(|(_, at)| at.elapsed() < staleness)
                .map(|(v, _)| v.clone())
        });
        match known {
            Some(versioned) => Ok(versioned),
            None => self.latest().await,
        }
    }

    /// Applies `mutate` to the latest catalog and commits the result as the next version.
    ///
    /// `mutate` may run several times (once per lost race), always against the newest state; an
    /// error from it aborts the commit and is returned unchanged, with nothing written.
    pub async fn commit<T>(
        &self,
        mut mutate: impl FnMut(&mut CatalogState) -> Result<T>,
    ) -> Result<(Versioned, T)> {
        let mut attempted = 0;
        loop {
            let base = self.latest().await?;
            let mut next = (*base.state).clone();
            let out = mutate(&mut next)?;
            let version = base.version + 1;
            let body = serde_json::to_vec_pretty(&next)?;
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            attempted += 1;
            match self
                .store
                .put_opts(
                    &self.version_path(version),
                    PutPayload::from(Bytes::from(body)),
                    opts,
                )
                .await
            {
                Ok(_) => {
                    let committed = Versioned {
                        version,
                        state: Arc::new(next),
                    };
                    self.remember(&committed);
                    return Ok((committed, out));
                }
                Err(object_store::Error::AlreadyExists { .. }) => {
                    if attempted >= MAX_COMMIT_ATTEMPTS {
                        return Err(CatalogError::CommitConflict {
                            version,
                            attempts: attempted,
                        });
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Removes log versions that are both older than the newest `keep` and older than
    /// [`TRIM_MIN_AGE`]; returns how many were removed.
    ///
    /// Readers only ever read the newest version and the ones after it, so old versions are
    /// history, not state.
    pub async fn trim(&self, keep: u64) -> Result<usize> {
        self.trim_older_than(keep, TRIM_MIN_AGE).await
    }

    async fn trim_older_than(&self, keep: u64, min_age: Duration) -> Result<usize> {
        let cutoff = chrono::Utc::now()
            - chrono::Duration::from_std(min_age).unwrap_or(chrono::Duration::zero());
        let latest = self.latest().await?.version;
        let metas: Vec<_> = self.store.list(Some(&self.log_dir)).try_collect().await?;
        let mut removed = 0;
        for meta in metas {
            let old = meta
                .location
                .filename()
                .and_then(|f| f.strip_suffix(".json"))
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|v| v + keep <= latest)
                && meta.last_modified < cutoff;
            if old {
                match self.store.delete(&meta.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => removed += 1,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DatabaseRecord;
    use object_store::memory::InMemory;

    fn add_db(state: &mut CatalogState, name: &str) -> Result<()> {
        if state.databases.contains_key(name) {
            return Err(CatalogError::DatabaseAlreadyExists {
                name: name.to_string(),
            });
        }
        state.databases.insert(
            name.to_string(),
            DatabaseRecord {
                name: name.to_string(),
                created_at: chrono::Utc::now(),
            },
        );
        Ok(())
    }

    #[tokio::test]
    async fn commits_are_versioned_and_reloaded_by_a_second_reader() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let root = Path::from("root");
        let a = MetaStore::new(store.clone(), &root);
        assert_eq!(a.latest().await.unwrap().version, 0);
        a.commit(|s| add_db(s, "one")).await.unwrap();
        a.commit(|s| add_db(s, "two")).await.unwrap();

        let b = MetaStore::new(store, &root);
        let latest = b.latest().await.unwrap();
        assert_eq!(latest.version, 2);
        assert!(latest.state.databases.contains_key("one"));
        assert!(latest.state.databases.contains_key("two"));
    }

    #[tokio::test]
    async fn a_failed_mutation_writes_nothing() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let meta = MetaStore::new(store, &Path::from("root"));
        meta.commit(|s| add_db(s, "one")).await.unwrap();
        let err = meta.commit(|s| add_db(s, "one")).await.unwrap_err();
        assert!(matches!(err, CatalogError::DatabaseAlreadyExists { .. }));
        assert_eq!(meta.latest().await.unwrap().version, 1);
    }

    #[tokio::test]
    async fn racing_writers_each_commit_once() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let root = Path::from("root");
        let writers: Vec<_> = (0..8)
            .map(|i| {
                let meta = MetaStore::new(store.clone(), &root);
                tokio::spawn(async move { meta.commit(|s| add_db(s, &format!("db{i}"))).await })
            })
            .collect();
        for w in writers {
            w.await.unwrap().unwrap();
        }
        let latest = MetaStore::new(store, &root).latest().await.unwrap();
        assert_eq!(latest.version, 8);
        assert_eq!(latest.state.databases.len(), 8);
    }

    #[tokio::test]
    async fn a_corrupt_version_is_reported_with_its_path() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let root = Path::from("root");
        store
            .put(
                &root
                    .clone()
                    .join("_catalog")
                    .join("log")
                    .join(format!("{:020}.json", 1)),
                PutPayload::from_static(b"{not json"),
            )
            .await
            .unwrap();
        let err = MetaStore::new(store, &root).latest().await.unwrap_err();
        assert!(err.to_string().contains("corrupt catalog file"), "{err}");
        assert!(
            err.to_string().contains("00000000000000000001.json"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn trim_keeps_the_newest_versions() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let root = Path::from("root");
        let meta = MetaStore::new(store.clone(), &root);
        for i in 0..5 {
            meta.commit(|s| add_db(s, &format!("db{i}"))).await.unwrap();
        }
        assert_eq!(meta.trim(2).await.unwrap(), 0, "young versions are kept");
        assert_eq!(meta.trim_older_than(2, Duration::ZERO).await.unwrap(), 3);
        let fresh = MetaStore::new(store, &root).latest().await.unwrap();
        assert_eq!(fresh.version, 5);
        assert_eq!(fresh.state.databases.len(), 5);
    }
}
