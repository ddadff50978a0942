//! `ManifestScan`: the files a snapshot's manifest lists, as rows.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::Result;
use quiver_catalog::{Catalog, SnapshotRecord};

use super::{JobProgress, Source};

/// Schema of file rows: `path, kind, size_bytes, row_count, fragment_id`.
pub fn file_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("size_bytes", DataType::UInt64, false),
        Field::new("row_count", DataType::UInt64, true),
        Field::new("fragment_id", DataType::UInt64, true),
        Field::new("checksum", DataType::Utf8, true),
    ]))
}

/// Reads a snapshot's manifest.
#[derive(Debug)]
pub struct ManifestScan {
    /// The catalog holding the snapshot.
    catalog: Arc<Catalog>,
    /// The snapshot.
    snapshot: SnapshotRecord,
}

impl ManifestScan {
    /// Scans `snapshot`'s manifest.
    pub fn new(catalog: Arc<Catalog>, snapshot: SnapshotRecord) -> Self {
        Self { catalog, snapshot }
    }
}

impl fmt::Display for ManifestScan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "snapshot={}.{}@{}, manifest={}",
            self.snapshot.database,
            self.snapshot.collection,
            self.snapshot.name,
            self.snapshot.manifest_path
        )
    }
}

#[async_trait]
impl Source for ManifestScan {
    fn name(&self) -> &'static str {
        "ManifestScanExec"
    }

    fn schema(&self) -> SchemaRef {
        file_schema()
    }

    async fn run(&self, progress: Arc<dyn JobProgress>) -> Result<Vec<RecordBatch>> {
        let files = self
            .catalog
            .snapshot_files(&self.snapshot)
            .await
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
        progress.add_total(
            files.len() as u64,
            files.iter().map(|f| f.size_bytes).sum(),
            self.snapshot.rows,
        );
        let batch = RecordBatch::try_new(
            file_schema(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    files.iter().map(|f| f.path.as_str()),
                )),
                Arc::new(StringArray::from_iter_values(
                    files.iter().map(|f| f.kind.as_str()),
                )),
                Arc::new(UInt64Array::from_iter_values(
                    files.iter().map(|f| f.size_bytes),
                )),
                Arc::new(UInt64Array::from(
                    files.iter().map(|f| f.row_count).collect::<Vec<_>>(),
                )),
                Arc::new(UInt64Array::from(
                    files.iter().map(|f| f.fragment_id).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    files
                        .iter()
                        .map(|f| f.checksum.as_deref())
                        .collect::<Vec<_>>(),
                )),
            ],
        )?;
        Ok(vec![batch])
    }
}
