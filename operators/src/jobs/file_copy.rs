//! `FileCopy`: copies files listed by its input into a target directory.
//!
//! A file under the source directory is copied to the same relative path under the target (a
//! server-side copy; on a local disk, a new link to the same bytes where the file system allows,
//! otherwise a copy). Files under other directories (the source was itself a zero-copy restore)
//! are not copied: the copied version manifest still refers to them. Copies run concurrently;
//! progress is reported per file.
//!
//! Before a file is copied, its size and content tag (the store's ETag, when the manifest
//! recorded one) are checked against the manifest: a file that changed since the snapshot (data
//! files never change) fails the copy with the file's name, instead of restoring other data.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray, RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use datafusion::common::{internal_err, Result};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use quiver_catalog::inventory::same_file;
use quiver_catalog::location::DataRoot;

use super::{cancelled, paths_and_sizes, JobProgress, Transform};
use crate::error::OperatorError;

/// Copies files from one collection directory to another.
#[derive(Debug)]
pub struct FileCopy {
    /// The data root.
    root: DataRoot,
    /// Root-relative directory the files come from.
    source_dir: String,
    /// Root-relative directory they go to.
    target_dir: String,
    /// Copies in flight at once.
    concurrency: usize,
}

impl FileCopy {
    /// Copies files under `source_dir` to `target_dir` (both root-relative).
    pub fn new(root: DataRoot, source_dir: String, target_dir: String, concurrency: usize) -> Self {
        Self {
            root,
            source_dir,
            target_dir,
            concurrency: concurrency.max(1),
        }
    }
}

impl FileCopy {
    /// Fails unless the file at `path` still has the manifest's `size` and `checksum`.
    async fn check_unchanged(&self, path: &str, size: u64, checksum: Option<&str>) -> Result<()> {
        let meta = self
            .root
            .store()
            .head(&self.root.path_of(path))
            .await
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        let changed = |detail: String| -> Result<()> {
            Err(OperatorError::SnapshotFileChanged {
                path: path.to_string(),
                detail,
            }
            .into())
        };
        if meta.size != size {
            return changed(format!("{} bytes, the manifest says {size}", meta.size));
        }
        match (checksum, meta.e_tag.as_deref()) {
            (Some(expected), Some(actual)) if !same_file(expected, actual) => {
                changed(format!("checksum {actual}, the manifest says {expected}"))
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for FileCopy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "from={}, to={}, concurrency={}",
            self.source_dir, self.target_dir, self.concurrency
        )
    }
}

#[async_trait]
impl Transform for FileCopy {
    fn name(&self) -> &'static str {
        "FileCopyExec"
    }

    fn schema(&self, input: &SchemaRef) -> Result<SchemaRef> {
        if input.index_of("path").is_err() || input.index_of("size_bytes").is_err() {
            return internal_err!("FileCopyExec needs path and size_bytes columns");
        }
        Ok(Arc::new(Schema::new(vec![
            Field::new("path", DataType::Utf8, false),
            Field::new("size_bytes", DataType::UInt64, false),
        ])))
    }

    async fn apply(
        &self,
        batch: RecordBatch,
        progress: &Arc<dyn JobProgress>,
    ) -> Result<Option<RecordBatch>> {
        let (paths, sizes) = paths_and_sizes(&batch)?;
        let rows = batch
            .schema()
            .index_of("row_count")
            .ok()
            .map(|i| batch.column(i).as_primitive::<UInt64Type>().clone());
        let checksums = batch
            .schema()
            .index_of("checksum")
            .ok()
            .and_then(|i| batch.column(i).as_string_opt::<i32>().cloned());
        let prefix = format!("{}/", self.source_dir);
        let copied: Vec<(String, u64)> = futures::stream::iter(0..batch.num_rows())
            .map(|i| {
                let path = paths.value(i).to_string();
                let size = sizes.value(i);
                let row_count = rows
                    .as_ref()
                    .filter(|r| r.is_valid(i))
                    .map(|r| r.value(i))
                    .unwrap_or(0);
                let checksum = checksums
                    .as_ref()
                    .filter(|c| c.is_valid(i))
                    .map(|c| c.value(i).to_string());
                let prefix = prefix.clone();
                let progress = progress.clone();
                async move {
                    if progress.is_cancelled() {
                        return Err(cancelled());
                    }
                    let Some(relative) = path.strip_prefix(&prefix) else {
                        progress.add_done(1, size, row_count);
                        return Ok(None);
                    };
                    self.check_unchanged(&path, size, checksum.as_deref())
                        .await?;
                    let target = format!("{}/{relative}", self.target_dir);
                    self.root
                        .store()
                        .copy(&self.root.path_of(&path), &self.root.path_of(&target))
                        .await
                        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
                    progress.add_done(1, size, row_count);
                    Ok(Some((target, size)))
                }
            })
            .buffer_unordered(self.concurrency)
            // Every copy is driven to its end before an error is returned: a copy dropped in
            // flight could still land after the failed restore removed its target.
            .collect::<Vec<Result<Option<(String, u64)>>>>()
            .await
            .into_iter()
            .filter_map(Result::transpose)
            .collect::<Result<_>>()?;
        let out = RecordBatch::try_new(
            self.schema(&batch.schema())?,
            vec![
                Arc::new(StringArray::from_iter_values(
                    copied.iter().map(|c| c.0.as_str()),
                )),
                Arc::new(UInt64Array::from_iter_values(copied.iter().map(|c| c.1))),
            ],
        )?;
        Ok(Some(out))
    }
}
