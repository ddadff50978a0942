//! `FileDelete`: deletes the files its input lists — or, in a dry run, only reports them.
//!
//! Output rows are the garbage collection report: `category, item, files, bytes`, one per file.
//! A file already gone counts as deleted.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{internal_err, DataFusionError, Result};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use quiver_catalog::location::DataRoot;

use super::{cancelled, paths_and_sizes, JobProgress, Transform};

/// Schema of garbage collection report rows: `category, item, files, bytes`.
pub fn report_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("category", DataType::Utf8, false),
        Field::new("item", DataType::Utf8, false),
        Field::new("files", DataType::UInt64, false),
        Field::new("bytes", DataType::UInt64, false),
    ]))
}

/// Deletes files.
#[derive(Debug)]
pub struct FileDelete {
    /// The data root.
    root: DataRoot,
    /// Report, do not delete.
    dry_run: bool,
    /// Deletes in flight at once.
    concurrency: usize,
}

impl FileDelete {
    /// Deletes under `root` (or only reports, with `dry_run`).
    pub fn new(root: DataRoot, dry_run: bool, concurrency: usize) -> Self {
        Self {
            root,
            dry_run,
            concurrency: concurrency.max(1),
        }
    }
}

impl fmt::Display for FileDelete {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dry_run={}", self.dry_run)
    }
}

#[async_trait]
impl Transform for FileDelete {
    fn name(&self) -> &'static str {
        "FileDeleteExec"
    }

    fn schema(&self, input: &SchemaRef) -> Result<SchemaRef> {
        if input.index_of("path").is_err() || input.index_of("size_bytes").is_err() {
            return internal_err!("FileDeleteExec needs path and size_bytes columns");
        }
        Ok(report_schema())
    }

    async fn apply(
        &self,
        batch: RecordBatch,
        progress: &Arc<dyn JobProgress>,
    ) -> Result<Option<RecordBatch>> {
        let (paths, sizes) = paths_and_sizes(&batch)?;
        progress.add_total(batch.num_rows() as u64, sizes.iter().flatten().sum(), 0);
        let deleted: Vec<(String, u64)> = futures::stream::iter(0..batch.num_rows())
            .map(|i| {
                let (path, size) = (paths.value(i).to_string(), sizes.value(i));
                let progress = progress.clone();
                async move {
                    if progress.is_cancelled() {
                        return Err(cancelled());
                    }
                    if !self.dry_run {
                        match self.root.store().delete(&self.root.path_of(&path)).await {
                            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                            Err(e) => return Err(DataFusionError::External(Box::new(e))),
                        }
                    }
                    progress.add_done(1, size, 0);
                    Ok((path, size))
                }
            })
            .buffer_unordered(self.concurrency)
            .try_collect()
            .await?;
        let out = RecordBatch::try_new(
            report_schema(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    deleted.iter().map(|_| "unreferenced files"),
                )),
                Arc::new(StringArray::from_iter_values(
                    deleted.iter().map(|d| d.0.as_str()),
                )),
                Arc::new(UInt64Array::from_iter_values(deleted.iter().map(|_| 1))),
                Arc::new(UInt64Array::from_iter_values(deleted.iter().map(|d| d.1))),
            ],
        )?;
        Ok(Some(out))
    }
}
