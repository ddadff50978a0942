//! `ReferenceSet`: every file that something still needs, as root-relative paths.
//!
//! The set is the union of: every file of every version still recorded by every live collection
//! (Lance's tracked files, which include files a collection reads from another collection's
//! directory, and, for a collection that shares another's files, the index files it reads
//! there), every file listed by every snapshot manifest the catalog knows (in any state), and
//! the manifest files of those snapshots. The operator emits nothing until the whole set is
//! loaded, and fails — so that nothing downstream deletes — if any part cannot be read (an
//! unreadable manifest of a committed snapshot included).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{DataFusionError, Result};
use futures::TryStreamExt;
use quiver_catalog::inventory::version_files;
use quiver_catalog::manifest::manifest_paths;
use quiver_catalog::snapshot::snapshot_dir;
use quiver_catalog::{Catalog, CatalogError, CollectionRecord, SnapshotState};

use super::{JobProgress, Source};

/// Loads the reference set of a catalog.
#[derive(Debug)]
pub struct ReferenceSet {
    /// The catalog.
    catalog: Arc<Catalog>,
}

/// How often a collection's files are read before a vanishing version is an error.
const READ_ATTEMPTS: usize = 5;

/// Whether `e` says a file was not found (a version manifest removed while it was read).
fn vanished(e: &DataFusionError) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if err
            .downcast_ref::<lance::Error>()
            .is_some_and(|l| l.is_not_found())
        {
            return true;
        }
        current = err.source();
    }
    false
}

impl ReferenceSet {
    /// The reference set of `catalog`.
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Self { catalog }
    }

    /// Every file of every version `record` still records, root-relative.
    async fn live_files(&self, record: &CollectionRecord) -> Result<BTreeSet<String>> {
        let root = self.catalog.root();
        let mut paths = BTreeSet::new();
        let dataset = self
            .catalog
            .open_dataset(record, None)
            .await
            .map_err(external)?;
        let mut tracked = dataset.tracked_files().await;
        while let Some(batch) = tracked.try_next().await? {
            let bases = cast(
                batch.column(batch.schema().index_of("base_uri")?),
                &DataType::Utf8,
            )?;
            let bases = bases.as_string::<i32>();
            let files = batch
                .column(batch.schema().index_of("path")?)
                .as_string::<i32>()
                .clone();
            for i in 0..batch.num_rows() {
                let base = if bases.is_valid(i) {
                    bases.value(i)
                } else {
                    ""
                };
                let dir = root.relative_uri(base).ok_or_else(|| {
                    DataFusionError::Execution(format!(
                        "'{}' refers to files outside the data root ({base}); refusing to collect",
                        record.qualified_name()
                    ))
                })?;
                paths.insert(format!("{dir}/{}", files.value(i)));
            }
        }
        // Lance tracks index files under the collection's own directory only, but a collection
        // that reads another's files (a zero-copy restore) also uses that one's indices: add
        // every version's full inventory.
        if !dataset.manifest().base_paths.is_empty() {
            for version in dataset.versions().await.map_err(lance_error)? {
                let at = self
                    .catalog
                    .open_dataset(record, Some(version.version))
                    .await
                    .map_err(external)?;
                let files = version_files(root, &record.location, &at)
                    .await
                    .map_err(external)?;
                paths.extend(files.into_iter().map(|f| f.path));
            }
        }
        Ok(paths)
    }
}

impl fmt::Display for ReferenceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sources=[live versions, snapshot manifests]")
    }
}

/// Schema of the set: `path`.
pub fn reference_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("path", DataType::Utf8, false)]))
}

fn external(e: CatalogError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

fn lance_error(e: lance::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

#[async_trait]
impl Source for ReferenceSet {
    fn name(&self) -> &'static str {
        "ReferenceSetExec"
    }

    fn schema(&self) -> SchemaRef {
        reference_schema()
    }

    async fn run(&self, _progress: Arc<dyn JobProgress>) -> Result<Vec<RecordBatch>> {
        let state = self.catalog.state().await.map_err(external)?;
        let mut paths = BTreeSet::new();
        for record in state.collections.values() {
            // Expired versions may be cleaned up (by this GC, or another) while they are read;
            // their manifests vanish, and the collection is read again from its newer history.
            let mut attempt = 0;
            let files = loop {
                attempt += 1;
                match self.live_files(record).await {
                    Err(e) if attempt < READ_ATTEMPTS && vanished(&e) => continue,
                    other => break other?,
                }
            };
            paths.extend(files);
        }
        for snapshot in state.snapshots.values() {
            let dir = snapshot_dir(&snapshot.collection_id, &snapshot.id);
            let (manifest, metadata) = manifest_paths(&dir);
            paths.insert(manifest);
            paths.insert(metadata);
            match self.catalog.snapshot_files(snapshot).await {
                Ok(files) => paths.extend(files.into_iter().map(|f| f.path)),
                // A snapshot still being created has no manifest yet: its version is live.
                Err(CatalogError::MissingManifest { .. })
                    if snapshot.state != SnapshotState::Committed => {}
                Err(e) => return Err(external(e)),
            }
        }
        let batch = RecordBatch::try_new(
            reference_schema(),
            vec![Arc::new(StringArray::from_iter_values(paths.iter()))],
        )?;
        Ok(vec![batch])
    }
}
